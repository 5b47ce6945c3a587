//! Limits of HTTP exchanges: a request's head and body, the backend's pace
//! in answering it, connections at once; with their defaults; the
//! gateway and sidecar flags change them (docs/limits.md).

use std::time::Duration;

/// Time a client has to send a request's headers, from its first byte (a
/// client sending one byte at a time is cut off at the end), and the idle
/// time of a kept-alive HTTP/1.1 connection (`HEADER_READ_TIMEOUT`).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the next piece of a request body (`BODY_IDLE_TIMEOUT`):
/// nginx's `client_body_timeout`. Longer: `408`.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes per second a request body must average (`MIN_BODY_RATE`), counted
/// over the time strait waits on the client after `BODY_RATE_GRACE`:
/// Kestrel's `MinRequestBodyDataRate`. A client that sends a byte just
/// before each idle limit would otherwise hold a backend connection for
/// days. Slower: `408`.
pub const MIN_BODY_RATE: u64 = 240;
/// Waiting on a client's body that the minimum rate does not count.
pub const BODY_RATE_GRACE: Duration = Duration::from_secs(5);

/// Longest a backend may send nothing in the middle of its response body
/// (`BACKEND_IDLE_TIMEOUT`): Envoy's `stream_idle_timeout`; nginx's
/// `proxy_read_timeout` is 60 s, which cuts long polls and quiet server
/// streams. Longer: the response is cut off. The wait for response headers
/// is the route's `timeouts` (none by default, as Istio): a timer per
/// request costs 7 % of a proxied request's instructions, and a backend
/// may rightly wait for a long upload to end before it answers.
pub const BACKEND_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Longest a client may leave a response unread (`SEND_TIMEOUT`) while
/// strait has more of it to send: nginx's `send_timeout`. Longer, the
/// connection closes, and with it every response it carries.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Downstream connections served at once (`MAX_CONNECTIONS`); past it,
/// new connections wait in the kernel's accept queue instead of
/// exhausting memory or descriptors.
pub const MAX_CONNECTIONS: usize = 50_000;

/// Method and target, in bytes (`MAX_REQUEST_LINE`): nginx's
/// `large_client_header_buffers` line. Longer: `414`.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// One header's name and value (`MAX_HEADER_LINE`), as nginx. Longer: `431`.
pub const MAX_HEADER_LINE: usize = 8 * 1024;
/// All header lines together (`MAX_REQUEST_HEADERS`): nginx's four 8 KiB
/// buffers. More: `431`.
pub const MAX_REQUEST_HEADERS: usize = 32 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub request_line: usize,
    pub header_line: usize,
    pub headers: usize,
    /// Request body bytes; `None`: no limit (bodies are streamed). More: `413`.
    pub body: Option<u64>,
    /// Zero: none (as every duration flag).
    pub header_read: Duration,
    pub body_pace: BodyPace,
    /// The backend's side of the exchange; zero: none.
    pub backend_idle: Duration,
    /// The client's side of a response (`SEND_TIMEOUT`); zero: none.
    pub send: Duration,
    /// Downstream connections served at once (`MAX_CONNECTIONS`).
    pub connections: usize,
    /// Proxies in front that append to `X-Forwarded-For`: how a request's
    /// head says who the client is ([`crate::headers::client_address`]).
    pub trusted_hops: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            request_line: MAX_REQUEST_LINE,
            header_line: MAX_HEADER_LINE,
            headers: MAX_REQUEST_HEADERS,
            body: None,
            header_read: HEADER_READ_TIMEOUT,
            body_pace: BodyPace {
                idle: BODY_IDLE_TIMEOUT,
                min_rate: MIN_BODY_RATE,
            },
            backend_idle: BACKEND_IDLE_TIMEOUT,
            send: SEND_TIMEOUT,
            connections: MAX_CONNECTIONS,
            trusted_hops: 0,
        }
    }
}

/// How fast a client must send its body (docs/limits.md).
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    /// Longest wait for the next frame; zero: none.
    pub idle: Duration,
    /// Bytes per second the body must average over the time strait waited
    /// on the client, past `BODY_RATE_GRACE`; zero: none. Time the backend
    /// took to read is not counted against the client.
    pub min_rate: u64,
}
