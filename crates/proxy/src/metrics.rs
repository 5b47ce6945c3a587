//! Prometheus metrics, named as the field names them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub listener: Arc<str>,
    pub route: Arc<str>,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub listener: Arc<str>,
    pub route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub connections: Gauge,
    pub reloads: Family<ReloadLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("strait");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
        });
        let connections = Gauge::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by listener, route and status code",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request headers to response headers",
            latency.clone(),
        );
        registry.register(
            "connections_active",
            "Downstream connections open now",
            connections.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads, by result",
            reloads.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            connections,
            reloads,
        }
    }

    pub fn record(&self, listener: &Arc<str>, route: &Arc<str>, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                listener: listener.clone(),
                route: route.clone(),
                code,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                listener: listener.clone(),
                route: route.clone(),
            })
            .observe(seconds);
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
