//! The compiled, immutable routing state and the request-matching function.

use crate::backend::{Cluster, WeightedBackend};
use crate::filter::{HeaderOps, Mirror, Redirect, Rewrite};
use crate::hosts::HostTable;
use crate::matcher::{PathMatch, RequestView, RouteMatch};
use crate::status::{GatewayStatus, RouteStatus};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Where a listening socket is: the Gateway's own address (`None`: the
/// gateway process's `--bind-address`) and the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ListenKey {
    pub ip: Option<std::net::IpAddr>,
    pub port: u16,
}

/// `127.0.0.1:8080`, or `*:8080` for the process's bind address.
impl std::fmt::Display for ListenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip {
            Some(ip) => write!(f, "{}", std::net::SocketAddr::new(ip, self.port)),
            None => write!(f, "*:{}", self.port),
        }
    }
}

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Listeners by address and port, each port with its one protocol.
    pub ports: BTreeMap<ListenKey, PortTable>,
    pub gateways: Vec<GatewayStatus>,
    pub routes: Vec<RouteStatus>,
    /// BackendTLSPolicies, with their targets as parents.
    pub policies: Vec<RouteStatus>,
    /// Service destinations and their GAMMA routes, for sidecars.
    pub mesh: crate::mesh::MeshTable,
    /// PeerAuthentication and AuthorizationPolicy, for sidecars.
    pub security: crate::security::SecurityTable,
    /// TelemetryPolicies, for sidecars (a listener's are in its routes).
    pub telemetry: crate::telemetry::TelemetryTable,
    /// SecurityPolicies, for sidecars (a listener's and a rule's are
    /// theirs).
    pub authn: crate::authn::AuthnTable,
    /// RateLimitPolicies, for sidecars, and their status.
    pub ratelimit: crate::ratelimit::RateLimitTable,
    /// ApiSchemaPolicies, for sidecars, and their status.
    pub apischema: crate::apischema::ApiSchemaTable,
    pub clusters: Vec<Arc<Cluster>>,
}

/// The listeners sharing one port, told apart by hostname.
#[derive(Debug, Default)]
pub struct PortTable {
    pub protocol: crate::PortProtocol,
    pub listeners: HostTable<ListenerRoutes>,
    /// Certificates of the port's HTTPS listeners; empty for plain HTTP.
    pub tls: Vec<crate::tls::TlsCert>,
    /// How strait's own answers are written here (the first Gateway's
    /// on the port that names a page).
    pub errors: Option<Arc<crate::error_page::ErrorPage>>,
}

#[derive(Debug)]
pub struct ListenerRoutes {
    /// `namespace/gateway/listener`, the label used in metrics.
    pub label: Arc<str>,
    pub port: u16,
    pub(crate) vhosts: HostTable<crate::rules::RuleTable>,
    /// What TelemetryPolicies say for this listener.
    pub telemetry: crate::telemetry::Telemetry,
    /// A SecurityPolicy's token check for the listener or its Gateway
    /// (a rule's or route's own comes first).
    pub authn: Option<Arc<crate::authn::Authn>>,
    /// A RateLimitPolicy for the listener or its Gateway (a rule's or
    /// route's own comes first).
    pub ratelimit: Option<Arc<crate::ratelimit::RateLimit>>,
    /// An ApiSchemaPolicy for the listener or its Gateway (a rule's or
    /// route's own comes first).
    pub apischema: Option<Arc<crate::apischema::ApiSchema>>,
}

