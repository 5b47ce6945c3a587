//! hyper's HTTP/1 header-read deadline without a tokio timer per request.
//!
//! hyper arms its `header_read_timeout` for every request head it waits
//! for (the idle time of a kept-alive connection included) and drops it
//! once the head is read: with tokio's timer that is a timer-wheel entry
//! made and removed per request, about 1,300 instructions or 3.6 % of a
//! proxied request (callgrind). Here each connection has its own
//! [`ConnTimer`]: a deadline is a slot in a short list, and one watchdog
//! per connection ([`ConnTimer::watch`], polled only when its interval
//! ticks) wakes what is due. A deadline fires up to a quarter of the
//! timeout late; hyper then ends the connection as before.

use hyper::rt::{Sleep, Timer};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// One connection's deadlines.
#[derive(Clone, Default)]
pub struct ConnTimer(Arc<Mutex<Slots>>);

#[derive(Default)]
struct Slots {
    next_id: u64,
    /// Few: hyper keeps one deadline at a time per connection.
    live: Vec<Slot>,
}

struct Slot {
    id: u64,
    deadline: Instant,
    fired: bool,
    waker: Option<Waker>,
}

impl ConnTimer {
    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every deadline at or before `now`.
    fn fire(&self, now: Instant) {
        for slot in self.slots().live.iter_mut() {
            if !slot.fired && slot.deadline <= now {
                slot.fired = true;
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
        }
    }

    /// The connection's watchdog: looks every quarter of `timeout` and
    /// wakes the deadlines that passed. Never ends; the connection does.
    pub async fn watch(&self, timeout: Duration) {
        let mut look = tokio::time::interval((timeout / 4).max(Duration::from_millis(1)));
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            look.tick().await;
            self.fire(now());
        }
    }
}

/// tokio's clock (the same as std's, except in tests that pause it).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Timer for ConnTimer {
    fn now(&self) -> Instant {
        now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let mut slots = self.slots();
        let id = slots.next_id;
        slots.next_id += 1;
        slots.live.push(Slot {
            id,
            deadline,
            fired: false,
            waker: None,
        });
        drop(slots);
        Box::pin(Deadline {
            timer: self.clone(),
            id,
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        let Some(mine) = sleep.as_mut().downcast_mut_pin::<Deadline>() else {
            *sleep = self.sleep_until(new_deadline);
            return;
        };
        let id = mine.id;
        if let Some(slot) = self.slots().live.iter_mut().find(|s| s.id == id) {
            slot.deadline = new_deadline;
            slot.fired = false;
        }
    }
}

/// A deadline hyper holds.
struct Deadline {
    timer: ConnTimer,
    id: u64,
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut slots = self.timer.slots();
        let Some(slot) = slots.live.iter_mut().find(|s| s.id == self.id) else {
            return Poll::Ready(());
        };
        if slot.fired {
            return Poll::Ready(());
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Sleep for Deadline {}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.timer.slots().live.retain(|s| s.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_fires_within_a_quarter_of_the_timeout_after_it() {
        let timer = ConnTimer::default();
        let timeout = Duration::from_secs(4);
        let begun = now();
        let sleep = timer.sleep(timeout);
        let watch = std::pin::pin!(timer.watch(timeout));
        tokio::select! {
            () = sleep => {}
            () = watch => unreachable!("the watchdog never ends"),
        }
        let waited = now().duration_since(begun);
        assert!(
            waited >= timeout && waited <= timeout * 5 / 4 + Duration::from_millis(10),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_a_deadline_and_drop_forgets_it() {
        let timer = ConnTimer::default();
        let timeout = Duration::from_secs(4);
        let mut sleep = timer.sleep(timeout);
        timer.reset(&mut sleep, now() + Duration::from_secs(40));
        let watch = std::pin::pin!(timer.watch(timeout));
        let waited = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::select! {
                () = &mut sleep => {}
                () = watch => {}
            }
        })
        .await;
        assert!(waited.is_err(), "fired before its new deadline");
        drop(sleep);
        assert!(timer.slots().live.is_empty());
    }
}
