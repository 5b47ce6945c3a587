//! The client's request body as strait reads it. A body the client framed
//! wrong (a bad chunk size, data longer than the size, a connection closed
//! mid-body) or one over `--max-request-body` is the client's fault: the
//! error carries that, so the request is answered `400` or `413` and the
//! connection closed, never `502` blaming the backend, and the backend
//! connection it was streaming to is dropped, not reused.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct ClientBody {
    inner: Incoming,
    /// Bytes still allowed; `None`: no limit.
    left: Option<u64>,
}

impl ClientBody {
    pub fn new(inner: Incoming, limit: Option<u64>) -> Self {
        ClientBody { inner, left: limit }
    }
}

/// Why the client's body could not be read.
#[derive(Debug)]
pub enum ClientBodyError {
    Malformed(hyper::Error),
    TooLarge,
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
        }
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientBodyError::Malformed(e) => Some(e),
            ClientBodyError::TooLarge => None,
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
            other => other,
        };
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
