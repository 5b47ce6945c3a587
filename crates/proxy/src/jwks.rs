//! Issuers' key sets fetched from their URLs (`remoteJWKS`): each set is
//! fetched when a configuration first names it, again every refresh
//! period, and sooner — at most every [`MIN_INTERVAL`] — when a token names
//! a key the set lacks (the issuer rotated its keys). A failed fetch keeps
//! the last good set and is tried again after 1 s, doubling up to the
//! refresh period; until a first fetch succeeds, tokens of that issuer are
//! refused (`401`, saying why). A set no configuration names any more
//! stops being fetched.

use crate::fetch::Client;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strait_route::authn::{KeySet, Remote};
use tokio::sync::Notify;

/// Sooner than this after a fetch, a missing key does not fetch again.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Jwks {
    sets: ArcSwap<HashMap<String, Arc<Set>>>,
}

struct Set {
    remote: Remote,
    keys: ArcSwapOption<KeySet>,
    /// A token named a key the set lacks.
    kick: Notify,
    stopped: AtomicBool,
}

impl Jwks {
    /// The last set fetched from `uri`.
    pub fn keys(&self, uri: &str) -> Option<Arc<KeySet>> {
        self.sets.load().get(uri)?.keys.load_full()
    }

    pub fn missing_key(&self, uri: &str) {
        if let Some(set) = self.sets.load().get(uri) {
            set.kick.notify_one();
        }
    }

    /// Fetches what `wanted` names from now on; stops fetching the rest.
    /// A set whose refresh period changed starts over.
    pub fn track(&self, wanted: Vec<Remote>) {
        let old = self.sets.load_full();
        if wanted.is_empty() && old.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut sets = HashMap::new();
        for remote in wanted {
            let kept = old.get(&remote.uri).filter(|s| s.remote == remote);
            let set = match kept {
                Some(set) => set.clone(),
                None => {
                    let set = Arc::new(Set {
                        keys: ArcSwapOption::new(
                            old.get(&remote.uri).and_then(|s| s.keys.load_full()),
                        ),
                        remote,
                        kick: Notify::new(),
                        stopped: AtomicBool::new(false),
                    });
                    runtime.spawn(refresh(set.clone()));
                    set
                }
            };
            sets.insert(set.remote.uri.clone(), set);
        }
        for (uri, set) in old.iter() {
            if !sets.get(uri).is_some_and(|s| Arc::ptr_eq(s, set)) {
                set.stopped.store(true, Ordering::Relaxed);
                set.kick.notify_one();
            }
        }
        self.sets.store(Arc::new(sets));
    }
}

/// Sets stop being fetched when the proxy's state goes (a proxy run in a
/// process that goes on: the demo, tests).
impl Drop for Jwks {
    fn drop(&mut self) {
        for set in self.sets.load().values() {
            set.stopped.store(true, Ordering::Relaxed);
            set.kick.notify_one();
        }
    }
}

/// Fetches `set` until it is stopped.
async fn refresh(set: Arc<Set>) {
    let client = crate::fetch::client(&set.remote.uri);
    let mut backoff = Duration::from_secs(1);
    loop {
        let fetched = tokio::time::Instant::now();
        let fetched_now = match &client {
            Ok(client) => fetch(client, &set.remote.uri).await,
            Err(why) => Err(why.clone()),
        };
        let wait = match fetched_now {
            Ok((keys, warnings)) => {
                for w in warnings {
                    tracing::warn!(uri = set.remote.uri, "key set: {w}");
                }
                tracing::info!(uri = set.remote.uri, keys = keys.len(), "key set fetched");
                set.keys.store(Some(Arc::new(keys)));
                backoff = Duration::from_secs(1);
                set.remote.refresh
            }
            Err(why) => {
                let kept = set.keys.load().is_some();
                tracing::warn!(
                    uri = set.remote.uri,
                    why,
                    kept_last_good = kept,
                    "key set fetch failed"
                );
                let wait = backoff.min(set.remote.refresh);
                backoff = (backoff * 2).min(set.remote.refresh);
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = set.kick.notified() => {
                // Kicked early: not sooner than the minimum interval
                // after the last fetch.
                tokio::time::sleep_until(fetched + MIN_INTERVAL).await;
            }
        }
        if set.stopped.load(Ordering::Relaxed) {
            return;
        }
    }
}

pub(crate) async fn fetch(client: &Client, uri: &str) -> Result<(KeySet, Vec<String>), String> {
    let body = crate::fetch::get(client, uri).await?;
    let text = std::str::from_utf8(&body).map_err(|_| "the set is not UTF-8".to_string())?;
    KeySet::parse(text)
}
