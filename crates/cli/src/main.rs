//! The `strait` binary: parses flags and calls the crates.

mod check;
mod demo;

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
    about = "Gateway API edge gateway and service mesh in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Gateways found in a folder of Kubernetes YAML.
    Gateway(GatewayArgs),
    /// Validate a folder of manifests without serving; exit 1 on errors.
    Check {
        /// Folder of *.yaml / *.yml manifests.
        dir: PathBuf,
        #[arg(long, default_value = strait_config::DEFAULT_CONTROLLER_NAME)]
        controller_name: String,
    },
    /// Test backend answering like the Gateway API conformance echo server.
    Echo {
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        #[arg(long, default_value = "default")]
        namespace: String,
        #[arg(long, default_value = "echo")]
        service: String,
        #[arg(long, default_value = "echo-0")]
        pod: String,
    },
    /// Run the reference shop's edge on 127.0.0.1 with echo backends.
    Demo,
}

#[derive(clap::Args)]
struct GatewayArgs {
    /// Folder of *.yaml / *.yml manifests, watched for changes.
    #[arg(long)]
    config: PathBuf,
    /// Address the Gateway listeners bind.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// Admin endpoint (/ready, /live, /metrics, /config); off when unset.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// GatewayClasses with this controllerName are served.
    #[arg(long, default_value = strait_config::DEFAULT_CONTROLLER_NAME)]
    controller_name: String,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
    /// Joined connections (TCP, TLS passthrough, WebSocket and other
    /// upgrades) close after this long with no byte either way; 0 is never.
    #[arg(long, default_value = "1h", value_parser = go_duration)]
    stream_idle_timeout: Duration,
    /// Joined connections close this long after they were joined; 0 is never.
    #[arg(long, default_value = "0s", value_parser = go_duration)]
    stream_max_duration: Duration,
}

/// A duration as Go and Gateway API write it: `1h`, `30s`, `500ms`.
fn go_duration(text: &str) -> Result<Duration, String> {
    strait_config::duration::parse_go(text).map_err(|e| e.to_string())
}

fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n.max(1));
    }
    builder.enable_all().build().context("starting the runtime")
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRAIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
        Command::Gateway(args) => {
            let opts = strait_proxy::GatewayOptions {
                config_dir: args.config,
                bind_address: args.bind_address,
                admin: args.admin,
                compile: strait_route::CompileOptions {
                    controller_name: args.controller_name,
                },
                drain_timeout: Duration::from_secs(args.drain_timeout),
                stream_limits: strait_proxy::splice::SpliceLimits {
                    idle: Some(args.stream_idle_timeout).filter(|d| !d.is_zero()),
                    max_duration: Some(args.stream_max_duration).filter(|d| !d.is_zero()),
                },
            };
            runtime(args.workers)?.block_on(strait_proxy::run(opts, std::future::pending()))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Check {
            dir,
            controller_name,
        } => Ok(check::run(&dir, &controller_name)),
        Command::Echo {
            listen,
            namespace,
            service,
            pod,
        } => {
            let info = Arc::new(strait_echo::EchoInfo::new(&namespace, &service, &pod));
            runtime(None)?.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                // Tests read this line to learn the port when --listen asks for port 0.
                println!("listening on {}", listener.local_addr()?);
                strait_echo::serve(listener, info).await;
                Ok::<_, anyhow::Error>(())
            })?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Demo => {
            runtime(None)?.block_on(demo::run())?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
