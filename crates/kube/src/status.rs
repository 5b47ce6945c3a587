//! Status back to the cluster: after each new index, the control plane
//! compiles it as a gateway would and writes `Accepted` / `ResolvedRefs`
//! (and the listeners' conditions) to the status of each Gateway and
//! route (HTTP, GRPC, TLS, TCP) of ours that changed, and each
//! SecurityPolicy's per target (`ancestors`, GEP-713) — a merge patch on
//! the `status` subresource. A route's entries for other controllers' parents are kept
//! as they are.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use std::collections::HashMap;
use strait_control::index::Index;
use strait_route::status::{Condition, GatewayStatus, PolicyStatus, RouteStatus};
use strait_route::CompileOptions;
use tracing::{info, warn};

const GATEWAY_API: &str = "gateway.networking.k8s.io";

/// What was last written, by `Kind/namespace/name`, without times: an
/// unchanged status is not written again.
#[derive(Default)]
pub struct StatusWriter {
    written: HashMap<String, Value>,
    /// When each condition (object, parent, type) last changed.
    since: HashMap<(String, String, &'static str), (bool, &'static str, String)>,
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// `generation` of the object as the index holds it.
fn generation(index: &Index, key: &str) -> Option<i64> {
    let o = index.objects.get(key)?;
    let v: Value = serde_json::from_str(&o.entry.json).ok()?;
    v["metadata"]["generation"].as_i64()
}

/// The listener kinds a protocol admits, as Gateway API reports them.
fn supported_kinds(protocol: &str) -> Value {
    let kinds: &[&str] = match protocol {
        "HTTP" | "HTTPS" => &["HTTPRoute", "GRPCRoute"],
        "TLS" => &["TLSRoute"],
        "TCP" => &["TCPRoute"],
        _ => &[],
    };
    kinds
        .iter()
        .map(|k| json!({"group": GATEWAY_API, "kind": k}))
        .collect()
}

impl StatusWriter {
    fn conditions(
        &mut self,
        key: &str,
        parent: &str,
        conditions: &[Condition],
        generation: Option<i64>,
    ) -> Value {
        conditions
            .iter()
            .map(|c| {
                let status = if c.status { "True" } else { "False" };
                let at = (key.to_string(), parent.to_string(), c.kind);
                let state = (c.status, c.reason, c.message.clone());
                let time = match self.since.get(&at) {
                    Some((s, r, t)) if *s == c.status && *r == c.reason => t.clone(),
                    _ => now(),
                };
                self.since.insert(at, (state.0, state.1, time.clone()));
                let mut v = json!({"type": c.kind, "status": status, "reason": c.reason,
                    "message": c.message, "lastTransitionTime": time});
                if let Some(g) = generation {
                    v["observedGeneration"] = g.into();
                }
                v
            })
            .collect()
    }

    fn gateway(&mut self, index: &Index, g: &GatewayStatus) -> (String, Value) {
        let key = format!("Gateway/{}/{}", g.namespace, g.name);
        let generation = generation(index, &key);
        let spec: Value = index
            .objects
            .get(&key)
            .and_then(|o| serde_json::from_str(&o.entry.json).ok())
            .unwrap_or_default();
        let protocol = |name: &str| {
            spec["spec"]["listeners"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["name"] == name)
                .and_then(|l| l["protocol"].as_str())
                .unwrap_or("")
                .to_string()
        };
        let listeners: Vec<Value> = g
            .listeners
            .iter()
            .map(|l| {
                json!({"name": l.name, "attachedRoutes": l.attached_routes,
                    "supportedKinds": supported_kinds(&protocol(&l.name)),
                    "conditions": self.conditions(&key, &l.name, &l.conditions, generation)})
            })
            .collect();
        let conditions = self.conditions(&key, "", &g.conditions, generation);
        (
            key,
            json!({"conditions": conditions, "listeners": listeners}),
        )
    }

    fn route(&mut self, index: &Index, r: &RouteStatus, controller: &str) -> (String, Value) {
        let key = format!("{}/{}/{}", r.kind, r.namespace, r.name);
        let generation = generation(index, &key);
        let parents: Vec<Value> = r
            .parents
            .iter()
            .filter_map(|p| {
                let reference = p.reference.as_ref()?;
                Some(json!({"parentRef": reference, "controllerName": controller,
                    "conditions": self.conditions(&key, &p.parent, &p.conditions, generation)}))
            })
            .collect();
        (key, json!({"parents": parents}))
    }

