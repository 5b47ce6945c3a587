//! Listening sockets, one per Gateway listener port, and the connections
//! they accept. Ports open and close as the configuration changes; a
//! connection lives on until it ends or the gateway drains.

use crate::beside::{Beside, Either};
use crate::conn_timer::ConnTimer;
use crate::ctx::ConnInfo;
use crate::request::handle;
use crate::tls::PortTls;
use crate::tls::HANDSHAKE_TIMEOUT;
use crate::Shared;
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use strait_route::ListenKey;
use tokio::net::TcpSocket;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

/// Most request headers accepted on HTTP/1.1.
pub const MAX_HEADERS: usize = 100;
/// Largest HTTP/2 header list accepted, in bytes.
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// HTTP/2 streams a client may have open at once on one connection; more
/// are refused (`REFUSED_STREAM`), and each refusal counts toward
/// `MAX_LOCAL_ERROR_RESETS`.
pub const MAX_CONCURRENT_STREAMS: u32 = 200;
/// HTTP/2 streams strait may refuse or reset for a client's errors before
/// it ends the connection (GOAWAY `ENHANCE_YOUR_CALM`).
pub const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// What a port serves.
#[derive(Debug)]
pub enum PortMode {
    Http,
    /// HTTP over TLS, terminated here with these configurations.
    Https(Arc<PortTls>),
    /// TLS forwarded undecrypted by SNI (TLSRoute).
    TlsPassthrough,
    Tcp,
}

/// A port's mode, swapped in place on reload so that a certificate change
/// reaches new connections without closing old ones.
pub type ModeSlot = Arc<ArcSwap<PortMode>>;

struct Running {
    stop: watch::Sender<bool>,
    mode: ModeSlot,
    /// The socket's own address: the port the system chose for port 0.
    addr: SocketAddr,
    role: crate::ctx::Role,
}

/// What an accept loop needs besides its socket.
struct Port {
    key: ListenKey,
    role: crate::ctx::Role,
    mode: ModeSlot,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limit: Arc<Semaphore>,
    drain: watch::Receiver<bool>,
}

pub struct ListenerSet {
    bind: IpAddr,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    running: HashMap<ListenKey, Running>,
    connections: Arc<Semaphore>,
    /// Set to true when the gateway drains: connections finish and close.
    drain: watch::Receiver<bool>,
}

