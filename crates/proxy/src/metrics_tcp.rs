//! TCP connections (TCP and TLS passthrough routes, a sidecar's opaque
//! and tunnelled connections) by who called whom, with the bytes each
//! way: Istio's `tcp_*` metrics, under the request metrics' label names.
//! Bytes are counted when a connection ends; a connection open for hours
//! shows its bytes when it closes.

use crate::access_log::{self, AccessLog, Entry, Format, Qualified};
use crate::metrics_requests::{encode_pairs, security, Parties};
use crate::peer::Named;
use crate::splice::{SpliceEnd, Spliced};
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use strait_route::telemetry::Telemetry;

/// The two ends of a TCP connection, as the reporter knows them.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct TcpEdge {
    pub reporter: &'static str,
    pub source: Arc<Named>,
    pub source_principal: Arc<str>,
    pub destination: Arc<Named>,
    pub service: Arc<Named>,
    pub mtls: bool,
}

impl EncodeLabelSet for TcpEdge {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let parties = Parties {
            source: &self.source,
            source_principal: &self.source_principal,
            destination: &self.destination,
            service: &self.service,
        };
        encode_pairs(encoder, &[("reporter", self.reporter)])?;
        parties.encode(encoder)?;
        let security = ("connection_security_policy", security(self.mtls));
        encode_pairs(encoder, &[security])
    }
}

#[derive(Clone)]
pub struct TcpEdges {
    opened: Family<TcpEdge, Counter>,
    closed: Family<TcpEdge, Counter>,
    /// Bytes from the client, toward the server.
    received: Family<TcpEdge, Counter>,
    /// Bytes from the server, toward the client.
    sent: Family<TcpEdge, Counter>,
}

impl TcpEdges {
    pub fn register(registry: &mut Registry) -> Self {
        let edges = TcpEdges {
            opened: Family::default(),
            closed: Family::default(),
            received: Family::default(),
            sent: Family::default(),
        };
        let families = [
            (
                "tcp_connections_opened",
                "TCP connections opened to a backend, by caller and callee",
                &edges.opened,
            ),
            (
                "tcp_connections_closed",
                "TCP connections closed, by caller and callee",
                &edges.closed,
            ),
            (
                "tcp_received_bytes",
                "Bytes from the client of a TCP connection, counted when it closes",
                &edges.received,
            ),
            (
                "tcp_sent_bytes",
                "Bytes to the client of a TCP connection, counted when it closes",
                &edges.sent,
            ),
        ];
        for (name, help, family) in families {
            registry.register(name, help, family.clone());
        }
        edges
    }

    /// A connection reached its backend.
    pub fn opened(&self, edge: &TcpEdge) {
        self.opened.get_or_create(edge).inc();
    }

    /// It ended: `spliced.from_a` came from the client.
    pub fn closed(&self, edge: &TcpEdge, spliced: &Spliced) {
        self.closed.get_or_create(edge).inc();
        self.received.get_or_create(edge).inc_by(spliced.from_a);
        self.sent.get_or_create(edge).inc_by(spliced.from_b);
    }
}

/// Where a TCP connection went, as its access log line says it.
pub struct TcpPath {
    pub listener: Arc<str>,
    pub route: Arc<str>,
    pub client: SocketAddr,
    pub upstream: SocketAddr,
    /// A passthrough connection's TLS server name.
    pub sni: Option<String>,
}

/// One TCP connection's telemetry, from its backend's connection to its
/// end: counted when opened, counted with its bytes when closed, and an
/// access log line then if the log samples it.
pub struct TcpRecord {
    edges: TcpEdges,
    edge: TcpEdge,
    path: TcpPath,
    log: Option<(AccessLog, Format)>,
    started: SystemTime,
    start: Instant,
}

impl TcpRecord {
    /// `policy`: what TelemetryPolicies say for the listener or workload.
    pub fn open(
        edges: &TcpEdges,
        edge: TcpEdge,
        path: TcpPath,
        log: Option<&AccessLog>,
        policy: &Telemetry,
    ) -> Self {
        edges.opened(&edge);
        let log = log
            .filter(|log| log.sampled(policy))
            .map(|log| (log.clone(), log.format(policy)));
        TcpRecord {
            edges: edges.clone(),
            edge,
            path,
            log,
            started: SystemTime::now(),
            start: Instant::now(),
        }
    }

    pub fn closed(self, spliced: &Spliced) {
        self.edges.closed(&self.edge, spliced);
        if let Some((log, format)) = &self.log {
            log.write(&self.entry(spliced), *format);
        }
    }

    fn entry(&self, spliced: &Spliced) -> Entry<'_> {
        let (edge, path) = (&self.edge, &self.path);
        Entry {
            start_time: access_log::rfc3339(self.started),
            duration_ms: access_log::millis(self.start.elapsed()),
            upstream_ms: None,
            method: None,
            authority: path.sni.as_deref(),
            path: None,
            protocol: "TCP",
            status: 0,
            grpc_status: None,
            reason: (spliced.end != SpliceEnd::Done).then(|| spliced.end.label()),
            bytes_received: spliced.from_a,
            bytes_sent: spliced.from_b,
            incomplete: false,
            reporter: edge.reporter,
            listener: &path.listener,
            route: &path.route,
            rule: None,
            upstream_host: Some(access_log::address(path.upstream)),
            retries: 0,
            source_workload: Qualified(&edge.source),
            source_principal: &edge.source_principal,
            destination_workload: Qualified(&edge.destination),
            destination_service: Qualified(&edge.service),
            mtls: edge.mtls,
            client_address: access_log::address(path.client),
            user_agent: None,
            request_id: None,
            trace_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splice::SpliceEnd;

    #[test]
    fn a_connection_counts_once_each_way() {
        let mut registry = Registry::with_prefix("strait");
        let edges = TcpEdges::register(&mut registry);
        let edge = TcpEdge {
            reporter: "source",
            source: Named::new("shop", "checkout"),
            source_principal: Arc::from("spiffe://cluster.local/ns/shop/sa/checkout"),
            destination: Named::unknown(),
            service: Named::new("shop", "db"),
            mtls: true,
        };
        edges.opened(&edge);
        let spliced = Spliced {
            end: SpliceEnd::Done,
            from_a: 300,
            from_b: 4000,
        };
        edges.closed(&edge, &spliced);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoded");
        let value = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name}{{")))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(
            value("strait_tcp_connections_opened_total").as_deref(),
            Some("1")
        );
        assert_eq!(
            value("strait_tcp_connections_closed_total").as_deref(),
            Some("1")
        );
        assert_eq!(
            value("strait_tcp_received_bytes_total").as_deref(),
            Some("300")
        );
        assert_eq!(
            value("strait_tcp_sent_bytes_total").as_deref(),
            Some("4000")
        );
        assert!(
            text.contains("destination_service_name=\"db\",destination_service_namespace=\"shop\",connection_security_policy=\"mutual_tls\""),
            "{text}"
        );
    }
}
