//! The sidecar role (`strait proxy`): an inbound listener in front of one
//! workload, forwarding to its port on 127.0.0.1, and an outbound listener
//! for everything the workload calls. In explicit mode the workload uses
//! the outbound listener as its `HTTP_PROXY`: plain HTTP requests arrive in
//! absolute form (`GET http://cart-api.shop/...`), HTTPS and other opaque
//! traffic as `CONNECT host:port` tunnels. Destinations are Services,
//! named as Kubernetes DNS names them or by ClusterIP, routed by the mesh
//! table (GAMMA); anything else is passed through to the host it names, or
//! refused (`--outbound-unknown refuse`, 502 like Istio's REGISTRY_ONLY).

use crate::handler::{failure, local, ResponseBody};
use crate::splice::splice;
use crate::Shared;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use strait_route::{BackendTarget, Cluster, ListenerRoutes, Matched, Rule, UpstreamProtocol};
use tracing::debug;

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

/// What a sidecar knows about its workload.
#[derive(Debug, Clone)]
pub struct SidecarOptions {
    /// The certificate agent, when the sidecar has an identity (`--ca`).
    pub identity: Option<Arc<strait_identity::agent::Agent>>,
    pub namespace: String,
    pub workload: String,
    pub service_account: String,
    pub app_port: u16,
    pub inbound: SocketAddr,
    pub outbound: SocketAddr,
    /// Refuse destinations that are not Services instead of passing them through.
    pub refuse_unknown: bool,
}

/// A sidecar's fixed routing: the inbound rule and its own namespace.
#[derive(Debug)]
pub struct Sidecar {
    pub options: SidecarOptions,
    inbound_routes: ListenerRoutes,
    inbound_rule: Arc<Rule>,
    /// gRPC to the app goes over HTTP/2 (h2c), whatever reached the sidecar.
    inbound_grpc_rule: Arc<Rule>,
}

/// A rule that sends everything to one cluster.
fn rule_to(label: &Arc<str>, cluster: Cluster) -> Arc<Rule> {
    Arc::new(Rule::to(
        label.clone(),
        BackendTarget::Cluster(Arc::new(cluster)),
    ))
}

impl Sidecar {
    pub fn new(options: SidecarOptions) -> Self {
        let label: Arc<str> = format!("inbound|{}/{}", options.namespace, options.workload).into();
        let app = SocketAddr::from(([127, 0, 0, 1], options.app_port));
        let cluster = Cluster::new(label.to_string(), vec![app], UpstreamProtocol::Http1, None);
        let grpc = Cluster::new(label.to_string(), vec![app], UpstreamProtocol::H2c, None);
        Sidecar {
            inbound_routes: ListenerRoutes::named(label.clone(), options.inbound.port()),
            inbound_rule: rule_to(&label, cluster),
            inbound_grpc_rule: rule_to(&label, grpc),
            options,
        }
    }

    /// The rule to the workload: HTTP/1.1, or HTTP/2 for gRPC.
    pub fn inbound(&self, grpc: bool) -> Matched<'_> {
        Matched {
            listener: &self.inbound_routes,
            rule: if grpc {
                &self.inbound_grpc_rule
            } else {
                &self.inbound_rule
            },
            matched_prefix: None,
        }
    }
}

/// A destination outside the mesh table, resolved by DNS, for one request.
pub struct Passthrough {
    routes: ListenerRoutes,
    rule: Arc<Rule>,
}

impl Passthrough {
    pub fn matched(&self) -> Matched<'_> {
        Matched {
            listener: &self.routes,
            rule: &self.rule,
            matched_prefix: None,
        }
    }
}

/// The address an unknown destination names, or the answer that refuses it.
async fn resolve_unknown(
    sidecar: &Sidecar,
    host: &str,
    port: u16,
) -> Result<SocketAddr, Response<ResponseBody>> {
    if sidecar.options.refuse_unknown {
        return Err(local(
            StatusCode::BAD_GATEWAY,
            "strait: not a Service of the mesh, and outbound passthrough is off\n",
        ));
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| local(StatusCode::BAD_GATEWAY, "strait: destination unknown\n")),
        Err(e) => {
            debug!(host, port, error = %e, "passthrough destination does not resolve");
            Err(local(
                StatusCode::BAD_GATEWAY,
                "strait: destination unknown\n",
            ))
        }
    }
}

