//! What a retry may resend and when it may: bodies read whole up to
//! [`MAX_RETRY_BODY`] so another try can send them again; responses,
//! errors and per-try timeouts retried only for idempotent methods (RFC
//! 9110 §9.2.2), failed connections for any method, since nothing was sent;
//! the wait before each; and the budget that keeps retries from storming a
//! failing Service (its settings are the route crate's).

use crate::client_body::{BoxError, ClientBody};
use crate::tee::UpstreamBody;
use bytes::Bytes;
use http::Method;
use http_body::Body;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use strait_route::{BudgetSettings, RetryPolicy, MAX_BACKOFF};

/// Largest request body kept for a retry (`MAX_RETRY_BODY`); a larger or
/// unsized one streams and is not retried.
pub const MAX_RETRY_BODY: u64 = 64 * 1024;

pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The body to send first, and a copy for retries when it could be kept.
pub async fn prepare(body: ClientBody) -> Result<(UpstreamBody, Option<Bytes>), BoxError> {
    let small = body
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_RETRY_BODY);
    if !small {
        return Ok((UpstreamBody::main(body), None));
    }
    let bytes = body.collect().await?.to_bytes();
    Ok((UpstreamBody::whole(bytes.clone()), Some(bytes)))
}

/// Why a try failed, as retries and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection was made: safe to retry whatever the method.
    Connect,
    /// The request may have reached the backend.
    Backend,
    Timeout,
    Status,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Backend => "backend",
            Failure::Timeout => "timeout",
            Failure::Status => "status",
        }
    }

    /// May a request with this method be tried again after this failure?
    pub fn retriable(self, method: &Method) -> bool {
        self == Failure::Connect || idempotent(method)
    }
}

/// The wait before retry `n` (1-based): exponential from the policy's
/// `backoff`, with full jitter in its upper half so that callers spread out.
pub fn wait(policy: &RetryPolicy, n: u32) -> Duration {
    let ceiling = policy
        .backoff
        .saturating_mul(1u32 << n.saturating_sub(1).min(10))
        .min(MAX_BACKOFF);
    let half = ceiling / 2;
    half + half.mul_f64(fastrand::f64())
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
    use strait_route::{BUDGET_MIN_PER_SECOND, BUDGET_WINDOW};

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
            let first = wait(&p, 1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = wait(&p, 3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(wait(&p, 30) <= MAX_BACKOFF);
        }
    }
}
