//! strait's data plane. Connections are accepted by [`listeners`] (TLS by
//! [`tls`], sidecar capture by [`capture`] and [`mtls`]); each HTTP request
//! goes down the phases of [`request`] — select, policy, filters, backend,
//! forward, respond, telemetry — over connections from [`upstream`]; byte
//! streams go through [`l4`] and [`mesh`].
//!
//! Configuration is read lock-free from an `ArcSwap<Snapshot>`; a request
//! keeps the snapshot it started with until it ends.

pub mod access_log;
pub mod admin;
pub mod answer;
pub mod authz;
mod beside;
pub mod capture;
mod cause;
pub mod client_body;
pub mod conn_end;
pub mod conn_limit;
mod conn_timer;
pub mod ctx;
pub mod decisions;
pub mod dial;
pub mod ext_authz;
pub mod fetch;
pub mod h1;
mod headers;
pub mod jwks;
pub mod l4;
pub mod limits;
pub mod linger;
pub mod listeners;
pub mod live;
pub mod mesh;
pub mod metrics;
pub mod metrics_requests;
pub mod metrics_tcp;
pub mod mtls;
pub mod oidc;
pub mod peer;
pub mod process;
pub mod ratelimit;
pub mod reload;
pub mod request;
pub mod retry;
mod run;
pub mod send_watch;
mod shared;
pub mod sidecar;
pub mod splice;
pub mod tee;
pub mod tls;
pub mod token_cache;
pub mod traces;
pub mod upgrade;
pub mod upstream;
mod wait;
mod ws_frames;

pub use run::{run, GatewayOptions};
pub use shared::Shared;
