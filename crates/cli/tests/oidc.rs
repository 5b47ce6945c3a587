//! OpenID Connect login at the gateway, against a real provider
//! (node-oidc-provider) and a browser's part: the redirect to the
//! provider with PKCE, state and nonce; the callback; the session cookie
//! and the tokens the backend gets; refresh; logout; and the refusals.

mod common;
use base64::Engine;
use common::oidc::{Browser, OpenIdProvider};
use common::*;

fn setup(port: u16, echo_port: u16, issuer: &str, extra: &str) -> TempDir {
    let yaml = gateway_yaml(port)
        + &service_yaml("app", echo_port, None)
        + &prefix_route("app", "/", "app", "")
        + &format!(
            r#"---
apiVersion: v1
kind: Secret
metadata: {{name: shop-oidc}}
stringData: {{client-secret: shop-client-secret}}
---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: login}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: app}}]
  oidc:
    provider: {{issuer: "{issuer}"}}
    clientID: shop
    clientSecret: {{name: shop-oidc}}
    scopes: [email]
    forwardAccessToken: true
    forwardIDToken: {{header: x-id-token}}
    denyRedirect: {{headers: [{{name: x-requested-with, value: XMLHttpRequest}}]}}
{extra}"#
        );
    let dir = TempDir::new();
    dir.write("gw.yaml", &yaml);
    dir
}

fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

fn header(r: &Resp, name: &str) -> String {
    let seen = r.json();
    seen["headers"][name][0].as_str().unwrap_or("").to_string()
}

async fn started(ttl: u64) -> Option<(OpenIdProvider, Echo, Gateway, u16, TempDir)> {
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/oauth2/callback");
    let op = OpenIdProvider::start(free_port(), &redirect, ttl).await?;
    let app = echo("app", "app-0");
    let dir = setup(port, app.port, &op.issuer, "");
    let gw = Gateway::start(&dir).await;
    Some((op, app, gw, port, dir))
}

#[tokio::test]
async fn a_browser_logs_in_at_a_real_provider_and_keeps_its_session() {
    let Some((op, _app, gw, port, _dir)) = started(3600).await else {
        return;
    };
    let site = format!("http://127.0.0.1:{port}");

    // No session: off to the provider, with PKCE, state and nonce.
    let mut browser = Browser::default();
    let r = browser
        .fetch("GET", &format!("{site}/items?page=2"), None)
        .await;
    assert_eq!(r.status, 302, "{}", gw.logs());
    assert_eq!(r.reason(), Some("oidc_login"));
    let location = r.headers["location"].to_str().expect("text").to_string();
    assert!(
        location.starts_with(&format!("{}/auth?", op.issuer)),
        "{location}"
    );
    let query: std::collections::HashMap<String, String> =
        form_urlencoded::parse(location.split_once('?').expect("a query").1.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(query["client_id"], "shop");
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["scope"], "openid email");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["redirect_uri"], format!("{site}/oauth2/callback"));
    assert!(
        query["state"].len() >= 20 && query["nonce"].len() >= 20,
        "{query:?}"
    );
    let cookie = r.headers["set-cookie"].to_str().expect("text");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );

    // A script is not sent to a login page.
    let r = send(request(
        "GET",
        port,
        &format!("127.0.0.1:{port}"),
        "/items",
        &[("x-requested-with", "XMLHttpRequest")],
    ))
    .await
    .expect("an answer");
    assert_eq!((r.status, r.reason()), (401, Some("oidc_login_required")));

    // The whole login: provider's form, consent, callback, then where the
    // user was going, with the tokens for the backend.
    let mut browser = Browser::default();
    let r = browser
        .browse(&format!("{site}/items?page=2"), "alice")
        .await;
    assert_eq!(r.status, 200, "{:#?}\n{}", browser.visited, gw.logs());
    let seen = r.json();
    assert_eq!(seen["path"], "/items?page=2", "{seen}");
    let id = claims(&header(&r, "X-Id-Token"));
    assert_eq!(id["sub"], "alice", "{id}");
    assert_eq!(id["aud"], "shop");
    let bearer = header(&r, "Authorization");
    assert!(
        bearer.starts_with("Bearer ") && bearer.len() > 20,
        "{bearer}"
    );
    assert!(
        !header(&r, "Cookie").contains("strait-oidc"),
        "the session cookie stays with strait: {seen}"
    );
    assert!(
        browser
            .visited
            .iter()
            .any(|v| v.contains("/oauth2/callback?")),
        "{:#?}",
        browser.visited
    );

    // The session holds: no provider involved.
    let before = browser.visited.len();
    let r = browser.browse(&format!("{site}/other"), "alice").await;
    assert_eq!(r.status, 200);
    assert_eq!(browser.visited.len(), before + 1, "{:#?}", browser.visited);
    assert_eq!(header(&r, "Authorization"), bearer);

    // A session cookie changed by the client is no session.
    let mut forged = Browser::default();
    for (k, v) in &browser.jar {
        let mut v = v.clone();
        if k.starts_with("strait-oidc") {
            let last = v.pop().expect("a value");
            v.push(if last == 'A' { 'B' } else { 'A' });
        }
        forged.jar.insert(k.clone(), v);
    }
    let r = forged.fetch("GET", &format!("{site}/other"), None).await;
    assert_eq!((r.status, r.reason()), (302, Some("oidc_login")));

    // A callback no login of this browser started is refused.
    let r = forged
        .fetch(
            "GET",
            &format!("{site}/oauth2/callback?code=x&state=AAAAAAAAAAAAAAAAAAAAAA"),
            None,
        )
        .await;
    assert_eq!((r.status, r.reason()), (401, Some("oidc_login_failed")));
    let r = forged
        .fetch(
            "GET",
            &format!("{site}/oauth2/callback?error=access_denied&state=x"),
            None,
        )
        .await;
    assert_eq!((r.status, r.reason()), (401, Some("oidc_login_failed")));
    assert!(String::from_utf8_lossy(&r.body).contains("access_denied"));

    // Logout: the session goes, then off to the provider's end.
    let r = browser.fetch("GET", &format!("{site}/logout"), None).await;
    assert_eq!((r.status, r.reason()), (302, Some("oidc_logout")));
    let location = r.headers["location"].to_str().expect("text");
    assert!(
        location.starts_with(&format!("{}/session/end?", op.issuer)),
        "{location}"
    );
    assert!(location.contains("id_token_hint="), "{location}");
    assert!(
        !browser.jar.keys().any(|k| k.starts_with("strait-oidc")),
        "{:?}",
        browser.jar
    );
    let r = browser.fetch("GET", &format!("{site}/other"), None).await;
    assert_eq!((r.status, r.reason()), (302, Some("oidc_login")));

    // Back after the login only to a path of this site: `//host/…` would
    // be another site's.
    let mut browser = Browser::default();
    let r = browser
        .browse(&format!("{site}//evil.example/x"), "alice")
        .await;
    assert_eq!(r.status, 200, "{:#?}", browser.visited);
    assert_eq!(r.json()["path"], "/", "{:#?}", browser.visited);
}

