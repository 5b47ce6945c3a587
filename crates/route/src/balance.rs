//! Choosing an endpoint and keeping score: power of two choices over peak
//! EWMA latency (the default, as Linkerd), round robin, least request, or
//! consistent hashing (rendezvous, keyed by endpoint address) on a header or
//! cookie for session affinity; a circuit breaker on requests in flight;
//! outlier detection that ejects an endpoint after consecutive failures for
//! a growing time, never more than a share of the endpoints.
//!
//! Failures cost: a try that failed without an answer (refused, reset,
//! timed out) is scored as [`FAILURE_PENALTY`] of latency, which fades as
//! the average does, so a fast-failing endpoint is never the cheapest; and
//! with no policy at all, an endpoint whose connection fails is ejected for
//! [`CONNECT_EJECTION`] (nginx's `max_fails=1 fail_timeout=10s`). All state
//! is atomics on the cluster: the hot path takes no lock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Latency assumed of an endpoint with requests in flight before its first
/// answer (`DEFAULT_RTT`).
pub const DEFAULT_RTT: Duration = Duration::from_millis(5);
/// How fast the latency average forgets (`EWMA_DECAY`).
pub const EWMA_DECAY: Duration = Duration::from_secs(10);
/// Outlier detection defaults, as Envoy's.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 50;
/// Latency a failed try is scored as (`FAILURE_PENALTY`).
pub const FAILURE_PENALTY: Duration = Duration::from_secs(1);
/// First ejection of an endpoint whose connection failed, with or without
/// a policy (`CONNECT_EJECTION`); it doubles at each ejection after.
pub const CONNECT_EJECTION: Duration = Duration::from_secs(10);
/// Longest ejection (`MAX_EJECTION`), as Envoy's `max_ejection_time`.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// How a try at an endpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer that is not a server error.
    Answered,
    /// A 5xx answer: counts for outlier detection, not for latency.
    ServerError,
    /// No answer: reset, broken or timed out after it was sent.
    Failed,
    /// No connection could be made.
    ConnectFailed,
    /// Given up before it ended (the client left, the request timed out):
    /// says nothing of the endpoint.
    Abandoned,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbKind {
    PeakEwma,
    RoundRobin,
    LeastRequest,
    /// Rendezvous hashing of the request's key (a header or cookie value).
    ConsistentHash(HashKey),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Header(http::HeaderName),
    Cookie(String),
}

/// A circuit breaker's limits; `None` is no limit.
#[derive(Debug)]
pub struct Breaker {
    pub max_requests: Option<u32>,
    pub max_connections: Option<u32>,
    /// Requests waiting for a connection under `max_connections`.
    pub max_pending: u32,
    /// `namespace/name` of the policy, for the overflow answer.
    pub policy: String,
}

/// Requests that may wait for a connection under `maxConnections` when
/// the policy does not say (Envoy's default).
pub const DEFAULT_MAX_PENDING: u32 = 1024;

#[derive(Debug, Clone, Copy)]
pub struct Outlier {
    pub consecutive: u32,
    pub base: Duration,
    pub max_percent: u32,
}

/// A cluster's traffic settings (from a BackendTrafficPolicy), and the
/// retry budget its callers share.
#[derive(Debug)]
pub struct Traffic {
    pub lb: LbKind,
    pub breaker: Option<Breaker>,
    pub outlier: Option<Outlier>,
    pub budget: crate::RetryBudget,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            lb: LbKind::PeakEwma,
            breaker: None,
            outlier: None,
            budget: Default::default(),
        }
    }
}

/// One endpoint's score.
#[derive(Debug, Default)]
pub(crate) struct EndpointStats {
    active: AtomicU32,
    /// Peak-EWMA latency, µs; 0 until the first answer.
    ewma_us: AtomicU64,
    /// When `ewma_us` was last updated, µs after the cluster's start.
    stamp_us: AtomicU64,
    failures: AtomicU32,
    /// Ejected until this many ms after the cluster's start.
    ejected_until_ms: AtomicU64,
    ejections: AtomicU32,
}

