//! [`ReportError`]: everything that can go wrong turning a run folder into a report.

use std::path::PathBuf;

/// Errors while reading a run folder or writing its report. Every variant names the file
/// it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
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
    /// Drawing a plot failed.
    #[error("plot {plot}: {message}")]
    Plot {
        /// The plot's file stem (e.g. `fig1`).
        plot: String,
        /// The plotting library's message.
        message: String,
    },
    /// Encoding a PNG failed.
    #[error("{path}: PNG encoding failed: {message}")]
    Png {
        /// The PNG file.
        path: PathBuf,
        /// The encoder's message.
        message: String,
    },
    /// An output refused by the output-safety rules (symlink) or not writable.
    #[error(transparent)]
    Output(#[from] sinkscope_output::OutputError),
    /// `render_compare` was called without any run folder.
    #[error("compare needs at least one run folder")]
    NoRuns,
    /// A file names a kind of run this crate does not know.
    #[error("{path}: kind \"{kind}\" is not one of profile, lens, probe, ablate")]
    UnknownKind {
        /// The file.
        path: PathBuf,
        /// The kind found.
        kind: String,
    },
    /// A run folder is of another kind than the one asked for (e.g. a profile given as the
    /// lens run of `render_tasks`).
    #[error("{path}: a {found} run, where a {expected} run was expected{hint}")]
    WrongKind {
        /// The run folder.
        path: PathBuf,
        /// The kind wanted.
        expected: String,
        /// The kind found.
        found: String,
        /// What to do instead (may be empty; starts with "; " otherwise).
        hint: String,
    },
    /// Two run folders that must be of the same model record different model hashes.
    #[error("{a} and {b} are runs of different models (sha256 {sha_a} vs {sha_b})")]
    ModelMismatch {
        /// The first run folder.
        a: PathBuf,
        /// Its model's sha256.
        sha_a: String,
        /// The second run folder.
        b: PathBuf,
        /// Its model's sha256.
        sha_b: String,
    },
    /// `render_tasks` was called without a lens or a probe run.
    #[error("the tasks-vs-depth plot needs a lens run, a probe run or both")]
    NoTaskRuns,
}

impl From<sinkscope_schema::SchemaError> for ReportError {
    /// The schema crate's reading errors are the report's own, variant for variant (same
    /// messages, same exit-code category).
    fn from(e: sinkscope_schema::SchemaError) -> Self {
        use sinkscope_schema::SchemaError as S;
        match e {
            S::Io { path, source } => ReportError::Io { path, source },
            S::Parse { path, line, message } => ReportError::Parse { path, line, message },
            S::SchemaVersion { path, found, expected } => {
                ReportError::SchemaVersion { path, found, expected }
            }
            S::Invalid { path, message } => ReportError::Invalid { path, message },
            S::UnknownKind { path, kind } => ReportError::UnknownKind { path, kind },
        }
    }
}

impl ReportError {
    /// An [`ReportError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
