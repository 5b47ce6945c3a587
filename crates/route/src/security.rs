//! PeerAuthentication and AuthorizationPolicy compiled for the sidecars
//! that enforce them: which mode a workload's inbound runs in, and
//! whether a caller may make a call — with the policy and rule that
//! decided, so a denied user can find out why. Evaluation follows Istio:
//! a matching DENY rule denies; with no ALLOW policy on the target the
//! call is allowed; else a matching ALLOW rule allows and nothing else
//! does. A policy with a bad field is reported with its path and fails
//! closed: it denies every call to its target.

use http::HeaderMap;
use strait_config::security::{
    AuthorizationOperation, AuthorizationPolicySpec, AuthorizationSource, PeerAuthenticationSpec,
};
use strait_config::{Document, Object, Problem, Resource};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PeerMode {
    Strict,
    Permissive,
}

impl PeerMode {
    pub fn strict(self) -> bool {
        self == PeerMode::Strict
    }
}

/// Who a policy applies to, in its namespace.
#[derive(Debug, Default)]
struct Targets {
    /// No targetRefs: every workload of the namespace.
    namespace: bool,
    workloads: Vec<String>,
    services: Vec<String>,
}

#[derive(Debug)]
struct PeerPolicy {
    namespace: String,
    targets: Targets,
    mode: PeerMode,
}

#[derive(Debug)]
struct AuthzPolicy {
    /// `namespace/name`.
    name: String,
    namespace: String,
    targets: Targets,
    deny: bool,
    /// `None`: the policy is invalid and denies everything it targets.
    rules: Option<Vec<AuthzRule>>,
}

#[derive(Debug)]
struct AuthzRule {
    from: Vec<AuthorizationSource>,
    to: Vec<AuthorizationOperation>,
}

#[derive(Debug, Default)]
pub struct SecurityTable {
    /// Oldest first.
    peer: Vec<PeerPolicy>,
    authz: Vec<AuthzPolicy>,
}

/// A call to a workload, as its sidecar sees it.
pub struct Call<'a> {
    /// The caller's SPIFFE ID, when it proved one.
    pub peer: Option<&'a str>,
    /// The claims of the request's token, when the workload's
    /// SecurityPolicy verified one.
    pub token: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// The port the caller asked for.
    pub port: u16,
    /// `None` for a TCP connection.
    pub http: Option<HttpCall<'a>>,
}

pub struct HttpCall<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// The Service the request names (`namespace`, `name`), if any.
    pub service: Option<(&'a str, &'a str)>,
}

/// The decision, and what decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No policy applies.
    Allowed,
    AllowedBy {
        policy: String,
        rule: usize,
    },
    DeniedBy {
        policy: String,
        rule: usize,
    },
    /// Invalid: fails closed.
    DeniedByInvalid {
        policy: String,
    },
    /// ALLOW policies apply and none of their rules matched.
    NotAllowed {
        policies: Vec<String>,
    },
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        matches!(self, Verdict::Allowed | Verdict::AllowedBy { .. })
    }

    /// The policy (and rule) that decided, for the answer, logs and metrics.
    pub fn policy(&self) -> String {
        match self {
            Verdict::Allowed => "-".into(),
            Verdict::AllowedBy { policy, rule } | Verdict::DeniedBy { policy, rule } => {
                format!("{policy} rule {rule}")
            }
            Verdict::DeniedByInvalid { policy } => format!("{policy} (invalid)"),
            Verdict::NotAllowed { policies } => policies.join(","),
        }
    }

    /// One line for the caller.
    pub fn explain(&self) -> String {
        match self {
            Verdict::Allowed => "allowed: no AuthorizationPolicy applies".into(),
            Verdict::AllowedBy { policy, rule } => {
                format!("allowed by AuthorizationPolicy {policy} rule {rule}")
            }
            Verdict::DeniedBy { policy, rule } => {
                format!("denied by AuthorizationPolicy {policy} rule {rule}")
            }
            Verdict::DeniedByInvalid { policy } => format!(
                "denied: AuthorizationPolicy {policy} is invalid and fails closed (see strait check)"
            ),
            Verdict::NotAllowed { policies } => format!(
                "denied: no rule of AuthorizationPolicy {} allows this call",
                policies.join(", ")
            ),
        }
    }
}

