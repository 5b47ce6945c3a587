//! The control plane's side of the stream: every connected proxy gets its
//! view of the current index whole, then each change as a delta (whole
//! again when it missed a version); its ACK or NACK is recorded per proxy.
//! A NACKed version is reported with the proxy's reason and not sent
//! again: the next change is.

use crate::index::{self, Index, Published, Role};
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
    /// Which stream this is (a proxy that reconnects has a new one; the
    /// old one's end must not remove it).
    #[serde(skip)]
    pub stream: u64,
}

/// Who may ask for what: every stream shows a ServiceAccount token
/// (`authorization: Bearer …`); a sidecar gets only a node of its own
/// namespace, and the gateway view (certificates and keys included) only
/// these ServiceAccounts.
#[derive(Clone)]
pub struct ProxyAuth {
    pub authenticator: Arc<dyn strait_identity::service::Authenticator>,
    /// `(namespace, name)` of the ServiceAccounts gateways run as.
    pub gateways: Vec<(String, String)>,
}

impl ProxyAuth {
    /// Who the stream's token says it is.
    async fn identify(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<strait_identity::SpiffeId, Status> {
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("no ServiceAccount token (authorization: Bearer)")
            })?;
        self.authenticator.identify(token.trim()).await
    }

    fn allow(&self, id: &strait_identity::SpiffeId, role: &Role, node: &str) -> Result<(), Status> {
        let allowed = match role {
            Role::Sidecar { namespace } => *namespace == id.namespace,
            Role::Gateway => self
                .gateways
                .iter()
                .any(|(ns, sa)| *ns == id.namespace && *sa == id.service_account),
        };
        if allowed {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{id} may not ask for node {node} ({role:?})"
            )))
        }
    }
}

#[derive(Clone)]
pub struct ConfigService {
    current: watch::Receiver<Option<Arc<Published>>>,
    status: Arc<Mutex<BTreeMap<String, ProxyStatus>>>,
    auth: Option<ProxyAuth>,
}

/// Where a source (the folder, the cluster) puts each new index: its
/// problems are logged, and it is published, with its delta from the one
/// before, when its version is new.
pub struct Publisher {
    tx: watch::Sender<Option<Arc<Published>>>,
    current: Option<Arc<Index>>,
}

impl Publisher {
    /// A publisher, and the service that streams what it publishes.
    pub fn new() -> (Publisher, ConfigService) {
        let (tx, rx) = watch::channel(None);
        let publisher = Publisher { tx, current: None };
        (publisher, ConfigService::new(rx))
    }

    /// The index published last.
    pub fn current(&self) -> Option<&Index> {
        self.current.as_deref()
    }

    /// Logs `next`'s problems (a refused object, every time its source
    /// changes) and publishes it if its version is new: what was
    /// published, `None` for an unchanged version.
    pub fn publish(&mut self, next: Index) -> Option<Arc<Published>> {
        for p in &next.problems {
            if p.is_error() {
                tracing::error!("{p}; the object's last good version, if any, is kept");
            } else {
                warn!("{p}");
            }
        }
        if self.current().is_some_and(|c| c.version == next.version) {
            return None;
        }
        info!(version = %next.version, objects = next.objects.len(), "configuration published");
        let next = Arc::new(next);
        let published = Arc::new(Published::next(self.current(), next.clone()));
        self.tx.send_replace(Some(published.clone()));
        self.current = Some(next);
        Some(published)
    }
}

impl ConfigService {
    /// Serves whatever `current` holds: the control plane publishes each
    /// new index there.
    pub fn new(current: watch::Receiver<Option<Arc<Published>>>) -> Self {
        ConfigService {
            current,
            status: Arc::default(),
            auth: None,
        }
    }

    /// Streams must prove who they are (see [`ProxyAuth`]).
    pub fn with_auth(mut self, auth: ProxyAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Every proxy seen, by node name.
    pub fn status(&self) -> BTreeMap<String, ProxyStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The index now: its version, its object count, and every problem
    /// with file, document and field path.
    pub fn index(&self) -> Option<Arc<crate::index::Index>> {
        self.current.borrow().as_ref().map(|p| p.index.clone())
    }

    fn update(&self, node: &str, f: impl FnOnce(&mut ProxyStatus)) {
        if let Ok(mut all) = self.status.lock() {
            f(all.entry(node.to_string()).or_default());
        }
    }
}

/// How long a new stream has to say who it is.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

type UpdateStream = Pin<Box<dyn futures_util::Stream<Item = Result<pb::Update, Status>> + Send>>;

#[tonic::async_trait]
impl Config for ConfigService {
    type StreamStream = UpdateStream;

