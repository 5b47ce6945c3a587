//! What strait's own HTTP/1.1 client reads from backends, through the
//! real gateway: interim answers skipped, chunked bodies with extensions
//! and trailers, answers that end when the backend closes, heads cut off
//! or framed two ways refused, bytes past an answer's end never read as
//! the next answer, idle connections the backend closed never failing a
//! request, and an answer that comes before the upload is done.

mod common;
use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a scripted backend does after it has read a request's head.
#[derive(Clone, Copy)]
enum After {
    /// Waits for the next request.
    Keep,
    /// Closes the connection.
    Close,
    /// Waits, then closes the idle connection, as a backend's keep-alive
    /// timeout does.
    CloseIdle(Duration),
}

/// A backend that answers every request with `answer` (the bytes, then
/// what the connection does); its port and how many connections it took.
async fn scripted(answer: &'static [u8], after: After) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(play(s, answer, after));
        }
    });
    (port, conns)
}

/// The next request head on `s`, read through `buf` (which keeps what
/// came after it); `None` once the connection ends. These backends read
/// no body: what follows a head is read as the next head.
async fn next_head(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(buf.drain(..at + 4).collect());
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn play(mut s: tokio::net::TcpStream, answer: &'static [u8], after: After) {
    let mut buf = Vec::new();
    while next_head(&mut s, &mut buf).await.is_some() {
        if s.write_all(answer).await.is_err() {
            return;
        }
        match after {
            After::Keep => {}
            After::Close => return,
            After::CloseIdle(wait) => {
                tokio::time::sleep(wait).await;
                return;
            }
        }
    }
}

fn service(name: &str, port: u16) -> String {
    service_yaml(name, port, None)
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_answers_are_read_as_rfc_9112_frames_them() {
    let cases: [(&str, &'static [u8], After); 8] = [
        ("interim", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", After::Keep),
        ("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=\"a;b\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\n", After::Keep),
        ("both", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", After::Keep),
        ("partial", b"HTTP/1.1 200 OK\r\nContent-", After::Close),
        ("extra", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged", After::Keep),
        ("untilclose", b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", After::Close),
        ("badchunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", After::Keep),
        ("head", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", After::Keep),
    ];
    let port = free_port();
    let dir = TempDir::new();
    let mut yaml = gateway_yaml(port);
    let mut conns = std::collections::HashMap::new();
    for (name, answer, after) in cases {
        let (backend, count) = scripted(answer, after).await;
        yaml += &prefix_route(name, &format!("/{name}"), name, "");
        yaml += &service(name, backend);
        conns.insert(name, count);
    }
    dir.write("gw.yaml", &yaml);
    let gw = Gateway::start(&dir).await;
    let get = |path: &str| send(get(port, "h1.test", path));

    let r = get("/interim").await.expect("answer");
    assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]), "{}", gw.logs());

    for _ in 0..3 {
        let r = get("/chunked").await.expect("answer");
        assert_eq!((r.status, &r.body[..]), (200, &b"hello world"[..]));
    }
    assert_eq!(
        conns["chunked"].load(Ordering::SeqCst),
        1,
        "one connection, reused"
    );

    for path in ["/both", "/partial"] {
        let started = Instant::now();
        let r = get(path).await.expect("answer");
        assert_eq!(
            (r.status, r.reason()),
            (502, Some("backend_failed")),
            "{path}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path}: {:?}",
            started.elapsed()
        );
    }

    // The bytes past the first answer's end are never a second answer:
    // the connection they came on is closed, not reused.
    for _ in 0..2 {
        let r = get("/extra").await.expect("answer");
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
    }
    assert_eq!(
        conns["extra"].load(Ordering::SeqCst),
        2,
        "a new connection each time"
    );

    let r = get("/untilclose").await.expect("answer");
    assert_eq!((r.status, &r.body[..]), (200, &b"until the end"[..]));

    // A malformed chunk after the head: the answer is cut off, never
    // ended as if whole.
    let r = get("/badchunk").await;
    assert!(r.is_err(), "a cut-off body: {:?}", r.map(|r| r.body));

    // A HEAD's answer has no body whatever its Content-Length says; the
    // connection carries the next request.
    let r = send(request("HEAD", port, "h1.test", "/head", &[]))
        .await
        .expect("answer");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-length"], "100");
    let r = send(request("HEAD", port, "h1.test", "/head", &[]))
        .await
        .expect("answer");
    assert_eq!(r.status, 200);
    assert_eq!(conns["head"].load(Ordering::SeqCst), 1, "{}", gw.logs());

    let r = get("/chunked").await.expect("answer");
    assert_eq!(r.status, 200, "the gateway goes on: {}", gw.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_the_backend_closed_fail_no_request() {
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let (backend, conns) = scripted(answer, After::CloseIdle(Duration::from_millis(50))).await;
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &(gateway_yaml(port) + &prefix_route("idle", "/", "idle", "") + &service("idle", backend)),
    );
    let gw = Gateway::start(&dir).await;
    for (i, method) in ["GET", "POST", "DELETE", "POST"].into_iter().enumerate() {
        let r = send(request(method, port, "h1.test", "/", &[]))
            .await
            .expect("answer");
        assert_eq!(
            (r.status, &r.body[..]),
            (200, &b"ok"[..]),
            "{method}: {}",
            gw.logs()
        );
        assert_eq!(conns.load(Ordering::SeqCst), i + 1);
        // The backend closes the connection while it sits in the pool.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_before_the_upload_ends_reaches_the_client() {
    // The backend refuses at once, reads none of the body, and closes.
    let answer =
        b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!";
    let (backend, _) = scripted(answer, After::CloseIdle(Duration::from_millis(500))).await;
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &(gateway_yaml(port) + &prefix_route("up", "/", "up", "") + &service("up", backend)),
    );
    let gw = Gateway::start(&dir).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let size = 4 * 1024 * 1024;
    let head = format!("POST /upload HTTP/1.1\r\nHost: h1.test\r\nContent-Length: {size}\r\n\r\n");
    s.write_all(head.as_bytes()).await.expect("head");
    let (mut rd, mut wr) = s.into_split();
    let upload = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"too big!") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    upload.abort();
    let got = String::from_utf8_lossy(&got);
    assert!(read.is_ok(), "no answer in 10 s: {got}");
    assert!(got.starts_with("HTTP/1.1 413"), "{got}\n{}", gw.logs());
    assert!(got.ends_with("too big!"), "{got}");
}

/// A backend that answers before reading the body, with an answer that
/// takes a while to finish, then reads the body as a request of its own
/// (as a backend that ignores the body's length would) and answers that
/// one late.
async fn answers_before_the_body() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = next_head(&mut s, &mut buf).await {
                    let sent = if !head.starts_with(b"GET /x ") {
                        let head = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 10\r\n\r\nno";
                        let _ = s.write_all(head).await;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        s.write_all(b"12345678").await
                    } else {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
                            .await
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_whose_upload_outlived_the_answers_head_is_not_reused() {
    let backend = answers_before_the_body().await;
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &(gateway_yaml(port)
            + &prefix_route("early", "/", "early", "")
            + &service("early", backend)),
    );
    let gw = Gateway::start(&dir).await;
    let smuggled = "GET /x HTTP/1.1\r\nHost: h1.test\r\n\r\n";
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: h1.test\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    );
    s.write_all(head.as_bytes()).await.expect("head");
    // The body goes only once the answer has begun.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut body_sent = false;
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !got.ends_with(b"no12345678") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if !body_sent && got.windows(3).any(|w| w == b"401") {
                s.write_all(smuggled.as_bytes()).await.expect("body");
                body_sent = true;
            }
        }
    })
    .await;
    assert!(
        read.is_ok() && body_sent,
        "{}",
        String::from_utf8_lossy(&got)
    );
    // The next request must not be given the answer to the body.
    for _ in 0..2 {
        let r = send(get(port, "h1.test", "/")).await.expect("answer");
        assert_eq!(
            (r.status, &r.body[..]),
            (401, &b"no12345678"[..]),
            "{}",
            gw.logs()
        );
    }
}
