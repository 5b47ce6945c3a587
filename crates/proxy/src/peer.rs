//! Who is at the other end of a meshed call, for telemetry: each sidecar
//! tells the other its workload in an `x-strait-peer` header (`namespace/
//! name`), on the request (the caller's outbound side, to a meshed Service
//! only) and on the response (the callee's inbound side), as Istio's
//! metadata exchange does. A request to a meshed Service also names
//! that Service (`x-strait-peer-service`), which the callee's side cannot
//! know (several Services may select one workload). The
//! headers never reach a workload or a client: each side removes what
//! arrived under those names before it adds its own, so a workload cannot
//! speak for another. A sidecar believes a caller's header only over
//! mutual TLS (or in a mesh without identities, where nothing is proved);
//! the gateway and a caller's sidecar believe a response's only from a
//! Service whose endpoints are sidecars.

use http::{HeaderName, HeaderValue};
use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

pub const PEER: HeaderName = HeaderName::from_static("x-strait-peer");
pub const PEER_SERVICE: HeaderName = HeaderName::from_static("x-strait-peer-service");

/// A workload or a Service, as metrics label it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Named {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl Named {
    pub fn new(namespace: &str, name: &str) -> Arc<Named> {
        Arc::new(Named {
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    /// What labels say where the workload or Service is not known.
    pub fn unknown() -> Arc<Named> {
        static UNKNOWN: OnceLock<Arc<Named>> = OnceLock::new();
        UNKNOWN
            .get_or_init(|| Named::new("unknown", "unknown"))
            .clone()
    }

    /// The principal of a peer that proved no identity.
    pub fn unknown_principal() -> Arc<str> {
        static UNKNOWN: OnceLock<Arc<str>> = OnceLock::new();
        UNKNOWN.get_or_init(|| Arc::from("unknown")).clone()
    }

    /// The Service of a cluster named `namespace/service:port`; unknown for
    /// a sidecar's own inbound cluster and for passthrough destinations.
    pub fn service_of(cluster: &str) -> Arc<Named> {
        let parsed = cluster
            .split_once('/')
            .filter(|(ns, _)| !ns.contains('|'))
            .map(|(ns, rest)| (ns, rest.rsplit_once(':').map_or(rest, |(name, _)| name)));
        match parsed {
            Some((ns, name)) => Named::new(ns, name),
            None => Named::unknown(),
        }
    }

    /// This workload's header value.
    pub fn header(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("{}/{}", self.namespace, self.name)).ok()
    }
}

/// Names seen lately by this thread, so a header parsed again costs a
/// compare, not two allocations, and the same workload is the same `Arc`
/// (which is how the metrics' per-thread cache tells series apart).
const INTERNED: usize = 64;

thread_local! {
    static SEEN: RefCell<Vec<(HeaderValue, Arc<Named>)>> = const { RefCell::new(Vec::new()) };
}

/// The workload a peer's header names, if it is well formed: two
/// Kubernetes names (lower-case letters, digits, `-` and `.`) that no
/// label could be injected through.
pub fn parse(value: &HeaderValue) -> Option<Arc<Named>> {
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if let Some((_, named)) = seen.iter().find(|(v, _)| v == value) {
            return Some(named.clone());
        }
        let (ns, name) = value.to_str().ok()?.split_once('/')?;
        if !is_name(ns) || !is_name(name) {
            return None;
        }
        let named = Named::new(ns, name);
        if seen.len() >= INTERNED {
            seen.clear();
        }
        seen.push((value.clone(), named.clone()));
        Some(named)
    })
}

fn is_name(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_header_is_two_kubernetes_names() {
        let ok = parse(&HeaderValue::from_static("shop/checkout-api")).expect("parsed");
        assert_eq!((&*ok.namespace, &*ok.name), ("shop", "checkout-api"));
        let again = parse(&HeaderValue::from_static("shop/checkout-api")).expect("parsed");
        assert!(Arc::ptr_eq(&ok, &again), "interned");
        for bad in [
            "shop",
            "/checkout",
            "shop/",
            "Shop/checkout",
            "shop/check\"out",
            "shop/a,b",
            "shop/a/b",
        ] {
            assert!(parse(&HeaderValue::from_static(bad)).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_cluster_names_its_service() {
        let s = Named::service_of("shop/payment:8080");
        assert_eq!((&*s.namespace, &*s.name), ("shop", "payment"));
        assert_eq!(Named::service_of("inbound|shop/checkout"), Named::unknown());
        assert_eq!(
            Named::service_of("passthrough|example.com:80"),
            Named::unknown()
        );
    }
}
