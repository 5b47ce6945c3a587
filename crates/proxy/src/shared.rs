//! State shared by every connection, in parts: each phase of the request
//! path takes the parts it needs.

use crate::limits::HttpLimits;
use crate::live::Live;
use crate::sidecar::Sidecar;
use crate::{metrics, splice, upstream};
use arc_swap::ArcSwap;
use std::sync::Arc;
use strait_route::Snapshot;

pub struct Shared {
    /// The configuration and what is known of its endpoints, swapped
    /// together; a request keeps the one it started with.
    pub live: ArcSwap<Live>,
    pub metrics: metrics::Metrics,
    pub upstream: Arc<upstream::Upstreams>,
    /// Limits of joined connections: TCP, TLS passthrough, upgrades.
    pub limits: splice::SpliceLimits,
    /// Limits of a request's head and body.
    pub http_limits: HttpLimits,
    /// Set when this process is a sidecar (`strait proxy`).
    pub sidecar: Option<Sidecar>,
    /// Set once at start when there is one.
    pub access_log: std::sync::OnceLock<crate::access_log::AccessLog>,
    /// Set once at start when traces are exported.
    pub traces: std::sync::OnceLock<crate::traces::Traces>,
    /// Tokens SecurityPolicies accepted, emptied with each configuration.
    pub tokens: crate::token_cache::TokenCache,
    /// Authorization services' answers remembered, emptied with each
    /// configuration.
    pub decisions: crate::ext_authz::Decisions,
    /// Issuers' key sets fetched from their URLs.
    pub jwks: crate::jwks::Jwks,
    /// What OpenID providers' discovery documents said.
    pub oidc: crate::oidc::Providers,
}

impl Shared {
    pub fn new(
        snapshot: Snapshot,
        (limits, http_limits): (splice::SpliceLimits, HttpLimits),
        sidecar: Option<Sidecar>,
    ) -> Arc<Self> {
        Arc::new(Shared {
            live: ArcSwap::from_pointee(live(snapshot, sidecar.as_ref(), None)),
            metrics: metrics::Metrics::new(
                sidecar
                    .as_ref()
                    .is_some_and(|s| s.options.identity.is_some()),
            ),
            upstream: Arc::new(upstream::Upstreams::new(
                sidecar.as_ref().and_then(|s| s.options.identity.clone()),
            )),
            limits,
            http_limits,
            sidecar,
            access_log: std::sync::OnceLock::new(),
            traces: std::sync::OnceLock::new(),
            tokens: Default::default(),
            decisions: Default::default(),
            jwks: Default::default(),
            oidc: Default::default(),
        })
    }
}

impl Shared {
    /// Serves `snapshot` from now on, keeping what is known of the
    /// endpoints that remain.
    pub fn install(&self, snapshot: Snapshot) {
        let old = self.live.load();
        let live = live(snapshot, self.sidecar.as_ref(), Some(&old));
        self.jwks.track(live.snapshot.authn.remote_jwks());
        self.live.store(Arc::new(live));
        self.tokens.clear();
        self.decisions.clear();
    }
}

/// `snapshot` with a sidecar's own clusters, and its workload's telemetry
/// and SecurityPolicy.
fn live(snapshot: Snapshot, sidecar: Option<&Sidecar>, old: Option<&Live>) -> Live {
    let fixed = sidecar.map(Sidecar::clusters).unwrap_or_default();
    let mut live = Live::new(Arc::new(snapshot), &fixed, old);
    if let Some(s) = sidecar {
        let (ns, workload) = (&s.options.namespace, &s.options.workload);
        live.telemetry = live.snapshot.telemetry.workload(ns, workload);
        live.authn = live.snapshot.authn.for_workload(ns, workload);
        live.ratelimit = live.snapshot.ratelimit.for_workload(ns, workload);
        live.apischema = live.snapshot.apischema.for_workload(ns, workload);
    }
    live
}
