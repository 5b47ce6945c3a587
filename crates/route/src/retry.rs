//! Retries (GEP-1731 `retry` on an HTTPRoute rule) and the retry budget
//! that keeps them from storming a failing service: retries to a Service
//! may add at most [`BUDGET_RATIO`] of the requests sent to it by rules
//! that retry, plus a floor of [`BUDGET_MIN_PER_SECOND`], over the last
//! [`BUDGET_WINDOW`] or two — Linkerd's defaults, changed per Service by a
//! BackendTrafficPolicy's `retryBudget`. A retry over budget is not made;
//! the failure is answered as it is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

impl RetryPolicy {
    /// The wait before retry `n` (1-based): exponential from `backoff`,
    /// with full jitter in its upper half so that callers spread out.
    pub fn wait(&self, n: u32) -> Duration {
        let ceiling = self
            .backoff
            .saturating_mul(1u32 << n.saturating_sub(1).min(10))
            .min(MAX_BACKOFF);
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }
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

/// Counts of requests and retries in the current and the previous window.
#[derive(Debug)]
pub struct RetryBudget {
    pub settings: BudgetSettings,
    start: Instant,
    window: AtomicU64,
    requests: [AtomicU64; 2],
    retries: [AtomicU64; 2],
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(BudgetSettings::default())
    }
}

impl RetryBudget {
    pub fn new(settings: BudgetSettings) -> Self {
        RetryBudget {
            settings,
            start: Instant::now(),
            window: AtomicU64::new(0),
            requests: Default::default(),
            retries: Default::default(),
        }
    }

    /// The slot of the current window, after moving on if a window passed.
    fn slot(&self) -> usize {
        let window_ms = self.settings.window.as_millis().max(1);
        let now = (self.start.elapsed().as_millis() / window_ms) as u64;
        let seen = self.window.load(Ordering::Acquire);
        if now != seen
            && self
                .window
                .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // The slot now starting held the window before last: clear it.
            let fresh = (now % 2) as usize;
            self.requests[fresh].store(0, Ordering::Release);
            self.retries[fresh].store(0, Ordering::Release);
            if now > seen + 1 {
                let other = 1 - fresh;
                self.requests[other].store(0, Ordering::Release);
                self.retries[other].store(0, Ordering::Release);
            }
        }
        (now % 2) as usize
    }

    /// Counts a request (first tries only).
    pub fn request(&self) {
        self.requests[self.slot()].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a retry from the budget, or says there is none left.
    pub fn try_retry(&self) -> bool {
        let slot = self.slot();
        let requests: u64 = self
            .requests
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum();
        let retries: u64 = self.retries.iter().map(|r| r.load(Ordering::Relaxed)).sum();
        let floor =
            (self.settings.min_per_second as f64 * self.settings.window.as_secs_f64()) as u64;
        let allowed = (requests as f64 * self.settings.ratio) as u64 + floor;
        if retries >= allowed {
            return false;
        }
        self.retries[slot].fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_the_ratio_plus_the_floor() {
        let budget = RetryBudget::default();
        for _ in 0..1000 {
            budget.request();
        }
        let granted = (0..1000).filter(|_| budget.try_retry()).count() as u64;
        assert_eq!(
            granted,
            200 + BUDGET_MIN_PER_SECOND * BUDGET_WINDOW.as_secs()
        );
    }

    #[test]
    fn a_configured_budget_counts_its_own_ratio_and_floor() {
        let budget = RetryBudget::new(BudgetSettings {
            ratio: 0.5,
            min_per_second: 1,
            window: Duration::from_secs(2),
        });
        for _ in 0..100 {
            budget.request();
        }
        let granted = (0..1000).filter(|_| budget.try_retry()).count();
        assert_eq!(granted, 50 + 2);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            codes: vec![],
            attempts: 3,
            backoff: Duration::from_millis(100),
        };
        for _ in 0..100 {
            let first = p.wait(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = p.wait(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(p.wait(30) <= MAX_BACKOFF);
        }
    }
}
