//! The default balancer under failure, through the real binary: a dead
//! endpoint is never preferred, a connection that cannot be made goes to
//! another endpoint whatever the method, and consistent hashing keeps the
//! sessions of endpoints that stay.

mod common;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use std::time::Duration;

/// A Service `name` (port 80) over endpoints on these ports of 127.0.0.1.
fn service(name: &str, ports: &[u16]) -> String {
    let endpoints: String = ports
        .iter()
        .map(|p| {
            format!(
                r#"---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-{p}, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
endpoints: [{{addresses: ["127.0.0.1"]}}]
ports: [{{name: http, port: {p}}}]
"#
            )
        })
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n{endpoints}"
    )
}

/// A port nothing listens on: connections to it are refused. Port 1
/// (tcpmux), outside the ephemeral range: a free port picked now could be
/// the one a process of a test running beside this one binds next.
fn dead_port() -> u16 {
    1
}

/// `n` requests, eight at a time; the answers that were not 200, with
/// their reason.
async fn failures(port: u16, method: &'static str, n: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            let mut bad = Vec::new();
            for _ in 0..n / 8 {
                let mut req = request(method, port, "shop.example.com", "/", &[]);
                if method == "POST" {
                    *req.body_mut() = Full::new(Bytes::from_static(b"{\"order\": 1}"));
                }
                match send(req).await {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => bad.push(format!(
                        "{} {:?}",
                        r.status,
                        r.headers.get("x-strait-reason")
                    )),
                    Err(e) => bad.push(e),
                }
            }
            bad
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    all
}

#[tokio::test]
async fn a_refusing_endpoint_fails_no_request_without_any_policy() {
    let live = echo("pay", "live");
    let port = free_port();
    let dir = TempDir::new();
    let yaml = gateway_yaml(port)
        + &service("pay", &[live.port, dead_port()])
        + &prefix_route("r", "/", "pay", "");
    dir.write("all.yaml", &yaml);
    let gw = Gateway::start(&dir).await;
    let gets = failures(port, "GET", 1000).await;
    assert!(
        gets.is_empty(),
        "{} of 1000 GETs failed: {gets:?}",
        gets.len()
    );
    let posts = failures(port, "POST", 1000).await;
    assert!(
        posts.is_empty(),
        "{} of 1000 POSTs failed: {posts:?}",
        posts.len()
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("strait_outlier_ejections_total"),
        "the refusing endpoint was ejected:\n{metrics}"
    );
    // A gateway has no workload certificate: no expiry to alarm on.
    assert!(
        !metrics.contains("strait_identity_"),
        "identity metrics without an identity:\n{metrics}"
    );
}

#[tokio::test]
async fn one_of_three_killed_under_load_fails_nothing_after_a_second() {
    let mut pods = vec![echo("pay", "a"), echo("pay", "b"), echo("pay", "c")];
    let port = free_port();
    let dir = TempDir::new();
    let ports: Vec<u16> = pods.iter().map(|e| e.port).collect();
    let yaml = gateway_yaml(port) + &service("pay", &ports) + &prefix_route("r", "/", "pay", "");
    dir.write("all.yaml", &yaml);
    let _gw = Gateway::start(&dir).await;
    let calls = move || async move {
        let mut out = Vec::new();
        for method in ["GET", "POST"] {
            let r = send(request(method, port, "h", "/", &[])).await;
            out.push(r.is_ok_and(|r| r.status == 200));
        }
        out
    };
    let before = Traffic::start(Duration::from_millis(1), calls);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(pods.remove(1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = Traffic::start(Duration::from_millis(1), calls);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, failed) = after.stop().await;
    let (ok_before, failed_before) = before.stop().await;
    eprintln!(
        "first second: {ok_before} ok, {failed_before} failed; after: {ok} ok, {failed} failed"
    );
    assert!(ok > 100, "traffic went on: {ok} ok");
    assert_eq!(failed, 0, "{failed} failed after the first second");
}

#[tokio::test]
async fn consistent_hashing_keeps_the_sessions_of_endpoints_that_stay() {
    let pods: Vec<Echo> = (0..5).map(|i| echo("cart", &format!("cart-{i}"))).collect();
    let ports: Vec<u16> = pods.iter().map(|e| e.port).collect();
    let port = free_port();
    let dir = TempDir::new();
    let policy = r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: cart-traffic}
spec:
  targetRefs: [{group: "", kind: Service, name: cart}]
  loadBalancer: {type: ConsistentHash, consistentHash: {cookie: session}}
"#;
    let config = |ports: &[u16]| {
        gateway_yaml(port) + &service("cart", ports) + &prefix_route("r", "/", "cart", "") + policy
    };
    dir.write("all.yaml", &config(&ports));
    let gw = Gateway::start(&dir).await;
    let sessions: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    let pod_of = |session: String| async move {
        let cookie = format!("session={session}");
        let r = send(request("GET", port, "h", "/", &[("cookie", &cookie)]))
            .await
            .expect("answer");
        assert_eq!(r.status, 200);
        r.json()["pod"].as_str().unwrap_or("").to_string()
    };
    let mut before = Vec::new();
    for s in &sessions {
        before.push(pod_of(s.clone()).await);
    }
    let generation = gw.config().await["generation"].as_u64().unwrap_or(0);
    dir.write("all.yaml", &config(&ports[1..]));
    gw.wait_generation(generation + 1).await;
    let (mut stayed, mut others) = (0, 0);
    for (s, was) in sessions.iter().zip(&before) {
        let now = pod_of(s.clone()).await;
        if was == "cart-0" {
            assert_ne!(now, "cart-0", "the removed endpoint gets nothing");
            continue;
        }
        others += 1;
        stayed += usize::from(&now == was);
    }
    eprintln!("{stayed} of {others} sessions of the staying endpoints stayed");
    assert!(others > 150, "sessions spread: {others} off cart-0");
    assert!(stayed * 100 >= others * 95, "{stayed} of {others} stayed");
}

/// The sum of the samples of `name` whose labels contain `needle`.
async fn metric(gw: &Gateway, name: &str, needle: &str) -> f64 {
    gw.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_reload_keeps_the_ejection_of_an_endpoint_that_remains() {
    let live = echo("pay", "live");
    let port = free_port();
    let dir = TempDir::new();
    let base = gateway_yaml(port)
        + &service("pay", &[live.port, dead_port()])
        + &prefix_route("r", "/", "pay", "");
    dir.write("all.yaml", &base);
    let gw = Gateway::start(&dir).await;
    assert!(failures(port, "GET", 80).await.is_empty());
    let retried = metric(&gw, "strait_retries_total", "reason=\"connect\"").await;
    // Eight callers at once may each find it first, before it is ejected.
    assert!(
        (1.0..=8.0).contains(&retried),
        "tried, then ejected: {retried}"
    );
    // A change elsewhere: the Service and its endpoints stay.
    let generation = gw.config().await["generation"].as_u64().unwrap_or(0);
    dir.write(
        "all.yaml",
        &(base + &prefix_route("other", "/other", "pay", "")),
    );
    gw.wait_generation(generation + 1).await;
    assert!(failures(port, "GET", 80).await.is_empty());
    let after = metric(&gw, "strait_retries_total", "reason=\"connect\"").await;
    assert_eq!(
        after, retried,
        "still ejected after the reload: not tried again"
    );
}
