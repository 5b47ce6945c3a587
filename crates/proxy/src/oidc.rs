//! A browser's user logs in at an OpenID provider (OpenID Connect Core
//! 1.0, authorization-code flow) before a route answers: the gateway is
//! the client. A request without a session is sent to the provider with
//! a fresh `state`, `nonce` and PKCE challenge (RFC 7636, `S256`), kept in
//! a short-lived cookie of its own per login; the provider sends the user
//! back to the callback path, where the code is exchanged at the token
//! endpoint and the ID token checked (signature against the provider's
//! key set, issuer, audience, expiry, nonce). The tokens then live in one
//! session cookie, encrypted and authenticated (AES-256-GCM, its key
//! derived from the client secret and the policy's name with HKDF), so
//! every replica reads it and no replica stores anything; expired tokens
//! are refreshed with the refresh token, and the logout path ends the
//! session and sends the user to the provider's end-session endpoint.

use crate::answer::{ProxyError, ResponseBody, REASON_HEADER};
use crate::fetch::Client;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use strait_route::authn::{KeySet, Method, Refused};
use strait_route::oidc::{Oidc, CALLBACK_PATH};

/// A discovery document and key set are read again after this.
const REDISCOVER: Duration = Duration::from_secs(3600);
/// A failed discovery, or a key the set lacks, is tried again after this.
const RETRY: Duration = Duration::from_secs(5);
/// A cookie value longer than this is split over several cookies:
/// browsers keep about 4 KiB per cookie, name and attributes included.
const CHUNK: usize = 3800;
/// A session in more cookies than this is refused (about 30 KB of
/// tokens): a browser sends them all with every request.
const MAX_PARTS: usize = 8;
/// A longer URL is not kept for after the login (the login's cookie
/// must stay under what browsers keep): the user comes back to `/`.
const MAX_URL: usize = 2048;

/// What the proxy learnt of each issuer, kept across configurations.
#[derive(Default)]
pub struct Providers {
    found: Mutex<HashMap<String, Found>>,
    client: OnceLock<Result<Client, String>>,
}

#[derive(Clone)]
struct Found {
    at: Instant,
    result: Result<Arc<Discovered>, String>,
}

/// An issuer's endpoints and signing keys.
/// Only what the issuer published: a policy's own endpoints are applied
/// where they are used, so one policy's never reach another's users.
struct Discovered {
    authorization: Option<String>,
    token: Option<String>,
    end_session: Option<String>,
    keys: KeySet,
}

impl Discovered {
    fn authorization<'a>(&'a self, oidc: &'a Oidc) -> Result<&'a str, String> {
        let found = oidc
            .authorization_endpoint
            .as_ref()
            .or(self.authorization.as_ref());
        found
            .map(String::as_str)
            .ok_or_else(|| "the provider gives no authorization_endpoint".into())
    }

    fn token<'a>(&'a self, oidc: &'a Oidc) -> Result<&'a str, String> {
        let found = oidc.token_endpoint.as_ref().or(self.token.as_ref());
        found
            .map(String::as_str)
            .ok_or_else(|| "the provider gives no token_endpoint".into())
    }
}

#[derive(Deserialize)]
struct Document {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
    jwks_uri: String,
}

/// What a login step decided.
pub enum Login {
    /// The request goes on (its session's tokens set for the backend);
    /// these cookies go with its answer (refreshed tokens).
    Pass(Vec<HeaderValue>),
    /// strait answers: a redirect to or from the provider, and why.
    Answer(Box<Response<ResponseBody>>, &'static str),
}

/// The tokens of a logged-in user.
#[derive(Serialize, Deserialize)]
struct Session {
    id: String,
    access: String,
    refresh: Option<String>,
    /// When the tokens expire (Unix seconds).
    expires: u64,
    /// When the session ends: its refresh token's end, else `expires`.
    ends: u64,
}

/// A login under way: what the callback must find again.
#[derive(Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    /// Where the user was going.
    url: String,
    redirect_uri: String,
    expires: u64,
}

/// A token endpoint's answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    token_type: String,
    id_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
}

/// Why a token endpoint did not give tokens.
enum Failed {
    /// It refused (a bad code, a revoked refresh token): the user's.
    Refused(String),
    /// It could not be asked, or answered nonsense: the provider's.
    Provider(String),
}

