//! A SecurityPolicy's external authorization at the gateway, through the
//! real binary, against a service speaking Envoy's gRPC `Check` and one
//! speaking plain HTTP: what each is shown, what an allowing answer
//! changes for the backend, a refusal relayed as written, and a service
//! that fails, is slow or is not there (closed by default, open if asked).

mod common;
use common::ext_authz::Service;
use common::*;

type Req = http::Request<http_body_util::Full<bytes::Bytes>>;

fn with(port: u16, path: &str, headers: &[(&str, &str)]) -> Req {
    request("GET", port, "shop.example.com", path, headers)
}

/// A POST of `body` to `path`.
fn posting(port: u16, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Req {
    let mut req = request("POST", port, "shop.example.com", path, headers);
    *req.body_mut() = http_body_util::Full::new(bytes::Bytes::from(body));
    req
}

async fn call(req: Req) -> Resp {
    send(req).await.expect("gateway answers")
}

fn policy(name: &str, rule: &str, ext: &str) -> String {
    format!(
        r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: {name}}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api, sectionName: {rule}}}]
  extAuth:
{ext}"#
    )
}

fn setup(port: u16, echo_port: u16, authz_port: u16) -> TempDir {
    let rule = |name: &str| {
        format!(
            "  - name: {name}\n    matches: [{{path: {{type: PathPrefix, value: /{name}}}}}]\n    backendRefs: [{{name: shop, port: 80}}]\n"
        )
    };
    let mut yaml = gateway_yaml(port)
        + &service_yaml("shop", echo_port, None)
        + &service_yaml("authz", authz_port, None)
        + &service_yaml("nobody", free_port(), None)
        + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: api}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n";
    for name in [
        "grpc", "http", "closed", "open", "slow", "withbody", "cached", "gcached",
    ] {
        yaml += &rule(name);
    }
    yaml += &policy(
        "grpc",
        "grpc",
        "    grpc: {backendRefs: [{name: authz, port: 80}]}\n    headersToExtAuth: [authorization, x-remove-me, x-trace]\n",
    );
    yaml += &policy(
        "http",
        "http",
        "    http:\n      backendRef: {name: authz, port: 80}\n      path: /auth\n      headersToBackend: [x-authz-user]\n    headersToExtAuth: [x-trace]\n",
    );
    yaml += &policy(
        "closed",
        "closed",
        "    grpc: {backendRef: {name: nobody, port: 80}}\n",
    );
    yaml += &policy(
        "open",
        "open",
        "    grpc: {backendRef: {name: nobody, port: 80}}\n    failOpen: true\n",
    );
    yaml += &policy(
        "withbody",
        "withbody",
        "    grpc: {backendRef: {name: authz, port: 80}}\n    bodyToExtAuth: {maxRequestBytes: 16}\n",
    );
    yaml += &policy(
        "cached",
        "cached",
        "    http:\n      backendRef: {name: authz, port: 80}\n      headersToBackend: [x-authz-user]\n    cache: {ttl: 1s}\n",
    );
    yaml += &policy(
        "gcached",
        "gcached",
        "    grpc: {backendRef: {name: authz, port: 80}}\n    cache: {ttl: 60s, maxEntries: 100}\n",
    );
    yaml += &policy(
        "slow",
        "slow",
        "    http: {backendRef: {name: authz, port: 80}}\n    timeout: 300ms\n",
    );
    let dir = TempDir::new();
    dir.write("gw.yaml", &yaml);
    dir
}

