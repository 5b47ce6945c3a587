//! Compiled HTTPRoute filters and the pure functions that apply them.

use crate::backend::BackendTarget;
use http::{HeaderMap, HeaderName, HeaderValue};
use strait_config::httproute::{HttpHeaderFilter, HttpPathModifier};

/// `RequestHeaderModifier` / `ResponseHeaderModifier`.
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderOps {
    pub fn compile(f: &HttpHeaderFilter) -> Result<Self, String> {
        let pair = |h: &strait_config::httproute::HttpHeader| {
            Ok::<_, String>((
                HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|e| format!("{}: {e}", h.name))?,
                HeaderValue::from_str(&h.value).map_err(|e| format!("{}: {e}", h.name))?,
            ))
        };
        Ok(HeaderOps {
            set: f.set.iter().map(pair).collect::<Result<_, _>>()?,
            add: f.add.iter().map(pair).collect::<Result<_, _>>()?,
            remove: f
                .remove
                .iter()
                .map(|n| HeaderName::from_bytes(n.as_bytes()).map_err(|e| format!("{n}: {e}")))
                .collect::<Result<_, _>>()?,
        })
    }

    /// `set` replaces, `add` appends, `remove` deletes, in that order.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PathModifier {
    Full(String),
    Prefix(String),
}

impl PathModifier {
    pub fn compile(p: &HttpPathModifier) -> Option<Self> {
        match p.kind.as_str() {
            "ReplaceFullPath" => p.replace_full_path.clone().map(PathModifier::Full),
            "ReplacePrefixMatch" => p.replace_prefix_match.clone().map(PathModifier::Prefix),
            _ => None,
        }
    }

    /// The new path. `matched_prefix` is the PathPrefix the request matched
    /// (without trailing slash), needed by `ReplacePrefixMatch`.
    pub fn apply(&self, path: &str, matched_prefix: Option<&str>) -> String {
        match self {
            PathModifier::Full(p) => p.clone(),
            PathModifier::Prefix(replacement) => {
                let prefix_len = matched_prefix.map_or(0, str::len).min(path.len());
                let rest = &path[prefix_len..];
                if rest.is_empty() {
                    return if replacement.is_empty() {
                        "/".into()
                    } else {
                        replacement.clone()
                    };
                }
                // `rest` starts with "/": join without doubling the slash and
                // keep a trailing one (`/foo/` → `/xyz/`, as the spec's table says).
                format!("{}{rest}", replacement.trim_end_matches('/'))
            }
        }
    }
}

/// `RequestRedirect`.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathModifier>,
    pub status: u16,
}

impl Redirect {
    /// The `Location` for a request. Port rules from the spec: an explicit
    /// port wins; else a new scheme brings its well-known port; else the
    /// listener's port. Ports 80 for http and 443 for https are left out.
    #[allow(clippy::too_many_arguments)]
    pub fn location(
        &self,
        scheme: &str,
        host: &str,
        listener_port: u16,
        path: &str,
        query: Option<&str>,
        matched_prefix: Option<&str>,
    ) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(scheme);
        let host = self.hostname.as_deref().unwrap_or(host);
        let port = match (self.port, &self.scheme) {
            (Some(p), _) => p,
            (None, Some(s)) if s == "https" => 443,
            (None, Some(_)) => 80,
            (None, None) => listener_port,
        };
        let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
        let path = self
            .path
            .as_ref()
            .map_or_else(|| path.to_string(), |m| m.apply(path, matched_prefix));
        let mut out = format!("{scheme}://{host}");
        if !default_port {
            out.push_str(&format!(":{port}"));
        }
        out.push_str(&path);
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// `URLRewrite`.
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathModifier>,
}

/// `RequestMirror`: a copy of the request, answer ignored.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub target: BackendTarget,
    /// Share of requests mirrored, in millionths.
    pub per_million: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_prefix_match_examples() {
        // From the spec and the conformance suite's HTTPRouteRewritePath tests.
        let m = PathModifier::Prefix("/one".into());
        assert_eq!(m.apply("/prefix/one/two", Some("/prefix/one")), "/one/two");
        assert_eq!(m.apply("/prefix/one", Some("/prefix/one")), "/one");
        let m = PathModifier::Prefix("/".into());
        assert_eq!(
            m.apply("/strip-prefix/three", Some("/strip-prefix")),
            "/three"
        );
        assert_eq!(m.apply("/strip-prefix", Some("/strip-prefix")), "/");
        assert_eq!(m.apply("/strip-prefix/", Some("/strip-prefix")), "/");
        // The spec's ReplacePrefixMatch table.
        let m = PathModifier::Prefix("/xyz".into());
        assert_eq!(m.apply("/foo/", Some("/foo")), "/xyz/");
        assert_eq!(m.apply("/foo/bar", Some("/foo")), "/xyz/bar");
        let m = PathModifier::Prefix(String::new());
        assert_eq!(m.apply("/foo/bar", Some("/foo")), "/bar");
        assert_eq!(m.apply("/foo", Some("/foo")), "/");
        assert_eq!(m.apply("/foo/", Some("/foo")), "/");
        let m = PathModifier::Prefix("/xyz/".into());
        assert_eq!(m.apply("/foo/bar", Some("/foo")), "/xyz/bar");
        assert_eq!(
            PathModifier::Full("/one".into()).apply("/full/path", None),
            "/one"
        );
    }

    #[test]
    fn redirect_locations() {
        let r = Redirect {
            scheme: None,
            hostname: None,
            port: None,
            path: None,
            status: 302,
        };
        assert_eq!(
            r.location("http", "a.com", 8080, "/p", Some("x=1"), None),
            "http://a.com:8080/p?x=1"
        );
        assert_eq!(
            r.location("http", "a.com", 80, "/p", None, None),
            "http://a.com/p"
        );
        let r = Redirect {
            scheme: Some("https".into()),
            ..r
        };
        assert_eq!(
            r.location("http", "a.com", 8080, "/p", None, None),
            "https://a.com/p"
        );
        let r = Redirect {
            port: Some(8443),
            ..r
        };
        assert_eq!(
            r.location("http", "a.com", 80, "/p", None, None),
            "https://a.com:8443/p"
        );
        let r = Redirect {
            scheme: None,
            hostname: Some("b.com".into()),
            port: None,
            path: Some(PathModifier::Prefix("/new".into())),
            status: 301,
        };
        assert_eq!(
            r.location("http", "a.com", 80, "/old/x", None, Some("/old")),
            "http://b.com/new/x"
        );
    }

    #[test]
    fn header_ops_order() {
        let ops = HeaderOps::compile(&HttpHeaderFilter {
            set: vec![strait_config::httproute::HttpHeader {
                name: "A".into(),
                value: "set".into(),
            }],
            add: vec![strait_config::httproute::HttpHeader {
                name: "B".into(),
                value: "added".into(),
            }],
            remove: vec!["C".into()],
        })
        .expect("valid");
        let mut h = HeaderMap::new();
        h.insert("a", HeaderValue::from_static("old"));
        h.insert("b", HeaderValue::from_static("old"));
        h.insert("c", HeaderValue::from_static("gone"));
        ops.apply(&mut h);
        assert_eq!(h.get_all("a").iter().collect::<Vec<_>>(), ["set"]);
        assert_eq!(h.get_all("b").iter().collect::<Vec<_>>(), ["old", "added"]);
        assert!(h.get("c").is_none());
    }
}
