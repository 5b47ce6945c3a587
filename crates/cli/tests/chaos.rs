//! Backends that fail in the middle: garbage for an answer, a close before
//! or after the response headers, a reset in the middle of a streamed
//! body, a process killed under an open WebSocket. Each gets the answer
//! docs/limits.md gives it, in time, and the gateway goes on serving.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a scripted backend does once it has read a request's head.
#[derive(Clone, Copy)]
enum Script {
    /// Bytes that are no HTTP response, then a close.
    Garbage,
    /// A close, nothing answered.
    Close,
    /// Headers promising 100 bytes, 5 of them, then a close.
    Short,
    /// A chunked body's first chunk, then a reset (as a killed process's
    /// kernel sends when data is left unread).
    ResetMidBody,
    /// Nothing answered, the connection held.
    StallHead,
    /// Headers promising 100 bytes, 5 of them, then the connection held.
    StallBody,
}

/// A backend that plays `script` on every connection; its port.
async fn scripted(script: Script) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(play(s, script));
        }
    });
    port
}

async fn play(mut s: tokio::net::TcpStream, script: Script) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = match script {
        Script::StallHead => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }
        Script::StallBody => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
                .await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }
        Script::Garbage => s.write_all(b"\x16\x03\x01garbage, not HTTP\r\n\r\n").await,
        Script::Close => Ok(()),
        Script::Short => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
                .await
        }
        Script::ResetMidBody => {
            let first = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
            let _ = s.write_all(first).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Linger zero: the close is a reset, not a FIN.
            let _ = s.set_zero_linger();
            Ok(())
        }
    };
}

/// A Service `name` (port 80) over one endpoint.
fn service(name: &str, port: u16) -> String {
    service_yaml(name, port, None)
}

/// Sends `GET path` on a fresh connection; what came back until the
/// gateway closed (it must, within 5 s) and how long that took.
async fn raw_get(port: u16, path: &str) -> (String, Duration) {
    let start = Instant::now();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: chaos.test\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "{path}: still open after 5 s: {}",
        String::from_utf8_lossy(&got)
    );
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn backends_that_fail_mid_answer_get_their_answers() {
    let ok = echo("ok", "ok-0");
    let port = free_port();
    let dir = TempDir::new();
    let mut yaml =
        gateway_yaml(port) + &prefix_route("ok", "/", "ok", "") + &service("ok", ok.port);
    for (name, script) in [
        ("garbage", Script::Garbage),
        ("close", Script::Close),
        ("short", Script::Short),
        ("reset", Script::ResetMidBody),
        ("stallhead", Script::StallHead),
        ("stallbody", Script::StallBody),
    ] {
        let backend = scripted(script).await;
        // The wait for headers is the route's timeouts.
        let timeouts = match script {
            Script::StallHead => "    timeouts: {request: 1s}\n",
            _ => "",
        };
        yaml += &prefix_route(name, &format!("/{name}"), name, timeouts);
        yaml += &service(name, backend);
    }
    dir.write("chaos.yaml", &yaml);
    let gw = Gateway::start_with(&dir, &["--backend-idle-timeout", "1s"]).await;

    // Before any answer: strait answers, and says whose fault it was.
    for path in ["/garbage", "/close"] {
        let r = send(get(port, "chaos.test", path)).await.expect("answer");
        assert_eq!(
            (r.status, r.reason()),
            (502, Some("backend_failed")),
            "{path}: {}",
            gw.logs()
        );
    }

    // A backend that sends nothing: given up at the route's timeout.
    let started = Instant::now();
    let r = send(get(port, "chaos.test", "/stallhead"))
        .await
        .expect("answer");
    let took = started.elapsed();
    assert_eq!((r.status, r.reason()), (504, Some("request_timeout")));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // After the headers: the status has gone, so the client's message is
    // cut short and its connection closed: never a complete-looking body.
    let (short, took) = raw_get(port, "/short").await;
    println!("/short in {took:?}: {short:?}");
    assert!(short.starts_with("HTTP/1.1 200"), "{short}");
    assert!(
        short.to_ascii_lowercase().contains("content-length: 100"),
        "{short}"
    );
    let body = short.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(body.len() < 100, "a body of 100 bytes: {short}");

    let (stalled, took) = raw_get(port, "/stallbody").await;
    println!("/stallbody in {took:?}: {stalled:?}");
    assert!(stalled.starts_with("HTTP/1.1 200"), "{stalled}");
    let body = stalled.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert_eq!(body, "hello", "{stalled}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );

    let (reset, took) = raw_get(port, "/reset").await;
    println!("/reset in {took:?}: {reset:?}");
    assert!(reset.starts_with("HTTP/1.1 200"), "{reset}");
    assert!(
        reset.contains("hello"),
        "the first chunk passed on: {reset}"
    );
    assert!(
        !reset.ends_with("0\r\n\r\n"),
        "the body was ended as if whole: {reset}"
    );

    // Over HTTP/2 the same cut is a reset of that stream only.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    let mut client = client.ready().await.expect("ready");
    let short = http::Request::get("http://chaos.test/short")
        .body(())
        .expect("request");
    let (response, _) = client.send_request(short, true).expect("send");
    // The reset may overtake the headers strait queued for the client.
    let response = match response.await {
        Ok(response) => response,
        Err(e) => {
            assert!(e.is_reset(), "neither headers nor a reset: {e}");
            return second_request_on(client, port).await;
        }
    };
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut data = 0;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), body.data()).await {
            Ok(Some(Ok(chunk))) => data += chunk.len(),
            Ok(Some(Err(e))) => break e.is_reset(),
            Ok(None) => break false,
            Err(_) => panic!("the stream was neither ended nor reset in 5 s"),
        }
    };
    assert!(ended && data < 100, "not reset: {data} bytes, then an end");
    second_request_on(client, port).await;
}

