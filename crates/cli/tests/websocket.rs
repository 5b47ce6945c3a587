//! A real WebSocket client through the gateway to `strait echo`'s `/ws`:
//! messages echo both ways, and the joined connection survives a reload.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<tokio::net::TcpStream>;

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

async fn recv(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a message in time")
        .expect("the connection is open")
        .expect("a valid frame")
}

/// Sends each message and checks it comes back, same kind, same payload.
async fn exchange(ws: &mut Ws, round: &str) {
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
