//! Checks the Gateway API CRD schema and CEL rules make, which a YAML schema
//! alone cannot: formats, ranges, and fields that must (not) appear together.
//! Each finding is `(field path, reason)`; the caller decides what it rejects.

use crate::duration;
use crate::gateway::GatewaySpec;
use crate::httproute::{
    HttpBackendRef, HttpHeaderFilter, HttpHeaderMatch, HttpPathMatch, HttpPathModifier,
    HttpRequestMirrorFilter, HttpRequestRedirectFilter, HttpRouteFilter, HttpRouteMatch,
    HttpRouteRetry, HttpRouteRule, HttpRouteSpec, HttpRouteTimeouts, HttpUrlRewriteFilter,
};

pub type Finding = (String, String);

/// RFC 1123 hostname, optionally with a single leading `*.` label; IPs refused.
pub fn hostname(value: &str) -> Result<(), String> {
    let name = value.strip_prefix("*.").unwrap_or(value);
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if value.len() > 253 || name.is_empty() || !name.split('.').all(ok_label) {
        return Err(format!(
            "{value:?} is not a valid hostname (lowercase RFC 1123 labels, optionally \"*.\" first)"
        ));
    }
    if name.parse::<std::net::IpAddr>().is_ok()
        || name
            .split('.')
            .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("{value:?} is an IP address; hostnames only"));
    }
    Ok(())
}

fn header_name(value: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if value.is_empty() || !value.bytes().all(token) {
        return Err(format!("{value:?} is not a valid HTTP header name"));
    }
    Ok(())
}

pub fn gateway(spec: &GatewaySpec) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, a) in spec.addresses.iter().enumerate() {
        match a.kind.as_deref().unwrap_or("IPAddress") {
            "IPAddress" if a.value.parse::<std::net::IpAddr>().is_err() => out.push((
                format!("spec.addresses[{i}].value"),
                format!("{:?} is not an IP address", a.value),
            )),
            "IPAddress" => {}
            other => out.push((
                format!("spec.addresses[{i}].type"),
                format!("{other} addresses are not supported; use IPAddress"),
            )),
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, l) in spec.listeners.iter().enumerate() {
        let at = |field: &str| format!("spec.listeners[{i}].{field}");
        if !names.insert(&l.name) {
            out.push((
                at("name"),
                format!("listener name {:?} is used twice", l.name),
            ));
        }
        if !(1..=65535).contains(&l.port) {
            out.push((at("port"), format!("{} is not a port (1-65535)", l.port)));
        }
        if let Some(h) = &l.hostname {
            if let Err(e) = hostname(h) {
                out.push((at("hostname"), e));
            }
        }
        if let Some(from) = l
            .allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
            .and_then(|n| n.from.as_deref())
        {
            if !matches!(from, "All" | "Same" | "Selector") {
                out.push((
                    at("allowedRoutes.namespaces.from"),
                    format!("{from:?} must be All, Same or Selector"),
                ));
            }
        }
    }
    out
}

pub fn http_route(spec: &HttpRouteSpec) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, h) in spec.hostnames.iter().enumerate() {
        if let Err(e) = hostname(h) {
            out.push((format!("spec.hostnames[{i}]"), e));
        }
    }
    for (i, p) in spec.parent_refs.iter().enumerate() {
        if let Some(port) = p.port {
            if !(1..=65535).contains(&port) {
                out.push((
                    format!("spec.parentRefs[{i}].port"),
                    format!("{port} is not a port"),
                ));
            }
        }
    }
    for (r, rule) in spec.rules.iter().enumerate() {
        http_rule(rule, &format!("spec.rules[{r}]"), &mut out);
    }
    out
}

