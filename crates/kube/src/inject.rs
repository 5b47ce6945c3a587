//! Sidecar injection: the mutating admission webhook's answer for a pod.
//! The proxy goes in as a native sidecar (an init container with
//! `restartPolicy: Always` and a startup probe), after the capture init
//! container and before the pod's own init containers: the kubelet starts
//! nothing else until the proxy is ready, and a Job's pod completes when
//! its containers do, the sidecar being stopped after them.
//!
//! What the proxy needs comes with the pod itself: its name and namespace
//! from the downward API, its ServiceAccount token projected for the
//! control plane's audience (and refreshed by the kubelet), and the trust
//! bundle as a pod annotation read back through a downward-API volume, so
//! no per-namespace ConfigMap has to be kept in step.

use crate::source::INJECTED_ANNOTATION;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use serde_json::{json, Value};

/// A pod annotation: `"false"` keeps a pod of an injected namespace out.
pub const INJECT_ANNOTATION: &str = "strait.dev/inject";
/// The pod annotation that carries the trust bundle to the proxy.
pub const BUNDLE_ANNOTATION: &str = "strait.dev/trust-bundle";
/// The namespace label that turns injection on (the webhook's
/// `namespaceSelector`).
pub const NAMESPACE_LABEL: &str = "strait.dev/inject";

pub const PROXY_CONTAINER: &str = "strait-proxy";
pub const INIT_CONTAINER: &str = "strait-init";
/// The proxy's UID: its own traffic is never captured.
pub const PROXY_UID: i64 = 1337;
pub const INBOUND_PORT: u16 = 15006;
pub const OUTBOUND_PORT: u16 = 15001;
/// The proxy's admin port: probes reach it uncaptured.
pub const ADMIN_PORT: u16 = 15020;

/// What every injected proxy is given.
#[derive(Debug, Clone)]
pub struct Injection {
    pub image: String,
    /// HOST:PORT of `strait control` (configuration and CA).
    pub control: String,
    pub trust_bundle_pem: String,
    pub trust_domain: String,
    /// The audience of the projected token (`strait control
    /// --token-audience`).
    pub token_audience: String,
}

/// Why a pod is left as it is, or `None` to inject it.
fn skip_reason(pod: &Value) -> Option<&'static str> {
    let annotations = &pod["metadata"]["annotations"];
    if annotations[INJECT_ANNOTATION].as_str() == Some("false") {
        return Some("annotated strait.dev/inject: false");
    }
    if pod["spec"]["hostNetwork"].as_bool() == Some(true) {
        return Some("uses the host's network");
    }
    let has = |list: &str| {
        pod["spec"][list]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["name"] == PROXY_CONTAINER))
    };
    if has("initContainers") || has("containers") {
        return Some("already has strait-proxy");
    }
    None
}

/// The port the app serves on: the first container's first declared
/// port (the proxy's fallback for traffic that was not captured).
fn app_port(pod: &Value) -> u64 {
    pod["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.first())
        .and_then(|c| c["ports"].as_array())
        .and_then(|ps| ps.first())
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or(80)
}

/// The workload a pod belongs to, as policies name it: a Deployment's
/// pods by the Deployment (their ReplicaSet's name without its
/// `pod-template-hash`), other controllers' by the controller's name
/// (StatefulSet, DaemonSet, Job); a pod of its own by none (its name is
/// used).
fn workload_of(pod: &Value) -> Option<&str> {
    let owners = pod["metadata"]["ownerReferences"].as_array()?;
    let owner = owners.iter().find(|o| o["controller"] == true)?;
    let name = owner["name"].as_str().filter(|n| !n.is_empty())?;
    if owner["kind"] != "ReplicaSet" {
        return Some(name);
    }
    let hash = pod["metadata"]["labels"]["pod-template-hash"].as_str();
    let deployment = hash.and_then(|h| name.strip_suffix(h)?.strip_suffix('-'));
    Some(deployment.filter(|d| !d.is_empty()).unwrap_or(name))
}

/// What strait adds to a pod: the capture and proxy init containers, the
/// volumes they use, and the annotations.
struct Additions {
    init_containers: [Value; 2],
    volumes: [Value; 3],
    annotations: [(&'static str, String); 2],
}

fn additions(pod: &Value, inj: &Injection) -> Additions {
    let sa = pod["spec"]["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let capture = json!({
        "name": INIT_CONTAINER,
        "image": inj.image,
        "args": ["proxy-init", "--proxy-uid", PROXY_UID.to_string(),
                 "--inbound-port", INBOUND_PORT.to_string(),
                 "--outbound-port", OUTBOUND_PORT.to_string(),
                 "--exclude-inbound-ports", ADMIN_PORT.to_string()],
        "securityContext": {
            "runAsUser": 0, "runAsNonRoot": false, "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
    });
    let probe = json!({"httpGet": {"path": "/ready", "port": ADMIN_PORT}, "periodSeconds": 1, "failureThreshold": 120});
    let proxy = json!({
        "name": PROXY_CONTAINER,
        "image": inj.image,
        "restartPolicy": "Always",
        "args": ["proxy",
                 "--workload", format!("$(POD_NAMESPACE)/{}", workload_of(pod).unwrap_or("$(POD_NAME)")),
                 "--pod", "$(POD_NAME)",
                 "--service-account", sa,
                 "--app-port", app_port(pod).to_string(),
                 "--control", inj.control, "--ca", inj.control,
                 "--trust-bundle", "/var/run/strait/bundle/ca.crt",
                 "--trust-domain", inj.trust_domain,
                 "--token-file", "/var/run/strait/token/token",
                 "--cache", "/var/run/strait/cache/config.json",
                 "--admin", format!("0.0.0.0:{ADMIN_PORT}")],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
        "ports": [{"name": "strait-admin", "containerPort": ADMIN_PORT}],
        "startupProbe": probe,
        "readinessProbe": probe,
        "volumeMounts": [
            {"name": "strait-token", "mountPath": "/var/run/strait/token", "readOnly": true},
            {"name": "strait-bundle", "mountPath": "/var/run/strait/bundle", "readOnly": true},
            {"name": "strait-cache", "mountPath": "/var/run/strait/cache"},
        ],
        "securityContext": {
            "runAsUser": PROXY_UID, "runAsNonRoot": true, "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]},
        },
    });
    let volumes = [
        json!({"name": "strait-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": inj.token_audience, "expirationSeconds": 3600, "path": "token"}}]}}),
        json!({"name": "strait-bundle", "downwardAPI": {"items": [{"path": "ca.crt",
            "fieldRef": {"fieldPath": format!("metadata.annotations['{BUNDLE_ANNOTATION}']")}}]}}),
        json!({"name": "strait-cache", "emptyDir": {}}),
    ];
    Additions {
        init_containers: [capture, proxy],
        volumes,
        annotations: [
            (INJECTED_ANNOTATION, "true".to_string()),
            (BUNDLE_ANNOTATION, inj.trust_bundle_pem.clone()),
        ],
    }
}

