//! `strait explain DIR METHOD URL [-H 'name: value']...`: what a gateway
//! serving the folder would do with one request, phase by phase, in the
//! order the request path runs them. Nothing is sent: what depends on
//! state (counts, a token's signature, a service's answer, the chosen
//! endpoint) is named, not guessed.

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use std::path::Path;
use std::process::ExitCode;
use strait_route::{BackendTarget, ListenKey, Matched, RequestView, Snapshot};

pub mod mesh;

pub struct Question {
    pub method: String,
    pub url: String,
    pub headers: Vec<String>,
}

pub fn run(
    dir: &Path,
    controller_name: &str,
    q: &Question,
    from: Option<&mesh::Workloads>,
) -> ExitCode {
    let (snapshot, errors) = crate::check::compiled(dir, controller_name);
    if errors > 0 {
        let errors = crate::check::count(errors, "error");
        println!("the folder has {errors} (see strait check); a gateway would keep its last good configuration");
    }
    match explain(&snapshot, q, from) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strait explain: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The account of `q`, a line each: at a gateway, or with `from`, a
/// call between workloads through their sidecars.
pub fn explain(
    snapshot: &Snapshot,
    q: &Question,
    from: Option<&mesh::Workloads>,
) -> Result<Vec<String>, String> {
    let method = Method::from_bytes(q.method.as_bytes())
        .map_err(|_| format!("{:?} is not a method", q.method))?;
    let uri: Uri = q.url.parse().map_err(|e| format!("{}: {e}", q.url))?;
    let (Some(host), Some(scheme)) = (uri.host(), uri.scheme_str()) else {
        return Err(format!(
            "{}: give an absolute URL (http://host/path)",
            q.url
        ));
    };
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let host = strait_route::normalize_host(host).into_owned();
    let headers = headers(&q.headers)?;
    let call = Call {
        method: &method,
        uri: &uri,
        headers: &headers,
        host: &host,
        port,
    };
    let mut out = vec![format!("{method} {} (port {port}, host {host})", uri)];
    match from {
        Some(who) => mesh::explain(snapshot, &call, who, &mut out),
        None => gateway(snapshot, &call, &mut out),
    }
    Ok(out)
}

fn gateway(snapshot: &Snapshot, call: &Call<'_>, out: &mut Vec<String>) {
    let (port, host) = (call.port, call.host);
    let Some((at, listener)) = listener_for(snapshot, port, host) else {
        out.push(format!(
            "no listener on port {port} takes host {host}: 404 (no_route)"
        ));
        return;
    };
    out.push(format!("listener  {} (address {at})", listener.label));
    let view = RequestView {
        method: call.method,
        path: call.uri.path(),
        query: call.uri.query(),
        headers: call.headers,
    };
    let Some(matched) = snapshot.route(at, host, &view) else {
        out.push(
            "route     none of the listener's routes has a rule that matches: 404 (no_route)"
                .into(),
        );
        return;
    };
    let rule = matched.rule;
    out.push(format!("route     {} rule {}", rule.route, rule.index));
    policies(&matched, call, out);
    filters(&matched, out);
    backends(&matched, out);
}

fn headers(given: &[String]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for h in given {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("{h:?}: a header is 'name: value'"))?;
        let name = HeaderName::try_from(name.trim()).map_err(|e| format!("{name:?}: {e}"))?;
        let value = HeaderValue::try_from(value.trim()).map_err(|e| format!("{h:?}: {e}"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// The listener a request for `host` on `port` reaches: on the process's
/// address, else on a Gateway's own address with that port.
fn listener_for<'s>(
    snapshot: &'s Snapshot,
    port: u16,
    host: &str,
) -> Option<(ListenKey, &'s strait_route::ListenerRoutes)> {
    let any = ListenKey { ip: None, port };
    let keys =
        std::iter::once(any).chain(snapshot.ports.keys().copied().filter(|k| k.port == port));
    keys.into_iter()
        .find_map(|k| snapshot.listener(k, host).map(|l| (k, l)))
}

/// One request, as the command line gives it.
pub(crate) struct Call<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// The URL's host, normalized.
    pub host: &'a str,
    pub port: u16,
}

/// The policy phase, in its order: CORS, credentials, rate limits, the
/// API's schema, authorization services, faults and direct answers;
/// then the bodies' transformation.
fn policies(m: &Matched<'_>, call: &Call<'_>, out: &mut Vec<String>) {
    let rule = m.rule;
    if rule.cors().is_some() {
        let preflight = call.method == Method::OPTIONS
            && call.headers.contains_key("origin")
            && call.headers.contains_key("access-control-request-method");
        out.push(match preflight {
            true => "cors      a preflight: strait answers it from the rule's CORS filter, before any credential is asked".into(),
            false => "cors      the rule's CORS filter adds its headers to answers for allowed origins".into(),
        });
    }
    let attached = (
        rule.authn().or(m.listener.authn.as_ref()).map(|a| &**a),
        rule.ratelimit()
            .or(m.listener.ratelimit.as_ref())
            .map(|r| &**r),
        rule.apischema()
            .or(m.listener.apischema.as_ref())
            .map(|s| &**s),
    );
    attached_policies(attached, call, out);
    let Some(ext) = rule.extensions.as_deref() else {
        return;
    };
    let ext = match ext {
        Ok(ext) => ext,
        Err(why) => {
            out.push(format!("extension {why}: 500 (extension_unresolved)"));
            return;
        }
    };
    if ext.ext_auth.is_some() {
        out.push("authz     the rule's ExternalAuth service is asked; its answer decides".into());
    }
    if ext.fault.is_some() {
        out.push(
            "fault     the rule's FaultInjection may delay or abort it (by its percentages)".into(),
        );
    }
    if let Some(d) = &ext.direct {
        out.push(format!(
            "direct    DirectResponse: strait answers {} ({} bytes); no backend is called",
            d.status,
            d.body.len()
        ));
    }
    if let Some(t) = &ext.transform {
        let side = |s: &Option<strait_route::transform::Side>| match s {
            Some(s) => format!("{} to {}", s.from.name(), s.to.name()),
            None => "as it is".into(),
        };
        out.push(format!(
            "transform BodyTransform {}: the request's body {}, the answer's {} (bodies up to {} bytes)",
            t.name,
            side(&t.request),
            side(&t.response),
            t.max_body
        ));
    }
}

/// The SecurityPolicy, RateLimitPolicy and ApiSchemaPolicy that apply:
/// a rule's, a listener's, or at a sidecar's inbound side its workload's.
fn attached_policies(
    (authn, limits, schema): (
        Option<&strait_route::authn::Authn>,
        Option<&strait_route::ratelimit::RateLimit>,
        Option<&strait_route::apischema::ApiSchema>,
    ),
    call: &Call<'_>,
    out: &mut Vec<String>,
) {
    if let Some(a) = authn {
        out.push(format!(
            "authn     SecurityPolicy {}: {}",
            a.policy,
            self::authn(a, call.headers, call.uri.query())
        ));
    }
    for limit in limits
        .iter()
        .flat_map(|r| r.rules.iter().map(move |l| (r, l)))
    {
        out.push(format!(
            "limit     RateLimitPolicy {} rule {} (429 when used up)",
            limit.0.policy,
            limit.1.describe()
        ));
    }
    if let Some(s) = schema {
        out.push(format!(
            "schema    ApiSchemaPolicy {}: {}",
            s.policy,
            self::schema(s, call.method, call.uri.path())
        ));
    }
}

fn authn(a: &strait_route::authn::Authn, headers: &HeaderMap, query: Option<&str>) -> String {
    if let Some(why) = &a.broken {
        return format!("cannot be applied ({why}): 500 (policy_invalid)");
    }
    let jwt = match a.optional {
        true => "a JWT if one is sent",
        false => "a JWT",
    };
    let asks: Vec<&str> = [
        (!a.providers.is_empty(), jwt),
        (a.api_keys.is_some(), "an API key"),
        (a.basic.is_some(), "basic auth"),
        (
            a.oidc.is_some(),
            "an OpenID Connect login (a session cookie)",
        ),
        (a.callers.is_some(), "a caller its rules allow"),
        (a.ext.is_some(), "an authorization service's yes"),
    ]
    .into_iter()
    .filter_map(|(asked, what)| asked.then_some(what))
    .collect();
    let mut said = format!("asks for {}", asks.join(", then "));
    // Where the policy's providers look for a token, as the gateway does.
    let token = a.carries_token(headers, query);
    let alone = a.api_keys.is_none() && a.basic.is_none() && a.oidc.is_none();
    match (a.providers.is_empty(), token) {
        (false, true) => {
            said.push_str("; the token's signature and claims are checked when served")
        }
        (false, false) if !a.optional && alone => {
            said.push_str("; this request carries no token: 401 (jwt_missing)")
        }
        _ => {}
    }
    said
}

fn schema(s: &strait_route::apischema::ApiSchema, method: &Method, path: &str) -> String {
    use strait_route::apischema::Found;
    let Some(api) = &s.api else {
        return "cannot be applied (see strait check): 500 (policy_invalid)".into();
    };
    let unknown = |status: &str| match s.reject_unknown {
        true => format!("{status} (operation_unknown)"),
        false => "passed unchecked (unknownOperations: Allow)".to_string(),
    };
    match api.find(method, path) {
        Found::Operation(op, _) => format!(
            "operation {}: its parameters and JSON body are checked (400, 415 when they are not as described)",
            op.id
        ),
        Found::NoMethod(allow) => format!("the path has no {method} (it has {allow}): {}", unknown("405")),
        Found::NoPath => format!("no operation of the document has this path: {}", unknown("404")),
        Found::NotNormal(why) => format!("the path is not in normal form ({why}): 400 (request_invalid)"),
    }
}

/// The filters phase: what changes the request on its way.
fn filters(m: &Matched<'_>, out: &mut Vec<String>) {
    let rule = m.rule;
    let mirrors = format!(
        "filters   {}, answers ignored",
        crate::check::count(rule.mirrors.len(), "mirror")
    );
    let steps = [
        (
            rule.redirect.is_some(),
            "filters   RequestRedirect: strait answers with the redirect; no backend is called",
        ),
        (
            rule.rewrite.is_some(),
            "filters   URLRewrite: the backend gets the rewritten host or path",
        ),
        (
            rule.request_headers.is_some(),
            "filters   RequestHeaderModifier",
        ),
        (
            rule.response_headers.is_some(),
            "filters   ResponseHeaderModifier (on the answer)",
        ),
        (!rule.mirrors.is_empty(), &mirrors),
        (
            rule.session().is_some(),
            "session   session persistence: a request with a live session goes to its endpoint",
        ),
        (
            rule.retry.is_some(),
            "retry     the rule's retry policy (GEP-1731), within the cluster's budget",
        ),
    ];
    out.extend(
        steps
            .into_iter()
            .filter(|(applies, _)| *applies)
            .map(|(_, line)| line.to_string()),
    );
}

fn backends(m: &Matched<'_>, out: &mut Vec<String>) {
    let rule = m.rule;
    if rule.backends.is_empty() {
        out.push("backend   the rule has no backend: 500 (no_backend)".into());
    }
    for b in &rule.backends {
        let share = match rule.total_weight {
            0 => "no share (weight 0)".to_string(),
            total => format!("{} of {total}", b.weight),
        };
        out.push(match &b.target {
            BackendTarget::Cluster(c) if c.endpoints.is_empty() => {
                format!(
                    "backend   {} ({share}): no ready endpoint: 503 (no_endpoints)",
                    c.name
                )
            }
            BackendTarget::Cluster(c) => {
                let list: Vec<String> = c.endpoints.iter().take(4).map(|e| e.to_string()).collect();
                let more = c.endpoints.len().saturating_sub(4);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                let protocol = match c.protocol {
                    strait_route::UpstreamProtocol::Http1 => "HTTP/1.1",
                    strait_route::UpstreamProtocol::H2c => "HTTP/2 (h2c)",
                };
                format!(
                    "backend   {} ({share}): {protocol} to one of {}{more}",
                    c.name,
                    list.join(", ")
                )
            }
            BackendTarget::Invalid(why) => {
                format!("backend   ({share}) invalid: {why}: 500 (invalid_backend)")
            }
        });
    }
}