impl SecurityTable {
    pub fn new(docs: &[Document]) -> Self {
        let mut peer: Vec<(&Object<PeerAuthenticationSpec>, PeerMode)> = Vec::new();
        let mut authz = Vec::new();
        for doc in docs {
            match &*doc.resource {
                Resource::PeerAuthentication(p) => {
                    if let Some(mode) = peer_mode(&p.spec.mode) {
                        if check_targets(&p.spec.target_refs, false).is_empty() {
                            peer.push((p, mode));
                        }
                    }
                }
                Resource::AuthorizationPolicy(p) => authz.push(compile_authz(p)),
                _ => {}
            }
        }
        peer.sort_by(|a, b| {
            crate::policy::age(&a.0.metadata).cmp(&crate::policy::age(&b.0.metadata))
        });
        SecurityTable {
            peer: peer
                .into_iter()
                .map(|(p, mode)| PeerPolicy {
                    namespace: p.metadata.namespace().to_string(),
                    targets: targets(&p.spec.target_refs),
                    mode,
                })
                .collect(),
            authz,
        }
    }

    /// The workload's mode: a policy naming it, else its namespace's,
    /// else PERMISSIVE (the oldest policy wins a tie).
    pub fn peer_mode(&self, namespace: &str, workload: &str) -> PeerMode {
        let in_ns = || self.peer.iter().filter(|p| p.namespace == namespace);
        in_ns()
            .find(|p| p.targets.workloads.iter().any(|w| w == workload))
            .or_else(|| in_ns().find(|p| p.targets.namespace))
            .map_or(PeerMode::Permissive, |p| p.mode)
    }

    /// Whether any AuthorizationPolicy lives in `namespace`: without one
    /// every call there is allowed, and the request path skips the check.
    pub fn guards(&self, namespace: &str) -> bool {
        self.authz.iter().any(|p| p.namespace == namespace)
    }

    /// May `call` reach workload `namespace/workload`?
    pub fn authorize(&self, namespace: &str, workload: &str, call: &Call<'_>) -> Verdict {
        let applies = |p: &&AuthzPolicy| {
            p.namespace == namespace
                && (p.targets.namespace
                    || p.targets.workloads.iter().any(|w| w == workload)
                    || call
                        .http
                        .as_ref()
                        .and_then(|h| h.service)
                        .is_some_and(|(ns, svc)| {
                            ns == namespace && p.targets.services.iter().any(|s| s == svc)
                        }))
        };
        let policies: Vec<&AuthzPolicy> = self.authz.iter().filter(applies).collect();
        for p in &policies {
            match &p.rules {
                None => {
                    return Verdict::DeniedByInvalid {
                        policy: p.name.clone(),
                    }
                }
                Some(rules) if p.deny => {
                    if let Some(i) = rules.iter().position(|r| r.matches(&p.namespace, call)) {
                        return Verdict::DeniedBy {
                            policy: p.name.clone(),
                            rule: i,
                        };
                    }
                }
                Some(_) => {}
            }
        }
        let allow: Vec<&&AuthzPolicy> = policies.iter().filter(|p| !p.deny).collect();
        if allow.is_empty() {
            return Verdict::Allowed;
        }
        for p in &allow {
            let rules = p.rules.as_deref().unwrap_or_default();
            if let Some(i) = rules.iter().position(|r| r.matches(&p.namespace, call)) {
                return Verdict::AllowedBy {
                    policy: p.name.clone(),
                    rule: i,
                };
            }
        }
        Verdict::NotAllowed {
            policies: allow.iter().map(|p| p.name.clone()).collect(),
        }
    }
}

