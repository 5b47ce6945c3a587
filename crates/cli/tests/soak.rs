//! 1,000 configuration changes in about five minutes (routes, weights,
//! endpoints, a certificate) while HTTP and HTTPS clients send a steady
//! load, 50 WebSockets exchange messages and a gRPC stream runs: nothing
//! fails, nothing open is closed, and the gateway's memory stays flat.
//! `STRAIT_SOAK_CHANGES` sets another number of changes (a quicker local
//! run); CI runs the full 1,000.

mod common;
use base64::Engine;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strait_echo::pb::stream::stream_client::StreamClient;
use strait_echo::pb::stream::Msg;
use strait_identity::service::H2;
use tokio_tungstenite::tungstenite::Message;

const HOST: &str = "soak.test";
/// One change every `TICK`: 1,000 take five minutes.
const TICK: Duration = Duration::from_millis(300);

/// Counts of one kind of traffic: successes, and what failed.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.failed.lock().expect("tally").push(e),
        }
    }

    fn report(&self, what: &str) -> (u64, Vec<String>) {
        let failed = self.failed.lock().expect("tally").clone();
        let ok = self.ok.load(Ordering::Relaxed);
        println!("{what}: {ok} ok, {} failed", failed.len());
        (ok, failed)
    }
}

struct Cert {
    der: rustls::pki_types::CertificateDer<'static>,
    secret: String,
}

fn cert() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec![HOST.to_string()]).expect("cert");
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    Cert {
        der: ck.cert.der().clone(),
        secret: format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: soak-tls}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
            b64(ck.cert.pem()),
            b64(ck.signing_key.serialize_pem())
        ),
    }
}

/// Change `i`: the main route's weights and tag, an extra route every
/// other change, a second endpoint for `a` every third, the other
/// certificate every tenth.
fn change(i: usize, a2: u16, certs: &[Cert; 2]) -> String {
    let (wa, wb) = (1 + i % 5, 5 - i % 5);
    let mut text = format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: main}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: ["{HOST}"]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /}}}}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{set: [{{name: x-tag, value: "v{i}"}}]}}
    backendRefs: [{{name: a, port: 80, weight: {wa}}}, {{name: b, port: 80, weight: {wb}}}]
"#
    );
    if i % 2 == 1 {
        text += &prefix_route("extra", "/extra", "b", "");
    }
    if i % 3 == 1 {
        text += &format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: a-2, labels: {{kubernetes.io/service-name: a}}}}\naddressType: IPv4\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\nports: [{{name: http, port: {a2}}}]\n"
        );
    }
    text += &certs[(i / 10) % 2].secret;
    text
}

/// What stays: the Gateway (HTTP and HTTPS), the Services, the WebSocket
/// and gRPC routes.
fn base(http: u16, https: u16, ports: (u16, u16)) -> String {
    let listeners = format!(
        "  - {{name: http, port: {http}, protocol: HTTP}}\n  - {{name: https, port: {https}, protocol: HTTPS, tls: {{certificateRefs: [{{name: soak-tls}}]}}}}\n"
    );
    gateway_with(&listeners)
        + &service_yaml("a", ports.0, None)
        + &service_yaml("b", ports.1, None)
        + &service_yaml("g", ports.1, Some("kubernetes.io/h2c"))
        + &prefix_route("ws", "/ws", "a", "")
        + r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: stream}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{method: {service: strait.echo.v1.Stream}}]
    backendRefs: [{name: g, port: 80}]
"#
}

async fn http_client(port: u16, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    while !stop.load(Ordering::Relaxed) {
        let result = match send(get(port, HOST, "/")).await {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(format!("{} {:?}", r.status, r.reason())),
            Err(e) => Err(e),
        };
        tally.record(result);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn https_client(
    port: u16,
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    while !stop.load(Ordering::Relaxed) {
        let result = async {
            let tls = tls_connect(port, HOST, &roots, &[b"http/1.1"], None).await?;
            let mut h1 = h1_over(tls).await;
            // Origin-form: an absolute-form target's authority would win over Host.
            let req = http::Request::get("/")
                .header("host", HOST)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .map_err(|e| e.to_string())?;
            let r = h1.send_request(req).await.map_err(|e| e.to_string())?;
            match r.status().as_u16() {
                200 => Ok(()),
                s => Err(format!("HTTPS {s}")),
            }
        }
        .await;
        tally.record(result);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn websocket(port: u16, n: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let url = "ws://ws.test/ws";
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("WebSocket handshake");
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let text = format!("socket {n} message {seq}");
        let result = async {
            ws.send(Message::text(text.clone()))
                .await
                .map_err(|e| format!("socket {n}: send: {e}"))?;
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Text(back)))) if back.as_str() == text => Ok(()),
                other => Err(format!("socket {n}: {other:?}")),
            }
        }
        .await;
        let closed = result.is_err();
        tally.record(result);
        if closed {
            return;
        }
        seq += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = ws.close(None).await;
}

