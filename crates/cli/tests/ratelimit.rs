//! RateLimitPolicy's local limits through the real binary: a caller over
//! its count gets `429` with `Retry-After` and the `RateLimit` headers
//! (gRPC: `RESOURCE_EXHAUSTED`), others keep their own counts, one caller
//! flooding does not use up what others share, shadow mode refuses
//! nothing, a reload keeps the counts, and a bad policy is refused with
//! its field path.

mod common;
use common::*;

const ROUTES: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: shop, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: shop, port: 80}]
"#;

fn policy(name: &str, rules: &str) -> String {
    format!(
        r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: {name}}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api}}]
  local:
    rules:
{rules}"#
    )
}

const PER_USER: &str = r#"    - name: per-user
      clientSelectors: [{headers: [{name: x-user, type: Distinct}]}]
      limit: {requests: 3, unit: Minute}
"#;

async fn start(extra_yaml: &str, args: &[&str]) -> (Gateway, u16, TempDir, Echo) {
    let app = echo("shop", "shop-0");
    let port = free_port();
    let dir = TempDir::new();
    let yaml = gateway_yaml(port) + &service_yaml("shop", app.port, None) + ROUTES + extra_yaml;
    dir.write("gw.yaml", &yaml);
    let gw = Gateway::start_with(&dir, args).await;
    (gw, port, dir, app)
}

async fn call(port: u16, path: &str, headers: &[(&str, &str)]) -> Resp {
    let req = request("GET", port, "shop.example.com", path, headers);
    send(req).await.expect("gateway answers")
}

fn header<'r>(r: &'r Resp, name: &str) -> Option<&'r str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `Retry-After` of a refusal, in seconds.
fn retry_after(r: &Resp) -> u64 {
    header(r, "retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", r.headers))
}

#[tokio::test]
async fn a_caller_over_its_count_gets_429_and_when_to_come_back() {
    let (gw, port, _dir, _app) = start(&policy("api-limit", PER_USER), &[]).await;
    let alice = [("x-user", "alice")];
    for left in [2, 1, 0] {
        let r = call(port, "/api/items", &alice).await;
        assert_eq!(r.status, 200, "{}", gw.logs());
        assert_eq!(r.json()["pod"], "shop-0");
        assert_eq!(
            header(&r, "ratelimit-policy"),
            Some("\"per-user\";q=3;w=60")
        );
        // One request comes back every 20 s: the bucket is whole again
        // 20 s for each one taken.
        let taken = 3 - left;
        let want = format!("\"per-user\";r={left};t={}", 20 * taken);
        assert_eq!(header(&r, "ratelimit"), Some(want.as_str()));
    }
    let r = call(port, "/api/items", &alice).await;
    assert_eq!((r.status, r.reason()), (429, Some("rate_limited")));
    assert_eq!(
        header(&r, "x-strait-rate-limit"),
        Some("default/api-limit per-user")
    );
    let after = retry_after(&r);
    assert!((15..=20).contains(&after), "Retry-After {after}");
    assert_eq!(
        header(&r, "ratelimit"),
        Some(format!("\"per-user\";r=0;t={after}").as_str())
    );
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("RateLimitPolicy default/api-limit: rule per-user"),
        "{body}"
    );

    // Another caller has its own count; a request the rule does not
    // count (no x-user) passes without the headers; another route is
    // not limited.
    let r = call(port, "/api/items", &[("x-user", "bob")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        header(&r, "ratelimit"),
        Some("\"per-user\";r=2;t=20"),
        "bob's own count"
    );
    for _ in 0..5 {
        let r = call(port, "/api/items", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(header(&r, "ratelimit"), None);
        let r = call(port, "/index.html", &alice).await;
        assert_eq!(r.status, 200, "the web route has no policy");
    }
    let metrics = gw.metrics().await;
    let counted = |result: &str, n: u32| {
        metrics.lines().any(|l| {
            l.starts_with("strait_rate_limit_decisions_total{")
                && l.contains("policy=\"default/api-limit\"")
                && l.contains("rule=\"per-user\"")
                && l.contains("key=\"header\"")
                && l.contains(&format!("result=\"{result}\""))
                && l.ends_with(&format!(" {n}"))
        })
    };
    assert!(counted("allowed", 4), "{metrics}");
    assert!(counted("limited", 1), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("code=\"429\"") && l.contains("reason=\"rate_limited\"")),
        "{metrics}"
    );
}

