//! The index: every object the control plane knows, each with who may
//! receive it, versioned; and what changed from one version to the next.
//! Sources (the folder, a cluster) feed it documents; it never does I/O,
//! so it is tested without either.
//!
//! One bad object never blocks the others: a document that fails its
//! schema is reported and, if an earlier version of the same object was
//! good, that one stays in the index — as an API server's validation would
//! have refused the update and kept the object.

use crate::pb;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use strait_config::{Problem, Resource, Source};

/// Which proxies receive an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Everyone,
    Gateways,
    Sidecars,
    /// Sidecars of workloads in this namespace (their inbound policy).
    SidecarsIn(String),
    /// No proxy: ServiceAccount tokens, the CA's key, Secrets nothing uses.
    Nobody,
}

/// Who is asking, from its Hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Gateway,
    Sidecar { namespace: String },
}

impl Role {
    /// `gateway`, or `sidecar` with node `namespace/name`.
    pub fn of(role: &str, node: &str) -> Result<Role, String> {
        match role {
            "gateway" => Ok(Role::Gateway),
            "sidecar" => match node.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok(Role::Sidecar {
                    namespace: ns.to_string(),
                }),
                _ => Err(format!("sidecar node {node:?} is not namespace/name")),
            },
            other => Err(format!("role {other:?} is neither gateway nor sidecar")),
        }
    }
}

impl Scope {
    pub fn reaches(&self, role: &Role) -> bool {
        match (self, role) {
            (Scope::Everyone, _) => true,
            (Scope::Gateways, Role::Gateway) => true,
            (Scope::Sidecars, Role::Sidecar { .. }) => true,
            (Scope::SidecarsIn(ns), Role::Sidecar { namespace }) => ns == namespace,
            _ => false,
        }
    }
}

/// One object of the index.
#[derive(Debug, Clone, PartialEq)]
pub struct Indexed {
    pub entry: pb::Entry,
    pub scope: Scope,
    /// What decided its scope (kept with a last good version, so that
    /// the Secrets it uses still go where it goes).
    pub class: Class,
}

/// A version of everything.
#[derive(Debug, Default)]
pub struct Index {
    pub version: String,
    pub objects: BTreeMap<String, Arc<Indexed>>,
    /// Objects refused (their last good version, if any, is kept) and
    /// warnings, with file, document and field path.
    pub problems: Vec<Problem>,
}

/// What changed from `from` to the version it is published with: each
/// object changed or added (with its version before, if any), and each
/// removed (as it was), so that a proxy hears only of objects it could
/// see.
#[derive(Debug, Default)]
pub struct Delta {
    pub from: String,
    pub changed: Vec<(Option<Arc<Indexed>>, Arc<Indexed>)>,
    pub removed: Vec<Arc<Indexed>>,
}

/// What the server streams from: the current index and, when the version
/// before it is known, the change from it.
#[derive(Debug, Default)]
pub struct Published {
    pub index: Arc<Index>,
    pub delta: Option<Delta>,
}

impl Published {
    /// `next`, with its change from `previous` when there is one.
    pub fn next(previous: Option<&Index>, next: Arc<Index>) -> Published {
        let delta = previous.map(|prev| {
            let changed = next
                .objects
                .iter()
                .filter(|(k, v)| prev.objects.get(*k) != Some(*v))
                .map(|(k, v)| (prev.objects.get(k).cloned(), v.clone()))
                .collect();
            let removed = prev
                .objects
                .iter()
                .filter(|(k, _)| !next.objects.contains_key(*k))
                .map(|(_, v)| v.clone())
                .collect();
            Delta {
                from: prev.version.clone(),
                changed,
                removed,
            }
        });
        Published { index: next, delta }
    }
}

/// One document of a source, parsed and typed once.
#[derive(Debug, Clone)]
pub struct Doc {
    pub key: String,
    /// The object, if its schema is good.
    pub entry: Option<pb::Entry>,
    pub problems: Vec<Problem>,
    class: Class,
}

