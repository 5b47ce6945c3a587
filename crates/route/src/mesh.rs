//! The mesh's routing table (GAMMA): what a sidecar's outbound listener
//! does with a call to a Service. Every Service port is a destination; an
//! HTTPRoute or GRPCRoute whose parentRef is a `Service` replaces that
//! destination's default (all traffic to the Service's endpoints) with its
//! rules. A route in the Service's own namespace (a producer route) applies
//! to every caller; one in another namespace (a consumer route) applies to
//! callers in that namespace and, for them, takes the place of producer
//! routes. A call that matches no rule of a routed Service gets 404, as in
//! Linkerd and Istio.

use crate::backend::{BackendTarget, Resolver};
use crate::compile::{compile_rules, route_status, tie_breaks, CompiledRule, TieBreak};
use crate::matcher::RequestView;
use crate::rules::RuleTable;
use crate::snapshot::{Entry, ListenerRoutes, Matched, Rule};
use crate::status::{Condition, ParentStatus, RouteStatus};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use strait_config::gateway::ReferenceGrantSpec;
use strait_config::httproute::HttpRouteSpec;
use strait_config::meta::ParentReference;
use strait_config::{Document, Object, Problem, Resource};

/// The cluster's DNS suffix for Services.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

#[derive(Debug, Default)]
pub struct MeshTable {
    /// By (namespace, name, port).
    services: HashMap<(String, String, u16), MeshService>,
    /// ClusterIP → (namespace, name).
    by_ip: HashMap<IpAddr, (String, String)>,
    /// ClusterIP:port of Service ports whose `appProtocol` is not HTTP.
    opaque: std::collections::HashSet<std::net::SocketAddr>,
}

#[derive(Debug)]
struct MeshService {
    /// `namespace/name:port`, the label in metrics.
    routes: ListenerRoutes,
    /// No route attached: everything to the Service's endpoints.
    default: Arc<Rule>,
    /// Routes of the Service's namespace, in precedence order.
    producer: RuleTable,
    /// Routes of other namespaces, for callers in those namespaces.
    consumers: HashMap<String, RuleTable>,
}

/// What an outbound call resolves to.
pub enum MeshLookup<'a> {
    /// A rule to follow.
    Route(Matched<'a>),
    /// A routed Service, but no rule matches the request: 404.
    NoRule,
    /// Not a Service port strait knows: passed through or refused.
    Unknown,
}

