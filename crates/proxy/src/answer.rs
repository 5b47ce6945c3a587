//! The one way strait answers a request by itself: a [`ProxyError`] knows
//! which side failed, whether a retry is safe (nothing reached a backend),
//! its status and its `x-strait-reason`, and becomes a plain-text answer —
//! or, to a gRPC client, a trailers-only gRPC status mapped as gRPC's own
//! HTTP-to-gRPC table says.

use crate::upstream::PooledBody;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};
use strait_route::authn::Method;
use strait_route::error_page::ErrorPage;

/// A response body: the backend's, streamed, or one strait wrote.
pub type ResponseBody = Either<PooledBody, Full<Bytes>>;

impl From<&crate::client_body::ClientBodyError> for ProxyError {
    fn from(e: &crate::client_body::ClientBodyError) -> Self {
        match e {
            crate::client_body::ClientBodyError::Malformed(_) => ProxyError::RequestBody,
            crate::client_body::ClientBodyError::TooLarge => ProxyError::BodyTooLarge,
            crate::client_body::ClientBodyError::TimedOut => ProxyError::BodyTimeout,
            crate::client_body::ClientBodyError::TooSlow => ProxyError::BodyTooSlow,
        }
    }
}

/// The header saying why strait answered itself.
pub const REASON_HEADER: &str = "x-strait-reason";
/// The reason of a DirectResponse's answer: the route's own, not a failure.
pub const DIRECT_RESPONSE: &str = "direct_response";
/// A CORS preflight strait answered.
pub const CORS_PREFLIGHT: &str = "cors_preflight";
/// The header naming the policy and rule that denied a call.
pub const AUTHZ_HEADER: &str = "x-strait-authz";
/// The header naming the SecurityPolicy that wanted a token.
pub const AUTHN_HEADER: &str = "x-strait-authn";
/// The header naming a circuit breaker and the limit it reached.
pub const BREAKER_HEADER: &str = "x-strait-breaker";
/// On a `429` of strait's: the RateLimitPolicy and its rule.
pub const RATE_LIMIT_HEADER: &str = "x-strait-rate-limit";
/// On an answer of strait's for a request its API's document refuses:
/// the ApiSchemaPolicy.
pub const API_SCHEMA_HEADER: &str = "x-strait-api-schema";
/// The BodyTransform that could not transform a body.
pub const TRANSFORM_HEADER: &str = "x-strait-transform";

/// Who is to blame for a failure: what an operator looks at first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The request was malformed or asked for nothing strait serves.
    Client,
    /// A policy said no (authorization, a breaker, an injected fault).
    Policy,
    /// The configuration cannot serve it (no backend, an invalid one).
    Config,
    /// The backend could not be reached or did not answer well.
    Upstream,
}