/// What decides an object's scope.
#[derive(Debug, Clone, PartialEq)]
pub enum Class {
    Fixed(Scope),
    /// A Secret: a token never leaves; others go where they are used.
    Secret {
        token: bool,
        ns: String,
        name: String,
    },
    /// A Gateway, in `ns`, and the Secrets its listeners name
    /// (namespace, name): they reach gateways when in its namespace or
    /// granted by a ReferenceGrant.
    Gateway {
        ns: String,
        secrets: Vec<(String, String)>,
    },
    /// A BackendTLSPolicy and the Secrets (of its namespace) it takes CA
    /// certificates from: their `ca.crt` alone reaches every proxy.
    CaUser(Vec<(String, String)>),
    /// A SecurityPolicy and the Secrets (of its namespace) holding its API
    /// keys and users: they reach gateways, where it is enforced.
    CredentialUser(Vec<(String, String)>),
    /// A ReferenceGrant in `ns`: which namespaces' Gateways may use which
    /// Secrets of it (`None`: all of them).
    Grant {
        ns: String,
        from: Vec<String>,
        secrets: Vec<Option<String>>,
    },
}

/// The documents of one file (or of one object of a cluster), or why it
/// could not be read at all.
pub type SourceDocs = Result<Vec<Doc>, Problem>;

/// Splits and types the text of one file.
pub fn documents(file: &str, text: &str) -> SourceDocs {
    let docs = strait_config::split_text(Path::new(file), text)?;
    let mut out = Vec::new();
    for (source, value) in docs {
        items(&source, "", value, &mut out);
    }
    Ok(out)
}

/// A `List`'s items are objects of their own.
fn items(source: &Source, prefix: &str, value: Value, out: &mut Vec<Doc>) {
    if value.is_null() {
        return;
    }
    let is_list = value.get("kind").and_then(Value::as_str) == Some("List")
        && value.get("apiVersion").and_then(Value::as_str) == Some("v1");
    if is_list {
        if let Some(Value::Array(list)) = value.get("items") {
            for (i, item) in list.iter().enumerate() {
                items(source, &format!("{prefix}items[{i}]."), item.clone(), out);
            }
        }
        return;
    }
    out.push(document(source, prefix, value));
}

/// One object, checked against its schema.
pub fn document(source: &Source, prefix: &str, value: Value) -> Doc {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let meta = value.get("metadata");
    let kind = text(value.get("kind"));
    // As the API server names objects: namespaced ones in `default`
    // unless told otherwise.
    let ns = match (kind.as_str(), text(meta.and_then(|m| m.get("namespace")))) {
        ("GatewayClass" | "Namespace", _) => String::new(),
        (_, ns) if ns.is_empty() => "default".to_string(),
        (_, ns) => ns,
    };
    let key = match strait_config::apischema::is_openapi(&value) {
        // Named by its file (relative to the folder), as ApiSchemaPolicy names it.
        true => format!("OpenAPI//{}", source.file.to_string_lossy()),
        false => format!("{kind}/{ns}/{}", text(meta.and_then(|m| m.get("name")))),
    };
    let json = value.to_string();
    let set = strait_config::parse_value(source, prefix, value);
    let (entry, class) = match set.documents.first() {
        Some(doc) if !set.has_errors() => (
            Some(pb::Entry {
                key: key.clone(),
                file: source.file.to_string_lossy().into_owned(),
                doc: u32::try_from(source.doc).unwrap_or(u32::MAX),
                prefix: prefix.to_string(),
                json,
            }),
            classify(&doc.resource),
        ),
        _ => (None, Class::Fixed(Scope::Nobody)),
    };
    Doc {
        key,
        entry,
        problems: set.problems,
        class,
    }
}

