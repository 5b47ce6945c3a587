//! What the request path knows: of a connection ([`ConnInfo`]), made once
//! when it is accepted, and of one request ([`RequestCtx`]), filled in by
//! the phases as they go and read by telemetry at the end.

use crate::peer::Named;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use strait_route::ListenKey;

/// Which side of the data plane a listener is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A Gateway listener: routes by listener and hostname.
    Gateway,
    /// A sidecar's inbound listener: everything to the workload.
    Inbound,
    /// A sidecar's outbound listener: routes by destination Service.
    Outbound,
}

impl Role {
    /// The role's name in logs and in the ports file.
    pub fn name(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Inbound => "inbound",
            Role::Outbound => "outbound",
        }
    }
}

/// What a connection knows about itself.
#[derive(Debug)]
pub struct ConnInfo {
    /// The listening socket the connection came in on.
    pub listen: ListenKey,
    pub client: SocketAddr,
    /// `client`'s IP as a header value, for `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    pub scheme: &'static str,
    /// The TLS server name the client asked for, lower-cased.
    pub sni: Option<String>,
    pub role: Role,
    /// Where a captured (transparent) connection was going.
    pub original_dst: Option<SocketAddr>,
    /// The SPIFFE ID a sidecar proved with its client certificate.
    pub peer: Option<Arc<str>>,
    /// At a gateway, the client certificate its listener verified, as
    /// `x-forwarded-client-cert` tells it to the backend.
    pub client_cert: Option<HeaderValue>,
    /// Set when a request asks to become a tunnel (an upgrade, a
    /// sidecar's CONNECT): the connection then closes without lingering.
    pub tunnel: std::sync::atomic::AtomicBool,
    /// Its responses, as the send timeout watches them.
    pub send: Arc<crate::send_watch::SendWatch>,
}

/// The label of a request no listener or route took.
pub fn unmatched() -> Arc<str> {
    static UNMATCHED: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    UNMATCHED.get_or_init(|| Arc::from("-")).clone()
}

/// One request as the phases see it.
pub struct RequestCtx {
    pub conn: Arc<ConnInfo>,
    pub start: Instant,
    /// A gRPC request: strait's own answers become gRPC statuses.
    pub grpc: bool,
    /// Metric labels of the listener and route that took the request.
    pub listener: Arc<str>,
    pub route: Arc<str>,
    /// The rule of the route that took it (its place in the route).
    pub rule: Option<u16>,
    /// Why strait answered itself, when it did.
    pub reason: Option<&'static str>,
    /// What the phases learned that telemetry reports.
    pub seen: Seen,
    /// Headers strait puts on the answer, whoever gives it: a login's
    /// renewed session cookies, an authorization service's
    /// `response_headers_to_add`.
    pub answer_headers: Vec<AnswerHeader>,
    /// The rule's session persistence, when it has some: what the answer
    /// is to say of the session.
    pub session: Option<Box<SessionState>>,
}

/// What the client asked (method, path and headers), as a
/// BodyTransform's answer templates see it.
pub struct Asked {
    pub method: http::Method,
    pub path: String,
    pub headers: HeaderMap,
}

/// A request of a rule with session persistence.
pub struct SessionState {
    pub rule: std::sync::Arc<strait_route::Rule>,
    /// The cookie's `Path`.
    pub path: Box<str>,
    /// The session the request carried (also in its extensions, where
    /// the backend and endpoint are chosen).
    pub held: Option<strait_route::session::Sticky>,
}

/// A header for the answer: appended, or replacing any of its name.
#[derive(Clone)]
pub struct AnswerHeader {
    pub name: http::HeaderName,
    pub value: http::HeaderValue,
    pub replace: bool,
}

impl AnswerHeader {
    pub fn put(self, headers: &mut http::HeaderMap) {
        match self.replace {
            true => headers.insert(self.name, self.value),
            false => {
                headers.append(self.name, self.value);
                None
            }
        };
    }
}

/// Filled in by the phases as they learn it; read once, by telemetry.
#[derive(Default)]
pub struct Seen {
    /// The caller's workload, as a meshed caller's sidecar names it.
    pub source: Option<Arc<Named>>,
    /// The callee's workload, as a meshed callee's sidecar names it.
    pub destination: Option<Arc<Named>>,
    /// The Service the request was sent to.
    pub service: Option<Arc<Named>>,
    /// The endpoint of the last try.
    pub endpoint: Option<SocketAddr>,
    /// The place in the rule of the last try's backend (kept only when
    /// the rule has session persistence).
    pub backend: u16,
    /// Tries after the first, of every kind.
    pub retries: u32,
    /// The backend's endpoints are sidecars: what their answer says of
    /// them can be believed.
    pub meshed: bool,
    /// The call to the backend went over the mesh's mutual TLS.
    pub mtls: bool,
    /// The request body's declared length (`Content-Length`), else 0.
    pub request_bytes: u64,
    /// From the first try's start to the response's headers.
    pub upstream: Option<std::time::Duration>,
    /// The request as the access log writes it, when it is to be written.
    pub line: Option<Box<RequestLine>>,
    /// Its span, when traces are exported.
    pub span: Option<Box<crate::traces::RequestSpan>>,
}

/// The request's first line and the headers an access log shows, kept
/// only for requests that are logged.
pub struct RequestLine {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub authority: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    pub request_id: Option<HeaderValue>,
    pub started: std::time::SystemTime,
    pub format: crate::access_log::Format,
}

impl RequestCtx {
    pub fn new(conn: Arc<ConnInfo>, headers: &HeaderMap) -> Self {
        RequestCtx {
            conn,
            start: Instant::now(),
            grpc: is_grpc(headers),
            listener: unmatched(),
            route: unmatched(),
            rule: None,
            reason: None,
            seen: Seen::default(),
            answer_headers: Vec::new(),
            session: None,
        }
    }
}

pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Seconds since the Unix epoch, as cookies and tokens count time.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
