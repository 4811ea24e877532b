//! sinkscope-report: turns a run folder into human-readable output (work in progress).

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

/// Errors while reading a run folder or writing its report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// An I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The files written by [`render_run`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderSummary {
    /// Every file written, in the order written.
    pub files: Vec<PathBuf>,
}

/// Reads `dir/manifest.json`, `dir/metrics.json` and `dir/prompts.jsonl` and writes
/// `dir/layers.csv`, `dir/plots/*.svg`, `dir/plots/*.png` and `dir/report.html`.
///
/// # Errors
/// A missing or malformed input file, or an output file that cannot be written.
pub fn render_run(dir: &Path) -> Result<RenderSummary, ReportError> {
    let _ = dir;
    Ok(RenderSummary::default())
}
