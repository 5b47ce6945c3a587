//! What the request path knows: of a connection ([`ConnInfo`]), made once
//! when it is accepted, and of one request ([`RequestCtx`]), filled in by
//! the phases as they go and read by telemetry at the end.

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
    /// Why strait answered itself, when it did.
    pub reason: Option<&'static str>,
}

impl RequestCtx {
    pub fn new(conn: Arc<ConnInfo>, headers: &HeaderMap) -> Self {
        RequestCtx {
            conn,
            start: Instant::now(),
            grpc: is_grpc(headers),
            listener: unmatched(),
            route: unmatched(),
            reason: None,
        }
    }
}

pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}
