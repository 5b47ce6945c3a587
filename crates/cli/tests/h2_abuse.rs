//! HTTP/2 clients that misbehave on purpose, written frame by frame (the
//! `h2` crate refuses to misbehave): CONTINUATION floods, more streams
//! than the server allows, empty DATA floods and flow-control overflow.
//! Each connection is ended by strait with a GOAWAY naming the abuse,
//! counted in `strait_connection_errors_total`, and another client is
//! served throughout. Rapid reset has its test in `strict.rs`.

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

/// A gateway routing `/` to an echo and `/deaf` to a backend that accepts
/// and never reads; its port.
async fn gateway() -> Setup {
    let echo = echo("web", "web-0");
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
            + &service_yaml("deaf", deaf_port, None)),
    );
    let gw = Gateway::start(&dir).await;
    Setup {
        gw,
        _echo: echo,
        _dir: dir,
        port,
        deaf_accepted: accepted,
    }
}

struct Setup {
    gw: Gateway,
    _echo: Echo,
    _dir: TempDir,
    port: u16,
    /// Connections the deaf backend has accepted.
    deaf_accepted: Arc<AtomicUsize>,
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
    closed: bool,
}

/// A raw HTTP/2 connection: the preface and empty SETTINGS sent, the
/// server's frames read by a task until it closes.
async fn connect(port: u16) -> (OwnedWriteHalf, tokio::task::JoinHandle<Heard>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut read, mut write) = tcp.into_split();
    write
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    write
        .write_all(&frame(SETTINGS, 0, 0, &[]))
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
                _ => {}
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
