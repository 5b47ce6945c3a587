//! A connection's watchdogs (the drain signal, the send timeout) wait
//! beside it for something rare. `tokio::select!` polls every branch
//! each time the task wakes, so each request paid for polling both
//! watchdogs two or three times (about 1,000 instructions, callgrind).
//! [`Beside`] polls the watchdog only when its own waker fired.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// Which of the two finished first.
pub enum Either<A, B> {
    Main(A),
    Side(B),
}

/// `main` and `side` raced: `main` is polled on every wake, `side` only
/// when its waker was woken (and once at first, to register it).
pub struct Beside<M, S> {
    main: M,
    side: S,
    wake: Arc<SideWake>,
    waker: Waker,
}

struct SideWake {
    woken: AtomicBool,
    /// The task to wake when the side is.
    task: Mutex<Option<Waker>>,
}

impl Wake for SideWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = &*task {
            task.wake_by_ref();
        }
    }
}

impl<M, S> Beside<M, S> {
    pub fn new(main: M, side: S) -> Self {
        let wake = Arc::new(SideWake {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Beside {
            main,
            side,
            waker: Waker::from(wake.clone()),
            wake,
        }
    }
}

impl<M: Future + Unpin, S: Future + Unpin> Future for Beside<M, S> {
    type Output = Either<M::Output, S::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        {
            let mut task = this
                .wake
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        if this.wake.woken.swap(false, Ordering::AcqRel) {
            let mut side_cx = Context::from_waker(&this.waker);
            if let Poll::Ready(out) = Pin::new(&mut this.side).poll(&mut side_cx) {
                return Poll::Ready(Either::Side(out));
            }
        }
        Pin::new(&mut this.main).poll(cx).map(Either::Main)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    /// Counts its polls; ready after `ready_after` of them.
    struct Counted {
        polls: Arc<AtomicU32>,
        ready_after: u32,
    }

    impl Future for Counted {
        type Output = u32;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            let n = self.polls.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= self.ready_after {
                return Poll::Ready(n);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn the_side_is_polled_only_when_its_waker_fires() {
        let side_polls = Arc::new(AtomicU32::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let side_count = side_polls.clone();
        let side = Box::pin(async move {
            side_count.fetch_add(1, Ordering::Relaxed);
            let _ = rx.await;
            side_count.fetch_add(1, Ordering::Relaxed);
        });
        let main_polls = Arc::new(AtomicU32::new(0));
        let main = Counted {
            polls: main_polls.clone(),
            ready_after: 50,
        };
        let out = Beside::new(main, side).await;
        assert!(matches!(out, Either::Main(50)));
        assert_eq!(
            side_polls.load(Ordering::Relaxed),
            1,
            "polled once, to wait"
        );
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_side_that_fires_wins_while_main_waits() {
        let main = Box::pin(std::future::pending::<()>());
        let side = Box::pin(tokio::time::sleep(Duration::from_secs(5)));
        let out = Beside::new(main, side).await;
        assert!(matches!(out, Either::Side(())));
    }
}
