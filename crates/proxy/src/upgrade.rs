//! Protocol upgrades (WebSocket and others) carried end to end: the
//! client's `Upgrade` goes to the backend, and when the backend answers
//! `101 Switching Protocols` the two connections are joined byte for byte.
//! An HTTP/2 client asks with an extended CONNECT (RFC 8441, `:protocol`);
//! it is sent on as the HTTP/1.1 upgrade backends understand, and the
//! backend's `101` reaches the client as the `200` HTTP/2 expects.

use crate::answer::ResponseBody;
use crate::splice::Carried;
use crate::upstream::PooledBody;
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

/// The protocol a request asks to upgrade to, if it does: an HTTP/1.1
/// `Upgrade`, or the `:protocol` of an HTTP/2 extended CONNECT.
pub fn requested<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() == Version::HTTP_2 && req.method() == Method::CONNECT {
        let protocol = req.extensions().get::<hyper::ext::Protocol>()?;
        return HeaderValue::from_str(protocol.as_str()).ok();
    }
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let asks = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| req.headers().get(UPGRADE).cloned()).flatten()
}

/// Puts back the two headers an upgrade needs after hop-by-hop removal.
pub fn restore(headers: &mut HeaderMap, protocol: &HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol.clone());
}

/// An HTTP/2 extended CONNECT as the HTTP/1.1 upgrade a backend expects: a
/// `GET` with, for WebSocket, the key and version RFC 8441 leaves out.
pub fn connect_as_http1(parts: &mut http::request::Parts, protocol: &HeaderValue) {
    if parts.method != Method::CONNECT {
        return;
    }
    parts.method = Method::GET;
    if protocol.as_bytes().eq_ignore_ascii_case(b"websocket") {
        use base64::Engine;
        let nonce: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        if let Ok(key) = HeaderValue::from_str(&key) {
            parts.headers.insert(SEC_WEBSOCKET_KEY, key);
        }
        parts
            .headers
            .entry(SEC_WEBSOCKET_VERSION)
            .or_insert(HeaderValue::from_static("13"));
    }
}

/// Answers the client with the backend's 101 and joins the two upgraded
/// connections in a task of their own.
pub fn join(
    client: OnUpgrade,
    client_version: Version,
    mut response: Response<PooledBody>,
    limits: crate::splice::SpliceLimits,
) -> Response<ResponseBody> {
    let backend = hyper::upgrade::on(&mut response);
    let protocol = response.headers().get(UPGRADE).cloned();
    let carried = match &protocol {
        Some(p) if p.as_bytes().eq_ignore_ascii_case(b"websocket") => Carried::WebSocket,
        _ => Carried::Bytes,
    };
    tokio::spawn(async move {
        let (client, backend) = match (client.await, backend.await) {
            (Ok(c), Ok(b)) => (c, b),
            (c, b) => {
                debug!(
                    client = c.is_ok(),
                    backend = b.is_ok(),
                    "upgrade did not complete"
                );
                return;
            }
        };
        let (client, backend) = (TokioIo::new(client), TokioIo::new(backend));
        let end = crate::splice::splice(client, backend, limits, carried).await;
        debug!(?end, "upgraded connection ended");
    });
    let mut answer = Response::new(Either::Right(Full::default()));
    *answer.status_mut() = response.status();
    for (name, value) in response.headers() {
        answer.headers_mut().append(name.clone(), value.clone());
    }
    crate::headers::strip_hop_by_hop(answer.headers_mut());
    if client_version == Version::HTTP_2 {
        *answer.status_mut() = StatusCode::OK;
        answer.headers_mut().remove(SEC_WEBSOCKET_ACCEPT);
    } else if let Some(p) = protocol {
        restore(answer.headers_mut(), &p);
    }
    answer
}