fn peer_mode(mode: &str) -> Option<PeerMode> {
    match mode {
        "STRICT" => Some(PeerMode::Strict),
        "PERMISSIVE" => Some(PeerMode::Permissive),
        _ => None,
    }
}

fn targets(refs: &[strait_config::backendtls::PolicyTargetRef]) -> Targets {
    let mut t = Targets {
        namespace: refs.is_empty(),
        ..Targets::default()
    };
    for r in refs {
        match (r.group.as_str(), r.kind.as_str()) {
            ("apps", "Deployment") => t.workloads.push(r.name.clone()),
            ("", "Service") => t.services.push(r.name.clone()),
            _ => {}
        }
    }
    t
}

fn compile_authz(p: &Object<AuthorizationPolicySpec>) -> AuthzPolicy {
    let valid = check_authz(&p.spec).is_empty();
    AuthzPolicy {
        name: format!("{}/{}", p.metadata.namespace(), p.metadata.name),
        namespace: p.metadata.namespace().to_string(),
        targets: targets(&p.spec.target_refs),
        deny: p.spec.action.as_deref() == Some("DENY"),
        rules: valid.then(|| {
            p.spec
                .rules
                .iter()
                .map(|r| AuthzRule {
                    from: r.from.clone(),
                    to: r.to.clone(),
                })
                .collect()
        }),
    }
}

impl AuthzRule {
    fn matches(&self, policy_ns: &str, call: &Call<'_>) -> bool {
        (self.from.is_empty()
            || self
                .from
                .iter()
                .any(|s| source_matches(s, policy_ns, call.peer) && token_matches(s, call.token)))
            && (self.to.is_empty() || self.to.iter().any(|o| operation_matches(o, call)))
    }
}

/// `(namespace, service account)` of a workload SPIFFE ID.
fn account_of(peer: &str) -> Option<(&str, &str)> {
    let rest = peer.strip_prefix("spiffe://")?;
    let mut parts = rest.split('/');
    let (_td, ns_kw, ns, sa_kw, sa) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (ns_kw == "ns" && sa_kw == "sa" && parts.next().is_none()).then_some((ns, sa))
}

fn source_matches(s: &AuthorizationSource, policy_ns: &str, peer: Option<&str>) -> bool {
    let account = peer.and_then(account_of);
    if s.unauthenticated && peer.is_some() {
        return false;
    }
    if !s.principals.is_empty()
        && !peer.is_some_and(|p| {
            s.principals
                .iter()
                .any(|want| want == "*" || want == p || p.strip_prefix("spiffe://") == Some(want))
        })
    {
        return false;
    }
    if !s.service_accounts.is_empty()
        && !account.is_some_and(|(ns, sa)| {
            s.service_accounts
                .iter()
                .any(|want| match want.split_once('/') {
                    Some((wns, wsa)) => wns == ns && wsa == sa,
                    None => policy_ns == ns && want == sa,
                })
        })
    {
        return false;
    }
    if !s.namespaces.is_empty()
        && !account.is_some_and(|(ns, _)| s.namespaces.iter().any(|w| w == ns || w == "*"))
    {
        return false;
    }
    true
}

/// A source's `requestPrincipals` and `claims`, against the request's
/// verified token (none: neither matches).
fn token_matches(
    s: &AuthorizationSource,
    token: Option<&serde_json::Map<String, serde_json::Value>>,
) -> bool {
    if s.request_principals.is_empty() && s.claims.is_empty() {
        return true;
    }
    let Some(claims) = token else {
        return false;
    };
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str());
    let principal = text("iss")
        .zip(text("sub"))
        .map(|(i, s)| format!("{i}/{s}"));
    let principal_ok = s.request_principals.is_empty()
        || principal.is_some_and(|p| s.request_principals.iter().any(|w| wildcard(w, &p)));
    principal_ok
        && s.claims
            .iter()
            .all(|c| crate::callers::claim_has(claims, &c.name, &c.values))
}

