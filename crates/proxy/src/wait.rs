//! A wait on a peer for its next frame, timed: the timer is made at the
//! first wait (a body that arrives whole never needs one) and reused for
//! every later wait, its deadline fixed when the wait begins.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

#[derive(Default)]
pub struct Wait {
    timer: Option<Pin<Box<Sleep>>>,
    /// When the current wait began; `None` between waits.
    since: Option<Instant>,
}

impl Wait {
    /// Polls the current wait, beginning it if there is none, with the
    /// deadline `deadline` gives for a wait beginning at that moment
    /// (`None`: this wait has none). Ready with the wait's start once past.
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
        deadline: impl FnOnce(Instant) -> Option<Instant>,
    ) -> Poll<Instant> {
        let since = match self.since {
            Some(since) => since,
            None => {
                let now = Instant::now();
                let Some(deadline) = deadline(now) else {
                    return Poll::Pending;
                };
                self.since = Some(now);
                match &mut self.timer {
                    Some(t) => t.as_mut().reset(deadline),
                    None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
                now
            }
        };
        match self.timer.as_mut().map(|t| t.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(since),
            _ => Poll::Pending,
        }
    }

    /// A frame came: the wait, if there was one, is over; how long it was.
    pub fn end(&mut self) -> Duration {
        self.since.take().map_or(Duration::ZERO, |s| s.elapsed())
    }
}
