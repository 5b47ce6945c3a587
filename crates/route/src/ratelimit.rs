//! RateLimitPolicy compiled: each rule's quota and the requests it
//! counts, under which key. Counting is the proxy's (it holds the
//! buckets); this says, for one request, which buckets it draws from.
//!
//! Rules that give each caller its own count (a `Distinct` field) are
//! checked before rules shared by all: a caller refused by its own count
//! takes nothing from the shared one, so one caller flooding cannot use
//! up what the others share.

use crate::attach::{check_targets, Attached, Finding};
use http::{HeaderMap, HeaderName, Method};
use ipnet::IpNet;
use regex::Regex;
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use strait_config::ratelimit::{
    RateLimitPolicySpec, RateLimitRule, RateLimitSelectCondition, RateLimitValue,
};
use strait_config::{Document, Object, Resource};

/// One RateLimitPolicy's rules.
#[derive(Debug)]
pub struct RateLimit {
    /// `namespace/name`.
    pub policy: Arc<str>,
    /// Per-caller rules first, then shared ones.
    pub rules: Vec<LimitRule>,
    /// Where global rules count.
    pub redis: Option<Arc<Redis>>,
    /// A rule tests the client's address: only then is it worked out
    /// (from `X-Forwarded-For` behind trusted proxies).
    pub uses_client: bool,
    /// Every answer the policy counts says where the caller stands, not
    /// only a refusal.
    pub headers: bool,
}

pub use crate::redis::Redis;

#[derive(Debug)]
pub struct LimitRule {
    /// For the `RateLimit` headers and the metrics.
    pub name: Arc<str>,
    /// Names this rule's counts across configurations: a configuration
    /// that keeps the policy, the rule and its quota keeps its counts.
    pub id: Arc<str>,
    /// Its place among every rule of the configuration, where the proxy
    /// keeps its counts.
    pub slot: usize,
    /// What its counts are kept by, for the metrics: `route`, `policy`
    /// (shared), or the distinct fields (`header`, `client`, `claim`,
    /// `api_key_client`, `source_identity`, `method`), joined by `+`.
    pub keyed_by: Arc<str>,
    pub quota: Quota,
    /// Any may match; none means every request.
    selectors: Vec<Selector>,
    pub shadow: bool,
    /// `RateLimit-Policy`'s value: `"NAME";q=REQUESTS;w=SECONDS`.
    pub policy_header: http::HeaderValue,
    /// One count for every route the policy covers.
    pub shared: bool,
    /// Counted in Redis, with every other proxy.
    pub global: bool,
    /// Some field gives each caller its own count.
    pub per_caller: bool,
}

/// `requests` per `period`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    pub requests: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Quota {
    /// The time one request's share of the quota takes to come back.
    pub fn interval(&self) -> Duration {
        self.period / self.requests.max(1)
    }
}

#[derive(Debug)]
struct Selector(Vec<Condition>);

#[derive(Debug)]
struct Condition {
    of: Field,
    test: Test,
    invert: bool,
}

#[derive(Debug)]
enum Field {
    Header(HeaderName),
    Method,
    Client,
    Claim(String),
    ApiKeyClient,
    Identity,
}

#[derive(Debug)]
enum Test {
    Exact(String),
    Regex(Regex),
    Within(IpNet),
    /// Any value; each its own count (in a range, for the client).
    Distinct(Option<IpNet>),
}

/// What a rule may look at in a request.
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub method: &'a Method,
    /// After the trusted-proxy rule.
    /// The client's address (its peer's, unless the policy
    /// [`uses_client`](RateLimit::uses_client)).
    pub client: IpAddr,
    /// The verified token's claims.
    pub claims: Option<&'a Map<String, Value>>,
    pub api_key_client: Option<&'a str>,
    /// The caller's SPIFFE identity, proven by mutual TLS.
    pub identity: Option<&'a str>,
    /// `namespace/name` of the route that took it.
    pub route: &'a Arc<str>,
}

/// What a rule counts a request under: the route's own name when that is
/// all (no copy), or the distinct values it was given.
#[derive(Debug, Clone)]
pub enum Key {
    Shared(Arc<str>),
    Owned(String),
}

