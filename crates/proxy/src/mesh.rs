//! A sidecar's byte tunnels: `CONNECT host:port` on the outbound listener,
//! captured connections that are not HTTP, and inbound streams for the
//! workload's other ports — each to one endpoint of the Service (over
//! mutual TLS to a sidecar), or passed through to where it was going.

use crate::answer::{ProxyError, ResponseBody};
use crate::ctx::unmatched;
use crate::metrics_tcp::{TcpEdge, TcpPath, TcpRecord};
use crate::peer::Named;
use crate::sidecar::Sidecar;
use crate::splice::{splice, Carried};
use crate::Shared;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use strait_route::BackendTarget;
use tracing::debug;

/// Where a byte stream to `host:port` goes: one endpoint of the Service
/// (its default rule's weights) with the metric labels, or, for a
/// destination that is no Service, `fallback` (the original destination
/// of a captured connection) or what DNS says — unless passthrough is off.
async fn tcp_target(
    shared: &Shared,
    sidecar: &Sidecar,
    host: &str,
    port: u16,
    fallback: Option<SocketAddr>,
) -> Result<TcpTarget, ProxyError> {
    let live = shared.live.load_full();
    if let Some(m) = live
        .snapshot
        .mesh
        .default_rule(host, port, &sidecar.options.namespace)
    {
        let Some(BackendTarget::Cluster(c)) = m.rule.pick(fastrand::u64(..)).map(|b| &b.target)
        else {
            return Err(ProxyError::NoEndpoints);
        };
        let state = live.state(c);
        let slot = crate::conn_limit::tcp_slot(state.gate()).map_err(|o| {
            shared
                .metrics
                .overflow(&c.name, &state.service, o.limit().0);
            crate::answer::ProxyError::overflow(o, c)
        })?;
        let service = state.service.clone();
        let addr = live.next_endpoint(c).ok_or(ProxyError::NoEndpoints)?;
        return Ok(TcpTarget {
            addr,
            listener: m.listener.label.clone(),
            route: m.rule.route.clone(),
            meshed: c.meshed.then(|| c.clone()),
            service,
            _slot: slot,
        });
    }
    drop(live);
    let addr = match fallback {
        Some(dst) if !sidecar.options.refuse_unknown => dst,
        _ => sidecar.resolve_unknown(host, port).await?,
    };
    Ok(TcpTarget {
        addr,
        listener: Arc::from("passthrough"),
        route: Arc::from("passthrough"),
        meshed: None,
        service: Named::unknown(),
        _slot: None,
    })
}

/// Any byte stream, plain or TLS.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Connects a byte stream to its target: to a sidecar over mutual TLS
/// (ALPN `strait-tcp`, the server's identity checked) when the Service is
/// meshed and this proxy has a certificate, else plain TCP.
async fn open(shared: &Shared, t: &TcpTarget) -> Result<Box<dyn Io>, String> {
    let tcp = crate::dial::dial(t.addr).await?;
    let mesh = shared
        .sidecar
        .as_ref()
        .and_then(|s| s.options.identity.as_ref())
        .and_then(|a| a.tls());
    match (&t.meshed, mesh) {
        (Some(cluster), Some(mesh)) => {
            crate::mtls::connect(t.addr, &mesh, cluster, tcp, crate::mtls::Carries::Tcp)
                .await
                .map(|tls| Box::new(tls) as Box<dyn Io>)
                .map_err(|e| e.to_string())
        }
        _ => Ok(Box::new(tcp)),
    }
}

/// Where a byte stream goes, its metric labels, and its place under the
/// Service's connection limit, held while it lasts.
struct TcpTarget {
    addr: SocketAddr,
    listener: Arc<str>,
    route: Arc<str>,
    /// The Service's cluster when its endpoints are sidecars.
    meshed: Option<Arc<strait_route::Cluster>>,
    /// The Service, as metrics label it (unknown when passed through).
    service: Arc<Named>,
    _slot: Option<crate::conn_limit::ConnSlot>,
}

/// A captured connection that is not HTTP (or is on an opaque port):
/// carried as bytes to the Service's endpoint, or to where it was going.
pub async fn tcp(
    shared: Arc<Shared>,
    client: SocketAddr,
    stream: tokio::net::TcpStream,
    dst: SocketAddr,
) {
    let Some(sidecar) = shared.sidecar.as_ref() else {
        return;
    };
    let host = dst.ip().to_string();
    let t = match tcp_target(&shared, sidecar, &host, dst.port(), Some(dst)).await {
        Ok(t) => t,
        Err(e) => {
            debug!(%client, %dst, reason = e.reason(), "opaque connection refused");
            shared
                .metrics
                .tcp(&Arc::from("outbound"), &unmatched(), "no_route");
            return;
        }
    };
    let upstream = match open(&shared, &t).await {
        Ok(s) => s,
        Err(e) => {
            debug!(%client, %dst, error = %e, "opaque connection failed");
            shared.metrics.tcp(&t.listener, &t.route, "connect_failed");
            return;
        }
    };
    let record = outbound_record(&shared, sidecar, &t, client);
    let spliced = splice(stream, upstream, shared.limits, Carried::Bytes).await;
    debug!(%client, %dst, target = %t.addr, ?spliced, "opaque connection ended");
    shared
        .metrics
        .tcp(&t.listener, &t.route, spliced.end.label());
    record.closed(&spliced);
}

