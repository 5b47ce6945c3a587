//! The `strait` binary: parses flags and calls the crates.

mod check;
mod control;
mod demo;
mod explain;
mod install;
mod webhook;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "strait",
    version,
    about = "Gateway API edge gateway and service mesh in one binary",
    after_help = "Logs go to stderr. STRAIT_LOG sets what is logged, as a level (error, warn, \
info, debug, trace) or per module (info,strait_proxy=debug); the default is info. \
Colour only when stderr is a terminal.\n\nStart with `strait demo`; docs/ holds the reference."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written: `text` for people, `json` (one object
    /// per line) for a log pipeline.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Gateways found in a folder of Kubernetes YAML.
    Gateway(GatewayArgs),
    /// Run as a workload's sidecar: inbound to the workload, outbound for
    /// its calls (explicit mode: the workload's HTTP_PROXY).
    Proxy(ProxyArgs),
    /// The control plane: configuration for every proxy (from a folder or
    /// a cluster) with its status, the mesh certificate authority, and the
    /// sidecar injection webhook.
    Control(control::ControlArgs),
    /// Print everything a Kubernetes cluster needs to run strait (CRDs,
    /// RBAC, the control plane, the gateway, the sidecar injector), for
    /// `strait install | kubectl apply -f -`.
    Install(install::InstallArgs),
    /// Install the iptables rules that capture a pod's TCP for its sidecar
    /// (what a sidecar's init container runs; needs NET_ADMIN).
    ProxyInit(ProxyInitArgs),
    /// Validate a folder of manifests without serving; exit 1 on errors.
    Check {
        /// Folder of *.yaml / *.yml manifests.
        dir: PathBuf,
        /// GatewayClasses with this controllerName are checked as served.
        #[arg(long, default_value = strait_config::DEFAULT_CONTROLLER_NAME)]
        controller_name: String,
    },
    /// What a gateway serving a folder would do with one request, phase by
    /// phase: listener, route and rule, policies and their decisions where
    /// the request alone decides them, filters, backends. Nothing is sent.
    Explain {
        /// Folder of *.yaml / *.yml manifests.
        dir: PathBuf,
        /// The request's method, e.g. GET.
        method: String,
        /// The request's absolute URL, e.g. http://shop.example.com/api/products?limit=5
        /// (the port picks the listener: 80 for http, 443 for https, else the URL's).
        url: String,
        /// A request header, 'name: value'; repeatable.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// GatewayClasses with this controllerName are served.
        #[arg(long, default_value = strait_config::DEFAULT_CONTROLLER_NAME)]
        controller_name: String,
        /// A call from this workload's sidecar instead (NS/NAME): the URL
        /// names a Service (http://cart.shop:8080/...), and both sidecars'
        /// parts are shown.
        #[arg(long, value_name = "NS/NAME")]
        from: Option<String>,
        /// The caller's ServiceAccount, its mesh identity (with --from).
        #[arg(long, default_value = "default", requires = "from")]
        service_account: String,
        /// The workload taking the call (NS/NAME; with --from). Default:
        /// the one named like the Service.
        #[arg(long, value_name = "NS/NAME", requires = "from")]
        to: Option<String>,
        /// The SPIFFE trust domain (with --from).
        #[arg(long, default_value = strait_identity::DEFAULT_TRUST_DOMAIN, requires = "from")]
        trust_domain: String,
    },
    /// Test backend answering like the Gateway API conformance echo server.
    Echo(EchoArgs),
    /// Run the reference shop on 127.0.0.1: a gateway, a control plane,
    /// sidecars and echo backends; prints what to try.
    Demo {
        /// Send every hop's spans over OTLP to this collector (e.g.
        /// http://127.0.0.1:4317); off when unset.
        #[arg(long)]
        tracing_endpoint: Option<String>,
        /// The OTLP protocol: grpc or http/protobuf.
        #[arg(long, default_value = "grpc")]
        tracing_protocol: strait_proxy::traces::Protocol,
    },
}

#[derive(clap::Args)]
struct GatewayArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Address the Gateway listeners bind.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// GatewayClasses with this controllerName are served.
    #[arg(long, default_value = strait_config::DEFAULT_CONTROLLER_NAME)]
    controller_name: String,
}

