//! Mutual TLS between sidecars, the data plane's side: the outbound
//! handshake to a meshed endpoint (checking the server proves the
//! destination's identity), and on the inbound listener telling meshed
//! TLS (our ALPN) from other TLS and from plaintext before anything is
//! read, so each can be accepted, passed through or refused by mode.

use crate::dial::CONNECT_TIMEOUT;
use crate::tee::BoxError;
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::time::Duration;
use strait_identity::{check_peer, MeshTls, SpiffeId, ALPN_H2, ALPN_HTTP1, ALPN_TCP};
use strait_route::Cluster;
use tokio::net::TcpStream;

/// Pool keys' TLS ids for connections to sidecars count down from here,
/// one per certificate this proxy has had ([`pool_id`]).
const MESH_POOL_IDS: u64 = u64::MAX;
/// Far below any BackendTLSPolicy id and far above any generation.
const MESH_POOL_FLOOR: u64 = u64::MAX / 2;

/// The pool key's TLS id for connections made with `mesh`.
pub fn pool_id(mesh: &MeshTls) -> u64 {
    MESH_POOL_IDS - mesh.generation
}

/// Whether a pool key's TLS id is a sidecar connection's.
pub fn is_mesh_id(id: u64) -> bool {
    id > MESH_POOL_FLOOR
}
/// The server name sent to sidecars: it routes nothing (the SPIFFE ID is
/// what is checked) and says nothing about the destination on the wire.
const MESH_SERVER_NAME: &str = "mesh.strait.internal";
/// Largest ClientHello looked at when classifying an inbound connection.
const MAX_PEEK: usize = 16 * 1024;

/// What a connection to a sidecar carries, said in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carries {
    H2,
    Http1,
    Tcp,
}

/// The mutual-TLS handshake to a sidecar, then the check that it is one
/// of the identities the destination runs as.
pub async fn connect(
    endpoint: SocketAddr,
    mesh: &MeshTls,
    cluster: &Cluster,
    stream: TcpStream,
    carries: Carries,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, BoxError> {
    let config = match carries {
        Carries::H2 => mesh.client_h2.clone(),
        Carries::Http1 => mesh.client_http1.clone(),
        Carries::Tcp => mesh.client_tcp.clone(),
    };
    let name = ServerName::try_from(MESH_SERVER_NAME).map_err(|e| e.to_string())?;
    let handshake = tokio_rustls::TlsConnector::from(config).connect(name, stream);
    let tls = match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(format!("mTLS to {endpoint}: {e}").into()),
        Err(_) => return Err(format!("mTLS handshake with {endpoint} timed out").into()),
    };
    let expected: Vec<SpiffeId> = cluster
        .peer_accounts
        .iter()
        .map(|(ns, sa)| SpiffeId::new(&mesh.id.trust_domain, ns, sa))
        .collect();
    check_peer(tls.get_ref().1.peer_certificates(), &expected)
        .map_err(|e| format!("mTLS to {endpoint}: {e}"))?;
    Ok(tls)
}

/// How a connection to the inbound listener begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// TLS offering a strait ALPN: another sidecar.
    Mesh,
    /// TLS without it: the app's own TLS, or a client outside the mesh.
    OtherTls,
    /// Anything else, or nothing within the detection time.
    Plaintext,
}

impl Arrival {
    pub fn label(self) -> &'static str {
        match self {
            Arrival::Mesh => "mtls",
            Arrival::OtherTls => "tls",
            Arrival::Plaintext => "plaintext",
        }
    }
}

/// Peeks (never reads) at the first bytes, and at a whole ClientHello when
/// they are TLS, until the kind is known or `timeout`.
pub async fn classify(stream: &TcpStream, timeout: Duration) -> Arrival {
    let detect = async {
        let mut buf = vec![0u8; MAX_PEEK];
        loop {
            let n = match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return Arrival::Plaintext,
                Ok(n) => n,
            };
            // A TLS handshake record.
            if buf[0] != 0x16 {
                return Arrival::Plaintext;
            }
            match client_hello_alpn(&buf[..n]) {
                Some(Some(mesh)) => {
                    return if mesh {
                        Arrival::Mesh
                    } else {
                        Arrival::OtherTls
                    }
                }
                Some(None) if n < MAX_PEEK => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                _ => return Arrival::OtherTls,
            }
        }
    };
    tokio::time::timeout(timeout, detect)
        .await
        .unwrap_or(Arrival::Plaintext)
}

/// Whether a ClientHello offers a strait ALPN: `Some(None)` while more
/// bytes are needed, `None` when the bytes are not a ClientHello.
fn client_hello_alpn(head: &[u8]) -> Option<Option<bool>> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = head;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => {
            let mesh = accepted.client_hello().alpn().is_some_and(|mut offered| {
                offered.any(|p| p == ALPN_H2 || p == ALPN_HTTP1 || p == ALPN_TCP)
            });
            Some(Some(mesh))
        }
        Ok(None) => Some(None),
        Err(_) => None,
    }
}
