//! Request matches (path, headers, query parameters, method) and the spec's
//! precedence between them.

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;
use std::cmp::Ordering;
use strait_config::httproute::HttpRouteMatch;

/// What matching needs to know of a request.
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    /// Without its trailing slash; `""` for `/`. Matches whole segments only.
    Prefix(String),
    /// Anchored to the whole path.
    Regex(Regex),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => {
                path.starts_with(p.as_str())
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            }
            PathMatch::Regex(re) => re.is_match(path),
        }
    }
}

#[derive(Debug, Clone)]
enum ValueMatch {
    Exact(String),
    Regex(Regex),
}

impl ValueMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(v) => v == value,
            ValueMatch::Regex(re) => re.is_match(value),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// Length of the path value as written (`/foo/` is longer than `/foo`),
    /// which is what precedence compares.
    path_len: usize,
    method: Option<Method>,
    headers: Vec<(HeaderName, ValueMatch)>,
    query: Vec<(String, ValueMatch)>,
}

fn anchored(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| e.to_string())
}

fn value_match(kind: &str, value: &str) -> Result<ValueMatch, String> {
    match kind {
        "RegularExpression" => anchored(value).map(ValueMatch::Regex),
        _ => Ok(ValueMatch::Exact(value.to_string())),
    }
}

impl RouteMatch {
    /// Compiles a validated `HTTPRouteMatch`.
    pub fn compile(m: &HttpRouteMatch) -> Result<Self, String> {
        let path = m.path.clone().unwrap_or_default();
        let path_len = path.value.len();
        let path = match path.kind.as_str() {
            "Exact" => PathMatch::Exact(path.value),
            "RegularExpression" => PathMatch::Regex(anchored(&path.value)?),
            _ => PathMatch::Prefix(path.value.trim_end_matches('/').to_string()),
        };
        // The spec: of several matches on one header name, only the first counts.
        let mut headers: Vec<(HeaderName, ValueMatch)> = Vec::new();
        for h in &m.headers {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| e.to_string())?;
            if !headers.iter().any(|(n, _)| *n == name) {
                headers.push((name, value_match(&h.kind, &h.value)?));
            }
        }
        let mut query: Vec<(String, ValueMatch)> = Vec::new();
        for q in &m.query_params {
            if !query.iter().any(|(n, _)| *n == q.name) {
                query.push((q.name.clone(), value_match(&q.kind, &q.value)?));
            }
        }
        let method = m
            .method
            .as_deref()
            .map(|s| Method::from_bytes(s.as_bytes()).map_err(|e| e.to_string()))
            .transpose()?;
        Ok(RouteMatch {
            path,
            path_len,
            method,
            headers,
            query,
        })
    }

    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if !self.path.matches(req.path) {
            return false;
        }
        if self.method.as_ref().is_some_and(|m| m != req.method) {
            return false;
        }
        for (name, want) in &self.headers {
            let mut values = req.headers.get_all(name).iter();
            let Some(first) = values.next() else {
                return false;
            };
            // Repeated headers are compared as their comma-joined value (RFC 9110 §5.3).
            let ok = match values.next() {
                None => first.to_str().is_ok_and(|v| want.matches(v)),
                Some(_) => {
                    let joined: Vec<&str> = req
                        .headers
                        .get_all(name)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect();
                    want.matches(&joined.join(","))
                }
            };
            if !ok {
                return false;
            }
        }
        if !self.query.is_empty() {
            let query = req.query.unwrap_or("");
            for (name, want) in &self.query {
                let value = query_value(query, name);
                if !value.is_some_and(|v| want.matches(&v)) {
                    return false;
                }
            }
        }
        true
    }

    /// Gateway API precedence, most important first: Exact path, then
    /// RegularExpression (implementation-specific: strait ranks it between
    /// Exact and PathPrefix, as Envoy Gateway does), then the longest prefix;
    /// then a method match; then more header matches; then more query matches.
    pub fn precedence_cmp(&self, other: &RouteMatch) -> Ordering {
        let rank = |m: &RouteMatch| match m.path {
            PathMatch::Exact(_) => (0, m.path_len),
            PathMatch::Regex(_) => (1, m.path_len),
            PathMatch::Prefix(_) => (2, m.path_len),
        };
        let (a, b) = (rank(self), rank(other));
        a.0.cmp(&b.0)
            .then(b.1.cmp(&a.1))
            .then(other.method.is_some().cmp(&self.method.is_some()))
            .then(other.headers.len().cmp(&self.headers.len()))
            .then(other.query.len().cmp(&self.query.len()))
    }
}

