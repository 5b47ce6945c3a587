//! Two byte streams joined both ways (TCP routes, TLS passthrough, HTTP
//! upgrades such as WebSocket), with an idle limit and a lifetime limit so
//! a forgotten connection cannot hold its slot forever. Half-close is
//! carried: when one side finishes sending, the other side's write half is
//! shut down and the opposite direction goes on.

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
    /// Both sides finished; bytes copied (from a to b, from b to a).
    Done(u64, u64),
    Error,
    Idle,
    MaxDuration,
}

impl SpliceEnd {
    pub fn label(self) -> &'static str {
        match self {
            SpliceEnd::Done(..) => "closed",
            SpliceEnd::Error => "error",
            SpliceEnd::Idle => "idle_timeout",
            SpliceEnd::MaxDuration => "max_duration",
        }
    }
}

/// Joins `a` and `b` until both directions end or a limit is reached.
pub async fn splice<A, B>(a: A, b: B, limits: SpliceLimits) -> SpliceEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let _joined = Joined::count();
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Tracked {
        inner: a,
        start,
        last: last.clone(),
    };
    let mut b = Tracked {
        inner: b,
        start,
        last: last.clone(),
    };
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
            Ok((ab, ba)) => SpliceEnd::Done(ab, ba),
            Err(_) => SpliceEnd::Error,
        },
        _ = lifetime => SpliceEnd::MaxDuration,
        _ = idle => SpliceEnd::Idle,
    }
}

/// A stream that notes when it last read something.
struct Tracked<S> {
    inner: S,
    start: Instant,
    /// Milliseconds after `start` of the last byte read, either side.
    last: Arc<AtomicU64>,
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
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
