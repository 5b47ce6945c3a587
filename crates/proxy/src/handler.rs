//! The request path: match → filters → pick backend → forward → response
//! filters → telemetry. Errors strait makes itself are plain-text answers
//! with the status the Gateway API asks for.

use crate::headers::{add_forwarded, strip_hop_by_hop};
use crate::mesh::Role;
use crate::tee::UpstreamBody;
use crate::upstream::PooledBody;
use crate::Shared;
use bytes::Bytes;
use http::header::{HOST, LOCATION};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use strait_route::{
    normalize_host, BackendTarget, Cluster, ListenKey, Matched, MeshLookup, RequestView, Snapshot,
};
use tracing::{debug, warn};

/// A response body: the backend's, streamed, or one strait wrote.
pub type ResponseBody = Either<PooledBody, Full<Bytes>>;

/// What a connection knows about itself.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The listening socket the connection came in on.
    pub listen: ListenKey,
    pub client: SocketAddr,
    /// `client`'s IP as a header value, for `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    pub scheme: &'static str,
    /// The TLS server name the client asked for, lower-cased.
    pub sni: Option<String>,
    pub role: crate::mesh::Role,
    /// Where a captured (transparent) connection was going.
    pub original_dst: Option<SocketAddr>,
    /// The SPIFFE ID a sidecar proved with its client certificate.
    pub peer: Option<Arc<str>>,
}

