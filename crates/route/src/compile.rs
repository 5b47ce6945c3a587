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
    errors: Option<Arc<crate::error_page::ErrorPage>>,
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
/// caller's clock: this crate reads none). Gateways first (which listeners
/// serve), then routes (where each attaches, and to which Services in the
/// mesh), then the policies.
pub fn compile(
    docs: &[Document],
    opts: &CompileOptions,
    now: std::time::SystemTime,
) -> (Snapshot, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut snapshot = Snapshot::default();
    let grants: Vec<(&str, &ReferenceGrantSpec)> = docs
        .iter()
        .filter_map(|d| match &*d.resource {
            Resource::ReferenceGrant(g) => Some((g.metadata.namespace(), &g.spec)),
            _ => None,
        })
        .collect();
    let mut gateways = Gateways::new(docs, opts, &grants, now);
    for doc in docs {
        if let Resource::Gateway(gw) = &*doc.resource {
            gateways.add(doc, gw, &mut snapshot.gateways, &mut problems);
        }
    }

    let namespaces = namespace_labels(docs);
    let mut resolver = Resolver::new(docs);
    let mut mesh = crate::mesh::MeshBuilder::new(docs, &mut resolver);
    for doc in docs {
        let Some((route, kind)) = as_http_route(doc, &mut problems) else {
            continue;
        };
        let mut route_status = attach_route(
            doc,
            &route,
            kind,
            &mut gateways,
            &namespaces,
            &grants,
            &mut resolver,
            &mut problems,
        );
        if matches!(kind, "HTTPRoute" | "GRPCRoute") {
            let (g, r) = (&grants, &mut resolver);
            mesh.attach(doc, &route, kind, g, r, &mut problems, &mut route_status);
        }
        snapshot.routes.extend(route_status);
    }

    snapshot.telemetry = crate::telemetry::TelemetryTable::new(docs);
    crate::telemetry::problems(docs, &mut problems);
    problems.append(&mut resolver.authn.take_problems());
    problems.append(&mut resolver.ratelimit.take_problems());
    problems.append(&mut resolver.apischema.take_problems());
    for l in gateways.live {
        let (ns, gw, name) = (l.gateway_ns, l.gateway, &l.spec.name);
        let attached = (
            resolver.authn.for_listener(ns, gw, name),
            resolver.ratelimit.for_listener(ns, gw, name),
            resolver.apischema.for_listener(ns, gw, name),
        );
        install_listener(l, attached, &mut snapshot);
    }
    snapshot.authn = std::mem::take(&mut resolver.authn);
    snapshot.ratelimit = std::mem::take(&mut resolver.ratelimit);
    snapshot.apischema = std::mem::take(&mut resolver.apischema);
    snapshot.routes.shrink_to_fit();
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

/// A route of any kind as the HTTPRoute it is compiled as (GRPCRoute,
/// TLSRoute and TCPRoute are converted); `None` for other kinds and for a
/// route that cannot be converted (its problems reported).
fn as_http_route<'a>(
    doc: &'a Document,
    problems: &mut Vec<Problem>,
) -> Option<(std::borrow::Cow<'a, Object<HttpRouteSpec>>, &'static str)> {
    let (metadata, spec, kind) = match &*doc.resource {
        Resource::HttpRoute(route) => {
            return Some((std::borrow::Cow::Borrowed(route), "HTTPRoute"))
        }
        Resource::GrpcRoute(r) => (&r.metadata, crate::grpc::to_http(&r.spec), "GRPCRoute"),
        Resource::TlsRoute(r) => (&r.metadata, crate::l4::tls_to_http(&r.spec), "TLSRoute"),
        Resource::TcpRoute(r) => (&r.metadata, crate::l4::tcp_to_http(&r.spec), "TCPRoute"),
        _ => return None,
    };
    match spec {
        Ok(spec) => {
            let converted = Object {
                api_version: String::new(),
                kind: kind.into(),
                metadata: metadata.clone(),
                spec,
                status: None,
            };
            Some((std::borrow::Cow::Owned(converted), kind))
        }
        Err(findings) => {
            for (path, msg) in findings {
                problems.push(Problem::error(&doc.source, path, msg));
            }
            None
        }
    }
}

