//! The cluster as a source of the control plane's index: a kube-rs
//! watcher per kind, each object typed once as it arrives (with the same
//! schema checks as a folder's), and the index published again after each
//! burst of events. A watcher that loses its place (a 410 Gone, a broken
//! stream) lists its kind again, and what the new list lacks is removed.
//!
//! After each new index, the status of our Gateways and routes is written
//! back (`status`).
//!
//! EndpointSlices are completed from the Pods behind them: the
//! ServiceAccount they all run as (`strait.dev/service-account`), and
//! whether they all carry strait's sidecar (`strait.dev/meshed`) — what a
//! folder says by hand.

use futures_util::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strait_control::index::{self, Index, Indexed, SourceDocs};
use strait_control::server::Publisher;
use strait_route::{MESHED_LABEL, SERVICE_ACCOUNT_ANNOTATION};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// A pod annotation set by the injector: the pod runs strait's sidecar.
pub const INJECTED_ANNOTATION: &str = "strait.dev/injected";

/// A kind the control plane reads, and the versions it understands, the
/// preferred first.
struct Kind {
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
    /// Only these objects (Secrets: TLS certificates, never tokens).
    fields: Option<&'static str>,
}

const GATEWAY_API: &str = "gateway.networking.k8s.io";
const POLICY: &str = "policy.strait.dev";

const KINDS: &[Kind] = &[
    kind(GATEWAY_API, &["v1"], "GatewayClass", "gatewayclasses"),
    kind(GATEWAY_API, &["v1"], "Gateway", "gateways"),
    kind(GATEWAY_API, &["v1"], "HTTPRoute", "httproutes"),
    kind(GATEWAY_API, &["v1"], "GRPCRoute", "grpcroutes"),
    kind(
        GATEWAY_API,
        &["v1", "v1alpha3", "v1alpha2"],
        "TLSRoute",
        "tlsroutes",
    ),
    kind(GATEWAY_API, &["v1", "v1alpha2"], "TCPRoute", "tcproutes"),
    kind(
        GATEWAY_API,
        &["v1", "v1beta1"],
        "ReferenceGrant",
        "referencegrants",
    ),
    kind(
        GATEWAY_API,
        &["v1", "v1alpha3"],
        "BackendTLSPolicy",
        "backendtlspolicies",
    ),
    kind(
        POLICY,
        &["v1alpha1"],
        "BackendTrafficPolicy",
        "backendtrafficpolicies",
    ),
    kind(POLICY, &["v1alpha1"], "FaultInjection", "faultinjections"),
    kind(POLICY, &["v1alpha1"], "DirectResponse", "directresponses"),
    kind(POLICY, &["v1alpha1"], "BodyTransform", "bodytransforms"),
    kind(
        POLICY,
        &["v1alpha1"],
        "PeerAuthentication",
        "peerauthentications",
    ),
    kind(
        POLICY,
        &["v1alpha1"],
        "AuthorizationPolicy",
        "authorizationpolicies",
    ),
    kind(
        POLICY,
        &["v1alpha1"],
        "TelemetryPolicy",
        "telemetrypolicies",
    ),
    kind(POLICY, &["v1alpha1"], "SecurityPolicy", "securitypolicies"),
    kind(
        POLICY,
        &["v1alpha1"],
        "RateLimitPolicy",
        "ratelimitpolicies",
    ),
    kind(
        POLICY,
        &["v1alpha1"],
        "ApiSchemaPolicy",
        "apischemapolicies",
    ),
    kind("", &["v1"], "Namespace", "namespaces"),
    kind("", &["v1"], "Service", "services"),
    kind(
        "discovery.k8s.io",
        &["v1"],
        "EndpointSlice",
        "endpointslices",
    ),
    kind("", &["v1"], "ConfigMap", "configmaps"),
    Kind {
        // Certificates, and the API keys and users of SecurityPolicies
        // (opaque); never ServiceAccount tokens, nor Helm's releases.
        fields: Some("type!=kubernetes.io/service-account-token,type!=helm.sh/release.v1"),
        ..kind("", &["v1"], "Secret", "secrets")
    },
    kind("", &["v1"], "Pod", "pods"),
];

const fn kind(
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
) -> Kind {
    Kind {
        group,
        versions,
        kind,
        plural,
        fields: None,
    }
}

/// What a pod tells about the endpoints it backs.
#[derive(Debug, Clone, PartialEq)]
struct PodFacts {
    service_account: String,
    injected: bool,
}

