//! The sidecar role (`strait proxy`): an inbound listener in front of one
//! workload, forwarding to its port on 127.0.0.1, and an outbound listener
//! for everything the workload calls. In explicit mode the workload uses
//! the outbound listener as its `HTTP_PROXY`: plain HTTP requests arrive in
//! absolute form (`GET http://cart-api.shop/...`), HTTPS and other opaque
//! traffic as `CONNECT host:port` tunnels ([`crate::mesh`]). Destinations
//! are Services, named as Kubernetes DNS names them or by ClusterIP, routed
//! by the mesh table (GAMMA); anything else is passed through to the host it
//! names, or refused (`--outbound-unknown refuse`, 502 like Istio's
//! REGISTRY_ONLY).

use crate::answer::ProxyError;
use crate::peer::Named;
use http::HeaderValue;
use std::net::SocketAddr;
use std::sync::Arc;
use strait_route::{BackendTarget, Cluster, ListenerRoutes, Matched, Rule, UpstreamProtocol};
use tracing::debug;

/// What a sidecar knows about its workload.
#[derive(Debug, Clone)]
pub struct SidecarOptions {
    /// The certificate agent, when the sidecar has an identity (`--ca`).
    pub identity: Option<Arc<strait_identity::agent::Agent>>,
    pub namespace: String,
    pub workload: String,
    pub service_account: String,
    pub app_port: u16,
    pub inbound: SocketAddr,
    pub outbound: SocketAddr,
    /// Refuse destinations that are not Services instead of passing them through.
    pub refuse_unknown: bool,
}

/// A sidecar's fixed routing: the inbound rule and its own namespace.
#[derive(Debug)]
pub struct Sidecar {
    pub options: SidecarOptions,
    pub(crate) inbound_routes: ListenerRoutes,
    inbound_rule: Arc<Rule>,
    /// gRPC to the app goes over HTTP/2 (h2c), whatever reached the sidecar.
    inbound_grpc_rule: Arc<Rule>,
    /// The workload, as telemetry labels it and tells its peers
    /// ([`crate::peer`]).
    pub me: Arc<Named>,
    pub me_header: Option<HeaderValue>,
    /// Its SPIFFE ID, `unknown` without a certificate agent.
    pub principal: Arc<str>,
}

/// A rule that sends everything to one cluster.
fn rule_to(label: &Arc<str>, cluster: Cluster) -> Arc<Rule> {
    Arc::new(Rule::to(
        label.clone(),
        BackendTarget::Cluster(Arc::new(cluster)),
    ))
}

impl Sidecar {
    pub fn new(options: SidecarOptions) -> Self {
        let label: Arc<str> = format!("inbound|{}/{}", options.namespace, options.workload).into();
        let app = SocketAddr::from(([127, 0, 0, 1], options.app_port));
        let cluster = Cluster::new(label.to_string(), vec![app], UpstreamProtocol::Http1, None);
        let grpc = Cluster::new(label.to_string(), vec![app], UpstreamProtocol::H2c, None);
        let me = Named::new(&options.namespace, &options.workload);
        let principal = match &options.identity {
            Some(agent) => Arc::from(agent.id.to_string()),
            None => Named::unknown_principal(),
        };
        Sidecar {
            me_header: me.header(),
            me,
            principal,
            inbound_routes: ListenerRoutes::named(label.clone(), options.inbound.port()),
            inbound_rule: rule_to(&label, cluster),
            inbound_grpc_rule: rule_to(&label, grpc),
            options,
        }
    }

    /// The rule to the workload: HTTP/1.1, or HTTP/2 for gRPC.
    pub fn inbound(&self, grpc: bool) -> Matched<'_> {
        Matched {
            listener: &self.inbound_routes,
            rule: if grpc {
                &self.inbound_grpc_rule
            } else {
                &self.inbound_rule
            },
            matched_prefix: None,
        }
    }

    /// The clusters of its inbound rules, whose scores it keeps.
    pub fn clusters(&self) -> Vec<Arc<Cluster>> {
        [&self.inbound_rule, &self.inbound_grpc_rule]
            .iter()
            .flat_map(|r| &r.backends)
            .filter_map(|b| match &b.target {
                BackendTarget::Cluster(c) => Some(c.clone()),
                BackendTarget::Invalid(_) => None,
            })
            .collect()
    }

    /// This sidecar's own SPIFFE ID, when it has a certificate agent.
    pub fn own_id(&self) -> Option<&str> {
        self.options.identity.as_ref().map(|_| &*self.principal)
    }

    /// The address an unknown destination names, unless passthrough is off.
    pub async fn resolve_unknown(&self, host: &str, port: u16) -> Result<SocketAddr, ProxyError> {
        if self.options.refuse_unknown {
            return Err(ProxyError::NotInMesh);
        }
        match tokio::net::lookup_host((host, port)).await {
            Ok(mut addrs) => addrs.next().ok_or(ProxyError::DestinationUnknown),
            Err(e) => {
                debug!(host, port, error = %e, "passthrough destination does not resolve");
                Err(ProxyError::DestinationUnknown)
            }
        }
    }

    /// An HTTP request to a destination that is not a Service: to
    /// `original` (the captured connection's destination) or where DNS
    /// says `host` is.
    pub async fn passthrough(
        &self,
        host: &str,
        port: u16,
        original: Option<SocketAddr>,
    ) -> Result<Passthrough, ProxyError> {
        let addr = match original {
            Some(dst) if !self.options.refuse_unknown => dst,
            _ => self.resolve_unknown(host, port).await?,
        };
        let label: Arc<str> = Arc::from("passthrough");
        let cluster = Cluster::new(
            format!("passthrough|{host}:{port}"),
            vec![addr],
            UpstreamProtocol::Http1,
            None,
        );
        Ok(Passthrough {
            routes: ListenerRoutes::named(label.clone(), port),
            rule: rule_to(&label, cluster),
        })
    }
}

/// A destination outside the mesh table, resolved by DNS, for one request.
pub struct Passthrough {
    routes: ListenerRoutes,
    rule: Arc<Rule>,
}

impl Passthrough {
    pub fn matched(&self) -> Matched<'_> {
        Matched {
            listener: &self.routes,
            rule: &self.rule,
            matched_prefix: None,
        }
    }
}