/// The Gateways of a resource set as they are read: which are ours, and
/// the listeners that serve, with what each port is already taken by.
struct Gateways<'a> {
    docs: &'a [Document],
    grants: &'a [(&'a str, &'a ReferenceGrantSpec)],
    now: std::time::SystemTime,
    /// GatewayClasses whose controllerName is ours.
    ours: HashSet<&'a str>,
    live: Vec<LiveListener<'a>>,
    /// Gateways of other controllers: a route naming one is not ours to refuse.
    others: HashSet<(&'a str, &'a str)>,
    /// Our listeners of protocols not served: a route naming one is refused
    /// with NotAllowedByListeners rather than "no such parent".
    other_protocols: Vec<(&'a str, &'a str, &'a Listener)>,
    taken: HashSet<(ListenKey, Option<&'a str>)>,
    /// Each Gateway's error page, if it names one that resolves.
    errors: HashMap<(&'a str, &'a str), Option<Arc<crate::error_page::ErrorPage>>>,
    port_protocol: HashMap<ListenKey, PortProtocol>,
}

impl<'a> Gateways<'a> {
    fn new(
        docs: &'a [Document],
        opts: &CompileOptions,
        grants: &'a [(&'a str, &'a ReferenceGrantSpec)],
        now: std::time::SystemTime,
    ) -> Self {
        let ours = docs
            .iter()
            .filter_map(|d| match &*d.resource {
                Resource::GatewayClass(c) if c.spec.controller_name == opts.controller_name => {
                    Some(c.metadata.name.as_str())
                }
                _ => None,
            })
            .collect();
        Gateways {
            docs,
            grants,
            now,
            ours,
            live: Vec::new(),
            others: HashSet::new(),
            other_protocols: Vec::new(),
            taken: HashSet::new(),
            port_protocol: HashMap::new(),
            errors: HashMap::new(),
        }
    }

    /// Reads one Gateway: its status, and each listener that serves.
    fn add(
        &mut self,
        doc: &'a Document,
        gw: &'a Object<strait_config::gateway::GatewaySpec>,
        statuses: &mut Vec<GatewayStatus>,
        problems: &mut Vec<Problem>,
    ) {
        let (ns, name) = (gw.metadata.namespace(), gw.metadata.name.as_str());
        if !self.ours.contains(gw.spec.gateway_class_name.as_str()) {
            self.others.insert((ns, name));
            return;
        }
        let findings = validate::gateway(&gw.spec);
        for (path, msg) in &findings {
            problems.push(Problem::error(&doc.source, path.clone(), msg.clone()));
        }
        let errors = match crate::error_page::of_gateway(self.docs, ns, &gw.spec) {
            None => None,
            Some(Ok(page)) => Some(Arc::new(page)),
            Some(Err(msg)) => {
                let msg = format!("{msg}; strait's own answers stay plain text");
                let path = crate::error_page::PATH.to_string();
                problems.push(Problem::warning(&doc.source, path, msg));
                None
            }
        };
        self.errors.insert((ns, name), errors);
        let mut status = GatewayStatus {
            namespace: ns.into(),
            name: name.into(),
            source: doc.source.clone(),
            conditions: vec![Condition::ok("Accepted", "Accepted")],
            listeners: Vec::new(),
        };
        for (i, l) in gw.spec.listeners.iter().enumerate() {
            let prefix = format!("spec.listeners[{i}].");
            let invalid: Vec<&str> = findings
                .iter()
                .filter(|(p, _)| p.starts_with(&prefix))
                .map(|(_, m)| m.as_str())
                .collect();
            let at = (statuses.len(), status.listeners.len());
            let mut report = |field: &str, msg: &str, warning: bool| {
                let path = format!("{prefix}{field}");
                problems.push(match warning {
                    true => Problem::warning(&doc.source, path, msg.to_string()),
                    false => Problem::error(&doc.source, path, msg.to_string()),
                });
            };
            let conditions = self.listener(gw, l, &invalid, at, &mut report);
            status.listeners.push(ListenerStatus {
                name: l.name.clone(),
                attached_routes: 0,
                conditions,
            });
        }
        statuses.push(status);
    }

    /// One listener's conditions; a listener that serves joins `live`.
    /// `at` is where its status goes (Gateway, listener); `report` takes a
    /// field under the listener, a message, and whether it only warns.
    fn listener(
        &mut self,
        gw: &'a Object<strait_config::gateway::GatewaySpec>,
        l: &'a Listener,
        invalid: &[&str],
        at: (usize, usize),
        report: &mut dyn FnMut(&str, &str, bool),
    ) -> Vec<Condition> {
        match self.serve(gw, l, invalid, at, report) {
            Ok(()) => vec![
                Condition::ok("Accepted", "Accepted"),
                Condition::ok("Programmed", "Programmed"),
            ],
            Err(conditions) => conditions,
        }
    }

    /// A listener into `live`, or the conditions of one that cannot serve.
    fn serve(
        &mut self,
        gw: &'a Object<strait_config::gateway::GatewaySpec>,
        l: &'a Listener,
        invalid: &[&str],
        at: (usize, usize),
        report: &mut dyn FnMut(&str, &str, bool),
    ) -> Result<(), Vec<Condition>> {
        let (ns, name) = (gw.metadata.namespace(), gw.metadata.name.as_str());
        if !invalid.is_empty() {
            let msg = invalid.join("; ");
            return Err(vec![Condition::failed("Accepted", "Invalid", msg)]);
        }
        let port = listener_port(l, report)?;
        let key = ListenKey {
            ip: gw.spec.ip_address(),
            port,
        };
        let protocol = PortProtocol::of(l);
        let https = matches!(protocol, Ok(PortProtocol::Https));
        let certs = self.certs(ns, l, https, report)?;
        let protocol = match protocol {
            Ok(p) => p,
            Err((field, reason, msg)) => {
                self.other_protocols.push((ns, name, l));
                report(field, &msg, true);
                return Err(vec![Condition::failed("Accepted", reason, msg)]);
            }
        };
        self.claim(key, protocol, l, report)?;
        self.live.push(LiveListener {
            gateway_ns: ns,
            gateway: name,
            errors: self.errors.get(&(ns, name)).cloned().flatten(),
            spec: l,
            key,
            status: at.0,
            listener: at.1,
            label: format!("{ns}/{name}/{}", l.name).into(),
            vhosts: HostTable::default(),
            protocol,
            certs,
        });
        Ok(())
    }

    /// The certificates an HTTPS listener presents (other listeners
    /// present none), or its conditions when they do not resolve.
    fn certs(
        &self,
        ns: &str,
        l: &Listener,
        https: bool,
        report: &mut dyn FnMut(&str, &str, bool),
    ) -> Result<Vec<crate::tls::TlsCert>, Vec<Condition>> {
        if !https {
            return Ok(Vec::new());
        }
        crate::tls::listener_certs(self.docs, self.grants, ns, l, self.now).map_err(
            |(reason, msg)| {
                report("tls", &msg, false);
                vec![
                    Condition::failed("ResolvedRefs", reason, msg.clone()),
                    Condition::failed("Programmed", "Invalid", msg),
                ]
            },
        )
    }

    /// Takes the listener's port for its protocol and its hostname on
    /// this address, or the conditions of a listener that came second.
    fn claim(
        &mut self,
        key: ListenKey,
        protocol: PortProtocol,
        l: &'a Listener,
        report: &mut dyn FnMut(&str, &str, bool),
    ) -> Result<(), Vec<Condition>> {
        let port = key.port;
        // Hostnames do not apply to TCP listeners (the spec ignores them).
        let hostname = match protocol {
            PortProtocol::Tcp => None,
            _ => l.hostname.as_deref(),
        };
        if *self.port_protocol.entry(key).or_insert(protocol) != protocol {
            let msg = format!(
                "port {port} already serves another protocol than {} on this address",
                l.protocol
            );
            report("protocol", &msg, false);
            return Err(conflicted("ProtocolConflict", msg));
        }
        if !self.taken.insert((key, hostname)) {
            let msg = format!(
                "another listener already serves port {port} for hostname {} on this address; \
                 Gateways sharing a port need their own spec.addresses",
                l.hostname.as_deref().unwrap_or("*")
            );
            report("hostname", &msg, false);
            return Err(conflicted("HostnameConflict", msg));
        }
        Ok(())
    }
}

/// A listener's port (1-65535), or its conditions.
fn listener_port(
    l: &Listener,
    report: &mut dyn FnMut(&str, &str, bool),
) -> Result<u16, Vec<Condition>> {
    // Validation refuses such a port first; should the two ever
    // disagree, the listener is refused here rather than served on 0.
    let Some(port) = u16::try_from(l.port).ok().filter(|&p| p != 0) else {
        let msg = format!("{} is not a port (1-65535)", l.port);
        report("port", &msg, false);
        return Err(vec![Condition::failed("Accepted", "Invalid", msg)]);
    };
    Ok(port)
}

/// A listener's conditions when another took its port first.
fn conflicted(reason: &'static str, message: String) -> Vec<Condition> {
    vec![
        Condition {
            kind: "Conflicted",
            status: true,
            reason,
            message: message.clone(),
        },
        Condition::failed("Programmed", "Invalid", message),
    ]
}

/// A listener's SecurityPolicy, RateLimitPolicy and ApiSchemaPolicy.
type Attachments = (
    Option<Arc<crate::authn::Authn>>,
    Option<Arc<crate::ratelimit::RateLimit>>,
    Option<Arc<crate::apischema::ApiSchema>>,
);

/// A served listener into its port's table, its routes in precedence
/// order; its status learns how many routes attached.
fn install_listener(
    mut l: LiveListener,
    (authn, ratelimit, apischema): Attachments,
    snapshot: &mut Snapshot,
) {
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
        let entries = list.into_iter().map(|(_, e)| e).collect();
        *vhosts.entry(h.as_deref(), Default::default) = crate::rules::RuleTable::new(entries);
    }
    let telemetry = snapshot
        .telemetry
        .listener(l.gateway_ns, l.gateway, &l.spec.name);
    let routes = ListenerRoutes {
        label: l.label,
        port: l.key.port,
        vhosts,
        telemetry,
        authn,
        ratelimit,
        apischema,
    };
    let protocol = l.protocol;
    let table = snapshot.ports.entry(l.key).or_insert_with(|| PortTable {
        protocol,
        ..PortTable::default()
    });
    table.tls.extend(l.certs);
    if table.errors.is_none() {
        table.errors = l.errors;
    }
    // Conflicting (port, hostname) pairs were refused above, so this slot is free.
    table
        .listeners
        .entry(l.spec.hostname.as_deref(), move || routes);
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
        if let Resource::Namespace(n) = &*doc.resource {
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
    gateways: &mut Gateways,
    namespaces: &HashMap<String, BTreeMap<String, String>>,
    grants: &[(&str, &ReferenceGrantSpec)],
    resolver: &mut Resolver,
    problems: &mut Vec<Problem>,
) -> Option<RouteStatus> {
    let ns = route.metadata.namespace();
    let route_name: Arc<str> = format!("{ns}/{}", route.metadata.name).into();
    let mut status = route_status(doc, route, kind);
    let parents = gateway_parents(route, &gateways.others);
    if parents.is_empty() {
        return None;
    }
    // Exact: 10,000 routes' status lists at Vec's first capacity were 5 MiB.
    status.parents.reserve_exact(parents.len());
    let findings = validate::http_route(&route.spec);
    if !findings.is_empty() {
        refuse_invalid(doc, ns, findings, &parents, problems, &mut status);
        return Some(status);
    }

    let (rules, resolved) =
        compile_rules(doc, route, kind, &route_name, grants, resolver, problems);
    let tie = tie_breaks(route, &route_name);
    let mut attached_to: HashSet<usize> = HashSet::new();
    for (i, parent) in parents {
        let route_ref = (route, kind, namespaces);
        let refusal = attach_to_parent(gateways, parent, route_ref, &rules, &tie, &mut attached_to);
        status.parents.push(ParentStatus {
            parent: parent_label(parent, ns),
            reference: Some(Box::new(parent.clone())),
            conditions: vec![accepted(doc, i, refusal, problems), resolved.clone()],
        });
    }
    Some(status)
}

/// A route's status before any parent's is added.
pub(crate) fn route_status(
    doc: &Document,
    route: &Object<HttpRouteSpec>,
    kind: &'static str,
) -> RouteStatus {
    RouteStatus {
        kind,
        namespace: route.metadata.namespace().into(),
        name: route.metadata.name.clone(),
        source: doc.source.clone(),
        parents: Vec::new(),
    }
}

/// The tiebreaks of a route's matches, by rule and match index.
pub(crate) fn tie_breaks<'r>(
    route: &'r Object<HttpRouteSpec>,
    route_name: &'r str,
) -> impl Fn(usize, usize) -> TieBreak + 'r {
    move |rule: usize, matched: usize| {
        let created = route.metadata.creation_timestamp.clone();
        TieBreak {
            created: (created.is_none(), created.unwrap_or_default()),
            route: route_name.to_string(),
            rule,
            matched,
        }
    }
}