/// The JSON patch that injects `pod`: only additions, each at its place,
/// so that nothing of the pod is rewritten (fields this build does not
/// know included).
pub fn patch(pod: &Value, inj: &Injection) -> Result<json_patch::Patch, String> {
    let add = |path: String, value: Value| json!({"op": "add", "path": path, "value": value});
    let escape = |key: &str| key.replace('~', "~0").replace('/', "~1");
    let a = additions(pod, inj);
    let mut ops = Vec::new();
    if !pod["metadata"]["annotations"].is_object() {
        ops.push(add("/metadata/annotations".into(), json!({})));
    }
    for (key, value) in a.annotations {
        ops.push(add(
            format!("/metadata/annotations/{}", escape(key)),
            value.into(),
        ));
    }
    let [capture, proxy] = a.init_containers;
    if pod["spec"]["initContainers"].is_array() {
        // In front of the pod's own, capture first.
        ops.push(add("/spec/initContainers/0".into(), proxy));
        ops.push(add("/spec/initContainers/0".into(), capture));
    } else {
        ops.push(add("/spec/initContainers".into(), json!([capture, proxy])));
    }
    if pod["spec"]["volumes"].is_array() {
        for v in a.volumes {
            ops.push(add("/spec/volumes/-".into(), v));
        }
    } else {
        ops.push(add("/spec/volumes".into(), Value::Array(a.volumes.into())));
    }
    serde_json::from_value(Value::Array(ops)).map_err(|e| format!("the patch: {e}"))
}

/// The webhook's answer to one AdmissionReview (JSON in, JSON out): the
/// pod allowed, with the patch that injects it unless it is to be left
/// alone. A review that is not one is an error (the caller answers 400).
pub fn review(body: &[u8], inj: &Injection) -> Result<Vec<u8>, String> {
    let review: AdmissionReview<Pod> =
        serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    let request: AdmissionRequest<Pod> = review
        .try_into()
        .map_err(|e| format!("not an AdmissionReview request: {e}"))?;
    let response = AdmissionResponse::from(&request);
    let response: AdmissionReview<DynamicObject> = match &request.object {
        Some(pod) => {
            let before = serde_json::to_value(pod).map_err(|e| e.to_string())?;
            match skip_reason(&before) {
                Some(why) => {
                    tracing::debug!(
                        pod = pod.metadata.name.as_deref().unwrap_or("(unnamed)"),
                        why,
                        "not injected"
                    );
                    response.into_review()
                }
                None => {
                    let patch = patch(&before, inj)?;
                    response
                        .with_patch(patch)
                        .map_err(|e| e.to_string())?
                        .into_review()
                }
            }
        }
        None => response.into_review(),
    };
    let mut json = serde_json::to_value(&response).map_err(|e| e.to_string())?;
    // kube-core 5 writes the patch as an array of numbers (kube-rs issue
    // 1781); the API server's []byte is base64 in JSON.
    if let Some(Value::Array(bytes)) = json["response"].get("patch").cloned() {
        use base64::Engine;
        let raw: Vec<u8> = bytes
            .iter()
            .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect();
        json["response"]["patch"] = base64::engine::general_purpose::STANDARD.encode(raw).into();
    }
    serde_json::to_vec(&json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(owner: Option<(&str, &str)>, hash: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"generateName": "x-", "labels": {}}});
        if let Some((kind, name)) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "controller": true}]);
        }
        if let Some(h) = hash {
            p["metadata"]["labels"]["pod-template-hash"] = h.into();
        }
        p
    }

    #[test]
    fn a_pod_s_workload_is_its_deployment_or_its_controller() {
        let deployment = pod(
            Some(("ReplicaSet", "payment-v1-5d8f7c9b4")),
            Some("5d8f7c9b4"),
        );
        assert_eq!(workload_of(&deployment), Some("payment-v1"));
        // A ReplicaSet of its own (no hash of a Deployment): itself.
        assert_eq!(
            workload_of(&pod(Some(("ReplicaSet", "batch")), None)),
            Some("batch")
        );
        assert_eq!(
            workload_of(&pod(Some(("StatefulSet", "db")), None)),
            Some("db")
        );
        assert_eq!(workload_of(&pod(None, None)), None);
        let mut not_controller = pod(Some(("ReplicaSet", "a-1")), Some("1"));
        not_controller["metadata"]["ownerReferences"][0]["controller"] = false.into();
        assert_eq!(workload_of(&not_controller), None);
    }
}
