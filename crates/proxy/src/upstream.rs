//! Connections to backends, HTTP/1.1 or HTTP/2 with prior knowledge (h2c)
//! as the backend port's `appProtocol` says.
//!
//! HTTP/1.1 uses a keep-alive pool per endpoint of connections strait
//! drives itself from the request's task ([`crate::h1`]; measured cheaper
//! per request than hyper's client, see docs/benchmarks.md), but for an
//! upgrade (WebSocket), which goes over a fresh hyper connection that
//! is never pooled. HTTP/2 multiplexes, so one connection per endpoint is kept,
//! dialled by address while the request's `:authority` stays the host the
//! client asked for (RFC 9113 §8.3.1): a backend must see the same host
//! over either protocol.

use crate::conn_limit::{acquire, Got, Overflow};
use crate::conn_limit::{ConnGate, ConnSlot};
use crate::ctx::is_grpc;
use crate::dial::{dial, CONNECT_TIMEOUT};
use crate::h1::{Conn, Io, Unanswered};
use crate::send_watch::{SendWatch, Watched};
use crate::tee::{BoxError, UpstreamBody};
use crate::wait::Wait;
use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use strait_identity::agent::Agent;
use strait_identity::MeshTls;
use strait_route::{Cluster, UpstreamProtocol, UpstreamTls};
use tracing::debug;

/// How long an idle upstream connection is kept for reuse.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How long an idle connection to a sidecar is reused: less than the
/// 30 s a sidecar's listener keeps an idle connection
/// ([`crate::limits::HEADER_READ_TIMEOUT`]), so a call is not sent down
/// one its peer is closing at that moment.
pub const MESH_IDLE_REUSE: Duration = Duration::from_secs(20);

/// How long an idle connection of `cluster` is kept for reuse.
fn reuse_time(cluster: &Cluster) -> Duration {
    match cluster.meshed {
        true => MESH_IDLE_REUSE,
        false => UPSTREAM_IDLE_TIMEOUT,
    }
}

/// Why a request got no response from its backend.
#[derive(Debug)]
pub enum SendError {
    /// No connection (or TLS session) could be made: nothing was sent.
    Connect(String),
    /// The cluster's connection limit held the request back: nothing was sent.
    Overflow(Overflow),
    /// The backend failed after the request may have reached it.
    Failed(BoxError),
}

impl From<Overflow> for SendError {
    fn from(o: Overflow) -> Self {
        SendError::Overflow(o)
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => f.write_str(e),
            SendError::Overflow(o) => write!(f, "{o}"),
            SendError::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// A failed send, with the request given back when none of it was sent,
/// so that it can go to another endpoint whatever its method.
pub struct Failed {
    pub error: SendError,
    pub unsent: Option<Request<UpstreamBody>>,
}

impl Failed {
    fn unsent(error: SendError, req: Request<UpstreamBody>) -> Self {
        Failed {
            error,
            unsent: Some(req),
        }
    }

    fn sent(error: impl Into<BoxError>) -> Self {
        Failed {
            error: SendError::Failed(error.into()),
            unsent: None,
        }
    }
}

/// A response body that hands its HTTP/1.1 connection back to the pool
/// once the body has been read to its end. Dropped early, it takes the
/// connection with it (hyper closes it): its state is unknown.
pub struct PooledBody {
    inner: Inner,
    back: Option<GiveBack>,
    /// Longest wait for the backend's next frame; `None`: no limit.
    idle: Option<Duration>,
    wait: Wait,
    /// The client's side, when the send timeout watches it.
    send: Option<Watched>,
    /// Telemetry's, told when the body ends.
    on_end: Option<Box<dyn OnEnd>>,
    sent: u64,
    grpc_status: Option<u8>,
}

/// Whose reading a body is: strait's own HTTP/1.1 connection's, or
/// hyper's (HTTP/2, and an upgrade's answer).
enum Inner {
    Own(crate::h1::H1Body),
    Hyper(Incoming),
}

impl Inner {
    fn is_end_stream(&self) -> bool {
        match self {
            Inner::Own(b) => b.is_end_stream(),
            Inner::Hyper(b) => b.is_end_stream(),
        }
    }
}

/// How a response body ended, for telemetry.
pub struct BodyEnd {
    /// Bytes of data handed on.
    pub sent: u64,
    /// `grpc-status` of its trailers.
    pub grpc_status: Option<u8>,
    /// It reached its end: it was not dropped or cut off before.
    pub complete: bool,
}

/// Told once, when a response body ends or is dropped before its end.
pub trait OnEnd: Send + Sync {
    fn ended(self: Box<Self>, end: BodyEnd);
}

/// A gRPC status code, as headers or trailers carry it.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<u8> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// The backend sent nothing for the idle limit in the middle of its body.
#[derive(Debug)]
pub struct BackendIdle(pub Duration);

impl std::fmt::Display for BackendIdle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the backend sent nothing for {:?}", self.0)
    }
}

