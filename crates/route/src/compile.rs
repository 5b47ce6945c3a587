//! Resource set → [`Snapshot`]: which Gateways are ours, which listeners are
//! valid, which routes attach where, what each backendRef resolves to.

use crate::backend::{BackendTarget, Resolver, WeightedBackend};
use crate::filter::{HeaderOps, Mirror, PathModifier, Redirect, Rewrite};
use crate::hosts::{intersect, HostTable};
use crate::l4::PortProtocol;
use crate::matcher::RouteMatch;
use crate::snapshot::{Entry, ListenKey, ListenerRoutes, PortTable, Rule, Snapshot, Timeouts};
use crate::status::{Condition, GatewayStatus, ListenerStatus, ParentStatus, RouteStatus};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use strait_config::gateway::{Listener, ReferenceGrantSpec};
use strait_config::httproute::{HttpRouteFilter, HttpRouteSpec};
use strait_config::meta::BackendObjectReference;
use strait_config::Object;
use strait_config::{duration, validate, Document, Problem, Resource, Source};

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// GatewayClasses with this `controllerName` are ours.
    pub controller_name: String,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            controller_name: strait_config::DEFAULT_CONTROLLER_NAME.into(),
        }
    }
}

/// A listener that passed validation, ready to take routes.
struct LiveListener<'a> {
    gateway_ns: &'a str,
    gateway: &'a str,
    spec: &'a Listener,
    key: ListenKey,
    status: usize,
    listener: usize,
    label: Arc<str>,
    /// (precedence tiebreak, entry) per effective hostname.
    vhosts: HostTable<Vec<(TieBreak, Entry)>>,
    protocol: PortProtocol,
    /// HTTPS listeners: the certificates to present.
    certs: Vec<crate::tls::TlsCert>,
}

/// Tiebreaks after the match's own precedence: oldest route, then
/// `namespace/name`, then rule and match order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TieBreak {
    pub created: (bool, String),
    pub route: String,
    pub rule: usize,
    pub matched: usize,
}

