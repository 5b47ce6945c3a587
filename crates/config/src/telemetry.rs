//! `TelemetryPolicy` (policy.strait.dev/v1alpha1): access logs and trace
//! sampling for a Gateway, one of its listeners, a workload's sidecar, or
//! everything in a namespace — over what the process's flags say. Where
//! logs go and where traces are exported stay the process's (flags).

use crate::backendtls::PolicyTargetRef;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "policy.strait.dev",
        version = "v1alpha1",
        kind = "TelemetryPolicy",
        namespaced,
        shortname = "tp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetryPolicySpec {
    /// Gateways (`{group: gateway.networking.k8s.io, kind: Gateway, name,
    /// sectionName?}`, `sectionName` a listener) and workloads (`{group:
    /// apps, kind: Deployment, name}`) of the policy's namespace; none:
    /// every Gateway and workload there.
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetRef>,
    pub access_log: Option<AccessLogSettings>,
    pub tracing: Option<TracingSettings>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogSettings {
    /// `false` turns the log off for the targets (default `true`).
    pub enabled: Option<bool>,
    /// The share of requests logged, 0 to 100 (default 100).
    pub sampling_percentage: Option<f64>,
    /// `json` or `text` (default: the process's `--access-log-format`).
    pub format: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingSettings {
    /// The share of new traces sampled, 0 to 100; a caller's decision
    /// (a sampled or unsampled `traceparent`) is kept whatever this says.
    pub sampling_percentage: f64,
}
