//! ApiSchemaPolicy compiled: the API's OpenAPI document, read once, and
//! what to do with a request it does not describe. The check itself is
//! the proxy's (it reads the body).

use crate::attach::{check_targets, Attached, Finding};
use serde_json::Value;
use std::sync::Arc;
use strait_config::apischema::{parse_document, ApiSchemaPolicySpec};
use strait_config::{Document, Object, Resource};
pub use strait_openapi::{check_json, cut, Found, Given, Invalid};

/// A JSON body read to check it: at most this, unless the policy says.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;
const MAX_MAX_BODY: u64 = 64 << 20;

/// One ApiSchemaPolicy.
#[derive(Debug)]
pub struct ApiSchema {
    /// `namespace/name`.
    pub policy: Arc<str>,
    /// `None` for a policy with errors: its targets answer `500`.
    pub api: Option<strait_openapi::Api>,
    /// Refuse requests for operations the document does not have.
    pub reject_unknown: bool,
    pub max_body: u64,
}

/// The ApiSchemaPolicies.
pub type ApiSchemaTable = Attached<ApiSchema>;

impl crate::attach::Policy for ApiSchema {
    const KIND: &'static str = "ApiSchemaPolicy";
}

impl Attached<ApiSchema> {
    pub(crate) fn compile(docs: &[Document]) -> Self {
        Attached::build(
            docs,
            |d| match &*d.resource {
                Resource::ApiSchemaPolicy(p) => Some(p),
                _ => None,
            },
            |spec| &spec.target_refs,
            |p| {
                let (value, errors) = compile_policy(docs, p);
                (value, errors, Vec::new())
            },
            "the policy's targets answer 500 until it is fixed",
        )
    }
}

