//! Phase 3, request filters: a redirect answers at once; otherwise the
//! request is made ready for its backend — URL rewrite, hop-by-hop
//! hygiene, forwarding headers, the caller's certificate at a sidecar,
//! header modifiers — its body kept for retries when the rule has them,
//! and copies sent to mirrors.

use super::select::Target;
use crate::answer::{self, ProxyError, ResponseBody};
use crate::client_body::{BodyHead, ClientBody, ClientBodyError};
use crate::conn_limit::ConnGate;
use crate::ctx::{RequestCtx, Role};
use crate::headers::{add_forwarded, strip_hop_by_hop};
use crate::limits::{BodyPace, HttpLimits};
use crate::live::Live;
use crate::sidecar::Sidecar;
use crate::tee::UpstreamBody;
use crate::upstream::Upstreams;
use bytes::Bytes;
use http::header::{HOST, LOCATION};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use strait_route::{BackendTarget, Cluster, Matched};
use tracing::debug;

/// A request ready to be sent, with what forwarding needs to know of it.
pub struct Outgoing {
    /// Origin-form URI, headers as the backend is to see them.
    pub parts: http::request::Parts,
    pub body: UpstreamBody,
    /// The body again for another try, when the rule retries and it was small.
    pub replay: Option<Bytes>,
    /// The protocol asked for by an upgrade (WebSocket and the like).
    pub upgrade: Option<HeaderValue>,
    pub client_upgrade: Option<OnUpgrade>,
    pub client_version: Version,
}

/// The rule's RequestRedirect, answered here.
pub fn redirect<B>(
    ctx: &RequestCtx,
    matched: &Matched<'_>,
    req: &Request<B>,
    target: &Target<'_>,
) -> Option<Response<ResponseBody>> {
    let redirect = matched.rule.redirect.as_ref()?;
    let location = redirect.location(
        ctx.conn.scheme,
        &target.host,
        matched.listener.port,
        req.uri().path(),
        req.uri().query(),
        matched.matched_prefix,
    );
    let status = StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::FOUND);
    let mut r = answer::text(status, Bytes::new());
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(LOCATION, v);
    }
    Some(r)
}

/// The rule's CORS filter: a preflight's answer, or the headers for the
/// request's answer (kept in `ctx`); a preflight from an origin not
/// allowed is refused.
pub fn cors<B>(
    cors: &strait_route::cors::Cors,
    req: &Request<B>,
    ctx: &mut RequestCtx,
) -> Result<Option<Response<ResponseBody>>, ProxyError> {
    use strait_route::cors::Verdict;
    let headers = match cors.verdict(req.method(), req.headers()) {
        Verdict::Refused => return Err(ProxyError::CorsRefused),
        Verdict::Preflight(headers) => headers,
        Verdict::Answer(headers) => {
            let put = headers
                .into_iter()
                .map(|(name, value)| crate::ctx::AnswerHeader {
                    // The backend's own CORS headers give way to the filter's.
                    replace: name != http::header::VARY,
                    name,
                    value,
                });
            ctx.answer_headers.extend(put);
            return Ok(None);
        }
    };
    let mut r = answer::text(StatusCode::OK, Bytes::new());
    for (name, value) in headers {
        r.headers_mut().append(name, value);
    }
    let reason = HeaderValue::from_static(answer::CORS_PREFLIGHT);
    r.headers_mut().insert(answer::REASON_HEADER, reason);
    ctx.reason = Some(answer::CORS_PREFLIGHT);
    Ok(Some(r))
}

/// How fast the client must send its body. The minimum rate is for
/// HTTP/1.x uploads: a gRPC stream may rightly send a message and listen
/// for minutes, and an HTTP/2 stream can be held back by the connection's
/// window when another stream's backend reads slowly, which is no fault of
/// its own. The idle limit holds for all.
pub(super) fn pace(limits: &HttpLimits, version: http::Version, grpc: bool) -> BodyPace {
    let mut pace = limits.body_pace;
    if grpc || version >= http::Version::HTTP_2 {
        pace.min_rate = 0;
    }
    pace
}

