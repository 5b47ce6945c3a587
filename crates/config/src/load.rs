//! Reading a folder of manifests into typed resources.

use crate::auth::SecurityPolicySpec;
use crate::backendtls::BackendTlsPolicySpec;
use crate::core::{ConfigMapBody, EndpointSliceBody, SecretBody, ServiceSpec};
use crate::gateway::{GatewayClassSpec, GatewaySpec, ReferenceGrantSpec};
use crate::grpcroute::GrpcRouteSpec;
use crate::httproute::HttpRouteSpec;
use crate::l4route::{TcpRouteSpec, TlsRouteSpec};
use crate::meta::ObjectMeta;
use crate::problem::{Problem, Source};
use crate::security::{AuthorizationPolicySpec, PeerAuthenticationSpec};
use crate::telemetry::TelemetryPolicySpec;
use crate::traffic::{
    BackendTrafficPolicySpec, BodyTransformSpec, DirectResponseSpec, FaultInjectionSpec,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A Kubernetes object with a `spec`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Object<S> {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: S,
    /// Present in objects exported from a cluster; strait computes its own.
    pub status: Option<Value>,
}

/// A Kubernetes object whose fields sit beside `metadata` (EndpointSlice, Secret).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Flat<B> {
    pub metadata: ObjectMeta,
    #[serde(flatten)]
    pub body: B,
}

/// Serialized externally tagged (`{"HttpRoute": {...}}`): the parse cache
/// keeps resources in that form and reads them back.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub enum Resource {
    GatewayClass(Object<GatewayClassSpec>),
    Gateway(Object<GatewaySpec>),
    HttpRoute(Object<HttpRouteSpec>),
    GrpcRoute(Object<GrpcRouteSpec>),
    TlsRoute(Object<TlsRouteSpec>),
    TcpRoute(Object<TcpRouteSpec>),
    ReferenceGrant(Object<ReferenceGrantSpec>),
    BackendTlsPolicy(Object<BackendTlsPolicySpec>),
    BackendTrafficPolicy(Object<BackendTrafficPolicySpec>),
    FaultInjection(Object<FaultInjectionSpec>),
    DirectResponse(Object<DirectResponseSpec>),
    BodyTransform(Object<BodyTransformSpec>),
    PeerAuthentication(Object<PeerAuthenticationSpec>),
    AuthorizationPolicy(Object<AuthorizationPolicySpec>),
    TelemetryPolicy(Object<TelemetryPolicySpec>),
    SecurityPolicy(Object<SecurityPolicySpec>),
    RateLimitPolicy(Object<crate::ratelimit::RateLimitPolicySpec>),
    ApiSchemaPolicy(Object<crate::apischema::ApiSchemaPolicySpec>),
    /// An OpenAPI document of the folder, for ApiSchemaPolicy.
    OpenApi(crate::apischema::OpenApiFile),
    Service(Object<ServiceSpec>),
    EndpointSlice(Flat<EndpointSliceBody>),
    Namespace(Flat<Value>),
    Secret(Flat<SecretBody>),
    ConfigMap(Flat<ConfigMapBody>),
}

