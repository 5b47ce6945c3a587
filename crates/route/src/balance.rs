//! Choosing an endpoint and keeping score: power of two choices over peak
//! EWMA latency (the default, as Linkerd), round robin, least request, or
//! consistent hashing (rendezvous) on a header or cookie for session
//! affinity; a circuit breaker on requests in flight; outlier detection
//! that ejects an endpoint after consecutive failures for a growing time,
//! never more than a share of the endpoints. All state is atomics on the
//! cluster: the hot path takes no lock.

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
    /// Requests in flight to the whole cluster (the breaker's count).
    active: AtomicU32,
    next: AtomicU64,
}

impl Scores {
    pub fn new(n: usize) -> Self {
        Scores {
            start: Instant::now(),
            stats: (0..n).map(|_| EndpointStats::default()).collect(),
            active: AtomicU32::new(0),
            next: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
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

    fn cost(&self, i: usize, lb: &LbKind) -> u64 {
        let s = &self.stats[i];
        let active = u64::from(s.active.load(Ordering::Relaxed));
        match lb {
            LbKind::LeastRequest => active,
            _ => match s.ewma_us.load(Ordering::Relaxed) {
                // Never answered yet: free while idle, so that a new
                // endpoint is measured at once rather than starved by a
                // known fast one; priced at DEFAULT_RTT per request in flight.
                0 => (DEFAULT_RTT.as_micros() as u64).saturating_mul(active),
                ewma => ewma.saturating_mul(active + 1),
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
        let now = self.now_ms();
        let candidates = || (0..n).filter(|&i| !avoid(i) && self.eligible(i, now));
        match (lb, hash) {
            (LbKind::RoundRobin, _) | (LbKind::ConsistentHash(_), None) => self.round_robin(avoid),
            (LbKind::ConsistentHash(_), Some(h)) => candidates()
                .max_by_key(|&i| mix(h ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
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
                Some(if self.cost(b, lb) < self.cost(a, lb) {
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

    /// Records an answer's latency (peak EWMA) and outcome; returns true
    /// when this failure ejected the endpoint.
    pub fn record(&self, i: usize, rtt: Duration, failed: bool, outlier: Option<&Outlier>) -> bool {
        let s = &self.stats[i];
        let now_us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
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
        if !failed {
            s.failures.store(0, Ordering::Relaxed);
            return false;
        }
        let Some(o) = outlier else {
            return false;
        };
        if s.failures.fetch_add(1, Ordering::Relaxed) + 1 < o.consecutive {
            return false;
        }
        let now = self.now_ms();
        let n = self.stats.len() as u32;
        let out = (0..self.stats.len())
            .filter(|&j| !self.eligible(j, now))
            .count() as u32;
        let allowed = (n * o.max_percent / 100).max(1);
        if out >= allowed || !self.eligible(i, now) {
            return false;
        }
        let times = s.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let length = o.base.saturating_mul(times);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p2c_prefers_the_faster_endpoint() {
        let s = Scores::new(2);
        for _ in 0..20 {
            s.record(0, Duration::from_millis(1), false, None);
            s.record(1, Duration::from_millis(50), false, None);
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
    fn ejection_grows_and_respects_the_share() {
        let s = Scores::new(4);
        let o = Outlier {
            consecutive: 2,
            base: Duration::from_secs(10),
            max_percent: 25,
        };
        assert!(!s.record(0, Duration::from_millis(1), true, Some(&o)));
        assert!(
            s.record(0, Duration::from_millis(1), true, Some(&o)),
            "second failure ejects"
        );
        // One of four is the 25 % share: another cannot go.
        s.record(1, Duration::from_millis(1), true, Some(&o));
        assert!(!s.record(1, Duration::from_millis(1), true, Some(&o)));
        let none = |_| false;
        for _ in 0..50 {
            assert_ne!(s.choose(&LbKind::RoundRobin, None, &none), Some(0));
        }
    }

    #[test]
    fn consistent_hash_is_sticky() {
        let s = Scores::new(5);
        let lb = LbKind::ConsistentHash(HashKey::Cookie("session".into()));
        let none = |_| false;
        let first = s.choose(&lb, Some(42), &none);
        for _ in 0..20 {
            assert_eq!(s.choose(&lb, Some(42), &none), first);
        }
    }
}