/// Whether the request has a body: what an earlier phase read of it,
/// else what its stream says.
pub(super) fn has_body(req: &Request<Incoming>) -> bool {
    match req.extensions().get::<BodyHead>() {
        Some(head) => !head.data.is_empty(),
        None => !http_body::Body::is_end_stream(req.body()),
    }
}

/// The request's body whole, at most `max` bytes, kept in the request for
/// the phases after it and its backend. One read serves every phase that
/// needs the body (an authorization service, the API's schema, a
/// BodyTransform); a body read before, to a larger bound, that is over
/// `max` is too large here too.
pub(super) async fn whole_body<'r>(
    req: &'r mut Request<Incoming>,
    max: u64,
    (limits, grpc): (&HttpLimits, bool),
) -> Result<&'r mut BodyHead, ProxyError> {
    let head = match req.extensions_mut().remove::<BodyHead>() {
        Some(head) => head,
        None => {
            let pace = pace(limits, req.version(), grpc);
            BodyHead::read(req.body_mut(), max, limits.body, pace)
                .await
                .map_err(|e| ProxyError::from(&e))?
        }
    };
    if head.data.len() as u64 > max {
        return Err(ProxyError::BodyTooLarge);
    }
    Ok(req.extensions_mut().get_or_insert(head))
}

/// Applies the rule's filters; a sidecar adds what its workload or its
/// peer is to learn of the call.
pub async fn request(
    (live, upstreams, limits): (&Live, &Arc<Upstreams>, &HttpLimits),
    ctx: &RequestCtx,
    sidecar: Option<&Sidecar>,
    matched: &Matched<'_>,
    mut req: Request<Incoming>,
) -> Result<Outgoing, ProxyError> {
    let rule = matched.rule;
    // An HTTP/1.1 Upgrade is passed through: the upgrade headers survive
    // the hop-by-hop rule, and on a 101 the two connections are joined.
    let upgrade = crate::upgrade::requested(&req);
    let client_upgrade = upgrade.is_some().then(|| {
        ctx.conn.tunnel.store(true, Ordering::Relaxed);
        hyper::upgrade::on(&mut req)
    });
    let (mut parts, body) = req.into_parts();
    let client_version = parts.version;
    if let Some(protocol) = &upgrade {
        crate::upgrade::connect_as_http1(&mut parts, protocol);
    }
    let path_and_query = rewritten(matched, &parts.uri)?;
    headers(ctx, sidecar, matched, &mut parts, upgrade.as_ref());
    let retries = rule.retry.is_some() && upgrade.is_none();
    let head = parts.extensions.remove::<crate::client_body::BodyHead>();
    let body =
        ClientBody::new(body, limits.body, pace(limits, client_version, ctx.grpc)).with_head(head);
    let (mut body, replay) = match retries {
        true => crate::retry::prepare(body).await.map_err(|e| {
            ClientBodyError::find(&*e).map_or(ProxyError::RequestBody, ProxyError::from)
        })?,
        false => (UpstreamBody::main(body), None),
    };
    mirror(
        (live, upstreams),
        matched,
        &path_and_query,
        &parts,
        &mut body,
    );
    parts.uri = Uri::from(path_and_query);
    Ok(Outgoing {
        parts,
        body,
        replay,
        upgrade,
        client_upgrade,
        client_version,
    })
}

