//! Gateway API routing semantics, table-driven, from the spec's examples and
//! the conformance suite's scenarios. Each case: manifests, then requests and
//! the route/rule (or 404) they must reach.
// The tests hand the compiler the clock it must not read itself.
#![allow(clippy::disallowed_methods)]

use http::{HeaderMap, Method};
use std::path::Path;
use strait_route::{compile, CompileOptions, ListenKey, RequestView, Snapshot};

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
  - {name: foo, port: 8080, protocol: HTTP, hostname: "foo.example.com", allowedRoutes: {namespaces: {from: Same}}}
  - {name: wild, port: 8080, protocol: HTTP, hostname: "*.example.com", allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: shop}}}}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: infra}
spec: {ports: [{port: 80}]}
"#;

fn snapshot(routes: &str) -> (Snapshot, Vec<strait_config::Problem>) {
    let set = strait_config::parse_text(Path::new("t.yaml"), &format!("{BASE}---\n{routes}"));
    assert!(!set.has_errors(), "{:?}", set.problems);
    compile(
        &set.documents,
        &CompileOptions::default(),
        std::time::SystemTime::now(),
    )
}

struct Req<'a> {
    port: u16,
    host: &'a str,
    method: Method,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a [(&'a str, &'a str)],
}

fn req<'a>(port: u16, host: &'a str, path: &'a str) -> Req<'a> {
    Req {
        port,
        host,
        method: Method::GET,
        path,
        query: None,
        headers: &[],
    }
}

/// `route#rule` reached, or "404".
fn hit(s: &Snapshot, r: &Req) -> String {
    let mut headers = HeaderMap::new();
    for (k, v) in r.headers {
        headers.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    let view = RequestView {
        method: &r.method,
        path: r.path,
        query: r.query,
        headers: &headers,
    };
    match s.route(
        ListenKey {
            ip: None,
            port: r.port,
        },
        r.host,
        &view,
    ) {
        Some(m) => format!("{}#{}", m.rule.route, m.rule.index),
        None => "404".into(),
    }
}

#[test]
fn path_precedence_across_routes() {
    let (s, problems) = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: shop}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: http}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: svc, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b, namespace: shop}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: http}]
  rules:
  - matches: [{path: {type: Exact, value: /api/exact}}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: version, value: two}]}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}, method: POST}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}, queryParams: [{name: q, value: "1"}]}]
    backendRefs: [{name: svc, port: 80}]
"#,
    );
    assert!(problems.is_empty(), "{problems:?}");
    let cases: Vec<(Req, &str)> = vec![
        (req(80, "any.host", "/"), "shop/a#0"),
        (req(80, "any.host", "/apix"), "shop/a#0"),
        (req(80, "any.host", "/api/x"), "shop/a#1"),
        (req(80, "any.host", "/api/exact"), "shop/b#0"),
        (
            Req {
                headers: &[("version", "two")],
                method: Method::POST,
                ..req(80, "h", "/api")
            },
            "shop/b#2",
        ),
        (
            Req {
                headers: &[("version", "two")],
                ..req(80, "h", "/api")
            },
            "shop/b#1",
        ),
        (
            Req {
                query: Some("q=1"),
                ..req(80, "h", "/api")
            },
            "shop/b#3",
        ),
        (
            Req {
                query: Some("q=2"),
                ..req(80, "h", "/api")
            },
            "shop/a#1",
        ),
    ];
    for (r, want) in cases {
        assert_eq!(
            hit(&s, &r),
            want,
            "{} {} {:?} {:?}",
            r.method,
            r.path,
            r.query,
            r.headers
        );
    }
}

#[test]
fn listeners_and_hostnames() {
    let (s, problems) = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: exact, namespace: infra}
