//! `strait demo`: the shop's edge from `examples/shop`, on this machine.

use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const FILES: [(&str, &str); 6] = [
    (
        "gateway.yaml",
        include_str!("../../../examples/shop/gateway.yaml"),
    ),
    (
        "routes.yaml",
        include_str!("../../../examples/shop/routes.yaml"),
    ),
    (
        "services.yaml",
        include_str!("../../../examples/shop/services.yaml"),
    ),
    (
        "mesh.yaml",
        include_str!("../../../examples/shop/mesh.yaml"),
    ),
    (
        "auth.yaml",
        include_str!("../../../examples/shop/auth.yaml"),
    ),
    (
        "product-api.openapi.yaml",
        include_str!("../../../examples/shop/product-api.openapi.yaml"),
    ),
];

/// The issuer `examples/shop/auth.yaml` trusts.
const ISSUER: &str = "https://issuer.shop.example.com";

/// One of the mesh's workloads: its echo app and its sidecar.
struct Workload {
    service: &'static str,
    pod: &'static str,
    app: u16,
    inbound: u16,
    outbound: u16,
    /// The sidecar's admin port: metrics, readiness, configuration.
    admin: u16,
    /// Every n-th answer of the app fails (0: none).
    fail_every: u64,
}

const fn workload(
    service: &'static str,
    pod: &'static str,
    [app, inbound, outbound, admin]: [u16; 4],
    fail_every: u64,
) -> Workload {
    Workload {
        service,
        pod,
        app,
        inbound,
        outbound,
        admin,
        fail_every,
    }
}

/// One user-service pod fails every other call so that cart-api's retry
/// has work to do.
const WORKLOADS: [Workload; 6] = [
    workload(
        "checkout-api",
        "checkout-api-6f7d8",
        [9104, 15106, 15101, 15201],
        0,
    ),
    workload(
        "payment-service-v1",
        "payment-v1-4k2l9",
        [9105, 15107, 15103, 15202],
        0,
    ),
    workload(
        "payment-service-v2",
        "payment-v2-8s1q3",
        [9106, 15108, 15104, 15203],
        0,
    ),
    workload("cart-api", "cart-api-2b9x7", [9107, 15109, 15102, 15204], 0),
    workload(
        "user-service",
        "user-service-5h3m1",
        [9108, 15110, 15105, 15205],
        2,
    ),
    workload(
        "user-service",
        "user-service-9j2k4",
        [9109, 15111, 15112, 15206],
        0,
    ),
];

/// The gateway's admin port.
const ADMIN_PORT: u16 = 9901;

/// The demo's folder, removed however the demo ends: dropped after the
/// runtime, so that no task of the demo writes to it again.
pub struct DemoDir(std::path::PathBuf);