impl ListenerRoutes {
    /// A table with no hosts, to label traffic that is not matched by
    /// hostname (mesh destinations, a sidecar's inbound side).
    pub fn named(label: Arc<str>, port: u16) -> Self {
        ListenerRoutes {
            label,
            port,
            vhosts: HostTable::default(),
            telemetry: Default::default(),
            authn: None,
            ratelimit: None,
            apischema: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub matcher: RouteMatch,
    pub rule: Arc<Rule>,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Timeouts {
    pub request: Option<Duration>,
    pub backend_request: Option<Duration>,
}

/// One HTTPRoute rule, compiled.
#[derive(Debug)]
pub struct Rule {
    /// `namespace/name` of the route, the label used in metrics.
    pub route: Arc<str>,
    pub index: usize,
    // The filters most rules lack are boxed: a rule is 168 bytes instead
    // of 544 (10,000 routes: 3.6 MiB).
    pub request_headers: Option<Box<HeaderOps>>,
    pub response_headers: Option<Box<HeaderOps>>,
    pub redirect: Option<Box<Redirect>>,
    pub rewrite: Option<Box<Rewrite>>,
    /// The SecurityPolicy, CORS and session persistence, in one box.
    pub extras: Option<Box<Extras>>,
    pub mirrors: Vec<Mirror>,
    pub backends: Vec<WeightedBackend>,
    pub total_weight: u64,
    pub timeouts: Timeouts,
    pub retry: Option<Box<crate::RetryPolicy>>,
    /// The authorization service asked, fault injection and a direct
    /// answer, or why the rule's extension filters cannot apply (500).
    pub extensions: Option<Box<Result<crate::Extensions, String>>>,
}

impl Rule {
    /// A rule with no filters that sends everything to `target` (a
    /// Service's default in the mesh, a sidecar's workload).
    pub fn to(route: Arc<str>, target: crate::BackendTarget) -> Self {
        Rule {
            route,
            index: 0,
            request_headers: None,
            response_headers: None,
            redirect: None,
            rewrite: None,
            extras: None,
            mirrors: Vec::new(),
            backends: vec![crate::WeightedBackend {
                weight: 1,
                target,
                request_headers: None,
                response_headers: None,
            }],
            total_weight: 1,
            timeouts: Timeouts::default(),
            retry: None,
            extensions: None,
        }
    }

    /// A SecurityPolicy's token check for the rule or its route.
    pub fn authn(&self) -> Option<&Arc<crate::authn::Authn>> {
        self.extras.as_deref()?.authn.as_ref()
    }

    /// A RateLimitPolicy for the rule or its route.
    pub fn ratelimit(&self) -> Option<&Arc<crate::ratelimit::RateLimit>> {
        self.extras.as_deref()?.ratelimit.as_ref()
    }

    /// An ApiSchemaPolicy for the rule or its route.
    pub fn apischema(&self) -> Option<&Arc<crate::apischema::ApiSchema>> {
        self.extras.as_deref()?.apischema.as_ref()
    }

    /// The rule's CORS filter.
    pub fn cors(&self) -> Option<&crate::cors::Cors> {
        self.extras.as_deref()?.cors.as_ref()
    }

    /// The rule's BodyTransform filter (when its extensions resolve).
    pub fn transform(&self) -> Option<&crate::transform::BodyTransform> {
        self.extensions
            .as_deref()?
            .as_ref()
            .ok()?
            .transform
            .as_ref()
    }

    /// The rule's session persistence.
    pub fn session(&self) -> Option<&crate::session::Session> {
        self.extras.as_deref()?.session.as_ref()
    }

    /// Picks a backend by weight; `roll` is a random number. `None` when
    /// there is no backend or every weight is 0.
    pub fn pick(&self, roll: u64) -> Option<&WeightedBackend> {
        if self.total_weight == 0 {
            return None;
        }
        let mut point = roll % self.total_weight;
        for b in &self.backends {
            let w = u64::from(b.weight);
            if point < w {
                return Some(b);
            }
            point -= w;
        }
        None
    }
}

/// What few rules have, together: one pointer in every rule.
#[derive(Debug, Default)]
pub struct Extras {
    /// A SecurityPolicy's token check for the rule or its route.
    pub authn: Option<Arc<crate::authn::Authn>>,
    pub ratelimit: Option<Arc<crate::ratelimit::RateLimit>>,
    pub apischema: Option<Arc<crate::apischema::ApiSchema>>,
    pub cors: Option<crate::cors::Cors>,
    /// A session's requests to one endpoint.
    pub session: Option<crate::session::Session>,
}

/// The result of matching a request.
pub struct Matched<'a> {
    pub listener: &'a ListenerRoutes,
    pub rule: &'a Arc<Rule>,
    /// The PathPrefix that matched, for `ReplacePrefixMatch`.
    pub matched_prefix: Option<&'a str>,
}

impl Snapshot {
    /// The listener a hostname selects on a port (the SNI check uses it).
    pub fn listener(&self, at: ListenKey, host: &str) -> Option<&ListenerRoutes> {
        self.ports.get(&at)?.listeners.get(host)
    }

    /// Finds the rule for a request that came in on `port` for `host`
    /// (normalized: lower case, no port). `None` means 404.
    pub fn route<'a>(
        &'a self,
        at: ListenKey,
        host: &str,
        req: &RequestView<'_>,
    ) -> Option<Matched<'a>> {
        let listener = self.ports.get(&at)?.listeners.get(host)?;
        let entry = listener.vhosts.get(host)?.find(req)?;
        let matched_prefix = match &entry.matcher.path {
            PathMatch::Prefix(p) => Some(p.as_str()),
            _ => None,
        };
        Some(Matched {
            listener,
            rule: &entry.rule,
            matched_prefix,
        })
    }

