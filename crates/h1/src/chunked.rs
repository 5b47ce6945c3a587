//! The chunked transfer coding (RFC 9112 §7.1), read strictly: a
//! response whose end strait and the backend could see in different
//! places would leave the next response on the pooled connection to be
//! read from the middle of this one.

use crate::head::MAX_HEADERS;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The longest chunk-size line (size and extensions) read.
pub const MAX_LINE: usize = 4096;

/// The longest trailer section read.
pub const MAX_TRAILERS: usize = 16 * 1024;

/// What the decoder took off the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// The trailer section: the body ends after it.
    Trailers(HeaderMap),
    /// The body ended.
    End,
    /// The buffer holds no more of the body: read more.
    More,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedError(pub &'static str);

impl std::fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed chunked body: {}", self.0)
    }
}

impl std::error::Error for ChunkedError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The chunk size's hex digits.
    Size {
        digits: u8,
    },
    /// Whitespace after the size (BWS before an extension or the line end).
    SizeSpace,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailers,
    Done,
}

/// A resumable decoder: bytes may arrive split anywhere.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// The current chunk's size, then what is left of it.
    size: u64,
    line: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: State::Size { digits: 0 },
            size: 0,
            line: 0,
        }
    }
}

impl Decoder {
    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes the next piece of the body off the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkedError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Data => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let n = usize::try_from(self.size)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                State::Trailers => return self.trailers(buf),
                _ => {}
            }
            let Some(&byte) = buf.first() else {
                return Ok(Decoded::More);
            };
            buf.advance(1);
            self.step(byte)?;
        }
    }

    /// One byte of a chunk-size line or of the CRLF after a chunk's data.
    fn step(&mut self, byte: u8) -> Result<(), ChunkedError> {
        self.line += 1;
        if self.line > MAX_LINE {
            return Err(ChunkedError("a chunk-size line is too long"));
        }
        self.state = match (self.state, byte) {
            (State::Size { digits }, b) if b.is_ascii_hexdigit() => {
                // 16 hex digits fill a u64; leading zeros may not hide more.
                if digits >= 16 {
                    return Err(ChunkedError("a chunk size is too large"));
                }
                let d = (b as char).to_digit(16).unwrap_or(0);
                self.size = (self.size << 4) | u64::from(d);
                State::Size { digits: digits + 1 }
            }
            (State::Size { digits: 0 }, _) => return Err(ChunkedError("no chunk size")),
            (State::Size { .. } | State::SizeSpace, b' ' | b'\t') => State::SizeSpace,
            (State::Size { .. } | State::SizeSpace, b';') => State::Extension,
            (State::Size { .. } | State::SizeSpace | State::Extension, b'\r') => State::SizeLf,
            // Extensions are skipped, but may hold no control character:
            // a bare LF is where some readers end the line.
            (State::Extension, b) if b == b'\t' || (b >= b' ' && b != 0x7f) => State::Extension,
            (State::SizeLf, b'\n') => {
                self.line = 0;
                match self.size {
                    0 => State::Trailers,
                    _ => State::Data,
                }
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => {
                self.line = 0;
                State::Size { digits: 0 }
            }
            (State::DataCr | State::DataLf, _) => {
                return Err(ChunkedError("no CRLF after a chunk's data"))
            }
            _ => return Err(ChunkedError("a chunk-size line with a stray byte")),
        };
        Ok(())
    }

    /// The trailer section: an empty line, or fields then an empty line.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkedError> {
        if buf.len() < 2 {
            return Ok(Decoded::More);
        }
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = State::Done;
            return Ok(Decoded::End);
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n");
        // httparse would take a bare LF as a line end; the section's end
        // is looked for as CRLF CRLF only, so one is refused here rather
        // than waited past.
        let section = &buf[..end.map_or(buf.len(), |e| e + 4)];
        let bare_lf = section.first() == Some(&b'\n')
            || section.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r');
        if bare_lf {
            return Err(ChunkedError("a bare LF in the trailer section"));
        }
        let Some(end) = end else {
            if buf.len() > MAX_TRAILERS {
                return Err(ChunkedError("the trailer section is too long"));
            }
            return Ok(Decoded::More);
        };
        if end + 4 > MAX_TRAILERS {
            return Err(ChunkedError("the trailer section is too long"));
        }
        let section = buf.split_to(end + 4);
        self.state = State::Done;
        Ok(Decoded::Trailers(trailer_fields(&section)?))
    }
}

fn trailer_fields(section: &[u8]) -> Result<HeaderMap, ChunkedError> {
    let bad = ChunkedError("a malformed trailer field");
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (len, fields) = match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete(done)) => done,
        _ => return Err(bad),
    };
    // Fields must account for the whole section: no line the parser
    // skipped or ended elsewhere.
    if len != section.len() {
        return Err(bad);
    }
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| bad.clone())?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| bad.clone())?;
        map.append(name, value);
    }
    Ok(map)
}

/// The line before a chunk of `len` bytes.
pub fn chunk_head(len: usize, out: &mut BytesMut) {
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk, with no trailers.
pub fn last_chunk(out: &mut BytesMut) {
    out.extend_from_slice(b"0\r\n\r\n");
}
