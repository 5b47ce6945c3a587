//! Retries (GEP-1731 `retry` on an HTTPRoute rule) and the settings of
//! the retry budget (kept by the proxy) that keeps them from storming a
//! failing service: retries to a Service
//! may add at most [`BUDGET_RATIO`] of the requests sent to it, plus a floor of [`BUDGET_MIN_PER_SECOND`], over the last
//! [`BUDGET_WINDOW`] or two — Linkerd's defaults, changed per Service by a
//! BackendTrafficPolicy's `retryBudget`. A retry over budget is not made;
//! the failure is answered as it is.

use std::time::Duration;

/// Share of requests retries may add (`BUDGET_RATIO`).
pub const BUDGET_RATIO: f64 = 0.2;
/// Retries allowed whatever the traffic (`BUDGET_MIN_PER_SECOND`).
pub const BUDGET_MIN_PER_SECOND: u64 = 10;
/// The budget's window (`BUDGET_WINDOW`).
pub const BUDGET_WINDOW: Duration = Duration::from_secs(10);
/// First wait before a retry when the route gives no `backoff`.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);
/// Longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct RetryPolicy {
    /// Response codes retried (a failed connection or a per-try timeout is
    /// always retried).
    pub codes: Vec<u16>,
    /// Retries after the first try.
    pub attempts: u32,
    pub backoff: Duration,
}

/// A budget's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSettings {
    pub ratio: f64,
    pub min_per_second: u64,
    pub window: Duration,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            ratio: BUDGET_RATIO,
            min_per_second: BUDGET_MIN_PER_SECOND,
            window: BUDGET_WINDOW,
        }
    }
}