#[tokio::test]
async fn a_grpc_authorization_service_decides_as_envoy_s_would() {
    let app = echo("shop", "shop-0");
    let authz = Service::start().await;
    let port = free_port();
    let dir = setup(port, app.port, authz.port);
    let gw = Gateway::start(&dir).await;

    // Allowed: the service's headers reach the backend; the one it
    // removes does not; what it was shown is Envoy's CheckRequest.
    let headers = [
        ("authorization", "Bearer good"),
        ("x-remove-me", "1"),
        ("x-trace", "t1"),
        ("x-trace", "t2"),
        ("x-secret", "s"),
    ];
    let r = call(with(port, "/grpc/items?page=2", &headers)).await;
    assert_eq!(r.status, 200, "{}", gw.logs());
    let seen = r.json();
    let h = &seen["headers"];
    assert_eq!(h["X-Authz-User"][0], "alice", "{seen}");
    assert_eq!(h["X-Default"][0], "d", "{seen}");
    assert!(h.get("X-Remove-Me").is_none(), "{seen}");
    let asked = authz.take();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let a = &asked[0];
    assert!(a.grpc);
    assert_eq!(
        (a.method.as_str(), a.path.as_str()),
        ("GET", "/grpc/items?page=2")
    );
    assert_eq!(a.host, "shop.example.com");
    assert_eq!(a.header(":path"), Some("/grpc/items?page=2"));
    assert_eq!(a.header(":method"), Some("GET"));
    assert_eq!(
        a.header("x-trace"),
        Some("t1,t2"),
        "repeated headers joined"
    );
    assert_eq!(
        a.header("x-secret"),
        None,
        "only the headers named are shown"
    );
    assert_eq!(a.source, "127.0.0.1");

    // A header the service adds only where absent keeps the client's.
    let r = call(with(
        port,
        "/grpc",
        &[("authorization", "Bearer good"), ("x-default", "mine")],
    ))
    .await;
    assert_eq!(r.json()["headers"]["X-Default"][0], "mine");

    // Query parameters set and removed (the others as the client wrote
    // them), and headers for the client's answer (never its framing).
    let rewrite = [("authorization", "Bearer rewrite")];
    let r = call(with(
        port,
        "/grpc/q?drop=1&keep=a%20b&authz=old&drop=2",
        &rewrite,
    ))
    .await;
    assert_eq!(r.status, 200, "{}", gw.logs());
    assert_eq!(
        r.json()["path"],
        "/grpc/q?keep=a%20b&authz=yes&by=the+service",
        "{}",
        r.json()
    );
    assert_eq!(r.headers["x-authz-said"], "ok");
    assert_eq!(r.headers["set-cookie"], "from=authz");
    assert_ne!(r.headers["content-length"], "9999");

    // Refused with nothing more: 403, named.
    let r = call(with(port, "/grpc", &[("authorization", "Bearer bad")])).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.reason(), Some("ext_authz_denied"));
    assert_eq!(
        r.headers["x-strait-authz"],
        "SecurityPolicy default/grpc extAuth"
    );
    assert!(String::from_utf8_lossy(&r.body).contains("authorization service refused"));
    // Refused with a denied_response: its status, headers and body.
    let r = call(with(port, "/grpc", &[("authorization", "Bearer teapot")])).await;
    assert_eq!((r.status, &r.body[..]), (418, &b"no tea"[..]));
    assert_eq!(r.headers["x-why"], "teapot");
    assert_eq!(r.reason(), Some("ext_authz_denied"));
    // The service failing (gRPC INTERNAL) is not an answer: closed, 403.
    let r = call(with(port, "/grpc", &[("authorization", "Bearer boom")])).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.reason(), Some("ext_authz_failed"));
    assert!(String::from_utf8_lossy(&r.body).contains("could not be asked"));

    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("reason=\"ext_authz_denied\"")
            && metrics.contains("reason=\"ext_authz_failed\""),
        "{metrics}"
    );

    // bodyToExtAuth: text as `body`, other bytes as `raw_body`; the
    // backend gets the whole body; one over the limit is refused 413.
    authz.take();
    let bodies: [&[u8]; 2] = ["café=1".as_bytes(), &[0xff, 0x00, 0xfe]];
    for body in bodies {
        let good = [("authorization", "Bearer good")];
        let r = call(posting(port, "/withbody", &good, body.to_vec())).await;
        assert_eq!(r.status, 200, "{}", gw.logs());
        assert_eq!(r.json()["bodyBytes"], body.len(), "{}", r.json());
        let asked = authz.take();
        assert_eq!(asked[0].body, body, "{asked:?}");
    }
    let good = [("authorization", "Bearer good")];
    let r = call(posting(port, "/withbody", &good, vec![b'x'; 17])).await;
    assert_eq!((r.status, r.reason()), (413, Some("body_too_large")));
    assert!(authz.take().is_empty());
}