fn http_rule(rule: &HttpRouteRule, at: &str, out: &mut Vec<Finding>) {
    // A missing path is the default match, which is a PathPrefix one.
    let all_prefix = rule
        .matches
        .iter()
        .all(|mat| mat.path.clone().unwrap_or_default().kind == "PathPrefix");
    for (m, mat) in rule.matches.iter().enumerate() {
        route_match(mat, &format!("{at}.matches[{m}]"), out);
    }
    filters(
        &rule.filters,
        &format!("{at}.filters"),
        all_prefix,
        true,
        out,
    );
    redirect_conflicts(rule, at, out);
    for (b, backend) in rule.backend_refs.iter().enumerate() {
        backend_ref(backend, &format!("{at}.backendRefs[{b}]"), all_prefix, out);
    }
    if let Some(t) = &rule.timeouts {
        rule_timeouts(t, at, out);
    }
    if let Some(retry) = &rule.retry {
        rule_retry(retry, at, out);
    }
    if let Some(s) = &rule.session_persistence {
        out.extend(s.check(&format!("{at}.sessionPersistence")));
    }
}

fn route_match(mat: &HttpRouteMatch, at: &str, out: &mut Vec<Finding>) {
    path_match(&mat.path.clone().unwrap_or_default(), at, out);
    for (kind, list) in [
        ("headers", &mat.headers),
        ("queryParams", &mat.query_params),
    ] {
        for (h, hm) in list.iter().enumerate() {
            value_match(kind, hm, &format!("{at}.{kind}[{h}]"), out);
        }
    }
    if let Some(method) = &mat.method {
        const METHODS: [&str; 9] = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ];
        if !METHODS.contains(&method.as_str()) {
            out.push((
                format!("{at}.method"),
                format!("{method:?} is not an HTTP method"),
            ));
        }
    }
}

fn path_match(path: &HttpPathMatch, at: &str, out: &mut Vec<Finding>) {
    let p = |f: &str| format!("{at}.{f}");
    match path.kind.as_str() {
        "Exact" | "PathPrefix" => {
            if !path.value.starts_with('/') {
                out.push((p("path.value"), "must start with \"/\"".into()));
            } else if path.value.contains("//") || path.value.contains("/./") {
                out.push((p("path.value"), "must not contain \"//\" or \"/./\"".into()));
            } else if path.value.contains(['?', '#']) {
                out.push((p("path.value"), "must not contain \"?\" or \"#\"".into()));
            }
        }
        "RegularExpression" => {
            if let Err(e) = regex::Regex::new(&path.value) {
                out.push((p("path.value"), format!("invalid regular expression: {e}")));
            }
        }
        other => out.push((
            p("path.type"),
            format!("{other:?} must be Exact, PathPrefix or RegularExpression"),
        )),
    }
}

/// A header or query parameter match; `kind` is the list it sits in.
fn value_match(kind: &str, hm: &HttpHeaderMatch, at: &str, out: &mut Vec<Finding>) {
    let hp = |f: &str| format!("{at}.{f}");
    if kind == "headers" {
        if let Err(e) = header_name(&hm.name) {
            out.push((hp("name"), e));
        }
    } else if hm.name.is_empty() {
        out.push((hp("name"), "must not be empty".into()));
    }
    match hm.kind.as_str() {
        "Exact" => {}
        "RegularExpression" => {
            if let Err(e) = regex::Regex::new(&hm.value) {
                out.push((hp("value"), format!("invalid regular expression: {e}")));
            }
        }
        other => out.push((
            hp("type"),
            format!("{other:?} must be Exact or RegularExpression"),
        )),
    }
}

fn redirect_conflicts(rule: &HttpRouteRule, at: &str, out: &mut Vec<Finding>) {
    let redirect = rule.filters.iter().any(|f| f.kind == "RequestRedirect");
    let rewrite = rule.filters.iter().any(|f| f.kind == "URLRewrite");
    if redirect && rewrite {
        out.push((
            format!("{at}.filters"),
            "RequestRedirect and URLRewrite cannot both be set".into(),
        ));
    }
    if redirect && !rule.backend_refs.is_empty() {
        out.push((
            format!("{at}.backendRefs"),
            "a rule with a RequestRedirect filter must not have backendRefs".into(),
        ));
    }
}

