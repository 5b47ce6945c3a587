//! A client that stops reading (an HTTP/2 window left at zero or opened a
//! byte at a time, a TCP window that stays full) would hold each of its
//! responses' backend connections for as long as it likes. hyper asks a
//! response body for its next piece only once the client has taken the
//! last one, so a body is *with the client* from when hyper gets it, or
//! a piece of it, until hyper asks again. A connection that has a body
//! with the client, and neither asks any body of its for anything nor
//! gets a new one during the send timeout, is closed, with every response
//! on it: nginx's `send_timeout`. (Envoy's `stream_idle_timeout` resets
//! only the stream; hyper gives no handle on a stream that is not polled.)
//! A client that opens its window just enough to take each piece within
//! the timeout is slow, not stopped, and is served.
//!
//! The request path pays three relaxed atomic operations per piece; the
//! clock is read only by the connection's watchdog, twice per timeout.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// One connection's responses, as its watchdog sees them.
#[derive(Debug, Default)]
pub struct SendWatch {
    /// Times hyper asked a body for its next piece, or got a new one.
    asks: AtomicU64,
    /// Bodies with the client.
    with_client: AtomicU32,
}

impl SendWatch {
    /// Resolves once the connection has had a body with the client and
    /// no ask nor new body for `limit` (at most half as long again: it
    /// looks every half limit). Never resolves for a connection that keeps
    /// reading, or whose bodies are all waiting on their backends.
    pub async fn stalled(&self, limit: Duration) {
        // `interval` refuses a zero period; a nanosecond flag is legal.
        let mut look = tokio::time::interval((limit / 2).max(Duration::from_millis(1)));
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        look.tick().await;
        let mut seen = self.asks.load(Relaxed);
        let mut quiet = 0;
        loop {
            look.tick().await;
            let asks = self.asks.load(Relaxed);
            if asks != seen || self.with_client.load(Relaxed) == 0 {
                seen = asks;
                quiet = 0;
                continue;
            }
            quiet += 1;
            if quiet == 2 {
                return;
            }
        }
    }
}

/// A response body's part in its connection's [`SendWatch`].
#[derive(Debug)]
pub struct Watched {
    watch: Arc<SendWatch>,
    with_client: bool,
}

impl Watched {
    /// A body hyper now has: its wait on the client starts now.
    pub fn new(watch: Arc<SendWatch>) -> Self {
        watch.asks.fetch_add(1, Relaxed);
        watch.with_client.fetch_add(1, Relaxed);
        Watched {
            watch,
            with_client: true,
        }
    }

    /// hyper asks for the next piece: the client took the last.
    pub fn asked(&mut self) {
        self.watch.asks.fetch_add(1, Relaxed);
        self.taken();
    }

    /// A piece went to the client, and more will follow it.
    pub fn handed(&mut self) {
        if !self.with_client {
            self.with_client = true;
            self.watch.with_client.fetch_add(1, Relaxed);
        }
    }

    fn taken(&mut self) {
        if self.with_client {
            self.with_client = false;
            self.watch.with_client.fetch_sub(1, Relaxed);
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.taken();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_body_the_client_never_takes_stalls_the_connection() {
        let watch = Arc::new(SendWatch::default());
        let _body = Watched::new(watch.clone());
        let begun = tokio::time::Instant::now();
        watch.stalled(LIMIT).await;
        let waited = begun.elapsed();
        assert!(waited >= LIMIT && waited <= LIMIT * 3 / 2, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_whose_bodies_wait_on_backends_never_stalls() {
        let watch = Arc::new(SendWatch::default());
        let mut body = Watched::new(watch.clone());
        body.asked();
        let stalled = tokio::time::timeout(LIMIT * 10, watch.stalled(LIMIT)).await;
        assert!(stalled.is_err());
        drop(body);
        assert_eq!(watch.with_client.load(Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_keeps_taking_never_stalls() {
        let watch = Arc::new(SendWatch::default());
        let reader = {
            let watch = watch.clone();
            async move {
                let mut body = Watched::new(watch);
                loop {
                    tokio::time::sleep(LIMIT / 3).await;
                    body.asked();
                    body.handed();
                }
            }
        };
        let stalled = tokio::select! {
            () = watch.stalled(LIMIT) => true,
            () = reader => false,
            () = tokio::time::sleep(LIMIT * 10) => false,
        };
        assert!(!stalled);
    }
    /// A response made just before a look still gets the whole limit.
    #[tokio::test(start_paused = true)]
    async fn a_new_body_gets_the_whole_limit() {
        let watch = Arc::new(SendWatch::default());
        let begun = tokio::time::Instant::now();
        let stalled = watch.stalled(LIMIT);
        tokio::pin!(stalled);
        // The watchdog's first look is at LIMIT / 2; the body comes just before.
        let _ = tokio::time::timeout(LIMIT / 2 - Duration::from_millis(1), stalled.as_mut()).await;
        let _body = Watched::new(watch.clone());
        let made = tokio::time::Instant::now();
        stalled.await;
        let waited = made.elapsed();
        assert!(waited >= LIMIT, "cut {waited:?} after the body was made");
        assert!(begun.elapsed() <= LIMIT * 2, "{:?}", begun.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_of_a_nanosecond_does_not_panic() {
        let watch = Arc::new(SendWatch::default());
        let _body = Watched::new(watch.clone());
        watch.stalled(Duration::from_nanos(1)).await;
    }
}
