//! SecurityPolicy compiled: the credentials (JSON Web Token, API key,
//! basic auth; each one the policy names must pass) a route's rule, a
//! route, a listener or a Gateway asks for. The most specific wins whole
//! (rule over route, route over listener, listener over Gateway; among
//! equals the oldest, then the first by name): policies do not merge.
//!
//! Keys are compiled once per configuration. Only public keys are
//! accepted (RSA, EC P-256/P-384, Ed25519): a symmetric (`oct`) key in a
//! key set is refused, so a token can never be checked as an HMAC made
//! with a public key; each key checks only the algorithms of its kind, and
//! `none` is no algorithm at all.

use crate::attach::{check_targets, Attached, Finding};
use http::{HeaderMap, HeaderName};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::sync::Arc;
use strait_config::auth::{JwtProvider, SecurityPolicySpec};
use strait_config::{Document, Object, Resource};

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY: u64 = 60;

/// One SecurityPolicy's checks.
#[derive(Debug)]
pub struct Authn {
    /// `namespace/name`.
    pub policy: Arc<str>,
    /// A request without a token passes the JWT check.
    pub optional: bool,
    /// The JWT providers (none: no JWT check).
    pub providers: Vec<Provider>,
    pub api_keys: Option<crate::keyauth::ApiKeys>,
    pub basic: Option<crate::keyauth::BasicUsers>,
    /// Who may call once authenticated.
    pub callers: Option<crate::callers::Callers>,
    /// The service asked last, once every check above passed.
    pub ext: Option<Arc<crate::ext_auth::ExtAuth>>,
    /// A browser's user logs in at an OpenID provider.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    /// Why the policy cannot be applied: its targets answer 500 until it
    /// is fixed, rather than let every request through.
    pub broken: Option<String>,
}

/// Tokens a policy accepted lately, kept by the proxy (a pure crate holds
/// no state): asked before a signature is checked, told after one checks
/// out.
pub trait Memo {
    fn get(&self, provider: usize, token: &str) -> Option<Arc<Map<String, Value>>>;
    fn put(&self, provider: usize, token: &str, claims: &Arc<Map<String, Value>>);
    /// The key set last fetched from `uri` (a `remoteJWKS`), if any.
    fn keys(&self, _uri: &str) -> Option<Arc<KeySet>> {
        None
    }
    /// A token named a key the set from `uri` lacks: the issuer may have
    /// rotated its keys.
    fn missing_key(&self, _uri: &str) {}
}

/// No memory: every token is checked.
pub struct NoMemo;

impl Memo for NoMemo {
    fn get(&self, _: usize, _: &str) -> Option<Arc<Map<String, Value>>> {
        None
    }
    fn put(&self, _: usize, _: &str, _: &Arc<Map<String, Value>>) {}
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    sources: Vec<TokenSource>,
    keys: Keys,
    issuer: Option<String>,
    audiences: Vec<String>,
    /// (claim, header): copied for the backend.
    pub claims: Vec<(String, HeaderName)>,
    pub forward: bool,
    /// The route is chosen again once the claims' headers are set.
    pub recompute: bool,
}

/// Where a provider's keys are: compiled with the configuration, or
/// fetched from a URL by the proxy (asked of the [`Memo`]).
#[derive(Debug)]
enum Keys {
    Local(KeySet),
    Remote(Remote),
}

/// A `remoteJWKS`: where, and how often it is fetched again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub uri: String,
    pub refresh: std::time::Duration,
}

/// The signing keys of a JSON Web Key Set.
#[derive(Debug)]
pub struct KeySet(Vec<Key>);

impl KeySet {
    /// The set in `text`; keys that cannot check tokens are left out,
    /// each with a warning (an error when none is left).
    pub fn parse(text: &str) -> Result<(KeySet, Vec<String>), String> {
        let mut warnings = Vec::new();
        let keys = keys_of(text, "", &mut warnings).map_err(|(_, e)| e)?;
        let said = warnings
            .into_iter()
            .map(|(at, w)| format!("{}: {w}", at.trim()))
            .collect();
        Ok((KeySet(keys), said))
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Envoy Gateway's default refresh of a remote key set.
pub const REMOTE_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);

struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, {:?})", self.kid, self.algorithms)
    }
}