#[derive(clap::Args)]
struct ProxyArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// The workload this sidecar runs beside, as NAMESPACE/NAME: the name
    /// policies target (a Deployment's) and metrics label.
    #[arg(long)]
    workload: String,
    /// This instance's name (a pod's), as the control plane knows it;
    /// default: the workload's.
    #[arg(long)]
    pod: Option<String>,
    /// The workload's ServiceAccount: what AuthorizationPolicy principals
    /// name, and its SPIFFE identity with --ca.
    #[arg(long, default_value = "default")]
    service_account: String,
    /// The port the workload listens on, on 127.0.0.1.
    #[arg(long)]
    app_port: u16,
    /// Where traffic for the workload arrives.
    #[arg(long, default_value = "0.0.0.0:15006")]
    inbound_listen: SocketAddr,
    /// Where the workload's calls arrive (its HTTP_PROXY in explicit mode).
    #[arg(long, default_value = "127.0.0.1:15001")]
    outbound_listen: SocketAddr,
    /// Destinations that are not Services: `passthrough` or `refuse`.
    #[arg(long, default_value = "passthrough", value_parser = ["passthrough", "refuse"])]
    outbound_unknown: String,
    /// The mesh CA (`strait control`): with it the sidecar gets a workload
    /// certificate and speaks mutual TLS to other sidecars.
    #[arg(long, requires_all = ["trust_bundle", "token_file"])]
    ca: Option<String>,
}

#[derive(clap::Args)]
struct EchoArgs {
    /// Where to listen; port 0 lets the system choose, and the address
    /// is printed on stdout either way.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// The namespace the echo reports being in.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// The Service name the echo reports.
    #[arg(long, default_value = "echo")]
    service: String,
    /// The pod name the echo reports.
    #[arg(long, default_value = "echo-0")]
    pod: String,
    /// Answer every N-th HTTP request with 503 (a test aid; 0: never).
    #[arg(long, default_value_t = 0)]
    fail_every: u64,
    /// Wait this long before every HTTP answer (a test aid).
    #[arg(long, default_value = "0s", value_parser = go_duration)]
    delay: Duration,
}

#[derive(clap::Args)]
struct ProxyInitArgs {
    /// The sidecar's UID: its own traffic is never captured.
    #[arg(long, default_value_t = 1337)]
    proxy_uid: u32,
    /// The sidecar's inbound port: where the pod's inbound TCP is sent.
    #[arg(long, default_value_t = 15006)]
    inbound_port: u16,
    /// The sidecar's outbound port: where the pod's outbound TCP is sent.
    #[arg(long, default_value_t = 15001)]
    outbound_port: u16,
    /// Inbound ports left alone (the sidecar's admin port, say), comma-separated.
    #[arg(long, value_delimiter = ',')]
    exclude_inbound_ports: Vec<u16>,
    /// Outbound ports left alone, comma-separated.
    #[arg(long, value_delimiter = ',')]
    exclude_outbound_ports: Vec<u16>,
    /// Print the rules instead of installing them.
    #[arg(long)]
    dry_run: bool,
}