impl ListenerSet {
    pub fn new(bind: IpAddr, shared: Arc<Shared>, drain: watch::Receiver<bool>) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .header_read_timeout(Some(shared.http_limits.header_read).filter(|d| !d.is_zero()))
            .max_headers(MAX_HEADERS);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_LIST_BYTES)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
            .enable_connect_protocol();
        // 0: no limit, as every limit flag; never more than a semaphore counts.
        let connections = match shared.http_limits.connections {
            0 => Semaphore::MAX_PERMITS,
            n => n.min(Semaphore::MAX_PERMITS),
        };
        ListenerSet {
            bind,
            shared,
            builder: Arc::new(builder),
            running: HashMap::new(),
            connections: Arc::new(Semaphore::new(connections)),
            drain,
        }
    }

    /// Every open socket's role and address, in address order.
    pub fn addresses(&self) -> Vec<(crate::ctx::Role, SocketAddr)> {
        let mut out: Vec<_> = self.running.values().map(|r| (r.role, r.addr)).collect();
        out.sort_by_key(|(_, addr)| *addr);
        out
    }

    /// Opens the ports in `wanted` that are not open, updates the mode of
    /// those that are, and closes the others. Returns the ports that could
    /// not be bound.
    pub fn reconcile(
        &mut self,
        wanted: &BTreeMap<ListenKey, Arc<PortMode>>,
    ) -> Vec<(SocketAddr, std::io::Error)> {
        self.running.retain(|key, running| {
            let keep = wanted.contains_key(key);
            if !keep {
                info!(addr = %running.addr, "closing listener");
                let _ = running.stop.send(true);
            }
            keep
        });
        let mut failed = Vec::new();
        for (&key, mode) in wanted {
            if let Some(running) = self.running.get(&key) {
                running.mode.store(mode.clone());
                continue;
            }
            let addr = SocketAddr::new(key.ip.unwrap_or(self.bind), key.port);
            match bind(addr) {
                Ok(listener) => {
                    info!(%addr, "listening");
                    self.start(listener, key, crate::ctx::Role::Gateway, mode.clone());
                }
                Err(e) => {
                    warn!(%addr, error = %e, "cannot listen");
                    failed.push((addr, e));
                }
            }
        }
        failed
    }

    /// Opens a sidecar listener (plain HTTP) at `addr`, kept until drain;
    /// returns the address bound (port 0 asks the system for one).
    pub fn open_fixed(
        &mut self,
        addr: SocketAddr,
        role: crate::ctx::Role,
    ) -> std::io::Result<SocketAddr> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        info!(%addr, role = role.name(), "listening");
        let key = ListenKey {
            ip: Some(addr.ip()),
            port: addr.port(),
        };
        self.start(listener, key, role, Arc::new(PortMode::Http));
        Ok(addr)
    }

    /// Accepts on a bound socket until it is closed or the gateway drains.
    fn start(
        &mut self,
        listener: tokio::net::TcpListener,
        key: ListenKey,
        role: crate::ctx::Role,
        mode: Arc<PortMode>,
    ) {
        let (stop, stopped) = watch::channel(false);
        let slot: ModeSlot = Arc::new(ArcSwap::new(mode));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(key.ip.unwrap_or(self.bind), key.port));
        self.running.insert(
            key,
            Running {
                stop,
                mode: slot.clone(),
                addr,
                role,
            },
        );
        let port = Port {
            key,
            role,
            mode: slot,
            shared: self.shared.clone(),
            builder: self.builder.clone(),
            limit: self.connections.clone(),
            drain: self.drain.clone(),
        };
        tokio::spawn(accept_loop(listener, port, stopped));
    }

    /// Stops accepting on every port.
    pub fn close_all(&mut self) {
        for (_, running) in self.running.drain() {
            let _ = running.stop.send(true);
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    port: Port,
    mut stopped: watch::Receiver<bool>,
) {
    let port = Arc::new(port);
    loop {
        let permit = tokio::select! {
            p = port.limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = until_true(&mut stopped) => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = until_true(&mut stopped) => return,
        };
        let (stream, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                warn!(port = port.key.port, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let port = port.clone();
        tokio::spawn(async move {
            match &*port.mode.load_full() {
                PortMode::Http if port.role == crate::ctx::Role::Outbound => {
                    outbound(&port, client, stream).await
                }
                PortMode::Http if port.role == crate::ctx::Role::Inbound => {
                    inbound(&port, client, stream).await
                }
                PortMode::Http => {
                    let info = conn_info(&port, client, "http", None, None);
                    serve_connection(TokioIo::new(stream), info, &port).await;
                }
                PortMode::Https(port_tls) => {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(port_tls, stream)).await;
                    match handshake {
                        Ok(Ok((tls, sni))) => {
                            let mut info = conn_info(&port, client, "https", sni, None);
                            let verified = tls.get_ref().1.peer_certificates();
                            let described = strait_identity::forwarded_cert(verified)
                                .and_then(|d| http::HeaderValue::from_bytes(d.as_bytes()).ok());
                            if let (Some(info), Some(d)) = (Arc::get_mut(&mut info), described) {
                                info.client_cert = Some(d);
                            }
                            serve_connection(TokioIo::new(tls), info, &port).await;
                        }
                        Ok(Err(e)) => {
                            let reason = crate::tls::handshake_error_reason(&e);
                            debug!(%client, error = %e, reason, "TLS handshake failed");
                            port.shared.metrics.tls_error(reason);
                        }
                        Err(_) => {
                            debug!(%client, "TLS handshake timed out");
                            port.shared.metrics.tls_error("timeout");
                        }
                    }
                }
                PortMode::TlsPassthrough => {
                    crate::l4::serve(port.shared.clone(), port.key, client, stream, true).await
                }
                PortMode::Tcp => {
                    crate::l4::serve(port.shared.clone(), port.key, client, stream, false).await
                }
            }
            drop(permit);
        });
    }
}

/// Reads the ClientHello, picks the listener's configuration by SNI, and
/// completes the handshake with it.
async fn handshake(
    port_tls: &PortTls,
    stream: tokio::net::TcpStream,
) -> std::io::Result<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    Option<String>,
)> {
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let sni = start
        .client_hello()
        .server_name()
        .map(|s| s.to_ascii_lowercase());
    let config = port_tls.config_for(sni.as_deref()).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no listener for this server name",
        )
    })?;
    let tls = start.into_stream(config).await?;
    Ok((tls, sni))
}

