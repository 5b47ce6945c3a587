//! SecurityPolicy at the gateway, through the real binary: JSON Web
//! Tokens the test signs (valid, expired, not yet valid, another issuer or
//! audience, another key, `alg: none`, a tampered payload, an HMAC made
//! with the public key), where the token may be, what the backend sees,
//! and which policy applies to which rule; API keys, basic auth, and who
//! may call by address and by claims. (In a sidecar: mesh.rs.)

mod common;
use base64::Engine;
use common::jwt::{claims, now, Signer, B64};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn with(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = get(port, "shop.example.com", path);
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            http::HeaderValue::from_str(v).expect("value"),
        );
    }
    req
}

async fn status(req: http::Request<http_body_util::Full<bytes::Bytes>>) -> Resp {
    send(req).await.expect("gateway answers")
}

/// The route's keys are in a ConfigMap (`shared`, else the signer's);
/// its `public` rule's are inline.
fn setup(signer: &Signer, shared: Option<&str>, port: u16, echo_port: u16) -> TempDir {
    let dir = TempDir::new();
    let jwks = json!({"keys": [signer.jwk()]}).to_string();
    let in_map = shared.unwrap_or(&jwks);
    let routes = format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: api}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - name: public
    matches: [{{path: {{type: PathPrefix, value: /public}}}}]
    backendRefs: [{{name: shop, port: 80}}]
  - name: private
    matches: [{{path: {{type: PathPrefix, value: /}}}}]
    backendRefs: [{{name: shop, port: 80}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: issuer-keys}}
data:
  jwks: '{in_map}'
---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: api-jwt}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api}}]
  jwt:
    providers:
    - name: issuer
      issuer: https://issuer.test
      audiences: [shop]
      localJWKS: {{type: ValueRef, valueRef: {{group: "", kind: ConfigMap, name: issuer-keys}}}}
      extractFrom:
        headers: [{{name: authorization, valuePrefix: "Bearer "}}]
        cookies: [session]
        params: [access_token]
      claimToHeaders: [{{claim: sub, header: x-user}}, {{claim: admin, header: x-admin}}]
---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: public-optional}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api, sectionName: public}}]
  jwt:
    optional: true
    providers:
    - name: issuer
      issuer: https://issuer.test
      localJWKS: {{type: Inline, inline: '{jwks}'}}
      claimToHeaders: [{{claim: sub, header: x-user}}]
"#
    );
    dir.write(
        "gw.yaml",
        &(gateway_yaml(port) + &service_yaml("shop", echo_port, None) + &routes),
    );
    dir
}

