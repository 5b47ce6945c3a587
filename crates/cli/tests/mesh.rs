//! The sidecar role through real processes: workloads (echo servers), each
//! with a `strait proxy` in explicit mode, calling each other through the
//! caller's outbound listener and the callee's inbound listener. GAMMA
//! routes (HTTPRoutes whose parent is a Service) split traffic 95/5 and
//! send `version=beta` cookies to v2; Services without routes go to their
//! endpoints; unknown hosts are passed through or refused; CONNECT tunnels.

mod common;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};

/// Service `name` (port 80) whose one endpoint is a sidecar's inbound
/// listener at 127.0.0.1:`port` (so labelled: meshed).
fn service(name: &str, port: u16, cluster_ip: Option<&str>) -> String {
    let ip = cluster_ip.map_or(String::new(), |ip| format!(", clusterIP: {ip}"));
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: shop}}
spec: {{ports: [{{name: http, port: 80}}]{ip}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}, namespace: shop, labels: {{kubernetes.io/service-name: {name}, strait.dev/meshed: "true"}}}}
addressType: IPv4
endpoints: [{{addresses: ["127.0.0.1"]}}]
ports: [{{name: http, port: {port}}}]
"#
    )
}

const CANARY: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: payment-canary, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: payment, port: 80}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /pay}
      headers: [{name: cookie, type: RegularExpression, value: "(^|.*; *)version=beta(;.*|$)"}]
    backendRefs: [{name: payment-v2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /pay}}]
    backendRefs:
    - {name: payment-v1, port: 80, weight: 95}
    - {name: payment-v2, port: 80, weight: 5}
"#;

struct Shop {
    checkout: Sidecar,
    v1: Sidecar,
    v1_echo_port: u16,
    // Kept alive for the test's length.
    _v2: Sidecar,
    _echoes: Vec<Echo>,
    dir: TempDir,
}

/// checkout-api calls payment (v1 and v2, each behind its sidecar);
/// `payment` itself is the Service the canary route hangs on.
async fn shop(extra: &[&str]) -> Shop {
    shop_with(extra, "").await
}

/// The shop with more objects in its folder.
async fn shop_with(extra: &[&str], more_yaml: &str) -> Shop {
    let (checkout, v1, v2) = (
        echo("checkout-api", "checkout-0"),
        echo("payment-v1", "v1-0"),
        echo("payment-v2", "v2-0"),
    );
    let (in_checkout, in_v1, in_v2) = (free_port(), free_port(), free_port());
    let dir = TempDir::new();
    let mut yaml = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    yaml += &service("checkout-api", in_checkout, None);
    yaml += &service("payment", in_v1, Some("10.96.0.20"));
    yaml += &service("payment-v1", in_v1, None);
    yaml += &service("payment-v2", in_v2, None);
    yaml += CANARY;
    // The sidecars' ports, for objects that name them.
    yaml += &more_yaml
        .replace("{IN_V1}", &in_v1.to_string())
        .replace("{IN_V2}", &in_v2.to_string());
    dir.write("shop.yaml", &yaml);
    let checkout_sidecar =
        Sidecar::start(&dir, "shop/checkout-api", checkout.port, in_checkout, extra).await;
    let v1_sidecar = Sidecar::start(&dir, "shop/payment-v1", v1.port, in_v1, &[]).await;
    let v2_sidecar = Sidecar::start(&dir, "shop/payment-v2", v2.port, in_v2, &[]).await;
    Shop {
        checkout: checkout_sidecar,
        v1: v1_sidecar,
        v1_echo_port: v1.port,
        _v2: v2_sidecar,
        _echoes: vec![checkout, v1, v2],
        dir,
    }
}