/// Per-caller buckets under a shared ceiling: the per-caller rule is
/// checked first, so a flooder's refused requests take nothing from the
/// ceiling and the others keep their share.
#[tokio::test]
async fn one_caller_flooding_does_not_use_up_what_others_share() {
    let rules = r#"    - name: ceiling
      limit: {requests: 10, unit: Minute}
    - name: per-user
      clientSelectors: [{headers: [{name: x-user, type: Distinct}]}]
      limit: {requests: 4, unit: Minute}
"#;
    let (gw, port, _dir, _app) = start(&policy("fair", rules), &[]).await;
    let mut flood = (0, 0);
    for _ in 0..40 {
        let r = call(port, "/api", &[("x-user", "mallory")]).await;
        match (r.status, header(&r, "x-strait-rate-limit")) {
            (200, _) => flood.0 += 1,
            (429, Some("default/fair per-user")) => flood.1 += 1,
            other => panic!("{other:?}: {}", gw.logs()),
        }
    }
    assert_eq!(flood, (4, 36), "mallory gets her own 4");
    for user in ["alice", "bob"] {
        for _ in 0..3 {
            let r = call(port, "/api", &[("x-user", user)]).await;
            assert_eq!(r.status, 200, "{user} keeps a share");
        }
    }
    // 4 + 3 + 3 of the ceiling's 10: the next caller is refused by the
    // ceiling, not by its own count.
    let r = call(port, "/api", &[("x-user", "carol")]).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        header(&r, "x-strait-rate-limit"),
        Some("default/fair ceiling")
    );
}

#[tokio::test]
async fn shadow_mode_counts_but_refuses_nothing() {
    let rules = r#"    - name: watch
      shadowMode: true
      limit: {requests: 1, unit: Hour}
"#;
    let (gw, port, _dir, _app) = start(&policy("watch", rules), &[]).await;
    for _ in 0..3 {
        let r = call(port, "/api", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(header(&r, "ratelimit"), None, "a shadow rule says nothing");
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics.lines().any(|l| l.contains("rule=\"watch\"")
            && l.contains("result=\"shadow_limited\"")
            && l.ends_with(" 2")),
        "{metrics}"
    );
}

/// The client's address after the trusted-proxy rule, one count each.
#[tokio::test]
async fn clients_are_counted_by_address_after_the_trusted_proxy() {
    let rules = r#"    - name: per-client
      clientSelectors: [{sourceCIDR: {type: Distinct, value: 0.0.0.0/0}}]
      limit: {requests: 1, unit: Minute, burst: 2}
"#;
    let args = ["--xff-trusted-hops", "1"];
    let (gw, port, _dir, _app) = start(&policy("per-client", rules), &args).await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for _ in 0..2 {
        assert_eq!(call(port, "/api", &from("192.0.2.1")).await.status, 200);
    }
    let r = call(port, "/api", &from("192.0.2.1")).await;
    assert_eq!(r.status, 429, "{}", gw.logs());
    // A burst of 2, one back a minute: the next in 30 to 60 s.
    assert!((30..=60).contains(&retry_after(&r)), "{:?}", r.headers);
    assert_eq!(call(port, "/api", &from("192.0.2.2")).await.status, 200);
    // What the client writes left of the trusted entry does not count.
    let r = call(port, "/api", &[("x-forwarded-for", "10.9.9.9, 192.0.2.1")]).await;
    assert_eq!(r.status, 429);
}

/// A new configuration that keeps a rule unchanged keeps its counts.
#[tokio::test]
async fn a_reload_keeps_the_counts() {
    let (gw, port, dir, app) = start(&policy("api-limit", PER_USER), &[]).await;
    for _ in 0..3 {
        assert_eq!(call(port, "/api", &[("x-user", "alice")]).await.status, 200);
    }
    let generation = gw.config().await["generation"]
        .as_u64()
        .expect("generation");
    let more = prefix_route("other", "/other", "shop", "");
    let yaml = gateway_yaml(port)
        + &service_yaml("shop", app.port, None)
        + ROUTES
        + &policy("api-limit", PER_USER)
        + &more;
    dir.write("gw.yaml", &yaml);
    gw.wait_generation(generation + 1).await;
    let routes = gw.config().await.to_string();
    assert!(routes.contains("default/other"), "{routes}");
    let r = call(port, "/api", &[("x-user", "alice")]).await;
    assert_eq!(r.status, 429, "alice's count survived the reload");
}

/// A gRPC client gets `RESOURCE_EXHAUSTED`, not `UNAVAILABLE`: it must
/// not retry at once.
#[tokio::test]
async fn a_grpc_caller_gets_resource_exhausted() {
    let rules = r#"    - name: one
      limit: {requests: 1, unit: Hour}
"#;
    let (_gw, port, _dir, _app) = start(&policy("grpc", rules), &[]).await;
    let grpc = [("content-type", "application/grpc")];
    let _ = call(port, "/api/Call", &grpc).await;
    let r = call(port, "/api/Call", &grpc).await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "grpc-status"), Some("8"));
    assert_eq!(header(&r, "grpc-message"), Some("strait: rate limited"));
    assert!(header(&r, "retry-after").is_some());
}