/// The request's login step under `oidc`; `scheme` the connection's,
/// `pass_through` whether the request carries a token the policy's JWT
/// providers check.
pub async fn login<B>(
    (oidc, providers): (&Oidc, &Providers),
    req: &mut Request<B>,
    (scheme, pass_through): (&str, bool),
) -> Result<Login, ProxyError> {
    let keys = Keys::of(oidc).map_err(|why| broken(oidc, why))?;
    let path = req.uri().path();
    if path == oidc.callback_path {
        return callback((oidc, providers), &keys, req, scheme).await;
    }
    if path == oidc.logout_path {
        let answer = logout((oidc, providers), &keys, req).await;
        return Ok(Login::Answer(Box::new(answer), "oidc_logout"));
    }
    if oidc.pass_through && pass_through {
        // Nothing of a session goes on: not its cookies, nor a client's
        // own value of the header the ID token would be in.
        keys.strip(oidc, req.headers_mut());
        return Ok(Login::Pass(Vec::new()));
    }
    if let Some(session) = keys.session(req.headers()) {
        let now = crate::ctx::unix_now();
        if session.expires > now {
            keys.admit(oidc, req, &session);
            return Ok(Login::Pass(Vec::new()));
        }
        if oidc.refresh && session.ends > now {
            let renewed = refresh((oidc, providers), session).await;
            let secure = secure(oidc, scheme);
            let sealed = renewed
                .as_ref()
                .and_then(|s| Some((s, keys.session_cookies(oidc, s, secure)?)));
            if let Some((renewed, cookies)) = sealed {
                keys.admit(oidc, req, renewed);
                return Ok(Login::Pass(cookies));
            }
        }
    }
    let headers = req.headers();
    let scripted = oidc.deny_redirect.iter().any(|(name, m)| {
        headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| m.matches(v)))
    });
    if scripted {
        return Err(refused(oidc, None));
    }
    start((oidc, providers), &keys, req, scheme).await
}

fn refused(oidc: &Oidc, why: Option<String>) -> ProxyError {
    ProxyError::Unauthenticated {
        policy: oidc.policy.as_str().into(),
        method: Method::Oidc,
        why,
    }
}

fn broken(oidc: &Oidc, why: String) -> ProxyError {
    ProxyError::PolicyInvalid {
        policy: oidc.policy.as_str().into(),
        why: format!("SecurityPolicy {}: {why}", oidc.policy),
    }
}

fn provider_failed(oidc: &Oidc, why: String) -> ProxyError {
    ProxyError::ProviderFailed {
        policy: oidc.policy.as_str().into(),
        why,
    }
}

/// Sends the user to the provider to log in, then back to the request's
/// URL.
async fn start<B>(
    (oidc, providers): (&Oidc, &Providers),
    keys: &Keys,
    req: &Request<B>,
    scheme: &str,
) -> Result<Login, ProxyError> {
    let found = providers
        .discovered(oidc, false)
        .await
        .map_err(|why| provider_failed(oidc, why))?;
    let redirect_uri = match &oidc.redirect_url {
        Some(url) => url.clone(),
        None => format!("{scheme}://{}{CALLBACK_PATH}", authority(req)?),
    };
    let random = |n| {
        keys.random(n)
            .ok_or_else(|| broken(oidc, "no randomness".into()))
    };
    let flow = Flow {
        state: random(16)?,
        nonce: random(16)?,
        verifier: random(32)?,
        url: local(req.uri().path_and_query().map_or("/", |p| p.as_str())),
        redirect_uri,
        expires: crate::ctx::unix_now() + oidc.flow_ttl.as_secs(),
    };
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        flow.verifier.as_bytes(),
    ));
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", &oidc.client_id)
        .append_pair("redirect_uri", &flow.redirect_uri)
        .append_pair("scope", &oidc.scopes)
        .append_pair("state", &flow.state)
        .append_pair("nonce", &flow.nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    for resource in &oidc.resources {
        query.append_pair("resource", resource);
    }
    let endpoint = found
        .authorization(oidc)
        .map_err(|why| provider_failed(oidc, why))?;
    let joint = if endpoint.contains('?') { '&' } else { '?' };
    let location = format!("{endpoint}{joint}{}", query.finish());
    let name = keys.flow_name(&flow.state);
    let sealed = serde_json::to_vec(&flow).map_err(|e| broken(oidc, e.to_string()))?;
    let value = keys
        .seal(&name, &sealed)
        .ok_or_else(|| broken(oidc, "cannot seal the login's cookie".into()))?;
    let flow_site = if oidc.same_site == "None" {
        "None"
    } else {
        "Lax"
    };
    let attributes = Attributes {
        max_age: oidc.flow_ttl.as_secs(),
        secure: secure(oidc, scheme),
        same_site: flow_site,
        domain: oidc.cookie_domain.as_deref(),
    };
    let cookie = attributes.cookie(&name, &value);
    let answer = redirect(&location, cookie.into_iter(), "oidc_login");
    Ok(Login::Answer(Box::new(answer), "oidc_login"))
}