spec:
  parentRefs: [{name: gw, port: 8080}]
  rules: [{backendRefs: [{name: other, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wild, namespace: shop}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: wild}]
  hostnames: ["bar.example.com", "*.sub.example.com", "unrelated.org"]
  rules: [{backendRefs: [{name: svc, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: refused, namespace: shop}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: foo}]
  rules: [{backendRefs: [{name: svc, port: 80}]}]
"#,
    );
    let cases = [
        ("foo.example.com", "infra/exact#0"),
        ("bar.example.com", "shop/wild#0"),
        ("x.sub.example.com", "shop/wild#0"),
        ("baz.example.com", "404"),
        ("example.com", "404"),
        ("unrelated.org", "404"),
    ];
    for (host, want) in cases {
        assert_eq!(hit(&s, &req(8080, host, "/")), want, "{host}");
    }
    // The infra route listed no sectionName but port 8080: it may attach only
    // where allowed (Same namespace: foo), not to the Selector listener.
    let refused = problems
        .iter()
        .find(|p| p.source.doc > 0 && p.message.contains("allowedRoutes"));
    assert!(refused.is_some(), "{problems:?}");
    let status = s
        .routes
        .iter()
        .find(|r| r.name == "refused")
        .expect("status");
    assert_eq!(
        status.parents[0].conditions[0].reason,
        "NotAllowedByListeners"
    );
}

#[test]
fn backends_weights_and_grants() {
    let (s, problems) = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: [{path: {value: /cross}}]
    backendRefs: [{name: svc, namespace: shop, port: 80}]
  - matches: [{path: {value: /weights}}]
    backendRefs: [{name: other, port: 80, weight: 0}, {name: other, port: 80, weight: 3}, {name: missing, port: 80}]
"#,
    );
    let rule = |path: &str| {
        let headers = HeaderMap::new();
        let view = RequestView {
            method: &Method::GET,
            path,
            query: None,
            headers: &headers,
        };
        s.route(ListenKey { ip: None, port: 80 }, "h", &view)
            .expect("matched")
            .rule
            .clone()
    };
    let cross = rule("/cross");
    assert!(matches!(
        cross.backends[0].target,
        strait_route::BackendTarget::Invalid(_)
    ));
    assert!(problems
        .iter()
        .any(|p| p.path == "spec.rules[0].backendRefs[0]" && p.message.contains("ReferenceGrant")));
    let weights = rule("/weights");
    assert_eq!(weights.total_weight, 4);
    let picks: Vec<usize> = (0..4u64)
        .map(|roll| {
            weights
                .backends
                .iter()
                .position(|b| std::ptr::eq(b, weights.pick(roll).expect("pick")))
                .expect("pos")
        })
        .collect();
    assert_eq!(
        picks,
        [1, 1, 1, 2],
        "weight 0 never picked; missing backend keeps its share"
    );

    let (s, problems) = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow, namespace: shop}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: infra}]
  to: [{group: "", kind: Service}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules: [{backendRefs: [{name: svc, namespace: shop, port: 80}]}]
"#,
    );
    assert!(problems.is_empty(), "{problems:?}");
    // Every Service port is a cluster (a mesh destination), used or not.
    let names: Vec<&str> = s.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["infra/other:80", "shop/svc:80"]);
}

