//! A backend's HTTP/1.1 connection, driven from the request's own task:
//! the request head and body written, the answer's head read, then its
//! body read as the client takes it. No task or channel per connection
//! (hyper's client had both, a third of the instructions per request);
//! the wire format is `strait_h1`'s.
//!
//! An idle connection has no task watching it: whether the backend
//! closed it is seen when it is taken from the pool (a read that must
//! find nothing), and a request a reused connection dropped before any
//! answer is sent again on a fresh one when that is safe (see [`Sent`]).

use crate::conn_limit::ConnSlot;
use crate::tee::{BoxError, UpstreamBody};
use bytes::{Buf, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};
use strait_h1::{Decoded, Decoder, RequestFraming, ResponseFraming};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Room made in the read buffer before each read.
const READ_SIZE: usize = 16 * 1024;

/// A request body's data up to this size is copied behind the head, so
/// that head and body leave in one write.
const COPY_BELOW: usize = 4096;

/// A backend connection's bytes, in plain text or TLS.
pub enum Io {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Tcp(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// An open connection to a backend, idle between requests.
pub struct Conn {
    io: Io,
    read: BytesMut,
    write: BytesMut,
    parser: strait_h1::ResponseParser,
    /// Its place under the cluster's connection limit, freed when it closes.
    _slot: Option<ConnSlot>,
}

impl Conn {
    pub fn new(io: Io, slot: Option<ConnSlot>) -> Self {
        Conn {
            io,
            read: BytesMut::new(),
            write: BytesMut::new(),
            parser: Default::default(),
            _slot: slot,
        }
    }

    /// Whether an idle connection can carry a request: the backend has
    /// neither closed it nor sent anything since its last answer. A read
    /// that would wait says so; it must not find bytes or the end.
    pub fn is_usable(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut buf)
            .is_pending()
    }

    /// Reads more of the answer into the read buffer; 0 at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_SIZE / 4 {
            self.read.reserve(READ_SIZE);
        }
        pin!(self.io.read_buf(&mut self.read)).poll(cx)
    }
}

/// Why a request got no answer on a connection.
pub struct Unanswered {
    pub error: BoxError,
    /// The request, when it may go again: no answer had begun, none of
    /// its body was taken from the client, and a second delivery is safe
    /// — nothing of it reached the backend, or the method is idempotent
    /// and the connection was a reused one the backend closed, as a
    /// backend closes an idle connection (Go's HTTP client's rule).
    pub request: Option<Request<UpstreamBody>>,
    /// Nothing of the request reached the backend: as good as a
    /// connection refused.
    pub nothing_sent: bool,
}

#[derive(Debug)]
struct BackendClosed;

impl std::fmt::Display for BackendClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the backend closed the connection before answering")
    }
}

impl std::error::Error for BackendClosed {}

/// The request body's framing: the body's exact size, else the
/// `Content-Length` it came with (a mirror's copy knows no size), else
/// chunks. An empty body's length is said when the request said it, and
/// for `POST`, `PUT` and `PATCH`, as hyper did.
fn framing(method: &Method, headers: &HeaderMap, body: &UpstreamBody) -> RequestFraming {
    if body.is_end_stream() {
        let said = headers.contains_key(CONTENT_LENGTH)
            || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        return match said {
            true => RequestFraming::Length(0),
            false => RequestFraming::None,
        };
    }
    if let Some(n) = body.size_hint().exact() {
        return RequestFraming::Length(n);
    }
    let length = headers.get(CONTENT_LENGTH);
    match length.and_then(|v| v.to_str().ok()?.parse().ok()) {
        Some(n) => RequestFraming::Length(n),
        None => RequestFraming::Chunked,
    }
}

/// The request body on its way out.
struct Sending {
    body: UpstreamBody,
    chunked: bool,
    /// What a `Content-Length` body has left to send.
    left: u64,
    /// Data too large to copy, written after the connection's buffer.
    data: Bytes,
    /// The CRLF after a chunk's data, once `data` is written.
    tail: &'static [u8],
    /// Whether any of the body was taken from the client.
    taken: bool,
    /// Whether any byte may have reached the backend.
    wrote: bool,
}

#[derive(Debug)]
enum SendFault {
    /// The client's body failed: its error, for the client's answer.
    Body(BoxError),
    /// The body did not match its length: the backend waits for bytes
    /// that will not come, so no answer is waited for.
    Length(&'static str),
    /// Writing to the connection failed.
    Io(BoxError),
}

impl Sending {
    /// Writes the connection's buffer and the body until both are out.
    fn poll(&mut self, conn: &mut Conn, cx: &mut Context<'_>) -> Poll<Result<(), SendFault>> {
        loop {
            ready!(self.poll_flush(conn, cx)).map_err(|e| SendFault::Io(e.into()))?;
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.end(conn)?;
                    return match ready!(self.poll_flush(conn, cx)) {
                        Ok(()) => Poll::Ready(Ok(())),
                        Err(e) => Poll::Ready(Err(SendFault::Io(e.into()))),
                    };
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(SendFault::Body(e))),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            self.taken = true;
            // Trailers are not sent on: a backend could read a framing
            // field among them as the request's (nginx drops them too).
            if let Ok(data) = frame.into_data() {
                self.queue(conn, data)?;
            }
        }
    }