/// The provider sent the user back: the code becomes a session.
async fn callback<B>(
    (oidc, providers): (&Oidc, &Providers),
    keys: &Keys,
    req: &Request<B>,
    scheme: &str,
) -> Result<Login, ProxyError> {
    let params: HashMap<String, String> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let said = |key: &str| params.get(key).map(String::as_str);
    if let Some(error) = said("error") {
        let detail = said("error_description").unwrap_or("");
        return Err(refused(
            oidc,
            Some(format!("the provider said {error}: {detail}")),
        ));
    }
    let failed = |why: &str| refused(oidc, Some(why.to_string()));
    let state = said("state").ok_or_else(|| failed("the callback has no state"))?;
    let (Some(code), true) = (said("code"), state_shaped(state)) else {
        return Err(failed("the callback has no code, or a malformed state"));
    };
    let name = keys.flow_name(state);
    let flow: Flow = keys
        .cookie(req.headers(), &name)
        .and_then(|plain| serde_json::from_slice(&plain).ok())
        .filter(|f: &Flow| f.state == state && f.expires > crate::ctx::unix_now())
        .ok_or_else(|| {
            failed("no login under way for this state (it expired, or cookies are blocked)")
        })?;
    if said("iss").is_some_and(|iss| iss != oidc.issuer) {
        return Err(failed("the callback names another issuer"));
    }
    let found = providers
        .discovered(oidc, false)
        .await
        .map_err(|why| provider_failed(oidc, why))?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", flow.redirect_uri.as_str()),
        ("code_verifier", flow.verifier.as_str()),
    ];
    let tokens = providers
        .tokens(oidc, found.token(oidc).map_err(Failed::Provider), &form)
        .await
        .map_err(|f| match f {
            Failed::Refused(why) => refused(oidc, Some(why)),
            Failed::Provider(why) => provider_failed(oidc, why),
        })?;
    let id = tokens
        .id_token
        .clone()
        .ok_or_else(|| failed("the token endpoint gave no ID token"))?;
    let claims = providers.verify(oidc, &id).await?;
    if claims.get("nonce").and_then(Value::as_str) != Some(flow.nonce.as_str()) {
        return Err(failed("the ID token's nonce is not this login's"));
    }
    let session = session_of(oidc, tokens, id, None).map_err(|why| provider_failed(oidc, why))?;
    tracing::info!(policy = oidc.policy, sub = ?claims.get("sub"), "oidc login");
    let secure = secure(oidc, scheme);
    let mut cookies = keys
        .session_cookies(oidc, &session, secure)
        .ok_or_else(|| {
            provider_failed(
                oidc,
                "the tokens are too large for the session's cookies".into(),
            )
        })?;
    let gone = Attributes {
        max_age: 0,
        secure,
        same_site: "Lax",
        domain: oidc.cookie_domain.as_deref(),
    };
    cookies.extend(gone.cookie(&name, ""));
    let answer = redirect(&flow.url, cookies.into_iter(), "oidc_callback");
    Ok(Login::Answer(Box::new(answer), "oidc_callback"))
}

