//! `GET /ws` with `Upgrade: websocket`: a real WebSocket echo (RFC 6455
//! handshake, then every message echoed back as it came, text as text and
//! binary as binary; pings answered, close answered).

use crate::EchoResponseBody;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// `/ws` asked to switch to WebSocket.
pub(crate) fn wants(req: &Request<Incoming>) -> bool {
    let has = |name: http::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    req.uri().path() == "/ws"
        && has(http::header::CONNECTION, "upgrade")
        && has(http::header::UPGRADE, "websocket")
}

fn plain(status: StatusCode) -> Response<EchoResponseBody> {
    let mut response = Response::new(Full::default().with_trailers(std::future::ready(None)));
    *response.status_mut() = status;
    response
}

/// The handshake answer; the echo runs on the upgraded connection.
pub(crate) fn accept(req: &mut Request<Incoming>) -> Response<EchoResponseBody> {
    let Some(key) = req.headers().get(http::header::SEC_WEBSOCKET_KEY) else {
        return plain(StatusCode::BAD_REQUEST);
    };
    if req
        .headers()
        .get(http::header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        let mut response = plain(StatusCode::UPGRADE_REQUIRED);
        response.headers_mut().insert(
            http::header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let accept = derive_accept_key(key.as_bytes());
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return plain(StatusCode::BAD_REQUEST);
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            echo(ws).await;
        }
    });
    let mut response = plain(StatusCode::SWITCHING_PROTOCOLS);
    let headers = response.headers_mut();
    headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

async fn echo<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = ws.next().await {
        let back = match message {
            Message::Text(_) | Message::Binary(_) => message,
            // Pings are answered (and a close is answered) by tungstenite
            // itself while reading; nothing to send here.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => continue,
        };
        if ws.send(back).await.is_err() {
            break;
        }
    }
    // Flush a pending close reply, if any.
    let _ = ws.flush().await;
}
