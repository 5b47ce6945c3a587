//! Lingering close. A connection closed with a client's bytes still
//! unread (the body of a refused upload, a pipelined request) is answered
//! by the kernel with a reset, and a reset makes the client's kernel drop
//! what it has not read yet, the answer included. So when hyper closes a
//! connection, the write side is shut first and whatever the client still
//! sends is read and thrown away until it closes too, for at most
//! [`LINGER_TIME`] — as nginx's `lingering_close`. Connections that may
//! become tunnels close at once: their bytes belong to the other side.

use crate::ctx::ConnInfo;
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// Longest a closing connection reads on (`LINGER_TIME`); nginx's
/// `lingering_timeout` is 5 s.
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// A downstream connection's I/O that lingers on close.
pub struct Linger<I> {
    io: I,
    conn: Arc<ConnInfo>,
    /// Set once the write side is shut: until when to read on.
    until: Option<Pin<Box<Sleep>>>,
}

impl<I> Linger<I> {
    pub fn new(io: I, conn: Arc<ConnInfo>) -> Self {
        Linger {
            io,
            conn,
            until: None,
        }
    }
}

impl<I: Read + Unpin> Read for Linger<I> {
    #[inline(always)]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: Read + Write + Unpin> Write for Linger<I> {
    #[inline(always)]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    #[inline(always)]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    #[inline(always)]
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    #[inline(always)]
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.until.is_none() {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            if this.conn.tunnel.load(Ordering::Relaxed) {
                return Poll::Ready(Ok(()));
            }
            this.until = Some(Box::pin(tokio::time::sleep(LINGER_TIME)));
        }
        this.discard(cx)
    }
}

impl<I: Read + Unpin> Linger<I> {
    /// Reads and drops until the client closes, fails, or time is up.
    fn discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 4096];
        loop {
            if let Some(until) = self.until.as_mut() {
                if until.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut self.io).poll_read(cx, buf.unfilled())) {
                Ok(()) if !buf.filled().is_empty() => continue,
                // Closed or failed: nothing more can be lost.
                _ => return Poll::Ready(Ok(())),
            }
        }
    }
}