impl std::error::Error for BackendIdle {}

/// Where a finished HTTP/1.1 connection goes back to, and the connection
/// limit whose waiters may want it.
struct GiveBack {
    pool: Arc<H1Pool>,
    key: PoolKey,
    gate: Option<Arc<ConnGate>>,
    reuse_for: Duration,
}

impl GiveBack {
    fn put(self, conn: Conn) {
        self.pool.put(self.key, conn, self.reuse_for);
        if let Some(gate) = self.gate {
            gate.returned();
        }
    }
}

impl PooledBody {
    fn new(inner: Inner, back: Option<GiveBack>) -> Self {
        PooledBody {
            inner,
            back,
            idle: None,
            wait: Wait::default(),
            send: None,
            on_end: None,
            sent: 0,
            grpc_status: None,
        }
    }

    /// Gives up on a backend that sends nothing for `idle` between frames.
    pub fn idle_limit(mut self, idle: Option<Duration>) -> Self {
        self.idle = idle;
        self
    }

    /// Counts in the client connection's send timeout.
    pub fn watched(mut self, watch: &Arc<SendWatch>) -> Self {
        self.send = Some(Watched::new(watch.clone()));
        self
    }

    /// Tells `on_end` how the body ends.
    pub fn on_end(&mut self, on_end: Box<dyn OnEnd>) {
        self.on_end = Some(on_end);
    }

    fn ended(&mut self, complete: bool) {
        if let Some(on_end) = self.on_end.take() {
            on_end.ended(BodyEnd {
                sent: self.sent,
                grpc_status: self.grpc_status,
                complete,
            });
        }
    }

    fn give_back(&mut self) {
        let Some(back) = self.back.take() else {
            return;
        };
        if let Inner::Own(body) = &mut self.inner {
            if let Some(conn) = body.reusable() {
                back.put(conn);
            }
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(send) = &mut this.send {
            send.asked();
        }
        let polled = match &mut this.inner {
            Inner::Own(b) => Pin::new(b).poll_frame(cx),
            Inner::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
        };
        let polled = match polled {
            Poll::Pending => {
                let Some(idle) = this.idle else {
                    return Poll::Pending;
                };
                // Dropped with the error, the connection goes too: its
                // state is unknown.
                return match this.wait.poll(cx, |now| now.checked_add(idle)) {
                    Poll::Ready(_) => {
                        tracing::warn!(?idle, "the backend stopped in the middle of its response body; the response is cut off");
                        Poll::Ready(Some(Err(Box::new(BackendIdle(idle)))))
                    }
                    Poll::Pending => Poll::Pending,
                };
            }
            Poll::Ready(polled) => polled,
        };
        this.wait.end();
        match &polled {
            Some(Ok(frame)) => match frame.data_ref() {
                Some(data) => this.sent += data.len() as u64,
                None => this.grpc_status = frame.trailers_ref().and_then(grpc_status),
            },
            Some(Err(_)) => this.ended(false),
            None => {}
        }
        if polled.is_none() || this.inner.is_end_stream() {
            this.give_back();
            this.ended(true);
        } else if let Some(send) = &mut this.send {
            send.handed();
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Own(b) => b.size_hint(),
            Inner::Hyper(b) => b.size_hint(),
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        self.ended(false);
    }
}

/// A connection and until when it may be reused.
type IdleConnection = (Instant, Conn);

/// Idle HTTP/1.1 connections per endpoint, most recent last.
#[derive(Default)]
pub struct H1Pool {
    /// Taken from and given back to on every request: foldhash, not
    /// SipHash (the keys are configured endpoints, nothing a client chooses).
    idle: Mutex<foldhash::HashMap<PoolKey, Vec<IdleConnection>>>,
}

/// How often idle connections are looked over ([`H1Pool::sweep`]).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Sweeps the pool every `period` for as long as it exists.
async fn sweep_every(pool: std::sync::Weak<H1Pool>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.sweep();
    }
}

/// Idle connections kept per endpoint.
pub const MAX_IDLE_PER_ENDPOINT: usize = 1024;

impl H1Pool {
    /// The most recent idle connection to `endpoint` the backend has not
    /// closed. Those found closed or too old are dropped on the way.
    fn take(&self, endpoint: PoolKey) -> Option<Conn> {
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        let list = idle.get_mut(&endpoint)?;
        while let Some((until, mut conn)) = list.pop() {
            if now < until && conn.is_usable() {
                return Some(conn);
            }
        }
        None
    }

