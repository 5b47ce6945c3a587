//! A SecurityPolicy's `authorization`: who may call once the request's
//! credentials checked out — by the client's address, by the claims and
//! scopes of its token. Rules are tried in order and the first whose
//! principal matches decides; when none does, the default action
//! (`Deny` unless said otherwise, Envoy Gateway's default).

use ipnet::IpNet;
use serde_json::{Map, Value};
use std::net::IpAddr;
use strait_config::auth::{Authorization, Principal};

type Finding = (String, String);

#[derive(Debug)]
pub struct Callers {
    rules: Vec<CallerRule>,
    default_allow: bool,
}

#[derive(Debug)]
struct CallerRule {
    /// Its `name`, else `rules[i]`.
    name: String,
    allow: bool,
    cidrs: Vec<IpNet>,
    jwt: Option<JwtMatch>,
}

#[derive(Debug)]
struct JwtMatch {
    provider: String,
    claims: Vec<(Vec<String>, Vec<String>)>,
    scopes: Vec<String>,
}

/// What the request brings to be judged by.
pub struct Caller<'a> {
    /// `None`: not known (a forwarded address that does not parse); no
    /// address block holds it.
    pub address: Option<IpAddr>,
    /// The verified token's provider and claims.
    pub jwt: Option<(&'a str, &'a Map<String, Value>)>,
}

/// The decision, and what made it, in words.
#[derive(Debug, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub why: String,
}

impl Callers {
    pub fn decide(&self, caller: &Caller<'_>) -> Decision {
        let address = caller.address.map(|a| a.to_canonical());
        let at = address.map_or_else(|| "an unknown address".to_string(), |a| a.to_string());
        for rule in &self.rules {
            if rule.matches(address, caller.jwt) {
                let verb = if rule.allow { "allows" } else { "denies" };
                return Decision {
                    allowed: rule.allow,
                    why: format!("rule {} {verb} the caller at {at}", rule.name),
                };
            }
        }
        let verb = if self.default_allow { "Allow" } else { "Deny" };
        Decision {
            allowed: self.default_allow,
            why: format!("no rule matches the caller at {at}: default {verb}"),
        }
    }
}

impl CallerRule {
    fn matches(&self, address: Option<IpAddr>, jwt: Option<(&str, &Map<String, Value>)>) -> bool {
        let within = |a: IpAddr| self.cidrs.iter().any(|n| n.contains(&a));
        let cidrs = self.cidrs.is_empty() || address.is_some_and(within);
        let token = match (&self.jwt, jwt) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(want), Some((provider, claims))) => want.matches(provider, claims),
        };
        cidrs && token
    }
}

impl JwtMatch {
    fn matches(&self, provider: &str, claims: &Map<String, Value>) -> bool {
        provider == self.provider
            && self.claims.iter().all(|(path, values)| {
                claim(claims, path).is_some_and(|v| texts(v).iter().any(|t| values.contains(t)))
            })
            && self
                .scopes
                .iter()
                .all(|s| scopes(claims).contains(&s.as_str()))
    }
}

/// Whether claim `name` (nested as `a.b`) has one of `values`, as text.
pub fn claim_has(claims: &Map<String, Value>, name: &str, values: &[String]) -> bool {
    let path: Vec<String> = name.split('.').map(str::to_string).collect();
    claim(claims, &path).is_some_and(|v| texts(v).iter().any(|t| values.contains(t)))
}

fn claim<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(claims.get(first)?, |v, key| v.as_object()?.get(key))
}

/// A claim's values as text: a string, a number or a boolean, or each of
/// a list's.
fn texts(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Number(_) | Value::Bool(_) => vec![v.to_string()],
        Value::Array(items) => items.iter().flat_map(texts).collect(),
        _ => Vec::new(),
    }
}

