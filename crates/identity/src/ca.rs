//! The mesh certificate authority: a root it made itself, or a CA the
//! user supplies (an intermediate from cert-manager, say), signing short
//! lived workload certificates for the identity the caller proved and for
//! no other.

use crate::spiffe::SpiffeId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a generated root is valid.
pub const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Workload certificates start this long in the past (a tenth of their
/// lifetime at most), for clocks behind ours.
pub const BACKDATE: Duration = Duration::from_secs(300);

pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// Sent after each leaf: the signing certificate when it is an
    /// intermediate (a root is in the bundle instead).
    chain: Vec<CertificateDer<'static>>,
    /// Every root trusted: this CA's root, and during a rotation the other.
    bundle: Vec<CertificateDer<'static>>,
    pub trust_domain: String,
}

/// Time since the Unix epoch (certificate times are built from it).
fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A CA certificate's parameters: P-256 (the key's), no name constraints
/// (webpki refuses URI name constraints outright).
fn ca_params(trust_domain: &str, lifetime: Duration) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, "strait");
    p.distinguished_name
        .push(DnType::CommonName, format!("strait mesh CA {trust_domain}"));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    p.not_before = epoch + unix_now().saturating_sub(BACKDATE);
    p.not_after = epoch + unix_now() + lifetime;
    p.serial_number = Some(random_serial());
    p
}

fn random_serial() -> SerialNumber {
    let mut bytes: Vec<u8> = (0..16).map(|_| fastrand::u8(..)).collect();
    // Positive, and never shortened to fewer bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from(bytes)
}

/// A new root's certificate and key, PEM.
pub fn new_root(trust_domain: &str) -> Result<(String, String), String> {
    let key = KeyPair::generate().map_err(|e| format!("generating the CA key: {e}"))?;
    let cert = ca_params(trust_domain, ROOT_LIFETIME)
        .self_signed(&key)
        .map_err(|e| format!("signing the CA certificate: {e}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

pub fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no certificate"));
    }
    Ok(certs)
}

fn self_signed(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .is_ok_and(|(_, c)| c.tbs_certificate.subject == c.tbs_certificate.issuer)
}

impl Authority {
    /// A CA from its certificate (first in `cert_pem`; any more are the
    /// chain up to, not including, a root) and key. A self-signed one is
    /// its own root; an intermediate needs the `roots` it chains to.
    pub fn from_pem(
        trust_domain: &str,
        cert_pem: &str,
        key_pem: &str,
        roots: Option<&str>,
    ) -> Result<Self, String> {
        let chain = certs(cert_pem.as_bytes(), "CA certificate")?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| format!("CA key: {e}"))?;
        if rcgen::PublicKeyData::der_bytes(&key) != public_key(&chain[0])?.as_slice() {
            return Err("the CA key does not belong to the CA certificate".into());
        }
        let issuer =
            Issuer::from_ca_cert_der(&chain[0], key).map_err(|e| format!("CA certificate: {e}"))?;
        let (chain, bundle) = if self_signed(&chain[0]) {
            (Vec::new(), chain)
        } else {
            let roots = roots
                .ok_or("the CA certificate is an intermediate: give the roots it chains to")?;
            (chain, certs(roots.as_bytes(), "CA roots")?)
        };
        Ok(Authority {
            issuer,
            chain,
            bundle,
            trust_domain: trust_domain.to_string(),
        })
    }

    /// The CA kept in `dir` (`ca.crt`, `ca.key`), made there first if
    /// there is none; the key file is written with mode 0600 and its
    /// contents are never logged.
    pub fn open_or_create(dir: &Path, trust_domain: &str) -> Result<Self, String> {
        let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        if !cert_path.exists() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let (cert, key) = new_root(trust_domain)?;
            write_private(&key_path, key.as_bytes())?;
            std::fs::write(&cert_path, cert.as_bytes())
                .map_err(|e| format!("{}: {e}", cert_path.display()))?;
            tracing::info!(path = %cert_path.display(), "generated a new mesh root CA");
        }
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        Self::from_pem(trust_domain, &read(&cert_path)?, &read(&key_path)?, None)
    }

    /// Also trusts `roots` (PEM): the other root during a rotation.
    pub fn trust_also(&mut self, roots: &str) -> Result<(), String> {
        for root in certs(roots.as_bytes(), "extra roots")? {
            if !self.bundle.contains(&root) {
                self.bundle.push(root);
            }
        }
        Ok(())
    }

    /// Every root a workload should trust now.
    pub fn trust_bundle(&self) -> &[CertificateDer<'static>] {
        &self.bundle
    }

    /// The trust bundle as PEM, to hand to proxies.
    pub fn trust_bundle_pem(&self) -> String {
        self.bundle.iter().map(|c| pem("CERTIFICATE", c)).collect()
    }

    /// Signs `csr` (DER) for `caller`, valid for `ttl`. The CSR must ask
    /// for exactly `caller`'s SPIFFE ID and nothing else; everything but
    /// its public key is then set here, never taken from the request.
    pub fn sign(
        &self,
        csr: &[u8],
        caller: &SpiffeId,
        ttl: Duration,
    ) -> Result<Vec<CertificateDer<'static>>, String> {
        let mut req = CertificateSigningRequestParams::from_der(
            &CertificateSigningRequestDer::from(csr.to_vec()),
        )
        .map_err(|e| format!("bad CSR: {e}"))?;
        let asked: Vec<String> = req
            .params
            .subject_alt_names
            .iter()
            .map(|san| match san {
                SanType::URI(u) => u.as_str().to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        if caller.trust_domain != self.trust_domain {
            return Err(format!(
                "{caller} is not in trust domain {}",
                self.trust_domain
            ));
        }
        if asked != [caller.to_string()] {
            return Err(format!(
                "the CSR asks for {asked:?}, but the caller is {caller}"
            ));
        }
        let uri = caller
            .to_string()
            .try_into()
            .map_err(|e| format!("{caller}: {e}"))?;
        let p = &mut req.params;
        p.subject_alt_names = vec![SanType::URI(uri)];
        p.distinguished_name = DistinguishedName::new();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        leaf_validity(p, ttl);
        let leaf = req
            .signed_by(&self.issuer)
            .map_err(|e| format!("signing: {e}"))?;
        let mut out = vec![leaf.der().clone()];
        out.extend(self.chain.iter().cloned());
        Ok(out)
    }
}

