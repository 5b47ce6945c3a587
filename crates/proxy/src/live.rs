//! What the proxy learns while it serves, kept beside the compiled
//! configuration and never in it: each endpoint's score (peak-EWMA
//! latency, requests in flight, failures, ejection), each Service port's
//! breaker count, retry budget and connection gate. Keyed by Service port
//! and endpoint address, so a reload keeps the scores and ejections of the
//! endpoints that remain, and the connections counted under a limit.
//!
//! Choosing an endpoint: power of two choices over peak EWMA (the default,
//! as Linkerd), round robin, least request, or rendezvous hashing keyed by
//! endpoint address. Failures cost: a try that got no answer is scored as
//! [`FAILURE_PENALTY`] and scores fade while nothing is heard; a failed
//! connection ejects its endpoint for [`CONNECT_EJECTION`] with or without
//! a policy. All of it is atomics: the hot path takes no lock.

use crate::conn_limit::ConnGate;
use crate::retry::RetryBudget;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use strait_route::{Cluster, LbKind, Outlier, Snapshot, DEFAULT_MAX_EJECTION_PERCENT};

/// Latency assumed of an endpoint with requests in flight before its first
/// answer (`DEFAULT_RTT`).
pub const DEFAULT_RTT: Duration = Duration::from_millis(5);
/// How fast the latency average forgets (`EWMA_DECAY`).
pub const EWMA_DECAY: Duration = Duration::from_secs(10);
/// Latency a failed try is scored as (`FAILURE_PENALTY`).
pub const FAILURE_PENALTY: Duration = Duration::from_secs(1);
/// First ejection of an endpoint whose connection failed, with or without
/// a policy (`CONNECT_EJECTION`); it grows with each ejection after.
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

/// Microseconds since the first time anything asked: one epoch for every
/// score, so that scores carried across reloads stay comparable.
fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// One endpoint's score.
#[derive(Debug, Default)]
pub struct EndpointStats {
    active: AtomicU32,
    /// Peak-EWMA latency, µs; 0 until the first answer.
    ewma_us: AtomicU64,
    /// When `ewma_us` was last updated.
    stamp_us: AtomicU64,
    failures: AtomicU32,
    /// Ejected until this many µs after the epoch.
    ejected_until_us: AtomicU64,
    ejections: AtomicU32,
}

impl EndpointStats {
    fn eligible(&self, now_us: u64) -> bool {
        self.ejected_until_us.load(Ordering::Relaxed) <= now_us
    }

    fn cost(&self, lb: &LbKind, now_us: u64) -> u64 {
        let active = u64::from(self.active.load(Ordering::Relaxed));
        if *lb == LbKind::LeastRequest {
            return active;
        }
        match self.ewma_us.load(Ordering::Relaxed) {
            // Never answered yet: free while idle, so that a new endpoint
            // is measured at once rather than starved by a known fast one;
            // priced at DEFAULT_RTT per request in flight.
            0 => (DEFAULT_RTT.as_micros() as u64).saturating_mul(active),
            // The average fades while nothing is heard (as tower's
            // PeakEwma), so a penalised endpoint is tried again in time.
            ewma => {
                let quiet = now_us.saturating_sub(self.stamp_us.load(Ordering::Relaxed));
                ((ewma as f64 * decay(quiet)) as u64).saturating_mul(active + 1)
            }
        }
    }

    fn observe(&self, rtt: Duration) {
        let now = now_us();
        let rtt_us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 || rtt_us > old {
            rtt_us
        } else {
            let w = decay(now.saturating_sub(self.stamp_us.load(Ordering::Relaxed)));
            (old as f64 * w + rtt_us as f64 * (1.0 - w)) as u64
        };
        self.ewma_us.store(new.max(1), Ordering::Relaxed);
        self.stamp_us.store(now, Ordering::Relaxed);
    }
}

/// The weight an average keeps after `quiet_us` without news.
fn decay(quiet_us: u64) -> f64 {
    (-(quiet_us as f64) / EWMA_DECAY.as_micros() as f64).exp()
}

