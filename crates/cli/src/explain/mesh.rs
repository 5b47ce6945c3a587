//! `strait explain … --from NS/WORKLOAD`: one call between workloads,
//! as the caller's sidecar sends it (the Service's GAMMA route, its
//! filters and backends) and as the callee's sidecar takes it (mutual
//! TLS, AuthorizationPolicy, and the workload's SecurityPolicy,
//! RateLimitPolicy and ApiSchemaPolicy), in the order the request path
//! runs them.

use super::{attached_policies, backends, filters, policies, Call};
use strait_route::security::{Call as AuthzCall, HttpCall};
use strait_route::{BackendTarget, Matched, MeshLookup, RequestView, Snapshot};

/// The caller, and the workload that takes its calls if not the one
/// named like the Service.
pub struct Workloads {
    /// `(namespace, name)` of the caller.
    pub from: (String, String),
    /// The caller's ServiceAccount: its mesh identity.
    pub service_account: String,
    pub to: Option<(String, String)>,
    pub trust_domain: String,
}

/// Both sidecars' parts of `call`, a line each, after the request line.
pub fn explain(snapshot: &Snapshot, call: &Call<'_>, who: &Workloads, out: &mut Vec<String>) {
    let (ns, caller) = &who.from;
    let identity = format!(
        "spiffe://{}/ns/{ns}/sa/{}",
        who.trust_domain, who.service_account
    );
    out.push(format!(
        "caller    workload {ns}/{caller}, identity {identity}"
    ));
    let view = RequestView {
        method: call.method,
        path: call.uri.path(),
        query: call.uri.query(),
        headers: call.headers,
    };
    let Some((svc_ns, svc)) = snapshot.mesh.service_of(call.host, ns) else {
        out.push(format!(
            "outbound  {} is not a Service name: passed through or refused (--outbound-unknown)",
            call.host
        ));
        return;
    };
    let matched = match snapshot.mesh.route(call.host, call.port, ns, &view) {
        MeshLookup::Route(m) => m,
        MeshLookup::NoRule => {
            out.push(format!(
                "outbound  Service {svc_ns}/{svc} port {}",
                call.port
            ));
            out.push(
                "route     the Service has routes, and no rule matches: 404 (no_route)".into(),
            );
            return;
        }
        MeshLookup::Unknown => {
            out.push(format!(
                "outbound  no Service {svc_ns}/{svc} with port {} in the folder: passed through or refused (--outbound-unknown)",
                call.port
            ));
            return;
        }
    };
    out.push(format!(
        "outbound  Service {svc_ns}/{svc} port {}",
        call.port
    ));
    out.push(match matched.rule.route == matched.listener.label {
        true => "route     no route is attached: calls go to the Service's endpoints".into(),
        false => format!(
            "route     {} rule {}",
            matched.rule.route, matched.rule.index
        ),
    });
    policies(&matched, call, out);
    filters(&matched, out);
    backends(&matched, out);
    let rule = matched.rule;
    let rewritten = rule.rewrite.is_some()
        || rule.request_headers.is_some()
        || rule.backends.iter().any(|b| b.request_headers.is_some());
    if rewritten {
        out.push("note      the callee's checks below judge the request as the caller sent it; this rule's filters change it first".into());
    }
    let service = (svc_ns.as_str(), svc.as_str());
    if let Some(to) = &who.to {
        out.push(format!("inbound   workload {}/{}", to.0, to.1));
        inbound(
            snapshot,
            call,
            (to, service),
            (&identity, target_port(&matched)),
            out,
        );
        return;
    }
    // Each backend's workload, taken as the one named like its Service.
    for b in &matched.rule.backends {
        let BackendTarget::Cluster(c) = &b.target else {
            continue;
        };
        let name = c.name.rsplit_once(':').map_or(c.name.as_str(), |(n, _)| n);
        let Some((ns, workload)) = name.split_once('/') else {
            continue;
        };
        let to = (ns.to_string(), workload.to_string());
        out.push(format!(
            "inbound   {}: workload {ns}/{workload} (named like its Service; --to names another)",
            c.name
        ));
        if !c.meshed {
            out.push("          its endpoints are not meshed: no sidecar takes the call, which goes in plain text".into());
            continue;
        }
        let accounts: Vec<String> = c
            .peer_accounts
            .iter()
            .map(|(ns, sa)| format!("spiffe://{}/ns/{ns}/sa/{sa}", who.trust_domain))
            .collect();
        if !accounts.is_empty() {
            out.push(format!(
                "mtls      with a workload certificate, the callee's sidecar must prove {}",
                accounts.join(" or ")
            ));
        }
        let port = first_port(c);
        inbound(snapshot, call, (&to, service), (&identity, port), out);
    }
}

/// The callee's sidecar: who may call, then the workload's policies.
fn inbound(
    snapshot: &Snapshot,
    call: &Call<'_>,
    ((ns, workload), service): (&(String, String), (&str, &str)),
    (identity, port): (&str, Option<u16>),
    out: &mut Vec<String>,
) {
    let mode = snapshot.security.peer_mode(ns, workload);
    out.push(match mode.strict() {
        true => format!("peer      PeerAuthentication STRICT: mutual TLS only; the caller's sidecar proves {identity} (a plain-text call is refused)"),
        false => format!("peer      PERMISSIVE: mutual TLS (the caller's sidecar proves {identity}) or plain text"),
    });
    let attached = (
        snapshot.authn.for_workload(ns, workload),
        snapshot.ratelimit.for_workload(ns, workload),
        snapshot.apischema.for_workload(ns, workload),
    );
    let (authn, limits, schema) = &attached;
    // As the sidecar runs them: the token first, whose claims
    // AuthorizationPolicy may ask for; then who may call; then counts.
    attached_policies((authn.as_deref(), None, None), call, out);
    if snapshot.security.guards(ns) {
        let http = HttpCall {
            method: call.method.as_str(),
            path: call.uri.path(),
            headers: call.headers,
            service: Some(service),
        };
        let authz = AuthzCall {
            peer: Some(identity),
            token: None,
            port: port.unwrap_or(call.port),
            http: Some(http),
        };
        let verdict = snapshot.security.authorize(ns, workload, &authz);
        let refused = match verdict.allowed() {
            true => String::new(),
            false => ": 403 (authz_denied)".into(),
        };
        let token = match call.headers.contains_key(http::header::AUTHORIZATION) {
            true => " (as a call without a verified token: its claims are known when served)",
            false => "",
        };
        out.push(format!("authz     {}{refused}{token}", verdict.explain()));
    } else {
        out.push(format!(
            "authz     no AuthorizationPolicy in namespace {ns}: every caller is allowed"
        ));
    }
    attached_policies((None, limits.as_deref(), schema.as_deref()), call, out);
    out.push("app       the workload's app gets it on 127.0.0.1 (the sidecar's --app-port)".into());
}

/// The port the callee's sidecar sees the call for: the first
/// backend's endpoints'.
fn target_port(m: &Matched<'_>) -> Option<u16> {
    m.rule.backends.iter().find_map(|b| match &b.target {
        BackendTarget::Cluster(c) => first_port(c),
        BackendTarget::Invalid(_) => None,
    })
}

fn first_port(c: &strait_route::Cluster) -> Option<u16> {
    c.endpoints.first().map(|e| e.port())
}