/// Ends the session here, then at the provider if it says where.
async fn logout<B>(
    (oidc, providers): (&Oidc, &Providers),
    keys: &Keys,
    req: &Request<B>,
) -> Response<ResponseBody> {
    let session = keys.session(req.headers());
    let end = match &oidc.end_session_endpoint {
        Some(end) => Some(end.clone()),
        None => providers
            .discovered(oidc, false)
            .await
            .ok()
            .and_then(|d| d.end_session.clone()),
    };
    let location = match end {
        None => "/".to_string(),
        Some(end) => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("client_id", &oidc.client_id);
            if let Some(s) = &session {
                query.append_pair("id_token_hint", &s.id);
            }
            let joint = if end.contains('?') { '&' } else { '?' };
            format!("{end}{joint}{}", query.finish())
        }
    };
    let gone = Attributes {
        max_age: 0,
        secure: false,
        same_site: oidc.same_site,
        domain: oidc.cookie_domain.as_deref(),
    };
    let cookies = keys
        .present(req.headers())
        .into_iter()
        .flat_map(|name| gone.cookie(&name, ""));
    redirect(&location, cookies, "oidc_logout")
}

/// New tokens for an expired session; `None`: the user logs in again.
async fn refresh((oidc, providers): (&Oidc, &Providers), old: Session) -> Option<Session> {
    let token = old.refresh.clone()?;
    let found = providers.discovered(oidc, false).await.ok()?;
    let form = [("grant_type", "refresh_token"), ("refresh_token", &*token)];
    let tokens = match providers
        .tokens(oidc, found.token(oidc).map_err(Failed::Provider), &form)
        .await
    {
        Ok(t) => t,
        Err(Failed::Refused(why) | Failed::Provider(why)) => {
            tracing::info!(
                policy = oidc.policy,
                why,
                "oidc refresh failed: the user logs in again"
            );
            return None;
        }
    };
    // A refreshed ID token is checked as a new one, but has no nonce
    // (OpenID Connect Core §12.2).
    // Its subject must be the session's (§12.2).
    let id = match &tokens.id_token {
        Some(id) => {
            let claims = providers.verify(oidc, id).await.ok()?;
            let sub = claims.get("sub").and_then(Value::as_str);
            if sub.is_none() || sub != subject(&old.id).as_deref() {
                tracing::warn!(
                    policy = oidc.policy,
                    "oidc refresh: the ID token names another subject"
                );
                return None;
            }
            id.clone()
        }
        None => old.id.clone(),
    };
    session_of(oidc, tokens, id, Some(&old)).ok()
}

fn session_of(
    oidc: &Oidc,
    tokens: Tokens,
    id: String,
    old: Option<&Session>,
) -> Result<Session, String> {
    if !tokens.token_type.eq_ignore_ascii_case("bearer") {
        return Err(format!("token type {:?}, not Bearer", tokens.token_type));
    }
    let now = crate::ctx::unix_now();
    let lifetime = match (tokens.expires_in, oidc.token_ttl.as_secs()) {
        (Some(secs), _) => secs,
        (None, 0) => {
            return Err("the token endpoint gave no expires_in, and defaultTokenTTL is 0".into())
        }
        (None, ttl) => ttl,
    };
    // A year at most, whatever the provider says.
    let expires = now.saturating_add(lifetime.min(365 * 24 * 3600));
    let refresh = tokens
        .refresh_token
        .or_else(|| old.and_then(|o| o.refresh.clone()));
    let ends = match (&refresh, old) {
        (None, _) => expires,
        (Some(_), Some(o)) if o.refresh.is_some() => o.ends.max(expires),
        (Some(_), _) => now + oidc.refresh_ttl.as_secs(),
    };
    Ok(Session {
        id,
        access: tokens.access_token,
        refresh,
        expires,
        ends,
    })
}