/// The live state of one Service port: its endpoints' scores (in the
/// order of the cluster's endpoints), the breaker's count, the retry
/// budget and the connection gate.
#[derive(Debug)]
pub struct ClusterState {
    stats: Vec<Arc<EndpointStats>>,
    /// Each endpoint's address, hashed: rendezvous weights depend on who
    /// an endpoint is, not where it sits in the list.
    keys: Vec<u64>,
    /// Requests in flight to the whole cluster (the breaker's count).
    active: Arc<AtomicU32>,
    next: AtomicU64,
    pub budget: Arc<RetryBudget>,
    gate: Option<Arc<ConnGate>>,
    /// The Service, as request metrics label it.
    pub service: Arc<crate::peer::Named>,
    /// Its `x-strait-peer-service` value; `None` where the Service is
    /// unknown (a sidecar's own inbound cluster, passthrough).
    pub service_header: Option<http::HeaderValue>,
}

/// A known Service's `x-strait-peer-service` value.
fn service_header(service: &Arc<crate::peer::Named>) -> Option<http::HeaderValue> {
    let unknown = Arc::ptr_eq(service, &crate::peer::Named::unknown());
    (!unknown).then(|| service.header()).flatten()
}

impl ClusterState {
    /// A fresh state for `cluster`.
    pub fn new(cluster: &Cluster) -> Self {
        Self::carried(cluster, None)
    }

    /// A state for `cluster` that keeps what `old` (the same Service port
    /// before a reload) knew of the endpoints still there, its breaker
    /// count, and its budget and gate while their settings are the same.
    fn carried(cluster: &Cluster, old: Option<(&Cluster, &ClusterState)>) -> Self {
        let by_addr: HashMap<SocketAddr, &Arc<EndpointStats>> = match old {
            Some((c, s)) => c.endpoints.iter().copied().zip(&s.stats).collect(),
            None => HashMap::new(),
        };
        let stats = cluster
            .endpoints
            .iter()
            .map(|a| {
                by_addr
                    .get(a)
                    .map_or_else(Default::default, |s| Arc::clone(s))
            })
            .collect();
        let traffic = &cluster.traffic;
        let budget = match old {
            Some((_, s)) if s.budget.settings == traffic.budget => s.budget.clone(),
            _ => Arc::new(RetryBudget::new(traffic.budget)),
        };
        let limit = traffic
            .breaker
            .as_ref()
            .and_then(|b| Some((b.max_connections?, b.max_pending)));
        let gate = match (old.and_then(|(_, s)| s.gate.as_ref()), limit) {
            (Some(g), Some((max, pending))) if g.max == max && g.max_pending == pending => {
                Some(g.clone())
            }
            (_, Some((max, pending))) => Some(Arc::new(ConnGate::new(max, pending))),
            (_, None) => None,
        };
        let service = old.map_or_else(
            || crate::peer::Named::service_of(&cluster.name),
            |(_, s)| s.service.clone(),
        );
        ClusterState {
            stats,
            keys: cluster.endpoints.iter().map(endpoint_key).collect(),
            active: old.map_or_else(Default::default, |(_, s)| s.active.clone()),
            next: AtomicU64::new(0),
            budget,
            gate,
            service_header: service_header(&service),
            service,
        }
    }

    /// The connection limit, if the breaker sets one.
    pub fn gate(&self) -> Option<&Arc<ConnGate>> {
        self.gate.as_ref()
    }

    /// Endpoint `i` is not ejected (a session may go to it).
    pub fn eligible(&self, i: usize) -> bool {
        self.stats.get(i).is_some_and(|s| s.eligible(now_us()))
    }

    /// Round robin over eligible endpoints not avoided; when every one is
    /// ejected, all are used (better a doubtful endpoint than none, Envoy's
    /// panic mode).
    pub fn round_robin(&self, avoid: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.stats.len();
        if n == 0 {
            return None;
        }
        let now = now_us();
        let start = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let mut fallback = None;
        for k in 0..n {
            let i = (start + k) % n;
            if avoid(i) {
                continue;
            }
            if self.stats[i].eligible(now) {
                return Some(i);
            }
            fallback.get_or_insert(i);
        }
        fallback.or(Some(start % n))
    }

