//! Benchmark aid for `bench/control.sh` (not part of strait): many
//! simulated proxies on one process, each with its own TLS connection and
//! stream to `strait control`, acknowledging every snapshot.
//!
//! `control_scale generate DIR SERVICES ENDPOINTS` writes the folder:
//! SERVICES Services in namespace `bench`, ENDPOINTS endpoints spread over
//! their EndpointSlices, and `churn.yaml`, the slice the run rewrites.
//!
//! `control_scale ADDR BUNDLE DIR PROXIES CHANGES`: connects PROXIES
//! streams, waits until every one has the first snapshot, then CHANGES
//! times rewrites `DIR/churn.yaml` (one EndpointSlice's endpoint) and
//! measures, for each proxy, the time from the write to the snapshot with
//! the new content arriving. Prints one JSON line: connect time, snapshot
//! bytes, and p50/p99/max of the arrival times over all proxies and
//! changes. At most [`STARTING`] proxies are between connecting and their
//! first snapshot at once, as a fleet's pods start over time rather than
//! in the same millisecond; the connect time covers them all.

use std::sync::Arc;
use std::time::{Duration, Instant};
use strait_api::snapshot::Joined;
use strait_control::pb;
use tokio::sync::{mpsc, Mutex, OwnedSemaphorePermit, Semaphore};

/// Proxies starting (connected, first snapshot not yet in) at once.
const STARTING: usize = 200;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, dir, services, endpoints] = args.as_slice() {
        if mode == "generate" {
            let services: usize = services.parse().map_err(|e| format!("SERVICES: {e}"))?;
            let endpoints: usize = endpoints.parse().map_err(|e| format!("ENDPOINTS: {e}"))?;
            return generate(std::path::Path::new(dir), services, endpoints);
        }
    }
    let [addr, bundle, dir, proxies, changes] = args.as_slice() else {
        return Err("usage: control_scale ADDR BUNDLE DIR PROXIES CHANGES".into());
    };
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("ADDR: {e}"))?;
    let proxies: usize = proxies.parse().map_err(|e| format!("PROXIES: {e}"))?;
    let changes: usize = changes.parse().map_err(|e| format!("CHANGES: {e}"))?;
    let pem = std::fs::read(bundle).map_err(|e| format!("{bundle}: {e}"))?;
    let bundle = strait_identity::ca::certs(&pem, bundle)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(run(addr, bundle, dir.into(), proxies, changes))
}

fn generate(dir: &std::path::Path, services: usize, endpoints: usize) -> Result<(), String> {
    use std::fmt::Write;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let per = endpoints.div_ceil(services.max(1));
    std::fs::write(
        dir.join("namespace.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n",
    )
    .map_err(|e| e.to_string())?;
    // A hundred Services per file, as a repository would keep them.
    let mut out = String::new();
    for s in 0..services {
        let addresses: Vec<String> = (0..per)
            .map(|e| {
                format!(
                    "{{addresses: [\"10.{}.{}.{}\"]}}",
                    100 + s / 256 % 100,
                    s % 256,
                    e % 256
                )
            })
            .collect();
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: bench}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-{s}, namespace: bench, labels: {{kubernetes.io/service-name: svc-{s}}}}}\naddressType: IPv4\nendpoints: [{}]\nports: [{{name: http, port: 8080}}]\n",
            addresses.join(", ")
        );
        if s % 100 == 99 || s + 1 == services {
            std::fs::write(dir.join(format!("services-{}.yaml", s / 100)), &out)
                .map_err(|e| e.to_string())?;
            out.clear();
        }
    }
    std::fs::write(dir.join("churn.yaml"), churn(0)).map_err(|e| e.to_string())
}

/// What one simulated proxy saw: when each marker first arrived.
type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

