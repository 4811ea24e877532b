//! Resumable runs (`--resume`): a long run appends one JSON line per finished prompt to its
//! result file and flushes it, so a killed run loses at most the prompt in flight. Resuming:
//!
//! 1. [`check_manifest`]: the folder's `manifest.json` must describe the same run: same
//!    schema and kind, same model content (sha256, format, resolved config), tokenizer
//!    settings, data source and options ([`identity`]). Anything else (timings, command line,
//!    thread settings, memory measured, status) may differ.
//! 2. [`read_finished`]: the complete lines of the result file are parsed back; a torn last
//!    line (the process died mid-write: no final newline) is dropped and will be redone; a
//!    complete line that does not parse is an error naming its line number.
//! 3. [`open_lines`]: the file is cut back to its complete lines and opened for appending.
//! 4. The caller checks that the finished records are the first prompts of its input (same
//!    ids, same token ids), feeds them to its aggregate as if they had just run, and runs the
//!    rest.
//!
//! For the resumed result to equal an uninterrupted one bit for bit, the aggregate must be fed
//! what the file holds: a run aggregates each record as parsed back from the line it wrote
//! (see `profile::run_profile`), never the in-memory value.
//!
//! The same four steps serve every command that writes a per-prompt JSONL file: they are
//! implemented once, in [`crate::runner::run_prompts`], which `profile` (and `ablate`, through
//! `run_profile`), `lens` and `probe` all run their prompts through.

use crate::error::{AnalysisError, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

/// The part of a manifest that must not change between a run and its resumption.
pub fn identity(manifest: &Value) -> Value {
    let get = |path: &[&str]| {
        let mut v = manifest;
        for k in path {
            match v.get(k) {
                Some(x) => v = x,
                None => return Value::Null,
            }
        }
        v.clone()
    };
    serde_json::json!({
        "schema_version": get(&["schema_version"]),
        "kind": get(&["kind"]),
        "model.sha256": get(&["model", "sha256"]),
        "model.format": get(&["model", "format"]),
        "model.config": get(&["model", "config"]),
        "tokenizer": get(&["tokenizer"]),
        "data": get(&["data"]),
        "options": get(&["options"]),
        "shard": get(&["shard"]),
    })
}

/// Shortens a JSON value for a message.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 {
        format!("{}...", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

/// Checks that `path` (an earlier run's manifest) describes the same run as `new`. Returns
/// `false` when there is no earlier manifest (nothing to resume: the run starts afresh).
///
/// # Errors
/// [`AnalysisError::ResultFile`] naming the first field that differs, or an unreadable
/// manifest.
pub fn check_manifest(path: &Path, new: &Value) -> Result<bool> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(AnalysisError::ResultFile { path: path.to_path_buf(), reason: e.to_string() }),
    };
    let old: Value = serde_json::from_str(&text).map_err(|e| AnalysisError::ResultFile {
        path: path.to_path_buf(),
        reason: format!("cannot resume: not a valid manifest: {e}"),
    })?;
    let (a, b) = (identity(&old), identity(new));
    if a == b {
        return Ok(true);
    }
    // Name the first differing field, one level down when both sides are objects
    // (`data.sha256`: the prompt file changed).
    let first_diff = |a: &Value, b: &Value| -> Option<String> {
        let keys: Vec<String> = a.as_object()?.keys().chain(b.as_object()?.keys()).cloned().collect();
        keys.into_iter().find(|k| a.get(k.as_str()) != b.get(k.as_str()))
    };
    let field = first_diff(&a, &b).unwrap_or_default();
    let (mut was, mut now) = (a.get(&field).unwrap_or(&Value::Null), b.get(&field).unwrap_or(&Value::Null));
    let mut at = String::new();
    if let Some(sub) = first_diff(was, now) {
        at = format!("'{field}.{sub}' ");
        (was, now) = (was.get(&sub).unwrap_or(&Value::Null), now.get(&sub).unwrap_or(&Value::Null));
    }
    Err(AnalysisError::ResultFile {
        path: path.to_path_buf(),
        reason: format!(
            "cannot resume: field '{field}' differs from this run's ({at}was {}, now {}); use another --out, or drop --resume to start over",
            short(was),
            short(now),
        ),
    })
}