/// Compiles `docs`; certificates are checked to be valid at `now` (the
/// caller's clock: this crate reads none).
pub fn compile(
    docs: &[Document],
    opts: &CompileOptions,
    now: std::time::SystemTime,
) -> (Snapshot, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut snapshot = Snapshot::default();
    let ours: HashSet<&str> = docs
        .iter()
        .filter_map(|d| match &d.resource {
            Resource::GatewayClass(c) if c.spec.controller_name == opts.controller_name => {
                Some(c.metadata.name.as_str())
            }
            _ => None,
        })
        .collect();
    let namespaces = namespace_labels(docs);
    let grants: Vec<(&str, &ReferenceGrantSpec)> = docs
        .iter()
        .filter_map(|d| match &d.resource {
            Resource::ReferenceGrant(g) => Some((g.metadata.namespace(), &g.spec)),
            _ => None,
        })
        .collect();

    let mut listeners: Vec<LiveListener> = Vec::new();
    let mut other_gateways: HashSet<(&str, &str)> = HashSet::new();
    // Our listeners of protocols not served: a route naming one is refused
    // with NotAllowedByListeners rather than "no such parent".
    let mut other_protocols: Vec<(&str, &str, &Listener)> = Vec::new();
    let mut taken: HashSet<(ListenKey, Option<&str>)> = HashSet::new();
    let mut port_protocol: HashMap<ListenKey, PortProtocol> = HashMap::new();
    for doc in docs {
        let Resource::Gateway(gw) = &doc.resource else {
            continue;
        };
        let (ns, name) = (gw.metadata.namespace(), gw.metadata.name.as_str());
        if !ours.contains(gw.spec.gateway_class_name.as_str()) {
            other_gateways.insert((ns, name));
            continue;
        }
        let findings = validate::gateway(&gw.spec);
        for (path, msg) in &findings {
            problems.push(Problem::error(&doc.source, path.clone(), msg.clone()));
        }
        let status_index = snapshot.gateways.len();
        let mut status = GatewayStatus {
            namespace: ns.into(),
            name: name.into(),
            source: doc.source.clone(),
            conditions: vec![Condition::ok("Accepted", "Accepted")],
            listeners: Vec::new(),
        };
        for (i, l) in gw.spec.listeners.iter().enumerate() {
            let prefix = format!("spec.listeners[{i}].");
            let mut conditions = Vec::new();
            let invalid: Vec<&str> = findings
                .iter()
                .filter(|(p, _)| p.starts_with(&prefix))
                .map(|(_, m)| m.as_str())
                .collect();
            let port = u16::try_from(l.port).unwrap_or(0);
            let key = ListenKey {
                ip: gw.spec.ip_address(),
                port,
            };
            let protocol = PortProtocol::of(l);
            let certs = match (&protocol, invalid.is_empty()) {
                (Ok(PortProtocol::Https), true) => {
                    crate::tls::listener_certs(docs, &grants, ns, l, now).map(Some)
                }
                _ => Ok(None),
            };
            // Hostnames do not apply to TCP listeners (the spec ignores them).
            let hostname = match protocol {
                Ok(PortProtocol::Tcp) => None,
                _ => l.hostname.as_deref(),
            };
            if !invalid.is_empty() {
                conditions.push(Condition::failed("Accepted", "Invalid", invalid.join("; ")));
            } else if let Err((reason, msg)) = &certs {
                problems.push(Problem::error(
                    &doc.source,
                    format!("{prefix}tls"),
                    msg.clone(),
                ));
                conditions.push(Condition::failed("ResolvedRefs", reason, msg.clone()));
                conditions.push(Condition::failed("Programmed", "Invalid", msg.clone()));
            } else if let Err((field, reason, msg)) = &protocol {
                other_protocols.push((ns, name, l));
                problems.push(Problem::warning(
                    &doc.source,
                    format!("{prefix}{field}"),
                    msg.clone(),
                ));
                conditions.push(Condition::failed("Accepted", reason, msg.clone()));
            } else if protocol
                .as_ref()
                .is_ok_and(|&p| *port_protocol.entry(key).or_insert(p) != p)
            {
                let msg = format!(
                    "port {port} already serves another protocol than {} on this address",
                    l.protocol
                );
                problems.push(Problem::error(
                    &doc.source,
                    format!("{prefix}protocol"),
                    msg.clone(),
                ));
                conditions.push(Condition {
                    kind: "Conflicted",
                    status: true,
                    reason: "ProtocolConflict".into(),
                    message: msg.clone(),
                });
                conditions.push(Condition::failed("Programmed", "Invalid", msg));
            } else if !taken.insert((key, hostname)) {
                let msg = format!(
                    "another listener already serves port {port} for hostname {} on this address; \
                     Gateways sharing a port need their own spec.addresses",
                    l.hostname.as_deref().unwrap_or("*")
                );
                problems.push(Problem::error(
                    &doc.source,
                    format!("{prefix}hostname"),
                    msg.clone(),
                ));
                conditions.push(Condition {
                    kind: "Conflicted",
                    status: true,
                    reason: "HostnameConflict".into(),
                    message: msg.clone(),
                });
                conditions.push(Condition::failed("Programmed", "Invalid", msg));
            } else {
                conditions.push(Condition::ok("Accepted", "Accepted"));
                conditions.push(Condition::ok("Programmed", "Programmed"));
                listeners.push(LiveListener {
                    gateway_ns: ns,
                    gateway: name,
                    spec: l,
                    key,
                    status: status_index,
                    listener: status.listeners.len(),
                    label: format!("{ns}/{name}/{}", l.name).into(),
                    vhosts: HostTable::default(),
                    protocol: protocol.clone().unwrap_or(PortProtocol::Http),
                    certs: certs.ok().flatten().unwrap_or_default(),
                });
            }
            status.listeners.push(ListenerStatus {
                name: l.name.clone(),
                attached_routes: 0,
                conditions,
            });
        }
        snapshot.gateways.push(status);
    }

    let mut resolver = Resolver::new(docs);
    let mut mesh = crate::mesh::MeshBuilder::new(docs, &mut resolver);
    for doc in docs {
        let converted;
        let (route, kind) = match &doc.resource {
            Resource::HttpRoute(route) => (route, "HTTPRoute"),
            other => {
                let (metadata, spec, kind) = match other {
                    Resource::GrpcRoute(r) => {
                        (&r.metadata, crate::grpc::to_http(&r.spec), "GRPCRoute")
                    }
                    Resource::TlsRoute(r) => {
                        (&r.metadata, crate::l4::tls_to_http(&r.spec), "TLSRoute")
                    }
                    Resource::TcpRoute(r) => {
                        (&r.metadata, crate::l4::tcp_to_http(&r.spec), "TCPRoute")
                    }
                    _ => continue,
                };
                match spec {
                    Ok(spec) => {
                        converted = Object {
                            api_version: String::new(),
                            kind: kind.into(),
                            metadata: metadata.clone(),
                            spec,
                            status: None,
                        };
                        (&converted, kind)
                    }
                    Err(findings) => {
                        for (path, msg) in findings {
                            problems.push(Problem::error(&doc.source, path, msg));
                        }
                        continue;
                    }
                }
            }
        };
        let mut route_status = attach_route(
            doc,
            route,
            kind,
            &mut listeners,
            &other_gateways,
            &other_protocols,
            &namespaces,
            &grants,
            &mut resolver,
            &mut problems,
        );
        if matches!(kind, "HTTPRoute" | "GRPCRoute") {
            mesh.attach(
                doc,
                route,
                kind,
                &grants,
                &mut resolver,
                &mut problems,
                &mut route_status,
            );
        }
        snapshot.routes.extend(route_status);
    }

    for mut l in listeners {
        if let Some(ls) = snapshot
            .gateways
            .get_mut(l.status)
            .and_then(|gw| gw.listeners.get_mut(l.listener))
        {
            ls.attached_routes = count_routes(&l);
        }
        let mut vhosts = HostTable::default();
        let hostnames: Vec<Option<String>> = l.vhosts.iter().map(|(h, _)| h).collect();
        for h in hostnames {
            let mut list = std::mem::take(l.vhosts.entry(h.as_deref(), Vec::new));
            list.sort_by(|(ta, a), (tb, b)| {
                a.matcher
                    .precedence_cmp(&b.matcher)
                    .then_with(|| ta.cmp(tb))
            });
            *vhosts.entry(h.as_deref(), Vec::new) = list.into_iter().map(|(_, e)| e).collect();
        }
        let routes = ListenerRoutes {
            label: l.label,
            port: l.key.port,
            vhosts,
        };
        let protocol = l.protocol;
        let table = snapshot.ports.entry(l.key).or_insert_with(|| PortTable {
            protocol,
            ..PortTable::default()
        });
        table.tls.extend(l.certs);
        // Conflicting (port, hostname) pairs were refused above, so this slot is free.
        table
            .listeners
            .entry(l.spec.hostname.as_deref(), move || routes);
    }
    snapshot.mesh = mesh.finish();
    crate::traffic::problems(docs, &mut problems);
    crate::security::problems(docs, &mut problems);
    snapshot.security = crate::security::SecurityTable::new(docs);
    snapshot.policies = crate::backend_tls::policy_statuses(docs, &mut problems);
    let mut clusters: Vec<_> = resolver.clusters().cloned().collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    snapshot.clusters = clusters;
    (snapshot, problems)
}

