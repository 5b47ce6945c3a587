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
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strait_route::ratelimit::{LimitRule, RateLimit, RateLimitTable, Request};

/// Most callers one rule counts apart.
pub const MAX_KEYS: usize = 100_000;

/// How often (in checks) a rule looks at how many callers it holds.
const TIDY_EVERY: u32 = 4096;

type Limiter = governor::RateLimiter<
    String,
    DefaultKeyedStateStore<String>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// One rule's buckets.
pub struct Bucket {
    id: Arc<str>,
    limiter: Limiter,
    checks: AtomicU32,
    /// Over [`MAX_KEYS`]: every caller counted together.
    full: AtomicBool,
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
            limiter: governor::RateLimiter::keyed(quota).with_middleware(),
            checks: AtomicU32::new(0),
            full: AtomicBool::new(false),
        }
    }

    /// Takes one request from `key`'s bucket, if it has one left.
    pub fn check(&self, key: String) -> Outcome {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(TIDY_EVERY) {
            self.tidy();
        }
        let key = match self.full.load(Ordering::Relaxed) {
            true => String::new(),
            false => key,
        };
        match self.limiter.check_key(&key) {
            Ok(state) => Outcome::Allowed {
                remaining: state.remaining_burst_capacity(),
            },
            Err(not) => Outcome::Limited {
                wait: not.wait_time_from(self.limiter.clock().now()),
            },
        }
    }

    fn tidy(&self) {
        if self.limiter.len() < MAX_KEYS {
            self.full.store(false, Ordering::Relaxed);
            return;
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let full = self.limiter.len() >= MAX_KEYS;
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

/// What the policy decided for a request.
pub struct Decision {
    /// The rule that refused it, and when its key may ask again.
    pub refused: Option<(Arc<str>, Duration)>,
    /// The headers that tell the client where it stands.
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
}

/// Takes the request from the bucket of every rule that counts it, in
/// order (per-caller rules first); the first rule out of requests
/// refuses it, and the rules after it take nothing. Shadow rules count
/// and report but refuse nothing.
pub fn decide(
    policy: &RateLimit,
    buckets: &Buckets,
    req: &Request<'_>,
    metrics: &Metrics,
) -> Decision {
    let mut tightest: Option<(&LimitRule, u32)> = None;
    for rule in policy.rules.iter().filter(|r| !r.global) {
        let (Some(key), Some(bucket)) = (rule.key(req), buckets.of(rule)) else {
            continue;
        };
        let outcome = bucket.check(key);
        let result = match (outcome, rule.shadow) {
            (Outcome::Allowed { .. }, _) => "allowed",
            (Outcome::Limited { .. }, true) => "shadow_limited",
            (Outcome::Limited { .. }, false) => "limited",
        };
        count(metrics, policy, rule, result);
        match outcome {
            Outcome::Limited { wait } if !rule.shadow => {
                return Decision {
                    refused: Some((rule.name.clone(), wait)),
                    headers: headers(rule, 0, wait, true),
                };
            }
            Outcome::Allowed { remaining }
                if !rule.shadow && tightest.is_none_or(|(_, r)| remaining < r) =>
            {
                tightest = Some((rule, remaining));
            }
            _ => {}
        }
    }
    let headers = match tightest {
        Some((rule, remaining)) => {
            let used = rule.quota.burst.saturating_sub(remaining);
            let full_in = rule.quota.interval() * used;
            headers(rule, remaining, full_in, false)
        }
        None => Vec::new(),
    };
    Decision {
        refused: None,
        headers,
    }
}

fn count(metrics: &Metrics, policy: &RateLimit, rule: &LimitRule, result: &'static str) {
    let labels = RateLimitLabels {
        policy: policy.policy.clone(),
        rule: rule.name.clone(),
        key: rule.keyed_by.clone(),
        result,
    };
    metrics.ratelimit.get_or_create(&labels).inc();
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers):
/// the rule's quota over its window, what is left, and in how many
/// seconds it is whole again; `Retry-After` on a refusal.
fn headers(
    rule: &LimitRule,
    remaining: u32,
    reset: Duration,
    refused: bool,
) -> Vec<(http::HeaderName, HeaderValue)> {
    let name = &rule.name;
    let q = rule.quota;
    let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let policy = format!(
        "\"{name}\";q={};w={}",
        q.requests,
        q.period.as_secs().max(1)
    );
    let state = format!("\"{name}\";r={remaining};t={}", secs(reset));
    let mut out = Vec::with_capacity(3);
    let named = |n: &'static str| http::HeaderName::from_static(n);
    for (header, value) in [("ratelimit-policy", policy), ("ratelimit", state)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.push((named(header), v));
        }
    }
    if refused {
        let after = secs(reset).max(1);
        out.push((http::header::RETRY_AFTER, HeaderValue::from(after)));
    }
    out
}
