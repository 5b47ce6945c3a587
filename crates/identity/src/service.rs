//! The CA over gRPC (`strait.identity.v1.Identity/Sign`, tonic codegen
//! served on our own rustls + hyper connection, as the echo serves its
//! gRPC): a proxy sends a CSR and its ServiceAccount token; the token says
//! who it is, and only that identity is signed. The server presents the
//! control plane's own workload certificate, so a proxy checks it with
//! the same trust bundle and SPIFFE rules as any mesh peer.

use crate::ca::Authority;
use crate::credentials::{new_key_and_csr, Credentials};
use crate::pb::identity_client::IdentityClient;
use crate::pb::identity_server::{Identity, IdentityServer};
use crate::pb::{SignRequest, SignResponse};
use crate::spiffe::SpiffeId;
use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::codegen::Service;
use tonic::Status;
use tracing::{debug, info, warn};

/// The control plane's own identity: its namespace and ServiceAccount.
pub const CONTROL_NAMESPACE: &str = "strait-system";
pub const CONTROL_SERVICE_ACCOUNT: &str = "strait-control";
/// How long a call to the CA may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Who each bootstrap token belongs to.
pub type Tokens = HashMap<String, SpiffeId>;

/// Who a caller's token proves it is.
#[tonic::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn identify(&self, token: &str) -> Result<SpiffeId, Status>;
}

/// Tokens from the config folder (local mode).
pub struct LocalTokens(pub Arc<ArcSwap<Tokens>>);

#[tonic::async_trait]
impl Authenticator for LocalTokens {
    async fn identify(&self, token: &str) -> Result<SpiffeId, Status> {
        self.0
            .load()
            .get(token)
            .cloned()
            .ok_or_else(|| Status::unauthenticated("unknown token"))
    }
}

pub struct CaServer {
    pub authority: Arc<Authority>,
    pub authenticator: Arc<dyn Authenticator>,
    pub ttl: Duration,
}

#[tonic::async_trait]
impl Identity for CaServer {
    async fn sign(
        &self,
        request: tonic::Request<SignRequest>,
    ) -> Result<tonic::Response<SignResponse>, Status> {
        let req = request.into_inner();
        let caller = match self.authenticator.identify(&req.token).await {
            Ok(caller) => caller,
            Err(status) => {
                warn!(
                    why = status.message(),
                    "CSR refused: the token proves no identity"
                );
                return Err(status);
            }
        };
        let chain = self
            .authority
            .sign(&req.csr, &caller, self.ttl)
            .map_err(|why| {
                warn!(%caller, %why, "CSR refused");
                Status::permission_denied(why)
            })?;
        info!(%caller, ttl = ?self.ttl, "certificate signed");
        Ok(tonic::Response::new(SignResponse {
            chain: chain.into_iter().map(|c| c.to_vec()).collect(),
            trust_bundle: self
                .authority
                .trust_bundle()
                .iter()
                .map(|c| c.to_vec())
                .collect(),
        }))
    }
}

/// The control plane's serving configuration: its own certificate from
/// the CA, no client certificate asked (proxies have none yet), HTTP/2.
pub fn server_tls(authority: &Authority) -> Result<Arc<rustls::ServerConfig>, String> {
    let id = SpiffeId::new(
        &authority.trust_domain,
        CONTROL_NAMESPACE,
        CONTROL_SERVICE_ACCOUNT,
    );
    let (key, csr) = new_key_and_csr(&id)?;
    // Renewed at each start; a year outlasts any control plane process.
    let chain = authority.sign(&csr, &id, Duration::from_secs(365 * 24 * 3600))?;
    let creds = Credentials::new(&id, chain, &key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(creds.chain.clone(), creds.private_key())
    .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// TLS for the sidecar injector: a certificate for DNS `names` signed by
/// the CA (whose root the webhook configuration's `caBundle` holds).
pub fn dns_server_tls(
    authority: &Authority,
    names: &[String],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let (chain, key) = authority.sign_dns(names, Duration::from_secs(365 * 24 * 3600))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| format!("the webhook key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the CA on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ca: CaServer,
    tls: Arc<rustls::ServerConfig>,
) {
    serve_tls(listener, IdentityServer::new(ca), tls).await
}

/// Serves gRPC `service` (one generated server, or a router of several)
/// over HTTP/2 on TLS on `listener` until the task is dropped.
pub async fn serve_tls<S>(
    listener: tokio::net::TcpListener,
    service: S,
    tls: Arc<rustls::ServerConfig>,
) where
    S: Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(CALL_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    return debug!(%peer, error = %e, "control plane: TLS handshake failed")
                }
                Err(_) => return debug!(%peer, "control plane: TLS handshake timed out"),
            };
            let svc = hyper::service::service_fn(move |req| {
                let mut service = service.clone();
                async move { service.call(req).await }
            });
            // gRPC is HTTP/2; the injection webhook may be called over
            // HTTP/1.1 too.
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// An HTTP/2 connection as the service tonic's generated clients call
/// (tonic's own transport is not built: it has no hook for SPIFFE checks).
#[derive(Clone)]
pub struct H2(pub hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// The proxy's side: a new key, a CSR for `id`, signed by the CA at `ca`
/// (checked with `bundle` to be the control plane); the credentials and
/// the trust bundle the CA sent back.
pub async fn fetch(
    ca: &str,
    bundle: &[CertificateDer<'static>],
    token: &str,
    id: &SpiffeId,
) -> Result<(Credentials, Vec<CertificateDer<'static>>), String> {
    tokio::time::timeout(CALL_TIMEOUT, fetch_now(ca, bundle, token, id))
        .await
        .map_err(|_| format!("the CA at {ca} did not answer in {CALL_TIMEOUT:?}"))?
}

/// An HTTP/2 connection over TLS to the control plane at `addr`, checked
/// with `bundle` to be `spiffe://<td>/ns/strait-system/sa/strait-control`,
/// and the origin to call it by.
pub async fn connect_control(
    addr: &str,
    bundle: &[CertificateDer<'static>],
    trust_domain: &str,
) -> Result<(H2, http::Uri), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to the control plane at {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut config = crate::mesh_tls::verifying_client(bundle, trust_domain)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from("strait-control").map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(
        CALL_TIMEOUT,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| format!("TLS to the control plane at {addr} timed out"))?
    .map_err(|e| format!("TLS to the control plane at {addr}: {e}"))?;
    let control = SpiffeId::new(trust_domain, CONTROL_NAMESPACE, CONTROL_SERVICE_ACCOUNT);
    crate::mesh_tls::check_peer(tls.get_ref().1.peer_certificates(), &[control])
        .map_err(|e| format!("the control plane at {addr}: {e}"))?;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP/2 to the control plane: {e}"))?;
    tokio::spawn(conn);
    let origin: http::Uri = format!("https://{addr}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    Ok((H2(sender), origin))
}

async fn fetch_now(
    ca: &str,
    bundle: &[CertificateDer<'static>],
    token: &str,
    id: &SpiffeId,
) -> Result<(Credentials, Vec<CertificateDer<'static>>), String> {
    let (key, csr) = new_key_and_csr(id)?;
    let (channel, origin) = connect_control(ca, bundle, &id.trust_domain).await?;
    let mut client = IdentityClient::with_origin(channel, origin);
    let answer = client
        .sign(SignRequest {
            csr,
            token: token.to_string(),
        })
        .await
        .map_err(|s| format!("the CA refused: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    let chain = answer.chain.into_iter().map(CertificateDer::from).collect();
    let bundle = answer
        .trust_bundle
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    Ok((Credentials::new(id, chain, &key)?, bundle))
}
