//! Hostname tables with Gateway API wildcard semantics: `*.example.com`
//! matches any name with at least one more label, the most specific entry wins.

use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct HostTable<T> {
    exact: HashMap<String, T>,
    /// Keyed by the suffix with its leading dot: `*.example.com` → `.example.com`.
    wildcard: HashMap<String, T>,
    any: Option<T>,
}

impl<T> Default for HostTable<T> {
    fn default() -> Self {
        HostTable {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: None,
        }
    }
}

impl<T> HostTable<T> {
    /// The entry for `hostname` (`None` is the catch-all), created with `make`.
    pub fn entry(&mut self, hostname: Option<&str>, make: impl FnOnce() -> T) -> &mut T {
        match hostname {
            None => self.any.get_or_insert_with(make),
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => self.wildcard.entry(suffix.to_string()).or_insert_with(make),
                None => self.exact.entry(h.to_string()).or_insert_with(make),
            },
        }
    }

    pub fn contains(&self, hostname: Option<&str>) -> bool {
        match hostname {
            None => self.any.is_some(),
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => self.wildcard.contains_key(suffix),
                None => self.exact.contains_key(h),
            },
        }
    }

    /// Looks up a normalized request host: exact, then the longest wildcard
    /// suffix, then the catch-all.
    pub fn get(&self, host: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        if !self.wildcard.is_empty() {
            for (i, b) in host.bytes().enumerate() {
                if b == b'.' && i > 0 {
                    if let Some(v) = self.wildcard.get(&host[i..]) {
                        return Some(v);
                    }
                }
            }
        }
        self.any.as_ref()
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(self.any.iter())
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.exact
            .values_mut()
            .chain(self.wildcard.values_mut())
            .chain(self.any.iter_mut())
    }

    /// Entries with their hostname as written (`*.x`, or `None` for catch-all).
    pub fn iter(&self) -> impl Iterator<Item = (Option<String>, &T)> {
        self.exact
            .iter()
            .map(|(k, v)| (Some(k.clone()), v))
            .chain(
                self.wildcard
                    .iter()
                    .map(|(k, v)| (Some(format!("*{k}")), v)),
            )
            .chain(self.any.iter().map(|v| (None, v)))
    }
}

/// Lower-cases a `Host` / `:authority` value and drops its port and any
/// trailing dot, so that `Shop.Example.com.:8080` matches `shop.example.com`.
pub fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let without_port = if raw.starts_with('[') {
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        raw.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(raw, |(host, _)| host)
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

/// The hostname a route gets on a listener (Gateway API intersection rules),
/// or `None` when they do not intersect. `Some(None)` means "any host".
pub fn intersect(listener: Option<&str>, route: Option<&str>) -> Option<Option<String>> {
    match (listener, route) {
        (None, r) => Some(r.map(str::to_string)),
        (Some(l), None) => Some(Some(l.to_string())),
        (Some(l), Some(r)) => {
            if l == r {
                Some(Some(l.to_string()))
            } else if wildcard_covers(l, r) {
                Some(Some(r.to_string()))
            } else if wildcard_covers(r, l) {
                Some(Some(l.to_string()))
            } else {
                None
            }
        }
    }
}

/// Does the wildcard `pattern` cover `name` (itself perhaps a narrower wildcard)?
fn wildcard_covers(pattern: &str, name: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    let name_body = name.strip_prefix('*').unwrap_or(name);
    name_body.len() > suffix.len() && name_body.ends_with(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_host_wins() {
        let mut t = HostTable::default();
        *t.entry(None, || 0) = 1;
        *t.entry(Some("*.example.com"), || 0) = 2;
        *t.entry(Some("*.foo.example.com"), || 0) = 3;
        *t.entry(Some("bar.foo.example.com"), || 0) = 4;
        assert_eq!(t.get("bar.foo.example.com"), Some(&4));
        assert_eq!(t.get("baz.foo.example.com"), Some(&3));
        assert_eq!(t.get("a.b.example.com"), Some(&2));
        assert_eq!(
            t.get("example.com"),
            Some(&1),
            "a wildcard needs one more label"
        );
        assert_eq!(t.get("other.org"), Some(&1));
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("Shop.Example.COM:8080"), "shop.example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("example.com"), "example.com");
    }

    #[test]
    fn spec_hostname_intersection() {
        // Examples from the Gateway API spec (HTTPRoute.spec.hostnames).
        let i = |l: Option<&str>, r: Option<&str>| intersect(l, r);
        assert_eq!(
            i(Some("*.example.com"), Some("test.example.com")),
            Some(Some("test.example.com".into()))
        );
        assert_eq!(
            i(Some("test.example.com"), Some("*.example.com")),
            Some(Some("test.example.com".into()))
        );
        assert_eq!(
            i(Some("*.example.com"), Some("*.foo.example.com")),
            Some(Some("*.foo.example.com".into()))
        );
        assert_eq!(i(Some("*.example.com"), Some("example.com")), None);
        assert_eq!(i(Some("foo.example.com"), Some("bar.example.com")), None);
        assert_eq!(i(None, Some("a.b")), Some(Some("a.b".into())));
        assert_eq!(i(Some("a.b"), None), Some(Some("a.b".into())));
        assert_eq!(i(None, None), Some(None));
    }
}
