//! Phase 5, forward: tries under the rule's timeouts. A connection that
//! cannot be made is tried on another endpoint of the same backend, for
//! any method since nothing was sent, up to [`CONNECT_RETRIES`] times
//! within the Service's retry budget (nginx's `proxy_next_upstream error`).
//! A rule's own retries (GEP-1731) follow the retry module's rules, with
//! backoff, on an endpoint not tried yet. A backend's `101` joins the two
//! connections.

use super::backend::{self, InFlight};
use super::filters::Outgoing;
use super::respond;
use crate::answer::{ProxyError, ResponseBody};
use crate::client_body::ClientBodyError;
use crate::ctx::Seen;
use crate::live::{ClusterState, Live, Outcome};
use crate::metrics::Metrics;
use crate::peer::Named;
use crate::retry::Failure;
use crate::splice::SpliceLimits;
use crate::tee::UpstreamBody;
use crate::upstream::{PooledBody, SendError, Upstreams};
use http::{Request, Response, StatusCode};
use opentelemetry::KeyValue;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use strait_route::session::Sticky;
use strait_route::{Cluster, Matched, Rule, WeightedBackend};
use tracing::{debug, warn};

/// Other endpoints tried when a connection cannot be made (`CONNECT_RETRIES`).
pub const CONNECT_RETRIES: u32 = 2;

/// What forwarding uses of the proxy's state.
pub struct Forwarder<'a> {
    pub live: &'a Live,
    pub upstreams: &'a Upstreams,
    pub metrics: &'a Metrics,
    pub limits: SpliceLimits,
    /// `BACKEND_IDLE_TIMEOUT` (between parts of a response body), as the
    /// flag sets it; `None`: none.
    pub backend_idle: Option<Duration>,
    /// A sidecar's outbound side: its workload's peer header, for
    /// backends that are sidecars too (never for others: the workload's
    /// name is the mesh's business).
    pub peer: Option<&'a http::HeaderValue>,
}

/// A try that got no usable answer: the error to answer with, and why, as
/// retries see it.
struct TryFailed {
    error: ProxyError,
    /// `None`: not to be retried (a full breaker stays full).
    why: Option<Failure>,
}

impl TryFailed {
    fn new(error: ProxyError, why: Failure) -> Self {
        TryFailed {
            error,
            why: Some(why),
        }
    }
}

impl<'f> Forwarder<'f> {
    /// Forwards within the rule's request timeout.
    /// What it learns on the way (Service, endpoint, tries) goes to `seen`.
    pub async fn forward(
        &self,
        matched: &Matched<'_>,
        out: Outgoing,
        seen: &mut Seen,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let rule = matched.rule;
        let Some(limit) = rule.timeouts.request else {
            return self.tries(rule, out, seen).await;
        };
        match tokio::time::timeout(limit, self.tries(rule, out, &mut *seen)).await {
            Ok(answer) => answer,
            Err(_) => {
                let service = seen.service.clone().unwrap_or_else(Named::unknown);
                self.metrics.timeout(&rule.route, &service, "request");
                Err(ProxyError::RequestTimeout)
            }
        }
    }

