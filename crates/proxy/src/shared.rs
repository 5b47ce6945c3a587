//! State shared by every connection, in parts: each phase of the request
//! path takes the parts it needs.

use crate::sidecar::Sidecar;
use crate::{metrics, splice, upstream};
use arc_swap::ArcSwap;
use std::sync::Arc;
use strait_route::Snapshot;

pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: metrics::Metrics,
    pub upstream: Arc<upstream::Upstreams>,
    /// Limits of joined connections: TCP, TLS passthrough, upgrades.
    pub limits: splice::SpliceLimits,
    /// Set when this process is a sidecar (`strait proxy`).
    pub sidecar: Option<Sidecar>,
}

impl Shared {
    pub fn new(
        snapshot: Snapshot,
        limits: splice::SpliceLimits,
        sidecar: Option<Sidecar>,
    ) -> Arc<Self> {
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics: metrics::Metrics::new(
                sidecar
                    .as_ref()
                    .is_some_and(|s| s.options.identity.is_some()),
            ),
            upstream: Arc::new(upstream::Upstreams::new(
                sidecar.as_ref().and_then(|s| s.options.identity.clone()),
            )),
            limits,
            sidecar,
        })
    }
}
