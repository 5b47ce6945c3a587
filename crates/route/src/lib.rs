//! Compiles a set of Gateway API resources into a [`Snapshot`]: per port,
//! per listener hostname, per route hostname, the ordered match tables with
//! the spec's precedence already resolved. Matching a request is a pure
//! function of the snapshot and the request; there is no I/O in this crate.

pub mod apischema;
pub mod attach;
pub mod authn;
mod backend;
mod backend_tls;
mod balance;
pub mod callers;
mod compile;
pub mod cors;
pub mod error_page;
pub mod ext_auth;
pub mod extension;
mod fault;
mod filter;
mod grpc;
mod hosts;
pub mod keyauth;
mod l4;
mod matcher;
mod mesh;
pub mod oidc;
mod policy;
pub mod ratelimit;
pub mod redis;
mod retry;
mod rules;
pub mod security;
pub mod session;
mod snapshot;
pub mod status;
pub mod telemetry;
mod tls;
mod traffic;
pub mod transform;

pub use backend::{
    BackendTarget, Cluster, UpstreamProtocol, WeightedBackend, MESHED_LABEL,
    SERVICE_ACCOUNT_ANNOTATION,
};
pub use backend_tls::UpstreamTls;
pub use balance::{
    Breaker, HashKey, LbKind, Outlier, Traffic, DEFAULT_BASE_EJECTION,
    DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_MAX_EJECTION_PERCENT, DEFAULT_MAX_PENDING,
};
pub use compile::{compile, CompileOptions};
pub use extension::{Direct, Extensions};
pub use fault::Fault;
pub use filter::{HeaderOps, Mirror, PathModifier, Redirect, Rewrite};
pub use hosts::{normalize_host, HostTable};
pub use l4::PortProtocol;
pub use matcher::{cookie, cookies, PathMatch, RequestView, RouteMatch};
pub use mesh::{MeshLookup, MeshTable, CLUSTER_DOMAIN};
pub use retry::{
    BudgetSettings, RetryPolicy, BUDGET_MIN_PER_SECOND, BUDGET_RATIO, BUDGET_WINDOW,
    DEFAULT_BACKOFF, MAX_BACKOFF,
};
pub use snapshot::{
    Extras, ListenKey, ListenerRoutes, Matched, PortTable, Rule, Snapshot, Timeouts,
};
pub use status::{Condition, GatewayStatus, ListenerStatus, ParentStatus, RouteStatus};
pub use tls::{check_pem, TlsCert};
