//! An authorization service to ask — a SecurityPolicy's `extAuth`, or a
//! rule's `ExternalAuth` filter (GEP-1494) — compiled: which Service,
//! over which protocol, with which of the client's headers, for how long,
//! and what happens when it cannot be asked.

use crate::backend::{Cluster, Resolver, UpstreamProtocol};
use http::HeaderName;
use std::sync::Arc;
use std::time::Duration;
use strait_config::auth::ExtAuth as Spec;
use strait_config::meta::BackendObjectReference;

/// Envoy Gateway's default: a slow authorization service is waited for
/// rather than failed after Envoy's own 200 ms.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct ExtAuth {
    /// Who asks: `SecurityPolicy shop/api extAuth`, `HTTPRoute shop/api
    /// rule 0 ExternalAuth` (answers and logs name it).
    pub label: Arc<str>,
    pub protocol: Protocol,
    /// The service, spoken to over HTTP/2 when it is gRPC.
    pub cluster: Arc<Cluster>,
    /// The client's headers sent; `None`: all of them.
    pub headers: Option<Vec<HeaderName>>,
    pub fail_open: bool,
    pub timeout: Duration,
    /// Up to this many bytes of the request's body are sent too (a
    /// larger body is refused `413`); `None`: none.
    pub body: Option<u32>,
    /// Its decisions remembered; `None`: every request asks.
    pub cache: Option<Cache>,
}

/// How long decisions stand, and how many are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cache {
    pub ttl: Duration,
    pub max: usize,
}

/// Decisions held at most when the policy does not say.
pub const DEFAULT_CACHED: usize = 10_000;
/// The bounds of a cache's `ttl`: past an hour, a revoked credential
/// would pass for too long.
const TTL: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));

#[derive(Debug)]
pub enum Protocol {
    /// Envoy's `envoy.service.auth.v3.Authorization/Check`.
    Grpc,
    /// The request's method and path (after `prefix`); `200` allows, and
    /// the answer's `to_backend` headers go on to the backend (`None`:
    /// all but its framing and representation headers).
    Http {
        prefix: String,
        to_backend: Option<Vec<HeaderName>>,
    },
}

type Finding = (String, String);

/// `spec` of policy `policy` (`ns/name`) in namespace `ns`, at field path
/// `at`.
pub(crate) fn compile(
    spec: &Spec,
    (ns, policy): (&str, &str),
    at: &str,
    resolver: &mut Resolver<'_>,
) -> Result<ExtAuth, Vec<Finding>> {
    let mut errors = Vec::new();
    let (protocol, service, where_) = match (&spec.grpc, &spec.http) {
        (Some(g), None) => (
            Protocol::Grpc,
            one_backend(&g.backend_ref, &g.backend_refs),
            "grpc",
        ),
        (None, Some(h)) => {
            let prefix = h.path.clone().unwrap_or_default();
            if let Err(why) = path_prefix(&prefix) {
                errors.push((format!("{at}.http.path"), why));
            }
            let to_backend = names(
                &h.headers_to_backend,
                &format!("{at}.http.headersToBackend"),
            );
            let to_backend = to_backend.unwrap_or_else(|e| {
                errors.extend(e);
                Vec::new()
            });
            let protocol = Protocol::Http {
                prefix,
                to_backend: Some(to_backend),
            };
            (
                protocol,
                one_backend(&h.backend_ref, &h.backend_refs),
                "http",
            )
        }
        _ => {
            return Err(vec![(
                at.into(),
                "needs exactly one of grpc and http".into(),
            )])
        }
    };
    let headers = match spec.headers_to_ext_auth.is_empty() {
        true => None,
        false => names(&spec.headers_to_ext_auth, &format!("{at}.headersToExtAuth"))
            .map_err(|e| errors.extend(e))
            .ok(),
    };
    let body = spec.body_to_ext_auth.as_ref().map(|b| b.max_request_bytes);
    let timeout = match &spec.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => strait_config::duration::parse(t).unwrap_or_else(|e| {
            errors.push((format!("{at}.timeout"), e));
            DEFAULT_TIMEOUT
        }),
    };
    let cache = spec.cache.as_ref().and_then(|c| {
        cache(c, &format!("{at}.cache"))
            .map_err(|e| errors.push(e))
            .ok()
    });
    let at = format!("{at}.{where_}");
    let cluster = match service {
        Err(why) => Err((at, why)),
        Ok((b, path)) => resolve(b, ns, resolver, protocol_of(&protocol))
            .map_err(|why| (format!("{at}.{path}"), why)),
    };
    match (cluster, errors.is_empty()) {
        (Ok(cluster), true) => Ok(ExtAuth {
            label: format!("SecurityPolicy {policy} extAuth").into(),
            protocol,
            cluster,
            headers,
            fail_open: spec.fail_open,
            timeout,
            body,
            cache,
        }),
        (Ok(_), false) => Err(errors),
        (Err(e), _) => Err(std::iter::once(e).chain(errors).collect()),
    }
}

fn cache(spec: &strait_config::auth::ExtAuthCache, at: &str) -> Result<Cache, Finding> {
    let ttl = strait_config::duration::parse(&spec.ttl).map_err(|e| (format!("{at}.ttl"), e))?;
    if ttl < TTL.0 || ttl > TTL.1 {
        return Err((
            format!("{at}.ttl"),
            format!("{} is not between 1s and 1h", spec.ttl),
        ));
    }
    let max = match spec.max_entries {
        None => DEFAULT_CACHED,
        Some(0) => return Err((format!("{at}.maxEntries"), "must be at least 1".into())),
        Some(n) => n as usize,
    };
    Ok(Cache { ttl, max })
}

