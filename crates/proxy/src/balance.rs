//! The request path's side of balancing: the consistent-hash key of a
//! request, a guard that keeps an endpoint's in-flight count true however
//! the request ends, and the circuit breaker's overflow answer.

use crate::handler::{failure, ResponseBody};
use crate::Shared;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use std::hash::{Hash, Hasher};
use std::time::Instant;
use strait_route::{Breaker, Cluster, HashKey, LbKind};

/// The value consistent hashing keys on, hashed; `None` when the policy is
/// not consistent hashing or the request has no such header or cookie
/// (it is then balanced round robin).
pub fn hash_key(lb: &LbKind, headers: &HeaderMap) -> Option<u64> {
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

/// A request on its way to one endpoint. Dropped unfinished (the client
/// went away, the request timed out), it still gives its slots back.
pub struct InFlight<'a> {
    cluster: &'a Cluster,
    index: usize,
    started: Instant,
    done: bool,
}

impl<'a> InFlight<'a> {
    pub fn begin(cluster: &'a Cluster, index: usize) -> Self {
        cluster.begin(index);
        InFlight {
            cluster,
            index,
            started: Instant::now(),
            done: false,
        }
    }

    /// The answer came (or the try failed); true when this ejected the endpoint.
    pub fn finish(mut self, failed: bool) -> bool {
        self.done = true;
        self.cluster.end(self.index, self.started.elapsed(), failed)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.cluster.end(self.index, self.started.elapsed(), false);
        }
    }
}

/// `503` for a full breaker, naming it and the limit reached, as the
/// issue's users asked: `x-strait-breaker: <policy> maxRequests=<n>`.
pub fn overflow(
    shared: &Shared,
    cluster: &Cluster,
    breaker: &Breaker,
    (limit, value): (&'static str, u32),
) -> Response<ResponseBody> {
    shared.metrics.overflow(&cluster.name, limit);
    let mut r = failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "overflow",
        "strait: circuit breaker open\n",
    );
    let name = format!("{} {limit}={value}", breaker.policy);
    if let Ok(v) = HeaderValue::from_str(&name) {
        r.headers_mut().insert("x-strait-breaker", v);
    }
    r
}
