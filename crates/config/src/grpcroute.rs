//! `GRPCRoute` (gateway.networking.k8s.io/v1).

use crate::httproute::{HttpBackendRef, HttpHeaderMatch, HttpRouteFilter};
use crate::meta::ParentReference;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default = "default_rules")]
    pub rules: Vec<GrpcRouteRule>,
}

fn default_rules() -> Vec<GrpcRouteRule> {
    vec![GrpcRouteRule {
        name: None,
        matches: vec![],
        filters: vec![],
        backend_refs: vec![],
        session_persistence: None,
    }]
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRouteRule {
    pub name: Option<String>,
    #[serde(default)]
    pub matches: Vec<GrpcRouteMatch>,
    /// Same shape as HTTPRoute filters; GRPCRoute allows the header
    /// modifiers, RequestMirror and ExtensionRef.
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
    /// GEP-1619 (experimental).
    pub session_persistence: Option<crate::httproute::SessionPersistence>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRouteMatch {
    pub method: Option<GrpcMethodMatch>,
    #[serde(default)]
    pub headers: Vec<HttpHeaderMatch>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcMethodMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(rename = "type", default = "exact")]
    pub kind: String,
    pub service: Option<String>,
    pub method: Option<String>,
}

fn exact() -> String {
    "Exact".into()
}