fn backend_ref(backend: &HttpBackendRef, at: &str, all_prefix: bool, out: &mut Vec<Finding>) {
    let bp = |f: &str| format!("{at}.{f}");
    if let Some(w) = backend.weight {
        if !(0..=1_000_000).contains(&w) {
            out.push((bp("weight"), format!("{w} is outside 0-1000000")));
        }
    }
    if backend.target().is_service() && backend.port.is_none() {
        out.push((
            bp("port"),
            "is required when the backend is a Service".into(),
        ));
    }
    filters(&backend.filters, &bp("filters"), all_prefix, false, out);
}

fn rule_timeouts(t: &HttpRouteTimeouts, at: &str, out: &mut Vec<Finding>) {
    let request = t.request.as_deref().map(duration::parse);
    let backend = t.backend_request.as_deref().map(duration::parse);
    if let Some(Err(e)) = &request {
        out.push((format!("{at}.timeouts.request"), e.clone()));
    }
    if let Some(Err(e)) = &backend {
        out.push((format!("{at}.timeouts.backendRequest"), e.clone()));
    }
    if let (Some(Ok(req)), Some(Ok(back))) = (request, backend) {
        // As the spec's CEL rule: 0s means "no timeout" on either side.
        if !req.is_zero() && !back.is_zero() && back > req {
            out.push((
                format!("{at}.timeouts.backendRequest"),
                "must not be longer than timeouts.request".into(),
            ));
        }
    }
}

fn rule_retry(retry: &HttpRouteRetry, at: &str, out: &mut Vec<Finding>) {
    for (c, code) in retry.codes.iter().enumerate() {
        if !(400..=599).contains(code) {
            out.push((
                format!("{at}.retry.codes[{c}]"),
                format!("{code} is not a 4xx or 5xx status"),
            ));
        }
    }
    if retry.attempts.is_some_and(|a| !(0..=10).contains(&a)) {
        out.push((
            format!("{at}.retry.attempts"),
            "must be between 0 and 10".into(),
        ));
    }
    if let Some(Err(e)) = retry.backoff.as_deref().map(duration::parse) {
        out.push((format!("{at}.retry.backoff"), e));
    }
}

fn filters(
    list: &[HttpRouteFilter],
    at: &str,
    all_prefix: bool,
    rule_level: bool,
    out: &mut Vec<Finding>,
) {
    let mut seen = std::collections::HashSet::new();
    for (f, filter) in list.iter().enumerate() {
        let filter_at = format!("{at}[{f}]");
        let repeatable = matches!(filter.kind.as_str(), "RequestMirror" | "ExtensionRef");
        if !repeatable && !seen.insert(filter.kind.as_str()) {
            out.push((
                format!("{filter_at}.type"),
                format!("{} may appear only once", filter.kind),
            ));
        }
        let Some(kind) = filter_kind(filter, &filter_at, out) else {
            continue;
        };
        if !rule_level
            && matches!(
                kind,
                "RequestRedirect" | "URLRewrite" | "RequestMirror" | "ExternalAuth" | "CORS"
            )
        {
            out.push((
                format!("{filter_at}.type"),
                format!("{kind} is not supported on a backendRef"),
            ));
        }
        filter_body(filter, kind, &filter_at, all_prefix, rule_level, out);
    }
}

