//! `RateLimitPolicy` (policy.strait.dev/v1alpha1): how many requests a
//! route, a listener or a workload takes, and from whom. Attached the
//! Gateway API way (GEP-713), like SecurityPolicy: a Gateway (one
//! listener by `sectionName`), an HTTPRoute/GRPCRoute (one rule by its
//! `name`), or a workload (`{group: apps, kind: Deployment}`) for its
//! sidecar's inbound calls. The rules' shape is Envoy Gateway's
//! `rateLimit.local` / `rateLimit.global`; what it lacks (a burst, keys
//! by a token's claim, an API key's client or a caller's SPIFFE
//! identity, a Redis address per policy) is strait's own.

use crate::backendtls::PolicyTargetRef;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "policy.strait.dev",
        version = "v1alpha1",
        kind = "RateLimitPolicy",
        namespaced,
        status = "crate::auth::PolicyStatus",
        shortname = "rlp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitPolicySpec {
    pub target_refs: Vec<PolicyTargetRef>,
    /// Counted by each proxy alone.
    pub local: Option<LocalRateLimit>,
    /// Counted together by every proxy, in Redis.
    pub global: Option<GlobalRateLimit>,
    /// Only a refusal carries the `RateLimit` headers, not every answer
    /// the policy counts (Envoy Gateway's name).
    #[serde(default)]
    pub disable_rate_limit_headers: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalRateLimit {
    pub rules: Vec<RateLimitRule>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalRateLimit {
    pub redis: RedisBackend,
    pub rules: Vec<RateLimitRule>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisBackend {
    /// One Redis: `redis://[[user]:password@]host:port[/db]`, or
    /// `rediss://` for TLS. Exactly one of `url`, `cluster` and
    /// `sentinel` is given.
    pub url: Option<String>,
    /// A Redis Cluster: URLs of some of its nodes (the others are
    /// learned from them).
    #[serde(default)]
    pub cluster: Vec<String>,
    /// A primary found through Redis Sentinel.
    pub sentinel: Option<RedisSentinel>,
    /// TLS (`rediss://`): the CAs that sign Redis's certificates
    /// (ConfigMaps or Secrets with a `ca.crt`, in the policy's
    /// namespace); without, the system's roots.
    #[serde(default)]
    pub ca_certificate_refs: Vec<crate::gateway::CaCertificateRef>,
    /// How long a request waits for Redis before the failure mode
    /// decides (default `50ms`).
    pub timeout: Option<String>,
    /// When Redis cannot answer: `Open` (let the request through, the
    /// default) or `Closed` (refuse it).
    pub failure_mode: Option<String>,
}

/// Where Sentinel finds the primary that counts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisSentinel {
    /// The name the sentinels monitor the primary by.
    pub master_name: String,
    /// The sentinels: `redis://[[user]:password@]host:port[/db]`
    /// (`rediss://` for TLS). The user, password, TLS and db are used
    /// for the primary too.
    pub urls: Vec<String>,
}

/// One limit, and the requests it counts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitRule {
    /// Names the limit in the `RateLimit` headers and the metrics
    /// (default `rule-INDEX`).
    pub name: Option<String>,
    /// The requests counted: those matching any selector (all, when
    /// there is none). A `Distinct` field gives each value its own count.
    #[serde(default)]
    pub client_selectors: Vec<RateLimitSelectCondition>,
    pub limit: RateLimitValue,
    /// Count and report, but refuse nothing.
    #[serde(default)]
    pub shadow_mode: bool,
    /// One count for every route the policy covers, instead of one per
    /// route.
    #[serde(default)]
    pub shared: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitValue {
    pub requests: u32,
    /// `Second`, `Minute`, `Hour` or `Day`.
    pub unit: String,
    /// How many requests may come at once after a quiet spell (default
    /// `requests`).
    pub burst: Option<u32>,
}

/// Every field set must match (within a list, every entry).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSelectCondition {
    #[serde(default)]
    pub headers: Vec<RateLimitHeaderMatch>,
    #[serde(default)]
    pub methods: Vec<RateLimitMethodMatch>,
    /// The client's address (after the trusted-proxy rule).
    #[serde(rename = "sourceCIDR")]
    pub source_cidr: Option<RateLimitSourceMatch>,
    /// Claims of the token the route's SecurityPolicy verified.
    #[serde(default)]
    pub jwt_claims: Vec<RateLimitClaimMatch>,
    /// The client whose API key the route's SecurityPolicy accepted.
    pub api_key_client: Option<RateLimitValueMatch>,
    /// The caller's SPIFFE identity, proven by mutual TLS (a sidecar's
    /// inbound calls).
    pub source_identity: Option<RateLimitValueMatch>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitHeaderMatch {
    /// `Exact` (the default), `RegularExpression` or `Distinct`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: String,
    pub value: Option<String>,
    /// Match requests whose header does not match (not with `Distinct`).
    #[serde(default)]
    pub invert: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitMethodMatch {
    pub value: String,
    #[serde(default)]
    pub invert: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSourceMatch {
    /// `Exact` (the default: one count for the whole range) or
    /// `Distinct` (one per address in it).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A CIDR: `10.0.0.0/8`, `0.0.0.0/0`, `::/0`.
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitClaimMatch {
    pub name: String,
    /// `Exact` (the default) or `Distinct`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitValueMatch {
    /// `Exact` (the default) or `Distinct`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: Option<String>,
}
