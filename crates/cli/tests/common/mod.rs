//! Test kit: real `strait` processes on 127.0.0.1, a real HTTP client, and
//! manifests written to a temporary folder.
#![allow(dead_code)]

pub mod ext_authz;
pub mod identity;
pub mod jwt;
pub mod kube_api;
pub mod oidc;
pub mod otlp;
pub mod redis;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const STRAIT: &str = env!("CARGO_BIN_EXE_strait");

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Waits for the process to exit, at most `secs` seconds.
    pub async fn exit_within(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

/// A folder removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "strait-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file the way editors and kubectl do: whole, then renamed in.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, self.0.join(name)).expect("rename");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port for a manifest to name (a Gateway listener, a sidecar's inbound
/// port), which must be known before the process starts. Sockets the
/// process opens itself are given port 0 and read back from its ports
/// file. These ports lie below the kernel's ephemeral range, so no
/// outgoing connection and no port-0 socket can take one between here
/// and the bind, and a file per port in the temporary folder keeps two
/// test processes from picking the same one.
pub fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = if low > 12_000 {
        (10_000, low)
    } else {
        (61_000, 65_535)
    };
    let claims = std::env::temp_dir().join("strait-test-ports");
    let _ = std::fs::create_dir_all(&claims);
    let seed = std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        (std::process::id(), Instant::now()),
    );
    let span = u64::from(to - from);
    for i in 0..span {
        let port = from + ((seed + i * 7919) % span) as u16;
        if claim(&claims.join(port.to_string()))
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in {from}..{to}");
}

/// Claims a port's file: new, or left by a test long finished.
fn claim(file: &Path) -> bool {
    let fresh = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .is_ok();
    let stale = || {
        std::fs::metadata(file)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(900)))
    };
    fresh || (stale() && std::fs::write(file, b"").is_ok())
}

/// Calls `check` every 25 ms until it gives `Some`, for at most `secs`
/// seconds; then fails with `what` (a process's log, say).
pub async fn eventually<T, F, Fut>(secs: u64, what: impl Fn() -> String, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {secs} s: {}", what());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The sockets a process reported in its `--ports-file`, by role, once
/// the file is there; `None` while it is not.
pub fn read_ports(file: &Path) -> Option<Vec<(String, u16)>> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .map(|l| {
            let (role, addr) = l.split_once(' ')?;
            let port = addr.rsplit(':').next()?.parse().ok()?;
            Some((role.to_string(), port))
        })
        .collect()
}

/// Waits for `proc` to write its ports file; fails at once if it exits.
async fn wait_ports(proc: &mut Proc, file: &Path, log: &Path) -> Vec<(String, u16)> {
    let logs = || std::fs::read_to_string(log).unwrap_or_default();
    eventually(10, logs, || {
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!("{} exited with {status}:\n{}", log.display(), logs());
        }
        std::future::ready(read_ports(file))
    })
    .await
}

/// The port of the socket with `role` in a ports file's list.
fn port_of(ports: &[(String, u16)], role: &str) -> u16 {
    ports
        .iter()
        .find(|(r, _)| r == role)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("no {role} socket in {ports:?}"))
}

/// A `strait echo` process.
pub struct Echo {
    pub port: u16,
    _proc: Proc,
}

pub fn echo(service: &str, pod: &str) -> Echo {
    echo_with(service, pod, &[])
}

/// An echo with extra flags (`--fail-every N`, say).
pub fn echo_with(service: &str, pod: &str, extra: &[&str]) -> Echo {
    let mut child = Command::new(STRAIT)
        .args(["echo", "--listen", "127.0.0.1:0", "--namespace", "default"])
        .args(["--service", service, "--pod", pod])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn echo");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("echo prints its address");
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected echo banner {line:?}"));
    Echo {
        port,
        _proc: Proc(child),
    }
}

