//! Phase 2, policy: what may stop a request before it goes anywhere —
//! a SecurityPolicy's checks (at a gateway, and at a sidecar's inbound
//! listener for its workload), AuthorizationPolicy at a
//! sidecar's inbound listener (where it cannot be bypassed), then
//! rate limits, then the authorization services (a limit spares them
//! the floods), fault injection and direct response.

use super::select::Target;
use crate::answer::ProxyError;
use crate::answer::{ResponseBody, DIRECT_RESPONSE, REASON_HEADER};
use crate::ctx::{RequestCtx, Role};
use crate::ext_authz::Changes;
use crate::metrics::Metrics;
use crate::sidecar::Sidecar;
use crate::token_cache::TokenCache;
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use std::sync::Arc;
use strait_route::authn::{Authn, Failure, TokenSource};
use strait_route::callers::Caller;
use strait_route::ext_auth::ExtAuth;
use strait_route::{Direct, Matched, Rule, Snapshot};

/// What a SecurityPolicy changes in a request it let through: the claim
/// headers (only a verified token sets them), and the token taken out
/// unless the provider forwards it.
pub struct Authenticated {
    auth: Arc<Authn>,
    set: Vec<(HeaderName, HeaderValue)>,
    /// The verified token's claims, for AuthorizationPolicy.
    claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    /// The client whose API key was accepted, for rate limits.
    client: Option<Box<str>>,
}

/// The rule's (or its route's) SecurityPolicy, else its listener's — at a
/// sidecar's inbound listener, its workload's.
fn attached<'a>(
    (matched, workload): (&'a Matched<'_>, Option<&'a Arc<Authn>>),
    ctx: &RequestCtx,
) -> Option<&'a Arc<Authn>> {
    match ctx.conn.role {
        Role::Inbound => workload,
        _ => matched.rule.authn().or(matched.listener.authn.as_ref()),
    }
}

/// The attached SecurityPolicy, when it asks for a browser's login at an
/// OpenID provider (a broken policy answers in [`authenticate`]).
pub fn oidc<'a>(
    at: (&'a Matched<'_>, Option<&'a Arc<Authn>>),
    ctx: &RequestCtx,
) -> Option<&'a Arc<Authn>> {
    attached(at, ctx).filter(|a| a.oidc.is_some() && a.broken.is_none())
}

/// The login step of `auth` (see [`oidc`]). `Err` with an answer: strait
/// answers (a redirect). `Ok`: cookies for the answer.
pub async fn login<B>(
    auth: &Arc<Authn>,
    req: &mut Request<B>,
    providers: &crate::oidc::Providers,
    ctx: &mut RequestCtx,
) -> Result<Result<Vec<HeaderValue>, Box<Response<ResponseBody>>>, ProxyError> {
    let Some(oidc) = &auth.oidc else {
        return Ok(Ok(Vec::new()));
    };
    let carries = auth.carries_token(req.headers(), req.uri().query());
    if req.uri().path() == oidc.callback_path {
        // The code stays out of the access log.
        if let Some(line) = ctx.seen.line.as_deref_mut() {
            if let Some(uri) = crate::headers::without_param(&line.uri, "code") {
                line.uri = uri;
            }
        }
    }
    let step = crate::oidc::login((oidc, providers), req, (ctx.conn.scheme, carries));
    match step.await? {
        crate::oidc::Login::Pass(cookies) => Ok(Ok(cookies)),
        crate::oidc::Login::Answer(answer, reason) => {
            ctx.reason = Some(reason);
            Ok(Err(answer))
        }
    }
}

