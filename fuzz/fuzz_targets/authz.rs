//! Random AuthorizationPolicies against random calls. strait's verdict
//! must be the one the policy model gives, computed here a second way
//! (Istio's words): a DENY policy with a matching rule denies; else if
//! ALLOW policies apply, one of their rules must match; else allowed. A
//! rule matches when one of its sources and one of its operations do
//! (an empty list matches all); every field set in one must match.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use strait_config::Source;
use strait_route::security::{Call, HttpCall, SecurityTable};

const PEERS: [&str; 4] = [
    "spiffe://td/ns/shop/sa/web",
    "spiffe://td/ns/shop/sa/api",
    "spiffe://td/ns/other/sa/web",
    "spiffe://td/ns/shop/sa/web/extra",
];
const PRINCIPALS: [&str; 4] = [
    "*",
    "td/ns/shop/sa/web",
    "spiffe://td/ns/other/sa/web",
    "td/ns/shop/sa/api",
];
const ACCOUNTS: [&str; 3] = ["web", "other/web", "api"];
const NAMESPACES: [&str; 3] = ["shop", "other", "*"];
const METHODS: [&str; 3] = ["GET", "POST", "DELETE"];
const PATHS: [&str; 7] = ["/", "/admin", "/admin/x", "/api/v1", "*", "/admin*", "*/x"];
const REQUEST_PATHS: [&str; 6] = [
    "/",
    "/admin",
    "/admin/x",
    "/api/v1",
    "/api/v1?x=/admin",
    "/x",
];
const HEADERS: [&str; 2] = ["x-a", "x-b"];
const VALUES: [&str; 3] = ["1", "2", "3"];
const PORTS: [u16; 2] = [80, 8080];

fn pick<T: Copy>(list: &[T], i: u8) -> T {
    list[i as usize % list.len()]
}

#[derive(Arbitrary, Debug)]
struct Src {
    principals: Vec<u8>,
    accounts: Vec<u8>,
    namespaces: Vec<u8>,
    unauthenticated: bool,
}

#[derive(Arbitrary, Debug)]
struct Op {
    ports: Vec<u8>,
    methods: Vec<u8>,
    paths: Vec<u8>,
    headers: Vec<(u8, Vec<u8>)>,
}

#[derive(Arbitrary, Debug)]
struct Rule {
    from: Vec<Src>,
    to: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
struct Policy {
    deny: bool,
    rules: Vec<Rule>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    policies: Vec<Policy>,
    peer: Option<u8>,
    port: u8,
    http: Option<(u8, u8, Vec<(u8, u8)>)>,
}

fn few<T: Copy>(list: &[T], ix: &[u8]) -> Vec<T> {
    ix.iter().take(3).map(|&i| pick(list, i)).collect()
}

fn policy_json(n: usize, p: &Policy) -> Value {
    let rules: Vec<Value> = p
        .rules
        .iter()
        .take(3)
        .map(|r| {
            let from: Vec<Value> = r
                .from
                .iter()
                .take(2)
                .map(|s| {
                    // Invalid combinations fail closed; keep the input valid so
                    // that the model and strait both read it.
                    let unauth = s.unauthenticated
                        && s.principals.is_empty()
                        && s.accounts.is_empty()
                        && s.namespaces.is_empty();
                    json!({"principals": few(&PRINCIPALS, &s.principals),
                       "serviceAccounts": few(&ACCOUNTS, &s.accounts),
                       "namespaces": few(&NAMESPACES, &s.namespaces),
                       "unauthenticated": unauth})
                })
                .collect();
            let to: Vec<Value> =
                r.to.iter()
                    .take(2)
                    .map(|o| {
                        let headers: Vec<Value> = o.headers.iter().take(2).map(|(h, vs)| {
                    json!({"name": pick(&HEADERS, *h), "values": few(&VALUES, vs)})
                }).collect();
                        json!({"ports": few(&PORTS, &o.ports), "methods": few(&METHODS, &o.methods),
                       "paths": few(&PATHS, &o.paths), "headers": headers})
                    })
                    .collect();
            json!({"from": from, "to": to})
        })
        .collect();
    json!({"apiVersion": "policy.strait.dev/v1alpha1", "kind": "AuthorizationPolicy",
           "metadata": {"name": format!("p{n}"), "namespace": "shop"},
           "spec": {"action": if p.deny {"DENY"} else {"ALLOW"}, "rules": rules}})
}

struct Req<'a> {
    peer: Option<&'a str>,
    port: u16,
    http: Option<(&'a str, &'a str, Vec<(&'a str, &'a str)>)>,
}

fn path_model(pattern: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or("");
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        _ if pattern == "*" => true,
        (_, Some(prefix)) => path.starts_with(prefix),
        (Some(suffix), _) => path.ends_with(suffix),
        _ => path == pattern,
    }
}