impl Key {
    pub fn as_str(&self) -> &str {
        match self {
            Key::Shared(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl LimitRule {
    /// In words: `per-user: 3 a minute (burst 3), one count per header,
    /// local`.
    pub fn describe(&self) -> String {
        let q = self.quota;
        let unit = match q.period.as_secs() {
            1 => "second",
            60 => "minute",
            3600 => "hour",
            _ => "day",
        };
        let by = match &*self.keyed_by {
            "route" => "one count per route".to_string(),
            "policy" => "one count for all its routes".to_string(),
            fields => format!("one count per {fields}"),
        };
        let scope = if self.global {
            "global (Redis)"
        } else {
            "local"
        };
        let shadow = if self.shadow { ", shadow mode" } else { "" };
        format!(
            "{}: {} a {unit} (burst {}), {by}, {scope}{shadow}",
            self.name, q.requests, q.burst
        )
    }

    /// The count `req` draws from, or `None` when the rule does not count
    /// it. Keys of different selectors never meet.
    pub fn key(&self, req: &Request<'_>) -> Option<Key> {
        if self.selectors.is_empty() {
            return Some(match self.shared {
                true => Key::Owned(String::new()),
                false => Key::Shared(req.route.clone()),
            });
        }
        let mut key = String::new();
        if !self.shared {
            key.push_str(req.route);
        }
        for (i, s) in self.selectors.iter().enumerate() {
            let mark = key.len();
            key.push_str(&format!("\u{1f}{i}"));
            if s.0.iter().all(|c| c.test(req, &mut key)) {
                return Some(Key::Owned(key));
            }
            key.truncate(mark);
        }
        None
    }
}

impl LimitRule {
    fn uses_client(&self) -> bool {
        let conditions = self.selectors.iter().flat_map(|s| &s.0);
        conditions
            .into_iter()
            .any(|c| matches!(c.of, Field::Client))
    }
}

impl Field {
    fn label(&self) -> &'static str {
        match self {
            Field::Header(_) => "header",
            Field::Method => "method",
            Field::Client => "client",
            Field::Claim(_) => "claim",
            Field::ApiKeyClient => "api_key_client",
            Field::Identity => "source_identity",
        }
    }
}

impl Condition {
    /// Whether `req` matches; a distinct value is added to `key`.
    fn test(&self, req: &Request<'_>, key: &mut String) -> bool {
        let value: Option<std::borrow::Cow<'_, str>> = match &self.of {
            Field::Header(name) => req
                .headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes())),
            Field::Method => Some(req.method.as_str().into()),
            Field::Client => Some(req.client.to_string().into()),
            Field::Claim(name) => req.claims.and_then(|c| claim(c.get(name)?)),
            Field::ApiKeyClient => req.api_key_client.map(Into::into),
            Field::Identity => req.identity.map(Into::into),
        };
        let matched = match (&self.test, &value) {
            (_, None) => false,
            (Test::Exact(want), Some(v)) => v == want,
            (Test::Regex(re), Some(v)) => re.is_match(v),
            (Test::Within(net), _) => net.contains(&req.client),
            (Test::Distinct(range), Some(v)) => {
                if range.is_some_and(|net| !net.contains(&req.client)) {
                    return false;
                }
                key.push('\u{1f}');
                key.push_str(v);
                return true;
            }
        };
        matched != self.invert
    }
}

/// A claim's value as text: a string as it is, a number or a boolean
/// as JSON writes it.
fn claim(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string().into()),
        _ => None,
    }
}

/// The RateLimitPolicies.
pub type RateLimitTable = Attached<RateLimit>;

impl crate::attach::Policy for RateLimit {
    const KIND: &'static str = "RateLimitPolicy";
}

impl Attached<RateLimit> {
    pub(crate) fn compile(docs: &[Document]) -> Self {
        let mut slots = 0;
        Attached::build(
            docs,
            |d| match &*d.resource {
                Resource::RateLimitPolicy(p) => Some(p),
                _ => None,
            },
            |spec| &spec.target_refs,
            |p| {
                let (value, errors) = compile_policy(p, docs, &mut slots);
                (value, errors, Vec::new())
            },
            "the policy limits nothing until it is fixed",
        )
    }

    /// Every rule of every policy, by slot.
    pub fn rules(&self) -> Vec<&LimitRule> {
        let mut all: Vec<&LimitRule> = self.all().flat_map(|p| &p.rules).collect();
        all.sort_by_key(|r| r.slot);
        all
    }
}