#[tokio::test]
async fn expired_tokens_are_refreshed_without_a_new_login() {
    let Some((op, _app, gw, port, _dir)) = started(2).await else {
        return;
    };
    let site = format!("http://127.0.0.1:{port}");
    let mut browser = Browser::default();
    let r = browser.browse(&format!("{site}/"), "bob").await;
    assert_eq!(r.status, 200, "{:#?}\n{}", browser.visited, gw.logs());
    let first = header(&r, "Authorization");
    let first_id = claims(&header(&r, "X-Id-Token"));

    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let before = browser.visited.len();
    let r = browser.browse(&format!("{site}/again"), "bob").await;
    assert_eq!(r.status, 200, "{}", gw.logs());
    assert_eq!(
        browser.visited.len(),
        before + 1,
        "no new login: {:#?}",
        browser.visited
    );
    assert!(
        r.headers.get_all("set-cookie").iter().next().is_some(),
        "the renewed session is sent back"
    );
    let second = header(&r, "Authorization");
    assert_ne!(first, second, "a new access token");
    let second_id = claims(&header(&r, "X-Id-Token"));
    assert_eq!(second_id["sub"], "bob");
    assert!(
        second_id["exp"].as_u64() > first_id["exp"].as_u64(),
        "{second_id}"
    );
    drop(op);
}

#[tokio::test]
async fn a_provider_that_cannot_be_reached_is_named() {
    let port = free_port();
    let app = echo("app", "app-0");
    let issuer = format!("http://127.0.0.1:{}", free_port());
    let dir = setup(port, app.port, &issuer, "");
    let gw = Gateway::start(&dir).await;
    let r = send(get(port, &format!("127.0.0.1:{port}"), "/x"))
        .await
        .expect("an answer");
    assert_eq!(
        (r.status, r.reason()),
        (502, Some("oidc_provider_failed")),
        "{}",
        gw.logs()
    );
    assert_eq!(r.headers["x-strait-authn"], "default/login");
    assert!(String::from_utf8_lossy(&r.body).contains("/.well-known/openid-configuration"));
}

#[tokio::test]
async fn a_jwt_provider_of_the_policy_checks_the_login_s_id_token() {
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/oauth2/callback");
    let Some(op) = OpenIdProvider::start(free_port(), &redirect, 3600).await else {
        return;
    };
    let app = echo("app", "app-0");
    // The ID token goes in Authorization, where the policy's JWT provider
    // verifies it against the provider's published keys; a script with a
    // token of its own skips the login and meets the JWT check alone.
    let extra = format!(
        r#"    passThroughAuthHeader: true
  jwt:
    providers:
    - name: shop-users
      issuer: "{issuer}"
      audiences: [shop]
      remoteJWKS: {{uri: "{issuer}/jwks"}}
      claimToHeaders: [{{header: x-user, claim: sub}}]
"#,
        issuer = op.issuer
    );
    let dir = setup(port, app.port, &op.issuer, &extra);
    let text = std::fs::read_to_string(dir.path().join("gw.yaml")).expect("yaml");
    let text = text.replace("    forwardAccessToken: true\n", "").replace(
        "forwardIDToken: {header: x-id-token}",
        "forwardIDToken: {header: Authorization}",
    );
    dir.write("gw.yaml", &text);
    let gw = Gateway::start(&dir).await;
    let site = format!("http://127.0.0.1:{port}");

    let mut browser = Browser::default();
    let r = browser.browse(&format!("{site}/me"), "carol").await;
    assert_eq!(r.status, 200, "{:#?}\n{}", browser.visited, gw.logs());
    assert_eq!(header(&r, "X-User"), "carol", "{}", r.json());
    assert_eq!(
        header(&r, "Authorization"),
        "",
        "the token is the provider's to keep"
    );

    let host = format!("127.0.0.1:{port}");
    let bearer = [("authorization", "Bearer not-a-token")];
    let r = send(request("GET", port, &host, "/me", &bearer))
        .await
        .expect("an answer");
    assert_eq!((r.status, r.reason()), (401, Some("jwt_invalid")));
}