/// The filter's type when strait knows it and its field is set; fields set
/// beside the one its type names are reported either way.
fn filter_kind(filter: &HttpRouteFilter, at: &str, out: &mut Vec<Finding>) -> Option<&'static str> {
    let fp = |field: &str| format!("{at}.{field}");
    let present = [
        (
            "RequestHeaderModifier",
            filter.request_header_modifier.is_some(),
        ),
        (
            "ResponseHeaderModifier",
            filter.response_header_modifier.is_some(),
        ),
        ("RequestRedirect", filter.request_redirect.is_some()),
        ("URLRewrite", filter.url_rewrite.is_some()),
        ("RequestMirror", filter.request_mirror.is_some()),
        ("ExtensionRef", filter.extension_ref.is_some()),
        ("ExternalAuth", filter.external_auth.is_some()),
        ("CORS", filter.cors.is_some()),
    ];
    let Some((kind, _)) = present.iter().find(|(k, _)| *k == filter.kind) else {
        out.push((
            fp("type"),
            format!("{:?} is not a filter type strait knows", filter.kind),
        ));
        return None;
    };
    for (other, set) in present {
        if set && other != *kind {
            out.push((
                fp(&field_name(other)),
                format!("must not be set when type is {kind}"),
            ));
        }
    }
    if !present.iter().any(|(k, set)| k == kind && *set) {
        out.push((
            fp(&field_name(kind)),
            format!("is required when type is {kind}"),
        ));
        return None;
    }
    Some(*kind)
}

fn filter_body(
    filter: &HttpRouteFilter,
    kind: &str,
    at: &str,
    all_prefix: bool,
    rule_level: bool,
    out: &mut Vec<Finding>,
) {
    let fp = |field: &str| format!("{at}.{field}");
    match kind {
        "ExtensionRef" => extension_ref(filter.extension_ref.as_ref(), at, rule_level, out),
        "RequestHeaderModifier" => header_filter(
            filter.request_header_modifier.as_ref(),
            &fp("requestHeaderModifier"),
            out,
        ),
        "ResponseHeaderModifier" => header_filter(
            filter.response_header_modifier.as_ref(),
            &fp("responseHeaderModifier"),
            out,
        ),
        "RequestRedirect" => request_redirect(
            filter.request_redirect.as_ref(),
            &fp("requestRedirect"),
            all_prefix,
            out,
        ),
        "URLRewrite" => url_rewrite(
            filter.url_rewrite.as_ref(),
            &fp("urlRewrite"),
            all_prefix,
            out,
        ),
        "RequestMirror" => {
            request_mirror(filter.request_mirror.as_ref(), &fp("requestMirror"), out)
        }
        "ExternalAuth" => {
            if let Some(f) = &filter.external_auth {
                external_auth(f, &fp("externalAuth"), out)
            }
        }
        "CORS" => {
            if let Some(f) = &filter.cors {
                cors(f, &fp("cors"), out)
            }
        }
        _ => {}
    }
}

/// GEP-1494's rules: `protocol` names which of `grpc` and `http` may be
/// set.
fn external_auth(f: &crate::httproute::HttpExternalAuthFilter, at: &str, out: &mut Vec<Finding>) {
    let other = match f.protocol.as_str() {
        "GRPC" => f.http.is_some().then_some("http"),
        "HTTP" => f.grpc.is_some().then_some("grpc"),
        p => {
            let msg = format!("{p:?} is not HTTP or GRPC");
            out.push((format!("{at}.protocol"), msg));
            return;
        }
    };
    if let Some(other) = other {
        let msg = format!("must not be set when protocol is {}", f.protocol);
        out.push((format!("{at}.{other}"), msg));
    }
    if !f.backend_ref.is_service() {
        let msg = "only a Service can be asked".to_string();
        out.push((format!("{at}.backendRef"), msg));
    }
    if f.backend_ref.port.is_none() {
        out.push((format!("{at}.backendRef.port"), "is required".into()));
    }
}