fn unmatched() -> Arc<str> {
    Arc::from("-")
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

/// Serves one request. Never fails: every error becomes a response.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let start = Instant::now();
    let snapshot = shared.snapshot.load_full();
    let grpc = crate::grpc::is_grpc(req.headers());
    let (mut response, listener, route) = route_request(&shared, &snapshot, &conn, req).await;
    if grpc && matches!(response.body(), Either::Right(_)) && response.status() != StatusCode::OK {
        // strait's own errors reach gRPC clients as gRPC statuses.
        response = crate::grpc::status_response(response.status(), response.headers());
    }
    shared.metrics.record(
        &listener,
        &route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    Ok(response)
}

/// strait's own answer with `x-strait-reason` saying why, so a caller can
/// tell a timeout from a refused connection without reading logs.
pub fn failure(
    status: StatusCode,
    reason: &'static str,
    text: &'static str,
) -> Response<ResponseBody> {
    let mut r = local(status, text);
    r.headers_mut()
        .insert("x-strait-reason", HeaderValue::from_static(reason));
    r
}

pub fn local(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn route_request(
    shared: &Shared,
    snapshot: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> (Response<ResponseBody>, Arc<str>, Arc<str>) {
    let sidecar = shared.sidecar.as_ref();
    if let (Role::Outbound, Some(sidecar)) = (conn.role, sidecar) {
        if req.method() == http::Method::CONNECT
            && req.extensions().get::<hyper::ext::Protocol>().is_none()
        {
            return crate::mesh::connect(shared, sidecar, req).await;
        }
    }
    let raw_host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()))
        // HTTP/1.0 may leave Host out (RFC 9112 §3.2 requires it of 1.1 only):
        // the TLS server name, else the listeners' catch-all, as nginx does.
        .or_else(|| {
            (req.version() == http::Version::HTTP_10).then(|| conn.sni.as_deref().unwrap_or(""))
        });
    let Some(raw_host) = raw_host else {
        let r = local(StatusCode::BAD_REQUEST, "strait: request has no Host\n");
        return (r, unmatched(), unmatched());
    };
    let host = normalize_host(raw_host);
    let port = port_of(raw_host, conn.scheme);
    let view = RequestView {
        method: req.method(),
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
    };
    let no_route = || {
        let r = local(StatusCode::NOT_FOUND, "strait: no route matched\n");
        (r, unmatched(), unmatched())
    };
    let passthrough;
    let matched = match (conn.role, sidecar) {
        (Role::Inbound, Some(sidecar)) => {
            let call = (req.method(), req.uri().path(), req.headers(), &*host);
            if let Some(denied) = crate::authz::check_request(shared, snapshot, sidecar, conn, call)
            {
                return (
                    denied,
                    sidecar.inbound(false).listener.label.clone(),
                    unmatched(),
                );
            }
            sidecar.inbound(crate::grpc::is_grpc(req.headers()))
        }
        (Role::Outbound, Some(sidecar)) => {
            // A captured connection names its Service by the address it
            // was going to (a ClusterIP), else by its Host, on that port.
            let ns = &sidecar.options.namespace;
            let (target, port) = match conn.original_dst {
                Some(dst) => {
                    let ip = dst.ip().to_string();
                    match snapshot.mesh.service_of(&ip, ns) {
                        Some(_) => (std::borrow::Cow::Owned(ip), dst.port()),
                        None => (std::borrow::Cow::Borrowed(&*host), dst.port()),
                    }
                }
                None => (std::borrow::Cow::Borrowed(&*host), port),
            };
            match snapshot.mesh.route(&target, port, ns, &view) {
                MeshLookup::Route(m) => m,
                MeshLookup::NoRule => return no_route(),
                MeshLookup::Unknown => {
                    match crate::mesh::passthrough(sidecar, &host, port, conn.original_dst).await {
                        Ok(p) => {
                            passthrough = p;
                            passthrough.matched()
                        }
                        Err(r) => return (r, unmatched(), unmatched()),
                    }
                }
            }
        }
        _ => {
            // A request for a host whose listener is not the one its TLS
            // session was made for must not be served on this connection
            // (RFC 9110 §15.5.20).
            if let Some(sni) = &conn.sni {
                let by_sni = snapshot.listener(conn.listen, sni).map(|l| &l.label);
                let by_host = snapshot.listener(conn.listen, &host).map(|l| &l.label);
                if by_sni != by_host {
                    let r = local(
                        StatusCode::MISDIRECTED_REQUEST,
                        "strait: host does not match the TLS server name\n",
                    );
                    return (r, unmatched(), unmatched());
                }
            }
            match snapshot.route(conn.listen, &host, &view) {
                Some(m) => m,
                None => return no_route(),
            }
        }
    };
    let listener = matched.listener.label.clone();
    let route = matched.rule.route.clone();
    if let Some(redirect) = &matched.rule.redirect {
        let location = redirect.location(
            conn.scheme,
            &host,
            matched.listener.port,
            req.uri().path(),
            req.uri().query(),
            matched.matched_prefix,
        );
        let mut r = local(
            StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::FOUND),
            "",
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(LOCATION, v);
        }
        return (r, listener, route);
    }
    drop(host);
    if let Some(fault) = &matched.rule.fault {
        let fault = match fault {
            Ok(f) => f,
            Err(_) => {
                let r = failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "fault_unresolved",
                    "strait: the route's extension filter cannot be resolved\n",
                );
                return (r, listener, route);
            }
        };
        let (delay, abort) = fault.decide(fastrand::u32(..1_000_000), fastrand::u32(..1_000_000));
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if let Some(status) = abort {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let r = failure(status, "fault_injected", "strait: fault injected\n");
            return (r, listener, route);
        }
    }
    let forward = forward(shared, conn, &matched, req);
    let response = match matched.rule.timeouts.request {
        Some(limit) => match tokio::time::timeout(limit, forward).await {
            Ok(r) => r,
            Err(_) => failure(
                StatusCode::GATEWAY_TIMEOUT,
                "request_timeout",
                "strait: request timeout\n",
            ),
        },
        None => forward.await,
    };
    (response, listener, route)
}

