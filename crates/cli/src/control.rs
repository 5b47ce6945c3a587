//! `strait control`: the mesh CA and the configuration stream
//! to proxies, both gRPC on one TLS port.

use anyhow::Context;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use strait_config::Resource;
use strait_identity::service::{Authenticator, CaServer, LocalTokens, Tokens};
use strait_identity::{Authority, SpiffeId};

#[derive(clap::Args)]
pub struct ControlArgs {
    /// Folder of manifests: ServiceAccount token Secrets say which token
    /// proves which identity.
    #[arg(long, required_unless_present = "kubernetes")]
    config: Option<PathBuf>,
    /// Read the configuration from the Kubernetes API instead (in the
    /// cluster its ServiceAccount, outside KUBECONFIG): watch the Gateway
    /// API kinds, Services, EndpointSlices, Pods, TLS Secrets and the
    /// policy.strait.dev kinds. Tokens are then checked with TokenReview.
    #[arg(long, conflicts_with = "config")]
    kubernetes: bool,
    /// Where proxies reach the CA.
    #[arg(long, default_value = "127.0.0.1:15012")]
    listen: SocketAddr,
    /// The CA's folder: `ca.crt` and `ca.key` (made there, key mode 0600,
    /// when absent), and `trust-bundle.pem` written for proxies.
    #[arg(long, default_value = "strait-ca")]
    ca_dir: PathBuf,
    /// Sign with this CA instead (a cert-manager intermediate, say): its
    /// certificate (chain) and key in PEM…
    #[arg(long, requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The private key of --ca-cert (PEM).
    #[arg(long, requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// …and the roots it chains to, when it is an intermediate.
    #[arg(long)]
    ca_roots: Option<PathBuf>,
    /// Or sign with the CA in a `kubernetes.io/tls` Secret (of the folder,
    /// or of the cluster with `--kubernetes`), NAMESPACE/NAME, as
    /// cert-manager writes one: `tls.crt` (the CA, an intermediate),
    /// `tls.key`, and `ca.crt` (the root it chains to).
    #[arg(long, conflicts_with_all = ["ca_cert", "ca_key"])]
    ca_secret: Option<String>,
    /// Roots trusted beside the CA's own (PEM): the other root during a
    /// root rotation.
    #[arg(long)]
    extra_roots: Option<PathBuf>,
    /// The SPIFFE trust domain (Kubernetes' default cluster domain).
    #[arg(long, default_value = strait_identity::DEFAULT_TRUST_DOMAIN)]
    trust_domain: String,
    /// Check proxies' tokens with the Kubernetes API (TokenReview; in the
    /// cluster its ServiceAccount, outside KUBECONFIG) instead of the
    /// folder's token Secrets.
    #[arg(long)]
    token_review: bool,
    /// The audience proxies' projected ServiceAccount tokens are made for.
    #[arg(long, default_value = "strait")]
    token_audience: String,
    /// Serve `/ready` and `/status` (the configuration's version, every
    /// refused object with file, document and field path, and each
    /// proxy's ACK or NACK) as JSON on this address.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Serve the sidecar injection webhook (`POST /inject`, HTTPS) here.
    #[arg(long)]
    webhook_listen: Option<SocketAddr>,
    /// The DNS names the API server calls the webhook by, comma-separated
    /// (its serving certificate is made for them, signed by the CA).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "strait-control.strait-system.svc"
    )]
    webhook_names: Vec<String>,
    /// The image injected proxies run.
    #[arg(long, default_value = concat!("strait:", env!("CARGO_PKG_VERSION")))]
    proxy_image: String,
    /// Where injected proxies reach this control plane (HOST:PORT).
    #[arg(long, default_value = "strait-control.strait-system.svc:15012")]
    control_address: String,
    /// Make every proxy show a ServiceAccount token on the configuration
    /// stream (always with --kubernetes): a sidecar gets only nodes of its
    /// namespace, a gateway's view (its certificates' keys included) only
    /// --gateway-service-accounts. Without it, anyone who reaches
    /// --listen may ask for any view: keep it on 127.0.0.1.
    #[arg(long)]
    authenticate_proxies: bool,
    /// The ServiceAccounts gateways run as, NAMESPACE/NAME, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "strait-system/strait-gateway"
    )]
    gateway_service_accounts: Vec<String>,
    /// Lifetime of workload certificates.
    #[arg(long, default_value = "24h", value_parser = crate::go_duration)]
    cert_ttl: Duration,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Token → identity, from the folder's `kubernetes.io/service-account-token`