/// Flags of every serving role.
#[derive(clap::Args)]
struct ServeArgs {
    /// Folder of *.yaml / *.yml manifests, watched for changes (or take
    /// the configuration from a control plane with --control).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Take the configuration from the control plane (`strait control`)
    /// instead of a folder: HOST:PORT, checked with --trust-bundle.
    #[arg(long, requires = "trust_bundle", conflicts_with = "config")]
    control: Option<String>,
    /// Where the last configuration from the control plane is kept, to
    /// start from when the control plane is unreachable (default: a file
    /// named after the proxy in the temporary folder).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// A ServiceAccount token (a projected one is read again each time):
    /// the proxy's proof of identity to the CA and to the control plane.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Roots to check the control plane and the CA with (the control
    /// plane's trust-bundle.pem).
    #[arg(long)]
    trust_bundle: Option<PathBuf>,
    /// The SPIFFE trust domain (Kubernetes' default cluster domain).
    #[arg(long, default_value = strait_identity::DEFAULT_TRUST_DOMAIN)]
    trust_domain: String,
    /// Admin endpoint (/ready, /live, /metrics, /config), e.g.
    /// 127.0.0.1:9901; off when unset.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Once ready, write the address of every socket served to this file,
    /// one `ROLE ADDRESS` line each (admin, gateway, inbound, outbound):
    /// how a script learns the port a `:0` address was given.
    #[arg(long)]
    ports_file: Option<PathBuf>,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Seconds in-flight requests and joined connections (WebSockets,
    /// tunnels, TCP routes) get to finish after SIGTERM; then WebSockets
    /// get a close frame (1001, going away).
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
    /// Joined connections (TCP, TLS passthrough, WebSocket and other
    /// upgrades) close after this long with no byte either way; 0 is never.
    #[arg(long, default_value = "1h", value_parser = go_duration)]
    stream_idle_timeout: Duration,
    /// Joined connections close this long after they were joined; 0 is never.
    #[arg(long, default_value = "0s", value_parser = go_duration)]
    stream_max_duration: Duration,
    /// Longest request line (method and target), in bytes; longer is
    /// answered 414 and the connection closed.
    #[arg(long, default_value_t = strait_proxy::limits::MAX_REQUEST_LINE)]
    max_request_line: usize,
    /// Longest header line (name and value), in bytes; longer is answered 431.
    #[arg(long, default_value_t = strait_proxy::limits::MAX_HEADER_LINE)]
    max_header_line: usize,
    /// All request header lines together, in bytes; more is answered 431.
    #[arg(long, default_value_t = strait_proxy::limits::MAX_REQUEST_HEADERS)]
    max_request_headers: usize,
    /// Largest request body, in bytes; larger is answered 413 (before it is
    /// sent on when Content-Length says so). No limit when unset: bodies
    /// are streamed, never buffered.
    #[arg(long)]
    max_request_body: Option<u64>,
    /// Time a client has to send a request's headers from their first byte
    /// (also the idle time of a kept-alive HTTP/1.1 connection); checked
    /// every quarter of it.
    #[arg(long, default_value = "30s", value_parser = go_duration)]
    header_read_timeout: Duration,
    /// Longest wait for the next part of a request body; longer is
    /// answered 408 and the connection closed.
    #[arg(long, default_value = "60s", value_parser = go_duration)]
    request_body_timeout: Duration,
    /// Bytes per second an HTTP/1.x request body must average, not
    /// counting its first 5 s of waiting on the client, nor time the
    /// backend takes to read; slower is answered 408 and the connection
    /// closed. Not for gRPC or HTTP/2 streams. 0 is none.
    #[arg(long, default_value_t = strait_proxy::limits::MIN_BODY_RATE)]
    min_request_body_rate: u64,
    /// Longest a backend may send nothing in the middle of its response
    /// body; longer, the response is cut off. 0 is never. (The wait for
    /// response headers is the route's timeouts.)
    #[arg(long, default_value = "5m", value_parser = go_duration)]
    backend_idle_timeout: Duration,
    /// Longest a client may leave a response unread while there is more
    /// of it to send (an HTTP/2 window left shut, a TCP window full);
    /// longer, its connection closes. 0 is never.
    #[arg(long, default_value = "60s", value_parser = go_duration)]
    send_timeout: Duration,
    /// Downstream connections served at once; more wait in the kernel's
    /// accept queue until one closes. 0 is no limit.
    #[arg(long, default_value_t = strait_proxy::limits::MAX_CONNECTIONS)]
    max_connections: usize,
    /// Proxies in front of this one that append the address they saw to
    /// X-Forwarded-For (a load balancer: 1). The client a SecurityPolicy's
    /// clientCIDRs judge is the entry this many from its right; 0 is the
    /// connection's peer, whatever the header says.
    #[arg(long, default_value_t = 0)]
    xff_trusted_hops: usize,
    /// Write an access log, one line per request: `-` for stdout, or a
    /// file appended to. Off when unset, except where a TelemetryPolicy
    /// turns it on (to stdout); strait's own failures are logged as
    /// warnings either way.
    #[arg(long)]
    access_log: Option<String>,
    /// The access log's format: json (one object per line) or text.
    #[arg(long, default_value = "json")]
    access_log_format: strait_proxy::access_log::Format,
    /// The share of requests the access log writes, 0.0 to 1.0, where no
    /// TelemetryPolicy says otherwise.
    #[arg(long, default_value_t = 1.0, value_parser = share)]
    access_log_sample: f64,
    /// Export a span per request over OTLP to this collector, e.g.
    /// http://127.0.0.1:4317 (gRPC) or http://127.0.0.1:4318/v1/traces
    /// (HTTP). Off when unset: `traceparent` then passes untouched.
    #[arg(long)]
    tracing_endpoint: Option<String>,
    /// The OTLP protocol: grpc or http/protobuf.
    #[arg(long, default_value = "grpc")]
    tracing_protocol: strait_proxy::traces::Protocol,
    /// The share of new traces sampled, 0.0 to 1.0, where no
    /// TelemetryPolicy says otherwise; a caller's sampling decision (in
    /// `traceparent` or B3) is kept.
    #[arg(long, default_value_t = 1.0, value_parser = share)]
    tracing_sample: f64,
}

fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("{text:?}: a share is a number from 0.0 to 1.0")),
    }
}