#[tokio::test]
async fn canary_split_and_cookie_through_two_sidecars() {
    let shop = shop(&[]).await;
    let out = shop.checkout.outbound;

    // One call end to end: through checkout's outbound and v1's or v2's
    // inbound sidecar to the workload, with every name form.
    for url in [
        "http://payment/pay",
        "http://payment.shop/pay",
        "http://payment.shop.svc/pay",
        "http://payment.shop.svc.cluster.local/pay",
        "http://10.96.0.20/pay",
    ] {
        let r = call(out, url, &[]).await;
        assert_eq!(r.status, 200, "{url}: {}", String::from_utf8_lossy(&r.body));
        let svc = r.service();
        assert!(
            svc == "payment-v1" || svc == "payment-v2",
            "{url} reached {svc}"
        );
    }

    // Cookie version=beta: always v2.
    for _ in 0..50 {
        let r = call(
            out,
            "http://payment.shop/pay",
            &[("cookie", "session=1; version=beta")],
        )
        .await;
        assert_eq!(r.service(), "payment-v2");
    }
    // No rule matches /refund: 404 from the caller's sidecar.
    assert_eq!(
        call(out, "http://payment.shop/refund", &[]).await.status,
        404
    );

    // 95/5 over 4,000 calls, eight callers at once.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            let mut v2 = 0u32;
            for _ in 0..500 {
                let r = call(out, "http://payment.shop/pay", &[]).await;
                assert_eq!(r.status, 200);
                if r.service() == "payment-v2" {
                    v2 += 1;
                }
            }
            v2
        }));
    }
    let mut v2 = 0;
    for t in tasks {
        v2 += t.await.expect("caller");
    }
    let share = f64::from(v2) / 4000.0;
    eprintln!(
        "canary: payment-v2 got {v2} of 4000 calls ({:.2} %)",
        share * 100.0
    );
    assert!(
        (0.03..=0.07).contains(&share),
        "v2 got {v2} of 4000 ({share:.3})"
    );

    // v1's inbound sidecar saw the calls it answered over checkout's
    // pool: kept-alive connections, never more than the callers at once.
    let inbound = shop.v1.metrics().await;
    assert!(
        inbound.contains("listener=\"inbound|shop/payment-v1\""),
        "{inbound}"
    );
    let open = inbound
        .lines()
        .find_map(|l| l.strip_prefix("strait_connections_active "))
        .and_then(|n| n.trim().parse::<u32>().ok());
    assert!(
        open.is_some_and(|n| (1..=8).contains(&n)),
        "one pooled connection per concurrent caller at most:\n{inbound}"
    );
}

/// A GAMMA route answers for its Service at the caller's sidecar: writes
/// to payment are refused there, and reads still reach it.
#[tokio::test]
async fn a_direct_response_answers_for_a_service_at_the_caller() {
    let shop = shop_with(&[], READ_ONLY_PAYMENT).await;
    let out = shop.checkout.outbound;
    let r = call_method(out, "POST", "http://payment.shop/pay", &[]).await;
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(&r.body[..], b"You are rejected!");
    assert_eq!(r.headers["x-strait-reason"], "direct_response");
    let r = call(out, "http://payment.shop/pay", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.service().starts_with("payment-v"), "{}", r.service());
    let metrics = shop.checkout.metrics().await;
    let refused = metrics.lines().any(|l| {
        l.starts_with("strait_requests_total{")
            && l.contains("code=\"403\"")
            && l.contains("reason=\"direct_response\"")
    });
    assert!(refused, "{metrics}");
}

/// A GAMMA route's BodyTransform runs in the caller's sidecar: the
/// callee's app gets the caller's JSON as XML, and the caller gets the
/// answer edited.
#[tokio::test]
async fn a_body_transform_runs_at_the_caller_s_sidecar() {
    let shop = shop_with(&[], TRANSFORMED_PAYMENT).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", shop.checkout.outbound))
        .await
        .expect("connect to the outbound listener");
    let mut send = h1_over::<_, http_body_util::Full<Bytes>>(tcp).await;
    let req = http::Request::post("http://payment.shop/pay")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from_static(
            b"{\"amount\":5}",
        )))
        .expect("request");
    let r = send.send_request(req).await.expect("response");
    assert_eq!(r.status(), 200);
    let body = r.into_body().collect().await.expect("body").to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><payment><amount>5</amount></payment>";
    assert_eq!(answer["bodyBytes"], xml.len(), "{answer}");
    assert_eq!(answer["via"], "POST at the caller", "{answer}");
    assert!(answer.get("headers").is_none(), "{answer}");
    assert_eq!(answer["service"], "payment-v1", "{answer}");
}