/// A route's parentRefs with their indices, but for Services (the mesh's)
/// and Gateways of another controller, which are not ours to report on.
fn gateway_parents<'r>(
    route: &'r Object<HttpRouteSpec>,
    others: &HashSet<(&str, &str)>,
) -> Vec<(usize, &'r strait_config::meta::ParentReference)> {
    let ns = route.metadata.namespace();
    route
        .spec
        .parent_refs
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            let gw_ns = p.namespace.as_deref().unwrap_or(ns);
            !others.contains(&(gw_ns, p.name.as_str())) && !crate::mesh::is_service(p)
        })
        .collect()
}

/// A route that fails validation: its problems, and every parent refusing it.
fn refuse_invalid(
    doc: &Document,
    ns: &str,
    findings: Vec<validate::Finding>,
    parents: &[(usize, &strait_config::meta::ParentReference)],
    problems: &mut Vec<Problem>,
    status: &mut RouteStatus,
) {
    let reasons: Vec<String> = findings.iter().map(|(p, m)| format!("{p}: {m}")).collect();
    for (path, msg) in findings {
        problems.push(Problem::error(&doc.source, path, msg));
    }
    for (_, p) in parents {
        status.parents.push(ParentStatus {
            parent: parent_label(p, ns),
            reference: Some(Box::new((*p).clone())),
            conditions: vec![Condition::failed(
                "Accepted",
                "UnsupportedValue",
                reasons.join("; "),
            )],
        });
    }
}

