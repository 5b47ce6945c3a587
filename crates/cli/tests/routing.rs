//! Gateway API routing through the real binary: matches, precedence,
//! hostnames, filters, weights, timeouts, and the errors the spec asks for.

mod common;
use common::*;

const ROUTES: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matches}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["match.example.com"]
  rules:
  - matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /prefix}}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{path: {type: RegularExpression, value: "/re/[0-9]+"}}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /prefix}, headers: [{name: version, value: two}]}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /prefix}, queryParams: [{name: tier, type: RegularExpression, value: "gold|platinum"}]}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /prefix}, method: DELETE}]
    backendRefs: [{name: a, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wildcard}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["*.wild.example.com"]
  rules: [{backendRefs: [{name: b, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: filters}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["filters.example.com"]
  rules:
  - matches: [{path: {value: /headers}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Set, value: set-value}]
        add: [{name: X-Add, value: added}]
        remove: [X-Remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Response, value: from-strait}]
        remove: [X-Drop]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        hostname: new.example.com
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
        statusCode: 301
  - matches: [{path: {value: /secure}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https}
  - matches: [{path: {value: /rewrite}}]
    filters:
    - type: URLRewrite
      urlRewrite:
        hostname: rewritten.example.com
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /keep-slash}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /xyz}}
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /strip}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: ""}}
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /mirror}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: mirror, port: 80}}
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /backend-filter}}]
    backendRefs:
    - name: a
      port: 80
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: X-Backend, value: a}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: failures}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["fail.example.com"]
  rules:
  - matches: [{path: {value: /missing}}]
    backendRefs: [{name: does-not-exist, port: 80}]
  - matches: [{path: {value: /empty}}]
    backendRefs: [{name: no-endpoints, port: 80}]
  - matches: [{path: {value: /none}}]
  - matches: [{path: {value: /zero}}]
    backendRefs: [{name: a, port: 80, weight: 0}]
  - matches: [{path: {value: /slow-backend}}]
    timeouts: {request: 5s, backendRequest: 300ms}
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /slow-request}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /down}}]
    backendRefs: [{name: down, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["split.example.com"]
  rules:
  - backendRefs:
    - {name: a, port: 80, weight: 3}
    - {name: b, port: 80, weight: 1}
    - {name: mirror, port: 80, weight: 0}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["grpc.example.com"]
  rules:
  - matches: [{method: {service: shop.Cart, method: Add}}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{method: {service: shop.Cart}}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{method: {type: RegularExpression, method: "Get.*"}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-Grpc-Rule, value: regex}]}
    backendRefs: [{name: a, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: no-endpoints}
spec: {ports: [{port: 80}]}
"#;

struct Setup {
    port: u16,
    gw: Gateway,
    mirror: Echo,
    _backends: Vec<Echo>,
    _dir: TempDir,
}

async fn setup() -> Setup {
    let (a, b, mirror) = (
        echo("a", "a-0"),
        echo("b", "b-0"),
        echo("mirror", "mirror-0"),
    );
    let port = free_port();
    let dir = TempDir::new();
    let mut yaml = gateway_yaml(port);
    yaml += &service_yaml("a", a.port, None);
    yaml += &service_yaml("b", b.port, None);
    yaml += &service_yaml("mirror", mirror.port, None);
    yaml += &service_yaml("down", free_port(), None);
    yaml += ROUTES;
    dir.write("all.yaml", &yaml);
    let gw = Gateway::start(&dir).await;
    Setup {
        port,
        gw,
        mirror,
        _backends: vec![a, b],
        _dir: dir,
    }
}

#[tokio::test]
async fn matches_and_precedence() {
    let s = setup().await;
    let h = "match.example.com";
    let cases: Vec<(http::Request<_>, &str)> = vec![
        (get(s.port, h, "/exact"), "a"),
        (get(s.port, h, "/exact/more"), "<404 no_route>"),
        (get(s.port, h, "/prefix"), "b"),
        (get(s.port, h, "/prefix/deeper?x=1"), "b"),
        (get(s.port, h, "/prefixed"), "<404 no_route>"),
        (get(s.port, h, "/re/42"), "a"),
        (get(s.port, h, "/re/x"), "<404 no_route>"),
        (
            request("GET", s.port, h, "/prefix/x", &[("version", "two")]),
            "a",
        ),
        (
            request("GET", s.port, h, "/prefix/x", &[("version", "three")]),
            "b",
        ),
        (get(s.port, h, "/prefix?tier=gold"), "a"),
        (get(s.port, h, "/prefix?tier=bronze"), "b"),
        (request("DELETE", s.port, h, "/prefix", &[]), "a"),
        (get(s.port, "MATCH.example.com:8080", "/exact"), "a"),
        (get(s.port, "x.wild.example.com", "/"), "b"),
        (get(s.port, "y.x.wild.example.com", "/"), "b"),
        (get(s.port, "wild.example.com", "/"), "<404 no_route>"),
        (get(s.port, "unknown.example.com", "/"), "<404 no_route>"),
    ];
    for (req, want) in cases {
        let what = format!(
            "{} {} host={:?}",
            req.method(),
            req.uri(),
            req.headers().get("host")
        );
        let r = send(req).await.expect("response");
        assert_eq!(r.service(), want, "{what}");
    }
    let metrics = s.gw.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("strait_requests_total{")
                && l.contains(r#"route="default/matches""#)
                && l.contains(r#"code="200"}"#)),
        "{metrics}"
    );
}

#[tokio::test]
async fn filters() {
    let s = setup().await;
    let h = "filters.example.com";
    let r = send(request(
        "GET",
        s.port,
        h,
        "/headers",
        &[("x-remove", "1"), ("x-add", "orig"), ("x-set", "orig")],
    ))
    .await
    .expect("response");
    let headers = &r.json()["headers"];
    assert_eq!(headers["X-Set"], serde_json::json!(["set-value"]));
    assert_eq!(headers["X-Add"], serde_json::json!(["orig", "added"]));
    assert!(headers.get("X-Remove").is_none());
    assert_eq!(headers["X-Forwarded-For"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(r.headers["x-response"], "from-strait");

    let r = send(request(
        "GET",
        s.port,
        h,
        "/headers",
        &[("x-echo-set-header", "X-Drop:gone,X-Keep:kept")],
    ))
    .await
    .expect("response");
    assert!(r.headers.get("x-drop").is_none());
    assert_eq!(r.headers["x-keep"], "kept");

    let r = send(get(s.port, h, "/old/page?q=1"))
        .await
        .expect("response");
    assert_eq!(r.status, 301);
    // No scheme change: the listener's port stays in the Location.
    assert_eq!(
        r.headers["location"],
        format!("http://new.example.com:{}/new/page?q=1", s.port)
    );
    let r = send(get(s.port, h, "/secure")).await.expect("response");
    assert_eq!(r.status, 302);
    assert_eq!(r.headers["location"], "https://filters.example.com/secure");

    let r = send(get(s.port, h, "/rewrite/item?id=7"))
        .await
        .expect("response");
    let body = r.json();
    assert_eq!(body["path"], "/v2/item?id=7");
    assert_eq!(body["host"], "rewritten.example.com");

    let r = send(get(s.port, h, "/backend-filter"))
        .await
        .expect("response");
    assert_eq!(r.json()["headers"]["X-Backend"], serde_json::json!(["a"]));

    for _ in 0..5 {
        let r = send(get(s.port, h, "/mirror")).await.expect("response");
        assert_eq!(r.service(), "a");
    }
    // The mirror got its five copies (fire-and-forget: allow them to land).
    let mut served = 0;
    // `served` counts every request before the current one, our own
    // queries included: subtract them.
    for queries in 0..250 {
        let direct = send(get(s.mirror.port, "mirror", "/count"))
            .await
            .expect("mirror");
        served = direct.json()["served"].as_u64().unwrap_or(0) - queries;
        if served >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(served, 5, "mirror copies received");

    // A request body reaches both the backend and the mirror, whole.
    let body = bytes::Bytes::from(vec![b'm'; 256 * 1024]);
    let req = http::Request::post(format!("http://127.0.0.1:{}/mirror", s.port))
        .header("host", h)
        .body(http_body_util::Full::new(body))
        .expect("request");
    let r = send(req).await.expect("response");
    assert_eq!(r.json()["bodyBytes"], 256 * 1024);
    let mut received = 0;
    for _ in 0..100 {
        let direct = send(get(s.mirror.port, "mirror", "/count"))
            .await
            .expect("mirror");
        received = direct.json()["receivedBytes"].as_u64().unwrap_or(0);
        if received >= 256 * 1024 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(received, 256 * 1024, "mirror received the body");
}

#[tokio::test]
async fn failures_get_the_status_the_spec_asks_for() {
    let s = setup().await;
    let h = "fail.example.com";
    for (path, want) in [
        ("/missing", 500),
        ("/empty", 503),
        ("/none", 500),
        ("/zero", 500),
        ("/slow-backend?delay=2s", 504),
        ("/slow-request?delay=2s", 504),
        ("/slow-backend?delay=10ms", 200),
        ("/down", 502),
    ] {
        let started = std::time::Instant::now();
        let r = send(get(s.port, h, path)).await.expect("response");
        assert_eq!(
            r.status,
            want,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    // The same failures, asked by a gRPC client over HTTP/2, are gRPC statuses.
    for (host, path, want) in [
        ("unknown.example.com", "/pkg.Svc/Call", "12"),
        (h, "/empty", "14"),
        (h, "/missing", "2"),
    ] {
        let (status, headers, _) = grpc_call(s.port, host, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["grpc-status"], want, "{host}{path}");
        assert_eq!(headers["content-type"], "application/grpc");
    }

    let config = s.gw.config().await;
    let routes = config["snapshot"]["routes"]
        .as_array()
        .expect("routes")
        .clone();
    let failures = routes
        .iter()
        .find(|r| r["name"] == "failures")
        .expect("failures route");
    let resolved = &failures["parents"][0]["conditions"][1];
    assert_eq!(resolved["type"], "ResolvedRefs");
    assert_eq!(resolved["status"], false);
    assert_eq!(resolved["reason"], "BackendNotFound");
}

#[tokio::test]
async fn grpc_routes_match_service_and_method() {
    let s = setup().await;
    let h = "grpc.example.com";
    for (path, want, regex_rule) in [
        ("/shop.Cart/Add", "a", false),
        ("/shop.Cart/Remove", "b", false),
        ("/shop.Catalog/GetItem", "a", true),
        ("/shop.Catalog/List", "", false),
    ] {
        let (status, headers, body) = grpc_call(s.port, h, path).await;
        if want.is_empty() {
            assert_eq!(
                headers["grpc-status"], "12",
                "{path}: no rule, UNIMPLEMENTED"
            );
            continue;
        }
        assert_eq!(status, 200, "{path}");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("echo json");
        assert_eq!(json["service"], want, "{path}");
        assert_eq!(json["proto"], "HTTP/1.1", "plain backend");
        assert_eq!(
            json["headers"].get("X-Grpc-Rule").is_some(),
            regex_rule,
            "{path}"
        );
    }
    let config = s.gw.config().await;
    let routes = config["snapshot"]["routes"]
        .as_array()
        .expect("routes")
        .clone();
    let grpc = routes
        .iter()
        .find(|r| r["name"] == "grpc")
        .expect("grpc route");
    assert_eq!(grpc["kind"], "GRPCRoute");
    assert_eq!(grpc["parents"][0]["conditions"][0]["reason"], "Accepted");
}

#[tokio::test]
async fn weighted_split() {
    let s = setup().await;
    let mut counts = std::collections::HashMap::<String, u32>::new();
    for _ in 0..400 {
        let r = send(get(s.port, "split.example.com", "/"))
            .await
            .expect("response");
        *counts.entry(r.service()).or_default() += 1;
    }
    let a = counts.get("a").copied().unwrap_or(0);
    let b = counts.get("b").copied().unwrap_or(0);
    assert_eq!(a + b, 400, "{counts:?}: weight 0 gets nothing");
    // 3:1 → 300 expected; 5 standard deviations is about ±43.
    assert!((257..=343).contains(&a), "{counts:?}");
}

/// A gRPC-shaped HTTP/2 request with `authority` as :authority, on 127.0.0.1.
async fn grpc_call(port: u16, authority: &str, path: &str) -> (u16, http::HeaderMap, bytes::Bytes) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut send = h2_over(tcp).await;
    let req = http::Request::post(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let r = send.send_request(req).await.expect("response");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    use http_body_util::BodyExt;
    let body = r.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body)
}

/// A Gateway's `infrastructure.parametersRef` names a ConfigMap with the
/// format of strait's own answers: every one of them comes out in it,
/// with `x-strait-reason` still set; gRPC clients still get gRPC
/// statuses, and a Gateway whose page cannot be found keeps plain text.
#[tokio::test]
async fn a_gateway_writes_strait_s_own_answers_in_its_own_format() {
    let port = free_port();
    let other = free_port();
    let gateway = gateway_yaml(port).replace(
        "spec:\n  gatewayClassName: strait\n",
        "spec:\n  gatewayClassName: strait\n  infrastructure: {parametersRef: {group: \"\", kind: ConfigMap, name: errors}}\n",
    );
    let plain = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: plain}}\nspec:\n  gatewayClassName: strait\n  infrastructure: {{parametersRef: {{group: \"\", kind: ConfigMap, name: missing}}}}\n  listeners:\n  - {{name: http, port: {other}, protocol: HTTP}}\n"
    );
    let yaml = gateway
        + &plain
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: errors}\ndata:\n  errorContentType: application/json\n  errorBody: '{\"error\": {\"status\": {status}, \"reason\": \"{reason}\", \"message\": \"{message}\"}}'\n"
        + "---\napiVersion: v1\nkind: Service\nmetadata: {name: empty}\nspec: {ports: [{name: http, port: 80}]}\n"
        + &prefix_route("api", "/api", "empty", "")
        + &prefix_route("other", "/", "empty", "").replace("parentRefs: [{name: gw}]", "parentRefs: [{name: plain}]");
    let dir = TempDir::new();
    dir.write("gw.yaml", &yaml);
    let gw = Gateway::start(&dir).await;

    let r = send(get(port, "shop.example.com", "/nothing"))
        .await
        .expect("answer");
    assert_eq!(r.status, 404, "{}", gw.logs());
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.reason(), Some("no_route"));
    assert_eq!(
        r.json(),
        serde_json::json!({"error": {"status": 404, "reason": "no_route", "message": "no route matched"}})
    );
    let r = send(get(port, "shop.example.com", "/api"))
        .await
        .expect("answer");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["reason"], "no_endpoints");
    // A malformed request (Host twice) is answered in the same format.
    let raw = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
            .await
            .expect("write");
        let mut out = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(
        raw.contains("content-type: application/json") && raw.contains("\"reason\": \"bad_host\""),
        "{raw}"
    );
    // gRPC clients get a gRPC status, whatever the page.
    let r = send(request(
        "POST",
        port,
        "shop.example.com",
        "/nothing",
        &[("content-type", "application/grpc")],
    ))
    .await
    .expect("answer");
    assert_eq!(r.headers["grpc-status"], "12");
    // The Gateway whose ConfigMap is missing keeps plain text, warned.
    let r = send(get(other, "shop.example.com", "/"))
        .await
        .expect("answer");
    assert_eq!(r.status, 503);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap_or_default()
        .starts_with("text/plain"));
    let config = gw.config().await.to_string();
    assert!(
        config.contains("ConfigMap default/missing not found"),
        "{config}"
    );
}

/// A client's own `x-forwarded-client-cert` never reaches a backend: only
/// a hop that verified a certificate says what it was.
#[tokio::test]
async fn a_forged_client_certificate_header_is_dropped_at_the_gateway() {
    let app = echo("a", "a-0");
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &(gateway_yaml(port)
            + &service_yaml("a", app.port, None)
            + &prefix_route("r", "/", "a", "")),
    );
    let _gw = Gateway::start(&dir).await;
    let forged = [(
        "x-forwarded-client-cert",
        "By=x;URI=spiffe://cluster.local/ns/shop/sa/admin",
    )];
    let r = send(request("GET", port, "shop.example.com", "/", &forged))
        .await
        .expect("answer");
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert!(
        seen["headers"].get("X-Forwarded-Client-Cert").is_none(),
        "{seen}"
    );
}