#[test]
fn invalid_route_is_rejected_alone() {
    let (s, problems) = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/(unclosed"}}]
    backendRefs: [{name: other, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: good, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules: [{matches: [{path: {value: /good}}], backendRefs: [{name: other, port: 80}]}]
"#,
    );
    assert_eq!(hit(&s, &req(80, "h", "/good")), "infra/good#0");
    assert_eq!(hit(&s, &req(80, "h", "/unclosed")), "404");
    let p = problems.iter().find(|p| p.is_error()).expect("a problem");
    assert_eq!(p.path, "spec.rules[0].matches[0].path.value");
    assert_eq!(p.source.doc, 6, "the bad route is the 6th document");
    let bad = s.routes.iter().find(|r| r.name == "bad").expect("status");
    assert!(!bad.parents[0].conditions[0].status);
}

#[test]
fn endpoints_from_slices() {
    let (s, problems) = snapshot(
        r#"
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: infra}
spec:
  ports:
  - {name: http, port: 80, appProtocol: kubernetes.io/h2c}
  - {name: admin, port: 9000}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: multi-a, namespace: infra, labels: {kubernetes.io/service-name: multi}}
addressType: IPv4
endpoints:
- addresses: ["10.0.0.1"]
- addresses: ["10.0.0.2"]
  conditions: {ready: false}
ports: [{name: http, port: 8080}, {name: admin, port: 9090}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: multi-b, namespace: infra, labels: {kubernetes.io/service-name: multi}}
addressType: IPv6
endpoints: [{addresses: ["::1"], conditions: {ready: true}}]
ports: [{name: http, port: 8081}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: elsewhere, namespace: shop, labels: {kubernetes.io/service-name: multi}}
endpoints: [{addresses: ["10.9.9.9"]}]
ports: [{name: http, port: 1}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: single, namespace: infra, labels: {kubernetes.io/service-name: other}}
endpoints: [{addresses: ["10.0.0.3"]}]
ports: [{port: 7000}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: [{path: {value: /http}}]
    backendRefs: [{name: multi, port: 80}]
  - matches: [{path: {value: /admin}}]
    backendRefs: [{name: multi, port: 9000}]
  - matches: [{path: {value: /single}}]
    backendRefs: [{name: other, port: 80}]
  - matches: [{path: {value: /noport}}]
    backendRefs: [{name: other, port: 81}]
"#,
    );
    let cluster = |path: &str| {
        let headers = HeaderMap::new();
        let view = RequestView {
            method: &Method::GET,
            path,
            query: None,
            headers: &headers,
        };
        let m = s
            .route(ListenKey { ip: None, port: 80 }, "h", &view)
            .expect("matched");
        match &m.rule.backends[0].target {
            strait_route::BackendTarget::Cluster(c) => Ok(c.clone()),
            strait_route::BackendTarget::Invalid(why) => Err(why.clone()),
        }
    };
    let http = cluster("/http").expect("cluster");
    let eps: Vec<String> = http.endpoints.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        eps,
        ["10.0.0.1:8080", "[::1]:8081"],
        "by port name, ready only, own namespace only"
    );
    assert_eq!(http.protocol, strait_route::UpstreamProtocol::H2c);
    let admin = cluster("/admin").expect("cluster");
    assert_eq!(
        admin
            .endpoints
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>(),
        ["10.0.0.1:9090"]
    );
    assert_eq!(admin.protocol, strait_route::UpstreamProtocol::Http1);
    let single = cluster("/single").expect("cluster");
    assert_eq!(
        single
            .endpoints
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>(),
        ["10.0.0.3:7000"],
        "the only port"
    );
    let err = cluster("/noport").expect_err("no such port");
    assert!(err.contains("has no port 81"), "{err}");
    assert!(
        problems
            .iter()
            .any(|p| p.path == "spec.rules[3].backendRefs[0]"),
        "{problems:?}"
    );
    // The ready endpoints, in address order, with their authorities.
    let ports: Vec<_> = (0..2)
        .map(|i| http.endpoint(i).expect("endpoint").1.to_string())
        .collect();
    assert_eq!(ports, ["10.0.0.1:8080", "[::1]:8081"]);
    assert!(http.endpoint(2).is_none());
}

#[test]
fn a_prefix_with_trailing_slash_is_longer() {
    // The conformance suite's path-match-order case: `/match/` outranks `/match`.
    let (s, _) = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: [{path: {value: /match}}]
    backendRefs: [{name: other, port: 80}]
  - matches: [{path: {value: /match/}}]
    backendRefs: [{name: other, port: 80}]
"#,
    );
    assert_eq!(hit(&s, &req(80, "h", "/match/x")), "infra/r#1");
    assert_eq!(
        hit(&s, &req(80, "h", "/match")),
        "infra/r#1",
        "/match/ also matches /match, segment-wise"
    );
}

#[test]
fn an_empty_match_list_matches_every_request() {
    // Found by the route_match fuzz target: `matches: []` is no match
    // specified, which the spec makes PathPrefix `/`, as when it is left out.
    let (s, _) = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: []
    backendRefs: [{name: other, port: 80}]
"#,
    );
    assert_eq!(hit(&s, &req(80, "h", "/")), "infra/r#0");
    assert_eq!(hit(&s, &req(80, "h", "/any/path")), "infra/r#0");
}