/// `*`, `prefix*`, `*suffix`, or exact.
fn wildcard(want: &str, have: &str) -> bool {
    match (want.strip_prefix('*'), want.strip_suffix('*')) {
        _ if want == "*" => true,
        (Some(suffix), _) => have.ends_with(suffix),
        (None, Some(prefix)) => have.starts_with(prefix),
        (None, None) => want == have,
    }
}

fn operation_matches(o: &AuthorizationOperation, call: &Call<'_>) -> bool {
    if !o.ports.is_empty() && !o.ports.contains(&call.port) {
        return false;
    }
    let needs_http = !o.methods.is_empty() || !o.paths.is_empty() || !o.headers.is_empty();
    let Some(http) = &call.http else {
        return !needs_http;
    };
    if !o.methods.is_empty() && !o.methods.iter().any(|m| m == http.method) {
        return false;
    }
    if !o.paths.is_empty() && !o.paths.iter().any(|p| path_matches(p, http.path)) {
        return false;
    }
    o.headers.iter().all(|h| {
        http.headers
            .get_all(h.name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| h.values.iter().any(|want| want == v))
    })
}

/// Istio's path patterns: exact, `prefix*`, `*suffix`, `*`.
fn path_matches(pattern: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    if pattern == "*" {
        true
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        path.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        path.ends_with(suffix)
    } else {
        path == pattern
    }
}

type Finding = (String, String);

fn check_targets(
    refs: &[strait_config::backendtls::PolicyTargetRef],
    services: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let ok = matches!((r.group.as_str(), r.kind.as_str()), ("apps", "Deployment"))
            || (services && r.group.is_empty() && r.kind == "Service");
        if !ok {
            out.push((
                format!("spec.targetRefs[{i}]"),
                if services {
                    "targets are {group: apps, kind: Deployment} or {group: \"\", kind: Service}"
                } else {
                    "targets are {group: apps, kind: Deployment}"
                }
                .into(),
            ));
        }
    }
    out
}

fn check_authz(spec: &AuthorizationPolicySpec) -> Vec<Finding> {
    let mut out = check_targets(&spec.target_refs, true);
    if let Some(action) = spec.action.as_deref() {
        if action != "ALLOW" && action != "DENY" {
            out.push((
                "spec.action".into(),
                format!("{action:?} is not ALLOW or DENY"),
            ));
        }
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        for (j, s) in rule.from.iter().enumerate() {
            for (k, p) in s.principals.iter().enumerate() {
                let full = if p.starts_with("spiffe://") {
                    p.clone()
                } else {
                    format!("spiffe://{p}")
                };
                if p != "*" && account_of(&full).is_none() {
                    out.push((
                        format!("spec.rules[{i}].from[{j}].principals[{k}]"),
                        format!("{p:?} is not spiffe://<trust-domain>/ns/<ns>/sa/<sa>"),
                    ));
                }
            }
            if s.unauthenticated
                && (!s.principals.is_empty()
                    || !s.service_accounts.is_empty()
                    || !s.namespaces.is_empty())
            {
                out.push((
                    format!("spec.rules[{i}].from[{j}].unauthenticated"),
                    "an unauthenticated caller has no principal, account or namespace".into(),
                ));
            }
        }
        for (j, o) in rule.to.iter().enumerate() {
            for (k, m) in o.methods.iter().enumerate() {
                if http::Method::from_bytes(m.as_bytes()).is_err() || m.to_uppercase() != *m {
                    out.push((
                        format!("spec.rules[{i}].to[{j}].methods[{k}]"),
                        format!("{m:?} is not an upper-case HTTP method"),
                    ));
                }
            }
            for (k, p) in o.paths.iter().enumerate() {
                // A `*` may stand only first or last (by char: a path may be any UTF-8).
                let inner = p.strip_prefix('*').unwrap_or(p);
                let inner = inner.strip_suffix('*').unwrap_or(inner);
                if p.is_empty() || inner.contains('*') {
                    out.push((
                        format!("spec.rules[{i}].to[{j}].paths[{k}]"),
                        format!("{p:?}: a path is exact, prefix*, *suffix or *"),
                    ));
                }
            }
            for (k, h) in o.headers.iter().enumerate() {
                if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
                    out.push((
                        format!("spec.rules[{i}].to[{j}].headers[{k}].name"),
                        format!("{:?} is not a header name", h.name),
                    ));
                }
            }
        }
    }
    out
}

