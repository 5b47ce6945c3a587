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
pub struct TcpLabels {
    pub listener: Arc<str>,
    pub route: Arc<str>,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InboundLabels {
    /// `mtls`, `tls` (not meshed) or `plaintext`.
    pub tls: &'static str,
    pub result: &'static str,
    /// The caller's SPIFFE ID; `unauthenticated` when it proved none.
    pub peer: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthzLabels {
    /// The policy and rule that decided (`-` when none applies).
    pub policy: String,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub route: Arc<str>,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OverflowLabels {
    pub cluster: String,
    /// The breaker field reached: maxRequests, maxConnections, maxPendingRequests.
    pub limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

/// Series handles each thread keeps at hand (see [`Metrics::record`]).
const SERIES_CACHE: usize = 256;

struct Handles {
    owner: usize,
    listener: Arc<str>,
    route: Arc<str>,
    code: u16,
    requests: Counter,
    latency: Histogram,
}

thread_local! {
    static CACHE: std::cell::RefCell<Vec<Handles>> = const { std::cell::RefCell::new(Vec::new()) };
}

static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub struct Metrics {
    /// Tells this registry's cached handles from another's in the same thread.
    id: usize,
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub connections: Gauge,
    pub reloads: Family<ReloadLabels, Counter>,
    pub tcp: Family<TcpLabels, Counter>,
    pub tls_errors: Family<ReasonLabels, Counter>,
    pub connection_errors: Family<ReasonLabels, Counter>,
    pub retries: Family<RetryLabels, Counter>,
    pub overflows: Family<OverflowLabels, Counter>,
    pub ejections: Family<ClusterLabels, Counter>,
    pub inbound: Family<InboundLabels, Counter>,
    pub authz: Family<AuthzLabels, Counter>,
    /// Only a proxy with a workload certificate reports on it: a zero
    /// expiry from a gateway with none would set off the alarm it is for.
    identity: Option<IdentityMetrics>,
}

struct IdentityMetrics {
    expiry: Gauge<f64, std::sync::atomic::AtomicU64>,
    issued: Counter,
    failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(false)
    }
}

impl Metrics {
    /// The registry; `identity` when this proxy has a certificate agent.
    pub fn new(identity: bool) -> Self {
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
        let tcp = Family::<TcpLabels, Counter>::default();
        registry.register(
            "tcp_connections",
            "TCP and TLS passthrough connections ended, by listener, route and how they ended",
            tcp.clone(),
        );
        let tls_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tls_handshake_errors",
            "TLS handshakes refused or failed, by reason",
            tls_errors.clone(),
        );
        let connection_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connection_errors",
            "Downstream HTTP connections that ended in an error, by reason (h2_enhance_your_calm: an HTTP/2 client cut off for abuse; docs/metrics.md lists them all)",
            connection_errors.clone(),
        );
        let retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "retries",
            "Retries made, by route and why (connect, backend, timeout, status), and retries the budget refused (budget_exhausted)",
            retries.clone(),
        );
        let overflows = Family::<OverflowLabels, Counter>::default();
        registry.register(
            "breaker_overflows",
            "Requests answered 503 because the cluster's circuit breaker was full, by the limit reached",
            overflows.clone(),
        );
        let ejections = Family::<ClusterLabels, Counter>::default();
        registry.register(
            "outlier_ejections",
            "Endpoints ejected by outlier detection",
            ejections.clone(),
        );
        let inbound = Family::<InboundLabels, Counter>::default();
        registry.register(
            "mesh_inbound_connections",
            "Connections to a sidecar's inbound listener with a workload certificate, by how they arrived (mtls, tls, plaintext), whether they were accepted, and the caller's SPIFFE ID",
            inbound.clone(),
        );
        let authz = Family::<AuthzLabels, Counter>::default();
        registry.register(
            "authz_decisions",
            "Calls a sidecar authorized, by the AuthorizationPolicy rule that decided and the decision",
            authz.clone(),
        );
        let identity = identity.then(|| IdentityMetrics::register(&mut registry));
        Metrics {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            registry,
            requests,
            latency,
            connections,
            reloads,
            tcp,
            tls_errors,
            connection_errors,
            retries,
            overflows,
            ejections,
            inbound,
            authz,
            identity,
        }
    }

