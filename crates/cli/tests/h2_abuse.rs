//! HTTP/2 clients that misbehave on purpose, written frame by frame (the
//! `h2` crate refuses to misbehave): CONTINUATION floods, more streams
//! than the server allows, empty DATA floods and flow-control overflow.
//! Each connection is ended by strait with a GOAWAY naming the abuse,
//! counted in `strait_connection_errors_total`, and another client is
//! served throughout. Rapid reset has its test in `strict.rs`. A client
//! that stops reading is cut off at the send timeout, over HTTP/2 (a
//! window left shut) and, for comparison, HTTP/1.1 (a TCP window full).

mod common;

use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const RST_STREAM: u8 = 3;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

const ENHANCE_YOUR_CALM: u32 = 0xb;
const FLOW_CONTROL_ERROR: u32 = 0x3;

/// A gateway routing `/` to an echo, `/deaf` to a backend that accepts
/// and never reads, and `/firehose` to one that answers with an endless
/// body; its port.
async fn gateway() -> Setup {
    gateway_with(&[]).await
}

async fn gateway_with(flags: &[&str]) -> Setup {
    let echo = echo("web", "web-0");
    let (firehose_port, let_go) = firehose();
    let deaf = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let deaf_port = deaf.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in deaf.incoming() {
            held.push(conn);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let port = free_port();
    let dir = TempDir::new();
    dir.write(
        "gw.yaml",
        &(gateway_yaml(port)
            + &prefix_route("web", "/", "web", "")
            + &service_yaml("web", echo.port, None)
            + &prefix_route("deaf", "/deaf", "deaf", "")
            + &service_yaml("deaf", deaf_port, None)
            + &prefix_route("firehose", "/firehose", "firehose", "")
            + &service_yaml("firehose", firehose_port, None)),
    );
    let gw = Gateway::start_with(&dir, flags).await;
    Setup {
        gw,
        _echo: echo,
        _dir: dir,
        port,
        deaf_accepted: accepted,
        firehose_let_go: let_go,
    }
}

/// A backend that answers every request with an endless chunked body;
/// its port, and how many of its connections the gateway let go of.
fn firehose() -> (u16, Arc<AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let let_go = Arc::new(AtomicUsize::new(0));
    let count = let_go.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let count = count.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if !matches!(conn.read(&mut byte), Ok(1)) {
                        return;
                    }
                    head.push(byte[0]);
                }
                let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                let chunk = [b"10000\r\n".as_slice(), &[b'x'; 0x10000], b"\r\n"].concat();
                while conn.write_all(&out).is_ok() {
                    out.clone_from(&chunk);
                }
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (port, let_go)
}

struct Setup {
    gw: Gateway,
    _echo: Echo,
    _dir: TempDir,
    port: u16,
    /// Connections the deaf backend has accepted.
    deaf_accepted: Arc<AtomicUsize>,
    /// Firehose connections the gateway closed.
    firehose_let_go: Arc<AtomicUsize>,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// An HPACK string literal, not Huffman-coded (7-bit prefix integer).
fn literal(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len();
    if n < 127 {
        out.push(n as u8);
    } else {
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }
    out.extend(s.as_bytes());
}

/// The header block of a request for `a.test` and `path` (pseudo-headers
/// indexed from the static table, their values literal where they must).
fn request_block(method_post: bool, path: &str) -> Vec<u8> {
    // :method GET (2) or POST (3), :scheme http (6).
    let mut out = vec![if method_post { 0x83 } else { 0x82 }, 0x86];
    // :path, literal without indexing, name from the static table (4).
    out.push(0x04);
    literal(&mut out, path);
    // :authority, literal without indexing, name from the static table (1).
    out.push(0x01);
    literal(&mut out, "a.test");
    out
}

/// One header `name: value`, literal without indexing, new name.
fn header(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0x00];
    literal(&mut out, name);
    literal(&mut out, value);
    out
}