/// OAuth scopes: `scope` space-separated (RFC 8693 §4.2), or `scp`, a
/// list or (Microsoft's) space-separated.
fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace()),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// `providers`: the names the policy's `jwt` has, which a rule may name.
pub(crate) fn compile(
    spec: &Authorization,
    providers: &[&str],
    at: &str,
) -> Result<Callers, Vec<Finding>> {
    let mut errors = Vec::new();
    let default_allow = match spec.default_action.as_deref() {
        None | Some("Deny") => false,
        Some("Allow") => true,
        Some(other) => {
            errors.push((
                format!("{at}.defaultAction"),
                format!("{other:?} is not Allow or Deny"),
            ));
            false
        }
    };
    let mut rules = Vec::new();
    for (i, r) in spec.rules.iter().enumerate() {
        let rat = format!("{at}.rules[{i}]");
        let allow = match r.action.as_str() {
            "Allow" => true,
            "Deny" => false,
            other => {
                errors.push((
                    format!("{rat}.action"),
                    format!("{other:?} is not Allow or Deny"),
                ));
                continue;
            }
        };
        match principal(&r.principal, providers, &format!("{rat}.principal")) {
            Ok((cidrs, jwt)) => rules.push(CallerRule {
                name: r.name.clone().unwrap_or_else(|| format!("rules[{i}]")),
                allow,
                cidrs,
                jwt,
            }),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Callers {
        rules,
        default_allow,
    })
}

fn principal(
    p: &Principal,
    providers: &[&str],
    at: &str,
) -> Result<(Vec<IpNet>, Option<JwtMatch>), Vec<Finding>> {
    let mut errors = Vec::new();
    let mut cidrs = Vec::new();
    for (c, text) in p.client_cidrs.iter().enumerate() {
        // A bare address is its own /32 or /128.
        let parsed = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => cidrs.push(net.trunc()),
            Err(_) => errors.push((
                format!("{at}.clientCIDRs[{c}]"),
                format!("{text:?} is not an address block (10.0.0.0/8, 2001:db8::/32)"),
            )),
        }
    }
    let jwt = p.jwt.as_ref().map(|j| JwtMatch {
        provider: j.provider.clone(),
        claims: j
            .claims
            .iter()
            .map(|c| {
                (
                    c.name.split('.').map(str::to_string).collect(),
                    c.values.clone(),
                )
            })
            .collect(),
        scopes: j.scopes.clone(),
    });
    if let Some(j) = &jwt {
        if !providers.contains(&j.provider.as_str()) {
            errors.push((
                format!("{at}.jwt.provider"),
                format!("the policy's jwt has no provider {:?}", j.provider),
            ));
        }
    }
    if p.client_cidrs.is_empty() && p.jwt.is_none() {
        errors.push((at.to_string(), "names no clientCIDRs and no jwt".into()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok((cidrs, jwt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_config::auth::{AuthorizationRule, JwtClaim, JwtPrincipal};

    fn rule(
        name: &str,
        action: &str,
        cidrs: &[&str],
        jwt: Option<JwtPrincipal>,
    ) -> AuthorizationRule {
        AuthorizationRule {
            name: Some(name.into()),
            action: action.into(),
            principal: Principal {
                client_cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
                jwt,
            },
        }
    }

    fn claims(json: Value) -> Map<String, Value> {
        json.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_first_matching_rule_decides_then_the_default() {
        let admins = JwtPrincipal {
            provider: "issuer".into(),
            claims: vec![JwtClaim {
                name: "org.groups".into(),
                values: vec!["admins".into()],
            }],
            scopes: vec!["write".into()],
        };
        let spec = Authorization {
            default_action: None,
            rules: vec![
                rule("blocked", "Deny", &["10.1.0.0/16"], None),
                rule("office", "Allow", &["10.0.0.0/8", "::1"], None),
                rule("admins", "Allow", &[], Some(admins)),
            ],
        };
        let callers = compile(&spec, &["issuer"], "spec.authorization").expect("compiled");
        let at = |ip: &str| Caller {
            address: ip.parse().ok(),
            jwt: None,
        };
        assert!(!callers.decide(&at("10.1.2.3")).allowed, "denied first");
        let d = callers.decide(&at("10.2.0.1"));
        assert_eq!(d.why, "rule office allows the caller at 10.2.0.1");
        assert!(
            callers.decide(&at("::ffff:10.2.0.1")).allowed,
            "mapped IPv4"
        );
        assert!(callers.decide(&at("::1")).allowed);
        let d = callers.decide(&at("192.0.2.1"));
        assert!(!d.allowed);
        assert!(d.why.contains("default Deny"), "{}", d.why);
        let d = callers.decide(&at("unknown"));
        assert_eq!(
            d.why,
            "no rule matches the caller at an unknown address: default Deny"
        );
        let admin = claims(
            serde_json::json!({"org": {"groups": ["staff", "admins"]}, "scope": "read write"}),
        );
        let reader = claims(serde_json::json!({"org": {"groups": ["admins"]}, "scope": "read"}));
        let azure = claims(serde_json::json!({"org": {"groups": ["admins"]}, "scp": "read write"}));
        for (provider, c, allowed) in [
            ("issuer", &admin, true),
            ("issuer", &azure, true),
            ("issuer", &reader, false),
            ("other", &admin, false),
        ] {
            let caller = Caller {
                address: "192.0.2.1".parse().ok(),
                jwt: Some((provider, c)),
            };
            assert_eq!(callers.decide(&caller).allowed, allowed, "{provider} {c:?}");
        }
    }

    #[test]
    fn bad_fields_are_errors_with_their_paths() {
        let spec = Authorization {
            default_action: Some("Maybe".into()),
            rules: vec![
                rule("a", "Allow", &["10.0.0.0/33"], None),
                rule("b", "Permit", &["10.0.0.0/8"], None),
                rule("c", "Allow", &[], None),
                rule(
                    "d",
                    "Allow",
                    &[],
                    Some(JwtPrincipal {
                        provider: "nobody".into(),
                        ..Default::default()
                    }),
                ),
            ],
        };
        let errors = compile(&spec, &["issuer"], "spec.authorization").expect_err("errors");
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.authorization.defaultAction",
                "spec.authorization.rules[0].principal.clientCIDRs[0]",
                "spec.authorization.rules[1].action",
                "spec.authorization.rules[2].principal",
                "spec.authorization.rules[3].principal.jwt.provider",
            ]
        );
    }
}
