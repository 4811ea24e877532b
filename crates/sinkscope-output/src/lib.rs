//! Output safety for every sinkscope command that writes an output folder (`--out`).
//!
//! The guarantees (RELIABILITY.md, "Output safety"):
//!
//! - **One run per folder at a time**: [`OutDir::claim`] takes a lock file
//!   (`--out/.sinkscope.lock`, created with `O_EXCL`); a second run on the same folder is
//!   refused, naming the holder (pid, command line). A lock left by a process that no longer
//!   exists (killed) is taken over.
//! - **Never a user's file**: the folder's ownership marker (`--out/.sinkscope-run.json`) lists
//!   the top-level entries sinkscope wrote there. An entry the command would write that exists
//!   but is not listed is refused (exit 3), never overwritten or deleted, whatever the options.
//! - **Fresh, replaced or continued, never mixed**: a folder that holds an earlier run is
//!   refused unless `--force` (the earlier run's entries are removed first, so nothing stale
//!   survives) or `--resume` (the run continues; the caller checks it is the same run).
//! - **Inputs are never outputs**: an input (prompt file, model, run folder) that is or lies
//!   inside an entry the command writes is refused before any work.
//! - **Atomic, no symlinks followed**: every file is written to a temporary name in its own
//!   folder (opened with `O_CREAT | O_EXCL | O_NOFOLLOW`) and renamed into place
//!   ([`write_atomic`]); streamed files are created the same way ([`create_fresh`]) or reopened
//!   with `O_NOFOLLOW` ([`open_existing`]); sub-folders that are symbolic links are refused
//!   ([`create_dir`]). A rename replaces a planted symlink, never the file it points to.
//!
//! # Example
//!
//! ```no_run
//! use sinkscope_output::{Claim, Mode, OutDir};
//! let out = std::path::Path::new("runs/demo");
//! let claim = Claim { kind: "profile", entries: &["manifest.json", "metrics.json"], prefixes: &[],
//!                     inputs: &[std::path::Path::new("prompts.jsonl")], mode: Mode::Fresh };
//! let dir = OutDir::claim(out, &claim)?;
//! sinkscope_output::write_atomic(&dir.path().join("metrics.json"), b"{}")?;
//! # Ok::<(), sinkscope_output::OutputError>(())
//! ```

#![warn(missing_docs)]

mod claim;
mod fsops;

pub use claim::{Claim, Mode, OutDir, LOCK_FILE, MARKER_FILE};
pub use fsops::{create_dir, create_fresh, open_existing, remove_entry, write_atomic};

use std::path::PathBuf;

/// Why an output could not be written (the CLI maps every variant to exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// An OS error on an output path.
    #[error("{path}: cannot write: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another run holds the folder's lock.
    #[error(
        "{lock}: the output folder is in use by another sinkscope run ({holder}); wait for it to \
         finish, or delete this file if that process no longer exists"
    )]
    Locked {
        /// The lock file.
        lock: PathBuf,
        /// Who holds it (pid and command line, as written in the lock).
        holder: String,
    },
    /// The folder holds an earlier run and neither `--force` nor `--resume` was given.
    #[error(
        "{path}: holds an earlier sinkscope {kind} run ({found}); use --force to replace it, \
         --resume to continue it, or choose another --out"
    )]
    EarlierRun {
        /// The output folder.
        path: PathBuf,
        /// The earlier run's kind.
        kind: String,
        /// Some of its entries.
        found: String,
    },
    /// `--resume` into a folder holding a run of another kind.
    #[error(
        "{path}: holds an earlier sinkscope {was} run; a {now} run cannot resume it (choose another --out)"
    )]
    OtherKind {
        /// The output folder.
        path: PathBuf,
        /// The earlier run's kind.
        was: String,
        /// This run's kind.
        now: String,
    },
    /// An entry the command writes exists but was not written by sinkscope.
    #[error(
        "{path}: exists and was not written by sinkscope; it is never overwritten or deleted \
         (move it away or choose another --out)"
    )]
    NotOurs {
        /// The entry.
        path: PathBuf,
    },
    /// An input that the run would overwrite.
    #[error("{input}: this input would be overwritten by the run's output {output}; choose another --out")]
    InputInside {
        /// The input as given.
        input: PathBuf,
        /// The output entry that holds it.
        output: PathBuf,
    },
    /// A symbolic link where sinkscope writes.
    #[error("{path}: is a symbolic link; sinkscope never writes through links inside --out (remove it)")]
    Symlink {
        /// The link.
        path: PathBuf,
    },
}

impl OutputError {
    /// `Io` for `path`, for `map_err`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
        move |source| OutputError::Io { path: path.to_path_buf(), source }
    }
}