    /// Closes one idle connection to an endpoint of `endpoints` other than
    /// `keep`'s, so that its slot under the cluster's limit comes free.
    fn evict_other(&self, endpoints: &[SocketAddr], keep: PoolKey) -> bool {
        let mut idle = lock(&self.idle);
        endpoints
            .iter()
            .filter(|e| **e != keep.endpoint)
            .any(|&endpoint| {
                idle.get_mut(&PoolKey {
                    endpoint,
                    tls: keep.tls,
                })
                .and_then(|list| list.pop())
                .is_some()
            })
    }

    /// Closes the idle connections the backend closed or that are past
    /// the idle timeout, for every endpoint: with no task per connection,
    /// those of an endpoint no request goes to any more (a pod gone)
    /// would otherwise hold their sockets, and their places under a
    /// cluster's connection limit, for ever.
    fn sweep(&self) {
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        idle.retain(|_, list| {
            list.retain_mut(|(until, conn)| now < *until && conn.is_usable());
            !list.is_empty()
        });
    }

    /// Keeps `conn` for reuse for `reuse_for`. No task watches an idle
    /// connection, so those past their time are closed here, oldest first.
    fn put(&self, endpoint: PoolKey, conn: Conn, reuse_for: Duration) {
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        let list = idle.entry(endpoint).or_default();
        let stale = |(until, _): &IdleConnection| *until <= now;
        if list.first().is_some_and(stale) {
            list.retain(|c| !stale(c));
        }
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push((now + reuse_for, conn));
        }
    }
}