/// A `strait gateway` process serving a folder.
pub struct Gateway {
    pub admin: u16,
    pub log: PathBuf,
    pub proc: Proc,
}

impl Gateway {
    pub async fn start(dir: &TempDir) -> Gateway {
        Self::start_with(dir, &[]).await
    }

    pub async fn start_with(dir: &TempDir, extra: &[&str]) -> Gateway {
        let folder = dir.path().to_string_lossy().into_owned();
        Self::launch(dir, &[&["--config", folder.as_str()], extra].concat()).await
    }

    /// A gateway with `args` saying where its configuration comes from
    /// (`--config DIR`, or `--control ADDR ...`); its log beside `dir`.
    pub async fn launch(dir: &TempDir, args: &[&str]) -> Gateway {
        let log = dir.path().with_extension("log");
        let ports = dir.path().with_extension("ports");
        let _ = std::fs::remove_file(&ports);
        let child = Command::new(STRAIT)
            .arg("gateway")
            .args(args)
            .args(["--bind-address", "127.0.0.1", "--workers", "2"])
            .args(["--admin", "127.0.0.1:0"])
            .arg("--ports-file")
            .arg(&ports)
            .env("STRAIT_LOG", "info")
            .stdout(std::fs::File::create(log.with_extension("out")).expect("stdout file"))
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn gateway");
        let mut proc = Proc(child);
        let admin = port_of(&wait_ports(&mut proc, &ports, &log).await, "admin");
        Gateway { admin, log, proc }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What it wrote on stdout (an access log without a file of its own).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default()
    }

    pub async fn config(&self) -> serde_json::Value {
        send(get(self.admin, "admin", "/config"))
            .await
            .expect("admin /config")
            .json()
    }

    pub async fn metrics(&self) -> String {
        let r = send(get(self.admin, "admin", "/metrics"))
            .await
            .expect("metrics");
        String::from_utf8_lossy(&r.body).into_owned()
    }

    /// Waits until the gateway has accepted `generation` configurations.
    pub async fn wait_generation(&self, generation: u64) {
        eventually(
            10,
            || format!("no reload:\n{}", self.logs()),
            || async {
                (self.config().await["generation"].as_u64() >= Some(generation)).then_some(())
            },
        )
        .await
    }

    pub fn signal(&self, name: &str) {
        // The shell's builtin kill: no procps needed on a bare machine.
        let ok = Command::new("sh")
            .args(["-c", &format!("kill -{name} {}", self.proc.0.id())])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `service` the echo backend reports; `<status reason>` when
    /// strait answered itself (its `x-strait-reason`, with a body saying
    /// why), `<status>` for any other answer.
    pub fn service(&self) -> String {
        if self.status == 200
            && self
                .headers
                .get("content-type")
                .is_some_and(|c| c == "application/json")
        {
            return self.json()["service"].as_str().unwrap_or("").to_string();
        }
        match self.reason() {
            Some(reason) => {
                assert!(!self.body.is_empty(), "{reason}: an answer without a body");
                format!("<{} {reason}>", self.status)
            }
            None => format!("<{}>", self.status),
        }
    }

    /// The `x-strait-reason` of an answer strait made itself.
    pub fn reason(&self) -> Option<&str> {
        self.headers.get("x-strait-reason")?.to_str().ok()
    }
}

/// Serves `handle` on an ephemeral loopback port, HTTP/1.1 and HTTP/2
/// alike, for the test's length; the port.
pub async fn serve_loopback<F, Fut, B>(handle: F) -> u16
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<http::Response<B>, std::convert::Infallible>>
        + Send
        + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a test server");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(handle);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    port
}

pub fn get(port: u16, host: &str, path: &str) -> Request<Full<Bytes>> {
    request("GET", port, host, path, &[])
}

pub fn request(
    method: &str,
    port: u16,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).expect("request")
}