/// ParentRef `i`'s `Accepted` condition; a refusal is also a problem there.
fn accepted(
    doc: &Document,
    i: usize,
    refusal: Option<(&'static str, String)>,
    problems: &mut Vec<Problem>,
) -> Condition {
    match refusal {
        Some((reason, msg)) => {
            let at = format!("spec.parentRefs[{i}]");
            problems.push(Problem::error(&doc.source, at, msg.clone()));
            Condition::failed("Accepted", reason, msg)
        }
        None => Condition::ok("Accepted", "Accepted"),
    }
}

/// The route's rules into the listeners one parentRef names; `None` when
/// accepted, or the reason and message of the refusal. A listener takes a
/// route's rules once however many parentRefs name it (`attached_to`).
fn attach_to_parent(
    gateways: &mut Gateways,
    parent: &strait_config::meta::ParentReference,
    (route, kind, namespaces): (
        &Object<HttpRouteSpec>,
        &str,
        &HashMap<String, BTreeMap<String, String>>,
    ),
    rules: &[CompiledRule],
    tie: &dyn Fn(usize, usize) -> TieBreak,
    attached_to: &mut HashSet<usize>,
) -> Option<(&'static str, String)> {
    let ns = route.metadata.namespace();
    let listeners = &mut gateways.live;
    let candidates = match parent_listeners(parent, ns, kind, listeners, &gateways.other_protocols)
    {
        Ok(candidates) => candidates,
        Err(refusal) => return Some(refusal),
    };
    let allowed: Vec<usize> = candidates
        .into_iter()
        .filter(|&li| allows(&listeners[li], kind, ns, namespaces))
        .collect();
    if allowed.is_empty() {
        let msg = "the listeners' allowedRoutes do not admit this route";
        return Some(("NotAllowedByListeners", msg.into()));
    }
    let mut attached = 0;
    for li in allowed {
        let hosts = route_hosts(&listeners[li], &route.spec.hostnames);
        if hosts.is_empty() {
            continue;
        }
        attached += 1;
        if attached_to.insert(li) {
            add_rules(&mut listeners[li], hosts, rules, tie);
        }
    }
    let msg = "no listener hostname intersects the route's hostnames";
    (attached == 0).then(|| ("NoMatchingListenerHostname", msg.into()))
}

/// `namespace/name[/section][:port]`, how a parent is shown in status.
fn parent_label(p: &strait_config::meta::ParentReference, route_ns: &str) -> String {
    let mut s = format!("{}/{}", p.namespace.as_deref().unwrap_or(route_ns), p.name);
    if let Some(sec) = &p.section_name {
        s.push('/');
        s.push_str(sec);
    }
    if let Some(port) = p.port {
        s.push_str(&format!(":{port}"));
    }
    s
}

/// The listeners a parentRef names that take routes of `kind`, or why
/// there are none (a listener of another protocol, or none at all).
fn parent_listeners(
    parent: &strait_config::meta::ParentReference,
    route_ns: &str,
    kind: &str,
    listeners: &[LiveListener],
    other_protocols: &[(&str, &str, &Listener)],
) -> Result<Vec<usize>, (&'static str, String)> {
    let kind_ok = parent.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
        && parent.kind.as_deref().unwrap_or("Gateway") == "Gateway";
    let gw_ns = parent.namespace.as_deref().unwrap_or(route_ns);
    let names = |l_ns: &str, l_gw: &str, name: &str, port: i32| {
        kind_ok
            && l_ns == gw_ns
            && l_gw == parent.name
            && parent.section_name.as_ref().is_none_or(|s| *s == name)
            && parent.port.is_none_or(|p| p == port)
    };
    let (candidates, wrong_protocol): (Vec<usize>, Vec<usize>) = listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| names(l.gateway_ns, l.gateway, &l.spec.name, i32::from(l.key.port)))
        .map(|(i, _)| i)
        .partition(|&li| listeners[li].protocol.route_kinds().contains(&kind));
    if !candidates.is_empty() {
        return Ok(candidates);
    }
    let other_protocol = other_protocols
        .iter()
        .find(|(l_ns, l_gw, l)| names(l_ns, l_gw, &l.name, l.port))
        .map(|(_, _, l)| *l)
        .or(wrong_protocol.first().map(|&li| listeners[li].spec));
    Err(match other_protocol {
        Some(l) => (
            "NotAllowedByListeners",
            format!(
                "listener {} speaks {}; a {kind} cannot attach to it",
                l.name, l.protocol
            ),
        ),
        None => (
            "NoMatchingParent",
            format!(
                "no listener of Gateway {gw_ns}/{} matches this parentRef",
                parent.name
            ),
        ),
    })
}

