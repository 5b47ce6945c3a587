//! Request bodies that feed mirrors as they stream to the main backend,
//! and bodies read whole so that a retry can send them again.
//!
//! Each data frame is handed to every mirror through a small bounded
//! channel. A mirror that falls behind is cut off (its request fails) rather
//! than slowing the main request or buffering the body.

use crate::client_body::ClientBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Frames a mirror may lag behind the main request before it is cut off.
pub const MIRROR_BUFFER_FRAMES: usize = 16;

pub use crate::client_body::BoxError;

struct MirrorCopy {
    tx: mpsc::Sender<Bytes>,
    cut: Arc<AtomicBool>,
}

/// The body sent upstream: the client's own (teed to mirrors), or a mirror's copy.
pub struct UpstreamBody(Kind);

enum Kind {
    Main {
        inner: ClientBody,
        copies: Vec<MirrorCopy>,
    },
    Mirror {
        rx: mpsc::Receiver<Bytes>,
        cut: Arc<AtomicBool>,
    },
    /// A body read whole (for retries): sent as one frame.
    Whole(Option<Bytes>),
    Empty,
}

impl UpstreamBody {
    pub fn main(inner: ClientBody) -> Self {
        UpstreamBody(Kind::Main {
            inner,
            copies: Vec::new(),
        })
    }

    /// A body already read whole; cheap to copy for another try.
    pub fn whole(bytes: Bytes) -> Self {
        UpstreamBody(Kind::Whole((!bytes.is_empty()).then_some(bytes)))
    }

    /// A copy of this body for a mirror. Bodies already at their end (GET and
    /// the like) give an empty copy.
    pub fn mirror(&mut self) -> UpstreamBody {
        match &mut self.0 {
            Kind::Whole(bytes) => UpstreamBody(Kind::Whole(bytes.clone())),
            Kind::Main { inner, copies } if !inner.is_end_stream() => {
                let (tx, rx) = mpsc::channel(MIRROR_BUFFER_FRAMES);
                let cut = Arc::new(AtomicBool::new(false));
                copies.push(MirrorCopy {
                    tx,
                    cut: cut.clone(),
                });
                UpstreamBody(Kind::Mirror { rx, cut })
            }
            _ => UpstreamBody(Kind::Empty),
        }
    }
}

/// A main body dropped before its end (the main request failed or was
/// abandoned) cuts its mirrors off: they must not send a truncated body as
/// if it were whole.
impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Kind::Main { copies, .. } = &mut self.0 {
            for c in copies.drain(..) {
                c.cut.store(true, Ordering::Release);
            }
        }
    }
}

#[derive(Debug)]
struct MirrorCut;

impl std::fmt::Display for MirrorCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mirror fell behind the main request and was cut off")
    }
}

impl std::error::Error for MirrorCut {}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Kind::Main { inner, copies } => {
                let polled = Pin::new(inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            copies.retain(|c| {
                                let sent = c.tx.try_send(data.clone()).is_ok();
                                if !sent {
                                    c.cut.store(true, Ordering::Release);
                                }
                                sent
                            });
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        for c in copies.drain(..) {
                            c.cut.store(true, Ordering::Release);
                        }
                    }
                    Poll::Ready(None) => copies.clear(),
                    Poll::Pending => {}
                }
                polled
            }
            Kind::Mirror { rx, cut } => match rx.poll_recv(cx) {
                Poll::Ready(Some(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Poll::Ready(None) if cut.load(Ordering::Acquire) => {
                    Poll::Ready(Some(Err(Box::new(MirrorCut))))
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            Kind::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Main { inner, .. } => inner.is_end_stream(),
            Kind::Mirror { .. } => false,
            Kind::Whole(bytes) => bytes.is_none(),
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Main { inner, .. } => inner.size_hint(),
            Kind::Mirror { .. } => SizeHint::default(),
            Kind::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}
