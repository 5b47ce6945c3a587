//! A stand-in Kubernetes API server on 127.0.0.1 for kube-rs to watch: the
//! discovery, list and watch endpoints of the kinds it is given, answered
//! as the API server answers them (resource versions, `ADDED` / `MODIFIED`
//! / `DELETED` events, a `410 Gone` that makes watchers list again), status
//! writes recorded for the test, and TokenReviews of the tokens it is
//! given. No real API server runs on these
//! machines.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// (group, version, plural, namespaced) of the kinds the stand-in serves.
fn resource_of(kind: &str) -> Option<(&'static str, &'static str, &'static str, bool)> {
    Some(match kind {
        "GatewayClass" => ("gateway.networking.k8s.io", "v1", "gatewayclasses", false),
        "Gateway" => ("gateway.networking.k8s.io", "v1", "gateways", true),
        "HTTPRoute" => ("gateway.networking.k8s.io", "v1", "httproutes", true),
        "GRPCRoute" => ("gateway.networking.k8s.io", "v1", "grpcroutes", true),
        "TCPRoute" => ("gateway.networking.k8s.io", "v1alpha2", "tcproutes", true),
        "ReferenceGrant" => (
            "gateway.networking.k8s.io",
            "v1beta1",
            "referencegrants",
            true,
        ),
        "Service" => ("", "v1", "services", true),
        "Namespace" => ("", "v1", "namespaces", false),
        "Pod" => ("", "v1", "pods", true),
        "Secret" => ("", "v1", "secrets", true),
        "ConfigMap" => ("", "v1", "configmaps", true),
        "EndpointSlice" => ("discovery.k8s.io", "v1", "endpointslices", true),
        "SecurityPolicy" => ("policy.strait.dev", "v1alpha1", "securitypolicies", true),
        "RateLimitPolicy" => ("policy.strait.dev", "v1alpha1", "ratelimitpolicies", true),
        "ApiSchemaPolicy" => ("policy.strait.dev", "v1alpha1", "apischemapolicies", true),
        _ => return None,
    })
}

fn object_path(group: &str, version: &str, plural: &str, ns: &str, name: &str) -> String {
    let base = collection(group, version, "");
    format!("{}namespaces/{ns}/{plural}/{name}", base)
}

fn collection(group: &str, version: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}/{plural}")
    } else {
        format!("/apis/{group}/{version}/{plural}")
    }
}

type Watchers = Vec<mpsc::UnboundedSender<Bytes>>;

#[derive(Default)]
struct State {
    resource_version: u64,
    /// By collection path, then (namespace, name).
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    watchers: BTreeMap<String, Watchers>,
    /// Requests seen: method and path with query.
    requests: Vec<String>,
    /// Status patches: object path and the patch.
    status_writes: Vec<(String, Value)>,
    /// ServiceAccount tokens TokenReview vouches for: token → `ns:name`.
    tokens: BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct FakeApi {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let api = FakeApi {
            port,
            state: Arc::default(),
        };
        // Every kind is served, even with no objects.
        for kind in [
            "GatewayClass",
            "Gateway",
            "HTTPRoute",
            "GRPCRoute",
            "TCPRoute",
            "ReferenceGrant",
            "Service",
            "Namespace",
            "Pod",
            "Secret",
            "ConfigMap",
            "EndpointSlice",
        ] {
            let (g, v, plural, _) = resource_of(kind).expect("kind");
            api.lock()
                .objects
                .entry(collection(g, v, plural))
                .or_default();
        }
        let served = api.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let api = served.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, std::convert::Infallible>(api.answer(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        api
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake api state")
    }

    /// A kubeconfig for it, written to `path`.
    pub fn kubeconfig(&self, path: &std::path::Path) {
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"http://127.0.0.1:{}\"}}}}]\n\
                 users: [{{name: control, user: {{token: control-plane-token}}}}]\n\
                 contexts: [{{name: fake, context: {{cluster: fake, user: control}}}}]\ncurrent-context: fake\n",
                self.port
            ),
        )
        .expect("kubeconfig");
    }

    /// Serves `kind` (discovery lists it) before any object of it exists,
    /// as a cluster with its CRD installed does.
    pub fn serve(&self, kind: &str) {
        let (g, v, plural, _) = resource_of(kind).unwrap_or_else(|| panic!("no {kind}"));
        self.lock()
            .objects
            .entry(collection(g, v, plural))
            .or_default();
    }

