//! Authorization services' decisions remembered, for a policy that asks
//! (`extAuth.cache`): a request the service would be shown exactly as an
//! earlier one (see [`crate::ext_authz::key`]) gets that one's answer,
//! allowing or refusing, until the policy's `ttl` has passed. A failure
//! to ask is never remembered. Each policy holds at most its
//! `maxEntries`: when full, what has expired goes, and if nothing has,
//! everything (a flood of distinct requests then costs one pass per
//! `maxEntries` requests, not one per request). A new configuration
//! starts empty, as the token cache does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use strait_route::ext_auth::Cache;

/// A SHA-256 digest.
pub type Key = [u8; 32];

pub struct Decisions<T> {
    /// By the label of the service's asker (`SecurityPolicy shop/api
    /// extAuth`).
    by_asker: Mutex<ByAsker<T>>,
}

type ByAsker<T> = HashMap<Arc<str>, HashMap<Key, Held<T>>>;

struct Held<T> {
    until: Instant,
    answer: T,
}

impl<T> Default for Decisions<T> {
    fn default() -> Self {
        Decisions {
            by_asker: Mutex::default(),
        }
    }
}

impl<T: Clone> Decisions<T> {
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn get(&self, asker: &Arc<str>, key: &Key) -> Option<T> {
        let map = self.lock();
        let held = map.get(asker)?.get(key)?;
        (Instant::now() < held.until).then(|| held.answer.clone())
    }

    pub fn put(&self, asker: &Arc<str>, cache: Cache, key: Key, answer: T) {
        let now = Instant::now();
        let held = Held {
            until: now + cache.ttl,
            answer,
        };
        let mut map = self.lock();
        let entries = map.entry(asker.clone()).or_default();
        if entries.len() >= cache.max && !entries.contains_key(&key) {
            entries.retain(|_, h| now < h.until);
            if entries.len() >= cache.max {
                entries.clear();
            }
        }
        entries.insert(key, held);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ByAsker<T>> {
        self.by_asker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn allow() -> &'static str {
        "allow"
    }

    #[test]
    fn a_decision_stands_for_its_ttl_for_its_own_asker_within_the_bound() {
        let d = Decisions::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let cache = Cache {
            ttl: Duration::from_secs(60),
            max: 3,
        };
        d.put(&a, cache, [1; 32], allow());
        assert!(d.get(&a, &[1; 32]).is_some());
        assert!(d.get(&b, &[1; 32]).is_none(), "another asker's");
        assert!(d.get(&a, &[2; 32]).is_none());
        let gone = Cache {
            ttl: Duration::ZERO,
            ..cache
        };
        d.put(&a, gone, [2; 32], allow());
        assert!(d.get(&a, &[2; 32]).is_none(), "past its ttl");
        d.put(&a, cache, [3; 32], allow());
        // Full: the expired one makes room, nothing else goes.
        d.put(&a, cache, [4; 32], allow());
        assert!(d.get(&a, &[1; 32]).is_some() && d.get(&a, &[4; 32]).is_some());
        // Full of live ones: all go.
        d.put(&a, cache, [5; 32], allow());
        assert!(d.get(&a, &[1; 32]).is_none() && d.get(&a, &[5; 32]).is_some());
        assert!(d.lock()[&a].len() <= cache.max);
        d.clear();
        assert!(d.get(&a, &[5; 32]).is_none());
    }
}
