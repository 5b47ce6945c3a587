//! Tokens SecurityPolicies accepted lately, so that a client sending its
//! token again costs a lookup instead of a signature check (an Ed25519
//! check is about ten times a whole proxied request's instructions:
//! docs/benchmarks.md; Envoy's JWT filter caches the same way). Only good
//! tokens enter, each until its `exp` (plus the skew allowed); an entry
//! answers only for the policy instance that accepted it, and a new
//! configuration starts the cache empty (its keys may have changed). At
//! [`CACHED`] entries it starts over. Basic-auth credentials (a bcrypt
//! check costs milliseconds) are kept the same way, by their SHA-256, for
//! [`UNDATED`] seconds.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use strait_route::authn::{Authn, Memo, LEEWAY};

/// Entries held at most.
pub const CACHED: usize = 4096;
/// Seconds credentials without an `exp` are remembered.
const UNDATED: i64 = 300;

#[derive(Default)]
pub struct TokenCache {
    map: Mutex<HashMap<Box<str>, Entry>>,
}

struct Entry {
    /// Held, so that its address is not another policy's while here.
    auth: Arc<Authn>,
    provider: usize,
    claims: Arc<Map<String, Value>>,
    until: i64,
}

impl TokenCache {
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The cache as `auth` sees it, now, with the key sets fetched.
    pub fn memo<'a>(&'a self, auth: &'a Arc<Authn>, jwks: &'a crate::jwks::Jwks) -> PolicyMemo<'a> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        PolicyMemo {
            cache: self,
            auth,
            now,
            jwks,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct PolicyMemo<'a> {
    cache: &'a TokenCache,
    auth: &'a Arc<Authn>,
    now: i64,
    jwks: &'a crate::jwks::Jwks,
}

impl Memo for PolicyMemo<'_> {
    fn keys(&self, uri: &str) -> Option<Arc<strait_route::authn::KeySet>> {
        self.jwks.keys(uri)
    }

    fn missing_key(&self, uri: &str) {
        self.jwks.missing_key(uri);
    }

    fn get(&self, provider: usize, token: &str) -> Option<Arc<Map<String, Value>>> {
        let map = self.cache.lock();
        let e = map.get(token)?;
        let same = Arc::ptr_eq(&e.auth, self.auth) && e.provider == provider;
        (same && self.now <= e.until).then(|| e.claims.clone())
    }

    fn put(&self, provider: usize, token: &str, claims: &Arc<Map<String, Value>>) {
        // A token until it expires; credentials without an expiry (basic
        // auth) for a while, so that a changed password takes effect
        // soon even without a reload.
        let until = match claims.get("exp") {
            Some(exp) => match exp.as_i64() {
                Some(exp) => exp.saturating_add(LEEWAY as i64),
                None => return,
            },
            None => self.now.saturating_add(UNDATED),
        };
        let entry = Entry {
            auth: self.auth.clone(),
            provider,
            claims: claims.clone(),
            until,
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

    fn auth() -> Arc<Authn> {
        Arc::new(Authn {
            policy: "shop/p".into(),
            optional: false,
            providers: Vec::new(),
            api_keys: None,
            basic: None,
            callers: None,
            ext: None,
            oidc: None,
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
        let jwks = crate::jwks::Jwks::default();
        let memo = cache.memo(&a, &jwks);
        let now = memo.now;
        memo.put(0, "t", &claims(now + 600));
        assert!(memo.get(0, "t").is_some());
        assert!(memo.get(1, "t").is_none(), "another provider");
        assert!(
            cache.memo(&b, &jwks).get(0, "t").is_none(),
            "another policy"
        );
        memo.put(0, "old", &claims(now - LEEWAY as i64 - 1));
        assert!(memo.get(0, "old").is_none(), "past exp and the skew");
        memo.put(7, "undated", &Arc::new(Map::new()));
        let until = cache.lock().get("undated").map(|e| e.until);
        assert_eq!(until, Some(now + UNDATED), "no exp: remembered a while");
        let mut odd = Map::new();
        odd.insert("exp".into(), "soon".into());
        memo.put(0, "odd", &Arc::new(odd));
        assert!(memo.get(0, "odd").is_none(), "an exp that is not a date");
        for i in 0..CACHED + 10 {
            memo.put(0, &format!("t{i}"), &claims(now + 600));
        }
        assert!(cache.lock().len() <= CACHED);
        cache.clear();
        assert!(memo.get(0, "t9").is_none());
    }
}