    /// Creates or replaces every object of the YAML text, telling watchers.
    pub fn apply(&self, yaml: &str) {
        for (_, mut value) in
            strait_config::split_text(std::path::Path::new("t.yaml"), yaml).expect("yaml")
        {
            let kind = value["kind"].as_str().unwrap_or("").to_string();
            let (g, v, plural, namespaced) =
                resource_of(&kind).unwrap_or_else(|| panic!("the stand-in serves no {kind}"));
            if namespaced && value["metadata"]["namespace"].is_null() {
                value["metadata"]["namespace"] = "default".into();
            }
            let at = (
                value["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                value["metadata"]["name"].as_str().unwrap_or("").to_string(),
            );
            let path = collection(g, v, plural);
            let mut state = self.lock();
            state.resource_version += 1;
            value["metadata"]["resourceVersion"] = state.resource_version.to_string().into();
            // What a cluster adds, that strait must ignore.
            value["metadata"]["managedFields"] = json!([{"manager": "kubectl"}]);
            value["metadata"]["uid"] = format!("uid-{}", at.1).into();
            let old = state
                .objects
                .entry(path.clone())
                .or_default()
                .insert(at, value.clone());
            let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
            notify(&mut state, &path, kind, value);
        }
    }

    /// Deletes an object, telling watchers.
    pub fn delete(&self, kind: &str, ns: &str, name: &str) {
        let (g, v, plural, _) = resource_of(kind).expect("kind");
        let path = collection(g, v, plural);
        let mut state = self.lock();
        let removed = state
            .objects
            .get_mut(&path)
            .and_then(|o| o.remove(&(ns.to_string(), name.to_string())));
        if let Some(mut value) = removed {
            state.resource_version += 1;
            value["metadata"]["resourceVersion"] = state.resource_version.to_string().into();
            notify(&mut state, &path, "DELETED", value);
        }
    }

    /// Deletes an object without telling anyone (as if it went while a
    /// watcher was away), then ends the kind's watches with `410 Gone`:
    /// only a new list shows the deletion.
    pub fn delete_unseen_then_expire(&self, kind: &str, ns: &str, name: &str) {
        let (g, v, plural, _) = resource_of(kind).expect("kind");
        let path = collection(g, v, plural);
        let mut state = self.lock();
        if let Some(o) = state.objects.get_mut(&path) {
            o.remove(&(ns.to_string(), name.to_string()));
        }
        state.resource_version += 1;
        let gone = json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "too old resource version", "reason": "Expired", "code": 410}});
        for w in state.watchers.remove(&path).unwrap_or_default() {
            let _ = w.send(Bytes::from(format!("{gone}\n")));
        }
    }

    /// How many list (not watch) requests a collection has had.
    pub fn lists(&self, kind: &str) -> usize {
        let (g, v, plural, _) = resource_of(kind).expect("kind");
        let path = collection(g, v, plural);
        self.lock()
            .requests
            .iter()
            .filter(|r| r.starts_with(&format!("GET {path}")) && !r.contains("watch=true"))
            .count()
    }

    /// The status patches written to `Kind` `ns/name` so far.
    pub fn status_writes(&self, kind: &str, ns: &str, name: &str) -> Vec<Value> {
        let (g, v, plural, _) = resource_of(kind).expect("kind");
        let object = object_path(g, v, plural, ns, name);
        self.lock()
            .status_writes
            .iter()
            .filter(|(p, _)| *p == object)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// TokenReview will say `token` is ServiceAccount `ns/name`'s.
    pub fn token(&self, token: &str, ns: &str, name: &str) {
        self.lock()
            .tokens
            .insert(token.to_string(), format!("{ns}:{name}"));
    }

    /// Sets an object's status without telling anyone (as another
    /// controller's earlier write).
    pub fn set_status(&self, kind: &str, ns: &str, name: &str, status: Value) {
        let (g, v, plural, _) = resource_of(kind).expect("kind");
        let mut state = self.lock();
        let stored = state
            .objects
            .get_mut(&collection(g, v, plural))
            .and_then(|o| o.get_mut(&(ns.to_string(), name.to_string())))
            .expect("object");
        stored["status"] = status;
    }

    /// The object as stored (status included).
    pub fn object(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let (g, v, plural, _) = resource_of(kind).expect("kind");
        self.lock()
            .objects
            .get(&collection(g, v, plural))?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// GET and PATCH (merge, of `status`) of one namespaced object.
    fn one(&self, method: &http::Method, path: &str, body: &[u8]) -> Option<http::Response<Body>> {
        let (object, status) = match path.strip_suffix("/status") {
            Some(o) => (o, true),
            None => (path, false),
        };
        let (head, name) = object.rsplit_once('/')?;
        let (head, plural) = head.rsplit_once('/')?;
        let (base, ns) = head.rsplit_once("/namespaces/")?;
        let path_of_collection = format!("{base}/{plural}");
        let mut state = self.lock();
        let at = (ns.to_string(), name.to_string());
        let stored = state.objects.get(&path_of_collection)?.get(&at)?.clone();
        if *method == http::Method::GET {
            return Some(json_answer(200, &stored));
        }
        if !(status && *method == http::Method::PATCH) {
            return Some(json_answer(405, &json!({"kind": "Status", "code": 405})));
        }
        let patch: Value = serde_json::from_slice(body).unwrap_or_default();
        state
            .status_writes
            .push((object.to_string(), patch.clone()));
        let mut updated = stored;
        updated["status"] = patch["status"].clone();
        state.resource_version += 1;
        updated["metadata"]["resourceVersion"] = state.resource_version.to_string().into();
        state
            .objects
            .entry(path_of_collection.clone())
            .or_default()
            .insert(at, updated.clone());
        notify(&mut state, &path_of_collection, "MODIFIED", updated.clone());
        Some(json_answer(200, &updated))
    }

    async fn answer(&self, req: http::Request<hyper::body::Incoming>) -> http::Response<Body> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let method = req.method().clone();
        self.lock()
            .requests
            .push(format!("{method} {path}?{query}"));
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if path == "/apis/authentication.k8s.io/v1/tokenreviews" {
            let review: Value = serde_json::from_slice(&body).unwrap_or_default();
            let token = review["spec"]["token"].as_str().unwrap_or("");
            let user = self.lock().tokens.get(token).cloned();
            let status = match user {
                Some(sa) => json!({"authenticated": true,
                    "user": {"username": format!("system:serviceaccount:{sa}")},
                    "audiences": review["spec"]["audiences"]}),
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
            let mut answer = review.clone();
            answer["status"] = status;
            return json_answer(201, &answer);
        }
        if path.contains("/namespaces/") {
            return self
                .one(&method, &path, &body)
                .unwrap_or_else(|| json_answer(404, &json!({"kind": "Status", "code": 404})));
        }
        // Discovery: the resources of a group version.
        let group_version = path
            .strip_prefix("/apis/")
            .or_else(|| path.strip_prefix("/api/"))
            .filter(|gv| gv.split('/').count() == if path.starts_with("/apis/") { 2 } else { 1 });
        if let Some(gv) = group_version {
            let state = self.lock();
            let prefix = format!("{path}/");
            let resources: Vec<Value> = state
                .objects
                .keys()
                .filter_map(|c| c.strip_prefix(&prefix))
                .map(|plural| json!({"name": plural, "singularName": "", "namespaced": true, "kind": "", "verbs": ["list", "watch"]}))
                .collect();
            if resources.is_empty() {
                return json_answer(404, &json!({"kind": "Status", "code": 404}));
            }
            return json_answer(
                200,
                &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
            );
        }
        let mut state = self.lock();
        if !state.objects.contains_key(&path) {
            return json_answer(404, &json!({"kind": "Status", "code": 404}));
        }
        if query
            .split('&')
            .any(|q| q == "watch=true" || q == "watch=1")
        {
            let (tx, rx) = mpsc::unbounded_channel();
            state.watchers.entry(path).or_default().push(tx);
            let frames = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
            });
            return http::Response::builder()
                .header("content-type", "application/json")
                .body(StreamBody::new(frames).boxed_unsync())
                .expect("response");
        }
        let items: Vec<Value> = state.objects[&path]
            .values()
            .map(|v| {
                // List items come without apiVersion and kind.
                let mut v = v.clone();
                if let Value::Object(m) = &mut v {
                    m.remove("apiVersion");
                    m.remove("kind");
                }
                v
            })
            .collect();
        let rv = state.resource_version.to_string();
        json_answer(
            200,
            &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv}, "items": items}),
        )
    }
}

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

fn json_answer(status: u16, value: &Value) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed_unsync())
        .expect("response")
}

fn notify(state: &mut State, path: &str, kind: &str, object: Value) {
    let event = Bytes::from(format!("{}\n", json!({"type": kind, "object": object})));
    if let Some(ws) = state.watchers.get_mut(path) {
        ws.retain(|w| w.send(event.clone()).is_ok());
    }
}
