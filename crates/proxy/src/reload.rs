//! Loading a configuration: a folder's, or a snapshot's from the control
//! plane (watching a folder is `strait_api::watch`'s).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use strait_config::{ParseCache, Problem, ResourceSet};
use strait_route::{compile, CompileOptions, Snapshot};

/// A configuration that may serve, and what was wrong with parts of it
/// (rejected routes, unsupported listeners, warnings).
pub struct Loaded {
    pub snapshot: Snapshot,
    pub problems: Vec<Problem>,
}

/// A folder read again on every change, parsing only the files whose text
/// changed since the last read. Clones share the cache.
#[derive(Clone)]
pub struct Folder {
    dir: PathBuf,
    cache: Arc<Mutex<ParseCache>>,
}

impl Folder {
    pub fn new(dir: PathBuf) -> Self {
        Folder {
            dir,
            cache: Arc::default(),
        }
    }

    /// Reads and compiles the folder. A YAML or schema error anywhere
    /// refuses the whole folder (`Err`): serving half of what the user
    /// wrote is worse than serving the last good configuration. Semantic
    /// problems (an invalid route, a missing backend) reject only the
    /// object concerned, as a controller would.
    pub fn load(&self, options: &CompileOptions) -> Result<Loaded, Vec<Problem>> {
        let set = {
            // A reload that panicked left a cache of whole files: usable.
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            strait_config::load_dir_cached(&self.dir, &mut cache)
        };
        from_set(set, options)
    }
}

/// Compiles resources read anywhere (the folder, a control plane's snapshot),
/// with the same refusal rule.
pub fn from_set(set: ResourceSet, options: &CompileOptions) -> Result<Loaded, Vec<Problem>> {
    if set.has_errors() {
        return Err(set.problems);
    }
    let (snapshot, mut problems) = compile(&set.documents, options, std::time::SystemTime::now());
    let mut all = set.problems;
    all.append(&mut problems);
    Ok(Loaded {
        snapshot,
        problems: all,
    })
}
