//! The control plane's side of the stream: every connected proxy gets the
//! current snapshot, then each new one; its ACK or NACK is recorded per
//! proxy. A NACKed version is reported with the proxy's reason and not
//! sent again: the next change is.

use crate::pb;
use crate::pb::config_server::Config;
use crate::pb::proxy_message::Kind;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

/// What the control plane knows of one proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProxyStatus {
    pub role: String,
    pub connected: bool,
    /// The version it last accepted.
    pub accepted: Option<String>,
    /// The version it last refused, and why.
    pub refused: Option<(String, String)>,
}

#[derive(Clone)]
pub struct ConfigService {
    current: watch::Receiver<Option<Arc<pb::Snapshot>>>,
    status: Arc<Mutex<BTreeMap<String, ProxyStatus>>>,
}

impl ConfigService {
    /// Serves whatever `current` holds: the control plane publishes each
    /// good snapshot there.
    pub fn new(current: watch::Receiver<Option<Arc<pb::Snapshot>>>) -> Self {
        ConfigService {
            current,
            status: Arc::default(),
        }
    }

    /// Every proxy seen, by node name.
    pub fn status(&self) -> BTreeMap<String, ProxyStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, node: &str, f: impl FnOnce(&mut ProxyStatus)) {
        if let Ok(mut all) = self.status.lock() {
            f(all.entry(node.to_string()).or_default());
        }
    }
}

type SnapshotStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<pb::Snapshot, Status>> + Send>>;

#[tonic::async_trait]
impl Config for ConfigService {
    type StreamStream = SnapshotStream;

    async fn stream(
        &self,
        request: Request<Streaming<pb::ProxyMessage>>,
    ) -> Result<Response<SnapshotStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(pb::ProxyMessage {
                kind: Some(Kind::Hello(h)),
            }) => h,
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        let node = hello.node.clone();
        info!(%node, role = %hello.role, version = %hello.version, "proxy connected");
        self.update(&node, |s| {
            s.role = hello.role.clone();
            s.connected = true;
        });
        let (tx, rx) = mpsc::channel::<Result<pb::Snapshot, Status>>(2);
        let this = self.clone();
        let mut current = self.current.clone();
        tokio::spawn(async move {
            // What the proxy has, so that an unchanged snapshot is not sent.
            let mut sent = Some(hello.version).filter(|v| !v.is_empty());
            loop {
                let latest = current.borrow_and_update().clone();
                if let Some(s) = latest {
                    if sent.as_deref() != Some(s.version.as_str()) {
                        sent = Some(s.version.clone());
                        if tx.send(Ok((*s).clone())).await.is_err() {
                            break;
                        }
                    }
                }
                tokio::select! {
                    changed = current.changed() => if changed.is_err() { break },
                    message = inbound.message() => match message {
                        Ok(Some(pb::ProxyMessage { kind: Some(Kind::Ack(ack)) })) => {
                            if ack.accepted {
                                info!(%node, version = %ack.version, "snapshot accepted");
                                this.update(&node, |s| s.accepted = Some(ack.version));
                            } else {
                                warn!(%node, version = %ack.version, reason = %ack.reason, "snapshot refused by the proxy");
                                this.update(&node, |s| s.refused = Some((ack.version, ack.reason)));
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    },
                }
            }
            info!(%node, "proxy disconnected");
            this.update(&node, |s| s.connected = false);
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