impl Providers {
    fn client(&self) -> Result<&Client, String> {
        self.client
            .get_or_init(|| crate::fetch::client("oidc"))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `oidc`'s issuer as last discovered; read again when old, or
    /// (`stale`: a key was missing) when not read in the last [`RETRY`].
    async fn discovered(&self, oidc: &Oidc, stale: bool) -> Result<Arc<Discovered>, String> {
        let last = self.lock().get(&oidc.issuer).cloned();
        if let Some(f) = &last {
            let age = f.at.elapsed();
            let fresh = match &f.result {
                Ok(_) => age < REDISCOVER && !(stale && age >= RETRY),
                Err(_) => age < RETRY,
            };
            if fresh {
                return f.result.clone();
            }
        }
        let result = self.discover(oidc).await.map(Arc::new);
        let kept = match (&result, last.map(|f| f.result)) {
            (Err(why), Some(Ok(good))) => {
                tracing::warn!(
                    issuer = oidc.issuer,
                    why,
                    "oidc discovery failed: the last one is kept"
                );
                // Tried again after RETRY.
                let at = Instant::now()
                    .checked_sub(REDISCOVER - RETRY)
                    .unwrap_or_else(Instant::now);
                Found {
                    at,
                    result: Ok(good),
                }
            }
            _ => Found {
                at: Instant::now(),
                result: result.clone(),
            },
        };
        let answer = kept.result.clone();
        self.lock().insert(oidc.issuer.clone(), kept);
        answer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Found>> {
        self.found
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn discover(&self, oidc: &Oidc) -> Result<Discovered, String> {
        let client = self.client()?;
        let base = oidc.issuer.trim_end_matches('/');
        let uri = format!("{base}/.well-known/openid-configuration");
        let body = crate::fetch::get(client, &uri)
            .await
            .map_err(|e| format!("{uri}: {e}"))?;
        let doc: Document = serde_json::from_slice(&body)
            .map_err(|e| format!("{uri}: not a discovery document: {e}"))?;
        // Identical (OpenID Connect Discovery §4.3): tokens' `iss` is
        // compared with it as it is.
        if doc.issuer != oidc.issuer {
            return Err(format!("{uri} names issuer {:?}", doc.issuer));
        }
        let body = crate::fetch::get(client, &doc.jwks_uri)
            .await
            .map_err(|e| format!("{}: {e}", doc.jwks_uri))?;
        let text =
            std::str::from_utf8(&body).map_err(|_| format!("{}: not UTF-8", doc.jwks_uri))?;
        let (keys, warnings) = KeySet::parse(text).map_err(|e| format!("{}: {e}", doc.jwks_uri))?;
        for w in warnings {
            tracing::warn!(uri = doc.jwks_uri, "key set: {w}");
        }
        Ok(Discovered {
            authorization: doc.authorization_endpoint,
            token: doc.token_endpoint,
            end_session: doc.end_session_endpoint,
            keys,
        })
    }

    /// The ID token's claims, if the provider signed it for this client;
    /// a key the set lacks reads the set again (once per [`RETRY`]).
    async fn verify(&self, oidc: &Oidc, id: &str) -> Result<Map<String, Value>, ProxyError> {
        let audiences = [oidc.client_id.clone()];
        let mut stale = false;
        loop {
            let found = self
                .discovered(oidc, stale)
                .await
                .map_err(|why| provider_failed(oidc, why))?;
            match found.keys.verify(id, Some(&oidc.issuer), &audiences) {
                // Issued to this client when it names one (OpenID Connect
                // Core §3.1.3.7: `azp`, which a token for several
                // audiences carries).
                Ok(claims) => {
                    let azp = claims.get("azp");
                    if azp.is_some_and(|a| a.as_str() != Some(oidc.client_id.as_str())) {
                        return Err(refused(
                            oidc,
                            Some("the ID token: azp is another client".into()),
                        ));
                    }
                    return Ok(claims);
                }
                Err(Refused::NoKey(_)) if !stale => stale = true,
                Err(Refused::NoKey(why) | Refused::Bad(why)) => {
                    return Err(refused(oidc, Some(format!("the ID token: {why}"))))
                }
            }
        }
    }

    /// Asks the token endpoint, the client authenticated with HTTP Basic
    /// (`client_secret_basic`, RFC 6749 §2.3.1).
    async fn tokens(
        &self,
        oidc: &Oidc,
        endpoint: Result<&str, Failed>,
        form: &[(&str, &str)],
    ) -> Result<Tokens, Failed> {
        let endpoint = endpoint?;
        let client = self.client().map_err(Failed::Provider)?;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = format!(
            "{}:{}",
            encode(&oidc.client_id),
            encode(&oidc.client_secret)
        );
        let req = Request::post(endpoint)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .header(AUTHORIZATION, format!("Basic {}", STANDARD.encode(basic)))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Failed::Provider(format!("{endpoint}: {e}")))?;
        let (status, body) = crate::fetch::call(client, req)
            .await
            .map_err(|e| Failed::Provider(format!("{endpoint}: {e}")))?;
        if status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED {
            let said: Map<String, Value> = serde_json::from_slice(&body).unwrap_or_default();
            let text = |k| {
                said.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let why = format!(
                "the token endpoint refused: {} {}",
                text("error"),
                text("error_description")
            );
            return Err(Failed::Refused(why.trim_end().to_string()));
        }
        if !status.is_success() {
            return Err(Failed::Provider(format!("{endpoint} answered {status}")));
        }
        serde_json::from_slice(&body).map_err(|e| Failed::Provider(format!("{endpoint}: {e}")))
    }
}

/// The policy's cookie names and sealing key.
struct Keys {
    key: LessSafeKey,
    rng: SystemRandom,
    /// The session cookie's name; its chunks add `-1`, `-2`, ….
    session: String,
}

impl Keys {
    fn of(oidc: &Oidc) -> Result<Keys, String> {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"strait oidc session");
        let prk = salt.extract(oidc.client_secret.as_bytes());
        let info = [oidc.policy.as_bytes(), b"\0", oidc.client_id.as_bytes()];
        let okm = prk
            .expand(&info, &aead::AES_256_GCM)
            .map_err(|_| "cannot derive the session key".to_string())?;
        let digest = ring::digest::digest(&ring::digest::SHA256, oidc.policy.as_bytes());
        let tag: String = digest.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Keys {
            key: LessSafeKey::new(UnboundKey::from(okm)),
            rng: SystemRandom::new(),
            session: format!("strait-oidc-{tag}"),
        })
    }

    /// `n` random bytes, base64url.
    fn random(&self, n: usize) -> Option<String> {
        let mut bytes = vec![0u8; n];
        self.rng.fill(&mut bytes).ok()?;
        Some(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A login's own cookie: each login under way has one, so two tabs
    /// logging in at once both succeed.
    fn flow_name(&self, state: &str) -> String {
        format!("{}-flow-{}", self.session, &state[..state.len().min(8)])
    }

    /// `plain` encrypted for cookie `name` (the name is authenticated
    /// too: one cookie's value cannot be replayed as another's).
    fn seal(&self, name: &str, plain: &[u8]) -> Option<String> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut sealed = plain.to_vec();
        let n = Nonce::assume_unique_for_key(nonce);
        self.key
            .seal_in_place_append_tag(n, Aad::from(name.as_bytes()), &mut sealed)
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    fn open(&self, name: &str, value: &str) -> Option<Vec<u8>> {
        let mut bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        if bytes.len() < aead::NONCE_LEN {
            return None;
        }
        let mut sealed = bytes.split_off(aead::NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).ok()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut sealed)
            .ok()?;
        Some(plain.to_vec())
    }

    /// Cookie `name`'s value, opened.
    fn cookie(&self, headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
        self.open(name, strait_route::cookie(headers, name)?)
    }

    /// The session, if the request has one this policy sealed. Its
    /// cookie's value is `COUNT.PART` and the other parts follow in
    /// cookies `-1`, `-2`, ….
    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let first = strait_route::cookie(headers, &self.session)?;
        let (count, part) = first.split_once('.')?;
        let count: usize = count.parse().ok().filter(|c| (1..=MAX_PARTS).contains(c))?;
        let mut value = part.to_string();
        for i in 1..count {
            let name = format!("{}-{i}", self.session);
            value.push_str(strait_route::cookie(headers, &name)?);
        }
        serde_json::from_slice(&self.open(&self.session, &value)?).ok()
    }

    /// The `Set-Cookie` values that hold `session`; `None` when it needs
    /// more cookies than are read back ([`MAX_PARTS`]).
    fn session_cookies(
        &self,
        oidc: &Oidc,
        session: &Session,
        secure: bool,
    ) -> Option<Vec<HeaderValue>> {
        let plain = serde_json::to_vec(session).ok()?;
        let value = self.seal(&self.session, &plain)?;
        let parts: Vec<&str> = value
            .as_bytes()
            .chunks(CHUNK)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        if parts.len() > MAX_PARTS {
            return None;
        }
        let attributes = Attributes {
            max_age: session.ends.saturating_sub(crate::ctx::unix_now()),
            secure,
            same_site: oidc.same_site,
            domain: oidc.cookie_domain.as_deref(),
        };
        let mut out = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let (name, value) = match i {
                0 => (self.session.clone(), format!("{}.{part}", parts.len())),
                _ => (format!("{}-{i}", self.session), part.to_string()),
            };
            out.extend(attributes.cookie(&name, &value));
        }
        Some(out)
    }

