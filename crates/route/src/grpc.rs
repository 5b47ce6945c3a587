//! GRPCRoute as HTTPRoute: a gRPC call is an HTTP/2 POST to
//! `/<service>/<method>`, so each method match becomes a path match and the
//! rest of the route (hostnames, headers, filters, backends) carries over.
//! The HTTPRoute machinery then does attachment, precedence and status.

use regex::Regex;
use strait_config::grpcroute::{GrpcMethodMatch, GrpcRouteSpec};
use strait_config::httproute::{HttpPathMatch, HttpRouteMatch, HttpRouteRule, HttpRouteSpec};
use strait_config::validate::Finding;

const SERVICE: &str = r"^[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$";
const METHOD: &str = r"^[A-Za-z_][A-Za-z_0-9]*$";

fn path_of(m: &GrpcMethodMatch, at: &str, out: &mut Vec<Finding>) -> HttpPathMatch {
    let path = |kind: &str, value: String| HttpPathMatch {
        kind: kind.into(),
        value,
    };
    match m.kind.as_str() {
        "Exact" => {
            for (field, value, pattern) in [
                ("service", &m.service, SERVICE),
                ("method", &m.method, METHOD),
            ] {
                if let Some(v) = value {
                    if !Regex::new(pattern).is_ok_and(|re| re.is_match(v)) {
                        out.push((
                            format!("{at}.{field}"),
                            format!("{v:?} is not a valid gRPC {field} name"),
                        ));
                    }
                }
            }
            match (&m.service, &m.method) {
                (Some(s), Some(me)) => path("Exact", format!("/{s}/{me}")),
                (Some(s), None) => path("PathPrefix", format!("/{s}")),
                (None, Some(me)) => path("RegularExpression", format!("/[^/]+/{me}")),
                (None, None) => {
                    out.push((at.to_string(), "set service, method or both".into()));
                    path("PathPrefix", "/".into())
                }
            }
        }
        "RegularExpression" => {
            for (field, value) in [("service", &m.service), ("method", &m.method)] {
                if let Some(Err(e)) = value.as_deref().map(Regex::new) {
                    out.push((
                        format!("{at}.{field}"),
                        format!("invalid regular expression: {e}"),
                    ));
                }
            }
            let part = |v: &Option<String>| v.clone().unwrap_or_else(|| "[^/]+".into());
            path(
                "RegularExpression",
                format!("/(?:{})/(?:{})", part(&m.service), part(&m.method)),
            )
        }
        other => {
            out.push((
                format!("{at}.type"),
                format!("{other:?} must be Exact or RegularExpression"),
            ));
            path("PathPrefix", "/".into())
        }
    }
}

/// The HTTPRoute a GRPCRoute means, or what is wrong with it.
pub(crate) fn to_http(spec: &GrpcRouteSpec) -> Result<HttpRouteSpec, Vec<Finding>> {
    let mut out = Vec::new();
    let mut rules = Vec::new();
    for (r, rule) in spec.rules.iter().enumerate() {
        for (f, filter) in rule.filters.iter().enumerate() {
            if !matches!(
                filter.kind.as_str(),
                "RequestHeaderModifier"
                    | "ResponseHeaderModifier"
                    | "RequestMirror"
                    | "ExtensionRef"
            ) {
                out.push((
                    format!("spec.rules[{r}].filters[{f}].type"),
                    format!("{} is not a GRPCRoute filter", filter.kind),
                ));
            }
        }
        if let Some(s) = &rule.session_persistence {
            out.extend(s.check(&format!("spec.rules[{r}].sessionPersistence")));
        }
        let matches = if rule.matches.is_empty() {
            vec![HttpRouteMatch::default()]
        } else {
            rule.matches
                .iter()
                .enumerate()
                .map(|(m, mat)| HttpRouteMatch {
                    path: mat.method.as_ref().map(|method| {
                        path_of(
                            method,
                            &format!("spec.rules[{r}].matches[{m}].method"),
                            &mut out,
                        )
                    }),
                    headers: mat.headers.clone(),
                    query_params: vec![],
                    method: None,
                })
                .collect()
        };
        rules.push(HttpRouteRule {
            name: rule.name.clone(),
            matches,
            filters: rule.filters.clone(),
            backend_refs: rule.backend_refs.clone(),
            timeouts: None,
            retry: None,
            session_persistence: rule.session_persistence.clone(),
        });
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(HttpRouteSpec {
        parent_refs: spec.parent_refs.clone(),
        hostnames: spec.hostnames.clone(),
        rules,
    })
}