#[tokio::test]
async fn an_http_authorization_service_allows_with_200_and_refusals_are_relayed() {
    let app = echo("shop", "shop-0");
    let authz = Service::start().await;
    let port = free_port();
    let dir = setup(port, app.port, authz.port);
    let gw = Gateway::start(&dir).await;

    let headers = [
        ("authorization", "Bearer good"),
        ("x-trace", "t"),
        ("x-secret", "s"),
        ("x-authz-user", "forged"),
    ];
    let r = call(with(port, "/http/a?b=c", &headers)).await;
    assert_eq!(r.status, 200, "{}", gw.logs());
    let seen = r.json();
    let h = &seen["headers"];
    assert_eq!(
        h["X-Authz-User"],
        serde_json::json!(["bob"]),
        "replaced, not added: {seen}"
    );
    assert!(h.get("X-Other").is_none(), "only headersToBackend: {seen}");
    let asked = authz.take();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let a = &asked[0];
    assert!(!a.grpc);
    assert_eq!(
        (a.method.as_str(), a.path.as_str()),
        ("GET", "/auth/http/a?b=c")
    );
    assert_eq!(a.host, "shop.example.com");
    assert_eq!(a.header("authorization"), Some("Bearer good"));
    assert_eq!(a.header("x-trace"), Some("t"));
    assert_eq!(a.header("x-secret"), None);
    assert_eq!(a.header("content-length"), Some("0"));

    // Any answer but 200 and 5xx refuses, relayed as written.
    let r = call(with(port, "/http", &[("authorization", "Bearer nope")])).await;
    assert_eq!((r.status, &r.body[..]), (401, &b"go away"[..]));
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"ext\"");
    assert_eq!(r.reason(), Some("ext_authz_denied"));
    let r = call(with(port, "/http", &[("authorization", "Bearer teapot")])).await;
    assert_eq!((r.status, &r.body[..]), (418, &b"no tea"[..]));
    // A 5xx is the service failing: 403, its body not relayed.
    let r = call(with(port, "/http", &[("authorization", "Bearer boom")])).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.reason(), Some("ext_authz_failed"));
    assert!(!String::from_utf8_lossy(&r.body).contains("down"));
}

