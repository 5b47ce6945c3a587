//! Session persistence (GEP-1619) compiled, and the pure reading and
//! writing of a session: the requests of one session go to the rule's
//! backend and endpoint that answered its first, whatever the weights
//! and the balancer would say, for as long as the endpoint is there and
//! the session has not timed out. The session is a cookie (default) or a
//! header the client sends back. Its value names the backend by its
//! place in the rule and the endpoint by a 64-bit hash of its address
//! (not the address), with the session's start and last use in seconds:
//! no replica stores anything, so every replica reads every session.
//! The value is not signed: a client can only choose among the rule's
//! own endpoints, as with Envoy's stateful sessions.

use http::header::{HeaderName, HeaderValue, SET_COOKIE};
use http::HeaderMap;
use std::net::SocketAddr;
use strait_config::httproute::SessionPersistence;

#[derive(Debug)]
pub struct Session {
    name: String,
    kind: Kind,
    /// Seconds from the session's start it ends (`absoluteTimeout`).
    absolute: Option<u64>,
    /// Seconds without a request it ends (`idleTimeout`).
    idle: Option<u64>,
}

#[derive(Debug)]
enum Kind {
    /// `permanent`: with `Max-Age` (the absolute timeout).
    Cookie {
        permanent: bool,
    },
    Header(HeaderName),
}

/// Where a session's requests go, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sticky {
    /// The backend's place in the rule's `backendRefs`.
    pub backend: u16,
    /// [`endpoint_id`] of the endpoint.
    pub endpoint: u64,
    /// When the session began (Unix seconds).
    pub since: u64,
}

impl Session {
    /// `spec` (validated) of rule `rule` of route `route`: without a
    /// `sessionName`, a name of the rule's own, the same on every replica.
    pub fn compile(spec: &SessionPersistence, route: &str, rule: usize) -> Session {
        let name = spec.session_name.clone().unwrap_or_else(|| {
            let id = fnv(format!("{route}#{rule}").as_bytes());
            format!("strait-session-{:08x}", id as u32)
        });
        let seconds = |d: &Option<String>| {
            d.as_deref()
                .and_then(|t| strait_config::duration::parse(t).ok())
                .map(|d| d.as_secs().max(1))
        };
        let kind = match spec.header() {
            true => HeaderName::from_bytes(name.as_bytes())
                .map(Kind::Header)
                .unwrap_or(Kind::Cookie { permanent: false }),
            false => Kind::Cookie {
                permanent: spec.permanent(),
            },
        };
        Session {
            kind,
            absolute: seconds(&spec.absolute_timeout),
            idle: seconds(&spec.idle_timeout),
            name,
        }
    }

    /// The session `headers` carry, if it has not timed out at `now`.
    pub fn read(&self, headers: &HeaderMap, now: u64) -> Option<Sticky> {
        let value = match &self.kind {
            Kind::Cookie { .. } => crate::cookie(headers, &self.name)?,
            Kind::Header(name) => headers.get(name)?.to_str().ok()?,
        };
        let mut parts = value.split('.').map(|p| u64::from_str_radix(p, 16).ok());
        let (backend, endpoint, since, seen) = (
            parts.next()??,
            parts.next()??,
            parts.next()??,
            parts.next()??,
        );
        if parts.next().is_some() || since > now {
            return None;
        }
        // To the second: a session ends once more whole seconds than its
        // limit have passed.
        let within = |limit: Option<u64>, from: u64| limit.is_none_or(|l| now - from.min(now) <= l);
        (within(self.absolute, since) && within(self.idle, seen)).then_some(Sticky {
            backend: u16::try_from(backend).ok()?,
            endpoint,
            since,
        })
    }

    /// The header that keeps the session on `backend`'s `endpoint` (an
    /// [`endpoint_id`]) after a request that carried `held`: a new session
    /// when the request had none or went elsewhere; the same one renewed
    /// when it has an idle timeout to push back; `None` when nothing
    /// changed. A cookie's `Path` is `path`; `secure` adds `Secure`.
    pub fn write(
        &self,
        held: Option<Sticky>,
        (backend, endpoint): (u16, u64),
        now: u64,
        (path, secure): (&str, bool),
    ) -> Option<(HeaderName, HeaderValue)> {
        let kept = held.filter(|h| h.backend == backend && h.endpoint == endpoint);
        if kept.is_some() && self.idle.is_none() {
            return None;
        }
        let since = kept.map_or(now, |k| k.since);
        let value = format!("{backend:x}.{endpoint:x}.{since:x}.{now:x}");
        match &self.kind {
            Kind::Header(name) => Some((name.clone(), HeaderValue::from_str(&value).ok()?)),
            Kind::Cookie { permanent } => {
                let mut cookie = format!("{}={value}; Path={path}; HttpOnly", self.name);
                if let (true, Some(limit)) = (permanent, self.absolute) {
                    let left = limit.saturating_sub(now - since);
                    cookie.push_str(&format!("; Max-Age={left}"));
                }
                if secure {
                    cookie.push_str("; Secure");
                }
                Some((SET_COOKIE, HeaderValue::from_str(&cookie).ok()?))
            }
        }
    }

    /// A header session's answer replaces any the backend gave; cookies
    /// are added to the backend's.
    pub fn replaces(&self) -> bool {
        matches!(self.kind, Kind::Header(_))
    }
}

