//! The counts of RateLimitPolicy rules, and a request's decision.
//!
//! Each local rule keeps one GCRA bucket per key (governor's keyed
//! limiter): `requests` per `period` come back evenly, up to `burst` at
//! once. The counts live here, one per rule slot of the configuration;
//! a new configuration keeps the counts of every rule it keeps
//! unchanged.
//!
//! A rule counts at most [`MAX_KEYS`] callers apart. Past that, the
//! callers whose buckets are full again are forgotten; if that is not
//! enough, the rule counts every caller together until it is, so memory
//! stays bounded whatever keys clients invent.

use crate::metrics::{Metrics, RateLimitLabels};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use http::HeaderValue;
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use strait_route::ratelimit::{Key, LimitRule, RateLimit, RateLimitTable, Request};

pub mod global;
mod link;

/// Most callers one rule counts apart.
pub const MAX_KEYS: usize = 100_000;

/// How often (in checks) a rule looks at how many callers it holds.
const TIDY_EVERY: u32 = 4096;

type Limiter = governor::RateLimiter<
    Key,
    DefaultKeyedStateStore<Key>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// One rule's buckets.
pub struct Bucket {
    id: Arc<str>,
    /// A local rule's counts; a global rule's are in Redis.
    limiter: Option<Limiter>,
    checks: AtomicU32,
    /// Over [`MAX_KEYS`]: every caller counted together.
    full: AtomicBool,
    /// The rule's `allowed`, `limited` and `shadow_limited` counters,
    /// found once.
    counters: OnceLock<[Counter; 3]>,
}

/// A rule's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Requests left at once after this one.
    Allowed { remaining: u32 },
    /// The next request this key may make, from now.
    Limited { wait: Duration },
}

impl Bucket {
    fn new(rule: &LimitRule) -> Self {
        let interval = rule.quota.interval().max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(rule.quota.burst).unwrap_or(NonZeroU32::MIN);
        let quota = governor::Quota::with_period(interval)
            .unwrap_or(governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Bucket {
            id: rule.id.clone(),
            limiter: (!rule.global).then(|| governor::RateLimiter::keyed(quota).with_middleware()),
            checks: AtomicU32::new(0),
            full: AtomicBool::new(false),
            counters: OnceLock::new(),
        }
    }

    /// Counts an outcome of `rule` of `policy` in the metrics.
    fn count(&self, metrics: &Metrics, (policy, rule): (&RateLimit, &LimitRule), o: Outcome) {
        let i = match (o, rule.shadow) {
            (Outcome::Allowed { .. }, _) => 0,
            (Outcome::Limited { .. }, false) => 1,
            (Outcome::Limited { .. }, true) => 2,
        };
        let counters = self.counters.get_or_init(|| {
            ["allowed", "limited", "shadow_limited"]
                .map(|result| counter(metrics, policy, rule, result))
        });
        counters[i].inc();
    }

    /// Takes one request from `key`'s bucket, if it has one left (a
    /// global rule's bucket has none here: it allows).
    pub fn check(&self, key: Key) -> Outcome {
        let Some(limiter) = &self.limiter else {
            return Outcome::Allowed { remaining: 0 };
        };
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(TIDY_EVERY) {
            self.tidy(limiter);
        }
        let key = match self.full.load(Ordering::Relaxed) {
            true => Key::Owned(String::new()),
            false => key,
        };
        match limiter.check_key(&key) {
            Ok(state) => Outcome::Allowed {
                remaining: state.remaining_burst_capacity(),
            },
            Err(not) => Outcome::Limited {
                wait: not.wait_time_from(limiter.clock().now()),
            },
        }
    }

    fn tidy(&self, limiter: &Limiter) {
        if limiter.len() < MAX_KEYS {
            self.full.store(false, Ordering::Relaxed);
            return;
        }
        limiter.retain_recent();
        limiter.shrink_to_fit();
        let full = limiter.len() >= MAX_KEYS;
        self.full.store(full, Ordering::Relaxed);
    }
}

/// Every rule's buckets, by slot.
#[derive(Default)]
pub struct Buckets(Box<[Arc<Bucket>]>);

impl Buckets {
    /// Buckets for `table`'s rules; a rule `old` has too (same policy,
    /// rule, quota and selectors) keeps its counts.
    pub fn new(table: &RateLimitTable, old: Option<&Buckets>) -> Self {
        let before: HashMap<&str, &Arc<Bucket>> = old
            .iter()
            .flat_map(|b| b.0.iter())
            .map(|b| (&*b.id, b))
            .collect();
        let buckets = table
            .rules()
            .into_iter()
            .map(|r| match before.get(&*r.id) {
                Some(b) => Arc::clone(b),
                None => Arc::new(Bucket::new(r)),
            })
            .collect();
        Buckets(buckets)
    }