#[tokio::test]
async fn a_missing_or_slow_service_fails_closed_unless_the_policy_says_open() {
    let app = echo("shop", "shop-0");
    let authz = Service::start().await;
    let port = free_port();
    let dir = setup(port, app.port, authz.port);
    let gw = Gateway::start(&dir).await;

    let r = call(with(port, "/closed", &[])).await;
    assert_eq!(r.status, 403, "{}", gw.logs());
    assert_eq!(r.reason(), Some("ext_authz_failed"));
    let r = call(with(port, "/open", &[])).await;
    assert_eq!(r.status, 200, "failOpen lets it through");
    assert!(gw.logs().contains("failOpen"), "{}", gw.logs());

    // Past the policy's timeout (300ms; the service takes 2 s): failed.
    let started = std::time::Instant::now();
    let r = call(with(port, "/slow", &[("authorization", "Bearer slow")])).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.reason(), Some("ext_authz_failed"));
    assert!(started.elapsed() < std::time::Duration::from_millis(1500));
    let r = call(with(port, "/slow", &[("authorization", "Bearer good")])).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_policy_with_two_services_or_a_foreign_one_is_refused_by_path() {
    let app = echo("shop", "shop-0");
    let port = free_port();
    let mut yaml = gateway_yaml(port)
        + &service_yaml("shop", app.port, None)
        + &service_yaml("authz", free_port(), None)
        + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: api}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n";
    for name in ["two", "other", "ttl", "free"] {
        yaml += &format!("  - name: {name}\n    matches: [{{path: {{type: PathPrefix, value: /{name}}}}}]\n    backendRefs: [{{name: shop, port: 80}}]\n");
    }
    yaml += &policy("two", "two", "    grpc: {backendRef: {name: authz, port: 80}}\n    http: {backendRef: {name: authz, port: 80}}\n");
    yaml += &policy(
        "other",
        "other",
        "    grpc: {backendRef: {name: authz, namespace: elsewhere, port: 80}}\n",
    );
    yaml += &policy(
        "ttl",
        "ttl",
        "    grpc: {backendRef: {name: authz, port: 80}}\n    cache: {ttl: 2h}\n",
    );
    let dir = TempDir::new();
    dir.write("gw.yaml", &yaml);
    let gw = Gateway::start(&dir).await;
    let config = gw.config().await.to_string();
    for (path, said) in [
        ("spec.extAuth", "needs exactly one of grpc and http"),
        (
            "spec.extAuth.grpc.backendRef",
            "the Service must be in the policy's namespace default",
        ),
        ("spec.extAuth.cache.ttl", "2h is not between 1s and 1h"),
    ] {
        let found = format!("\"message\":\"{said}");
        let at = format!("\"path\":\"{path}\"");
        assert!(
            config.contains(&found) && config.contains(&at),
            "{path}: {said}: {config}"
        );
    }
    for path in ["/two", "/other", "/ttl"] {
        let r = call(with(port, path, &[])).await;
        assert_eq!(r.status, 500, "fails closed: {}", gw.logs());
        assert_eq!(r.reason(), Some("policy_invalid"));
    }
    assert_eq!(call(with(port, "/free", &[])).await.status, 200);
}