#[tokio::test]
async fn tokens_are_checked_and_the_backend_sees_only_claims() {
    let signer = Signer::new("a");
    let app = echo("shop", "shop-0");
    let port = free_port();
    let dir = setup(&signer, None, port, app.port);
    let gw = Gateway::start_with(&dir, &["--access-log", "-"]).await;

    // No token: 401 with a Bearer challenge and the policy named.
    let r = status(with(port, "/cart", &[])).await;
    assert_eq!(r.status, 401, "{}", gw.logs());
    assert_eq!(r.reason(), Some("jwt_missing"));
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"strait\"");
    assert_eq!(r.headers["x-strait-authn"], "default/api-jwt");
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(
        body,
        "strait: SecurityPolicy default/api-jwt requires a token\n"
    );

    // A good token, in each place the provider looks: the backend gets
    // the claims as headers and never the token; a forged claim header
    // from the client is replaced.
    let token = signer.sign(&claims(json!({})));
    let bearer = format!("Bearer {token}");
    let cookie = format!("theme=dark; session={token}");
    for req in [
        with(
            port,
            "/cart",
            &[("authorization", &bearer), ("x-user", "mallory")],
        ),
        with(port, "/cart", &[("cookie", &cookie)]),
        with(port, &format!("/cart?page=2&access_token={token}"), &[]),
    ] {
        let r = status(req).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let seen = r.json();
        let h = &seen["headers"];
        assert_eq!(h["X-User"][0], "alice", "{seen}");
        assert_eq!(h["X-Admin"][0], "true", "{seen}");
        assert!(h.get("Authorization").is_none(), "token forwarded: {seen}");
        let text = seen.to_string();
        assert!(
            !text.contains(&token),
            "the token reached the backend: {seen}"
        );
        if let Some(c) = h.get("Cookie") {
            assert_eq!(c[0], "theme=dark", "{seen}");
        }
    }

    // Every bad token: 401 invalid_token, with why.
    let other = Signer::new("a");
    let mut tampered: Vec<String> = token.split('.').map(str::to_owned).collect();
    tampered[1] = B64.encode(claims(json!({"sub": "root"})).to_string());
    let unsigned = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(claims(json!({})).to_string())
    );
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(&signer.public).expect("secret"),
    )
    .expect("hmac");
    let bad = [
        (
            signer.sign(&claims(json!({"exp": now() - 3600}))),
            "expired",
        ),
        (
            signer.sign(&claims(json!({"nbf": now() + 3600}))),
            "not valid yet",
        ),
        (
            signer.sign(&claims(json!({"iss": "https://evil.test"}))),
            "issuer",
        ),
        (signer.sign(&claims(json!({"aud": "other"}))), "audience"),
        (other.sign(&claims(json!({}))), "signature"),
        (tampered.join("."), "signature"),
        (unsigned, "malformed"),
        (hmac, "no key"),
        ("not.a.token".to_string(), "malformed"),
    ];
    for (bad, why) in bad {
        let r = status(with(
            port,
            "/cart",
            &[("authorization", &format!("Bearer {bad}"))],
        ))
        .await;
        assert_eq!(r.status, 401, "{why}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.reason(), Some("jwt_invalid"), "{why}");
        let challenge = r.headers["www-authenticate"].to_str().unwrap_or_default();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        let body = String::from_utf8_lossy(&r.body).to_string();
        assert!(body.contains(why), "{why}: {body}");
    }

    // Smuggling: a second, different token anywhere (another place, a
    // cookie name with a space, an encoded parameter name) is refused,
    // never passed on beside the good one.
    let forged = other.sign(&claims(json!({"sub": "root"})));
    for req in [
        with(
            port,
            "/cart",
            &[
                ("authorization", &format!("Bearer {forged}")),
                ("cookie", &format!("session={token}")),
            ],
        ),
        with(
            port,
            "/cart",
            &[("cookie", &format!("session ={forged}; session={token}"))],
        ),
        with(
            port,
            &format!("/cart?access%5Ftoken={forged}&access_token={token}"),
            &[],
        ),
    ] {
        let r = status(req).await;
        assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
        let body = String::from_utf8_lossy(&r.body).to_string();
        assert!(body.contains("more than one token"), "{body}");
    }
    // Naming an audience or an issuer makes the claim required, and one
    // issuer is a string.
    let mut no_aud = claims(json!({}));
    no_aud.as_object_mut().map(|c| c.remove("aud"));
    let r = status(with(
        port,
        "/cart",
        &[("authorization", &format!("Bearer {}", signer.sign(&no_aud)))],
    ))
    .await;
    assert_eq!(r.status, 401);
    assert!(String::from_utf8_lossy(&r.body).contains("no aud"));
    let listed = signer.sign(&claims(
        json!({"iss": ["https://issuer.test", "https://evil.test"]}),
    ));
    let r = status(with(
        port,
        "/cart",
        &[("authorization", &format!("Bearer {listed}"))],
    ))
    .await;
    assert_eq!(r.status, 401);

    // The rule's own policy wins over the route's: optional there, but a
    // bad token is still refused, and x-user can only come from a token
    // (nor x_user, which CGI-style backends read as the same).
    let r = status(with(
        port,
        "/public/items",
        &[("x-user", "mallory"), ("x_user", "mallory")],
    ))
    .await;
    assert_eq!(r.status, 200);
    let seen = r.json().to_string();
    assert!(!seen.contains("mallory"), "{seen}");
    let r = status(with(port, "/public/items", &[("authorization", "Bearer ")])).await;
    assert_eq!(r.status, 401, "an empty token is not no token");
    let r = status(with(port, "/public/items", &[("authorization", &bearer)])).await;
    assert_eq!(r.json()["headers"]["X-User"][0], "alice");
    let r = status(with(
        port,
        "/public/items",
        &[("authorization", "Bearer nope")],
    ))
    .await;
    assert_eq!(r.status, 401);

    // The access log has the requests, not the tokens sent in the query.
    let log = eventually(
        5,
        || gw.stdout(),
        || async {
            let out = gw.stdout();
            out.contains("/public/items").then_some(out)
        },
    )
    .await;
    assert!(log.contains("/cart?page=2"), "{log}");
    assert!(
        !log.contains(&token) && !log.contains(&forged),
        "a token was logged"
    );
}