/// A SecurityPolicy on a workload: its sidecar checks every inbound call's
/// token (forwarded by the caller's app, through the caller's sidecar),
/// whatever route the caller took.
#[tokio::test]
async fn a_workload_s_sidecar_checks_the_token_of_each_call() {
    let signer = common::jwt::Signer::new("k");
    let jwks = serde_json::json!({"keys": [signer.jwk()]}).to_string();
    let policy = format!(
        r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: payment-users, namespace: shop}}
spec:
  targetRefs: [{{group: apps, kind: Deployment, name: payment-v1}}]
  jwt:
    providers:
    - name: issuer
      issuer: https://issuer.test
      localJWKS: {{type: Inline, inline: '{jwks}'}}
      claimToHeaders: [{{claim: sub, header: x-user}}]
"#
    );
    let shop = shop_with(&[], &policy).await;
    let out = shop.checkout.outbound;
    let url = "http://payment-v1.shop/pay";
    let r = call(out, url, &[]).await;
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.reason(), Some("jwt_missing"));
    assert_eq!(r.headers["x-strait-authn"], "shop/payment-users");
    let token = format!(
        "Bearer {}",
        signer.sign(&common::jwt::claims(serde_json::json!({})))
    );
    let r = call(
        out,
        url,
        &[("authorization", &token), ("x-user", "mallory")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let seen = r.json();
    assert_eq!(seen["headers"]["X-User"][0], "alice", "{seen}");
    assert!(seen["headers"].get("Authorization").is_none(), "{seen}");
    let other = common::jwt::Signer::new("k").sign(&common::jwt::claims(serde_json::json!({})));
    let r = call(out, url, &[("authorization", &format!("Bearer {other}"))]).await;
    assert_eq!((r.status, r.reason()), (401, Some("jwt_invalid")));
    // An AuthorizationPolicy may name the token's principal and claims:
    // only alice (iss/sub) with the admin claim may call v1 now.
    let who = "---\napiVersion: policy.strait.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: payment-admins, namespace: shop}\nspec:\n  targetRefs: [{group: apps, kind: Deployment, name: payment-v1}]\n  rules:\n  - from: [{requestPrincipals: ['https://issuer.test/al*'], claims: [{name: admin, values: ['true']}]}]\n";
    shop.dir.write("who.yaml", who);
    let sign =
        |claims: serde_json::Value| format!("Bearer {}", signer.sign(&common::jwt::claims(claims)));
    eventually(
        10,
        || "the AuthorizationPolicy never applied".into(),
        || async {
            let r = call(
                out,
                url,
                &[("authorization", &sign(serde_json::json!({"sub": "bob"})))],
            )
            .await;
            (r.status == 403).then_some(())
        },
    )
    .await;
    let r = call(
        out,
        url,
        &[("authorization", &sign(serde_json::json!({"sub": "bob"})))],
    )
    .await;
    assert_eq!(r.reason(), Some("authz_denied"));
    let r = call(
        out,
        url,
        &[("authorization", &sign(serde_json::json!({"admin": false})))],
    )
    .await;
    assert_eq!(r.status, 403, "alice without the claim");
    let r = call(out, url, &[("authorization", &sign(serde_json::json!({})))]).await;
    assert_eq!(
        r.status,
        200,
        "alice, admin: {}",
        String::from_utf8_lossy(&r.body)
    );
    // payment-v2 has no policy: its calls pass without a token.
    assert_eq!(
        call(out, "http://payment-v2.shop/pay", &[]).await.status,
        200
    );
    // payment-v1's own sidecar refused them, and counts them.
    let metrics = shop.v1.metrics().await;
    let counted = |reason: &str| {
        metrics.lines().any(|l| {
            l.starts_with("strait_requests_total{")
                && l.contains("reporter=\"destination\"")
                && l.contains(&format!("reason=\"{reason}\""))
        })
    };
    assert!(
        counted("jwt_missing") && counted("jwt_invalid"),
        "{metrics}"
    );
}

/// A RateLimitPolicy on a workload: its sidecar counts every inbound
/// call, whichever route the caller took, per caller.
#[tokio::test]
async fn a_workload_s_sidecar_limits_its_inbound_calls() {
    let policy = r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: payment-calls, namespace: shop}
spec:
  targetRefs: [{group: apps, kind: Deployment, name: payment-v1}]
  local:
    rules:
    - name: per-caller
      clientSelectors: [{headers: [{name: x-caller, type: Distinct}]}]
      limit: {requests: 2, unit: Minute}
"#;
    let shop = shop_with(&[], policy).await;
    let out = shop.checkout.outbound;
    let alice = [("x-caller", "alice")];
    let urls = ["http://payment-v1.shop/pay", "http://payment-v1/pay"];
    for (url, said) in urls.iter().zip(["r=1;t=30", "r=0;t=60"]) {
        let r = call(out, url, &alice).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let want = format!("\"per-caller\";{said}");
        assert_eq!(
            r.headers["ratelimit"],
            want.as_str(),
            "one count for both names"
        );
    }
    let r = call(out, "http://payment-v1.shop/pay", &alice).await;
    assert_eq!((r.status, r.reason()), (429, Some("rate_limited")));
    assert_eq!(
        r.headers["x-strait-rate-limit"],
        "shop/payment-calls per-caller"
    );
    let bob = [("x-caller", "bob")];
    assert_eq!(
        call(out, "http://payment-v1.shop/pay", &bob).await.status,
        200
    );
    // payment-v2 has no policy.
    for _ in 0..3 {
        let r = call(out, "http://payment-v2.shop/pay", &alice).await;
        assert_eq!(r.status, 200);
    }
    let metrics = shop.v1.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("strait_rate_limit_decisions_total{")
                && l.contains("result=\"limited\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_workload_s_sidecar_asks_its_authorization_service() {
    let authz = common::ext_authz::Service::start().await;
    let policy = authz.shop_yaml()
        + r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: payment-authz, namespace: shop}
spec:
  targetRefs: [{group: apps, kind: Deployment, name: payment-v1}]
  extAuth:
    grpc: {backendRef: {name: authz, port: 9000}}
"#;
    let shop = shop_with(&[], &policy).await;
    let out = shop.checkout.outbound;
    let url = "http://payment-v1.shop/pay";
    let r = call(out, url, &[("authorization", "Bearer nope")]).await;
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.reason(), Some("ext_authz_denied"));
    let r = call(out, url, &[("authorization", "Bearer good")]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["headers"]["X-Authz-User"][0], "alice");
    // Asked by payment-v1's sidecar, about the call as it came in.
    let asked = authz.take();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked.iter().all(|a| a.path == "/pay"), "{asked:?}");
    // No mutual TLS here: no identity is claimed for the caller.
    assert!(asked.iter().all(|a| a.principal.is_empty()), "{asked:?}");
    // payment-v2 has no policy: not asked.
    assert_eq!(
        call(out, "http://payment-v2.shop/pay", &[]).await.status,
        200
    );
    assert!(authz.take().is_empty());
}

