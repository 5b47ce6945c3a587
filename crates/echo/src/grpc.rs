//! The gRPC side of the echo, on the same port as HTTP: the conformance
//! `GrpcEcho` service, the strait-only `Stream` test aid, and the standard
//! health service.

use crate::pb::grpcecho::grpc_echo_server::{GrpcEcho, GrpcEchoServer};
use crate::pb::grpcecho::{Assertions, Context, EchoRequest, EchoResponse, Header, TlsAssertions};
use crate::pb::stream::stream_server::{Stream as StreamService, StreamServer};
use crate::pb::stream::{CountRequest, Msg};
use crate::EchoInfo;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use std::sync::Arc;
use tonic::codegen::{BoxStream, Service};
use tonic::server::NamedService;
use tonic::{Status, Streaming};
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

/// What the gRPC handlers need from the HTTP request that tonic does not
/// keep: the path (the fully qualified method) and the authority.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    authority: String,
}

/// The gRPC services, dispatched by the service part of the path.
#[derive(Clone)]
pub(crate) struct Grpc {
    echo: GrpcEchoServer<Echo>,
    stream: StreamServer<Streams>,
    health: HealthServer<HealthService>,
}

impl Grpc {
    pub(crate) async fn new(info: Arc<EchoInfo>) -> Grpc {
        let reporter = HealthReporter::new();
        reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
        reporter.set_serving::<GrpcEchoServer<Echo>>().await;
        reporter.set_serving::<StreamServer<Streams>>().await;
        Grpc {
            echo: GrpcEchoServer::new(Echo { info: info.clone() }),
            stream: StreamServer::new(Streams { info }),
            health: HealthServer::new(HealthService::from_health_reporter(reporter)),
        }
    }

    /// A gRPC request (`content-type: application/grpc…`) for one of our
    /// services. Anything else, gRPC-shaped requests to other services
    /// included, gets the HTTP echo's answer as before.
    pub(crate) fn wants(req: &Request<Incoming>) -> bool {
        let grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        grpc && service_of(req.uri().path()).is_some_and(|s| {
            s == <GrpcEchoServer<Echo> as NamedService>::NAME
                || s == <StreamServer<Streams> as NamedService>::NAME
                || s == <HealthServer<HealthService> as NamedService>::NAME
        })
    }

    pub(crate) async fn call(&self, mut req: Request<Incoming>) -> Response<tonic::body::Body> {
        let authority = match req.version() {
            Version::HTTP_2 => req.uri().authority().map(|a| a.to_string()),
            _ => None,
        }
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
        let method = req.uri().path().to_string();
        req.extensions_mut().insert(Call {
            method: method.clone(),
            authority,
        });
        let service = service_of(&method).unwrap_or_default();
        let result = if service == <StreamServer<Streams> as NamedService>::NAME {
            self.stream.clone().call(req).await
        } else if service == <HealthServer<HealthService> as NamedService>::NAME {
            self.health.clone().call(req).await
        } else {
            self.echo.clone().call(req).await
        };
        match result {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// `/package.Service/Method` → `package.Service`.
fn service_of(path: &str) -> Option<&str> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some(service)
}

/// The conformance `GrpcEcho` service.
struct Echo {
    info: Arc<EchoInfo>,
}

impl Echo {
    fn answer(&self, request: tonic::Request<EchoRequest>) -> tonic::Response<EchoResponse> {
        self.info
            .served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let call = request.extensions().get::<Call>().cloned();
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(key, value)| Header {
                key: key.as_str().to_string(),
                value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            })
            .collect();
        let (fully_qualified_method, authority) =
            call.map_or_else(Default::default, |c| (c.method, c.authority));
        tonic::Response::new(EchoResponse {
            assertions: Some(Assertions {
                fully_qualified_method,
                headers,
                authority,
                context: Some(Context {
                    namespace: self.info.namespace.clone(),
                    ingress: String::new(),
                    service_name: self.info.service.clone(),
                    pod: self.info.pod.clone(),
                }),
                // The echo is plaintext h2c: nothing to assert about TLS.
                tls_assertions: Some(TlsAssertions::default()),
            }),
            request: Some(request.into_inner()),
        })
    }
}

#[tonic::async_trait]
impl GrpcEcho for Echo {
    async fn echo(
        &self,
        request: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoResponse>, Status> {
        Ok(self.answer(request))
    }

    async fn echo_two(
        &self,
        request: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoResponse>, Status> {
        Ok(self.answer(request))
    }

    async fn echo_three(
        &self,
        _request: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoResponse>, Status> {
        Err(Status::unimplemented(format!(
            "EchoThree is not implemented by echo pod {}",
            self.info.pod
        )))
    }
}

/// The strait-only `Stream` test aid.
struct Streams {
    info: Arc<EchoInfo>,
}

/// `x-echo-fail: <text>`: end the stream with FAILED_PRECONDITION and text.
fn fail_text(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get("x-echo-fail")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

type Sender = tokio::sync::mpsc::Sender<Result<Msg, Status>>;

/// The messages sent on `tx`, as a response stream.
fn channel() -> (Sender, BoxStream<Msg>) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, Box::pin(stream))
}

#[tonic::async_trait]
impl StreamService for Streams {
    type ChatStream = BoxStream<Msg>;
    type CountStream = BoxStream<Msg>;

    async fn chat(
        &self,
        request: tonic::Request<Streaming<Msg>>,
    ) -> Result<tonic::Response<Self::ChatStream>, Status> {
        let fail = fail_text(request.metadata());
        let mut inbound = request.into_inner();
        let pod = self.info.pod.clone();
        let (tx, stream) = channel();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(msg)) => {
                        let back = Msg {
                            pod: pod.clone(),
                            ..msg
                        };
                        if tx.send(Ok(back)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
            if let Some(text) = fail {
                let _ = tx.send(Err(Status::failed_precondition(text))).await;
            }
        });
        Ok(tonic::Response::new(stream))
    }

    async fn count(
        &self,
        request: tonic::Request<CountRequest>,
    ) -> Result<tonic::Response<Self::CountStream>, Status> {
        let fail = fail_text(request.metadata());
        let n = request.into_inner().n;
        let pod = self.info.pod.clone();
        let (tx, stream) = channel();
        tokio::spawn(async move {
            for seq in 0..n {
                let msg = Msg {
                    text: format!("message {seq}"),
                    seq,
                    pod: pod.clone(),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
            if let Some(text) = fail {
                let _ = tx.send(Err(Status::failed_precondition(text))).await;
            }
        });
        Ok(tonic::Response::new(stream))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn service_of_paths() {
        assert_eq!(
            super::service_of("/grpc.health.v1.Health/Check"),
            Some("grpc.health.v1.Health")
        );
        assert_eq!(super::service_of("/pkg.Svc/"), None);
        assert_eq!(super::service_of("/pkg.Svc"), None);
        assert_eq!(super::service_of("/a/b/c"), None);
        assert_eq!(super::service_of("no-slash"), None);
    }
}