/// The finished records of a result file.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished<T> {
    /// The records of the complete lines, in file order.
    pub records: Vec<T>,
    /// Bytes of the complete lines (where appending resumes).
    pub valid_len: u64,
    /// Whether a torn last line was dropped.
    pub torn: bool,
    /// Where each complete line ends (the offset just past its newline).
    pub line_ends: Vec<u64>,
}

impl<T> Finished<T> {
    /// Nothing finished (a fresh run).
    pub fn none() -> Self {
        Finished { records: Vec::new(), valid_len: 0, torn: false, line_ends: Vec::new() }
    }

    /// Keeps only the first `n` records (the others will be redone): `valid_len` moves back
    /// to the end of line `n`.
    pub fn keep(&mut self, n: usize) {
        if n < self.records.len() {
            self.records.truncate(n);
            self.line_ends.truncate(n);
            self.valid_len = self.line_ends.last().copied().unwrap_or(0);
        }
    }
}

/// Reads the complete lines of a JSONL result file (none when the file does not exist).
///
/// A line must be exactly what the writer of `T` writes: it parses into `T` and `T` written
/// back gives the same JSON value. The schema's line types default every field (so that old
/// folders still render), so parsing alone would take a line that lost a field for a finished
/// prompt with empty metrics.
///
/// # Errors
/// [`AnalysisError::ResultFile`] for an unreadable file or a complete line that does not parse
/// or is not a whole record (naming the line).
pub fn read_finished<T: DeserializeOwned + Serialize>(path: &Path) -> Result<Finished<T>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Finished::none()),
        Err(e) => return Err(AnalysisError::ResultFile { path: path.to_path_buf(), reason: e.to_string() }),
    };
    let mut records = Vec::new();
    let mut line_ends = Vec::new();
    let mut pos = 0usize;
    let mut line_no = 0usize;
    while let Some(nl) = bytes.get(pos..).and_then(|rest| rest.iter().position(|b| *b == b'\n')) {
        line_no += 1;
        let line = bytes.get(pos..pos + nl).unwrap_or_default();
        let corrupt = |e: String| AnalysisError::ResultFile {
            path: path.to_path_buf(),
            reason: format!("line {line_no}: cannot resume from a corrupt record: {e}"),
        };
        let record = serde_json::from_slice::<T>(line).map_err(|e| corrupt(e.to_string()))?;
        let as_written = serde_json::from_slice::<Value>(line).map_err(|e| corrupt(e.to_string()))?;
        if serde_json::to_value(&record).map_err(|e| corrupt(e.to_string()))? != as_written {
            return Err(corrupt(
                "it is not a whole record of this run's kind (a field is missing or extra)".into(),
            ));
        }
        records.push(record);
        pos += nl + 1;
        line_ends.push(pos as u64);
    }
    Ok(Finished { records, valid_len: pos as u64, torn: pos < bytes.len(), line_ends })
}

