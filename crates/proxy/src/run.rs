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
use strait_api::client::Offer;
use strait_config::Problem;
use strait_route::{CompileOptions, ListenKey, PortProtocol, Snapshot};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub config_dir: PathBuf,
    pub bind_address: IpAddr,
    pub admin: Option<SocketAddr>,
    /// Once ready, the address of every socket served is written here,
    /// one `ROLE ADDRESS` line each (how a script learns a port 0 chose).
    pub ports_file: Option<PathBuf>,
    pub compile: CompileOptions,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub drain_timeout: Duration,
    /// Limits of joined connections (TCP, TLS passthrough, upgrades).
    pub stream_limits: crate::splice::SpliceLimits,
    /// Limits of a request's head and body.
    pub http_limits: crate::limits::HttpLimits,
    /// Run as a sidecar (`strait proxy`) instead of a gateway: the folder's
    /// Gateways are not served, the two sidecar listeners are.
    pub sidecar: Option<crate::sidecar::SidecarOptions>,
    /// Take the configuration from the control plane instead of
    /// `config_dir`.
    pub control: Option<strait_api::client::ControlOptions>,
    /// Write an access log; `None`: none.
    pub access_log: Option<crate::access_log::Options>,
    /// Export traces; `None`: none (`traceparent` passes untouched).
    pub traces: Option<crate::traces::Options>,
}

/// Where configuration changes come from.
enum Changes {
    /// The folder: a burst of file events, then the folder is read (the
    /// watcher lives as long as this).
    Folder {
        _watcher: notify::RecommendedWatcher,
        events: mpsc::UnboundedReceiver<()>,
    },
    /// The control plane: snapshots, each answered ACK or NACK.
    Control(mpsc::Receiver<Offer>),
}

impl Changes {
    /// The next change: `None` for the folder (read it), or a snapshot.
    async fn next(&mut self) -> Option<Offer> {
        match self {
            Changes::Folder { events, .. } => {
                if events.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
                strait_api::watch::settle(events).await;
                None
            }
            Changes::Control(offers) => match offers.recv().await {
                Some(offer) => Some(offer),
                None => std::future::pending().await,
            },
        }
    }
}

/// A snapshot's manifests, loaded as a folder's would be.
fn load_snapshot(
    snapshot: &strait_api::snapshot::Snapshot,
    compile: &CompileOptions,
) -> Result<Loaded, Vec<Problem>> {
    reload::from_set(snapshot.resources(), compile)
}

/// The same off the async workers: a big change compiles on a blocking
/// thread, so a sidecar with one worker keeps serving meanwhile.
async fn compile_offer(
    snapshot: strait_api::snapshot::Snapshot,
    compile: &CompileOptions,
) -> Result<Result<Loaded, Vec<Problem>>, tokio::task::JoinError> {
    let compile = compile.clone();
    tokio::task::spawn_blocking(move || load_snapshot(&snapshot, &compile)).await
}

/// What the control plane is told of an offer: ACK, or NACK and why.
fn answer_for(
    loaded: &Result<Result<Loaded, Vec<Problem>>, tokio::task::JoinError>,
) -> Result<(), String> {
    match loaded {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(problems)) => Err(refusal(problems)),
        Err(e) => Err(format!("compiling the configuration failed: {e}")),
    }
}