    /// An endpoint by the cluster's policy; `hash` keys consistent hashing,
    /// `avoid` excludes endpoints already tried.
    pub fn choose(
        &self,
        lb: &LbKind,
        hash: Option<u64>,
        avoid: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let now = now_us();
        let candidates =
            || (0..self.stats.len()).filter(move |&i| !avoid(i) && self.stats[i].eligible(now));
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
                let cost = |i: usize| self.stats[i].cost(lb, now);
                Some(if cost(b) < cost(a) { b } else { a })
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

    /// Gives back a slot of a request that never reached an endpoint.
    pub fn release(&self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn begin(&self, i: usize) {
        self.stats[i].active.fetch_add(1, Ordering::Relaxed);
    }

    /// A try at endpoint `i` ended after `rtt`; true when its outcome
    /// ejected the endpoint.
    pub fn end(
        &self,
        i: usize,
        rtt: Duration,
        outcome: Outcome,
        outlier: Option<&Outlier>,
    ) -> bool {
        self.stats[i].active.fetch_sub(1, Ordering::Relaxed);
        self.active.fetch_sub(1, Ordering::AcqRel);
        self.record(i, rtt, outcome, outlier)
    }

    fn record(&self, i: usize, rtt: Duration, outcome: Outcome, outlier: Option<&Outlier>) -> bool {
        let s = &self.stats[i];
        let rtt = match outcome {
            Outcome::Abandoned => return false,
            Outcome::Failed | Outcome::ConnectFailed => rtt.max(FAILURE_PENALTY),
            Outcome::Answered | Outcome::ServerError => rtt,
        };
        s.observe(rtt);
        if outcome == Outcome::Answered {
            s.failures.store(0, Ordering::Relaxed);
            return false;
        }
        let failures = s.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let by_policy = outlier.filter(|o| failures >= o.consecutive);
        match (by_policy, outcome) {
            (Some(o), _) => self.eject(i, o.base, o.max_percent),
            (None, Outcome::ConnectFailed) => {
                self.eject(i, CONNECT_EJECTION, DEFAULT_MAX_EJECTION_PERCENT)
            }
            (None, _) => false,
        }
    }

    /// Ejects endpoint `i` for `base` times its ejections so far (at most
    /// [`MAX_EJECTION`]), unless `max_percent` of the endpoints are out.
    fn eject(&self, i: usize, base: Duration, max_percent: u32) -> bool {
        let now = now_us();
        let n = self.stats.len() as u32;
        let out = self.stats.iter().filter(|s| !s.eligible(now)).count() as u32;
        let allowed = (n * max_percent / 100).max(1);
        let s = &self.stats[i];
        if out >= allowed || !s.eligible(now) {
            return false;
        }
        let times = s.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let length = base.saturating_mul(times).min(MAX_EJECTION);
        let until = now.saturating_add(u64::try_from(length.as_micros()).unwrap_or(u64::MAX / 2));
        s.ejected_until_us.store(until, Ordering::Relaxed);
        s.failures.store(0, Ordering::Relaxed);
        true
    }
}

/// An endpoint's rendezvous key: its address, hashed.
fn endpoint_key(addr: &SocketAddr) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same address weighs the same in every
    // process and after every reload.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    addr.hash(&mut h);
    h.finish()
}

/// A 64-bit mixer (splitmix64's finaliser) for rendezvous weights.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A cluster's state for one request: the configuration's, or one made
/// for a cluster the configuration does not hold (a passthrough).
pub enum StateRef<'a> {
    Kept(&'a ClusterState),
    Own(Box<ClusterState>),
}

impl std::ops::Deref for StateRef<'_> {
    type Target = ClusterState;
    fn deref(&self) -> &ClusterState {
        match self {
            StateRef::Kept(s) => s,
            StateRef::Own(s) => s,
        }
    }
}