/// Secrets (annotation `kubernetes.io/service-account.name`, key `token`).
pub fn tokens(dir: &Path, trust_domain: &str) -> Tokens {
    let set = strait_config::load_dir(dir);
    let mut out = Tokens::new();
    for doc in &set.documents {
        let Resource::Secret(secret) = &*doc.resource else {
            continue;
        };
        if secret.body.kind.as_deref() != Some("kubernetes.io/service-account-token") {
            continue;
        }
        let Some(sa) = secret
            .metadata
            .annotations
            .get("kubernetes.io/service-account.name")
        else {
            continue;
        };
        if let Ok(token) = secret.body.value("token") {
            let token = String::from_utf8_lossy(&token).trim().to_string();
            if !token.is_empty() {
                out.insert(
                    token,
                    SpiffeId::new(trust_domain, secret.metadata.namespace(), sa),
                );
            }
        }
    }
    out
}

/// The CA in Secret `ns/name`, of the folder or of the cluster.
async fn ca_from_secret(
    dir: Option<&Path>,
    which: &str,
    trust_domain: &str,
) -> Result<Authority, String> {
    let (ns, name) = which
        .split_once('/')
        .ok_or_else(|| format!("--ca-secret {which:?} is not NAMESPACE/NAME"))?;
    let set = match dir {
        Some(dir) => strait_config::load_dir(dir),
        None => strait_kube::secret(strait_kube::client().await?, ns, name).await?,
    };
    let secret = set
        .documents
        .iter()
        .find_map(|d| match &*d.resource {
            Resource::Secret(s) if s.metadata.namespace() == ns && s.metadata.name == name => {
                Some(s)
            }
            _ => None,
        })
        .ok_or_else(|| match dir {
            Some(dir) => format!("Secret {which} is not in {}", dir.display()),
            None => format!("Secret {which} is not in the cluster"),
        })?;
    let text = |key: &str| {
        secret
            .body
            .value(key)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .map_err(|e| format!("Secret {which}: {e}"))
    };
    let roots = text("ca.crt").ok();
    Authority::from_pem(
        trust_domain,
        &text("tls.crt")?,
        &text("tls.key")?,
        roots.as_deref(),
    )
    .map_err(|e| format!("Secret {which}: {e}"))
}

pub async fn run(args: ControlArgs) -> anyhow::Result<()> {
    let authority = mesh_ca(&args).await?;
    let bundle_path = write_trust_bundle(&args.ca_dir, &authority)?;
    let tls = strait_identity::service::server_tls(&authority).map_err(|e| anyhow::anyhow!(e))?;
    let authenticator = proxy_authenticator(&args).await?;
    start_webhook(&args, &authority).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    // Tests read this line to learn the port.
    println!("listening on {}", listener.local_addr()?);
    tracing::info!(
        trust_bundle = %bundle_path.display(),
        roots = authority.trust_bundle().len(),
        ttl = ?args.cert_ttl,
        "mesh CA serving"
    );
    let ca = CaServer {
        authority: Arc::new(authority),
        authenticator: authenticator.clone(),
        ttl: args.cert_ttl,
    };
    let config = config_service(&args, &authenticator).await?;
    if let Some(addr) = args.admin {
        start_admin(addr, &config).await?;
    }
    strait_identity::service::serve_tls(listener, Router::new(ca, config), tls).await;
    Ok(())
}