/// The hostnames a route serves on a listener: the intersections of
/// theirs, the listener's own when the route names none, none for TCP.
fn route_hosts(l: &LiveListener, hostnames: &[String]) -> Vec<Option<String>> {
    if l.protocol == PortProtocol::Tcp {
        vec![None]
    } else if hostnames.is_empty() {
        vec![l.spec.hostname.clone()]
    } else {
        hostnames
            .iter()
            .filter_map(|h| intersect(l.spec.hostname.as_deref(), Some(h)))
            .collect()
    }
}

/// A route's rules into a listener's hosts, each match with its tiebreak.
fn add_rules(
    l: &mut LiveListener,
    hosts: Vec<Option<String>>,
    rules: &[CompiledRule],
    tie: &dyn Fn(usize, usize) -> TieBreak,
) {
    for host in hosts {
        let vhost = l.vhosts.entry(host.as_deref(), Vec::new);
        for (r, (matches, rule)) in rules.iter().enumerate() {
            for (m, matcher) in matches.iter().enumerate() {
                let entry = Entry {
                    matcher: matcher.clone(),
                    rule: rule.clone(),
                };
                vhost.push((tie(r, m), entry));
            }
        }
    }
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
    let mut c = RuleCompiler {
        source: &doc.source,
        ns: route.metadata.namespace(),
        kind,
        grants,
        resolver,
        problems,
        resolved: Condition::ok("ResolvedRefs", "ResolvedRefs"),
    };
    let out = route
        .spec
        .rules
        .iter()
        .enumerate()
        .filter_map(|(r, rule)| c.rule(route_name, r, rule))
        .collect();
    (out, c.resolved)
}

