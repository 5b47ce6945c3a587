//! Fuzz-style: thousands of mutated manifests through parse, validate and
//! compile. Nothing may panic, and every problem found names where it is.
// The tests hand the compiler the clock it must not read itself.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use strait_route::{compile, CompileOptions};

const SEEDS: [&str; 5] = [
    include_str!("../../../examples/shop/gateway.yaml"),
    include_str!("../../../examples/shop/routes.yaml"),
    include_str!("../../../examples/shop/services.yaml"),
    r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{name: shop, sectionName: http, port: 8080}]
  hostnames: ["*.example.com", a.example.com]
  rules:
  - matches:
    - path: {type: RegularExpression, value: "/v[0-9]+/.*"}
      headers: [{name: x, type: RegularExpression, value: "a|b"}]
      queryParams: [{name: q, value: "1"}]
      method: GET
    filters:
    - {type: RequestRedirect, requestRedirect: {scheme: https, port: 8443, statusCode: 301, path: {type: ReplaceFullPath, replaceFullPath: /x}}}
  - filters:
    - {type: URLRewrite, urlRewrite: {hostname: b.example.com, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, fraction: {numerator: 1, denominator: 3}}}
    backendRefs: [{name: web-frontend, port: 80, weight: 2, filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: a, value: b}]}}]}]
    timeouts: {request: 10s, backendRequest: 1s}
"#,
    r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: l4, namespace: shop}
spec:
  gatewayClassName: strait
  listeners:
  - {name: tls, port: 9443, protocol: TLS, hostname: "*.example.com", tls: {mode: Passthrough}}
  - {name: tcp, port: 9000, protocol: TCP}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: t, namespace: shop}
spec:
  parentRefs: [{name: l4, sectionName: tls}]
  hostnames: [a.example.com]
  rules: [{backendRefs: [{name: web-frontend, port: 80, weight: 3}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: c, namespace: shop}
spec:
  parentRefs: [{name: l4, port: 9000}]
  rules: [{backendRefs: [{name: product-api, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: p, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: web-frontend, sectionName: http}]
  validation:
    caCertificateRefs: [{group: "", kind: ConfigMap, name: ca}]
    hostname: web.shop.svc
    subjectAltNames: [{type: Hostname, hostname: web.example.com}, {type: URI, uri: "spiffe://x/y"}]
---
apiVersion: policy.strait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: t, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: product-api}]
  loadBalancer: {type: ConsistentHash, consistentHash: {cookie: session}}
  circuitBreaker: {maxRequests: 100, maxConnections: 10, maxPendingRequests: 5}
  outlierDetection: {consecutiveFailures: 3, baseEjectionTime: 10s, maxEjectionPercent: 50}
  retryBudget: {percent: 25, minRetriesPerSecond: 5, interval: 10s}
---
apiVersion: policy.strait.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec: {mode: STRICT, targetRefs: [{group: apps, kind: Deployment, name: payment}]}
---
apiVersion: policy.strait.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: a, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: payment}]
  action: ALLOW
  rules:
  - from: [{principals: ["cluster.local/ns/shop/sa/x"], serviceAccounts: [shop/checkout-api], namespaces: [shop]}, {unauthenticated: true}]
    to: [{ports: [80], methods: [GET], paths: ["/pay*", "*.png"], headers: [{name: x-a, values: [b]}]}]
"#,
];

fn mutate(rng: &mut fastrand::Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.usize(1..4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.usize(..bytes.len());
        match rng.u8(..5) {
            0 => bytes[at] = rng.u8(..),
            1 => {
                let end = (at + rng.usize(1..20)).min(bytes.len());
                bytes.drain(at..end);
            }
            2 => {
                let end = (at + rng.usize(1..40)).min(bytes.len());
                let chunk = bytes[at..end].to_vec();
                let to = rng.usize(..bytes.len());
                bytes.splice(to..to, chunk);
            }
            3 => bytes.truncate(at),
            _ => {
                let token: &[u8] = [
                    &b"{"[..],
                    b"]",
                    b": ",
                    b"\n  ",
                    b"- ",
                    b"&a ",
                    b"*a",
                    b"!!binary ",
                    b"'",
                    b"\"",
                ][rng.usize(..10)];
                bytes.splice(at..at, token.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn mutated_manifests_never_panic() {
    let mut rng = fastrand::Rng::with_seed(0x0574_7a17);
    let options = CompileOptions::default();
    let mut parsed = 0;
    for round in 0..4000 {
        let seed = SEEDS[round % SEEDS.len()];
        let mut text = mutate(&mut rng, seed);
        if round % 4 == 0 {
            // Several documents, as a real folder would have.
            text = format!("{}\n---\n{}\n---\n{text}", SEEDS[0], SEEDS[2]);
        }
        let set = strait_config::parse_text(Path::new("fuzz.yaml"), &text);
        if !set.has_errors() {
            parsed += 1;
        }
        let (snapshot, problems) = compile(&set.documents, &options, std::time::SystemTime::now());
        for p in set.problems.iter().chain(&problems) {
            let said = p.to_string();
            assert!(
                said.starts_with("fuzz.yaml"),
                "a problem without its place: {said}"
            );
        }
        let _ = snapshot.describe();
    }
    // The mutations must not all be rejected at the YAML stage, or the
    // compile stage would go untested.
    assert!(parsed > 400, "only {parsed} mutated sets parsed");
}

/// Values that have tripped parsers: non-ASCII next to wildcards, empty,
/// lone wildcards, separators, control characters, huge and signed numbers.
const ODD: [&str; 14] = [
    "é*",
    "*é",
    "a*é*",
    "ü/ß",
    "\u{1F600}",
    "",
    "*",
    "**",
    ":",
    "/../",
    "\t\r\n",
    "-1",
    "99999999999999999999",
    "%00",
];

/// Every scalar leaf of a document, by its path of keys and indexes.
fn leaves(value: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                path.push(k.clone());
                leaves(v, path, out);
                path.pop();
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                leaves(v, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn set(value: &mut serde_json::Value, path: &[String], odd: &str) {
    let pointer = format!("/{}", path.join("/").replace('~', "~0"));
    if let Some(leaf) = value.pointer_mut(&pointer) {
        *leaf = serde_json::Value::String(odd.to_string());
    }
}

#[test]
fn odd_strings_in_every_field_never_panic() {
    let options = CompileOptions::default();
    let mesh = include_str!("../../../examples/shop/mesh.yaml");
    let mut tried = 0;
    for seed in SEEDS.iter().chain([&mesh]) {
        let docs: Vec<serde_json::Value> = strait_config::split_text(Path::new("seed.yaml"), seed)
            .expect("seeds are valid YAML")
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        for (d, doc) in docs.iter().enumerate() {
            let mut paths = Vec::new();
            leaves(doc, &mut Vec::new(), &mut paths);
            for path in &paths {
                for odd in ODD {
                    let mut changed = docs.clone();
                    set(&mut changed[d], path, odd);
                    // JSON is YAML: the odd value arrives exactly as written.
                    let text: Vec<String> = changed.iter().map(|v| v.to_string()).collect();
                    let set =
                        strait_config::parse_text(Path::new("odd.yaml"), &text.join("\n---\n"));
                    let (snapshot, _) =
                        compile(&set.documents, &options, std::time::SystemTime::now());
                    let _ = snapshot.describe();
                    tried += 1;
                }
            }
        }
    }
    assert!(tried > 5_000, "only {tried} variants");
}
