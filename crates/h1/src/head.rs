//! Request heads written and response heads read.

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use std::mem::MaybeUninit;

/// The longest response head read; a longer one is refused, as nginx's
/// `proxy_buffer_size` refuses one over its buffer.
pub const MAX_HEAD: usize = 64 * 1024;

/// The most header fields in one response head or trailer section.
pub const MAX_HEADERS: usize = 128;

/// How a request's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no framing header: a `GET` and the like.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`: a body of unknown length.
    Chunked,
}

/// How a response's body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body, whatever the headers say: a `HEAD`'s answer, 1xx, 204, 304.
    None,
    Length(u64),
    Chunked,
    /// Everything until the backend closes: the connection ends with it.
    UntilClose,
}

/// A response head, its fields in a map that shares the read buffer.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: ResponseFraming,
    /// The connection may carry another request after this answer.
    pub keep_alive: bool,
}

/// Why a response head was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Over [`MAX_HEAD`] bytes, or over [`MAX_HEADERS`] fields.
    TooLarge,
    /// Not HTTP/1.x syntax.
    Malformed(httparse::Error),
    /// A header strait will not read as the backend meant it.
    Field(&'static str),
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::TooLarge => write!(
                f,
                "the response head is over {MAX_HEAD} bytes or {MAX_HEADERS} fields"
            ),
            HeadError::Malformed(e) => write!(f, "malformed response head: {e}"),
            HeadError::Field(why) => write!(f, "response head refused: {why}"),
        }
    }
}

impl std::error::Error for HeadError {}

/// Writes a request head: the request line, `headers` but for any
/// framing fields, then the framing `body` says. Names go out in lower
/// case, as hyper writes them. A `HeaderValue` and a `PathAndQuery` hold
/// no CR or LF, so nothing here can split the request.
pub fn encode_request(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: RequestFraming,
    out: &mut BytesMut,
) {
    out.reserve(64 + target.len() + headers.len() * 32);
    out.extend_from_slice(method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match body {
        RequestFraming::None => {}
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Where one field's name and value lie in the head's bytes.
#[derive(Clone, Copy)]
struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

/// Reads response heads; kept with a connection, so that its room for
/// where the fields lie is made once, not zeroed for every answer.
#[derive(Default)]
pub struct ResponseParser {
    spans: Vec<Span>,
}

impl ResponseParser {
    /// Reads a response head from the start of `buf` and takes its bytes
    /// off it; `Ok(None)` while the head is incomplete. `head` says the
    /// request was a `HEAD`, whose answer has no body whatever its
    /// headers say.
    pub fn parse(
        &mut self,
        buf: &mut BytesMut,
        head: bool,
    ) -> Result<Option<ResponseHead>, HeadError> {
        parse_response(buf, head, &mut self.spans)
    }
}

fn parse_response(
    buf: &mut BytesMut,
    head: bool,
    spans: &mut Vec<Span>,
) -> Result<Option<ResponseHead>, HeadError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e)),
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::Field("status code"))?;
    let start = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - start, s.len());
    spans.clear();
    spans.extend(response.headers.iter().map(|field| Span {
        name: offset(field.name.as_bytes()),
        value: offset(field.value),
    }));
    let bytes = buf.split_to(len).freeze();
    let fields = Fields::read(&bytes, spans)?;
    let framing = fields.framing(status, head, version)?;
    let keep_alive = version == Version::HTTP_11
        && !fields.close
        && framing != ResponseFraming::UntilClose
        && status != StatusCode::SWITCHING_PROTOCOLS;
    Ok(Some(ResponseHead {
        status,
        version,
        headers: fields.map,
        framing,
        keep_alive,
    }))
}

/// A head's fields, and what its framing and connection fields say.
struct Fields {
    map: HeaderMap,
    length: Option<u64>,
    chunked: bool,
    close: bool,
}

impl Fields {
    fn read(bytes: &Bytes, spans: &[Span]) -> Result<Self, HeadError> {
        let mut fields = Fields {
            map: HeaderMap::with_capacity(spans.len()),
            length: None,
            chunked: false,
            close: false,
        };
        for span in spans {
            let (at, len) = span.name;
            let name = HeaderName::from_bytes(&bytes[at..at + len])
                .map_err(|_| HeadError::Field("a field name"))?;
            let (at, len) = span.value;
            // A slice of the shared head: no copy per value.
            let value = HeaderValue::from_maybe_shared(bytes.slice(at..at + len))
                .map_err(|_| HeadError::Field("a field value"))?;
            if fields.note(&name, &value)? {
                fields.map.append(name, value);
            }
        }
        Ok(fields)
    }

    /// Reads what a field says about framing and the connection; `false`
    /// when it only framed this hop and is spent: `Transfer-Encoding`,
    /// `Keep-Alive`, and a `Connection` that names no field (a proxy drops
    /// these hop-by-hop fields anyway; not keeping them saves a copy and a
    /// removal per answer).
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<bool, HeadError> {
        if name == CONTENT_LENGTH {
            let n = content_length(value.as_bytes())?;
            if self.length.is_some_and(|m| m != n) {
                return Err(HeadError::Field("two different Content-Length values"));
            }
            self.length = Some(n);
        } else if name == TRANSFER_ENCODING {
            // Only `chunked`, once, as nginx accepts: any other coding
            // leaves the body's end to a guess.
            let chunked = value
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked");
            if !chunked || self.chunked {
                return Err(HeadError::Field(
                    "a Transfer-Encoding other than one chunked",
                ));
            }
            self.chunked = true;
            return Ok(false);
        } else if name == CONNECTION {
            let mut names_a_field = false;
            for token in value
                .as_bytes()
                .split(|b| *b == b',')
                .map(<[u8]>::trim_ascii)
            {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                    names_a_field = true;
                }
            }
            return Ok(names_a_field);
        } else if name == "keep-alive" {
            return Ok(false);
        }
        Ok(true)
    }

    fn framing(
        &self,
        status: StatusCode,
        head: bool,
        version: Version,
    ) -> Result<ResponseFraming, HeadError> {
        let bodiless = head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if bodiless {
            return Ok(ResponseFraming::None);
        }
        // RFC 9112 §6.3: both at once may be an attempt at response
        // splitting, "ought to be handled as an error" (nginx refuses it).
        match (self.chunked, self.length) {
            (true, Some(_)) => Err(HeadError::Field(
                "both Transfer-Encoding and Content-Length",
            )),
            (true, None) if version == Version::HTTP_10 => Err(HeadError::Field(
                "Transfer-Encoding in an HTTP/1.0 response",
            )),
            (true, None) => Ok(ResponseFraming::Chunked),
            (false, Some(n)) => Ok(ResponseFraming::Length(n)),
            (false, None) => Ok(ResponseFraming::UntilClose),
        }
    }
}

/// `1*DIGIT`, nothing else: no sign, no list, at most 19 digits.
fn content_length(value: &[u8]) -> Result<u64, HeadError> {
    let bad = HeadError::Field("a Content-Length that is not one number");
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    Ok(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}
