//! Connections to backends, HTTP/1.1 or HTTP/2 with prior knowledge (h2c)
//! as the backend port's `appProtocol` says.
//!
//! HTTP/1.1 goes through hyper-util's pooled client (keep-alive pool per
//! endpoint). HTTP/2 multiplexes, so one connection per endpoint is kept,
//! dialled by address while the request's `:authority` stays the host the
//! client asked for (RFC 9113 §8.3.1): a backend must see the same host
//! over either protocol.

use crate::tee::{BoxError, UpstreamBody};
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use strait_route::UpstreamProtocol;
use tracing::debug;

pub type HttpClient = Client<HttpConnector, UpstreamBody>;

/// How long an idle upstream connection is kept for reuse.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long connecting to an endpoint may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Upstreams {
    http1: HttpClient,
    /// One HTTP/2 connection per endpoint. The lock is held only to clone
    /// or replace a handle, never across I/O.
    h2c: Mutex<HashMap<SocketAddr, http2::SendRequest<UpstreamBody>>>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

/// `http://<authority><path?query>` from parts that are already valid.
pub fn absolute_uri(authority: Authority, path_and_query: PathAndQuery) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path_and_query);
    // Scheme, authority and path are all present, which is all from_parts checks.
    Uri::from_parts(parts).unwrap_or_default()
}

impl Upstreams {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(UPSTREAM_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .set_host(false)
            .build(connector);
        Upstreams {
            http1,
            h2c: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `req` (origin-form URI, `Host` header set) to `endpoint`.
    pub async fn send(
        &self,
        protocol: UpstreamProtocol,
        endpoint: SocketAddr,
        endpoint_authority: &Authority,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        let path_and_query = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        match protocol {
            UpstreamProtocol::Http1 => {
                *req.uri_mut() = absolute_uri(endpoint_authority.clone(), path_and_query);
                *req.version_mut() = Version::HTTP_11;
                Ok(self.http1.request(req).await?)
            }
            UpstreamProtocol::H2c => {
                let authority = req
                    .headers_mut()
                    .remove(HOST)
                    .and_then(|h| Authority::try_from(h.as_bytes()).ok())
                    .unwrap_or_else(|| endpoint_authority.clone());
                *req.uri_mut() = absolute_uri(authority, path_and_query);
                *req.version_mut() = Version::HTTP_2;
                let mut sender = self.h2_sender(endpoint).await?;
                sender.ready().await?;
                Ok(sender.send_request(req).await?)
            }
        }
    }

    async fn h2_sender(
        &self,
        endpoint: SocketAddr,
    ) -> Result<http2::SendRequest<UpstreamBody>, BoxError> {
        let cached = self
            .h2c
            .lock()
            .ok()
            .and_then(|map| map.get(&endpoint).filter(|s| !s.is_closed()).cloned());
        if let Some(sender) = cached {
            return Ok(sender);
        }
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(endpoint))
                .await
                .map_err(|_| format!("connecting to {endpoint} timed out"))??;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%endpoint, error = %e, "h2c upstream connection ended");
            }
        });
        if let Ok(mut map) = self.h2c.lock() {
            map.insert(endpoint, sender.clone());
        }
        Ok(sender)
    }
}