/// Where a provider looks for its token.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    Header { name: HeaderName, prefix: String },
    Cookie(String),
    Param(String),
}

/// A token that checked out: whose, its claims, and where it was.
#[derive(Debug)]
pub struct Verified<'a> {
    pub provider: &'a Provider,
    pub claims: Arc<Map<String, Value>>,
    pub found: &'a TokenSource,
}

/// Which check refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Jwt,
    ApiKey,
    Basic,
    /// A browser's login at an OpenID provider.
    Oidc,
}

/// What the request's credentials proved.
#[derive(Debug, Default)]
pub struct Identity<'a> {
    pub jwt: Option<Verified<'a>>,
    /// The API key's client.
    pub client: Option<&'a str>,
    /// The basic-auth user.
    pub user: Option<String>,
}

/// The memo's "provider" for basic-auth credentials (a bcrypt check costs
/// milliseconds: a client sending the same credentials again pays one
/// lookup).
const BASIC: usize = usize::MAX;

#[derive(Debug, PartialEq)]
pub enum Failure {
    /// No token where any provider looks.
    Missing,
    /// A token no provider accepts, and why.
    Invalid(String),
    /// The policy itself is broken.
    Broken(String),
}

impl Authn {
    /// Every check the policy names, basic auth, then the API key, then
    /// the token: the first that refuses says why.
    pub fn check(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        memo: &dyn Memo,
    ) -> Result<Identity<'_>, (Method, Failure)> {
        if let Some(why) = &self.broken {
            return Err((Method::Jwt, Failure::Broken(why.clone())));
        }
        let mut identity = Identity::default();
        if let Some(basic) = &self.basic {
            identity.user = Some(basic_user(basic, headers, memo).map_err(|f| (Method::Basic, f))?);
        }
        if let Some(keys) = &self.api_keys {
            identity.client = Some(
                keys.check(headers, query)
                    .map_err(|f| (Method::ApiKey, f))?,
            );
        }
        if !self.providers.is_empty() {
            identity.jwt = self
                .verify(headers, query, memo)
                .map_err(|f| (Method::Jwt, f))?;
        }
        Ok(identity)
    }

    /// Whether the request has a token where a provider looks (valid or
    /// not).
    pub fn carries_token(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        let mut sources = self.providers.iter().flat_map(|p| &p.sources);
        sources.any(|s| !s.all(headers, query).is_empty())
    }

    /// Checks the request's token. `Ok(None)`: no token, and none is
    /// required.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        memo: &dyn Memo,
    ) -> Result<Option<Verified<'_>>, Failure> {
        if let Some(why) = &self.broken {
            return Err(Failure::Broken(why.clone()));
        }
        // Every place of every provider: one token, or the request is
        // refused. Were a bad token in one place let by because a good one
        // sat in another, the backend could read the bad one.
        let mut found: Vec<(usize, &TokenSource, String)> = Vec::new();
        for (p, provider) in self.providers.iter().enumerate() {
            for source in &provider.sources {
                found.extend(
                    source
                        .all(headers, query)
                        .into_iter()
                        .map(|t| (p, source, t)),
                );
            }
        }
        let Some((_, _, token)) = found.first() else {
            return match self.optional {
                true => Ok(None),
                false => Err(Failure::Missing),
            };
        };
        if found.iter().any(|(_, _, t)| t != token) {
            return Err(Failure::Invalid(
                "the request carries more than one token".into(),
            ));
        }
        let mut why = None;
        for (p, provider) in self.providers.iter().enumerate() {
            let Some((_, source, _)) = found.iter().find(|(fp, _, _)| *fp == p) else {
                continue;
            };
            let claims = match memo.get(p, token) {
                Some(claims) => claims,
                None => match provider.check(token, memo) {
                    Ok(claims) => {
                        let claims = Arc::new(claims);
                        memo.put(p, token, &claims);
                        claims
                    }
                    Err(e) => {
                        why = why.or(Some(e));
                        continue;
                    }
                },
            };
            return Ok(Some(Verified {
                provider,
                claims,
                found: source,
            }));
        }
        Err(Failure::Invalid(why.unwrap_or_default()))
    }

    /// Every place a credential is taken out of (those of each check that
    /// does not forward it): cleared whatever the check found, so that no
    /// credential the check did not accept reaches the backend.
    pub fn cleared(&self) -> impl Iterator<Item = &TokenSource> {
        let keys = self.api_keys.iter().filter(|k| !k.forward);
        let basic = self.basic.iter().filter(|b| !b.forward);
        self.providers
            .iter()
            .filter(|p| !p.forward)
            .flat_map(|p| p.sources.iter())
            .chain(keys.flat_map(|k| k.sources.iter()))
            .chain(basic.map(|_| &AUTHORIZATION))
    }

    /// The query parameters a token or key may be in (kept out of access
    /// logs).
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.providers
            .iter()
            .flat_map(|p| p.sources.iter())
            .chain(self.api_keys.iter().flat_map(|k| k.sources.iter()))
            .filter_map(|s| match s {
                TokenSource::Param(name) => Some(name.as_str()),
                _ => None,
            })
    }

    /// Every header a check sets (a claim's, the client's ID, the user's
    /// name): removed from what the client sent, so that only verified
    /// credentials can set them.
    pub fn claim_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.providers
            .iter()
            .flat_map(|p| p.claims.iter().map(|(_, h)| h))
            .chain(
                self.api_keys
                    .iter()
                    .filter_map(|k| k.client_header.as_ref()),
            )
            .chain(self.basic.iter().filter_map(|b| b.user_header.as_ref()))
    }
}

