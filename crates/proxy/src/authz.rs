//! AuthorizationPolicy at the destination's sidecar, where it cannot be
//! bypassed: every request (and every TCP connection) to the workload is
//! checked against the policies on it. A denial names the policy and
//! rule that decided — in the `403` (`x-strait-authz`), in the log line
//! and in `strait_authz_decisions_total` — so the caller can find out why.

use crate::handler::{ConnInfo, ResponseBody};
use crate::mesh::Sidecar;
use crate::Shared;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{Either, Full};
use strait_route::security::{Call, HttpCall, Verdict};
use strait_route::Snapshot;
use tracing::info;

/// The header naming the deciding policy and rule.
pub const AUTHZ_HEADER: &str = "x-strait-authz";

/// The port a call was for: where a captured connection was going, else
/// the workload's own port.
fn port_of(sidecar: &Sidecar, conn: &ConnInfo) -> u16 {
    conn.original_dst
        .map_or(sidecar.options.app_port, |d| d.port())
}

/// `None` when the request may go on; else the `403` to answer.
pub fn check_request(
    shared: &Shared,
    snapshot: &Snapshot,
    sidecar: &Sidecar,
    conn: &ConnInfo,
    (method, path, headers, host): (&Method, &str, &HeaderMap, &str),
) -> Option<Response<ResponseBody>> {
    let ns = &sidecar.options.namespace;
    if !snapshot.security.guards(ns) {
        return None;
    }
    let service = snapshot.mesh.service_of(host, ns);
    let call = Call {
        peer: conn.peer.as_deref(),
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
    record(
        shared,
        &verdict,
        conn.peer.as_deref(),
        method.as_str(),
        path,
    )?;
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(format!(
        "strait: {}\n",
        verdict.explain()
    )))));
    *r.status_mut() = StatusCode::FORBIDDEN;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("x-strait-reason", HeaderValue::from_static("authz_denied"));
    if let Ok(v) = HeaderValue::from_str(&verdict.policy()) {
        h.insert(AUTHZ_HEADER, v);
    }
    Some(r)
}

/// May a TCP connection from `peer` reach the workload on `port`?
pub fn check_connection(shared: &Shared, sidecar: &Sidecar, peer: Option<&str>, port: u16) -> bool {
    let call = Call {
        peer,
        port,
        http: None,
    };
    let snapshot = shared.snapshot.load();
    if !snapshot.security.guards(&sidecar.options.namespace) {
        return true;
    }
    let verdict =
        snapshot
            .security
            .authorize(&sidecar.options.namespace, &sidecar.options.workload, &call);
    record(shared, &verdict, peer, "TCP", "").is_none()
}

/// Counts and logs a decision; `Some(())` when it denies.
fn record(
    shared: &Shared,
    verdict: &Verdict,
    peer: Option<&str>,
    method: &str,
    path: &str,
) -> Option<()> {
    if *verdict == Verdict::Allowed {
        return None;
    }
    let allowed = verdict.allowed();
    shared.metrics.authz(verdict.policy(), allowed);
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