impl Resource {
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Resource::GatewayClass(o) => &o.metadata,
            Resource::Gateway(o) => &o.metadata,
            Resource::HttpRoute(o) => &o.metadata,
            Resource::GrpcRoute(o) => &o.metadata,
            Resource::TlsRoute(o) => &o.metadata,
            Resource::TcpRoute(o) => &o.metadata,
            Resource::ReferenceGrant(o) => &o.metadata,
            Resource::BackendTlsPolicy(o) => &o.metadata,
            Resource::BackendTrafficPolicy(o) => &o.metadata,
            Resource::FaultInjection(o) => &o.metadata,
            Resource::DirectResponse(o) => &o.metadata,
            Resource::BodyTransform(o) => &o.metadata,
            Resource::PeerAuthentication(o) => &o.metadata,
            Resource::AuthorizationPolicy(o) => &o.metadata,
            Resource::TelemetryPolicy(o) => &o.metadata,
            Resource::SecurityPolicy(o) => &o.metadata,
            Resource::RateLimitPolicy(o) => &o.metadata,
            Resource::ApiSchemaPolicy(o) => &o.metadata,
            Resource::OpenApi(o) => &o.metadata,
            Resource::Service(o) => &o.metadata,
            Resource::EndpointSlice(o) => &o.metadata,
            Resource::Namespace(o) => &o.metadata,
            Resource::Secret(o) => &o.metadata,
            Resource::ConfigMap(o) => &o.metadata,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Resource::GatewayClass(_) => "GatewayClass",
            Resource::Gateway(_) => "Gateway",
            Resource::HttpRoute(_) => "HTTPRoute",
            Resource::GrpcRoute(_) => "GRPCRoute",
            Resource::TlsRoute(_) => "TLSRoute",
            Resource::TcpRoute(_) => "TCPRoute",
            Resource::ReferenceGrant(_) => "ReferenceGrant",
            Resource::BackendTlsPolicy(_) => "BackendTLSPolicy",
            Resource::BackendTrafficPolicy(_) => "BackendTrafficPolicy",
            Resource::FaultInjection(_) => "FaultInjection",
            Resource::DirectResponse(_) => "DirectResponse",
            Resource::BodyTransform(_) => "BodyTransform",
            Resource::PeerAuthentication(_) => "PeerAuthentication",
            Resource::AuthorizationPolicy(_) => "AuthorizationPolicy",
            Resource::TelemetryPolicy(_) => "TelemetryPolicy",
            Resource::SecurityPolicy(_) => "SecurityPolicy",
            Resource::RateLimitPolicy(_) => "RateLimitPolicy",
            Resource::ApiSchemaPolicy(_) => "ApiSchemaPolicy",
            Resource::OpenApi(_) => "OpenAPI",
            Resource::Service(_) => "Service",
            Resource::EndpointSlice(_) => "EndpointSlice",
            Resource::Namespace(_) => "Namespace",
            Resource::Secret(_) => "Secret",
            Resource::ConfigMap(_) => "ConfigMap",
        }
    }
}

/// One resource and where it was read.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Document {
    pub source: Source,
    /// Shared: the parse cache and the set being compiled hold the same
    /// resources (a copy each was 28 MiB at 10,000 routes).
    pub resource: std::sync::Arc<Resource>,
}

/// Everything read from a folder: the resources and the problems met on the way.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ResourceSet {
    pub documents: Vec<Document>,
    pub problems: Vec<Problem>,
}

impl ResourceSet {
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }

    pub fn extend(&mut self, other: ResourceSet) {
        self.documents.extend(other.documents);
        self.problems.extend(other.problems);
    }
}

/// Loads every `*.yaml` / `*.yml` below `dir` (sub-folders included, hidden
/// entries skipped), in path order so that results are stable.
pub fn load_dir(dir: &Path) -> ResourceSet {
    read_dir_with(dir, parse_text)
}

/// What each file parsed to, kept so that a reload parses only the files
/// whose text changed: parsing YAML is two thirds of loading a large
/// folder (10,000 routes: 0.6 of 0.9 s), and a change is usually one file.
#[derive(Debug, Default)]
pub struct ParseCache {
    files: HashMap<PathBuf, Kept>,
    hasher: std::collections::hash_map::RandomState,
}

/// One file as the cache keeps it: its text's length and keyed hash, its
/// problems, and its documents as JSON. Parsed documents are kept only
/// while a compile needs them: at 10,000 routes they were 23 MiB in a
/// million small allocations, their JSON is 5 MB in one per file, and
/// reading it back is a small part of a reload.
#[derive(Debug)]
struct Kept {
    len: usize,
    hash: u64,
    problems: Vec<Problem>,
    /// `[[document number, resource], ...]`.
    documents: Box<[u8]>,
}