fn account(peer: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = peer.strip_prefix("spiffe://")?.split('/').collect();
    match parts.as_slice() {
        [_, "ns", ns, "sa", sa] => Some((ns, sa)),
        _ => None,
    }
}

fn source_model(s: &Value, req: &Req) -> bool {
    let list = |k: &str| -> Vec<String> {
        s[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let acct = req.peer.and_then(account);
    let principals = list("principals");
    let accounts = list("serviceAccounts");
    let namespaces = list("namespaces");
    (!s["unauthenticated"].as_bool().unwrap() || req.peer.is_none())
        && (principals.is_empty()
            || req.peer.is_some_and(|p| {
                principals
                    .iter()
                    .any(|w| w == "*" || *w == p || format!("spiffe://{w}") == p)
            }))
        && (accounts.is_empty()
            || acct.is_some_and(|(ns, sa)| {
                accounts.iter().any(|w| match w.split_once('/') {
                    Some((wns, wsa)) => wns == ns && wsa == sa,
                    None => ns == "shop" && w == sa,
                })
            }))
        && (namespaces.is_empty()
            || acct.is_some_and(|(ns, _)| namespaces.iter().any(|w| w == ns || w == "*")))
}

fn op_model(o: &Value, req: &Req) -> bool {
    let strs = |k: &str| -> Vec<String> {
        o[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let ports: Vec<u64> = o["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let headers = o["headers"].as_array().unwrap();
    if !ports.is_empty() && !ports.contains(&(req.port as u64)) {
        return false;
    }
    let (methods, paths) = (strs("methods"), strs("paths"));
    let Some((method, path, have)) = &req.http else {
        return methods.is_empty() && paths.is_empty() && headers.is_empty();
    };
    (methods.is_empty() || methods.iter().any(|m| m == method))
        && (paths.is_empty() || paths.iter().any(|p| path_model(p, path)))
        && headers.iter().all(|h| {
            let values: Vec<&str> = h["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            have.iter()
                .any(|(n, v)| *n == h["name"].as_str().unwrap() && values.contains(v))
        })
}

fn rule_model(r: &Value, req: &Req) -> bool {
    let (from, to) = (r["from"].as_array().unwrap(), r["to"].as_array().unwrap());
    (from.is_empty() || from.iter().any(|s| source_model(s, req)))
        && (to.is_empty() || to.iter().any(|o| op_model(o, req)))
}

fn model(policies: &[Value], req: &Req) -> bool {
    let matches = |p: &Value| {
        p["spec"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| rule_model(r, req))
    };
    let deny = |p: &&Value| p["spec"]["action"] == "DENY";
    if policies.iter().filter(deny).any(matches) {
        return false;
    }
    let allow: Vec<&Value> = policies.iter().filter(|p| !deny(p)).collect();
    allow.is_empty() || allow.into_iter().any(matches)
}

fuzz_target!(|input: Input| {
    let policies: Vec<Value> = input
        .policies
        .iter()
        .take(3)
        .enumerate()
        .map(|(n, p)| policy_json(n, p))
        .collect();
    let mut set = strait_config::ResourceSet::default();
    for (i, d) in policies.iter().enumerate() {
        let source = Source {
            file: std::path::Path::new("fuzz.yaml").into(),
            doc: i,
        };
        set.extend(strait_config::parse_value(&source, "", d.clone()));
    }
    assert!(set.problems.is_empty(), "{:?}", set.problems);
    assert_eq!(set.documents.len(), policies.len());
    let table = SecurityTable::new(&set.documents);
    let req = Req {
        peer: input.peer.map(|i| pick(&PEERS, i)),
        port: pick(&PORTS, input.port),
        http: input.http.as_ref().map(|(m, p, hs)| {
            let hs = hs
                .iter()
                .take(3)
                .map(|&(n, v)| (pick(&HEADERS, n), pick(&VALUES, v)))
                .collect();
            (pick(&METHODS, *m), pick(&REQUEST_PATHS, *p), hs)
        }),
    };
    let mut headers = HeaderMap::new();
    if let Some((_, _, hs)) = &req.http {
        for (n, v) in hs {
            headers.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
    }
    // No policy here names a token's principal or claims: the model
    // knows none.
    let call = Call {
        peer: req.peer,
        token: None,
        port: req.port,
        http: req.http.as_ref().map(|(m, p, _)| HttpCall {
            method: m,
            path: p,
            headers: &headers,
            service: None,
        }),
    };
    let verdict = table.authorize("shop", "web", &call);
    assert_eq!(
        verdict.allowed(),
        model(&policies, &req),
        "{verdict:?} for {:?} {:?}",
        req.peer,
        req.http
    );
    let _ = (verdict.policy(), verdict.explain());
});
