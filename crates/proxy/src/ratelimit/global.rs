//! Global rules: one count per key for every proxy, kept in Redis.
//!
//! The algorithm is GCRA, the same as the local buckets', run by a Lua
//! script in one round trip: Redis keeps each key's theoretical arrival
//! time (TAT) in microseconds, read by Redis's own clock (`TIME`), so
//! the proxies' clocks never disagree. A request is let through when
//! `now >= TAT - interval × (burst - 1)`, and then moves TAT one
//! interval on; a key expires when its bucket is whole again.
//!
//! A refusal says when the key may come back; until then this proxy
//! refuses that key itself, without asking Redis (no other proxy can let
//! it in sooner). So a flood over its limit costs Redis nothing.
//!
//! Redis slower than the policy's `timeout`, or not there: the policy's
//! failure mode decides (`Open` lets the request through, `Closed`
//! refuses it with `503 rate_limit_failed`), counted in the metrics and
//! said in a warning at most every 10 s per Redis. For a second after a
//! failure Redis is not asked at all, so an outage costs the requests
//! meanwhile no wait; then one request asks again.

use dashmap::DashMap;
use redis::RedisResult;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strait_route::ratelimit::{LimitRule, RateLimitTable, Redis};

use super::link::{broken, Link, Links};

use super::{Outcome, MAX_KEYS};

const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, allow_at - now, 0}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0, math.floor((now + tolerance + interval - new_tat) / interval)}
";

/// How long a failed Redis is left alone: meanwhile the failure mode
/// answers at once.
const DOWN_FOR: Duration = Duration::from_secs(1);

/// Seconds between two warnings about one Redis.
const WARN_EVERY: u64 = 10;

/// One Redis, as the policies name it.
pub struct Store {
    settings: Arc<Redis>,
    links: Arc<Links>,
    script: redis::Script,
    /// Keys Redis refused, and until when: answered here meanwhile.
    refused: DashMap<[u8; 16], Instant>,
    /// Seconds since `born` of the last warning.
    warned: AtomicU64,
    /// Milliseconds since `born` before which Redis is not asked: it
    /// just failed.
    down_until: AtomicU64,
    born: Instant,
}

/// What Redis (or the cache of its refusals) said, or that it could not.
pub enum Answer {
    Counted(Outcome),
    Failed(String),
}

impl Store {
    fn new(settings: Arc<Redis>) -> RedisResult<Self> {
        Ok(Store {
            links: Links::new(&settings)?,
            settings,
            script: redis::Script::new(GCRA),
            refused: DashMap::new(),
            warned: AtomicU64::new(0),
            down_until: AtomicU64::new(0),
            born: Instant::now(),
        })
    }

    pub fn settings(&self) -> &Redis {
        &self.settings
    }

    /// Takes one request from `key`'s count of `rule`.
    pub async fn check(&self, rule: &LimitRule, key: &str) -> Answer {
        let id = digest(&rule.id, key);
        let now = Instant::now();
        if let Some(until) = self.refused.get(&id).map(|u| *u) {
            if until > now {
                return Answer::Counted(Outcome::Limited { wait: until - now });
            }
            self.refused.remove(&id);
        }
        let since_born = |at: Instant| at.duration_since(self.born).as_millis();
        let down_until = self.down_until.load(Ordering::Relaxed);
        if u128::from(down_until) > since_born(now) {
            return Answer::Failed("down: not asked again for a second".into());
        }
        let asked = tokio::time::timeout(self.settings.timeout, self.ask(rule, &id)).await;
        let failed = match asked {
            Ok(Ok(said)) => {
                self.links.answered();
                return Answer::Counted(self.outcome(id, now, said));
            }
            Ok(Err(e)) => e,
            Err(_) => {
                self.links.failed(None, false);
                format!("no answer in {:?}", self.settings.timeout)
            }
        };
        // The next requests do not wait for Redis as this one did: one
        // asks again after the pause, and brings it back if it answers.
        let again = since_born(Instant::now()) + DOWN_FOR.as_millis();
        self.down_until
            .store(u64::try_from(again).unwrap_or(u64::MAX), Ordering::Relaxed);
        Answer::Failed(failed)
    }

    fn outcome(&self, id: [u8; 16], now: Instant, said: (i64, i64, i64)) -> Outcome {
        match said {
            (1, _, remaining) => Outcome::Allowed {
                remaining: u32::try_from(remaining).unwrap_or(0),
            },
            (_, wait, _) => {
                let wait = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
                self.remember(id, now + wait);
                Outcome::Limited { wait }
            }
        }
    }

    async fn ask(&self, rule: &LimitRule, id: &[u8; 16]) -> Result<(i64, i64, i64), String> {
        let interval = rule.quota.interval().as_micros().max(1);
        let mut script = self.script.key(format!("strait:rl:{}", hex(id)));
        script
            .arg(u64::try_from(interval).unwrap_or(u64::MAX))
            .arg(rule.quota.burst);
        let (generation, link) = self.links.get().await?;
        let said = match link {
            Link::One(mut c) => script.invoke_async(&mut c).await,
            Link::Cluster(mut c) => script.invoke_async(&mut c).await,
            Link::Primary(mut c) => script.invoke_async(&mut c).await,
        };
        said.map_err(|e| {
            self.links.failed(Some(generation), broken(&e));
            e.to_string()
        })
    }

    fn remember(&self, id: [u8; 16], until: Instant) {
        if self.refused.len() >= MAX_KEYS {
            let now = Instant::now();
            self.refused.retain(|_, u| *u > now);
        }
        if self.refused.len() < MAX_KEYS {
            self.refused.insert(id, until);
        }
    }

    /// Whether to warn now about a failure (not more than every
    /// [`WARN_EVERY`] seconds).
    pub fn warn_now(&self) -> bool {
        let now = self.born.elapsed().as_secs() + WARN_EVERY;
        let last = self.warned.load(Ordering::Relaxed);
        now >= last + WARN_EVERY
            && self
                .warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// The first 16 bytes of SHA-256 of the rule's id and the key: the same
/// on every proxy, and a bounded Redis key whatever the client sent.
fn digest(rule: &str, key: &str) -> [u8; 16] {
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    d.update(rule.as_bytes());
    d.update(&[0]);
    d.update(key.as_bytes());
    let mut out = [0; 16];
    out.copy_from_slice(&d.finish().as_ref()[..16]);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every Redis the configuration's policies name.
#[derive(Default)]
pub struct Stores(HashMap<Arc<Redis>, Arc<Store>>);

impl Stores {
    /// The stores of `table`'s policies; one `old` has for the same
    /// settings is kept (its connection, its remembered refusals).
    pub fn new(table: &RateLimitTable, old: Option<&Stores>) -> Self {
        let mut out = HashMap::new();
        for redis in table.all().filter_map(|p| p.redis.as_ref()) {
            if out.contains_key(redis) {
                continue;
            }
            let kept = old.and_then(|o| o.0.get(redis)).cloned();
            let made = || match Store::new(redis.clone()) {
                Ok(store) => Some(Arc::new(store)),
                Err(e) => {
                    let at = redis.describe();
                    tracing::warn!("global rate limits: cannot use Redis at {at}: {e}");
                    None
                }
            };
            if let Some(store) = kept.or_else(made) {
                out.insert(redis.clone(), store);
            }
        }
        Stores(out)
    }

    pub fn of(&self, redis: &Redis) -> Option<&Arc<Store>> {
        self.0.get(redis)
    }
}