fn route_scope(parents: &[strait_config::meta::ParentReference]) -> Scope {
    let to_service = |p: &&strait_config::meta::ParentReference| {
        p.kind.as_deref() == Some("Service") && p.group.as_deref().unwrap_or("").is_empty()
    };
    let services = parents.iter().filter(to_service).count();
    match (services, parents.len() - services) {
        (0, _) => Scope::Gateways,
        (_, 0) => Scope::Sidecars,
        _ => Scope::Everyone,
    }
}

fn classify(resource: &Resource) -> Class {
    let ns = resource.metadata().namespace().to_string();
    match resource {
        Resource::GatewayClass(_) => Class::Fixed(Scope::Gateways),
        Resource::Gateway(g) => {
            let mut secrets = Vec::new();
            let gw_ns = ns.clone();
            for tls in g.spec.listeners.iter().filter_map(|l| l.tls.as_ref()) {
                for r in &tls.certificate_refs {
                    if r.kind.as_deref().unwrap_or("Secret") == "Secret" {
                        let at = r.namespace.clone().unwrap_or_else(|| ns.clone());
                        secrets.push((at, r.name.clone()));
                    }
                }
                for r in tls
                    .frontend_validation
                    .iter()
                    .flat_map(|f| &f.ca_certificate_refs)
                {
                    if r.kind.as_deref() == Some("Secret") {
                        let at = r.namespace.clone().unwrap_or_else(|| ns.clone());
                        secrets.push((at, r.name.clone()));
                    }
                }
            }
            Class::Gateway { ns: gw_ns, secrets }
        }
        Resource::HttpRoute(r) => Class::Fixed(route_scope(&r.spec.parent_refs)),
        Resource::GrpcRoute(r) => Class::Fixed(route_scope(&r.spec.parent_refs)),
        Resource::TlsRoute(r) => Class::Fixed(route_scope(&r.spec.parent_refs)),
        Resource::TcpRoute(r) => Class::Fixed(route_scope(&r.spec.parent_refs)),
        Resource::SecurityPolicy(p) => {
            let keys = p.spec.api_key_auth.iter().flat_map(|k| &k.credential_refs);
            let users = p.spec.basic_auth.iter().map(|b| &b.users);
            let secrets = keys
                .chain(users)
                .filter(|r| r.group.is_empty() && r.kind == "Secret")
                .map(|r| (ns.clone(), r.name.clone()))
                .collect();
            Class::CredentialUser(secrets)
        }
        Resource::BackendTlsPolicy(p) => {
            // Local references: a namespace written there is not honoured.
            let secrets = p
                .spec
                .validation
                .ca_certificate_refs
                .iter()
                .filter(|r| r.kind.as_deref() == Some("Secret"))
                .map(|r| (ns.clone(), r.name.clone()))
                .collect();
            Class::CaUser(secrets)
        }
        Resource::ReferenceGrant(g) => {
            let from = g
                .spec
                .from
                .iter()
                .filter(|f| f.group == "gateway.networking.k8s.io" && f.kind == "Gateway")
                .map(|f| f.namespace.clone())
                .collect();
            let secrets = g
                .spec
                .to
                .iter()
                .filter(|t| t.group.is_empty() && t.kind == "Secret")
                .map(|t| t.name.clone())
                .collect();
            Class::Grant { ns, from, secrets }
        }
        Resource::PeerAuthentication(_) => Class::Fixed(Scope::Sidecars),
        Resource::AuthorizationPolicy(_) => Class::Fixed(Scope::SidecarsIn(ns)),
        Resource::Secret(s) => Class::Secret {
            token: s.body.kind.as_deref() == Some("kubernetes.io/service-account-token"),
            ns,
            name: s.metadata.name.clone(),
        },
        Resource::BackendTrafficPolicy(_)
        | Resource::FaultInjection(_)
        | Resource::DirectResponse(_)
        | Resource::BodyTransform(_)
        | Resource::TelemetryPolicy(_)
        | Resource::RateLimitPolicy(_)
        | Resource::ApiSchemaPolicy(_)
        | Resource::OpenApi(_)
        | Resource::Service(_)
        | Resource::EndpointSlice(_)
        | Resource::Namespace(_)
        | Resource::ConfigMap(_) => Class::Fixed(Scope::Everyone),
    }
}