/// `Authorization` as a place credentials are taken out of.
static AUTHORIZATION: TokenSource = TokenSource::Header {
    name: http::header::AUTHORIZATION,
    prefix: String::new(),
};

/// The basic-auth user, from the memo when these very credentials passed
/// lately (keyed by the SHA-256 of `user:password`: the memo holds no
/// password).
fn basic_user(
    basic: &crate::keyauth::BasicUsers,
    headers: &HeaderMap,
    memo: &dyn Memo,
) -> Result<String, Failure> {
    use sha2::Digest;
    let credentials = basic.credentials(headers)?;
    // Keyed by what was decoded, not by the header as sent: spelling the
    // same credentials another way is not another entry.
    let key = hex(&sha2::Sha256::digest(credentials.as_bytes()));
    if let Some(claims) = memo.get(BASIC, &key) {
        if let Some(Value::String(user)) = claims.get("sub") {
            return Ok(user.clone());
        }
    }
    let user = basic.verify(&credentials)?;
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::String(user.clone()));
    memo.put(BASIC, &key, &Arc::new(claims));
    Ok(user)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Provider {
    /// Whether the token (not yet verified) names this provider's issuer;
    /// true when the provider names none.
    fn claims_issuer(&self, token: &str) -> bool {
        let Some(issuer) = &self.issuer else {
            return true;
        };
        let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Map<String, Value>>(token);
        claims.is_ok_and(|c| c.get("iss").and_then(Value::as_str) == Some(issuer))
    }

    fn check(&self, token: &str, memo: &dyn Memo) -> Result<Map<String, Value>, String> {
        let fetched;
        let set = match &self.keys {
            Keys::Local(set) => set,
            Keys::Remote(remote) => {
                fetched = memo
                    .keys(&remote.uri)
                    .ok_or("the issuer's key set has not been fetched")?;
                &*fetched
            }
        };
        match set.verify(token, self.issuer.as_deref(), &self.audiences) {
            Err(Refused::NoKey(why)) => {
                if let Keys::Remote(remote) = &self.keys {
                    // Only a token that says it is this issuer's fetches
                    // its set again: another provider's tokens are checked
                    // here too, and would keep fetching it.
                    if self.claims_issuer(token) {
                        memo.missing_key(&remote.uri);
                    }
                }
                Err(why)
            }
            Err(Refused::Bad(why)) => Err(why),
            Ok(claims) => Ok(claims),
        }
    }
}

