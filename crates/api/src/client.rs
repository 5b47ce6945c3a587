//! The proxy's side of the stream: connect to the control plane over TLS
//! (checked to be the control plane, as the CA is), say who it is and what
//! it has, join each update's parts and apply them to what it has, offer
//! the result to the proxy, answer ACK or NACK with its reason, cache what
//! was accepted — and when the control plane goes away, keep serving and
//! reconnect with backoff and jitter.

use crate::pb;
use crate::pb::config_client::ConfigClient;
use crate::snapshot::{Joined, Snapshot};
use rustls_pki_types::CertificateDer;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// First wait before reconnecting; doubled up to [`MAX_BACKOFF`], so a
/// control plane that comes back is found again within about 2 s.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// HOST:PORT (a name is looked up at each connection).
    pub addr: String,
    /// Roots to check the control plane with.
    pub bundle: Vec<CertificateDer<'static>>,
    pub trust_domain: String,
    /// `namespace/name` of the workload, or the gateway's name.
    pub node: String,
    /// `gateway` or `sidecar`.
    pub role: String,
    /// Where the last accepted snapshot is kept.
    pub cache: Option<PathBuf>,
    /// The ServiceAccount token shown to the control plane, if it asks.
    pub token: Option<strait_identity::agent::Token>,
}

/// A configuration for the proxy to apply, and where it says whether it
/// could.
pub struct Offer {
    pub snapshot: Snapshot,
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// Keeps a stream to the control plane for as long as the proxy runs.
/// `known` is what the proxy has now (from its cache), if anything.
pub async fn run(opts: ControlOptions, offers: mpsc::Sender<Offer>, known: Option<Snapshot>) {
    // What the control plane last sent, accepted or not: its changes
    // build on it.
    let mut known = (known.unwrap_or_default(), None);
    let mut backoff = FIRST_BACKOFF;
    loop {
        match session(&opts, &offers, &mut known, &mut backoff).await {
            Ok(()) => info!(addr = %opts.addr, "control plane closed the stream"),
            Err(e) => {
                warn!(addr = %opts.addr, error = %e, retry_in = ?backoff, "control plane unreachable; serving the last configuration")
            }
        }
        if offers.is_closed() {
            return;
        }
        tokio::time::sleep(backoff / 2 + (backoff / 2).mul_f64(fastrand::f64())).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn status(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

async fn session(
    opts: &ControlOptions,
    offers: &mpsc::Sender<Offer>,
    (known, refused): &mut (Snapshot, Option<String>),
    backoff: &mut Duration,
) -> Result<(), String> {
    let (channel, origin) =
        strait_identity::service::connect_control(&opts.addr, &opts.bundle, &opts.trust_domain)
            .await?;
    let mut client = ConfigClient::with_origin(channel, origin);
    let (tx, mut inbound) = open_stream(&mut client, opts, &known.version).await?;
    info!(addr = %opts.addr, "connected to the control plane");
    *backoff = FIRST_BACKOFF;
    let mut joined = Joined::default();
    while let Some(part) = inbound.message().await.map_err(status)? {
        let (version, base, more) = (part.version.clone(), part.base.clone(), part.more);
        joined.add(part);
        if more {
            continue;
        }
        let update = std::mem::take(&mut joined);
        let answered = apply_update(offers, known, refused, version.clone(), &base, update).await?;
        let Some(result) = answered else {
            return Ok(());
        };
        acknowledge(opts, &tx, known, refused, version, result).await?;
    }
    Ok(())
}

/// Opens the stream, saying who this proxy is and what version it has:
/// where to send its answers, and where updates arrive.
async fn open_stream(
    client: &mut ConfigClient<strait_identity::service::H2>,
    opts: &ControlOptions,
    version: &str,
) -> Result<(mpsc::Sender<pb::ProxyMessage>, tonic::Streaming<pb::Update>), String> {
    let (tx, rx) = mpsc::channel::<pb::ProxyMessage>(4);
    let hello = pb::ProxyMessage {
        kind: Some(pb::proxy_message::Kind::Hello(pb::Hello {
            node: opts.node.clone(),
            role: opts.role.clone(),
            version: version.to_string(),
        })),
    };
    tx.send(hello).await.map_err(|e| e.to_string())?;
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut request = tonic::Request::new(outbound);
    if let Some(token) = &opts.token {
        let bearer = format!("Bearer {}", token.read()?)
            .parse()
            .map_err(|_| "the token is not a valid header value".to_string())?;
        request.metadata_mut().insert("authorization", bearer);
    }
    let inbound = client.stream(request).await.map_err(status)?.into_inner();
    Ok((tx, inbound))
}

/// Applies one whole update to what the proxy has, and the proxy's
/// answer to the result: `None` once the proxy is gone.
async fn apply_update(
    offers: &mpsc::Sender<Offer>,
    known: &mut Snapshot,
    refused: &Option<String>,
    version: String,
    base: &str,
    update: Joined,
) -> Result<Option<Result<(), String>>, String> {
    let unchanged = !base.is_empty() && update.is_empty();
    // A change from a version this proxy does not have cannot be
    // applied; a new stream starts from what it has.
    known.apply(version, base, update)?;
    if unchanged {
        // Nothing of this proxy's changed: only the version moves, and
        // the answer stays what it was.
        return Ok(Some(refused.clone().map_or(Ok(()), Err)));
    }
    let (reply, answer) = oneshot::channel();
    let offered = Offer {
        snapshot: known.clone(),
        reply,
    };
    if offers.send(offered).await.is_err() {
        return Ok(None);
    }
    Ok(Some(
        answer
            .await
            .unwrap_or_else(|_| Err("the proxy is stopping".into())),
    ))
}

/// Remembers the proxy's answer, caches what it accepted, and tells the
/// control plane: ACK, or NACK and why.
async fn acknowledge(
    opts: &ControlOptions,
    tx: &mpsc::Sender<pb::ProxyMessage>,
    known: &Snapshot,
    refused: &mut Option<String>,
    version: String,
    result: Result<(), String>,
) -> Result<(), String> {
    *refused = result.clone().err();
    if result.is_ok() {
        if let Some(path) = &opts.cache {
            if let Err(e) = crate::snapshot::save_cache(path, known) {
                warn!(path = %path.display(), error = %e, "cannot cache the configuration");
            }
        }
    }
    let ack = pb::Ack {
        version,
        accepted: result.is_ok(),
        reason: result.err().unwrap_or_default(),
    };
    tx.send(pb::ProxyMessage {
        kind: Some(pb::proxy_message::Kind::Ack(ack)),
    })
    .await
    .map_err(|e| e.to_string())
}