/// The CA that signs workload certificates: from --ca-secret, from
/// --ca-cert and --ca-key, or the one in --ca-dir; trusting
/// --extra-roots too.
async fn mesh_ca(args: &ControlArgs) -> anyhow::Result<Authority> {
    let mut authority = match (&args.ca_cert, &args.ca_key) {
        _ if args.ca_secret.is_some() => {
            ca_from_secret(
                args.config.as_deref(),
                args.ca_secret.as_deref().unwrap_or_default(),
                &args.trust_domain,
            )
            .await
        }
        (Some(cert), Some(key)) => {
            let roots = args.ca_roots.as_deref().map(read).transpose()?;
            Authority::from_pem(
                &args.trust_domain,
                &read(cert)?,
                &read(key)?,
                roots.as_deref(),
            )
        }
        _ => Authority::open_or_create(&args.ca_dir, &args.trust_domain),
    }
    .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(extra) = &args.extra_roots {
        authority
            .trust_also(&read(extra)?)
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(authority)
}

/// Writes `trust-bundle.pem` in the CA's folder, for proxies: its path.
fn write_trust_bundle(ca_dir: &Path, authority: &Authority) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(ca_dir)?;
    let bundle_path = ca_dir.join("trust-bundle.pem");
    std::fs::write(&bundle_path, authority.trust_bundle_pem())
        .with_context(|| format!("writing {}", bundle_path.display()))?;
    Ok(bundle_path)
}

/// What checks proxies' tokens: the folder's token Secrets, or
/// TokenReview (with --token-review, or without a folder).
async fn proxy_authenticator(args: &ControlArgs) -> anyhow::Result<Arc<dyn Authenticator>> {
    if let (false, Some(config)) = (args.token_review, &args.config) {
        return Ok(folder_tokens(config, &args.trust_domain));
    }
    let reviewer = strait_kube::TokenReviewer::infer(&args.token_audience, &args.trust_domain)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    tracing::info!(audience = %args.token_audience, "tokens are checked with TokenReview");
    Ok(Arc::new(reviewer))
}

/// The token Secrets of `dir`, read again every 2 s: tokens follow the
/// folder.
fn folder_tokens(dir: &Path, trust_domain: &str) -> Arc<dyn Authenticator> {
    let tokens = Arc::new(ArcSwap::from_pointee(self::tokens(dir, trust_domain)));
    let refresh = tokens.clone();
    let (dir, td) = (dir.to_path_buf(), trust_domain.to_string());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            refresh.store(Arc::new(self::tokens(&dir, &td)));
        }
    });
    Arc::new(LocalTokens(tokens))
}