pub struct Upstreams {
    /// The sidecar's certificate agent, when it has an identity.
    identity: Option<Arc<Agent>>,
    h1: Arc<H1Pool>,
    /// One HTTP/2 connection per endpoint. The lock is held only to clone
    /// or replace a handle, never across I/O.
    h2c: Mutex<foldhash::HashMap<PoolKey, http2::SendRequest<UpstreamBody>>>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new(None)
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
    pub fn new(identity: Option<Arc<Agent>>) -> Self {
        let h1 = Arc::new(H1Pool::default());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep_every(Arc::downgrade(&h1), SWEEP_EVERY));
        }
        Upstreams {
            identity,
            h1,
            h2c: Mutex::default(),
        }
    }

    /// Whether calls to `cluster` go over the mesh's mutual TLS.
    pub fn mesh_tls(&self, cluster: &Cluster) -> bool {
        cluster.meshed && self.identity.is_some()
    }

    /// Sends `req` (origin-form URI, `Host` header set) to `endpoint` of
    /// `cluster`, over TLS when the cluster has a BackendTLSPolicy, under
    /// the cluster's connection limit `gate` if it has one.
    // Not `async fn`, as `send_h1`: a `mut` argument would be kept twice in
    // the future, which is moved for every request.
    #[allow(clippy::manual_async_fn)]
    pub fn send<'s>(
        &'s self,
        cluster: &'s Cluster,
        gate: Option<&'s Arc<ConnGate>>,
        endpoint: SocketAddr,
        endpoint_authority: &'s Authority,
        mut req: Request<UpstreamBody>,
    ) -> impl Future<Output = Result<Response<PooledBody>, Failed>> + use<'s> {
        async move {
            let path_and_query = |req: &Request<UpstreamBody>| {
                req.uri()
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/"))
            };
            // Sidecar to sidecar, with a workload certificate: mutual TLS.
            let mesh = match &self.identity {
                Some(agent) if cluster.meshed => agent.tls(),
                _ => None,
            };
            let tls = match (&mesh, cluster.tls.as_deref()) {
                (Some(m), _) => Some(Tls::Mesh(m, cluster)),
                (None, Some(t)) => Some(Tls::Backend(t)),
                (None, None) => None,
            };
            let key = PoolKey {
                endpoint,
                tls: match tls {
                    Some(Tls::Mesh(m, _)) => crate::mtls::pool_id(m),
                    Some(Tls::Backend(t)) => t.id,
                    None => 0,
                },
            };
            // An HTTP/1.1 upgrade (WebSocket) has no HTTP/2 form to a backend:
            // it goes over HTTP/1.1 whatever the cluster's protocol. gRPC has
            // no HTTP/1.1 form: between sidecars it goes over HTTP/2, as the
            // callee's sidecar hands it to its app.
            let upgrade = req.headers().contains_key(http::header::UPGRADE);
            let protocol = match cluster.protocol {
                _ if upgrade => UpstreamProtocol::Http1,
                UpstreamProtocol::Http1 if cluster.meshed && is_grpc(req.headers()) => {
                    UpstreamProtocol::H2c
                }
                protocol => protocol,
            };
            match protocol {
                UpstreamProtocol::Http1 => {
                    // Only an HTTP/1.0 client may have sent none (the strict
                    // phase refuses the rest): the backend's own authority.
                    if !req.headers().contains_key(HOST) {
                        if let Ok(v) = http::HeaderValue::from_str(endpoint_authority.as_str()) {
                            req.headers_mut().insert(HOST, v);
                        }
                    }
                    *req.version_mut() = Version::HTTP_11;
                    match upgrade {
                        // hyper writes the target from the Uri: origin form.
                        true => {
                            *req.uri_mut() = Uri::from(path_and_query(&req));
                            Box::pin(self.send_upgrade(cluster, gate, key, tls, req)).await
                        }
                        // Ours writes only the path and query.
                        false => self.send_h1(cluster, gate, key, tls, req).await,
                    }
                }
                UpstreamProtocol::H2c => {
                    let authority = req
                        .headers_mut()
                        .remove(HOST)
                        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
                        .unwrap_or_else(|| endpoint_authority.clone());
                    *req.uri_mut() = absolute_uri(authority, path_and_query(&req));
                    *req.version_mut() = Version::HTTP_2;
                    let mut sender = match self.h2_sender(gate, key, tls).await {
                        Ok(sender) => sender,
                        Err(e) => return Err(Failed::unsent(e, req)),
                    };
                    if let Err(e) = sender.ready().await {
                        let e = format!("HTTP/2 connection to {endpoint} closed before use: {e}");
                        return Err(Failed::unsent(SendError::Connect(e), req));
                    }
                    let response = sender.send_request(req).await.map_err(Failed::sent)?;
                    Ok(response.map(|inner| PooledBody::new(Inner::Hyper(inner), None)))
                }
            }
        }
    }

    /// One request on a pooled connection. A request a reused connection
    /// dropped unanswered, as a backend drops an idle connection, goes
    /// once more on a fresh connection when that is safe
    /// ([`crate::h1::Unanswered`]), so an idle close does not fail it.
    #[allow(clippy::manual_async_fn)]
    fn send_h1<'s>(
        &'s self,
        cluster: &'s Cluster,
        gate: Option<&'s Arc<ConnGate>>,
        endpoint: PoolKey,
        tls: Option<Tls<'s>>,
        mut req: Request<UpstreamBody>,
    ) -> impl Future<Output = Result<Response<PooledBody>, Failed>> + use<'s> {
        async move {
            let mut fresh_only = false;
            loop {
                let (conn, was_reused) = match self
                    .h1_connection(cluster, gate, endpoint, tls, !fresh_only)
                    .await
                {
                    Ok(got) => got,
                    Err(e) => return Err(Failed::unsent(e, req)),
                };
                match crate::h1::send(conn, req, was_reused).await {
                    Ok(response) => {
                        let back = GiveBack {
                            pool: self.h1.clone(),
                            key: endpoint,
                            gate: gate.cloned(),
                            reuse_for: reuse_time(cluster),
                        };
                        let mut response =
                            response.map(|body| PooledBody::new(Inner::Own(body), Some(back)));
                        if response.body().is_end_stream() {
                            response.body_mut().give_back();
                        }
                        return Ok(response);
                    }
                    // A fresh connection that took nothing: as good as
                    // refused, so another endpoint may be tried.
                    Err(Unanswered {
                        request: Some(unsent),
                        nothing_sent: true,
                        error,
                    }) if !was_reused => {
                        let e = SendError::Connect(format!("{}: {error}", endpoint.endpoint));
                        return Err(Failed::unsent(e, unsent));
                    }
                    Err(Unanswered {
                        request: Some(unsent),
                        ..
                    }) if !fresh_only => {
                        req = unsent;
                        fresh_only = true;
                    }
                    Err(unanswered) => return Err(Failed::sent(unanswered.error)),
                }
            }
        }
    }

    /// An upgrade request (WebSocket) on a fresh hyper connection of its
    /// own, which hands the switched connection over; never pooled.
    async fn send_upgrade(
        &self,
        cluster: &Cluster,
        gate: Option<&Arc<ConnGate>>,
        key: PoolKey,
        tls: Option<Tls<'_>>,
        req: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, Failed> {
        let slot = match gate {
            None => None,
            Some(gate) => {
                let got = acquire(
                    gate,
                    || None::<std::convert::Infallible>,
                    || self.h1.evict_other(&cluster.endpoints, key),
                );
                match got.await {
                    Ok(Got::Slot(slot)) => Some(slot),
                    Ok(Got::Open(never)) => match never {},
                    Err(o) => return Err(Failed::unsent(o.into(), req)),
                }
            }
        };
        let mut sender = match connect_upgrade(key.endpoint, tls, slot).await {
            Ok(sender) => sender,
            Err(e) => return Err(Failed::unsent(e, req)),
        };
        if sender.ready().await.is_err() {
            let e = format!("connection to {} closed before use", key.endpoint);
            return Err(Failed::unsent(SendError::Connect(e), req));
        }
        match sender.try_send_request(req).await {
            Ok(response) => Ok(response.map(|inner| PooledBody::new(Inner::Hyper(inner), None))),
            Err(mut e) => match e.take_message() {
                Some(unsent) => {
                    let e = SendError::Connect(format!("{}: {}", key.endpoint, e.error()));
                    Err(Failed::unsent(e, unsent))
                }
                None => Err(Failed::sent(e.into_error())),
            },
        }
    }

    /// An idle connection (when `idle` allows; the flag says it was one)
    /// or a new one, under the cluster's connection limit.
    async fn h1_connection(
        &self,
        cluster: &Cluster,
        gate: Option<&Arc<ConnGate>>,
        key: PoolKey,
        tls: Option<Tls<'_>>,
        idle: bool,
    ) -> Result<(Conn, bool), SendError> {
        if idle {
            if let Some(sender) = self.h1.take(key) {
                return Ok((sender, true));
            }
        }
        let slot = match gate {
            None => None,
            Some(gate) => match acquire(
                gate,
                || self.h1.take(key),
                || self.h1.evict_other(&cluster.endpoints, key),
            )
            .await?
            {
                Got::Open(sender) => return Ok((sender, true)),
                Got::Slot(slot) => Some(slot),
            },
        };
        // Boxed: a new connection's future (dial, TLS) is large and rare;
        // inline, every request's future would carry and move its bytes.
        let connect = Box::pin(connect_h1(key.endpoint, tls, slot));
        Ok((connect.await?, false))
    }

    fn cached_h2(&self, key: PoolKey) -> Option<http2::SendRequest<UpstreamBody>> {
        lock(&self.h2c)
            .get(&key)
            .filter(|s| !s.is_closed())
            .cloned()
    }

    async fn h2_sender(
        &self,
        gate: Option<&Arc<ConnGate>>,
        key: PoolKey,
        tls: Option<Tls<'_>>,
    ) -> Result<http2::SendRequest<UpstreamBody>, SendError> {
        if let Some(sender) = self.cached_h2(key) {
            return Ok(sender);
        }
        let slot = match gate {
            None => None,
            Some(gate) => match acquire(gate, || self.cached_h2(key), || false).await? {
                Got::Open(sender) => return Ok(sender),
                Got::Slot(slot) => Some(slot),
            },
        };
        // Boxed, as a new HTTP/1.1 connection is.
        let sender = Box::pin(connect_h2(key.endpoint, tls, slot)).await?;
        {
            let mut map = lock(&self.h2c);
            // A connection made with an older certificate of ours goes
            // once its streams end.
            if crate::mtls::is_mesh_id(key.tls) {
                map.retain(|k, _| {
                    k.endpoint != key.endpoint
                        || !crate::mtls::is_mesh_id(k.tls)
                        || k.tls == key.tls
                });
            }
            map.insert(key, sender.clone());
        }
        Ok(sender)
    }
}

