//! The client's request body as strait reads it. A body the client framed
//! wrong (a bad chunk size, data longer than the size, a connection closed
//! mid-body) or one over `--max-request-body` is the client's fault: the
//! error carries that, so the request is answered `400` or `413` and the
//! connection closed, never `502` blaming the backend, and the backend
//! connection it was streaming to is dropped, not reused. A client that
//! stops sending in the middle of a body is cut off after the idle limit,
//! and one that sends it slower than the minimum rate (a byte now and then,
//! each before the idle limit) is cut off too (`408`), so a slow upload
//! cannot hold a backend connection forever.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

use crate::limits::{BodyPace, BODY_RATE_GRACE};
use crate::wait::Wait;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct ClientBody {
    /// What was read before the body was forwarded, given back first.
    head: Option<Box<BodyHead>>,
    inner: Incoming,
    /// Bytes still allowed; `None`: no limit.
    left: Option<u64>,
    pace: BodyPace,
    /// Runs while the client owes the next frame.
    wait: Wait,
    /// Time spent waiting on the client in earlier waits.
    waited: Duration,
    received: u64,
}

impl ClientBody {
    pub fn new(inner: Incoming, limit: Option<u64>, pace: BodyPace) -> Self {
        ClientBody {
            head: None,
            inner,
            left: limit,
            pace,
            wait: Wait::default(),
            waited: Duration::ZERO,
            received: 0,
        }
    }

    /// The body with `head` (read from it before) given back first.
    pub fn with_head(mut self, head: Option<BodyHead>) -> Self {
        if let Some(h) = &head {
            let n = h.data.len() as u64;
            self.received = n;
            self.left = self.left.map(|l| l.saturating_sub(n));
        }
        self.head = head.map(Box::new);
        self
    }

    /// When a wait that begins at `now` is too long: the idle limit, or
    /// the moment the average rate falls under the minimum.
    fn deadline(pace: BodyPace, received: u64, waited: Duration, now: Instant) -> Option<Instant> {
        let idle = Some(pace.idle)
            .filter(|d| !d.is_zero())
            .and_then(|d| now.checked_add(d));
        let rate = Some(pace.min_rate).filter(|r| *r > 0).and_then(|rate| {
            let earned = Duration::from_millis(received.saturating_mul(1000) / rate);
            let left = (BODY_RATE_GRACE + earned).saturating_sub(waited);
            now.checked_add(left)
        });
        idle.into_iter().chain(rate).min()
    }

    /// The client owes the next frame: `Some` once it has owed it too long.
    fn overdue(&mut self, cx: &mut Context<'_>) -> Option<ClientBodyError> {
        let (pace, received, waited) = (self.pace, self.received, self.waited);
        let Poll::Ready(since) = self
            .wait
            .poll(cx, |now| Self::deadline(pace, received, waited, now))
        else {
            return None;
        };
        let idle = !pace.idle.is_zero() && since.elapsed() >= pace.idle;
        Some(match idle {
            true => ClientBodyError::TimedOut,
            false => ClientBodyError::TooSlow,
        })
    }

    /// A frame came: the wait, if there was one, is over.
    fn arrived(&mut self, bytes: u64) {
        self.received = self.received.saturating_add(bytes);
        self.waited += self.wait.end();
    }
}

#[derive(Debug)]
pub enum ClientBodyError {
    Malformed(hyper::Error),
    TooLarge,
    TimedOut,
    TooSlow,
}