/// Why a key set refused a token.
#[derive(Debug)]
pub enum Refused {
    /// The set has no key for it (the token names a key id: the issuer
    /// may have rotated its keys).
    NoKey(String),
    Bad(String),
}

impl KeySet {
    /// The claims of `token` if one of the set's keys signed it, it has
    /// not expired (nor is it early), and it is `issuer`'s (when given)
    /// for one of `audiences` (when any).
    pub fn verify(
        &self,
        token: &str,
        issuer: Option<&str>,
        audiences: &[String],
    ) -> Result<Map<String, Value>, Refused> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| Refused::Bad(describe(e.kind())))?;
        let candidates: Vec<&Key> = self
            .0
            .iter()
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .filter(|k| k.algorithms.contains(&header.alg))
            .collect();
        if candidates.is_empty() {
            return Err(match header.kid {
                Some(kid) => Refused::NoKey(format!("no key {kid:?} for {:?}", header.alg)),
                None => Refused::Bad(format!("no key for {:?}", header.alg)),
            });
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY;
        validation.validate_nbf = true;
        // Naming an issuer or audiences makes the claim required: the
        // library checks them only when present.
        match issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                validation.required_spec_claims.insert("iss".into());
            }
            None => validation.iss = None,
        }
        if audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(audiences);
            validation.required_spec_claims.insert("aud".into());
        }
        let mut why = String::new();
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                // One issuer, as a string: the library takes a list that
                // merely contains it.
                Ok(data)
                    if issuer.is_some()
                        && !data.claims.get("iss").is_some_and(Value::is_string) =>
                {
                    why = "the token's issuer is not accepted".into()
                }
                Ok(data) => return Ok(data.claims),
                Err(e) => why = describe(e.kind()),
            }
        }
        Err(Refused::Bad(why))
    }
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted".into(),
        ErrorKind::InvalidAudience => "the token's audience is not accepted".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the token has no {c}"),
        _ => "the token is malformed".into(),
    }
}

impl TokenSource {
    /// Every token this source holds in the request. A place present but
    /// empty counts (as a token that cannot verify); cookie names are
    /// trimmed and parameter names decoded, as backends read them.
    pub fn all(&self, headers: &HeaderMap, query: Option<&str>) -> Vec<String> {
        match self {
            TokenSource::Header { name, prefix } => headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or_default())
                .filter_map(|v| strip_prefix_ignore_case(v, prefix))
                .map(|t| t.trim().to_string())
                .collect(),
            TokenSource::Cookie(name) => crate::matcher::cookies(headers)
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.to_string())
                .collect(),
            TokenSource::Param(name) => query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .filter(|(k, _)| is_param(k, name))
                .map(|(_, v)| decoded(v).into_owned())
                .collect(),
        }
    }
}

/// Whether query key `raw` (as sent) names parameter `name`.
pub fn is_param(raw: &str, name: &str) -> bool {
    decoded(raw) == name
}

fn decoded(text: &str) -> std::borrow::Cow<'_, str> {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy()
}

/// `Bearer` is case-insensitive (RFC 6750 §2.1 via RFC 9110 §11.1); the
/// prefix alone (trailing space trimmed on the way) is an empty token.
fn strip_prefix_ignore_case<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    let bare = prefix.trim_end();
    if !bare.is_empty() && value.trim_end().eq_ignore_ascii_case(bare) {
        return Some("");
    }
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// The SecurityPolicies, and what is wrong with them.
pub type AuthnTable = Attached<Authn>;

impl crate::attach::Policy for Authn {
    const KIND: &'static str = "SecurityPolicy";
}

