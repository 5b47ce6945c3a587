//! `HTTPRoute` (gateway.networking.k8s.io), field for field as the spec
//! defines it, with the spec's defaults.

use crate::meta::{BackendObjectReference, ParentReference};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default = "default_rules")]
    pub rules: Vec<HttpRouteRule>,
}

fn default_rules() -> Vec<HttpRouteRule> {
    vec![HttpRouteRule {
        name: None,
        matches: default_matches(),
        filters: vec![],
        backend_refs: vec![],
        timeouts: None,
        retry: None,
        session_persistence: None,
    }]
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteRule {
    pub name: Option<String>,
    #[serde(default = "default_matches", deserialize_with = "matches_or_default")]
    pub matches: Vec<HttpRouteMatch>,
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
    pub timeouts: Option<HttpRouteTimeouts>,
    pub retry: Option<HttpRouteRetry>,
    /// GEP-1619 (experimental).
    pub session_persistence: Option<SessionPersistence>,
}

/// Requests of one session go to the endpoint that answered its first
/// (GEP-1619): the session is a cookie (default) or a header.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionPersistence {
    pub session_name: Option<String>,
    pub absolute_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    /// `Cookie` (default) or `Header`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub cookie_config: Option<SessionCookieConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionCookieConfig {
    /// `Session` (default: no `Max-Age`) or `Permanent`.
    pub lifetime_type: Option<String>,
}

impl SessionPersistence {
    /// A header session, not a cookie one.
    pub fn header(&self) -> bool {
        self.kind.as_deref() == Some("Header")
    }

    /// A cookie with `Max-Age` (the absolute timeout).
    pub fn permanent(&self) -> bool {
        let lifetime = self
            .cookie_config
            .as_ref()
            .and_then(|c| c.lifetime_type.as_deref());
        lifetime == Some("Permanent")
    }

    /// What is wrong with it, by field path under `at`.
    pub fn check(&self, at: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(kind) = self
            .kind
            .as_deref()
            .filter(|k| !["Cookie", "Header"].contains(k))
        {
            out.push((
                format!("{at}.type"),
                format!("{kind:?} is not Cookie or Header"),
            ));
        }
        let lifetime = self
            .cookie_config
            .as_ref()
            .and_then(|c| c.lifetime_type.as_deref());
        if let Some(l) = lifetime.filter(|l| !["Session", "Permanent"].contains(l)) {
            let msg = format!("{l:?} is not Session or Permanent");
            out.push((format!("{at}.cookieConfig.lifetimeType"), msg));
        }
        if self.permanent() && self.absolute_timeout.is_none() {
            let msg = "a Permanent cookie needs absoluteTimeout (its Max-Age)".to_string();
            out.push((format!("{at}.absoluteTimeout"), msg));
        }
        for (field, value) in [
            ("absoluteTimeout", &self.absolute_timeout),
            ("idleTimeout", &self.idle_timeout),
        ] {
            match value.as_deref().map(crate::duration::parse) {
                Some(Err(e)) => out.push((format!("{at}.{field}"), e)),
                Some(Ok(d)) if d.as_secs() == 0 => {
                    out.push((format!("{at}.{field}"), "must be at least 1s".into()))
                }
                _ => {}
            }
        }
        if let Some(name) = &self.session_name {
            // A cookie's name and a header's are both tokens (RFC 6265,
            // RFC 9110).
            let token = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if name.is_empty() || name.len() > 128 || !token {
                let msg = format!(
                    "{name:?} is not a cookie or header name (a token of at most 128 characters)"
                );
                out.push((format!("{at}.sessionName"), msg));
            }
        }
        out
    }
}

fn default_matches() -> Vec<HttpRouteMatch> {
    vec![HttpRouteMatch::default()]
}

/// `matches: []` is "no matches specified" too, which the spec makes a
/// PathPrefix `/` match (as for GRPCRoute), not a rule that never matches.
fn matches_or_default<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<HttpRouteMatch>, D::Error> {
    let matches = Vec::<HttpRouteMatch>::deserialize(d)?;
    Ok(if matches.is_empty() {
        default_matches()
    } else {
        matches
    })
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteMatch {
    pub path: Option<HttpPathMatch>,
    #[serde(default)]
    pub headers: Vec<HttpHeaderMatch>,
    #[serde(default)]
    pub query_params: Vec<HttpQueryParamMatch>,
    pub method: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpPathMatch {
    /// `Exact`, `PathPrefix` (default) or `RegularExpression`.
    #[serde(rename = "type", default = "path_prefix")]
    pub kind: String,
    #[serde(default = "slash")]
    pub value: String,
}

impl Default for HttpPathMatch {
    fn default() -> Self {
        HttpPathMatch {
            kind: path_prefix(),
            value: slash(),
        }
    }
}

fn path_prefix() -> String {
    "PathPrefix".into()
}

fn slash() -> String {
    "/".into()
}

fn exact() -> String {
    "Exact".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHeaderMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(rename = "type", default = "exact")]
    pub kind: String,
    pub name: String,
    pub value: String,
}

/// Query parameter matches have the same shape as header matches.
pub type HttpQueryParamMatch = HttpHeaderMatch;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteFilter {
    #[serde(rename = "type")]
    pub kind: String,
    pub request_header_modifier: Option<HttpHeaderFilter>,
    pub response_header_modifier: Option<HttpHeaderFilter>,
    pub request_redirect: Option<HttpRequestRedirectFilter>,
    #[serde(rename = "urlRewrite")]
    pub url_rewrite: Option<HttpUrlRewriteFilter>,
    pub request_mirror: Option<HttpRequestMirrorFilter>,
    pub extension_ref: Option<serde_json::Value>,
    /// Experimental (GEP-1494).
    pub external_auth: Option<Box<HttpExternalAuthFilter>>,
    /// Standard since v1.5 (GEP-1767).
    pub cors: Option<Box<HttpCorsFilter>>,
}

/// Cross-origin resource sharing: which origins' pages may call the
/// route, and what their scripts may send and read.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCorsFilter {
    /// `scheme://host[:port]`, the host's leftmost part may be `*`; or
    /// `*` alone: every origin.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    pub allow_credentials: Option<bool>,
    /// Methods, or `*` alone.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Request header names, or `*` alone.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response header names, or `*` alone.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Seconds a browser may keep a preflight's answer (default 5).
    pub max_age: Option<i32>,
}