impl MeshTable {
    /// The (namespace, name) a host names, as Kubernetes DNS resolves it
    /// for a pod in `client_ns`: `name`, `name.ns`, `name.ns.svc`,
    /// `name.ns.svc.cluster.local`, or a Service's ClusterIP.
    pub fn service_of(&self, host: &str, client_ns: &str) -> Option<(String, String)> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return self.by_ip.get(&ip).cloned();
        }
        let short = host
            .strip_suffix(&format!(".{CLUSTER_DOMAIN}"))
            .or_else(|| host.strip_suffix(".svc"))
            .unwrap_or(host);
        match short.split_once('.') {
            None => Some((client_ns.to_string(), short.to_string())),
            Some((name, ns)) if !ns.contains('.') => Some((ns.to_string(), name.to_string())),
            Some(_) => None,
        }
    }

    /// Is this ClusterIP:port a Service port of a non-HTTP `appProtocol`
    /// (carried as TCP without sniffing)?
    pub fn opaque(&self, dst: std::net::SocketAddr) -> bool {
        self.opaque.contains(&dst)
    }

    /// Routes a call from a workload in `client_ns` to `host:port`.
    pub fn route<'a>(
        &'a self,
        host: &str,
        port: u16,
        client_ns: &str,
        req: &RequestView<'_>,
    ) -> MeshLookup<'a> {
        let Some((ns, name)) = self.service_of(host, client_ns) else {
            return MeshLookup::Unknown;
        };
        let Some(service) = self.services.get(&(ns, name, port)) else {
            return MeshLookup::Unknown;
        };
        let table = match service.consumers.get(client_ns) {
            Some(own) => own,
            None => &service.producer,
        };
        if table.entries().is_empty() {
            return MeshLookup::Route(Matched {
                listener: &service.routes,
                rule: &service.default,
                matched_prefix: None,
            });
        }
        match table.find(req) {
            Some(entry) => MeshLookup::Route(Matched {
                listener: &service.routes,
                rule: &entry.rule,
                matched_prefix: match &entry.matcher.path {
                    crate::PathMatch::Prefix(p) => Some(p.as_str()),
                    _ => None,
                },
            }),
            None => MeshLookup::NoRule,
        }
    }

    /// The default rule of a Service port: for opaque (CONNECT) traffic,
    /// which no HTTP route can match.
    pub fn default_rule<'a>(
        &'a self,
        host: &str,
        port: u16,
        client_ns: &str,
    ) -> Option<Matched<'a>> {
        let (ns, name) = self.service_of(host, client_ns)?;
        let service = self.services.get(&(ns, name, port))?;
        Some(Matched {
            listener: &service.routes,
            rule: &service.default,
            matched_prefix: None,
        })
    }

    pub fn describe(&self) -> serde_json::Value {
        let mut out: Vec<serde_json::Value> = self
            .services
            .values()
            .map(|s| {
                let rules = |table: &RuleTable| -> Vec<serde_json::Value> {
                    table
                        .entries()
                        .iter()
                        .map(|e| {
                            serde_json::json!({
                                "route": &*e.rule.route, "rule": e.rule.index,
                                "match": format!("{:?}", e.matcher),
                            })
                        })
                        .collect()
                };
                serde_json::json!({
                    "service": &*s.routes.label,
                    "routes": rules(&s.producer),
                    "consumerRoutes": s.consumers.iter().map(|(ns, e)| (ns.clone(), rules(e))).collect::<HashMap<_, _>>(),
                })
            })
            .collect();
        out.sort_by(|a, b| a["service"].as_str().cmp(&b["service"].as_str()));
        serde_json::Value::Array(out)
    }
}

/// A destination's routes before sorting: producer routes, and consumer
/// routes by the callers' namespace, each entry with its tiebreak.
type PendingRoutes = (
    Vec<(TieBreak, Entry)>,
    HashMap<String, Vec<(TieBreak, Entry)>>,
);

/// Collects the mesh table while routes are compiled.
pub(crate) struct MeshBuilder {
    table: MeshTable,
    /// Entries with their tiebreaks, sorted at the end.
    pending: HashMap<(String, String, u16), PendingRoutes>,
}

impl MeshBuilder {
    /// Every Service port becomes a destination with its default rule.
    pub fn new(docs: &[Document], resolver: &mut Resolver) -> Self {
        let mut table = MeshTable::default();
        for doc in docs {
            let Resource::Service(s) = &*doc.resource else {
                continue;
            };
            let (ns, name) = (s.metadata.namespace(), s.metadata.name.as_str());
            let cluster_ip: Option<IpAddr> =
                s.spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
            if let Some(ip) = cluster_ip {
                table.by_ip.insert(ip, (ns.to_string(), name.to_string()));
                for p in &s.spec.ports {
                    if let (Ok(port), Some(app)) = (u16::try_from(p.port), &p.app_protocol) {
                        if !is_http(app) {
                            table.opaque.insert(std::net::SocketAddr::new(ip, port));
                        }
                    }
                }
            }
            for p in &s.spec.ports {
                let Ok(port) = u16::try_from(p.port) else {
                    continue;
                };
                let label: Arc<str> = format!("{ns}/{name}:{port}").into();
                let target = match resolver.service(ns, name, p.port) {
                    Ok(c) => BackendTarget::Cluster(c),
                    Err(msg) => BackendTarget::Invalid(msg),
                };
                let default = Arc::new(Rule::to(label.clone(), target));
                table.services.insert(
                    (ns.to_string(), name.to_string(), port),
                    MeshService {
                        routes: ListenerRoutes::named(label, port),
                        default,
                        producer: RuleTable::default(),
                        consumers: HashMap::new(),
                    },
                );
            }
        }
        MeshBuilder {
            table,
            pending: HashMap::new(),
        }
    }