impl Attached<Authn> {
    pub(crate) fn compile(docs: &[Document], resolver: &mut crate::backend::Resolver<'_>) -> Self {
        Attached::build(
            docs,
            |d| match &*d.resource {
                Resource::SecurityPolicy(p) => Some(p),
                _ => None,
            },
            |spec| &spec.target_refs,
            |p| compile_policy(docs, p, resolver),
            "the policy's targets answer 500 until it is fixed",
        )
    }

    /// Every remote key set a policy names, once each (the shortest
    /// refresh among those naming it).
    pub fn remote_jwks(&self) -> Vec<Remote> {
        let mut out: Vec<Remote> = Vec::new();
        let providers = self.all().flat_map(|p| &p.providers);
        for remote in providers.filter_map(|p| match &p.keys {
            Keys::Remote(r) => Some(r),
            Keys::Local(_) => None,
        }) {
            match out.iter_mut().find(|o| o.uri == remote.uri) {
                Some(o) => o.refresh = o.refresh.min(remote.refresh),
                None => out.push(remote.clone()),
            }
        }
        out
    }
}

/// The policy, its errors (it then fails closed) and its warnings.
fn compile_policy(
    docs: &[Document],
    p: &Object<SecurityPolicySpec>,
    resolver: &mut crate::backend::Resolver<'_>,
) -> (Authn, Vec<Finding>, Vec<Finding>) {
    let mut errors = check_targets(&p.spec.target_refs);
    let mut warnings = Vec::new();
    let mut providers = Vec::new();
    let jwt = p.spec.jwt.clone().unwrap_or_default();
    let spec = &p.spec;
    let checks = [
        spec.jwt.is_some(),
        spec.api_key_auth.is_some(),
        spec.basic_auth.is_some(),
        spec.authorization.is_some(),
        spec.ext_auth.is_some(),
        spec.oidc.is_some(),
    ];
    if !checks.contains(&true) {
        errors.push((
            "spec".into(),
            "a SecurityPolicy needs jwt, oidc, apiKeyAuth, basicAuth, authorization or extAuth"
                .into(),
        ));
    } else if spec.jwt.is_some() && jwt.providers.is_empty() {
        errors.push(("spec.jwt.providers".into(), "no provider".into()));
    }
    let ns = p.metadata.namespace();
    let api_keys = spec.api_key_auth.as_ref().and_then(|k| {
        crate::keyauth::api_keys(docs, ns, k, "spec.apiKeyAuth")
            .map_err(|e| errors.extend(e))
            .ok()
    });
    let names: Vec<&str> = jwt.providers.iter().map(|p| p.name.as_str()).collect();
    let callers = spec.authorization.as_ref().and_then(|a| {
        crate::callers::compile(a, &names, "spec.authorization")
            .map_err(|e| errors.extend(e))
            .ok()
    });
    let basic = spec.basic_auth.as_ref().and_then(|b| {
        crate::keyauth::basic_users(docs, ns, b, ("spec.basicAuth", &mut warnings))
            .map_err(|e| errors.extend(e))
            .ok()
    });
    let ext = spec.ext_auth.as_ref().and_then(|e| {
        let policy = format!("{ns}/{}", p.metadata.name);
        crate::ext_auth::compile(e, (ns, &policy), "spec.extAuth", resolver)
            .map(Arc::new)
            .map_err(|e| errors.extend(e))
            .ok()
    });
    let oidc = spec.oidc.as_ref().and_then(|o| {
        crate::oidc::compile(docs, (ns, &p.metadata.name), o, "spec.oidc")
            .map(Arc::new)
            .map_err(|e| errors.extend(e))
            .ok()
    });
    for (i, provider) in jwt.providers.iter().enumerate() {
        let at = format!("spec.jwt.providers[{i}]");
        let ns = p.metadata.namespace();
        match compile_provider(docs, ns, provider, (&at, &mut warnings)) {
            Ok(compiled) => providers.push(compiled),
            Err(found) => errors.extend(found),
        }
    }
    let broken = errors.first().map(|(path, msg)| {
        format!(
            "SecurityPolicy {}/{} {path}: {msg}",
            p.metadata.namespace(),
            p.metadata.name
        )
    });
    let auth = Authn {
        policy: format!("{}/{}", p.metadata.namespace(), p.metadata.name).into(),
        optional: jwt.optional,
        providers,
        api_keys,
        basic,
        callers,
        ext,
        oidc,
        broken,
    };
    (auth, errors, warnings)
}