/// GEP-1494's `ExternalAuth` filter, as the Gateway API's experimental
/// channel writes it, alone on one rule and after a SecurityPolicy's
/// service on another.
#[tokio::test]
async fn the_gateway_api_external_auth_filter_asks_the_same_way() {
    let app = echo("shop", "shop-0");
    let authz = Service::start().await;
    let port = free_port();
    let filter = |protocol: &str, more: &str| {
        format!("    filters:\n    - type: ExternalAuth\n      externalAuth:\n        protocol: {protocol}\n        backendRef: {{name: authz, port: 80}}\n{more}")
    };
    let mut yaml = gateway_yaml(port)
        + &service_yaml("shop", app.port, None)
        + &service_yaml("authz", authz.port, None)
        + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: api}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n";
    let rules = [
        ("http", filter("HTTP", "        http: {path: /check}\n")),
        (
            "grpc",
            filter("GRPC", "        grpc: {allowedHeaders: [authorization]}\n"),
        ),
        ("both", filter("HTTP", "")),
        (
            "body",
            filter("HTTP", "        forwardBody: {maxSize: 1024}\n"),
        ),
    ];
    for (name, filters) in &rules {
        yaml += &format!("  - name: {name}\n    matches: [{{path: {{type: PathPrefix, value: /{name}}}}}]\n{filters}    backendRefs: [{{name: shop, port: 80}}]\n");
    }
    yaml += &policy(
        "both",
        "both",
        "    grpc: {backendRef: {name: authz, port: 80}}\n",
    );
    let dir = TempDir::new();
    dir.write("gw.yaml", &yaml);
    let gw = Gateway::start(&dir).await;

    // HTTP, no allowedResponseHeaders: every header of the answer but
    // its own framing and representation ones reaches the backend.
    let good = [("authorization", "Bearer good"), ("x-other", "client")];
    let r = call(with(port, "/http/x", &good)).await;
    assert_eq!(r.status, 200, "{}", gw.logs());
    let seen = r.json();
    let h = &seen["headers"];
    assert_eq!(h["X-Authz-User"][0], "bob", "{seen}");
    assert_eq!(h["X-Other"], serde_json::json!(["no"]), "{seen}");
    assert!(
        h.get("Date").is_none() && h.get("Content-Length").is_none(),
        "{seen}"
    );
    let asked = authz.take();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].path, "/check/http/x");
    let r = call(with(port, "/http/x", &[])).await;
    assert_eq!((r.status, r.reason()), (401, Some("ext_authz_denied")));
    assert_eq!(
        r.headers["x-strait-authz"],
        "HTTPRoute default/api rule 0 ExternalAuth"
    );
    authz.take();

    // gRPC with allowedHeaders: only those (and the pseudo-headers).
    let r = call(with(
        port,
        "/grpc",
        &[("authorization", "Bearer good"), ("x-no", "1")],
    ))
    .await;
    assert_eq!(r.status, 200);
    let asked = authz.take();
    assert_eq!(asked[0].header("x-no"), None, "{asked:?}");
    assert_eq!(
        asked[0].header("authorization"),
        Some("Bearer good"),
        "{asked:?}"
    );

    // A SecurityPolicy's service, then the filter's: both asked, and
    // either refuses.
    let r = call(with(port, "/both", &good)).await;
    assert_eq!(r.status, 200);
    let asked = authz.take();
    assert_eq!(
        asked.iter().map(|a| a.grpc).collect::<Vec<_>>(),
        [true, false],
        "policy first: {asked:?}"
    );
    let r = call(with(port, "/both", &[("authorization", "Bearer teapot")])).await;
    assert_eq!(r.status, 418);
    assert_eq!(
        r.headers["x-strait-authz"],
        "SecurityPolicy default/both extAuth"
    );
    assert_eq!(
        authz.take().len(),
        1,
        "the filter's service is not asked after a refusal"
    );

    // forwardBody: the service is shown the body, and the backend still
    // gets all of it; a body over maxSize is refused before anyone is
    // asked.
    let r = call(posting(port, "/body", &good, b"order=42".to_vec())).await;
    assert_eq!(r.status, 200, "{}", gw.logs());
    assert_eq!(r.json()["bodyBytes"], 8, "{}", r.json());
    let asked = authz.take();
    assert_eq!(asked[0].body, b"order=42", "{asked:?}");
    let r = call(posting(port, "/body", &good, vec![b'x'; 2000])).await;
    assert_eq!((r.status, r.reason()), (413, Some("body_too_large")));
    assert!(authz.take().is_empty());
}

/// With a token check in the same policy, the service is shown the token
/// (it may check it itself, as OPA's Envoy plugin does), never a header
/// the client forged to look verified.
#[tokio::test]
async fn the_service_is_shown_the_credentials_and_no_forged_certificate() {
    let app = echo("shop", "shop-0");
    let authz = Service::start().await;
    let signer = common::jwt::Signer::new("k");
    let jwks = serde_json::json!({"keys": [signer.jwk()]}).to_string();
    let port = free_port();
    let mut yaml = gateway_yaml(port)
        + &service_yaml("shop", app.port, None)
        + &service_yaml("authz", authz.port, None)
        + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: api}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n  - name: jwt\n    backendRefs: [{name: shop, port: 80}]\n";
    yaml += &policy(
        "jwt",
        "jwt",
        "    http: {backendRef: {name: authz, port: 80}}\n    headersToExtAuth: [x-forwarded-client-cert, x-user]\n",
    );
    yaml += &format!("  jwt:\n    providers: [{{name: p, issuer: https://issuer.test, localJWKS: {{type: Inline, inline: '{jwks}'}}, claimToHeaders: [{{claim: sub, header: x-user}}]}}]\n");
    let dir = TempDir::new();
    dir.write("gw.yaml", &yaml);
    let gw = Gateway::start(&dir).await;
    let token = format!(
        "Bearer {}",
        signer.sign(&common::jwt::claims(serde_json::json!({})))
    );
    let headers = [
        ("authorization", token.as_str()),
        (
            "x-forwarded-client-cert",
            "URI=spiffe://cluster.local/ns/x/sa/admin",
        ),
        ("x-user", "mallory"),
    ];
    let r = call(with(port, "/", &headers)).await;
    // The service refuses (it wants "Bearer good"): relayed.
    assert_eq!(
        (r.status, &r.body[..]),
        (401, &b"go away"[..]),
        "{}",
        gw.logs()
    );
    let asked = authz.take();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].header("authorization"), Some(token.as_str()));
    assert_eq!(
        asked[0].header("x-user"),
        Some("alice"),
        "the verified claim, not the forged one"
    );
    assert_eq!(asked[0].header("x-forwarded-client-cert"), None);
}

