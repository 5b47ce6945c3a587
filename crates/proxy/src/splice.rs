//! Two byte streams joined both ways (TCP routes, TLS passthrough, HTTP
//! upgrades such as WebSocket), with an idle limit and a lifetime limit so
//! a forgotten connection cannot hold its slot forever. Half-close is
//! carried: when one side finishes sending, the other side's write half is
//! shut down and the opposite direction goes on.

use crate::ws_frames::{self, Frames};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Limits of a joined connection; `None` is no limit.
#[derive(Debug, Clone, Copy)]
pub struct SpliceLimits {
    /// Closed after this long with no byte either way (`STREAM_IDLE_TIMEOUT`).
    pub idle: Option<Duration>,
    /// Closed this long after it was joined, busy or not (`STREAM_MAX_DURATION`).
    pub max_duration: Option<Duration>,
}

/// Joined connections open now in this process (WebSockets, CONNECT
/// tunnels, TCP and passthrough routes). hyper hands an upgraded
/// connection over and forgets it, so this is what a drain waits for.
static JOINED: AtomicUsize = AtomicUsize::new(0);

pub fn joined() -> usize {
    JOINED.load(Ordering::Relaxed)
}

/// Told at the drain deadline: every joined connection ends now, a
/// WebSocket with a close frame to each side that is between frames.
static CLOSING: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Ends every joined connection (see [`CLOSING`]).
pub fn close_all() {
    CLOSING.notify_waiters();
}

/// One joined connection counted while it lives.
struct Joined;

impl Joined {
    fn count() -> Joined {
        JOINED.fetch_add(1, Ordering::Relaxed);
        Joined
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        JOINED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Default idle limit of joined connections: Envoy's TCP proxy default.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

impl Default for SpliceLimits {
    fn default() -> Self {
        SpliceLimits {
            idle: Some(STREAM_IDLE_TIMEOUT),
            max_duration: None,
        }
    }
}

/// How a joined connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpliceEnd {
    /// Both sides finished.
    Done,
    Error,
    Idle,
    MaxDuration,
    /// Closed at the drain deadline.
    Drained,
}

impl SpliceEnd {
    pub fn label(self) -> &'static str {
        match self {
            SpliceEnd::Done => "closed",
            SpliceEnd::Error => "error",
            SpliceEnd::Idle => "idle_timeout",
            SpliceEnd::MaxDuration => "max_duration",
            SpliceEnd::Drained => "drained",
        }
    }
}

/// What a joined connection carries, as far as ending it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// Bytes: ended by closing the sockets.
    Bytes,
    /// WebSocket frames, `a` the client and `b` the server: ended with a
    /// close frame (1001) to each side that is between two frames.
    WebSocket,
}

/// A joined connection's end, and the bytes it carried each way, however
/// it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spliced {
    pub end: SpliceEnd,
    /// Read from `a` (the client), for `b`.
    pub from_a: u64,
    /// Read from `b` (the backend), for `a`.
    pub from_b: u64,
}

/// Joins `a` and `b` until both directions end or a limit is reached.
pub async fn splice<A, B>(a: A, b: B, limits: SpliceLimits, carried: Carried) -> Spliced
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let _joined = Joined::count();
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let frames = || (carried == Carried::WebSocket).then(Frames::default);
    let mut a = Tracked {
        inner: a,
        start,
        last: last.clone(),
        written: frames(),
        read: 0,
    };
    let mut b = Tracked {
        inner: b,
        start,
        last: last.clone(),
        written: frames(),
        read: 0,
    };
    let closing = CLOSING.notified();
    let end = {
        let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
        let lifetime = async {
            match limits.max_duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let idle = async {
            let Some(idle) = limits.idle else {
                return std::future::pending().await;
            };
            loop {
                let active = Duration::from_millis(last.load(Ordering::Relaxed));
                let quiet_until = start + active + idle;
                if Instant::now() >= quiet_until {
                    return;
                }
                tokio::time::sleep_until(quiet_until.into()).await;
            }
        };
        tokio::select! {
            r = copy => match r {
                Ok(_) => SpliceEnd::Done,
                Err(_) => SpliceEnd::Error,
            },
            _ = lifetime => SpliceEnd::MaxDuration,
            _ = idle => SpliceEnd::Idle,
            _ = closing => SpliceEnd::Drained,
        }
    };
    if end == SpliceEnd::Drained {
        let to_server = ws_frames::close_to_server();
        tokio::join!(
            farewell(&mut a, &ws_frames::CLOSE_TO_CLIENT),
            farewell(&mut b, &to_server)
        );
    }
    Spliced {
        end,
        from_a: a.read,
        from_b: b.read,
    }
}

/// Writes `close` to a WebSocket side that is between frames, then ends
/// the side and reads until the peer closes too (the closing handshake),
/// so that the frame is not destroyed by a reset; briefly: a side that
/// does not take it is closed without it.
async fn farewell<S: AsyncRead + AsyncWrite + Unpin>(side: &mut Tracked<S>, close: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if !side.written.as_ref().is_some_and(Frames::at_boundary) {
        return;
    }
    let handshake = async {
        side.inner.write_all(close).await?;
        side.inner.shutdown().await?;
        let mut sink = [0u8; 1024];
        while side.inner.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(FAREWELL_TIME, handshake).await;
}

/// How long a close frame may take to be written at the drain deadline.
const FAREWELL_TIME: Duration = Duration::from_millis(200);

/// A stream that notes when it last read something.
struct Tracked<S> {
    inner: S,
    start: Instant,
    /// Milliseconds after `start` of the last byte read, either side.
    last: Arc<AtomicU64>,
    /// Where the WebSocket frames written to this side stand, when it
    /// carries WebSocket.
    written: Option<Frames>,
    /// Bytes read from this side.
    read: u64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.read += (buf.filled().len() - before) as u64;
            let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last.store(ms, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let (Some(frames), Poll::Ready(Ok(n))) = (&mut this.written, &written) {
            frames.feed(&buf[..*n]);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
