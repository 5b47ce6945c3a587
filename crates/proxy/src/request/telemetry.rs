//! Phase 7, telemetry: one record per request, in one place — whatever
//! phase answered it, strait or the backend. A streamed response is
//! recorded when its body ends (its size and gRPC status are known only
//! then); the rest at once. Each record counts in the request metrics, is
//! an access log line when the log is on and samples it, and — when strait
//! answered with an error of its own — a warning, however the log is set.

use super::select;
use crate::access_log::{self, Entry, Format, Qualified};
use crate::answer::ResponseBody;
use crate::ctx::{ConnInfo, RequestCtx, RequestLine, Role};
use crate::live::Live;
use crate::metrics_requests::{Measured, RequestLabels};
use crate::peer::{self, Named, PEER, PEER_SERVICE};
use crate::shared::Shared;
use crate::sidecar::Sidecar;
use crate::traces::{RequestSpan, Traces};
use crate::upstream::{grpc_status, BodyEnd, OnEnd};
use http::{HeaderMap, Request, Response};
use http_body::Body;
use http_body_util::Either;
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use strait_route::telemetry::Telemetry;

/// A meshed caller's workload, and the Service it called, from its
/// sidecar's headers: believed over mutual TLS, or where this sidecar has
/// no identity to check one with.
pub fn caller(sidecar: Option<&Sidecar>, ctx: &mut RequestCtx, headers: &HeaderMap) {
    let Some(sidecar) = sidecar.filter(|_| ctx.conn.role == Role::Inbound) else {
        return;
    };
    if ctx.conn.peer.is_some() || sidecar.options.identity.is_none() {
        ctx.seen.source = headers.get(PEER).and_then(peer::parse);
        ctx.seen.service = headers.get(PEER_SERVICE).and_then(peer::parse);
    }
}

/// The request's access log line (when the log samples it) and span
/// (when traces are exported), as TelemetryPolicies and flags say.
pub fn begin<B>(shared: &Shared, live: &Live, ctx: &mut RequestCtx, req: &Request<B>) {
    let policy = policy(shared.sidecar.as_ref(), live, &ctx.conn, req);
    if let Some(log) = shared.access_log.get().filter(|log| log.sampled(&policy)) {
        ctx.seen.line = Some(line(req, log.format(&policy)));
    }
    if let Some(traces) = shared.traces.get() {
        ctx.seen.span = Some(span(traces, ctx, req, policy.trace_ratio));
    }
}

/// A sidecar's workload's, else the request's listener's.
fn policy<B>(
    sidecar: Option<&Sidecar>,
    live: &Live,
    conn: &ConnInfo,
    req: &Request<B>,
) -> Telemetry {
    let snapshot = &live.snapshot;
    if sidecar.is_some() || snapshot.telemetry.is_empty() {
        return live.telemetry;
    }
    select::Target::of(req, conn)
        .ok()
        .and_then(|target| snapshot.listener(conn.listen, &target.host))
        .map(|listener| listener.telemetry)
        .unwrap_or_default()
}

/// What the access log keeps of the request.
fn line<B>(req: &Request<B>, format: Format) -> Box<RequestLine> {
    let header = |name| req.headers().get(name).cloned();
    let authority = req
        .uri()
        .authority()
        .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| header(http::header::HOST));
    Box::new(RequestLine {
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
        authority,
        user_agent: header(http::header::USER_AGENT),
        request_id: header(http::HeaderName::from_static("x-request-id")),
        started: std::time::SystemTime::now(),
        format,
    })
}

/// The request's span: a server span where strait receives a call (a
/// gateway, a sidecar's inbound side), a client span where a workload's
/// call leaves (a sidecar's outbound side).
fn span<B>(
    traces: &Traces,
    ctx: &RequestCtx,
    req: &Request<B>,
    ratio: Option<f64>,
) -> Box<RequestSpan> {
    let kind = match ctx.conn.role {
        Role::Outbound => SpanKind::Client,
        Role::Gateway | Role::Inbound => SpanKind::Server,
    };
    let mut span = traces.begin(req.headers(), kind, ctx.conn.role.name(), ratio);
    span.start(req.method(), req.uri());
    span
}

