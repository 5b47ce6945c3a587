//! SPIFFE IDs of workloads, `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`,
//! and reading one from a certificate (an X.509-SVID carries exactly one
//! URI SAN).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl SpiffeId {
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> Self {
        SpiffeId {
            trust_domain: trust_domain.to_string(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        }
    }

    /// Parses the workload form; any other SPIFFE path is refused.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or_else(|| format!("{uri:?} is not a spiffe:// URI"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] if [td, ns, sa].iter().all(|p| valid(p)) => {
                Ok(SpiffeId::new(td, ns, sa))
            }
            _ => Err(format!(
                "{uri:?} is not spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>"
            )),
        }
    }

    /// The SPIFFE ID of a DER certificate: its one URI SAN.
    pub fn of_certificate(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not a certificate: {e}"))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| format!("bad subjectAltName: {e}"))?
            .ok_or("the certificate has no subjectAltName")?;
        let mut uris = san.value.general_names.iter().filter_map(|g| match g {
            x509_parser::extensions::GeneralName::URI(u) => Some(*u),
            _ => None,
        });
        let first = uris.next().ok_or("the certificate has no URI SAN")?;
        if uris.next().is_some() {
            return Err("the certificate has more than one URI SAN".into());
        }
        Self::parse(first)
    }
}

/// A DNS-label-like segment: what Kubernetes allows in names, and dots
/// for trust domains.
fn valid(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 253
        && segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_workload_form() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/checkout-api").expect("valid");
        assert_eq!(id, SpiffeId::new("cluster.local", "shop", "checkout-api"));
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/shop/sa/checkout-api"
        );
        for bad in [
            "https://cluster.local/ns/shop/sa/x",
            "spiffe://cluster.local/ns/shop",
            "spiffe://cluster.local/ns/shop/sa/x/y",
            "spiffe://cluster.local/ns//sa/x",
            "spiffe://Cluster/ns/a/sa/b",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
