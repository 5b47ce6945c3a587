//! Policies attached the Gateway API way (GEP-713) to what a request
//! passes through — a Gateway (or one listener), an HTTPRoute/GRPCRoute
//! (or one named rule), a workload (`apps/Deployment`) for its sidecar's
//! inbound calls — in the target's namespace. The most specific wins
//! whole (rule over route, listener over Gateway; among equals the
//! oldest, then the first by name): policies do not merge. One table per
//! kind (SecurityPolicy, RateLimitPolicy, ApiSchemaPolicy), each with its status and
//! problems.

use crate::policy::{age, rank};
use crate::status::{AncestorStatus, Condition, PolicyStatus};
use std::sync::Arc;
use strait_config::backendtls::PolicyTargetRef;
use strait_config::meta::ObjectMeta;
use strait_config::{Document, Problem};

pub(crate) const GATEWAY_API: &str = "gateway.networking.k8s.io";

/// A field path and what is wrong there.
pub(crate) type Finding = (String, String);

#[derive(Debug)]
struct Held<T> {
    namespace: String,
    name: String,
    targets: Vec<PolicyTargetRef>,
    value: Arc<T>,
}

/// The policies of one kind, oldest first, and what is wrong with them.
#[derive(Debug)]
pub struct Attached<T> {
    kind: &'static str,
    policies: Vec<Held<T>>,
    problems: Vec<Problem>,
    statuses: Vec<PolicyStatus>,
}

/// A kind of policy a table holds.
pub trait Policy {
    /// Its `kind`, as status and messages name it.
    const KIND: &'static str;
}

impl<T: Policy> Default for Attached<T> {
    fn default() -> Self {
        Attached {
            kind: T::KIND,
            policies: Vec::new(),
            problems: Vec::new(),
            statuses: Vec::new(),
        }
    }
}

/// One policy compiled: its value, its errors and its warnings.
pub(crate) type Outcome<T> = (T, Vec<Finding>, Vec<Finding>);

impl<T: Policy> Attached<T> {
    /// The table of the documents' policies of this kind (`of` picks
    /// them, `targets` reads their targets), each made by `compile`,
    /// oldest first. An error's message ends with `on_error`.
    pub(crate) fn build<'d, S: 'd>(
        docs: &'d [Document],
        of: impl Fn(&'d Document) -> Option<&'d strait_config::Object<S>>,
        targets: impl Fn(&S) -> &[PolicyTargetRef],
        mut compile: impl FnMut(&'d strait_config::Object<S>) -> Outcome<T>,
        on_error: &str,
    ) -> Self {
        let mut table = Self::default();
        for (doc, p) in Self::sorted(docs, of) {
            let (value, errors, warnings) = compile(p);
            let compiled = Compiled {
                doc,
                meta: &p.metadata,
                targets: targets(&p.spec),
                value,
                errors,
                warnings,
            };
            table.add(docs, compiled, on_error);
        }
        table
    }
}

/// One policy as compiled, for [`Attached::add`].
struct Compiled<'a, T> {
    doc: &'a Document,
    meta: &'a ObjectMeta,
    targets: &'a [PolicyTargetRef],
    value: T,
    errors: Vec<Finding>,
    warnings: Vec<Finding>,
}

impl<T> Attached<T> {
    /// The documents' policies of this kind, oldest first.
    fn sorted<'d, S>(
        docs: &'d [Document],
        of: impl Fn(&'d Document) -> Option<&'d strait_config::Object<S>>,
    ) -> Vec<(&'d Document, &'d strait_config::Object<S>)> {
        let mut found: Vec<_> = docs.iter().filter_map(|d| Some((d, of(d)?))).collect();
        found.sort_by(|a, b| age(&a.1.metadata).cmp(&age(&b.1.metadata)));
        found
    }

    /// Adds the next policy (oldest first): its status, its problems (an
    /// error's message ends with `on_error`, what the policy's targets do
    /// until it is fixed), and the targets it loses to an older one.
    fn add(&mut self, docs: &[Document], p: Compiled<'_, T>, on_error: &str) {
        let status = self.status(docs, &p);
        self.statuses.push(status);
        for (path, msg) in &p.errors {
            let msg = format!("{msg}; {on_error}");
            self.problems.push(Problem::error(&p.doc.source, path, msg));
        }
        for (path, msg) in &p.warnings {
            self.problems
                .push(Problem::warning(&p.doc.source, path.clone(), msg.clone()));
        }
        self.conflicts(p.doc, p.meta, p.targets);
        self.policies.push(Held {
            namespace: p.meta.namespace().to_string(),
            name: p.meta.name.clone(),
            targets: p.targets.to_vec(),
            value: Arc::new(p.value),
        });
    }