impl Kept {
    /// `None` if the documents cannot be written as JSON (then the file is
    /// parsed again each time).
    fn new(len: usize, hash: u64, set: &ResourceSet) -> Option<Kept> {
        let mut json = b"[".to_vec();
        for (i, d) in set.documents.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            // Writing to a Vec cannot fail.
            let _ = write!(json, "[{},", d.source.doc);
            json.extend_from_slice(&compact_json(&d.resource)?);
            json.push(b']');
        }
        json.push(b']');
        Some(Kept {
            len,
            hash,
            problems: set.problems.clone(),
            documents: json.into_boxed_slice(),
        })
    }

    /// The set this was made from, or `None` if its JSON does not read
    /// back (then the file is parsed again).
    fn restore(&self, file: &Path) -> Option<ResourceSet> {
        let documents: Vec<(usize, Resource)> = serde_json::from_slice(&self.documents).ok()?;
        let file: std::sync::Arc<Path> = file.into();
        Some(ResourceSet {
            documents: documents
                .into_iter()
                .map(|(doc, resource)| Document {
                    source: Source {
                        file: file.clone(),
                        doc,
                    },
                    resource: std::sync::Arc::new(resource),
                })
                .collect(),
            problems: self.problems.clone(),
        })
    }
}

/// `resource` as JSON without its null and empty fields, which read back
/// as absent: most of a manifest's fields are optional and unset, and
/// written out they doubled its size. Read back and compared before it is
/// kept: where a field needs to be present, the whole JSON is kept instead.
fn compact_json(resource: &Resource) -> Option<Vec<u8>> {
    fn drop_empty(value: &mut Value) {
        match value {
            Value::Object(map) => map.retain(|_, v| {
                drop_empty(v);
                !(v.is_null()
                    || v.as_array().is_some_and(Vec::is_empty)
                    || v.as_object().is_some_and(serde_json::Map::is_empty))
            }),
            Value::Array(items) => items.iter_mut().for_each(drop_empty),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(resource).ok()?;
    drop_empty(&mut value);
    let short = serde_json::to_vec(&value).ok()?;
    match serde_json::from_slice::<Resource>(&short) {
        Ok(back) if back == *resource => Some(short),
        _ => serde_json::to_vec(resource).ok(),
    }
}

impl ParseCache {
    /// `text`'s resources: read back from `before` when `file` had the
    /// same text (same length and 64-bit keyed hash), else parsed; kept
    /// for the next read either way.
    fn parse(
        &mut self,
        before: &mut HashMap<PathBuf, Kept>,
        file: &Path,
        text: &str,
    ) -> ResourceSet {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(text);
        let same = before
            .remove(file)
            .filter(|kept| kept.len == text.len() && kept.hash == hash);
        if let Some(kept) = same {
            if let Some(set) = kept.restore(file) {
                self.files.insert(file.to_path_buf(), kept);
                return set;
            }
        }
        let set = parse_text(file, text);
        if let Some(kept) = Kept::new(text.len(), hash, &set) {
            self.files.insert(file.to_path_buf(), kept);
        }
        set
    }
}

/// [`load_dir`], parsing only files not in `cache` with the same text;
/// `cache` then holds the folder's files as they are now (a removed file
/// leaves it).
pub fn load_dir_cached(dir: &Path, cache: &mut ParseCache) -> ResourceSet {
    let mut before = std::mem::take(&mut cache.files);
    read_dir_with(dir, |file, text| cache.parse(&mut before, file, text))
}

/// Every YAML file of `dir` in path order, through `parse`, with the
/// problems of reading them.
fn read_dir_with(dir: &Path, mut parse: impl FnMut(&Path, &str) -> ResourceSet) -> ResourceSet {
    let mut set = ResourceSet::default();
    let files = match yaml_files(dir) {
        Ok(files) => files,
        Err(e) => {
            let source = Source {
                file: dir.into(),
                doc: 0,
            };
            set.problems.push(Problem::error(
                &source,
                "",
                format!("cannot read folder: {e}"),
            ));
            return set;
        }
    };
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => set.extend(named_in(dir, parse(&file, &text))),
            Err(e) => set.problems.push(Problem::error(
                &Source {
                    file: file.into(),
                    doc: 0,
                },
                "",
                format!("cannot read file: {e}"),
            )),
        }
    }
    set
}