const TRANSFORMED_PAYMENT: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: payment-transformed, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: payment, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /pay}, method: POST}]
    filters:
    - {type: ExtensionRef, extensionRef: {group: policy.strait.dev, kind: BodyTransform, name: xml-payments}}
    backendRefs: [{name: payment-v1, port: 80}]
---
apiVersion: policy.strait.dev/v1alpha1
kind: BodyTransform
metadata: {name: xml-payments, namespace: shop}
spec:
  request: {convert: JSONToXML, rootElement: payment}
  response:
    edits:
    - {op: Set, path: /via, value: "{{ request.method }} at the caller"}
    - {op: Remove, path: /headers}
"#;

const READ_ONLY_PAYMENT: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: payment-read-only, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: payment, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /pay}, method: POST}]
    filters:
    - {type: ExtensionRef, extensionRef: {group: policy.strait.dev, kind: DirectResponse, name: read-only}}
---
apiVersion: policy.strait.dev/v1alpha1
kind: DirectResponse
metadata: {name: read-only, namespace: shop}
spec:
  statusCode: 403
  body: {type: Inline, inline: "You are rejected!"}
"#;

const CORS_AND_SESSIONS: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: payment-web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: payment, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /web}}]
    filters:
    - type: CORS
      cors: {allowOrigins: ["https://shop.example.com"], allowMethods: [GET, PUT], maxAge: 600}
    backendRefs: [{name: payment-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /sticky}}]
    sessionPersistence: {sessionName: pay-session}
    backendRefs: [{name: payment-all, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: payment-all, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: payment-all-v1, namespace: shop, labels: {kubernetes.io/service-name: payment-all, strait.dev/meshed: "true"}}
addressType: IPv4
endpoints: [{addresses: ["127.0.0.1"]}]
ports: [{name: http, port: {IN_V1}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: payment-all-v2, namespace: shop, labels: {kubernetes.io/service-name: payment-all, strait.dev/meshed: "true"}}
addressType: IPv4
endpoints: [{addresses: ["127.0.0.1"]}]
ports: [{name: http, port: {IN_V2}}]
"#;

/// A GAMMA route's CORS filter works at the caller's sidecar: it answers
/// preflights itself, and adds the headers for an allowed origin only.
#[tokio::test]
async fn cors_for_a_service_is_answered_at_the_caller_s_sidecar() {
    let shop = shop_with(&[], CORS_AND_SESSIONS).await;
    let out = shop.checkout.outbound;
    let origin = ("origin", "https://shop.example.com");
    let preflight = [origin, ("access-control-request-method", "PUT")];
    let r = call_method(out, "OPTIONS", "http://payment.shop/web", &preflight).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.reason(), Some("cors_preflight"));
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert_eq!(r.headers["access-control-allow-methods"], "GET, PUT");
    assert_eq!(r.headers["access-control-max-age"], "600");
    assert!(
        !String::from_utf8_lossy(&r.body).contains("payment-v1"),
        "not the callee's answer"
    );

    let r = call(out, "http://payment.shop/web", &[origin]).await;
    assert_eq!(r.service(), "payment-v1");
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let r = call(
        out,
        "http://payment.shop/web",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(r.service(), "payment-v1");
    assert!(
        r.headers.get("access-control-allow-origin").is_none(),
        "{:?}",
        r.headers
    );
}

/// Session persistence on a GAMMA route, at the caller's sidecar: calls
/// spread over the Service's two endpoints until one carries the session
/// cookie, and then always meet its endpoint.
#[tokio::test]
async fn a_session_keeps_a_callers_calls_on_one_endpoint_through_sidecars() {
    let shop = shop_with(&[], CORS_AND_SESSIONS).await;
    let out = shop.checkout.outbound;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        seen.insert(call(out, "http://payment.shop/sticky", &[]).await.service());
    }
    assert_eq!(seen.len(), 2, "both endpoints without a session: {seen:?}");
    let first = call(out, "http://payment.shop/sticky", &[]).await;
    let cookie = first.headers["set-cookie"].to_str().expect("text");
    let pair = cookie.split(';').next().expect("name=value").to_string();
    assert!(pair.starts_with("pay-session="), "{cookie}");
    let home = first.service();
    for _ in 0..20 {
        let r = call(out, "http://payment.shop/sticky", &[("cookie", &pair)]).await;
        assert_eq!(r.service(), home, "the session's endpoint");
        assert!(r.headers.get("set-cookie").is_none(), "nothing changed");
    }
}

#[tokio::test]
async fn services_without_routes_passthrough_and_connect() {
    let shop = shop(&[]).await;
    let out = shop.checkout.outbound;
    // A Service with no route: its endpoints (v1's sidecar).
    let r = call(out, "http://payment-v1/", &[]).await;
    assert_eq!(r.service(), "payment-v1");
    // A host that is no Service: passed through to where it points.
    let direct = format!("http://127.0.0.1:{}/direct", shop.v1_echo_port);
    let r = call(out, &direct, &[]).await;
    assert_eq!(r.service(), "payment-v1", "{}", shop.checkout.logs());
    // CONNECT to a Service: a tunnel to one of its endpoints.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", out))
        .await
        .expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("handshake");
    tokio::spawn(conn.with_upgrades());
    let req = http::Request::connect("payment-v1.shop:80")
        .body(Empty::new())
        .expect("request");
    let mut r = send.send_request(req).await.expect("CONNECT answer");
    assert_eq!(r.status(), 200);
    let tunnel = hyper::upgrade::on(&mut r).await.expect("tunnel");
    let mut inner = h1_over::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(tunnel)).await;
    let r = inner
        .send_request(
            http::Request::get("/through-the-tunnel")
                .header("host", "payment-v1")
                .body(Empty::new())
                .expect("request"),
        )
        .await
        .expect("response through the tunnel");
    assert_eq!(r.status(), 200);
    let body = r.into_body().collect().await.expect("body").to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["service"], "payment-v1");
    assert_eq!(json["path"], "/through-the-tunnel");
}