/// The path and query the backend gets: URLRewrite's, else the client's.
fn rewritten(matched: &Matched<'_>, uri: &Uri) -> Result<PathAndQuery, ProxyError> {
    let Some(modifier) = matched.rule.rewrite.as_ref().and_then(|r| r.path.as_ref()) else {
        return Ok(uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")));
    };
    let path = modifier.apply(uri.path(), matched.matched_prefix);
    let text = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    PathAndQuery::try_from(text).map_err(|_| ProxyError::BadTarget)
}

/// Rule-level header changes, which apply to the request and its mirrors alike.
fn headers(
    ctx: &RequestCtx,
    sidecar: Option<&Sidecar>,
    matched: &Matched<'_>,
    parts: &mut http::request::Parts,
    upgrade: Option<&HeaderValue>,
) {
    let original_host = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    let headers = &mut parts.headers;
    // `TE: trailers` is the one TE value passed on, as Envoy does: gRPC
    // needs it to reach the server.
    let te_trailers = headers
        .get_all(http::header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    strip_hop_by_hop(headers);
    if te_trailers {
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(protocol) = upgrade {
        crate::upgrade::restore(headers, protocol);
    }
    if !headers.contains_key(HOST) {
        if let Some(h) = original_host {
            headers.insert(HOST, h);
        }
    }
    add_forwarded(headers, &ctx.conn.client_ip, ctx.conn.scheme);
    // Whatever arrived under the peer header went with the hop-by-hop
    // ones: only a sidecar speaks it (forwarding adds this one's, for a
    // meshed backend).
    if ctx.conn.role == Role::Inbound {
        let own_id = sidecar.and_then(Sidecar::own_id);
        crate::headers::client_cert(headers, own_id, ctx.conn.peer.as_deref());
    }
    if let Some(cert) = &ctx.conn.client_cert {
        crate::headers::gateway_client_cert(headers, cert);
    }
    if let Some(span) = &ctx.seen.span {
        span.inject(headers);
    }
    let rule = matched.rule;
    if let Some(ops) = &rule.request_headers {
        ops.apply(headers);
    }
    if let Some(h) = rule.rewrite.as_ref().and_then(|r| r.hostname.clone()) {
        headers.insert(HOST, h);
    }
}

/// Mirrors go out whatever becomes of the main request.
fn mirror(
    (live, upstreams): (&Live, &Arc<Upstreams>),
    matched: &Matched<'_>,
    path_and_query: &PathAndQuery,
    parts: &http::request::Parts,
    body: &mut UpstreamBody,
) {
    for mirror in &matched.rule.mirrors {
        if mirror.per_million < 1_000_000 && fastrand::u32(..1_000_000) >= mirror.per_million {
            continue;
        }
        let BackendTarget::Cluster(c) = &mirror.target else {
            continue;
        };
        let state = live.state(c);
        let Some((ep, authority)) = state.round_robin(&|_| false).and_then(|i| c.endpoint(i))
        else {
            continue;
        };
        let gate = state.gate().cloned();
        let copy = body.mirror();
        send_mirror(
            upstreams,
            (c, gate),
            (ep, authority),
            path_and_query,
            parts,
            copy,
        );
    }
}

/// Fire-and-forget copy of the request; its body is teed from the main one.
fn send_mirror(
    upstreams: &Arc<Upstreams>,
    (cluster, gate): (&Arc<Cluster>, Option<Arc<ConnGate>>),
    (endpoint, authority): (SocketAddr, &Authority),
    path_and_query: &PathAndQuery,
    parts: &http::request::Parts,
    body: UpstreamBody,
) {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = Uri::from(path_and_query.clone());
    *req.headers_mut() = parts.headers.clone();
    let upstreams = upstreams.clone();
    let authority = authority.clone();
    let cluster = cluster.clone();
    tokio::spawn(async move {
        if let Err(e) = upstreams
            .send(&cluster, gate.as_ref(), endpoint, &authority, req)
            .await
        {
            debug!(%endpoint, error = %e.error, "mirror request failed");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_rate_is_for_http1_uploads_only() {
        let limits = HttpLimits::default();
        let rate = |version, grpc| pace(&limits, version, grpc).min_rate;
        assert_eq!(
            rate(http::Version::HTTP_11, false),
            limits.body_pace.min_rate
        );
        assert_eq!(
            rate(http::Version::HTTP_10, false),
            limits.body_pace.min_rate
        );
        assert_eq!(rate(http::Version::HTTP_11, true), 0, "gRPC over HTTP/1.1");
        assert_eq!(rate(http::Version::HTTP_2, false), 0, "an HTTP/2 stream");
        // The idle limit holds for all.
        let idle = pace(&limits, http::Version::HTTP_2, true).idle;
        assert_eq!(idle, limits.body_pace.idle);
    }
}