    /// Attaches `route`'s Service parents; their statuses go into `status`.
    #[allow(clippy::too_many_arguments)]
    pub fn attach(
        &mut self,
        doc: &Document,
        route: &Object<HttpRouteSpec>,
        kind: &'static str,
        grants: &[(&str, &ReferenceGrantSpec)],
        resolver: &mut Resolver,
        problems: &mut Vec<Problem>,
        status: &mut Option<RouteStatus>,
    ) {
        let ns = route.metadata.namespace();
        let parents = service_parents(route);
        if parents.is_empty() {
            return;
        }
        let status = status.get_or_insert_with(|| route_status(doc, route, kind));
        let findings = strait_config::validate::http_route(&route.spec);
        if !findings.is_empty() {
            refuse_invalid(doc, ns, findings, &parents, problems, status);
            return;
        }
        if !route.spec.hostnames.is_empty() {
            problems.push(Problem::warning(
                &doc.source,
                "spec.hostnames",
                "hostnames do not apply to routes attached to a Service; ignored",
            ));
        }
        // A route that also has Gateway parents was compiled (and its
        // problems reported) on the Gateway side already.
        let mut scratch = Vec::new();
        let sink = if status.parents.is_empty() {
            &mut *problems
        } else {
            &mut scratch
        };
        let route_name: Arc<str> = format!("{ns}/{}", route.metadata.name).into();
        let (mut rules, resolved) =
            compile_rules(doc, route, kind, &route_name, grants, resolver, sink);
        // SecurityPolicy is checked at gateways only, for now: a caller's
        // sidecar must not take a token out of its workload's calls. A
        // route's RateLimitPolicy likewise: each caller's sidecar would
        // count alone; in the mesh it is the callee's workload's. An
        // ApiSchemaPolicy too: the callee's sidecar checks what it takes.
        for (_, rule) in &mut rules {
            if let Some(extras) = Arc::get_mut(rule).and_then(|r| r.extras.as_deref_mut()) {
                extras.authn = None;
                extras.ratelimit = None;
                extras.apischema = None;
            }
        }
        let tie = tie_breaks(route, &route_name);
        for (i, parent) in parents {
            let accepted = self.attach_parent(doc, ns, (i, parent), &rules, &tie, problems);
            status.parents.push(ParentStatus {
                parent: label(parent, ns),
                reference: Some(Box::new(parent.clone())),
                conditions: vec![accepted, resolved.clone()],
            });
        }
    }

    /// One Service parent's `Accepted` condition; the route's rules join
    /// the routes of every port of the Service it names.
    fn attach_parent(
        &mut self,
        doc: &Document,
        route_ns: &str,
        (i, parent): (usize, &ParentReference),
        rules: &[CompiledRule],
        tie: &dyn Fn(usize, usize) -> TieBreak,
        problems: &mut Vec<Problem>,
    ) -> Condition {
        let svc_ns = parent.namespace.as_deref().unwrap_or(route_ns);
        let ports = self.parent_ports(svc_ns, parent);
        if ports.is_empty() {
            let msg = format!(
                "no Service {svc_ns}/{}{} to attach to",
                parent.name,
                parent
                    .port
                    .map_or(String::new(), |p| format!(" with port {p}"))
            );
            problems.push(Problem::error(
                &doc.source,
                format!("spec.parentRefs[{i}]"),
                msg.clone(),
            ));
            return Condition::failed("Accepted", "NoMatchingParent", msg);
        }
        for port in ports {
            let list = self.pending_list((svc_ns, parent.name.as_str(), port), route_ns);
            add_entries(list, rules, tie);
        }
        Condition::ok("Accepted", "Accepted")
    }

    /// The ports of the Service in `svc_ns` that `parent` names: all of
    /// them when it names no port.
    fn parent_ports(&self, svc_ns: &str, parent: &ParentReference) -> Vec<u16> {
        self.table
            .services
            .keys()
            .filter(|(n, s, port)| {
                n == svc_ns
                    && *s == parent.name
                    && parent.port.is_none_or(|p| p == i32::from(*port))
            })
            .map(|(_, _, port)| *port)
            .collect()
    }