#[tokio::test]
async fn a_broken_policy_is_refused_by_path_and_fails_closed() {
    let signer = Signer::new("a");
    let app = echo("shop", "shop-0");
    let port = free_port();
    // A symmetric key is never accepted.
    let oct = r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#;
    let dir = setup(&signer, Some(oct), port, app.port);
    let gw = Gateway::start(&dir).await;
    let r = status(with(port, "/cart", &[])).await;
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.reason(), Some("policy_invalid"));
    let config = gw.config().await.to_string();
    assert!(
        config.contains("spec.jwt.providers[0].localJWKS key 0") && config.contains("kty oct"),
        "{config}"
    );
    // The rule with its own (good) policy is not affected.
    let r = status(with(port, "/public/x", &[])).await;
    assert_eq!(r.status, 200);
}

/// Three rules: API keys on one, basic auth on another, both on the third
/// (keys kept for the backend there).
fn credentials_setup(port: u16, echo_port: u16) -> TempDir {
    use sha1::Digest;
    let alice = bcrypt::hash_with_salt("wonderland", 4, [7; 16]).expect("bcrypt");
    let bob = format!(
        "{{SHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(b"builder"))
    );
    let key_a = base64::engine::general_purpose::STANDARD.encode("key-a-123");
    let routes = format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: api}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - name: keys
    matches: [{{path: {{type: PathPrefix, value: /keys}}}}]
    backendRefs: [{{name: shop, port: 80}}]
  - name: basic
    matches: [{{path: {{type: PathPrefix, value: /basic}}}}]
    backendRefs: [{{name: shop, port: 80}}]
  - name: both
    matches: [{{path: {{type: PathPrefix, value: /both}}}}]
    backendRefs: [{{name: shop, port: 80}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: api-keys}}
data: {{client-a: {key_a}}}
stringData: {{client-b: key-b-456}}
---
apiVersion: v1
kind: Secret
metadata: {{name: users}}
stringData:
  .htpasswd: |
    alice:{}
    bob:{bob}
    carol:$apr1$salt$hash
---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: keys}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api, sectionName: keys}}]
  apiKeyAuth:
    credentialRefs: [{{group: "", kind: Secret, name: api-keys}}]
    extractFrom: [{{headers: [x-api-key]}}, {{params: [api_key]}}]
    forwardClientIDHeader: x-client-id
---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: basic}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api, sectionName: basic}}]
  basicAuth:
    users: {{group: "", kind: Secret, name: users}}
    forwardUsernameHeader: x-user
---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: both}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api, sectionName: both}}]
  apiKeyAuth:
    credentialRefs: [{{group: "", kind: Secret, name: api-keys}}]
    forward: true
  basicAuth:
    users: {{group: "", kind: Secret, name: users}}