/// What the server sent before it closed.
#[derive(Debug, Default)]
struct Heard {
    goaway: Option<u32>,
    resets: usize,
    /// Response body bytes, and streams the server ended.
    data: usize,
    ended_streams: usize,
    closed: bool,
}

/// A raw HTTP/2 connection: the preface and empty SETTINGS sent, the
/// server's frames read by a task until it closes.
async fn connect(port: u16) -> (OwnedWriteHalf, tokio::task::JoinHandle<Heard>) {
    connect_with(port, &[]).await
}

/// The same, with `settings` (id and value pairs, 6 bytes each).
async fn connect_with(
    port: u16,
    settings: &[u8],
) -> (OwnedWriteHalf, tokio::task::JoinHandle<Heard>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut read, mut write) = tcp.into_split();
    write
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    write
        .write_all(&frame(SETTINGS, 0, 0, settings))
        .await
        .expect("settings");
    let heard = tokio::spawn(async move {
        let mut heard = Heard::default();
        loop {
            let mut head = [0u8; 9];
            if read.read_exact(&mut head).await.is_err() {
                heard.closed = true;
                return heard;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if read.read_exact(&mut payload).await.is_err() {
                heard.closed = true;
                return heard;
            }
            match head[3] {
                GOAWAY if len >= 8 => {
                    let code = [payload[4], payload[5], payload[6], payload[7]];
                    heard.goaway = Some(u32::from_be_bytes(code));
                }
                RST_STREAM => heard.resets += 1,
                DATA => heard.data += len,
                _ => {}
            }
            if matches!(head[3], DATA | HEADERS) && head[4] & END_STREAM != 0 {
                heard.ended_streams += 1;
            }
        }
    });
    (write, heard)
}

/// Writes `frames` until the server stops taking them or has closed its
/// side (after which it lingers, reading and dropping what still comes);
/// how many went.
async fn flood(
    write: &mut OwnedWriteHalf,
    heard: &tokio::task::JoinHandle<Heard>,
    frames: impl Iterator<Item = Vec<u8>>,
) -> usize {
    let mut sent = 0;
    for f in frames {
        if heard.is_finished() {
            break;
        }
        let wrote = tokio::time::timeout(Duration::from_secs(5), write.write_all(&f)).await;
        if !matches!(wrote, Ok(Ok(()))) {
            break;
        }
        sent += 1;
    }
    sent
}

/// One abusive connection: `frames` written after the preface until the
/// server closes; what the server said (how many went is printed).
async fn abuse(port: u16, frames: impl Iterator<Item = Vec<u8>>) -> Heard {
    let (mut write, heard) = connect(port).await;
    let sent = flood(&mut write, &heard, frames).await;
    let heard = ended(heard).await;
    // The client goes, so the lingering close ends and the metric counts.
    drop(write);
    println!("sent {sent} frames; heard {heard:?}");
    heard
}

/// The server's answer to an abusive connection: it must close within 5 s.
async fn ended(heard: tokio::task::JoinHandle<Heard>) -> Heard {
    tokio::time::timeout(Duration::from_secs(5), heard)
        .await
        .expect("the connection is ended within 5 s")
        .expect("reader")
}

/// Another client is served, and the metric counts `reason` (once the
/// abusive connection's lingering close is over: the client has gone).
async fn others_served_and_counted(gw: &Gateway, port: u16, reason: &str) {
    let ok = send(get(port, "a.test", "/")).await.expect("GET");
    assert_eq!(ok.status, 200, "another client: {}", ok.service());
    let series = format!("strait_connection_errors_total{{reason=\"{reason}\"}} ");
    eventually(
        5,
        || format!("{series} not counted"),
        || async {
            let metrics = gw.metrics().await;
            let counted = metrics
                .lines()
                .find_map(|l| l.strip_prefix(series.as_str()))
                .and_then(|n| n.trim().parse::<f64>().ok());
            counted.filter(|n| *n >= 1.0)
        },
    )
    .await;
}

