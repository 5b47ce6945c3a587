//! An OTLP trace receiver, as an OpenTelemetry collector is one: gRPC
//! (`TraceService/Export`, the generated tonic service of the
//! OpenTelemetry protos) and HTTP/protobuf (`POST /v1/traces`) on one
//! port. It keeps every span it is sent, with its service's name.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use std::sync::{Arc, Mutex};

/// A span as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub service: String,
    pub name: String,
    pub kind: i32,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
    pub events: Vec<String>,
    /// `STATUS_CODE_ERROR` is 2.
    pub status: i32,
}

impl Received {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Store(Arc<Mutex<Vec<Received>>>);

impl Store {
    fn keep(&self, request: ExportTraceServiceRequest) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let text = |v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>| match v
            .and_then(|v| v.value.as_ref())
        {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(any_value::Value::IntValue(i)) => i.to_string(),
            Some(any_value::Value::BoolValue(b)) => b.to_string(),
            Some(any_value::Value::DoubleValue(d)) => d.to_string(),
            _ => String::new(),
        };
        let mut spans = self.0.lock().expect("store");
        for rs in request.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref()))
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Received {
                    service: service.clone(),
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                        .collect(),
                    events: span.events.into_iter().map(|e| e.name).collect(),
                    status: span.status.map_or(0, |s| s.code),
                });
            }
        }
    }
}

#[tonic::async_trait]
impl TraceService for Store {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.keep(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

pub struct Receiver {
    pub port: u16,
    store: Store,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let store = Store::default();
        let grpc = TraceServiceServer::new(store.clone());
        let kept = store.clone();
        let port = super::serve_loopback(move |req| serve(grpc.clone(), kept.clone(), req)).await;
        Receiver { port, store }
    }

    pub fn spans(&self) -> Vec<Received> {
        self.store.0.lock().expect("store").clone()
    }
}

type Answer = http::Response<http_body_util::Either<tonic::body::Body, Full<Bytes>>>;

async fn serve(
    mut grpc: TraceServiceServer<Store>,
    store: Store,
    req: http::Request<hyper::body::Incoming>,
) -> Result<Answer, std::convert::Infallible> {
    use http_body_util::Either;
    let is_grpc = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if is_grpc {
        let response = tonic::codegen::Service::call(&mut grpc, req).await;
        let Ok(response) = response;
        return Ok(response.map(Either::Left));
    }
    // OTLP/HTTP: a protobuf ExportTraceServiceRequest, answered with an
    // empty protobuf response.
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let decoded = body
        .ok()
        .and_then(|b| <ExportTraceServiceRequest as prost::Message>::decode(b).ok());
    let status = match decoded {
        Some(request) => {
            store.keep(request);
            200
        }
        None => 400,
    };
    let response = http::Response::builder()
        .status(status)
        .header("content-type", "application/x-protobuf")
        .body(Either::Right(Full::new(Bytes::new())))
        .expect("response");
    Ok(response)
}
