//! `ApiSchemaPolicy` (policy.strait.dev/v1alpha1): requests checked
//! against the API's OpenAPI 3.0/3.1 document before they reach it — the
//! operation (path and method), its parameters, its JSON body. Attached
//! like the other policies (GEP-713): an HTTPRoute (or one named rule), a
//! Gateway (or one listener), or a workload (`{group: apps, kind:
//! Deployment}`) for its sidecar's inbound calls.

use crate::backendtls::PolicyTargetRef;
use crate::meta::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "policy.strait.dev",
        version = "v1alpha1",
        kind = "ApiSchemaPolicy",
        namespaced,
        status = "crate::auth::PolicyStatus",
        shortname = "asp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiSchemaPolicySpec {
    pub target_refs: Vec<PolicyTargetRef>,
    /// Where the OpenAPI document is.
    #[serde(rename = "openAPI")]
    pub open_api: OpenApiSource,
    /// The path the document's paths are under (default: the path of its
    /// first `servers` URL, else `/`).
    pub base_path: Option<String>,
    /// A request for an operation the document does not have: `Allow`
    /// (the default: passed unchecked) or `Reject` (`404`, or `405` when
    /// the path has other methods).
    pub unknown_operations: Option<String>,
    /// The most bytes of a JSON body read to check it (default 1 MiB);
    /// a longer body is refused (`413`).
    pub max_body_bytes: Option<u64>,
}

/// One of: a file of the folder strait reads, a ConfigMap's key, or the
/// document itself.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenApiSource {
    /// A path relative to the configuration folder (folder mode only).
    pub file: Option<String>,
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// The document as YAML or JSON text.
    pub inline: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapKeyRef {
    pub name: String,
    pub key: String,
}

/// An OpenAPI document found in the configuration folder: a YAML file
/// whose document has a top-level `openapi` and no `kind`. Named by its
/// path relative to the folder.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct OpenApiFile {
    pub metadata: ObjectMeta,
    pub document: Value,
}

/// Whether a document read from a folder is an OpenAPI document, not a
/// Kubernetes object.
pub fn is_openapi(value: &Value) -> bool {
    value.get("openapi").is_some() && value.get("kind").is_none()
}

/// An OpenAPI document's text (YAML or JSON) as a value.
pub fn parse_document(text: &str) -> Result<Value, String> {
    let value: Value = serde_saphyr::from_str(text).map_err(|e| {
        let text = e.to_string();
        text.lines().next().unwrap_or("").to_string()
    })?;
    match value.is_object() {
        true => Ok(value),
        false => Err("is not a mapping".into()),
    }
}
