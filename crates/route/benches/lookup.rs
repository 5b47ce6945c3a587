//! Route lookup among 10,000 HTTPRoutes, and the compile that builds the
//! table: `cargo bench -p strait-route --bench lookup`.
//!
//! Two shapes of the same 10,000 routes: one per hostname (a platform's
//! many small sites: the host picks the table, then a short scan), and all
//! on one hostname with a path prefix each (one large API: the path picks
//! the rule). Each is timed for the rule matched first, the rule matched
//! last, and a path no rule takes (404), with a path of three segments:
//! a lookup tests only the rules its path could match, so for paths of
//! this length these bound every percentile a mix of requests could have.
// The compiler is handed the clock, as in the tests.
#![allow(clippy::disallowed_methods)]

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Method};
use std::hint::black_box;
use std::path::Path;
use strait_route::{compile, CompileOptions, ListenKey, RequestView, Snapshot};

const ROUTES: usize = 10_000;

const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: strait}
spec: {controllerName: strait.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: strait
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: shop}
spec: {ports: [{port: 80}]}
"#;

/// Route `i`: on its own hostname, or on `api.example.com` under `/svc-i`.
fn route(i: usize, own_host: bool) -> String {
    let (host, path) = match own_host {
        true => (format!("site-{i}.example.com"), "/".to_string()),
        false => ("api.example.com".to_string(), format!("/svc-{i}")),
    };
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: r-{i}, namespace: shop}}\n\
         spec: {{parentRefs: [{{name: gw, namespace: infra}}], hostnames: [\"{host}\"], \
         rules: [{{matches: [{{path: {{type: PathPrefix, value: \"{path}\"}}}}], \
         backendRefs: [{{name: svc, port: 80}}]}}]}}\n"
    )
}

fn manifests(own_host: bool) -> String {
    let mut text = BASE.to_string();
    for i in 0..ROUTES {
        text += &route(i, own_host);
    }
    text
}

fn snapshot(text: &str) -> Snapshot {
    let set = strait_config::parse_text(Path::new("routes.yaml"), text);
    assert!(!set.has_errors(), "{:?}", set.problems);
    let (snapshot, problems) = compile(
        &set.documents,
        &CompileOptions::default(),
        std::time::SystemTime::now(),
    );
    assert!(problems.is_empty(), "{problems:?}");
    snapshot
}

fn lookup<'a>(s: &'a Snapshot, host: &str, path: &str, headers: &HeaderMap) -> Option<&'a str> {
    let view = RequestView {
        method: &Method::GET,
        path,
        query: None,
        headers,
    };
    let at = ListenKey { ip: None, port: 80 };
    s.route(at, host, &view).map(|m| &*m.rule.route)
}

fn bench_shape(c: &mut Criterion, name: &str, own_host: bool) {
    let s = snapshot(&manifests(own_host));
    let headers = HeaderMap::new();
    let cases = match own_host {
        true => [
            ("first", "site-0.example.com", "/items/42"),
            ("last", "site-9999.example.com", "/items/42"),
            ("none", "site-10000.example.com", "/items/42"),
        ],
        false => [
            ("first", "api.example.com", "/svc-0/items/42"),
            ("last", "api.example.com", "/svc-9999/items/42"),
            ("none", "api.example.com", "/nothing/items/42"),
        ],
    };
    for (case, host, path) in cases {
        let found = lookup(&s, host, path, &headers);
        assert_eq!(found.is_some(), case != "none", "{name} {case}");
        c.bench_function(&format!("{name}/{case}"), |b| {
            b.iter(|| lookup(&s, black_box(host), black_box(path), &headers).is_some())
        });
    }
}

fn lookups(c: &mut Criterion) {
    bench_shape(c, "10k routes, a hostname each", true);
    bench_shape(c, "10k routes, one hostname, a prefix each", false);
}

fn compiles(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for (name, own_host) in [("a hostname each", true), ("one hostname", false)] {
        let text = manifests(own_host);
        let set = strait_config::parse_text(Path::new("routes.yaml"), &text);
        group.bench_function(format!("10k routes, {name}"), |b| {
            b.iter(|| {
                compile(
                    &set.documents,
                    &CompileOptions::default(),
                    std::time::SystemTime::now(),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookups, compiles);
criterion_main!(benches);