#[test]
fn a_bad_policy_is_refused_with_its_field_path() {
    let dir = TempDir::new();
    let bad = r#"    - name: weekly
      clientSelectors: [{headers: [{name: x-user, type: Distinct, value: alice}]}]
      limit: {requests: 3, unit: Week}
    - name: "no spaces"
      limit: {requests: 0, unit: Second}
"#;
    dir.write(
        "gw.yaml",
        &(gateway_yaml(free_port())
            + &service_yaml("shop", free_port(), None)
            + ROUTES
            + &policy("bad", bad)
            + &global_policy("both", "{url: 'redis://a', cluster: ['redis://b']}", ONE)
            + &global_policy(
                "mixed",
                "{sentinel: {masterName: m, urls: ['redis://a', 'rediss://b']}}",
                ONE,
            )
            + &global_policy(
                "plain-ca",
                "{url: 'redis://a', caCertificateRefs: [{name: ca}]}",
                ONE,
            )),
    );
    let (code, out) = check(&dir);
    assert_ne!(code, Some(0), "{out}");
    for said in [
        "spec.global.redis: give exactly one of url, cluster and sentinel",
        "spec.global.redis.sentinel.urls[1]: mixes redis:// and rediss://",
        "spec.global.redis.caCertificateRefs: CAs are for TLS",
        "spec.local.rules[0].limit: unit: \"Week\" is not Second, Minute, Hour or Day",
        "spec.local.rules[0].clientSelectors[0].headers[0]: value: not with type Distinct",
        "spec.local.rules[1].limit: requests: must be at least 1",
        "the policy limits nothing until it is fixed",
    ] {
        assert!(out.contains(said), "{said:?} not in {out}");
    }
}

const ONE: &str = "    - limit: {requests: 1, unit: Second}\n";

/// Two a minute for each `x-user`, counted in Redis.
const TWO_PER_USER: &str = r#"    - name: per-user
      clientSelectors: [{headers: [{name: x-user, type: Distinct}]}]
      limit: {requests: 2, unit: Minute}
"#;

fn global_policy(name: &str, redis: &str, rules: &str) -> String {
    format!(
        r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: {name}}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api}}]
  global:
    redis: {redis}
    rules:
{rules}"#
    )
}