"#,
        alice.format_for_version(bcrypt::Version::TwoY)
    );
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &(gateway_yaml(port) + &service_yaml("shop", echo_port, None) + &routes),
    );
    dir
}

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[tokio::test]
async fn api_keys_and_basic_auth_name_the_caller_to_the_backend() {
    let app = echo("shop", "shop-0");
    let port = free_port();
    let dir = credentials_setup(port, app.port);
    let gw = Gateway::start(&dir).await;

    // API keys: none, a good one (header or parameter), a wrong one, two.
    let r = status(with(port, "/keys", &[])).await;
    assert_eq!(r.status, 401, "{}", gw.logs());
    assert_eq!(r.reason(), Some("api_key_missing"));
    assert_eq!(r.headers["www-authenticate"], "ApiKey realm=\"strait\"");
    assert_eq!(r.headers["x-strait-authn"], "default/keys");
    for req in [
        with(
            port,
            "/keys",
            &[
                ("x-api-key", "key-a-123"),
                ("x-client-id", "root"),
                ("x_api_key", "root"),
            ],
        ),
        with(port, "/keys?api_key=key-a-123", &[]),
    ] {
        let r = status(req).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let seen = r.json();
        assert_eq!(seen["headers"]["X-Client-Id"][0], "client-a", "{seen}");
        assert!(!seen.to_string().contains("key-a-123"), "{seen}");
        assert!(!seen.to_string().contains("root"), "{seen}");
    }
    let r = status(with(port, "/keys", &[("x-api-key", "key-b-456")])).await;
    assert_eq!(r.json()["headers"]["X-Client-Id"][0], "client-b");
    for (headers, path, why) in [
        (vec![("x-api-key", "key-a-124")], "/keys", "not accepted"),
        (vec![("x-api-key", "")], "/keys", "not accepted"),
        (
            vec![("x-api-key", "key-a-123")],
            "/keys?api_key=key-b-456",
            "more than one key",
        ),
    ] {
        let r = status(with(port, path, &headers)).await;
        assert_eq!(r.status, 401, "{why}");
        assert_eq!(r.reason(), Some("api_key_invalid"), "{why}");
        assert!(String::from_utf8_lossy(&r.body).contains(why), "{why}");
    }

    // Basic auth: bcrypt and {SHA} entries; the backend gets the user's
    // name, never the password.
    let r = status(with(port, "/basic", &[])).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.reason(), Some("basic_auth_missing"));
    assert_eq!(
        r.headers["www-authenticate"],
        "Basic realm=\"strait\", charset=\"UTF-8\""
    );
    for (user, password) in [
        ("alice", "wonderland"),
        ("alice", "wonderland"),
        ("bob", "builder"),
    ] {
        let r = status(with(
            port,
            "/basic",
            &[
                ("authorization", &basic(user, password)),
                ("x-user", "root"),
            ],
        ))
        .await;
        assert_eq!(
            r.status,
            200,
            "{user}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let seen = r.json();
        assert_eq!(seen["headers"]["X-User"][0], user, "{seen}");
        assert!(seen["headers"].get("Authorization").is_none(), "{seen}");
    }
    for auth in [
        basic("alice", "wonderlanD"),
        basic("bob", "wonderland"),
        basic("carol", "x"),
        basic("mallory", "x"),
        "Basic !!!".to_string(),
        "Basic bm9jb2xvbg==".to_string(),
    ] {
        let r = status(with(port, "/basic", &[("authorization", &auth)])).await;
        assert_eq!(
            (r.status, r.reason()),
            (401, Some("basic_auth_invalid")),
            "{auth}"
        );
    }
    // The entry strait cannot read is left out, and said.
    let config = gw.config().await.to_string();
    assert!(
        config.contains("spec.basicAuth.users") && config.contains(".htpasswd line 3"),
        "{config}"
    );

    // Both: each must pass; the key is kept for the backend here.
    let r = status(with(port, "/both", &[("x-api-key", "key-a-123")])).await;
    assert_eq!(r.reason(), Some("basic_auth_missing"));
    let r = status(with(
        port,
        "/both",
        &[
            ("x-api-key", "key-a-123"),
            ("authorization", &basic("bob", "builder")),
        ],
    ))
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["X-Api-Key"][0], "key-a-123");
}

#[tokio::test]
async fn authorization_allows_callers_by_address_and_by_claims() {
    let signer = Signer::new("a");
    let app = echo("shop", "shop-0");
    let port = free_port();
    let jwks = json!({"keys": [signer.jwk()]}).to_string();
    let yaml = format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: api}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - name: office
    matches: [{{path: {{type: PathPrefix, value: /office}}}}]
    backendRefs: [{{name: shop, port: 80}}]
  - name: admin
    matches: [{{path: {{type: PathPrefix, value: /admin}}}}]
    backendRefs: [{{name: shop, port: 80}}]
---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: office}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api, sectionName: office}}]
  authorization:
    rules:
    - {{name: blocked, action: Deny, principal: {{clientCIDRs: [203.0.113.66/32]}}}}
    - {{name: office, action: Allow, principal: {{clientCIDRs: [203.0.113.0/24]}}}}