/// Every object the watchers have seen, and the documents made of them.
#[derive(Default)]
pub struct Cluster {
    /// By key (`Kind/namespace/name`), without `status` and
    /// `managedFields`.
    objects: BTreeMap<String, Value>,
    pods: HashMap<(String, String), PodFacts>,
    /// A kind being listed again: what the list has given so far.
    relisting: HashMap<&'static str, BTreeMap<String, Value>>,
    /// The documents of each object, by key, with the value they were
    /// made from (completed EndpointSlices included).
    docs: HashMap<String, (Value, Arc<SourceDocs>)>,
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn key_of(kind: &str, v: &Value) -> String {
    let ns = text(v, &["metadata", "namespace"]);
    format!("{kind}/{ns}/{}", text(v, &["metadata", "name"]))
}

/// The object as strait reads it: typed as the watcher's kind, without
/// what the API server adds that no proxy needs.
fn clean(api: &ApiResource, obj: DynamicObject) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        // List items come without them.
        map.insert("apiVersion".into(), Value::String(api.api_version.clone()));
        map.insert("kind".into(), Value::String(api.kind.clone()));
        map.remove("status");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            // Neither changes what a proxy does; a status write (ours)
            // changes resourceVersion and must not make a new version.
            meta.remove("managedFields");
            meta.remove("resourceVersion");
        }
    }
    v
}

impl Cluster {
    /// Whether anything strait reads changed (a pod's status does not).
    fn apply(&mut self, kind: &'static str, value: Value) -> bool {
        let key = key_of(kind, &value);
        if let Some(buffer) = self.relisting.get_mut(kind) {
            buffer.insert(key, value);
            false
        } else if kind == "Pod" {
            let at = (
                text(&value, &["metadata", "namespace"]).to_string(),
                text(&value, &["metadata", "name"]).to_string(),
            );
            let facts = pod_facts(&value);
            self.pods.insert(at, facts.clone()) != Some(facts)
        } else {
            self.objects.insert(key, value.clone()) != Some(value)
        }
    }

    fn delete(&mut self, kind: &'static str, value: &Value) {
        if kind == "Pod" {
            self.pods.remove(&(
                text(value, &["metadata", "namespace"]).to_string(),
                text(value, &["metadata", "name"]).to_string(),
            ));
        } else {
            self.objects.remove(&key_of(kind, value));
        }
    }

    /// A list begins: what it gives replaces the kind when it ends.
    fn relist(&mut self, kind: &'static str) {
        self.relisting.insert(kind, BTreeMap::new());
    }

    fn listed(&mut self, kind: &'static str) {
        let Some(buffer) = self.relisting.remove(kind) else {
            return;
        };
        if kind == "Pod" {
            self.pods = buffer
                .values()
                .map(|v| {
                    let at = (
                        text(v, &["metadata", "namespace"]).to_string(),
                        text(v, &["metadata", "name"]).to_string(),
                    );
                    (at, pod_facts(v))
                })
                .collect();
            return;
        }
        let prefix = format!("{kind}/");
        self.objects.retain(|k, _| !k.starts_with(&prefix));
        self.objects.extend(buffer);
    }

