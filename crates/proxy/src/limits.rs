//! Limits of an HTTP request's head and body, with their defaults; the
//! gateway and sidecar flags change them (docs/limits.md).

/// Method and target, in bytes (`MAX_REQUEST_LINE`): nginx's
/// `large_client_header_buffers` line. Longer: `414`.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// One header's name and value (`MAX_HEADER_LINE`), as nginx. Longer: `431`.
pub const MAX_HEADER_LINE: usize = 8 * 1024;
/// All header lines together (`MAX_REQUEST_HEADERS`): nginx's four 8 KiB
/// buffers. More: `431`.
pub const MAX_REQUEST_HEADERS: usize = 32 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub request_line: usize,
    pub header_line: usize,
    pub headers: usize,
    /// Request body bytes; `None`: no limit (bodies are streamed). More: `413`.
    pub body: Option<u64>,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            request_line: MAX_REQUEST_LINE,
            header_line: MAX_HEADER_LINE,
            headers: MAX_REQUEST_HEADERS,
            body: None,
        }
    }
}