/// One entry of `allowOrigins`, or a request's `Origin`, read: the scheme
/// and host in lower case, the port the scheme implies when none is
/// written. A host pattern's leading `*` matches any labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// `scheme://host[:port]` with scheme `http` or `https`; `pattern`
    /// lets the host start with `*` (`*`, `*.example.com`).
    pub fn parse(text: &str, pattern: bool) -> Result<Origin, String> {
        let bad = || format!("{text:?} is not an origin like https://example.com[:port]");
        let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("{text:?}: the scheme must be http or https")),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => {
                let port = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?;
                (h, port)
            }
            _ => (rest, default),
        };
        let name = host.strip_prefix('*').filter(|_| pattern).unwrap_or(host);
        let wild = name.len() != host.len();
        let ip6 = name.len() > 2 && name.starts_with('[') && name.ends_with(']') && !wild;
        let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        let ok = match ip6 {
            true => name[1..name.len() - 1]
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':'),
            false => name.chars().all(ok_char),
        };
        if (name.is_empty() && !wild) || !ok {
            return Err(bad());
        }
        Ok(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether the request's origin `o` is one this pattern allows.
    pub fn allows(&self, o: &Origin) -> bool {
        if self.scheme != o.scheme || self.port != o.port {
            return false;
        }
        match self.host.strip_prefix('*') {
            Some(suffix) => o.host.ends_with(suffix) && o.host.len() > suffix.len(),
            None => self.host == o.host,
        }
    }
}

/// Asks an authorization service (GEP-1494): `protocol` `HTTP` or `GRPC`
/// (Envoy's `Check`), with `http` or `grpc` settings to match.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpExternalAuthFilter {
    pub protocol: String,
    pub backend_ref: crate::meta::BackendObjectReference,
    pub grpc: Option<GrpcAuthConfig>,
    pub http: Option<HttpAuthConfig>,
    pub forward_body: Option<ForwardBodyConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcAuthConfig {
    /// The client's headers sent (empty: all).
    #[serde(default)]
    pub allowed_headers: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpAuthConfig {
    /// Put before the request's path.
    pub path: Option<String>,
    /// The client's headers sent beside `Authorization` (and the request
    /// line's method, path and host).
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// The answer's headers copied onto the request (empty: all but the
    /// answer's own framing and representation headers).
    #[serde(default)]
    pub allowed_response_headers: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForwardBodyConfig {
    pub max_size: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHeaderFilter {
    #[serde(default)]
    pub set: Vec<HttpHeader>,
    #[serde(default)]
    pub add: Vec<HttpHeader>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRequestRedirectFilter {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<HttpPathModifier>,
    pub port: Option<i32>,
    pub status_code: Option<i32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpUrlRewriteFilter {
    pub hostname: Option<String>,
    pub path: Option<HttpPathModifier>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpPathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(rename = "type")]
    pub kind: String,
    pub replace_full_path: Option<String>,
    pub replace_prefix_match: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRequestMirrorFilter {
    pub backend_ref: BackendObjectReference,
    pub percent: Option<i32>,
    pub fraction: Option<Fraction>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fraction {
    pub numerator: i32,
    pub denominator: Option<i32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpBackendRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<i32>,
    pub weight: Option<i32>,
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
}

impl HttpBackendRef {
    pub fn target(&self) -> BackendObjectReference {
        BackendObjectReference {
            group: self.group.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            port: self.port,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteTimeouts {
    pub request: Option<String>,
    pub backend_request: Option<String>,
}

/// GEP-1731 `retry`: which answers are retried, how often, how far apart.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteRetry {
    #[serde(default)]
    pub codes: Vec<i32>,
    /// Retries after the first try (not tries in all).
    pub attempts: Option<i32>,
    /// The shortest wait before a retry; later ones wait longer.
    pub backoff: Option<String>,
}
