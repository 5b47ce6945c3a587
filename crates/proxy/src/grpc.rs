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

/// A trailers-only gRPC response carrying the status for `http`, with
/// strait's `x-strait-*` headers kept; a denial's message names the
/// policy that decided.
pub fn status_response(http: StatusCode, from: &HeaderMap) -> Response<ResponseBody> {
    let (code, message) = status_for(http);
    let mut r = Response::new(Either::Right(Full::default()));
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code));
    for (name, value) in from {
        if name.as_str().starts_with("x-strait-") {
            headers.insert(name.clone(), value.clone());
        }
    }
    // Policy names and our messages are printable ASCII without `%`: no
    // percent-encoding needed.
    let message = match from
        .get(crate::authz::AUTHZ_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        Some(policy) => HeaderValue::from_str(&format!("{message} by {policy}"))
            .unwrap_or(HeaderValue::from_static(message)),
        None => HeaderValue::from_static(message),
    };
    headers.insert("grpc-message", message);
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
        let r = status_response(StatusCode::GATEWAY_TIMEOUT, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "14");
    }

    #[test]
    fn a_denial_names_its_policy_in_the_grpc_message() {
        let mut from = HeaderMap::new();
        from.insert(
            "x-strait-authz",
            HeaderValue::from_static("shop/payment-callers"),
        );
        from.insert("x-strait-reason", HeaderValue::from_static("authz_denied"));
        let r = status_response(StatusCode::FORBIDDEN, &from);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(
            r.headers()["grpc-message"],
            "strait: permission denied by shop/payment-callers"
        );
        assert_eq!(r.headers()["x-strait-reason"], "authz_denied");
    }
}