/// A header block that never ends: CONTINUATION frames after CONTINUATION
/// frames (CVE-2024-27316 and its kin), each small, so that no size limit
/// is reached first. Ended after a handful, not read forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_continuation_flood_is_cut_off() {
    let setup = gateway().await;
    let (gw, port) = (&setup.gw, setup.port);
    let first = frame(HEADERS, END_STREAM, 1, &request_block(false, "/"));
    let more = (0..100_000).map(|i| frame(CONTINUATION, 0, 1, &header("x-more", &i.to_string())));
    let heard = abuse(port, std::iter::once(first).chain(more)).await;
    assert_eq!(heard.goaway, Some(ENHANCE_YOUR_CALM), "{heard:?}");
    others_served_and_counted(gw, port, "h2_enhance_your_calm").await;
}

/// Streams opened past the server's limit (200 at once) are refused one
/// by one; a client that goes on opening them is cut off, and no more than
/// the limit reach the backend.
#[tokio::test(flavor = "multi_thread")]
async fn too_many_streams_are_refused_then_cut_off() {
    let setup = gateway().await;
    let (gw, port) = (&setup.gw, setup.port);
    // POSTs whose bodies never come, to a backend that never answers: each
    // stream stays open, and each takes a backend connection of its own.
    let post = request_block(true, "/deaf");
    let opens = (0..5_000u32).map(|i| frame(HEADERS, END_HEADERS, 2 * i + 1, &post));
    let heard = abuse(port, opens).await;
    assert_eq!(heard.goaway, Some(ENHANCE_YOUR_CALM), "{heard:?}");
    assert!(
        heard.resets >= 100,
        "refused streams were not reset: {heard:?}"
    );
    others_served_and_counted(gw, port, "h2_enhance_your_calm").await;
    // The streams strait served did reach the backend (the kernel may
    // still hand the last connections over), and no more than the limit.
    let reached = eventually(
        5,
        || "no stream reached the backend".into(),
        || async { Some(setup.deaf_accepted.load(Ordering::SeqCst)).filter(|n| *n > 0) },
    )
    .await;
    println!("{reached} streams reached the backend");
    assert!(reached <= 200, "{reached} streams reached the backend");
}

/// Empty DATA frames cost the server work and carry nothing: a stream of
/// them ends the connection.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_data_flood_is_cut_off() {
    let setup = gateway().await;
    let (gw, port) = (&setup.gw, setup.port);
    let open = frame(HEADERS, END_HEADERS, 1, &request_block(true, "/"));
    let empties = (0..100_000).map(|_| frame(DATA, 0, 1, &[]));
    let heard = abuse(port, std::iter::once(open).chain(empties)).await;
    assert_eq!(heard.goaway, Some(ENHANCE_YOUR_CALM), "{heard:?}");
    others_served_and_counted(gw, port, "h2_enhance_your_calm").await;
}

/// WINDOW_UPDATE past 2^31-1 (RFC 9113 §6.9.1): a connection error.
#[tokio::test(flavor = "multi_thread")]
async fn a_window_overflow_ends_the_connection() {
    let setup = gateway().await;
    let (gw, port) = (&setup.gw, setup.port);
    let increment = 0x7fff_ffffu32.to_be_bytes();
    let updates = (0..2).map(|_| frame(WINDOW_UPDATE, 0, 0, &increment));
    let heard = abuse(port, updates).await;
    assert_eq!(heard.goaway, Some(FLOW_CONTROL_ERROR), "{heard:?}");
    others_served_and_counted(gw, port, "h2_flow_control_error").await;
}

/// A client that sends more body than the window it was given. The
/// backend here accepts and never reads, so nothing frees the window and
/// the overrun is certain: a flow-control error, whatever else happens.
#[tokio::test(flavor = "multi_thread")]
async fn data_past_the_window_ends_the_connection() {
    let setup = gateway().await;
    let (gw, port) = (&setup.gw, setup.port);
    let chunk = vec![b'x'; 16 * 1024];
    let open = frame(HEADERS, END_HEADERS, 1, &request_block(true, "/deaf"));
    // 64 MiB: far past any window and the loopback socket buffers.
    let body = (0..4096).map(|_| frame(DATA, 0, 1, &chunk));
    let heard = abuse(port, std::iter::once(open).chain(body)).await;
    assert_eq!(heard.goaway, Some(FLOW_CONTROL_ERROR), "{heard:?}");
    others_served_and_counted(gw, port, "h2_flow_control_error").await;
}

/// SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may be sent a byte of body
/// until the client opens its window.
const SHUT_WINDOWS: [u8; 6] = [0, 4, 0, 0, 0, 0];

fn open_window(stream: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &0xffffu32.to_be_bytes())
}

/// A client that opens streams and never opens their windows (the "zero
/// window" attack, CVE-2019-9517's kin) would hold a backend connection
/// per stream for as long as it liked; at the send timeout its connection
/// closes, and the backends are let go.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_reads_nothing_is_cut_off_at_the_send_timeout() {
    let setup = gateway_with(&["--send-timeout", "2s"]).await;
    let (gw, port) = (&setup.gw, setup.port);
    let (mut write, heard) = connect_with(setup.port, &SHUT_WINDOWS).await;
    let began = std::time::Instant::now();
    let get = request_block(false, "/firehose");
    for i in 0..20u32 {
        let open = frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, &get);
        write.write_all(&open).await.expect("open a stream");
    }
    let heard = tokio::time::timeout(Duration::from_secs(10), heard)
        .await
        .expect("the connection is closed within 10 s")
        .expect("reader");
    let took = began.elapsed();
    println!("closed after {took:?}; heard {heard:?}");
    assert!(heard.closed && heard.data == 0, "{heard:?}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "closed after {took:?}: the send timeout is 2 s, looked at every 1 s"
    );
    drop(write);
    others_served_and_counted(gw, port, "send_timeout").await;
    let let_go = &setup.firehose_let_go;
    eventually(
        5,
        || {
            format!(
                "{} of 20 backend connections let go",
                let_go.load(Ordering::SeqCst)
            )
        },
        || async { (let_go.load(Ordering::SeqCst) == 20).then_some(()) },
    )
    .await;
}

/// A client that keeps its windows shut for a while, but less than the
/// send timeout each time, is served: the timeout is for the client that
/// stopped, not the slow one.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_opens_its_window_in_time_is_served() {
    let setup = gateway_with(&["--send-timeout", "2s"]).await;
    let (mut write, heard) = connect_with(setup.port, &SHUT_WINDOWS).await;
    let get = request_block(false, "/");
    for stream in [1u32, 3, 5] {
        let open = frame(HEADERS, END_STREAM | END_HEADERS, stream, &get);
        write.write_all(&open).await.expect("open a stream");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        write.write_all(&open_window(stream)).await.expect("window");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(write);
    let heard = ended(heard).await;
    println!("heard {heard:?}");
    assert_eq!(heard.ended_streams, 3, "{heard:?}");
    assert!(heard.data > 0 && heard.goaway.is_none(), "{heard:?}");
    let metrics = setup.gw.metrics().await;
    assert!(!metrics.contains("reason=\"send_timeout\""), "{metrics}");
}

/// The same over HTTP/1.1: a client that asks for a large response and
/// reads none of it, once the socket buffers between are full.
#[tokio::test(flavor = "multi_thread")]
async fn an_http1_client_that_reads_nothing_is_cut_off_too() {
    let setup = gateway_with(&["--send-timeout", "2s"]).await;
    let (gw, port) = (&setup.gw, setup.port);
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.write_all(b"GET /firehose HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await
        .expect("request");
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Now read: what the buffers held, then the end.
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    println!("read {got} bytes before the end");
    assert!(
        drained.is_ok(),
        "still sending after 15 s: {got} bytes read"
    );
    assert!(got > 0, "the response began");
    others_served_and_counted(gw, port, "send_timeout").await;
    let let_go = &setup.firehose_let_go;
    eventually(
        5,
        || "the backend connection was not let go".to_string(),
        || async { (let_go.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
}