/// The first value of query parameter `name`, percent-decoded.
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    cookies(headers).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// The request's cookies, names and values trimmed (as backends read
/// them).
pub fn cookies(headers: &http::HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_config::httproute::{HttpHeaderMatch, HttpPathMatch};

    fn path(kind: &str, value: &str) -> RouteMatch {
        RouteMatch::compile(&HttpRouteMatch {
            path: Some(HttpPathMatch {
                kind: kind.into(),
                value: value.into(),
            }),
            ..Default::default()
        })
        .expect("valid match")
    }

    fn get<'a>(p: &'a str, q: Option<&'a str>, h: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            method: &Method::GET,
            path: p,
            query: q,
            headers: h,
        }
    }

    #[test]
    fn prefix_matches_whole_segments() {
        let h = HeaderMap::new();
        let m = path("PathPrefix", "/foo");
        for (p, want) in [
            ("/foo", true),
            ("/foo/", true),
            ("/foo/bar", true),
            ("/foobar", false),
            ("/", false),
        ] {
            assert_eq!(m.matches(&get(p, None, &h)), want, "{p}");
        }
        let m = path("PathPrefix", "/foo/");
        assert!(
            m.matches(&get("/foo", None, &h)),
            "trailing slash of a prefix is ignored"
        );
        assert!(path("PathPrefix", "/").matches(&get("/anything", None, &h)));
        assert!(!path("Exact", "/foo").matches(&get("/foo/", None, &h)));
        let m = path("RegularExpression", "/v[0-9]+/.*");
        assert!(m.matches(&get("/v2/x", None, &h)));
        assert!(!m.matches(&get("/api/v2/x", None, &h)), "regex is anchored");
    }

    #[test]
    fn headers_queries_methods() {
        let m = RouteMatch::compile(&HttpRouteMatch {
            headers: vec![
                HttpHeaderMatch {
                    kind: "Exact".into(),
                    name: "Version".into(),
                    value: "two".into(),
                },
                HttpHeaderMatch {
                    kind: "Exact".into(),
                    name: "version".into(),
                    value: "ignored".into(),
                },
            ],
            query_params: vec![HttpHeaderMatch {
                kind: "RegularExpression".into(),
                name: "q".into(),
                value: "a.c".into(),
            }],
            method: Some("GET".into()),
            ..Default::default()
        })
        .expect("valid");
        let mut h = HeaderMap::new();
        h.insert("version", "two".parse().expect("value"));
        assert!(m.matches(&get("/", Some("x=1&q=abc"), &h)));
        assert!(
            m.matches(&get("/", Some("q=a%2Fc"), &h)),
            "query values are decoded"
        );
        assert!(!m.matches(&get("/", Some("q=abcd"), &h)));
        assert!(!m.matches(&get("/", None, &h)));
        let post = RequestView {
            method: &Method::POST,
            path: "/",
            query: Some("q=abc"),
            headers: &h,
        };
        assert!(!m.matches(&post));
        h.insert("version", "three".parse().expect("value"));
        assert!(!m.matches(&get("/", Some("q=abc"), &h)));
    }

    #[test]
    fn precedence_follows_the_spec() {
        let exact = path("Exact", "/a");
        let long = path("PathPrefix", "/a/b");
        let short = path("PathPrefix", "/a");
        let regex = path("RegularExpression", "/a.*");
        let mut with_header = short.clone();
        with_header
            .headers
            .push((HeaderName::from_static("x"), ValueMatch::Exact("1".into())));
        let mut with_method = short.clone();
        with_method.method = Some(Method::GET);
        let mut all = [&short, &with_header, &long, &regex, &exact, &with_method];
        all.sort_by(|a, b| a.precedence_cmp(b));
        let order: Vec<String> = all
            .iter()
            .map(|m| format!("{:?}/{}/{}", m.path, m.method.is_some(), m.headers.len()))
            .collect();
        let want: Vec<String> = [&exact, &regex, &long, &with_method, &with_header, &short]
            .iter()
            .map(|m| format!("{:?}/{}/{}", m.path, m.method.is_some(), m.headers.len()))
            .collect();
        assert_eq!(order, want);
    }
}
