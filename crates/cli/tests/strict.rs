//! Strict HTTP/1.1 at the edge: the request-smuggling corpus
//! (tests/smuggling, raw bytes against the real gateway and a recording
//! back end), and the limits as their flags set them, each answer with its
//! reason and a closed connection; an HTTP/2 client that resets every
//! stream it opens (CVE-2023-44487).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// A gateway with `flags` routing everything to one echo; its port.
struct Web {
    gw: Gateway,
    _echo: Echo,
    _dir: TempDir,
}

impl Web {
    async fn start(flags: &[&str]) -> (Web, u16) {
        let echo = echo("web", "web-0");
        let port = free_port();
        let dir = TempDir::new();
        dir.write(
            "gw.yaml",
            &(gateway_yaml(port)
                + &prefix_route("web", "/", "web", "")
                + &service_yaml("web", echo.port, None)),
        );
        let gw = Gateway::start_with(&dir, flags).await;
        let web = Web {
            gw,
            _echo: echo,
            _dir: dir,
        };
        (web, port)
    }
}

#[test]
fn the_smuggling_corpus_passes() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = Command::new("python3")
        .arg(format!("{root}/tests/smuggling/run.py"))
        .args(["--strait", STRAIT])
        .output()
        .expect("python3 runs tests/smuggling/run.py");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the corpus failed:\n{text}");
    assert!(text.contains("strait   passed"), "{text}");
}

/// Sends `raw` on a fresh connection; the whole answer, read until the
/// gateway closes (it must, within 5 s).
fn exchange(port: u16, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(raw);
    let mut answer = Vec::new();
    let closed = s.read_to_end(&mut answer).is_ok();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(closed, "the gateway kept the connection open:\n{answer}");
    answer
}

fn assert_answer(answer: &str, status: &str, reason: &str) {
    let lower = answer.to_ascii_lowercase();
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{answer}"
    );
    assert!(
        lower.contains(&format!("x-strait-reason: {reason}\r\n")),
        "{answer}"
    );
    assert!(lower.contains("connection: close\r\n"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_follow_their_flags_and_answer_with_a_reason() {
    let flags = [
        "--max-request-body",
        "10",
        "--max-request-line",
        "100",
        "--max-header-line",
        "200",
        "--max-request-headers",
        "1000",
    ];
    let (_web, port) = Web::start(&flags).await;
    let ok = send(get(port, "a.test", "/")).await.expect("GET");
    assert_eq!(ok.status, 200, "{}", ok.service());

    let post = |len: usize, body: &str| {
        format!("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: {len}\r\n\r\n{body}")
    };
    assert_answer(
        &exchange(port, post(11, "hello world").as_bytes()),
        "413",
        "body_too_large",
    );
    let chunked = "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n";
    let big = format!("{chunked}6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n");
    assert_answer(&exchange(port, big.as_bytes()), "413", "body_too_large");
    let small =
        "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let small = exchange(port, small.as_bytes());
    assert!(small.starts_with("HTTP/1.1 200"), "{small}");

    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a.test\r\n\r\n", "a".repeat(100));
    let answer = exchange(port, long_target.as_bytes());
    assert_answer(&answer, "414", "request_line_too_long");
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\nX-A: {}\r\n\r\n",
        "a".repeat(200)
    );
    assert_answer(
        &exchange(port, long_header.as_bytes()),
        "431",
        "headers_too_large",
    );
    let many: String = (0..20)
        .map(|i| format!("X-{i}: {}\r\n", "a".repeat(50)))
        .collect();
    let many = format!("GET / HTTP/1.1\r\nHost: a.test\r\n{many}\r\n");
    assert_answer(&exchange(port, many.as_bytes()), "431", "headers_too_large");

    // A chunk the client framed wrong: its fault (400), not the backend's.
    let bad_chunk = format!("{chunked}5\r\nhelloXX\r\n0\r\n\r\n");
    assert_answer(&exchange(port, bad_chunk.as_bytes()), "400", "request_body");
    let smuggled = "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer_Encoding: chunked\r\n\r\n";
    assert_answer(&exchange(port, smuggled.as_bytes()), "400", "bad_framing");
    let coding =
        "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    assert_answer(
        &exchange(port, coding.as_bytes()),
        "501",
        "unknown_transfer_coding",
    );
    let two_hosts = "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n";
    assert_answer(&exchange(port, two_hosts.as_bytes()), "400", "bad_host");
    let connect = "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
    assert_answer(
        &exchange(port, connect.as_bytes()),
        "405",
        "connect_refused",
    );
    // After all that, the backend was never blamed.
    let ok = send(get(port, "a.test", "/")).await.expect("GET");
    assert_eq!(ok.status, 200, "{}", ok.service());
}