fn count_routes(l: &LiveListener) -> usize {
    let routes: HashSet<&str> = l
        .vhosts
        .values()
        .flat_map(|v| v.iter().map(|(_, e)| &*e.rule.route))
        .collect();
    routes.len()
}

fn namespace_labels(docs: &[Document]) -> HashMap<String, BTreeMap<String, String>> {
    let mut out: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    for doc in docs {
        if let Resource::Namespace(n) = &doc.resource {
            let mut labels = n.metadata.labels.clone();
            labels.insert(
                "kubernetes.io/metadata.name".into(),
                n.metadata.name.clone(),
            );
            out.insert(n.metadata.name.clone(), labels);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn attach_route(
    doc: &Document,
    route: &Object<HttpRouteSpec>,
    kind: &'static str,
    listeners: &mut [LiveListener],
    other_gateways: &HashSet<(&str, &str)>,
    other_protocols: &[(&str, &str, &Listener)],
    namespaces: &HashMap<String, BTreeMap<String, String>>,
    grants: &[(&str, &ReferenceGrantSpec)],
    resolver: &mut Resolver,
    problems: &mut Vec<Problem>,
) -> Option<RouteStatus> {
    let ns = route.metadata.namespace();
    let route_name: Arc<str> = format!("{ns}/{}", route.metadata.name).into();
    let mut status = RouteStatus {
        kind,
        namespace: ns.into(),
        name: route.metadata.name.clone(),
        source: doc.source.clone(),
        parents: Vec::new(),
    };
    // Parents that are Gateways of another controller are not ours to report on.
    let parents: Vec<(usize, &strait_config::meta::ParentReference)> = route
        .spec
        .parent_refs
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            let gw_ns = p.namespace.as_deref().unwrap_or(ns);
            !other_gateways.contains(&(gw_ns, p.name.as_str())) && !crate::mesh::is_service(p)
        })
        .collect();
    if parents.is_empty() {
        return None;
    }
    let parent_label = |p: &strait_config::meta::ParentReference| {
        let mut s = format!("{}/{}", p.namespace.as_deref().unwrap_or(ns), p.name);
        if let Some(sec) = &p.section_name {
            s.push('/');
            s.push_str(sec);
        }
        if let Some(port) = p.port {
            s.push_str(&format!(":{port}"));
        }
        s
    };

    let findings = validate::http_route(&route.spec);
    if !findings.is_empty() {
        let reasons: Vec<String> = findings.iter().map(|(p, m)| format!("{p}: {m}")).collect();
        for (path, msg) in findings {
            problems.push(Problem::error(&doc.source, path, msg));
        }
        for (_, p) in &parents {
            status.parents.push(ParentStatus {
                parent: parent_label(p),
                reference: Some((*p).clone()),
                conditions: vec![Condition::failed(
                    "Accepted",
                    "UnsupportedValue",
                    reasons.join("; "),
                )],
            });
        }
        return Some(status);
    }

    let (rules, resolved) =
        compile_rules(doc, route, kind, &route_name, grants, resolver, problems);
    let created = route.metadata.creation_timestamp.clone();
    let mut attached_to: HashSet<usize> = HashSet::new();
    for (i, parent) in parents {
        let at = format!("spec.parentRefs[{i}]");
        let kind_ok = parent.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
            && parent.kind.as_deref().unwrap_or("Gateway") == "Gateway";
        let gw_ns = parent.namespace.as_deref().unwrap_or(ns);
        let mut refusal: Option<(&str, String)> = None;
        let named: Vec<usize> = listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| kind_ok && l.gateway_ns == gw_ns && l.gateway == parent.name)
            .filter(|(_, l)| {
                parent
                    .section_name
                    .as_ref()
                    .is_none_or(|s| *s == l.spec.name)
            })
            .filter(|(_, l)| parent.port.is_none_or(|p| p == i32::from(l.key.port)))
            .map(|(i, _)| i)
            .collect();
        let (candidates, wrong_protocol): (Vec<usize>, Vec<usize>) = named
            .iter()
            .partition(|&&li| listeners[li].protocol.route_kinds().contains(&kind));
        let other_protocol = other_protocols.iter().find(|(l_ns, l_gw, l)| {
            kind_ok
                && *l_ns == gw_ns
                && *l_gw == parent.name
                && parent.section_name.as_ref().is_none_or(|s| *s == l.name)
                && parent.port.is_none_or(|p| p == l.port)
        });
        let other_protocol = other_protocol
            .map(|(_, _, l)| *l)
            .or(wrong_protocol.first().map(|&li| listeners[li].spec));
        if let (true, Some(l)) = (candidates.is_empty(), other_protocol) {
            refusal = Some((
                "NotAllowedByListeners",
                format!(
                    "listener {} speaks {}; a {kind} cannot attach to it",
                    l.name, l.protocol
                ),
            ));
        } else if candidates.is_empty() {
            refusal = Some((
                "NoMatchingParent",
                format!(
                    "no listener of Gateway {gw_ns}/{} matches this parentRef",
                    parent.name
                ),
            ));
        }
        let allowed: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&li| allows(&listeners[li], kind, ns, namespaces))
            .collect();
        if refusal.is_none() && allowed.is_empty() {
            refusal = Some((
                "NotAllowedByListeners",
                "the listeners' allowedRoutes do not admit this route".into(),
            ));
        }
        let mut attached = 0;
        for li in allowed {
            let l = &mut listeners[li];
            let hosts: Vec<Option<String>> = if l.protocol == PortProtocol::Tcp {
                vec![None]
            } else if route.spec.hostnames.is_empty() {
                vec![l.spec.hostname.clone()]
            } else {
                route
                    .spec
                    .hostnames
                    .iter()
                    .filter_map(|h| intersect(l.spec.hostname.as_deref(), Some(h)))
                    .collect()
            };
            if hosts.is_empty() {
                continue;
            }
            attached += 1;
            if !attached_to.insert(li) {
                continue;
            }
            for host in hosts {
                let vhost = l.vhosts.entry(host.as_deref(), Vec::new);
                for (r, (matches, rule)) in rules.iter().enumerate() {
                    for (m, matcher) in matches.iter().enumerate() {
                        vhost.push((
                            TieBreak {
                                created: (created.is_none(), created.clone().unwrap_or_default()),
                                route: route_name.to_string(),
                                rule: r,
                                matched: m,
                            },
                            Entry {
                                matcher: matcher.clone(),
                                rule: rule.clone(),
                            },
                        ));
                    }
                }
            }
        }
        if refusal.is_none() && attached == 0 {
            refusal = Some((
                "NoMatchingListenerHostname",
                "no listener hostname intersects the route's hostnames".into(),
            ));
        }
        let mut conditions = Vec::new();
        match refusal {
            Some((reason, msg)) => {
                problems.push(Problem::error(&doc.source, at, msg.clone()));
                conditions.push(Condition::failed("Accepted", reason, msg));
            }
            None => conditions.push(Condition::ok("Accepted", "Accepted")),
        }
        conditions.push(resolved.clone());
        status.parents.push(ParentStatus {
            parent: parent_label(parent),
            reference: Some(parent.clone()),
            conditions,
        });
    }
    Some(status)
}

