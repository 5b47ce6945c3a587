//! A Service's balancing settings, from a BackendTrafficPolicy: which
//! balancer, the circuit breaker's limits, outlier detection, the retry
//! budget. Settings only: the scores, counts and budgets they govern live
//! in the proxy (`strait_proxy::live`).

use std::time::Duration;
/// Outlier detection defaults, as Envoy's.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 50;
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbKind {
    PeakEwma,
    RoundRobin,
    LeastRequest,
    /// Rendezvous hashing of the request's key (a header or cookie value).
    ConsistentHash(HashKey),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Header(http::HeaderName),
    Cookie(String),
}

/// A circuit breaker's limits; `None` is no limit.
#[derive(Debug)]
pub struct Breaker {
    pub max_requests: Option<u32>,
    pub max_connections: Option<u32>,
    /// Requests waiting for a connection under `max_connections`.
    pub max_pending: u32,
    /// `namespace/name` of the policy, for the overflow answer.
    pub policy: String,
}

/// Requests that may wait for a connection under `maxConnections` when
/// the policy does not say (Envoy's default).
pub const DEFAULT_MAX_PENDING: u32 = 1024;

#[derive(Debug, Clone, Copy)]
pub struct Outlier {
    pub consecutive: u32,
    pub base: Duration,
    pub max_percent: u32,
}

/// A cluster's traffic settings (from a BackendTrafficPolicy).
#[derive(Debug)]
pub struct Traffic {
    pub lb: LbKind,
    pub breaker: Option<Breaker>,
    pub outlier: Option<Outlier>,
    pub budget: crate::BudgetSettings,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            lb: LbKind::PeakEwma,
            breaker: None,
            outlier: None,
            budget: Default::default(),
        }
    }
}
