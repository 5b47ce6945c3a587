//! Phase 1, select: which host the request is for, and which rule takes
//! it — a Gateway listener's routes (after the TLS server name check), a
//! sidecar's workload (inbound), or the mesh table (outbound), where a
//! destination outside the mesh is passed through or refused.

use crate::answer::ProxyError;
use crate::ctx::{ConnInfo, RequestCtx, Role};
use crate::sidecar::{Passthrough, Sidecar};
use http::header::HOST;
use http::Request;
use std::borrow::Cow;
use strait_route::{normalize_host, Matched, MeshLookup, RequestView, Snapshot};

/// The host and port a request is for.
pub struct Target<'r> {
    /// Lower-cased, without its port.
    pub host: Cow<'r, str>,
    pub port: u16,
}

impl<'r> Target<'r> {
    /// From the absolute-form target, else `Host`; `400` without either.
    pub fn of<B>(req: &'r Request<B>, conn: &'r ConnInfo) -> Result<Self, ProxyError> {
        let raw = req
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()))
            // HTTP/1.0 may leave Host out (RFC 9112 §3.2 requires it of 1.1
            // only): the TLS server name, else the listeners' catch-all, as
            // nginx does.
            .or_else(|| {
                (req.version() == http::Version::HTTP_10).then(|| conn.sni.as_deref().unwrap_or(""))
            })
            .ok_or(ProxyError::NoHost)?;
        Ok(Target {
            host: normalize_host(raw),
            port: port_of(raw, conn.scheme),
        })
    }
}

/// The port a request's authority names, else the scheme's default.
fn port_of(authority: &str, scheme: &str) -> u16 {
    let default = if scheme == "https" { 443 } else { 80 };
    match authority.rsplit_once(':') {
        // `[::1]` alone has colons but no port.
        Some((host, port))
            if !host.is_empty() && (!authority.starts_with('[') || host.ends_with(']')) =>
        {
            port.parse().unwrap_or(default)
        }
        _ => default,
    }
}

/// The rule a request follows: one of the snapshot's, or made for a
/// destination outside the mesh.
pub enum Selected<'s> {
    Rule(Matched<'s>),
    Passthrough(Passthrough),
}

impl Selected<'_> {
    pub fn matched(&self) -> Matched<'_> {
        match self {
            Selected::Rule(m) => Matched {
                listener: m.listener,
                rule: m.rule,
                matched_prefix: m.matched_prefix,
            },
            Selected::Passthrough(p) => p.matched(),
        }
    }
}

/// Is this a sidecar's outbound `CONNECT` tunnel (not an extended CONNECT)?
pub fn is_tunnel<B>(conn: &ConnInfo, sidecar: Option<&Sidecar>, req: &Request<B>) -> bool {
    conn.role == Role::Outbound
        && sidecar.is_some()
        && req.method() == http::Method::CONNECT
        && req.extensions().get::<hyper::ext::Protocol>().is_none()
}

/// Matches the request; the labels of what took it go into `ctx`.
pub async fn route<'s, B>(
    snapshot: &'s Snapshot,
    sidecar: Option<&'s Sidecar>,
    ctx: &mut RequestCtx,
    req: &Request<B>,
    target: &Target<'_>,
) -> Result<Selected<'s>, ProxyError> {
    let view = RequestView {
        method: req.method(),
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
    };
    let selected = match (ctx.conn.role, sidecar) {
        (Role::Inbound, Some(sidecar)) => Selected::Rule(sidecar.inbound(ctx.grpc)),
        (Role::Outbound, Some(sidecar)) => {
            outbound(snapshot, sidecar, &ctx.conn, target, &view).await?
        }
        _ => Selected::Rule(gateway(snapshot, &ctx.conn, target, &view)?),
    };
    let m = selected.matched();
    ctx.listener = m.listener.label.clone();
    ctx.route = m.rule.route.clone();
    ctx.rule = u16::try_from(m.rule.index).ok();
    Ok(selected)
}

fn gateway<'s>(
    snapshot: &'s Snapshot,
    conn: &ConnInfo,
    target: &Target<'_>,
    view: &RequestView<'_>,
) -> Result<Matched<'s>, ProxyError> {
    // A request for a host whose listener is not the one its TLS session
    // was made for must not be served on this connection (RFC 9110 §15.5.20).
    if let Some(sni) = &conn.sni {
        let by_sni = snapshot.listener(conn.listen, sni).map(|l| &l.label);
        let by_host = snapshot
            .listener(conn.listen, &target.host)
            .map(|l| &l.label);
        if by_sni != by_host {
            return Err(ProxyError::Misdirected);
        }
    }
    snapshot
        .route(conn.listen, &target.host, view)
        .ok_or(ProxyError::NoRoute)
}

/// A captured connection names its Service by the address it was going to
/// (a ClusterIP), else by its Host, on that port.
async fn outbound<'s>(
    snapshot: &'s Snapshot,
    sidecar: &'s Sidecar,
    conn: &ConnInfo,
    target: &Target<'_>,
    view: &RequestView<'_>,
) -> Result<Selected<'s>, ProxyError> {
    let ns = &sidecar.options.namespace;
    let host = &*target.host;
    let (service, port) = match conn.original_dst {
        Some(dst) => {
            let ip = dst.ip().to_string();
            match snapshot.mesh.service_of(&ip, ns) {
                Some(_) => (Cow::Owned(ip), dst.port()),
                None => (Cow::Borrowed(host), dst.port()),
            }
        }
        None => (Cow::Borrowed(host), target.port),
    };
    match snapshot.mesh.route(&service, port, ns, view) {
        MeshLookup::Route(m) => Ok(Selected::Rule(m)),
        MeshLookup::NoRule => Err(ProxyError::NoRoute),
        MeshLookup::Unknown => sidecar
            .passthrough(host, port, conn.original_dst)
            .await
            .map(Selected::Passthrough),
    }
}
