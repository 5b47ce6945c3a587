//! TelemetryPolicy compiled: what a Gateway listener and a workload's
//! sidecar log and sample, over the process's flags. The most specific
//! policy that sets a part (`accessLog`, `tracing`) decides it: a listener
//! (by `sectionName`) over its Gateway over the namespace (no
//! `targetRefs`); a workload over its namespace; the oldest, then the
//! first by name, among equals.

use crate::policy::{age, rank};
use strait_config::backendtls::PolicyTargetRef;
use strait_config::telemetry::{AccessLogSettings, TelemetryPolicySpec, TracingSettings};
use strait_config::{Document, Object, Problem, Resource};

const GATEWAY_API: &str = "gateway.networking.k8s.io";

/// An access log line's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            other => Err(format!("{other:?}: the access log format is json or text")),
        }
    }
}

/// What policies say for one listener or workload; `None` leaves a
/// setting to the process's flags.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Telemetry {
    /// Requests logged out of a million; `Some(0)`: the log is off here.
    pub log_per_million: Option<u32>,
    pub log_format: Option<LogFormat>,
    /// The share of new traces sampled, 0.0 to 1.0.
    pub trace_ratio: Option<f64>,
}

#[derive(Debug)]
struct Policy {
    namespace: String,
    /// No targetRefs: every Gateway and workload of the namespace.
    everything: bool,
    targets: Vec<PolicyTargetRef>,
    telemetry: Telemetry,
    sets_log: bool,
    sets_trace: bool,
}

/// The valid policies, oldest first.
#[derive(Debug, Default)]
pub struct TelemetryTable {
    policies: Vec<Policy>,
}