---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: admin}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api, sectionName: admin}}]
  jwt:
    providers:
    - {{name: issuer, issuer: https://issuer.test, localJWKS: {{type: Inline, inline: '{jwks}'}}}}
  authorization:
    defaultAction: Deny
    rules:
    - name: admins
      action: Allow
      principal:
        jwt: {{provider: issuer, claims: [{{name: groups, values: [admins]}}], scopes: [write]}}
"#
    );
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &(gateway_yaml(port) + &service_yaml("shop", app.port, None) + &yaml),
    );
    let gw = Gateway::start_with(&dir, &["--xff-trusted-hops", "1"]).await;

    // By address: the load balancer's entry (the rightmost) is the
    // client; what the client wrote to its left is not believed.
    let r = status(with(port, "/office", &[("x-forwarded-for", "203.0.113.5")])).await;
    assert_eq!(r.status, 200, "{}", gw.logs());
    for (xff, why) in [
        (
            "203.0.113.66",
            "rule blocked denies the caller at 203.0.113.66",
        ),
        (
            "198.51.100.1",
            "no rule matches the caller at 198.51.100.1: default Deny",
        ),
        ("203.0.113.5, 198.51.100.1", "at 198.51.100.1"),
        ("", "at 127.0.0.1"),
    ] {
        let headers: Vec<(&str, &str)> = match xff {
            "" => vec![],
            xff => vec![("x-forwarded-for", xff)],
        };
        let r = status(with(port, "/office", &headers)).await;
        assert_eq!(r.status, 403, "{xff}");
        assert_eq!(r.reason(), Some("authz_denied"));
        assert_eq!(r.headers["x-strait-authz"], "SecurityPolicy default/office");
        let body = String::from_utf8_lossy(&r.body).to_string();
        assert!(body.contains(why), "{xff}: {body}");
    }

    // By claims and scopes, once the token checked out.
    let token = |extra| format!("Bearer {}", signer.sign(&claims(extra)));
    let admin = token(json!({"groups": ["staff", "admins"], "scope": "read write"}));
    let r = status(with(port, "/admin", &[("authorization", &admin)])).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    for other in [
        token(json!({"groups": ["staff"], "scope": "read write"})),
        token(json!({"groups": ["admins"], "scope": "read"})),
    ] {
        let r = status(with(port, "/admin", &[("authorization", &other)])).await;
        assert_eq!((r.status, r.reason()), (403, Some("authz_denied")));
    }
    let r = status(with(port, "/admin", &[])).await;
    assert_eq!(
        r.reason(),
        Some("jwt_missing"),
        "authentication comes first"
    );
}

/// A key set an issuer publishes at a URL, served by the test: what it
/// answers can change, and it counts the fetches.
#[derive(Clone, Default)]
struct Published(std::sync::Arc<std::sync::Mutex<(u16, String, usize)>>);

impl Published {
    fn set(&self, status: u16, body: String) {
        let mut p = self.0.lock().expect("published");
        (p.0, p.1) = (status, body);
    }

    fn fetches(&self) -> usize {
        self.0.lock().expect("published").2
    }

    async fn serve(self) -> u16 {
        serve_loopback(move |_req| {
            let this = self.clone();
            async move {
                let (status, body) = {
                    let mut p = this.0.lock().expect("published");
                    p.2 += 1;
                    (p.0, p.1.clone())
                };
                let answer = http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .expect("answer");
                Ok::<_, std::convert::Infallible>(answer)
            }
        })
        .await
    }
}