/// An inbound connection that is not HTTP for the app (captured for
/// another port, not HTTP, or a sidecar's `strait-tcp` over mutual TLS
/// from `peer`): carried as bytes to `port` on loopback, where the app
/// listens — if authorization allows.
pub async fn inbound_tcp<S: Io>(
    shared: Arc<Shared>,
    client: SocketAddr,
    stream: S,
    port: u16,
    peer: Option<&str>,
) {
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let Some(sidecar) = shared.sidecar.as_ref() else {
        return;
    };
    let listener = sidecar.inbound_routes.label.clone();
    let route = Arc::<str>::from(format!("{listener}:{port}"));
    if !crate::authz::check_connection(&shared, sidecar, peer, port) {
        shared.metrics.tcp(&listener, &route, "denied");
        return;
    }
    // A SecurityPolicy checks requests: bytes it cannot read as one (a
    // client may make HTTP look opaque) would pass it unchecked.
    if let Some(auth) = &shared.live.load().authn {
        debug!(%client, policy = &*auth.policy, "opaque connection refused: the workload's SecurityPolicy reads HTTP only");
        shared.metrics.tcp(&listener, &route, "denied");
        return;
    }
    let Ok(upstream) = crate::dial::dial(target).await else {
        shared.metrics.tcp(&listener, &route, "connect_failed");
        return;
    };
    let edge = TcpEdge {
        reporter: "destination",
        source: Named::unknown(),
        source_principal: peer.map_or_else(Named::unknown_principal, Arc::from),
        destination: sidecar.me.clone(),
        service: Named::unknown(),
        mtls: peer.is_some(),
    };
    let path = TcpPath {
        listener: listener.clone(),
        route: route.clone(),
        client,
        upstream: target,
        sni: None,
    };
    let record = record(&shared, edge, path);
    let spliced = splice(stream, upstream, shared.limits, Carried::Bytes).await;
    debug!(%client, %target, ?spliced, "inbound opaque connection ended");
    shared.metrics.tcp(&listener, &route, spliced.end.label());
    record.closed(&spliced);
}

/// A sidecar's connection, under its workload's TelemetryPolicy.
fn record(shared: &Shared, edge: TcpEdge, path: TcpPath) -> TcpRecord {
    let policy = shared.live.load().telemetry;
    let log = shared.access_log.get();
    TcpRecord::open(&shared.metrics.tcp_edges, edge, path, log, &policy)
}

/// A connection a workload makes, as its sidecar reports it: the callee
/// unknown (no header carries it on a byte stream).
fn outbound_record(
    shared: &Shared,
    sidecar: &Sidecar,
    t: &TcpTarget,
    client: SocketAddr,
) -> TcpRecord {
    let edge = TcpEdge {
        reporter: "source",
        source: sidecar.me.clone(),
        source_principal: sidecar.principal.clone(),
        destination: Named::unknown(),
        service: t.service.clone(),
        mtls: t
            .meshed
            .as_ref()
            .is_some_and(|c| shared.upstream.mesh_tls(c)),
    };
    let path = TcpPath {
        listener: t.listener.clone(),
        route: t.route.clone(),
        client,
        upstream: t.addr,
        sni: None,
    };
    record(shared, edge, path)
}

/// The labels a tunnel is counted under.
pub struct TunnelLabels {
    pub listener: Arc<str>,
    pub route: Arc<str>,
}

/// `CONNECT host:port` on the outbound listener: a byte tunnel to one
/// endpoint of the Service, or passed through. Labels are set in `labels`
/// as soon as the target is known, failed or not.
pub async fn connect(
    shared: &Shared,
    (sidecar, client): (&Sidecar, SocketAddr),
    mut req: Request<Incoming>,
    labels: &mut TunnelLabels,
) -> Result<Response<ResponseBody>, ProxyError> {
    let (host, port) = req
        .uri()
        .authority()
        .and_then(|a| Some((strait_route::normalize_host(a.host()), a.port_u16()?)))
        .ok_or(ProxyError::ConnectTarget)?;
    let t = tcp_target(shared, sidecar, &host, port, None).await?;
    labels.listener = t.listener.clone();
    labels.route = t.route.clone();
    let target = t.addr;
    let upstream = open(shared, &t).await.map_err(|e| {
        debug!(%target, error = %e, "CONNECT failed");
        ProxyError::Connect(e)
    })?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let limits = shared.limits;
    let record = outbound_record(shared, sidecar, &t, client);
    tokio::spawn(async move {
        let _slot = t._slot;
        match on_upgrade.await {
            Ok(upgraded) => {
                let spliced =
                    splice(TokioIo::new(upgraded), upstream, limits, Carried::Bytes).await;
                debug!(%target, ?spliced, "CONNECT tunnel ended");
                record.closed(&spliced);
            }
            Err(e) => debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    Ok(Response::new(http_body_util::Either::Right(
        Default::default(),
    )))
}
