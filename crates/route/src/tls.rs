//! Listener certificates: `certificateRefs` resolved to `kubernetes.io/tls`
//! Secrets, their PEM checked for shape. Turning them into a TLS server
//! configuration (which needs a crypto provider) is the data plane's job.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use strait_config::gateway::{CaCertificateRef, GatewayTlsConfig, Listener, ReferenceGrantSpec};
use strait_config::meta::SecretObjectReference;
use strait_config::{Document, Resource};

/// One certificate a TLS port can present: for the listener's hostname
/// (`None`: any name), as PEM.
#[derive(Debug, Clone)]
pub struct TlsCert {
    pub hostname: Option<String>,
    /// `namespace/name` of the Secret, for messages.
    pub secret: String,
    pub chain_pem: Arc<[u8]>,
    pub key_pem: Arc<[u8]>,
    /// With `frontendValidation`: the CA certificates (PEM) client
    /// certificates must chain to; clients without one are refused.
    pub client_ca_pem: Option<Arc<[u8]>>,
}

/// The certificates of an HTTPS listener, or why it cannot serve.
pub(crate) fn listener_certs(
    docs: &[Document],
    grants: &[(&str, &ReferenceGrantSpec)],
    gateway_ns: &str,
    listener: &Listener,
    now: std::time::SystemTime,
) -> Result<Vec<TlsCert>, (&'static str, String)> {
    let tls = terminating_tls(listener)?;
    let client_ca_pem = client_ca(docs, grants, gateway_ns, tls)?;
    let mut out = Vec::new();
    for r in &tls.certificate_refs {
        let ns = secret_namespace(grants, gateway_ns, r)?;
        let (chain, key) = secret_pem(docs, ns, r, now)?;
        out.push(TlsCert {
            hostname: listener.hostname.clone(),
            secret: format!("{ns}/{}", r.name),
            chain_pem: chain.into(),
            key_pem: key.into(),
            client_ca_pem: client_ca_pem.clone(),
        });
    }
    Ok(out)
}

/// An HTTPS listener's `tls`: it must terminate TLS and name certificates.
fn terminating_tls(listener: &Listener) -> Result<&GatewayTlsConfig, (&'static str, String)> {
    let tls = listener.tls.as_ref().ok_or((
        "InvalidCertificateRef",
        "an HTTPS listener needs tls.certificateRefs".to_string(),
    ))?;
    if tls.mode.as_deref().unwrap_or("Terminate") != "Terminate" {
        return Err((
            "UnsupportedValue",
            format!(
                "tls.mode {} is not supported on HTTPS listeners yet",
                tls.mode.as_deref().unwrap_or("")
            ),
        ));
    }
    if tls.certificate_refs.is_empty() {
        return Err((
            "InvalidCertificateRef",
            "tls.certificateRefs is empty".into(),
        ));
    }
    Ok(tls)
}

/// With `frontendValidation`: the CA bundle client certificates must
/// chain to.
fn client_ca(
    docs: &[Document],
    grants: &[(&str, &ReferenceGrantSpec)],
    gateway_ns: &str,
    tls: &GatewayTlsConfig,
) -> Result<Option<Arc<[u8]>>, (&'static str, String)> {
    let Some(v) = &tls.frontend_validation else {
        return Ok(None);
    };
    let bundle = ca_bundle(
        docs,
        gateway_ns,
        &v.ca_certificate_refs,
        "frontendValidation.caCertificateRefs",
        |kind, ns, name| {
            ns == gateway_ns
                || crate::compile::granted(grants, "Gateway", gateway_ns, kind, ns, name)
        },
    )?;
    Ok(Some(bundle))
}

/// The namespace of the Secret a certificateRef names, when it names a
/// Secret the Gateway may use.
fn secret_namespace<'r>(
    grants: &[(&str, &ReferenceGrantSpec)],
    gateway_ns: &'r str,
    r: &'r SecretObjectReference,
) -> Result<&'r str, (&'static str, String)> {
    let ns = r.namespace.as_deref().unwrap_or(gateway_ns);
    if !r.group.as_deref().unwrap_or("").is_empty()
        || r.kind.as_deref().unwrap_or("Secret") != "Secret"
    {
        return Err((
            "InvalidCertificateRef",
            format!("certificateRef {} is not a Secret", r.name),
        ));
    }
    if ns != gateway_ns
        && !crate::compile::granted(grants, "Gateway", gateway_ns, "Secret", ns, &r.name)
    {
        return Err((
            "RefNotPermitted",
            format!(
                "no ReferenceGrant in {ns} lets Gateways from {gateway_ns} use Secret {}",
                r.name
            ),
        ));
    }
    Ok(ns)
}

/// A certificate chain and its key, both PEM.
type PemPair = (Vec<u8>, Vec<u8>);

