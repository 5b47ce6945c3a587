//! Noticing when a folder of manifests changes, as one event per burst:
//! the proxy's local folder and the control plane's both read it so.

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long the folder must be quiet before a change is read, so that an
/// editor's or `kubectl`'s burst of writes becomes one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Watches `dir` (recursively); each burst of changes that may touch a
/// manifest sends one `()` (files of other kinds are not looked at).
pub fn watch(dir: &Path) -> notify::Result<(RecommendedWatcher, mpsc::UnboundedReceiver<()>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event {
            let manifests =
                e.paths.is_empty() || e.paths.iter().any(|p| strait_config::may_hold_manifests(p));
            if !e.kind.is_access() && manifests {
                let _ = tx.send(());
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    Ok((watcher, rx))
}

/// Waits out a burst: returns once no event came for [`DEBOUNCE`].
pub async fn settle(rx: &mut mpsc::UnboundedReceiver<()>) {
    loop {
        tokio::time::sleep(DEBOUNCE).await;
        let mut more = false;
        while rx.try_recv().is_ok() {
            more = true;
        }
        if !more {
            return;
        }
    }
}