/// What compiling one route's rules needs, and the `ResolvedRefs`
/// condition its backend references earn (the first failure wins).
struct RuleCompiler<'c, 'd> {
    source: &'c Source,
    ns: &'c str,
    kind: &'c str,
    grants: &'c [(&'c str, &'c ReferenceGrantSpec)],
    resolver: &'c mut Resolver<'d>,
    problems: &'c mut Vec<Problem>,
    resolved: Condition,
}

impl RuleCompiler<'_, '_> {
    fn fail(&mut self, path: String, reason: &'static str, msg: String) {
        self.problems
            .push(Problem::error(self.source, path, msg.clone()));
        if self.resolved.status {
            self.resolved = Condition::failed("ResolvedRefs", reason, msg);
        }
    }

    /// Rule `r`, or `None` when one of its matches cannot be compiled.
    fn rule(
        &mut self,
        route_name: &Arc<str>,
        r: usize,
        rule: &strait_config::httproute::HttpRouteRule,
    ) -> Option<CompiledRule> {
        let matches = self.matches(r, rule)?;
        let mut backends = Vec::with_capacity(rule.backend_refs.len());
        for (b, backend) in rule.backend_refs.iter().enumerate() {
            let path = format!("spec.rules[{r}].backendRefs[{b}]");
            let (req, resp, _, _) = header_filters(&backend.filters);
            backends.push(WeightedBackend {
                weight: u32::try_from(backend.weight.unwrap_or(1)).unwrap_or(0),
                target: self.target(&backend.target(), path),
                request_headers: req,
                response_headers: resp,
            });
        }
        let (request_headers, response_headers, redirect, rewrite) = header_filters(&rule.filters);
        let mut mirrors = Vec::new();
        for (f, filter) in rule.filters.iter().enumerate() {
            if let Some(m) = &filter.request_mirror {
                let path = format!("spec.rules[{r}].filters[{f}].requestMirror.backendRef");
                mirrors.push(Mirror {
                    target: self.target(&m.backend_ref, path),
                    per_million: mirror_share(m),
                });
            }
        }
        let ext_auth = self.external_auth(route_name, r, rule);
        let mut extensions =
            crate::extension::of_rule(self.resolver.docs(), self.ns, &rule.filters);
        if let Some(Err(msg)) = &extensions {
            self.fail(
                format!("spec.rules[{r}].filters"),
                "InvalidKind",
                msg.clone(),
            );
        }
        // A rule whose extension filters are broken answers 500 before
        // anything is asked.
        match (&mut extensions, ext_auth) {
            (_, None) | (Some(Err(_)), _) => {}
            (Some(Ok(e)), Some(ext)) => e.ext_auth = Some(ext),
            (None, Some(ext)) => {
                extensions = Some(Ok(crate::Extensions {
                    ext_auth: Some(ext),
                    ..Default::default()
                }))
            }
        }
        let cors = rule
            .filters
            .iter()
            .find_map(|f| f.cors.as_deref())
            .map(crate::cors::Cors::compile);
        let session = rule
            .session_persistence
            .as_ref()
            .map(|s| crate::session::Session::compile(s, route_name, r));
        let (ns, name) = route_name.split_once('/').unwrap_or_default();
        let rule_name = rule.name.as_deref();
        let authn = self.resolver.authn.for_rule(self.kind, ns, name, rule_name);
        let ratelimit = (self.resolver.ratelimit).for_rule(self.kind, ns, name, rule_name);
        let apischema = (self.resolver.apischema).for_rule(self.kind, ns, name, rule_name);
        let any = authn.is_some()
            || ratelimit.is_some()
            || apischema.is_some()
            || cors.is_some()
            || session.is_some();
        let extras = any.then(|| {
            Box::new(crate::snapshot::Extras {
                authn,
                ratelimit,
                apischema,
                cors,
                session,
            })
        });
        let rule = Rule {
            route: route_name.clone(),
            index: r,
            request_headers,
            response_headers,
            redirect,
            rewrite,
            extras,
            mirrors,
            total_weight: backends.iter().map(|b| u64::from(b.weight)).sum(),
            backends,
            timeouts: timeouts(rule.timeouts.as_ref()),
            retry: rule.retry.as_ref().map(|r| Box::new(retry_policy(r))),
            extensions: extensions.map(Box::new),
        };
        Some((matches, Arc::new(rule)))
    }