fn compile_provider(
    docs: &[Document],
    ns: &str,
    p: &JwtProvider,
    (at, warnings): (&str, &mut Vec<Finding>),
) -> Result<Provider, Vec<Finding>> {
    let mut errors = Vec::new();
    let keys = match (&p.local_jwks, &p.remote_jwks) {
        (Some(local), None) => {
            let jwks_at = format!("{at}.localJWKS");
            let text = crate::extension::config_text(docs, ns, local, "jwks")
                .map_err(|e| (jwks_at.clone(), e));
            let keys = text.and_then(|text| keys_of(&text, &jwks_at, warnings));
            Keys::Local(KeySet(keys.unwrap_or_else(|e| {
                errors.push(e);
                Vec::new()
            })))
        }
        (None, Some(remote)) => match remote_of(remote, &format!("{at}.remoteJWKS")) {
            Ok(r) => Keys::Remote(r),
            Err(e) => {
                errors.push(e);
                Keys::Local(KeySet(Vec::new()))
            }
        },
        _ => {
            let msg = "needs exactly one of localJWKS and remoteJWKS";
            errors.push((at.to_string(), msg.into()));
            Keys::Local(KeySet(Vec::new()))
        }
    };
    let mut claims = Vec::new();
    for (c, ch) in p.claim_to_headers.iter().enumerate() {
        match HeaderName::from_bytes(ch.header.as_bytes()) {
            Ok(h) => claims.push((ch.claim.clone(), h)),
            Err(_) => errors.push((
                format!("{at}.claimToHeaders[{c}].header"),
                format!("{:?} is not a header name", ch.header),
            )),
        }
    }
    let sources = sources(p, at, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Provider {
        name: p.name.clone(),
        sources,
        keys,
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        claims,
        forward: p.forward,
        recompute: p.recompute_route,
    })
}

fn sources(p: &JwtProvider, at: &str, errors: &mut Vec<Finding>) -> Vec<TokenSource> {
    let Some(from) = &p.extract_from else {
        return vec![TokenSource::Header {
            name: http::header::AUTHORIZATION,
            prefix: "Bearer ".into(),
        }];
    };
    let mut out = Vec::new();
    for (h, th) in from.headers.iter().enumerate() {
        match HeaderName::from_bytes(th.name.as_bytes()) {
            Ok(name) => out.push(TokenSource::Header {
                name,
                prefix: th.value_prefix.clone().unwrap_or_default(),
            }),
            Err(_) => errors.push((
                format!("{at}.extractFrom.headers[{h}].name"),
                format!("{:?} is not a header name", th.name),
            )),
        }
    }
    out.extend(from.cookies.iter().cloned().map(TokenSource::Cookie));
    out.extend(from.params.iter().cloned().map(TokenSource::Param));
    if out.is_empty() && errors.is_empty() {
        errors.push((
            format!("{at}.extractFrom"),
            "no place to look for a token".into(),
        ));
    }
    out
}

fn remote_of(r: &strait_config::auth::RemoteJwks, at: &str) -> Result<Remote, Finding> {
    let uri: http::Uri = r
        .uri
        .parse()
        .map_err(|e| (format!("{at}.uri"), format!("{:?}: {e}", r.uri)))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        let msg = format!("{:?} is not an http or https URL", r.uri);
        return Err((format!("{at}.uri"), msg));
    }
    let refresh = match &r.cache_duration {
        None => REMOTE_REFRESH,
        Some(d) => strait_config::duration::parse(d)
            .ok()
            .filter(|d| *d >= std::time::Duration::from_secs(1))
            .ok_or_else(|| {
                let msg = format!("{d:?} is not a duration of 1s or more");
                (format!("{at}.cacheDuration"), msg)
            })?,
    };
    Ok(Remote {
        uri: r.uri.clone(),
        refresh,
    })
}

