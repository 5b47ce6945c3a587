//! A folder of manifests as a versioned snapshot (what the control plane
//! sends), a snapshot back into resources (what a proxy compiles), the
//! proxy's cache of the last snapshot it accepted, and noticing when a
//! folder changes.

use crate::pb;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Duration;
use strait_config::{Problem, ResourceSet};
use tokio::sync::mpsc;

/// Every manifest file below `dir` (names relative to it), read once, with
/// a version that changes when any name or text does. A YAML or schema
/// error anywhere refuses the whole folder, as an API server's validation
/// would: proxies keep what they have.
pub fn snapshot(dir: &Path) -> Result<pb::Snapshot, Vec<Problem>> {
    let unreadable = |e: std::io::Error, file: &Path| {
        vec![Problem::error(
            &strait_config::Source {
                file: file.to_path_buf(),
                doc: 0,
            },
            "",
            format!("cannot read: {e}"),
        )]
    };
    let mut files = Vec::new();
    for path in strait_config::yaml_files(dir).map_err(|e| unreadable(e, dir))? {
        let text = std::fs::read_to_string(&path).map_err(|e| unreadable(e, &path))?;
        let name = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        files.push(pb::File { name, text });
    }
    let snapshot = pb::Snapshot {
        version: version_of(&files),
        files,
    };
    let set = resources(&snapshot);
    if set.has_errors() {
        return Err(set.problems);
    }
    Ok(snapshot)
}

fn version_of(files: &[pb::File]) -> String {
    // SipHash with fixed keys: the same folder gives the same version in
    // every process of this build.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        (&f.name, &f.text).hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// A snapshot's manifests parsed as the folder's would be (problems name
/// the file as the snapshot names it).
pub fn resources(snapshot: &pb::Snapshot) -> ResourceSet {
    let mut set = ResourceSet::default();
    for f in &snapshot.files {
        set.extend(strait_config::parse_text(Path::new(&f.name), &f.text));
    }
    set
}

/// The cache a proxy keeps of the last snapshot it accepted, so that it
/// can start while the control plane is unreachable.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    version: String,
    files: Vec<(String, String)>,
}

pub fn save_cache(path: &Path, snapshot: &pb::Snapshot) -> std::io::Result<()> {
    let cached = Cached {
        version: snapshot.version.clone(),
        files: snapshot
            .files
            .iter()
            .map(|f| (f.name.clone(), f.text.clone()))
            .collect(),
    };
    let text = serde_json::to_vec(&cached).map_err(std::io::Error::other)?;
    // Whole or not at all: written aside, then renamed in.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

pub fn load_cache(path: &Path) -> Option<pb::Snapshot> {
    let text = std::fs::read(path).ok()?;
    let cached: Cached = serde_json::from_slice(&text).ok()?;
    Some(pb::Snapshot {
        version: cached.version,
        files: cached
            .files
            .into_iter()
            .map(|(name, text)| pb::File { name, text })
            .collect(),
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
