//! Retries, their budget, timeouts and strait's failure answers, through
//! the real binary (the gateway and the sidecars share this request path).
//! Each failure gets its status and an `x-strait-reason` header, in time.

mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// A Service `name` (port 80) over the given endpoint ports.
fn service(name: &str, ports: &[u16]) -> String {
    let endpoints: Vec<String> = ports
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
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n{}",
        endpoints.concat()
    )
}

fn route(name: &str, prefix: &str, service: &str, extra: &str) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]
    backendRefs: [{{name: {service}, port: 80}}]
{extra}"#
    )
}

async fn metric(gw: &Gateway, needles: &[&str]) -> f64 {
    gw.metrics()
        .await
        .lines()
        .filter(|l| !l.starts_with('#') && needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `n` GETs of `path`, eight at a time; the statuses seen.
async fn load(port: u16, path: &'static str, n: usize) -> Vec<u16> {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..n / 8 {
                out.push(
                    send(get(port, "shop.example.com", path))
                        .await
                        .map_or(0, |r| r.status),
                );
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    all
}

#[tokio::test]
async fn retries_hide_a_flaky_endpoint_within_the_budget() {
    let good = [echo("pay", "pay-0"), echo("pay", "pay-1")];
    let flaky = echo_with("pay", "pay-2", &["--fail-every", "2"]);
    let port = free_port();
    let dir = TempDir::new();
    let ports = [good[0].port, good[1].port, flaky.port];
    let yaml = gateway_yaml(port)
        + &service("pay", &ports)
        + &route(
            "r",
            "/retried",
            "pay",
            "    retry: {codes: [503], attempts: 2, backoff: 5ms}\n",
        )
        + &route("plain", "/plain", "pay", "");
    dir.write("all.yaml", &yaml);
    let gw = Gateway::start(&dir).await;

    // Without retries a sixth of calls fail (a third reach the flaky pod,
    // which fails half of them): the failure is real.
    let plain = load(port, "/plain", 600).await;
    let failed = plain.iter().filter(|s| **s != 200).count();
    assert!(failed > 50, "only {failed} of 600 failed without retries");

    let statuses = load(port, "/retried", 3000).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let retries = metric(
        &gw,
        &[
            "strait_retries_total",
            "route=\"default/r\"",
            "reason=\"status\"",
        ],
    )
    .await;
    let refused = metric(
        &gw,
        &[
            "strait_retries_total",
            "route=\"default/r\"",
            "budget_exhausted",
        ],
    )
    .await;
    eprintln!(
        "retries: {ok} of 3000 succeeded, {retries} retries, {refused} refused by the budget"
    );
    assert!(ok as f64 / 3000.0 >= 0.999, "{ok} of 3000 succeeded");
    // About a sixth of requests needed one: well under the 20 % budget.
    assert!((300.0..=700.0).contains(&retries), "{retries} retries");
    assert_eq!(refused, 0.0);
}

#[tokio::test]
async fn the_budget_caps_retries_when_everything_fails() {
    let a = echo("pay", "pay-0");
    let port = free_port();
    let dir = TempDir::new();
    let yaml = gateway_yaml(port)
        + &service("pay", &[a.port])
        + &route(
            "r",
            "/status",
            "pay",
            "    retry: {codes: [503], attempts: 3, backoff: 1ms}\n",
        );
    dir.write("all.yaml", &yaml);
    let gw = Gateway::start(&dir).await;
    let statuses = load(port, "/status/503", 800).await;
    assert!(
        statuses.iter().all(|s| *s == 503),
        "failures are answered as they are"
    );
    let retries = metric(&gw, &["strait_retries_total", "reason=\"status\""]).await;
    let refused = metric(&gw, &["strait_retries_total", "budget_exhausted"]).await;
    eprintln!("budget: 800 failing requests, {retries} retries made, {refused} refused");
    // 20 % of 800 plus the floor of 10/s over the 10 s window.
    assert!(retries <= 0.2 * 800.0 + 100.0 + 8.0, "{retries} retries");
    assert!(refused > 400.0, "{refused} refused");
}

#[tokio::test]
async fn failures_get_their_status_and_reason_in_time() {
    let a = echo("pay", "pay-0");
    // A backend that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    // A backend that reads part of the request body, then resets.
    let reset = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let reset_port = reset.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = reset.accept().await {
            let mut buf = vec![0u8; 8192];
            let _ = s.read(&mut buf).await;
            // Closed with unread data: the kernel answers with a reset.
            drop(s);
        }
    });
    let closed = free_port();
    let port = free_port();
    let dir = TempDir::new();
    let yaml = gateway_yaml(port)
        + &service("empty", &[])
        + &service("silent", &[silent_port])
        + &service("reset", &[reset_port])
        + &service("closed", &[closed])
        + &service("half", &[closed, a.port])
        + &route("e", "/empty", "empty", "")
        + &route(
            "s",
            "/silent",
            "silent",
            "    timeouts: {request: 2s, backendRequest: 300ms}\n    retry: {codes: [503], attempts: 1, backoff: 10ms}\n",
        )
        + &route("r", "/reset", "reset", "")
        + &route("c", "/closed", "closed", "")
        + &route("h", "/half", "half", "    retry: {codes: [503], attempts: 1, backoff: 1ms}\n");
    dir.write("all.yaml", &yaml);
    let gw = Gateway::start(&dir).await;

    let reason = |r: &Resp| {
        r.headers
            .get("x-strait-reason")
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let r = send(get(port, "h", "/empty")).await.expect("answer");
    assert_eq!((r.status, reason(&r).as_str()), (503, "no_endpoints"));

    // Per-try timeout 300 ms, one retry, under the 2 s request timeout.
    let started = Instant::now();
    let r = send(get(port, "h", "/silent")).await.expect("answer");
    let took = started.elapsed();
    assert_eq!((r.status, reason(&r).as_str()), (504, "backend_timeout"));
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_millis(1500),
        "two tries of 300 ms took {took:?}"
    );

    // A body the backend reset mid-way: 502, never a hang.
    let big = vec![b'x'; 1 << 20];
    let req = http::Request::post(format!("http://127.0.0.1:{port}/reset"))
        .header("host", "h")
        .body(http_body_util::Full::new(bytes::Bytes::from(big)))
        .expect("request");
    let r = send(req).await.expect("answer");
    assert_eq!((r.status, reason(&r).as_str()), (502, "backend_failed"));

    let r = send(get(port, "h", "/closed")).await.expect("answer");
    assert_eq!((r.status, reason(&r).as_str()), (502, "connect_failed"));

    // A refused connection sent nothing: even a POST is retried, elsewhere.
    for _ in 0..10 {
        let req = http::Request::post(format!("http://127.0.0.1:{port}/half"))
            .header("host", "h")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"order",
            )))
            .expect("request");
        let r = send(req).await.expect("answer");
        assert_eq!(r.status, 200, "{}", gw.logs());
        assert_eq!(r.json()["bodyBytes"], 5);
    }
    let connect_retries = metric(&gw, &["strait_retries_total", "reason=\"connect\""]).await;
    assert!(connect_retries >= 4.0, "{connect_retries}");
}