    /// The rule a TLS passthrough or TCP connection follows: by SNI
    /// (`None`: no SNI, or a TCP port) among the port's listeners, then the
    /// first route in precedence order (the oldest). `None`: refuse it.
    pub fn l4_route(&self, at: ListenKey, sni: Option<&str>) -> Option<Matched<'_>> {
        let host = sni.unwrap_or("");
        let listener = self.ports.get(&at)?.listeners.get(host)?;
        let entry = listener.vhosts.get(host)?.entries().first()?;
        Some(Matched {
            listener,
            rule: &entry.rule,
            matched_prefix: None,
        })
    }

    /// The snapshot as JSON for `/config`: listeners, hosts, the ordered
    /// match table, clusters and status.
    pub fn describe(&self) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|(key, table)| {
                let listeners: Vec<Value> = table
                    .listeners
                    .iter()
                    .map(|(hostname, l)| {
                        let hosts: Vec<Value> = l
                            .vhosts
                            .iter()
                            .map(|(h, table)| {
                                let rules: Vec<Value> = table
                                    .entries()
                                    .iter()
                                    .map(|e| {
                                        json!({
                                            "route": &*e.rule.route,
                                            "rule": e.rule.index,
                                            "match": format!("{:?}", e.matcher),
                                            "backends": e.rule.backends.iter().map(|b| json!({
                                                "weight": b.weight, "target": b.target,
                                            })).collect::<Vec<_>>(),
                                        })
                                    })
                                    .collect();
                                json!({"hostname": h, "rules": rules})
                            })
                            .collect();
                        json!({"listener": &*l.label, "hostname": hostname, "hosts": hosts})
                    })
                    .collect();
                let certs: Vec<Value> = table
                    .tls
                    .iter()
                    .map(|c| json!({"hostname": c.hostname, "secret": c.secret}))
                    .collect();
                json!({
                    "address": key.ip, "port": key.port, "protocol": table.protocol,
                    "tls": certs, "listeners": listeners,
                })
            })
            .collect();
        json!({
            "ports": ports,
            "clusters": self.clusters.iter().map(|c| json!({
                "name": c.name, "endpoints": c.endpoints, "protocol": c.protocol,
                "tls": c.tls.as_ref().map(|t| json!({"policy": t.policy, "sni": t.server_name.to_str()})),
            })).collect::<Vec<_>>(),
            "policies": self.policies,
            "mesh": self.mesh.describe(),
            "gateways": self.gateways,
            "routes": self.routes,
        })
    }
}

#[cfg(test)]
mod tests {
    /// 10,000 routes hold 10,000 rules and their backends: the filters
    /// most lack stay boxed, so a new inline field shows up here.
    #[test]
    fn rules_and_backends_stay_small() {
        let rule = std::mem::size_of::<super::Rule>();
        let backend = std::mem::size_of::<crate::WeightedBackend>();
        assert!(backend <= 48, "WeightedBackend is {backend} bytes");
        // 168: a SecurityPolicy's check, CORS and session persistence are
        // one box (80 KB at 10,000 rules); later settings belong in it.
        assert!(rule <= 168, "Rule is {rule} bytes");
    }
}