/// A connection to a sidecar's outbound listener: explicit (made to the
/// listener itself) or captured, in which case its protocol decides
/// between the HTTP path and opaque TCP.
async fn outbound(port: &Port, client: SocketAddr, stream: tokio::net::TcpStream) {
    let original = crate::capture::original_dst(&stream);
    if let Some(dst) = original {
        let opaque = crate::capture::OPAQUE_PORTS.contains(&dst.port())
            || port.shared.live.load().snapshot.mesh.opaque(dst)
            || crate::capture::sniff(&stream).await == crate::capture::Sniffed::Opaque;
        if opaque {
            crate::mesh::tcp(port.shared.clone(), client, stream, dst).await;
            return;
        }
    }
    let info = conn_info(port, client, "http", None, original);
    serve_connection(TokioIo::new(stream), info, port).await;
}

/// A connection to a sidecar's inbound listener. A captured one for a
/// port of the pod other than the app's HTTP port, for a server-first
/// port, or that does not speak HTTP, is carried as TCP to the port it
/// was for on loopback; the rest is served as HTTP to the app.
async fn inbound(port: &Port, client: SocketAddr, stream: tokio::net::TcpStream) {
    let original = crate::capture::original_dst(&stream);
    let Some(sidecar) = port.shared.sidecar.as_ref() else {
        return;
    };
    // With a workload certificate: meshed TLS is accepted here; the rest
    // is accepted or refused by the workload's mode.
    if let Some(mesh) = sidecar.options.identity.as_ref().and_then(|a| a.tls()) {
        let arrival = crate::mtls::classify(&stream, crate::capture::DETECT_TIMEOUT).await;
        let strict = port
            .shared
            .live
            .load()
            .snapshot
            .security
            .peer_mode(&sidecar.options.namespace, &sidecar.options.workload)
            .strict();
        let metrics = &port.shared.metrics;
        match arrival {
            crate::mtls::Arrival::Mesh => {
                let accept = tokio_rustls::TlsAcceptor::from(mesh.server.clone()).accept(stream);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                    Ok(Ok(tls)) => {
                        let peer = strait_identity::peer_id(tls.get_ref().1.peer_certificates())
                            .map(|id| Arc::<str>::from(id.to_string()));
                        metrics.inbound(arrival.label(), "accepted", peer.as_ref());
                        if tls.get_ref().1.alpn_protocol() == Some(strait_identity::ALPN_TCP) {
                            let target = original.map_or(sidecar.options.app_port, |d| d.port());
                            let shared = port.shared.clone();
                            crate::mesh::inbound_tcp(shared, client, tls, target, peer.as_deref())
                                .await;
                            return;
                        }
                        let mut info = conn_info(port, client, "https", None, original);
                        if let Some(info) = Arc::get_mut(&mut info) {
                            info.peer = peer;
                        }
                        serve_connection(TokioIo::new(tls), info, port).await;
                    }
                    Ok(Err(e)) => {
                        metrics.inbound(arrival.label(), "refused", None);
                        let reason = crate::tls::handshake_error_reason(&e);
                        debug!(%client, error = %e, reason, "mTLS handshake refused");
                        metrics.tls_error(reason);
                    }
                    Err(_) => {
                        metrics.inbound(arrival.label(), "refused", None);
                        metrics.tls_error("timeout");
                    }
                }
                return;
            }
            _ if strict => {
                debug!(%client, arrival = arrival.label(), "refused: the workload's mode is STRICT");
                metrics.inbound(arrival.label(), "refused", None);
                return;
            }
            crate::mtls::Arrival::OtherTls => {
                metrics.inbound(arrival.label(), "accepted", None);
                let target = original.map_or(sidecar.options.app_port, |d| d.port());
                crate::mesh::inbound_tcp(port.shared.clone(), client, stream, target, None).await;
                return;
            }
            crate::mtls::Arrival::Plaintext => metrics.inbound(arrival.label(), "accepted", None),
        }
    }
    if let Some(dst) = original {
        let opaque = dst.port() != sidecar.options.app_port
            || crate::capture::OPAQUE_PORTS.contains(&dst.port())
            || crate::capture::sniff(&stream).await == crate::capture::Sniffed::Opaque;
        if opaque {
            crate::mesh::inbound_tcp(port.shared.clone(), client, stream, dst.port(), None).await;
            return;
        }
    }
    let info = conn_info(port, client, "http", None, None);
    serve_connection(TokioIo::new(stream), info, port).await;
}

