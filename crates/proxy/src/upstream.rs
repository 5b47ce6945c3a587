//! Connections to backends: one keep-alive pool per endpoint, HTTP/1.1 or
//! HTTP/2 with prior knowledge (h2c) as the backend port's `appProtocol` says.

use crate::tee::UpstreamBody;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;
use strait_route::UpstreamProtocol;

pub type HttpClient = Client<HttpConnector, UpstreamBody>;

/// How long an idle upstream connection is kept for reuse.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long connecting to an endpoint may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Upstreams {
    http1: HttpClient,
    h2c: HttpClient,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(UPSTREAM_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .set_host(false);
        let http1 = builder.build(connector.clone());
        let h2c = builder.http2_only(true).build(connector);
        Upstreams { http1, h2c }
    }

    pub fn client(&self, protocol: UpstreamProtocol) -> &HttpClient {
        match protocol {
            UpstreamProtocol::Http1 => &self.http1,
            UpstreamProtocol::H2c => &self.h2c,
        }
    }
}