    async fn stream(
        &self,
        request: Request<Streaming<pb::ProxyMessage>>,
    ) -> Result<Response<UpdateStream>, Status> {
        // The token first: a stranger holds nothing open, not even while
        // it takes its time saying hello.
        let caller = self.caller(request.metadata()).await?;
        let mut inbound = request.into_inner();
        let hello = read_hello(&mut inbound).await?;
        let role = self.admit(caller.as_ref(), &hello)?;
        info!(node = %hello.node, role = %hello.role, version = %hello.version, "proxy connected");
        let stream = self.connected(&hello);
        // Two parts in flight per proxy: a thousand proxies taking their
        // first snapshot at once hold a few megabytes, not a thousand
        // copies of the configuration.
        // Boxed: a channel allocates its slots 32 at a time, and 32 of
        // `Result<pb::Update, Status>` are 6 KiB per connected proxy.
        let (tx, rx) = mpsc::channel::<Box<pb::Update>>(2);
        let session = Session {
            this: self.clone(),
            current: self.current.clone(),
            // What the proxy has, so that an unchanged snapshot is not sent.
            sent: Some(hello.version).filter(|v| !v.is_empty()),
            node: hello.node,
            role,
            stream,
            inbound,
            tx,
        };
        tokio::spawn(session.run());
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (Ok(*item), rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The stream's first message, which must be its Hello.
async fn read_hello(inbound: &mut Streaming<pb::ProxyMessage>) -> Result<pb::Hello, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no Hello in time"))??;
    match first {
        Some(pb::ProxyMessage {
            kind: Some(Kind::Hello(h)),
        }) => Ok(h),
        _ => Err(Status::invalid_argument("the first message must be Hello")),
    }
}

impl ConfigService {
    /// Who the stream's token says it is, when streams must show one.
    async fn caller(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Option<strait_identity::SpiffeId>, Status> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        match auth.identify(metadata).await {
            Ok(id) => Ok(Some(id)),
            Err(e) => {
                warn!(error = %e.message(), "proxy refused");
                Err(e)
            }
        }
    }

    /// The role the Hello asks for, if the caller may have it.
    fn admit(
        &self,
        caller: Option<&strait_identity::SpiffeId>,
        hello: &pb::Hello,
    ) -> Result<Role, Status> {
        let node = &hello.node;
        let role = Role::of(&hello.role, node).map_err(Status::invalid_argument)?;
        if let (Some(auth), Some(id)) = (&self.auth, caller) {
            if let Err(e) = auth.allow(id, &role, node) {
                warn!(%node, role = %hello.role, error = %e.message(), "proxy refused");
                return Err(e);
            }
        }
        Ok(role)
    }

    /// Records a new stream of the Hello's node: which one it is.
    fn connected(&self, hello: &pb::Hello) -> u64 {
        static STREAMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let stream = STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.update(&hello.node, |s| {
            s.role = hello.role.clone();
            s.connected = true;
            s.stream = stream;
        });
        stream
    }

    /// A proxy's ACK or NACK of a version sent.
    fn acknowledged(&self, node: &str, ack: pb::Ack) {
        if ack.accepted {
            info!(%node, version = %ack.version, "snapshot accepted");
            self.update(node, |s| s.accepted = Some(ack.version));
        } else {
            warn!(%node, version = %ack.version, reason = %ack.reason, "snapshot refused by the proxy");
            self.update(node, |s| s.refused = Some((ack.version, ack.reason)));
        }
    }

    /// Pods come and go: what is known of one that left goes with it,
    /// unless it refused a version (kept for `/status`). A newer stream
    /// of the same node is left alone.
    fn disconnected(&self, node: &str, stream: u64) {
        if let Ok(mut all) = self.status.lock() {
            match all.get_mut(node) {
                Some(s) if s.stream != stream => {}
                Some(s) if s.refused.is_some() => s.connected = false,
                Some(_) => {
                    all.remove(node);
                }
                None => {}
            }
        }
    }
}

/// One proxy's stream, from its Hello until either side leaves.
struct Session {
    this: ConfigService,
    current: watch::Receiver<Option<Arc<Published>>>,
    sent: Option<String>,
    node: String,
    role: Role,
    stream: u64,
    inbound: Streaming<pb::ProxyMessage>,
    tx: mpsc::Sender<Box<pb::Update>>,
}

impl Session {
    async fn run(mut self) {
        loop {
            if !self.send_latest().await {
                break;
            }
            tokio::select! {
                changed = self.current.changed() => if changed.is_err() { break },
                message = self.inbound.message() => match message {
                    Ok(Some(pb::ProxyMessage { kind: Some(Kind::Ack(ack)) })) => {
                        self.this.acknowledged(&self.node, ack);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                },
            }
        }
        info!(node = %self.node, "proxy disconnected");
        self.this.disconnected(&self.node, self.stream);
    }

    /// Sends the latest index unless the proxy has it: false once the
    /// proxy is gone.
    async fn send_latest(&mut self) -> bool {
        let latest = self.current.borrow_and_update().clone();
        let Some(p) = latest else {
            return true;
        };
        if self.sent.as_deref() == Some(p.index.version.as_str()) {
            return true;
        }
        let version = p.index.version.clone();
        let all = index::Parts::new(p, self.sent.as_deref(), self.role.clone());
        self.sent = Some(version);
        for part in all {
            if self.tx.send(Box::new(part)).await.is_err() {
                return false;
            }
        }
        true
    }
}
