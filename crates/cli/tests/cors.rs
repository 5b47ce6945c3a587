//! The HTTPRoute `CORS` filter through the real binary, with the Gateway
//! API conformance suite's routes and requests (`HTTPRouteCORS`,
//! `CORSAllowCredentialsBehavior`): preflights answered by strait (the
//! backend never sees them), actual requests given the headers their
//! page needs, origins not allowed given none, a JWT-protected route
//! still answering preflights, and a bad filter refused with its field
//! path.

mod common;
use common::*;

const ROUTES: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cors}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /cors-1}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ["https://www.foo.com", "https://*.bar.com"]
        allowMethods: [GET, OPTIONS]
        allowHeaders: [x-header-1, x-header-2]
        exposeHeaders: [x-header-3, x-header-4]
        allowCredentials: true
        maxAge: 3600
    backendRefs: [{name: shop, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /cors-2}}]
    filters:
    - type: CORS
      cors: {allowOrigins: ["https://www.foo.com"], allowMethods: ["*"]}
    backendRefs: [{name: shop, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /cors-wildcard-methods-headers}}]
    filters:
    - type: CORS
      cors: {allowOrigins: ["*"], allowMethods: ["*"], allowHeaders: ["*"], allowCredentials: true}
    backendRefs: [{name: shop, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /cors-behavior-creds-false}}]
    filters:
    - type: CORS
      cors: {allowOrigins: ["https://app.example"], allowCredentials: false}
    backendRefs: [{name: shop, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /plain}}]
    backendRefs: [{name: shop, port: 80}]
"#;

async fn call(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let req = request(method, port, "shop.example.com", path, headers);
    send(req).await.expect("gateway answers")
}

fn header<'r>(r: &'r Resp, name: &str) -> Option<&'r str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn preflights_are_answered_and_allowed_origins_get_their_headers() {
    let app = echo("shop", "shop-0");
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &(gateway_yaml(port) + &service_yaml("shop", app.port, None) + ROUTES),
    );
    let gw = Gateway::start(&dir).await;

    // The conformance suite's preflights, answered by strait: 200, no
    // backend in it (the echo would have said its pod).
    for origin in [
        "https://www.foo.com",
        "https://www.bar.com",
        "https://xpto.www.bar.com",
    ] {
        let r = call(
            port,
            "OPTIONS",
            "/cors-1",
            &[
                ("origin", origin),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-header-1, x-header-2"),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{origin}: {}", gw.logs());
        assert!(!String::from_utf8_lossy(&r.body).contains("shop-0"));
        assert_eq!(r.reason(), Some("cors_preflight"));
        assert_eq!(header(&r, "access-control-allow-origin"), Some(origin));
        assert_eq!(
            header(&r, "access-control-allow-methods"),
            Some("GET, OPTIONS")
        );
        assert_eq!(
            header(&r, "access-control-allow-headers"),
            Some("x-header-1, x-header-2")
        );
        assert_eq!(
            header(&r, "access-control-expose-headers"),
            Some("x-header-3, x-header-4")
        );
        assert_eq!(header(&r, "access-control-max-age"), Some("3600"));
        assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
        assert_eq!(header(&r, "vary"), Some("origin"));
    }
    // An origin not allowed: refused, named, no CORS header.
    let refused = [
        ("origin", "https://foobar.com"),
        ("access-control-request-method", "GET"),
    ];
    let r = call(port, "OPTIONS", "/cors-1", &refused).await;
    assert_eq!((r.status, r.reason()), (403, Some("cors_origin_refused")));
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    // Actual requests go to the backend; the allowed origin's answer says
    // who may read it.
    let r = call(port, "GET", "/cors-1", &[("origin", "https://www.foo.com")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["pod"], "shop-0");
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://www.foo.com")
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&r, "access-control-allow-methods"), None);
    let r = call(port, "GET", "/cors-1", &[("origin", "https://foobar.com")]).await;
    assert_eq!(r.status, 200, "the backend still answers");
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    assert_eq!(header(&r, "vary"), Some("origin"));

    // Wildcard methods without credentials: `*`, and no credentials header.
    let r = call(
        port,
        "OPTIONS",
        "/cors-2",
        &[
            ("origin", "https://www.foo.com"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "access-control-allow-methods"), Some("*"));
    assert_eq!(header(&r, "access-control-allow-credentials"), None);

    // Wildcards with credentials name the request's own back.
    let r = call(
        port,
        "OPTIONS",
        "/cors-wildcard-methods-headers",
        &[
            ("origin", "https://other.foo.com"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-header-1, x-header-2"),
        ],
    )
    .await;
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://other.foo.com")
    );
    assert_eq!(header(&r, "access-control-allow-methods"), Some("PUT"));
    assert_eq!(
        header(&r, "access-control-allow-headers"),
        Some("x-header-1, x-header-2")
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));

    // CORSAllowCredentialsBehavior: credentials false, no header.
    let r = call(
        port,
        "GET",
        "/cors-behavior-creds-false",
        &[
            ("origin", "https://app.example"),
            ("cookie", "sid=abc123"),
            ("authorization", "Bearer test"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), None);

    // A rule without the filter: an OPTIONS goes to the backend as before.
    let r = call(port, "OPTIONS", "/plain", &refused).await;
    assert_eq!(r.json()["method"], "OPTIONS");
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    assert!(
        gw.metrics()
            .await
            .contains("reason=\"cors_origin_refused\""),
        "the refusal is counted"
    );
}

