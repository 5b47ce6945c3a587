//! A SecurityPolicy's `oidc` compiled: what the proxy needs to log a
//! browser's user in at an OpenID provider and keep the session. The
//! flow itself (discovery, cookies, the token endpoint) is the proxy's:
//! this crate holds no state and makes no calls.

use http::HeaderName;
use regex::Regex;
use std::time::Duration;
use strait_config::auth::{Oidc as Spec, OidcDenyRedirectHeader};
use strait_config::Document;

/// Where the provider sends the user back when the policy names no
/// `redirectURL`.
pub const CALLBACK_PATH: &str = "/oauth2/callback";

#[derive(Debug)]
pub struct Oidc {
    /// `namespace/name` of the policy: the session's cookie and key are
    /// its own.
    pub policy: String,
    pub issuer: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub end_session_endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    /// Space-separated, `openid` first.
    pub scopes: String,
    pub resources: Vec<String>,
    /// `None`: the request's scheme and host, then [`CALLBACK_PATH`].
    pub redirect_url: Option<String>,
    /// The redirect URL's path: where the callback is taken.
    pub callback_path: String,
    pub logout_path: String,
    pub deny_redirect: Vec<(HeaderName, Match)>,
    pub forward_access_token: bool,
    pub forward_id_token: Option<HeaderName>,
    pub token_ttl: Duration,
    pub refresh: bool,
    pub refresh_ttl: Duration,
    pub flow_ttl: Duration,
    pub cookie_domain: Option<String>,
    /// `Lax`, `Strict` or `None`.
    pub same_site: &'static str,
    pub pass_through: bool,
}

#[derive(Debug)]
pub enum Match {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Regex),
}

impl Match {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Match::Exact(v) => value == v,
            Match::Prefix(v) => value.starts_with(v.as_str()),
            Match::Suffix(v) => value.ends_with(v.as_str()),
            Match::Regex(r) => r.is_match(value),
        }
    }
}

type Finding = (String, String);

/// Headers an ID token must not be put in: they frame or route the
/// request, or carry the session's cookies.
const FRAMING: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "cookie",
];