    /// The names of this policy's cookies the request carries.
    fn present(&self, headers: &HeaderMap) -> Vec<String> {
        let mut names: Vec<String> = strait_route::cookies(headers)
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(&self.session))
            .map(str::to_string)
            .collect();
        names.dedup();
        names
    }

    /// Without the session's cookies, and without a client's value of
    /// the header the policy puts the ID token in.
    fn strip(&self, oidc: &Oidc, headers: &mut HeaderMap) {
        for name in self.present(headers) {
            crate::headers::remove_cookie(headers, &name);
        }
        if let Some(h) = oidc
            .forward_id_token
            .as_ref()
            .filter(|h| *h != AUTHORIZATION)
        {
            headers.remove(h);
        }
    }

    /// The request as its backend sees it: without the session's
    /// cookies, with the tokens the policy forwards.
    fn admit<B>(&self, oidc: &Oidc, req: &mut Request<B>, session: &Session) {
        let headers = req.headers_mut();
        self.strip(oidc, headers);
        let bearer = |token: &str| HeaderValue::from_str(&format!("Bearer {token}")).ok();
        if oidc.forward_access_token {
            if let Some(v) = bearer(&session.access) {
                headers.insert(AUTHORIZATION, v);
            }
        }
        if let Some(header) = &oidc.forward_id_token {
            let value = match header == AUTHORIZATION {
                true => bearer(&session.id),
                false => HeaderValue::from_str(&session.id).ok(),
            };
            if let Some(v) = value {
                headers.insert(header, v);
            }
        }
    }
}

