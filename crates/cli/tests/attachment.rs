//! Attachment and cross-namespace rules through the real binary:
//! sectionName/port parentRefs, allowedRoutes, ReferenceGrant, several
//! listeners on one port, mirrors by percentage, backend response filters.

mod common;
use common::*;
use std::time::Duration;

fn manifests(port: u16, other_port: u16, a: u16, b: u16, m1: u16, m2: u16) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: strait}}
spec: {{controllerName: strait.dev/gateway-controller}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: team-a, labels: {{shared: "yes"}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: team-b}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: infra}}
spec:
  gatewayClassName: strait
  listeners:
  - {{name: same, port: {port}, protocol: HTTP, hostname: same.example.com}}
  - {{name: selected, port: {port}, protocol: HTTP, hostname: "*.shared.example.com", allowedRoutes: {{namespaces: {{from: Selector, selector: {{matchLabels: {{shared: "yes"}}}}}}}}}}
  - {{name: all, port: {other_port}, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: a, namespace: team-a}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: a, namespace: team-a, labels: {{kubernetes.io/service-name: a}}}}
endpoints: [{{addresses: ["127.0.0.1"]}}]
ports: [{{name: http, port: {a}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: b, namespace: team-b}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: b, namespace: team-b, labels: {{kubernetes.io/service-name: b}}}}
endpoints: [{{addresses: ["127.0.0.1"]}}]
ports: [{{name: http, port: {b}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: m1, namespace: team-a}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: m1, namespace: team-a, labels: {{kubernetes.io/service-name: m1}}}}
endpoints: [{{addresses: ["127.0.0.1"]}}]
ports: [{{port: {m1}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: m2, namespace: team-a}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: m2, namespace: team-a, labels: {{kubernetes.io/service-name: m2}}}}
endpoints: [{{addresses: ["127.0.0.1"]}}]
ports: [{{port: {m2}}}]
---
# team-a on the Selector listener (its namespace has shared=yes).
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: selected, namespace: team-a}}
spec:
  parentRefs: [{{name: edge, namespace: infra, sectionName: selected}}]
  rules:
  - matches: [{{path: {{value: /mirrors}}}}]
    filters:
    - {{type: RequestMirror, requestMirror: {{backendRef: {{name: m1, port: 80}}, percent: 100}}}}
    - {{type: RequestMirror, requestMirror: {{backendRef: {{name: m2, port: 80}}, fraction: {{numerator: 0, denominator: 10}}}}}}
    backendRefs: [{{name: a, port: 80}}]
  - backendRefs:
    - name: a
      port: 80
      filters:
      - {{type: ResponseHeaderModifier, responseHeaderModifier: {{add: [{{name: X-Backend, value: a}}]}}}}
---
# team-b is not selected: refused by allowedRoutes.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: not-selected, namespace: team-b}}
spec:
  parentRefs: [{{name: edge, namespace: infra, sectionName: selected}}]
  hostnames: [b.shared.example.com]
  rules: [{{backendRefs: [{{name: b, port: 80}}]}}]
---
# From infra (Same) to team-a without a grant, and to team-b with one.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: cross, namespace: infra}}
spec:
  parentRefs: [{{name: edge, port: {port}, sectionName: same}}]
  rules:
  - matches: [{{path: {{value: /to-a}}}}]
    backendRefs: [{{name: a, namespace: team-a, port: 80}}]
  - matches: [{{path: {{value: /to-b}}}}]
    backendRefs: [{{name: b, namespace: team-b, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: infra-to-b, namespace: team-b}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: infra}}]
  to: [{{group: "", kind: Service, name: b}}]
---
# team-b may use the All listener, on the other port, chosen by port alone.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: by-port, namespace: team-b}}
spec:
  parentRefs: [{{name: edge, namespace: infra, port: {other_port}}}]
  rules: [{{backendRefs: [{{name: b, port: 80}}]}}]
"#
    )
}

#[tokio::test]
async fn attachment_grants_and_mirrors() {
    let (a, b, m1, m2) = (
        echo("a", "a-0"),
        echo("b", "b-0"),
        echo("m1", "m1-0"),
        echo("m2", "m2-0"),
    );
    let (port, other_port) = (free_port(), free_port());
    let dir = TempDir::new();
    dir.write(
        "all.yaml",
        &manifests(port, other_port, a.port, b.port, m1.port, m2.port),
    );
    let gw = Gateway::start(&dir).await;

    let cases = [
        (port, "x.shared.example.com", "/", "a"),
        (port, "b.shared.example.com", "/", "a"),
        (port, "same.example.com", "/to-a", "<500 invalid_backend>"),
        (port, "same.example.com", "/to-b", "b"),
        (port, "other.example.com", "/", "<404 no_route>"),
        (other_port, "anything.example.com", "/", "b"),
    ];
    for (p, host, path, want) in cases {
        let r = send(get(p, host, path)).await.expect("response");
        assert_eq!(r.service(), want, "{host}:{p}{path}");
    }
    let r = send(get(port, "x.shared.example.com", "/"))
        .await
        .expect("response");
    assert_eq!(
        r.headers["x-backend"], "a",
        "backendRef-level ResponseHeaderModifier"
    );

    for _ in 0..10 {
        send(get(port, "x.shared.example.com", "/mirrors"))
            .await
            .expect("response");
    }
    let count = |port: u16| async move {
        send(get(port, "m", "/")).await.expect("mirror").json()["served"]
            .as_u64()
            .unwrap_or(0)
    };
    // `served` counts our own queries too: subtract them.
    let mut seen = 0;
    for queries in 0..250 {
        seen = count(m1.port).await - queries;
        if seen >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 10, "percent: 100 mirrors every request");
    assert_eq!(count(m2.port).await, 0, "fraction 0/10 mirrors none");

    let config = gw.config().await;
    let routes = config["snapshot"]["routes"]
        .as_array()
        .expect("routes")
        .clone();
    let reason = |name: &str, condition: usize| {
        routes.iter().find(|r| r["name"] == name).expect("route")["parents"][0]["conditions"]
            [condition]["reason"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(reason("not-selected", 0), "NotAllowedByListeners");
    assert_eq!(reason("cross", 1), "RefNotPermitted");
    assert_eq!(reason("by-port", 0), "Accepted");
    let listeners = &config["snapshot"]["gateways"][0]["listeners"];
    assert_eq!(listeners[1]["attached_routes"], 1, "{listeners}");
}