#[tokio::test]
async fn a_remote_key_set_is_fetched_followed_through_rotation_and_kept_when_the_issuer_fails() {
    let app = echo("shop", "shop-0");
    let (a, b) = (Signer::new("a"), Signer::new("b"));
    let published = Published::default();
    published.set(200, json!({"keys": [a.jwk()]}).to_string());
    let issuer = published.clone().serve().await;
    let port = free_port();
    let dir = TempDir::new();
    let provider = |uri: String| {
        format!("    providers:\n    - name: issuer\n      issuer: https://issuer.test\n      remoteJWKS: {{uri: '{uri}', cacheDuration: 1h}}\n      claimToHeaders: [{{claim: sub, header: x-user}}]\n")
    };
    let policy = |name: &str, rule: &str, uri: String| {
        format!("---\napiVersion: policy.strait.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {{name: {name}}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api, sectionName: {rule}}}]\n  jwt:\n{}", provider(uri))
    };
    let mut yaml = gateway_yaml(port)
        + &service_yaml("shop", app.port, None)
        + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: api}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n";
    for rule in ["live", "dead"] {
        yaml += &format!("  - name: {rule}\n    matches: [{{path: {{type: PathPrefix, value: /{rule}}}}}]\n    backendRefs: [{{name: shop, port: 80}}]\n");
    }
    let live = format!("http://127.0.0.1:{issuer}/jwks.json");
    yaml += &policy("live", "live", live.clone());
    yaml += &policy(
        "dead",
        "dead",
        format!("http://127.0.0.1:{}/jwks.json", free_port()),
    );
    dir.write("gw.yaml", &yaml);
    let gw = Gateway::start(&dir).await;
    let bearer = |s: &Signer, sub: &str| format!("Bearer {}", s.sign(&claims(json!({"sub": sub}))));

    // Fetched at start: a token of key a passes.
    let token = bearer(&a, "alice");
    eventually(
        5,
        || gw.logs(),
        || async {
            let r = status(with(port, "/live", &[("authorization", &token)])).await;
            (r.status == 200).then_some(())
        },
    )
    .await;
    assert_eq!(published.fetches(), 1);

    // The issuer rotates to key b: a token naming b fetches the set again
    // (not at once, and only once), then passes; a's new tokens do not.
    published.set(200, json!({"keys": [b.jwk()]}).to_string());
    let token = bearer(&b, "bob");
    let r = status(with(port, "/live", &[("authorization", &token)])).await;
    assert_eq!((r.status, r.reason()), (401, Some("jwt_invalid")));
    eventually(
        12,
        || format!("fetches: {}", published.fetches()),
        || async {
            let r = status(with(port, "/live", &[("authorization", &token)])).await;
            (r.status == 200).then_some(())
        },
    )
    .await;
    assert_eq!(r_user(port, &token).await, "bob");
    assert_eq!(published.fetches(), 2, "one fetch for the rotation");
    let r = status(with(
        port,
        "/live",
        &[("authorization", &bearer(&a, "old"))],
    ))
    .await;
    assert_eq!(r.status, 401, "key a left the set");

    // The issuer fails: the last good set is kept.
    published.set(503, "down".into());
    let c = Signer::new("c");
    let r = status(with(
        port,
        "/live",
        &[("authorization", &bearer(&c, "carol"))],
    ))
    .await;
    assert_eq!(r.status, 401);
    eventually(
        12,
        || gw.logs(),
        || async {
            gw.logs()
                .lines()
                .any(|l| l.contains(&live) && l.contains("kept_last_good=true"))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        r_user(port, &bearer(&b, "bea")).await,
        "bea",
        "b still accepted"
    );

    // An issuer never reached: its tokens are refused, saying why.
    let r = status(with(port, "/dead", &[("authorization", &bearer(&a, "x"))])).await;
    assert_eq!((r.status, r.reason()), (401, Some("jwt_invalid")));
    assert!(
        String::from_utf8_lossy(&r.body).contains("has not been fetched"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

/// The user the backend was told, for a token that passes.
async fn r_user(port: u16, token: &str) -> String {
    let r = status(with(port, "/live", &[("authorization", token)])).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["headers"]["X-User"][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_route_can_match_on_a_verified_claim() {
    let signer = Signer::new("a");
    let (v1, v2) = (echo("shop", "v1-0"), echo("shop-beta", "v2-0"));
    let port = free_port();
    let jwks = json!({"keys": [signer.jwk()]}).to_string();
    let yaml = format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: stable}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: shop, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: beta}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{headers: [{{name: x-group, value: beta}}]}}]
    backendRefs: [{{name: shop-beta, port: 80}}]
---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: users}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]
  jwt:
    providers:
    - name: issuer
      issuer: https://issuer.test
      localJWKS: {{type: Inline, inline: '{jwks}'}}
      claimToHeaders: [{{header: x-group, claim: group}}]
      recomputeRoute: true
"#
    );
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &(gateway_yaml(port)
            + &service_yaml("shop", v1.port, None)
            + &service_yaml("shop-beta", v2.port, None)
            + &yaml),
    );
    let gw = Gateway::start(&dir).await;
    let token = |group: &str| format!("Bearer {}", signer.sign(&claims(json!({"group": group}))));

    let beta = token("beta");
    let r = status(with(port, "/cart", &[("authorization", &beta)])).await;
    assert_eq!(r.service(), "shop-beta", "{}", gw.logs());
    assert_eq!(r.json()["headers"]["X-Group"][0], "beta");

    // The claim decides, not what the client wrote.
    let stable = token("stable");
    let forged = [("authorization", stable.as_str()), ("x-group", "beta")];
    let r = status(with(port, "/cart", &forged)).await;
    assert_eq!(r.service(), "shop", "{}", r.json());
    assert_eq!(r.json()["headers"]["X-Group"][0], "stable");
    // A token without the claim does not let the client's header choose.
    let none = format!("Bearer {}", signer.sign(&claims(json!({}))));
    let r = status(with(
        port,
        "/cart",
        &[("authorization", &none), ("x-group", "beta")],
    ))
    .await;
    assert_eq!(r.service(), "shop", "{}", r.json());
    let r = status(with(port, "/cart", &[("x-group", "beta")])).await;
    assert_eq!((r.status, r.reason()), (401, Some("jwt_missing")));
}
