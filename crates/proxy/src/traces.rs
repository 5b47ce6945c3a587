//! Distributed tracing: a span per request at every strait hop, its
//! context read from the caller (W3C `traceparent`/`tracestate`, or B3)
//! and handed on in `traceparent`, exported over OTLP (gRPC or
//! HTTP/protobuf) by the OpenTelemetry SDK. A request without a context
//! starts a trace here; one with a context keeps its sampling decision.
//!
//! Spans are exported in batches by the SDK's own thread from a bounded
//! queue (2,048 spans; more are dropped, counted by the SDK): a slow or
//! dead collector never slows a request, nor grows memory.
//!
//! A TelemetryPolicy may set the share of new traces for a listener or a
//! workload: its ratio rides in the context the span starts with, where
//! [`PolicySampler`] finds it.

use http::HeaderMap;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{
    Link, SpanKind, Status, TraceContextExt, TraceId, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SamplingResult, SdkTracer, SdkTracerProvider,
    ShouldSample, SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;
use std::time::Duration;

/// The OTLP protocols, as OpenTelemetry's `OTEL_EXPORTER_OTLP_PROTOCOL`
/// names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Grpc,
    HttpProtobuf,
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => Err(format!(
                "{other:?}: the OTLP protocol is grpc or http/protobuf"
            )),
        }
    }
}

/// Where spans go, and how many requests start a trace.
#[derive(Debug, Clone)]
pub struct Options {
    /// The collector: `http://host:4317` (gRPC) or
    /// `http://host:4318/v1/traces` (HTTP).
    pub endpoint: String,
    pub protocol: Protocol,
    /// The share of new traces sampled, 0.0 to 1.0; a caller's decision
    /// is kept.
    pub sample: f64,
    /// `service.name` of the spans: the workload, or `strait-gateway`.
    pub service: String,
    pub namespace: Option<String>,
}

/// Spans waiting for export before new ones are dropped.
pub const QUEUE: usize = 2048;

pub struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TextMapCompositePropagator,
}

impl Traces {
    /// Starts the exporter (in the runtime this is called from).
    pub fn start(options: &Options) -> anyhow::Result<Traces> {
        let runtime = tokio::runtime::Handle::current();
        let builder = opentelemetry_otlp::SpanExporter::builder();
        let endpoint = options.endpoint.clone();
        let exporter = match options.protocol {
            Protocol::Grpc => builder.with_tonic().with_endpoint(endpoint).build()?,
            Protocol::HttpProtobuf => builder.with_http().with_endpoint(endpoint).build()?,
        };
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE)
            .with_scheduled_delay(Duration::from_millis(500))
            .build();
        let on_runtime = OnRuntime {
            exporter,
            runtime,
            endpoint: options.endpoint.clone(),
            warned: Default::default(),
        };
        let processor = BatchSpanProcessor::builder(on_runtime)
            .with_batch_config(batch)
            .build();
        let mut resource = Resource::builder().with_service_name(options.service.clone());
        if let Some(ns) = &options.namespace {
            resource = resource.with_attribute(KeyValue::new("k8s.namespace.name", ns.clone()));
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(PolicySampler {
                flags: parent_based(options.sample),
            })
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("strait");
        let propagator = TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(opentelemetry_propagator_b3::Propagator::with_encoding(
                opentelemetry_propagator_b3::B3Encoding::SingleAndMultiHeader,
            )),
        ]);
        Ok(Traces {
            provider,
            tracer,
            propagator,
        })
    }

    /// The span of a request that arrived with `headers`: a child of the
    /// caller's context if it sent one. `ratio`: a TelemetryPolicy's
    /// share of new traces, over the flag's.
    pub fn begin(
        &self,
        headers: &HeaderMap,
        kind: SpanKind,
        name: &'static str,
        ratio: Option<f64>,
    ) -> Box<RequestSpan> {
        let mut parent = self.propagator.extract(&HeaderExtractor(headers));
        if let Some(ratio) = ratio {
            parent = parent.with_value(PolicyRatio(ratio));
        }
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(&self.tracer, &parent);
        Box::new(RequestSpan {
            cx: parent.with_span(span),
            method: http::Method::GET,
        })
    }

    /// Exports what is waiting (at shutdown). It waits for the export, so
    /// it is called off the runtime's threads (`spawn_blocking`).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}

fn parent_based(ratio: f64) -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio.clamp(0.0, 1.0))))
}

/// A TelemetryPolicy's share of new traces, in a span's starting context.
struct PolicyRatio(f64);

/// The caller's decision when it made one; else a policy's ratio when one
/// is in the context, else the flag's.
#[derive(Debug, Clone)]
struct PolicySampler {
    flags: Sampler,
}

impl ShouldSample for PolicySampler {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        match parent.and_then(|cx| cx.get::<PolicyRatio>()) {
            Some(PolicyRatio(ratio)) => {
                parent_based(*ratio).should_sample(parent, trace_id, name, kind, attributes, links)
            }
            None => self
                .flags
                .should_sample(parent, trace_id, name, kind, attributes, links),
        }
    }
}

/// One request's span.
pub struct RequestSpan {
    cx: Context,
    method: http::Method,
}

impl RequestSpan {
    /// The request's method and target, as OpenTelemetry names them.
    pub fn start(&mut self, method: &http::Method, uri: &http::Uri) {
        self.method = method.clone();
        let span = self.cx.span();
        if span.is_recording() {
            span.set_attribute(KeyValue::new("http.request.method", method.to_string()));
            span.set_attribute(KeyValue::new("url.path", uri.path().to_string()));
        }
    }