/// A preflight carries no credentials: it is answered before a
/// SecurityPolicy asks for any, and the policy's refusal of an actual
/// request still says who may read it.
#[tokio::test]
async fn a_preflight_is_answered_before_a_token_is_asked_for() {
    let app = echo("shop", "shop-0");
    let port = free_port();
    let dir = TempDir::new();
    let signer = common::jwt::Signer::new("k1");
    let jwks = serde_json::json!({"keys": [signer.jwk()]});
    let policy = format!(
        r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: need-token}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: cors}}]
  jwt:
    providers:
    - name: shop
      issuer: https://issuer.test
      localJWKS: {{type: Inline, inline: '{jwks}'}}
"#
    );
    dir.write(
        "gw.yaml",
        &(gateway_yaml(port) + &service_yaml("shop", app.port, None) + ROUTES + &policy),
    );
    let gw = Gateway::start(&dir).await;
    let preflight = [
        ("origin", "https://www.foo.com"),
        ("access-control-request-method", "GET"),
    ];
    let r = call(port, "OPTIONS", "/cors-1", &preflight).await;
    assert_eq!(r.status, 200, "{}", gw.logs());
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://www.foo.com")
    );
    let r = call(port, "GET", "/cors-1", &[("origin", "https://www.foo.com")]).await;
    assert_eq!((r.status, r.reason()), (401, Some("jwt_missing")));
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://www.foo.com"),
        "the page may read why"
    );
}

#[test]
fn a_bad_cors_filter_is_refused_with_its_field_path() {
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &(gateway_yaml(free_port())
            + &service_yaml("shop", free_port(), None)
            + r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad}
spec:
  parentRefs: [{name: gw}]
  rules:
  - filters:
    - type: CORS
      cors:
        allowOrigins: ["ftp://files.example", "*", "https://a.*.example"]
        allowMethods: ["GET POST"]
        maxAge: 0
    backendRefs: [{name: shop, port: 80}]
"#),
    );
    let (code, out) = check(&dir);
    assert_ne!(code, Some(0), "{out}");
    for said in [
        "spec.rules[0].filters[0].cors.allowOrigins[0]",
        "the scheme must be http or https",
        "spec.rules[0].filters[0].cors.allowOrigins: * must be the only entry",
        "spec.rules[0].filters[0].cors.allowOrigins[2]",
        "spec.rules[0].filters[0].cors.allowMethods[0]",
        "spec.rules[0].filters[0].cors.maxAge: must be at least 1",
    ] {
        assert!(out.contains(said), "{said}: {out}");
    }
}
