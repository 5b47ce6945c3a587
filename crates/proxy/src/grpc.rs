//! gRPC awareness of the HTTP path: an error strait answers itself is sent
//! to a gRPC client as a gRPC status (a trailers-only response), mapped
//! from the HTTP status as gRPC's own HTTP-to-gRPC table says.

use crate::handler::ResponseBody;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};

pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// gRPC status code and message for an HTTP status strait produced.
pub fn status_for(http: StatusCode) -> (u16, &'static str) {
    match http.as_u16() {
        400 => (13, "strait: bad request"),
        401 => (16, "strait: unauthenticated"),
        403 => (7, "strait: permission denied"),
        404 => (12, "strait: no route matched"),
        429 => (14, "strait: rate limited"),
        502 => (14, "strait: backend failed"),
        503 => (14, "strait: no ready endpoints"),
        504 => (14, "strait: timeout"),
        _ => (2, "strait: request could not be served"),
    }
}

/// A trailers-only gRPC response carrying the status for `http`.
pub fn status_response(http: StatusCode) -> Response<ResponseBody> {
    let (code, message) = status_for(http);
    let mut r = Response::new(Either::Right(Full::default()));
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code));
    // The messages are plain printable ASCII: no percent-encoding needed.
    headers.insert("grpc-message", HeaderValue::from_static(message));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_to_grpc_table() {
        assert_eq!(status_for(StatusCode::NOT_FOUND).0, 12);
        assert_eq!(status_for(StatusCode::SERVICE_UNAVAILABLE).0, 14);
        assert_eq!(status_for(StatusCode::INTERNAL_SERVER_ERROR).0, 2);
        let r = status_response(StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "14");
    }
}