/// The first configuration: the folder's, or the control plane's — the
/// cached snapshot when there is one (the control plane may be down), else
/// the first one it sends.
async fn first_load(
    opts: &GatewayOptions,
    folder: &reload::Folder,
) -> anyhow::Result<(Loaded, Changes)> {
    let Some(control) = &opts.control else {
        let loaded = match folder.load(&opts.compile) {
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
        // Watch before serving: a change made the moment /ready answers
        // must not be missed.
        let (watcher, events) = strait_api::watch::watch(&opts.config_dir)
            .with_context(|| format!("watching {}", opts.config_dir.display()))?;
        return Ok((
            loaded,
            Changes::Folder {
                _watcher: watcher,
                events,
            },
        ));
    };
    let (tx, mut offers) = mpsc::channel(1);
    let cached = control
        .cache
        .as_deref()
        .and_then(strait_api::snapshot::load_cache)
        .and_then(|s| match load_snapshot(&s, &opts.compile) {
            Ok(loaded) => Some((s, loaded)),
            Err(_) => None,
        });
    tokio::spawn(strait_api::client::run(
        control.clone(),
        tx,
        cached.as_ref().map(|(s, _)| s.clone()),
    ));
    if let Some((snapshot, loaded)) = cached {
        let version = snapshot.version;
        info!(%version, "serving the cached configuration until the control plane answers");
        return Ok((loaded, Changes::Control(offers)));
    }
    info!(addr = %control.addr, "waiting for the first configuration from the control plane");
    loop {
        let Some(offer) = offers.recv().await else {
            bail!("the control plane client stopped");
        };
        let Offer { snapshot, reply } = offer;
        let loaded = compile_offer(snapshot, &opts.compile).await;
        let _ = reply.send(answer_for(&loaded));
        if let Ok(Ok(loaded)) = loaded {
            return Ok((loaded, Changes::Control(offers)));
        }
    }
}

/// Why a configuration was refused, in one line for the control plane.
fn refusal(problems: &[Problem]) -> String {
    let errors: Vec<String> = problems
        .iter()
        .filter(|p| p.is_error())
        .take(3)
        .map(ToString::to_string)
        .collect();
    errors.join("; ")
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

/// A TelemetryPolicy that turns an access log on where the flags did not
/// opens one on stdout (JSON, and only where a policy says); one that
/// samples traces where none are exported is said once per configuration.
fn policy_sinks(shared: &Shared) {
    let live = shared.live.load();
    let policies = &live.snapshot.telemetry;
    if policies.logs() && shared.access_log.get().is_none() {
        let options = crate::access_log::Options {
            target: "-".into(),
            format: Default::default(),
            sample: 0.0,
        };
        let dropped = shared.metrics.access_log_dropped.clone();
        match crate::access_log::AccessLog::open(&options, dropped) {
            Ok(log) => {
                let _ = shared.access_log.set(log);
            }
            Err(e) => error!(error = %e, "cannot open an access log on stdout"),
        }
    }
    if policies.traces() && shared.traces.get().is_none() {
        warn!("a TelemetryPolicy samples traces, but this process exports none: start it with --tracing-endpoint");
    }
}

/// Runs the gateway until `shutdown` completes or SIGTERM/SIGINT arrives,
/// then drains.
pub async fn run(opts: GatewayOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let folder = reload::Folder::new(opts.config_dir.clone());
    let (Loaded { snapshot, problems }, mut changes) = first_load(&opts, &folder).await?;
    report(&problems);
    let sidecar = opts.sidecar.clone().map(crate::sidecar::Sidecar::new);
    let shared = Shared::new(snapshot, (opts.stream_limits, opts.http_limits), sidecar);
    shared
        .jwks
        .track(shared.live.load().snapshot.authn.remote_jwks());
    if let Some(log) = &opts.access_log {
        let dropped = shared.metrics.access_log_dropped.clone();
        let log = crate::access_log::AccessLog::open(log, dropped)
            .map_err(|e| anyhow::anyhow!("access log {}: {e}", log.target))?;
        // Only now shared: set before any listener takes a request.
        let _ = shared.access_log.set(log);
    }
    if let Some(traces) = &opts.traces {
        let _ = shared.traces.set(crate::traces::Traces::start(traces)?);
    }
    policy_sinks(&shared);
    shared.metrics.process.configured(1);
    let state = Arc::new(AdminState {
        shared: shared.clone(),
        ready: AtomicBool::new(false),
        generation: AtomicU64::new(1),
        problems: ArcSwap::from_pointee(problems),
        refused: ArcSwap::from_pointee(Vec::new()),
    });
    let admin_addr = match opts.admin {
        Some(addr) => Some(serve_admin(addr, state.clone()).await?),
        None => None,
    };
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut listeners = ListenerSet::new(opts.bind_address, shared.clone(), drain_rx);
    open_listeners(&opts, &shared, &mut listeners)?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    state.ready.store(true, Ordering::Release);
    announce(admin_addr, &listeners, opts.ports_file.as_deref())?;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                if opts.control.is_none() {
                    apply_change(&opts, &folder, &state, &mut listeners).await;
                }
            }
            offer = changes.next() => match offer {
                None => apply_change(&opts, &folder, &state, &mut listeners).await,
                Some(Offer { snapshot, reply }) => {
                    let began = std::time::Instant::now();
                    let loaded = compile_offer(snapshot, &opts.compile).await;
                    let answer = answer_for(&loaded);
                    apply_loaded(&opts, &state, &mut listeners, loaded, began).await;
                    let _ = reply.send(answer);
                }
            },
        }
    }

    info!(deadline = ?opts.drain_timeout, "draining");
    state.ready.store(false, Ordering::Release);
    listeners.close_all();
    let _ = drain_tx.send(true);
    drain(&shared, opts.drain_timeout).await;
    if let Some(log) = shared.access_log.get() {
        log.flush();
    }
    // The export waits on this runtime: wait for it from another thread.
    let flushing = shared.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(traces) = flushing.traces.get() {
            traces.flush();
        }
    })
    .await;
    Ok(())
}