/// The policy, and its errors: with any, it has no rules. Its rules take
/// the slots from `slots` on.
fn compile_policy(
    p: &Object<RateLimitPolicySpec>,
    docs: &[Document],
    slots: &mut usize,
) -> (RateLimit, Vec<Finding>) {
    let policy: Arc<str> = format!("{}/{}", p.metadata.namespace(), p.metadata.name).into();
    let mut errors = check_targets(&p.spec.target_refs);
    let mut rules = Vec::new();
    let empty = |rules: &[RateLimitRule]| rules.is_empty();
    if p.spec.local.as_ref().is_none_or(|l| empty(&l.rules))
        && p.spec.global.as_ref().is_none_or(|g| empty(&g.rules))
    {
        errors.push((
            "spec".into(),
            "no rule: set local.rules or global.rules".into(),
        ));
    }
    let local = p.spec.local.iter().flat_map(|l| &l.rules);
    for (i, r) in local.enumerate() {
        let at = format!("spec.local.rules[{i}]");
        push(
            compile_rule(r, (&policy, &at, i), false),
            &mut rules,
            &mut errors,
        );
    }
    let ns = p.metadata.namespace();
    let redis = p.spec.global.as_ref().and_then(|g| {
        crate::redis::compile(&g.redis, docs, ns)
            .map_err(|(field, e)| {
                let at = format!("spec.global.redis.{field}");
                errors.push((at.trim_end_matches('.').to_string(), e));
            })
            .ok()
    });
    let global = p.spec.global.iter().flat_map(|g| &g.rules);
    for (i, r) in global.enumerate() {
        let at = format!("spec.global.rules[{i}]");
        push(
            compile_rule(r, (&policy, &at, i), true),
            &mut rules,
            &mut errors,
        );
    }
    if !errors.is_empty() {
        rules.clear();
    }
    for rule in &mut rules {
        rule.slot = *slots;
        *slots += 1;
    }
    rules.sort_by_key(|r| !r.per_caller);
    let redis = redis.map(Arc::new);
    (
        RateLimit {
            policy,
            uses_client: rules.iter().any(LimitRule::uses_client),
            rules,
            redis,
            headers: !p.spec.disable_rate_limit_headers,
        },
        errors,
    )
}

fn push(
    compiled: Result<LimitRule, Vec<Finding>>,
    rules: &mut Vec<LimitRule>,
    errors: &mut Vec<Finding>,
) {
    match compiled {
        Ok(rule) => rules.push(rule),
        Err(e) => errors.extend(e),
    }
}

fn compile_rule(
    r: &RateLimitRule,
    (policy, at, i): (&str, &str, usize),
    global: bool,
) -> Result<LimitRule, Vec<Finding>> {
    let mut errors = Vec::new();
    let quota = quota(&r.limit)
        .map_err(|e| errors.push((format!("{at}.limit"), e)))
        .ok();
    let mut selectors = Vec::new();
    for (j, s) in r.client_selectors.iter().enumerate() {
        let at = format!("{at}.clientSelectors[{j}]");
        match selector(s, &at) {
            Ok(s) => selectors.push(s),
            Err(e) => errors.extend(e),
        }
    }
    let (Some(quota), true) = (quota, errors.is_empty()) else {
        return Err(errors);
    };
    let name: Arc<str> = r.name.clone().unwrap_or_else(|| format!("rule-{i}")).into();
    let token = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 63 || !name.chars().all(token) {
        let msg = "a name is 1 to 63 letters, digits, '-', '_' or '.'".to_string();
        return Err(vec![(format!("{at}.name"), msg)]);
    }
    let distinct: Vec<&str> = selectors
        .iter()
        .flat_map(|s| &s.0)
        .filter(|c| matches!(c.test, Test::Distinct(_)))
        .map(|c| c.of.label())
        .collect();
    let per_caller = !distinct.is_empty();
    let keyed_by = match (per_caller, r.shared) {
        (true, _) => distinct.join("+"),
        (false, false) => "route".into(),
        (false, true) => "policy".into(),
    };
    let scope = if global { "global" } else { "local" };
    let id = format!(
        "{policy} {scope} {at} {}/{:?}+{} {:?} shared={}",
        quota.requests, quota.period, quota.burst, r.client_selectors, r.shared
    );
    let said = format!(
        "\"{name}\";q={};w={}",
        quota.requests,
        quota.period.as_secs().max(1)
    );
    let policy_header = http::HeaderValue::from_str(&said)
        .map_err(|_| vec![(format!("{at}.name"), "not a header value".to_string())])?;
    Ok(LimitRule {
        policy_header,
        name,
        id: id.into(),
        slot: 0,
        keyed_by: keyed_by.into(),
        quota,
        selectors,
        shadow: r.shadow_mode,
        shared: r.shared,
        global,
        per_caller,
    })
}