fn compile_policy(docs: &[Document], p: &Object<ApiSchemaPolicySpec>) -> (ApiSchema, Vec<Finding>) {
    let ns = p.metadata.namespace();
    let spec = &p.spec;
    let mut errors = check_targets(&spec.target_refs);
    for (i, t) in spec.target_refs.iter().enumerate() {
        if t.kind == "GRPCRoute" {
            let msg = "an OpenAPI document describes HTTP APIs, not gRPC services".into();
            errors.push((format!("spec.targetRefs[{i}]"), msg));
        }
    }
    let reject_unknown = match spec.unknown_operations.as_deref() {
        None | Some("Allow") => false,
        Some("Reject") => true,
        Some(other) => {
            let msg = format!("{other:?} is not Allow or Reject");
            errors.push(("spec.unknownOperations".into(), msg));
            false
        }
    };
    let max_body = spec.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if max_body == 0 || max_body > MAX_MAX_BODY {
        let msg = format!("{max_body} is not between 1 and {MAX_MAX_BODY}");
        errors.push(("spec.maxBodyBytes".into(), msg));
    }
    if let Some(base) = spec.base_path.as_deref().filter(|b| !b.starts_with('/')) {
        errors.push((
            "spec.basePath".into(),
            format!("{base:?} does not start with /"),
        ));
    }
    let api = match document(docs, ns, spec) {
        Ok(doc) => strait_openapi::Api::compile(&doc, spec.base_path.as_deref())
            .map_err(|e| ("spec.openAPI".to_string(), format!("the document: {e}"))),
        Err(e) => Err(e),
    };
    let api = match api {
        Ok(api) if errors.is_empty() => Some(api),
        Ok(_) => None,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let schema = ApiSchema {
        policy: format!("{ns}/{}", p.metadata.name).into(),
        api,
        reject_unknown,
        max_body,
    };
    (schema, errors)
}

/// The policy's OpenAPI document, from where it says.
fn document(docs: &[Document], ns: &str, spec: &ApiSchemaPolicySpec) -> Result<Value, Finding> {
    let src = &spec.open_api;
    let at = |field: &str| format!("spec.openAPI.{field}");
    match (&src.file, &src.config_map_ref, &src.inline) {
        (Some(file), None, None) => {
            let want = file.trim_start_matches("./");
            docs.iter()
                .find_map(|d| match &*d.resource {
                    Resource::OpenApi(f) if f.metadata.name == want => Some(f.document.clone()),
                    _ => None,
                })
                .ok_or_else(|| {
                    let msg = format!("OpenAPI file {want:?} not found in the configuration folder (a YAML file with a top-level `openapi`)");
                    (at("file"), msg)
                })
        }
        (None, Some(r), None) => {
            let data = crate::extension::config_map(docs, ns, &r.name)
                .ok_or_else(|| (at("configMapRef"), format!("no ConfigMap {ns}/{}", r.name)))?;
            let text = data.get(&r.key).ok_or_else(|| {
                let msg = format!("ConfigMap {ns}/{} has no key {:?}", r.name, r.key);
                (at("configMapRef.key"), msg)
            })?;
            parse_document(text).map_err(|e| (at("configMapRef"), format!("the document: {e}")))
        }
        (None, None, Some(text)) => {
            parse_document(text).map_err(|e| (at("inline"), format!("the document: {e}")))
        }
        _ => Err((
            "spec.openAPI".into(),
            "set one of file, configMapRef and inline".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: &str = "openapi: 3.1.0\npaths:\n  /items/{id}:\n    get:\n      parameters: [{name: id, in: path, required: true, schema: {type: integer}}]\n";

    fn table(yaml: &str) -> ApiSchemaTable {
        let set = strait_config::parse_text(std::path::Path::new("t.yaml"), yaml);
        assert!(set.problems.is_empty(), "{:?}", set.problems);
        ApiSchemaTable::compile(&set.documents)
    }

    fn policy(open_api: &str, extra: &str) -> String {
        format!("apiVersion: policy.strait.dev/v1alpha1\nkind: ApiSchemaPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}}]\n  openAPI: {open_api}\n{extra}")
    }

    #[test]
    fn a_configmaps_document_is_compiled_and_attached() {
        let cm = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: api, namespace: shop}}\ndata:\n  openapi.yaml: |\n{}\n---\n", API.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n"));
        let yaml = cm
            + &policy(
                "{configMapRef: {name: api, key: openapi.yaml}}",
                "  unknownOperations: Reject\n",
            );
        let mut t = table(&yaml);
        assert!(t.take_problems().is_empty());
        let p = t.for_rule("HTTPRoute", "shop", "r", None);
        let p = p
            .as_deref()
            .and_then(|p| p.api.as_ref().map(|a| (p.reject_unknown, a.operations)));
        assert_eq!(p, Some((true, 1)));
    }

    #[test]
    fn errors_name_the_field_and_the_policy_checks_nothing() {
        let cases = [
            (
                policy("{configMapRef: {name: nope, key: k}}", ""),
                "spec.openAPI.configMapRef",
                "no ConfigMap shop/nope",
            ),
            (
                policy("{file: missing.yaml}", ""),
                "spec.openAPI.file",
                "not found",
            ),
            (
                policy("{inline: 'openapi: 2.0'}", ""),
                "spec.openAPI",
                "OpenAPI 3.0 and 3.1",
            ),
            (policy("{}", ""), "spec.openAPI", "set one of"),
            (
                policy(
                    &format!("{{inline: {API:?}}}"),
                    "  unknownOperations: Deny\n",
                ),
                "spec.unknownOperations",
                "Deny",
            ),
            (
                policy(&format!("{{inline: {API:?}}}"), "  maxBodyBytes: 0\n"),
                "spec.maxBodyBytes",
                "between",
            ),
        ];
        for (yaml, field, said) in cases {
            let mut t = table(&yaml);
            let problems = t.take_problems();
            let found = problems.iter().any(|p| {
                p.path == field
                    && p.message.contains(said)
                    && p.message.contains("answer 500 until it is fixed")
            });
            assert!(found, "{field}: {problems:?}");
            let p = t.for_rule("HTTPRoute", "shop", "r", None);
            assert!(p.is_some_and(|p| p.api.is_none()), "{field}");
        }
    }
}