/// The configuration and the live state of its clusters, swapped together
/// so that a request never sees one without the other.
pub struct Live {
    pub snapshot: Arc<Snapshot>,
    /// By the address of each `Arc<Cluster>` the snapshot (or the sidecar)
    /// holds: found without hashing a name.
    /// Looked up on every request: foldhash, not SipHash (the keys are
    /// the snapshot's own pointers, nothing a client chooses).
    states: foldhash::HashMap<usize, (Arc<Cluster>, ClusterState)>,
    /// A sidecar's: what TelemetryPolicies say for its workload.
    pub telemetry: strait_route::telemetry::Telemetry,
    /// A sidecar's: the SecurityPolicy its workload's inbound calls pass.
    pub authn: Option<Arc<strait_route::authn::Authn>>,
    /// A sidecar's: the RateLimitPolicy its workload's inbound calls pass.
    pub ratelimit: Option<Arc<strait_route::ratelimit::RateLimit>>,
    /// A sidecar's: the ApiSchemaPolicy its workload's inbound calls pass.
    pub apischema: Option<Arc<strait_route::apischema::ApiSchema>>,
    /// Every RateLimitPolicy rule's counts.
    pub buckets: crate::ratelimit::Buckets,
    /// The Redis servers global rules count in.
    pub stores: crate::ratelimit::global::Stores,
}

fn key(c: &Arc<Cluster>) -> usize {
    Arc::as_ptr(c) as usize
}

impl Live {
    /// The state of `snapshot`'s clusters and of `fixed` ones (a sidecar's
    /// own), carried over from `old` by Service port name.
    pub fn new(snapshot: Arc<Snapshot>, fixed: &[Arc<Cluster>], old: Option<&Live>) -> Self {
        let before: HashMap<&str, &(Arc<Cluster>, ClusterState)> = old
            .map(|l| l.states.values().map(|e| (e.0.name.as_str(), e)).collect())
            .unwrap_or_default();
        let states = snapshot
            .clusters
            .iter()
            .chain(fixed)
            .map(|c| {
                let was = before.get(c.name.as_str()).map(|(oc, os)| (&**oc, os));
                (key(c), (c.clone(), ClusterState::carried(c, was)))
            })
            .collect();
        let table = &snapshot.ratelimit;
        let buckets = crate::ratelimit::Buckets::new(table, old.map(|o| &o.buckets));
        let stores = crate::ratelimit::global::Stores::new(table, old.map(|o| &o.stores));
        Live {
            snapshot,
            states,
            telemetry: Default::default(),
            authn: None,
            ratelimit: None,
            apischema: None,
            buckets,
            stores,
        }
    }

    /// The state of `cluster`, one of the snapshot's or a fixed one; a
    /// fresh one for any other.
    pub fn state(&self, cluster: &Arc<Cluster>) -> StateRef<'_> {
        match self.states.get(&key(cluster)) {
            Some((_, s)) => StateRef::Kept(s),
            None => StateRef::Own(Box::new(ClusterState::new(cluster))),
        }
    }

    /// Round robin over `cluster`'s ready endpoints not ejected (mirrors,
    /// TCP, tunnels).
    pub fn next_endpoint(&self, cluster: &Arc<Cluster>) -> Option<SocketAddr> {
        let i = self.state(cluster).round_robin(&|_| false)?;
        cluster.endpoints.get(i).copied()
    }
}

/// The proxy's configuration as it serves: read lock-free by every request.
pub type Current = ArcSwap<Live>;

#[cfg(test)]
mod tests {
    use super::*;
    use strait_route::{HashKey, UpstreamProtocol};