    /// Each target's conditions: refused for the policy's errors, a
    /// target that is not there, or an older policy naming it.
    fn status(&self, docs: &[Document], p: &Compiled<'_, T>) -> PolicyStatus {
        let ns = p.meta.namespace();
        let said = |found: &[&Finding]| {
            let text: Vec<String> = found
                .iter()
                .map(|(path, msg)| format!("{path}: {msg}"))
                .collect();
            text.join("; ")
        };
        let all: Vec<&Finding> = p.errors.iter().collect();
        let unresolved: Vec<&Finding> = p.errors.iter().filter(|(_, m)| unresolved(m)).collect();
        let ancestors = p
            .targets
            .iter()
            .map(|t| {
                let accepted = if !all.is_empty() {
                    Condition::failed("Accepted", "Invalid", said(&all))
                } else if !target_exists(docs, ns, t) {
                    let msg = format!("no {} {ns}/{}", t.kind, t.name);
                    Condition::failed("Accepted", "TargetNotFound", msg)
                } else if let Some(o) = self.older(ns, t) {
                    let msg = format!(
                        "{} {ns}/{} is older and names the same target",
                        self.kind, o.name
                    );
                    Condition::failed("Accepted", "Conflicted", msg)
                } else {
                    Condition::ok("Accepted", "Accepted")
                };
                let resolved = match unresolved.is_empty() {
                    true => Condition::ok("ResolvedRefs", "ResolvedRefs"),
                    false => Condition::failed("ResolvedRefs", "InvalidRef", said(&unresolved)),
                };
                let mut reference = serde_json::json!({"group": t.group, "kind": t.kind, "name": t.name, "namespace": ns});
                if let Some(section) = &t.section_name {
                    reference["sectionName"] = section.clone().into();
                }
                AncestorStatus {
                    reference,
                    conditions: vec![accepted, resolved],
                }
            })
            .collect();
        PolicyStatus {
            kind: self.kind,
            namespace: ns.to_string(),
            name: p.meta.name.clone(),
            ancestors,
        }
    }

    /// Each policy's status, for the cluster.
    pub fn statuses(&self) -> &[PolicyStatus] {
        &self.statuses
    }

    /// The oldest policy of `ns` already naming target `t`: it applies
    /// there, not a younger one.
    fn older(&self, ns: &str, t: &PolicyTargetRef) -> Option<&Held<T>> {
        self.policies
            .iter()
            .find(|o| o.namespace == ns && o.targets.contains(t))
    }

    /// A younger policy naming a target an older one names is not applied
    /// there (Gateway API's conflict rule): said as a warning.
    fn conflicts(&mut self, doc: &Document, meta: &ObjectMeta, targets: &[PolicyTargetRef]) {
        let ns = meta.namespace();
        for (i, t) in targets.iter().enumerate() {
            if let Some(o) = self.older(ns, t) {
                let msg = format!(
                    "{} {ns}/{} is older and names the same target: this one does not apply to it",
                    self.kind, o.name
                );
                let path = format!("spec.targetRefs[{i}]");
                self.problems.push(Problem::warning(&doc.source, path, msg));
            }
        }
    }

    /// Every policy, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<T>> {
        self.policies.iter().map(|p| &p.value)
    }

    /// What the compile found wrong, once.
    pub fn take_problems(&mut self) -> Vec<Problem> {
        std::mem::take(&mut self.problems)
    }

    /// A rule (`rule` its name, if it has one) of route `ns/route` of
    /// `kind` (HTTPRoute or GRPCRoute), or the whole route.
    pub fn for_rule(
        &self,
        kind: &str,
        ns: &str,
        route: &str,
        rule: Option<&str>,
    ) -> Option<Arc<T>> {
        self.best(ns, |t| rank(t, kind, route, rule))
    }

    /// A workload's (`apps/Deployment` `workload` of `ns`), applied by its
    /// sidecar on every inbound call.
    pub fn for_workload(&self, ns: &str, workload: &str) -> Option<Arc<T>> {
        self.best(ns, |t| {
            (t.group == "apps" && t.kind == "Deployment" && t.name == workload).then_some(1)
        })
    }

    /// Listener `listener` of Gateway `ns/gateway`, or the whole Gateway.
    pub fn for_listener(&self, ns: &str, gateway: &str, listener: &str) -> Option<Arc<T>> {
        self.best(ns, |t| rank(t, "Gateway", gateway, Some(listener)))
    }

    fn best(&self, ns: &str, rank: impl Fn(&PolicyTargetRef) -> Option<u8>) -> Option<Arc<T>> {
        if self.policies.is_empty() {
            return None;
        }
        let mut best: Option<(u8, &Held<T>)> = None;
        for p in self.policies.iter().filter(|p| p.namespace == ns) {
            let Some(r) = p.targets.iter().filter_map(&rank).max() else {
                continue;
            };
            // Oldest first: a later one wins only by being more specific.
            if best.is_none_or(|(b, _)| r > b) {
                best = Some((r, p));
            }
        }
        best.map(|(_, p)| p.value.clone())
    }
}

/// An error that says a named object is not there.
fn unresolved(msg: &str) -> bool {
    ["no Secret ", "no ConfigMap ", "no Service ", " not found"]
        .iter()
        .any(|s| msg.contains(s))
}

/// Whether the object a policy names exists (a workload's Deployment is
/// not among what strait reads: taken as there).
fn target_exists(docs: &[Document], ns: &str, t: &PolicyTargetRef) -> bool {
    let found = |kind: &str| {
        docs.iter().any(|d| {
            let m = d.resource.metadata();
            d.resource.kind() == kind && m.namespace() == ns && m.name == t.name
        })
    };
    match t.kind.as_str() {
        "Gateway" | "HTTPRoute" | "GRPCRoute" => found(&t.kind),
        _ => true,
    }
}

/// What a policy may target: a Gateway, a route, or a workload.
pub(crate) fn check_targets(refs: &[PolicyTargetRef]) -> Vec<Finding> {
    let mut out = Vec::new();
    if refs.is_empty() {
        out.push(("spec.targetRefs".into(), "no target".into()));
    }
    for (i, t) in refs.iter().enumerate() {
        let ok = (t.group == GATEWAY_API
            && matches!(t.kind.as_str(), "Gateway" | "HTTPRoute" | "GRPCRoute"))
            || (t.group == "apps" && t.kind == "Deployment");
        if !ok {
            out.push((
                format!("spec.targetRefs[{i}]"),
                "targets are a Gateway, an HTTPRoute or a GRPCRoute (group gateway.networking.k8s.io), or a workload (group apps, kind Deployment)".into(),
            ));
        }
    }
    out
}