    /// `METHOD route`, OpenTelemetry's HTTP span name.
    pub fn name(&self, route: &str) -> String {
        format!("{} {route}", self.method)
    }

    /// Sets `traceparent` (and `tracestate`) on a request going on: this
    /// span is the next hop's parent.
    pub fn inject(&self, headers: &mut HeaderMap) {
        TraceContextPropagator::new().inject_context(&self.cx, &mut HeaderInjector(headers));
    }

    /// The trace's ID, as logs show it.
    pub fn trace_id(&self) -> String {
        self.cx.span().span_context().trace_id().to_string()
    }

    pub fn sampled(&self) -> bool {
        self.cx.span().span_context().is_sampled()
    }

    pub fn event(&self, name: &'static str, attributes: Vec<KeyValue>) {
        self.cx.span().add_event(name, attributes);
    }

    /// Ends the span with what became of the request.
    pub fn end(self, name: String, attributes: Vec<KeyValue>, error: Option<&'static str>) {
        let span = self.cx.span();
        if !name.is_empty() {
            span.update_name(name);
        }
        span.set_attributes(attributes);
        if let Some(why) = error {
            span.set_status(Status::error(why));
        }
        span.end();
    }
}

/// An exporter run on the proxy's runtime: the SDK exports from a thread
/// of its own, and the exporters' connections are tokio's. (That thread
/// is no runtime's, so it may wait on one; the runtime keeps being driven
/// by its own threads meanwhile.)
#[derive(Debug)]
struct OnRuntime {
    exporter: opentelemetry_otlp::SpanExporter,
    runtime: tokio::runtime::Handle,
    endpoint: String,
    /// When a failed export was last told (once a minute at most).
    warned: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How often a collector that keeps failing is told of.
const WARN_EVERY: Duration = Duration::from_secs(60);

impl SpanExporter for OnRuntime {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.runtime.block_on(self.exporter.export(batch));
        if let Err(e) = &result {
            let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                *warned = Some(std::time::Instant::now());
                tracing::warn!(endpoint = %self.endpoint, spans, error = %e, "traces: the collector refused or missed a batch; its spans are lost (told once a minute)");
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Traces exported to a port nothing listens on: spans are made, and
    /// what becomes of them does not matter here.
    fn traces() -> (tokio::runtime::Runtime, Traces) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let options = Options {
            endpoint: "http://127.0.0.1:9".into(),
            protocol: Protocol::Grpc,
            sample: 1.0,
            service: "test".into(),
            namespace: None,
        };
        let traces = rt
            .block_on(async { Traces::start(&options) })
            .expect("traces");
        (rt, traces)
    }

    fn child_of(traces: &Traces, headers: &[(&'static str, &str)]) -> String {
        child_with(traces, headers, None)
    }

    fn child_with(traces: &Traces, headers: &[(&'static str, &str)], ratio: Option<f64>) -> String {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, http::HeaderValue::from_str(v).expect("value"));
        }
        let span = traces.begin(&map, SpanKind::Server, "test", ratio);
        let mut out = HeaderMap::new();
        span.inject(&mut out);
        let parent = out
            .get("traceparent")
            .expect("traceparent")
            .to_str()
            .expect("text");
        parent.to_string()
    }

    #[test]
    fn a_context_is_taken_from_w3c_or_b3_and_garbage_starts_a_trace() {
        let (_rt, traces) = traces();
        let w3c = child_of(
            &traces,
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
        );
        assert!(
            w3c.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && w3c.ends_with("-01"),
            "{w3c}"
        );
        let b3 = child_of(
            &traces,
            &[
                ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
                ("x-b3-sampled", "1"),
            ],
        );
        assert!(
            b3.starts_with("00-80f198ee56343ba864fe8b2a57d3eff7-"),
            "{b3}"
        );
        for garbage in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-xyz-00f067aa0ba902b7-01",
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra-extra",
        ] {
            let fresh = child_of(&traces, &[("traceparent", garbage), ("b3", "not-a-b3")]);
            let fields: Vec<&str> = fresh.split('-').collect();
            assert_eq!(fields.len(), 4, "{garbage:?} → {fresh}");
            assert_ne!(
                fields[1], "4bf92f3577b34da6a3ce929d0e0e4736",
                "{garbage:?} was taken"
            );
            assert_ne!(fields[1], "00000000000000000000000000000000", "{garbage:?}");
        }
    }

    #[test]
    fn a_policys_ratio_decides_new_traces_and_the_callers_decision_stands() {
        let (_rt, traces) = traces();
        let sampled = |headers: &[(&'static str, &str)], ratio| {
            child_with(&traces, headers, ratio).ends_with("-01")
        };
        assert!(sampled(&[], None), "the flag's 100 %");
        assert!(!sampled(&[], Some(0.0)), "the policy's 0 %");
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let wanted = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(!sampled(&[("traceparent", unsampled)], Some(1.0)));
        assert!(sampled(&[("traceparent", wanted)], Some(0.0)));
    }

    #[test]
    fn the_protocol_is_named_as_opentelemetry_names_it() {
        assert_eq!("grpc".parse::<Protocol>(), Ok(Protocol::Grpc));
        assert_eq!(
            "http/protobuf".parse::<Protocol>(),
            Ok(Protocol::HttpProtobuf)
        );
        assert!("http/json".parse::<Protocol>().is_err());
    }
}