    /// An EndpointSlice with what its pods say.
    fn complete(&self, slice: &Value) -> Value {
        let ns = text(slice, &["metadata", "namespace"]);
        let targets: Vec<Option<&PodFacts>> = slice
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| text(e, &["targetRef", "kind"]) == "Pod")
            .map(|e| {
                let at = match text(e, &["targetRef", "namespace"]) {
                    "" => ns,
                    other => other,
                };
                let name = text(e, &["targetRef", "name"]);
                self.pods.get(&(at.to_string(), name.to_string()))
            })
            .collect();
        // A pod not seen yet could be anything: say nothing of the slice
        // until every one is known.
        let Some(pods) = targets.into_iter().collect::<Option<Vec<&PodFacts>>>() else {
            return slice.clone();
        };
        let Some(first) = pods.first() else {
            return slice.clone();
        };
        let mut out = slice.clone();
        let meta = out
            .as_object_mut()
            .and_then(|m| m.get_mut("metadata"))
            .and_then(Value::as_object_mut);
        let Some(meta) = meta else {
            return out;
        };
        if pods
            .iter()
            .all(|p| p.service_account == first.service_account)
        {
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(a) = annotations {
                a.insert(
                    SERVICE_ACCOUNT_ANNOTATION.into(),
                    Value::String(first.service_account.clone()),
                );
            }
        }
        if pods.iter().all(|p| p.injected) {
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(l) = labels {
                l.insert(MESHED_LABEL.into(), Value::String("true".into()));
            }
        }
        out
    }

    /// The index of everything seen; objects unchanged since the last
    /// call are not typed again.
    pub fn index(&mut self, previous: Option<&Index>) -> Index {
        self.docs.retain(|k, _| self.objects.contains_key(k));
        let mut sources = Vec::with_capacity(self.objects.len());
        for (key, value) in &self.objects {
            let completed = key
                .starts_with("EndpointSlice/")
                .then(|| self.complete(value));
            let value = completed.as_ref().unwrap_or(value);
            let made = match self.docs.get(key) {
                Some((old, made)) if old == value => made.clone(),
                _ => {
                    let source = strait_config::Source {
                        file: std::path::Path::new(&key).into(),
                        doc: 0,
                    };
                    let made = Arc::new(Ok(vec![index::document(&source, "", value.clone())]));
                    self.docs.insert(key.clone(), (value.clone(), made.clone()));
                    made
                }
            };
            sources.push((key.clone(), made));
        }
        index::build(&sources, previous)
    }
}

fn pod_facts(pod: &Value) -> PodFacts {
    let sa = match text(pod, &["spec", "serviceAccountName"]) {
        "" => "default",
        sa => sa,
    };
    PodFacts {
        service_account: sa.to_string(),
        injected: pod
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(INJECTED_ANNOTATION))
            .and_then(Value::as_str)
            == Some("true"),
    }
}