/// The state of a cluster's endpoints, beside their addresses.
#[derive(Debug)]
pub(crate) struct Scores {
    start: Instant,
    pub(crate) stats: Vec<EndpointStats>,
    /// Each endpoint's address, hashed: rendezvous weights depend on who an
    /// endpoint is, not where it sits in the list.
    keys: Vec<u64>,
    /// Requests in flight to the whole cluster (the breaker's count).
    active: AtomicU32,
    next: AtomicU64,
}

impl Scores {
    pub fn new(keys: Vec<u64>) -> Self {
        Scores {
            start: Instant::now(),
            stats: keys.iter().map(|_| EndpointStats::default()).collect(),
            keys,
            active: AtomicU32::new(0),
            next: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.now_us() / 1000
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn eligible(&self, i: usize, now_ms: u64) -> bool {
        self.stats[i].ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// Round robin over eligible endpoints (all, if every one is ejected:
    /// better a doubtful endpoint than none, Envoy's panic mode).
    pub fn round_robin(&self, avoid: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.stats.len();
        if n == 0 {
            return None;
        }
        let now = self.now_ms();
        let start = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let mut fallback = None;
        for k in 0..n {
            let i = (start + k) % n;
            if avoid(i) {
                continue;
            }
            if self.eligible(i, now) {
                return Some(i);
            }
            fallback.get_or_insert(i);
        }
        fallback.or(Some(start % n))
    }

    fn cost(&self, i: usize, lb: &LbKind, now_us: u64) -> u64 {
        let s = &self.stats[i];
        let active = u64::from(s.active.load(Ordering::Relaxed));
        match lb {
            LbKind::LeastRequest => active,
            _ => match s.ewma_us.load(Ordering::Relaxed) {
                // Never answered yet: free while idle, so that a new
                // endpoint is measured at once rather than starved by a
                // known fast one; priced at DEFAULT_RTT per request in flight.
                0 => (DEFAULT_RTT.as_micros() as u64).saturating_mul(active),
                // The average fades while nothing is heard (as tower's
                // PeakEwma), so a penalised endpoint is tried again in time.
                ewma => {
                    let quiet = now_us.saturating_sub(s.stamp_us.load(Ordering::Relaxed));
                    let w = (-(quiet as f64) / EWMA_DECAY.as_micros() as f64).exp();
                    ((ewma as f64 * w) as u64).saturating_mul(active + 1)
                }
            },
        }
    }

    /// Chooses an endpoint by the cluster's policy; `hash` keys consistent
    /// hashing, `avoid` excludes endpoints already tried.
    pub fn choose(
        &self,
        lb: &LbKind,
        hash: Option<u64>,
        avoid: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = self.stats.len();
        let now_us = self.now_us();
        let now = now_us / 1000;
        let candidates = || (0..n).filter(|&i| !avoid(i) && self.eligible(i, now));
        match (lb, hash) {
            (LbKind::RoundRobin, _) | (LbKind::ConsistentHash(_), None) => self.round_robin(avoid),
            (LbKind::ConsistentHash(_), Some(h)) => candidates()
                .max_by_key(|&i| mix(h ^ self.keys[i]))
                .or_else(|| self.round_robin(avoid)),
            (LbKind::PeakEwma | LbKind::LeastRequest, _) => {
                let eligible = candidates().count();
                if eligible <= 1 {
                    return candidates().next().or_else(|| self.round_robin(avoid));
                }
                // Two distinct random choices among the eligible ones.
                let a = fastrand::usize(..eligible);
                let mut b = fastrand::usize(..eligible - 1);
                if b >= a {
                    b += 1;
                }
                let a = candidates().nth(a)?;
                let b = candidates().nth(b)?;
                Some(if self.cost(b, lb, now_us) < self.cost(a, lb, now_us) {
                    b
                } else {
                    a
                })
            }
        }
    }

    /// Takes a breaker slot; `false` when `max` requests are in flight.
    pub fn admit(&self, max: Option<u32>) -> bool {
        let now = self.active.fetch_add(1, Ordering::AcqRel);
        if max.is_some_and(|m| now >= m) {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn release(&self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn begin(&self, i: usize) {
        self.stats[i].active.fetch_add(1, Ordering::Relaxed);
    }

    pub fn end(&self, i: usize) {
        self.stats[i].active.fetch_sub(1, Ordering::Relaxed);
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    /// Records a try's latency (peak EWMA) and outcome; returns true
    /// when this failure ejected the endpoint.
    pub fn record(
        &self,
        i: usize,
        rtt: Duration,
        outcome: Outcome,
        outlier: Option<&Outlier>,
    ) -> bool {
        let s = &self.stats[i];
        let rtt = match outcome {
            Outcome::Abandoned => return false,
            Outcome::Failed | Outcome::ConnectFailed => rtt.max(FAILURE_PENALTY),
            Outcome::Answered | Outcome::ServerError => rtt,
        };
        self.observe(s, rtt);
        if outcome == Outcome::Answered {
            s.failures.store(0, Ordering::Relaxed);
            return false;
        }
        let failures = s.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let by_policy = outlier.is_some_and(|o| failures >= o.consecutive);
        let connect = outcome == Outcome::ConnectFailed;
        if !by_policy && !connect {
            return false;
        }
        let (base, max_percent) = match outlier {
            Some(o) if by_policy => (o.base, o.max_percent),
            _ => (CONNECT_EJECTION, DEFAULT_MAX_EJECTION_PERCENT),
        };
        self.eject(i, base, max_percent)
    }

    fn observe(&self, s: &EndpointStats, rtt: Duration) {
        let now_us = self.now_us();
        let rtt_us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = s.ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 || rtt_us > old {
            rtt_us
        } else {
            let elapsed = now_us.saturating_sub(s.stamp_us.load(Ordering::Relaxed));
            let w = (-(elapsed as f64) / EWMA_DECAY.as_micros() as f64).exp();
            (old as f64 * w + rtt_us as f64 * (1.0 - w)) as u64
        };
        s.ewma_us.store(new.max(1), Ordering::Relaxed);
        s.stamp_us.store(now_us, Ordering::Relaxed);
    }

    /// Ejects endpoint `i` for `base` times its ejections so far (at most
    /// [`MAX_EJECTION`]), unless `max_percent` of the endpoints are out.
    fn eject(&self, i: usize, base: Duration, max_percent: u32) -> bool {
        let now = self.now_ms();
        let n = self.stats.len() as u32;
        let out = (0..self.stats.len())
            .filter(|&j| !self.eligible(j, now))
            .count() as u32;
        let allowed = (n * max_percent / 100).max(1);
        if out >= allowed || !self.eligible(i, now) {
            return false;
        }
        let s = &self.stats[i];
        let times = s.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let length = base.saturating_mul(times).min(MAX_EJECTION);
        s.ejected_until_ms.store(
            now + u64::try_from(length.as_millis()).unwrap_or(u64::MAX / 2),
            Ordering::Relaxed,
        );
        s.failures.store(0, Ordering::Relaxed);
        true
    }
}

/// A 64-bit mixer (splitmix64's finaliser) for rendezvous weights.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An endpoint's rendezvous key: its address, hashed.
pub(crate) fn endpoint_key(addr: &std::net::SocketAddr) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same address weighs the same in every
    // process and after every reload.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    addr.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn scores(n: u16) -> (Scores, Vec<SocketAddr>) {
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::from(([10, 0, 0, 1 + i as u8], 8080)))
            .collect();
        (Scores::new(addrs.iter().map(endpoint_key).collect()), addrs)
    }

    #[test]
    fn p2c_prefers_the_faster_endpoint() {
        let (s, _) = scores(2);
        for _ in 0..20 {
            s.record(0, Duration::from_millis(1), Outcome::Answered, None);
            s.record(1, Duration::from_millis(50), Outcome::Answered, None);
        }
        let none = |_| false;
        let picks: usize = (0..100)
            .filter(|_| s.choose(&LbKind::PeakEwma, None, &none) == Some(0))
            .count();
        assert_eq!(
            picks, 100,
            "with two endpoints both are compared every time"
        );
    }

    #[test]
    fn a_fast_failure_is_never_the_cheapest() {
        let (s, _) = scores(3);
        // Endpoint 0 refuses at once; 1 and 2 answer in 2 ms. The refused
        // one is ejected, and even back in the set it costs the penalty.
        s.record(1, Duration::from_millis(2), Outcome::Answered, None);
        s.record(2, Duration::from_millis(2), Outcome::Answered, None);
        assert!(s.record(0, Duration::from_micros(50), Outcome::ConnectFailed, None));
        let none = |_| false;
        for _ in 0..200 {
            assert_ne!(s.choose(&LbKind::PeakEwma, None, &none), Some(0));
        }
        s.stats[0].ejected_until_ms.store(0, Ordering::Relaxed);
        for _ in 0..200 {
            assert_ne!(s.choose(&LbKind::PeakEwma, None, &none), Some(0));
        }
    }

    #[test]
    fn connect_failures_eject_without_a_policy_within_the_share() {
        let (s, _) = scores(2);
        let rtt = Duration::from_micros(50);
        assert!(s.record(0, rtt, Outcome::ConnectFailed, None));
        assert!(
            !s.record(1, rtt, Outcome::ConnectFailed, None),
            "half of two is one: the other stays"
        );
        assert!(
            !s.record(1, rtt, Outcome::ServerError, None),
            "a 5xx ejects only by policy"
        );
    }

    #[test]
    fn ejection_grows_and_respects_the_share() {
        let (s, _) = scores(4);
        let o = Outlier {
            consecutive: 2,
            base: Duration::from_secs(10),
            max_percent: 25,
        };
        let ms = Duration::from_millis(1);
        assert!(!s.record(0, ms, Outcome::ServerError, Some(&o)));
        assert!(
            s.record(0, ms, Outcome::ServerError, Some(&o)),
            "second failure ejects"
        );
        // One of four is the 25 % share: another cannot go.
        s.record(1, ms, Outcome::ServerError, Some(&o));
        assert!(!s.record(1, ms, Outcome::ServerError, Some(&o)));
        let none = |_| false;
        for _ in 0..50 {
            assert_ne!(s.choose(&LbKind::RoundRobin, None, &none), Some(0));
        }
    }

    #[test]
    fn consistent_hash_is_sticky() {
        let (s, _) = scores(5);
        let lb = LbKind::ConsistentHash(HashKey::Cookie("session".into()));
        let none = |_| false;
        let first = s.choose(&lb, Some(42), &none);
        for _ in 0..20 {
            assert_eq!(s.choose(&lb, Some(42), &none), first);
        }
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_sessions() {
        let (five, addrs) = scores(5);
        let four_addrs: Vec<SocketAddr> = addrs[1..].to_vec();
        let four = Scores::new(four_addrs.iter().map(endpoint_key).collect());
        let lb = LbKind::ConsistentHash(HashKey::Cookie("session".into()));
        let none = |_| false;
        let (mut kept, mut others) = (0, 0);
        for session in 0..10_000u64 {
            let h = mix(session);
            let Some(before) = five.choose(&lb, Some(h), &none) else {
                continue;
            };
            if before == 0 {
                continue;
            }
            others += 1;
            let after = four.choose(&lb, Some(h), &none).map(|i| four_addrs[i]);
            kept += usize::from(after == Some(addrs[before]));
        }
        assert_eq!(
            kept, others,
            "rendezvous moves no session of a staying endpoint"
        );
    }
}