/// An object to index, before its scope is decided: key, entry, class.
type Candidate = (String, pb::Entry, Class);

/// The index of `sources` (in order; a source that cannot be read keeps
/// its objects from `previous`, a bad object its last good version).
pub fn build(sources: &[(String, Arc<SourceDocs>)], previous: Option<&Index>) -> Index {
    let (problems, candidates) = gather(sources, previous);
    let uses = SecretUses::of(&candidates);
    let objects = place(candidates, &uses);
    Index {
        version: version_of(&objects),
        objects,
        problems,
    }
}

/// Every problem of `sources`, and the objects to index: those read now
/// first, so that of the same object twice the one read now keeps its
/// key, then those carried over from `previous`.
fn gather(
    sources: &[(String, Arc<SourceDocs>)],
    previous: Option<&Index>,
) -> (Vec<Problem>, Vec<Candidate>) {
    let mut problems = Vec::new();
    let mut chosen: Vec<Candidate> = Vec::new();
    let mut carried: Vec<Candidate> = Vec::new();
    for (name, docs) in sources {
        match docs.as_ref() {
            Err(problem) => {
                problems.push(problem.clone());
                carried.extend(kept(previous, name));
            }
            Ok(docs) => {
                for doc in docs {
                    problems.extend(doc.problems.iter().cloned());
                    match &doc.entry {
                        Some(entry) => {
                            chosen.push((doc.key.clone(), entry.clone(), doc.class.clone()));
                        }
                        None => carried.extend(last_good(previous, &doc.key)),
                    }
                }
            }
        }
    }
    chosen.extend(carried);
    (problems, chosen)
}

