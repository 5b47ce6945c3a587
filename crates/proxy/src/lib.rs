//! strait's data plane. The request path is one straight line of stages,
//! each in its own module:
//!
//! accept ([`listeners`]) → decode (hyper) → match route (`strait_route`) →
//! filters ([`handler`]) → pick backend → forward with timeout
//! ([`upstream`]) → response filters → telemetry ([`metrics`]).
//!
//! Configuration is read lock-free from an `ArcSwap<Snapshot>`; a request
//! keeps the snapshot it started with until it ends.

pub mod admin;
pub mod authz;
pub mod balance;
pub mod capture;
pub mod conn_limit;
pub mod grpc;
pub mod handler;
mod headers;
pub mod l4;
pub mod listeners;
pub mod mesh;
pub mod metrics;
pub mod mtls;
pub mod reload;
pub mod retry;
mod run;
pub mod splice;
pub mod tee;
pub mod tls;
pub mod upgrade;
pub mod upstream;

pub use run::{run, GatewayOptions};

use arc_swap::ArcSwap;
use std::sync::Arc;
use strait_route::Snapshot;

/// State shared by every connection.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: metrics::Metrics,
    pub upstream: Arc<upstream::Upstreams>,
    /// Limits of joined connections: TCP, TLS passthrough, upgrades.
    pub limits: splice::SpliceLimits,
    /// Set when this process is a sidecar (`strait proxy`).
    pub sidecar: Option<mesh::Sidecar>,
}

impl Shared {
    pub fn new(
        snapshot: Snapshot,
        limits: splice::SpliceLimits,
        sidecar: Option<mesh::Sidecar>,
    ) -> Arc<Self> {
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics: metrics::Metrics::new(),
            upstream: Arc::new(upstream::Upstreams::new(
                sidecar.as_ref().and_then(|s| s.options.identity.clone()),
            )),
            limits,
            sidecar,
        })
    }
}