async fn grpc_stream(port: u16, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let origin = http::Uri::from_static("http://grpc.test");
    let mut client = StreamClient::with_origin(H2(h2_over(tcp).await), origin);
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(4);
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut inbound = client
        .chat(outbound)
        .await
        .expect("Chat starts")
        .into_inner();
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let text = format!("message {seq}");
        let msg = Msg {
            text: text.clone(),
            seq,
            pod: String::new(),
        };
        let result = async {
            tx.send(msg).await.map_err(|e| format!("gRPC send: {e}"))?;
            match tokio::time::timeout(Duration::from_secs(5), inbound.message()).await {
                Ok(Ok(Some(back))) if back.text == text && back.seq == seq => Ok(()),
                other => Err(format!("gRPC stream: {other:?}")),
            }
        }
        .await;
        let ended = result.is_err();
        tally.record(result);
        if ended {
            return;
        }
        seq += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_changes_under_load_lose_nothing() {
    let changes: usize = std::env::var("STRAIT_SOAK_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (a, a2, b) = (echo("a", "a-0"), echo("a", "a-1"), echo("b", "b-0"));
    let (http, https) = (free_port(), free_port());
    let certs = [cert(), cert()];
    let dir = TempDir::new();
    dir.write("base.yaml", &base(http, https, (a.port, b.port)));
    dir.write("change.yaml", &change(0, a2.port, &certs));
    let gw = Gateway::start(&dir).await;
    let pid = gw.proc.0.id();
    let mut generation = gw.config().await["generation"]
        .as_u64()
        .expect("generation");

    let stop = Arc::new(AtomicBool::new(false));
    let kinds = ["HTTP", "HTTPS", "WebSocket", "gRPC stream"].map(|_| Arc::new(Tally::default()));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(tokio::spawn(http_client(
            http,
            stop.clone(),
            kinds[0].clone(),
        )));
    }
    let roots = vec![certs[0].der.clone(), certs[1].der.clone()];
    tasks.push(tokio::spawn(https_client(
        https,
        roots,
        stop.clone(),
        kinds[1].clone(),
    )));
    for n in 0..50 {
        tasks.push(tokio::spawn(websocket(
            http,
            n,
            stop.clone(),
            kinds[2].clone(),
        )));
    }
    tasks.push(tokio::spawn(grpc_stream(
        http,
        stop.clone(),
        kinds[3].clone(),
    )));

    let started = Instant::now();
    let mut rss_start = 0;
    for i in 1..=changes {
        let next = Instant::now() + TICK;
        dir.write("change.yaml", &change(i, a2.port, &certs));
        generation += 1;
        gw.wait_generation(generation).await;
        if i == changes.min(50) {
            // After the first changes: allocator arenas and pools are warm.
            rss_start = rss_kib(pid);
        }
        tokio::time::sleep_until(next.into()).await;
    }
    let took = started.elapsed();
    let rss_end = rss_kib(pid);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client task");
    }
    println!("{changes} changes in {took:?}; gateway RSS {rss_start} KiB after 50, {rss_end} KiB at the end");
    for (kind, tally) in ["HTTP", "HTTPS", "WebSocket", "gRPC stream"]
        .iter()
        .zip(&kinds)
    {
        let (ok, failed) = tally.report(kind);
        assert!(ok > 0, "{kind}: nothing succeeded: {:?}", failed.first());
        assert!(
            failed.is_empty(),
            "{kind}: {} failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
    }
    assert_eq!(
        gw.config().await["generation"].as_u64(),
        Some(generation),
        "every change was its own reload"
    );
    let last = send(get(http, HOST, "/")).await.expect("a last request");
    assert_eq!(
        last.headers["x-tag"],
        format!("v{changes}").as_str(),
        "the last change is served"
    );
    assert!(
        rss_end <= rss_start + 16 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );
}