/// `set` with its OpenAPI documents named by their path below `dir`, as
/// an ApiSchemaPolicy's `file` names them.
fn named_in(dir: &Path, mut set: ResourceSet) -> ResourceSet {
    for d in &mut set.documents {
        let Ok(relative) = d.source.file.strip_prefix(dir) else {
            continue;
        };
        if !matches!(&*d.resource, Resource::OpenApi(_)) {
            continue;
        }
        if let Resource::OpenApi(file) = std::sync::Arc::make_mut(&mut d.resource) {
            file.metadata.name = relative.to_string_lossy().into_owned();
        }
    }
    set
}

/// The extensions of the files [`load_dir`] reads.
pub const MANIFEST_EXTENSIONS: [&str; 2] = ["yaml", "yml"];

/// Whether a change to `path` can change what [`load_dir`] reads: not a
/// file of another kind (a log, an editor's swap file), whose writes
/// would otherwise keep a watched folder from ever settling. Hidden
/// names count: Kubernetes swaps a mounted ConfigMap's `..data`.
pub fn may_hold_manifests(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return true;
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if !name.starts_with('.') => MANIFEST_EXTENSIONS.contains(&ext),
        _ => true,
    }
}

/// The `*.yaml` / `*.yml` files below `dir` that [`load_dir`] reads, in
/// path order.
pub fn yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    collect_files(dir, &MANIFEST_EXTENSIONS, &mut files)?;
    files.sort();
    Ok(files)
}

/// The files below `dir` with one of `extensions`, hidden entries skipped.
fn collect_files(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, extensions, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Most YAML documents one file may hold (`MAX_DOCUMENTS_PER_FILE`).
pub const MAX_DOCUMENTS_PER_FILE: usize = 65_536;
/// Most YAML nodes one file may hold (`MAX_NODES_PER_FILE`).
pub const MAX_NODES_PER_FILE: usize = 4_000_000;

/// Parses the text of one file: any number of YAML documents.
pub fn parse_text(file: &Path, text: &str) -> ResourceSet {
    let mut set = ResourceSet::default();
    match split_text(file, text) {
        Ok(docs) => {
            for (source, value) in docs {
                parse_document(&source, "", value, &mut set);
            }
        }
        Err(problem) => set.problems.push(problem),
    }
    set
}

/// One document, as a control plane keeps it: untyped, with where it was
/// read and the field-path prefix of an item of a `List`.
pub fn parse_value(source: &Source, prefix: &str, value: Value) -> ResourceSet {
    let mut set = ResourceSet::default();
    parse_document(source, prefix, value, &mut set);
    set
}

/// The documents of one file's text, untyped and numbered as
/// [`parse_text`] numbers them; an error if the text is not YAML.
pub fn split_text(file: &Path, text: &str) -> Result<Vec<(Source, Value)>, Problem> {
    // The parser's default budget (1,024 documents, 250,000 nodes) guards
    // against YAML bombs from strangers; a folder is its owner's, and a
    // `kubectl get -o yaml` of a real cluster is bigger than that.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: MAX_DOCUMENTS_PER_FILE,
            max_nodes: MAX_NODES_PER_FILE,
        },
    };
    let docs: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("line {} column {}: ", l.line(), l.column()))
                .unwrap_or_default();
            let text = e.to_string();
            let reason = without_position(text.lines().next().unwrap_or(""));
            Problem::error(
                &Source {
                    file: file.into(),
                    doc: 0,
                },
                "",
                format!("not valid YAML: {at}{reason}"),
            )
        })?;
    let file: std::sync::Arc<Path> = file.into();
    Ok(docs
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let source = Source {
                file: file.clone(),
                doc: i + 1,
            };
            (source, value)
        })
        .collect())
}

