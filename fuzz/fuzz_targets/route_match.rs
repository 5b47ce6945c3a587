//! Random HTTPRoute tables against random requests. The rule strait picks
//! must be the one Gateway API precedence picks, computed here a second
//! way from the same input: among every (route, rule, match) that matches,
//! Exact path first, then RegularExpression, then the longest PathPrefix;
//! then a method; then more headers; then more query parameters; ties to
//! the route first by name, then the rule and match written first.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use strait_config::Source;
use strait_route::{compile, CompileOptions, ListenKey, RequestView};

/// Small alphabets, so that requests often match what the routes say.
const SEGMENTS: [&str; 6] = ["a", "b", "ab", "a.b", "%61", "x-y"];
const METHODS: [&str; 4] = ["GET", "POST", "DELETE", "PATCH"];
const NAMES: [&str; 3] = ["x-a", "x-b", "X-A"];
const VALUES: [&str; 4] = ["1", "2", "a b", ""];
const REGEXES: [&str; 5] = ["/a.*", "/[ab]+", "/a/b", ".*", "/(a|b)/.*"];

enum PathKind {
    Exact,
    Prefix,
    Regex(u8),
}

impl Path {
    fn kind(&self) -> PathKind {
        match (self.kind_roll < 32, self.prefix) {
            (true, _) => PathKind::Regex(self.regex),
            (false, true) => PathKind::Prefix,
            (false, false) => PathKind::Exact,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Path {
    /// Below 32 (one in eight): the regular expression `regex`; compiling
    /// one costs more than the rest of a table, so they are kept rarer.
    kind_roll: u8,
    regex: u8,
    prefix: bool,
    segments: Vec<u8>,
    trailing_slash: bool,
}

#[derive(Arbitrary, Debug)]
struct Match {
    path: Option<Path>,
    method: Option<u8>,
    headers: Vec<(u8, u8)>,
    query: Vec<(u8, u8)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Routes, each a list of rules, each a list of matches.
    routes: Vec<Vec<Vec<Match>>>,
    request_path: Path,
    method: u8,
    headers: Vec<(u8, u8)>,
    query: Vec<(u8, u8)>,
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[i as usize % list.len()]
}

fn path_text(p: &Path) -> String {
    if let PathKind::Regex(i) = p.kind() {
        return pick(&REGEXES, i).to_string();
    }
    let mut s: String = p
        .segments
        .iter()
        .take(4)
        .map(|&i| format!("/{}", pick(&SEGMENTS, i)))
        .collect();
    if s.is_empty() || p.trailing_slash {
        s.push('/');
    }
    s
}

/// What the fuzzer wrote, with the values chosen; the matches are
/// compiled from it twice (strait's JSON, and the model below).
struct Written {
    kind: &'static str,
    value: String,
    method: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
    query: Vec<(&'static str, &'static str)>,
}

fn written(m: &Match) -> Written {
    let pairs = |l: &[(u8, u8)]| -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for &(n, v) in l.iter().take(3) {
            let name = pick(&NAMES, n);
            // Gateway API: a name listed twice is invalid; keep the first.
            if !out.iter().any(|(o, _)| o.eq_ignore_ascii_case(name)) {
                out.push((name, pick(&VALUES, v)));
            }
        }
        out
    };
    let (kind, value) = match &m.path {
        None => ("PathPrefix", "/".to_string()),
        Some(p) => (
            match p.kind() {
                PathKind::Exact => "Exact",
                PathKind::Prefix => "PathPrefix",
                PathKind::Regex(_) => "RegularExpression",
            },
            path_text(p),
        ),
    };
    Written {
        kind,
        value,
        method: m.method.map(|i| pick(&METHODS, i)),
        headers: pairs(&m.headers),
        // Query names are case-sensitive; keep the model to lower case.
        query: pairs(&m.query)
            .into_iter()
            .map(|(n, v)| (if n == "X-A" { "x-c" } else { n }, v))
            .collect(),
    }
}

fn to_json(w: &Written) -> Value {
    let list = |l: &[(&str, &str)]| -> Vec<Value> {
        l.iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect()
    };
    let mut m = json!({
        "path": {"type": w.kind, "value": w.value},
        "headers": list(&w.headers),
        "queryParams": list(&w.query),
    });
    if let Some(method) = w.method {
        m["method"] = json!(method);
    }
    m
}

fn documents(routes: &[Vec<Vec<Written>>]) -> strait_config::ResourceSet {
    let mut docs = vec![
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "c"},
               "spec": {"controllerName": strait_config::DEFAULT_CONTROLLER_NAME}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "g", "namespace": "default"},
               "spec": {"gatewayClassName": "c",
                        "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "svc", "namespace": "default"},
               "spec": {"ports": [{"port": 80}]}}),
    ];
    for (r, rules) in routes.iter().enumerate() {
        let rules: Vec<Value> = rules
            .iter()
            .map(|ms| {
                json!({"matches": ms.iter().map(to_json).collect::<Vec<_>>(),
                       "backendRefs": [{"name": "svc", "port": 80}]})
            })
            .collect();
        docs.push(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": format!("r{r}"), "namespace": "default"},
            "spec": {"parentRefs": [{"name": "g"}], "rules": rules}}),
        );
    }
    let mut set = strait_config::ResourceSet::default();
    for (i, d) in docs.into_iter().enumerate() {
        let source = Source {
            file: std::path::Path::new("fuzz.yaml").into(),
            doc: i,
        };
        set.extend(strait_config::parse_value(&source, "", d));
    }
    set
}

