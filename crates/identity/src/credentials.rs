//! A workload's own key and certificate: the key is made locally and
//! never leaves the proxy; only a CSR for the workload's SPIFFE ID goes to
//! the CA.

use crate::spiffe::SpiffeId;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A new P-256 key and a CSR (DER) asking for `id` as the only URI SAN.
pub fn new_key_and_csr(id: &SpiffeId) -> Result<(KeyPair, Vec<u8>), String> {
    let key = KeyPair::generate().map_err(|e| format!("generating a key: {e}"))?;
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = vec![SanType::URI(
        id.to_string()
            .try_into()
            .map_err(|e| format!("{id}: {e}"))?,
    )];
    let csr = p
        .serialize_request(&key)
        .map_err(|e| format!("making the CSR: {e}"))?;
    Ok((key, csr.der().to_vec()))
}

/// A certificate chain with its key, checked to be for `id`.
pub struct Credentials {
    pub id: SpiffeId,
    pub chain: Vec<CertificateDer<'static>>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    key: Arc<CertifiedKey>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(
        id: &SpiffeId,
        chain: Vec<CertificateDer<'static>>,
        key: &KeyPair,
    ) -> Result<Self, String> {
        let leaf = chain.first().ok_or("empty certificate chain")?;
        let got = SpiffeId::of_certificate(leaf)?;
        if &got != id {
            return Err(format!("the certificate is for {got}, not {id}"));
        }
        let (_, cert) =
            x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("certificate: {e}"))?;
        let at = |t: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
        let not_before = at(cert.validity().not_before.timestamp());
        let not_after = at(cert.validity().not_after.timestamp());
        let key_der = key.serialize_der();
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.clone()));
        let signer = rustls::crypto::ring::sign::any_supported_type(&private)
            .map_err(|e| format!("key: {e}"))?;
        Ok(Credentials {
            id: id.clone(),
            key: Arc::new(CertifiedKey::new(chain.clone(), signer)),
            chain,
            not_before,
            not_after,
            key_der,
        })
    }

    /// The chain and key as rustls serves them.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.key.clone()
    }

    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Time left before it expires (zero once it has).
    pub fn remaining(&self) -> Duration {
        self.not_after
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    }

    /// When to renew: at 70 % of the lifetime, give or take 5 % so that a
    /// fleet started together does not renew together.
    pub fn renew_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        let share = 0.65 + 0.10 * fastrand::f64();
        self.not_before + life.mul_f64(share)
    }
}