/// An endpoint as a session names it: the same on every replica, and not
/// its address (which is not a secret either: a hash of an address can be
/// searched for).
pub fn endpoint_id(addr: &SocketAddr) -> u64 {
    let port = addr.port().to_be_bytes();
    match addr {
        SocketAddr::V4(a) => fnv(&[&a.ip().octets()[..], &port].concat()),
        SocketAddr::V6(a) => fnv(&[&a.ip().octets()[..], &port].concat()),
    }
}

/// FNV-1a, 64 bits: stable across processes and versions, unlike the
/// standard library's hasher.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(yaml: &str) -> Session {
        let spec: SessionPersistence = serde_saphyr::from_str(yaml).expect("spec");
        assert!(spec.check("s").is_empty(), "{:?}", spec.check("s"));
        Session::compile(&spec, "shop/api", 0)
    }

    fn carrying(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
        h
    }

    /// The `name=value` of a Set-Cookie, and its attributes.
    fn cookie(h: &(HeaderName, HeaderValue)) -> (String, String) {
        let text = h.1.to_str().expect("text");
        let (pair, attributes) = text.split_once("; ").expect("attributes");
        (pair.to_string(), attributes.to_string())
    }

    #[test]
    fn a_cookie_session_is_written_once_and_read_back_until_it_times_out() {
        let s = session("absoluteTimeout: 1h\n");
        let now = 1_000_000;
        let set = s
            .write(None, (1, 0xabc), now, ("/api", false))
            .expect("new session");
        assert_eq!(set.0, SET_COOKIE);
        let (pair, attributes) = cookie(&set);
        assert_eq!(
            attributes, "Path=/api; HttpOnly",
            "a session cookie: no Max-Age"
        );
        let (name, value) = pair.split_once('=').expect("pair");
        assert!(name.starts_with("strait-session-"), "{name}");
        let back = s.read(&carrying("cookie", &pair), now + 10).expect("read");
        assert_eq!(
            back,
            Sticky {
                backend: 1,
                endpoint: 0xabc,
                since: now
            }
        );
        assert_eq!(
            s.write(Some(back), (1, 0xabc), now + 10, ("/api", false)),
            None,
            "unchanged"
        );
        // The endpoint gone: a new session elsewhere.
        let moved = s
            .write(Some(back), (0, 0xdef), now + 20, ("/api", true))
            .expect("moved");
        assert!(cookie(&moved).1.ends_with("; Secure"));
        assert!(
            s.read(&carrying("cookie", &pair), now + 3600).is_some(),
            "to the second"
        );
        assert!(
            s.read(&carrying("cookie", &pair), now + 3601).is_none(),
            "past absoluteTimeout"
        );
        let future = format!("1.2.{:x}.0", now + 99);
        for bad in ["x", "1.2.3", "1.2.3.4.5", "1.zz.3.4", future.as_str()] {
            let h = carrying("cookie", &format!("{name}={bad}"));
            assert!(s.read(&h, now).is_none(), "{bad}: {value}");
        }
    }

    #[test]
    fn an_idle_timeout_is_pushed_back_by_each_request() {
        let s = session("idleTimeout: 30s\ncookieConfig: {lifetimeType: Session}\n");
        let now = 5_000;
        let set = s.write(None, (0, 7), now, ("/", false)).expect("new");
        let pair = cookie(&set).0;
        let held = s
            .read(&carrying("cookie", &pair), now + 30)
            .expect("within");
        let renewed = s
            .write(Some(held), (0, 7), now + 30, ("/", false))
            .expect("renewed");
        let pair2 = cookie(&renewed).0;
        let again = s
            .read(&carrying("cookie", &pair2), now + 60)
            .expect("pushed back");
        assert_eq!(again.since, now, "the same session");
        assert!(
            s.read(&carrying("cookie", &pair), now + 31).is_none(),
            "idle too long"
        );
    }

    #[test]
    fn permanent_cookies_say_their_max_age_and_header_sessions_are_headers() {
        let s = session("absoluteTimeout: 10m\ncookieConfig: {lifetimeType: Permanent}\nsessionName: JSESSIONID\n");
        let set = s.write(None, (0, 1), 100, ("/", false)).expect("new");
        let (pair, attributes) = cookie(&set);
        assert!(pair.starts_with("JSESSIONID="));
        assert_eq!(attributes, "Path=/; HttpOnly; Max-Age=600");
        let s = session("type: Header\nsessionName: x-session\n");
        let set = s.write(None, (2, 9), 100, ("/", false)).expect("new");
        assert_eq!(set.0, "x-session");
        let back = s.read(&carrying("x-session", set.1.to_str().expect("text")), 200);
        assert_eq!(back.map(|b| (b.backend, b.endpoint)), Some((2, 9)));
        assert!(s.replaces());
    }

    #[test]
    fn bad_settings_are_named_by_field() {
        let spec: SessionPersistence = serde_saphyr::from_str(
            "type: Query\ncookieConfig: {lifetimeType: Permanent}\nidleTimeout: soon\nsessionName: 'a b'\n",
        )
        .expect("spec");
        let found: Vec<String> = spec.check("r").into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            found,
            [
                "r.type",
                "r.absoluteTimeout",
                "r.idleTimeout",
                "r.sessionName"
            ]
        );
    }

    #[test]
    fn endpoint_ids_are_stable() {
        let a: SocketAddr = "10.0.0.1:8080".parse().expect("addr");
        assert_eq!(endpoint_id(&a), endpoint_id(&a));
        assert_ne!(
            endpoint_id(&a),
            endpoint_id(&"10.0.0.2:8080".parse().expect("addr"))
        );
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c, "FNV-1a's published value");
    }
}