fn quota(v: &RateLimitValue) -> Result<Quota, String> {
    let period = match v.unit.as_str() {
        "Second" => Duration::from_secs(1),
        "Minute" => Duration::from_secs(60),
        "Hour" => Duration::from_secs(3600),
        "Day" => Duration::from_secs(86_400),
        other => {
            return Err(format!(
                "unit: {other:?} is not Second, Minute, Hour or Day"
            ))
        }
    };
    if v.requests == 0 {
        return Err("requests: must be at least 1".into());
    }
    let burst = v.burst.unwrap_or(v.requests);
    if burst == 0 {
        return Err("burst: must be at least 1".into());
    }
    Ok(Quota {
        requests: v.requests,
        period,
        burst,
    })
}

fn selector(s: &RateLimitSelectCondition, at: &str) -> Result<Selector, Vec<Finding>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut add = |found: Result<Condition, String>, path: String| match found {
        Ok(c) => out.push(c),
        Err(e) => errors.push((path, e)),
    };
    for (i, h) in s.headers.iter().enumerate() {
        let path = format!("{at}.headers[{i}]");
        let of = HeaderName::from_bytes(h.name.as_bytes())
            .map(Field::Header)
            .map_err(|_| format!("name: {:?} is not a header name", h.name));
        let found =
            of.and_then(|of| condition(of, h.kind.as_deref(), h.value.as_deref(), h.invert));
        add(found, path);
    }
    for (i, m) in s.methods.iter().enumerate() {
        let path = format!("{at}.methods[{i}]");
        let found = match Method::from_bytes(m.value.as_bytes()) {
            Ok(_) => condition(Field::Method, None, Some(&m.value), m.invert),
            Err(_) => Err(format!("value: {:?} is not a method", m.value)),
        };
        add(found, path);
    }
    if let Some(c) = &s.source_cidr {
        add(
            client(c.kind.as_deref(), &c.value),
            format!("{at}.sourceCIDR"),
        );
    }
    for (i, c) in s.jwt_claims.iter().enumerate() {
        let of = Field::Claim(c.name.clone());
        let found = condition(of, c.kind.as_deref(), c.value.as_deref(), false);
        add(found, format!("{at}.jwtClaims[{i}]"));
    }
    let simple = [
        (&s.api_key_client, Field::ApiKeyClient, "apiKeyClient"),
        (&s.source_identity, Field::Identity, "sourceIdentity"),
    ];
    for (m, of, name) in simple {
        if let Some(m) = m {
            let found = condition(of, m.kind.as_deref(), m.value.as_deref(), false);
            add(found, format!("{at}.{name}"));
        }
    }
    if out.is_empty() && errors.is_empty() {
        errors.push((at.to_string(), "a selector with nothing to match".into()));
    }
    match errors.is_empty() {
        true => Ok(Selector(out)),
        false => Err(errors),
    }
}

fn condition(
    of: Field,
    kind: Option<&str>,
    value: Option<&str>,
    invert: bool,
) -> Result<Condition, String> {
    let test = match (kind.unwrap_or("Exact"), value) {
        ("Distinct", None) => Test::Distinct(None),
        ("Distinct", Some(_)) => return Err("value: not with type Distinct".into()),
        ("Exact", Some(v)) => Test::Exact(v.to_string()),
        ("RegularExpression", Some(v)) if matches!(of, Field::Header(_)) => {
            let re = Regex::new(&format!("^(?:{v})$")).map_err(|e| format!("value: {e}"))?;
            Test::Regex(re)
        }
        ("Exact" | "RegularExpression", None) => return Err("value: needed".into()),
        (other, _) => return Err(format!("type: {other:?} is not one strait knows here")),
    };
    if invert && matches!(test, Test::Distinct(_)) {
        return Err("invert: not with type Distinct".into());
    }
    Ok(Condition { of, test, invert })
}

