//! Layer 4 listeners: `TCPRoute` (a connection goes to the route's
//! backends as it is) and TLS passthrough (`TLSRoute`: the ClientHello is
//! read to learn the SNI, never answered, then replayed to the backend
//! byte for byte, so the backend terminates TLS itself). A connection with
//! no route or no reachable backend is closed: there is no protocol in
//! which to say why, so the metric and the log say it.

use crate::metrics_tcp::{TcpEdge, TcpPath, TcpRecord};
use crate::peer::Named;
use crate::splice::{splice, Carried};
use crate::tls::{hello_error_reason, HANDSHAKE_TIMEOUT};
use crate::Shared;
use std::net::SocketAddr;
use std::sync::Arc;
use strait_route::{BackendTarget, ListenKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

/// Largest ClientHello read on a passthrough port (`MAX_CLIENT_HELLO_BYTES`),
/// rustls's own limit on a handshake message: more is refused.
pub const MAX_CLIENT_HELLO_BYTES: usize = 64 * 1024 + 5;

/// Forwards one accepted connection; `passthrough` reads the SNI first.
pub async fn serve(
    shared: Arc<Shared>,
    at: ListenKey,
    client: SocketAddr,
    mut stream: TcpStream,
    passthrough: bool,
) {
    let (hello, sni) = if passthrough {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_client_hello(&mut stream)).await {
            Ok(Ok(found)) => found,
            Ok(Err(reason)) => {
                debug!(%client, reason, "ClientHello refused");
                shared.metrics.tls_error(reason);
                return;
            }
            Err(_) => {
                debug!(%client, "no ClientHello in time");
                shared.metrics.tls_error("timeout");
                return;
            }
        }
    } else {
        (Vec::new(), None)
    };
    let live = shared.live.load_full();
    let Some(matched) = live.snapshot.l4_route(at, sni.as_deref()) else {
        debug!(%client, port = at.port, sni = sni.as_deref().unwrap_or("(none)"), "no route; connection closed");
        shared
            .metrics
            .tcp(&Arc::from("-"), &Arc::from("-"), "no_route");
        return;
    };
    let (listener, route) = (matched.listener.label.clone(), matched.rule.route.clone());
    let policy = matched.listener.telemetry;
    let cluster = match matched.rule.pick(fastrand::u64(..)).map(|b| &b.target) {
        Some(BackendTarget::Cluster(c)) => Some(c.clone()),
        _ => None,
    };
    // Held while the connection lasts.
    let mut _slot = None;
    let mut service = Named::unknown();
    let endpoint = match &cluster {
        Some(c) => {
            let state = live.state(c);
            match crate::conn_limit::tcp_slot(state.gate()) {
                Ok(slot) => {
                    _slot = slot;
                    service = state.service.clone();
                    live.next_endpoint(c)
                }
                Err(o) => {
                    shared
                        .metrics
                        .overflow(&c.name, &state.service, o.limit().0);
                    debug!(%client, %route, "connection limit reached; connection closed");
                    shared.metrics.tcp(&listener, &route, "overflow");
                    return;
                }
            }
        }
        None => None,
    };
    let Some(endpoint) = endpoint else {
        debug!(%client, %route, "no usable backend; connection closed");
        shared.metrics.tcp(&listener, &route, "no_backend");
        return;
    };
    let mut upstream = match crate::dial::dial(endpoint).await {
        Ok(s) => s,
        Err(e) => {
            debug!(%client, error = %e, "backend connection failed");
            shared.metrics.tcp(&listener, &route, "connect_failed");
            return;
        }
    };
    if !hello.is_empty() && upstream.write_all(&hello).await.is_err() {
        shared.metrics.tcp(&listener, &route, "connect_failed");
        return;
    }
    // A gateway knows the Service, not who is at either end.
    let edge = TcpEdge {
        reporter: "gateway",
        source: Named::unknown(),
        source_principal: Named::unknown_principal(),
        destination: Named::unknown(),
        service,
        mtls: false,
    };
    let path = TcpPath {
        listener: listener.clone(),
        route: route.clone(),
        client,
        upstream: endpoint,
        sni,
    };
    let log = shared.access_log.get();
    let record = TcpRecord::open(&shared.metrics.tcp_edges, edge, path, log, &policy);
    let mut spliced = splice(stream, upstream, shared.limits, Carried::Bytes).await;
    // The ClientHello came from the client too, replayed before the splice.
    spliced.from_a += hello.len() as u64;
    debug!(%client, %endpoint, ?spliced, "connection ended");
    shared.metrics.tcp(&listener, &route, spliced.end.label());
    record.closed(&spliced);
}

/// Reads until a whole ClientHello has arrived; returns the bytes read (to
/// replay) and the SNI. Errors are metric reasons.
async fn read_client_hello(
    stream: &mut TcpStream,
) -> Result<(Vec<u8>, Option<String>), &'static str> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut buf = Vec::with_capacity(2048);
    loop {
        let before = buf.len();
        let n = stream.read_buf(&mut buf).await.map_err(|_| "io")?;
        if n == 0 {
            return Err("truncated");
        }
        if buf.len() > MAX_CLIENT_HELLO_BYTES {
            return Err("too_large");
        }
        let mut fresh = &buf[before..];
        while !fresh.is_empty() {
            match acceptor.read_tls(&mut fresh) {
                Ok(0) | Err(_) => return Err("too_large"),
                Ok(_) => {}
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted
                    .client_hello()
                    .server_name()
                    .map(|s| s.to_ascii_lowercase());
                return Ok((buf, sni));
            }
            Ok(None) => continue,
            Err((e, _)) => return Err(hello_error_reason(&e)),
        }
    }
}
