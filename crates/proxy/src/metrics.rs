//! Prometheus metrics, named as the field names them.

use crate::peer::Named;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

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
pub struct RateLimitLabels {
    /// `namespace/name` of the RateLimitPolicy.
    pub policy: Arc<str>,
    pub rule: Arc<str>,
    /// What the rule counts by: `route`, `policy`, or its distinct fields.
    pub key: Arc<str>,
    /// `allowed`, `limited`, `shadow_limited`, or, when Redis could not
    /// answer, `failed_open` / `failed_closed`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub route: Arc<str>,
    pub destination_service_name: Arc<str>,
    pub destination_service_namespace: Arc<str>,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabels {
    pub route: Arc<str>,
    pub destination_service_name: Arc<str>,
    pub destination_service_namespace: Arc<str>,
    /// `request` (the rule's whole request) or `backend_request` (a try).
    pub timeout: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
    pub destination_service_name: Arc<str>,
    pub destination_service_namespace: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OverflowLabels {
    pub cluster: String,
    pub destination_service_name: Arc<str>,
    pub destination_service_namespace: Arc<str>,
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

pub struct Metrics {
    registry: Registry,
    pub requests: crate::metrics_requests::Requests,
    pub tcp_edges: crate::metrics_tcp::TcpEdges,
    pub connections: Gauge,
    pub reloads: Family<ReloadLabels, Counter>,
    pub tcp: Family<TcpLabels, Counter>,
    pub tls_errors: Family<ReasonLabels, Counter>,
    pub connection_errors: Family<ReasonLabels, Counter>,
    pub retries: Family<RetryLabels, Counter>,
    pub timeouts: Family<TimeoutLabels, Counter>,
    pub overflows: Family<OverflowLabels, Counter>,
    pub ejections: Family<ClusterLabels, Counter>,
    pub inbound: Family<InboundLabels, Counter>,
    pub authz: Family<AuthzLabels, Counter>,
    pub ratelimit: Family<RateLimitLabels, Counter>,
    pub access_log_dropped: Counter,
    pub process: crate::process::Process,
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
        let requests = crate::metrics_requests::Requests::register(&mut registry);
        let tcp_edges = crate::metrics_tcp::TcpEdges::register(&mut registry);
        let connections = Gauge::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
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
        let timeouts = Family::<TimeoutLabels, Counter>::default();
        registry.register(
            "timeouts",
            "Timeouts that fired, by route, destination Service and which: the rule's request timeout, or a try's backend request timeout",
            timeouts.clone(),
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
        let ratelimit = Family::<RateLimitLabels, Counter>::default();
        registry.register(
            "rate_limit_decisions",
            "Requests a RateLimitPolicy rule counted, by policy, rule, what it counts by, and result",
            ratelimit.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "access_log_dropped",
            "Access log lines dropped because 4 MiB of lines were already waiting to be written",
            access_log_dropped.clone(),
        );
        let process = crate::process::Process::new(&mut registry);
        let identity = identity.then(|| IdentityMetrics::register(&mut registry));
        Metrics {
            registry,
            requests,
            tcp_edges,
            connections,
            reloads,
            tcp,
            tls_errors,
            connection_errors,
            retries,
            ratelimit,
            timeouts,
            overflows,
            ejections,
            inbound,
            authz,
            access_log_dropped,
            process,
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

    pub fn overflow(&self, cluster: &str, service: &Named, limit: &'static str) {
        self.overflows
            .get_or_create(&OverflowLabels {
                cluster: cluster.to_string(),
                destination_service_name: service.name.clone(),
                destination_service_namespace: service.namespace.clone(),
                limit,
            })
            .inc();
    }

    pub fn ejection(&self, cluster: &str, service: &Named) {
        self.ejections
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_string(),
                destination_service_name: service.name.clone(),
                destination_service_namespace: service.namespace.clone(),
            })
            .inc();
    }

    pub fn retry(&self, route: &Arc<str>, service: &Named, reason: &'static str) {
        self.retries
            .get_or_create(&RetryLabels {
                route: route.clone(),
                destination_service_name: service.name.clone(),
                destination_service_namespace: service.namespace.clone(),
                reason,
            })
            .inc();
    }

    pub fn timeout(&self, route: &Arc<str>, service: &Named, timeout: &'static str) {
        self.timeouts
            .get_or_create(&TimeoutLabels {
                route: route.clone(),
                destination_service_name: service.name.clone(),
                destination_service_namespace: service.namespace.clone(),
                timeout,
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

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.process.encode(&mut out);
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