/// A duration as Go and Gateway API write it: `1h`, `30s`, `500ms`.
fn go_duration(text: &str) -> Result<Duration, String> {
    strait_config::duration::parse_go(text).map_err(|e| e.to_string())
}

fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match workers {
        // One worker: the thread that waits on epoll runs the task it
        // wakes, with no hand-off to another thread (a sidecar's case).
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build().context("starting the runtime")
}

/// Logs to stderr: STRAIT_LOG's filter, colour only for a terminal.
fn logging(format: &str) {
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRAIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        "json" => builder.json().init(),
        _ => builder.init(),
    }
}

/// What clap cannot say alone: a serving role needs one configuration
/// source, and the error names both.
fn source_given(command: &Command) -> Result<(), clap::Error> {
    let (name, serve) = match command {
        Command::Gateway(a) => ("gateway", &a.serve),
        Command::Proxy(a) => ("proxy", &a.serve),
        _ => return Ok(()),
    };
    if serve.config.is_some() || serve.control.is_some() {
        return Ok(());
    }
    let mut root = <Cli as clap::CommandFactory>::command().bin_name("strait");
    root.build();
    let mut usage = root.find_subcommand_mut(name).cloned().unwrap_or(root);
    Err(usage.error(
        clap::error::ErrorKind::MissingRequiredArgument,
        "where is the configuration? Give --config DIR (a folder of manifests, \
         watched for changes) or --control HOST:PORT (a control plane, with --trust-bundle)",
    ))
}

