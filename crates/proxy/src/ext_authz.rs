//! Asking a SecurityPolicy's authorization service whether a request may
//! pass: over gRPC, Envoy's `envoy.service.auth.v3.Authorization/Check`
//! (so authorization servers written for Envoy, such as OPA's, work
//! unchanged); over HTTP, the request's method and path with chosen
//! headers and no body, where `200` allows. Sent through the upstream
//! pools, so the service gets mutual TLS in the mesh and its
//! BackendTLSPolicy at the edge like any backend.
//!
//! A denial is relayed as the service wrote it (status, headers, body). A
//! service that cannot be asked (no endpoint, no connection, a timeout, a
//! `5xx`, an answer that is not the protocol's) refuses the request with
//! `403`, as Envoy's `status_on_error` does — or lets it through when the
//! policy says `failOpen`.

use crate::answer::ProxyError;
use crate::ctx::ConnInfo;
use crate::decisions::Key;
use crate::tee::UpstreamBody;
use crate::upstream::Upstreams;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use prost::Message;
use strait_route::ext_auth::{ExtAuth, Protocol};

/// Answers remembered for policies that ask.
pub type Decisions = crate::decisions::Decisions<Answer>;

/// Envoy's external authorization messages (the subset in `proto/`), and
/// the service's generated server, which tests serve.
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod proto {
    pub mod envoy {
        pub mod service {
            pub mod auth {
                pub mod v3 {
                    include!(concat!(env!("OUT_DIR"), "/envoy.service.auth.v3.rs"));
                }
            }
        }
        pub mod config {
            pub mod core {
                pub mod v3 {
                    include!(concat!(env!("OUT_DIR"), "/envoy.config.core.v3.rs"));
                }
            }
        }
        pub mod r#type {
            pub mod v3 {
                include!(concat!(env!("OUT_DIR"), "/envoy.r#type.v3.rs"));
            }
        }
    }
    pub mod google {
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
    }
}

use proto::envoy::config::core::v3 as core;
use proto::envoy::service::auth::v3 as auth;

const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";
/// An allowing answer's headers that describe the answer itself, not the
/// request: never copied onto it, even when every header is.
static NOT_COPIED: [HeaderName; 8] = [
    HOST,
    CONTENT_LENGTH,
    CONTENT_TYPE,
    http::header::CONTENT_ENCODING,
    http::header::TRANSFER_ENCODING,
    http::header::CONNECTION,
    http::header::DATE,
    http::header::SERVER,
];

/// A denial's body, or a check's answer, past this is not read.
const MAX_ANSWER: usize = 64 * 1024;

/// The request as the service is shown it: its head, the headers as the
/// backend would get them (credentials still in), and where it came from.
pub struct Shown<'a> {
    pub method: &'a Method,
    /// Path and query.
    pub path: &'a str,
    pub host: &'a str,
    pub headers: HeaderMap,
    pub conn: &'a ConnInfo,
    pub http2: bool,
    /// The request's body, for a service that asked for it.
    pub body: Option<&'a Bytes>,
}

/// What an allowing service changes in the request.
#[derive(Default, Clone)]
pub struct Changes {
    /// Replacing the client's.
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub append: Vec<(HeaderName, HeaderValue)>,
    /// Set only where the client sent none.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Replacing the client's, only where it sent one.
    pub replace: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
    /// Query parameters removed (every value of the name).
    pub query_remove: Vec<String>,
    /// Query parameters set, replacing every value of the name.
    pub query_set: Vec<(String, String)>,
    /// Headers for the answer the client gets.
    pub answer: Vec<crate::ctx::AnswerHeader>,
}

impl Changes {
    /// `other`'s after these.
    pub fn extend(&mut self, other: Changes) {
        self.set.extend(other.set);
        self.append.extend(other.append);
        self.add.extend(other.add);
        self.replace.extend(other.replace);
        self.remove.extend(other.remove);
        self.query_remove.extend(other.query_remove);
        self.query_set.extend(other.query_set);
        self.answer.extend(other.answer);
    }

    /// Made to `req`; what goes on the answer goes to `answer`.
    pub fn apply<B>(self, req: &mut Request<B>, answer: &mut Vec<crate::ctx::AnswerHeader>) {
        if !self.query_remove.is_empty() || !self.query_set.is_empty() {
            requery(req, &self.query_remove, &self.query_set);
        }
        answer.extend(self.answer);
        let headers = req.headers_mut();
        for name in self.remove {
            headers.remove(name);
        }
        // Every value of a name set replaces every value the client sent.
        for (name, _) in &self.set {
            headers.remove(name);
        }
        for (name, value) in self.set {
            headers.append(name, value);
        }
        for (name, value) in self.append {
            headers.append(name, value);
        }
        for (name, value) in self.add {
            headers.entry(name).or_insert(value);
        }
        for (name, value) in self.replace {
            if headers.contains_key(&name) {
                headers.insert(name, value);
            }
        }
    }
}