/// An authorization service's refusal, relayed as it wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Everything strait answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    NoHost,
    /// The Host names another listener than the TLS session's (RFC 9110 §15.5.20).
    Misdirected,
    NoRoute,
    BadTarget,
    /// The client's body was malformed or cut off (RFC 9112 §7.1).
    RequestBody,
    /// The client's body is over `--max-request-body`.
    BodyTooLarge,
    /// The client stopped sending its body for `--request-body-timeout`.
    BodyTimeout,
    /// The client's body averaged less than `--min-request-body-rate`.
    BodyTooSlow,
    /// Method and target are over `--max-request-line`.
    UriTooLong,
    /// A header line, or the headers together, over their limit.
    HeadersTooLarge,
    /// `Host` repeated, a list, or not `host[:port]`.
    BadHost,
    /// Framing two parsers could read two ways: a look-alike of a framing
    /// header's name, `chunked` twice.
    BadFraming,
    /// A transfer coding other than `chunked` (RFC 9112 §6.1).
    UnknownCoding,
    /// `CONNECT` where no tunnel is served.
    ConnectRefused,
    /// `CONNECT` without `host:port`.
    ConnectTarget,
    /// A SecurityPolicy wants a token: none was sent (`why` is `None`),
    /// or the one sent is not accepted, and why.
    Unauthenticated {
        policy: std::sync::Arc<str>,
        method: Method,
        why: Option<String>,
    },
    /// A SecurityPolicy's OpenID provider could not be asked (its
    /// discovery document, its keys, its token endpoint), and why.
    ProviderFailed {
        policy: std::sync::Arc<str>,
        why: String,
    },
    /// A SecurityPolicy on the route cannot be applied (fail closed).
    PolicyInvalid {
        policy: std::sync::Arc<str>,
        why: String,
    },
    /// An AuthorizationPolicy denied: what decided, and its explanation.
    Denied {
        policy: String,
        explain: String,
    },
    /// An authorization service refused; `by` names who asked it (a
    /// SecurityPolicy, a rule's filter).
    ExtAuthDenied {
        by: std::sync::Arc<str>,
        refusal: Box<Refusal>,
    },
    /// An authorization service could not be asked, and `by` fails closed.
    ExtAuthFailed {
        by: std::sync::Arc<str>,
        why: String,
    },
    ExtensionUnresolved,
    /// A CORS preflight from an origin the route's filter does not allow.
    CorsRefused,
    /// A RateLimitPolicy's rule has no request left for this caller.
    RateLimited {
        policy: std::sync::Arc<str>,
        rule: std::sync::Arc<str>,
    },
    /// A RateLimitPolicy that fails closed could not count in Redis.
    RateLimitFailed {
        policy: std::sync::Arc<str>,
        why: String,
    },
    /// The request is not as the ApiSchemaPolicy's document describes:
    /// `400`, `404` (no such operation), `405` (and the methods there
    /// are), `415` (a body of another media type).
    RequestInvalid {
        policy: std::sync::Arc<str>,
        invalid: Box<strait_route::apischema::Invalid>,
        allow: Option<Box<str>>,
    },
    FaultInjected(StatusCode),
    /// A BodyTransform could not transform a body: the client's (`400`,
    /// `413`, `415`) or the backend's answer (`502`).
    Untransformed {
        by: std::sync::Arc<str>,
        status: StatusCode,
        why: String,
    },
    RequestTimeout,
    NoBackend,
    InvalidBackend,
    NoEndpoints,
    /// A circuit breaker's limit: `namespace/name` of its policy (none
    /// when the limit has no policy), the field and its value.
    Overflow {
        policy: Option<String>,
        limit: &'static str,
        value: u32,
    },
    /// No connection (or TLS session) could be made: nothing was sent.
    Connect(String),
    /// The backend failed after the request may have reached it.
    Backend(String),
    BackendTimeout,
    SwitchedUnasked,
    /// A sidecar refuses destinations outside the mesh.
    NotInMesh,
    DestinationUnknown,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        use ProxyError::*;
        match self {
            NoHost | BadHost | BadTarget | BadFraming | RequestBody | ConnectTarget => {
                StatusCode::BAD_REQUEST
            }
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout | BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            UriTooLong => StatusCode::URI_TOO_LONG,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            UnknownCoding => StatusCode::NOT_IMPLEMENTED,
            ConnectRefused => StatusCode::METHOD_NOT_ALLOWED,
            Misdirected => StatusCode::MISDIRECTED_REQUEST,
            NoRoute => StatusCode::NOT_FOUND,
            Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            PolicyInvalid { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Denied { .. } | ExtAuthFailed { .. } | CorsRefused => StatusCode::FORBIDDEN,
            ExtAuthDenied { refusal, .. } => refusal.status,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            RequestInvalid { invalid, .. } => {
                StatusCode::from_u16(invalid.status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            FaultInjected(status) | Untransformed { status, .. } => *status,
            ExtensionUnresolved | NoBackend | InvalidBackend => StatusCode::INTERNAL_SERVER_ERROR,
            RequestTimeout | BackendTimeout => StatusCode::GATEWAY_TIMEOUT,
            NoEndpoints | Overflow { .. } | RateLimitFailed { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Connect(_)
            | Backend(_)
            | SwitchedUnasked
            | NotInMesh
            | DestinationUnknown
            | ProviderFailed { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `x-strait-reason` value (also the metric label).
    pub fn reason(&self) -> &'static str {
        use ProxyError::*;
        match self {
            NoHost => "no_host",
            Misdirected => "misdirected",
            NoRoute => "no_route",
            BadTarget => "bad_target",
            RequestBody => "request_body",
            BodyTooLarge => "body_too_large",
            BodyTimeout => "request_body_timeout",
            BodyTooSlow => "request_body_too_slow",
            UriTooLong => "request_line_too_long",
            HeadersTooLarge => "headers_too_large",
            BadHost => "bad_host",
            BadFraming => "bad_framing",
            UnknownCoding => "unknown_transfer_coding",
            ConnectRefused => "connect_refused",
            ConnectTarget => "bad_connect_target",
            Unauthenticated { method, why, .. } => match (method, why.is_some()) {
                (Method::Jwt, false) => "jwt_missing",
                (Method::Jwt, true) => "jwt_invalid",
                (Method::ApiKey, false) => "api_key_missing",
                (Method::ApiKey, true) => "api_key_invalid",
                (Method::Basic, false) => "basic_auth_missing",
                (Method::Basic, true) => "basic_auth_invalid",
                (Method::Oidc, false) => "oidc_login_required",
                (Method::Oidc, true) => "oidc_login_failed",
            },
            ProviderFailed { .. } => "oidc_provider_failed",
            PolicyInvalid { .. } => "policy_invalid",
            Denied { .. } => "authz_denied",
            ExtAuthDenied { .. } => "ext_authz_denied",
            ExtAuthFailed { .. } => "ext_authz_failed",
            ExtensionUnresolved => "extension_unresolved",
            CorsRefused => "cors_origin_refused",
            RateLimited { .. } => "rate_limited",
            RateLimitFailed { .. } => "rate_limit_failed",
            RequestInvalid { invalid, .. } => match invalid.status {
                500 => "policy_invalid",
                404 | 405 => "operation_unknown",
                415 => "media_type_unsupported",
                _ => "request_invalid",
            },
            FaultInjected(_) => "fault_injected",
            Untransformed { status, .. } => match status.as_u16() {
                413 => "body_too_large",
                415 => "media_type_unsupported",
                502 => "response_transform_failed",
                _ => "body_transform_failed",
            },
            RequestTimeout => "request_timeout",
            NoBackend => "no_backend",
            InvalidBackend => "invalid_backend",
            NoEndpoints => "no_endpoints",
            Overflow { .. } => "overflow",
            Connect(_) => "connect_failed",
            Backend(_) => "backend_failed",
            BackendTimeout => "backend_timeout",
            SwitchedUnasked => "unasked_upgrade",
            NotInMesh => "passthrough_refused",
            DestinationUnknown => "destination_unknown",
        }
    }

    pub fn side(&self) -> Side {
        use ProxyError::*;
        match self {
            RequestInvalid { invalid, .. } if invalid.status == 500 => Side::Config,
            NoHost
            | Misdirected
            | NoRoute
            | BadTarget
            | RequestBody
            | ConnectTarget
            | DestinationUnknown
            | BodyTooLarge
            | BodyTimeout
            | BodyTooSlow
            | UriTooLong
            | HeadersTooLarge
            | BadHost
            | BadFraming
            | UnknownCoding
            | ConnectRefused
            | RequestInvalid { .. } => Side::Client,
            Untransformed { status, .. } if *status != StatusCode::BAD_GATEWAY => Side::Client,
            Untransformed { .. } => Side::Upstream,
            Unauthenticated { .. }
            | Denied { .. }
            | ExtAuthDenied { .. }
            | CorsRefused
            | RateLimited { .. }
            | FaultInjected(_)
            | Overflow { .. }
            | NotInMesh => Side::Policy,
            PolicyInvalid { .. }
            | ExtensionUnresolved
            | NoBackend
            | InvalidBackend
            | NoEndpoints => Side::Config,
            RequestTimeout
            | Connect(_)
            | Backend(_)
            | BackendTimeout
            | SwitchedUnasked
            | ProviderFailed { .. }
            | RateLimitFailed { .. }
            | ExtAuthFailed { .. } => Side::Upstream,
        }
    }

    /// A connection limit's answer, naming the cluster's breaker.
    pub fn overflow(o: crate::conn_limit::Overflow, cluster: &strait_route::Cluster) -> Self {
        let (limit, value) = o.limit();
        ProxyError::Overflow {
            policy: cluster.traffic.breaker.as_ref().map(|b| b.policy.clone()),
            limit,
            value,
        }
    }

    /// After this answer the connection closes: what follows a message
    /// framed wrong cannot be trusted to be a request (RFC 9112 §9.6).
    pub fn closes(&self) -> bool {
        use ProxyError::*;
        matches!(
            self,
            NoHost
                | BadHost
                | BadTarget
                | BadFraming
                | RequestBody
                | BodyTooLarge
                | BodyTimeout
                | BodyTooSlow
                | UriTooLong
                | HeadersTooLarge
                | UnknownCoding
                | ConnectRefused
        )
    }

    /// Nothing of the request reached a backend: another endpoint may be
    /// tried whatever the method.
    pub fn retry_safe(&self) -> bool {
        matches!(self, ProxyError::Connect(_) | ProxyError::Overflow { .. })
    }

    fn text(&self) -> std::borrow::Cow<'static, str> {
        use ProxyError::*;
        let text = match self {
            NoHost => "request has no Host",
            Misdirected => "host does not match the TLS server name",
            NoRoute => "no route matched",
            BadTarget => "bad request target",
            RequestBody => "malformed or incomplete request body",
            BodyTooLarge => "request body over the limit",
            BodyTimeout => "request body timed out",
            BodyTooSlow => "request body arrived too slowly",
            UriTooLong => "request line over the limit",
            HeadersTooLarge => "request headers over the limit",
            BadHost => "Host must be one host[:port]",
            BadFraming => "ambiguous message framing",
            UnknownCoding => "transfer coding not implemented",
            ConnectRefused => "CONNECT is not served here",
            ConnectTarget => "CONNECT needs host:port",
            Denied { explain, .. } => return format!("strait: {explain}\n").into(),
            Unauthenticated {
                policy,
                method,
                why: None,
            } => {
                let what = credential(*method);
                return format!("strait: SecurityPolicy {policy} requires {what}\n").into();
            }
            Unauthenticated {
                policy,
                method,
                why: Some(why),
            } => {
                let what = credential(*method);
                return format!("strait: SecurityPolicy {policy} does not accept {what}: {why}\n")
                    .into();
            }
            PolicyInvalid { why, .. } => return format!("strait: {why}\n").into(),
            ProviderFailed { policy, why } => {
                return format!(
                "strait: SecurityPolicy {policy}: the OpenID provider could not be asked: {why}\n"
            )
                .into()
            }
            ExtAuthDenied { by, .. } => {
                return format!("strait: {by}: the authorization service refused\n").into()
            }
            ExtAuthFailed { by, why } => {
                return format!(
                    "strait: {by}: the authorization service could not be asked: {why}\n"
                )
                .into()
            }
            ExtensionUnresolved => "the route's extension filter cannot be resolved",
            CorsRefused => "the route's CORS filter does not allow this Origin",
            RateLimited { policy, rule } => {
                return format!(
                    "strait: RateLimitPolicy {policy}: rule {rule}: too many requests\n"
                )
                .into()
            }
            RateLimitFailed { policy, why } => {
                return format!(
                    "strait: RateLimitPolicy {policy}: Redis could not count ({why}), and the policy fails closed\n"
                )
                .into()
            }
            RequestInvalid {
                policy, invalid, ..
            } => return format!("strait: ApiSchemaPolicy {policy}: {invalid}\n").into(),
            FaultInjected(_) => "fault injected",
            Untransformed { by, why, .. } => {
                return format!("strait: BodyTransform {by}: {why}\n").into()
            }
            RequestTimeout => "request timeout",
            NoBackend => "route has no backend",
            InvalidBackend => "backend is not valid",
            NoEndpoints => "no ready endpoints",
            Overflow { .. } => "circuit breaker open",
            Connect(_) | Backend(_) => "backend failed",
            BackendTimeout => "backend timeout",
            SwitchedUnasked => "backend switched protocols unasked",
            NotInMesh => "not a Service of the mesh, and outbound passthrough is off",
            DestinationUnknown => "destination unknown",
        };
        format!("strait: {text}\n").into()
    }

    /// The header that says more than the reason: the deciding policy.
    fn detail(&self) -> Option<(&'static str, String)> {
        match self {
            ProxyError::Denied { policy, .. } => Some((AUTHZ_HEADER, policy.clone())),
            ProxyError::ExtAuthDenied { by, .. } | ProxyError::ExtAuthFailed { by, .. } => {
                Some((AUTHZ_HEADER, by.to_string()))
            }
            ProxyError::Unauthenticated { policy, .. }
            | ProxyError::ProviderFailed { policy, .. }
            | ProxyError::PolicyInvalid { policy, .. } => Some((AUTHN_HEADER, policy.to_string())),
            ProxyError::Overflow {
                policy: Some(p),
                limit,
                value,
            } => Some((BREAKER_HEADER, format!("{p} {limit}={value}"))),
            ProxyError::RateLimited { policy, rule } => {
                Some((RATE_LIMIT_HEADER, format!("{policy} {rule}")))
            }
            ProxyError::RateLimitFailed { policy, .. } => {
                Some((RATE_LIMIT_HEADER, policy.to_string()))
            }
            ProxyError::RequestInvalid { policy, .. } => {
                Some((API_SCHEMA_HEADER, policy.to_string()))
            }
            ProxyError::Untransformed { by, .. } => Some((TRANSFORM_HEADER, by.to_string())),
            _ => None,
        }
    }

    /// The answer: plain text, or a gRPC status for a gRPC client.
    pub fn response(&self, grpc: bool) -> Response<ResponseBody> {
        self.response_in(grpc, None)
    }

    /// The answer, written as the listener's Gateway has it written
    /// (`page`), if it does: an authorization service's own refusal is
    /// relayed as it was, and gRPC clients get a gRPC status.
    pub fn response_in(&self, grpc: bool, page: Option<&ErrorPage>) -> Response<ResponseBody> {
        let mut r = if grpc {
            self.grpc_status()
        } else if let ProxyError::ExtAuthDenied { refusal, .. } = self {
            self.relayed(refusal)
        } else if let Some(page) = page {
            let said = self.text();
            let message = said.trim_end().trim_start_matches("strait: ");
            let body = page.render(self.status().as_u16(), self.reason(), message);
            let mut r = text(self.status(), body);
            r.headers_mut()
                .insert(CONTENT_TYPE, page.content_type.clone());
            r
        } else {
            let body = match self.text() {
                std::borrow::Cow::Borrowed(s) => Bytes::from_static(s.as_bytes()),
                std::borrow::Cow::Owned(s) => Bytes::from(s),
            };
            text(self.status(), body)
        };
        let h = r.headers_mut();
        h.insert(REASON_HEADER, HeaderValue::from_static(self.reason()));
        if let Some((name, value)) = self.detail() {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        if let Some(challenge) = self.challenge() {
            h.insert(http::header::WWW_AUTHENTICATE, challenge);
        }
        if let ProxyError::RequestInvalid {
            allow: Some(allow), ..
        } = self
        {
            if let Ok(v) = HeaderValue::from_str(allow) {
                h.insert(http::header::ALLOW, v);
            }
        }
        r
    }

    /// The authorization service's refusal, ours in words if it wrote
    /// none.
    fn relayed(&self, refusal: &Refusal) -> Response<ResponseBody> {
        let mut r = match refusal.body.is_empty() {
            true => text(refusal.status, Bytes::from(self.text().into_owned())),
            false => {
                let mut r = Response::new(Either::Right(Full::new(refusal.body.clone())));
                *r.status_mut() = refusal.status;
                r
            }
        };
        for (name, value) in &refusal.headers {
            match name == CONTENT_TYPE {
                true => r.headers_mut().insert(name, value.clone()).is_some(),
                false => r.headers_mut().append(name, value.clone()),
            };
        }
        r
    }

    /// The scheme the check wants (RFC 9110 §11.6.1: a 401 names one):
    /// RFC 6750 §3's Bearer, with `invalid_token` and why when a token was
    /// sent; RFC 7617's Basic; `ApiKey` for a key.
    fn challenge(&self) -> Option<HeaderValue> {
        let ProxyError::Unauthenticated { why, method, .. } = self else {
            return None;
        };
        let value = match (method, why) {
            (Method::Basic, _) => "Basic realm=\"strait\", charset=\"UTF-8\"".to_string(),
            // A login is a browser's, not an HTTP authentication scheme.
            (Method::Oidc, _) => return None,
            (Method::ApiKey, _) => "ApiKey realm=\"strait\"".to_string(),
            (Method::Jwt, None) => "Bearer realm=\"strait\"".to_string(),
            (Method::Jwt, Some(why)) => format!(
                "Bearer realm=\"strait\", error=\"invalid_token\", error_description=\"{}\"",
                why.replace(['"', '\\'], "'")
            ),
        };
        HeaderValue::from_str(&value).ok()
    }

    /// A trailers-only gRPC response; a denial's message names its policy.
    fn grpc_status(&self) -> Response<ResponseBody> {
        let (code, message) = match self {
            // Not 429's UNAVAILABLE: a client must not retry at once.
            ProxyError::RateLimited { .. } => (8, "strait: rate limited"),
            _ => grpc_status_for(self.status()),
        };
        let mut r = Response::new(Either::Right(Full::default()));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert("grpc-status", HeaderValue::from(code));
        // Policy names and our messages are printable ASCII without `%`:
        // no percent-encoding needed.
        let message = match self {
            ProxyError::Denied { policy, .. } => {
                HeaderValue::from_str(&format!("{message} by {policy}"))
                    .unwrap_or(HeaderValue::from_static(message))
            }
            _ => HeaderValue::from_static(message),
        };
        h.insert("grpc-message", message);
        r
    }
}

/// gRPC status code and message for an HTTP status strait produced.
pub fn grpc_status_for(http: StatusCode) -> (u16, &'static str) {
    match http.as_u16() {
        400 => (13, "strait: bad request"),
        401 => (16, "strait: unauthenticated"),
        403 => (7, "strait: permission denied"),
        404 => (12, "strait: no route matched"),
        429 => (14, "strait: rate limited"),
        502 => (14, "strait: backend failed"),
        503 => (14, "strait: no ready endpoints"),
        504 => (14, "strait: timeout"),
        _ => (2, "strait: request could not be served"),
    }
}

/// A plain-text response strait writes (errors, redirects).
pub fn text(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut r = Response::new(Either::Right(Full::new(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// What a check wants, in a sentence.
fn credential(method: Method) -> &'static str {
    match method {
        Method::Jwt => "a token",
        Method::ApiKey => "an API key",
        Method::Basic => "a user and password",
        Method::Oidc => "a login",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_says_why() {
        let all = [
            ProxyError::NoHost,
            ProxyError::Misdirected,
            ProxyError::NoRoute,
            ProxyError::Connect("x".into()),
            ProxyError::Overflow {
                policy: Some("shop/breaker".into()),
                limit: "maxRequests",
                value: 3,
            },
        ];
        for e in all {
            for grpc in [false, true] {
                let r = e.response(grpc);
                assert_eq!(
                    r.headers()[REASON_HEADER].to_str().ok(),
                    Some(e.reason()),
                    "{e:?}"
                );
            }
        }
    }

    #[test]
    fn grpc_statuses_follow_the_mapping() {
        assert_eq!(grpc_status_for(StatusCode::NOT_FOUND).0, 12);
        assert_eq!(grpc_status_for(StatusCode::SERVICE_UNAVAILABLE).0, 14);
        let denied = ProxyError::Denied {
            policy: "shop/only-checkout rule 0".into(),
            explain: "denied".into(),
        };
        let r = denied.response(true);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(
            r.headers()["grpc-message"],
            "strait: permission denied by shop/only-checkout rule 0"
        );
        assert_eq!(r.headers()[AUTHZ_HEADER], "shop/only-checkout rule 0");
    }

    #[test]
    fn only_unsent_failures_are_retry_safe() {
        assert!(ProxyError::Connect(String::new()).retry_safe());
        assert!(!ProxyError::Backend(String::new()).retry_safe());
        assert!(!ProxyError::BackendTimeout.retry_safe());
    }
}