/// A pool's lock. A panic while it was held (a bug) poisons it; the map
/// of handles inside stays sound, so it is used on, and the bug reported.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| {
        tracing::error!("an upstream pool's lock was poisoned by a panic; using it on");
        poisoned.into_inner()
    })
}

/// Where a pooled connection goes: an endpoint, in plain text (`tls` 0) or
/// with the TLS settings whose [`UpstreamTls::id`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub endpoint: SocketAddr,
    pub tls: u64,
}

/// TLS to an endpoint: a BackendTLSPolicy's, or mutual TLS to a sidecar.
#[derive(Clone, Copy)]
pub enum Tls<'a> {
    Backend(&'a UpstreamTls),
    Mesh(&'a MeshTls, &'a Cluster),
}

/// The TLS handshake, within [`CONNECT_TIMEOUT`]; `h2` says which ALPN
/// a sidecar is asked for.
async fn tls_connect(
    endpoint: SocketAddr,
    tls: Tls<'_>,
    stream: tokio::net::TcpStream,
    h2: bool,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, SendError> {
    let tls = match tls {
        Tls::Mesh(mesh, cluster) => {
            let carries = if h2 {
                crate::mtls::Carries::H2
            } else {
                crate::mtls::Carries::Http1
            };
            return crate::mtls::connect(endpoint, mesh, cluster, stream, carries)
                .await
                .map_err(|e| SendError::Connect(e.to_string()));
        }
        Tls::Backend(tls) => tls,
    };
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    let handshake = connector.connect(tls.server_name.clone(), stream);
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(SendError::Connect(format!(
            "TLS to {endpoint} ({} as {}): {e}",
            tls.policy,
            tls.server_name.to_str()
        ))),
        Err(_) => Err(SendError::Connect(format!(
            "TLS handshake with {endpoint} timed out"
        ))),
    }
}