/// Two gateways, one Redis: one count between them.
#[tokio::test]
async fn gateways_sharing_a_redis_share_one_count() {
    let redis = common::redis::Redis::start().await;
    let rules = "    - name: five\n      limit: {requests: 5, unit: Minute}\n";
    let yaml = global_policy("shared", &format!("{{url: '{}'}}", redis.url()), rules);
    let (a, port_a, _da, _app_a) = start(&yaml, &[]).await;
    let (b, port_b, _db, _app_b) = start(&yaml, &[]).await;
    let mut allowed = [0, 0];
    for i in 0..20 {
        let port = [port_a, port_b][i % 2];
        let r = call(port, "/api", &[]).await;
        match r.status {
            200 => allowed[i % 2] += 1,
            429 => assert_eq!(r.reason(), Some("rate_limited")),
            other => panic!("{other}: {} {}", a.logs(), b.logs()),
        }
    }
    assert_eq!(allowed[0] + allowed[1], 5, "{allowed:?}");
    assert!(
        allowed[0] > 0 && allowed[1] > 0,
        "both counted: {allowed:?}"
    );
    let keys = redis.cli(&["--scan", "--pattern", "strait:rl:*"]);
    assert_eq!(
        keys.as_deref().map(|k| k.lines().count()),
        Some(1),
        "{keys:?}"
    );
}

/// Redis gone: a caller Redis already refused is still refused (this
/// proxy remembers until when), others pass (fail open) at once; when
/// Redis is back, counting resumes.
#[tokio::test]
async fn without_redis_the_failure_mode_decides_and_counting_resumes() {
    let mut redis = common::redis::Redis::start().await;
    let rules = TWO_PER_USER;
    let backend = format!("{{url: '{}', timeout: 200ms}}", redis.url());
    let (gw, port, _dir, _app) = start(&global_policy("open", &backend, rules), &[]).await;
    let alice = [("x-user", "alice")];
    for _ in 0..2 {
        assert_eq!(
            call(port, "/api", &alice).await.status,
            200,
            "{}",
            gw.logs()
        );
    }
    assert_eq!(call(port, "/api", &alice).await.status, 429);

    redis.kill();
    let begun = std::time::Instant::now();
    let r = call(port, "/api", &alice).await;
    assert_eq!(r.status, 429, "refused from memory, without Redis");
    for user in ["bob", "carol", "dave"] {
        let r = call(port, "/api", &[("x-user", user)]).await;
        assert_eq!(r.status, 200, "fail open: {}", gw.logs());
        assert_eq!(r.headers.get("ratelimit"), None, "nothing counted");
    }
    assert!(
        begun.elapsed() < std::time::Duration::from_secs(2),
        "no request waited long"
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("rule=\"per-user\"") && l.contains("result=\"failed_open\"")),
        "{metrics}"
    );
    assert!(gw.logs().contains("Redis could not count"), "{}", gw.logs());

    redis.restart().await;
    let bob = [("x-user", "bob")];
    eventually(
        15,
        || format!("counting never resumed: {}", gw.logs()),
        || async { (call(port, "/api", &bob).await.status == 429).then_some(()) },
    )
    .await;
}

/// A Redis that takes connections but never answers: the request waits
/// no longer than the policy's timeout, then fails closed.
#[tokio::test]
async fn a_silent_redis_fails_closed_within_the_timeout() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "redis://127.0.0.1:{}",
        silent.local_addr().expect("addr").port()
    );
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok(conn) = silent.accept().await {
            kept.push(conn);
        }
    });
    let rules = "    - name: any\n      limit: {requests: 100, unit: Second}\n";
    let backend = format!("{{url: '{url}', timeout: 300ms, failureMode: Closed}}");
    let (gw, port, _dir, _app) = start(&global_policy("closed", &backend, rules), &[]).await;
    // The first waits for its answer until the timeout; the next may
    // learn sooner that the connection is broken.
    for i in 0..3 {
        let begun = std::time::Instant::now();
        let r = call(port, "/api", &[]).await;
        let took = begun.elapsed();
        assert_eq!(
            (r.status, r.reason()),
            (503, Some("rate_limit_failed")),
            "{}",
            gw.logs()
        );
        assert!(took < std::time::Duration::from_millis(1500), "{took:?}");
        if i == 0 {
            assert!(
                took >= std::time::Duration::from_millis(250),
                "{took:?}: asked at all?"
            );
        }
    }
    held.abort();
}

