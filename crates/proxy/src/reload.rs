//! Loading a configuration folder and noticing when it changes.

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::Path;
use std::time::Duration;
use strait_config::Problem;
use strait_route::{compile, CompileOptions, Snapshot};
use tokio::sync::mpsc;

/// A configuration that may serve, and what was wrong with parts of it
/// (rejected routes, unsupported listeners, warnings).
pub struct Loaded {
    pub snapshot: Snapshot,
    pub problems: Vec<Problem>,
}

/// Reads and compiles `dir`. A YAML or schema error anywhere refuses the
/// whole folder (`Err`): serving half of what the user wrote is worse than
/// serving the last good configuration. Semantic problems (an invalid route,
/// a missing backend) reject only the object concerned, as a controller would.
pub fn load(dir: &Path, options: &CompileOptions) -> Result<Loaded, Vec<Problem>> {
    let set = strait_config::load_dir(dir);
    if set.has_errors() {
        return Err(set.problems);
    }
    let (snapshot, mut problems) = compile(&set.documents, options);
    let mut all = set.problems;
    all.append(&mut problems);
    Ok(Loaded {
        snapshot,
        problems: all,
    })
}

/// How long the folder must be quiet before a change is read, so that an
/// editor's or `kubectl`'s burst of writes becomes one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Watches `dir` (recursively); each burst of changes sends one `()`.
pub fn watch(dir: &Path) -> notify::Result<(RecommendedWatcher, mpsc::UnboundedReceiver<()>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event {
            if !e.kind.is_access() {
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
