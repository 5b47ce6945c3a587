//! TLSRoute and TCPRoute as HTTPRoute: an L4 route is hostnames (the SNI
//! for TLSRoute, none for TCPRoute) and weighted backends, which is an
//! HTTPRoute whose one rule matches everything. The HTTPRoute machinery
//! then does attachment, hostname intersection, the oldest-route-wins
//! tiebreak and status; the data plane looks the rule up by SNI.

use strait_config::gateway::Listener;
use strait_config::httproute::{HttpBackendRef, HttpRouteRule, HttpRouteSpec};
use strait_config::l4route::{L4BackendRef, L4RouteRule, TcpRouteSpec, TlsRouteSpec};
use strait_config::meta::ParentReference;
use strait_config::validate::Finding;

/// What a listener's protocol carries, and so which route kinds attach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum PortProtocol {
    #[default]
    Http,
    Https,
    /// `protocol: TLS`, `tls.mode: Passthrough`: routed by SNI, never decrypted.
    TlsPassthrough,
    Tcp,
}

impl PortProtocol {
    /// The route kinds a listener of this protocol takes by default (and at all).
    pub fn route_kinds(self) -> &'static [&'static str] {
        match self {
            PortProtocol::Http | PortProtocol::Https => &["HTTPRoute", "GRPCRoute"],
            PortProtocol::TlsPassthrough => &["TLSRoute"],
            PortProtocol::Tcp => &["TCPRoute"],
        }
    }

    /// What a listener serves, or (field, reason, message) when strait does
    /// not serve it.
    pub(crate) fn of(l: &Listener) -> Result<PortProtocol, (&'static str, &'static str, String)> {
        let mode = l.tls.as_ref().and_then(|t| t.mode.as_deref());
        match (l.protocol.as_str(), mode) {
            ("HTTP", _) => Ok(PortProtocol::Http),
            ("HTTPS", _) => Ok(PortProtocol::Https),
            ("TLS", Some("Passthrough")) => Ok(PortProtocol::TlsPassthrough),
            ("TLS", _) => Err((
                "tls.mode",
                "UnsupportedValue",
                "TLS listeners are served with tls.mode Passthrough; terminate TLS with an HTTPS \
                 listener"
                    .into(),
            )),
            ("TCP", _) => Ok(PortProtocol::Tcp),
            (other, _) => Err((
                "protocol",
                "UnsupportedProtocol",
                format!("protocol {other} is not served; HTTP, HTTPS, TLS and TCP listeners are"),
            )),
        }
    }
}

pub(crate) fn tls_to_http(spec: &TlsRouteSpec) -> Result<HttpRouteSpec, Vec<Finding>> {
    convert(&spec.parent_refs, &spec.hostnames, &spec.rules)
}

pub(crate) fn tcp_to_http(spec: &TcpRouteSpec) -> Result<HttpRouteSpec, Vec<Finding>> {
    convert(&spec.parent_refs, &[], &spec.rules)
}

fn convert(
    parent_refs: &[ParentReference],
    hostnames: &[String],
    rules: &[L4RouteRule],
) -> Result<HttpRouteSpec, Vec<Finding>> {
    let mut findings = Vec::new();
    if rules.is_empty() {
        findings.push((
            "spec.rules".to_string(),
            "a route needs one rule".to_string(),
        ));
    }
    // The data plane forwards a connection by one rule; a second one could
    // never be chosen, so it is refused rather than ignored.
    if rules.len() > 1 {
        findings.push((
            "spec.rules[1]".to_string(),
            "only one rule is supported; a connection carries no request to match further rules on"
                .to_string(),
        ));
    }
    for (i, h) in hostnames.iter().enumerate() {
        if let Err(e) = strait_config::validate::hostname(h) {
            findings.push((format!("spec.hostnames[{i}]"), e));
        }
    }
    if !findings.is_empty() {
        return Err(findings);
    }
    Ok(HttpRouteSpec {
        parent_refs: parent_refs.to_vec(),
        hostnames: hostnames.to_vec(),
        rules: rules
            .iter()
            .map(|r| HttpRouteRule {
                name: r.name.clone(),
                matches: vec![Default::default()],
                filters: vec![],
                backend_refs: r.backend_refs.iter().map(backend).collect(),
                timeouts: None,
                retry: None,
                session_persistence: None,
            })
            .collect(),
    })
}

fn backend(b: &L4BackendRef) -> HttpBackendRef {
    HttpBackendRef {
        group: b.group.clone(),
        kind: b.kind.clone(),
        name: b.name.clone(),
        namespace: b.namespace.clone(),
        port: b.port,
        weight: b.weight,
        filters: vec![],
    }
}
