//! A rule's `ExtensionRef` filters, resolved: each names an object of the
//! route's namespace — a `FaultInjection`, a `DirectResponse` or a
//! `BodyTransform` (policy.strait.dev/v1alpha1). A filter that cannot be resolved makes
//! the rule answer 500, as the spec requires of unresolved extension
//! filters (never skipped).

use crate::fault::Fault;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use strait_config::core::InlineOrRef;
use strait_config::httproute::HttpRouteFilter;
use strait_config::traffic::DirectResponseSpec;
use strait_config::{Document, Object, Resource};

/// What a rule's extension filters do, in this order: the authorization
/// service asked (its `ExternalAuth` filter, or why it cannot be, which
/// answers 500), the fault, then the direct answer. Together in one box:
/// most rules have none.
#[derive(Debug, Default)]
pub struct Extensions {
    pub ext_auth: Option<Result<crate::ext_auth::ExtAuth, String>>,
    pub fault: Option<Fault>,
    pub direct: Option<Direct>,
    pub transform: Option<crate::transform::BodyTransform>,
}

/// A DirectResponse: the rule's answer, whatever the request.
#[derive(Debug, Clone)]
pub struct Direct {
    pub status: StatusCode,
    pub content_type: HeaderValue,
    pub body: Bytes,
}

/// A direct answer's body: more is a mistake, not a page to serve.
const MAX_BODY: usize = 64 * 1024;

/// The rule's extensions, if a filter names any: `Err` says why they
/// cannot apply.
pub(crate) fn of_rule(
    docs: &[Document],
    ns: &str,
    filters: &[HttpRouteFilter],
) -> Option<Result<Extensions, String>> {
    let mut out = Extensions::default();
    let mut any = false;
    for f in filters.iter().filter(|f| f.kind == "ExtensionRef") {
        let Some(r) = f.extension_ref.as_ref() else {
            continue;
        };
        any = true;
        let field = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let (kind, name) = (field("kind"), field("name"));
        let found = match kind {
            "FaultInjection" => find(docs, ns, name, |r| match r {
                Resource::FaultInjection(f) => Some(f),
                _ => None,
            })
            .map(|f| crate::fault::compile(ns, f).map(|f| out.fault = Some(f))),
            "DirectResponse" => find(docs, ns, name, |r| match r {
                Resource::DirectResponse(d) => Some(d),
                _ => None,
            })
            .map(|d| direct(docs, ns, d).map(|d| out.direct = Some(d))),
            "BodyTransform" => find(docs, ns, name, |r| match r {
                Resource::BodyTransform(t) => Some(t),
                _ => None,
            })
            .map(|t| crate::transform::compile(t).map(|t| out.transform = Some(t))),
            _ => Some(Err(format!("{kind:?} is not an extension strait knows"))),
        };
        match found {
            Some(Ok(())) => {}
            Some(Err(e)) => return Some(Err(e)),
            None => return Some(Err(format!("{kind} {ns}/{name} not found"))),
        }
    }
    any.then_some(Ok(out))
}

fn find<'a, S>(
    docs: &'a [Document],
    ns: &str,
    name: &str,
    of: impl Fn(&'a Resource) -> Option<&'a Object<S>>,
) -> Option<&'a Object<S>> {
    docs.iter()
        .filter_map(|d| of(&d.resource))
        .find(|o| o.metadata.namespace() == ns && o.metadata.name == name)
}

fn direct(docs: &[Document], ns: &str, d: &Object<DirectResponseSpec>) -> Result<Direct, String> {
    let name = format!("{ns}/{}", d.metadata.name);
    let bad = |field: &str, why: String| format!("DirectResponse {name}: {field}: {why}");
    let status = StatusCode::from_u16(d.spec.status_code)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or_else(|| {
            bad(
                "spec.statusCode",
                format!("{} is not 200-599", d.spec.status_code),
            )
        })?;
    let body = match &d.spec.body {
        None => String::new(),
        Some(src) => {
            config_text(docs, ns, src, "response.body").map_err(|e| bad("spec.body", e))?
        }
    };
    if body.len() > MAX_BODY {
        return Err(bad(
            "spec.body",
            format!(
                "{} bytes, over the {MAX_BODY} a direct answer may have",
                body.len()
            ),
        ));
    }
    if !body.is_empty() && matches!(status.as_u16(), 204 | 304) {
        return Err(bad("spec.body", format!("a {status} answer has no body")));
    }
    let content_type = d
        .spec
        .content_type
        .as_deref()
        .unwrap_or("text/plain; charset=utf-8");
    let content_type = HeaderValue::from_str(content_type).map_err(|_| {
        bad(
            "spec.contentType",
            format!("{content_type:?} is not a header value"),
        )
    })?;
    Ok(Direct {
        status,
        content_type,
        body: Bytes::from(body),
    })
}

/// The data of ConfigMap `ns/name`.
pub(crate) fn config_map<'d>(
    docs: &'d [Document],
    ns: &str,
    name: &str,
) -> Option<&'d std::collections::BTreeMap<String, String>> {
    docs.iter().find_map(|d| match &*d.resource {
        Resource::ConfigMap(c) if c.metadata.namespace() == ns && c.metadata.name == name => {
            Some(&c.body.data)
        }
        _ => None,
    })
}

/// A text given inline or kept in a ConfigMap of namespace `ns` under
/// `key`. `Err` says why there is none (with the field, when it is one
/// below the value's own).
pub(crate) fn config_text(
    docs: &[Document],
    ns: &str,
    src: &InlineOrRef,
    key: &str,
) -> Result<String, String> {
    match (src.kind.as_str(), &src.inline, &src.value_ref) {
        ("Inline", Some(text), _) => Ok(text.clone()),
        ("ValueRef", _, Some(r)) if r.group.is_empty() && r.kind == "ConfigMap" => {
            config_map(docs, ns, &r.name)
                .and_then(|data| data.get(key).cloned())
                .ok_or_else(|| format!("valueRef: no ConfigMap {ns}/{} with a key {key}", r.name))
        }
        ("ValueRef", _, Some(_)) => {
            Err("valueRef: a valueRef is a ConfigMap ({group: \"\", kind: ConfigMap, name})".into())
        }
        _ => Err("type Inline with inline, or type ValueRef with valueRef".into()),
    }
}
