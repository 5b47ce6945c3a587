//! Phase 4, backend: which of the rule's weighted backends, a place under
//! its circuit breaker, and which endpoint by the balancing policy (keyed
//! by the request for consistent hashing, avoiding endpoints already
//! tried) — held as an [`InFlight`] that keeps the endpoint's score true
//! however the try ends.

use crate::answer::ProxyError;
use crate::live::{ClusterState, Outcome};
use http::uri::Authority;
use http::HeaderMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use strait_route::session::endpoint_id;
use strait_route::{BackendTarget, Cluster, HashKey, LbKind, Rule, WeightedBackend};
use tracing::debug;

/// The rule's backend for one try: a session's (even at weight 0, as
/// GEP-1619 asks), or one by weight; and its place in the rule.
pub fn weighted(
    rule: &Rule,
    session: Option<u16>,
) -> Result<(usize, &WeightedBackend, &Arc<Cluster>), ProxyError> {
    // A session on a backend that is no longer valid is balanced anew.
    let kept = session
        .and_then(|b| Some((usize::from(b), rule.backends.get(usize::from(b))?)))
        .filter(|(_, b)| matches!(b.target, BackendTarget::Cluster(_)));
    let (index, backend) = match kept {
        Some(kept) => kept,
        None => {
            let backend = rule.pick(fastrand::u64(..)).ok_or(ProxyError::NoBackend)?;
            // Only a session needs to know which it was.
            let index = match rule.session() {
                Some(_) => rule.backends.iter().position(|b| std::ptr::eq(b, backend)),
                None => None,
            };
            (index.unwrap_or_default(), backend)
        }
    };
    match &backend.target {
        BackendTarget::Cluster(c) => Ok((index, backend, c)),
        BackendTarget::Invalid(why) => {
            debug!(route = &*rule.route, why, "invalid backend");
            Err(ProxyError::InvalidBackend)
        }
    }
}

/// An endpoint of `cluster` under its breaker, not one of `tried`: the
/// session's (`prefer`, an endpoint id) while it is there and not
/// ejected, else one by the balancing policy.
pub fn endpoint<'c>(
    cluster: &'c Cluster,
    state: &'c ClusterState,
    (headers, prefer): (&HeaderMap, Option<u64>),
    tried: &[SocketAddr],
) -> Result<InFlight<'c>, ProxyError> {
    let breaker = cluster.traffic.breaker.as_ref();
    if !state.admit(breaker.and_then(|b| b.max_requests)) {
        return Err(ProxyError::Overflow {
            policy: breaker.map(|b| b.policy.clone()),
            limit: "maxRequests",
            value: breaker.and_then(|b| b.max_requests).unwrap_or_default(),
        });
    }
    let avoid = |i: usize| tried.contains(&cluster.endpoints[i]);
    let kept = prefer.and_then(|id| {
        let found = cluster.endpoints.iter().position(|e| endpoint_id(e) == id);
        found.filter(|&i| !avoid(i) && state.eligible(i))
    });
    let chosen = kept
        .or_else(|| {
            let hash = hash_key(&cluster.traffic.lb, headers);
            state.choose(&cluster.traffic.lb, hash, &avoid)
        })
        .and_then(|i| Some((i, cluster.endpoint(i)?)));
    let Some((index, endpoint)) = chosen else {
        state.release();
        return Err(ProxyError::NoEndpoints);
    };
    state.begin(index);
    Ok(InFlight {
        cluster,
        state,
        index,
        endpoint,
        started: Instant::now(),
        done: false,
    })
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
        HashKey::Cookie(name) => strait_route::cookie(headers, name)?.as_bytes(),
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    Some(h.finish())
}

/// A try on its way to one endpoint. Dropped unfinished (the client went
/// away, the request timed out), it still gives its slots back.
pub struct InFlight<'c> {
    pub cluster: &'c Cluster,
    state: &'c ClusterState,
    index: usize,
    endpoint: (SocketAddr, &'c Authority),
    started: Instant,
    done: bool,
}

impl<'c> InFlight<'c> {
    /// The Service, as metrics label it.
    pub fn service(&self) -> &'c std::sync::Arc<crate::peer::Named> {
        &self.state.service
    }

    pub fn endpoint(&self) -> (SocketAddr, &'c Authority) {
        self.endpoint
    }

    /// The try ended; true when its outcome ejected the endpoint.
    pub fn finish(mut self, outcome: Outcome) -> bool {
        self.done = true;
        self.end(outcome)
    }

    fn end(&self, outcome: Outcome) -> bool {
        let outlier = self.cluster.traffic.outlier.as_ref();
        self.state
            .end(self.index, self.started.elapsed(), outcome, outlier)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.end(Outcome::Abandoned);
        }
    }
}
