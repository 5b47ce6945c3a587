//! An external authorization service, as users run one: Envoy's gRPC
//! `envoy.service.auth.v3.Authorization/Check` (the generated tonic
//! server) and plain HTTP on one port. It decides by the request's
//! `Authorization`, and keeps what it was asked.
//!
//! `Bearer good` allows (gRPC: sets `x-authz-user: alice`, adds
//! `x-default: d` where absent, removes `x-remove-me`; HTTP: answers
//! `x-authz-user: bob` and `x-other: no`); `Bearer rewrite` allows over
//! gRPC, setting query parameters `authz=yes` and `by=the service`,
//! removing `drop`, and adding `x-authz-said: ok`, a `set-cookie` and a
//! `content-length` to the answer; `Bearer teapot` refuses with
//! `418`, `x-why: teapot` and `no tea`; `Bearer slow` allows after 2 s;
//! `Bearer boom` fails (gRPC `INTERNAL`; HTTP `503`); anything else is
//! refused (gRPC `PERMISSION_DENIED` and nothing more; HTTP `401` with a
//! challenge and `go away`).

use auth::authorization_server::{Authorization, AuthorizationServer};
use bytes::Bytes;
use http_body_util::{Either, Full};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strait_proxy::ext_authz::proto::envoy::config::core::v3 as core;
use strait_proxy::ext_authz::proto::envoy::r#type::v3::HttpStatus;
use strait_proxy::ext_authz::proto::envoy::service::auth::v3 as auth;
use strait_proxy::ext_authz::proto::google::rpc::Status;

/// One question the service was asked.
#[derive(Debug, Clone)]
pub struct Asked {
    pub grpc: bool,
    pub method: String,
    pub path: String,
    pub host: String,
    /// Lower-case names; gRPC's include `:method`, `:path`, `:authority`.
    pub headers: Vec<(String, String)>,
    /// gRPC only: the client's address, as sent.
    pub source: String,
    /// gRPC only: the client's proven identity (a SPIFFE ID in the mesh).
    pub principal: String,
    /// The request's body as shown (gRPC: `body`, else `raw_body`).
    pub body: Vec<u8>,
}

impl Asked {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Store(Arc<Mutex<Vec<Asked>>>);

enum Verdict {
    Allow,
    Rewrite,
    Teapot,
    Slow,
    Boom,
    Deny,
}

fn verdict(authorization: Option<&str>) -> Verdict {
    match authorization {
        Some("Bearer good") => Verdict::Allow,
        Some("Bearer rewrite") => Verdict::Rewrite,
        Some("Bearer teapot") => Verdict::Teapot,
        Some("Bearer slow") => Verdict::Slow,
        Some("Bearer boom") => Verdict::Boom,
        _ => Verdict::Deny,
    }
}

fn option(key: &str, value: &str, append: Option<bool>, action: i32) -> core::HeaderValueOption {
    core::HeaderValueOption {
        header: Some(core::HeaderValue {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }),
        append: append.map(|value| core::BoolWrapper { value }),
        append_action: action,
        keep_empty_value: false,
    }
}

#[tonic::async_trait]
impl Authorization for Store {
    async fn check(
        &self,
        request: tonic::Request<auth::CheckRequest>,
    ) -> Result<tonic::Response<auth::CheckResponse>, tonic::Status> {
        let attributes = request.into_inner().attributes.unwrap_or_default();
        let http = attributes.request.and_then(|r| r.http).unwrap_or_default();
        let principal = attributes
            .source
            .as_ref()
            .map(|s| s.principal.clone())
            .unwrap_or_default();
        let source = attributes
            .source
            .and_then(|s| s.address)
            .and_then(|a| a.address)
            .map(|a| match a {
                core::address::Address::SocketAddress(s) => s.address,
            })
            .unwrap_or_default();
        let mut headers: Vec<(String, String)> = http.headers.clone().into_iter().collect();
        headers.sort();
        self.0.lock().expect("store").push(Asked {
            grpc: true,
            method: http.method.clone(),
            path: http.path.clone(),
            host: http.host.clone(),
            headers,
            source,
            principal,
            body: match http.body.is_empty() {
                true => http.raw_body.clone(),
                false => http.body.clone().into_bytes(),
            },
        });
        let refuse = |code: i32, denied: Option<auth::DeniedHttpResponse>| auth::CheckResponse {
            status: Some(Status {
                code,
                ..Default::default()
            }),
            http_response: denied.map(auth::check_response::HttpResponse::DeniedResponse),
        };
        let said = verdict(http.headers.get("authorization").map(String::as_str));
        if matches!(said, Verdict::Slow) {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let answer = match said {
            Verdict::Slow | Verdict::Allow => auth::CheckResponse {
                status: Some(Status::default()),
                http_response: Some(auth::check_response::HttpResponse::OkResponse(
                    auth::OkHttpResponse {
                        headers: vec![
                            option("x-authz-user", "alice", Some(false), 0),
                            option("x-default", "d", None, 1),
                        ],
                        headers_to_remove: vec!["x-remove-me".into()],
                        ..Default::default()
                    },
                )),
            },
            Verdict::Rewrite => auth::CheckResponse {
                status: Some(Status::default()),
                http_response: Some(auth::check_response::HttpResponse::OkResponse(
                    auth::OkHttpResponse {
                        query_parameters_to_set: vec![
                            core::QueryParameter {
                                key: "authz".into(),
                                value: "yes".into(),
                            },
                            core::QueryParameter {
                                key: "by".into(),
                                value: "the service".into(),
                            },
                        ],
                        query_parameters_to_remove: vec!["drop".into()],
                        response_headers_to_add: vec![
                            option("x-authz-said", "ok", None, 0),
                            option("set-cookie", "from=authz", Some(true), 0),
                            option("content-length", "9999", None, 0),
                        ],
                        ..Default::default()
                    },
                )),
            },
            Verdict::Teapot => refuse(
                7,
                Some(auth::DeniedHttpResponse {
                    status: Some(HttpStatus { code: 418 }),
                    headers: vec![option("x-why", "teapot", None, 0)],
                    body: "no tea".into(),
                }),
            ),
            Verdict::Boom => return Err(tonic::Status::internal("boom")),
            Verdict::Deny => refuse(7, None),
        };
        Ok(tonic::Response::new(answer))
    }
}

pub struct Service {
    pub port: u16,
    store: Store,
}

impl Service {
    pub async fn start() -> Service {
        let store = Store::default();
        let grpc = AuthorizationServer::new(store.clone());
        let kept = store.clone();
        let port = super::serve_loopback(move |req| serve(grpc.clone(), kept.clone(), req)).await;
        Service { port, store }
    }

