//! [`ReportError`]: everything that can go wrong turning a run folder into a report.

use sinkscope_schema::SchemaError;
use std::path::PathBuf;

/// Errors while reading a run folder or writing its report. Every variant names the file
/// it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file cannot be read or written, or is not what the result schema says (I/O, parse,
    /// schema version, inconsistency, unknown kind): the schema crate's errors, shared with
    /// every reader of run folders.
    #[error(transparent)]
    Schema(#[from] sinkscope_schema::SchemaError),
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
    /// `render_tasks` was called without a lens, probe or mc run.
    #[error("the tasks-vs-depth plot needs a lens, probe or `lens --mc` run (--lens, --probe, --mc)")]
    NoTaskRuns,
}

impl ReportError {
    /// A [`SchemaError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Schema(SchemaError::Io { path, source })
    }
}
