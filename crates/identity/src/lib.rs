//! Workload identity for the mesh: the certificate authority (`ca`),
//! SPIFFE IDs (`spiffe`), a workload's key and certificate
//! (`credentials`), the mutual-TLS configurations between sidecars
//! (`mesh_tls`), and the CA's gRPC service with the proxy's side of it
//! (`service`).

pub mod agent;
pub mod ca;
pub mod credentials;
pub mod mesh_tls;
pub mod service;
pub mod spiffe;

pub use ca::Authority;
pub use credentials::{new_key_and_csr, Credentials};
pub use mesh_tls::{check_peer, forwarded_cert, peer_id, MeshTls, ALPN_H2, ALPN_HTTP1, ALPN_TCP};
pub use spiffe::SpiffeId;

/// The trust domain when none is given: Istio's and Linkerd's default.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// Generated from `proto/identity.proto`.
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/strait.identity.v1.rs"));
}