/// A new HTTP/2 connection, as [`connect_h1`].
async fn connect_h2(
    endpoint: SocketAddr,
    tls: Option<Tls<'_>>,
    slot: Option<ConnSlot>,
) -> Result<http2::SendRequest<UpstreamBody>, SendError> {
    let stream = dial(endpoint).await.map_err(SendError::Connect)?;
    match tls {
        None => handshake_h2(endpoint, stream, slot).await,
        Some(tls) => {
            let stream = tls_connect(endpoint, tls, stream, true).await?;
            handshake_h2(endpoint, stream, slot).await
        }
    }
}

/// A new connection; `slot`, its place under the cluster's connection
/// limit, is held until it closes.
async fn connect_h1(
    endpoint: SocketAddr,
    tls: Option<Tls<'_>>,
    slot: Option<ConnSlot>,
) -> Result<Conn, SendError> {
    let stream = dial(endpoint).await.map_err(SendError::Connect)?;
    let io = match tls {
        None => Io::Tcp(stream),
        Some(tls) => Io::Tls(Box::new(tls_connect(endpoint, tls, stream, false).await?)),
    };
    Ok(Conn::new(io, slot))
}

/// A new hyper connection for an upgrade, as [`connect_h1`].
async fn connect_upgrade(
    endpoint: SocketAddr,
    tls: Option<Tls<'_>>,
    slot: Option<ConnSlot>,
) -> Result<http1::SendRequest<UpstreamBody>, SendError> {
    let stream = dial(endpoint).await.map_err(SendError::Connect)?;
    match tls {
        None => handshake_h1(endpoint, stream, slot).await,
        Some(tls) => {
            let stream = tls_connect(endpoint, tls, stream, false).await?;
            handshake_h1(endpoint, stream, slot).await
        }
    }
}