/// jemalloc, whose background thread hands memory a peak freed back to the
/// system within a second: glibc's allocator kept a reload's peak resident
/// (holes among the live tables it cannot return), 80 MiB at 10,000 routes
/// that live in 25 (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = source_given(&cli.command) {
        let _ = e.print();
        return std::process::ExitCode::from(2);
    }
    logging(&cli.log_format);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strait: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<std::process::ExitCode> {
    match command {
        Command::Gateway(args) => gateway(args)?,
        Command::Proxy(args) => proxy(args)?,
        Command::Control(args) => runtime(None)?.block_on(control::run(args))?,
        Command::ProxyInit(args) => proxy_init(args)?,
        Command::Check {
            dir,
            controller_name,
        } => return Ok(check::run(&dir, &controller_name)),
        Command::Explain {
            dir,
            method,
            url,
            headers,
            controller_name,
            from,
            service_account,
            to,
            trust_domain,
        } => {
            let q = explain::Question {
                method,
                url,
                headers,
            };
            let workload = |flag: &str, v: Option<String>| -> anyhow::Result<_> {
                v.map(|v| match v.split_once('/') {
                    Some((ns, name))
                        if !ns.is_empty() && !name.is_empty() && !name.contains('/') =>
                    {
                        Ok((ns.to_string(), name.to_string()))
                    }
                    _ => Err(anyhow::anyhow!("--{flag} {v:?}: give NAMESPACE/NAME")),
                })
                .transpose()
            };
            let from = workload("from", from)?;
            let to = workload("to", to)?;
            let who = from.map(|from| explain::mesh::Workloads {
                from,
                service_account,
                to,
                trust_domain,
            });
            return Ok(explain::run(&dir, &controller_name, &q, who.as_ref()));
        }
        Command::Install(args) => return install::run(args),
        Command::Echo(args) => echo(args)?,
        Command::Demo {
            tracing_endpoint,
            tracing_protocol,
        } => {
            let dir = demo::DemoDir::new();
            let rt = runtime(None)?;
            let tracing = tracing_endpoint.map(|e| (e, tracing_protocol));
            let result = rt.block_on(demo::run(&dir, tracing));
            // Every task stops before the folder goes.
            drop(rt);
            drop(dir);
            result?
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let workers = args.serve.workers;
    let compile = strait_route::CompileOptions {
        controller_name: args.controller_name,
    };
    let opts = args
        .serve
        .options(args.bind_address, compile, (None, None))?;
    runtime(workers)?.block_on(strait_proxy::run(opts, std::future::pending()))
}

fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let (namespace, workload) = args
        .workload
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        .with_context(|| format!("--workload {:?} is not NAMESPACE/NAME", args.workload))?;
    let rt = runtime(args.serve.workers)?;
    let identity = match (&args.ca, &args.serve.trust_bundle, &args.serve.token_file) {
        (Some(ca), Some(bundle), Some(token)) => {
            let id = strait_identity::SpiffeId::new(
                &args.serve.trust_domain,
                namespace,
                &args.service_account,
            );
            let agent = identity_agent(id, ca, bundle, token)?;
            // Meshed traffic needs the certificate: serve once it is in place.
            rt.block_on(agent.first());
            rt.spawn(agent.clone().run());
            Some(agent)
        }
        _ => None,
    };
    let sidecar = strait_proxy::sidecar::SidecarOptions {
        identity,
        namespace: namespace.to_string(),
        workload: workload.to_string(),
        service_account: args.service_account,
        app_port: args.app_port,
        inbound: args.inbound_listen,
        outbound: args.outbound_listen,
        refuse_unknown: args.outbound_unknown == "refuse",
    };
    let compile = strait_route::CompileOptions::default();
    let opts = args
        .serve
        .options(args.inbound_listen.ip(), compile, (Some(sidecar), args.pod))?;
    rt.block_on(strait_proxy::run(opts, std::future::pending()))
}

/// The sidecar's certificate agent: the CA checked with `bundle`, the
/// token read once now so that a wrong path fails at start.
fn identity_agent(
    id: strait_identity::SpiffeId,
    ca: &str,
    bundle: &std::path::Path,
    token: &std::path::Path,
) -> anyhow::Result<Arc<strait_identity::agent::Agent>> {
    let pem = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let roots = strait_identity::ca::certs(&pem, &bundle.display().to_string())
        .map_err(|e| anyhow::anyhow!(e))?;
    let token = strait_identity::agent::Token::File(token.to_path_buf());
    token.read().map_err(|e| anyhow::anyhow!(e))?;
    Ok(strait_identity::agent::Agent::new(
        id,
        ca.to_string(),
        token,
        roots,
    ))
}

fn proxy_init(args: ProxyInitArgs) -> anyhow::Result<()> {
    let rules = strait_proxy::capture::CaptureRules {
        proxy_uid: args.proxy_uid,
        inbound_port: args.inbound_port,
        outbound_port: args.outbound_port,
        exclude_inbound: args.exclude_inbound_ports,
        exclude_outbound: args.exclude_outbound_ports,
    }
    .iptables_restore();
    if args.dry_run {
        print!("{rules}");
        return Ok(());
    }
    install_rules(&rules)?;
    eprintln!("strait proxy-init: capture rules installed");
    Ok(())
}

fn echo(args: EchoArgs) -> anyhow::Result<()> {
    let info = Arc::new(strait_echo::EchoInfo {
        fail_every: args.fail_every,
        delay: args.delay,
        ..strait_echo::EchoInfo::new(&args.namespace, &args.service, &args.pod)
    });
    runtime(None)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        // Tests read this line to learn the port when --listen asks for port 0.
        println!("listening on {}", listener.local_addr()?);
        strait_echo::serve(listener, info).await;
        Ok(())
    })
}

