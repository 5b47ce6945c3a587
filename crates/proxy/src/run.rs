//! The gateway's life: load, listen, reload on change, drain on shutdown.

use crate::admin::{self, AdminState};
use crate::listeners::{ListenerSet, PortMode};
use crate::reload::{self, Loaded};
use crate::Shared;
use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strait_config::Problem;
use strait_route::{CompileOptions, ListenKey, PortProtocol, Snapshot};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info, warn};

#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub config_dir: PathBuf,
    pub bind_address: IpAddr,
    pub admin: Option<SocketAddr>,
    pub compile: CompileOptions,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub drain_timeout: Duration,
    /// Limits of joined connections (TCP, TLS passthrough, upgrades).
    pub stream_limits: crate::splice::SpliceLimits,
    /// Run as a sidecar (`strait proxy`) instead of a gateway: the folder's
    /// Gateways are not served, the two sidecar listeners are.
    pub sidecar: Option<crate::mesh::SidecarOptions>,
}

fn report(problems: &[Problem]) {
    for p in problems {
        if p.is_error() {
            warn!("{p}");
        } else {
            info!("{p}");
        }
    }
}

/// The ports a snapshot needs and what each serves. A port whose
/// certificates cannot be loaded (a key that does not match its
/// certificate, say) is left closed rather than served in plain text.
fn ports(snapshot: &Snapshot) -> BTreeMap<ListenKey, Arc<PortMode>> {
    let mut out = BTreeMap::new();
    for (key, table) in &snapshot.ports {
        let mode = match table.protocol {
            PortProtocol::Http => PortMode::Http,
            PortProtocol::TlsPassthrough => PortMode::TlsPassthrough,
            PortProtocol::Tcp => PortMode::Tcp,
            PortProtocol::Https => match crate::tls::port_tls(&table.tls) {
                Ok(config) => PortMode::Https(config),
                Err(e) => {
                    error!(port = key.port, error = %e, "TLS certificates unusable; port not served");
                    continue;
                }
            },
        };
        out.insert(*key, Arc::new(mode));
    }
    out
}

/// Runs the gateway until `shutdown` completes or SIGTERM/SIGINT arrives,
/// then drains.
pub async fn run(opts: GatewayOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let Loaded { snapshot, problems } = match reload::load(&opts.config_dir, &opts.compile) {
        Ok(l) => l,
        Err(problems) => {
            for p in &problems {
                error!("{p}");
            }
            bail!(
                "configuration in {} has errors; not starting",
                opts.config_dir.display()
            );
        }
    };
    report(&problems);
    let sidecar = opts.sidecar.clone().map(crate::mesh::Sidecar::new);
    let shared = Shared::new(snapshot, opts.stream_limits, sidecar);
    let state = Arc::new(AdminState {
        shared: shared.clone(),
        ready: AtomicBool::new(false),
        generation: AtomicU64::new(1),
        problems: ArcSwap::from_pointee(problems),
        refused: ArcSwap::from_pointee(Vec::new()),
    });
    if let Some(addr) = opts.admin {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("admin address {addr}"))?;
        info!(addr = %listener.local_addr()?, "admin listening");
        tokio::spawn(admin::serve(listener, state.clone()));
    }

    let (drain_tx, drain_rx) = watch::channel(false);
    let mut listeners = ListenerSet::new(opts.bind_address, shared.clone(), drain_rx);
    match &opts.sidecar {
        None => {
            let failed = listeners.reconcile(&ports(&shared.snapshot.load()));
            if let Some((addr, e)) = failed.first() {
                bail!("cannot listen on {addr}: {e}");
            }
        }
        Some(s) => {
            for (addr, role) in [
                (s.inbound, crate::mesh::Role::Inbound),
                (s.outbound, crate::mesh::Role::Outbound),
            ] {
                listeners
                    .open_fixed(addr, role)
                    .with_context(|| format!("cannot listen on {addr}"))?;
            }
        }
    }
    // Watch and listen for signals before saying ready: a change made the
    // moment /ready answers must not be missed.
    let (_watcher, mut changes) = reload::watch(&opts.config_dir)
        .with_context(|| format!("watching {}", opts.config_dir.display()))?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    state.ready.store(true, Ordering::Release);
    info!(ports = ?listeners.ports(), "gateway ready");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {}
            Some(()) = changes.recv() => reload::settle(&mut changes).await,
        }
        apply_change(&opts, &state, &mut listeners).await;
    }

    info!(deadline = ?opts.drain_timeout, "draining");
    state.ready.store(false, Ordering::Release);
    listeners.close_all();
    let _ = drain_tx.send(true);
    let deadline = Instant::now() + opts.drain_timeout;
    while shared.metrics.connections.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = shared.metrics.connections.get();
    if left > 0 {
        warn!(connections = left, "drain deadline passed; closing");
    } else {
        info!("drained");
    }
    Ok(())
}

async fn apply_change(opts: &GatewayOptions, state: &AdminState, listeners: &mut ListenerSet) {
    let dir = opts.config_dir.clone();
    let compile = opts.compile.clone();
    let loaded = tokio::task::spawn_blocking(move || reload::load(&dir, &compile)).await;
    let shared = &state.shared;
    match loaded {
        Ok(Ok(Loaded { snapshot, problems })) => {
            let wanted = ports(&snapshot);
            shared.snapshot.store(Arc::new(snapshot));
            if opts.sidecar.is_none() {
                for (addr, e) in listeners.reconcile(&wanted) {
                    error!(%addr, error = %e, "cannot listen; routes on this address are not served");
                }
            }
            report(&problems);
            state.problems.store(Arc::new(problems));
            state.refused.store(Arc::new(Vec::new()));
            let generation = state.generation.fetch_add(1, Ordering::AcqRel) + 1;
            shared.metrics.reload(true);
            info!(generation, "configuration reloaded");
        }
        Ok(Err(problems)) => {
            for p in &problems {
                error!("{p}");
            }
            error!("configuration change refused; the last good configuration keeps serving");
            state.refused.store(Arc::new(problems));
            shared.metrics.reload(false);
        }
        Err(e) => {
            error!(error = %e, "configuration load crashed; keeping the last good configuration");
            shared.metrics.reload(false);
        }
    }
}
