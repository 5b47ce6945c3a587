//! The sidecar injector's HTTPS endpoint on the control plane: `POST
//! /inject` with an AdmissionReview, answered by `strait_kube::inject`.
//! Anything else, or a body that is not a review, gets a 4xx.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use std::convert::Infallible;
use std::sync::Arc;
use strait_kube::inject::Injection;

/// Most bytes of one AdmissionReview (a pod is a few kilobytes; the API
/// server's own request limit is 3 MiB).
const MAX_REVIEW_BYTES: usize = 3 * 1024 * 1024;

#[derive(Clone)]
pub(crate) struct Webhook(pub Arc<Injection>);

type Answer = http::Response<tonic::body::Body>;

fn answer(status: http::StatusCode, body: Vec<u8>) -> Answer {
    let mut r = http::Response::new(tonic::body::Body::new(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

impl tonic::codegen::Service<http::Request<hyper::body::Incoming>> for Webhook {
    type Response = Answer;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Answer, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let injection = self.0.clone();
        Box::pin(async move {
            if req.uri().path() != "/inject" {
                return Ok(answer(http::StatusCode::NOT_FOUND, b"{}".to_vec()));
            }
            if req.method() != http::Method::POST {
                return Ok(answer(http::StatusCode::METHOD_NOT_ALLOWED, b"{}".to_vec()));
            }
            let body = match Limited::new(req.into_body(), MAX_REVIEW_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    let why = serde_json::json!({"error": format!("reading the review: {e}")});
                    return Ok(answer(
                        http::StatusCode::PAYLOAD_TOO_LARGE,
                        why.to_string().into_bytes(),
                    ));
                }
            };
            Ok(match strait_kube::inject::review(&body, &injection) {
                Ok(json) => answer(http::StatusCode::OK, json),
                Err(e) => {
                    tracing::warn!(error = %e, "injection webhook: bad request");
                    let why = serde_json::json!({ "error": e });
                    answer(http::StatusCode::BAD_REQUEST, why.to_string().into_bytes())
                }
            })
        })
    }
}