impl ServeArgs {
    fn options(
        self,
        bind_address: IpAddr,
        compile: strait_route::CompileOptions,
        (sidecar, pod): (
            Option<strait_proxy::sidecar::SidecarOptions>,
            Option<String>,
        ),
    ) -> anyhow::Result<strait_proxy::GatewayOptions> {
        // Spans name a sidecar's workload, as Istio's name its app.
        let service = match &sidecar {
            Some(s) => (s.workload.clone(), Some(s.namespace.clone())),
            None => ("strait-gateway".to_string(), None),
        };
        let (node, role) = match &sidecar {
            Some(s) => {
                let instance = pod.as_deref().unwrap_or(&s.workload);
                (format!("{}/{instance}", s.namespace), "sidecar")
            }
            // A pod's name in a cluster.
            None => match std::env::var("HOSTNAME") {
                Ok(host) if !host.is_empty() => (host, "gateway"),
                _ => (format!("gateway-{}", std::process::id()), "gateway"),
            },
        };
        let control = match (self.control, &self.trust_bundle) {
            (Some(addr), Some(bundle)) => {
                let pem = std::fs::read(bundle)
                    .with_context(|| format!("reading {}", bundle.display()))?;
                let bundle = strait_identity::ca::certs(&pem, &bundle.display().to_string())
                    .map_err(|e| anyhow::anyhow!(e))?;
                let cache = self.cache.unwrap_or_else(|| {
                    std::env::temp_dir().join(format!("strait-{}.json", node.replace('/', "_")))
                });
                Some(strait_api::client::ControlOptions {
                    addr,
                    bundle,
                    trust_domain: self.trust_domain,
                    node,
                    role: role.into(),
                    cache: Some(cache),
                    token: self.token_file.map(strait_identity::agent::Token::File),
                })
            }
            _ => None,
        };
        Ok(strait_proxy::GatewayOptions {
            config_dir: self.config.unwrap_or_default(),
            bind_address,
            admin: self.admin,
            ports_file: self.ports_file,
            compile,
            drain_timeout: Duration::from_secs(self.drain_timeout),
            stream_limits: strait_proxy::splice::SpliceLimits {
                idle: Some(self.stream_idle_timeout).filter(|d| !d.is_zero()),
                max_duration: Some(self.stream_max_duration).filter(|d| !d.is_zero()),
            },
            http_limits: strait_proxy::limits::HttpLimits {
                request_line: self.max_request_line,
                header_line: self.max_header_line,
                headers: self.max_request_headers,
                body: self.max_request_body,
                header_read: self.header_read_timeout,
                body_pace: strait_proxy::limits::BodyPace {
                    idle: self.request_body_timeout,
                    min_rate: self.min_request_body_rate,
                },
                backend_idle: self.backend_idle_timeout,
                send: self.send_timeout,
                connections: self.max_connections,
                trusted_hops: self.xff_trusted_hops,
            },
            sidecar,
            control,
            access_log: self
                .access_log
                .map(|target| strait_proxy::access_log::Options {
                    target,
                    format: self.access_log_format,
                    sample: self.access_log_sample,
                }),
            traces: self
                .tracing_endpoint
                .map(|endpoint| strait_proxy::traces::Options {
                    endpoint,
                    protocol: self.tracing_protocol,
                    sample: self.tracing_sample,
                    service: service.0,
                    namespace: service.1,
                }),
        })
    }
}

/// Feeds the rules to `iptables-restore --noflush` (one atomic change).
fn install_rules(rules: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = std::process::Command::new("iptables-restore")
        .arg("--noflush")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("running iptables-restore (is iptables installed?)")?;
    child
        .stdin
        .take()
        .context("iptables-restore stdin")?
        .write_all(rules.as_bytes())?;
    let status = child.wait()?;
    anyhow::ensure!(
        status.success(),
        "iptables-restore refused the rules ({status})"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every flag of every subcommand says what it does.
    #[test]
    fn every_flag_is_described() {
        let root = Cli::command();
        let mut missing = Vec::new();
        let mut commands = vec![root];
        while let Some(command) = commands.pop() {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if arg.get_help().is_none() && !builtin {
                    missing.push(format!("{} --{}", command.get_name(), arg.get_id()));
                }
            }
            commands.extend(command.get_subcommands().cloned());
        }
        assert!(
            missing.is_empty(),
            "flags without a description: {missing:?}"
        );
    }
}