/// Every security policy's problems, with file and field path.
pub(crate) fn problems(docs: &[Document], out: &mut Vec<Problem>) {
    for doc in docs {
        match &*doc.resource {
            Resource::PeerAuthentication(p) => {
                let mut found = check_targets(&p.spec.target_refs, false);
                if peer_mode(&p.spec.mode).is_none() {
                    found.push((
                        "spec.mode".into(),
                        format!("{:?} is not STRICT or PERMISSIVE", p.spec.mode),
                    ));
                }
                for (path, msg) in found {
                    out.push(Problem::error(
                        &doc.source,
                        path,
                        format!("{msg}; the policy is not applied"),
                    ));
                }
            }
            Resource::AuthorizationPolicy(p) => {
                for (path, msg) in check_authz(&p.spec) {
                    out.push(Problem::error(
                        &doc.source,
                        path,
                        format!("{msg}; the policy denies every call to its targets until fixed"),
                    ));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_principals_and_claims_match_the_verified_token_only() {
        let source: AuthorizationSource = serde_json::from_value(serde_json::json!({
            "requestPrincipals": ["https://issuer.test/*", "*@example.com"],
            "claims": [{"name": "org.groups", "values": ["admins"]}]
        }))
        .expect("source");
        let token = |v: serde_json::Value| v.as_object().cloned().expect("object");
        let good = token(
            serde_json::json!({"iss": "https://issuer.test", "sub": "alice", "org": {"groups": ["ops", "admins"]}}),
        );
        assert!(token_matches(&source, Some(&good)));
        let other_group = token(
            serde_json::json!({"iss": "https://issuer.test", "sub": "alice", "org": {"groups": "ops"}}),
        );
        assert!(!token_matches(&source, Some(&other_group)));
        let suffix = token(
            serde_json::json!({"iss": "x", "sub": "bob@example.com", "org": {"groups": "admins"}}),
        );
        assert!(token_matches(&source, Some(&suffix)));
        let no_sub =
            token(serde_json::json!({"iss": "https://issuer.test", "org": {"groups": "admins"}}));
        assert!(!token_matches(&source, Some(&no_sub)));
        assert!(!token_matches(&source, None), "no token");
        assert!(
            token_matches(&AuthorizationSource::default(), None),
            "nothing asked"
        );
        assert!(wildcard("*", "a/b") && wildcard("a/*", "a/b") && !wildcard("a/b", "a/bc"));
    }

    use super::*;
    use std::path::Path;

    fn table(yaml: &str) -> SecurityTable {
        let set = strait_config::parse_text(Path::new("p.yaml"), yaml);
        assert!(!set.has_errors(), "{:?}", set.problems);
        SecurityTable::new(&set.documents)
    }

    fn policy(name: &str, spec: &str) -> String {
        format!(
            "---\napiVersion: policy.strait.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}\n"
        )
    }

    const CHECKOUT: &str = "spiffe://cluster.local/ns/shop/sa/checkout-api";
    const OTHER_NS: &str = "spiffe://cluster.local/ns/ops/sa/debug";

    fn http<'a>(
        peer: Option<&'a str>,
        method: &'a str,
        path: &'a str,
        h: &'a HeaderMap,
    ) -> Call<'a> {
        Call {
            peer,
            token: None,
            port: 8080,
            http: Some(HttpCall {
                method,
                path,
                headers: h,
                service: Some(("shop", "payment")),
            }),
        }
    }

    #[test]
    fn evaluation_follows_deny_then_allow() {
        let h = HeaderMap::new();
        let t = table(&(policy(
            "callers",
            "  targetRefs: [{group: \"\", kind: Service, name: payment}]\n  rules:\n  - from: [{principals: [\"cluster.local/ns/shop/sa/checkout-api\"]}]\n    to: [{methods: [GET, POST], paths: [\"/pay*\"]}]\n  - from: [{namespaces: [ops]}]\n    to: [{ports: [9090]}]",
        ) + &policy("no-admin", "  action: DENY\n  rules: [{to: [{paths: [\"/admin*\"]}]}]")));
        let v = t.authorize(
            "shop",
            "payment",
            &http(Some(CHECKOUT), "POST", "/pay/1?x=1", &h),
        );
        assert_eq!(
            v,
            Verdict::AllowedBy {
                policy: "shop/callers".into(),
                rule: 0
            }
        );
        assert!(!t
            .authorize(
                "shop",
                "payment",
                &http(Some(CHECKOUT), "DELETE", "/pay", &h)
            )
            .allowed());
        let v = t.authorize(
            "shop",
            "payment",
            &http(Some(CHECKOUT), "GET", "/admin/x", &h),
        );
        assert_eq!(
            v,
            Verdict::DeniedBy {
                policy: "shop/no-admin".into(),
                rule: 0
            }
        );
        let v = t.authorize("shop", "payment", &http(None, "GET", "/pay", &h));
        assert_eq!(
            v,
            Verdict::NotAllowed {
                policies: vec!["shop/callers".into()]
            }
        );
        // The port rule: a TCP connection from ops on 9090.
        let tcp = Call {
            peer: Some(OTHER_NS),
            token: None,
            port: 9090,
            http: None,
        };
        assert!(t.authorize("shop", "payment", &tcp).allowed());
        // Another workload of the namespace has only the DENY policy.
        assert_eq!(
            t.authorize(
                "shop",
                "cart",
                &Call {
                    peer: None,
                    token: None,
                    port: 80,
                    http: None
                }
            ),
            Verdict::Allowed
        );
    }

    #[test]
    fn empty_rules_deny_an_empty_rule_allows_and_bad_policies_fail_closed() {
        let h = HeaderMap::new();
        let deny_all = table(&policy("lockdown", "  rules: []"));
        assert!(!deny_all
            .authorize("shop", "x", &http(Some(CHECKOUT), "GET", "/", &h))
            .allowed());
        let allow_all = table(&policy("open", "  rules: [{}]"));
        assert!(allow_all
            .authorize("shop", "x", &http(None, "GET", "/", &h))
            .allowed());
        let set = strait_config::parse_text(
            Path::new("p.yaml"),
            &policy("bad", "  action: PERMIT\n  rules: [{}]"),
        );
        let t = SecurityTable::new(&set.documents);
        assert_eq!(
            t.authorize("shop", "x", &http(Some(CHECKOUT), "GET", "/", &h)),
            Verdict::DeniedByInvalid {
                policy: "shop/bad".into()
            }
        );
        let mut problems = Vec::new();
        super::problems(&set.documents, &mut problems);
        assert_eq!(problems[0].path, "spec.action");
    }

    #[test]
    fn a_workload_policy_beats_its_namespaces() {
        let t = table(
            "apiVersion: policy.strait.dev/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: shop}\nspec: {mode: STRICT}\n---\napiVersion: policy.strait.dev/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: legacy, namespace: shop}\nspec:\n  mode: PERMISSIVE\n  targetRefs: [{group: apps, kind: Deployment, name: legacy}]\n",
        );
        assert_eq!(t.peer_mode("shop", "payment"), PeerMode::Strict);
        assert_eq!(t.peer_mode("shop", "legacy"), PeerMode::Permissive);
        assert_eq!(t.peer_mode("other", "payment"), PeerMode::Permissive);
    }
}
