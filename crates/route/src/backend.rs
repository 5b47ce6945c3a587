//! Backends: Services resolved to endpoint addresses through EndpointSlices.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use strait_config::core::{EndpointSliceBody, ServicePort, ServiceSpec, SERVICE_NAME_LABEL};
use strait_config::{Document, Flat, Object, Resource};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 with prior knowledge, for `appProtocol: kubernetes.io/h2c`.
    H2c,
}

/// One Service port and its ready endpoints.
#[derive(Debug, serde::Serialize)]
pub struct Cluster {
    /// `namespace/service:port`.
    pub name: String,
    pub endpoints: Vec<SocketAddr>,
    /// `endpoints` rendered once as URI authorities, for upstream requests.
    #[serde(skip)]
    authorities: Vec<http::uri::Authority>,
    pub protocol: UpstreamProtocol,
    /// TLS to the endpoints, from a BackendTLSPolicy.
    #[serde(serialize_with = "tls_policy")]
    pub tls: Option<Arc<crate::UpstreamTls>>,
    /// Balancing, breaker and outlier settings, from a BackendTrafficPolicy.
    #[serde(skip)]
    pub traffic: crate::balance::Traffic,
    /// Every endpoint is a sidecar ([`MESHED_LABEL`]): calls go over
    /// mutual TLS when this proxy has a workload certificate.
    pub meshed: bool,
    /// `(namespace, service account)` the endpoints run as
    /// ([`SERVICE_ACCOUNT_ANNOTATION`]); the server must prove one of them.
    pub peer_accounts: Vec<(String, String)>,
}

fn tls_policy<S: serde::Serializer>(
    tls: &Option<Arc<crate::UpstreamTls>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match tls {
        Some(t) => s.serialize_str(&t.policy),
        None => s.serialize_none(),
    }
}

impl Cluster {
    pub fn new(
        name: String,
        endpoints: Vec<SocketAddr>,
        protocol: UpstreamProtocol,
        tls: Option<Arc<crate::UpstreamTls>>,
    ) -> Self {
        let authorities = endpoints
            .iter()
            .filter_map(|e| http::uri::Authority::try_from(e.to_string()).ok())
            .collect();
        Cluster {
            name,
            endpoints,
            authorities,
            protocol,
            tls,
            traffic: Default::default(),
            meshed: false,
            peer_accounts: Vec::new(),
        }
    }

    /// Marks the endpoints as sidecars running as `accounts`.
    pub fn with_mesh(mut self, meshed: bool, accounts: Vec<(String, String)>) -> Self {
        self.meshed = meshed;
        self.peer_accounts = accounts;
        self
    }

    pub fn with_traffic(mut self, traffic: crate::balance::Traffic) -> Self {
        self.traffic = traffic;
        self
    }

    /// Endpoint `i`'s address and its authority, for upstream requests.
    pub fn endpoint(&self, i: usize) -> Option<(SocketAddr, &http::uri::Authority)> {
        Some((*self.endpoints.get(i)?, self.authorities.get(i)?))
    }
}

/// Where a share of traffic goes: a cluster, or nowhere (answered with 500,
/// as the spec asks for invalid or not-permitted backends).
#[derive(Debug, Clone, serde::Serialize)]
pub enum BackendTarget {
    Cluster(#[serde(serialize_with = "cluster_name")] Arc<Cluster>),
    Invalid(String),
}

fn cluster_name<S: serde::Serializer>(c: &Arc<Cluster>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&c.name)
}

#[derive(Debug, Clone)]
pub struct WeightedBackend {
    pub weight: u32,
    pub target: BackendTarget,
    // Boxed, as a rule's: most backends have none.
    pub request_headers: Option<Box<crate::HeaderOps>>,
    pub response_headers: Option<Box<crate::HeaderOps>>,
}

/// An EndpointSlice label saying its endpoints are sidecars' inbound
/// listeners (set by the control plane for injected pods; by hand
/// locally): calls to them go over HTTP/2.
pub const MESHED_LABEL: &str = "strait.dev/meshed";

