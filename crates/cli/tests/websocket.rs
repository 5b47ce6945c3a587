//! A real WebSocket client through the gateway to `strait echo`'s `/ws`:
//! messages echo both ways, and the joined connection survives a reload.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Any stream a WebSocket can run over: TCP, or an HTTP/2 stream.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Io for T {}

fn route(name: &str, path: &str) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: ["ws.example.com"]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]
    backendRefs: [{{name: a, port: 80}}]
"#
    )
}

async fn recv<S: Io>(ws: &mut WebSocketStream<S>) -> Message {
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a message in time")
        .expect("the connection is open")
        .expect("a valid frame")
}

/// Sends each message and checks it comes back, same kind, same payload.
async fn exchange<S: Io>(ws: &mut WebSocketStream<S>, round: &str) {
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for message in [
        Message::text(format!("hello, {round}")),
        Message::binary(vec![0u8, 1, 2, 254, 255]),
        Message::text("ünïcödé ✓"),
        Message::binary(big),
    ] {
        ws.send(message.clone()).await.expect("send");
        let back = recv(ws).await;
        assert_eq!(back, message, "{round}: echoed as sent");
    }
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .expect("ping");
    assert_eq!(
        recv(ws).await,
        Message::Pong(b"are you there".to_vec().into()),
        "{round}: ping answered"
    );
}

#[tokio::test]
async fn websocket_echo_survives_a_reload() {
    let a = echo("a", "a-0");
    let port = free_port();
    let dir = TempDir::new();
    let mut base = gateway_yaml(port);
    base += &service_yaml("a", a.port, None);
    dir.write("base.yaml", &base);
    dir.write("routes.yaml", &route("ws", "/ws"));
    let gw = Gateway::start(&dir).await;
    let generation = gw.config().await["generation"]
        .as_u64()
        .expect("generation");

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // The client checks Sec-WebSocket-Accept against its key.
    let (mut ws, response) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async("ws://ws.example.com/ws", tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers()["upgrade"]
            .to_str()
            .expect("ascii")
            .to_ascii_lowercase(),
        "websocket"
    );
    exchange(&mut ws, "before the reload").await;

    // A new route in a new file: the gateway reloads; the open WebSocket
    // keeps its joined connection.
    dir.write("more.yaml", &route("more", "/more"));
    gw.wait_generation(generation + 1).await;
    let more = send(get(port, "ws.example.com", "/more"))
        .await
        .expect("new route answers");
    assert_eq!(more.service(), "a", "the new route is live");
    exchange(&mut ws, "after the reload").await;

    ws.close(None).await.expect("close");
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("close answered in time")
        {
            Some(Ok(Message::Close(_))) => {}
            None => break,
            Some(Ok(other)) => panic!("unexpected message after close: {other:?}"),
            Some(Err(e)) => panic!("unclean close: {e}"),
        }
    }

    // /ws asking for WebSocket without a key is refused.
    let r = send(request(
        "GET",
        port,
        "ws.example.com",
        "/ws",
        &[("connection", "upgrade"), ("upgrade", "websocket")],
    ))
    .await
    .expect("response");
    assert_eq!(r.status, 400, "no Sec-WebSocket-Key");
}

/// RFC 8441: an HTTP/2 client opens the WebSocket with an extended CONNECT
/// on one stream of its connection; strait sends it on as an HTTP/1.1
/// upgrade and answers `200`, and messages echo over the HTTP/2 stream
/// while other requests share the connection.
#[tokio::test]
async fn websocket_over_http2_extended_connect() {
    use bytes::Bytes;
    use http_body_util::Empty;
    let a = echo("a", "a-0");
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "all.yaml",
        &(gateway_yaml(port) + &service_yaml("a", a.port, None) + &route("ws", "/")),
    );
    let _gw = Gateway::start(&dir).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut send = h2_over::<_, Empty<Bytes>>(tcp).await;
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("http://ws.example.com/ws")
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .expect("request");
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut response = send.send_request(req).await.expect("response");
    assert_eq!(response.status(), 200, "RFC 8441 answers 200, not 101");
    assert!(response.headers().get("upgrade").is_none());
    let stream = hyper::upgrade::on(&mut response)
        .await
        .expect("upgraded stream");
    let mut ws = WebSocketStream::from_raw_socket(
        hyper_util::rt::TokioIo::new(stream),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    exchange(&mut ws, "over h2").await;

    // The same HTTP/2 connection still carries ordinary requests.
    let plain = http::Request::get("http://ws.example.com/plain")
        .body(Empty::new())
        .expect("request");
    let r = send.send_request(plain).await.expect("plain response");
    assert_eq!(r.status(), 200);
    exchange(&mut ws, "after a request beside it").await;
    ws.close(None).await.expect("close");
}