/// The only escape the requests here carry.
fn percent_decode(s: &str) -> String {
    s.replace("%61", "a")
}

struct Request {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    query: Vec<(&'static str, &'static str)>,
}

/// The written patterns, anchored, compiled once.
fn anchored(pattern: &str) -> &'static regex::Regex {
    static ALL: std::sync::OnceLock<Vec<regex::Regex>> = std::sync::OnceLock::new();
    let all = ALL.get_or_init(|| {
        REGEXES
            .iter()
            .map(|p| regex::Regex::new(&format!("^(?:{p})$")).expect("a pattern"))
            .collect()
    });
    let i = REGEXES
        .iter()
        .position(|p| *p == pattern)
        .expect("a written pattern");
    &all[i]
}

/// The model's match: Gateway API's words, not strait's code.
fn model_matches(w: &Written, req: &Request) -> bool {
    let path_ok = match w.kind {
        "Exact" => req.path == w.value,
        "PathPrefix" => {
            let prefix = w.value.trim_end_matches('/');
            req.path == prefix
                || (req.path.starts_with(prefix) && req.path[prefix.len()..].starts_with('/'))
        }
        _ => anchored(&w.value).is_match(&req.path),
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let query = |name: &str| {
        req.query
            .iter()
            .find(|(n, _)| percent_decode(n) == name)
            .map(|(_, v)| percent_decode(v))
    };
    path_ok
        && w.method.is_none_or(|m| m == req.method)
        && w.headers.iter().all(|(n, v)| header(n) == Some(*v))
        && w.query.iter().all(|(n, v)| query(n).as_deref() == Some(*v))
}

fn model_rank(
    w: &Written,
) -> (
    u8,
    std::cmp::Reverse<usize>,
    bool,
    std::cmp::Reverse<usize>,
    std::cmp::Reverse<usize>,
) {
    let kind = match w.kind {
        "Exact" => 0,
        "RegularExpression" => 1,
        _ => 2,
    };
    use std::cmp::Reverse;
    (
        kind,
        Reverse(w.value.len()),
        w.method.is_none(),
        Reverse(w.headers.len()),
        Reverse(w.query.len()),
    )
}

fuzz_target!(|input: Input| {
    let routes: Vec<Vec<Vec<Written>>> = input
        .routes
        .iter()
        .take(4)
        .map(|rules| {
            rules
                .iter()
                .take(3)
                .map(|ms| ms.iter().take(3).map(written).collect())
                .collect()
        })
        .collect();
    let set = documents(&routes);
    assert!(!set.has_errors(), "{:?}", set.problems);
    let options = CompileOptions {
        controller_name: strait_config::DEFAULT_CONTROLLER_NAME.to_string(),
    };
    let (snapshot, problems) = compile(&set.documents, &options, std::time::UNIX_EPOCH);
    assert!(
        problems.iter().all(|p| !p.is_error()),
        "valid routes refused: {problems:?}"
    );
    let mut path = path_text(&input.request_path);
    if matches!(input.request_path.kind(), PathKind::Regex(_)) {
        path = "/a/b".into();
    }
    let query: Vec<(&str, &str)> = input
        .query
        .iter()
        .take(3)
        .map(|&(n, v)| (pick(&["x-a", "x-b", "x-c", "x-%61"], n), pick(&VALUES, v)))
        .filter(|(_, v)| !v.contains(' '))
        .collect();
    let req = Request {
        method: pick(&METHODS, input.method),
        path,
        headers: input
            .headers
            .iter()
            .take(3)
            .map(|&(n, v)| (pick(&NAMES, n), pick(&VALUES, v)))
            .collect(),
        query,
    };
    let mut headers = HeaderMap::new();
    for (n, v) in &req.headers {
        let name = HeaderName::from_bytes(n.as_bytes()).expect("a header name");
        // The model reads the first value of a name; so does the request.
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(v));
        }
    }
    let query_text: String = req
        .query
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let method = Method::from_bytes(req.method.as_bytes()).expect("a method");
    let view = RequestView {
        method: &method,
        path: &req.path,
        query: (!query_text.is_empty()).then_some(query_text.as_str()),
        headers: &headers,
    };
    let got = snapshot
        .route(
            ListenKey {
                ip: None,
                port: 8080,
            },
            "example.com",
            &view,
        )
        .map(|m| (m.rule.route.to_string(), m.rule.index));

    let mut candidates = Vec::new();
    for (r, rules) in routes.iter().enumerate() {
        for (i, ms) in rules.iter().enumerate() {
            // No match at all is one match of every path.
            let default = [Written {
                kind: "PathPrefix",
                value: "/".into(),
                method: None,
                headers: vec![],
                query: vec![],
            }];
            let ms: &[Written] = if ms.is_empty() { &default } else { ms };
            for (k, w) in ms.iter().enumerate() {
                if model_matches(w, &req) {
                    candidates.push((model_rank(w), format!("r{r}"), i, k));
                }
            }
        }
    }
    candidates.sort();
    let want = candidates
        .first()
        .map(|(_, route, i, _)| (format!("default/{route}"), *i));
    assert_eq!(
        got, want,
        "request {:?} {:?} {:?} {:?}",
        req.method, req.path, req.headers, req.query
    );
});