#[test]
fn check_says_where_each_policy_applies_and_how_it_counts() {
    let dir = TempDir::new();
    let older = policy("api-limit", PER_USER).replace(
        "metadata: {name: api-limit}",
        "metadata: {name: api-limit, creationTimestamp: '2026-01-01T00:00:00Z'}",
    );
    let younger = policy("again", "    - limit: {requests: 9, unit: Second}\n");
    dir.write(
        "gw.yaml",
        &(gateway_yaml(free_port())
            + &service_yaml("shop", free_port(), None)
            + ROUTES
            + &older
            + &younger
            + &global_policy(
                "sentinel",
                "{sentinel: {masterName: mymaster, urls: ['redis://:pw@s1:26379']}}",
                ONE,
            )
            .replace("name: api}]", "name: web}]")),
    );
    let (code, out) = check(&dir);
    assert_eq!(code, Some(0), "{out}");
    for said in [
        "RateLimitPolicy default/api-limit -> HTTPRoute api: applies",
        "RateLimitPolicy default/again -> HTTPRoute api: does not apply (Conflicted): RateLimitPolicy default/api-limit is older",
        "RateLimitPolicy default/api-limit rule per-user: 3 a minute (burst 3), one count per header, local",
        "RateLimitPolicy default/again rule rule-0: 9 a second (burst 9), one count per route, local",
        "RateLimitPolicy default/sentinel counts global rules in primary \"mymaster\" of Sentinel redis://:***@s1:26379 (timeout 50ms, failure mode Open)",
    ] {
        assert!(out.contains(said), "{said:?} not in {out}");
    }
}

/// Keys from what the route's SecurityPolicy proved: a verified token's
/// claim, an accepted API key's client. An unverified claim counts for
/// nothing: a forged token never reaches the count.
#[tokio::test]
async fn counts_by_a_verified_claim_and_by_an_api_key_client() {
    let signer = common::jwt::Signer::new("k1");
    let jwks = serde_json::json!({"keys": [signer.jwk()]});
    let yaml = format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: keyed}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - name: token
    matches: [{{path: {{type: PathPrefix, value: /token}}}}]
    backendRefs: [{{name: shop, port: 80}}]
  - name: key
    matches: [{{path: {{type: PathPrefix, value: /key}}}}]
    backendRefs: [{{name: shop, port: 80}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: api-keys}}
stringData: {{client-a: key-a-123, client-b: key-b-456}}
---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: token}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: keyed, sectionName: token}}]
  jwt:
    providers:
    - name: shop
      issuer: https://issuer.test
      localJWKS: {{type: Inline, inline: '{jwks}'}}
---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: key}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: keyed, sectionName: key}}]
  apiKeyAuth:
    credentialRefs: [{{group: "", kind: Secret, name: api-keys}}]
    extractFrom: [{{headers: [x-api-key]}}]
---
apiVersion: policy.strait.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: per-sub}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: keyed, sectionName: token}}]
  local:
    rules:
    - name: per-sub
      clientSelectors: [{{jwtClaims: [{{name: sub, type: Distinct}}]}}]
      limit: {{requests: 2, unit: Hour}}
---
apiVersion: policy.strait.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: per-client}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: keyed, sectionName: key}}]
  local:
    rules:
    - name: per-client
      clientSelectors: [{{apiKeyClient: {{type: Distinct}}}}]
      limit: {{requests: 1, unit: Hour}}
