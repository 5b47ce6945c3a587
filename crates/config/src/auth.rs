//! `SecurityPolicy` (policy.strait.dev/v1alpha1): who may call a route,
//! checked at the gateway — JSON Web Tokens, API keys and basic auth (a
//! policy with several asks for each of them), then who among the
//! authenticated, or from which addresses, may call. Attached the Gateway
//! API way (GEP-713) to a Gateway (optionally one listener, by
//! `sectionName`) or an HTTPRoute/GRPCRoute (optionally one rule, by its
//! `name`), in the target's namespace. Field names follow Envoy Gateway's
//! SecurityPolicy where it has one.

use crate::backendtls::PolicyTargetRef;
use crate::core::{InlineOrRef, LocalObjectRef};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "policy.strait.dev",
        version = "v1alpha1",
        kind = "SecurityPolicy",
        namespaced,
        status = "PolicyStatus",
        shortname = "sp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityPolicySpec {
    pub target_refs: Vec<PolicyTargetRef>,
    pub jwt: Option<Jwt>,
    pub api_key_auth: Option<ApiKeyAuth>,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub ext_auth: Option<Box<ExtAuth>>,
    pub oidc: Option<Box<Oidc>>,
}

/// What the control plane reports of a policy (GEP-713): per target, its
/// `Accepted` and `ResolvedRefs` conditions.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    #[serde(default)]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    pub ancestor_ref: PolicyAncestorRef,
    pub controller_name: String,
    #[serde(default)]
    pub conditions: Vec<StatusCondition>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub section_name: Option<String>,
}

/// A Kubernetes condition.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatusCondition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<String>,
    pub observed_generation: Option<i64>,
}