impl DemoDir {
    pub fn new() -> Self {
        DemoDir(std::env::temp_dir().join(format!("strait-demo-{}", std::process::id())))
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The echo backends the example's EndpointSlices point at.
const BACKENDS: [(&str, &str, u16); 3] = [
    ("web-frontend", "web-frontend-7d4f9", 9101),
    ("product-api", "product-api-5c8b2", 9102),
    ("product-api", "product-api-9x3k1", 9103),
];

/// Where spans go, when the demo is given a collector.
pub type Tracing = Option<(String, strait_proxy::traces::Protocol)>;

/// The trace options of one proxy: `service` (a workload, or the gateway).
fn traces(tracing: &Tracing, service: &str) -> Option<strait_proxy::traces::Options> {
    let (endpoint, protocol) = tracing.clone()?;
    Some(strait_proxy::traces::Options {
        endpoint,
        protocol,
        sample: 1.0,
        service: service.into(),
        namespace: Some("shop".into()),
    })
}

pub async fn run(dir: &DemoDir, tracing: Tracing) -> anyhow::Result<()> {
    let ca_file = write_config(&dir.0)?;
    let token = start_issuer(&dir.0)?;
    start_backends().await?;
    let ca = start_ca(&dir.0, localhost(CA_PORT)).await?;
    let (failed_tx, mut failed) = tokio::sync::mpsc::channel::<anyhow::Error>(WORKLOADS.len());
    for w in &WORKLOADS {
        start_workload(w, &dir.0, &ca, failed_tx.clone(), &tracing).await?;
    }
    let mut opts = proxy_options(
        &dir.0,
        Some(localhost(ADMIN_PORT)),
        None,
        ca.control(&dir.0, "gateway", "gateway"),
    );
    opts.access_log = Some(strait_proxy::access_log::Options {
        target: access_log(&dir.0).display().to_string(),
        format: strait_proxy::access_log::Format::Json,
        sample: 1.0,
    });
    opts.traces = traces(&tracing, "strait-gateway");
    // The proxy stops on Ctrl-C (SIGINT) and SIGTERM by itself.
    let gateway = strait_proxy::run(opts, std::future::pending());
    tokio::pin!(gateway);
    // The list of things to try is printed once every port answers: a
    // port that is taken ends the demo with its error, and nothing else.
    tokio::select! {
        result = &mut gateway => return result,
        Some(e) = failed.recv() => return Err(e),
        ready = all_ready() => ready?,
    }
    print_banner(&dir.0, &ca_file, &tracing, &token);
    tokio::spawn(show_the_mesh(token));
    tokio::select! {
        result = gateway => result,
        Some(e) = failed.recv() => Err(e),
    }
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// The example manifests, with TLS at the edge as the reference scenario
/// has it: a certificate made now for shop.example.com and an HTTPS
/// listener beside the HTTP one. Returns the certificate's file.
fn write_config(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in FILES {
        std::fs::write(dir.join(name), text)?;
    }
    let ca_file = dir.join("shop.example.com.pem");
    let (secret, cert_pem) = demo_certificate()?;
    std::fs::write(&ca_file, cert_pem)?;
    std::fs::write(dir.join("tls.yaml"), secret)?;
    let gateway = format!("{}{HTTPS_LISTENER}", FILES[0].1);
    std::fs::write(dir.join("gateway.yaml"), gateway)?;
    Ok(ca_file)
}

/// The shop's token issuer, for this run: an Ed25519 key made now, its
/// public half written into `auth.yaml`'s key set (in place of the
/// example's), and a user's token it signs, valid for a day.
fn start_issuer(dir: &std::path::Path) -> anyhow::Result<String> {
    use base64::Engine;
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key_raw());
    let jwks = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "demo", "use": "sig"}]});
    let auth = FILES[4]
        .1
        .lines()
        .map(|line| match line.starts_with("  jwks: ") {
            true => format!("  jwks: '{jwks}'"),
            false => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("auth.yaml"), auth + "\n")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "shop", "sub": "demo-user",
        "iat": now.as_secs(), "exp": now.as_secs() + 24 * 3600,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("demo".into());
    let key = jsonwebtoken::EncodingKey::from_ed_der(&pair.serialize_der());
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

async fn start_backends() -> anyhow::Result<()> {
    for (service, pod, port) in BACKENDS {
        let listener = tokio::net::TcpListener::bind(localhost(port))
            .await
            .with_context(|| format!("starting the {service} backend on 127.0.0.1:{port}"))?;
        let info = Arc::new(strait_echo::EchoInfo::new("shop", service, pod));
        tokio::spawn(strait_echo::serve(listener, info));
    }
    Ok(())
}

fn proxy_options(
    dir: &std::path::Path,
    admin: Option<SocketAddr>,
    sidecar: Option<strait_proxy::sidecar::SidecarOptions>,
    control: strait_api::client::ControlOptions,
) -> strait_proxy::GatewayOptions {
    strait_proxy::GatewayOptions {
        config_dir: dir.to_path_buf(),
        bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        admin,
        ports_file: None,
        compile: strait_route::CompileOptions::default(),
        drain_timeout: Duration::from_secs(5),
        stream_limits: Default::default(),
        http_limits: Default::default(),
        sidecar,
        control: Some(control),
        access_log: None,
        traces: None,
    }
}

/// A workload's app, its certificate, and its sidecar; a sidecar that
/// stops says so on `failed`.
async fn start_workload(
    w: &Workload,
    dir: &std::path::Path,
    ca: &DemoCa,
    failed: tokio::sync::mpsc::Sender<anyhow::Error>,
    tracing: &Tracing,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(localhost(w.app))
        .await
        .with_context(|| format!("starting {} on 127.0.0.1:{}", w.service, w.app))?;
    let info = Arc::new(strait_echo::EchoInfo {
        fail_every: w.fail_every,
        ..strait_echo::EchoInfo::new("shop", w.service, w.pod)
    });
    tokio::spawn(strait_echo::serve(listener, info));
    // Each workload runs as the ServiceAccount of its name.
    let id =
        strait_identity::SpiffeId::new(strait_identity::DEFAULT_TRUST_DOMAIN, "shop", w.service);
    let agent = strait_identity::agent::Agent::new(
        id,
        localhost(CA_PORT).to_string(),
        strait_identity::agent::Token::Text(ca.tokens[w.service].clone()),
        ca.bundle.clone(),
    );
    agent.first().await;
    tokio::spawn(agent.clone().run());
    let sidecar = strait_proxy::sidecar::SidecarOptions {
        identity: Some(agent),
        namespace: "shop".into(),
        workload: w.service.into(),
        service_account: w.service.into(),
        app_port: w.app,
        inbound: localhost(w.inbound),
        outbound: localhost(w.outbound),
        refuse_unknown: false,
    };
    let control = ca.control(dir, &format!("shop/{}", w.pod), "sidecar");
    let mut opts = proxy_options(dir, Some(localhost(w.admin)), Some(sidecar), control);
    opts.traces = traces(tracing, w.service);
    let service = w.service;
    tokio::spawn(async move {
        // Ok is a stop on Ctrl-C, as the gateway's.
        if let Err(e) = strait_proxy::run(opts, std::future::pending()).await {
            let _ = failed
                .send(e.context(format!("the {service} sidecar stopped")))
                .await;
        }
    });
    Ok(())
}

/// Waits until the gateway and every sidecar say they are ready: each has
/// its listeners bound and its first configuration.
async fn all_ready() -> anyhow::Result<()> {
    let admins: Vec<u16> = std::iter::once(ADMIN_PORT)
        .chain(WORKLOADS.iter().map(|w| w.admin))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for port in admins {
        while !matches!(call(port, "127.0.0.1", "/ready", "").await, Some((200, _))) {
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("the proxy with admin port {port} did not become ready in 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

fn print_banner(dir: &std::path::Path, ca_file: &std::path::Path, tracing: &Tracing, token: &str) {
    let admins: Vec<String> = WORKLOADS
        .iter()
        .map(|w| format!("{} {}", w.pod, w.admin))
        .collect();
    println!(
        "strait demo: the shop's edge on http://127.0.0.1:8080 and https://127.0.0.1:8443 (config in {})\n\n\
         Try:\n\
         \x20 curl -s -H 'Host: shop.example.com' http://127.0.0.1:8080/            # web-frontend\n\
         \x20 curl -s --cacert {} --resolve shop.example.com:8443:127.0.0.1 https://shop.example.com:8443/api/products  # TLS terminated at the edge\n\
         \x20 curl -s -H 'Host: shop.example.com' http://127.0.0.1:8080/api/products # product-api, balanced over two pods\n\
         \x20 curl -s -H 'Host: shop.example.com' http://127.0.0.1:8080/api/products -X POST -i  # 403 You are rejected!: read-only\n\
         \x20 for i in $(seq 15); do curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'Host: shop.example.com' http://127.0.0.1:8080/api/products; done | sort | uniq -c  # 429 past 10 at once: the edge's limit per client\n\
         \x20 curl -s -H 'Host: shop.example.com' 'http://127.0.0.1:8080/api/products?limit=500' -i  # 400: product-api's OpenAPI document says at most 50\n\
         \x20 curl -s -H 'Host: shop.example.com' http://127.0.0.1:8080/api/reviews -H 'Content-Type: application/json' -d '{{\"product\": 1, \"stars\": 9}}' -i  # 400: body/stars above 5\n\
         \x20 curl -s -H 'Host: shop.example.com' http://127.0.0.1:8080/api/cart -X OPTIONS -H 'Origin: https://shop.example.com' -H 'Access-Control-Request-Method: POST' -i  # the edge answers the shop's CORS preflight\n\
         \x20 export TOKEN={token}  # a user's token from the shop's issuer (this run's key, valid 24 h)\n\
         \x20 curl -s -H 'Host: shop.example.com' http://127.0.0.1:8080/api/checkout -i  # 401: checkout wants a user's token\n\
         \x20 curl -s -H 'Host: shop.example.com' -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/api/checkout  # checkout-api, told x-user: demo-user\n\
         \x20 curl -s -H 'Host: other.example.com' http://127.0.0.1:8080/ -i        # 404: no route for that host\n\
         \x20 curl -s http://127.0.0.1:{ADMIN_PORT}/metrics                                 # Prometheus metrics\n\
         \x20 curl -s http://127.0.0.1:{ADMIN_PORT}/config                                  # the active routing table\n\n\
         The mesh: each service has a sidecar; call as a workload would, through its sidecar:\n\
         \x20 curl -s -x http://127.0.0.1:15101 -H \"Authorization: Bearer $TOKEN\" http://payment-service.shop/pay  # checkout-api → payment: 95 % v1, 5 % v2\n\
         \x20 curl -s -x http://127.0.0.1:15101 -H \"Authorization: Bearer $TOKEN\" -H 'Cookie: version=beta' http://payment-service.shop/pay  # always v2\n\
         \x20 curl -s -x http://127.0.0.1:15101 http://payment-service.shop/pay -i  # 401: payment wants the user's token passed on\n\
         \x20 curl -s -x http://127.0.0.1:15102 http://user-service.shop/users/1   # cart-api → user-service: one retry hides its failures\n\
         \x20 curl -s -x http://127.0.0.1:15102 'http://user-service.shop/slow?delay=3s' -i  # 504 after the 2 s timeout\n\
         \x20 curl -s -x http://127.0.0.1:15102 -H \"Authorization: Bearer $TOKEN\" http://payment-service.shop/pay -i  # 403: only checkout-api may call payment\n\
         \x20 curl -s http://127.0.0.1:15201/metrics | grep '^strait_requests_total'  # checkout-api's calls, by caller and callee\n\
         Sidecar admin ports (/metrics, /ready, /config): {}\n\
         One control plane on 127.0.0.1:{CA_PORT} feeds the gateway and every sidecar their configuration\n\
         and signs the sidecars' certificates; sidecars talk mutual TLS (root in {}/ca).\n\n\
         Edit the files in {} and watch strait reload them. Ctrl-C stops.\n",
        dir.display(),
        ca_file.display(),
        admins.join(", "),
        dir.display(),
        dir.display()
    );
    print_telemetry(dir, tracing);
}

/// Where to look at the demo's metrics, access log and traces.
fn print_telemetry(dir: &std::path::Path, tracing: &Tracing) {
    let edge = r#"reporter="source",source_workload="checkout-api",destination_service_name="payment-service""#;
    let traces = match tracing {
        Some((endpoint, _)) => format!("every hop's span goes to {endpoint} (OTLP)"),
        None => "off; `strait demo --tracing-endpoint http://127.0.0.1:4317` sends every hop's span to your OpenTelemetry collector".into(),
    };
    println!(
        "Telemetry (docs/observability.md):\n\
         \x20 metrics: http://127.0.0.1:{ADMIN_PORT}/metrics and each sidecar's admin port; checkout-api → payment-service's success rate, in PromQL:\n\
         \x20   sum(rate(strait_requests_total{{{edge},code!~\"5..\"}}[1m])) / sum(rate(strait_requests_total{{{edge}}}[1m]))\n\
         \x20 access log: tail -f {}   # the gateway's, one JSON line per request\n\
         \x20 traces: {traces}\n",
        access_log(dir).display(),
    );
}

/// The gateway's access log, one JSON object per request.
fn access_log(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("access.log")
}

/// Where the demo's mesh CA listens.
const CA_PORT: u16 = 15012;

/// The running control plane: each workload's token and the trust bundle.
struct DemoCa {
    tokens: std::collections::HashMap<&'static str, String>,
    bundle: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl DemoCa {
    /// How proxy `node` reaches the control plane.
    fn control(
        &self,
        dir: &std::path::Path,
        node: &str,
        role: &str,
    ) -> strait_api::client::ControlOptions {
        strait_api::client::ControlOptions {
            addr: format!("127.0.0.1:{CA_PORT}"),
            bundle: self.bundle.clone(),
            trust_domain: strait_identity::DEFAULT_TRUST_DOMAIN.into(),
            node: node.into(),
            role: role.into(),
            cache: Some(dir.join(format!(".cache-{}.json", node.replace('/', "_")))),
            // The demo's control plane is in this process, on 127.0.0.1.
            token: None,
        }
    }
}

/// The mesh CA, in this process: a root made in `dir/ca`, a random token
/// per ServiceAccount, one-day certificates.
async fn start_ca(dir: &std::path::Path, addr: SocketAddr) -> anyhow::Result<DemoCa> {
    use strait_identity::service::{serve_tls, server_tls, CaServer};
    let authority = strait_identity::Authority::open_or_create(
        &dir.join("ca"),
        strait_identity::DEFAULT_TRUST_DOMAIN,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let mut tokens = std::collections::HashMap::new();
    let mut by_token = strait_identity::service::Tokens::new();
    for Workload { service, .. } in WORKLOADS {
        let token = random_token()?;
        by_token.insert(
            token.clone(),
            strait_identity::SpiffeId::new(strait_identity::DEFAULT_TRUST_DOMAIN, "shop", service),
        );
        tokens.insert(service, token);
    }
    let bundle = authority.trust_bundle().to_vec();
    let tls = server_tls(&authority).map_err(|e| anyhow::anyhow!(e))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("starting the mesh CA on {addr}"))?;
    let ca = CaServer {
        authority: Arc::new(authority),
        authenticator: Arc::new(strait_identity::service::LocalTokens(Arc::new(
            arc_swap::ArcSwap::from_pointee(by_token),
        ))),
        ttl: Duration::from_secs(24 * 3600),
    };
    // The configuration stream on the same port: one control plane feeds
    // the gateway and every sidecar.
    let config = crate::control::publish_folder(dir.to_path_buf())?;
    tokio::spawn(serve_tls(
        listener,
        crate::control::Router::new(ca, config),
        tls,
    ));
    Ok(DemoCa { tokens, bundle })
}

fn random_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Appended to the example Gateway's listener list.
const HTTPS_LISTENER: &str = "  - name: https
    port: 8443
    protocol: HTTPS
    hostname: shop.example.com
    tls:
      certificateRefs:
      - name: shop-tls
";

/// A self-signed certificate for shop.example.com: the Secret manifest and
/// the certificate's PEM (for curl's --cacert).
fn demo_certificate() -> anyhow::Result<(String, String)> {
    use base64::Engine;
    let ck = rcgen::generate_simple_self_signed(vec!["shop.example.com".to_string()])?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let cert_pem = ck.cert.pem();
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: shop-tls, namespace: shop}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&cert_pem),
        b64(&ck.signing_key.serialize_pem())
    );
    Ok((secret, cert_pem))
}

/// Once the sidecars answer, makes the calls the scenario is about and
/// prints what happened: the canary split and the retry at work.
async fn show_the_mesh(token: String) {
    // payment-service wants the user's token, which checkout-api passes on.
    let user = format!("Authorization: Bearer {token}\r\n");
    let beta = format!("{user}Cookie: version=beta\r\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while call(15101, "payment-service.shop", "/pay", &user)
        .await
        .is_none()
    {
        if tokio::time::Instant::now() > deadline {
            eprintln!("strait demo: the mesh did not answer");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut v2 = 0;
    for _ in 0..200 {
        if let Some((200, body)) = call(15101, "payment-service.shop", "/pay", &user).await {
            if body.contains("\"service\":\"payment-service-v2\"") {
                v2 += 1;
            }
        }
    }
    let mut to_v2 = 0;
    for _ in 0..20 {
        if let Some((200, body)) = call(15101, "payment-service.shop", "/pay", &beta).await {
            to_v2 += usize::from(body.contains("\"service\":\"payment-service-v2\""));
        }
    }
    let mut ok = 0;
    for _ in 0..20 {
        ok += usize::from(matches!(
            call(15102, "user-service.shop", "/users/1", "").await,
            Some((200, _))
        ));
    }
    // What payment's app saw of its caller, and a caller it refuses.
    let caller = match call(15101, "payment-service-v1.shop", "/pay", &user).await {
        Some((200, body)) => body
            .split("\"X-Forwarded-Client-Cert\":[\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("(none)")
            .to_string(),
        other => format!("(no answer: {other:?})"),
    };
    let denied = match call(15102, "payment-service.shop", "/pay", &user).await {
        Some((status, body)) => format!("{status} {}", body.trim()),
        None => "no answer".into(),
    };
    println!(
        "The mesh at work (measured now):\n\
         \x20 checkout-api → payment-service: v2 answered {v2} of 200 calls (route: 95/5), \
         and {to_v2} of 20 with the version=beta cookie\n\
         \x20 cart-api → user-service: {ok} of 20 calls succeeded although user-service \
         has a pod failing every other answer (one retry, to the other pod; 2 s timeout)\n\
         \x20 every call above went sidecar to sidecar over mutual TLS; payment's app saw: {caller}\n\
         \x20 cart-api → payment-service: {denied}\n"
    );
}

/// One HTTP/1.1 call through a sidecar's outbound listener, as a workload
/// with `HTTP_PROXY` set makes it: the status and the body.
async fn call(proxy: u16, host: &str, path: &str, headers: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy))
        .await
        .ok()?;
    let req = format!(
        "GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}
