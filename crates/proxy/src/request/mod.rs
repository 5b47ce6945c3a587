//! The request path, one phase per module, called in order by [`proxy`]:
//!
//! ```text
//! strict    the head as RFC 9112 allows it: framing, Host, target, limits
//!           (a refusal closes the connection); h2c upgrades taken off
//! select    host, TLS name check (421), route: gateway | inbound | outbound
//!   │       (a sidecar's CONNECT becomes a tunnel here)
//! policy    authentication, authorization, rate limits, (a redirect
//!           answers here), the API's schema, authorization services,
//!           fault injection, direct responses
//! transform the request's body converted and edited (BodyTransform)
//! filters   redirect (answers), rewrite, headers, body kept for retries, mirrors
//! backend   weighted backend, breaker, balancer         ┐ inside forward,
//! forward   tries, timeouts, connect and rule retries,  │ once per try
//!           upgrades                                    ┘
//! respond   response header filters; the answer's body transformed
//! telemetry one record per request
//! ```
//!
//! A phase stops the request by returning a [`ProxyError`]; [`handle`] is
//! the one place it becomes an answer.

mod backend;
mod filters;
mod forward;
mod policy;
mod respond;
mod schema;
mod select;
pub mod strict;
mod telemetry;
mod transform;

use crate::answer::{ProxyError, ResponseBody};
use crate::ctx::{ConnInfo, RequestCtx, Role};
use crate::live::Live;
use crate::Shared;
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;

/// Serves one request. Never fails: every error becomes an answer.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let mut ctx = RequestCtx::new(conn, req.headers());
    ctx.seen.request_bytes = http_body::Body::size_hint(req.body()).exact().unwrap_or(0);
    let live = shared.live.load_full();
    telemetry::begin(&shared, &live, &mut ctx, &req);
    let http1 = req.version() <= http::Version::HTTP_11;
    let response = match proxy(&shared, live, &mut ctx, req).await {
        Ok(response) => {
            if let Some(state) = ctx.session.take() {
                keep_session(&state, &mut ctx);
            }
            response
        }
        Err(e) => {
            ctx.reason = Some(e.reason());
            let live = shared.live.load();
            let ports = &live.snapshot.ports;
            let page = ports
                .get(&ctx.conn.listen)
                .and_then(|p| p.errors.as_deref());
            let mut response = e.response_in(ctx.grpc, page);
            if http1 && e.closes() {
                let close = http::HeaderValue::from_static("close");
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, close);
            }
            response
        }
    };
    let mut response = watch_send(response, &shared, &ctx.conn);
    for header in std::mem::take(&mut ctx.answer_headers) {
        header.put(response.headers_mut());
    }
    Ok(telemetry::record(&shared, ctx, response))
}

/// A streamed response counts in its connection's send timeout.
fn watch_send(
    response: Response<ResponseBody>,
    shared: &Shared,
    conn: &ConnInfo,
) -> Response<ResponseBody> {
    if shared.http_limits.send.is_zero() {
        return response;
    }
    response.map(|body| match body {
        Either::Left(streamed) => Either::Left(streamed.watched(&conn.send)),
        whole => whole,
    })
}

