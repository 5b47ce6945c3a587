//! A proxy's configuration as the control plane sent it: objects by key,
//! turned back into resources for the compiler, and cached on disk so that
//! a proxy can start while the control plane is unreachable.

use crate::pb;
use std::collections::BTreeMap;
use std::path::Path;
use strait_config::{Problem, ResourceSet, Source};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub version: String,
    pub objects: BTreeMap<String, pb::Entry>,
}

impl Snapshot {
    /// The objects parsed as the folder's would be: problems name the file
    /// and document the control plane read them from.
    pub fn resources(&self) -> ResourceSet {
        resources(self.objects.values())
    }

    /// Applies one whole update (its parts joined) in place: a whole view
    /// replaces the objects, a delta must start from this version.
    pub fn apply(&mut self, version: String, base: &str, update: Joined) -> Result<(), String> {
        if base.is_empty() {
            self.objects.clear();
        } else if base != self.version {
            return Err(format!(
                "a change from version {base} arrived, but this proxy has {}",
                self.version
            ));
        }
        for key in update.removed {
            self.objects.remove(&key);
        }
        for e in update.entries {
            self.objects.insert(e.key.clone(), e);
        }
        self.version = version;
        Ok(())
    }
}

/// Objects from the control plane parsed as the folder's would be:
/// problems name the file and document they were read from.
pub fn resources<'a>(entries: impl IntoIterator<Item = &'a pb::Entry>) -> ResourceSet {
    let mut set = ResourceSet::default();
    for e in entries {
        let source = Source {
            file: Path::new(&e.file).into(),
            doc: e.doc as usize,
        };
        match serde_json::from_str(&e.json) {
            Ok(value) => set.extend(strait_config::parse_value(&source, &e.prefix, value)),
            Err(err) => set.problems.push(Problem::error(
                &source,
                e.prefix.trim_end_matches('.'),
                format!("not valid JSON from the control plane: {err}"),
            )),
        }
    }
    set
}

/// The parts of one update, joined.
#[derive(Debug, Default)]
pub struct Joined {
    pub entries: Vec<pb::Entry>,
    pub removed: Vec<String>,
}

impl Joined {
    pub fn add(&mut self, part: pb::Update) {
        self.removed.extend(part.removed);
        self.entries.extend(part.entries);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.removed.is_empty()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    version: String,
    /// key, file, doc, prefix, json.
    objects: Vec<(String, String, u32, String, String)>,
}

pub fn save_cache(path: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let cached = Cached {
        version: snapshot.version.clone(),
        objects: snapshot
            .objects
            .values()
            .map(|e| {
                let e = e.clone();
                (e.key, e.file, e.doc, e.prefix, e.json)
            })
            .collect(),
    };
    let text = serde_json::to_vec(&cached).map_err(std::io::Error::other)?;
    // Whole or not at all: written aside, then renamed in.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

pub fn load_cache(path: &Path) -> Option<Snapshot> {
    let text = std::fs::read(path).ok()?;
    let cached: Cached = serde_json::from_slice(&text).ok()?;
    let objects = cached
        .objects
        .into_iter()
        .map(|(key, file, doc, prefix, json)| {
            let entry = pb::Entry {
                key: key.clone(),
                file,
                doc,
                prefix,
                json,
            };
            (key, entry)
        })
        .collect();
    Some(Snapshot {
        version: cached.version,
        objects,
    })
}
