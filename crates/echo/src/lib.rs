//! `strait echo`: the test backend for tests, the demo and benchmarks. It
//! answers like the Gateway API conformance echo server, so routes can be
//! checked the way the conformance suite checks them. Test aids beyond that
//! server: `X-Echo-Trailer` (response trailers), `bodyBytes`, `served` and
//! `receivedBytes` in the JSON, and `Connection: upgrade` answered with 101
//! and a byte echo.
//!
//! On the same port, requests with `content-type: application/grpc…` for
//! one of these services are answered by gRPC (h2c):
//!
//! - `gateway_api_conformance.echo_basic.grpcecho.GrpcEcho`, the conformance
//!   suite's gRPC echo: `Echo` and `EchoTwo` answer the fully qualified
//!   method, the request metadata, the authority and this server's
//!   namespace/service/pod; `EchoThree` answers `UNIMPLEMENTED` naming the
//!   pod (so a test can tell the backend said it, not the gateway).
//! - `grpc.health.v1.Health`, `SERVING` for `""` and for each service here.
//! - Test aid, strait only: `strait.echo.v1.Stream` with a bidirectional
//!   `Chat` (each message echoed back as it arrives) and a server-streaming
//!   `Count` (`n` messages). With request metadata `x-echo-fail: <text>`,
//!   both end with `FAILED_PRECONDITION` and `<text>` after the messages, so
//!   tests see trailers after a stream body.
//!
//! gRPC-shaped requests for other services get the HTTP answer as before.
//! Test aid: `GET /ws` with `Upgrade: websocket` is a real WebSocket echo
//! (handshake, each text or binary message echoed back as such, pings and
//! close answered); other upgrades keep the raw byte echo.
//!
//! The generated messages, servers and clients are in [`pb`], so tests can
//! call these services with tonic clients.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

mod grpc;
mod ws;

/// Code generated from `proto/` (with protox and tonic-prost-build):
/// messages, servers, and clients generic over any tonic `GrpcService`.
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod pb {
    /// The Gateway API conformance gRPC echo (`proto/grpcecho.proto`).
    pub mod grpcecho {
        include!(concat!(
            env!("OUT_DIR"),
            "/gateway_api_conformance.echo_basic.grpcecho.rs"
        ));
    }
    /// The strait-only streaming test aid (`proto/stream.proto`).
    pub mod stream {
        include!(concat!(env!("OUT_DIR"), "/strait.echo.v1.rs"));
    }
    /// The standard health service (`grpc.health.v1`).
    pub use tonic_health::pb as health;
}

/// Who this echo server says it is.
#[derive(Debug, Default)]
pub struct EchoInfo {
    pub namespace: String,
    pub service: String,
    pub pod: String,
    pub served: std::sync::atomic::AtomicU64,
    pub received_bytes: std::sync::atomic::AtomicU64,
    /// Connections accepted so far.
    pub connections: std::sync::atomic::AtomicU64,
    /// Every this-many-th HTTP request is answered `503` (0: never), so
    /// tests have an endpoint that fails a known share of its requests.
    pub fail_every: u64,
    /// Every HTTP answer waits this long first (a slow endpoint for tests).
    pub delay: std::time::Duration,
}

impl EchoInfo {
    pub fn new(namespace: &str, service: &str, pod: &str) -> Self {
        EchoInfo {
            namespace: namespace.into(),
            service: service.into(),
            pod: pod.into(),
            served: Default::default(),
            received_bytes: Default::default(),
            connections: Default::default(),
            fail_every: 0,
            delay: std::time::Duration::ZERO,
        }
    }
}

/// The JSON body of every answer (the conformance echo server's shape).
#[derive(Debug, Serialize)]
pub struct EchoBody<'a> {
    pub path: String,
    pub host: String,
    pub method: String,
    pub proto: &'static str,
    pub headers: BTreeMap<String, Vec<String>>,
    pub namespace: &'a str,
    pub ingress: &'a str,
    pub service: &'a str,
    pub pod: &'a str,
    /// Bytes of request body received (not in the conformance shape; lets
    /// tests check that bodies are streamed through whole).
    #[serde(rename = "bodyBytes")]
    pub body_bytes: usize,
    /// Requests this server answered before this one (lets tests see that a
    /// mirror received its copies).
    pub served: u64,
    /// Request body bytes this server received in all, this request included.
    #[serde(rename = "receivedBytes")]
    pub received_bytes: u64,
    /// Connections this server accepted so far (lets tests count the
    /// connections a proxy opened).
    pub connections: u64,
}

/// Serves HTTP/1.1 and h2c (prior knowledge) on `listener` until dropped.
pub async fn serve(listener: TcpListener, info: Arc<EchoInfo>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let grpc = Arc::new(grpc::Grpc::new(info.clone()).await);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        info.connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let info = info.clone();
        let grpc = grpc.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let info = info.clone();
                let grpc = grpc.clone();
                async move { Ok::<_, Infallible>(dispatch(&info, &grpc, req).await) }
            });
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A body of either kind of answer: the HTTP echo's or a gRPC service's.
type ServeBody = Either<EchoResponseBody, tonic::body::Body>;

/// gRPC for our services, `/ws` WebSocket, else the HTTP echo.
async fn dispatch(
    info: &EchoInfo,
    grpc: &grpc::Grpc,
    req: Request<Incoming>,
) -> Response<ServeBody> {
    if grpc::Grpc::wants(&req) {
        return grpc.call(req).await.map(Either::Right);
    }
    answer(info, req).await.map(Either::Left)
}

