//! The proxy's certificate agent: gets the workload's first certificate,
//! renews it at about 70 % of its life, and keeps the current mutual-TLS
//! configurations where the data plane reads them. When the CA is down it
//! keeps serving with the certificate it has and tries again with
//! backoff; the time left before expiry is the alarm to watch.

use crate::credentials::Credentials;
use crate::mesh_tls::MeshTls;
use crate::spiffe::SpiffeId;
use arc_swap::{ArcSwap, ArcSwapOption};
use rustls_pki_types::CertificateDer;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::{info, warn};

/// First wait after a failed call to the CA; doubled up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What is printed of the agent: who it is, never its key.
impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("id", &self.id)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// The proof of identity the CA is shown: a token, or the file a
/// projected ServiceAccount token is kept in (the kubelet replaces it
/// before it expires, so it is read again at each renewal).
#[derive(Debug, Clone)]
pub enum Token {
    Text(String),
    File(std::path::PathBuf),
}

impl Token {
    pub fn read(&self) -> Result<String, String> {
        match self {
            Token::Text(t) => Ok(t.clone()),
            Token::File(path) => std::fs::read_to_string(path)
                .map(|t| t.trim().to_string())
                .map_err(|e| format!("reading the token {}: {e}", path.display())),
        }
    }
}

pub struct Agent {
    pub id: SpiffeId,
    /// HOST:PORT of the CA.
    ca: String,
    token: Token,
    bundle: ArcSwap<Vec<CertificateDer<'static>>>,
    creds: ArcSwapOption<Credentials>,
    tls: ArcSwapOption<MeshTls>,
    /// Certificates received, and calls to the CA that failed.
    pub issued: AtomicU64,
    pub failures: AtomicU64,
}

impl Agent {
    pub fn new(
        id: SpiffeId,
        ca: String,
        token: Token,
        bundle: Vec<CertificateDer<'static>>,
    ) -> Arc<Self> {
        Arc::new(Agent {
            id,
            ca,
            token,
            bundle: ArcSwap::from_pointee(bundle),
            creds: ArcSwapOption::empty(),
            tls: ArcSwapOption::empty(),
            issued: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// The current mutual-TLS configurations (none before the first
    /// certificate).
    pub fn tls(&self) -> Option<Arc<MeshTls>> {
        self.tls.load_full()
    }

    /// Time left on the current certificate.
    pub fn expires_in(&self) -> Option<Duration> {
        self.creds.load().as_ref().map(|c| c.remaining())
    }

    /// One call to the CA; on success the new certificate and trust bundle
    /// are in place for every connection made from now on.
    pub async fn renew(&self) -> Result<(), String> {
        let bundle = self.bundle.load_full();
        let result = match self.token.read() {
            Ok(token) => crate::service::fetch(&self.ca, &bundle, &token, &self.id).await,
            Err(e) => Err(e),
        };
        let (creds, new_bundle) = match result {
            Ok(got) => got,
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let generation = self.issued.load(Ordering::Relaxed) + 1;
        let tls = MeshTls::with_generation(&creds, &new_bundle, generation)?;
        info!(
            id = %self.id,
            valid_for = ?creds.remaining(),
            roots = new_bundle.len(),
            "workload certificate in place"
        );
        self.tls.store(Some(Arc::new(tls)));
        self.creds.store(Some(Arc::new(creds)));
        self.bundle.store(Arc::new(new_bundle));
        self.issued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Tries until the first certificate is in place.
    pub async fn first(&self) {
        let mut backoff = FIRST_BACKOFF;
        while let Err(e) = self.renew().await {
            warn!(id = %self.id, error = %e, retry_in = ?backoff, "no workload certificate yet");
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Renews for as long as the proxy runs.
    pub async fn run(self: Arc<Self>) {
        loop {
            let renew_at = self
                .creds
                .load()
                .as_ref()
                .map_or_else(SystemTime::now, |c| c.renew_at());
            let wait = renew_at
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tokio::time::sleep(wait).await;
            let mut backoff = FIRST_BACKOFF;
            while let Err(e) = self.renew().await {
                warn!(
                    id = %self.id,
                    error = %e,
                    expires_in = ?self.expires_in(),
                    retry_in = ?backoff,
                    "certificate renewal failed; serving with the current one"
                );
                tokio::time::sleep(jitter(backoff)).await;
                // Never so slow that the certificate runs out between tries.
                let left = self.expires_in().unwrap_or(MAX_BACKOFF);
                backoff = (backoff * 2)
                    .min(MAX_BACKOFF)
                    .min(left / 4)
                    .max(FIRST_BACKOFF);
            }
        }
    }
}

/// Between half and all of `d`, so that proxies spread their retries.
fn jitter(d: Duration) -> Duration {
    d / 2 + (d / 2).mul_f64(fastrand::f64())
}