#[tokio::test]
async fn unknown_destinations_refused_when_asked() {
    let shop = shop(&["--outbound-unknown", "refuse"]).await;
    let out = shop.checkout.outbound;
    let direct = format!("http://127.0.0.1:{}/direct", shop.v1_echo_port);
    assert_eq!(
        call(out, &direct, &[]).await.service(),
        "<502 passthrough_refused>"
    );
    assert_eq!(call(out, "http://payment/pay", &[]).await.status, 200);
}

/// The resilience policies hold through a sidecar as through the gateway
/// (one request path): a GAMMA route's retries hide an endpoint that fails
/// half its calls, outlier detection ejects an endpoint that always fails,
/// and the circuit breaker sheds what it must — counted by the sidecar.
#[tokio::test]
async fn resilience_through_a_sidecar() {
    let good = [echo("ledger", "ledger-0"), echo("ledger", "ledger-1")];
    let flaky = echo_with("ledger", "ledger-2", &["--fail-every", "2"]);
    let dead = echo_with("audit", "audit-bad", &["--fail-every", "1"]);
    let alive = echo("audit", "audit-ok");
    let slow = echo_with("report", "report-0", &["--delay", "300ms"]);
    let app = echo("checkout-api", "checkout-0");
    let slices = |name: &str, ports: &[u16]| -> String {
        ports
            .iter()
            .map(|p| {
                format!(
                    "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-{p}, namespace: shop, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\nports: [{{name: http, port: {p}}}]\n"
                )
            })
            .collect()
    };
    let svc = |name: &str| {
        format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n")
    };
    let dir = TempDir::new();
    let yaml = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
        + &svc("ledger")
        + &slices("ledger", &[good[0].port, good[1].port, flaky.port])
        + &svc("audit")
        + &slices("audit", &[dead.port, alive.port])
        + &svc("report")
        + &slices("report", &[slow.port])
        + r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ledger, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: ledger}]
  rules: [{retry: {codes: [503], attempts: 2, backoff: 5ms}, backendRefs: [{name: ledger, port: 80}]}]