"#
    );
    let (gw, port, _dir, _app) = start(&yaml, &[]).await;
    let bearer = |sub: &str| {
        let claims = common::jwt::claims(serde_json::json!({"sub": sub}));
        format!("Bearer {}", signer.sign(&claims))
    };
    let (alice, bob) = (bearer("alice"), bearer("bob"));
    for _ in 0..2 {
        let r = call(port, "/token", &[("authorization", &alice)]).await;
        assert_eq!(r.status, 200, "{}", gw.logs());
    }
    let r = call(port, "/token", &[("authorization", &alice)]).await;
    assert_eq!((r.status, r.reason()), (429, Some("rate_limited")));
    // A new token for the same subject is the same count.
    let again = bearer("alice");
    assert_eq!(
        call(port, "/token", &[("authorization", &again)])
            .await
            .status,
        429
    );
    assert_eq!(
        call(port, "/token", &[("authorization", &bob)])
            .await
            .status,
        200
    );
    // A forged token is refused before it is counted.
    let forged = common::jwt::Signer::new("k1")
        .sign(&common::jwt::claims(serde_json::json!({"sub": "carol"})));
    let r = call(
        port,
        "/token",
        &[("authorization", &format!("Bearer {forged}"))],
    )
    .await;
    assert_eq!((r.status, r.reason()), (401, Some("jwt_invalid")));

    assert_eq!(
        call(port, "/key", &[("x-api-key", "key-a-123")])
            .await
            .status,
        200
    );
    let r = call(port, "/key", &[("x-api-key", "key-a-123")]).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        call(port, "/key", &[("x-api-key", "key-b-456")])
            .await
            .status,
        200
    );
    let metrics = gw.metrics().await;
    for key in ["claim", "api_key_client"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.contains(&format!("key=\"{key}\"")) && l.contains("result=\"limited\"")),
            "{key}: {metrics}"
        );
    }
}

#[tokio::test]
async fn headers_can_be_kept_for_refusals_only() {
    let quiet = policy("quiet", PER_USER)
        .replace("  local:\n", "  disableRateLimitHeaders: true\n  local:\n");
    let (gw, port, _dir, _app) = start(&quiet, &[]).await;
    let alice = [("x-user", "alice")];
    for _ in 0..3 {
        let r = call(port, "/api", &alice).await;
        assert_eq!(r.status, 200, "{}", gw.logs());
        assert_eq!(header(&r, "ratelimit"), None);
        assert_eq!(header(&r, "ratelimit-policy"), None);
    }
    let r = call(port, "/api", &alice).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        header(&r, "ratelimit-policy"),
        Some("\"per-user\";q=3;w=60")
    );
    assert!(header(&r, "ratelimit").is_some_and(|v| v.starts_with("\"per-user\";r=0;t=")));
    assert!(retry_after(&r) >= 1);
}

/// A CA and a certificate for 127.0.0.1 it signed, in a folder as
/// `redis-server` reads them (`ca.crt`, `server.crt`, `server.key`);
/// returns the CA's PEM too.
fn redis_certs() -> (TempDir, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("key");
    let ca = rcgen::CertifiedIssuer::self_signed(params, key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    // Not the CA's name: OpenSSL would take the certificate for self-signed.
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "redis");
    let cert = params.signed_by(&key, &ca).expect("cert");
    let dir = TempDir::new();
    dir.write("ca.crt", &ca.pem());
    dir.write("server.crt", &cert.pem());
    dir.write("server.key", &key.serialize_pem());
    (dir, ca.pem())
}