/// Opens a result file for writing: a new empty file for a fresh run (`resume_at` None;
/// created aside and renamed into place, so an existing file or a planted symlink is replaced,
/// never written through), or cut back to `resume_at` bytes (its complete lines) and
/// positioned at the end (a symlink is refused).
///
/// # Errors
/// [`AnalysisError::Output`] when the file cannot be opened or cut.
pub fn open_lines(path: &Path, resume_at: Option<u64>) -> Result<File> {
    let io = |source| AnalysisError::Output { path: path.to_path_buf(), source };
    match resume_at {
        None => Ok(sinkscope_output::create_fresh(path)?),
        Some(len) => {
            let mut f = sinkscope_output::open_existing(path)?;
            f.set_len(len).map_err(io)?;
            f.seek(SeekFrom::End(0)).map_err(io)?;
            Ok(f)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// A fresh folder, removed when the guard drops.
    fn tmp(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("sinkscope-resume-{name}-")).tempdir().unwrap()
    }

    /// A torn last line is dropped (and cut off when reopened); complete lines are kept.
    #[test]
    fn torn_last_line_is_dropped_and_cut() {
        let guard = tmp("torn");
        let d = guard.path().to_path_buf();
        let p = d.join("r.jsonl");
        std::fs::write(&p, "{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let f: Finished<Value> = read_finished(&p).unwrap();
        assert_eq!(f.records, vec![json!({"a": 1}), json!({"a": 2})]);
        assert!(f.torn);
        assert_eq!(f.valid_len, 16);
        assert_eq!(f.line_ends, vec![8, 16]);
        let mut first = f.clone();
        first.keep(1);
        assert_eq!((first.records.len(), first.valid_len), (1, 8));
        use std::io::Write;
        let mut file = open_lines(&p, Some(f.valid_len)).unwrap();
        file.write_all(b"{\"a\":3}\n").unwrap();
        drop(file);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
    }

    /// A corrupt complete line is an error naming it; a missing file is an empty run.
    #[test]
    fn corrupt_line_is_an_error() {
        let guard = tmp("corrupt");
        let d = guard.path().to_path_buf();
        let p = d.join("r.jsonl");
        std::fs::write(&p, "{\"a\":1}\n{oops}\n{\"a\":3}\n").unwrap();
        let e = read_finished::<Value>(&p).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let none: Finished<Value> = read_finished(&d.join("none.jsonl")).unwrap();
        assert!(none.records.is_empty() && !none.torn);
    }

    /// A line that parses only because the type defaults a missing field, or that carries a
    /// field the type does not have, is refused: resuming would count it as finished.
    #[test]
    fn a_line_that_is_not_a_whole_record_is_an_error() {
        #[derive(Debug, serde::Serialize, serde::Deserialize)]
        struct Rec {
            #[serde(default)]
            id: String,
            #[serde(default)]
            metrics: Vec<f64>,
        }
        let guard = tmp("partial");
        let d = guard.path().to_path_buf();
        let p = d.join("r.jsonl");
        std::fs::write(&p, "{\"id\":\"a\",\"metrics\":[1.5]}\n{\"id\":\"b\"}\n").unwrap();
        let e = read_finished::<Rec>(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("not a whole record"), "{e}");
        std::fs::write(&p, "{\"id\":\"a\",\"metrics\":[1.5],\"x\":1}\n").unwrap();
        assert!(read_finished::<Rec>(&p).is_err());
        std::fs::write(&p, "{\"id\":\"a\",\"metrics\":[1.5]}\n{\"id\":\"b\",\"metrics\":[]}\n").unwrap();
        assert_eq!(read_finished::<Rec>(&p).unwrap().records.len(), 2);
    }

    /// The manifest check ignores timings and names the first field that differs.
    #[test]
    fn manifest_identity() {
        let guard = tmp("manifest");
        let d = guard.path().to_path_buf();
        let p = d.join("manifest.json");
        let m = json!({"schema_version": 1, "kind": "profile", "model": {"sha256": "ab", "path": "x"},
                       "options": {"epsilon": 0.3}, "timings": {"run_s": 1.0}});
        assert!(!check_manifest(&p, &m).unwrap());
        std::fs::write(&p, m.to_string()).unwrap();
        let mut same = m.clone();
        same["timings"] = json!({"run_s": 9.0});
        same["model"]["path"] = json!("elsewhere");
        assert!(check_manifest(&p, &same).unwrap());
        let mut other = m.clone();
        other["options"]["epsilon"] = json!(0.5);
        let e = check_manifest(&p, &other).unwrap_err().to_string();
        assert!(e.contains("field 'options'") && e.contains("('options.epsilon' was 0.3, now 0.5)"), "{e}");
    }
}
