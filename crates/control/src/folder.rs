//! The folder as a source of the index: each file read and typed again
//! only when its text changed (noticing changes is `strait_api::watch`).

use crate::index::{self, Index, SourceDocs};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strait_config::{Problem, Source};

/// A folder of manifests, read into the index.
pub struct Folder {
    dir: PathBuf,
    /// By file name: its text and what it held.
    files: HashMap<String, (String, Arc<SourceDocs>)>,
}

impl Folder {
    pub fn new(dir: &Path) -> Folder {
        Folder {
            dir: dir.to_path_buf(),
            files: HashMap::new(),
        }
    }

    /// The folder's index now. Files are named relative to the folder; a
    /// file that cannot be read is a problem of its own, and its objects
    /// stay as `previous` had them.
    pub fn index(&mut self, previous: Option<&Index>) -> Index {
        let unreadable = |file: &Path, e: std::io::Error| {
            Arc::new(Err(Problem::error(
                &Source {
                    file: file.into(),
                    doc: 0,
                },
                "",
                format!("cannot read: {e}"),
            )))
        };
        let paths = match strait_config::yaml_files(&self.dir) {
            Ok(paths) => paths,
            Err(e) => {
                let name = self.dir.to_string_lossy().into_owned();
                let mut index = index::build(&[(name, unreadable(&self.dir, e))], previous);
                // Nothing was read: everything stays.
                if let Some(p) = previous {
                    index.objects = p.objects.clone();
                    index.version = p.version.clone();
                }
                return index;
            }
        };
        let mut sources = Vec::new();
        let mut files = HashMap::new();
        for path in paths {
            let name = path
                .strip_prefix(&self.dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let docs = match std::fs::read_to_string(&path) {
                Ok(text) => match self.files.remove(&name) {
                    Some((old, docs)) if old == text => {
                        files.insert(name.clone(), (old, docs.clone()));
                        docs
                    }
                    _ => {
                        let docs = Arc::new(index::documents(&name, &text));
                        files.insert(name.clone(), (text, docs.clone()));
                        docs
                    }
                },
                Err(e) => unreadable(Path::new(&name), e),
            };
            sources.push((name, docs));
        }
        self.files = files;
        index::build(&sources, previous)
    }
}