    /// The rule's `ExternalAuth` filter (one: validation refuses two), or
    /// why it cannot be asked (the rule then answers 500).
    fn external_auth(
        &mut self,
        route_name: &Arc<str>,
        r: usize,
        rule: &strait_config::httproute::HttpRouteRule,
    ) -> Option<Result<crate::ext_auth::ExtAuth, String>> {
        let (f, filter) = rule
            .filters
            .iter()
            .enumerate()
            .find_map(|(f, filter)| Some((f, filter.external_auth.as_deref()?)))?;
        let at = format!("spec.rules[{r}].filters[{f}].externalAuth");
        // An invalid backend is said (and the route's status set) here.
        let found = match self.target(&filter.backend_ref, format!("{at}.backendRef")) {
            BackendTarget::Cluster(c) => c,
            BackendTarget::Invalid(why) => return Some(Err(format!("{at}.backendRef: {why}"))),
        };
        let label = format!("{} {route_name} rule {r} ExternalAuth", self.kind);
        let compiled = crate::ext_auth::of_filter(filter, &found, label);
        Some(compiled.map_err(|(field, why)| {
            let path = format!("{at}.{field}");
            self.fail(path.clone(), "UnsupportedValue", why.clone());
            format!("{path}: {why}")
        }))
    }

    /// Validation ran first, so a match that fails here is a gap between
    /// validator and compiler: said, and the rule left out rather than
    /// served with fewer matches (none would match everything).
    fn matches(
        &mut self,
        r: usize,
        rule: &strait_config::httproute::HttpRouteRule,
    ) -> Option<Vec<RouteMatch>> {
        let mut matches = Vec::with_capacity(rule.matches.len());
        for (m, spec) in rule.matches.iter().enumerate() {
            match RouteMatch::compile(spec) {
                Ok(compiled) => matches.push(compiled),
                Err(e) => self.fail(
                    format!("spec.rules[{r}].matches[{m}]"),
                    "UnsupportedValue",
                    format!("{e}; the rule is not served"),
                ),
            }
        }
        (matches.len() == rule.matches.len()).then_some(matches)
    }