/// An EndpointSlice annotation naming the ServiceAccount its endpoints
/// run as (set by the control plane from the pods; by hand locally): a
/// caller's sidecar refuses a server that cannot prove that identity.
pub const SERVICE_ACCOUNT_ANNOTATION: &str = "strait.dev/service-account";

/// Services and EndpointSlices by namespace and name (a slice's
/// `kubernetes.io/service-name`).
type ByName<'a, T> = HashMap<(&'a str, &'a str), T>;

/// Builds clusters from Services and EndpointSlices, once per snapshot.
pub(crate) struct Resolver<'a> {
    docs: &'a [Document],
    /// The first Service of each name, and each Service's slices in
    /// document order: resolving one reads its own, not every document
    /// (10,000 routes to 1,000 Services: 0.2 s of scanning otherwise).
    services: ByName<'a, &'a Object<ServiceSpec>>,
    slices: ByName<'a, Vec<&'a Flat<EndpointSliceBody>>>,
    /// BackendTrafficPolicies and BackendTLSPolicies, in document order.
    policies: Vec<&'a Document>,
    cache: HashMap<(String, String, i32), Result<Arc<Cluster>, String>>,
    /// SecurityPolicies, compiled once for every rule and listener.
    pub authn: crate::authn::AuthnTable,
    /// RateLimitPolicies, likewise.
    pub ratelimit: crate::ratelimit::RateLimitTable,
    /// ApiSchemaPolicies, likewise.
    pub apischema: crate::apischema::ApiSchemaTable,
}

impl<'a> Resolver<'a> {
    pub fn new(docs: &'a [Document]) -> Self {
        let mut services: ByName<'a, &'a Object<ServiceSpec>> = HashMap::new();
        let mut slices: ByName<'a, Vec<&'a Flat<EndpointSliceBody>>> = HashMap::new();
        let mut policies = Vec::new();
        for d in docs {
            match &*d.resource {
                Resource::BackendTrafficPolicy(_) | Resource::BackendTlsPolicy(_) => {
                    policies.push(d)
                }
                Resource::Service(s) => {
                    let key = (s.metadata.namespace(), s.metadata.name.as_str());
                    services.entry(key).or_insert(s);
                }
                Resource::EndpointSlice(slice) => {
                    if let Some(service) = slice.metadata.labels.get(SERVICE_NAME_LABEL) {
                        let key = (slice.metadata.namespace(), service.as_str());
                        slices.entry(key).or_default().push(slice);
                    }
                }
                _ => {}
            }
        }
        let mut resolver = Resolver {
            docs,
            services,
            slices,
            policies,
            cache: Default::default(),
            authn: Default::default(),
            ratelimit: crate::ratelimit::RateLimitTable::compile(docs),
            apischema: crate::apischema::ApiSchemaTable::compile(docs),
        };
        resolver.authn = crate::authn::AuthnTable::compile(docs, &mut resolver);
        resolver
    }

