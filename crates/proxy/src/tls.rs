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

/// Why a TLS handshake failed, as a metric label: `not_tls` (plain text,
/// an HTTP request say), `too_large`, `truncated`, `unknown_server_name`,
/// `client_certificate`,
/// `malformed` or `handshake`.
pub fn handshake_error_reason(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => return "truncated",
        std::io::ErrorKind::NotFound => return "unknown_server_name",
        _ => {}
    }
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(e) => hello_error_reason(e),
        None => "io",
    }
}

pub fn hello_error_reason(e: &rustls::Error) -> &'static str {
    use rustls::InvalidMessage as M;
    match e {
        rustls::Error::InvalidMessage(M::InvalidContentType | M::UnknownProtocolVersion) => {
            "not_tls"
        }
        rustls::Error::InvalidMessage(M::HandshakePayloadTooLarge | M::MessageTooLarge) => {
            "too_large"
        }
        rustls::Error::InvalidMessage(_) => "malformed",
        rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_) => {
            "client_certificate"
        }
        _ => "handshake",
    }
}

/// The TLS side of one port: a server configuration per listener, picked
/// by the ClientHello's SNI before the handshake goes on, so that each
/// listener has its own certificate and its own client-certificate rule.
#[derive(Debug)]
pub struct PortTls {
    by_name: HostTable<Arc<ServerConfig>>,
    /// For clients that send no SNI: the first listener's configuration.
    default: Arc<ServerConfig>,
}

impl PortTls {
    /// `None`: no listener serves that name; the handshake is refused.
    pub fn config_for(&self, sni: Option<&str>) -> Option<Arc<ServerConfig>> {
        match sni {
            Some(name) => self.by_name.get(&name.to_ascii_lowercase()).cloned(),
            None => Some(self.default.clone()),
        }
    }
}

#[derive(Debug)]
struct Single(Arc<CertifiedKey>);

impl ResolvesServerCert for Single {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
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

fn listener_config(cert: &TlsCert) -> Result<Arc<ServerConfig>, String> {
    let key = Arc::new(certified(cert)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match &cert.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(pem) {
                let ca = ca.map_err(|e| format!("client CA bundle: {e}"))?;
                roots
                    .add(ca)
                    .map_err(|e| format!("client CA bundle: {e}"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("client CA bundle: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(Single(key)));
    // http/1.0 too: a client offering only it (curl --http1.0) would
    // otherwise be refused at the handshake; nginx accepts it.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS side of a port from its listeners' certificates.
pub fn port_tls(certs: &[TlsCert]) -> Result<Arc<PortTls>, String> {
    let mut by_name = HostTable::default();
    let mut default = None;
    for cert in certs {
        let config = listener_config(cert)?;
        default.get_or_insert_with(|| config.clone());
        // The first certificate for a hostname wins, as listeners are ordered.
        by_name.entry(cert.hostname.as_deref(), move || config);
    }
    let default = default.ok_or("no certificate")?;
    Ok(Arc::new(PortTls { by_name, default }))
}