#[test]
fn gateways_with_their_own_addresses_do_not_conflict() {
    let (s, problems) = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: second, namespace: infra}
spec:
  gatewayClassName: strait
  addresses: [{type: IPAddress, value: 10.1.2.3}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: third, namespace: infra}
spec:
  gatewayClassName: strait
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-second, namespace: infra}
spec:
  parentRefs: [{name: second}]
  rules: [{backendRefs: [{name: other, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-gw, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules: [{backendRefs: [{name: other, port: 80}]}]
"#,
    );
    let headers = HeaderMap::new();
    let view = RequestView {
        method: &Method::GET,
        path: "/",
        query: None,
        headers: &headers,
    };
    let at = |ip: Option<&str>| ListenKey {
        ip: ip.map(|i| i.parse().expect("ip")),
        port: 80,
    };
    let route = |key| s.route(key, "h", &view).map(|m| m.rule.route.to_string());
    assert_eq!(
        route(at(Some("10.1.2.3"))).as_deref(),
        Some("infra/on-second")
    );
    assert_eq!(route(at(None)).as_deref(), Some("infra/on-gw"));
    // `third` shares the default address and port with `gw`: a real conflict.
    let third = s
        .gateways
        .iter()
        .find(|g| g.name == "third")
        .expect("status");
    let conflicted = &third.listeners[0].conditions[0];
    assert_eq!(
        (conflicted.kind, conflicted.status, conflicted.reason),
        ("Conflicted", true, "HostnameConflict")
    );
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("spec.addresses")),
        "{problems:?}"
    );
    let second = s
        .gateways
        .iter()
        .find(|g| g.name == "second")
        .expect("status");
    assert_eq!(second.listeners[0].conditions[0].reason, "Accepted");
}

#[test]
fn a_route_naming_a_listener_of_another_protocol_is_not_allowed() {
    let (s, _) = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tls-only, namespace: infra}
spec:
  gatewayClassName: strait
  listeners: [{name: tls, port: 443, protocol: TLS, allowedRoutes: {kinds: [{kind: TLSRoute}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: infra}
spec:
  parentRefs: [{name: tls-only}]
  rules: [{backendRefs: [{name: other, port: 80}]}]
"#,
    );
    let r = s.routes.iter().find(|r| r.name == "r").expect("status");
    assert_eq!(r.parents[0].conditions[0].reason, "NotAllowedByListeners");
}

/// TLSRoute and TCPRoute: each attaches only to its own listener protocol;
/// the SNI picks among TLSRoutes (exact, then wildcard; the oldest of two
/// routes for one name wins); a port serves one protocol.
#[test]
fn layer4_routes_attach_by_protocol_and_sni() {
    let (s, problems) = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: l4, namespace: infra}
spec:
  gatewayClassName: strait
  listeners:
  - {name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}}
  - {name: tcp, port: 5432, protocol: TCP}
  - {name: clash, port: 5432, protocol: HTTP}
  - {name: term, port: 8443, protocol: TLS, tls: {mode: Terminate}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: newer, namespace: infra, creationTimestamp: "2026-02-01T00:00:00Z"}