/// A prefix put before request paths: empty, or `/auth` (no `/` last,
/// and nothing a path cannot hold).
fn path_prefix(prefix: &str) -> Result<(), String> {
    let ok = prefix.is_empty()
        || prefix.starts_with('/')
            && !prefix.ends_with('/')
            && http::uri::PathAndQuery::try_from(prefix).is_ok_and(|p| p.query().is_none());
    match ok {
        true => Ok(()),
        false => Err(format!("{prefix:?} is not a path prefix like /auth")),
    }
}

fn protocol_of(p: &Protocol) -> UpstreamProtocol {
    match p {
        Protocol::Grpc => UpstreamProtocol::H2c,
        Protocol::Http { .. } => UpstreamProtocol::Http1,
    }
}

/// The one backend named, and the field that names it.
fn one_backend<'b>(
    single: &'b Option<BackendObjectReference>,
    list: &'b [BackendObjectReference],
) -> Result<(&'b BackendObjectReference, &'static str), String> {
    match (single, list) {
        (Some(b), []) => Ok((b, "backendRef")),
        (None, [b]) => Ok((b, "backendRefs[0]")),
        (None, []) => Err("names no backendRef".into()),
        _ => Err("names more than one backend: one Service is asked".into()),
    }
}

/// The Service port, as a cluster of its own: spoken to in `protocol`
/// (gRPC is HTTP/2 whatever the Service's `appProtocol`), with no
/// balancing policy or breaker of the Service's.
fn resolve(
    b: &BackendObjectReference,
    ns: &str,
    resolver: &mut Resolver<'_>,
    protocol: UpstreamProtocol,
) -> Result<Arc<Cluster>, String> {
    if !b.is_service() {
        return Err("only a Service can be asked".into());
    }
    if b.namespace.as_deref().is_some_and(|n| n != ns) {
        return Err(format!(
            "the Service must be in the policy's namespace {ns}"
        ));
    }
    let port = b.port.ok_or("names no port")?;
    Ok(own_cluster(
        &*resolver.service(ns, &b.name, port)?,
        protocol,
    ))
}

/// A rule's `ExternalAuth` filter, its backend resolved as the rule's
/// backends are (ReferenceGrants and all) to `found`; `label` names the
/// rule. Refused: the field under the filter, and why.
pub(crate) fn of_filter(
    f: &strait_config::httproute::HttpExternalAuthFilter,
    found: &Cluster,
    label: String,
) -> Result<ExtAuth, Finding> {
    let say = |field: &str, why: String| (field.to_string(), why);
    let max = f
        .forward_body
        .as_ref()
        .and_then(|b| b.max_size)
        .unwrap_or(0);
    let body = (max > 0).then_some(u32::from(max));
    let (protocol, headers) = match (f.protocol.as_str(), &f.grpc, &f.http) {
        ("GRPC", grpc, None) => {
            let allowed = grpc.as_ref().map_or(&[][..], |g| &g.allowed_headers);
            let headers =
                names(allowed, "allowedHeaders").map_err(|e| say("grpc", e[0].1.clone()))?;
            (Protocol::Grpc, Some(headers).filter(|h| !h.is_empty()))
        }
        ("HTTP", None, http) => {
            let http = http.clone().unwrap_or_default();
            let allowed = names(&http.allowed_headers, "")
                .map_err(|e| say("http.allowedHeaders", e[0].1.clone()))?;
            let back = names(&http.allowed_response_headers, "")
                .map_err(|e| say("http.allowedResponseHeaders", e[0].1.clone()))?;
            let prefix = http.path.unwrap_or_default();
            path_prefix(&prefix).map_err(|why| say("http.path", why))?;
            let protocol = Protocol::Http {
                prefix,
                to_backend: Some(back).filter(|b| !b.is_empty()),
            };
            (protocol, Some(allowed))
        }
        (p, _, _) => return Err(say("protocol", format!("{p:?} with the other's settings"))),
    };
    Ok(ExtAuth {
        label: label.into(),
        cluster: own_cluster(found, protocol_of(&protocol)),
        protocol,
        headers,
        fail_open: false,
        timeout: DEFAULT_TIMEOUT,
        body,
        cache: None,
    })
}

fn own_cluster(found: &Cluster, protocol: UpstreamProtocol) -> Arc<Cluster> {
    let cluster = Cluster::new(
        found.name.clone(),
        found.endpoints.clone(),
        match protocol {
            UpstreamProtocol::H2c => UpstreamProtocol::H2c,
            UpstreamProtocol::Http1 => found.protocol,
        },
        found.tls.clone(),
    );
    Arc::new(cluster.with_mesh(found.meshed, found.peer_accounts.clone()))
}

fn names(list: &[String], at: &str) -> Result<Vec<HeaderName>, Vec<Finding>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, name) in list.iter().enumerate() {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => out.push(h),
            Err(_) => errors.push((
                format!("{at}[{i}]"),
                format!("{name:?} is not a header name"),
            )),
        }
    }
    match errors.is_empty() {
        true => Ok(out),
        false => Err(errors),
    }
}