/// A browser's user logs in at an OpenID provider (authorization-code
/// flow with PKCE, state and nonce); the gateway keeps the tokens in an
/// encrypted session cookie, refreshes them and logs the user out.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Oidc {
    pub provider: OidcProvider,
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// A Secret whose key `client-secret` is the client's secret.
    pub client_secret: crate::meta::SecretObjectReference,
    /// Scopes asked for besides `openid`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Resource indicators (RFC 8707) asked for.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Where the provider sends the user back; default
    /// `SCHEME://HOST/oauth2/callback` of the request.
    #[serde(rename = "redirectURL")]
    pub redirect_url: Option<String>,
    /// Logs the user out (default `/logout`).
    pub logout_path: Option<String>,
    /// Requests matching any of these get `401` instead of a redirect to
    /// the provider (scripts, APIs).
    pub deny_redirect: Option<OidcDenyRedirect>,
    /// `Authorization: Bearer ACCESS_TOKEN` for the backend.
    #[serde(default)]
    pub forward_access_token: bool,
    /// The ID token for the backend in this header (`Authorization`:
    /// as `Bearer`).
    #[serde(rename = "forwardIDToken")]
    pub forward_id_token: Option<OidcTokenForwarding>,
    /// The tokens' lifetime when the provider gives none (default `0`:
    /// the provider must say).
    #[serde(rename = "defaultTokenTTL")]
    pub default_token_ttl: Option<String>,
    /// Refresh the tokens when they expire (default `true`).
    pub refresh_token: Option<bool>,
    /// How long a session with a refresh token lasts (default `168h`).
    #[serde(rename = "defaultRefreshTokenTTL")]
    pub default_refresh_token_ttl: Option<String>,
    /// How long a login may take (default `10m`).
    #[serde(rename = "csrfTokenTTL")]
    pub csrf_token_ttl: Option<String>,
    /// The cookies' `Domain` (default: the request's host only).
    pub cookie_domain: Option<String>,
    pub cookie_config: Option<OidcCookieConfig>,
    /// A request carrying the token a `jwt` provider of the policy reads
    /// skips the login (non-browser clients).
    #[serde(default)]
    pub pass_through_auth_header: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcProvider {
    /// The issuer identifier; its discovery document
    /// (`/.well-known/openid-configuration`) gives what is not set below.
    pub issuer: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub end_session_endpoint: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcDenyRedirect {
    pub headers: Vec<OidcDenyRedirectHeader>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcDenyRedirectHeader {
    pub name: String,
    /// `Exact` (default), `Prefix`, `Suffix` or `RegularExpression`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcTokenForwarding {
    pub header: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcCookieConfig {
    /// `Lax` (default), `Strict` or `None`.
    pub same_site: Option<String>,
}

/// Asks a service whether a request may pass, once the policy's own
/// checks passed: over HTTP (the request's head, `200` allows) or gRPC
/// (Envoy's `envoy.service.auth.v3.Authorization/Check`). Exactly one of
/// `grpc` and `http`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuth {
    pub grpc: Option<ExtAuthService>,
    pub http: Option<HttpExtAuthService>,
    /// The client's headers sent to the service (names; empty: every
    /// header to a gRPC service; to an HTTP one, `Authorization` only).
    #[serde(default)]
    pub headers_to_ext_auth: Vec<String>,
    /// Send the request's body too, up to `maxRequestBytes` (a larger
    /// body is refused `413`).
    pub body_to_ext_auth: Option<BodyToExtAuth>,
    /// Let requests through when the service cannot be asked (by default
    /// they are refused with `403`).
    #[serde(default)]
    pub fail_open: bool,
    /// How long to wait for the service's answer (default `10s`).
    pub timeout: Option<String>,
    /// Remember the service's decisions (strait's own field; none by
    /// default): a request the service would be shown exactly as an
    /// earlier one is answered as that one was, for `ttl`.
    pub cache: Option<ExtAuthCache>,
}

/// How the service's decisions are remembered.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthCache {
    /// How long a decision stands (`1s` to `1h`).
    pub ttl: String,
    /// Decisions held at most (default 10,000).
    pub max_entries: Option<u32>,
}

/// The authorization service: one Service port.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthService {
    pub backend_ref: Option<crate::meta::BackendObjectReference>,
    #[serde(default)]
    pub backend_refs: Vec<crate::meta::BackendObjectReference>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpExtAuthService {
    pub backend_ref: Option<crate::meta::BackendObjectReference>,
    #[serde(default)]
    pub backend_refs: Vec<crate::meta::BackendObjectReference>,
    /// Put before the request's path (`/auth` + `/cart` asks `/auth/cart`).
    pub path: Option<String>,
    /// The service's answer headers copied onto the request for the
    /// backend, replacing the client's (empty: none).
    #[serde(default)]
    pub headers_to_backend: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BodyToExtAuth {
    pub max_request_bytes: u32,
}

/// Who may call, once authenticated: the first rule whose principal the
/// request matches decides; none, `defaultAction` (`Deny` by default).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorization {
    /// `Allow` or `Deny`.
    pub default_action: Option<String>,
    #[serde(default)]
    pub rules: Vec<AuthorizationRule>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationRule {
    pub name: Option<String>,
    /// `Allow` or `Deny`.
    pub action: String,
    pub principal: Principal,
}

/// Every part given must match.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Principal {
    /// The client's address is in one of these (`10.0.0.0/8`, `::1/128`).
    #[serde(default, rename = "clientCIDRs")]
    pub client_cidrs: Vec<String>,
    /// The request's verified token, from this provider, with these claims.
    pub jwt: Option<JwtPrincipal>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtPrincipal {
    pub provider: String,
    /// Each claim must have one of its values (a list claim: contain one).
    #[serde(default)]
    pub claims: Vec<JwtClaim>,
    /// Each must be in the token's `scope` (space-separated) or `scp`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtClaim {
    /// A top-level claim, or a nested one as `a.b`.
    pub name: String,
    pub values: Vec<String>,
}

/// Requests must carry one of the keys of the Secrets named: each key of
/// a Secret is a client's ID, its value that client's API key.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyAuth {
    pub credential_refs: Vec<LocalObjectRef>,
    /// Where the key is; default the header `x-api-key`.
    #[serde(default)]
    pub extract_from: Vec<KeyPlaces>,
    /// A header set to the client's ID for the backend.
    #[serde(rename = "forwardClientIDHeader")]
    pub forward_client_id_header: Option<String>,
    /// Keep the key for the backend (by default it is removed).
    #[serde(default)]
    pub forward: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyPlaces {
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub params: Vec<String>,
    #[serde(default)]
    pub cookies: Vec<String>,
}

/// Requests must carry `Authorization: Basic` with a user and password of
/// the Secret's key `.htpasswd` (bcrypt or `{SHA}` entries).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    pub users: LocalObjectRef,
    /// A header set to the user's name for the backend.
    pub forward_username_header: Option<String>,
    /// Keep `Authorization` for the backend (by default it is removed).
    #[serde(default)]
    pub forward: bool,
}

/// Requests must carry a token one of the providers signed.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Jwt {
    /// A request without a token passes (one with a bad token never does).
    #[serde(default)]
    pub optional: bool,
    pub providers: Vec<JwtProvider>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtProvider {
    pub name: String,
    /// The `iss` a token must have; any when unset.
    pub issuer: Option<String>,
    /// One of these must be in the token's `aud`; not checked when empty.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The issuer's public keys, a JSON Web Key Set (a ConfigMap's key
    /// `jwks`). This or `remoteJWKS`.
    #[serde(rename = "localJWKS")]
    pub local_jwks: Option<InlineOrRef>,
    /// Where the issuer publishes its key set, fetched and refreshed.
    #[serde(rename = "remoteJWKS")]
    pub remote_jwks: Option<RemoteJwks>,
    /// Where the token is; default `Authorization: Bearer TOKEN`.
    pub extract_from: Option<ExtractFrom>,
    /// Claims copied to request headers for the backend (top-level claims;
    /// strings, numbers and booleans).
    #[serde(default)]
    pub claim_to_headers: Vec<ClaimToHeader>,
    /// Keep the token for the backend (by default it is removed).
    #[serde(default)]
    pub forward: bool,
    /// Choose the route again once `claimToHeaders` are set, so routes
    /// can match on a verified claim (`x-group: beta` → v2).
    #[serde(default)]
    pub recompute_route: bool,
}

/// An issuer's key set at a URL (`http` or `https`, checked against the
/// system's roots), fetched at start and every `cacheDuration` (default
/// `300s`), sooner when a token names a key the set lacks.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteJwks {
    pub uri: String,
    pub cache_duration: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtractFrom {
    #[serde(default)]
    pub headers: Vec<TokenHeader>,
    #[serde(default)]
    pub cookies: Vec<String>,
    /// Query parameters.
    #[serde(default)]
    pub params: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenHeader {
    pub name: String,
    /// Stripped before the token, e.g. `Bearer `.
    pub value_prefix: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeader {
    pub header: String,
    pub claim: String,
}