async fn handshake_h1<I>(
    endpoint: SocketAddr,
    io: I,
    slot: Option<ConnSlot>,
) -> Result<http1::SendRequest<UpstreamBody>, SendError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| SendError::Connect(format!("{endpoint}: {e}")))?;
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(e) = conn.with_upgrades().await {
            debug!(%endpoint, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

async fn handshake_h2<I>(
    endpoint: SocketAddr,
    io: I,
    slot: Option<ConnSlot>,
) -> Result<http2::SendRequest<UpstreamBody>, SendError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| SendError::Connect(format!("HTTP/2 to {endpoint}: {e}")))?;
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(e) = conn.await {
            debug!(%endpoint, error = %e, "HTTP/2 upstream connection ended");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An open connection to a listener of its own, and the listener's
    /// side of it.
    async fn pair() -> (Conn, tokio::net::TcpStream, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (Conn::new(Io::Tcp(client), None), server, addr)
    }

    fn key(endpoint: SocketAddr) -> PoolKey {
        PoolKey { endpoint, tls: 0 }
    }

    fn idle_count(pool: &H1Pool) -> usize {
        lock(&pool.idle).values().map(Vec::len).sum()
    }

    #[tokio::test]
    async fn the_sweep_closes_what_backends_closed_and_keeps_the_rest() {
        let pool = H1Pool::default();
        let (open, _kept, a) = pair().await;
        let (closed, gone, b) = pair().await;
        pool.put(key(a), open, UPSTREAM_IDLE_TIMEOUT);
        pool.put(key(b), closed, UPSTREAM_IDLE_TIMEOUT);
        drop(gone);
        // The close reaches the reactor on its next turn.
        tokio::time::sleep(Duration::from_millis(50)).await;
        pool.sweep();
        assert_eq!(idle_count(&pool), 1);
        assert!(lock(&pool.idle).contains_key(&key(a)));
        assert!(pool.take(key(b)).is_none());
        assert!(pool.take(key(a)).is_some(), "the open one is still usable");
    }

    #[tokio::test]
    async fn a_connection_with_unread_bytes_is_not_taken() {
        let pool = H1Pool::default();
        let (conn, mut server, a) = pair().await;
        pool.put(key(a), conn, UPSTREAM_IDLE_TIMEOUT);
        tokio::io::AsyncWriteExt::write_all(&mut server, b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.take(key(a)).is_none(), "bytes no request asked for");
    }

    #[tokio::test]
    async fn a_connection_idle_longer_than_its_reuse_time_is_not_taken() {
        let pool = H1Pool::default();
        let (conn, _server, a) = pair().await;
        pool.put(key(a), conn, Duration::from_millis(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(pool.take(key(a)).is_none());
        let (conn, _server, b) = pair().await;
        pool.put(key(b), conn, MESH_IDLE_REUSE);
        assert!(pool.take(key(b)).is_some());
        // The sweep closes it too, not only a take: its slot comes free.
        let (conn, _server, c) = pair().await;
        pool.put(key(c), conn, Duration::from_millis(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
        pool.sweep();
        assert!(!lock(&pool.idle).contains_key(&key(c)));
    }
}