/// Does the listener's `allowedRoutes` admit a route of `kind` from `route_ns`?
fn allows(
    l: &LiveListener,
    kind: &str,
    route_ns: &str,
    namespaces: &HashMap<String, BTreeMap<String, String>>,
) -> bool {
    let allowed = l.spec.allowed_routes.clone().unwrap_or_default();
    let kind_ok = allowed.kinds.as_ref().is_none_or(|kinds| {
        kinds.is_empty()
            || kinds.iter().any(|k| {
                k.kind == kind && k.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
            })
    });
    let from = allowed.namespaces.clone().unwrap_or_default();
    let ns_ok = match from.from.as_deref().unwrap_or("Same") {
        "All" => true,
        "Selector" => {
            let default_labels: BTreeMap<String, String> = [(
                "kubernetes.io/metadata.name".to_string(),
                route_ns.to_string(),
            )]
            .into();
            let labels = namespaces.get(route_ns).unwrap_or(&default_labels);
            from.selector.as_ref().is_some_and(|s| s.matches(labels))
        }
        _ => route_ns == l.gateway_ns,
    };
    kind_ok && ns_ok
}

pub(crate) type CompiledRule = (Vec<RouteMatch>, Arc<Rule>);

pub(crate) fn compile_rules(
    doc: &Document,
    route: &Object<HttpRouteSpec>,
    kind: &str,
    route_name: &Arc<str>,
    grants: &[(&str, &ReferenceGrantSpec)],
    resolver: &mut Resolver,
    problems: &mut Vec<Problem>,
) -> (Vec<CompiledRule>, Condition) {
    let ns = route.metadata.namespace();
    let mut resolved = Condition::ok("ResolvedRefs", "ResolvedRefs");
    let mut fail = |source: &Source, path: String, reason: &str, msg: String| {
        problems.push(Problem::error(source, path, msg.clone()));
        if resolved.status {
            resolved = Condition::failed("ResolvedRefs", reason, msg);
        }
    };
    let mut out = Vec::new();
    for (r, rule) in route.spec.rules.iter().enumerate() {
        // Validation ran first, so a match that fails here is a gap between
        // validator and compiler: said, and the rule left out rather than
        // served with fewer matches (none would match everything).
        let mut matches: Vec<RouteMatch> = Vec::with_capacity(rule.matches.len());
        for (m, spec) in rule.matches.iter().enumerate() {
            match RouteMatch::compile(spec) {
                Ok(compiled) => matches.push(compiled),
                Err(e) => fail(
                    &doc.source,
                    format!("spec.rules[{r}].matches[{m}]"),
                    "UnsupportedValue",
                    format!("{e}; the rule is not served"),
                ),
            }
        }
        if matches.len() != rule.matches.len() {
            continue;
        }
        let mut target =
            |b: &BackendObjectReference,
             path: String,
             fail: &mut dyn FnMut(&Source, String, &str, String)| {
                let b_ns = b.namespace.as_deref().unwrap_or(ns);
                if !b.is_service() {
                    let msg = format!(
                        "backend kind {} is not supported",
                        b.kind.as_deref().unwrap_or("")
                    );
                    fail(&doc.source, path, "InvalidKind", msg.clone());
                    return BackendTarget::Invalid(msg);
                }
                if b_ns != ns && !granted(grants, kind, ns, "Service", b_ns, &b.name) {
                    let msg = format!(
                        "no ReferenceGrant in {b_ns} lets HTTPRoutes from {ns} use Service {}",
                        b.name
                    );
                    fail(&doc.source, path, "RefNotPermitted", msg.clone());
                    return BackendTarget::Invalid(msg);
                }
                match resolver.service(b_ns, &b.name, b.port.unwrap_or(0)) {
                    Ok(c) => BackendTarget::Cluster(c),
                    Err(msg) => {
                        fail(&doc.source, path, "BackendNotFound", msg.clone());
                        BackendTarget::Invalid(msg)
                    }
                }
            };
        let mut backends = Vec::new();
        for (b, backend) in rule.backend_refs.iter().enumerate() {
            let path = format!("spec.rules[{r}].backendRefs[{b}]");
            let t = target(&backend.target(), path, &mut fail);
            let (req, resp, _, _) = header_filters(&backend.filters);
            backends.push(WeightedBackend {
                weight: u32::try_from(backend.weight.unwrap_or(1)).unwrap_or(0),
                target: t,
                request_headers: req,
                response_headers: resp,
            });
        }
        let (request_headers, response_headers, redirect, rewrite) = header_filters(&rule.filters);
        let mut mirrors = Vec::new();
        for (f, filter) in rule.filters.iter().enumerate() {
            if let Some(m) = &filter.request_mirror {
                let path = format!("spec.rules[{r}].filters[{f}].requestMirror.backendRef");
                let per_million = match (&m.percent, &m.fraction) {
                    (Some(p), _) => u32::try_from(*p).unwrap_or(0) * 10_000,
                    (None, Some(fr)) => {
                        let den = i64::from(fr.denominator.unwrap_or(100).max(1));
                        u32::try_from(i64::from(fr.numerator) * 1_000_000 / den).unwrap_or(0)
                    }
                    (None, None) => 1_000_000,
                };
                mirrors.push(Mirror {
                    target: target(&m.backend_ref, path, &mut fail),
                    per_million,
                });
            }
        }
        let parse = |d: &Option<String>| {
            d.as_deref()
                .and_then(|s| duration::parse(s).ok())
                .filter(|d| !d.is_zero())
        };
        let timeouts = rule
            .timeouts
            .as_ref()
            .map(|t| Timeouts {
                request: parse(&t.request),
                backend_request: parse(&t.backend_request),
            })
            .unwrap_or_default();
        let total_weight = backends.iter().map(|b| u64::from(b.weight)).sum();
        let fault = crate::fault::of_rule(resolver.docs(), ns, &rule.filters);
        if let Some(Err(msg)) = &fault {
            fail(
                &doc.source,
                format!("spec.rules[{r}].filters"),
                "InvalidKind",
                msg.clone(),
            );
        }
        let retry = rule.retry.as_ref().map(|r| crate::RetryPolicy {
            codes: r
                .codes
                .iter()
                .filter_map(|c| u16::try_from(*c).ok())
                .collect(),
            attempts: r.attempts.and_then(|a| u32::try_from(a).ok()).unwrap_or(1),
            backoff: r
                .backoff
                .as_deref()
                .and_then(|b| duration::parse(b).ok())
                .unwrap_or(crate::retry::DEFAULT_BACKOFF),
        });
        out.push((
            matches,
            Arc::new(Rule {
                route: route_name.clone(),
                index: r,
                request_headers,
                response_headers,
                redirect,
                rewrite,
                mirrors,
                backends,
                total_weight,
                timeouts,
                retry,
                fault,
            }),
        ));
    }
    (out, resolved)
}