/// The spec's limits, and `*` only alone in a list.
fn cors(f: &crate::httproute::HttpCorsFilter, at: &str, out: &mut Vec<Finding>) {
    for (i, o) in f.allow_origins.iter().enumerate() {
        if o != "*" {
            if let Err(why) = crate::httproute::Origin::parse(o, true) {
                out.push((format!("{at}.allowOrigins[{i}]"), why));
            }
        }
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    };
    let lists = [
        ("allowOrigins", &f.allow_origins, 64),
        ("allowMethods", &f.allow_methods, 9),
        ("allowHeaders", &f.allow_headers, 64),
        ("exposeHeaders", &f.expose_headers, 64),
    ];
    for (field, list, max) in lists {
        if list.len() > max {
            out.push((format!("{at}.{field}"), format!("at most {max} entries")));
        }
        if list.len() > 1 && list.iter().any(|v| v == "*") {
            out.push((format!("{at}.{field}"), "* must be the only entry".into()));
        }
        if field == "allowOrigins" {
            continue;
        }
        for (i, v) in list.iter().enumerate() {
            if v != "*" && !token(v) {
                let msg = format!(
                    "{v:?} is not a {}",
                    if field == "allowMethods" {
                        "method"
                    } else {
                        "header name"
                    }
                );
                out.push((format!("{at}.{field}[{i}]"), msg));
            }
        }
    }
    if f.max_age.is_some_and(|m| m < 1) {
        out.push((format!("{at}.maxAge"), "must be at least 1".into()));
    }
}

/// `at` is the filter's own path: the findings name its `type` as well.
fn extension_ref(
    r: Option<&serde_json::Value>,
    at: &str,
    rule_level: bool,
    out: &mut Vec<Finding>,
) {
    let field = |k: &str| r.and_then(|v| v.get(k)).and_then(|v| v.as_str());
    let kind = field("kind").unwrap_or_default();
    let known = field("group") == Some("policy.strait.dev")
        && matches!(kind, "FaultInjection" | "DirectResponse" | "BodyTransform")
        && field("name").is_some_and(|n| !n.is_empty());
    if !known {
        out.push((
            format!("{at}.extensionRef"),
            "strait knows these extension filters: {group: policy.strait.dev, kind: FaultInjection, DirectResponse or BodyTransform, name: ...}".into(),
        ));
    } else if !rule_level {
        out.push((
            format!("{at}.type"),
            format!("{kind} applies to a rule, not a backendRef"),
        ));
    }
}

fn request_redirect(
    r: Option<&HttpRequestRedirectFilter>,
    at: &str,
    all_prefix: bool,
    out: &mut Vec<Finding>,
) {
    let Some(r) = r else { return };
    let rp = |field: &str| format!("{at}.{field}");
    if let Some(s) = &r.scheme {
        if !matches!(s.as_str(), "http" | "https") {
            out.push((rp("scheme"), format!("{s:?} must be http or https")));
        }
    }
    if let Some(h) = &r.hostname {
        if let Err(e) = hostname(h).and_then(|_| no_wildcard(h)) {
            out.push((rp("hostname"), e));
        }
    }
    if let Some(p) = r.port {
        if !(1..=65535).contains(&p) {
            out.push((rp("port"), format!("{p} is not a port")));
        }
    }
    if let Some(code) = r.status_code {
        if ![301, 302, 303, 307, 308].contains(&code) {
            out.push((
                rp("statusCode"),
                format!("{code} must be 301, 302, 303, 307 or 308"),
            ));
        }
    }
    path_modifier(r.path.as_ref(), &rp("path"), all_prefix, out);
}

fn url_rewrite(
    r: Option<&HttpUrlRewriteFilter>,
    at: &str,
    all_prefix: bool,
    out: &mut Vec<Finding>,
) {
    let Some(r) = r else { return };
    if let Some(h) = &r.hostname {
        if let Err(e) = hostname(h).and_then(|_| no_wildcard(h)) {
            out.push((format!("{at}.hostname"), e));
        }
    }
    path_modifier(r.path.as_ref(), &format!("{at}.path"), all_prefix, out);
}