/// Rapid reset: streams opened and cancelled at once, thousands of them
/// on one connection. Each costs the backend nothing it would not pay for
/// a real request, the connection is ended rather than the proxy, and
/// another client is served throughout.
#[tokio::test(flavor = "multi_thread")]
async fn rapid_reset_ends_the_connection_and_others_are_served() {
    let (web, port) = Web::start(&[]).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    const STREAMS: usize = 20_000;
    let mut sent = 0;
    for _ in 0..STREAMS {
        let req = http::Request::get(format!("http://a.test:{port}/"))
            .body(())
            .expect("request");
        let Ok(ready) = client.ready().await else {
            break;
        };
        client = ready;
        let Ok((_, mut stream)) = client.send_request(req, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    // `client` is still held: the connection ends only if strait ends it.
    let ended = tokio::time::timeout(Duration::from_secs(3), conn).await;
    let ok = send(get(port, "a.test", "/")).await.expect("GET");
    assert_eq!(ok.status, 200, "another client: {}", ok.service());
    let served = ok.json()["served"].as_u64().unwrap_or(0);
    println!(
        "sent {sent} reset streams; the backend served {served} requests; connection: {ended:?}"
    );
    assert!(
        sent < STREAMS && ended.is_ok(),
        "20,000 resets and the connection still open"
    );
    assert!(served <= 100, "{served} reset streams reached the backend");
    assert!(web.gw.logs().len() < 1 << 20, "the log grew past 1 MiB");
}

/// Slowloris: clients that send headers a byte at a time are cut off at
/// the header deadline, one that stops in the middle of a body is answered
/// 408, and a client that behaves is served throughout.
#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let flags = [
        "--header-read-timeout",
        "1s",
        "--request-body-timeout",
        "1s",
    ];
    let (_web, port) = Web::start(&flags).await;
    let start = std::time::Instant::now();
    let slow: Vec<_> = (0..200)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: ")
                    .await?;
                // Ten seconds of a byte every 100 ms, unless cut off first.
                for _ in 0..100 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if s.write_all(b"a").await.is_err() {
                        break;
                    }
                    let mut buf = [0u8; 64];
                    let peek = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf));
                    if let Ok(Ok(0) | Err(_)) = peek.await {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(start.elapsed())
            })
        })
        .collect();
    for _ in 0..20 {
        let ok = send(get(port, "a.test", "/")).await.expect("GET");
        assert_eq!(ok.status, 200, "{}", ok.service());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for task in slow {
        let cut = task.await.expect("task").unwrap_or_default();
        assert!(
            cut < Duration::from_secs(5),
            "a slow client held on for {cut:?}"
        );
    }
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nab")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer to a stalled body within 5 s");
    assert_answer(
        &String::from_utf8_lossy(&answer),
        "408",
        "request_body_timeout",
    );
}

/// Sends a body of `total` bytes in pieces of `piece` every `every`; the
/// answer's status line and the time it took.
async fn trickle(port: u16, piece: usize, every: Duration, total: usize) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let start = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: {total}\r\n\r\n");
    s.write_all(head.as_bytes()).await.expect("head");
    let (mut read, mut write) = s.into_split();
    let sender = tokio::spawn(async move {
        for _ in 0..total / piece {
            tokio::time::sleep(every).await;
            if write.write_all(&vec![b'x'; piece]).await.is_err() {
                break;
            }
        }
        write
    });
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), read.read(&mut answer))
        .await
        .expect("an answer within 20 s")
        .unwrap_or(0);
    sender.abort();
    (
        String::from_utf8_lossy(&answer[..n]).into_owned(),
        start.elapsed(),
    )
}

