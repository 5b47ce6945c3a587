//! Waiting for a connection under a cluster's `maxConnections` (the
//! breaker's [`ConnGate`]): reuse one that comes free, or open one when a
//! slot does, for at most [`PENDING_TIMEOUT`]; past the pending limit or
//! the wait, the request overflows with 503.

use std::sync::Arc;
use std::time::Duration;
use strait_route::{Cluster, ConnGate, ConnSlot};

/// Longest wait for a connection under the limit.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(5);

/// Which limit a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// No connection came free within [`PENDING_TIMEOUT`].
    Connections(u32),
    /// `maxPendingRequests` were already waiting.
    Pending(u32),
}

impl Overflow {
    /// The limit's field name and value, for the answer and the metric.
    pub fn limit(self) -> (&'static str, u32) {
        match self {
            Overflow::Connections(n) => ("maxConnections", n),
            Overflow::Pending(n) => ("maxPendingRequests", n),
        }
    }
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (name, n) = self.limit();
        write!(f, "circuit breaker {name}={n} reached")
    }
}

impl std::error::Error for Overflow {}

/// An open connection or a slot to open one.
pub enum Got<T> {
    Open(T),
    Slot(ConnSlot),
}

/// `reuse` finds a connection already open; `evict` closes an idle one to
/// another endpoint of the cluster, whose slot this request can then use.
pub async fn acquire<T>(
    gate: &Arc<ConnGate>,
    mut reuse: impl FnMut() -> Option<T>,
    mut evict: impl FnMut() -> bool,
) -> Result<Got<T>, Overflow> {
    if let Some(slot) = gate.try_open() {
        return Ok(Got::Slot(slot));
    }
    let Some(_place) = gate.wait_in_line() else {
        return Err(Overflow::Pending(gate.max_pending));
    };
    let deadline = tokio::time::Instant::now() + PENDING_TIMEOUT;
    loop {
        let changed = gate.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if let Some(open) = reuse() {
            return Ok(Got::Open(open));
        }
        if let Some(slot) = gate.try_open() {
            return Ok(Got::Slot(slot));
        }
        // Its slot comes free when its connection task ends, waking us.
        evict();
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return Err(Overflow::Connections(gate.max));
        }
    }
}

/// A byte stream's slot under the cluster's limit: streams do not wait,
/// a full cluster refuses them at once.
pub fn tcp_slot(cluster: &Cluster) -> Result<Option<ConnSlot>, Overflow> {
    match cluster.gate() {
        None => Ok(None),
        Some(gate) => gate
            .try_open()
            .map(Some)
            .ok_or(Overflow::Connections(gate.max)),
    }
}
