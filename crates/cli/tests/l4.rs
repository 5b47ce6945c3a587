//! Layer 4 through the real binary: TCPRoute bytes both ways with
//! half-close and weights, TLS passthrough by SNI to backends that
//! terminate TLS themselves, connections with no route closed and counted,
//! idle limits, and an open connection kept across a reload.

mod common;
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP backend that reads until the client half-closes, then answers
/// `<name>:<what it read>` and closes. Lines (`ping\n`) are echoed at once.
async fn tcp_backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, name));
        }
    });
    port
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, name: &str) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                if seen.ends_with(b"\n") {
                    let _ = stream.write_all(&seen).await;
                    seen.clear();
                }
            }
        }
    }
    let _ = stream
        .write_all(format!("{name}:{}", String::from_utf8_lossy(&seen)).as_bytes())
        .await;
    let _ = stream.shutdown().await;
}

/// Sends `text`, half-closes, and reads the answer to the end.
async fn half_close_exchange<S: AsyncRead + AsyncWrite + Unpin>(s: S, text: &str) -> String {
    try_exchange(s, text).await.expect("exchange")
}

/// [`half_close_exchange`] that reports a reset rather than failing.
async fn try_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    text: &str,
) -> std::io::Result<String> {
    s.write_all(text.as_bytes()).await?;
    s.shutdown().await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("no answer in time"))??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn service(name: &str, port: u16) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec: {{ports: [{{name: tcp, port: 9000}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
endpoints: [{{addresses: ["127.0.0.1"]}}]
ports: [{{name: tcp, port: {port}}}]
"#
    )
}

fn tcp_route(name: &str, section: &str, backends: &[(&str, u32)]) -> String {
    let refs: Vec<String> = backends
        .iter()
        .map(|(b, w)| format!("{{name: {b}, port: 9000, weight: {w}}}"))
        .collect();
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: {name}}}
spec:
  parentRefs: [{{name: gw, sectionName: {section}}}]
  rules: [{{backendRefs: [{}]}}]
"#,
        refs.join(", ")
    )
}

async fn metric_value(gw: &Gateway, needle: &[&str]) -> f64 {
    gw.metrics()
        .await
        .lines()
        .filter(|l| !l.starts_with('#') && needle.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn tcp_route_carries_bytes_both_ways_with_half_close_and_weights() {
    let (a, b) = (tcp_backend("a").await, tcp_backend("b").await);
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &format!(
            "{}{}{}{}",
            gateway_with(&format!("  - {{name: tcp, port: {port}, protocol: TCP}}\n")),
            service("a", a),
            service("b", b),
            tcp_route("split", "tcp", &[("a", 3), ("b", 1)])
        ),
    );
    let gw = Gateway::start(&dir).await;

    // Half-close: the backend answers only after our FIN reached it, and
    // its answer still reaches us.
    let s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let answer = half_close_exchange(s, "hello").await;
    assert!(
        answer == "a:hello" || answer == "b:hello",
        "unexpected answer {answer:?}"
    );

    let mut counts = std::collections::HashMap::new();
    for i in 0..400 {
        let s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let answer = half_close_exchange(s, &format!("n{i}")).await;
        let (who, what) = answer.split_once(':').expect("name:text");
        assert_eq!(what, format!("n{i}"));
        *counts.entry(who.to_string()).or_insert(0u32) += 1;
    }
    let share_a = f64::from(counts["a"]) / 400.0;
    assert!(
        (0.65..=0.85).contains(&share_a),
        "3:1 weights gave {counts:?}"
    );
    let closed = metric_value(&gw, &["strait_tcp_connections_total", "result=\"closed\""]).await;
    assert_eq!(closed, 401.0, "{}", gw.metrics().await);
}

#[tokio::test]
async fn max_connections_refuses_a_stream_over_the_limit() {
    let a = tcp_backend("a").await;
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &format!(
            "{}{}{}{}",
            gateway_with(&format!("  - {{name: tcp, port: {port}, protocol: TCP}}\n")),
            service("a", a),
            tcp_route("r", "tcp", &[("a", 1)]),
            r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: a-limit}
spec:
  targetRefs: [{group: "", kind: Service, name: a}]
  circuitBreaker: {maxConnections: 1}
"#
        ),
    );
    let gw = Gateway::start(&dir).await;
    // The first stream holds the only slot: a line goes through.
    let mut held = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    held.write_all(b"ping\n").await.expect("write");
    let mut buf = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), held.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .expect("read");
    assert_eq!(&buf, b"ping\n");
    // A second is closed (or reset: its bytes were never read) without
    // reaching the backend.
    let refused = |answer: std::io::Result<String>| match answer {
        Ok(text) => text.is_empty(),
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
    };
    let second = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    assert!(refused(try_exchange(second, "over").await));
    let refused = metric_value(
        &gw,
        &["strait_breaker_overflows_total", "limit=\"maxConnections\""],
    )
    .await;
    assert_eq!(refused, 1.0);
    // Its slot comes back when the first ends (the gateway may see the end
    // a moment after the client does).
    assert_eq!(half_close_exchange(held, "").await, "a:");
    eventually(
        2,
        || "still refused".into(),
        || async {
            let third = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            try_exchange(third, "again")
                .await
                .ok()
                .filter(|text| text == "a:again")
        },
    )
    .await;
}

