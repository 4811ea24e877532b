//! [`SchemaError`]: a result file that cannot be read as the schema says.

use std::path::PathBuf;

/// Errors reading a run folder's files. Every variant names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// An I/O failure on a named file or folder.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid JSON or does not have the shape of `docs/results-schema.md`.
    #[error("{path}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The 1-based line (for JSONL files).
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A file was written for a different result-schema version than this crate reads.
    #[error(
        "{path}: schema_version {found} is not supported (this sinkscope reads schema_version {expected}); \
         re-run the command that wrote it with this version of sinkscope"
    )]
    SchemaVersion {
        /// The file.
        path: PathBuf,
        /// The version found in the file (`None` when the field is missing or not an integer).
        found: String,
        /// The version this crate reads.
        expected: u32,
    },
    /// A file parses but its contents are inconsistent (e.g. an array of the wrong length).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is inconsistent.
        message: String,
    },
    /// A file names a kind of run this crate does not know.
    #[error("{path}: kind \"{kind}\" is not one of profile, lens, probe, ablate")]
    UnknownKind {
        /// The file.
        path: PathBuf,
        /// The kind found.
        kind: String,
    },
}

impl SchemaError {
    /// An [`SchemaError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