    pub fn docs(&self) -> &'a [Document] {
        self.docs
    }

    pub fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.cache.values().filter_map(|r| r.as_ref().ok())
    }

    /// The cluster for Service `namespace/name` port `port`, or why there is none.
    pub fn service(
        &mut self,
        namespace: &str,
        name: &str,
        port: i32,
    ) -> Result<Arc<Cluster>, String> {
        let key = (namespace.to_string(), name.to_string(), port);
        if let Some(found) = self.cache.get(&key) {
            return found.clone();
        }
        let result = self.build(namespace, name, port);
        self.cache.insert(key, result.clone());
        result
    }

    fn build(&self, namespace: &str, name: &str, port: i32) -> Result<Arc<Cluster>, String> {
        let service = self.find_service(namespace, name)?;
        let service_port = service
            .spec
            .ports
            .iter()
            .find(|p| p.port == port)
            .ok_or_else(|| format!("Service {namespace}/{name} has no port {port}"))?;
        let only_port = service.spec.ports.len() == 1;
        let found = self.endpoints(namespace, name, service_port, only_port);
        let port_name = service_port.name.as_deref();
        let traffic = crate::traffic::for_service(&self.policies, namespace, name, port_name);
        let tls = crate::backend_tls::for_service(
            (self.docs, &self.policies),
            namespace,
            name,
            port_name,
            found.protocol == UpstreamProtocol::H2c,
        )
        .transpose()?;
        Ok(Arc::new(
            Cluster::new(
                format!("{namespace}/{name}:{port}"),
                found.endpoints,
                found.protocol,
                tls,
            )
            .with_traffic(traffic)
            .with_mesh(found.meshed, found.accounts),
        ))
    }

    /// Service `namespace/name`, or why there is none.
    fn find_service(&self, namespace: &str, name: &str) -> Result<&'a Object<ServiceSpec>, String> {
        self.services
            .get(&(namespace, name))
            .copied()
            .ok_or_else(|| format!("Service {namespace}/{name} not found"))
    }

    /// What the EndpointSlices of Service `namespace/name` say about one of
    /// its ports; `only_port` when it is the Service's only one.
    fn endpoints(
        &self,
        namespace: &str,
        name: &str,
        service_port: &ServicePort,
        only_port: bool,
    ) -> Endpoints {
        let mut found = Endpoints {
            endpoints: Vec::new(),
            protocol: protocol_of(service_port.app_protocol.as_deref()),
            meshed: true,
            accounts: Vec::new(),
        };
        let slices = self.slices.get(&(namespace, name)).into_iter().flatten();
        for slice in slices {
            found.add(slice, namespace, service_port.name.as_deref(), only_port);
        }
        found.endpoints.sort();
        found.endpoints.dedup();
        found.accounts.sort();
        found.accounts.dedup();
        found.meshed &= !found.endpoints.is_empty();
        found
    }
}

/// A Service port's endpoints as its EndpointSlices give them.
struct Endpoints {
    /// Ready addresses.
    endpoints: Vec<SocketAddr>,
    protocol: UpstreamProtocol,
    /// Every slice is meshed, and there are endpoints.
    meshed: bool,
    /// `(namespace, service account)` the slices say the endpoints run as.
    accounts: Vec<(String, String)>,
}

impl Endpoints {
    /// One slice of the Service: its port named as the Service port is
    /// (or the only port of both), and the ready addresses on it.
    fn add(
        &mut self,
        slice: &Flat<EndpointSliceBody>,
        namespace: &str,
        port_name: Option<&str>,
        only_port: bool,
    ) {
        let slice_port = slice
            .body
            .ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name.unwrap_or(""));
        let slice_port = match slice_port {
            Some(p) => Some(p),
            None if only_port && slice.body.ports.len() == 1 => slice.body.ports.first(),
            None => None,
        };
        let Some(target) = slice_port.and_then(|p| p.port) else {
            return;
        };
        let Ok(target) = u16::try_from(target) else {
            return;
        };
        if let Some(p) = slice_port.and_then(|p| p.app_protocol.as_deref()) {
            self.protocol = protocol_of(Some(p));
        }
        self.meshed &= slice.metadata.labels.get(MESHED_LABEL).map(String::as_str) == Some("true");
        if let Some(sa) = slice.metadata.annotations.get(SERVICE_ACCOUNT_ANNOTATION) {
            self.accounts.push((namespace.to_string(), sa.clone()));
        }
        for endpoint in &slice.body.endpoints {
            if endpoint.conditions.ready == Some(false) {
                continue;
            }
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse::<IpAddr>() {
                    self.endpoints.push(SocketAddr::new(ip, target));
                }
            }
        }
    }
}

fn protocol_of(app_protocol: Option<&str>) -> UpstreamProtocol {
    match app_protocol {
        Some("kubernetes.io/h2c") => UpstreamProtocol::H2c,
        _ => UpstreamProtocol::Http1,
    }
}