impl TelemetryTable {
    pub fn new(docs: &[Document]) -> Self {
        let mut valid: Vec<&Object<TelemetryPolicySpec>> = docs
            .iter()
            .filter_map(|d| match &*d.resource {
                Resource::TelemetryPolicy(p) if check(&p.spec).is_empty() => Some(p),
                _ => None,
            })
            .collect();
        valid.sort_by(|a, b| age(&a.metadata).cmp(&age(&b.metadata)));
        let policies = valid.into_iter().map(compile_policy).collect();
        TelemetryTable { policies }
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Whether any policy turns an access log on (the process then opens
    /// one on stdout if its flags did not).
    pub fn logs(&self) -> bool {
        self.policies
            .iter()
            .any(|p| p.telemetry.log_per_million.is_some_and(|n| n > 0))
    }

    /// Whether any policy samples traces.
    pub fn traces(&self) -> bool {
        self.policies
            .iter()
            .any(|p| p.telemetry.trace_ratio.is_some_and(|r| r > 0.0))
    }

    /// Listener `listener` of Gateway `namespace/gateway`.
    pub fn listener(&self, namespace: &str, gateway: &str, listener: &str) -> Telemetry {
        self.merged(namespace, |p| {
            p.targets
                .iter()
                .filter_map(|t| rank(t, "Gateway", gateway, Some(listener)))
                .max()
        })
    }

    /// The sidecar of workload `namespace/workload`.
    pub fn workload(&self, namespace: &str, workload: &str) -> Telemetry {
        if self.policies.is_empty() {
            return Telemetry::default();
        }
        self.merged(namespace, |p| {
            p.targets
                .iter()
                .any(|t| t.group == "apps" && t.kind == "Deployment" && t.name == workload)
                .then_some(1)
        })
    }

    /// Each part from the most specific policy that sets it: `rank` says
    /// how specifically a policy names the target (`None`: not at all);
    /// a namespace-wide policy ranks 0.
    fn merged(&self, namespace: &str, rank: impl Fn(&Policy) -> Option<u8>) -> Telemetry {
        let mut ranked: Vec<(u8, &Policy)> = self
            .policies
            .iter()
            .filter(|p| p.namespace == namespace)
            .filter_map(|p| if p.everything { Some(0) } else { rank(p) }.map(|r| (r, p)))
            .collect();
        // Stable: the oldest first among equals.
        ranked.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
        let mut out = Telemetry::default();
        if let Some((_, p)) = ranked.iter().find(|(_, p)| p.sets_log) {
            out.log_per_million = p.telemetry.log_per_million;
            out.log_format = p.telemetry.log_format;
        }
        if let Some((_, p)) = ranked.iter().find(|(_, p)| p.sets_trace) {
            out.trace_ratio = p.telemetry.trace_ratio;
        }
        out
    }
}

fn compile_policy(p: &Object<TelemetryPolicySpec>) -> Policy {
    let log = p.spec.access_log.as_ref();
    let telemetry = Telemetry {
        log_per_million: log.map(|l| {
            let on = l.enabled.unwrap_or(true);
            let percent = if on {
                l.sampling_percentage.unwrap_or(100.0)
            } else {
                0.0
            };
            (percent * 10_000.0).round() as u32
        }),
        log_format: log.and_then(|l| l.format.as_deref()?.parse().ok()),
        trace_ratio: p
            .spec
            .tracing
            .as_ref()
            .map(|t| t.sampling_percentage / 100.0),
    };
    Policy {
        namespace: p.metadata.namespace().to_string(),
        everything: p.spec.target_refs.is_empty(),
        targets: p.spec.target_refs.clone(),
        telemetry,
        sets_log: log.is_some(),
        sets_trace: p.spec.tracing.is_some(),
    }
}

type Finding = (String, String);

fn check(spec: &TelemetryPolicySpec) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, t) in spec.target_refs.iter().enumerate() {
        let gateway = t.group == GATEWAY_API && t.kind == "Gateway";
        let workload = t.group == "apps" && t.kind == "Deployment" && t.section_name.is_none();
        if !gateway && !workload {
            out.push((
                format!("spec.targetRefs[{i}]"),
                "targets are {group: gateway.networking.k8s.io, kind: Gateway, sectionName?} or {group: apps, kind: Deployment}".into(),
            ));
        }
    }
    if let Some(log) = &spec.access_log {
        check_log(log, &mut out);
    }
    if let Some(TracingSettings {
        sampling_percentage,
    }) = &spec.tracing
    {
        check_percent(
            "spec.tracing.samplingPercentage",
            *sampling_percentage,
            &mut out,
        );
    }
    out
}

fn check_log(log: &AccessLogSettings, out: &mut Vec<Finding>) {
    if let Some(p) = log.sampling_percentage {
        check_percent("spec.accessLog.samplingPercentage", p, out);
    }
    if let Some(Err(e)) = log.format.as_deref().map(str::parse::<LogFormat>) {
        out.push(("spec.accessLog.format".into(), e));
    }
}

fn check_percent(path: &str, p: f64, out: &mut Vec<Finding>) {
    if !(0.0..=100.0).contains(&p) {
        out.push((
            path.into(),
            format!("{p} is not a percentage from 0 to 100"),
        ));
    }
}

/// Every TelemetryPolicy's problems, with file and field path; and a
/// warning for a target that names no Gateway or listener there is.
pub(crate) fn problems(docs: &[Document], out: &mut Vec<Problem>) {
    for doc in docs {
        let Resource::TelemetryPolicy(p) = &*doc.resource else {
            continue;
        };
        for (path, msg) in check(&p.spec) {
            let msg = format!("{msg}; the policy is not applied");
            out.push(Problem::error(&doc.source, path, msg));
        }
        let ns = p.metadata.namespace();
        for (i, t) in p.spec.target_refs.iter().enumerate() {
            if t.group == GATEWAY_API && t.kind == "Gateway" && !gateway_has(docs, ns, t) {
                let what = match &t.section_name {
                    Some(l) => format!("Gateway {ns}/{} has no listener {l:?}", t.name),
                    None => format!("there is no Gateway {ns}/{}", t.name),
                };
                let path = format!("spec.targetRefs[{i}]");
                out.push(Problem::warning(&doc.source, path, what));
            }
        }
    }
}

