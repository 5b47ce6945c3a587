//! HTTP/1.1 protocol upgrades (WebSocket and others) carried end to end:
//! the client's `Upgrade` goes to the backend, and when the backend answers
//! `101 Switching Protocols` the two connections are joined byte for byte.

use crate::handler::ResponseBody;
use crate::upstream::PooledBody;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Request, Response, Version};
use http_body_util::{Either, Full};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

/// The protocol an HTTP/1.1 request asks to upgrade to, if it does.
pub fn requested<B>(req: &Request<B>) -> Option<HeaderValue> {
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

/// Answers the client with the backend's 101 and joins the two upgraded
/// connections in a task of their own.
pub fn join(
    client: OnUpgrade,
    mut response: Response<PooledBody>,
    limits: crate::splice::SpliceLimits,
) -> Response<ResponseBody> {
    let backend = hyper::upgrade::on(&mut response);
    let protocol = response.headers().get(UPGRADE).cloned();
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
        let end = crate::splice::splice(TokioIo::new(client), TokioIo::new(backend), limits).await;
        debug!(?end, "upgraded connection ended");
    });
    let mut answer = Response::new(Either::Right(Full::default()));
    *answer.status_mut() = response.status();
    for (name, value) in response.headers() {
        answer.headers_mut().append(name.clone(), value.clone());
    }
    crate::headers::strip_hop_by_hop(answer.headers_mut());
    if let Some(p) = protocol {
        restore(answer.headers_mut(), &p);
    }
    answer
}