    fn of(&self, rule: &LimitRule) -> Option<&Bucket> {
        self.0.get(rule.slot).map(|b| &**b)
    }
}

/// Where a request stands with one rule, for the headers.
#[derive(Debug, Clone)]
struct Standing {
    rule: Arc<str>,
    /// `RateLimit-Policy`'s value.
    policy: HeaderValue,
    remaining: u32,
    /// Until the bucket is whole again, or (refused) until the next
    /// request may come.
    reset: Duration,
}

/// A request's standing with a policy, rule after rule.
#[derive(Debug, Default)]
pub struct Tally {
    /// The allowing rule with the fewest requests left.
    tightest: Option<Standing>,
    /// The rule that refused.
    refused: Option<Standing>,
}

impl Tally {
    fn add(
        &mut self,
        bucket: &Bucket,
        metrics: &Metrics,
        at: (&RateLimit, &LimitRule),
        o: Outcome,
    ) {
        bucket.count(metrics, at, o);
        let rule = at.1;
        if rule.shadow {
            return;
        }
        let q = rule.quota;
        match o {
            Outcome::Limited { wait } => {
                self.refused = Some(Standing {
                    rule: rule.name.clone(),
                    policy: rule.policy_header.clone(),
                    remaining: 0,
                    reset: wait,
                });
            }
            Outcome::Allowed { remaining }
                if at.0.headers
                    && self
                        .tightest
                        .as_ref()
                        .is_none_or(|t| remaining < t.remaining) =>
            {
                let used = q.burst.saturating_sub(remaining);
                self.tightest = Some(Standing {
                    rule: rule.name.clone(),
                    policy: rule.policy_header.clone(),
                    remaining,
                    reset: q.interval() * used,
                });
            }
            Outcome::Allowed { .. } => {}
        }
    }

    /// The rule that refused the request.
    pub fn refused(&self) -> Option<&Arc<str>> {
        self.refused.as_ref().map(|s| &s.rule)
    }

    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers):
    /// the quota over its window of the rule that refused, else of the
    /// one with the fewest left (unless the policy disables them); what
    /// is left, and in how many seconds the bucket is whole again
    /// (refused: the next request may come); `Retry-After` on a refusal.
    pub fn headers(&self) -> Vec<(http::HeaderName, HeaderValue)> {
        let Some(s) = self.refused.as_ref().or(self.tightest.as_ref()) else {
            return Vec::new();
        };
        let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        // Written by hand: `format!` cost more than the count itself.
        let mut state = Vec::with_capacity(s.rule.len() + 32);
        state.push(b'"');
        state.extend_from_slice(s.rule.as_bytes());
        state.extend_from_slice(b"\";r=");
        digits(&mut state, u64::from(s.remaining));
        state.extend_from_slice(b";t=");
        digits(&mut state, secs(s.reset));
        let mut out = Vec::with_capacity(3);
        out.push((
            http::HeaderName::from_static("ratelimit-policy"),
            s.policy.clone(),
        ));
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(state)) {
            out.push((http::HeaderName::from_static("ratelimit"), v));
        }
        if self.refused.is_some() {
            let after = secs(s.reset).max(1);
            out.push((http::header::RETRY_AFTER, HeaderValue::from(after)));
        }
        out
    }
}

/// `n` in decimal, at the end of `out`.
fn digits(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut n = n;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// The global rules' keys for a request, to ask Redis about: by the
/// rule's place in its policy.
pub type GlobalKeys = Vec<(usize, Key)>;

/// Takes the request from the bucket of every local rule that counts it,
/// in order (per-caller rules first); the first rule out of requests
/// refuses it, and the rules after it take nothing. Shadow rules count
/// and report but refuse nothing. The keys of the global rules that
/// count it are left for [`global`] (none once refused).
pub fn local(
    policy: &RateLimit,
    buckets: &Buckets,
    req: &Request<'_>,
    (metrics, tally): (&Metrics, &mut Tally),
) -> GlobalKeys {
    let mut keys = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        let Some(key) = rule.key(req) else {
            continue;
        };
        if rule.global {
            keys.push((i, key));
            continue;
        }
        if let Some(bucket) = buckets.of(rule) {
            tally.add(bucket, metrics, (policy, rule), bucket.check(key));
        }
        if tally.refused.is_some() {
            return Vec::new();
        }
    }
    keys
}

/// The global rules, in order, counted in Redis. `Err` (why) when Redis
/// could not answer and the policy fails closed.
pub async fn global(
    (policy, buckets): (&RateLimit, &Buckets),
    store: Option<&global::Store>,
    keys: GlobalKeys,
    (metrics, tally): (&Metrics, &mut Tally),
) -> Result<(), String> {
    for (i, key) in keys {
        let Some(rule) = policy.rules.get(i) else {
            continue;
        };
        let answer = match store {
            Some(s) => s.check(rule, key.as_str()).await,
            None => global::Answer::Failed(
                "these Redis settings cannot be used (see the warning when they were loaded)"
                    .into(),
            ),
        };
        let why = match answer {
            global::Answer::Counted(outcome) => {
                if let Some(bucket) = buckets.of(rule) {
                    tally.add(bucket, metrics, (policy, rule), outcome);
                }
                if tally.refused.is_some() {
                    return Ok(());
                }
                continue;
            }
            global::Answer::Failed(why) => why,
        };
        let closed = policy.redis.as_ref().is_some_and(|r| r.fail_closed);
        let result = if closed {
            "failed_closed"
        } else {
            "failed_open"
        };
        counter(metrics, policy, rule, result).inc();
        if store.is_none_or(|s| s.warn_now()) {
            let mode = if closed { "refused" } else { "let through" };
            let at = policy
                .redis
                .as_ref()
                .map(|r| r.describe())
                .unwrap_or_default();
            tracing::warn!(
                "RateLimitPolicy {}: Redis could not count ({why}) at {at}: requests are {mode}",
                policy.policy
            );
        }
        if closed {
            return Err(why);
        }
    }
    Ok(())
}

/// The counter of `rule`'s `result`.
fn counter(
    metrics: &Metrics,
    policy: &RateLimit,
    rule: &LimitRule,
    result: &'static str,
) -> Counter {
    let labels = RateLimitLabels {
        policy: policy.policy.clone(),
        rule: rule.name.clone(),
        key: rule.keyed_by.clone(),
        result,
    };
    metrics.ratelimit.get_or_create(&labels).clone()
}