/// Go's canonical header form: `x-forwarded-for` → `X-Forwarded-For`.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// `Connection: upgrade` with any `Upgrade` protocol: answers 101 and then
/// echoes every byte back (a stand-in for WebSocket in tests; no framing).
fn upgrade(req: &mut Request<Incoming>) -> Option<Response<EchoResponseBody>> {
    let wants = req
        .headers()
        .get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    let protocol = req
        .headers()
        .get(http::header::UPGRADE)
        .cloned()
        .filter(|_| wants)?;
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut read, &mut write).await;
        }
    });
    let mut response = Response::new(Full::default().with_trailers(std::future::ready(None)));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response
        .headers_mut()
        .insert(http::header::UPGRADE, protocol);
    response.headers_mut().insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    Some(response)
}

/// Every answer's body: JSON, with trailers when `X-Echo-Trailer` asks.
pub type EchoResponseBody = http_body_util::combinators::WithTrailers<
    Full<Bytes>,
    std::future::Ready<Option<Result<http::HeaderMap, Infallible>>>,
>;

/// `X-Echo-Trailer: Name:value,Name2:value2` → those response trailers.
fn trailers(headers: &http::HeaderMap) -> Option<http::HeaderMap> {
    let spec = headers.get("x-echo-trailer")?.to_str().ok()?;
    let mut out = http::HeaderMap::new();
    for (n, v) in header_pairs(spec) {
        out.append(n, v);
    }
    Some(out)
}

/// `Name:value,Name2:value2` → those headers; a pair that is not a valid
/// header is left out rather than failing the answer.
fn header_pairs(spec: &str) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
    spec.split(',').filter_map(|pair| {
        let (name, value) = pair.split_once(':')?;
        let n = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
        let v = HeaderValue::from_str(value.trim()).ok()?;
        Some((n, v))
    })
}

async fn answer(info: &EchoInfo, mut req: Request<Incoming>) -> Response<EchoResponseBody> {
    if ws::wants(&req) {
        return ws::accept(&mut req);
    }
    if let Some(switched) = upgrade(&mut req) {
        return switched;
    }
    let (parts, body) = req.into_parts();
    wait(info, &parts.uri).await;
    // Read the body through so that streamed uploads can be checked.
    let body_bytes = match body.collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    let body = echo_body(info, &parts, body_bytes);
    let fail = info.fail_every > 0 && (body.served + 1).is_multiple_of(info.fail_every);
    respond(&parts, &body, fail)
}

/// The server's `delay`, then the request's `?delay=` (a Go duration).
async fn wait(info: &EchoInfo, uri: &http::Uri) {
    if !info.delay.is_zero() {
        tokio::time::sleep(info.delay).await;
    }
    if let Some(delay) = uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("delay=")))
        .and_then(|d| strait_config::duration::parse_go(d).ok())
    {
        tokio::time::sleep(delay).await;
    }
}

/// What the request was; counts it as served.
fn echo_body<'a>(
    info: &'a EchoInfo,
    parts: &http::request::Parts,
    body_bytes: usize,
) -> EchoBody<'a> {
    EchoBody {
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |pq| pq.to_string()),
        host: host(parts),
        method: parts.method.to_string(),
        proto: match parts.version {
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        headers: header_lists(&parts.headers),
        namespace: &info.namespace,
        ingress: "",
        service: &info.service,
        pod: &info.pod,
        body_bytes,
        served: info
            .served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        received_bytes: info
            .received_bytes
            .fetch_add(body_bytes as u64, std::sync::atomic::Ordering::Relaxed)
            + body_bytes as u64,
        connections: info.connections.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// The request headers by canonical name, as Go's server shows them:
/// without `Host`, which it keeps apart.
fn header_lists(headers: &http::HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if name == http::header::HOST {
            continue;
        }
        out.entry(canonical(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    out
}

/// As Go's server does: HTTP/2's :authority, else the Host header.
fn host(parts: &http::request::Parts) -> String {
    let authority = parts.uri.authority().map(|a| a.to_string());
    let host_header = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    match parts.version {
        Version::HTTP_2 => authority.or(host_header),
        _ => host_header.or(authority),
    }
    .unwrap_or_default()
}

/// `body` as JSON, with the status, headers and trailers the request asks
/// for; `fail` (the server's share of failures) overrides `/status/`.
fn respond(
    parts: &http::request::Parts,
    body: &EchoBody<'_>,
    fail: bool,
) -> Response<EchoResponseBody> {
    let json = serde_json::to_vec(body).unwrap_or_default();
    let trailers = trailers(&parts.headers).map(Ok);
    let mut response =
        Response::new(Full::new(Bytes::from(json)).with_trailers(std::future::ready(trailers)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(code) = asked_status(&parts.uri) {
        *response.status_mut() = code;
    }
    if fail {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    if let Some(set) = parts
        .headers
        .get("x-echo-set-header")
        .and_then(|v| v.to_str().ok())
    {
        for (n, v) in header_pairs(set) {
            response.headers_mut().append(n, v);
        }
    }
    response
}

/// `/status/<code>` → that code.
fn asked_status(uri: &http::Uri) -> Option<StatusCode> {
    uri.path()
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn canonical_names() {
        assert_eq!(super::canonical("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(super::canonical("USER-AGENT"), "User-Agent");
    }
}
