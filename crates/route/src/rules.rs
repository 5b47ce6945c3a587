//! One hostname's (or one mesh destination's) rules in precedence order,
//! and the lookup of the first that matches a request.
//!
//! A short table is scanned in order. A long one (one large API on one
//! hostname, thousands of path prefixes) is scanned through an index by
//! path: only rules whose path could match are tested, and of those the
//! earliest in precedence order that matches wins, exactly as the scan
//! would find. A request's path can only be matched by an Exact rule of
//! that very path, a Prefix rule for the path cut at one of its `/`s (or
//! whole), or a regular expression; so a lookup costs a hash lookup per
//! prefix length the table has (cut there if the path has a `/` there),
//! instead of a test per rule. Cutting at every `/` of the request would
//! let a path of 64 KiB of slashes hash gigabytes.

use crate::matcher::{PathMatch, RequestView};
use crate::snapshot::Entry;
use std::collections::HashMap;

/// Tables shorter than this are scanned: an index costs more than it saves.
const INDEX_FROM: usize = 32;

#[derive(Debug, Default)]
pub(crate) struct RuleTable {
    entries: Vec<Entry>,
    /// Boxed: most tables have none, and a table sits inline in its host's.
    index: Option<Box<PathIndex>>,
}

/// Positions in the table, ascending, by what the rule's path is.
#[derive(Debug, Default)]
struct PathIndex {
    exact: HashMap<String, Vec<u32>>,
    /// Keyed by the prefix without its trailing slash (`""` for `/`).
    prefix: HashMap<String, Vec<u32>>,
    /// The lengths of `prefix`'s keys, ascending, each once.
    prefix_lens: Vec<usize>,
    regex: Vec<u32>,
}

impl RuleTable {
    /// `entries` must be in precedence order.
    pub fn new(entries: Vec<Entry>) -> Self {
        let indexed = entries.len() >= INDEX_FROM;
        Self::build(entries, indexed)
    }

    fn build(mut entries: Vec<Entry>, indexed: bool) -> Self {
        // Collected in place from a list of bigger items, the vector keeps
        // their room: 10,000 one-route hosts held 7 MiB for 1 MiB of rules.
        entries.shrink_to_fit();
        let index = indexed.then(|| Box::new(PathIndex::of(&entries)));
        RuleTable { entries, index }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The first rule in precedence order that matches `req`.
    pub fn find(&self, req: &RequestView<'_>) -> Option<&Entry> {
        match &self.index {
            None => self.entries.iter().find(|e| e.matcher.matches(req)),
            Some(index) => index
                .first_match(req, &self.entries)
                .map(|i| &self.entries[i]),
        }
    }
}

impl PathIndex {
    fn of(entries: &[Entry]) -> Self {
        let mut index = PathIndex::default();
        for (i, e) in entries.iter().enumerate() {
            // A table of 4 billion rules is not compiled on any machine.
            let at = u32::try_from(i).unwrap_or(u32::MAX);
            match &e.matcher.path {
                PathMatch::Exact(p) => index.exact.entry(p.clone()).or_default().push(at),
                PathMatch::Prefix(p) => index.prefix.entry(p.clone()).or_default().push(at),
                PathMatch::Regex(_) => index.regex.push(at),
            }
        }
        index.prefix_lens = index.prefix.keys().map(String::len).collect();
        index.prefix_lens.sort_unstable();
        index.prefix_lens.dedup();
        index
    }

    /// The least position among rules that match `req`.
    fn first_match(&self, req: &RequestView<'_>, entries: &[Entry]) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut consider = |positions: &[u32]| {
            for &at in positions {
                let at = at as usize;
                if best.is_some_and(|b| b <= at) {
                    // Ascending: nothing later in this list can win.
                    return;
                }
                if entries[at].matcher.matches(req) {
                    best = Some(at);
                    return;
                }
            }
        };
        let path = req.path;
        if let Some(list) = self.exact.get(path) {
            consider(list);
        }
        for &len in &self.prefix_lens {
            // A prefix matches whole segments: the path ends there or
            // goes on with a `/` (which also makes `len` a char boundary).
            let cut = match path.as_bytes().get(len) {
                None if len == path.len() => path,
                Some(b'/') => &path[..len],
                _ => continue,
            };
            if let Some(list) = self.prefix.get(cut) {
                consider(list);
            }
        }
        consider(&self.regex);
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::RouteMatch;
    use crate::snapshot::Rule;
    use http::{HeaderMap, Method};
    use std::sync::Arc;
    use strait_config::httproute::{HttpPathMatch, HttpRouteMatch};

    fn entry(kind: &str, value: &str, method: Option<&str>) -> Entry {
        let m = HttpRouteMatch {
            path: Some(HttpPathMatch {
                kind: kind.into(),
                value: value.into(),
            }),
            method: method.map(str::to_string),
            ..HttpRouteMatch::default()
        };
        Entry {
            matcher: RouteMatch::compile(&m).expect("match"),
            rule: Arc::new(Rule::to(
                Arc::from(value),
                crate::BackendTarget::Invalid(String::new()),
            )),
        }
    }

    const PATHS: [&str; 9] = [
        "/", "/a", "/a/", "/a/b", "/ab", "/a/b/c", "/b", "/a//b", "/c/d",
    ];

    /// Random tables sorted as the compiler sorts them; for random
    /// requests, the index finds what the scan finds.
    #[test]
    fn the_index_finds_what_the_scan_finds() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..500 {
            let n = rng.usize(1..60);
            let mut list: Vec<Entry> = (0..n)
                .map(|_| {
                    let path = PATHS[rng.usize(..PATHS.len())];
                    let method = rng.bool().then_some("GET");
                    match rng.u8(..3) {
                        0 => entry("Exact", path, method),
                        1 => entry("PathPrefix", path, method),
                        _ => entry("RegularExpression", "/a.*", method),
                    }
                })
                .collect();
            list.sort_by(|a, b| a.matcher.precedence_cmp(&b.matcher));
            let table = RuleTable::build(std::mem::take(&mut list), true);
            let headers = HeaderMap::new();
            for path in PATHS.iter().chain(&["/a/b/c/d", "/x", "/a/bc", ""]) {
                for method in [Method::GET, Method::POST] {
                    let req = RequestView {
                        method: &method,
                        path,
                        query: None,
                        headers: &headers,
                    };
                    let by_scan = table.entries.iter().position(|e| e.matcher.matches(&req));
                    let by_index = table
                        .find(&req)
                        .and_then(|e| table.entries.iter().position(|x| std::ptr::eq(x, e)));
                    assert_eq!(by_index, by_scan, "{method} {path}");
                }
            }
        }
    }
    /// A path of 64 KiB of slashes costs a lookup per prefix length the
    /// table has, not per slash, and still finds its rule.
    #[test]
    fn a_long_path_is_cut_only_where_prefixes_are() {
        let list: Vec<Entry> = (0..40)
            .map(|i| entry("PathPrefix", &format!("/p{i}"), None))
            .chain([entry("PathPrefix", "/a", None)])
            .collect();
        let table = RuleTable::build(list, true);
        let index = table.index.as_ref().expect("indexed");
        assert_eq!(index.prefix_lens, [2, 3, 4]);
        let headers = HeaderMap::new();
        let path = format!("/a{}", "/".repeat(64 * 1024));
        let req = RequestView {
            method: &Method::GET,
            path: &path,
            query: None,
            headers: &headers,
        };
        let found = table.find(&req).map(|e| &*e.rule.route);
        assert_eq!(found, Some("/a"));
    }
}