/// The certificate chain and key of Secret `ns/r.name`, checked with
/// [`check_pem`].
fn secret_pem(
    docs: &[Document],
    ns: &str,
    r: &SecretObjectReference,
    now: std::time::SystemTime,
) -> Result<PemPair, (&'static str, String)> {
    let (secret, source) = docs
        .iter()
        .find_map(|d| match &*d.resource {
            Resource::Secret(s) if s.metadata.name == r.name && s.metadata.namespace() == ns => {
                Some((s, &d.source))
            }
            _ => None,
        })
        .ok_or((
            "InvalidCertificateRef",
            format!("Secret {ns}/{} not found", r.name),
        ))?;
    let (chain, key) = secret.body.tls_pair().map_err(|e| {
        (
            "InvalidCertificateRef",
            format!("Secret {ns}/{} ({source}) {e}", r.name),
        )
    })?;
    check_pem(&chain, &key, now).map_err(|e| {
        (
            "InvalidCertificateRef",
            format!("Secret {ns}/{} ({source}): {e}", r.name),
        )
    })?;
    Ok((chain, key))
}

/// A CA bundle from `caCertificateRefs`: ConfigMaps (or Secrets) with a
/// `ca.crt` key, concatenated. `permitted(kind, namespace, name)` says
/// whether the owner may use an object of another namespace.
pub(crate) fn ca_bundle(
    docs: &[Document],
    owner_ns: &str,
    refs: &[CaCertificateRef],
    field: &str,
    permitted: impl Fn(&str, &str, &str) -> bool,
) -> Result<Arc<[u8]>, (&'static str, String)> {
    if refs.is_empty() {
        return Err(("InvalidCACertificateRef", format!("{field} is empty")));
    }
    let mut bundle = Vec::new();
    for r in refs {
        let ns = r.namespace.as_deref().unwrap_or(owner_ns);
        let kind = r.kind.as_deref().unwrap_or("ConfigMap");
        if !r.group.as_deref().unwrap_or("").is_empty() || !matches!(kind, "ConfigMap" | "Secret") {
            return Err((
                "InvalidCACertificateRef",
                format!("caCertificateRef {} is not a ConfigMap or Secret", r.name),
            ));
        }
        if !permitted(kind, ns, &r.name) {
            return Err((
                "RefNotPermitted",
                format!("{kind} {ns}/{} may not be used from {owner_ns}", r.name),
            ));
        }
        let pem = docs.iter().find_map(|d| match &*d.resource {
            Resource::ConfigMap(c)
                if kind == "ConfigMap"
                    && c.metadata.name == r.name
                    && c.metadata.namespace() == ns =>
            {
                c.body.data.get("ca.crt").map(|s| s.as_bytes().to_vec())
            }
            Resource::Secret(s)
                if kind == "Secret"
                    && s.metadata.name == r.name
                    && s.metadata.namespace() == ns =>
            {
                use base64::Engine;
                s.body.data.get("ca.crt").and_then(|b| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b.trim())
                        .ok()
                })
            }
            _ => None,
        });
        let pem = pem.ok_or((
            "InvalidCACertificateRef",
            format!("{kind} {ns}/{} with a ca.crt not found", r.name),
        ))?;
        let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
        if !certs.is_ok_and(|c| !c.is_empty()) {
            return Err((
                "InvalidCACertificateRef",
                format!("{kind} {ns}/{}: ca.crt holds no PEM certificate", r.name),
            ));
        }
        bundle.extend_from_slice(&pem);
        bundle.push(b'\n');
    }
    Ok(bundle.into())
}

/// A certificate chain and a private key (PKCS#8, PKCS#1 or SEC1) in PEM:
/// both parse, the key belongs to the first certificate, and every
/// certificate of the chain is valid at `now`. Serving an expired
/// certificate only moves the error to every client, where it is harder
/// to trace.
pub fn check_pem(chain: &[u8], key: &[u8], now: std::time::SystemTime) -> Result<(), String> {
    let certs = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.crt is not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for (i, der) in certs.iter().enumerate() {
        let which = if i == 0 {
            "the certificate".to_string()
        } else {
            format!("chain certificate {}", i + 1)
        };
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("tls.crt: {which} is not X.509: {e}"))?;
        let validity = cert.validity();
        if validity.not_after.timestamp() < now {
            return Err(format!(
                "tls.crt: {which} expired on {}",
                validity.not_after
            ));
        }
        if validity.not_before.timestamp() > now {
            return Err(format!(
                "tls.crt: {which} is not valid before {}",
                validity.not_before
            ));
        }
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| format!("tls.key is not a PEM private key: {e}"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("tls.key: {e}"))?;
    rustls::sign::CertifiedKey::new(certs, signing)
        .keys_match()
        .map_err(|_| "tls.key does not belong to the certificate in tls.crt".to_string())
}