fn indented(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// `rediss://`: checked against the policy's own CA, global counting
/// works; against the system's roots, Redis's certificate is refused and
/// the failure mode decides.
#[tokio::test]
async fn global_limits_count_over_tls_checked_with_the_policys_ca() {
    let (certs, ca) = redis_certs();
    let redis = common::redis::Redis::start_tls(certs.path()).await;
    assert!(redis.url().starts_with("rediss://"));
    let rules = "    - name: three\n      limit: {requests: 3, unit: Minute}\n";
    let with_ca = format!(
        "{{url: '{}', timeout: 2s, caCertificateRefs: [{{kind: ConfigMap, name: redis-ca}}]}}",
        redis.url()
    );
    let config_map = format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: redis-ca}}\ndata:\n  ca.crt: |\n{}",
        indented(&ca, 4)
    );
    let yaml = global_policy("tls", &with_ca, rules) + &config_map;
    let (gw, port, _dir, _app) = start(&yaml, &[]).await;
    let statuses = {
        let mut s = Vec::new();
        for _ in 0..5 {
            s.push(call(port, "/api", &[]).await.status);
        }
        s
    };
    assert_eq!(statuses, [200, 200, 200, 429, 429], "{}", gw.logs());
    assert_eq!(redis.keys(), 1, "counted in the TLS Redis");

    let without_ca = format!("{{url: '{}', timeout: 2s}}", redis.url());
    let (gw, port, _dir, _app) = start(&global_policy("roots", &without_ca, rules), &[]).await;
    for _ in 0..4 {
        assert_eq!(call(port, "/api", &[]).await.status, 200, "fail open");
    }
    let logs = gw.logs();
    assert!(logs.contains("Redis could not count"), "{logs}");
    assert!(logs.to_lowercase().contains("certificate"), "{logs}");
    assert!(
        gw.metrics().await.contains("result=\"failed_open\""),
        "counted as a failure"
    );
}

/// A Redis Cluster named by one of its nodes: the gateways learn the
/// others, each caller's key goes to its slot's node, and every caller
/// gets exactly its count across two gateways.
#[tokio::test]
async fn a_redis_cluster_keeps_each_callers_count_on_its_slots_node() {
    let cluster = common::redis::Cluster::start().await;
    let rules = TWO_PER_USER;
    let backend = format!("{{cluster: ['{}'], timeout: 2s}}", cluster.nodes[0].url());
    let yaml = global_policy("cluster", &backend, rules);
    let (a, port_a, _da, _app_a) = start(&yaml, &[]).await;
    let (b, port_b, _db, _app_b) = start(&yaml, &[]).await;
    for user in 0..12 {
        let user = format!("user-{user}");
        let mut allowed = 0;
        for i in 0..4 {
            let port = [port_a, port_b][i % 2];
            match call(port, "/api", &[("x-user", &user)]).await.status {
                200 => allowed += 1,
                429 => {}
                other => panic!("{other}: {} {}", a.logs(), b.logs()),
            }
        }
        assert_eq!(allowed, 2, "{user}: {} {}", a.logs(), b.logs());
    }
    let per_node: Vec<usize> = cluster.nodes.iter().map(|n| n.keys()).collect();
    assert_eq!(per_node.iter().sum::<usize>(), 12, "{per_node:?}");
    assert!(
        per_node.iter().filter(|k| **k > 0).count() >= 2,
        "keys on more than one node: {per_node:?}"
    );
}

/// Redis Sentinel names the primary; when the sentinel makes the replica
/// primary, the gateway follows it and counting goes on there.
#[tokio::test]
async fn sentinel_names_the_primary_and_a_failover_is_followed() {
    let sentinel = common::redis::Sentinel::start().await;
    let rules = TWO_PER_USER;
    let backend = format!(
        "{{sentinel: {{masterName: mymaster, urls: ['{}']}}, timeout: 500ms}}",
        sentinel.url()
    );
    let (gw, port, _dir, _app) = start(&global_policy("sentinel", &backend, rules), &[]).await;
    let alice = [("x-user", "alice")];
    for want in [200, 200, 429] {
        assert_eq!(
            call(port, "/api", &alice).await.status,
            want,
            "{}",
            gw.logs()
        );
    }
    assert_eq!(sentinel.primary.keys(), 1, "counted on the primary");

    sentinel.fail_over().await;
    // The old primary, now a replica, refuses writes: the gateway asks
    // the sentinel again and counts on the new one.
    let users = std::sync::atomic::AtomicU32::new(0);
    eventually(
        20,
        || format!("counting never resumed: {}", gw.logs()),
        || async {
            let user = format!(
                "u{}",
                users.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(call(port, "/api", &[("x-user", &user)]).await.status);
            }
            (got == [200, 200, 429]).then_some(())
        },
    )
    .await;
    assert!(
        sentinel.replica.keys() >= 2,
        "counted on the new primary: {:?}",
        sentinel.replica.cli(&["KEYS", "*"])
    );
}