impl ClientBodyError {
    /// The client's fault somewhere in `error`'s chain of causes, as the
    /// HTTP client that was sending the body reports it.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a ClientBodyError> {
        crate::cause::find(error)
    }
}

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientBodyError::Malformed(e) => write!(f, "the client's request body: {e}"),
            ClientBodyError::TooLarge => f.write_str("the client's request body is over the limit"),
            ClientBodyError::TimedOut => f.write_str("the client stopped sending its request body"),
            ClientBodyError::TooSlow => {
                f.write_str("the client sent its request body under the minimum rate")
            }
        }
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientBodyError::Malformed(e) => Some(e),
            ClientBodyError::TooLarge | ClientBodyError::TimedOut | ClientBodyError::TooSlow => {
                None
            }
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
        if let Some(head) = &mut this.head {
            if let Some(frame) = head.next_frame() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if head.ended {
                return Poll::Ready(None);
            }
            this.head = None;
        }
        let polled = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                return Poll::Ready(Some(Err(Box::new(ClientBodyError::Malformed(e)))))
            }
            Poll::Pending => {
                return match this.overdue(cx) {
                    Some(fault) => Poll::Ready(Some(Err(Box::new(fault)))),
                    None => Poll::Pending,
                }
            }
            Poll::Ready(polled) => polled,
        };
        let n = match &polled {
            Some(Ok(frame)) => frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        };
        this.arrived(n);
        if let Some(left) = &mut this.left {
            match left.checked_sub(n) {
                Some(rest) => *left = rest,
                None => return Poll::Ready(Some(Err(Box::new(ClientBodyError::TooLarge)))),
            }
        }
        Poll::Ready(polled.map(|r| r.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.head {
            Some(h) if h.ended => h.data.is_empty() && h.trailers.is_none(),
            Some(h) if !h.data.is_empty() || h.trailers.is_some() => false,
            _ => self.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let Some(head) = &self.head else {
            return self.inner.size_hint();
        };
        let n = head.data.len() as u64;
        // Not exact with trailers: an HTTP/1.1 backend would be sent a
        // `Content-Length`, and the trailers dropped.
        if head.ended && head.trailers.is_none() {
            return SizeHint::with_exact(n);
        }
        if head.ended {
            let mut hint = SizeHint::new();
            hint.set_lower(n);
            return hint;
        }
        let rest = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(n));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(n));
        }
        hint
    }
}

/// The start of a request's body, read before it is forwarded (an
/// authorization service is shown it): the request carries it in its
/// extensions, and its [`ClientBody`] gives it back first.
#[derive(Clone, Debug, Default)]
pub struct BodyHead {
    pub data: Bytes,
    pub trailers: Option<http::HeaderMap>,
    /// The whole body was read.
    pub ended: bool,
}

impl BodyHead {
    fn next_frame(&mut self) -> Option<Frame<Bytes>> {
        if !self.data.is_empty() {
            return Some(Frame::data(std::mem::take(&mut self.data)));
        }
        self.trailers.take().map(Frame::trailers)
    }

    /// Reads up to `max` bytes of `body` (and its trailers, if it ends
    /// by then), within the idle limit for the whole. A body longer than
    /// `max`, or over the body limit, is refused: nothing is guessed from
    /// part of a body.
    pub async fn read(
        body: &mut Incoming,
        max: u64,
        limit: Option<u64>,
        pace: BodyPace,
    ) -> Result<BodyHead, ClientBodyError> {
        use http_body_util::BodyExt;
        let cap = limit.map_or(max, |l| l.min(max));
        let mut head = BodyHead::default();
        let mut data = bytes::BytesMut::new();
        let mut waited = Duration::ZERO;
        while !body.is_end_stream() {
            // Each frame within the same limits as a forwarded body's: the
            // idle limit, and the minimum rate over the whole.
            let now = Instant::now();
            let received = data.len() as u64;
            let next = match ClientBody::deadline(pace, received, waited, now) {
                None => body.frame().await,
                Some(at) => match tokio::time::timeout_at(at, body.frame()).await {
                    Ok(next) => next,
                    Err(_) if !pace.idle.is_zero() && now.elapsed() >= pace.idle => {
                        return Err(ClientBodyError::TimedOut)
                    }
                    Err(_) => return Err(ClientBodyError::TooSlow),
                },
            };
            waited += now.elapsed();
            let Some(frame) = next else {
                break;
            };
            match frame.map_err(ClientBodyError::Malformed)?.into_data() {
                Ok(d) if (data.len() + d.len()) as u64 > cap => {
                    return Err(ClientBodyError::TooLarge)
                }
                Ok(d) => data.extend_from_slice(&d),
                Err(frame) => {
                    head.trailers = frame.into_trailers().ok();
                    break;
                }
            }
        }
        head.ended = true;
        head.data = data.freeze();
        Ok(head)
    }
}