/// What `previous` held of `file`: all of it stays while the file cannot
/// be read.
fn kept(previous: Option<&Index>, file: &str) -> Vec<Candidate> {
    previous
        .map(|p| {
            p.objects
                .values()
                .filter(|o| o.entry.file == file)
                .map(|o| (o.entry.key.clone(), o.entry.clone(), o.class.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The last good version of a refused object, if `previous` had one.
fn last_good(previous: Option<&Index>, key: &str) -> Option<Candidate> {
    let last = previous.and_then(|p| p.objects.get(key))?;
    Some((key.to_string(), last.entry.clone(), last.class.clone()))
}

/// Where Secrets go: a Gateway's certificates to gateways when the
/// Gateway may use them, and a SecurityPolicy's keys and users; a
/// BackendTLSPolicy's CA, `ca.crt` alone, to every proxy. Anything else
/// stays here.
struct SecretUses {
    for_gateways: BTreeSet<(String, String)>,
    ca_only: BTreeSet<(String, String)>,
}

impl SecretUses {
    fn of(candidates: &[Candidate]) -> SecretUses {
        let mut uses = SecretUses {
            for_gateways: BTreeSet::new(),
            ca_only: BTreeSet::new(),
        };
        for (_, _, class) in candidates {
            match class {
                Class::Gateway { ns: gw_ns, secrets } => {
                    for (ns, name) in secrets {
                        if granted(candidates, gw_ns, ns, name) {
                            uses.for_gateways.insert((ns.clone(), name.clone()));
                        }
                    }
                }
                Class::CaUser(secrets) => uses.ca_only.extend(secrets.iter().cloned()),
                Class::CredentialUser(secrets) => uses.for_gateways.extend(secrets.iter().cloned()),
                _ => {}
            }
        }
        uses
    }

    /// Who receives an object of `class`; a Secret that goes out for its
    /// CA alone has the rest of `entry` cut away.
    fn scope(&self, class: &Class, entry: &mut pb::Entry) -> Scope {
        match class {
            Class::Fixed(s) => s.clone(),
            Class::Gateway { .. } => Scope::Gateways,
            Class::CaUser(_) | Class::CredentialUser(_) | Class::Grant { .. } => Scope::Everyone,
            Class::Secret { token: true, .. } => Scope::Nobody,
            Class::Secret { ns, name, .. } => {
                let at = (ns.clone(), name.clone());
                if self.for_gateways.contains(&at) {
                    // A certificate's key: gateways only, even when a
                    // BackendTLSPolicy also names it (use a ConfigMap).
                    Scope::Gateways
                } else if self.ca_only.contains(&at) {
                    entry.json = ca_only_json(&entry.json);
                    Scope::Everyone
                } else {
                    Scope::Nobody
                }
            }
        }
    }
}

/// Whether a Gateway in `gw_ns` may use Secret `ns/name`: one of its own
/// namespace, or one a ReferenceGrant there lets it.
fn granted(candidates: &[Candidate], gw_ns: &str, ns: &str, name: &str) -> bool {
    gw_ns == ns
        || candidates.iter().any(|(_, _, c)| match c {
            Class::Grant {
                ns: g_ns,
                from,
                secrets,
            } => {
                g_ns == ns
                    && from.iter().any(|f| f == gw_ns)
                    && secrets
                        .iter()
                        .any(|s| s.as_deref().is_none_or(|s| s == name))
            }
            _ => false,
        })
}

/// The candidates with their scopes, by key.
fn place(candidates: Vec<Candidate>, uses: &SecretUses) -> BTreeMap<String, Arc<Indexed>> {
    let mut objects = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (mut key, mut entry, class) in candidates {
        let scope = uses.scope(&class, &mut entry);
        // The same object twice (two files): both are kept, and the
        // compiler reports the conflict as it would from a folder.
        if !seen.insert(key.clone()) {
            key = format!("{key}@{}:{}{}", entry.file, entry.doc, entry.prefix);
            entry.key = key.clone();
        }
        objects.insert(
            key,
            Arc::new(Indexed {
                entry,
                scope,
                class,
            }),
        );
    }
    objects
}

/// A version that changes whenever any proxy's view does.
fn version_of(objects: &BTreeMap<String, Arc<Indexed>>) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (key, o) in objects {
        (
            key,
            &o.entry.file,
            o.entry.doc,
            &o.entry.prefix,
            &o.entry.json,
        )
            .hash(&mut h);
        o.scope.hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// A Secret with nothing but its `ca.crt`: what a BackendTLSPolicy needs.
fn ca_only_json(json: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(json) else {
        return String::new();
    };
    for field in ["data", "stringData"] {
        if let Some(Value::Object(m)) = v.get_mut(field) {
            m.retain(|k, _| k == "ca.crt");
        }
    }
    if let Some(Value::Object(meta)) = v.get_mut("metadata") {
        meta.remove("annotations");
    }
    v.to_string()
}

/// Most JSON bytes in one part of an update: small parts keep the
/// control plane's buffers small however many proxies take a snapshot at
/// once.
pub const PART_BYTES: usize = 8 * 1024;

/// The parts that take a proxy from version `sent` to `published`, for
/// its role, made one at a time as the stream drains: the delta when the
/// proxy has the version it starts from, else the proxy's whole view.
/// Each part holds at most [`PART_BYTES`] of objects (or one bigger
/// object); the last has `more: false`.
pub struct Parts {
    published: Arc<Published>,
    role: Role,
    /// The delta's base, or empty for the whole view.
    base: String,
    /// Whole view: the last key sent. Delta: the next change to look at.
    after: Option<String>,
    next_change: usize,
    removed: Vec<String>,
    done: bool,
}

impl Parts {
    pub fn new(published: Arc<Published>, sent: Option<&str>, role: Role) -> Parts {
        let base = match &published.delta {
            Some(d) if sent == Some(d.from.as_str()) => d.from.clone(),
            _ => String::new(),
        };
        let mut removed = Vec::new();
        if let Some(d) = published.delta.as_ref().filter(|_| !base.is_empty()) {
            // Only what the proxy could see: it hears of nothing else.
            let seen = |o: &Arc<Indexed>| o.scope.reaches(&role);
            let gone = d.removed.iter().filter(|o| seen(o));
            removed.extend(gone.map(|o| o.entry.key.clone()));
            let left = d
                .changed
                .iter()
                .filter(|(before, now)| !seen(now) && before.as_ref().is_some_and(seen));
            removed.extend(left.map(|(_, now)| now.entry.key.clone()));
        }
        Parts {
            published,
            role,
            base,
            after: None,
            next_change: 0,
            removed,
            done: false,
        }
    }
}

impl Iterator for Parts {
    type Item = pb::Update;

    fn next(&mut self) -> Option<pb::Update> {
        if self.done {
            return None;
        }
        let mut part = pb::Update {
            version: self.published.index.version.clone(),
            base: self.base.clone(),
            entries: Vec::new(),
            removed: std::mem::take(&mut self.removed),
            more: true,
        };
        let mut size = 0;
        let mut take = |o: &Arc<Indexed>, part: &mut pb::Update| -> bool {
            if size > 0 && size + o.entry.json.len() > PART_BYTES {
                return false;
            }
            size += o.entry.json.len();
            part.entries.push(o.entry.clone());
            true
        };
        if self.base.is_empty() {
            use std::ops::Bound;
            let from = match &self.after {
                Some(k) => Bound::Excluded(k.clone()),
                None => Bound::Unbounded,
            };
            let rest = self.published.index.objects.range((from, Bound::Unbounded));
            let mut finished = true;
            for (key, o) in rest.filter(|(_, o)| o.scope.reaches(&self.role)) {
                if !take(o, &mut part) {
                    finished = false;
                    break;
                }
                self.after = Some(key.clone());
            }
            self.done = finished;
        } else {
            let changed = self
                .published
                .delta
                .as_ref()
                .map_or(&[][..], |d| &d.changed);
            self.done = true;
            while let Some((_, o)) = changed.get(self.next_change) {
                if o.scope.reaches(&self.role) && !take(o, &mut part) {
                    self.done = false;
                    break;
                }
                self.next_change += 1;
            }
        }
        part.more = !self.done;
        Some(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(files: &[(&str, &str)], previous: Option<&Index>) -> Index {
        let sources: Vec<(String, Arc<SourceDocs>)> = files
            .iter()
            .map(|(name, text)| (name.to_string(), Arc::new(documents(name, text))))
            .collect();
        build(&sources, previous)
    }

    const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: edge}\nspec:\n  gatewayClassName: strait\n  listeners: [{name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: shop-cert}]}}]\n";
    const SECRETS: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: shop-cert, namespace: edge}\ntype: kubernetes.io/tls\ndata: {tls.crt: eA==, tls.key: eA==}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: web-token, namespace: shop, annotations: {kubernetes.io/service-account.name: web}}\ntype: kubernetes.io/service-account-token\ndata: {token: eA==}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: unused, namespace: shop}\ndata: {x: eA==}\n";
    const MESH: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: pay, namespace: shop}\nspec: {ports: [{port: 80}]}\n---\napiVersion: policy.strait.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: pay-callers, namespace: shop}\nspec: {targetRefs: [{kind: Service, name: pay}], action: ALLOW, rules: [{from: [{serviceAccounts: [shop/web]}]}]}\n";

    /// The keys `role` receives, in order.
    fn keys(index: &Index, role: &Role) -> Vec<String> {
        let view = index.objects.values().filter(|o| o.scope.reaches(role));
        view.map(|o| o.entry.key.clone()).collect()
    }

    #[test]
    fn each_proxy_gets_what_it_needs_and_no_secret_it_does_not() {
        let i = index(
            &[("a.yaml", GATEWAY), ("b.yaml", SECRETS), ("c.yaml", MESH)],
            None,
        );
        assert!(i.problems.is_empty(), "{:?}", i.problems);
        assert_eq!(
            keys(&i, &Role::Gateway),
            [
                "Gateway/edge/gw",
                "Secret/edge/shop-cert",
                "Service/shop/pay"
            ]
        );
        let shop = Role::of("sidecar", "shop/web-0").expect("role");
        assert_eq!(
            keys(&i, &shop),
            ["AuthorizationPolicy/shop/pay-callers", "Service/shop/pay"]
        );
        let other = Role::of("sidecar", "other/x").expect("role");
        assert_eq!(keys(&i, &other), ["Service/shop/pay"]);
    }

    #[test]
    fn a_security_policy_s_secrets_reach_gateways_only() {
        let policy = "apiVersion: policy.strait.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {name: keys, namespace: shop}\nspec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]\n  apiKeyAuth: {credentialRefs: [{group: '', kind: Secret, name: unused}]}\n";
        let i = index(&[("b.yaml", SECRETS), ("p.yaml", policy)], None);
        assert!(i.problems.is_empty(), "{:?}", i.problems);
        assert_eq!(
            keys(&i, &Role::Gateway),
            ["Secret/shop/unused", "SecurityPolicy/shop/keys"]
        );
        let shop = Role::of("sidecar", "shop/web-0").expect("role");
        assert_eq!(keys(&i, &shop), ["SecurityPolicy/shop/keys"]);
    }

    #[test]
    fn a_bad_object_keeps_its_last_good_version_and_blocks_nothing() {
        let first = index(&[("a.yaml", GATEWAY), ("c.yaml", MESH)], None);
        let broken = MESH.replace("port: 80", "port: eighty");
        let added = "---\napiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec: {ports: [{port: 80}]}\n";
        let second = index(
            &[("a.yaml", GATEWAY), ("c.yaml", &format!("{broken}{added}"))],
            Some(&first),
        );
        let problem = second
            .problems
            .iter()
            .find(|p| p.is_error())
            .expect("reported");
        assert_eq!(problem.source.to_string(), "c.yaml:1");
        assert_eq!(problem.path, "spec.ports[0].port");
        // The good version of the Service stays; the new Service arrives.
        assert_eq!(
            second.objects["Service/shop/pay"],
            first.objects["Service/shop/pay"]
        );
        assert!(second.objects.contains_key("Service/shop/cart"));
        // A file that is not YAML keeps all its objects.
        let third = index(&[("a.yaml", GATEWAY), ("c.yaml", "a: [")], Some(&second));
        assert!(third.objects.contains_key("Service/shop/cart"));
        assert!(third.problems[0].message.contains("not valid YAML"));
    }

    #[test]
    fn deltas_name_what_changed_and_parts_stay_small() {
        let first = index(&[("a.yaml", GATEWAY), ("c.yaml", MESH)], None);
        let second = Arc::new(index(&[("c.yaml", &MESH.replace("80", "81"))], None));
        let published = Published::next(Some(&first), second.clone());
        let delta = published.delta.as_ref().expect("delta");
        assert_eq!(delta.from, first.version);
        let changed: Vec<&str> = delta
            .changed
            .iter()
            .map(|(_, o)| o.entry.key.as_str())
            .collect();
        assert_eq!(changed, ["Service/shop/pay"]);
        let removed: Vec<&str> = delta.removed.iter().map(|o| o.entry.key.as_str()).collect();
        assert_eq!(removed, ["Gateway/edge/gw"]);
        assert_ne!(first.version, second.version);

        let shop = Role::of("sidecar", "shop/web-0").expect("role");
        let parts: Vec<_> = Parts::new(Arc::new(published), Some(&first.version), shop).collect();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].base, first.version);
        assert_eq!(parts[0].entries.len(), 1);
        // The sidecar never saw the Gateway: it hears nothing of it.
        assert!(parts[0].removed.is_empty(), "{:?}", parts[0].removed);

        let many: String = (0..100)
            .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i:03}}}\ndata: {{x: {}}}\n", "x".repeat(1000)))
            .collect();
        let big = Arc::new(index(&[("m.yaml", &many)], None));
        let whole = Published::next(None, big);
        let parts: Vec<_> = Parts::new(Arc::new(whole), None, Role::Gateway).collect();
        // About 1 kB each: 7 to a part.
        assert_eq!(parts.len(), 15);
        assert!(parts
            .iter()
            .all(|p| p.entries.len() <= 7 && p.base.is_empty()));
        assert!(parts[..14].iter().all(|p| p.more) && !parts[14].more);
        let total: usize = parts.iter().map(|p| p.entries.len()).sum();
        assert_eq!(total, 100);
    }

    const CERT: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: shop-cert, namespace: certs}\ntype: kubernetes.io/tls\ndata: {tls.crt: eA==, tls.key: eA==, ca.crt: eA==}\n";

    #[test]
    fn another_namespace_s_certificate_needs_a_reference_grant() {
        let gw = GATEWAY.replace("{name: shop-cert}", "{name: shop-cert, namespace: certs}");
        let i = index(&[("a.yaml", &gw), ("b.yaml", CERT)], None);
        assert_eq!(i.objects["Secret/certs/shop-cert"].scope, Scope::Nobody);
        let grant = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: certs}\nspec: {from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: edge}], to: [{group: \"\", kind: Secret}]}\n";
        let i = index(
            &[("a.yaml", &gw), ("b.yaml", CERT), ("c.yaml", grant)],
            None,
        );
        assert_eq!(i.objects["Secret/certs/shop-cert"].scope, Scope::Gateways);
    }

    #[test]
    fn a_ca_secret_goes_out_with_its_ca_alone() {
        let policy = |ns: &str| {
            format!("apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: p, namespace: certs}}\nspec: {{targetRefs: [{{group: \"\", kind: Service, name: s}}], validation: {{hostname: s.example, caCertificateRefs: [{{group: \"\", kind: Secret, name: shop-cert{ns}}}]}}}}\n")
        };
        let i = index(&[("b.yaml", CERT), ("p.yaml", &policy(""))], None);
        assert!(i.problems.iter().all(|p| !p.is_error()), "{:?}", i.problems);
        let secret = &i.objects["Secret/certs/shop-cert"];
        assert_eq!(secret.scope, Scope::Everyone);
        assert!(secret.entry.json.contains("ca.crt"));
        assert!(
            !secret.entry.json.contains("tls.key"),
            "{}",
            secret.entry.json
        );
        // A policy elsewhere cannot reach into this namespace.
        let elsewhere = policy("").replace("namespace: certs}", "namespace: x}");
        let i = index(&[("b.yaml", CERT), ("p.yaml", &elsewhere)], None);
        assert_eq!(i.objects["Secret/certs/shop-cert"].scope, Scope::Nobody);
    }

    #[test]
    fn a_gateway_kept_at_its_last_good_version_keeps_its_certificate() {
        let first = index(&[("a.yaml", GATEWAY), ("b.yaml", SECRETS)], None);
        let broken = GATEWAY.replace("port: 443", "port: https");
        let second = index(&[("a.yaml", &broken), ("b.yaml", SECRETS)], Some(&first));
        assert!(second.problems.iter().any(|p| p.is_error()));
        assert_eq!(
            second.objects["Secret/edge/shop-cert"].scope,
            Scope::Gateways
        );
        assert_eq!(second.version, first.version);
    }

    #[test]
    fn list_items_are_objects_with_their_path() {
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n  spec: {ports: [{port: 80}]}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: b}\n  spec: {ports: [{port: x}]}\n";
        let i = index(&[("l.yaml", list)], None);
        assert!(i.objects.contains_key("Service/default/a"));
        assert_eq!(i.problems[0].path, "items[1].spec.ports[0].port");
    }
}
