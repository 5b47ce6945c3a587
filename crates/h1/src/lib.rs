//! HTTP/1.1 as strait's proxy speaks it to a backend, without I/O: the
//! request head written, the response head and a chunked body read.
//!
//! hyper's client costs a task and a channel per connection and a
//! dispatcher per request; measured, it was a third of the proxy's
//! instructions per request (docs/benchmarks.md). The proxy drives a
//! backend connection from the request's own task with this codec;
//! parsing is httparse's, as hyper's is. What is read is read strictly:
//! a pooled connection whose framing strait misreads would hand one
//! client another's response.

pub mod chunked;
pub mod head;

pub use chunked::{ChunkedError, Decoded, Decoder};
pub use head::{
    encode_request, HeadError, RequestFraming, ResponseFraming, ResponseHead, ResponseParser,
};

#[cfg(test)]
mod tests;