    // Not `async fn`: its `mut` argument would be kept twice in the
    // future (once as the argument, once as the binding), and this future
    // is moved for every request. Likewise `to_cluster`.
    #[allow(clippy::manual_async_fn)]
    fn tries<'s>(
        &'s self,
        rule: &'s Rule,
        mut out: Outgoing,
        seen: &'s mut Seen,
    ) -> impl Future<Output = Result<Response<ResponseBody>, ProxyError>> + use<'s, 'f> {
        async move {
            // Only the access log shows the backend's time.
            let started = seen.line.as_ref().map(|_| std::time::Instant::now());
            let retry = rule.retry.as_deref().filter(|_| out.upgrade.is_none());
            let mut first = Some(std::mem::replace(
                &mut out.body,
                UpstreamBody::whole(Default::default()),
            ));
            let mut tried: Vec<SocketAddr> = Vec::new();
            let mut tries: u32 = 0;
            loop {
                let sticky = out.parts.extensions.get::<Sticky>().map(|s| s.backend);
                let (index, backend, cluster) = backend::weighted(rule, sticky)?;
                seen.backend = index as u16;
                let state = self.live.state(cluster);
                if tries == 0 {
                    // The budget counts the requests a Service gets; retries
                    // are charged to the Service that failed.
                    state.budget.request();
                }
                // A second try is only made with a kept body.
                let body = first
                    .take()
                    .unwrap_or_else(|| UpstreamBody::whole(out.replay.clone().unwrap_or_default()));
                // Only a rule with retries pays for a copy of the request head.
                let parts = match retry {
                    Some(_) => out.parts.clone(),
                    None => std::mem::replace(&mut out.parts, Request::new(()).into_parts().0),
                };
                let req = Request::from_parts(parts, body);
                // A sidecar's inbound cluster has no Service of its own:
                // the one its caller named stays.
                if state.service_header.is_some() || seen.service.is_none() {
                    seen.service = Some(state.service.clone());
                }
                seen.meshed = cluster.meshed;
                seen.mtls = self.upstreams.mesh_tls(cluster);
                let at = (backend, &**cluster, &*state);
                let result = self.to_cluster(rule, at, req, &mut tried).await;
                // Every try, of either kind, took an endpoint.
                seen.endpoint = tried.last().copied();
                seen.retries = tried.len().saturating_sub(1) as u32;
                let failed = match &result {
                    Err(f) => f.why,
                    Ok(r) => retry
                        .filter(|p| p.codes.contains(&r.status().as_u16()))
                        .map(|_| Failure::Status),
                };
                if let (Some(why), Some(policy)) = (failed, retry) {
                    let again = tries < policy.attempts
                        && out.replay.is_some()
                        && why.retriable(&out.parts.method);
                    if again && state.budget.try_retry() {
                        tries += 1;
                        self.metrics.retry(&rule.route, &state.service, why.label());
                        if let Some(span) = &seen.span {
                            span.event("retry", vec![KeyValue::new("reason", why.label())]);
                        }
                        debug!(
                            route = &*rule.route,
                            reason = why.label(),
                            tries,
                            "retrying"
                        );
                        tokio::time::sleep(crate::retry::wait(policy, tries)).await;
                        continue;
                    }
                    if again {
                        self.metrics
                            .retry(&rule.route, &state.service, "budget_exhausted");
                    }
                }
                let response = result.map_err(|f| f.error)?;
                seen.upstream = started.map(|t| t.elapsed());
                return self.answered((backend, rule), response, &mut out, seen);
            }
        }
    }

    /// One try at `cluster`: an endpoint, and others after it while
    /// connections cannot be made.
    #[allow(clippy::manual_async_fn)]
    fn to_cluster<'s>(
        &'s self,
        rule: &'s Rule,
        (backend, cluster, state): (&'s WeightedBackend, &'s Cluster, &'s ClusterState),
        mut req: Request<UpstreamBody>,
        tried: &'s mut Vec<SocketAddr>,
    ) -> impl Future<Output = Result<Response<PooledBody>, TryFailed>> + use<'s, 'f> {
        async move {
            // Backend-level filters belong to this backend only, not to mirrors.
            if let Some(ops) = &backend.request_headers {
                ops.apply(req.headers_mut());
            }
            if cluster.meshed {
                let headers = req.headers_mut();
                if let Some(me) = self.peer {
                    headers.insert(crate::peer::PEER, me.clone());
                }
                if let Some(service) = &state.service_header {
                    headers.insert(crate::peer::PEER_SERVICE, service.clone());
                }
            }
            let mut connect_retries = 0;
            loop {
                let prefer = req.extensions().get::<Sticky>().map(|s| s.endpoint);
                let try_ = backend::endpoint(cluster, state, (req.headers(), prefer), tried)
                    .map_err(|error| {
                        if let ProxyError::Overflow { limit, .. } = &error {
                            self.metrics.overflow(&cluster.name, &state.service, limit);
                        }
                        TryFailed { error, why: None }
                    })?;
                let (endpoint, authority) = try_.endpoint();
                tried.push(endpoint);
                let call = self
                    .upstreams
                    .send(cluster, state.gate(), endpoint, authority, req);
                let result = match rule.timeouts.backend_request {
                    Some(limit) => tokio::time::timeout(limit, call).await.ok(),
                    None => Some(call.await),
                };
                let failed = match result {
                    Some(Ok(response)) => {
                        let outcome = match response.status().is_server_error() {
                            true => Outcome::ServerError,
                            false => Outcome::Answered,
                        };
                        self.finish(try_, endpoint, outcome);
                        return Ok(response);
                    }
                    None => {
                        self.finish(try_, endpoint, Outcome::Failed);
                        let route = &rule.route;
                        self.metrics
                            .timeout(route, &state.service, "backend_request");
                        return Err(TryFailed::new(ProxyError::BackendTimeout, Failure::Timeout));
                    }
                    Some(Err(failed)) => failed,
                };
                match (failed.error, failed.unsent) {
                    (SendError::Connect(e), Some(unsent)) => {
                        self.finish(try_, endpoint, Outcome::ConnectFailed);
                        let another = connect_retries < CONNECT_RETRIES
                            && tried.len() < cluster.endpoints.len()
                            && state.budget.try_retry();
                        if !another {
                            warn!(cluster = cluster.name, %endpoint, error = %e, "upstream connection failed");
                            return Err(TryFailed::new(ProxyError::Connect(e), Failure::Connect));
                        }
                        connect_retries += 1;
                        let connect = Failure::Connect.label();
                        self.metrics.retry(&rule.route, &state.service, connect);
                        debug!(cluster = cluster.name, %endpoint, error = %e, "connection failed; another endpoint");
                        req = unsent;
                    }
                    (SendError::Overflow(o), _) => {
                        drop(try_);
                        let limit = o.limit().0;
                        self.metrics.overflow(&cluster.name, &state.service, limit);
                        return Err(TryFailed {
                            error: ProxyError::overflow(o, cluster),
                            why: None,
                        });
                    }
                    (e, _) => {
                        let fault = match &e {
                            SendError::Failed(inner) => ClientBodyError::find(&**inner),
                            _ => None,
                        };
                        if let Some(fault) = fault {
                            // The client's fault: the endpoint did nothing
                            // wrong, and no retry would fare better.
                            self.finish(try_, endpoint, Outcome::Answered);
                            let error = ProxyError::from(fault);
                            return Err(TryFailed { error, why: None });
                        }
                        self.finish(try_, endpoint, Outcome::Failed);
                        // As nginx and HAProxy do: a failed upstream is the operator's business.
                        warn!(cluster = cluster.name, %endpoint, error = %e, "upstream request failed");
                        return Err(TryFailed::new(
                            ProxyError::Backend(e.to_string()),
                            Failure::Backend,
                        ));
                    }
                }
            }
        }
    }

    fn finish(&self, try_: InFlight<'_>, endpoint: SocketAddr, outcome: Outcome) {
        let (cluster, service) = (try_.cluster, try_.service().clone());
        if try_.finish(outcome) {
            warn!(cluster = cluster.name, %endpoint, "endpoint ejected after failures");
            self.metrics.ejection(&cluster.name, &service);
        }
    }

    /// The backend's answer: joined if it switched protocols, else filtered.
    fn answered(
        &self,
        (backend, rule): (&WeightedBackend, &Rule),
        response: Response<PooledBody>,
        out: &mut Outgoing,
        seen: &mut Seen,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let response = response.map(|body| body.idle_limit(self.backend_idle));
            return Ok(respond::filters(backend, rule, response, seen));
        }
        match (out.client_upgrade.take(), &out.upgrade) {
            (Some(client), Some(_)) => Ok(crate::upgrade::join(
                client,
                out.client_version,
                response,
                self.limits,
            )),
            _ => Err(ProxyError::SwitchedUnasked),
        }
    }
}
