//! Any bytes as an HTTP/1 connection: hyper parses them as strait's
//! listeners do, and each request it hands over goes through strait's
//! strict phase. A request the phase lets through must have one
//! unambiguous framing and one valid Host, and nothing a backend could
//! read as a framing header or an h2c upgrade: what a smuggled request
//! would need.
#![no_main]

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;
use strait_proxy::limits::HttpLimits;
use strait_proxy::request::strict;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// The model of a framing look-alike: the name with every byte that is
/// not a letter, digit or `-` read as `-`.
fn framing_lookalike(name: &str) -> bool {
    let folded: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name != folded && (folded == "content-length" || folded == "transfer-encoding")
}

fn assert_unambiguous(req: &Request<Incoming>) {
    let h = req.headers();
    let hosts: Vec<_> = h.get_all(HOST).iter().collect();
    let http10_without_host = req.version() == Version::HTTP_10 && hosts.is_empty();
    assert!(hosts.len() == 1 || http10_without_host, "Host {hosts:?}");
    if let Some(host) = hosts.first() {
        let text = host.to_str().expect("Host is text");
        assert!(strict::authority(text), "Host {text:?}");
        if let Some(a) = req.uri().authority() {
            assert_eq!(a.as_str(), text, "the target's authority wins");
        }
    }
    for name in h.keys() {
        assert!(!framing_lookalike(name.as_str()), "look-alike {name}");
    }
    // Transfer-Encoding is hop-by-hop: the back end never sees it as
    // written (the body is framed again), so its list syntax may stay.
    let te: Vec<&str> = h
        .get_all(TRANSFER_ENCODING)
        .iter()
        .map(|v| v.to_str().expect("Transfer-Encoding is text"))
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if h.contains_key(TRANSFER_ENCODING) {
        assert!(
            te.len() == 1 && te[0].eq_ignore_ascii_case("chunked"),
            "Transfer-Encoding {te:?}"
        );
        assert!(h.get(CONTENT_LENGTH).is_none(), "both framings");
    }
    assert!(h.get_all(CONTENT_LENGTH).iter().count() <= 1);
    for u in h.get_all(UPGRADE) {
        let text = u.to_str().unwrap_or("");
        assert!(
            !text
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("h2c")),
            "h2c upgrade {text:?}"
        );
    }
    assert!(req.method() != http::Method::CONNECT || req.uri().scheme().is_some());
}

async fn serve(data: &[u8]) {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let service = service_fn(|mut req: Request<Incoming>| async move {
        let limits = HttpLimits::default();
        let status = match strict::check(&mut req, None, &limits) {
            Ok(()) => {
                assert_unambiguous(&req);
                200
            }
            Err(e) => e.status().as_u16(),
        };
        let mut res = Response::new(String::new());
        *res.status_mut() = status.try_into().expect("a status");
        Ok::<_, Infallible>(res)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .max_headers(strait_proxy::listeners::MAX_HEADERS)
        .serve_connection(TokioIo::new(server), service);
    let client_side = async {
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut sink = Vec::new();
        let _ = client.read_to_end(&mut sink).await;
    };
    let both = async { tokio::join!(conn, client_side) };
    let _ = tokio::time::timeout(Duration::from_secs(2), both).await;
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(serve(data));
});