    fn policy(&mut self, index: &Index, p: &PolicyStatus, controller: &str) -> (String, Value) {
        let key = format!("{}/{}/{}", p.kind, p.namespace, p.name);
        let generation = generation(index, &key);
        let ancestors: Vec<Value> = p
            .ancestors
            .iter()
            .map(|a| {
                let at = a.reference.to_string();
                json!({"ancestorRef": a.reference, "controllerName": controller,
                    "conditions": self.conditions(&key, &at, &a.conditions, generation)})
            })
            .collect();
        (key, json!({"ancestors": ancestors}))
    }

    /// Writes what changed since the last call.
    pub async fn write(&mut self, client: &Client, index: &Index, controller: &str) {
        let docs =
            strait_api::snapshot::resources(index.objects.values().map(|o| &o.entry)).documents;
        let opts = CompileOptions {
            controller_name: controller.to_string(),
        };
        let (snapshot, _) = strait_route::compile(&docs, &opts, std::time::SystemTime::now());
        let mut wanted = Vec::new();
        for g in &snapshot.gateways {
            wanted.push(self.gateway(index, g));
        }
        for r in &snapshot.routes {
            wanted.push(self.route(index, r, controller));
        }
        let policies = snapshot.authn.statuses().iter();
        let policies = policies.chain(snapshot.ratelimit.statuses());
        for p in policies.chain(snapshot.apischema.statuses()) {
            wanted.push(self.policy(index, p, controller));
        }
        // Objects gone are forgotten: one made again under the same name
        // gets its status written.
        let keys: std::collections::HashSet<&String> = wanted.iter().map(|(k, _)| k).collect();
        self.written.retain(|k, _| keys.contains(k));
        self.since.retain(|(k, _, _), _| keys.contains(k));
        for (key, status) in wanted {
            let timeless = without_times(&status);
            if self.written.get(&key) == Some(&timeless) {
                continue;
            }
            let api_version = index
                .objects
                .get(&key)
                .and_then(|o| serde_json::from_str::<Value>(&o.entry.json).ok())
                .and_then(|v| v["apiVersion"].as_str().map(str::to_string))
                .unwrap_or_default();
            match patch(client, &key, &api_version, status, controller).await {
                Ok(()) => {
                    info!(object = %key, "status written");
                    self.written.insert(key, timeless);
                }
                Err(e) => warn!(object = %key, error = %e, "cannot write status"),
            }
        }
    }
}

fn without_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "lastTransitionTime")
                .map(|(k, v)| (k.clone(), without_times(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_times).collect()),
        other => other.clone(),
    }
}

/// The API of `kind` at the version the object was read at (TLSRoute
/// and TCPRoute are served at different versions by different clusters).
fn resource(kind: &str, api_version: &str) -> Option<ApiResource> {
    let policy = match kind {
        "SecurityPolicy" => Some("securitypolicies"),
        "RateLimitPolicy" => Some("ratelimitpolicies"),
        "ApiSchemaPolicy" => Some("apischemapolicies"),
        _ => None,
    };
    if let Some(plural) = policy {
        let version = api_version.strip_prefix("policy.strait.dev/")?;
        let gvk = GroupVersionKind::gvk("policy.strait.dev", version, kind);
        return Some(ApiResource::from_gvk_with_plural(&gvk, plural));
    }
    let plural = match kind {
        "Gateway" => "gateways",
        "HTTPRoute" => "httproutes",
        "GRPCRoute" => "grpcroutes",
        "TLSRoute" => "tlsroutes",
        "TCPRoute" => "tcproutes",
        _ => return None,
    };
    let version = api_version.strip_prefix("gateway.networking.k8s.io/")?;
    let gvk = GroupVersionKind::gvk(GATEWAY_API, version, kind);
    Some(ApiResource::from_gvk_with_plural(&gvk, plural))
}

/// A merge patch of the object's status; a route's `parents` keep the
/// entries of other controllers, read first.
async fn patch(
    client: &Client,
    key: &str,
    api_version: &str,
    status: Value,
    controller: &str,
) -> Result<(), String> {
    let mut parts = key.splitn(3, '/');
    let (kind, ns, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(k), Some(n), Some(m)) => (k, n, m),
        _ => return Err(format!("bad key {key}")),
    };
    let Some(api_resource) = resource(kind, api_version) else {
        return Ok(());
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &api_resource);
    let Some(ours) = status.get("parents").and_then(Value::as_array).cloned() else {
        return api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
    };
    // A route's parents are shared with other controllers: read them,
    // replace ours, and write back only if nobody wrote in between (the
    // resourceVersion), else read again.
    let mut last = String::new();
    for _ in 0..3 {
        let current = api.get_status(name).await.map_err(|e| e.to_string())?;
        let mut parents = ours.clone();
        parents.extend(
            current.data["status"]["parents"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["controllerName"] != controller)
                .cloned(),
        );
        let body = json!({
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "status": {"parents": parents},
        });
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(body))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => last = e.to_string(),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("conflicting writes: {last}"))
}