fn gateway_has(docs: &[Document], ns: &str, t: &PolicyTargetRef) -> bool {
    docs.iter().any(|d| match &*d.resource {
        Resource::Gateway(g) => {
            g.metadata.namespace() == ns
                && g.metadata.name == t.name
                && t.section_name
                    .as_deref()
                    .is_none_or(|s| g.spec.listeners.iter().any(|l| l.name == s))
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: shop}\nspec:\n  gatewayClassName: strait\n  listeners: [{name: web, port: 80, protocol: HTTP}, {name: api, port: 81, protocol: HTTP}]\n";

    fn policy(name: &str, spec: &str) -> String {
        format!("---\napiVersion: policy.strait.dev/v1alpha1\nkind: TelemetryPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}\n")
    }

    fn docs(yaml: &str) -> Vec<Document> {
        let set = strait_config::parse_text(Path::new("t.yaml"), yaml);
        assert!(!set.has_errors(), "{:?}", set.problems);
        set.documents
    }

    #[test]
    fn the_most_specific_policy_decides_each_part() {
        let yaml = [
            GATEWAY.to_string(),
            policy("ns", "  accessLog: {samplingPercentage: 1}\n  tracing: {samplingPercentage: 5}"),
            policy("gw", "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]\n  accessLog: {format: text}"),
            policy("api", "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: api}]\n  accessLog: {enabled: false}"),
            policy("checkout", "  targetRefs: [{group: apps, kind: Deployment, name: checkout}]\n  tracing: {samplingPercentage: 100}"),
        ]
        .concat();
        let t = TelemetryTable::new(&docs(&yaml));
        let web = t.listener("shop", "edge", "web");
        assert_eq!(web.log_per_million, Some(1_000_000));
        assert_eq!(web.log_format, Some(LogFormat::Text));
        assert_eq!(web.trace_ratio, Some(0.05));
        let api = t.listener("shop", "edge", "api");
        assert_eq!(api.log_per_million, Some(0));
        assert_eq!(api.trace_ratio, Some(0.05));
        let checkout = t.workload("shop", "checkout");
        assert_eq!(checkout.log_per_million, Some(10_000));
        assert_eq!(checkout.trace_ratio, Some(1.0));
        assert_eq!(t.workload("other", "checkout"), Telemetry::default());
        assert_eq!(t.listener("other", "edge", "web"), Telemetry::default());
        assert!(t.logs() && t.traces());
    }

    #[test]
    fn bad_policies_are_refused_with_their_field_and_not_applied() {
        let yaml = [
            GATEWAY.to_string(),
            policy("a", "  targetRefs: [{group: \"\", kind: Service, name: s}]\n  accessLog: {}"),
            policy("b", "  accessLog: {samplingPercentage: 150, format: xml}"),
            policy("c", "  tracing: {samplingPercentage: -1}"),
            policy("d", "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: nope}]\n  accessLog: {}"),
        ]
        .concat();
        let docs = docs(&yaml);
        let mut found = Vec::new();
        problems(&docs, &mut found);
        let paths: Vec<(&str, bool)> = found
            .iter()
            .map(|p| {
                (
                    p.path.as_str(),
                    p.severity == strait_config::Severity::Error,
                )
            })
            .collect();
        assert_eq!(
            paths,
            [
                ("spec.targetRefs[0]", true),
                ("spec.accessLog.samplingPercentage", true),
                ("spec.accessLog.format", true),
                ("spec.tracing.samplingPercentage", true),
                ("spec.targetRefs[0]", false),
            ],
            "{found:?}"
        );
        let t = TelemetryTable::new(&docs);
        assert_eq!(t.policies.len(), 1, "only the valid one, d");
        assert_eq!(t.listener("shop", "edge", "web"), Telemetry::default());
    }
}
