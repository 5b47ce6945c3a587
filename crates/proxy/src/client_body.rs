//! The client's request body as strait reads it. A body the client framed
//! wrong (a bad chunk size, data longer than the size, a connection closed
//! mid-body) or one over `--max-request-body` is the client's fault: the
//! error carries that, so the request is answered `400` or `413` and the
//! connection closed, never `502` blaming the backend, and the backend
//! connection it was streaming to is dropped, not reused. A client that
//! stops sending in the middle of a body is cut off after the idle limit
//! (`408`), so a slow upload cannot hold a backend connection forever.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct ClientBody {
    inner: Incoming,
    /// Bytes still allowed; `None`: no limit.
    left: Option<u64>,
    idle: Duration,
    /// Runs while the client owes the next frame (made at the first wait:
    /// a body that arrives whole never needs one).
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl ClientBody {
    pub fn new(inner: Incoming, limit: Option<u64>, idle: Duration) -> Self {
        ClientBody {
            inner,
            left: limit,
            idle,
            timer: None,
            waiting: false,
        }
    }

    /// The client has sent nothing for `idle` since this wait began.
    fn idle_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        if self.idle.is_zero() {
            return false;
        }
        let deadline = Instant::now() + self.idle;
        let timer = match (&mut self.timer, self.waiting) {
            (Some(t), true) => t,
            (Some(t), false) => {
                t.as_mut().reset(deadline);
                t
            }
            (None, _) => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.waiting = true;
        timer.as_mut().poll(cx).is_ready()
    }
}

/// Why the client's body could not be read.
#[derive(Debug)]
pub enum ClientBodyError {
    Malformed(hyper::Error),
    TooLarge,
    TimedOut,
}

impl ClientBodyError {
    /// The client's fault somewhere in `error`'s chain of causes, as the
    /// HTTP client that was sending the body reports it.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a ClientBodyError> {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(fault) = e.downcast_ref::<ClientBodyError>() {
                return Some(fault);
            }
            cause = e.source();
        }
        None
    }
}

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientBodyError::Malformed(e) => write!(f, "the client's request body: {e}"),
            ClientBodyError::TooLarge => f.write_str("the client's request body is over the limit"),
            ClientBodyError::TimedOut => f.write_str("the client stopped sending its request body"),
        }
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientBodyError::Malformed(e) => Some(e),
            ClientBodyError::TooLarge | ClientBodyError::TimedOut => None,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                return Poll::Ready(Some(Err(Box::new(ClientBodyError::Malformed(e)))))
            }
            Poll::Pending if this.idle_too_long(cx) => {
                return Poll::Ready(Some(Err(Box::new(ClientBodyError::TimedOut))))
            }
            other => other,
        };
        if polled.is_ready() {
            this.waiting = false;
        }
        if let (Some(left), Poll::Ready(Some(Ok(frame)))) = (&mut this.left, &polled) {
            let n = frame.data_ref().map_or(0, |d| d.len() as u64);
            match left.checked_sub(n) {
                Some(rest) => *left = rest,
                None => return Poll::Ready(Some(Err(Box::new(ClientBodyError::TooLarge)))),
            }
        }
        polled.map(|o| o.map(|r| r.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