---
# Round robin, so that the flaky pod gets its third of the calls whatever
# the timing (peak EWMA may leave it alone, and then nothing is retried).
apiVersion: policy.strait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: ledger, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: ledger}]
  loadBalancer: {type: RoundRobin}
---
apiVersion: policy.strait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: audit, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: audit}]
  loadBalancer: {type: RoundRobin}
  outlierDetection: {consecutiveFailures: 2, baseEjectionTime: 30s}
---
apiVersion: policy.strait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: report, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: report}]
  circuitBreaker: {maxRequests: 1}
"#;
    dir.write("shop.yaml", &yaml);
    let sidecar = Sidecar::start(&dir, "shop/checkout-api", app.port, free_port(), &[]).await;
    let out = sidecar.outbound;

    let mut ok = 0;
    for _ in 0..600 {
        ok += usize::from(call(out, "http://ledger/", &[]).await.status == 200);
    }
    assert_eq!(ok, 600, "retries hide the flaky endpoint");

    let audit: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..40 {
            v.push(call(out, "http://audit/", &[]).await.status);
        }
        v
    };
    assert_eq!(audit.iter().filter(|s| **s == 503).count(), 2, "{audit:?}");

    let calls: Vec<_> = (0..4)
        .map(|_| tokio::spawn(async move { call(out, "http://report/", &[]).await.status }))
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        statuses.push(c.await.expect("call"));
    }
    statuses.sort();
    assert_eq!(statuses, [200, 503, 503, 503]);

    let metrics = sidecar.metrics().await;
    for needle in [
        "strait_retries_total{route=\"shop/ledger\",destination_service_name=\"ledger\",destination_service_namespace=\"shop\",reason=\"status\"}",
        "strait_outlier_ejections_total{cluster=\"shop/audit:80\",destination_service_name=\"audit\",destination_service_namespace=\"shop\"} 1",
        "strait_breaker_overflows_total{cluster=\"shop/report:80\",destination_service_name=\"report\",destination_service_namespace=\"shop\",limit=\"maxRequests\"} 3",
    ] {
        assert!(metrics.contains(needle), "missing {needle}:\n{metrics}");
    }
}