    fn queue(&mut self, conn: &mut Conn, data: Bytes) -> Result<(), SendFault> {
        if data.is_empty() {
            return Ok(());
        }
        if self.chunked {
            strait_h1::chunked::chunk_head(data.len(), &mut conn.write);
            self.tail = b"\r\n";
        } else {
            let len = data.len() as u64;
            if len > self.left {
                return Err(SendFault::Length(
                    "the request body is longer than its length",
                ));
            }
            self.left -= len;
        }
        if data.len() < COPY_BELOW {
            conn.write.extend_from_slice(&data);
            conn.write.extend_from_slice(self.tail);
            self.tail = b"";
        } else {
            self.data = data;
        }
        Ok(())
    }

    fn end(&mut self, conn: &mut Conn) -> Result<(), SendFault> {
        if self.chunked {
            strait_h1::chunked::last_chunk(&mut conn.write);
            self.chunked = false;
        } else if self.left != 0 {
            return Err(SendFault::Length(
                "the request body ended short of its length",
            ));
        }
        Ok(())
    }

    /// Writes what is queued: the buffer, then large data, then its CRLF.
    fn poll_flush(&mut self, conn: &mut Conn, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !conn.write.is_empty() || !self.data.is_empty() || !self.tail.is_empty() {
            let slices = [
                IoSlice::new(&conn.write),
                IoSlice::new(&self.data),
                IoSlice::new(self.tail),
            ];
            let n = match ready!(Pin::new(&mut conn.io).poll_write_vectored(cx, &slices)) {
                Ok(n) => n,
                Err(e) => {
                    // TLS may fail after it took the bytes and sent some
                    // records: only a plain socket's failure says none went.
                    self.wrote |= matches!(conn.io, Io::Tls(_));
                    return Poll::Ready(Err(e));
                }
            };
            self.wrote = true;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let mut n = n;
            for part in [0, 1, 2] {
                let len = match part {
                    0 => conn.write.len(),
                    1 => self.data.len(),
                    _ => self.tail.len(),
                };
                let took = n.min(len);
                match part {
                    0 => conn.write.advance(took),
                    1 => self.data.advance(took),
                    _ => self.tail = &self.tail[took..],
                }
                n -= took;
            }
        }
        Pin::new(&mut conn.io).poll_flush(cx)
    }
}

/// Sends `req` (origin-form target, `Host` set) on `conn` and reads the
/// answer's head; 1xx interim answers are skipped. `reused` says the
/// connection served an earlier request.
pub async fn send(
    mut conn: Conn,
    req: Request<UpstreamBody>,
    reused: bool,
) -> Result<Response<H1Body>, Unanswered> {
    let (parts, body) = req.into_parts();
    let framing = framing(&parts.method, &parts.headers, &body);
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    conn.write.clear();
    strait_h1::encode_request(
        &parts.method,
        target,
        &parts.headers,
        framing,
        &mut conn.write,
    );
    let mut sending = Sending {
        body,
        chunked: framing == RequestFraming::Chunked,
        left: match framing {
            RequestFraming::Length(n) => n,
            _ => 0,
        },
        data: Bytes::new(),
        tail: b"",
        taken: false,
        wrote: false,
    };
    let head_request = parts.method == Method::HEAD;
    let mut going = true;
    let mut write_failed: Option<BoxError> = None;
    // An error, and whether any of the answer had come.
    let got = poll_fn(|cx| loop {
        if going {
            match sending.poll(&mut conn, cx) {
                Poll::Ready(Ok(())) => going = false,
                Poll::Ready(Err(SendFault::Body(e))) => return Poll::Ready(Err((e, true))),
                Poll::Ready(Err(SendFault::Length(e))) => {
                    return Poll::Ready(Err((e.into(), true)))
                }
                // The backend may have answered already (a 413 before
                // the body): the answer is read, the connection not reused.
                Poll::Ready(Err(SendFault::Io(e))) => {
                    write_failed = Some(e);
                    going = false;
                }
                Poll::Pending => {}
            }
        }
        match conn.parser.parse(&mut conn.read, head_request) {
            Ok(Some(head)) if head.status.is_informational() && head.status != 101 => continue,
            Ok(Some(head)) => return Poll::Ready(Ok(head)),
            Ok(None) => {}
            Err(e) => return Poll::Ready(Err((e.into(), true))),
        }
        let had_bytes = !conn.read.is_empty();
        match ready!(conn.poll_fill(cx)) {
            Ok(0) | Err(_) if had_bytes => {
                let e = "the backend closed the connection in its answer's head";
                return Poll::Ready(Err((e.into(), true)));
            }
            Ok(0) => return Poll::Ready(Err((Box::new(BackendClosed) as BoxError, false))),
            Err(e) => return Poll::Ready(Err((Box::new(e) as BoxError, false))),
            Ok(_) => {}
        }
    })
    .await;
    let head = match got {
        Ok(head) => head,
        Err((error, answered)) => {
            let nothing_sent = !sending.wrote;
            let resend = !answered
                && !sending.taken
                && (nothing_sent || (reused && parts.method.is_idempotent()));
            let request = resend.then(|| Request::from_parts(parts, sending.body));
            let error = match write_failed {
                Some(w) if !answered => w,
                _ => error,
            };
            return Err(Unanswered {
                error,
                request,
                nothing_sent,
            });
        }
    };
    // An answer before the upload's end: the upload goes on beside it
    // (a backend may stream both ways), but the connection is not reused.
    let reusable = write_failed.is_none() && !going;
    let sending = going.then_some(sending);
    let mut response = Response::new(H1Body::new(conn, &head, sending, reusable));
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers;
    Ok(response)
}