    /// The service as `authz` (port 9000, `grpc`) in namespace `shop`,
    /// its one endpoint this service.
    pub fn shop_yaml(&self) -> String {
        format!(
            r#"---
apiVersion: v1
kind: Service
metadata: {{name: authz, namespace: shop}}
spec: {{ports: [{{name: grpc, port: 9000}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: authz, namespace: shop, labels: {{kubernetes.io/service-name: authz}}}}
addressType: IPv4
endpoints: [{{addresses: ["127.0.0.1"]}}]
ports: [{{name: grpc, port: {}}}]
"#,
            self.port
        )
    }

    /// Every question so far, and forgets them.
    pub fn take(&self) -> Vec<Asked> {
        std::mem::take(&mut *self.store.0.lock().expect("store"))
    }
}

type Answer = http::Response<Either<tonic::body::Body, Full<Bytes>>>;

async fn serve(
    mut grpc: AuthorizationServer<Store>,
    store: Store,
    req: http::Request<hyper::body::Incoming>,
) -> Result<Answer, std::convert::Infallible> {
    let is_grpc = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if is_grpc {
        let response = tonic::codegen::Service::call(&mut grpc, req).await;
        let Ok(response) = response;
        return Ok(response.map(Either::Left));
    }
    let mut headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    headers.sort();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (head, body) = req.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    store.0.lock().expect("store").push(Asked {
        grpc: false,
        method: head.method.to_string(),
        path: head.uri.to_string(),
        host: head
            .headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        headers,
        source: String::new(),
        principal: String::new(),
        body,
    });
    let answer = http::Response::builder();
    let said = verdict(authorization.as_deref());
    if matches!(said, Verdict::Slow) {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let answer = match said {
        // HTTP services have no query or answer changes: allowed as good.
        Verdict::Slow | Verdict::Allow | Verdict::Rewrite => answer
            .status(200)
            .header("x-authz-user", "bob")
            .header("x-other", "no")
            .body(Full::new(Bytes::from_static(b"ok"))),
        Verdict::Teapot => answer
            .status(418)
            .header("x-why", "teapot")
            .body(Full::new(Bytes::from_static(b"no tea"))),
        Verdict::Boom => answer
            .status(503)
            .body(Full::new(Bytes::from_static(b"down"))),
        Verdict::Deny => answer
            .status(401)
            .header("www-authenticate", "Bearer realm=\"ext\"")
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"go away"))),
    };
    Ok(answer.expect("answer").map(Either::Right))
}
