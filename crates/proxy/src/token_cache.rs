//! Tokens SecurityPolicies accepted lately, so that a client sending its
//! token again costs a lookup instead of a signature check (an Ed25519
//! check is about ten times a whole proxied request's instructions:
//! docs/benchmarks.md; Envoy's JWT filter caches the same way). Only good
//! tokens enter, each until its `exp` (plus the skew allowed); an entry
//! answers only for the policy instance that accepted it, and a new
//! configuration starts the cache empty (its keys may have changed). At
//! [`CACHED`] entries it starts over.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use strait_route::authn::{JwtAuth, Memo, LEEWAY};

/// Entries held at most.
pub const CACHED: usize = 4096;

#[derive(Default)]
pub struct TokenCache {
    map: Mutex<HashMap<Box<str>, Entry>>,
}

struct Entry {
    /// Held, so that its address is not another policy's while here.
    auth: Arc<JwtAuth>,
    provider: usize,
    claims: Arc<Map<String, Value>>,
    until: i64,
}

impl TokenCache {
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The cache as `auth` sees it, now.
    pub fn memo<'a>(&'a self, auth: &'a Arc<JwtAuth>) -> PolicyMemo<'a> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        PolicyMemo {
            cache: self,
            auth,
            now,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct PolicyMemo<'a> {
    cache: &'a TokenCache,
    auth: &'a Arc<JwtAuth>,
    now: i64,
}

impl Memo for PolicyMemo<'_> {
    fn get(&self, provider: usize, token: &str) -> Option<Arc<Map<String, Value>>> {
        let map = self.cache.lock();
        let e = map.get(token)?;
        let same = Arc::ptr_eq(&e.auth, self.auth) && e.provider == provider;
        (same && self.now <= e.until).then(|| e.claims.clone())
    }

    fn put(&self, provider: usize, token: &str, claims: &Arc<Map<String, Value>>) {
        let Some(exp) = claims.get("exp").and_then(Value::as_i64) else {
            return;
        };
        let entry = Entry {
            auth: self.auth.clone(),
            provider,
            claims: claims.clone(),
            until: exp.saturating_add(LEEWAY as i64),
        };
        let mut map = self.cache.lock();
        if map.len() >= CACHED {
            map.clear();
        }
        map.insert(token.into(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Arc<JwtAuth> {
        Arc::new(JwtAuth {
            policy: "shop/p".into(),
            optional: false,
            providers: Vec::new(),
            broken: None,
        })
    }

    fn claims(exp: i64) -> Arc<Map<String, Value>> {
        let mut m = Map::new();
        m.insert("exp".into(), exp.into());
        Arc::new(m)
    }

    #[test]
    fn an_entry_answers_its_own_policy_until_its_expiry_and_the_cache_is_bounded() {
        let cache = TokenCache::default();
        let (a, b) = (auth(), auth());
        let memo = cache.memo(&a);
        let now = memo.now;
        memo.put(0, "t", &claims(now + 600));
        assert!(memo.get(0, "t").is_some());
        assert!(memo.get(1, "t").is_none(), "another provider");
        assert!(cache.memo(&b).get(0, "t").is_none(), "another policy");
        memo.put(0, "old", &claims(now - LEEWAY as i64 - 1));
        assert!(memo.get(0, "old").is_none(), "past exp and the skew");
        for i in 0..CACHED + 10 {
            memo.put(0, &format!("t{i}"), &claims(now + 600));
        }
        assert!(cache.lock().len() <= CACHED);
        cache.clear();
        assert!(memo.get(0, "t9").is_none());
    }
}
