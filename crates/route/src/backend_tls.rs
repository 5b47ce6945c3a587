//! `BackendTLSPolicy`: the gateway speaks TLS to a Service's endpoints,
//! sending the policy's hostname as SNI and verifying the certificate
//! against the policy's CA bundle and names. The rustls client
//! configuration is built here, at compile time, so the data plane only
//! dials. A policy that cannot be honoured makes its Service an invalid
//! backend (500), never a plaintext one.

use crate::status::{Condition, ParentStatus, RouteStatus};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use strait_config::backendtls::BackendTlsPolicySpec;
use strait_config::{Document, Object, Problem, Resource};

/// How to dial one Service port with TLS.
#[derive(Debug)]
pub struct UpstreamTls {
    /// `namespace/name` of the policy, for messages.
    pub policy: String,
    pub server_name: ServerName<'static>,
    pub config: Arc<ClientConfig>,
    /// Equal for equal policies: pooled connections are keyed by it, so a
    /// reload that changes nothing keeps them, and one that changes the
    /// policy never reuses a connection verified under the old one.
    pub id: u64,
}

type Refusal = (&'static str, String);

/// The policy for Service `ns/name`, port `port_name`, if one targets it:
/// one naming the port wins over one for the whole Service, then the
/// oldest, then by name.
pub(crate) fn for_service(
    (docs, policies): (&[Document], &[&Document]),
    ns: &str,
    name: &str,
    port_name: Option<&str>,
    h2: bool,
) -> Option<Result<Arc<UpstreamTls>, String>> {
    let policies = policies.iter().filter_map(|d| match &*d.resource {
        Resource::BackendTlsPolicy(p) => Some(p),
        _ => None,
    });
    let policy = crate::policy::select(policies, |s| &s.target_refs, ns, name, port_name)?;
    Some(
        upstream_tls(docs, policy, h2)
            .map(Arc::new)
            .map_err(|(_, msg)| msg),
    )
}

fn upstream_tls(
    docs: &[Document],
    policy: &Object<BackendTlsPolicySpec>,
    h2: bool,
) -> Result<UpstreamTls, Refusal> {
    let ns = policy.metadata.namespace();
    let label = format!("BackendTLSPolicy {ns}/{}", policy.metadata.name);
    let v = &policy.spec.validation;
    let server_name = ServerName::try_from(v.hostname.clone())
        .ok()
        .filter(|_| !v.hostname.contains('*'))
        .ok_or_else(|| {
            (
                "Invalid",
                format!(
                    "{label}: validation.hostname {:?} is not a DNS name",
                    v.hostname
                ),
            )
        })?;
    if v.well_known_ca_certificates.is_some() {
        return Err((
            "Invalid",
            format!("{label}: wellKnownCACertificates is not supported; give caCertificateRefs"),
        ));
    }
    let bundle = crate::tls::ca_bundle(
        docs,
        ns,
        &v.ca_certificate_refs,
        "validation.caCertificateRefs",
        |_, ref_ns, _| ref_ns == ns,
    )
    .map_err(|(reason, msg)| (reason, format!("{label}: {msg}")))?;
    let mut names = Vec::new();
    for (i, san) in v.subject_alt_names.iter().enumerate() {
        match (san.kind.as_str(), &san.hostname) {
            ("Hostname", Some(h)) => match ServerName::try_from(h.clone()) {
                Ok(n) => names.push(n),
                Err(_) => {
                    return Err((
                        "Invalid",
                        format!("{label}: subjectAltNames[{i}].hostname {h:?} is not a DNS name"),
                    ))
                }
            },
            _ => {
                return Err((
                    "Invalid",
                    format!(
                        "{label}: subjectAltNames[{i}]: only type Hostname with a hostname is supported"
                    ),
                ))
            }
        }
    }
    let config =
        client_config(&bundle, names, h2).map_err(|e| ("Invalid", format!("{label}: {e}")))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let names: Vec<&str> = v
        .subject_alt_names
        .iter()
        .filter_map(|n| n.hostname.as_deref())
        .collect();
    (&v.hostname, &bundle[..], names, h2).hash(&mut hasher);
    Ok(UpstreamTls {
        policy: format!("{ns}/{}", policy.metadata.name),
        server_name,
        config,
        // Never 0 (plain text) and in the lower quarter: sidecar
        // connections' ids are in the upper half.
        id: (hasher.finish() >> 2) | 1,
    })
}

fn client_config(
    bundle: &[u8],
    names: Vec<ServerName<'static>>,
    h2: bool,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(bundle) {
        roots
            .add(ca.map_err(|e| format!("CA bundle: {e}"))?)
            .map_err(|e| format!("CA bundle: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let mut config = if names.is_empty() {
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("CA bundle: {e}"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyOfNames { inner, names }))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Ok(Arc::new(config))
}

/// With `subjectAltNames`, the certificate must carry one of them (the
/// hostname is still the SNI): WebPKI path validation, run per name.
#[derive(Debug)]
struct AnyOfNames {
    inner: Arc<WebPkiServerVerifier>,
    names: Vec<ServerName<'static>>,
}

impl ServerCertVerifier for AnyOfNames {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _sni: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut last = rustls::Error::General("no subjectAltNames".into());
        for name in &self.names {
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
            {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
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

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Status of every BackendTLSPolicy: per target, Accepted and ResolvedRefs.
pub(crate) fn policy_statuses(docs: &[Document], problems: &mut Vec<Problem>) -> Vec<RouteStatus> {
    let mut out = Vec::new();
    for doc in docs {
        let Resource::BackendTlsPolicy(policy) = &*doc.resource else {
            continue;
        };
        let ns = policy.metadata.namespace();
        let checked = upstream_tls(docs, policy, false);
        if let Err((_, msg)) = &checked {
            problems.push(Problem::error(&doc.source, "spec.validation", msg.clone()));
        }
        let mut parents = Vec::new();
        for (i, t) in policy.spec.target_refs.iter().enumerate() {
            let mut conditions = Vec::new();
            let service = docs.iter().find_map(|d| match &*d.resource {
                Resource::Service(s)
                    if s.metadata.namespace() == ns && s.metadata.name == t.name =>
                {
                    Some(s)
                }
                _ => None,
            });
            let target_ok = t.group.is_empty() && t.kind == "Service" && service.is_some();
            if !target_ok {
                let msg = format!("target Service {ns}/{} not found", t.name);
                problems.push(Problem::error(
                    &doc.source,
                    format!("spec.targetRefs[{i}]"),
                    msg.clone(),
                ));
                conditions.push(Condition::failed("Accepted", "TargetNotFound", msg));
            } else {
                match &checked {
                    Ok(_) => {
                        conditions.push(Condition::ok("Accepted", "Accepted"));
                        conditions.push(Condition::ok("ResolvedRefs", "ResolvedRefs"));
                    }
                    Err((reason, msg)) => {
                        let accepted = if *reason == "Invalid" {
                            "Invalid"
                        } else {
                            "NoValidCACertificate"
                        };
                        conditions.push(Condition::failed("Accepted", accepted, msg.clone()));
                        if *reason != "Invalid" {
                            conditions.push(Condition::failed("ResolvedRefs", reason, msg.clone()));
                        }
                    }
                }
            }
            let mut parent = format!("{ns}/{}", t.name);
            if let Some(s) = &t.section_name {
                parent.push('/');
                parent.push_str(s);
            }
            parents.push(ParentStatus {
                parent,
                reference: None,
                conditions,
            });
        }
        out.push(RouteStatus {
            kind: "BackendTLSPolicy",
            namespace: ns.into(),
            name: policy.metadata.name.clone(),
            source: doc.source.clone(),
            parents,
        });
    }
    out
}