    fn cluster(ports: &[u16]) -> Arc<Cluster> {
        let addrs = ports
            .iter()
            .map(|p| SocketAddr::from(([10, 0, 0, 1], *p)))
            .collect();
        Arc::new(Cluster::new(
            "shop/pay:80".into(),
            addrs,
            UpstreamProtocol::Http1,
            None,
        ))
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn p2c_prefers_the_faster_endpoint() {
        let s = ClusterState::new(&cluster(&[1, 2]));
        for _ in 0..20 {
            s.record(0, MS, Outcome::Answered, None);
            s.record(1, MS * 50, Outcome::Answered, None);
        }
        let none = |_| false;
        let picks = (0..100)
            .filter(|_| s.choose(&LbKind::PeakEwma, None, &none) == Some(0))
            .count();
        assert_eq!(
            picks, 100,
            "with two endpoints both are compared every time"
        );
    }

    #[test]
    fn a_fast_failure_is_never_the_cheapest() {
        let s = ClusterState::new(&cluster(&[1, 2, 3]));
        s.record(1, MS * 2, Outcome::Answered, None);
        s.record(2, MS * 2, Outcome::Answered, None);
        assert!(s.record(0, Duration::from_micros(50), Outcome::ConnectFailed, None));
        let none = |_| false;
        for _ in 0..200 {
            assert_ne!(s.choose(&LbKind::PeakEwma, None, &none), Some(0));
        }
        // Back from ejection, it still costs the penalty.
        s.stats[0].ejected_until_us.store(0, Ordering::Relaxed);
        for _ in 0..200 {
            assert_ne!(s.choose(&LbKind::PeakEwma, None, &none), Some(0));
        }
    }

    #[test]
    fn connect_failures_eject_without_a_policy_within_the_share() {
        let s = ClusterState::new(&cluster(&[1, 2]));
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
        let s = ClusterState::new(&cluster(&[1, 2, 3, 4]));
        let o = Outlier {
            consecutive: 2,
            base: Duration::from_secs(10),
            max_percent: 25,
        };
        assert!(!s.record(0, MS, Outcome::ServerError, Some(&o)));
        assert!(
            s.record(0, MS, Outcome::ServerError, Some(&o)),
            "second failure ejects"
        );
        // One of four is the 25 % share: another cannot go.
        s.record(1, MS, Outcome::ServerError, Some(&o));
        assert!(!s.record(1, MS, Outcome::ServerError, Some(&o)));
        let none = |_| false;
        for _ in 0..50 {
            assert_ne!(s.choose(&LbKind::RoundRobin, None, &none), Some(0));
        }
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_sessions() {
        let five = cluster(&[1, 2, 3, 4, 5]);
        let four = cluster(&[2, 3, 4, 5]);
        let (s5, s4) = (ClusterState::new(&five), ClusterState::new(&four));
        let lb = LbKind::ConsistentHash(HashKey::Cookie("session".into()));
        let none = |_| false;
        let (mut kept, mut others) = (0, 0);
        for session in 0..10_000u64 {
            let h = mix(session);
            let Some(before) = s5.choose(&lb, Some(h), &none) else {
                continue;
            };
            if before == 0 {
                continue;
            }
            others += 1;
            let after = s4.choose(&lb, Some(h), &none).map(|i| four.endpoints[i]);
            kept += usize::from(after == Some(five.endpoints[before]));
        }
        assert_eq!(
            kept, others,
            "rendezvous moves no session of a staying endpoint"
        );
    }

    #[test]
    fn a_reload_keeps_the_scores_of_endpoints_that_remain() {
        let before = cluster(&[1, 2, 3]);
        let old = ClusterState::new(&before);
        assert!(old.record(1, MS, Outcome::ConnectFailed, None), "ejected");
        old.record(2, MS * 7, Outcome::Answered, None);
        let after = cluster(&[2, 3, 4]);
        let new = ClusterState::carried(&after, Some((&before, &old)));
        let now = now_us();
        assert!(!new.stats[0].eligible(now), "port 2 is still ejected");
        assert!(
            new.stats[1].ewma_us.load(Ordering::Relaxed) >= 6_000,
            "port 3 keeps its score"
        );
        assert_eq!(
            new.stats[2].ewma_us.load(Ordering::Relaxed),
            0,
            "port 4 is new"
        );
        assert!(
            Arc::ptr_eq(&new.budget, &old.budget),
            "same budget settings, same budget"
        );
    }
}