/// The SecurityPolicy of the route the request chose again by its claims
/// (`recomputeRoute`): the one that checked it, or else its own checks
/// (once: a request is not routed round in circles).
pub fn recheck<B>(
    authenticated: Option<Authenticated>,
    at: (&Matched<'_>, Option<&Arc<Authn>>),
    req: &Request<B>,
    cache: (&TokenCache, &crate::jwks::Jwks, usize),
    ctx: &mut RequestCtx,
) -> Result<Option<Authenticated>, ProxyError> {
    let now = attached(at, ctx);
    match (&authenticated, now) {
        (Some(a), _) if a.checked_by(now) => Ok(authenticated),
        // A login needs its own step, before the credentials: a route the
        // claims chose cannot start one.
        (_, Some(auth)) if auth.oidc.is_some() => Err(ProxyError::PolicyInvalid {
            policy: auth.policy.clone(),
            why: format!(
                "SecurityPolicy {}: a route chosen again by a token's claims cannot ask for a login (oidc)",
                auth.policy
            ),
        }),
        _ => authenticate(at, req, cache, ctx),
    }
}

/// The attached SecurityPolicy's credentials, then who among the
/// callers may call.
pub fn authenticate<B>(
    at: (&Matched<'_>, Option<&Arc<Authn>>),
    req: &Request<B>,
    (tokens, jwks, hops): (&TokenCache, &crate::jwks::Jwks, usize),
    ctx: &mut RequestCtx,
) -> Result<Option<Authenticated>, ProxyError> {
    let Some(auth) = attached(at, ctx) else {
        return Ok(None);
    };
    // A token in the query stays out of the access log, accepted or not.
    if let Some(line) = ctx.seen.line.as_deref_mut() {
        for name in auth.params() {
            if let Some(uri) = crate::headers::without_param(&line.uri, name) {
                line.uri = uri;
            }
        }
    }
    let policy = auth.policy.clone();
    let memo = tokens.memo(auth, jwks);
    let identity = match auth.check(req.headers(), req.uri().query(), &memo) {
        Ok(identity) => identity,
        Err((_, Failure::Broken(why))) => return Err(ProxyError::PolicyInvalid { policy, why }),
        Err((method, failure)) => {
            let why = match failure {
                Failure::Invalid(why) => Some(why),
                _ => None,
            };
            return Err(ProxyError::Unauthenticated {
                policy,
                method,
                why,
            });
        }
    };
    if let Some(callers) = &auth.callers {
        let address = crate::headers::client_address(req.headers(), ctx.conn.client.ip(), hops);
        let caller = Caller {
            address,
            jwt: identity
                .jwt
                .as_ref()
                .map(|v| (v.provider.name.as_str(), &*v.claims)),
        };
        let decision = callers.decide(&caller);
        if !decision.allowed {
            return Err(ProxyError::Denied {
                policy: format!("SecurityPolicy {policy}"),
                explain: format!("SecurityPolicy {policy}: {}", decision.why),
            });
        }
    }
    let mut out = Authenticated {
        auth: auth.clone(),
        set: Vec::new(),
        claims: identity.jwt.as_ref().map(|v| v.claims.clone()),
        client: identity.client.map(Into::into),
    };
    let said = |header: Option<&HeaderName>, text: Option<&str>| {
        let value = HeaderValue::from_str(text?).ok()?;
        Some((header?.clone(), value))
    };
    let keys = auth
        .api_keys
        .as_ref()
        .and_then(|k| k.client_header.as_ref());
    out.set.extend(said(keys, identity.client));
    let basic = auth.basic.as_ref().and_then(|b| b.user_header.as_ref());
    out.set.extend(said(basic, identity.user.as_deref()));
    if let Some(v) = identity.jwt {
        for (claim, header) in &v.provider.claims {
            let text = match v.claims.get(claim) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(n @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                    n.to_string()
                }
                _ => continue,
            };
            if let Ok(value) = HeaderValue::from_str(&text) {
                out.set.push((header.clone(), value));
            }
        }
    }
    Ok(Some(out))
}

/// The authorization services to ask about a request: its
/// SecurityPolicy's `extAuth`, then its rule's `ExternalAuth` filter;
/// with the request's host (from `target`). `None`: none to ask.
pub fn services(
    authenticated: Option<&Authenticated>,
    rule: &Rule,
    target: &Target<'_>,
) -> Result<Option<Asking>, ProxyError> {
    let policy = authenticated.and_then(|a| a.auth.ext.clone());
    let filter = match filter_of(rule) {
        None => false,
        Some(Ok(_)) => true,
        Some(Err(why)) => {
            return Err(ProxyError::PolicyInvalid {
                policy: rule.route.clone(),
                why: why.clone(),
            })
        }
    };
    if policy.is_none() && !filter {
        return Ok(None);
    }
    Ok(Some(Asking {
        policy,
        filter,
        host: target.host.to_string(),
        body: None,
    }))
}

/// The rule's `ExternalAuth` filter, if its extension filters compiled
/// (if not, they answer 500 before anything is asked).
fn filter_of(rule: &Rule) -> Option<&Result<ExtAuth, String>> {
    match rule.extensions.as_deref() {
        Some(Ok(e)) => e.ext_auth.as_ref(),
        _ => None,
    }
}

/// How authorization services are asked: the pools their connections
/// are in, and the answers remembered.
type Askers<'a> = (
    &'a crate::upstream::Upstreams,
    &'a crate::ext_authz::Decisions,
);