spec:
  parentRefs: [{name: l4}]
  hostnames: [a.example.com]
  rules: [{backendRefs: [{name: other, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: older, namespace: infra, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{name: l4}]
  hostnames: [a.example.com, "*.example.com"]
  rules: [{backendRefs: [{name: other, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: db, namespace: infra}
spec:
  parentRefs: [{name: l4, sectionName: tcp}]
  rules: [{backendRefs: [{name: other, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: to-tls, namespace: infra}
spec:
  parentRefs: [{name: l4, sectionName: tls}]
  rules: [{backendRefs: [{name: other, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: infra}
spec:
  parentRefs: [{name: l4, sectionName: tls}]
  rules: [{backendRefs: [{name: other, port: 80}]}]
"#,
    );
    let at = |port| ListenKey { ip: None, port };
    let route = |sni: Option<&str>, port| {
        s.l4_route(at(port), sni)
            .map_or("none".to_string(), |m| m.rule.route.to_string())
    };
    assert_eq!(route(Some("a.example.com"), 443), "infra/older");
    assert_eq!(route(Some("b.example.com"), 443), "infra/older");
    assert_eq!(route(Some("example.com"), 443), "none");
    assert_eq!(route(None, 443), "none");
    assert_eq!(route(None, 5432), "infra/db");

    let reason = |name: &str| {
        let r = s.routes.iter().find(|r| r.name == name).expect("status");
        r.parents[0].conditions[0].reason
    };
    assert_eq!(reason("db"), "Accepted");
    assert_eq!(reason("to-tls"), "NotAllowedByListeners");
    assert_eq!(reason("web"), "NotAllowedByListeners");

    let listener = |name: &str| {
        s.gateways
            .iter()
            .find(|g| g.name == "l4")
            .and_then(|g| g.listeners.iter().find(|l| l.name == name))
            .map(|l| l.conditions.iter().map(|c| c.reason).collect::<Vec<_>>())
            .expect("listener")
    };
    assert!(listener("clash").contains(&"ProtocolConflict"));
    assert!(listener("term").contains(&"UnsupportedValue"));
    assert!(problems
        .iter()
        .any(|p| p.path == "spec.listeners[3].tls.mode"));
}

/// GAMMA: Service names resolve as Kubernetes DNS does; a producer route
/// (the Service's namespace) serves every caller, a consumer route (the
/// caller's namespace) replaces it for its namespace; a routed Service
/// answers 404 to what no rule matches; no route means its endpoints.
#[test]
fn mesh_routes_by_service_producer_and_consumer() {
    use strait_route::MeshLookup;
    let (s, problems) = snapshot(
        r#"
apiVersion: v1
kind: Service
metadata: {name: pay, namespace: shop}
spec: {ports: [{port: 80}, {port: 9090}], clusterIP: 10.0.0.7}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: producer, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: pay, port: 80}]
  rules: [{matches: [{path: {value: /api}}], backendRefs: [{name: pay, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: consumer, namespace: infra}
spec:
  parentRefs: [{group: "", kind: Service, name: pay, namespace: shop}]
  rules: [{matches: [{path: {value: /other}}], backendRefs: [{name: other, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orphan, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: nothing}]
"#,
    );
    let headers = HeaderMap::new();
    let route = |host: &str, port: u16, ns: &str, path: &str| {
        let view = RequestView {
            method: &Method::GET,
            path,
            query: None,
            headers: &headers,
        };
        match s.mesh.route(host, port, ns, &view) {
            MeshLookup::Route(m) => m.rule.route.to_string(),
            MeshLookup::NoRule => "404".into(),
            MeshLookup::Unknown => "unknown".into(),
        }
    };
    for host in [
        "pay",
        "pay.shop",
        "pay.shop.svc",
        "pay.shop.svc.cluster.local",
        "10.0.0.7",
    ] {
        assert_eq!(route(host, 80, "shop", "/api/x"), "shop/producer", "{host}");
    }
    assert_eq!(route("pay", 80, "shop", "/else"), "404");
    assert_eq!(
        route("pay", 9090, "shop", "/else"),
        "shop/pay:9090",
        "no route on that port"
    );
    assert_eq!(
        route("pay.shop", 80, "web", "/api"),
        "shop/producer",
        "other callers"
    );
    assert_eq!(
        route("pay.shop", 80, "infra", "/api"),
        "404",
        "the consumer route replaces it"
    );
    assert_eq!(route("pay.shop", 80, "infra", "/other"), "infra/consumer");
    assert_eq!(
        route("pay.shop", 9090, "infra", "/other"),
        "infra/consumer",
        "all ports"
    );
    assert_eq!(
        route("pay", 80, "infra", "/api"),
        "unknown",
        "no pay Service in infra"
    );
    assert_eq!(route("example.com", 80, "shop", "/"), "unknown");
    let orphan = s
        .routes
        .iter()
        .find(|r| r.name == "orphan")
        .expect("status");
    assert_eq!(orphan.parents[0].conditions[0].reason, "NoMatchingParent");
    assert!(problems
        .iter()
        .any(|p| p.message.contains("no Service shop/nothing")));
}
