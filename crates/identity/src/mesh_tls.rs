//! Mutual TLS between sidecars: TLS 1.3 only, each side presenting its
//! workload certificate and checking the other's chain against the trust
//! bundle and its SPIFFE ID against the trust domain. Which identity the
//! server must have is checked after the handshake by the caller
//! ([`check_peer`]), so one client configuration serves every destination
//! and a resumed session is checked too. Meshed traffic says so in ALPN
//! ([`ALPN_H2`], [`ALPN_HTTP1`]), as Istio's `istio-*` tokens do.

use crate::credentials::Credentials;
use crate::spiffe::SpiffeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

/// HTTP/2 between sidecars.
pub const ALPN_H2: &[u8] = b"strait-h2";
/// HTTP/1.1 between sidecars (upgrades such as WebSocket).
pub const ALPN_HTTP1: &[u8] = b"strait-http/1.1";
/// Opaque bytes between sidecars (TCP Services, `CONNECT` tunnels).
pub const ALPN_TCP: &[u8] = b"strait-tcp";

/// The TLS configurations of one workload certificate and trust bundle;
/// rebuilt whole when either changes (connections made keep theirs).
#[derive(Debug)]
pub struct MeshTls {
    pub id: SpiffeId,
    /// Counts the certificates this process has had: connections made
    /// with an older one are not reused, so a renewal (and a root
    /// rotation) reaches every peer within one request.
    pub generation: u64,
    pub server: Arc<ServerConfig>,
    pub client_h2: Arc<ClientConfig>,
    pub client_http1: Arc<ClientConfig>,
    pub client_tcp: Arc<ClientConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl MeshTls {
    pub fn new(creds: &Credentials, bundle: &[CertificateDer<'static>]) -> Result<Self, String> {
        Self::with_generation(creds, bundle, 0)
    }

    pub fn with_generation(
        creds: &Credentials,
        bundle: &[CertificateDer<'static>],
        generation: u64,
    ) -> Result<Self, String> {
        let roots = Arc::new(root_store(bundle)?);
        let provider = provider();
        let td = creds.id.trust_domain.clone();
        let webpki = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("client verifier: {e}"))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(Arc::new(ClientInTrustDomain {
                inner: webpki,
                trust_domain: td.clone(),
            }))
            .with_single_cert(creds.chain.clone(), creds.private_key())
            .map_err(|e| format!("server certificate: {e}"))?;
        server.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec(), ALPN_TCP.to_vec()];
        let verifier = Arc::new(ServerInTrustDomain {
            roots,
            algs: provider.signature_verification_algorithms,
            trust_domain: td,
        });
        let client = |alpn: &[u8]| -> Result<Arc<ClientConfig>, String> {
            let mut c = client_builder(&provider, verifier.clone())?
                .with_client_auth_cert(creds.chain.clone(), creds.private_key())
                .map_err(|e| format!("client certificate: {e}"))?;
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(c))
        };
        Ok(MeshTls {
            id: creds.id.clone(),
            generation,
            server: Arc::new(server),
            client_h2: client(ALPN_H2)?,
            client_http1: client(ALPN_HTTP1)?,
            client_tcp: client(ALPN_TCP)?,
        })
    }
}

type ClientBuilder = rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>;

fn client_builder(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<ServerInTrustDomain>,
) -> Result<ClientBuilder, String> {
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier))
}

/// A client with no certificate of its own that checks servers as the
/// mesh does (the proxy calling the CA before it has a certificate).
pub fn verifying_client(
    bundle: &[CertificateDer<'static>],
    trust_domain: &str,
) -> Result<ClientConfig, String> {
    let provider = provider();
    let verifier = Arc::new(ServerInTrustDomain {
        roots: Arc::new(root_store(bundle)?),
        algs: provider.signature_verification_algorithms,
        trust_domain: trust_domain.to_string(),
    });
    Ok(client_builder(&provider, verifier)?.with_no_client_auth())
}

fn root_store(bundle: &[CertificateDer<'static>]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for root in bundle {
        roots
            .add(root.clone())
            .map_err(|e| format!("trust bundle: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the trust bundle is empty".into());
    }
    Ok(roots)
}

/// The SPIFFE ID of the peer's certificate, if it sent one.
pub fn peer_id(certs: Option<&[CertificateDer<'_>]>) -> Option<SpiffeId> {
    SpiffeId::of_certificate(certs?.first()?).ok()
}

/// A verified client certificate as Envoy's `x-forwarded-client-cert`
/// describes it: `Hash` (SHA-256 of its DER, hex), `Subject` (quoted),
/// and each `URI` and `DNS` name of its subjectAltName.
pub fn forwarded_cert(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    use sha2::Digest;
    use x509_parser::extensions::GeneralName;
    let der = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let hash: String = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let subject = cert
        .subject()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let mut out = format!("Hash={hash};Subject=\"{subject}\"");
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => out.push_str(&format!(";URI={u}")),
                GeneralName::DNSName(d) => out.push_str(&format!(";DNS={d}")),
                _ => {}
            }
        }
    }
    Some(out)
}

/// After a handshake with a server: its SPIFFE ID, which must be one of
/// `expected` (any, when empty: the destination did not say).
pub fn check_peer(
    certs: Option<&[CertificateDer<'_>]>,
    expected: &[SpiffeId],
) -> Result<SpiffeId, String> {
    let id = peer_id(certs).ok_or("the server presented no SPIFFE ID")?;
    if expected.is_empty() || expected.contains(&id) {
        Ok(id)
    } else {
        let want: Vec<String> = expected.iter().map(ToString::to_string).collect();
        Err(format!(
            "the server is {id}, expected {}",
            want.join(" or ")
        ))
    }
}

fn in_trust_domain(der: &CertificateDer<'_>, trust_domain: &str) -> Result<(), rustls::Error> {
    let id = SpiffeId::of_certificate(der).map_err(rustls::Error::General)?;
    if id.trust_domain == trust_domain {
        Ok(())
    } else {
        Err(rustls::Error::General(format!(
            "{id} is not in trust domain {trust_domain}"
        )))
    }
}

/// A client certificate: the chain as webpki checks it, then a SPIFFE ID
/// of our trust domain.
#[derive(Debug)]
struct ClientInTrustDomain {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl ClientCertVerifier for ClientInTrustDomain {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        in_trust_domain(end_entity, &self.trust_domain)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A server certificate: chain and validity as webpki checks them, no DNS
/// name (workload certificates have none), a SPIFFE ID of our trust domain.
#[derive(Debug)]
struct ServerInTrustDomain {
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
    trust_domain: String,
}

impl ServerCertVerifier for ServerInTrustDomain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        in_trust_domain(end_entity, &self.trust_domain)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}