/// How much of an answer's body is left.
enum Left {
    Length(u64),
    Chunked(Decoder),
    UntilClose,
    Done,
}

/// An answer's body, read from its connection as the client takes it.
/// Once it has ended cleanly, [`H1Body::reusable`] gives the connection
/// up for another request; dropped before, it closes with the body.
pub struct H1Body {
    conn: Option<Conn>,
    left: Left,
    /// The request body, still going out beside the answer (rare: boxed).
    sending: Option<Box<Sending>>,
    keep_alive: bool,
    /// Why the answer is cut off, told on the poll after the one that
    /// found it (see [`H1Body::poll_frame`]).
    cut: Option<BoxError>,
}

impl H1Body {
    fn new(
        conn: Conn,
        head: &strait_h1::ResponseHead,
        sending: Option<Sending>,
        reusable: bool,
    ) -> Self {
        let left = match head.framing {
            ResponseFraming::None | ResponseFraming::Length(0) => Left::Done,
            ResponseFraming::Length(n) => Left::Length(n),
            ResponseFraming::Chunked => Left::Chunked(Decoder::default()),
            ResponseFraming::UntilClose => Left::UntilClose,
        };
        H1Body {
            conn: Some(conn),
            left,
            sending: sending.map(Box::new),
            keep_alive: head.keep_alive && reusable,
            cut: None,
        }
    }

    /// The connection, once the body has ended, if it can carry another
    /// request: the request went out whole, the backend keeps it open,
    /// and nothing came past the answer's end.
    pub fn reusable(&mut self) -> Option<Conn> {
        if !matches!(self.left, Left::Done) {
            return None;
        }
        let conn = self.conn.take()?;
        let clean = self.keep_alive && self.sending.is_none() && conn.read.is_empty();
        clean.then_some(conn)
    }

    /// Takes the request body's next step, then the answer's next frame.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(conn) = &mut self.conn else {
            return Poll::Ready(None);
        };
        if let Some(s) = &mut self.sending {
            match s.poll(conn, cx) {
                Poll::Ready(Ok(())) => self.sending = None,
                // The answer goes on; the connection does not.
                Poll::Ready(Err(_)) => {
                    self.keep_alive = false;
                    self.sending = None;
                }
                Poll::Pending => {}
            }
        }
        loop {
            match &mut self.left {
                Left::Done => return Poll::Ready(None),
                Left::Length(n) if !conn.read.is_empty() => {
                    let take = usize::try_from(*n)
                        .unwrap_or(usize::MAX)
                        .min(conn.read.len());
                    *n -= take as u64;
                    if *n == 0 {
                        self.left = Left::Done;
                    }
                    let data = conn.read.split_to(take).freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Left::Chunked(decoder) => match decoder.decode(&mut conn.read) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(_)) => {}
                    Ok(Decoded::End) => {
                        self.left = Left::Done;
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::More) => {}
                    Err(e) => return Poll::Ready(Some(Err(e.into()))),
                },
                Left::UntilClose if !conn.read.is_empty() => {
                    let data = conn.read.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Left::Length(_) | Left::UntilClose => {}
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(self.left, Left::UntilClose) => {
                    self.left = Left::Done;
                    self.keep_alive = false;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    let e = "the backend closed the connection before its answer's end";
                    return Poll::Ready(Some(Err(e.into())));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
        }
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(cut) = self.cut.take() {
            return Poll::Ready(Some(Err(cut)));
        }
        match ready!(self.poll_next(cx)) {
            Some(Err(e)) => {
                // Its state unknown, the connection closes. The client is
                // told on the next poll: its server writes out what it
                // has first, so the bytes the backend did send arrive
                // before the cut.
                self.conn = None;
                self.left = Left::Done;
                self.cut = Some(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            polled => Poll::Ready(polled),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.left, Left::Done) && self.cut.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.cut.is_some() {
            return SizeHint::default();
        }
        match self.left {
            Left::Length(n) => SizeHint::with_exact(n),
            Left::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