fn parse_document(source: &Source, prefix: &str, value: Value, set: &mut ResourceSet) {
    if value.is_null() {
        return;
    }
    if prefix.is_empty() && crate::apischema::is_openapi(&value) {
        // Named by its path as read; a folder's reader makes it relative.
        let file = crate::apischema::OpenApiFile {
            metadata: ObjectMeta {
                name: source.file.to_string_lossy().into_owned(),
                ..Default::default()
            },
            document: value,
        };
        keep_named(source, prefix, Ok(Resource::OpenApi(file)), set);
        return;
    }
    let Some((api_version, kind)) = api_version_and_kind(source, prefix, &value, set) else {
        return;
    };
    let (group, version) = split_api_version(&api_version);
    if matches!((group, version, kind.as_str()), ("", "v1", "List")) {
        parse_list(source, prefix, &value, set);
        return;
    }
    match typed_resource(source, prefix, group, version, &kind, value) {
        Some(parsed) => keep_named(source, prefix, parsed, set),
        None => set.problems.push(Problem::warning(
            source,
            prefix.trim_end_matches('.'),
            format!("kind {kind} ({api_version}) is not one strait reads; ignored"),
        )),
    }
}

/// The document's `apiVersion` and `kind`; `None` once the problem of a
/// document without them is reported.
fn api_version_and_kind(
    source: &Source,
    prefix: &str,
    value: &Value,
    set: &mut ResourceSet,
) -> Option<(String, String)> {
    let Some(map) = value.as_object() else {
        set.problems.push(Problem::error(
            source,
            prefix.trim_end_matches('.'),
            "a Kubernetes object must be a mapping with apiVersion and kind",
        ));
        return None;
    };
    let text = |key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if api_version.is_empty() || kind.is_empty() {
        let missing = if api_version.is_empty() {
            "apiVersion"
        } else {
            "kind"
        };
        set.problems.push(Problem::error(
            source,
            format!("{prefix}{missing}"),
            "required field is missing",
        ));
        return None;
    }
    Some((api_version, kind))
}

/// `group/version`, or a bare `version` for the core group.
fn split_api_version(api_version: &str) -> (&str, &str) {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
    (group, version)
}

fn parse_list(source: &Source, prefix: &str, value: &Value, set: &mut ResourceSet) {
    let items = match value.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    for (i, item) in items.into_iter().enumerate() {
        parse_document(source, &format!("{prefix}items[{i}]."), item, set);
    }
}