fn churn(marker: usize) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: churn, namespace: bench, labels: {{kubernetes.io/service-name: svc-0}}}}\naddressType: IPv4\nendpoints: [{{addresses: [\"10.{}.{}.{}\"]}}]\nports: [{{name: http, port: 8080}}]\n",
        marker / 65536 % 256,
        marker / 256 % 256,
        marker % 256
    )
}

/// What a simulated proxy keeps of its view: the version, to check that
/// each change applies to it, and the churn slice's address. A whole
/// `Snapshot` per proxy would not fit: 5,000 proxies of 5,000 Services
/// need about 23 GB in one process.
#[derive(Default)]
struct Seen {
    version: String,
    marker: Option<String>,
}

impl Seen {
    fn apply(&mut self, version: String, base: &str, update: &Joined) -> Result<(), String> {
        if !base.is_empty() && base != self.version {
            return Err(format!(
                "a change from version {base} arrived, but this proxy has {}",
                self.version
            ));
        }
        if base.is_empty() || update.removed.iter().any(|k| k == CHURN_KEY) {
            self.marker = None;
        }
        if let Some(e) = update.entries.iter().find(|e| e.key == CHURN_KEY) {
            self.marker = marker_of(&e.json);
        }
        self.version = version;
        Ok(())
    }
}

const CHURN_KEY: &str = "EndpointSlice/bench/churn";

fn marker_of(json: &str) -> Option<String> {
    let at = json.find("\"addresses\":[\"")? + 14;
    Some(json[at..].split('"').next()?.to_string())
}

async fn proxy(
    addr: std::net::SocketAddr,
    bundle: Vec<rustls_pki_types::CertificateDer<'static>>,
    node: String,
    arrivals: Arrivals,
    bytes: Arc<std::sync::atomic::AtomicU64>,
    starting: OwnedSemaphorePermit,
) -> Result<(), String> {
    let mut starting = Some(starting);
    let (channel, origin) =
        strait_identity::service::connect_control(&addr.to_string(), &bundle, "cluster.local")
            .await?;
    let mut client = pb::config_client::ConfigClient::with_origin(channel, origin)
        .max_decoding_message_size(256 * 1024 * 1024);
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::ProxyMessage {
        kind: Some(pb::proxy_message::Kind::Hello(pb::Hello {
            node,
            role: "sidecar".into(),
            version: String::new(),
        })),
    })
    .await
    .map_err(|e| e.to_string())?;
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut inbound = client
        .stream(outbound)
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    // Joined as a proxy does; only the version and the marker are kept.
    let mut have = Seen::default();
    let mut joined = Joined::default();
    while let Some(part) = inbound.message().await.map_err(|s| s.to_string())? {
        let (version, base, more) = (part.version.clone(), part.base.clone(), part.more);
        joined.add(part);
        if more {
            continue;
        }
        let update = std::mem::take(&mut joined);
        have.apply(version, &base, &update)?;
        starting.take();
        let now = Instant::now();
        if base.is_empty() {
            let size: usize = update.entries.iter().map(|e| e.json.len()).sum();
            bytes.store(size as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(m) = &have.marker {
            arrivals.lock().await.push((m.clone(), now));
        }
        let _ = tx
            .send(pb::ProxyMessage {
                kind: Some(pb::proxy_message::Kind::Ack(pb::Ack {
                    version: have.version.clone(),
                    accepted: true,
                    reason: String::new(),
                })),
            })
            .await;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(
    addr: std::net::SocketAddr,
    bundle: Vec<rustls_pki_types::CertificateDer<'static>>,
    dir: std::path::PathBuf,
    proxies: usize,
    changes: usize,
) -> Result<(), String> {
    let start = Instant::now();
    let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut all = Vec::new();
    let gate = Arc::new(Semaphore::new(STARTING));
    for i in 0..proxies {
        let arrivals: Arrivals = Arc::default();
        all.push(arrivals.clone());
        let (bundle, bytes) = (bundle.clone(), bytes.clone());
        let starting = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let node = format!("bench/proxy-{i}");
            if let Err(e) = proxy(addr, bundle, node, arrivals, bytes, starting).await {
                eprintln!("proxy {i}: {e}");
            }
        });
    }
    // Everyone has the first snapshot (marker 0).
    let wait_all = |marker: String, deadline: Duration| {
        let all = all.clone();
        async move {
            let until = Instant::now() + deadline;
            loop {
                let mut have = 0;
                for a in &all {
                    if a.lock().await.iter().any(|(m, _)| *m == marker) {
                        have += 1;
                    }
                }
                if have == all.len() {
                    return Ok(());
                }
                if Instant::now() > until {
                    return Err(format!("{have} of {} proxies got {marker}", all.len()));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_all("10.0.0.0".into(), Duration::from_secs(120)).await?;
    let connected = start.elapsed();
    let mut delays = Vec::new();
    for c in 1..=changes {
        let marker = format!("10.{}.{}.{}", c / 65536 % 256, c / 256 % 256, c % 256);
        let tmp = dir.join(".churn.tmp");
        std::fs::write(&tmp, churn(c)).map_err(|e| e.to_string())?;
        let written = Instant::now();
        std::fs::rename(&tmp, dir.join("churn.yaml")).map_err(|e| e.to_string())?;
        wait_all(marker.clone(), Duration::from_secs(60)).await?;
        for a in &all {
            if let Some((_, at)) = a.lock().await.iter().find(|(m, _)| *m == marker) {
                delays.push(at.duration_since(written).as_secs_f64() * 1000.0);
            }
        }
        // Let the control plane settle between changes.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    delays.sort_by(f64::total_cmp);
    println!(
        "{{\"proxies\":{proxies},\"changes\":{changes},\"connect_all_s\":{:.3},\"snapshot_bytes\":{},\"p50_ms\":{:.1},\"p99_ms\":{:.1},\"max_ms\":{:.1}}}",
        connected.as_secs_f64(),
        bytes.load(std::sync::atomic::Ordering::Relaxed),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(0.0)
    );
    Ok(())
}