async fn forward(
    shared: &Shared,
    conn: &ConnInfo,
    matched: &Matched<'_>,
    mut req: Request<Incoming>,
) -> Response<ResponseBody> {
    let rule = matched.rule;
    // An HTTP/1.1 Upgrade (WebSocket and the like) is passed through: the
    // upgrade headers survive the hop-by-hop rule, and on a 101 the two
    // connections are joined.
    let upgrade = crate::upgrade::requested(&req);
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let client_version = parts.version;
    if let Some(protocol) = &upgrade {
        crate::upgrade::connect_as_http1(&mut parts, protocol);
    }
    let original_host = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    let path_and_query = match rule.rewrite.as_ref().and_then(|r| r.path.as_ref()) {
        Some(m) => {
            let path = m.apply(parts.uri.path(), matched.matched_prefix);
            let text = match parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            match PathAndQuery::try_from(text) {
                Ok(pq) => pq,
                Err(_) => return local(StatusCode::BAD_REQUEST, "strait: bad request target\n"),
            }
        }
        None => parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    };

    // Rule-level changes apply to the request and its mirrors alike.
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
    if let Some(protocol) = &upgrade {
        crate::upgrade::restore(headers, protocol);
    }
    if !headers.contains_key(HOST) {
        if let Some(h) = original_host {
            headers.insert(HOST, h);
        }
    }
    add_forwarded(headers, &conn.client_ip, conn.scheme);
    if conn.role == Role::Inbound {
        crate::headers::client_cert(headers, shared, conn.peer.as_deref());
    }
    if let Some(ops) = &rule.request_headers {
        ops.apply(headers);
    }
    if let Some(h) = rule.rewrite.as_ref().and_then(|r| r.hostname.clone()) {
        headers.insert(HOST, h);
    }

    // A rule with retries keeps a small body to send again.
    let retry = rule.retry.as_ref().filter(|_| upgrade.is_none());
    let (mut body, replay) = match retry {
        Some(_) => match crate::retry::prepare(body).await {
            Ok(prepared) => prepared,
            Err(_) => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "request_body",
                    "strait: request body failed\n",
                )
            }
        },
        None => (UpstreamBody::main(body), None),
    };

    // Mirrors go out whatever becomes of the main request.
    for mirror in &rule.mirrors {
        if mirror.per_million < 1_000_000 && fastrand::u32(..1_000_000) >= mirror.per_million {
            continue;
        }
        if let BackendTarget::Cluster(c) = &mirror.target {
            if let Some((ep, authority)) = c.next_endpoint() {
                let copy = body.mirror();
                send_mirror(shared, c, ep, authority, &path_and_query, &parts, copy);
            }
        }
    }
    parts.uri = Uri::from(path_and_query);

    let mut first = Some(body);
    let mut tries: u32 = 0;
    let mut tried: Vec<SocketAddr> = Vec::new();
    loop {
        let Some(backend) = rule.pick(fastrand::u64(..)) else {
            return failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no_backend",
                "strait: route has no backend\n",
            );
        };
        let cluster = match &backend.target {
            BackendTarget::Cluster(c) => c,
            BackendTarget::Invalid(why) => {
                debug!(route = &*rule.route, why, "invalid backend");
                return failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "invalid_backend",
                    "strait: backend is not valid\n",
                );
            }
        };
        if let Err(breaker) = cluster.admit() {
            let limit = ("maxRequests", breaker.max_requests.unwrap_or_default());
            return crate::balance::overflow(shared, cluster, breaker, limit);
        }
        // The budget counts the requests the Service gets from rules that
        // retry; retries are charged to the Service that failed.
        if retry.is_some() && tries == 0 {
            cluster.traffic.budget.request();
        }
        // A retry goes to an endpoint not tried yet when there is one, as
        // Envoy's previous-hosts predicate does.
        let hash = crate::balance::hash_key(&cluster.traffic.lb, &parts.headers);
        let Some(index) = cluster.choose(hash, &tried) else {
            cluster.release();
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_endpoints",
                "strait: no ready endpoints\n",
            );
        };
        let (endpoint, authority) = cluster.endpoint(index);
        let in_flight = crate::balance::InFlight::begin(cluster, index);
        if retry.is_some() {
            tried.push(endpoint);
        }
        // A second try is only made with a kept body.
        let body = first
            .take()
            .unwrap_or_else(|| UpstreamBody::whole(replay.clone().unwrap_or_default()));
        // Only a rule with retries pays for a copy of the request head.
        let mut try_parts = match retry {
            Some(_) => parts.clone(),
            None => std::mem::replace(&mut parts, Request::new(()).into_parts().0),
        };
        // Backend-level filters belong to this backend only, not to mirrors.
        if let Some(ops) = &backend.request_headers {
            ops.apply(&mut try_parts.headers);
        }
        let call = shared.upstream.send(
            cluster,
            endpoint,
            authority,
            Request::from_parts(try_parts, body),
        );
        let result = match rule.timeouts.backend_request {
            Some(limit) => tokio::time::timeout(limit, call).await.ok(),
            None => Some(call.await),
        };
        let overflow = match &result {
            Some(Err(e)) => e.downcast_ref::<crate::conn_limit::Overflow>().copied(),
            _ => None,
        };
        if let Some(o) = overflow {
            in_flight.finish(false);
            return crate::conn_limit::refuse(shared, cluster, o);
        }
        let failed = match &result {
            None => Some(crate::retry::Failure::Timeout),
            Some(Err(e)) if crate::upstream::is_connect_error(e.as_ref()) => {
                Some(crate::retry::Failure::Connect)
            }
            Some(Err(_)) => Some(crate::retry::Failure::Backend),
            Some(Ok(r)) => retry
                .filter(|p| p.codes.contains(&r.status().as_u16()))
                .map(|_| crate::retry::Failure::Status),
        };
        let server_error = match &result {
            Some(Ok(r)) => r.status().is_server_error(),
            _ => true,
        };
        if in_flight.finish(server_error) {
            warn!(cluster = cluster.name, %endpoint, "endpoint ejected after consecutive failures");
            shared.metrics.ejection(&cluster.name);
        }
        if let (Some(why), Some(policy)) = (failed, retry) {
            let again = tries < policy.attempts && replay.is_some() && why.retriable(&parts.method);
            if again && cluster.traffic.budget.try_retry() {
                tries += 1;
                shared.metrics.retry(&rule.route, why.label());
                debug!(route = &*rule.route, %endpoint, reason = why.label(), tries, "retrying");
                tokio::time::sleep(policy.wait(tries)).await;
                continue;
            }
            if again {
                shared.metrics.retry(&rule.route, "budget_exhausted");
            }
        }
        let mut response = match result {
            Some(Ok(r)) => r,
            None => {
                return failure(
                    StatusCode::GATEWAY_TIMEOUT,
                    "backend_timeout",
                    "strait: backend timeout\n",
                )
            }
            Some(Err(e)) => {
                // As nginx and HAProxy do: a failed upstream is the operator's business.
                warn!(cluster = cluster.name, %endpoint, error = %e, "upstream request failed");
                let reason = if failed == Some(crate::retry::Failure::Connect) {
                    "connect_failed"
                } else {
                    "backend_failed"
                };
                return failure(StatusCode::BAD_GATEWAY, reason, "strait: backend failed\n");
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            return match (client_upgrade, upgrade) {
                (Some(client), Some(_)) => {
                    crate::upgrade::join(client, client_version, response, shared.limits)
                }
                _ => local(
                    StatusCode::BAD_GATEWAY,
                    "strait: backend switched protocols unasked\n",
                ),
            };
        }
        strip_hop_by_hop(response.headers_mut());
        if let Some(ops) = &backend.response_headers {
            ops.apply(response.headers_mut());
        }
        if let Some(ops) = &rule.response_headers {
            ops.apply(response.headers_mut());
        }
        return response.map(Either::Left);
    }
}

/// Fire-and-forget copy of the request; its body is teed from the main one.
fn send_mirror(
    shared: &Shared,
    cluster: &Arc<Cluster>,
    endpoint: SocketAddr,
    authority: &Authority,
    path_and_query: &PathAndQuery,
    parts: &http::request::Parts,
    body: UpstreamBody,
) {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = Uri::from(path_and_query.clone());
    *req.headers_mut() = parts.headers.clone();
    let upstream = shared.upstream.clone();
    let authority = authority.clone();
    let cluster = cluster.clone();
    tokio::spawn(async move {
        if let Err(e) = upstream.send(&cluster, endpoint, &authority, req).await {
            debug!(%endpoint, error = %e, "mirror request failed");
        }
    });
}