/// A body sent in pieces, each well before the idle limit, is cut off once
/// its average falls under the minimum rate; one sent slowly but above the
/// rate is served whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_under_the_minimum_rate_is_cut_off() {
    let flags = [
        "--min-request-body-rate",
        "1000",
        "--request-body-timeout",
        "2s",
    ];
    let (_web, port) = Web::start(&flags).await;
    let step = Duration::from_millis(100);
    // 100 bytes/s: under the rate, and a piece every 100 ms.
    let slow = trickle(port, 10, step, 10_000);
    // 4,000 bytes/s for 7 s: slow, past the grace, but above the rate.
    let fine = trickle(port, 400, step, 28_000);
    let ((slow, slow_took), (fine, fine_took)) = tokio::join!(slow, fine);
    println!("slow: {slow_took:?}; fine: {fine_took:?}");
    assert_answer(&slow, "408", "request_body_too_slow");
    assert!(
        slow_took > Duration::from_secs(5) && slow_took < Duration::from_secs(8),
        "cut off after {slow_took:?}: the grace is 5 s"
    );
    assert!(fine.starts_with("HTTP/1.1 200"), "{fine}");
    assert!(fine_took > Duration::from_secs(6), "{fine_took:?}");
}

/// An HTTP/2 header list over the limit (64 KiB) is refused on its own
/// stream; the connection and other clients go on being served.
#[tokio::test(flavor = "multi_thread")]
async fn an_http2_header_list_over_the_limit_is_refused() {
    let (_web, port) = Web::start(&[]).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    let huge = "a".repeat(8 * 1024);
    let mut req = http::Request::get(format!("http://a.test:{port}/"));
    for i in 0..12 {
        req = req.header(format!("x-big-{i}"), huge.as_str());
    }
    let mut client = client.ready().await.expect("ready");
    let (response, _) = client
        .send_request(req.body(()).expect("request"), true)
        .expect("send");
    let refused = match response.await {
        Ok(r) => r.status() == http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        Err(e) => e.is_reset() || e.is_go_away(),
    };
    assert!(refused, "96 KiB of headers were not refused");
    let small = http::Request::get(format!("http://a.test:{port}/"))
        .body(())
        .expect("request");
    let mut client = client.ready().await.expect("the connection goes on");
    let (response, _) = client.send_request(small, true).expect("send");
    let status = response.await.expect("answer").status();
    assert_eq!(status, 200, "a normal request on the same connection");
    let ok = send(get(port, "a.test", "/")).await.expect("GET");
    assert_eq!(ok.status, 200, "another client: {}", ok.service());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_upload_still_gets_its_answer() {
    // A client that sends its whole body before reading, as most uploads
    // do. Closed with the body unread, the socket would answer the rest
    // with a reset, and a reset makes the client's kernel drop the answer
    // it has not read yet: lingering close reads on until the client stops.
    let (_web, port) = Web::start(&[]).await;
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let body = vec![b'x'; 8 << 20];
        let head = format!(
            "POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: {}\r\nContent_Length: 5\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).expect("head");
        let sent = s.write_all(&body);
        let mut answer = Vec::new();
        let read = s.read_to_end(&mut answer);
        (
            sent,
            read.map(|_| String::from_utf8_lossy(&answer).into_owned()),
        )
    })
    .await
    .expect("client");
    let (sent, read) = answer;
    assert!(sent.is_ok(), "the body could not be sent: {sent:?}");
    let answer = read.expect("the answer was lost to a reset");
    assert_answer(&answer, "400", "bad_framing");
}

#[tokio::test(flavor = "multi_thread")]
async fn lingering_is_bounded() {
    // A client that never stops sending after its answer is cut off once
    // the linger time (5 s) is up, not read from forever.
    let (_web, port) = Web::start(&[]).await;
    let started = std::time::Instant::now();
    let cut = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let head = "POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 99999999999\r\nContent_Length: 5\r\n\r\n";
        s.write_all(head.as_bytes()).expect("head");
        let chunk = vec![b'x'; 64 * 1024];
        while started.elapsed() < Duration::from_secs(30) {
            if s.write_all(&chunk).is_err() {
                return true;
            }
        }
        false
    })
    .await
    .expect("client");
    assert!(cut, "the gateway read on for 30 s");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "cut off after {:?}, before the linger time",
        started.elapsed()
    );
}