/// The set's signing keys, each with the algorithms it may check. A key
/// that cannot check tokens (a symmetric one, an unsupported curve or
/// algorithm) is left out with a warning, so that one odd key in an
/// issuer's set does not stop the rest; a set left with none is an error.
fn keys_of(text: &str, at: &str, warnings: &mut Vec<Finding>) -> Result<Vec<Key>, Finding> {
    let set: JwkSetText = serde_json::from_str(text)
        .map_err(|e| (at.to_string(), format!("not a JSON Web Key Set: {e}")))?;
    let mut keys = Vec::new();
    for (i, raw) in set.keys.into_iter().enumerate() {
        match key_of(raw) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(msg) => warnings.push((format!("{at} key {i}"), format!("{msg}; left out"))),
        }
    }
    if keys.is_empty() {
        return Err((
            at.to_string(),
            "the key set has no usable signing key".into(),
        ));
    }
    Ok(keys)
}

/// A set read key by key, so that one key strait cannot read is only that.
#[derive(serde::Deserialize)]
struct JwkSetText {
    keys: Vec<Value>,
}

/// `None`: an encryption key, not for tokens.
fn key_of(raw: Value) -> Result<Option<Key>, String> {
    let jwk: Jwk =
        serde_json::from_value(raw).map_err(|e| format!("not a key strait reads: {e}"))?;
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Ok(None);
    }
    let family = algorithms_of(&jwk)?;
    let algorithms = match jwk.common.key_algorithm {
        None => family,
        Some(named) => {
            let alg = Algorithm::try_from(named)
                .ok()
                .filter(|a| family.contains(a))
                .ok_or_else(|| format!("alg {named:?} does not fit the key's type"))?;
            vec![alg]
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable: {e}"))?;
    Ok(Some(Key {
        kid: jwk.common.key_id.clone(),
        key,
        algorithms,
    }))
}

fn algorithms_of(jwk: &Jwk) -> Result<Vec<Algorithm>, String> {
    use Algorithm::*;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Ok(vec![RS256, RS384, RS512, PS256, PS384, PS512]),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Ok(vec![ES256]),
            EllipticCurve::P384 => Ok(vec![ES384]),
            ref other => Err(format!("curve {other:?} is not supported")),
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Ok(vec![EdDSA])
        }
        AlgorithmParameters::OctetKey(_) => {
            Err("a symmetric key (kty oct) is not accepted: only public keys check tokens".into())
        }
        _ => Err("key type not supported (RSA, EC P-256/P-384, Ed25519 are)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const JWKS: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "a"}]}"#;

    fn policy(name: &str, created: &str, targets: &str) -> String {
        format!("---\napiVersion: policy.strait.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {{name: {name}, namespace: shop, creationTimestamp: \"{created}\"}}\nspec:\n  targetRefs: {targets}\n  jwt:\n    providers: [{{name: p, localJWKS: {{type: Inline, inline: '{JWKS}'}}}}]\n")
    }

    fn table(yaml: &str) -> AuthnTable {
        let set = strait_config::parse_text(Path::new("t.yaml"), yaml);
        assert!(!set.has_errors(), "{:?}", set.problems);
        crate::backend::Resolver::new(&set.documents).authn
    }

    fn route(name: &str, section: Option<&str>) -> String {
        let section = section.map_or(String::new(), |s| format!(", sectionName: {s}"));
        format!("[{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {name}{section}}}]")
    }

    #[test]
    fn the_most_specific_target_wins_then_the_oldest() {
        let yaml = [
            policy("route", "2026-01-02T00:00:00Z", &route("api", None)),
            policy(
                "rule",
                "2026-01-03T00:00:00Z",
                &route("api", Some("public")),
            ),
            policy("older", "2026-01-01T00:00:00Z", &route("api", None)),
            policy(
                "gw",
                "2026-01-01T00:00:00Z",
                "[{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]",
            ),
        ]
        .concat();
        let mut t = table(&yaml);
        let name = |a: Option<Arc<Authn>>| a.map(|a| a.policy.to_string());
        assert_eq!(
            name(t.for_rule("HTTPRoute", "shop", "api", Some("public"))).as_deref(),
            Some("shop/rule")
        );
        assert_eq!(
            name(t.for_rule("HTTPRoute", "shop", "api", Some("other"))).as_deref(),
            Some("shop/older")
        );
        assert_eq!(
            name(t.for_rule("HTTPRoute", "shop", "api", None)).as_deref(),
            Some("shop/older")
        );
        assert_eq!(name(t.for_rule("GRPCRoute", "shop", "api", None)), None);
        assert_eq!(name(t.for_rule("HTTPRoute", "other", "api", None)), None);
        assert_eq!(
            name(t.for_listener("shop", "edge", "https")).as_deref(),
            Some("shop/gw")
        );
        let problems = t.take_problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("shop/older"), "{problems:?}");
    }

    #[test]
    fn a_remote_key_set_is_one_url_named_once_with_its_shortest_refresh() {
        let remote = |name: &str, jwks: &str| {
            format!("---\napiVersion: policy.strait.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {name}}}]\n  jwt:\n    providers: [{{name: p, {jwks}}}]\n")
        };
        let yaml = [
            remote("a", "remoteJWKS: {uri: 'https://issuer.example/jwks', cacheDuration: 10m}"),
            remote("b", "remoteJWKS: {uri: 'https://issuer.example/jwks', cacheDuration: 30s}"),
            remote("c", "remoteJWKS: {uri: 'https://other.example/jwks'}"),
            remote("d", "remoteJWKS: {uri: 'ftp://x/jwks'}"),
            remote("e", "remoteJWKS: {uri: 'https://x/jwks', cacheDuration: 0s}"),
            remote("f", &format!("remoteJWKS: {{uri: 'https://x/jwks'}}, localJWKS: {{type: Inline, inline: '{JWKS}'}}")),
        ]
        .concat();
        let mut t = table(&yaml);
        let wanted = t.remote_jwks();
        assert_eq!(
            wanted,
            [
                Remote {
                    uri: "https://issuer.example/jwks".into(),
                    refresh: std::time::Duration::from_secs(30)
                },
                Remote {
                    uri: "https://other.example/jwks".into(),
                    refresh: REMOTE_REFRESH
                },
            ]
        );
        let said: Vec<String> = t
            .take_problems()
            .iter()
            .map(|p| format!("{} {}", p.path, p.message))
            .collect();
        for expected in [
            "spec.jwt.providers[0].remoteJWKS.uri \"ftp://x/jwks\" is not an http or https URL",
            "spec.jwt.providers[0].remoteJWKS.cacheDuration \"0s\" is not a duration of 1s or more",
            "spec.jwt.providers[0] needs exactly one of localJWKS and remoteJWKS",
        ] {
            assert!(
                said.iter().any(|s| s.starts_with(expected)),
                "{expected}: {said:?}"
            );
        }
    }

    #[test]
    fn tokens_are_found_where_the_provider_looks() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "bearer abc".parse().expect("value"));
        headers.insert("cookie", "a=1; session=def".parse().expect("value"));
        let bearer = TokenSource::Header {
            name: http::header::AUTHORIZATION,
            prefix: "Bearer ".into(),
        };
        assert_eq!(bearer.all(&headers, None), ["abc"]);
        let cookie = TokenSource::Cookie("session".into());
        assert_eq!(cookie.all(&headers, None), ["def"]);
        let param = TokenSource::Param("t".into());
        assert_eq!(param.all(&headers, Some("x=1&t=ghi")), ["ghi"]);
        // Every copy, empty ones and encoded names too: backends read them.
        assert_eq!(param.all(&headers, Some("t=&%74=x")), ["", "x"]);
        assert!(TokenSource::Cookie("no".into())
            .all(&headers, None)
            .is_empty());
        headers.insert("cookie", "session =a; session=b".parse().expect("value"));
        assert_eq!(cookie.all(&headers, None), ["a", "b"]);
    }
}