/// The authorization services a request is to be asked about: its
/// policy's, and whether its rule's filter's too.
pub struct Asking {
    policy: Option<Arc<ExtAuth>>,
    filter: bool,
    host: String,
    /// The request's body, when a service is to be shown it.
    body: Option<bytes::Bytes>,
}

/// The request's body read now, when a service it is to be asked about
/// wants it (`bodyToExtAuth`, `forwardBody`): kept in the request for
/// its backend.
pub async fn read_body(
    asking: &mut Asking,
    rule: &Rule,
    req: &mut Request<hyper::body::Incoming>,
    (limits, grpc): (&crate::limits::HttpLimits, bool),
) -> Result<(), ProxyError> {
    let filter = match filter_of(rule) {
        Some(Ok(ext)) if asking.filter => ext.body,
        _ => None,
    };
    let policy = asking.policy.as_ref().and_then(|p| p.body);
    let Some(max) = policy.into_iter().chain(filter).max() else {
        return Ok(());
    };
    let head = super::filters::whole_body(req, max.into(), (limits, grpc)).await?;
    asking.body = Some(head.data.clone());
    Ok(())
}

/// What stands between a routed request and its filters: its
/// authorization services asked (shown the credentials), then the
/// credentials cleared and the checks' and services' headers set, then
/// the rule's fault injection and direct response. `Some`: the answer.
pub async fn admit<B>(
    (authenticated, asking, askers): (Option<Authenticated>, Option<Asking>, Askers<'_>),
    req: &mut Request<B>,
    ctx: &mut RequestCtx,
    rule: &Rule,
) -> Result<Option<Response<ResponseBody>>, ProxyError> {
    let mut changes = None;
    if let Some(asking) = asking {
        // Boxed: the calls' state would otherwise make every request's
        // future larger.
        let asked = ask((asking, rule), authenticated.as_ref(), (askers, req), ctx);
        changes = Some(Box::pin(asked).await?);
    }
    if let Some(a) = authenticated {
        a.apply(req);
    }
    if let Some(changes) = changes {
        changes.apply(req, &mut ctx.answer_headers);
    }
    extensions(rule).await
}

/// Each service asked about `req` for `host`, in turn, until one refuses:
/// shown the request's headers with the checks' headers set, credentials
/// still in. What the allowing ones change, together.
async fn ask<B>(
    (asking, rule): (Asking, &Rule),
    authenticated: Option<&Authenticated>,
    (askers, req): (Askers<'_>, &Request<B>),
    ctx: &RequestCtx,
) -> Result<Changes, ProxyError> {
    // As the backend will see them, but with the credentials: what went
    // with the hop goes, and a client's claim of a verified certificate.
    let mut headers = req.headers().clone();
    crate::headers::strip_hop_by_hop(&mut headers);
    if let Some(cert) = &ctx.conn.client_cert {
        crate::headers::gateway_client_cert(&mut headers, cert);
    }
    if let Some(a) = authenticated {
        a.unforged(&mut headers, true);
        for (name, value) in &a.set {
            headers.append(name, value.clone());
        }
    }
    let mut all = Changes::default();
    let filter = match filter_of(rule) {
        Some(Ok(ext)) if asking.filter => Some(ext),
        _ => None,
    };
    for ext in asking.policy.as_deref().into_iter().chain(filter) {
        let shown = crate::ext_authz::Shown {
            method: req.method(),
            path: req.uri().path_and_query().map_or("/", |p| p.as_str()),
            host: &asking.host,
            headers: headers.clone(),
            conn: &ctx.conn,
            http2: req.version() == http::Version::HTTP_2,
            body: asking.body.as_ref().filter(|_| ext.body.is_some()),
        };
        all.extend(crate::ext_authz::check(ext, askers, shown).await?);
    }
    Ok(all)
}

impl Authenticated {
    /// A provider of the policy routes on its claims: the request
    /// chooses its route again once they are set.
    /// Whatever the token holds (or when there is none): the route the
    /// client's own claim headers chose must not stand.
    pub fn reroutes(&self) -> bool {
        self.auth.providers.iter().any(|p| p.recompute)
    }

    /// The checks' headers set now, for the route to be chosen again by
    /// them; a client's look-alikes go first.
    pub fn claims_to<B>(&self, req: &mut Request<B>) {
        let headers = req.headers_mut();
        self.unforged(headers, true);
        for (name, value) in &self.set {
            headers.append(name, value.clone());
        }
    }

    /// Whether `auth` is the policy that checked the request.
    pub fn checked_by(&self, auth: Option<&Arc<Authn>>) -> bool {
        auth.is_some_and(|a| Arc::ptr_eq(a, &self.auth))
    }

    /// Without the headers only the checks may set, or their look-alikes:
    /// `x_user` too, as CGI-style backends read it as `x-user`. The same
    /// for a credential's header that is cleared: its look-alike would
    /// reach such a backend unchecked.
    /// `credentials`: the cleared credentials' own headers stay (only
    /// their look-alikes go), as an authorization service is shown them.
    fn unforged(&self, headers: &mut http::HeaderMap, credentials: bool) {
        let cleared: Vec<&HeaderName> = self
            .auth
            .cleared()
            .filter_map(|place| match place {
                TokenSource::Header { name, .. } => Some(name),
                _ => None,
            })
            .collect();
        let claims: Vec<&HeaderName> = self.auth.claim_headers().collect();
        let forged: Vec<HeaderName> = headers
            .keys()
            .filter(|k| {
                let k = k.as_str();
                claims.iter().any(|c| same_name(k, c.as_str()))
                    || cleared
                        .iter()
                        .any(|c| same_name(k, c.as_str()) && !(credentials && k == c.as_str()))
            })
            .cloned()
            .collect();
        for name in forged {
            headers.remove(name);
        }
    }

    pub fn apply<B>(self, req: &mut Request<B>) {
        self.unforged(req.headers_mut(), false);
        for place in self.auth.cleared() {
            match place {
                TokenSource::Header { name, .. } => {
                    req.headers_mut().remove(name);
                }
                TokenSource::Cookie(name) => crate::headers::remove_cookie(req.headers_mut(), name),
                TokenSource::Param(name) => {
                    if let Some(uri) = crate::headers::without_param(req.uri(), name) {
                        *req.uri_mut() = uri;
                    }
                }
            }
        }
        let headers = req.headers_mut();
        for (name, value) in self.set {
            headers.append(name, value);
        }
    }
}

/// Inbound calls to a workload are checked against its policies, with
/// the token its SecurityPolicy verified.
pub fn authorize<B>(
    (snapshot, sidecar, metrics): (&Snapshot, Option<&Sidecar>, &Metrics),
    ctx: &RequestCtx,
    (req, target): (&Request<B>, &Target<'_>),
    authenticated: Option<&Authenticated>,
) -> Result<(), ProxyError> {
    let (Role::Inbound, Some(sidecar)) = (ctx.conn.role, sidecar) else {
        return Ok(());
    };
    let call = (req.method(), req.uri().path(), req.headers(), &*target.host);
    let token = authenticated.and_then(|a| a.claims.as_deref());
    crate::authz::check_request(snapshot, sidecar, metrics, &ctx.conn, call, token)
}

/// The RateLimitPolicy of the rule (or its route), else its listener's
/// — at a sidecar's inbound listener, its workload's: the request takes
/// one from each local bucket that counts it, or is refused (`429`).
/// `Some` when global rules remain, for [`limit_globally`]; otherwise
/// the `RateLimit` headers are already set for the answer.
pub fn limit<B>(
    (live, metrics, hops): (&crate::live::Live, &Metrics, usize),
    ctx: &mut RequestCtx,
    (matched, req): (&Matched<'_>, &Request<B>),
    authenticated: Option<&Authenticated>,
) -> Result<Option<Limiting>, ProxyError> {
    let policy = match ctx.conn.role {
        Role::Inbound => live.ratelimit.as_ref(),
        _ => matched
            .rule
            .ratelimit()
            .or(matched.listener.ratelimit.as_ref()),
    };
    let Some(policy) = policy else {
        return Ok(None);
    };
    let peer = ctx.conn.client.ip();
    let client = match policy.uses_client {
        true => crate::headers::client_address(req.headers(), peer, hops).unwrap_or(peer),
        false => peer,
    };
    let view = strait_route::ratelimit::Request {
        headers: req.headers(),
        method: req.method(),
        client,
        claims: authenticated.and_then(|a| a.claims.as_deref()),
        api_key_client: authenticated.and_then(|a| a.client.as_deref()),
        identity: ctx.conn.peer.as_deref(),
        route: &matched.rule.route,
    };
    let mut tally = crate::ratelimit::Tally::default();
    let keys = crate::ratelimit::local(policy, &live.buckets, &view, (metrics, &mut tally));
    let limiting = Limiting {
        policy: policy.clone(),
        keys,
        tally,
    };
    match limiting.keys.is_empty() {
        true => limiting.done(ctx).map(|()| None),
        false => Ok(Some(limiting)),
    }
}

/// A request's count under a policy with global rules left to ask.
pub struct Limiting {
    policy: Arc<strait_route::ratelimit::RateLimit>,
    keys: crate::ratelimit::GlobalKeys,
    tally: crate::ratelimit::Tally,
}

impl Limiting {
    /// The headers for the answer; the refusal, if a rule refused.
    fn done(self, ctx: &mut RequestCtx) -> Result<(), ProxyError> {
        let headers = self.tally.headers().into_iter();
        ctx.answer_headers
            .extend(headers.map(|(name, value)| crate::ctx::AnswerHeader {
                name,
                value,
                replace: true,
            }));
        match self.tally.refused() {
            Some(rule) => Err(ProxyError::RateLimited {
                policy: self.policy.policy.clone(),
                rule: rule.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// The global rules [`limit`] left, counted in Redis.
pub async fn limit_globally(
    mut limiting: Limiting,
    (live, metrics): (&crate::live::Live, &Metrics),
    ctx: &mut RequestCtx,
) -> Result<(), ProxyError> {
    let policy = limiting.policy.clone();
    let store = policy.redis.as_ref().and_then(|r| live.stores.of(r));
    let keys = std::mem::take(&mut limiting.keys);
    let counted = (metrics, &mut limiting.tally);
    let at = (&*policy, &live.buckets);
    let failed = crate::ratelimit::global(at, store.map(|s| &**s), keys, counted).await;
    if let Err(why) = failed {
        return Err(ProxyError::RateLimitFailed {
            policy: policy.policy.clone(),
            why,
        });
    }
    limiting.done(ctx)
}

/// A rule's extension filters: a FaultInjection's delay, then perhaps its
/// abort; then a DirectResponse's answer, if the rule has one.
async fn extensions(rule: &Rule) -> Result<Option<Response<ResponseBody>>, ProxyError> {
    let Some(extensions) = rule.extensions.as_deref() else {
        return Ok(None);
    };
    let extensions = extensions
        .as_ref()
        .map_err(|_| ProxyError::ExtensionUnresolved)?;
    if let Some(fault) = &extensions.fault {
        let (delay, abort) = fault.decide(fastrand::u32(..1_000_000), fastrand::u32(..1_000_000));
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if let Some(status) = abort {
            return Err(ProxyError::FaultInjected(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            ));
        }
    }
    Ok(extensions.direct.as_ref().map(|d| direct(d, rule)))
}

/// A DirectResponse's answer, with the rule's response header filter: it
/// is the rule's response, as a backend's would be.
fn direct(d: &Direct, rule: &Rule) -> Response<ResponseBody> {
    let mut response = Response::new(Either::Right(Full::new(d.body.clone())));
    *response.status_mut() = d.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, d.content_type.clone());
    headers.insert(REASON_HEADER, HeaderValue::from_static(DIRECT_RESPONSE));
    if let Some(ops) = &rule.response_headers {
        ops.apply(headers);
    }
    response
}

/// Header names equal but for `_` in place of `-`.
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (x == b'_' && y == b'-'))
}