fn client(kind: Option<&str>, value: &str) -> Result<Condition, String> {
    let net: IpNet = value
        .parse()
        .map_err(|_| format!("value: {value:?} is not a CIDR"))?;
    let test = match kind.unwrap_or("Exact") {
        "Exact" => Test::Within(net),
        "Distinct" => Test::Distinct(Some(net)),
        other => return Err(format!("type: {other:?} is not Exact or Distinct")),
    };
    Ok(Condition {
        of: Field::Client,
        test,
        invert: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(rules: &str) -> (RateLimit, Vec<Finding>) {
        let yaml = format!(
            "apiVersion: policy.strait.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}}]\n  local:\n    rules:\n{rules}"
        );
        let set = strait_config::parse_text(std::path::Path::new("p.yaml"), &yaml);
        assert!(set.problems.is_empty(), "{:?}", set.problems);
        let Resource::RateLimitPolicy(p) = &*set.documents[0].resource else {
            panic!("not a RateLimitPolicy");
        };
        compile_policy(p, &set.documents, &mut 0)
    }

    static ROUTE: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| "shop/r".into());

    fn request<'a>(headers: &'a HeaderMap, claims: Option<&'a Map<String, Value>>) -> Request<'a> {
        Request {
            headers,
            method: &Method::GET,
            client: "192.0.2.7".parse().expect("ip"),
            claims,
            api_key_client: None,
            identity: None,
            route: &ROUTE,
        }
    }

    #[test]
    fn keys_name_the_route_and_each_distinct_value() {
        let (p, errors) = compiled(
            "    - name: ceiling\n      limit: {requests: 9, unit: Second}\n    - name: per-user\n      clientSelectors: [{headers: [{name: x-user, type: Distinct}]}]\n      limit: {requests: 2, unit: Minute}\n    - name: all\n      shared: true\n      clientSelectors: [{sourceCIDR: {value: 192.0.2.0/24}}]\n      limit: {requests: 5, unit: Hour}\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<&str> = p.rules.iter().map(|r| &*r.name).collect();
        assert_eq!(names, ["per-user", "ceiling", "all"], "per-caller first");
        let mut h = HeaderMap::new();
        let req = request(&h, None);
        assert!(p.rules[0].key(&req).is_none(), "no x-user: not counted");
        assert_eq!(
            p.rules[1].key(&req).as_ref().map(Key::as_str),
            Some("shop/r")
        );
        assert_eq!(
            p.rules[2].key(&req).as_ref().map(Key::as_str),
            Some("\u{1f}0"),
            "shared: no route"
        );
        h.insert("x-user", "alice".parse().expect("value"));
        let alice = p.rules[0].key(&request(&h, None));
        assert_eq!(
            alice.as_ref().map(Key::as_str),
            Some("shop/r\u{1f}0\u{1f}alice")
        );
        assert_eq!(&*p.rules[0].keyed_by, "header");
        assert_eq!(&*p.rules[2].keyed_by, "policy");
        assert_eq!(p.rules[1].policy_header, "\"ceiling\";q=9;w=1");
    }

    #[test]
    fn a_selector_matches_by_every_field_and_inverts() {
        let (p, errors) = compiled(
            "    - clientSelectors:\n      - methods: [{value: POST, invert: true}]\n        jwtClaims: [{name: tier, value: '1'}, {name: sub, type: Distinct}]\n      limit: {requests: 1, unit: Day}\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let h = HeaderMap::new();
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"tier": 1, "sub": "alice"}"#).expect("json");
        let rule = &p.rules[0];
        assert_eq!(
            rule.key(&request(&h, Some(&claims)))
                .as_ref()
                .map(Key::as_str),
            Some("shop/r\u{1f}0\u{1f}alice"),
            "a number claim matches its text"
        );
        assert!(
            rule.key(&request(&h, None)).is_none(),
            "no token, no claims"
        );
        let mut post = request(&h, Some(&claims));
        post.method = &Method::POST;
        assert!(rule.key(&post).is_none(), "inverted method");
        assert_eq!(&*rule.keyed_by, "claim");
    }

    #[test]
    fn bad_rules_are_refused_by_field_path_and_limit_nothing() {
        let (p, errors) = compiled(
            "    - name: bad name\n      limit: {requests: 1, unit: Second}\n    - clientSelectors: [{sourceCIDR: {type: Distinct, value: nope}}, {}]\n      limit: {requests: 1, unit: Second, burst: 0}\n",
        );
        assert!(p.rules.is_empty(), "a broken policy limits nothing");
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.local.rules[0].name",
                "spec.local.rules[1].limit",
                "spec.local.rules[1].clientSelectors[0].sourceCIDR",
                "spec.local.rules[1].clientSelectors[1]"
            ],
            "{errors:?}"
        );
    }
}