/// The document as the resource its kind names; `None` for a kind (or
/// version of it) strait does not read.
fn typed_resource(
    source: &Source,
    prefix: &str,
    group: &str,
    version: &str,
    kind: &str,
    value: Value,
) -> Option<Result<Resource, Problem>> {
    let gateway_api = group == "gateway.networking.k8s.io" && matches!(version, "v1" | "v1beta1");
    // TLSRoute and TCPRoute are still in the experimental channel.
    let gateway_api_l4 =
        group == "gateway.networking.k8s.io" && matches!(version, "v1" | "v1alpha3" | "v1alpha2");
    let parsed = match (group, version, kind) {
        (_, _, "GatewayClass") if gateway_api => {
            typed(source, prefix, value, Resource::GatewayClass)
        }
        (_, _, "Gateway") if gateway_api => typed(source, prefix, value, Resource::Gateway),
        (_, _, "HTTPRoute") if gateway_api => typed(source, prefix, value, Resource::HttpRoute),
        (_, _, "GRPCRoute") if gateway_api => typed(source, prefix, value, Resource::GrpcRoute),
        (_, _, "TLSRoute") if gateway_api_l4 => typed(source, prefix, value, Resource::TlsRoute),
        (_, _, "TCPRoute") if gateway_api_l4 => typed(source, prefix, value, Resource::TcpRoute),
        ("policy.strait.dev", "v1alpha1", "BackendTrafficPolicy") => {
            typed(source, prefix, value, Resource::BackendTrafficPolicy)
        }
        ("policy.strait.dev", "v1alpha1", "FaultInjection") => {
            typed(source, prefix, value, Resource::FaultInjection)
        }
        ("policy.strait.dev", "v1alpha1", "DirectResponse") => {
            typed(source, prefix, value, Resource::DirectResponse)
        }
        ("policy.strait.dev", "v1alpha1", "BodyTransform") => {
            typed(source, prefix, value, Resource::BodyTransform)
        }
        ("policy.strait.dev", "v1alpha1", "PeerAuthentication") => {
            typed(source, prefix, value, Resource::PeerAuthentication)
        }
        ("policy.strait.dev", "v1alpha1", "AuthorizationPolicy") => {
            typed(source, prefix, value, Resource::AuthorizationPolicy)
        }
        ("policy.strait.dev", "v1alpha1", "TelemetryPolicy") => {
            typed(source, prefix, value, Resource::TelemetryPolicy)
        }
        ("policy.strait.dev", "v1alpha1", "SecurityPolicy") => {
            typed(source, prefix, value, Resource::SecurityPolicy)
        }
        ("policy.strait.dev", "v1alpha1", "RateLimitPolicy") => {
            typed(source, prefix, value, Resource::RateLimitPolicy)
        }
        ("policy.strait.dev", "v1alpha1", "ApiSchemaPolicy") => {
            typed(source, prefix, value, Resource::ApiSchemaPolicy)
        }
        (_, "v1" | "v1alpha3", "BackendTLSPolicy") if group == "gateway.networking.k8s.io" => {
            typed(source, prefix, value, Resource::BackendTlsPolicy)
        }
        (_, _, "ReferenceGrant") if gateway_api => {
            typed(source, prefix, value, Resource::ReferenceGrant)
        }
        ("", "v1", "Service") => typed(source, prefix, value, Resource::Service),
        ("", "v1", "Namespace") => typed(source, prefix, value, Resource::Namespace),
        ("", "v1", "Secret") => typed(source, prefix, value, Resource::Secret),
        ("", "v1", "ConfigMap") => typed(source, prefix, value, Resource::ConfigMap),
        ("discovery.k8s.io", "v1", "EndpointSlice") => {
            typed(source, prefix, value, Resource::EndpointSlice)
        }
        _ => return None,
    };
    Some(parsed)
}

/// Keeps a parsed resource if it has a name, and reports the problem if not.
fn keep_named(
    source: &Source,
    prefix: &str,
    parsed: Result<Resource, Problem>,
    set: &mut ResourceSet,
) {
    match parsed {
        Ok(resource) => {
            if resource.metadata().name.is_empty() {
                set.problems.push(Problem::error(
                    source,
                    format!("{prefix}metadata.name"),
                    "must not be empty",
                ));
            } else {
                set.documents.push(Document {
                    source: source.clone(),
                    resource: std::sync::Arc::new(resource),
                });
            }
        }
        Err(problem) => set.problems.push(problem),
    }
}

fn typed<T: DeserializeOwned>(
    source: &Source,
    prefix: &str,
    value: Value,
    wrap: impl FnOnce(T) -> Resource,
) -> Result<Resource, Problem> {
    serde_path_to_error::deserialize::<_, T>(value)
        .map(wrap)
        .map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            Problem::error(
                source,
                format!("{prefix}{path}").trim_end_matches('.'),
                for_people(&e.into_inner().to_string()),
            )
        })
}

/// The parser's message without the "error:" and the position it repeats.
fn without_position(reason: &str) -> &str {
    let reason = reason.trim();
    let reason = reason.strip_prefix("error: ").unwrap_or(reason);
    match reason.split_once(": ") {
        Some((at, rest)) if at.starts_with("line ") && at.contains(" column ") => rest,
        _ => reason,
    }
}