    /// Where a route of `route_ns` puts its entries for a Service port:
    /// among the producer routes when it is the Service's own namespace,
    /// else among that namespace's consumer routes.
    fn pending_list(
        &mut self,
        (svc_ns, svc, port): (&str, &str, u16),
        route_ns: &str,
    ) -> &mut Vec<(TieBreak, Entry)> {
        let (producer, consumers) = self
            .pending
            .entry((svc_ns.to_string(), svc.to_string(), port))
            .or_default();
        if svc_ns == route_ns {
            producer
        } else {
            consumers.entry(route_ns.to_string()).or_default()
        }
    }

    pub fn finish(mut self) -> MeshTable {
        let sorted = |mut list: Vec<(TieBreak, Entry)>| -> RuleTable {
            list.sort_by(|(ta, a), (tb, b)| {
                a.matcher
                    .precedence_cmp(&b.matcher)
                    .then_with(|| ta.cmp(tb))
            });
            RuleTable::new(list.into_iter().map(|(_, e)| e).collect())
        };
        for (key, (producer, consumers)) in self.pending {
            if let Some(service) = self.table.services.get_mut(&key) {
                service.producer = sorted(producer);
                service.consumers = consumers
                    .into_iter()
                    .map(|(ns, l)| (ns, sorted(l)))
                    .collect();
            }
        }
        self.table
    }
}

/// A route's parentRefs that name a Service, with their indices.
fn service_parents(route: &Object<HttpRouteSpec>) -> Vec<(usize, &ParentReference)> {
    route
        .spec
        .parent_refs
        .iter()
        .enumerate()
        .filter(|(_, p)| is_service(p))
        .collect()
}

/// A route that fails validation is refused by every Service parent; its
/// problems are reported here unless the Gateway side reported them.
fn refuse_invalid(
    doc: &Document,
    ns: &str,
    findings: Vec<strait_config::validate::Finding>,
    parents: &[(usize, &ParentReference)],
    problems: &mut Vec<Problem>,
    status: &mut RouteStatus,
) {
    let reasons: Vec<String> = findings.iter().map(|(p, m)| format!("{p}: {m}")).collect();
    if status.parents.is_empty() {
        for (path, msg) in findings {
            problems.push(Problem::error(&doc.source, path, msg));
        }
    }
    for (_, p) in parents {
        status.parents.push(ParentStatus {
            parent: label(p, ns),
            reference: Some(Box::new((*p).clone())),
            conditions: vec![Condition::failed(
                "Accepted",
                "UnsupportedValue",
                reasons.join("; "),
            )],
        });
    }
}

/// A route's rules into a destination's entries, each match with its
/// tiebreak.
fn add_entries(
    list: &mut Vec<(TieBreak, Entry)>,
    rules: &[CompiledRule],
    tie: &dyn Fn(usize, usize) -> TieBreak,
) {
    for (r, (matches, rule)) in rules.iter().enumerate() {
        for (m, matcher) in matches.iter().enumerate() {
            let entry = Entry {
                matcher: matcher.clone(),
                rule: rule.clone(),
            };
            list.push((tie(r, m), entry));
        }
    }
}

/// A parentRef naming a core `Service` (GAMMA).
pub(crate) fn is_service(p: &ParentReference) -> bool {
    p.group.as_deref() == Some("") && p.kind.as_deref() == Some("Service")
}

fn label(p: &ParentReference, ns: &str) -> String {
    let mut s = format!(
        "Service {}/{}",
        p.namespace.as_deref().unwrap_or(ns),
        p.name
    );
    if let Some(port) = p.port {
        s.push_str(&format!(":{port}"));
    }
    s
}

/// `appProtocol` values that are HTTP of some kind.
fn is_http(app_protocol: &str) -> bool {
    matches!(
        app_protocol,
        "http"
            | "https"
            | "http2"
            | "h2c"
            | "grpc"
            | "kubernetes.io/h2c"
            | "kubernetes.io/ws"
            | "kubernetes.io/wss"
    )
}