    pub fn inbound(&self, tls: &'static str, result: &'static str, peer: Option<&Arc<str>>) {
        let peer = peer
            .cloned()
            .unwrap_or_else(|| Arc::from("unauthenticated"));
        self.inbound
            .get_or_create(&InboundLabels { tls, result, peer })
            .inc();
    }

    pub fn authz(&self, policy: String, allowed: bool) {
        let decision = if allowed { "allow" } else { "deny" };
        self.authz
            .get_or_create(&AuthzLabels { policy, decision })
            .inc();
    }

    /// The certificate agent's state, read at each scrape.
    pub fn identity(&self, agent: &strait_identity::agent::Agent) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(m) = &self.identity else {
            return;
        };
        if let Some(left) = agent.expires_in() {
            m.expiry.set(left.as_secs_f64());
        }
        // The agent counts; the counters catch up at each scrape.
        let catch_up = |c: &Counter, now: u64| c.inc_by(now.saturating_sub(c.get()));
        catch_up(&m.issued, agent.issued.load(Relaxed));
        catch_up(&m.failures, agent.failures.load(Relaxed));
    }

    pub fn overflow(&self, cluster: &str, limit: &'static str) {
        self.overflows
            .get_or_create(&OverflowLabels {
                cluster: cluster.to_string(),
                limit,
            })
            .inc();
    }

    pub fn ejection(&self, cluster: &str) {
        self.ejections
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_string(),
            })
            .inc();
    }

    pub fn retry(&self, route: &Arc<str>, reason: &'static str) {
        self.retries
            .get_or_create(&RetryLabels {
                route: route.clone(),
                reason,
            })
            .inc();
    }

    pub fn tcp(&self, listener: &Arc<str>, route: &Arc<str>, result: &'static str) {
        self.tcp
            .get_or_create(&TcpLabels {
                listener: listener.clone(),
                route: route.clone(),
                result,
            })
            .inc();
    }

    pub fn tls_error(&self, reason: &'static str) {
        self.tls_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn connection_error(&self, reason: &'static str) {
        self.connection_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts one request. The label lookup (hashing two strings under a
    /// lock) is paid once per thread and series: handles are then found by
    /// pointer in a small per-thread cache. The cache holds the label `Arc`s,
    /// so their addresses cannot be reused by another label while cached.
    pub fn record(&self, listener: &Arc<str>, route: &Arc<str>, code: u16, seconds: f64) {
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let hit = cache.iter().find(|h| {
                h.owner == self.id
                    && h.code == code
                    && Arc::ptr_eq(&h.route, route)
                    && Arc::ptr_eq(&h.listener, listener)
            });
            if let Some(h) = hit {
                h.requests.inc();
                h.latency.observe(seconds);
                return;
            }
            if cache.len() >= SERIES_CACHE {
                cache.clear();
            }
            let handles = Handles {
                owner: self.id,
                listener: listener.clone(),
                route: route.clone(),
                code,
                requests: self.requests.get_or_create_owned(&RequestLabels {
                    listener: listener.clone(),
                    route: route.clone(),
                    code,
                }),
                latency: self.latency.get_or_create_owned(&RouteLabels {
                    listener: listener.clone(),
                    route: route.clone(),
                }),
            };
            handles.requests.inc();
            handles.latency.observe(seconds);
            cache.push(handles);
        });
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

impl IdentityMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = IdentityMetrics {
            expiry: Default::default(),
            issued: Default::default(),
            failures: Default::default(),
        };
        registry.register(
            "identity_certificate_expiry_seconds",
            "Time left on the workload certificate (alarm on this: renewal is failing when it falls below a third of the lifetime)",
            m.expiry.clone(),
        );
        registry.register(
            "identity_certificates_issued",
            "Workload certificates received from the CA since start",
            m.issued.clone(),
        );
        registry.register(
            "identity_ca_failures",
            "Calls to the CA that failed since start",
            m.failures.clone(),
        );
        m
    }
}