/// A schema error in YAML's words: serde names Rust types (`expected
/// i32`, `expected struct HttpRouteSpec`), which a manifest's author never
/// wrote and should not have to read.
fn for_people(message: &str) -> String {
    static WORDS: std::sync::LazyLock<[(regex::Regex, &str); 6]> = std::sync::LazyLock::new(|| {
        let re = |p: &str| regex::Regex::new(p).expect("a fixed pattern");
        [
            (re(r"\b[iu](8|16|32|64|128|size)\b"), "an integer"),
            (re(r"\bf(32|64)\b"), "a number"),
            (re(r"\b(tuple )?struct \w+"), "a mapping"),
            (re(r"\bunit variant \w+(::\w+)?"), "a value"),
            (
                re(r"any variant of untagged enum \w+"),
                "any of the forms allowed here",
            ),
            (re(r"\benum \w+"), "one of the allowed values"),
        ]
    });
    let mut out = message
        .replace("a sequence", "a list")
        .replace("a map", "a mapping");
    for (re, words) in WORDS.iter() {
        out = re.replace_all(&out, *words).into_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_manifests_and_folders_make_a_change() {
        for path in [
            "a/routes.yaml",
            "b.yml",
            "dir",
            "..data",
            ".hidden.swp",
            "x/",
        ] {
            assert!(may_hold_manifests(Path::new(path)), "{path}");
        }
        for path in [
            "access.log",
            "notes.txt",
            "a/routes.yaml~",
            "routes.yaml.swp",
        ] {
            assert!(!may_hold_manifests(Path::new(path)), "{path}");
        }
    }

    fn parse(text: &str) -> ResourceSet {
        parse_text(Path::new("t.yaml"), text)
    }

    #[test]
    fn multi_document_files_keep_document_numbers() {
        let set = parse(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n",
        );
        assert!(set.problems.is_empty(), "{:?}", set.problems);
        assert_eq!(set.documents.len(), 2);
        // Empty documents are not counted: "document 2" is the second object.
        assert_eq!(set.documents[1].source.doc, 2);
        assert_eq!(set.documents[1].resource.kind(), "Service");
    }

    #[test]
    fn a_file_may_hold_a_whole_cluster() {
        // Past the YAML parser's default budget of 1,024 documents.
        let text: String = (0..3000)
            .map(|i| format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\nspec: {{ports: [{{port: 80}}]}}\n"))
            .collect();
        let set = parse(&text);
        assert!(set.problems.is_empty(), "{:?}", set.problems.first());
        assert_eq!(set.documents.len(), 3000);
    }

    #[test]
    fn schema_errors_carry_field_paths() {
        let set = parse(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules:\n  - matches:\n    - path: {type: Exact, valu: /x}\n",
        );
        assert_eq!(set.problems.len(), 1, "{:?}", set.problems);
        let p = &set.problems[0];
        assert_eq!(p.path, "spec.rules[0].matches[0].path.valu");
        assert!(p.message.contains("unknown field `valu`"), "{}", p.message);
        assert_eq!(p.to_string().split(": ").next(), Some("t.yaml:1"));
    }

    #[test]
    fn schema_errors_name_no_rust_type() {
        let set = parse(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: c\n  listeners:\n  - {name: h, port: eighty, protocol: HTTP}\n",
        );
        let message = &set.problems[0].message;
        assert!(message.ends_with("expected an integer"), "{message}");
        let set = parse("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: 5\n");
        let message = &set.problems[0].message;
        assert!(message.ends_with("expected a mapping"), "{message}");
    }

    #[test]
    fn yaml_errors_give_their_position_once() {
        let set = parse("a: {b: 1\n  c: [\n");
        let message = &set.problems[0].message;
        assert_eq!(message.matches("line ").count(), 1, "{message}");
        assert!(!message.contains("error:"), "{message}");
    }

    #[test]
    fn unknown_kinds_warn_and_bad_yaml_errors() {
        let set = parse("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n");
        assert_eq!(set.problems.len(), 1);
        assert!(!set.problems[0].is_error());
        let set = parse("a: [1, 2\nb: }\n");
        assert!(set.has_errors());
        assert!(set.problems[0].message.starts_with("not valid YAML"));
    }

    #[test]
    fn lists_are_unpacked() {
        let set = parse(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n  spec: {ports: [{port: x}]}\n",
        );
        assert_eq!(set.documents.len(), 1);
        assert_eq!(set.problems[0].path, "items[1].spec.ports[0].port");
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "---",
            "- 1\n- 2",
            "kind: 3",
            "{",
            ":",
            "\t",
            "apiVersion: v1\nkind: Service\nmetadata: 7",
            "*a",
            "&a [*a]",
            "apiVersion: v1\nkind: List\nitems: 5",
        ] {
            let _ = parse(text);
        }
    }
    /// Every manifest of the examples and the sources' raw strings
    /// (which, with two below, cover every kind) reads back from the cache's
    /// JSON equal to what was parsed.
    #[test]
    fn kept_documents_read_back_as_parsed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let read = |f: &PathBuf| std::fs::read_to_string(f).expect("text");
        let mut texts: Vec<(PathBuf, String)> = yaml_files(&root.join("examples"))
            .expect("examples")
            .into_iter()
            .map(|f| (f.clone(), read(&f)))
            .collect();
        let mut sources = Vec::new();
        for dir in ["crates", "tests"] {
            collect_files(&root.join(dir), &["rs"], &mut sources).expect(dir);
        }
        for f in sources {
            let text = read(&f);
            for raw in text
                .split("r#\"")
                .skip(1)
                .filter_map(|s| s.split_once("\"#"))
            {
                if raw.0.contains("apiVersion:") {
                    texts.push((f.clone(), raw.0.to_string()));
                }
            }
        }
        // The sources build their Secrets and ConfigMaps with format!.
        texts.push((
            PathBuf::from("inline.yaml"),
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s, labels: {a: b}}\ntype: kubernetes.io/tls\n\
             data: {tls.crt: Y2VydA==}\nstringData: {user: name}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, annotations: {n: '1'}}\ndata: {ca.crt: pem}\n"
                .to_string(),
        ));
        let mut kinds = std::collections::BTreeSet::new();
        for (file, text) in &texts {
            let set = parse_text(file, text);
            let kept = Kept::new(text.len(), 0, &set).expect("written as JSON");
            let back = kept.restore(file).expect("read back");
            assert_eq!(back.documents, set.documents, "{}", file.display());
            assert_eq!(back.problems, set.problems, "{}", file.display());
            let json = String::from_utf8_lossy(&kept.documents);
            assert!(!json.contains(":null"), "{}: {json}", file.display());
            kinds.extend(set.documents.iter().map(|d| d.resource.kind()));
        }
        assert_eq!(
            kinds.len(),
            23,
            "every kind read back at least once: {kinds:?}"
        );
    }

    /// A reload through the cache sees a changed file as changed, one
    /// left alone as it was, and a removed one as gone.
    #[test]
    fn a_cached_folder_sees_every_change() {
        let dir = std::env::temp_dir().join(format!("strait-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let service = |name: &str| {
            format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: 80}}]}}\n")
        };
        let names = |set: &ResourceSet| -> Vec<String> {
            set.documents
                .iter()
                .map(|d| d.resource.metadata().name.clone())
                .collect()
        };
        std::fs::write(dir.join("a.yaml"), service("a")).expect("a");
        std::fs::write(dir.join("b.yaml"), service("b")).expect("b");
        let mut cache = ParseCache::default();
        assert_eq!(names(&load_dir_cached(&dir, &mut cache)), ["a", "b"]);
        // Same length, other text: parsed again.
        std::fs::write(dir.join("a.yaml"), service("c")).expect("c");
        assert_eq!(names(&load_dir_cached(&dir, &mut cache)), ["c", "b"]);
        std::fs::remove_file(dir.join("b.yaml")).expect("rm");
        assert_eq!(names(&load_dir_cached(&dir, &mut cache)), ["c"]);
        assert_eq!(cache.files.len(), 1, "a removed file leaves the cache");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