/// The HTTP/2 connection goes on after one stream was reset: another
/// request on it is served, and so is another client.
async fn second_request_on(client: h2::client::SendRequest<bytes::Bytes>, port: u16) {
    let ok = http::Request::get("http://chaos.test/")
        .body(())
        .expect("request");
    let mut client = client.ready().await.expect("the connection goes on");
    let (response, _) = client.send_request(ok, true).expect("send");
    assert_eq!(response.await.expect("answer").status(), 200);

    // The gateway goes on serving everyone else.
    let r = send(get(port, "chaos.test", "/")).await.expect("answer");
    assert_eq!(r.status, 200, "{}", r.service());
}

/// A backend process killed under an open WebSocket: the client's
/// connection is closed at once, not left hanging; others are served.
#[tokio::test(flavor = "multi_thread")]
async fn a_backend_killed_under_a_websocket_closes_it() {
    let ws_backend = echo("ws", "ws-0");
    let ok = echo("ok", "ok-0");
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "ws.yaml",
        &(gateway_yaml(port)
            + &prefix_route("ws", "/ws", "ws", "")
            + &service("ws", ws_backend.port)
            + &prefix_route("ok", "/", "ok", "")
            + &service("ok", ok.port)),
    );
    let _gw = Gateway::start(&dir).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut ws, response) = tokio_tungstenite::client_async("ws://chaos.test/ws", tcp)
        .await
        .expect("handshake");
    assert_eq!(response.status(), 101);
    let hello = tokio_tungstenite::tungstenite::Message::text("hello");
    ws.send(hello.clone()).await.expect("send");
    let back = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(
        matches!(back, Ok(Some(Ok(ref m))) if *m == hello),
        "{back:?}"
    );
    let killed = Instant::now();
    drop(ws_backend);
    let next = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the WebSocket is closed within 5 s of the kill");
    println!("after the kill, in {:?}: {next:?}", killed.elapsed());
    assert!(
        !matches!(
            next,
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_)))
        ),
        "{next:?}"
    );
    let r = send(get(port, "chaos.test", "/")).await.expect("answer");
    assert_eq!(r.status, 200, "{}", r.service());
}

/// With the process's connection limit full, a new connection waits in the
/// accept queue, unanswered, and is served as soon as another closes; the
/// connections already open go on being served.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_connection_limit_queues_new_connections() {
    let ok = echo("ok", "ok-0");
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "ok.yaml",
        &(gateway_yaml(port) + &prefix_route("ok", "/", "ok", "") + &service("ok", ok.port)),
    );
    let _gw = Gateway::start_with(&dir, &["--max-connections", "4"]).await;
    let request = b"GET / HTTP/1.1\r\nHost: chaos.test\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.write_all(request).await.expect("send");
        assert!(answer(&mut s, 5).await.starts_with("HTTP/1.1 200"));
        open.push(s);
    }
    let mut fifth = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the kernel accepts it into the queue");
    fifth.write_all(request).await.expect("send");
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), fifth.read(&mut byte)).await;
    assert!(early.is_err(), "answered past the limit: {early:?}");
    // The four are still served while the fifth waits.
    for s in open.iter_mut().skip(1) {
        s.write_all(request).await.expect("send");
        assert!(answer(s, 5).await.starts_with("HTTP/1.1 200"));
    }
    drop(open.remove(0));
    let queued = Instant::now();
    let served = answer(&mut fifth, 5).await;
    println!(
        "the fifth was served {:?} after a slot freed",
        queued.elapsed()
    );
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}

/// One response on a kept-alive connection: its head and body by
/// Content-Length, within `secs` seconds.
async fn answer(s: &mut tokio::net::TcpStream, secs: u64) -> String {
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    return text;
                }
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return text,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(secs), read)
        .await
        .expect("an answer in time")
}