/// The sidecar injection webhook, with --webhook-listen: its serving
/// certificate signed by the CA.
async fn start_webhook(args: &ControlArgs, authority: &Authority) -> anyhow::Result<()> {
    let Some(addr) = args.webhook_listen else {
        return Ok(());
    };
    let tls = strait_identity::service::dns_server_tls(authority, &args.webhook_names)
        .map_err(|e| anyhow::anyhow!(e))?;
    let injection = strait_kube::inject::Injection {
        image: args.proxy_image.clone(),
        control: args.control_address.clone(),
        trust_bundle_pem: authority.trust_bundle_pem(),
        trust_domain: args.trust_domain.clone(),
        token_audience: args.token_audience.clone(),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("webhook address {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, names = ?args.webhook_names, "sidecar injector listening");
    tokio::spawn(strait_identity::service::serve_tls(
        listener,
        crate::webhook::Webhook(Arc::new(injection)),
        tls,
    ));
    Ok(())
}

/// The configuration stream, fed from the folder or the cluster; with
/// --authenticate-proxies (always with --kubernetes) proxies show tokens.
async fn config_service(
    args: &ControlArgs,
    authenticator: &Arc<dyn Authenticator>,
) -> anyhow::Result<strait_control::server::ConfigService> {
    let config = match &args.config {
        Some(dir) => publish_folder(dir.clone())?,
        None => publish_cluster().await?,
    };
    if !(args.authenticate_proxies || args.kubernetes) {
        return Ok(config);
    }
    Ok(config.with_auth(strait_control::server::ProxyAuth {
        authenticator: authenticator.clone(),
        gateways: gateway_accounts(&args.gateway_service_accounts)?,
    }))
}

/// --gateway-service-accounts as (namespace, name).
fn gateway_accounts(accounts: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut gateways = Vec::new();
    for sa in accounts {
        let (ns, name) = sa
            .split_once('/')
            .with_context(|| format!("--gateway-service-accounts {sa:?} is not NAMESPACE/NAME"))?;
        gateways.push((ns.to_string(), name.to_string()));
    }
    Ok(gateways)
}

/// `/ready` and `/status` on `addr`, served in the background.
async fn start_admin(
    addr: SocketAddr,
    config: &strait_control::server::ConfigService,
) -> anyhow::Result<()> {
    let admin = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("admin address {addr}"))?;
    tracing::info!(addr = %admin.local_addr()?, "admin listening");
    tokio::spawn(serve_admin(admin, config.clone()));
    Ok(())
}

/// The folder as the index proxies are fed from: read at start and after
/// each change. A bad object is refused (logged with file, document and
/// field path) and its last good version kept; the rest goes out.
pub(crate) fn publish_folder(
    dir: PathBuf,
) -> anyhow::Result<strait_control::server::ConfigService> {
    use strait_control::folder;
    let mut source = folder::Folder::new(&dir);
    let (mut publisher, service) = strait_control::server::Publisher::new();
    publisher.publish(source.index(None));
    let (watcher, mut events) =
        strait_api::watch::watch(&dir).with_context(|| format!("watching {}", dir.display()))?;
    tokio::spawn(async move {
        let _watcher = watcher;
        while events.recv().await.is_some() {
            strait_api::watch::settle(&mut events).await;
            let next = source.index(publisher.current());
            publisher.publish(next);
        }
    });
    Ok(service)
}

/// The cluster as the index proxies are fed from (kube-rs watchers).
async fn publish_cluster() -> anyhow::Result<strait_control::server::ConfigService> {
    let client = strait_kube::client()
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let (publisher, service) = strait_control::server::Publisher::new();
    tokio::spawn(strait_kube::source::run(client, publisher));
    Ok(service)
}

/// What `/status` shows.
pub(crate) fn status(config: &strait_control::server::ConfigService) -> serde_json::Value {
    let index = config.index();
    serde_json::json!({
        "version": index.as_ref().map(|i| i.version.clone()),
        "objects": index.as_ref().map_or(0, |i| i.objects.len()),
        "problems": index
            .as_ref()
            .map(|i| i.problems.iter().map(ToString::to_string).collect::<Vec<_>>())
            .unwrap_or_default(),
        "proxies": config.status(),
    })
}

async fn serve_admin(
    listener: tokio::net::TcpListener,
    config: strait_control::server::ConfigService,
) {
    use http_body_util::Full;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let config = config.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (code, body) = match req.uri().path() {
                        "/ready" | "/live" => (http::StatusCode::OK, "ready\n".to_string()),
                        "/status" => (http::StatusCode::OK, status(&config).to_string()),
                        _ => (http::StatusCode::NOT_FOUND, "not found\n".to_string()),
                    };
                    let mut r = http::Response::new(Full::new(bytes::Bytes::from(body)));
                    *r.status_mut() = code;
                    std::future::ready(Ok::<_, std::convert::Infallible>(r))
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// The control plane's gRPC services on one port, by path.
#[derive(Clone)]
pub(crate) struct Router {
    identity: strait_identity::pb::identity_server::IdentityServer<CaServer>,
    config: strait_control::pb::config_server::ConfigServer<strait_control::server::ConfigService>,
}

impl Router {
    pub(crate) fn new(ca: CaServer, config: strait_control::server::ConfigService) -> Self {
        Router {
            identity: strait_identity::pb::identity_server::IdentityServer::new(ca),
            config: strait_control::pb::config_server::ConfigServer::new(config),
        }
    }
}

type Call = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<tonic::body::Body>, std::convert::Infallible>,
            > + Send,
    >,
>;

impl tonic::codegen::Service<http::Request<hyper::body::Incoming>> for Router {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = Call;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Both generated servers are always ready.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<hyper::body::Incoming>) -> Call {
        if req.uri().path().starts_with("/strait.control.v1.Config/") {
            let mut config = self.config.clone();
            Box::pin(async move { config.call(req).await })
        } else {
            let mut identity = self.identity.clone();
            Box::pin(async move { identity.call(req).await })
        }
    }
}