#[tokio::test]
async fn tcp_connection_survives_reload_and_idle_limit_closes_it() {
    let a = tcp_backend("a").await;
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &format!(
            "{}{}{}",
            gateway_with(&format!("  - {{name: tcp, port: {port}, protocol: TCP}}\n")),
            service("a", a),
            tcp_route("r", "tcp", &[("a", 1)])
        ),
    );
    let gw = Gateway::start_with(&dir, &["--stream-idle-timeout", "700ms"]).await;
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut line = [0u8; 5];
    // Busy for well past the idle limit, across a reload: kept open.
    let started = Instant::now();
    let mut quiet = Instant::now();
    for i in 0..8 {
        if i == 3 {
            dir.write("more.yaml", &service("c", a));
            gw.wait_generation(2).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        s.write_all(b"ping\n").await.expect("write");
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut line))
            .await
            .expect("echo in time")
            .expect("echo");
        quiet = Instant::now();
        assert_eq!(&line, b"ping\n");
    }
    assert!(started.elapsed() > Duration::from_millis(1500));
    // Quiet from now on: closed by the gateway after the idle limit.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("closed by the idle limit")
        .ok();
    let waited = quiet.elapsed();
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
    let idle = metric_value(&gw, &["strait_tcp_connections_total", "idle_timeout"]).await;
    assert_eq!(idle, 1.0, "{}", gw.metrics().await);
}

struct TlsBackend {
    port: u16,
    cert: rustls::pki_types::CertificateDer<'static>,
}

/// A backend that terminates TLS itself with a certificate for `name`.
async fn tls_backend(name: &'static str) -> TlsBackend {
    use rustls::pki_types::pem::PemObject;
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(ck.signing_key.serialize_pem().as_bytes())
            .expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    answer(tls, name).await;
                }
            });
        }
    });
    TlsBackend {
        port,
        cert: ck.cert.der().clone(),
    }
}

fn tls_route(name: &str, hostname: &str, backend: &str) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {{name: {name}}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: ["{hostname}"]
  rules: [{{backendRefs: [{{name: {backend}, port: 9000}}]}}]
"#
    )
}