/// `req`'s query without the parameters named in `remove` and in `set`,
/// then with those of `set`: the others kept as the client wrote them.
fn requery<B>(req: &mut Request<B>, remove: &[String], set: &[(String, String)]) {
    let uri = req.uri();
    let changed = |raw: &str| {
        let name = form_urlencoded::parse(raw.as_bytes())
            .next()
            .map(|(n, _)| n);
        name.is_some_and(|n| {
            remove
                .iter()
                .chain(set.iter().map(|(s, _)| s))
                .any(|r| *r == n)
        })
    };
    let mut query = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|raw| !raw.is_empty() && !changed(raw))
        .collect::<Vec<_>>()
        .join("&");
    let mut added = form_urlencoded::Serializer::new(String::new());
    added.extend_pairs(set);
    let added = added.finish();
    if !added.is_empty() {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&added);
    }
    let path = match query.is_empty() {
        true => uri.path().to_string(),
        false => format!("{}?{query}", uri.path()),
    };
    let mut parts = uri.clone().into_parts();
    // Rebuilt from a path that parsed and parameters encoded here: it
    // parses; if not, the query stays as it was.
    if let Ok(pq) = http::uri::PathAndQuery::try_from(path) {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

/// How one check ended.
#[derive(Clone)]
pub enum Answer {
    Allow(Changes),
    Deny(Box<crate::answer::Refusal>),
}

/// Asks `ext` about `shown`: the changes to make if it allows, the
/// service's refusal if not.
pub async fn check(
    ext: &ExtAuth,
    (upstreams, decisions): (&Upstreams, &Decisions),
    shown: Shown<'_>,
) -> Result<Changes, ProxyError> {
    let remembered = ext.cache.map(|c| (c, key(ext, &shown)));
    let held = remembered
        .as_ref()
        .and_then(|(_, key)| decisions.get(&ext.label, key));
    let (asked, fresh) = match held {
        Some(answer) => (Ok(answer), false),
        None => (ask(ext, upstreams, shown).await, true),
    };
    // Only answers are remembered: a failure is asked again next time.
    if let (true, Ok(answer), Some((cache, key))) = (fresh, &asked, remembered) {
        decisions.put(&ext.label, cache, key, answer.clone());
    }
    let failure = match asked {
        Ok(Answer::Allow(changes)) => return Ok(changes),
        Ok(Answer::Deny(refusal)) => {
            return Err(ProxyError::ExtAuthDenied {
                by: ext.label.clone(),
                refusal,
            })
        }
        Err(why) => why,
    };
    if ext.fail_open {
        tracing::warn!(
            by = &*ext.label,
            why = failure,
            "authorization service failed: request let through (failOpen)"
        );
        return Ok(Changes::default());
    }
    Err(ProxyError::ExtAuthFailed {
        by: ext.label.clone(),
        why: failure,
    })
}

async fn ask(ext: &ExtAuth, upstreams: &Upstreams, shown: Shown<'_>) -> Result<Answer, String> {
    let request = match &ext.protocol {
        Protocol::Grpc => grpc_request(ext, &shown),
        Protocol::Http { prefix, .. } => http_request(ext, prefix, &shown),
    }?;
    let cluster = &ext.cluster;
    let count = cluster.endpoints.len();
    let (endpoint, authority) = match count {
        0 => None,
        n => cluster.endpoint(fastrand::usize(..n)),
    }
    .ok_or("the service has no ready endpoints")?;
    // The client is told what kind of failure, never the service's
    // addresses; the log has the rest.
    let late = || format!("no answer in {:?}", ext.timeout);
    let deadline = tokio::time::Instant::now() + ext.timeout;
    let sent = upstreams.send(cluster, None, endpoint, authority, request);
    let response = tokio::time::timeout_at(deadline, sent)
        .await
        .map_err(|_| late())?
        .map_err(|f| {
            tracing::debug!(service = cluster.name, error = ?f.error, "authorization service call failed");
            "the connection failed".to_string()
        })?;
    let (head, body) = response.into_parts();
    let read = tokio::time::timeout_at(
        deadline,
        http_body_util::Limited::new(body, MAX_ANSWER).collect(),
    );
    match &ext.protocol {
        Protocol::Grpc => {
            let body = read
                .await
                .map_err(|_| late())?
                .map_err(|_| "the answer was cut off or over 64 KiB".to_string())?;
            let trailers = body.trailers().cloned().unwrap_or_default();
            grpc_answer(&head, &trailers, body.to_bytes())
        }
        // A refusal stands whatever its body does: one too large or too
        // slow is not relayed, and strait says who refused.
        Protocol::Http { to_backend, .. } if is_refusal(head.status) => {
            let body = match read.await {
                Ok(Ok(body)) => body.to_bytes(),
                _ => Bytes::new(),
            };
            http_answer(head, body, to_backend.as_deref())
        }
        Protocol::Http { to_backend, .. } => http_answer(head, Bytes::new(), to_backend.as_deref()),
    }
}

/// An HTTP service's status that refuses: any but `200` and a `5xx`.
fn is_refusal(status: StatusCode) -> bool {
    status != StatusCode::OK && !status.is_server_error()
}

/// A refusal's headers, without those that frame the service's message
/// (strait frames its own answer).
fn relayable(headers: &mut HeaderMap) {
    for hop in [
        HOST,
        CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
        http::header::CONNECTION,
    ] {
        headers.remove(hop);
    }
}

/// The headers of `shown` the service is sent: to a gRPC service those
/// the policy names (none named: all); to an HTTP one `Authorization`
/// (Envoy's default set: the rest of it is the request line) and those
/// named.
fn sent<'h>(
    ext: &'h ExtAuth,
    shown: &'h Shown<'_>,
) -> impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)> {
    let only = ext.headers.as_deref();
    let http = matches!(ext.protocol, Protocol::Http { .. });
    shown
        .headers
        .iter()
        .filter(move |(name, _)| match (http, only) {
            (true, only) => {
                *name == http::header::AUTHORIZATION || only.is_some_and(|o| o.contains(name))
            }
            (false, only) => only.is_none_or(|o| o.contains(name)),
        })
}