/// `example.com`: lower-case labels of letters, digits and `-`.
fn domain_shaped(domain: &str) -> bool {
    !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The policy's `oidc` at `at`, its Secret from `docs` of `ns`.
pub(crate) fn compile(
    docs: &[Document],
    (ns, policy): (&str, &str),
    spec: &Spec,
    at: &str,
) -> Result<Oidc, Vec<Finding>> {
    let mut errors = Vec::new();
    let url = |text: &str, field: &str, errors: &mut Vec<Finding>| {
        let ok = text.starts_with("https://") || text.starts_with("http://");
        if !ok || text.parse::<http::Uri>().is_err() {
            errors.push((
                format!("{at}.{field}"),
                format!("{text:?} is not an http(s) URL"),
            ));
        }
    };
    let p = &spec.provider;
    url(&p.issuer, "provider.issuer", &mut errors);
    let endpoints = [
        (&p.authorization_endpoint, "provider.authorizationEndpoint"),
        (&p.token_endpoint, "provider.tokenEndpoint"),
        (&p.end_session_endpoint, "provider.endSessionEndpoint"),
    ];
    for (value, field) in endpoints {
        if let Some(v) = value {
            url(v, field, &mut errors);
        }
    }
    if spec.client_id.is_empty() {
        errors.push((format!("{at}.clientID"), "empty".into()));
    }
    let client_secret = client_secret(docs, ns, spec, at).map_err(|e| errors.push(e));
    let callback_path = match &spec.redirect_url {
        None => CALLBACK_PATH.to_string(),
        Some(u) => match u.parse::<http::Uri>() {
            Ok(uri) if uri.scheme().is_some() && uri.authority().is_some() => {
                uri.path().to_string()
            }
            _ => {
                let msg = format!("{u:?} is not an absolute URL");
                errors.push((format!("{at}.redirectURL"), msg));
                String::new()
            }
        },
    };
    let logout_path = spec.logout_path.clone().unwrap_or_else(|| "/logout".into());
    if !logout_path.starts_with('/') {
        errors.push((format!("{at}.logoutPath"), "a path starts with /".into()));
    }
    if spec.redirect_url.is_some() && (callback_path.is_empty() || callback_path == "/") {
        let msg = "the redirect URL needs a path of its own, e.g. /oauth2/callback".to_string();
        errors.push((format!("{at}.redirectURL"), msg));
    } else if callback_path == logout_path {
        let msg = "the logout path is the redirect URL's path".to_string();
        errors.push((format!("{at}.logoutPath"), msg));
    }
    if let Some(domain) = &spec.cookie_domain {
        if !domain_shaped(domain) {
            let msg = format!("{domain:?} is not a lower-case domain name");
            errors.push((format!("{at}.cookieDomain"), msg));
        }
    }
    let deny_redirect = spec
        .deny_redirect
        .iter()
        .flat_map(|d| d.headers.iter().enumerate())
        .filter_map(|(i, h)| {
            deny_header(h)
                .map_err(|e| errors.push((format!("{at}.denyRedirect.headers[{i}]"), e)))
                .ok()
        })
        .collect();
    let forward_id_token = spec.forward_id_token.as_ref().and_then(|f| {
        HeaderName::from_bytes(f.header.as_bytes())
            .ok()
            .filter(|h| !FRAMING.contains(&h.as_str()))
            .or_else(|| {
                let msg = format!("{:?} is not a header strait may set", f.header);
                errors.push((format!("{at}.forwardIDToken.header"), msg));
                None
            })
    });
    if spec.forward_access_token
        && forward_id_token
            .as_ref()
            .is_some_and(|h| h == http::header::AUTHORIZATION)
    {
        let msg = "forwardAccessToken already sets Authorization".to_string();
        errors.push((format!("{at}.forwardIDToken.header"), msg));
    }
    let mut duration = |value: &Option<String>, field: &str, default: Duration| match value {
        None => default,
        Some(text) => strait_config::duration::parse(text).unwrap_or_else(|e| {
            errors.push((format!("{at}.{field}"), e));
            default
        }),
    };
    let token_ttl = duration(&spec.default_token_ttl, "defaultTokenTTL", Duration::ZERO);
    let week = Duration::from_secs(7 * 24 * 3600);
    let refresh_ttl = duration(
        &spec.default_refresh_token_ttl,
        "defaultRefreshTokenTTL",
        week,
    );
    let flow_ttl = duration(
        &spec.csrf_token_ttl,
        "csrfTokenTTL",
        Duration::from_secs(600),
    );
    let same_site = match spec
        .cookie_config
        .as_ref()
        .and_then(|c| c.same_site.as_deref())
    {
        None | Some("Lax") => "Lax",
        Some("Strict") => "Strict",
        Some("None") => "None",
        Some(other) => {
            let msg = format!("{other:?}: Lax, Strict or None");
            errors.push((format!("{at}.cookieConfig.sameSite"), msg));
            "Lax"
        }
    };
    let mut scopes = vec!["openid"];
    scopes.extend(
        spec.scopes
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "openid"),
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Oidc {
        policy: format!("{ns}/{policy}"),
        issuer: p.issuer.clone(),
        authorization_endpoint: p.authorization_endpoint.clone(),
        token_endpoint: p.token_endpoint.clone(),
        end_session_endpoint: p.end_session_endpoint.clone(),
        client_id: spec.client_id.clone(),
        client_secret: client_secret.unwrap_or_default(),
        scopes: scopes.join(" "),
        resources: spec.resources.clone(),
        redirect_url: spec.redirect_url.clone(),
        callback_path,
        logout_path,
        deny_redirect,
        forward_access_token: spec.forward_access_token,
        forward_id_token,
        token_ttl,
        refresh: spec.refresh_token.unwrap_or(true),
        refresh_ttl,
        flow_ttl,
        cookie_domain: spec.cookie_domain.clone(),
        same_site,
        pass_through: spec.pass_through_auth_header,
    })
}

fn client_secret(docs: &[Document], ns: &str, spec: &Spec, at: &str) -> Result<String, Finding> {
    let path = format!("{at}.clientSecret");
    let r = &spec.client_secret;
    if r.namespace.as_deref().is_some_and(|n| n != ns) {
        return Err((path, "a Secret in the policy's own namespace".into()));
    }
    let local = strait_config::core::LocalObjectRef {
        group: r.group.clone().unwrap_or_default(),
        kind: r.kind.clone().unwrap_or_else(|| "Secret".into()),
        name: r.name.clone(),
    };
    let body = crate::keyauth::secret(docs, ns, &local).map_err(|e| (path.clone(), e))?;
    let value = body.value("client-secret").map_err(|e| {
        (
            path.clone(),
            format!("Secret {ns}/{} {e}", spec.client_secret.name),
        )
    })?;
    let text = String::from_utf8(value).map_err(|_| (path.clone(), "not UTF-8".to_string()))?;
    if text.is_empty() {
        return Err((path, "the client secret is empty".into()));
    }
    Ok(text)
}