pub async fn send(req: Request<Full<Bytes>>) -> Result<Resp, String> {
    thread_local! {
        static CLIENT: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
    }
    let client = CLIENT.with(|c| c.clone());
    send_with(&client, req).await
}

pub async fn send_with(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<Resp, String> {
    let r = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// GatewayClass + Gateway `gw` (namespace default) with one HTTP listener.
pub fn gateway_yaml(port: u16) -> String {
    gateway_with(&format!(
        "  - {{name: http, port: {port}, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}\n"
    ))
}

/// GatewayClass + Gateway `gw` (namespace default) with these listeners
/// (YAML list items, indented two spaces).
pub fn gateway_with(listeners: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: strait}}
spec: {{controllerName: strait.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: strait
  listeners:
{listeners}"#
    )
}

/// Calls made over and over in the background, `pause` apart, until
/// stopped; each call reports whether each of its requests succeeded.
pub struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Traffic {
    pub fn start<F, Fut>(pause: Duration, mut call: F) -> Traffic
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Vec<bool>> + Send,
    {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            while !stopped.load(Ordering::Relaxed) {
                for good in call().await {
                    if good {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
                tokio::time::sleep(pause).await;
            }
            (ok, failed)
        });
        Traffic { stop, task }
    }

    /// Stops it: how many requests succeeded, and how many failed.
    pub async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("traffic")
    }
}

/// HTTPRoute `name` on Gateway `gw`: requests under `prefix` to Service
/// `service` port 80; `extra` is more YAML for the rule (4-space indent).
pub fn prefix_route(name: &str, prefix: &str, service: &str, extra: &str) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]
    backendRefs: [{{name: {service}, port: 80}}]
{extra}"#
    )
}