#[tokio::test]
async fn tls_passthrough_routes_by_sni_without_terminating() {
    let a = tls_backend("a.example.com").await;
    let b = tls_backend("b.example.com").await;
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &format!(
            "{}{}{}{}{}",
            gateway_with(&format!(
                "  - {{name: tls, port: {port}, protocol: TLS, tls: {{mode: Passthrough}}}}\n"
            )),
            service("a", a.port),
            service("b", b.port),
            tls_route("to-a", "a.example.com", "a"),
            tls_route("to-b", "*.example.com", "b"),
        ),
    );
    let gw = Gateway::start_with(&dir, &["--access-log", "-"]).await;
    let roots = [a.cert.clone(), b.cert.clone()];

    // Each backend's own certificate comes back: the gateway did not terminate.
    for (sni, who, cert) in [
        ("a.example.com", "a.example.com", &a.cert),
        ("b.example.com", "b.example.com", &b.cert),
    ] {
        let tls = tls_connect(port, sni, &roots, &[], None)
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}\n{}", gw.logs()));
        let peer = tls.get_ref().1.peer_certificates().expect("peer")[0].clone();
        assert_eq!(&peer, cert, "{sni} got another backend's certificate");
        assert_eq!(
            half_close_exchange(tls, "secret").await,
            format!("{who}:secret")
        );
    }
    // The wildcard route takes other names under it: b's certificate
    // does not cover c.example.com, so the client refuses — at the backend.
    let Err(err) = tls_connect(port, "c.example.com", &roots, &[], None).await else {
        panic!("c.example.com is not in b's certificate");
    };
    assert!(err.contains("certificate"), "{err}");

    // A name no route has: closed without an answer, and counted.
    let err = tls_connect(port, "other.test", &roots, &[], None)
        .await
        .err();
    assert!(err.is_some(), "a name with no route must not connect");
    let no_route = metric_value(
        &gw,
        &["strait_tcp_connections_total", "result=\"no_route\""],
    )
    .await;
    assert_eq!(no_route, 1.0, "{}", gw.metrics().await);

    let config = gw.config().await;
    let routes = config["snapshot"]["routes"].as_array().expect("routes");
    assert!(
        routes.iter().filter(|r| r["kind"] == "TLSRoute").count() == 2,
        "{config:#}"
    );
    // An access log line per connection carried, with its server name;
    // none for the one with no route.
    let lines: Vec<serde_json::Value> = eventually(
        5,
        || format!("three TCP lines? {}", gw.stdout()),
        || async {
            let out = gw.stdout();
            let lines: Vec<serde_json::Value> = out
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            (lines.len() >= 3).then_some(lines)
        },
    )
    .await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (sni, route) in [
        ("a.example.com", "default/to-a"),
        ("b.example.com", "default/to-b"),
        ("c.example.com", "default/to-b"),
    ] {
        let line = lines
            .iter()
            .find(|l| l["authority"] == sni)
            .unwrap_or_else(|| panic!("no line for {sni}: {lines:?}"));
        assert_eq!(line["protocol"], "TCP", "{line}");
        assert_eq!(line["route"], route, "{line}");
        assert_eq!(line["reporter"], "gateway", "{line}");
        assert!(
            line["bytes_received"].as_u64() > Some(100),
            "the hello: {line}"
        );
        assert!(
            line["bytes_sent"].as_u64() > Some(100),
            "the backend's: {line}"
        );
    }
}

/// Bytes that are not a ClientHello, and ClientHellos cut short or too big:
/// each connection is closed and counted, and the gateway keeps serving.
#[tokio::test]
async fn bad_client_hellos_are_closed_and_counted() {
    let a = tls_backend("a.example.com").await;
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &format!(
            "{}{}{}",
            gateway_with(&format!(
                "  - {{name: tls, port: {port}, protocol: TLS, tls: {{mode: Passthrough}}}}\n"
            )),
            service("a", a.port),
            tls_route("to-a", "a.example.com", "a"),
        ),
    );
    let gw = Gateway::start(&dir).await;
    assert_bad_hellos_refused(&gw, port).await;
    let tls = tls_connect(
        port,
        "a.example.com",
        std::slice::from_ref(&a.cert),
        &[],
        None,
    )
    .await
    .expect("still serving");
    assert_eq!(half_close_exchange(tls, "x").await, "a.example.com:x");
}
