//! `strait install`: what it prints is what Kubernetes accepts (every
//! object read back through k8s-openapi's types without losing a field;
//! CI also checks it against the API's own schemas with
//! tests/install-schema.py), and every command line in it is one strait
//! understands.

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;

fn install(args: &[&str]) -> (std::process::Output, Vec<Value>) {
    let out = Command::new(STRAIT)
        .arg("install")
        .args(args)
        .output()
        .expect("strait install");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let docs = strait_config::split_text(std::path::Path::new("install.yaml"), &text)
        .expect("YAML")
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
        .collect();
    (out, docs)
}

/// `doc` read as `T` and written back is `doc`: no field unknown to
/// Kubernetes, none of the wrong type.
fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} {}: {e}", doc["kind"], doc["metadata"]["name"]));
    assert_eq!(
        &serde_json::to_value(&typed).expect("json"),
        doc,
        "{} {} loses or changes a field",
        doc["kind"],
        doc["metadata"]["name"]
    );
}

#[test]
fn the_manifests_are_kubernetes_objects_and_their_commands_are_strait_s() {
    use k8s_openapi::api::rbac::v1 as rbac;
    use k8s_openapi::api::{admissionregistration::v1 as adm, apps::v1 as apps, core::v1 as core};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let (out, docs) = install(&["--namespace", "mesh-system", "--image", "strait:test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kinds: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    eprintln!("{kinds:#?}");
    for d in &docs {
        match d["kind"].as_str().unwrap_or("") {
            "CustomResourceDefinition" => round_trips::<ext::CustomResourceDefinition>(d),
            "Namespace" => round_trips::<core::Namespace>(d),
            "ServiceAccount" => round_trips::<core::ServiceAccount>(d),
            "Secret" => round_trips::<core::Secret>(d),
            "ConfigMap" => round_trips::<core::ConfigMap>(d),
            "Service" => round_trips::<core::Service>(d),
            "Deployment" => round_trips::<apps::Deployment>(d),
            "ClusterRole" => round_trips::<rbac::ClusterRole>(d),
            "ClusterRoleBinding" => round_trips::<rbac::ClusterRoleBinding>(d),
            "MutatingWebhookConfiguration" => round_trips::<adm::MutatingWebhookConfiguration>(d),
            "GatewayClass" => {
                assert_eq!(
                    d["spec"]["controllerName"],
                    strait_config::DEFAULT_CONTROLLER_NAME
                )
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    assert_eq!(docs.len(), 23, "{kinds:?}");
    // The gateway is a LoadBalancer; the webhook trusts the CA in the Secret.
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    assert_eq!(
        find("Service", "strait-gateway")["spec"]["type"],
        "LoadBalancer"
    );
    let webhook = &find("MutatingWebhookConfiguration", "strait-sidecar-injector")["webhooks"][0];
    assert_eq!(
        webhook["clientConfig"]["caBundle"],
        find("Secret", "strait-ca")["data"]["ca.crt"]
    );
    assert_eq!(
        webhook["clientConfig"]["service"]["namespace"],
        "mesh-system"
    );
    assert_eq!(
        webhook["namespaceSelector"]["matchLabels"]["strait.dev/inject"],
        "enabled"
    );
    // Least privilege: the gateway has no token; the control plane writes
    // nothing but status.
    let gateway = &find("Deployment", "strait-gateway")["spec"]["template"]["spec"];
    assert_eq!(gateway["automountServiceAccountToken"], false);
    // …but a token made for the control plane's audience, to prove it
    // runs as strait-gateway.
    let projected = &gateway["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(projected["audience"], "strait", "{gateway}");
    for rule in find("ClusterRole", "strait-control")["rules"]
        .as_array()
        .expect("rules")
    {
        for verb in rule["verbs"].as_array().expect("verbs") {
            let status_only = rule["resources"].as_array().is_some_and(|r| {
                r.iter()
                    .all(|r| r.as_str().is_some_and(|r| r.ends_with("/status")))
            });
            let allowed = ["get", "list", "watch"].contains(&verb.as_str().unwrap_or(""))
                || (verb == "create" && rule["resources"][0] == "tokenreviews")
                || (verb == "patch" && status_only);
            assert!(allowed, "{rule}");
        }
    }

    // Each container's command line parses as strait's own: run it here
    // and see it fail on what is missing outside a cluster, not on a flag.
    for name in ["strait-control", "strait-gateway"] {
        let spec = &find("Deployment", name)["spec"]["template"]["spec"];
        let args: Vec<String> = spec["containers"][0]["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().unwrap_or("").to_string())
            .collect();
        let run = Command::new(STRAIT)
            .args(&args)
            .env("KUBECONFIG", "/nonexistent")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_ne!(run.status.code(), Some(2), "{name}: {args:?}\n{stderr}");
        assert!(!stderr.contains("Usage:"), "{name}: {args:?}\n{stderr}");
    }
}

#[test]
fn gateway_api_crds_come_from_the_file_given_and_only_crds() {
    let dir = TempDir::new();
    dir.write(
        "crds.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: gateways.gateway.networking.k8s.io}\nspec: {group: gateway.networking.k8s.io, names: {kind: Gateway, plural: gateways}, scope: Namespaced, versions: []}\n",
    );
    dir.write(
        "other.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
    );
    let crds = dir.path().join("crds.yaml");
    let (out, docs) = install(&["--gateway-api-crds", crds.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        docs[0]["metadata"]["name"],
        "gateways.gateway.networking.k8s.io"
    );
    assert_eq!(docs.len(), 24);
    let other = dir.path().join("other.yaml");
    let (out, _) = install(&["--gateway-api-crds", other.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a Gateway API CustomResourceDefinition"),
        "{stderr}"
    );
}