async fn serve_admin(addr: SocketAddr, state: Arc<AdminState>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("admin address {addr}"))?;
    let addr = listener.local_addr()?;
    info!(%addr, "admin listening");
    tokio::spawn(admin::serve(listener, state));
    Ok(addr)
}

/// A gateway's ports from its configuration; a sidecar's two, fixed.
fn open_listeners(
    opts: &GatewayOptions,
    shared: &Shared,
    listeners: &mut ListenerSet,
) -> anyhow::Result<()> {
    let Some(s) = &opts.sidecar else {
        let failed = listeners.reconcile(&ports(&shared.live.load().snapshot));
        if let Some((addr, e)) = failed.first() {
            bail!("cannot listen on {addr}: {e}");
        }
        return Ok(());
    };
    for (addr, role) in [
        (s.inbound, crate::ctx::Role::Inbound),
        (s.outbound, crate::ctx::Role::Outbound),
    ] {
        listeners
            .open_fixed(addr, role)
            .with_context(|| format!("cannot listen on {addr}"))?;
    }
    Ok(())
}

/// Waits, at most `timeout`, for open connections to end: requests to be
/// answered, and joined connections (WebSockets, tunnels) to be closed by
/// their ends. Past the deadline the process exits and closes the rest.
async fn drain(shared: &Shared, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let open = || (shared.metrics.connections.get(), crate::splice::joined());
    while open() != (0, 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match open() {
        (0, 0) => info!("drained"),
        (connections, joined) => {
            warn!(connections, joined, "drain deadline passed; closing");
            // WebSockets get a close frame where they can.
            crate::splice::close_all();
            let grace = Instant::now() + Duration::from_millis(500);
            while crate::splice::joined() > 0 && Instant::now() < grace {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // A close frame on an HTTP/2 stream leaves through hyper's
            // connection task: let it run before the process ends.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Says where every socket is: in the log, and in the ports file if
/// asked for (written whole, then renamed in, so a reader never sees half).
fn announce(
    admin: Option<SocketAddr>,
    listeners: &ListenerSet,
    file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let sockets: Vec<(&str, SocketAddr)> = admin
        .map(|a| ("admin", a))
        .into_iter()
        .chain(
            listeners
                .addresses()
                .into_iter()
                .map(|(r, a)| (r.name(), a)),
        )
        .collect();
    let listening: Vec<String> = sockets.iter().map(|(r, a)| format!("{a} ({r})")).collect();
    info!(listening = %listening.join(", "), "ready");
    let Some(file) = file else { return Ok(()) };
    let text: String = sockets.iter().map(|(r, a)| format!("{r} {a}\n")).collect();
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, file))
        .with_context(|| format!("writing the ports file {}", file.display()))
}

async fn apply_change(
    opts: &GatewayOptions,
    folder: &reload::Folder,
    state: &AdminState,
    listeners: &mut ListenerSet,
) {
    let folder = folder.clone();
    let compile = opts.compile.clone();
    let began = std::time::Instant::now();
    let loaded = tokio::task::spawn_blocking(move || folder.load(&compile)).await;
    apply_loaded(opts, state, listeners, loaded, began).await
}

async fn apply_loaded(
    opts: &GatewayOptions,
    state: &AdminState,
    listeners: &mut ListenerSet,
    loaded: Result<Result<Loaded, Vec<Problem>>, tokio::task::JoinError>,
    began: std::time::Instant,
) {
    let shared = &state.shared;
    match loaded {
        Ok(Ok(Loaded { snapshot, problems })) => {
            let wanted = ports(&snapshot);
            shared.install(snapshot);
            policy_sinks(shared);
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
            shared.metrics.process.configured(generation);
            // From the reload's start (after the folder watcher's 100 ms
            // debounce) to the new tables serving: reading, compiling and
            // swapping, what a large configuration costs.
            let took_ms = began.elapsed().as_millis() as u64;
            info!(generation, took_ms, "configuration reloaded");
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
