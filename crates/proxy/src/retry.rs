//! What a retry may resend and when it may: bodies read whole up to
//! [`MAX_RETRY_BODY`] so another try can send them again; responses,
//! errors and per-try timeouts retried only for idempotent methods (RFC
//! 9110 §9.2.2), failed connections for any method, since nothing was sent.

use crate::tee::UpstreamBody;
use bytes::Bytes;
use http::Method;
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Largest request body kept for a retry (`MAX_RETRY_BODY`); a larger or
/// unsized one streams and is not retried.
pub const MAX_RETRY_BODY: u64 = 64 * 1024;

pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The body to send first, and a copy for retries when it could be kept.
pub async fn prepare(body: Incoming) -> Result<(UpstreamBody, Option<Bytes>), hyper::Error> {
    let small = body
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_RETRY_BODY);
    if !small {
        return Ok((UpstreamBody::main(body), None));
    }
    let bytes = body.collect().await?.to_bytes();
    Ok((UpstreamBody::whole(bytes.clone()), Some(bytes)))
}

/// Why a try failed, as retries and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection was made: safe to retry whatever the method.
    Connect,
    /// The request may have reached the backend.
    Backend,
    Timeout,
    Status,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Backend => "backend",
            Failure::Timeout => "timeout",
            Failure::Status => "status",
        }
    }

    /// May a request with this method be tried again after this failure?
    pub fn retriable(self, method: &Method) -> bool {
        self == Failure::Connect || idempotent(method)
    }
}