struct Attributes<'a> {
    max_age: u64,
    secure: bool,
    same_site: &'a str,
    domain: Option<&'a str>,
}

impl Attributes<'_> {
    fn cookie(&self, name: &str, value: &str) -> Option<HeaderValue> {
        let mut text = format!(
            "{name}={value}; Path=/; HttpOnly; SameSite={}; Max-Age={}",
            self.same_site, self.max_age
        );
        // A `None` cookie must be `Secure`, or browsers drop it.
        if self.secure || self.same_site == "None" {
            text.push_str("; Secure");
        }
        if let Some(domain) = self.domain {
            text.push_str("; Domain=");
            text.push_str(domain);
        }
        HeaderValue::from_str(&text).ok()
    }
}

fn redirect(
    location: &str,
    cookies: impl Iterator<Item = HeaderValue>,
    reason: &'static str,
) -> Response<ResponseBody> {
    let mut response = Response::new(Either::Right(Full::default()));
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(v) => headers.insert(LOCATION, v),
        Err(_) => headers.insert(LOCATION, HeaderValue::from_static("/")),
    };
    for cookie in cookies {
        headers.append(SET_COOKIE, cookie);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REASON_HEADER, HeaderValue::from_static(reason));
    response
}

/// The request's `host[:port]` as the client wrote it.
fn authority<B>(req: &Request<B>) -> Result<String, ProxyError> {
    let raw = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            let host = req.headers().get(http::header::HOST)?;
            host.to_str().ok().map(str::to_string)
        })
        .ok_or(ProxyError::NoHost)?;
    raw.parse::<http::uri::Authority>()
        .map(|_| raw)
        .map_err(|_| ProxyError::BadHost)
}

fn secure(oidc: &Oidc, scheme: &str) -> bool {
    match &oidc.redirect_url {
        Some(url) => url.starts_with("https://"),
        None => scheme == "https",
    }
}

/// Where the user goes back to after the login: a path on this host.
/// `//host/…` (and `/\\host`, which browsers read alike) would be another
/// site's: an open redirect.
fn local(path: &str) -> String {
    let foreign = path.starts_with("//")
        || path.starts_with("/\\")
        || !path.starts_with('/')
        || path.len() > MAX_URL;
    match foreign {
        true => "/".to_string(),
        false => path.to_string(),
    }
}

/// A state strait made: base64url, long enough.
fn state_shaped(state: &str) -> bool {
    state.len() >= 16
        && state.len() <= 64
        && state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `sub` of an ID token this proxy verified and sealed before.
fn subject(id: &str) -> Option<String> {
    let payload = URL_SAFE_NO_PAD.decode(id.split('.').nth(1)?).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&payload).ok()?;
    claims.get("sub")?.as_str().map(str::to_string)
}