/// An HTTP request to a destination that is not a Service: to `original`
/// (the captured connection's destination) or where DNS says `host` is.
pub async fn passthrough(
    sidecar: &Sidecar,
    host: &str,
    port: u16,
    original: Option<SocketAddr>,
) -> Result<Passthrough, Response<ResponseBody>> {
    let addr = match original {
        Some(dst) if !sidecar.options.refuse_unknown => dst,
        _ => resolve_unknown(sidecar, host, port).await?,
    };
    let label: Arc<str> = Arc::from("passthrough");
    let cluster = Cluster::new(
        format!("passthrough|{host}:{port}"),
        vec![addr],
        UpstreamProtocol::Http1,
        None,
    );
    Ok(Passthrough {
        routes: ListenerRoutes::named(label.clone(), port),
        rule: rule_to(&label, cluster),
    })
}

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
) -> Result<TcpTarget, Response<ResponseBody>> {
    let snapshot = shared.snapshot.load_full();
    if let Some(m) = snapshot
        .mesh
        .default_rule(host, port, &sidecar.options.namespace)
    {
        let no_endpoint = || {
            failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_endpoints",
                "strait: no ready endpoint\n",
            )
        };
        let Some(BackendTarget::Cluster(c)) = m.rule.pick(fastrand::u64(..)).map(|b| &b.target)
        else {
            return Err(no_endpoint());
        };
        let slot =
            crate::conn_limit::tcp_slot(c).map_err(|o| crate::conn_limit::refuse(shared, c, o))?;
        let (addr, _) = c.next_endpoint().ok_or_else(no_endpoint)?;
        return Ok(TcpTarget {
            addr,
            listener: m.listener.label.clone(),
            route: m.rule.route.clone(),
            meshed: c.meshed.then(|| c.clone()),
            _slot: slot,
        });
    }
    drop(snapshot);
    let addr = match fallback {
        Some(dst) if !sidecar.options.refuse_unknown => dst,
        _ => resolve_unknown(sidecar, host, port).await?,
    };
    Ok(TcpTarget {
        addr,
        listener: Arc::from("passthrough"),
        route: Arc::from("passthrough"),
        meshed: None,
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
    let tcp = match tokio::time::timeout(
        crate::upstream::CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(t.addr),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connecting to {}: {e}", t.addr)),
        Err(_) => return Err(format!("connecting to {} timed out", t.addr)),
    };
    let _ = tcp.set_nodelay(true);
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
    _slot: Option<strait_route::ConnSlot>,
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
        Err(_) => {
            debug!(%client, %dst, "opaque connection refused");
            shared
                .metrics
                .tcp(&Arc::from("outbound"), &Arc::from("-"), "no_route");
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
    let end = splice(stream, upstream, shared.limits).await;
    debug!(%client, %dst, target = %t.addr, ?end, "opaque connection ended");
    shared.metrics.tcp(&t.listener, &t.route, end.label());
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
    let upstream = match tokio::time::timeout(
        crate::upstream::CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(target),
    )
    .await
    {
        Ok(Ok(s)) => s,
        _ => {
            shared.metrics.tcp(&listener, &route, "connect_failed");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let end = splice(stream, upstream, shared.limits).await;
    debug!(%client, %target, ?end, "inbound opaque connection ended");
    shared.metrics.tcp(&listener, &route, end.label());
}

/// `CONNECT host:port` on the outbound listener: a byte tunnel to one
/// endpoint of the Service, or passed through.
pub async fn connect(
    shared: &Shared,
    sidecar: &Sidecar,
    mut req: Request<Incoming>,
) -> (Response<ResponseBody>, Arc<str>, Arc<str>) {
    let unmatched = || Arc::<str>::from("-");
    let Some((host, port)) = req
        .uri()
        .authority()
        .and_then(|a| Some((strait_route::normalize_host(a.host()), a.port_u16()?)))
    else {
        return (
            local(StatusCode::BAD_REQUEST, "strait: CONNECT needs host:port\n"),
            unmatched(),
            unmatched(),
        );
    };
    let t = match tcp_target(shared, sidecar, &host, port, None).await {
        Ok(t) => t,
        Err(r) => return (r, unmatched(), unmatched()),
    };
    let (target, listener, route) = (t.addr, t.listener.clone(), t.route.clone());
    let upstream = match open(shared, &t).await {
        Ok(s) => s,
        Err(e) => {
            debug!(%target, error = %e, "CONNECT failed");
            return (
                failure(
                    StatusCode::BAD_GATEWAY,
                    "connect_failed",
                    "strait: backend failed\n",
                ),
                listener,
                route,
            );
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let limits = shared.limits;
    tokio::spawn(async move {
        let _slot = t._slot;
        match on_upgrade.await {
            Ok(client) => {
                let end = splice(TokioIo::new(client), upstream, limits).await;
                debug!(%target, ?end, "CONNECT tunnel ended");
            }
            Err(e) => debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    (
        Response::new(http_body_util::Either::Right(Default::default())),
        listener,
        route,
    )
}