/// A Service (port 80) whose one endpoint is 127.0.0.1:`echo_port`.
pub fn service_yaml(name: &str, echo_port: u16, app_protocol: Option<&str>) -> String {
    let app = app_protocol.map_or(String::new(), |p| format!(", appProtocol: {p}"));
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec: {{ports: [{{name: http, port: 80{app}}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
endpoints: [{{addresses: ["127.0.0.1"]}}]
ports: [{{name: http, port: {echo_port}}}]
"#
    )
}

/// A TLS connection to 127.0.0.1:`port` for `sni`, trusting `roots`,
/// offering `alpn`, presenting `client` (chain and PEM key) when given.
pub async fn tls_connect(
    port: u16,
    sni: &str,
    roots: &[rustls::pki_types::CertificateDer<'static>],
    alpn: &[&[u8]],
    client: Option<(&[rustls::pki_types::CertificateDer<'static>], &str)>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).map_err(|e| e.to_string())?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store);
    let mut config = match client {
        Some((chain, key)) => {
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| e.to_string())?;
            builder
                .with_client_auth_cert(chain.to_vec(), key)
                .map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name =
        rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// An HTTP/2 (prior knowledge) client connection over `io`.
pub async fn h2_over<I, B>(io: I) -> hyper::client::conn::http2::SendRequest<B>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (send, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

/// An HTTP/1.1 client connection over `io`.
pub async fn h1_over<I, B>(io: I) -> hyper::client::conn::http1::SendRequest<B>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    send
}

/// Bytes that must not get past a TLS port's handshake, with the reason
/// strait counts them under: a plaintext HTTP request, a ClientHello cut
/// off after its first bytes (the client then half-closes), and a record
/// announcing a ClientHello larger than any real one (128 KiB).
pub fn bad_client_hellos() -> Vec<(Vec<u8>, &'static str)> {
    let plain = b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n".to_vec();
    let truncated = vec![
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ];
    let mut huge = vec![
        0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x02, 0x00, 0x00, 0x03, 0x03,
    ];
    huge.resize(5 + 0x4000, 0x41);
    vec![
        (plain, "not_tls"),
        (truncated, "truncated"),
        (huge, "too_large"),
    ]
}

/// Sends each of [`bad_client_hellos`] to `port` on its own connection and
/// checks that the connection is closed without an answer and counted
/// under its reason in `strait_tls_handshake_errors_total`.
pub async fn assert_bad_hellos_refused(gw: &Gateway, port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for (bytes, reason) in bad_client_hellos() {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let _ = s.write_all(&bytes).await;
        if reason == "truncated" {
            let _ = s.shutdown().await;
        }
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "{reason}: connection left hanging");
        // A TLS alert (content type 21) is a fine answer; anything else is not.
        assert!(
            rest.is_empty() || rest[0] == 0x15,
            "{reason}: answered {rest:?}"
        );
        let needle = format!("reason=\"{reason}\"");
        let metrics = gw.metrics().await;
        let counted: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("strait_tls_handshake_errors_total") && l.contains(&needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(counted, 1.0, "{reason}: {metrics}");
    }
}

/// A `strait proxy` process beside a workload.
pub struct Sidecar {
    pub outbound: u16,
    pub admin: u16,
    pub log: std::path::PathBuf,
    pub proc: Proc,
}

impl Sidecar {
    pub async fn start(
        dir: &TempDir,
        workload: &str,
        app_port: u16,
        inbound: u16,
        extra: &[&str],
    ) -> Sidecar {
        let folder = dir.path().to_string_lossy().into_owned();
        let args = [&["--config", folder.as_str()], extra].concat();
        Self::launch(dir, workload, app_port, inbound, &args).await
    }

    /// A sidecar with `args` saying where its configuration comes from.
    pub async fn launch(
        dir: &TempDir,
        workload: &str,
        app_port: u16,
        inbound: u16,
        args: &[&str],
    ) -> Sidecar {
        let log = dir
            .path()
            .with_extension(format!("{}.log", workload.replace('/', "-")));
        let ports = log.with_extension("ports");
        let _ = std::fs::remove_file(&ports);
        let child = Command::new(STRAIT)
            .arg("proxy")
            .args(["--workload", workload, "--app-port", &app_port.to_string()])
            .args(["--inbound-listen", &format!("127.0.0.1:{inbound}")])
            .args(["--outbound-listen", "127.0.0.1:0"])
            .args(["--admin", "127.0.0.1:0", "--workers", "2"])
            .arg("--ports-file")
            .arg(&ports)
            .args(args)
            .env("STRAIT_LOG", "info")
            .stdout(std::fs::File::create(log.with_extension("out")).expect("stdout file"))
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn proxy");
        let mut proc = Proc(child);
        let found = wait_ports(&mut proc, &ports, &log).await;
        Sidecar {
            outbound: port_of(&found, "outbound"),
            admin: port_of(&found, "admin"),
            log,
            proc,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What it wrote on stdout (an access log without a file of its own).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        let r = send(get(self.admin, "admin", "/metrics"))
            .await
            .expect("metrics");
        String::from_utf8_lossy(&r.body).into_owned()
    }
}

/// What the workload does: an HTTP request through its HTTP_PROXY, in
/// absolute form, on a connection of its own.
pub async fn call(proxy: u16, url: &str, headers: &[(&str, &str)]) -> Resp {
    call_method(proxy, "GET", url, headers).await
}

/// `call` with another method (and no body).
pub async fn call_method(proxy: u16, method: &str, url: &str, headers: &[(&str, &str)]) -> Resp {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy))
        .await
        .expect("connect to the outbound listener");
    let mut send = h1_over::<_, Empty<Bytes>>(tcp).await;
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = send
        .send_request(req.body(Empty::new()).expect("request"))
        .await
        .expect("response");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.expect("body").to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

/// `strait check` of `dir`: its exit code and what it printed.
pub fn check(dir: &TempDir) -> (Option<i32>, String) {
    let out = std::process::Command::new(STRAIT)
        .arg("check")
        .arg(dir.path())
        .output()
        .expect("strait check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
