//! `strait install`: every object a cluster needs to run strait, for
//! `strait install | kubectl apply -f -`. The CRDs come from the Rust
//! types (`crd`), the RBAC grants the control plane only what it reads
//! and the status it writes (and the gateway nothing: it is fed by the
//! control plane), and the
//! webhook's `caBundle` is the root the control plane signs with, made
//! here unless one is given.

use crate::inject::NAMESPACE_LABEL;
use serde_json::{json, Value};

/// What `strait install` is told.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub namespace: String,
    pub image: String,
    pub trust_domain: String,
    /// The CA (certificate and key, PEM); a new root when absent.
    pub ca: Option<(String, String)>,
    /// Upstream Gateway API CRDs to print first (a release's
    /// `standard-install.yaml`), already read.
    pub gateway_api_crds: Vec<Value>,
}

const CONTROL: &str = "strait-control";
const GATEWAY: &str = "strait-gateway";
const CONTROL_PORT: u16 = 15012;
const CONTROL_ADMIN_PORT: u16 = 15014;
const WEBHOOK_PORT: u16 = 15017;
const GATEWAY_ADMIN_PORT: u16 = 15021;

fn labels(app: &str) -> Value {
    json!({"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "strait"})
}

/// Runs as nobody, reads only its image, holds no capability.
fn locked_down() -> Value {
    json!({
        "runAsNonRoot": true, "runAsUser": 65532, "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn probe(port: u16) -> Value {
    json!({"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 2})
}

/// What the control plane reads, and nothing more.
fn control_rules() -> Value {
    let read = json!(["get", "list", "watch"]);
    json!([
        {"apiGroups": ["gateway.networking.k8s.io"],
         "resources": ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "tlsroutes",
                       "tcproutes", "referencegrants", "backendtlspolicies"],
         "verbs": read},
        // Accepted / ResolvedRefs written back: the status subresource
        // only (read first, to keep other controllers' route parents).
        {"apiGroups": ["gateway.networking.k8s.io"],
         "resources": ["gateways/status", "httproutes/status", "grpcroutes/status",
                       "tlsroutes/status", "tcproutes/status"],
         "verbs": ["get", "patch"]},
        {"apiGroups": ["policy.strait.dev"],
         "resources": ["backendtrafficpolicies", "faultinjections", "peerauthentications",
                       "authorizationpolicies", "telemetrypolicies",
                       "securitypolicies", "directresponses", "bodytransforms",
                       "ratelimitpolicies", "apischemapolicies"],
         "verbs": read},
        {"apiGroups": ["policy.strait.dev"],
         "resources": ["securitypolicies/status", "ratelimitpolicies/status",
                       "apischemapolicies/status"],
         "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["namespaces", "services", "pods", "configmaps"], "verbs": read},
        // ServiceAccount tokens are never listed (a field selector);
        // RBAC cannot say so, hence the whole resource.
        {"apiGroups": [""], "resources": ["secrets"], "verbs": read},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    ])
}

/// Every object, in the order `kubectl apply` needs them.
pub fn manifests(opts: &InstallOptions) -> Result<Vec<Value>, String> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ns = opts.namespace.as_str();
    let (ca_cert, ca_key) = match &opts.ca {
        Some(pair) => pair.clone(),
        None => strait_identity::ca::new_root(&opts.trust_domain)?,
    };
    let control_host = format!("{CONTROL}.{ns}.svc");
    let control_addr = format!("{control_host}:{CONTROL_PORT}");
    let mut out: Vec<Value> = opts.gateway_api_crds.clone();
    for crd in crate::crd::crds() {
        out.push(serde_json::to_value(crd).map_err(|e| e.to_string())?);
    }
    out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels("strait")}}));
    for sa in [CONTROL, GATEWAY] {
        out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": sa, "namespace": ns, "labels": labels(sa)}}));
    }
    out.push(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": CONTROL, "labels": labels(CONTROL)}, "rules": control_rules()}),
    );
    out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": CONTROL, "labels": labels(CONTROL)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CONTROL},
        "subjects": [{"kind": "ServiceAccount", "name": CONTROL, "namespace": ns}]}));
    out.push(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "strait-ca", "namespace": ns, "labels": labels(CONTROL)},
        "data": {"tls.crt": b64(&ca_cert), "tls.key": b64(&ca_key), "ca.crt": b64(&ca_cert)}}),
    );
    out.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "strait-trust-bundle", "namespace": ns, "labels": labels("strait")},
        "data": {"ca.crt": ca_cert}}));
    let control_args = [
        "control",
        "--kubernetes",
        "--listen",
        &format!("0.0.0.0:{CONTROL_PORT}"),
        "--admin",
        &format!("0.0.0.0:{CONTROL_ADMIN_PORT}"),
        "--webhook-listen",
        &format!("0.0.0.0:{WEBHOOK_PORT}"),
        "--webhook-names",
        &format!("{control_host},{control_host}.cluster.local"),
        "--ca-secret",
        &format!("{ns}/strait-ca"),
        "--ca-dir",
        "/var/run/strait/ca",
        "--trust-domain",
        &opts.trust_domain,
        "--proxy-image",
        &opts.image,
        "--control-address",
        &control_addr,
        "--gateway-service-accounts",
        &format!("{ns}/{GATEWAY}"),
    ];
    out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": CONTROL, "namespace": ns, "labels": labels(CONTROL)},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": CONTROL}},
            "template": {"metadata": {"labels": labels(CONTROL)},
                "spec": {"serviceAccountName": CONTROL,
                    "containers": [{"name": "control", "image": opts.image, "args": control_args,
                        "ports": [{"name": "grpc", "containerPort": CONTROL_PORT},
                                  {"name": "webhook", "containerPort": WEBHOOK_PORT},
                                  {"name": "admin", "containerPort": CONTROL_ADMIN_PORT}],
                        "readinessProbe": probe(CONTROL_ADMIN_PORT),
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                        "securityContext": locked_down(),
                        "volumeMounts": [{"name": "ca", "mountPath": "/var/run/strait/ca"}]}],
                    "volumes": [{"name": "ca", "emptyDir": {}}]}}}}));
    out.push(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": CONTROL, "namespace": ns, "labels": labels(CONTROL)},
        "spec": {"selector": {"app.kubernetes.io/name": CONTROL},
            "ports": [{"name": "grpc", "port": CONTROL_PORT, "targetPort": CONTROL_PORT, "appProtocol": "grpc"},
                      {"name": "webhook", "port": 443, "targetPort": WEBHOOK_PORT}]}}));
    let gateway_args = [
        "gateway",
        "--control",
        &control_addr,
        "--trust-bundle",
        "/var/run/strait/bundle/ca.crt",
        "--trust-domain",
        &opts.trust_domain,
        "--cache",
        "/var/run/strait/cache/config.json",
        "--token-file",
        "/var/run/strait/token/token",
        "--admin",
        &format!("0.0.0.0:{GATEWAY_ADMIN_PORT}"),
    ];
    out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": GATEWAY, "namespace": ns, "labels": labels(GATEWAY)},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": GATEWAY}},
            "template": {"metadata": {"labels": labels(GATEWAY)},
                "spec": {"serviceAccountName": GATEWAY,
                    "automountServiceAccountToken": false,
                    // Listeners on 80 and 443 without root or a capability.
                    "securityContext": {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
                    "terminationGracePeriodSeconds": 40,
                    "containers": [{"name": "gateway", "image": opts.image, "args": gateway_args,
                        "ports": [{"name": "http", "containerPort": 80}, {"name": "https", "containerPort": 443},
                                  {"name": "admin", "containerPort": GATEWAY_ADMIN_PORT}],
                        "readinessProbe": probe(GATEWAY_ADMIN_PORT),
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
                        "securityContext": locked_down(),
                        "volumeMounts": [{"name": "bundle", "mountPath": "/var/run/strait/bundle", "readOnly": true},
                                         {"name": "token", "mountPath": "/var/run/strait/token", "readOnly": true},
                                         {"name": "cache", "mountPath": "/var/run/strait/cache"}]}],
                    // Its proof of identity to the control plane only: no
                    // token for the API server is mounted.
                    "volumes": [{"name": "bundle", "configMap": {"name": "strait-trust-bundle"}},
                                {"name": "token", "projected": {"sources": [{"serviceAccountToken": {
                                    "audience": "strait", "expirationSeconds": 3600, "path": "token"}}]}},
                                {"name": "cache", "emptyDir": {}}]}}}}));
    out.push(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": GATEWAY, "namespace": ns, "labels": labels(GATEWAY)},
        "spec": {"type": "LoadBalancer", "selector": {"app.kubernetes.io/name": GATEWAY},
            "ports": [{"name": "http", "port": 80, "targetPort": 80},
                      {"name": "https", "port": 443, "targetPort": 443}]}}));
    out.push(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "strait-sidecar-injector", "labels": labels(CONTROL)},
        "webhooks": [{"name": "inject.strait.dev",
            "clientConfig": {"service": {"name": CONTROL, "namespace": ns, "path": "/inject", "port": 443},
                             "caBundle": b64(&ca_cert)},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: "enabled"}},
            // A pod of a meshed namespace is not created without its proxy.
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
            "reinvocationPolicy": "Never"}]}));
    out.push(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "strait", "labels": labels("strait")},
        "spec": {"controllerName": strait_config::DEFAULT_CONTROLLER_NAME}}),
    );
    Ok(out)
}

/// The manifests as one YAML stream.
pub fn yaml(objects: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(o).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// The CustomResourceDefinitions of the Gateway API in a release file,
/// checked to be only that.
pub fn gateway_api_crds(file: &str, text: &str) -> Result<Vec<Value>, String> {
    let docs =
        strait_config::split_text(std::path::Path::new(file), text).map_err(|p| p.to_string())?;
    let mut out = Vec::new();
    for (source, value) in docs {
        if value.is_null() {
            continue;
        }
        let group = value["spec"]["group"].as_str().unwrap_or("");
        if value["kind"] != "CustomResourceDefinition" || group != "gateway.networking.k8s.io" {
            return Err(format!(
                "{source}: not a Gateway API CustomResourceDefinition (kind {}, group {group:?})",
                value["kind"]
            ));
        }
        out.push(value);
    }
    if out.is_empty() {
        return Err(format!("{file}: no CustomResourceDefinition"));
    }
    Ok(out)
}
