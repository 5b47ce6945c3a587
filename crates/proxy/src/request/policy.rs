//! Phase 2, policy: what may stop a request before it goes anywhere —
//! AuthorizationPolicy at a sidecar's inbound listener (where it cannot be
//! bypassed) and fault injection. Authentication, rate limits and direct
//! responses take their places here, in this order: authenticate,
//! authorize, limit, then faults and direct answers.

use super::select::Target;
use crate::answer::ProxyError;
use crate::ctx::{RequestCtx, Role};
use crate::metrics::Metrics;
use crate::sidecar::Sidecar;
use http::{Request, StatusCode};
use strait_route::{Rule, Snapshot};

/// Inbound calls to a workload are checked against its policies.
pub fn authorize<B>(
    snapshot: &Snapshot,
    sidecar: Option<&Sidecar>,
    metrics: &Metrics,
    ctx: &RequestCtx,
    req: &Request<B>,
    target: &Target<'_>,
) -> Result<(), ProxyError> {
    let (Role::Inbound, Some(sidecar)) = (ctx.conn.role, sidecar) else {
        return Ok(());
    };
    let call = (req.method(), req.uri().path(), req.headers(), &*target.host);
    crate::authz::check_request(snapshot, sidecar, metrics, &ctx.conn, call)
}

/// A rule's FaultInjection: a delay, then perhaps an abort.
pub async fn fault(rule: &Rule) -> Result<(), ProxyError> {
    let Some(fault) = rule.fault.as_deref() else {
        return Ok(());
    };
    let fault = fault.as_ref().map_err(|_| ProxyError::FaultUnresolved)?;
    let (delay, abort) = fault.decide(fastrand::u32(..1_000_000), fastrand::u32(..1_000_000));
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    match abort {
        Some(status) => Err(ProxyError::FaultInjected(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        )),
        None => Ok(()),
    }
}
