//! An HTTPRoute rule's `CORS` filter (Gateway API, GEP-1767), compiled,
//! and the answers it gives: a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is answered here, never by the
//! backend; an actual request from an allowed origin gets the response
//! headers that let its page read the answer; a request from any other
//! origin gets none. Every answer of the rule says `Vary: Origin`, since
//! what it carries depends on the request's origin.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use strait_config::httproute::{HttpCorsFilter, Origin};

/// The spec's default `maxAge`.
const DEFAULT_MAX_AGE: i32 = 5;

#[derive(Debug)]
pub struct Cors {
    /// `None`: every origin (`*`).
    origins: Option<Vec<Origin>>,
    credentials: bool,
    methods: List,
    headers: List,
    expose: List,
    max_age: HeaderValue,
}

/// A list the filter names, as its header value.
#[derive(Debug)]
enum List {
    Unset,
    /// `*`.
    Any,
    Named(HeaderValue),
}

/// What the filter says of a request.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// A preflight from an allowed origin: answer it with these headers.
    Preflight(Vec<(HeaderName, HeaderValue)>),
    /// A preflight from an origin not allowed: refuse it.
    Refused,
    /// Any other request: these headers go on its answer.
    Answer(Vec<(HeaderName, HeaderValue)>),
}

impl Cors {
    /// `f`, validated before: an entry that still does not read is left
    /// out (a pattern that allows nothing).
    pub fn compile(f: &HttpCorsFilter) -> Cors {
        let origins = match f.allow_origins.iter().any(|o| o == "*") {
            true => None,
            false => Some(
                f.allow_origins
                    .iter()
                    .filter_map(|o| Origin::parse(o, true).ok())
                    .collect(),
            ),
        };
        let max_age = f.max_age.unwrap_or(DEFAULT_MAX_AGE).max(1);
        Cors {
            origins,
            credentials: f.allow_credentials == Some(true),
            methods: list(&f.allow_methods),
            headers: list(&f.allow_headers),
            expose: list(&f.expose_headers),
            max_age: HeaderValue::from(max_age),
        }
    }

    /// What to do with a request of `method` with `headers`.
    pub fn verdict(&self, method: &Method, headers: &HeaderMap) -> Verdict {
        let mut out = vec![(VARY, HeaderValue::from_static("origin"))];
        let origin = headers.get(ORIGIN);
        let asked = headers.get(ACCESS_CONTROL_REQUEST_METHOD);
        let preflight = method == Method::OPTIONS && origin.is_some() && asked.is_some();
        let Some(origin) = origin.filter(|o| self.allows(o)) else {
            return match preflight {
                true => Verdict::Refused,
                false => Verdict::Answer(out),
            };
        };
        // The origin is named back, never `*`: right with or without
        // credentials, and what Envoy does.
        out.push((ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
        if self.credentials {
            out.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        if let Some(expose) = self.expose.value(self.credentials, None) {
            out.push((ACCESS_CONTROL_EXPOSE_HEADERS, expose));
        }
        if !preflight {
            return Verdict::Answer(out);
        }
        if let Some(methods) = self.methods.value(self.credentials, asked) {
            out.push((ACCESS_CONTROL_ALLOW_METHODS, methods));
        }
        let wanted = headers.get(ACCESS_CONTROL_REQUEST_HEADERS);
        if let Some(allowed) = self.headers.value(self.credentials, wanted) {
            out.push((ACCESS_CONTROL_ALLOW_HEADERS, allowed));
        }
        out.push((ACCESS_CONTROL_MAX_AGE, self.max_age.clone()));
        Verdict::Preflight(out)
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        let Some(patterns) = &self.origins else {
            return true;
        };
        let Ok(origin) = origin.to_str().map(|o| Origin::parse(o, false)) else {
            return false;
        };
        origin.is_ok_and(|o| patterns.iter().any(|p| p.allows(&o)))
    }
}

impl List {
    /// The header's value: `*` cannot stand with credentials (the
    /// browser would not take it), so the request's own `asked` is
    /// named back instead, or nothing.
    fn value(&self, credentials: bool, asked: Option<&HeaderValue>) -> Option<HeaderValue> {
        match self {
            List::Unset => None,
            List::Named(v) => Some(v.clone()),
            List::Any if !credentials => Some(HeaderValue::from_static("*")),
            List::Any => asked.cloned(),
        }
    }
}

fn list(names: &[String]) -> List {
    if names.is_empty() {
        return List::Unset;
    }
    if names.iter().any(|n| n == "*") {
        return List::Any;
    }
    HeaderValue::from_str(&names.join(", ")).map_or(List::Unset, List::Named)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(yaml: &str) -> Cors {
        let f: HttpCorsFilter = serde_saphyr::from_str(yaml).expect("filter");
        Cors::compile(&f)
    }

    fn request(method: Method, pairs: &[(&str, &str)]) -> (Method, HeaderMap) {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        (method, h)
    }

    fn said(v: &Verdict, name: &str) -> Option<String> {
        let list = match v {
            Verdict::Preflight(l) | Verdict::Answer(l) => l,
            Verdict::Refused => return None,
        };
        list.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().expect("text").to_string())
    }

    const SPEC: &str = "allowOrigins: ['https://www.foo.com', 'https://*.bar.com']\nallowMethods: [GET, OPTIONS]\nallowHeaders: [x-header-1, x-header-2]\nexposeHeaders: [x-header-3, x-header-4]\nallowCredentials: true\nmaxAge: 3600\n";

    #[test]
    fn the_spec_s_preflights_and_simple_requests() {
        let c = cors(SPEC);
        for origin in [
            "https://www.foo.com",
            "https://www.bar.com",
            "https://xpto.www.bar.com",
        ] {
            let (m, h) = request(
                Method::OPTIONS,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "GET"),
                    ("access-control-request-headers", "x-header-1, x-header-2"),
                ],
            );
            let v = c.verdict(&m, &h);
            assert!(matches!(v, Verdict::Preflight(_)), "{origin}: {v:?}");
            assert_eq!(
                said(&v, "access-control-allow-origin").as_deref(),
                Some(origin)
            );
            assert_eq!(
                said(&v, "access-control-allow-methods").as_deref(),
                Some("GET, OPTIONS")
            );
            assert_eq!(
                said(&v, "access-control-allow-headers").as_deref(),
                Some("x-header-1, x-header-2")
            );
            assert_eq!(
                said(&v, "access-control-expose-headers").as_deref(),
                Some("x-header-3, x-header-4")
            );
            assert_eq!(said(&v, "access-control-max-age").as_deref(), Some("3600"));
            assert_eq!(
                said(&v, "access-control-allow-credentials").as_deref(),
                Some("true")
            );
            assert_eq!(said(&v, "vary").as_deref(), Some("origin"));
        }
        // Not allowed: another host, the wildcard's own domain, another
        // scheme or port, and `null`.
        for origin in [
            "https://foobar.com",
            "https://bar.com",
            "http://www.foo.com",
            "https://www.foo.com:8443",
            "null",
        ] {
            let (m, h) = request(
                Method::OPTIONS,
                &[("origin", origin), ("access-control-request-method", "GET")],
            );
            assert_eq!(c.verdict(&m, &h), Verdict::Refused, "{origin}");
            let (m, h) = request(Method::GET, &[("origin", origin)]);
            let v = c.verdict(&m, &h);
            assert_eq!(said(&v, "access-control-allow-origin"), None, "{origin}");
            assert_eq!(said(&v, "vary").as_deref(), Some("origin"));
        }
        // The default port is the scheme's.
        let (m, h) = request(Method::GET, &[("origin", "https://www.foo.com:443")]);
        let v = c.verdict(&m, &h);
        assert_eq!(
            said(&v, "access-control-allow-origin").as_deref(),
            Some("https://www.foo.com:443")
        );
        // A simple request: the origin and credentials, no preflight's.
        let (m, h) = request(Method::GET, &[("origin", "https://www.foo.com")]);
        let v = c.verdict(&m, &h);
        assert!(matches!(v, Verdict::Answer(_)));
        assert_eq!(
            said(&v, "access-control-allow-credentials").as_deref(),
            Some("true")
        );
        assert_eq!(said(&v, "access-control-allow-methods"), None);
        assert_eq!(said(&v, "access-control-max-age"), None);
        // OPTIONS without Access-Control-Request-Method is not a preflight.
        let (m, h) = request(Method::OPTIONS, &[("origin", "https://www.foo.com")]);
        assert!(matches!(c.verdict(&m, &h), Verdict::Answer(_)));
    }

