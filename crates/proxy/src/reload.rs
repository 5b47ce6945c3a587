//! Loading a configuration: a folder's, or a snapshot's from the control
//! plane (watching a folder is `strait_api::watch`'s).

use std::path::Path;
use strait_config::{Problem, ResourceSet};
use strait_route::{compile, CompileOptions, Snapshot};

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
    from_set(strait_config::load_dir(dir), options)
}

/// The same for resources from anywhere (a control plane's snapshot).
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
