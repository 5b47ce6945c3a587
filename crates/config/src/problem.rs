use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Where a resource came from: a file and the document's number in it (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Source {
    /// Shared by a file's documents and what is compiled from them.
    pub file: Arc<Path>,
    pub doc: usize,
}

/// `file:doc`, or just `file` for problems with the file as a whole.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.doc == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.doc)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One thing wrong with the configuration, printed as `file:doc: field.path: reason`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub source: Source,
    /// Field path inside the document, `spec.rules[0].matches[1].path.value`;
    /// empty when the problem is about the document as a whole.
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn error(source: &Source, path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            source: source.clone(),
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn warning(source: &Source, path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(source, path, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `file:doc: field.path: reason`; warnings say so before the reason.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.source)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        write!(f, "{}", self.message)
    }
}