/// Records the request once its response is through, and hands the
/// response on.
pub fn record(
    shared: &Arc<Shared>,
    ctx: RequestCtx,
    mut response: Response<ResponseBody>,
) -> Response<ResponseBody> {
    if let (Role::Inbound, Some(me)) = (ctx.conn.role, me_header(shared)) {
        response.headers_mut().insert(PEER, me.clone());
    }
    let done = Done {
        shared: shared.clone(),
        status: response.status().as_u16(),
        grpc_status: ctx.grpc.then(|| grpc_status(response.headers())).flatten(),
        request_bytes: ctx.seen.request_bytes,
        ctx,
    };
    match response.body_mut() {
        Either::Left(streamed) if !streamed.is_end_stream() => streamed.on_end(Box::new(done)),
        body => {
            let sent = body.size_hint().exact().unwrap_or(0);
            done.finish(BodyEnd {
                sent,
                grpc_status: None,
                complete: true,
            })
        }
    }
    response
}

/// The response side of [`crate::peer`]: a sidecar's inbound side names
/// its workload to the caller, on the backend's answers and its own.
/// (The caller's side reads it in the response filters.)
fn me_header(shared: &Shared) -> Option<&http::HeaderValue> {
    shared.sidecar.as_ref()?.me_header.as_ref()
}

/// A request waiting for its response body's end.
struct Done {
    shared: Arc<Shared>,
    ctx: RequestCtx,
    status: u16,
    grpc_status: Option<u8>,
    request_bytes: u64,
}

impl OnEnd for Done {
    fn ended(self: Box<Self>, end: BodyEnd) {
        (*self).finish(end)
    }
}

impl Done {
    fn finish(mut self, end: BodyEnd) {
        let seconds = self.ctx.start.elapsed().as_secs_f64();
        let labels = self.labels(end.grpc_status);
        let measured = Measured {
            seconds,
            request_bytes: self.request_bytes,
            response_bytes: end.sent,
        };
        self.shared.metrics.requests.record(&labels, &measured);
        if let Some(reason) = self.ctx.reason {
            warn_failure(&self.ctx, self.status, reason);
        }
        if let (Some(log), Some(line)) = (self.shared.access_log.get(), &self.ctx.seen.line) {
            log.write(&self.entry(line, &labels, &measured, &end), line.format);
        }
        if let Some(span) = self.ctx.seen.span.take() {
            end_span(*span, &self.ctx, &labels, &end);
        }
    }

    fn labels(&self, trailer_status: Option<u8>) -> RequestLabels {
        let ctx = &self.ctx;
        let sidecar = self.shared.sidecar.as_ref();
        let unknown = Named::unknown;
        let principal = |p: Option<&Arc<str>>| p.cloned().unwrap_or_else(Named::unknown_principal);
        let (reporter, source, source_principal, destination) = match (ctx.conn.role, sidecar) {
            (Role::Inbound, Some(s)) => (
                "destination",
                ctx.seen.source.clone().unwrap_or_else(unknown),
                principal(ctx.conn.peer.as_ref()),
                s.me.clone(),
            ),
            (Role::Outbound, Some(s)) => (
                "source",
                s.me.clone(),
                s.principal.clone(),
                ctx.seen.destination.clone().unwrap_or_else(unknown),
            ),
            _ => (
                "gateway",
                unknown(),
                principal(ctx.conn.peer.as_ref()),
                ctx.seen.destination.clone().unwrap_or_else(unknown),
            ),
        };
        let mtls = match ctx.conn.role {
            Role::Inbound => ctx.conn.peer.is_some(),
            _ => ctx.seen.mtls,
        };
        RequestLabels {
            reporter,
            listener: ctx.listener.clone(),
            route: ctx.route.clone(),
            rule: ctx.rule,
            source,
            source_principal,
            destination,
            service: ctx.seen.service.clone().unwrap_or_else(unknown),
            code: self.status,
            grpc_status: self.grpc_status.or(trailer_status),
            reason: ctx.reason,
            mtls,
        }
    }

    fn entry<'a>(
        &'a self,
        line: &'a RequestLine,
        labels: &'a RequestLabels,
        measured: &Measured,
        end: &BodyEnd,
    ) -> Entry<'a> {
        let ctx = &self.ctx;
        let elapsed = std::time::Duration::from_secs_f64(measured.seconds);
        Entry {
            start_time: access_log::rfc3339(line.started),
            duration_ms: access_log::millis(elapsed),
            upstream_ms: ctx.seen.upstream.map(access_log::millis),
            method: Some(line.method.as_str()),
            authority: line.authority.as_ref().and_then(|a| a.to_str().ok()),
            path: Some(line.uri.path_and_query().map_or("/", |p| p.as_str())),
            protocol: protocol(line.version),
            status: self.status,
            grpc_status: labels.grpc_status,
            reason: ctx.reason,
            bytes_received: measured.request_bytes,
            bytes_sent: measured.response_bytes,
            incomplete: !end.complete,
            reporter: labels.reporter,
            listener: &ctx.listener,
            route: &ctx.route,
            rule: ctx.rule,
            upstream_host: ctx.seen.endpoint.map(access_log::address),
            retries: ctx.seen.retries,
            source_workload: Qualified(&labels.source),
            source_principal: &labels.source_principal,
            destination_workload: Qualified(&labels.destination),
            destination_service: Qualified(&labels.service),
            mtls: labels.mtls,
            client_address: access_log::address(ctx.conn.client),
            user_agent: line.user_agent.as_ref().and_then(|v| v.to_str().ok()),
            request_id: line.request_id.as_ref().and_then(|v| v.to_str().ok()),
            trace_id: ctx.seen.span.as_ref().map(|s| s.trace_id()),
        }
    }
}

