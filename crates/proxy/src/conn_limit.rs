//! Waiting for a connection under a cluster's `maxConnections` (the
//! breaker's [`ConnGate`]): reuse one that comes free, or open one when a
//! slot does, for at most [`PENDING_TIMEOUT`]; past the pending limit or
//! the wait, the request overflows with 503.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug)]
pub struct ConnGate {
    pub max: u32,
    pub max_pending: u32,
    open: AtomicU32,
    pending: AtomicU32,
    /// Woken when a connection closes or goes back to the idle pool.
    changed: Notify,
}

/// One open connection's place under the limit; dropped when it closes.
#[derive(Debug)]
pub struct ConnSlot(Arc<ConnGate>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

/// A waiting request's place among the pending ones.
#[derive(Debug)]
pub struct Pending<'a>(&'a ConnGate);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnGate {
    pub fn new(max: u32, max_pending: u32) -> Self {
        ConnGate {
            max,
            max_pending,
            open: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            changed: Notify::new(),
        }
    }

    /// A slot for a new connection, if fewer than `max` are open.
    pub fn try_open(self: &Arc<Self>) -> Option<ConnSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnSlot(self.clone()))
    }

    /// Joins the waiting requests; `None` when `max_pending` already wait.
    pub fn wait_in_line(&self) -> Option<Pending<'_>> {
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_pending).then_some(n + 1)
            })
            .ok()
            .map(|_| Pending(self))
    }

    /// A connection went back to the idle pool: waiters may take it.
    pub fn returned(&self) {
        self.changed.notify_waiters();
    }

    /// Resolves at the next close or return. Create it, then look again
    /// for a connection, then await it: nothing in between is missed.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    pub fn open(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }
}

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
pub fn tcp_slot(gate: Option<&Arc<ConnGate>>) -> Result<Option<ConnSlot>, Overflow> {
    match gate {
        None => Ok(None),
        Some(gate) => gate
            .try_open()
            .map(Some)
            .ok_or(Overflow::Connections(gate.max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_places_are_counted_and_given_back() {
        let gate = Arc::new(ConnGate::new(2, 1));
        let a = gate.try_open();
        let b = gate.try_open();
        assert!(a.is_some() && b.is_some());
        assert!(
            gate.try_open().is_none(),
            "a third connection is over the limit"
        );
        let first = gate.wait_in_line();
        assert!(first.is_some());
        assert!(gate.wait_in_line().is_none(), "one may wait");
        drop(first);
        assert!(gate.wait_in_line().is_some());
        drop(a);
        assert_eq!(gate.open(), 1);
        assert!(gate.try_open().is_some());
    }
}