/// The chart: each line a phase. (Not `async fn`: its `mut` argument
/// would be kept twice in the future, as the argument and as the binding,
/// and this future is moved for every request.)
#[allow(clippy::manual_async_fn)]
fn proxy<'s>(
    shared: &'s Shared,
    live: Arc<Live>,
    ctx: &'s mut RequestCtx,
    mut req: Request<Incoming>,
) -> impl std::future::Future<Output = Result<Response<ResponseBody>, ProxyError>> + use<'s> {
    async move {
        let snapshot = &live.snapshot;
        let sidecar = shared.sidecar.as_ref();
        if let (true, Some(sidecar)) = (select::is_tunnel(&ctx.conn, sidecar, &req), sidecar) {
            return tunnel(shared, sidecar, ctx, req).await;
        }
        strict::check(&mut req, ctx.conn.sni.as_deref(), &shared.http_limits)?;
        telemetry::caller(sidecar, ctx, req.headers());
        let conn = ctx.conn.clone();
        let authenticated;
        let asking;
        let selected = {
            let mut target = select::Target::of(&req, &conn)?;
            let mut selected = select::route(snapshot, sidecar, ctx, &req, &target).await?;
            let m = selected.matched();
            // Before any credential is asked for: a preflight carries none.
            if let Some(cors) = m.rule.cors() {
                if let Some(preflight) = filters::cors(cors, &req, ctx)? {
                    return Ok(preflight);
                }
            }
            if let Some(oidc) = policy::oidc((&m, live.authn.as_ref()), ctx) {
                // Boxed, as the body step below: rare steps' state would
                // otherwise make every request's future larger, and it
                // is moved more than once per request.
                let login = policy::login(oidc, &mut req, &shared.oidc, ctx);
                match Box::pin(login).await? {
                    Ok(set) => ctx.answer_headers.extend(set.into_iter().map(|value| {
                        crate::ctx::AnswerHeader {
                            name: http::header::SET_COOKIE,
                            value,
                            replace: false,
                        }
                    })),
                    Err(answer) => return Ok(*answer),
                }
                target = select::Target::of(&req, &conn)?;
            }
            let tokens = (
                &shared.tokens,
                &shared.jwks,
                shared.http_limits.trusted_hops,
            );
            let attached = (&selected.matched(), live.authn.as_ref());
            let mut checked = policy::authenticate(attached, &req, tokens, ctx)?;
            if let Some(a) = checked.as_ref().filter(|a| a.reroutes()) {
                a.claims_to(&mut req);
                target = select::Target::of(&req, &conn)?;
                selected = select::route(snapshot, sidecar, ctx, &req, &target).await?;
                let attached = (&selected.matched(), live.authn.as_ref());
                checked = policy::recheck(checked, attached, &req, tokens, ctx)?;
            }
            authenticated = checked;
            let guards = (&**snapshot, sidecar, &shared.metrics);
            policy::authorize(guards, ctx, (&req, &target), authenticated.as_ref())?;
            let counting = (&*live, &shared.metrics, shared.http_limits.trusted_hops);
            let limited = (&selected.matched(), &req);
            if let Some(global) = policy::limit(counting, ctx, limited, authenticated.as_ref())? {
                // Boxed: only requests of global rules wait for Redis.
                let counting = (&*live, &shared.metrics);
                Box::pin(policy::limit_globally(global, counting, ctx)).await?;
            }
            asking = policy::services(authenticated.as_ref(), selected.matched().rule, &target)?;
            if let Some(redirect) = filters::redirect(ctx, &selected.matched(), &req, &target) {
                return Ok(redirect);
            }
            selected
        };
        let matched = selected.matched();
        let mut asking = asking;
        if let Some(asking) = asking.as_mut() {
            let limits = (&shared.http_limits, ctx.grpc);
            Box::pin(policy::read_body(asking, matched.rule, &mut req, limits)).await?;
        }
        if let Some(api) = schema::attached((&matched, live.apischema.as_ref()), ctx) {
            let limits = (&shared.http_limits, ctx.grpc);
            Box::pin(schema::check(api, &mut req, limits)).await?;
        }
        let admitted = (
            authenticated,
            asking,
            (&*shared.upstream, &shared.decisions),
        );
        if let Some(answer) = policy::admit(admitted, &mut req, ctx, matched.rule).await? {
            ctx.reason = Some(crate::answer::DIRECT_RESPONSE);
            return Ok(answer);
        }
        if let Some(session) = matched.rule.session() {
            begin_session(session, &matched, &mut req, ctx);
        }
        if let Some(t) = matched.rule.transform() {
            // The rest of the request, boxed with the transformation: its
            // state stays out of every other request's future.
            let on = (shared, &*live, sidecar);
            return Box::pin(transformed(t, on, ctx, &matched, req)).await;
        }
        let at = (&*live, &shared.upstream, &shared.http_limits);
        let out = filters::request(at, ctx, sidecar, &matched, req).await?;
        let forwarder = forwarder((shared, &*live, sidecar), ctx);
        forwarder.forward(&matched, out, &mut ctx.seen).await
    }
}