/// `--stream-max-duration` closes a joined WebSocket however busy it is,
/// and `--stream-idle-timeout` a quiet one, each in its time.
#[tokio::test]
async fn websocket_limits_close_joined_connections() {
    let a = echo("a", "a-0");
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "all.yaml",
        &(gateway_yaml(port) + &service_yaml("a", a.port, None) + &route("ws", "/ws")),
    );
    let _gw = Gateway::start_with(
        &dir,
        &[
            "--stream-max-duration",
            "1500ms",
            "--stream-idle-timeout",
            "600ms",
        ],
    )
    .await;
    let open = || async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let (ws, _) = tokio_tungstenite::client_async("ws://ws.example.com/ws", tcp)
            .await
            .expect("handshake");
        ws
    };
    // Busy every 200 ms: the idle limit never fires, the lifetime does.
    let mut ws = open().await;
    let started = std::time::Instant::now();
    let closed_after = loop {
        let sent = ws.send(Message::text("tick")).await;
        let got = tokio::time::timeout(Duration::from_secs(3), ws.next()).await;
        match (sent, got) {
            (Ok(()), Ok(Some(Ok(Message::Text(t))))) if t.as_str() == "tick" => {}
            _ => break started.elapsed(),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never closed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        closed_after >= Duration::from_millis(1300) && closed_after < Duration::from_secs(3),
        "lifetime limit closed it after {closed_after:?}"
    );
    // Quiet: closed by the idle limit.
    let mut ws = open().await;
    let quiet = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    let waited = quiet.elapsed();
    assert!(
        matches!(
            end,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_))))
        ),
        "{end:?}"
    );
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(2),
        "idle limit closed it after {waited:?}"
    );
}

async fn open_ws(port: u16) -> WebSocketStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (ws, response) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async("ws://ws.example.com/ws", tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    assert_eq!(response.status(), 101);
    ws
}

#[tokio::test]
async fn sigterm_waits_for_open_websockets_until_the_deadline() {
    let a = echo("a", "a-0");
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &(gateway_yaml(port) + &service_yaml("a", a.port, None) + &route("ws", "/ws")),
    );
    let mut gw = Gateway::start_with(&dir, &["--drain-timeout", "3"]).await;
    let (mut closes, mut stays) = (open_ws(port).await, open_ws(port).await);
    exchange(&mut closes, "before SIGTERM").await;
    exchange(&mut stays, "before SIGTERM").await;

    gw.signal("TERM");
    let term = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Draining: no new connections, but the open WebSockets still carry
    // messages, and one that closes goes cleanly.
    exchange(&mut closes, "while draining").await;
    exchange(&mut stays, "while draining").await;
    closes.close(None).await.expect("close");
    while let Some(m) = closes.next().await {
        assert!(matches!(m, Ok(Message::Close(_))), "unclean close: {m:?}");
    }
    // The other stays open: the gateway waits for it until the deadline.
    let Some(status) = gw.proc.exit_within(10).await else {
        panic!("gateway did not exit:\n{}", gw.logs());
    };
    let waited = term.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        waited >= Duration::from_millis(2500),
        "exited {waited:?} after SIGTERM, before the drain deadline"
    );
    assert!(gw.logs().contains("drain deadline passed"), "{}", gw.logs());
    // At the deadline it was between frames: it gets a close frame saying
    // the server is going away, not a cut connection.
    let after = tokio::time::timeout(Duration::from_secs(5), stays.next()).await;
    let code = match &after {
        Ok(Some(Ok(Message::Close(Some(frame))))) => Some(frame.code),
        _ => None,
    };
    assert_eq!(code, Some(CloseCode::Away), "{after:?}");
}
