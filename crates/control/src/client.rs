//! The proxy's side of the stream: connect to the control plane over TLS
//! (checked to be the control plane, as the CA is), say who it is and what
//! it serves, offer each snapshot to the proxy, answer ACK or NACK with its
//! reason, cache what was accepted — and when the control plane goes away,
//! keep serving and reconnect with backoff and jitter.

use crate::pb;
use crate::pb::config_client::ConfigClient;
use rustls_pki_types::CertificateDer;
use std::net::SocketAddr;
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
    pub addr: SocketAddr,
    /// Roots to check the control plane with.
    pub bundle: Vec<CertificateDer<'static>>,
    pub trust_domain: String,
    /// `namespace/name` of the workload, or the gateway's name.
    pub node: String,
    /// `gateway` or `sidecar`.
    pub role: String,
    /// Where the last accepted snapshot is kept.
    pub cache: Option<PathBuf>,
}

/// A snapshot for the proxy to apply, and where it says whether it could.
pub struct Offer {
    pub snapshot: pb::Snapshot,
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// Keeps a stream to the control plane for as long as the proxy runs.
/// `version` is what the proxy serves now (from its cache), if anything.
pub async fn run(opts: ControlOptions, offers: mpsc::Sender<Offer>, mut version: Option<String>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match session(&opts, &offers, &mut version, &mut backoff).await {
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

async fn session(
    opts: &ControlOptions,
    offers: &mpsc::Sender<Offer>,
    version: &mut Option<String>,
    backoff: &mut Duration,
) -> Result<(), String> {
    let (channel, origin) =
        strait_identity::service::connect_control(opts.addr, &opts.bundle, &opts.trust_domain)
            .await?;
    let mut client = ConfigClient::with_origin(channel, origin);
    let (tx, rx) = mpsc::channel::<pb::ProxyMessage>(4);
    let hello = pb::ProxyMessage {
        kind: Some(pb::proxy_message::Kind::Hello(pb::Hello {
            node: opts.node.clone(),
            role: opts.role.clone(),
            version: version.clone().unwrap_or_default(),
        })),
    };
    tx.send(hello).await.map_err(|e| e.to_string())?;
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut inbound = client
        .stream(outbound)
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    info!(addr = %opts.addr, "connected to the control plane");
    *backoff = FIRST_BACKOFF;
    while let Some(snapshot) = inbound
        .message()
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
    {
        let v = snapshot.version.clone();
        let (reply, answer) = oneshot::channel();
        let offered = Offer {
            snapshot: snapshot.clone(),
            reply,
        };
        if offers.send(offered).await.is_err() {
            return Ok(());
        }
        let result = answer
            .await
            .unwrap_or_else(|_| Err("the proxy is stopping".into()));
        if result.is_ok() {
            *version = Some(v.clone());
            if let Some(path) = &opts.cache {
                if let Err(e) = crate::folder::save_cache(path, &snapshot) {
                    warn!(path = %path.display(), error = %e, "cannot cache the configuration");
                }
            }
        }
        let ack = pb::Ack {
            version: v,
            accepted: result.is_ok(),
            reason: result.err().unwrap_or_default(),
        };
        tx.send(pb::ProxyMessage {
            kind: Some(pb::proxy_message::Kind::Ack(ack)),
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}