impl Authority {
    /// A serving certificate (chain) for DNS `names`, and its new key in
    /// PEM: for the sidecar injector, which the API server checks by DNS
    /// name, not by SPIFFE ID.
    pub fn sign_dns(
        &self,
        names: &[String],
        ttl: Duration,
    ) -> Result<(Vec<CertificateDer<'static>>, String), String> {
        let key = KeyPair::generate().map_err(|e| format!("generating a key: {e}"))?;
        let mut p =
            CertificateParams::new(names.to_vec()).map_err(|e| format!("{names:?}: {e}"))?;
        p.distinguished_name = DistinguishedName::new();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_validity(&mut p, ttl);
        let leaf = p
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("signing: {e}"))?;
        let mut out = vec![leaf.der().clone()];
        out.extend(self.chain.iter().cloned());
        Ok((out, key.serialize_pem()))
    }
}

/// A leaf's lifetime (backdated a little, for clocks behind ours), a
/// fresh serial, and the issuer's key identifier.
fn leaf_validity(p: &mut CertificateParams, ttl: Duration) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    p.not_before = epoch + unix_now().saturating_sub(BACKDATE.min(ttl / 10));
    p.not_after = epoch + unix_now() + ttl;
    p.serial_number = Some(random_serial());
    p.use_authority_key_identifier_extension = true;
}

fn public_key(cert: &CertificateDer<'_>) -> Result<Vec<u8>, String> {
    let (_, c) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| format!("CA certificate: {e}"))?;
    Ok(c.tbs_certificate
        .subject_pki
        .subject_public_key
        .data
        .to_vec())
}

/// PEM text of one DER object.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    use std::fmt::Write;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        let _ = writeln!(out, "{}", String::from_utf8_lossy(line));
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(contents)
        .map_err(|e| format!("{}: {e}", path.display()))
}
