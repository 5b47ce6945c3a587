//! `BackendTrafficPolicy` (policy.strait.dev/v1alpha1): how strait spreads
//! and protects calls to a Service where Gateway API has no field for it —
//! load balancing, a circuit breaker, outlier detection. Attached to
//! Services with `targetRefs`, in the Service's namespace.

use crate::backendtls::PolicyTargetRef;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "policy.strait.dev",
        version = "v1alpha1",
        kind = "BackendTrafficPolicy",
        namespaced,
        shortname = "btp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendTrafficPolicySpec {
    pub target_refs: Vec<PolicyTargetRef>,
    pub load_balancer: Option<LoadBalancer>,
    pub circuit_breaker: Option<CircuitBreaker>,
    pub outlier_detection: Option<OutlierDetection>,
    pub retry_budget: Option<RetryBudget>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    /// `PeakEWMA` (the default), `RoundRobin`, `LeastRequest` or `ConsistentHash`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `ConsistentHash`: what a session is keyed on.
    pub consistent_hash: Option<HashOn>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashOn {
    pub header: Option<String>,
    pub cookie: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Requests in flight to the Service at once; more are answered 503.
    pub max_requests: Option<u32>,
    /// Connections open to the Service's endpoints at once; a request
    /// that needs another waits for one to come free.
    pub max_connections: Option<u32>,
    /// Requests waiting for a connection under `maxConnections`; more are
    /// answered 503 (default 1024, as Envoy).
    pub max_pending_requests: Option<u32>,
}

/// How many retries calls to the Service may add: at most `percent` of
/// the requests, plus `minRetriesPerSecond` whatever the traffic, counted
/// over `interval` (Linkerd's retry budget; defaults 20 %, 10/s, 10s).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    pub percent: Option<u32>,
    pub min_retries_per_second: Option<u32>,
    pub interval: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Consecutive 5xx answers or failed connections that eject an endpoint.
    pub consecutive_failures: Option<u32>,
    /// The first ejection's length; each later one is longer by as much.
    pub base_ejection_time: Option<String>,
    /// Most endpoints out at once, in percent (at least one may always go).
    pub max_ejection_percent: Option<u32>,
}

/// `FaultInjection` (policy.strait.dev/v1alpha1), used from an HTTPRoute
/// rule as an `ExtensionRef` filter: delays or aborts a share of the
/// rule's requests, to test how callers cope.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "policy.strait.dev",
        version = "v1alpha1",
        kind = "FaultInjection",
        namespaced,
        shortname = "fi"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultInjectionSpec {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    pub fixed_delay: String,
    /// Share of requests delayed, 0-100 (default 100).
    pub percentage: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    pub http_status: u16,
    /// Share of requests aborted, 0-100 (default 100).
    pub percentage: Option<f64>,
}

/// `DirectResponse` (policy.strait.dev/v1alpha1), used from an HTTPRoute
/// rule as an `ExtensionRef` filter: the rule's requests are answered by
/// strait with this status and body, and go to no backend. Shaped as
/// Envoy Gateway's `directResponse`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "policy.strait.dev",
        version = "v1alpha1",
        kind = "DirectResponse",
        namespaced,
        shortname = "dr"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectResponseSpec {
    /// 200-599.
    pub status_code: u16,
    /// The body's `Content-Type`; `text/plain; charset=utf-8` when unset.
    pub content_type: Option<String>,
    /// Inline, or a ConfigMap's key `response.body`; none when unset.
    pub body: Option<crate::core::InlineOrRef>,
}

/// `BodyTransform` (policy.strait.dev/v1alpha1), used from an HTTPRoute
/// rule as an `ExtensionRef` filter: the rule's request and answer
/// bodies, read whole within a bound, converted between JSON and XML
/// and their JSON fields edited.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "policy.strait.dev",
        version = "v1alpha1",
        kind = "BodyTransform",
        namespaced,
        shortname = "bt"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BodyTransformSpec {
    /// The most bytes of a body read to transform it, before and after
    /// (default 1 MiB, at most 16 MiB): a longer request is refused with
    /// `413`, a longer answer with `502`.
    pub max_body_bytes: Option<u64>,
    /// What is done to the client's body before the backend gets it.
    pub request: Option<BodyEdit>,
    /// What is done to the backend's answer before the client gets it.
    pub response: Option<BodyEdit>,
}

/// One direction's transformation: the conversion, then the edits (on
/// the JSON side of it).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BodyEdit {
    /// `JSONToXML` or `XMLToJSON`; none: the body stays JSON.
    pub convert: Option<String>,
    /// JSON to XML: the root element's name when the JSON is not an
    /// object of one member (whose name is then the root's).
    pub root_element: Option<String>,
    /// Edits of the JSON body, in order: before `JSONToXML`, after
    /// `XMLToJSON`.
    #[serde(default)]
    pub edits: Vec<JsonEdit>,
}

/// One edit at a JSON pointer (RFC 6901).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonEdit {
    /// `Set`, `Remove` or `Rename`.
    pub op: String,
    /// Where, e.g. `/order/customer`.
    pub path: String,
    /// `Set`: any JSON value. Strings may hold `{{ request.method }}`,
    /// `{{ request.path }}` and `{{ request.header.NAME }}`.
    #[serde(default)]
    #[cfg_attr(feature = "crd", schemars(schema_with = "crate::traffic::any_json"))]
    pub value: Option<serde_json::Value>,
    /// `Rename`: the pointer the value moves to.
    pub to: Option<String>,
}

/// Any JSON in a CRD's schema.
#[cfg(feature = "crd")]
pub fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}