type On<'s> = (&'s Shared, &'s Live, Option<&'s crate::sidecar::Sidecar>);

fn forwarder<'s>((shared, live, sidecar): On<'s>, ctx: &RequestCtx) -> forward::Forwarder<'s> {
    forward::Forwarder {
        live,
        upstreams: &shared.upstream,
        metrics: &shared.metrics,
        limits: shared.limits,
        backend_idle: Some(shared.http_limits.backend_idle).filter(|d| !d.is_zero()),
        peer: sidecar
            .filter(|_| ctx.conn.role == Role::Outbound)
            .and_then(|s| s.me_header.as_ref()),
    }
}

/// The filters and the backend, with the rule's BodyTransform on both
/// bodies.
async fn transformed(
    t: &strait_route::transform::BodyTransform,
    on: On<'_>,
    ctx: &mut RequestCtx,
    matched: &strait_route::Matched<'_>,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let (shared, live, sidecar) = on;
    let asked = transform::asked(t, &mut req);
    let limits = (&shared.http_limits, ctx.grpc);
    transform::request(t, &mut req, limits).await?;
    let at = (live, &shared.upstream, &shared.http_limits);
    let out = filters::request(at, ctx, sidecar, matched, req).await?;
    let response = forwarder(on, ctx)
        .forward(matched, out, &mut ctx.seen)
        .await?;
    transform::response(t, asked.as_deref(), response).await
}

/// The session the request carries, if it has not timed out: in its
/// extensions for the backend and endpoint to be chosen by, and in `ctx`
/// for the answer.
fn begin_session<B>(
    session: &strait_route::session::Session,
    matched: &strait_route::Matched<'_>,
    req: &mut Request<B>,
    ctx: &mut RequestCtx,
) {
    let held = session.read(req.headers(), crate::ctx::unix_now());
    if let Some(sticky) = held {
        req.extensions_mut().insert(sticky);
    }
    let path = matched
        .matched_prefix
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    ctx.session = Some(Box::new(crate::ctx::SessionState {
        rule: matched.rule.clone(),
        path: path.into(),
        held,
    }));
}

/// The session's header for the answer, when it began or moved (or its
/// idle timeout is pushed back): on the backend and endpoint that
/// answered.
fn keep_session(state: &crate::ctx::SessionState, ctx: &mut RequestCtx) {
    let (Some(session), Some(endpoint)) = (state.rule.session(), ctx.seen.endpoint) else {
        return;
    };
    let at = (
        ctx.seen.backend,
        strait_route::session::endpoint_id(&endpoint),
    );
    let secure = ctx.conn.scheme == "https";
    let path = (&*state.path, secure);
    if let Some((name, value)) = session.write(state.held, at, crate::ctx::unix_now(), path) {
        let replace = session.replaces();
        let header = crate::ctx::AnswerHeader {
            name,
            value,
            replace,
        };
        ctx.answer_headers.push(header);
    }
}

/// A sidecar's outbound `CONNECT`: a byte tunnel, counted like a request.
async fn tunnel(
    shared: &Shared,
    sidecar: &crate::sidecar::Sidecar,
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let mut labels = crate::mesh::TunnelLabels {
        listener: ctx.listener.clone(),
        route: ctx.route.clone(),
    };
    ctx.conn
        .tunnel
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let at = (sidecar, ctx.conn.client);
    let result = crate::mesh::connect(shared, at, req, &mut labels).await;
    ctx.listener = labels.listener;
    ctx.route = labels.route;
    result
}