    #[test]
    fn wildcards_stand_without_credentials_and_name_the_request_s_with_them() {
        let c = cors(
            "allowOrigins: ['*']\nallowMethods: ['*']\nallowHeaders: ['*']\nexposeHeaders: ['*']\n",
        );
        let (m, h) = request(
            Method::OPTIONS,
            &[
                ("origin", "https://foobar.com:12345"),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "x-a"),
            ],
        );
        let v = c.verdict(&m, &h);
        assert_eq!(
            said(&v, "access-control-allow-origin").as_deref(),
            Some("https://foobar.com:12345")
        );
        assert_eq!(
            said(&v, "access-control-allow-methods").as_deref(),
            Some("*")
        );
        assert_eq!(
            said(&v, "access-control-allow-headers").as_deref(),
            Some("*")
        );
        assert_eq!(
            said(&v, "access-control-expose-headers").as_deref(),
            Some("*")
        );
        assert_eq!(said(&v, "access-control-allow-credentials"), None);
        assert_eq!(
            said(&v, "access-control-max-age").as_deref(),
            Some("5"),
            "the default"
        );

        let c = cors("allowOrigins: ['*']\nallowMethods: ['*']\nallowHeaders: ['*']\nexposeHeaders: ['*']\nallowCredentials: true\n");
        let v = c.verdict(&m, &h);
        assert_eq!(
            said(&v, "access-control-allow-methods").as_deref(),
            Some("PUT")
        );
        assert_eq!(
            said(&v, "access-control-allow-headers").as_deref(),
            Some("x-a")
        );
        assert_eq!(said(&v, "access-control-expose-headers"), None);
        assert_eq!(
            said(&v, "access-control-allow-credentials").as_deref(),
            Some("true")
        );
        let (m, h) = request(
            Method::OPTIONS,
            &[
                ("origin", "https://a.example"),
                ("access-control-request-method", "GET"),
            ],
        );
        let v = c.verdict(&m, &h);
        assert_eq!(
            said(&v, "access-control-allow-headers"),
            None,
            "none asked: none named"
        );
        // Any origin, even `null`, with `*`.
        let (m, h) = request(Method::GET, &[("origin", "null")]);
        assert_eq!(
            said(&c.verdict(&m, &h), "access-control-allow-origin").as_deref(),
            Some("null")
        );
    }
}
