//! Mesh security policies (policy.strait.dev/v1alpha1), enforced by the
//! destination's sidecar. Targets are named with `targetRefs`: a
//! workload (`{group: apps, kind: Deployment, name}`), a Service
//! (`{group: "", kind: Service, name}`, AuthorizationPolicy only), or
//! nothing for every workload of the policy's namespace.

use crate::backendtls::PolicyTargetRef;
use serde::{Deserialize, Serialize};

/// Whether a workload's sidecar accepts plaintext: `STRICT` (mutual TLS
/// only) or `PERMISSIVE` (both, counted apart; the default).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "policy.strait.dev",
        version = "v1alpha1",
        kind = "PeerAuthentication",
        namespaced,
        shortname = "pa"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationSpec {
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetRef>,
    pub mode: String,
}

/// Who may call a workload, and what. `DENY` rules win; a target with
/// any `ALLOW` policy refuses what none of its rules allows; a policy with
/// no rules matches nothing (an ALLOW one is a default-deny).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "policy.strait.dev",
        version = "v1alpha1",
        kind = "AuthorizationPolicy",
        namespaced,
        shortname = "ap"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetRef>,
    /// `ALLOW` (the default) or `DENY`.
    pub action: Option<String>,
    #[serde(default)]
    pub rules: Vec<AuthorizationRule>,
}

/// Matches when one of `from` (any caller, when empty) and one of `to`
/// (any request, when empty) match.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationRule {
    #[serde(default)]
    pub from: Vec<AuthorizationSource>,
    #[serde(default)]
    pub to: Vec<AuthorizationOperation>,
}

/// A caller; every field given must match.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationSource {
    /// SPIFFE IDs (`spiffe://td/ns/N/sa/S`, or Istio's `td/ns/N/sa/S`).
    #[serde(default)]
    pub principals: Vec<String>,
    /// `namespace/name`, or `name` in the policy's namespace.
    #[serde(default)]
    pub service_accounts: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Callers that proved no identity (plaintext).
    #[serde(default)]
    pub unauthenticated: bool,
    /// `issuer/subject` of the request's token, as the workload's
    /// SecurityPolicy verified it: exact, `*`, `prefix*` or `*suffix`.
    #[serde(default)]
    pub request_principals: Vec<String>,
    /// Claims of that token: each must have one of its values (nested
    /// as `a.b`; a list claim contains one).
    #[serde(default)]
    pub claims: Vec<crate::auth::JwtClaim>,
}

/// A request; every field given must match. HTTP fields never match a
/// TCP connection.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationOperation {
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub methods: Vec<String>,
    /// Exact, `prefix*`, `*suffix`, or `*`.
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub headers: Vec<HeaderValues>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValues {
    pub name: String,
    pub values: Vec<String>,
}
