//! The admin endpoint: `/live`, `/ready`, `/metrics`, `/config`.

use crate::Shared;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use strait_config::Problem;
use tokio::net::TcpListener;
use tracing::debug;

/// What the admin endpoint reports beyond the snapshot itself.
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub ready: AtomicBool,
    /// Configurations accepted so far (1 after start).
    pub generation: AtomicU64,
    /// Problems of the configuration serving now.
    pub problems: ArcSwap<Vec<Problem>>,
    /// Problems of the last refused change, if the last change was refused.
    pub refused: ArcSwap<Vec<Problem>>,
}

pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, &req)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                debug!(error = %e, "admin connection error");
            }
        });
    }
}

fn answer(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, ctype: &'static str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(ctype),
        );
        r
    };
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "text/plain", "live\n".into()),
        "/ready" if state.ready.load(Ordering::Acquire) => {
            text(StatusCode::OK, "text/plain", "ready\n".into())
        }
        "/ready" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".into(),
        ),
        "/metrics" => {
            let agent = state
                .shared
                .sidecar
                .as_ref()
                .and_then(|s| s.options.identity.as_ref());
            if let Some(agent) = agent {
                state.shared.metrics.identity(agent);
            }
            text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                state.shared.metrics.encode(),
            )
        }
        "/config" => {
            let live = state.shared.live.load();
            let snapshot = &live.snapshot;
            let body = json!({
                "generation": state.generation.load(Ordering::Acquire),
                "problems": **state.problems.load(),
                "lastRefusedChange": **state.refused.load(),
                "snapshot": snapshot.describe(),
            });
            text(
                StatusCode::OK,
                "application/json",
                serde_json::to_string_pretty(&body).unwrap_or_default(),
            )
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}
