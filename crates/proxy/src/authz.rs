//! AuthorizationPolicy at the destination's sidecar, where it cannot be
//! bypassed: every request (and every TCP connection) to the workload is
//! checked against the policies on it. A denial names the policy and
//! rule that decided — in the `403` (`x-strait-authz`), in the log line
//! and in `strait_authz_decisions_total` — so the caller can find out why.

use crate::answer::ProxyError;
use crate::ctx::ConnInfo;
use crate::metrics::Metrics;
use crate::sidecar::Sidecar;
use crate::Shared;
use http::{HeaderMap, Method};
use strait_route::security::{Call, HttpCall, Verdict};
use strait_route::Snapshot;
use tracing::info;

/// The port a call was for: where a captured connection was going, else
/// the workload's own port.
fn port_of(sidecar: &Sidecar, conn: &ConnInfo) -> u16 {
    conn.original_dst
        .map_or(sidecar.options.app_port, |d| d.port())
}

/// The request may go on, or the `403` naming what denied it.
pub fn check_request(
    snapshot: &Snapshot,
    sidecar: &Sidecar,
    metrics: &Metrics,
    conn: &ConnInfo,
    (method, path, headers, host): (&Method, &str, &HeaderMap, &str),
    token: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<(), ProxyError> {
    let ns = &sidecar.options.namespace;
    if !snapshot.security.guards(ns) {
        return Ok(());
    }
    let service = snapshot.mesh.service_of(host, ns);
    let call = Call {
        peer: conn.peer.as_deref(),
        token,
        port: port_of(sidecar, conn),
        http: Some(HttpCall {
            method: method.as_str(),
            path,
            headers,
            service: service.as_ref().map(|(n, s)| (n.as_str(), s.as_str())),
        }),
    };
    let verdict = snapshot
        .security
        .authorize(ns, &sidecar.options.workload, &call);
    match record(
        metrics,
        &verdict,
        conn.peer.as_deref(),
        method.as_str(),
        path,
    ) {
        None => Ok(()),
        Some(()) => Err(ProxyError::Denied {
            policy: verdict.policy(),
            explain: verdict.explain(),
        }),
    }
}

/// May a TCP connection from `peer` reach the workload on `port`?
pub fn check_connection(shared: &Shared, sidecar: &Sidecar, peer: Option<&str>, port: u16) -> bool {
    let call = Call {
        peer,
        token: None,
        port,
        http: None,
    };
    let live = shared.live.load();
    let snapshot = &live.snapshot;
    if !snapshot.security.guards(&sidecar.options.namespace) {
        return true;
    }
    let verdict =
        snapshot
            .security
            .authorize(&sidecar.options.namespace, &sidecar.options.workload, &call);
    record(&shared.metrics, &verdict, peer, "TCP", "").is_none()
}

/// Counts and logs a decision; `Some(())` when it denies.
fn record(
    metrics: &Metrics,
    verdict: &Verdict,
    peer: Option<&str>,
    method: &str,
    path: &str,
) -> Option<()> {
    if *verdict == Verdict::Allowed {
        return None;
    }
    let allowed = verdict.allowed();
    metrics.authz(verdict.policy(), allowed);
    if allowed {
        return None;
    }
    info!(
        peer = peer.unwrap_or("unauthenticated"),
        method,
        path,
        decision = %verdict.explain(),
        "call denied"
    );
    Some(())
}