/// `cache`: a request shown to the service exactly as an earlier one gets
/// that one's answer, allowing or refusing, for the `ttl`; what differs on
/// every request (its id, its trace context) does not count; failures are
/// asked again.
#[tokio::test]
async fn a_cached_decision_answers_the_same_request_until_its_ttl() {
    let app = echo("shop", "shop-0");
    let authz = Service::start().await;
    let port = free_port();
    let dir = setup(port, app.port, authz.port);
    let gw = Gateway::start(&dir).await;
    let asked = |n: usize, why: &str| {
        let got = authz.take();
        assert_eq!(got.len(), n, "{why}: {got:?}");
    };

    let good = [("authorization", "Bearer good")];
    for _ in 0..3 {
        let r = call(with(port, "/cached/a", &good)).await;
        assert_eq!(r.status, 200, "{}", gw.logs());
        let user = &r.json()["headers"]["X-Authz-User"];
        assert_eq!(
            user[0],
            "bob",
            "the remembered changes are made: {}",
            r.json()
        );
    }
    asked(1, "the same request asks once");
    assert_eq!(call(with(port, "/cached/b", &good)).await.status, 200);
    asked(1, "another path is another question");
    let other = [("authorization", "Bearer good"), ("x-other", "1")];
    assert_eq!(call(with(port, "/cached/b", &other)).await.status, 200);
    asked(0, "a header the service is not sent does not count");

    let teapot = [("authorization", "Bearer teapot")];
    for _ in 0..2 {
        let r = call(with(port, "/cached/a", &teapot)).await;
        assert_eq!((r.status, &r.body[..]), (418, &b"no tea"[..]));
        assert_eq!(r.reason(), Some("ext_authz_denied"));
    }
    asked(1, "a refusal is remembered too");
    let boom = [("authorization", "Bearer boom")];
    for _ in 0..2 {
        let r = call(with(port, "/cached/a", &boom)).await;
        assert_eq!((r.status, r.reason()), (403, Some("ext_authz_failed")));
    }
    asked(2, "a failure is asked again");

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(call(with(port, "/cached/a", &good)).await.status, 200);
    asked(1, "past the ttl the service is asked again");

    // gRPC, every header sent: the request id and trace context differ
    // on every request and do not count; a header sent does.
    for i in 0..3 {
        let id = format!("req-{i}");
        let trace = format!("00-{:032x}-{:016x}-01", i + 1, i + 1);
        let h = [
            ("authorization", "Bearer good"),
            ("x-request-id", id.as_str()),
            ("traceparent", trace.as_str()),
        ];
        let r = call(with(port, "/gcached", &h)).await;
        assert_eq!(r.status, 200, "{}", gw.logs());
        assert_eq!(r.json()["headers"]["X-Authz-User"][0], "alice");
    }
    asked(1, "ids and trace context are not part of the question");
    let h = [("authorization", "Bearer good"), ("x-user", "eve")];
    assert_eq!(call(with(port, "/gcached", &h)).await.status, 200);
    asked(1, "a header the gRPC service is sent counts");
}