type Filters = (
    Option<HeaderOps>,
    Option<HeaderOps>,
    Option<Redirect>,
    Option<Rewrite>,
);

/// The non-mirror filters of a list (validated: each kind at most once).
fn header_filters(filters: &[HttpRouteFilter]) -> Filters {
    let mut out: Filters = (None, None, None, None);
    for f in filters {
        if let Some(h) = &f.request_header_modifier {
            out.0 = HeaderOps::compile(h).ok();
        }
        if let Some(h) = &f.response_header_modifier {
            out.1 = HeaderOps::compile(h).ok();
        }
        if let Some(r) = &f.request_redirect {
            out.2 = Some(Redirect {
                scheme: r.scheme.clone(),
                hostname: r.hostname.clone(),
                port: r.port.and_then(|p| u16::try_from(p).ok()),
                path: r.path.as_ref().and_then(PathModifier::compile),
                status: r
                    .status_code
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(302),
            });
        }
        if let Some(r) = &f.url_rewrite {
            out.3 = Some(Rewrite {
                hostname: r.hostname.as_deref().and_then(|h| h.parse().ok()),
                path: r.path.as_ref().and_then(PathModifier::compile),
            });
        }
    }
    out
}

/// Is there a ReferenceGrant in `to_ns` letting `from_kind` objects (a
/// Gateway API kind) of `from_ns` use the core `to_kind` object `name`?
pub(crate) fn granted(
    grants: &[(&str, &ReferenceGrantSpec)],
    from_kind: &str,
    from_ns: &str,
    to_kind: &str,
    to_ns: &str,
    name: &str,
) -> bool {
    grants.iter().any(|(grant_ns, g)| {
        *grant_ns == to_ns
            && g.from
                .iter()
                .any(|f| f.group == GATEWAY_GROUP && f.kind == from_kind && f.namespace == from_ns)
            && g.to.iter().any(|t| {
                t.group.is_empty()
                    && t.kind == to_kind
                    && t.name.as_deref().is_none_or(|n| n == name)
            })
    })
}