fn request_mirror(m: Option<&HttpRequestMirrorFilter>, at: &str, out: &mut Vec<Finding>) {
    let Some(m) = m else { return };
    if m.percent.is_some() && m.fraction.is_some() {
        out.push((at.to_string(), "set percent or fraction, not both".into()));
    }
    if let Some(p) = m.percent {
        if !(0..=100).contains(&p) {
            out.push((format!("{at}.percent"), format!("{p} is outside 0-100")));
        }
    }
    if let Some(fr) = &m.fraction {
        let den = fr.denominator.unwrap_or(100);
        if den <= 0 || fr.numerator < 0 || fr.numerator > den {
            out.push((
                format!("{at}.fraction"),
                "needs 0 <= numerator <= denominator and denominator > 0".into(),
            ));
        }
    }
    if m.backend_ref.is_service() && m.backend_ref.port.is_none() {
        out.push((
            format!("{at}.backendRef.port"),
            "is required when the backend is a Service".into(),
        ));
    }
}

fn field_name(kind: &str) -> String {
    match kind {
        "URLRewrite" => "urlRewrite".into(),
        "CORS" => "cors".into(),
        other => {
            let mut s = other.to_string();
            if let Some(first) = s.get_mut(0..1) {
                first.make_ascii_lowercase();
            }
            s
        }
    }
}

fn no_wildcard(h: &str) -> Result<(), String> {
    if h.starts_with('*') {
        return Err(format!("{h:?}: a wildcard is not allowed here"));
    }
    Ok(())
}

fn header_filter(f: Option<&HttpHeaderFilter>, at: &str, out: &mut Vec<Finding>) {
    let Some(f) = f else { return };
    for (list, name) in [(&f.set, "set"), (&f.add, "add")] {
        let mut seen = std::collections::HashSet::new();
        for (i, h) in list.iter().enumerate() {
            if let Err(e) = header_name(&h.name) {
                out.push((format!("{at}.{name}[{i}].name"), e));
            }
            if !seen.insert(h.name.to_ascii_lowercase()) {
                out.push((
                    format!("{at}.{name}[{i}].name"),
                    format!("{:?} is listed twice", h.name),
                ));
            }
            if h.value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                out.push((
                    format!("{at}.{name}[{i}].value"),
                    "must not contain CR, LF or NUL".into(),
                ));
            }
        }
    }
    for (i, h) in f.remove.iter().enumerate() {
        if let Err(e) = header_name(h) {
            out.push((format!("{at}.remove[{i}]"), e));
        }
    }
}

fn path_modifier(p: Option<&HttpPathModifier>, at: &str, all_prefix: bool, out: &mut Vec<Finding>) {
    let Some(p) = p else { return };
    let (value, field) = match p.kind.as_str() {
        "ReplaceFullPath" => (&p.replace_full_path, "replaceFullPath"),
        "ReplacePrefixMatch" => {
            if !all_prefix {
                out.push((
                    format!("{at}.type"),
                    "ReplacePrefixMatch needs every match of the rule to be a PathPrefix match"
                        .into(),
                ));
            }
            (&p.replace_prefix_match, "replacePrefixMatch")
        }
        other => {
            out.push((
                format!("{at}.type"),
                format!("{other:?} must be ReplaceFullPath or ReplacePrefixMatch"),
            ));
            return;
        }
    };
    match value {
        None => out.push((
            format!("{at}.{field}"),
            format!("is required when type is {}", p.kind),
        )),
        // An empty replacePrefixMatch is allowed: it strips the prefix.
        Some(v) if !(v.starts_with('/') || v.is_empty() && field == "replacePrefixMatch") => {
            out.push((format!("{at}.{field}"), "must start with \"/\"".into()))
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["example.com", "*.example.com", "a-b.c", "localhost"] {
            assert!(hostname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "*",
            "Example.com",
            "a..b",
            "-a.com",
            "1.2.3.4",
            "*.*.com",
            "a.*.com",
            "x_y.com",
        ] {
            assert!(hostname(bad).is_err(), "{bad}");
        }
    }
}