enum Seen {
    /// Once a second, so that a kind that never lists cannot hold the
    /// first configuration back for ever.
    Tick,
    Apply(&'static str, Value),
    Delete(&'static str, Value),
    Init(&'static str),
    InitDone(&'static str),
}

/// The kinds this cluster serves, each at the first version strait reads
/// that it has (a kind whose CRD is not installed is skipped, and said).
async fn discover(client: &Client) -> Vec<(&'static Kind, ApiResource)> {
    let mut served: HashMap<String, Vec<String>> = HashMap::new();
    let mut found = Vec::new();
    for k in KINDS {
        let mut chosen = None;
        for v in k.versions {
            let api_version = if k.group.is_empty() {
                v.to_string()
            } else {
                format!("{}/{v}", k.group)
            };
            if !served.contains_key(&api_version) {
                let list = if k.group.is_empty() {
                    client.list_core_api_resources(v).await
                } else {
                    client.list_api_group_resources(&api_version).await
                };
                let names = list
                    .map(|l| l.resources.into_iter().map(|r| r.name).collect())
                    .unwrap_or_default();
                served.insert(api_version.clone(), names);
            }
            if served[&api_version].iter().any(|n| n == k.plural) {
                chosen = Some(*v);
                break;
            }
        }
        match chosen {
            Some(v) => {
                let gvk = GroupVersionKind::gvk(k.group, v, k.kind);
                found.push((k, ApiResource::from_gvk_with_plural(&gvk, k.plural)));
            }
            None => warn!(
                kind = k.kind,
                group = k.group,
                "not served by this cluster (is its CRD installed?); not watched"
            ),
        }
    }
    found
}

/// Watches the cluster and publishes its index: the first once every kind
/// has been listed, then after each burst of changes.
pub async fn run(client: Client, mut publisher: Publisher) {
    let mut status = crate::status::StatusWriter::default();
    let kinds = discover(&client).await;
    info!(kinds = kinds.len(), "watching the cluster");
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (k, api) in &kinds {
        spawn_watcher(&client, k, api, tx.clone());
    }
    spawn_ticker(tx);
    let mut follow = Follow::new(&kinds);
    while let Some(first) = rx.recv().await {
        let seen = burst(&mut rx, first).await;
        follow.take(seen);
        if !follow.due(publisher.current().is_some()) {
            continue;
        }
        let next = follow.cluster.index(publisher.current());
        let Some(published) = publisher.publish(next) else {
            continue;
        };
        if !endpoints_only(&published) {
            status
                .write(
                    &client,
                    &published.index,
                    strait_config::DEFAULT_CONTROLLER_NAME,
                )
                .await;
        }
    }
}

/// Starts the watcher of one kind, sending what it sees to `tx`.
fn spawn_watcher(
    client: &Client,
    k: &'static Kind,
    api: &ApiResource,
    tx: mpsc::UnboundedSender<Seen>,
) {
    let all: Api<DynamicObject> = Api::all_with(client.clone(), api);
    let mut config = watcher::Config::default();
    if let Some(f) = k.fields {
        config = config.fields(f);
    }
    tokio::spawn(watch_kind(k, api.clone(), all, config, tx));
}

/// Runs until `run` is gone: the backoff retries a failed watch, so an
/// error is only said.
async fn watch_kind(
    k: &'static Kind,
    api: ApiResource,
    all: Api<DynamicObject>,
    config: watcher::Config,
    tx: mpsc::UnboundedSender<Seen>,
) {
    let mut events = std::pin::pin!(watcher::watcher(all, config).default_backoff());
    while let Some(event) = events.next().await {
        let seen = match event {
            Ok(Event::Apply(o) | Event::InitApply(o)) => Seen::Apply(k.kind, clean(&api, o)),
            Ok(Event::Delete(o)) => Seen::Delete(k.kind, clean(&api, o)),
            Ok(Event::Init) => Seen::Init(k.kind),
            Ok(Event::InitDone) => Seen::InitDone(k.kind),
            Err(e) => {
                warn!(kind = k.kind, error = %e, "watch failed; retrying");
                continue;
            }
        };
        if tx.send(seen).is_err() {
            return;
        }
    }
}

fn spawn_ticker(tx: mpsc::UnboundedSender<Seen>) {
    tokio::spawn(async move {
        while tx.send(Seen::Tick).is_ok() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// `first` and whatever follows it closely: a burst becomes one new
/// version.
async fn burst(rx: &mut mpsc::UnboundedReceiver<Seen>, first: Seen) -> Vec<Seen> {
    let mut seen = vec![first];
    loop {
        tokio::time::sleep(strait_api::watch::DEBOUNCE).await;
        let before = seen.len();
        while let Ok(more) = rx.try_recv() {
            seen.push(more);
        }
        if seen.len() == before {
            return seen;
        }
    }
}

/// Endpoints change most and decide no status.
fn endpoints_only(published: &index::Published) -> bool {
    published.delta.as_ref().is_some_and(|d| {
        let slice = |o: &Arc<Indexed>| o.entry.key.starts_with("EndpointSlice/");
        d.changed.iter().all(|(_, o)| slice(o)) && d.removed.iter().all(slice)
    })
}

/// What `run` keeps from one burst to the next.
struct Follow {
    cluster: Cluster,
    /// Kinds whose first list has not ended yet.
    unlisted: HashSet<&'static str>,
    /// Whether anything changed since the last index.
    dirty: bool,
    started: Instant,
}

impl Follow {
    fn new(kinds: &[(&'static Kind, ApiResource)]) -> Self {
        Follow {
            cluster: Cluster::default(),
            unlisted: kinds.iter().map(|(k, _)| k.kind).collect(),
            dirty: false,
            started: Instant::now(),
        }
    }

    fn take(&mut self, seen: Vec<Seen>) {
        for s in seen {
            match s {
                Seen::Tick => {}
                Seen::Apply(kind, v) => self.dirty |= self.cluster.apply(kind, v),
                Seen::Delete(kind, v) => {
                    self.cluster.delete(kind, &v);
                    self.dirty = true;
                }
                Seen::Init(kind) => self.cluster.relist(kind),
                Seen::InitDone(kind) => {
                    self.cluster.listed(kind);
                    self.unlisted.remove(kind);
                    self.dirty = true;
                }
            }
        }
    }

    /// Whether to make a new index now. A kind not listed once the first
    /// wait is over is given up on, so that proxies get a configuration.
    fn due(&mut self, published_before: bool) -> bool {
        let waiting = !self.unlisted.is_empty() && self.started.elapsed() < FIRST_LIST_TIMEOUT;
        if waiting || (!self.dirty && published_before) {
            return false;
        }
        if !self.unlisted.is_empty() {
            warn!(kinds = ?self.unlisted, "not listed yet; publishing without them");
            self.unlisted.clear();
        }
        self.dirty = false;
        true
    }
}

/// How long the first configuration waits for every kind to be listed:
/// proxies should not get a half-listed cluster, nor wait for ever on a
/// kind the control plane may not read.
pub const FIRST_LIST_TIMEOUT: Duration = Duration::from_secs(60);
