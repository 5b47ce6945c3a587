//! The circuit breaker's connection limit: at most `maxConnections`
//! connections open to a cluster's endpoints at once, each holding a
//! [`ConnSlot`] for its life; a request that needs one more waits, as one
//! of at most `maxPendingRequests`, for a slot or an idle connection to
//! come free.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
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