fn deny_header(h: &OidcDenyRedirectHeader) -> Result<(HeaderName, Match), String> {
    let name = HeaderName::from_bytes(h.name.as_bytes())
        .map_err(|_| format!("{:?} is not a header name", h.name))?;
    let value = h.value.clone();
    let matched = match h.kind.as_deref() {
        None | Some("Exact") => Match::Exact(value),
        Some("Prefix") => Match::Prefix(value),
        Some("Suffix") => Match::Suffix(value),
        Some("RegularExpression") => {
            let anchored = format!("^(?:{value})$");
            Match::Regex(Regex::new(&anchored).map_err(|e| e.to_string())?)
        }
        Some(other) => {
            return Err(format!(
                "type {other:?}: Exact, Prefix, Suffix or RegularExpression"
            ))
        }
    };
    Ok((name, matched))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn problems(oidc: &str, secret: &str) -> Vec<String> {
        let yaml = format!(
            "apiVersion: policy.strait.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}}]\n  oidc:\n{oidc}\n{secret}"
        );
        let set = strait_config::parse_text(Path::new("t.yaml"), &yaml);
        assert!(!set.has_errors(), "{:?}", set.problems);
        let mut table = crate::backend::Resolver::new(&set.documents).authn;
        let found = table.take_problems();
        found
            .iter()
            .map(|p| format!("{} {}", p.path, p.message))
            .collect()
    }

    const SECRET: &str =
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: shop}\nstringData: {client-secret: x}\n";

    #[test]
    fn a_good_login_compiles_with_the_defaults() {
        let oidc = "    provider: {issuer: \"https://id.example.com/\"}\n    clientID: shop\n    clientSecret: {name: s}";
        assert_eq!(problems(oidc, SECRET), Vec::<String>::new());
        let set = strait_config::parse_text(Path::new("t.yaml"), &format!(
            "apiVersion: policy.strait.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}}]\n  oidc:\n{oidc}\n{SECRET}"
        ));
        let table = crate::backend::Resolver::new(&set.documents).authn;
        let auth = table
            .for_rule("HTTPRoute", "shop", "r", None)
            .expect("attached");
        let o = auth.oidc.as_ref().expect("oidc");
        assert_eq!(o.issuer, "https://id.example.com/");
        assert_eq!(o.scopes, "openid");
        assert_eq!(
            (o.callback_path.as_str(), o.logout_path.as_str()),
            ("/oauth2/callback", "/logout")
        );
        assert!(o.refresh);
        assert_eq!(o.same_site, "Lax");
        assert_eq!(o.client_secret, "x");
    }

    #[test]
    fn a_bad_login_is_refused_with_field_paths() {
        let oidc = "    provider: {issuer: \"id.example.com\", tokenEndpoint: \"ftp://x\"}\n    clientID: shop\n    clientSecret: {name: missing}\n    redirectURL: /callback\n    logoutPath: logout\n    forwardAccessToken: true\n    forwardIDToken: {header: Authorization}\n    cookieConfig: {sameSite: Sometimes}\n    denyRedirect: {headers: [{name: x, type: RegularExpression, value: \"(\"}]}\n    csrfTokenTTL: soon\n    cookieDomain: \"evil; Secure\"";
        let found = problems(oidc, SECRET).join("\n");
        for path in [
            "spec.oidc.provider.issuer",
            "spec.oidc.provider.tokenEndpoint",
            "spec.oidc.clientSecret no Secret shop/missing",
            "spec.oidc.redirectURL",
            "spec.oidc.logoutPath",
            "spec.oidc.forwardIDToken.header",
            "spec.oidc.cookieConfig.sameSite",
            "spec.oidc.denyRedirect.headers[0]",
            "spec.oidc.csrfTokenTTL",
            "spec.oidc.cookieDomain",
        ] {
            assert!(found.contains(path), "{path} not in:\n{found}");
        }
    }

    #[test]
    fn an_id_token_never_frames_the_request_and_the_callback_has_a_path() {
        let oidc = "    provider: {issuer: \"https://id.example.com\"}\n    clientID: shop\n    clientSecret: {name: s}\n    redirectURL: \"https://shop.example.com\"\n    forwardIDToken: {header: content-length}";
        let found = problems(oidc, SECRET).join("\n");
        assert!(
            found.contains("spec.oidc.redirectURL the redirect URL needs a path"),
            "{found}"
        );
        assert!(found.contains("spec.oidc.forwardIDToken.header"), "{found}");
    }
}
