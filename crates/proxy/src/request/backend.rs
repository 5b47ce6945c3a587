//! Phase 4, backend: which of the rule's weighted backends, a place under
//! its circuit breaker, and which endpoint by the balancing policy (keyed
//! by the request for consistent hashing, avoiding endpoints already
//! tried) — held as an [`InFlight`] that keeps the endpoint's score true
//! however the try ends.

use crate::answer::ProxyError;
use http::uri::Authority;
use http::HeaderMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use strait_route::{BackendTarget, Cluster, HashKey, LbKind, Outcome, Rule, WeightedBackend};
use tracing::debug;

/// The rule's backend for one try, by weight.
pub fn weighted(rule: &Rule) -> Result<(&WeightedBackend, &Arc<Cluster>), ProxyError> {
    let backend = rule.pick(fastrand::u64(..)).ok_or(ProxyError::NoBackend)?;
    match &backend.target {
        BackendTarget::Cluster(c) => Ok((backend, c)),
        BackendTarget::Invalid(why) => {
            debug!(route = &*rule.route, why, "invalid backend");
            Err(ProxyError::InvalidBackend)
        }
    }
}

/// An endpoint of `cluster` under its breaker, not one of `tried`.
pub fn endpoint<'c>(
    cluster: &'c Cluster,
    headers: &HeaderMap,
    tried: &[SocketAddr],
) -> Result<InFlight<'c>, ProxyError> {
    cluster.admit().map_err(|breaker| ProxyError::Overflow {
        policy: Some(breaker.policy.clone()),
        limit: "maxRequests",
        value: breaker.max_requests.unwrap_or_default(),
    })?;
    let hash = hash_key(&cluster.traffic.lb, headers);
    let Some(index) = cluster.choose(hash, tried) else {
        cluster.release();
        return Err(ProxyError::NoEndpoints);
    };
    Ok(InFlight::begin(cluster, index))
}

/// The value consistent hashing keys on, hashed; `None` when the policy is
/// not consistent hashing or the request has no such header or cookie
/// (it is then balanced round robin).
fn hash_key(lb: &LbKind, headers: &HeaderMap) -> Option<u64> {
    let LbKind::ConsistentHash(key) = lb else {
        return None;
    };
    let value: &[u8] = match key {
        HashKey::Header(name) => headers.get(name)?.as_bytes(),
        HashKey::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_bytes())?,
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    Some(h.finish())
}

/// A try on its way to one endpoint. Dropped unfinished (the client went
/// away, the request timed out), it still gives its slots back.
pub struct InFlight<'c> {
    pub cluster: &'c Cluster,
    index: usize,
    started: Instant,
    done: bool,
}

impl<'c> InFlight<'c> {
    fn begin(cluster: &'c Cluster, index: usize) -> Self {
        cluster.begin(index);
        InFlight {
            cluster,
            index,
            started: Instant::now(),
            done: false,
        }
    }

    pub fn endpoint(&self) -> (SocketAddr, &'c Authority) {
        self.cluster.endpoint(self.index)
    }

    /// The try ended; true when its outcome ejected the endpoint.
    pub fn finish(mut self, outcome: Outcome) -> bool {
        self.done = true;
        self.cluster
            .end(self.index, self.started.elapsed(), outcome)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.cluster
                .end(self.index, self.started.elapsed(), Outcome::Abandoned);
        }
    }
}