/// What became of the request, on its span (OpenTelemetry's HTTP names
/// where there is one, `strait.*` for the rest).
fn end_span(span: RequestSpan, ctx: &RequestCtx, labels: &RequestLabels, end: &BodyEnd) {
    if !span.sampled() {
        return span.end(String::new(), Vec::new(), None);
    }
    let text = |k: &'static str, v: &str| KeyValue::new(k, v.to_string());
    let mut attributes = vec![
        KeyValue::new("http.response.status_code", i64::from(labels.code)),
        text("http.route", &labels.route),
        text("strait.reporter", labels.reporter),
        text("strait.listener", &labels.listener),
        text(
            "strait.source.workload",
            &Qualified(&labels.source).to_string(),
        ),
        text("strait.source.principal", &labels.source_principal),
        text(
            "strait.destination.workload",
            &Qualified(&labels.destination).to_string(),
        ),
        text(
            "strait.destination.service",
            &Qualified(&labels.service).to_string(),
        ),
        KeyValue::new("strait.mtls", labels.mtls),
        KeyValue::new("strait.retries", i64::from(ctx.seen.retries)),
        KeyValue::new("http.response.body.size", end.sent as i64),
        text("client.address", &ctx.conn.client.ip().to_string()),
    ];
    if let Some(endpoint) = ctx.seen.endpoint {
        attributes.push(text("network.peer.address", &endpoint.ip().to_string()));
        attributes.push(KeyValue::new(
            "network.peer.port",
            i64::from(endpoint.port()),
        ));
    }
    if let Some(status) = labels.grpc_status {
        attributes.push(KeyValue::new("rpc.grpc.status_code", i64::from(status)));
    }
    if let Some(reason) = labels.reason {
        attributes.push(text("strait.reason", reason));
    }
    if let Some(rule) = labels.rule {
        attributes.push(KeyValue::new("strait.rule", i64::from(rule)));
    }
    let error = match (labels.code >= 500, labels.reason) {
        (true, reason) => Some(reason.unwrap_or("5xx")),
        (false, _) if !end.complete => Some("incomplete"),
        _ => None,
    };
    let name = span.name(&labels.route);
    span.end(name, attributes, error);
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// Warnings of strait's own failures allowed per second; the rest are
/// counted and their number told with the next one let through, so a
/// flood of bad requests cannot flood the log.
const WARNINGS_PER_SECOND: u64 = 10;

/// The second of the last warning (since the Unix epoch) and how many
/// were let through in it, packed as `second << 16 | count`.
static WARNED: AtomicU64 = AtomicU64::new(0);
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

fn warn_failure(ctx: &RequestCtx, status: u16, reason: &'static str) {
    // A 4xx is only strait's business when the request was malformed; a
    // route's own 404, a denial or a redirect is not a failure, and a
    // DirectResponse's status is what its author asked for.
    let malformed = matches!(status, 400 | 408 | 413 | 414 | 431);
    if (status < 500 && !malformed) || reason == crate::answer::DIRECT_RESPONSE {
        return;
    }
    if !let_through() {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
    tracing::warn!(
        status,
        reason,
        listener = &*ctx.listener,
        route = &*ctx.route,
        client = %ctx.conn.client,
        suppressed,
        "strait answered a request itself"
    );
}

fn let_through() -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut seen = WARNED.load(Ordering::Relaxed);
    loop {
        let (second, count) = (seen >> 16, seen & 0xffff);
        let next = match second == now {
            true if count >= WARNINGS_PER_SECOND => return false,
            true => seen + 1,
            false => (now << 16) | 1,
        };
        match WARNED.compare_exchange_weak(seen, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(actual) => seen = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_limited_per_second() {
        let allowed = (0..100).filter(|_| let_through()).count() as u64;
        // The test may straddle a second boundary.
        assert!(
            (WARNINGS_PER_SECOND..=2 * WARNINGS_PER_SECOND).contains(&allowed),
            "{allowed}"
        );
    }
}