fn conn_info(
    port: &Port,
    client: SocketAddr,
    scheme: &'static str,
    sni: Option<String>,
    original_dst: Option<SocketAddr>,
) -> Arc<ConnInfo> {
    Arc::new(ConnInfo {
        listen: port.key,
        client,
        client_ip: crate::headers::client_value(client.ip()),
        scheme,
        sni,
        role: port.role,
        original_dst,
        peer: None,
        client_cert: None,
        tunnel: Default::default(),
        send: Default::default(),
    })
}

async fn serve_connection<I>(io: I, info: Arc<ConnInfo>, port: &Port)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let shared = &port.shared;
    let mut drain = port.drain.clone();
    shared.metrics.connections.inc();
    let svc_shared = shared.clone();
    let svc_info = info.clone();
    let service = service_fn(move |req| handle(svc_shared.clone(), svc_info.clone(), req));
    let io = crate::linger::Linger::new(io, info.clone());
    // Each connection's own clock for its header-read deadline.
    let timer = ConnTimer::default();
    let mut builder = (*port.builder).clone();
    builder.http1().timer(timer.clone());
    let conn = builder.serve_connection_with_upgrades(io, service);
    let served = async {
        tokio::pin!(conn);
        let drained = std::pin::pin!(until_true(&mut drain));
        match Beside::new(conn.as_mut(), drained).await {
            Either::Main(r) => r,
            Either::Side(()) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    let served = std::pin::pin!(served);
    let send_limit = shared.http_limits.send;
    let header_limit = shared.http_limits.header_read;
    // Ends only when the send timeout passes: hyper itself ends the
    // connection when a deadline it set is woken.
    let watchdogs = std::pin::pin!(async {
        let deadlines = async {
            match header_limit.is_zero() {
                true => std::future::pending().await,
                false => timer.watch(header_limit).await,
            }
        };
        let stalled = async {
            match send_limit.is_zero() {
                true => std::future::pending().await,
                false => info.send.stalled(send_limit).await,
            }
        };
        // Polled only when one of their timers ticks.
        tokio::select! {
            () = deadlines => {}
            () = stalled => {}
        }
    });
    let result = match Beside::new(served, watchdogs).await {
        Either::Main(r) => r.map_err(|e| (crate::conn_end::reason(&*e), e)),
        Either::Side(()) => Err((
            "send_timeout",
            "the client left a response unread for the send timeout".into(),
        )),
    };
    if let Err((reason, e)) = result {
        debug!(client = %info.client, error = %e, reason, "connection ended with an error");
        shared.metrics.connection_error(reason);
    }
    shared.metrics.connections.dec();
}

/// Resolves once the flag is set (or its sender is gone).
async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}
