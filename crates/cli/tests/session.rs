//! Session persistence (GEP-1619) through the real binary, as the
//! Gateway API conformance tests ask it (`HTTPRouteSessionPersistence
//! Cookie`, the permanent lifetime): a session cookie set once and every
//! request carrying it answered by the same pod; a header session; a
//! permanent cookie's `Max-Age`; an idle timeout; the session kept when
//! the weights move away from its backend; a new session when its
//! endpoint dies; and bad settings refused by field path.

mod common;
use common::*;
use std::collections::HashSet;

/// A Service `name` (port 80) over one endpoint per echo pod.
fn service(name: &str, pods: &[Echo]) -> String {
    let endpoints: String = pods
        .iter()
        .map(|e| {
            format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-{p}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\nports: [{{name: http, port: {p}}}]\n",
                p = e.port
            )
        })
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n{endpoints}"
    )
}

/// The route: `weights` of cart and cart-v2 on `/cookie`.
fn route(weights: (u32, u32)) -> String {
    let rule = |path: &str, session: &str| {
        format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    sessionPersistence: {session}\n    backendRefs: [{{name: cart, port: 80, weight: {}}}, {{name: cart-v2, port: 80, weight: {}}}]\n",
            weights.0, weights.1
        )
    };
    let mut yaml = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: cart}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n".to_string();
    yaml += &rule("/cookie", "{}");
    yaml += &rule("/header", "{type: Header, sessionName: x-session}");
    yaml += &rule(
        "/permanent",
        "{sessionName: JSESSIONID, absoluteTimeout: 1h, cookieConfig: {lifetimeType: Permanent}}",
    );
    yaml += &rule("/idle", "{idleTimeout: 2s}");
    yaml
}

async fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Resp {
    let r = send(request("GET", port, "shop.example.com", path, headers))
        .await
        .expect("gateway answers");
    assert_eq!(r.status, 200, "{path}");
    r
}

fn pod(r: &Resp) -> String {
    r.json()["pod"].as_str().unwrap_or_default().to_string()
}

/// The `name=value` of the answer's Set-Cookie, and its attributes.
fn set_cookie(r: &Resp) -> Option<(String, String)> {
    let text = r.headers.get("set-cookie")?.to_str().ok()?;
    let (pair, attributes) = text.split_once("; ")?;
    Some((pair.to_string(), attributes.to_string()))
}

#[tokio::test]
async fn a_session_stays_on_its_endpoint() {
    let mut pods: Vec<Echo> = (0..4).map(|i| echo("cart", &format!("cart-{i}"))).collect();
    let v2 = [echo("cart-v2", "v2-0")];
    let port = free_port();
    let dir = TempDir::new();
    let yaml = |pods: &[Echo], weights| {
        gateway_yaml(port) + &service("cart", pods) + &service("cart-v2", &v2) + &route(weights)
    };
    dir.write("all.yaml", &yaml(&pods, (1, 0)));
    let gw = Gateway::start(&dir).await;

    // Without a session the balancer spreads requests.
    let mut seen = HashSet::new();
    for _ in 0..24 {
        seen.insert(pod(&get(port, "/cookie", &[]).await));
    }
    assert!(seen.len() > 1, "{seen:?}");

    // The first answer sets a session cookie: no Expires or Max-Age, the
    // route's path; every request carrying it meets the same pod, and
    // nothing is set again.
    let first = get(port, "/cookie/a", &[]).await;
    let (pair, attributes) = set_cookie(&first).expect("a session cookie");
    assert!(pair.starts_with("strait-session-"), "{pair}");
    assert_eq!(attributes, "Path=/cookie; HttpOnly");
    let home = pod(&first);
    for _ in 0..10 {
        let r = get(port, "/cookie/b", &[("cookie", &pair)]).await;
        assert_eq!(pod(&r), home, "session cookie not honoured");
        assert!(set_cookie(&r).is_none(), "nothing changed");
    }

    // A header session: the answer names it, the client sends it back.
    let r = get(port, "/header", &[]).await;
    let value = r.headers["x-session"].to_str().expect("text").to_string();
    let at = pod(&r);
    for _ in 0..5 {
        let r = get(port, "/header", &[("x-session", &value)]).await;
        assert_eq!(pod(&r), at);
    }

    // A permanent cookie says its lifetime.
    let r = get(port, "/permanent", &[]).await;
    let (pair_p, attributes) = set_cookie(&r).expect("cookie");
    assert!(pair_p.starts_with("JSESSIONID="));
    assert_eq!(attributes, "Path=/permanent; HttpOnly; Max-Age=3600");

    // An idle timeout is pushed back by each request, and ends the
    // session once it passes.
    let r = get(port, "/idle", &[]).await;
    let (mut idle, _) = set_cookie(&r).expect("cookie");
    let idle_home = pod(&r);
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        let r = get(port, "/idle", &[("cookie", &idle)]).await;
        assert_eq!(pod(&r), idle_home, "within the idle timeout");
        idle = set_cookie(&r).expect("renewed").0;
    }
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let r = get(port, "/idle", &[("cookie", &idle)]).await;
    let (fresh, _) = set_cookie(&r).expect("a new session");
    assert_ne!(fresh, idle);

    // The weights move to v2: new requests go there, the session stays.
    let generation = gw.config().await["generation"].as_u64().unwrap_or(0);
    dir.write("all.yaml", &yaml(&pods, (0, 1)));
    gw.wait_generation(generation + 1).await;
    assert_eq!(pod(&get(port, "/cookie", &[]).await), "v2-0");
    let r = get(port, "/cookie", &[("cookie", &pair)]).await;
    assert_eq!(pod(&r), home, "a session outlives the weights");

    // Its endpoint dies: another one of the same backend answers, and the
    // session moves there.
    let index: usize = home.trim_start_matches("cart-").parse().expect("cart-N");
    drop(pods.remove(index));
    let r = get(port, "/cookie", &[("cookie", &pair)]).await;
    let moved = pod(&r);
    assert_ne!(moved, home);
    assert!(moved.starts_with("cart-"), "{moved}: the session's backend");
    let (pair2, _) = set_cookie(&r).expect("the session moved");
    for _ in 0..5 {
        assert_eq!(
            pod(&get(port, "/cookie", &[("cookie", &pair2)]).await),
            moved
        );
    }
}

#[test]
fn bad_session_settings_are_refused_by_field_path() {
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &(gateway_yaml(free_port())
            + &service_yaml("cart", free_port(), None)
            + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: bad}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n  - sessionPersistence: {type: Query, cookieConfig: {lifetimeType: Permanent}}\n    backendRefs: [{name: cart, port: 80}]\n"),
    );
    let (code, out) = check(&dir);
    assert_ne!(code, Some(0), "{out}");
    for said in [
        "spec.rules[0].sessionPersistence.type: \"Query\" is not Cookie or Header",
        "spec.rules[0].sessionPersistence.absoluteTimeout: a Permanent cookie needs absoluteTimeout",
    ] {
        assert!(out.contains(said), "{said}: {out}");
    }
}