/// An ApiSchemaPolicy on a workload: its sidecar checks every inbound
/// call against the workload's OpenAPI document.
#[tokio::test]
async fn a_workload_s_sidecar_checks_calls_against_its_api_document() {
    let policy = r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: ApiSchemaPolicy
metadata: {name: payment-api, namespace: shop}
spec:
  targetRefs: [{group: apps, kind: Deployment, name: payment-v1}]
  unknownOperations: Reject
  openAPI:
    inline: |
      openapi: 3.1.0
      paths:
        /pay:
          get:
            parameters: [{name: amount, in: query, required: true, schema: {type: integer, minimum: 1}}]
"#;
    let shop = shop_with(&[], policy).await;
    let out = shop.checkout.outbound;
    let r = call(out, "http://payment-v1.shop/pay?amount=5", &[]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["pod"], "v1-0");
    for (url, said) in [
        (
            "http://payment-v1.shop/pay?amount=none",
            "query parameter amount: \"none\" is not of type \"integer\"",
        ),
        (
            "http://payment-v1.shop/pay",
            "query parameter amount: is required",
        ),
        (
            "http://payment-v1.shop/refund",
            "GET /refund is not an operation of the API",
        ),
    ] {
        let r = call(out, url, &[]).await;
        let body = String::from_utf8_lossy(&r.body);
        assert!(matches!(r.status, 400 | 404), "{url}: {} {body}", r.status);
        assert_eq!(r.headers["x-strait-api-schema"], "shop/payment-api");
        assert!(body.contains(said), "{said:?} not in {body}");
    }
    // payment-v2 has no policy.
    let r = call(out, "http://payment-v2.shop/refund", &[]).await;
    assert_eq!(r.status, 200);
}