    /// A backend reference: a Service this route may use, or why not.
    fn target(&mut self, b: &BackendObjectReference, path: String) -> BackendTarget {
        let (ns, kind) = (self.ns, self.kind);
        let b_ns = b.namespace.as_deref().unwrap_or(ns);
        let (reason, msg) = if !b.is_service() {
            let kind = b.kind.as_deref().unwrap_or("");
            (
                "InvalidKind",
                format!("backend kind {kind} is not supported"),
            )
        } else if b_ns != ns && !granted(self.grants, kind, ns, "Service", b_ns, &b.name) {
            let msg = format!(
                "no ReferenceGrant in {b_ns} lets HTTPRoutes from {ns} use Service {}",
                b.name
            );
            ("RefNotPermitted", msg)
        } else {
            match self.resolver.service(b_ns, &b.name, b.port.unwrap_or(0)) {
                Ok(c) => return BackendTarget::Cluster(c),
                Err(msg) => ("BackendNotFound", msg),
            }
        };
        self.fail(path, reason, msg.clone());
        BackendTarget::Invalid(msg)
    }
}

/// The share of requests a mirror gets, per million.
fn mirror_share(m: &strait_config::httproute::HttpRequestMirrorFilter) -> u32 {
    match (&m.percent, &m.fraction) {
        (Some(p), _) => u32::try_from(*p).unwrap_or(0) * 10_000,
        (None, Some(fr)) => {
            let den = i64::from(fr.denominator.unwrap_or(100).max(1));
            u32::try_from(i64::from(fr.numerator) * 1_000_000 / den).unwrap_or(0)
        }
        (None, None) => 1_000_000,
    }
}

/// A rule's timeouts; zero is no timeout.
fn timeouts(t: Option<&strait_config::httproute::HttpRouteTimeouts>) -> Timeouts {
    let parse = |d: &Option<String>| {
        d.as_deref()
            .and_then(|s| duration::parse(s).ok())
            .filter(|d| !d.is_zero())
    };
    t.map(|t| Timeouts {
        request: parse(&t.request),
        backend_request: parse(&t.backend_request),
    })
    .unwrap_or_default()
}

fn retry_policy(r: &strait_config::httproute::HttpRouteRetry) -> crate::RetryPolicy {
    crate::RetryPolicy {
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
    }
}

type Filters = (
    Option<Box<HeaderOps>>,
    Option<Box<HeaderOps>>,
    Option<Box<Redirect>>,
    Option<Box<Rewrite>>,
);

/// The non-mirror filters of a list (validated: each kind at most once).
fn header_filters(filters: &[HttpRouteFilter]) -> Filters {
    let mut out: Filters = (None, None, None, None);
    for f in filters {
        if let Some(h) = &f.request_header_modifier {
            out.0 = HeaderOps::compile(h).ok().map(Box::new);
        }
        if let Some(h) = &f.response_header_modifier {
            out.1 = HeaderOps::compile(h).ok().map(Box::new);
        }
        if let Some(r) = &f.request_redirect {
            out.2 = Some(Box::new(Redirect {
                scheme: r.scheme.clone(),
                hostname: r.hostname.clone(),
                port: r.port.and_then(|p| u16::try_from(p).ok()),
                path: r.path.as_ref().and_then(PathModifier::compile),
                status: r
                    .status_code
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(302),
            }));
        }
        if let Some(r) = &f.url_rewrite {
            out.3 = Some(Box::new(Rewrite {
                hostname: r.hostname.as_deref().and_then(|h| h.parse().ok()),
                path: r.path.as_ref().and_then(PathModifier::compile),
            }));
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