/// Headers that differ on every request however alike: not what a
/// decision is remembered by.
static PER_REQUEST: [&str; 9] = [
    "x-request-id",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

/// What a remembered decision is found by: the SHA-256 of everything
/// `ext` is shown of the request but its id, its trace context, the time
/// and the client's port. A digest no client can make collide, since a
/// client chooses most of what goes in.
pub fn key(ext: &ExtAuth, shown: &Shown<'_>) -> Key {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    // Each part with its length, so that no two lists of parts read alike.
    let mut put = |part: &[u8]| {
        digest.update(&(part.len() as u64).to_le_bytes());
        digest.update(part);
    };
    put(ext.label.as_bytes());
    put(shown.method.as_str().as_bytes());
    put(shown.path.as_bytes());
    put(shown.host.as_bytes());
    match shown.body {
        Some(body) => {
            put(b"body");
            put(body);
        }
        None => put(b"no body"),
    }
    if matches!(ext.protocol, Protocol::Grpc) {
        let conn = shown.conn;
        put(conn.client.ip().to_string().as_bytes());
        put(conn.peer.as_deref().unwrap_or_default().as_bytes());
        put(conn
            .original_dst
            .map(|d| d.to_string())
            .unwrap_or_default()
            .as_bytes());
        put(conn.sni.as_deref().unwrap_or_default().as_bytes());
        put(conn.scheme.as_bytes());
        put(&[u8::from(shown.http2)]);
    }
    // The headers last: the only list of varying length.
    for (name, value) in sent(ext, shown) {
        if !PER_REQUEST.contains(&name.as_str()) {
            put(name.as_str().as_bytes());
            put(value.as_bytes());
        }
    }
    let mut key = [0; 32];
    key.copy_from_slice(digest.finish().as_ref());
    key
}

fn http_request(
    ext: &ExtAuth,
    prefix: &str,
    shown: &Shown<'_>,
) -> Result<Request<UpstreamBody>, String> {
    let mut req = Request::builder()
        .method(shown.method.clone())
        .uri(format!("{prefix}{}", shown.path));
    let headers = req.headers_mut().ok_or("bad request")?;
    for (name, value) in sent(ext, shown) {
        headers.append(name, value.clone());
    }
    for framing in [
        CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
        http::header::CONNECTION,
    ] {
        headers.remove(framing);
    }
    let body = shown.body.cloned().unwrap_or_default();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let host = HeaderValue::from_str(shown.host).map_err(|_| "bad host")?;
    headers.insert(HOST, host);
    req.body(UpstreamBody::whole(body))
        .map_err(|e| e.to_string())
}

/// An HTTP service's answer: `200` allows (its `to_backend` headers go
/// on), a `5xx` is a failure, anything else refuses.
fn http_answer(
    head: http::response::Parts,
    body: Bytes,
    to_backend: Option<&[HeaderName]>,
) -> Result<Answer, String> {
    if head.status == StatusCode::OK {
        let set = head
            .headers
            .iter()
            .filter(|(name, _)| match to_backend {
                Some(named) => named.contains(name),
                None => !NOT_COPIED.contains(name),
            })
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        return Ok(Answer::Allow(Changes {
            set,
            ..Changes::default()
        }));
    }
    if head.status.is_server_error() {
        return Err(format!("answered {}", head.status));
    }
    let mut headers = head.headers;
    relayable(&mut headers);
    Ok(Answer::Deny(Box::new(crate::answer::Refusal {
        status: head.status,
        headers,
        body,
    })))
}

fn grpc_request(ext: &ExtAuth, shown: &Shown<'_>) -> Result<Request<UpstreamBody>, String> {
    let mut headers = std::collections::HashMap::new();
    let pseudo = [
        (":method", shown.method.as_str()),
        (":path", shown.path),
        (":authority", shown.host),
        (":scheme", shown.conn.scheme),
    ];
    for (name, value) in pseudo {
        headers.insert(name.to_string(), value.to_string());
    }
    // Repeated headers as one, comma-joined (RFC 9110 §5.3), as Envoy
    // sends them; values that are not text are left out.
    for (name, value) in sent(ext, shown) {
        let Ok(text) = value.to_str() else { continue };
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v: &mut String| {
                v.push(',');
                v.push_str(text);
            })
            .or_insert_with(|| text.to_string());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let peer =
        |addr: std::net::SocketAddr, principal: Option<&str>| auth::attribute_context::Peer {
            address: Some(core::Address {
                address: Some(core::address::Address::SocketAddress(core::SocketAddress {
                    address: addr.ip().to_string(),
                    port_specifier: Some(core::socket_address::PortSpecifier::PortValue(
                        addr.port().into(),
                    )),
                    ..Default::default()
                })),
            }),
            principal: principal.unwrap_or_default().to_string(),
            ..Default::default()
        };
    let size = shown
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(-1);
    let mut http = auth::attribute_context::HttpRequest {
        id: shown
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        method: shown.method.to_string(),
        headers,
        path: shown.path.to_string(),
        host: shown.host.to_string(),
        scheme: shown.conn.scheme.to_string(),
        size,
        protocol: if shown.http2 { "HTTP/2" } else { "HTTP/1.1" }.to_string(),
        ..Default::default()
    };
    // As Envoy packs it: text in `body`, other bytes in `raw_body`.
    if let Some(body) = shown.body {
        http.size = body.len() as i64;
        match std::str::from_utf8(body) {
            Ok(text) => http.body = text.to_string(),
            Err(_) => http.raw_body = body.to_vec(),
        }
    }
    let destination = shown.conn.original_dst.map(|d| peer(d, None));
    let message = auth::CheckRequest {
        attributes: Some(auth::AttributeContext {
            source: Some(peer(shown.conn.client, shown.conn.peer.as_deref())),
            destination,
            request: Some(auth::attribute_context::Request {
                time: Some(auth::TimestampShape {
                    seconds: now.as_secs() as i64,
                    nanos: now.subsec_nanos() as i32,
                }),
                http: Some(http),
            }),
            tls_session: shown
                .conn
                .sni
                .as_ref()
                .map(|sni| auth::attribute_context::TlsSession { sni: sni.clone() }),
            ..Default::default()
        }),
    };
    let mut framed = BytesMut::with_capacity(5 + message.encoded_len());
    framed.put_u8(0);
    framed.put_u32(message.encoded_len() as u32);
    message.encode(&mut framed).map_err(|e| e.to_string())?;
    Request::builder()
        .method(Method::POST)
        .uri(CHECK_PATH)
        .header(CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .header(HOST, ext.cluster.name.as_str())
        .body(UpstreamBody::whole(framed.freeze()))
        .map_err(|e| e.to_string())
}

/// A `Check` answer: status `OK` allows with the `ok_response`'s changes;
/// any other code refuses, `403` unless the `denied_response` says.
fn grpc_answer(
    head: &http::response::Parts,
    trailers: &HeaderMap,
    body: Bytes,
) -> Result<Answer, String> {
    if head.status != StatusCode::OK {
        return Err(format!("answered HTTP {}", head.status));
    }
    let status = trailers
        .get("grpc-status")
        .or_else(|| head.headers.get("grpc-status"))
        .ok_or("no grpc-status")?;
    if status != "0" {
        let message = head
            .headers
            .get("grpc-message")
            .or_else(|| trailers.get("grpc-message"))
            .and_then(|m| m.to_str().ok())
            .unwrap_or_default();
        tracing::debug!(
            ?status,
            message,
            "authorization service answered with an error"
        );
        let status = status.to_str().unwrap_or("?");
        return Err(format!("it answered gRPC status {status}"));
    }
    let mut body = body;
    if body.len() < 5 || body[0] != 0 {
        return Err("not one uncompressed gRPC message".into());
    }
    body.advance(1);
    let len = body.get_u32() as usize;
    if body.len() != len {
        return Err("not one whole gRPC message".into());
    }
    let answer =
        auth::CheckResponse::decode(body).map_err(|e| format!("bad CheckResponse: {e}"))?;
    let code = answer.status.as_ref().map_or(0, |s| s.code);
    if code == 0 {
        let mut changes = Changes::default();
        if let Some(auth::check_response::HttpResponse::OkResponse(ok)) = answer.http_response {
            for option in ok.headers {
                place(&mut changes, option);
            }
            changes.remove = ok
                .headers_to_remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .filter(|n| *n != HOST)
                .collect();
            changes.query_remove = ok.query_parameters_to_remove;
            changes.query_set = ok
                .query_parameters_to_set
                .into_iter()
                .filter(|q| !q.key.is_empty())
                .map(|q| (q.key, q.value))
                .collect();
            // `append` is false unless sent (Envoy's rule for this list).
            changes.answer = ok
                .response_headers_to_add
                .iter()
                .filter_map(|o| {
                    let (name, value) = o.header.as_ref().and_then(header)?;
                    let framing = NOT_COPIED.contains(&name);
                    let append = o.append.is_some_and(|a| a.value);
                    let replace = !append;
                    (!framing).then_some(crate::ctx::AnswerHeader {
                        name,
                        value,
                        replace,
                    })
                })
                .collect();
        }
        return Ok(Answer::Allow(changes));
    }
    let mut refusal = crate::answer::Refusal {
        status: StatusCode::FORBIDDEN,
        headers: HeaderMap::new(),
        body: Bytes::new(),
    };
    if let Some(auth::check_response::HttpResponse::DeniedResponse(denied)) = answer.http_response {
        let code = denied.status.map_or(0, |s| s.code);
        if let Ok(status) = StatusCode::from_u16(u16::try_from(code).unwrap_or(0)) {
            if status.as_u16() >= 200 {
                refusal.status = status;
            }
        }
        for option in denied.headers {
            if let Some((name, value)) = option.header.as_ref().and_then(header) {
                refusal.headers.append(name, value);
            }
        }
        refusal.body = Bytes::from(denied.body);
        relayable(&mut refusal.headers);
    }
    Ok(Answer::Deny(Box::new(refusal)))
}

/// Where an `ok_response` header goes: `append`, when sent, decides;
/// otherwise its `append_action`.
fn place(changes: &mut Changes, option: core::HeaderValueOption) {
    use core::header_value_option::HeaderAppendAction as Action;
    let Some(pair) = option.header.as_ref().and_then(header) else {
        return;
    };
    if pair.0 == HOST {
        return;
    }
    let list = match (option.append.map(|a| a.value), option.append_action()) {
        (Some(true), _) | (None, Action::AppendIfExistsOrAdd) => &mut changes.append,
        (Some(false), _) | (None, Action::OverwriteIfExistsOrAdd) => &mut changes.set,
        (None, Action::AddIfAbsent) => &mut changes.add,
        (None, Action::OverwriteIfExists) => &mut changes.replace,
    };
    list.push(pair);
}

fn header(h: &core::HeaderValue) -> Option<(HeaderName, HeaderValue)> {
    let name = HeaderName::from_bytes(h.key.as_bytes()).ok()?;
    let value = match h.raw_value.is_empty() {
        true => HeaderValue::from_str(&h.value).ok()?,
        false => HeaderValue::from_bytes(&h.raw_value).ok()?,
    };
    Some((name, value))
}
