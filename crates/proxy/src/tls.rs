//! TLS termination: a rustls server configuration per HTTPS port, with the
//! certificate chosen by SNI (exact name, then the longest wildcard, then
//! the listener without a hostname). TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`, ring as the one crypto provider.

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::Duration;
use strait_route::{HostTable, TlsCert};

/// Time a client has to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct BySni {
    certs: HostTable<Arc<CertifiedKey>>,
    /// For clients that send no SNI: the first certificate configured.
    fallback: Arc<CertifiedKey>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match hello.server_name() {
            Some(name) => self.certs.get(&name.to_ascii_lowercase()).cloned(),
            None => Some(self.fallback.clone()),
        }
    }
}

fn certified(cert: &TlsCert) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(&cert.chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: tls.crt: {e}", cert.secret))?;
    let key = PrivateKeyDer::from_pem_slice(&cert.key_pem)
        .map_err(|e| format!("{}: tls.key: {e}", cert.secret))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("{}: tls.key: {e}", cert.secret))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("{}: tls.key does not belong to tls.crt: {e}", cert.secret))?;
    Ok(certified)
}

/// The server configuration for a port's certificates.
pub fn server_config(certs: &[TlsCert]) -> Result<Arc<ServerConfig>, String> {
    let mut table = HostTable::default();
    let mut fallback = None;
    for cert in certs {
        let key = Arc::new(certified(cert)?);
        fallback.get_or_insert_with(|| key.clone());
        // The first certificate for a hostname wins, as listeners are ordered.
        table.entry(cert.hostname.as_deref(), move || key);
    }
    let fallback = fallback.ok_or("no certificate")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni {
            certs: table,
            fallback,
        }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
