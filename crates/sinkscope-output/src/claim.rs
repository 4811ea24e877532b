//! Claiming an output folder: the lock, the ownership marker, fresh / `--force` / `--resume`,
//! and inputs that the run would overwrite.

use crate::fsops::{remove_entry, write_atomic};
use crate::OutputError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file in a claimed folder (removed when the run ends).
pub const LOCK_FILE: &str = ".sinkscope.lock";
/// The ownership marker: which top-level entries of the folder sinkscope wrote.
pub const MARKER_FILE: &str = ".sinkscope-run.json";

/// What to do with a folder that holds an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refuse it.
    Fresh,
    /// Remove its entries (only those sinkscope wrote), then start afresh (`--force`).
    Force,
    /// Keep it: the command continues it (`--resume`).
    Resume,
}

/// What a command will write into its output folder.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The run's kind (`profile`, `run`, ...), recorded in the marker.
    pub kind: &'a str,
    /// Top-level names the command writes (files or folders).
    pub entries: &'a [&'a str],
    /// Top-level name prefixes the command writes (e.g. ablate's `scale_` sub-runs).
    pub prefixes: &'a [&'a str],
    /// The command's inputs (prompt file, model, run folders): none may lie in an entry.
    pub inputs: &'a [&'a Path],
    /// Fresh, `--force` or `--resume`.
    pub mode: Mode,
}

/// The marker's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Marker {
    written_by: String,
    kind: String,
    entries: BTreeSet<String>,
    prefixes: BTreeSet<String>,
}

impl Marker {
    fn owns(&self, name: &str) -> bool {
        self.entries.contains(name) || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

fn declares(c: &Claim<'_>, name: &str) -> bool {
    c.entries.contains(&name) || c.prefixes.iter().any(|p| name.starts_with(p))
}

/// A claimed output folder; the lock is released when this is dropped.
#[derive(Debug)]
pub struct OutDir {
    root: PathBuf,
    lock: PathBuf,
    token: String,
    resumed: bool,
}

impl OutDir {
    /// Claims `root` for a run (module doc of the crate): creates it, takes the lock, refuses
    /// inputs inside the run's entries and entries sinkscope did not write, and handles an
    /// earlier run according to `claim.mode`. Nothing is written or removed before every check
    /// has passed.
    ///
    /// # Errors
    /// Every [`OutputError`] variant, each naming the path at fault.
    pub fn claim(root: &Path, claim: &Claim<'_>) -> Result<OutDir, OutputError> {
        std::fs::create_dir_all(root).map_err(OutputError::io(root))?;
        let lock = root.join(LOCK_FILE);
        let token = take_lock(&lock)?;
        let mut dir = OutDir { root: root.to_path_buf(), lock, token, resumed: false };
        dir.check_and_prepare(claim)?; // on error, `dir` drops and releases the lock
        Ok(dir)
    }

    fn check_and_prepare(&mut self, claim: &Claim<'_>) -> Result<(), OutputError> {
        let root = self.root.clone();
        let old = read_marker(&root)?;
        // Inputs first: the most specific message for `--prompts D/prompts.jsonl --out D`.
        let root_canon = std::fs::canonicalize(&root).map_err(OutputError::io(&root))?;
        for input in claim.inputs {
            let Ok(canon) = std::fs::canonicalize(input) else { continue };
            let Ok(rel) = canon.strip_prefix(&root_canon) else { continue };
            let Some(first) = rel.components().next() else {
                // The output folder is an input (a run folder, a model folder): never written.
                return Err(OutputError::InputInside { input: input.to_path_buf(), output: root });
            };
            let name = first.as_os_str().to_string_lossy();
            if declares(claim, &name) || old.as_ref().is_some_and(|m| m.owns(&name)) {
                return Err(OutputError::InputInside {
                    input: input.to_path_buf(),
                    output: root.join(&*name),
                });
            }
        }
        let mut existing: Vec<(String, bool)> = Vec::new(); // (name, is a symlink)
        for e in std::fs::read_dir(&root).map_err(OutputError::io(&root))? {
            let e = e.map_err(OutputError::io(&root))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name == LOCK_FILE || name == MARKER_FILE {
                continue;
            }
            let link = e.file_type().is_ok_and(|t| t.is_symlink());
            existing.push((name, link));
        }
        existing.sort();
        let ours = |name: &str| old.as_ref().is_some_and(|m| m.owns(name));
        // Entries this run writes that exist but are not ours: never touched, whatever the mode.
        if let Some((name, _)) = existing.iter().find(|(n, _)| declares(claim, n) && !ours(n)) {
            return Err(OutputError::NotOurs { path: root.join(name) });
        }
        let earlier: Vec<&(String, bool)> = existing.iter().filter(|(n, _)| ours(n)).collect();
        let old_kind = old.as_ref().map(|m| m.kind.clone()).unwrap_or_default();
        let mut marker = Marker {
            written_by: "sinkscope".into(),
            kind: claim.kind.into(),
            entries: claim.entries.iter().map(|s| s.to_string()).collect(),
            prefixes: claim.prefixes.iter().map(|s| s.to_string()).collect(),
        };
        if !earlier.is_empty() {
            match claim.mode {
                Mode::Fresh => {
                    let names: Vec<&str> = earlier.iter().take(4).map(|(n, _)| n.as_str()).collect();
                    let more = if earlier.len() > 4 { ", ..." } else { "" };
                    return Err(OutputError::EarlierRun {
                        path: root,
                        kind: old_kind,
                        found: format!("{}{more}", names.join(", ")),
                    });
                }
                Mode::Resume if old_kind != claim.kind => {
                    return Err(OutputError::OtherKind { path: root, was: old_kind, now: claim.kind.into() });
                }
                Mode::Resume => {
                    if let Some((name, _)) = earlier.iter().find(|(_, link)| *link) {
                        return Err(OutputError::Symlink { path: root.join(name) });
                    }
                    if let Some(m) = &old {
                        marker.entries.extend(m.entries.iter().cloned());
                        marker.prefixes.extend(m.prefixes.iter().cloned());
                    }
                    self.resumed = true;
                }
                Mode::Force => {
                    for (name, _) in &earlier {
                        remove_entry(&root.join(name))?;
                    }
                }
            }
        }
        let text = serde_json::to_string_pretty(&marker).map_err(|e| OutputError::Io {
            path: root.join(MARKER_FILE),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&root.join(MARKER_FILE), text.as_bytes())
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Whether an earlier run was kept to be continued (`--resume`).
    pub fn resumed(&self) -> bool {
        self.resumed
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        // Only our own lock: never one another run took over.
        if std::fs::read_to_string(&self.lock).is_ok_and(|t| t == self.token) {
            let _ = std::fs::remove_file(&self.lock);
        }
    }
}

/// The marker of an earlier run: the marker file, or for a folder written before markers
/// existed, a `manifest.json` written by sinkscope (its usual entries are then ours).
fn read_marker(root: &Path) -> Result<Option<Marker>, OutputError> {
    let path = root.join(MARKER_FILE);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(OutputError::Symlink { path });
    }
    if let Ok(text) = std::fs::read_to_string(&path) {
        let m: Marker = serde_json::from_str(&text).map_err(|e| OutputError::Io {
            path: path.clone(),
            source: std::io::Error::other(format!("not a sinkscope ownership marker: {e}")),
        })?;
        return Ok(Some(m));
    }
    let manifest = root.join("manifest.json");
    if std::fs::symlink_metadata(&manifest).is_ok_and(|m| m.file_type().is_symlink()) {
        return Ok(None);
    }
    let legacy = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(|v| v["tool"]["name"] == "sinkscope");
    Ok(legacy.map(|v| {
        let kind = v["kind"].as_str().unwrap_or("").to_string();
        // `run` wrote only these two; the other kinds' entries are listed below.
        let (entries, prefixes) = match kind.as_str() {
            "run" => (&["manifest.json", "activations"][..], &[][..]),
            _ => (LEGACY_ENTRIES, LEGACY_PREFIXES),
        };
        Marker {
            written_by: "sinkscope".into(),
            kind,
            entries: entries.iter().map(|s| s.to_string()).collect(),
            prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
        }
    }))
}

/// What a run folder written before ownership markers holds.
const LEGACY_ENTRIES: &[&str] = &[
    "manifest.json",
    "metrics.json",
    "prompts.jsonl",
    "layers.csv",
    "plots",
    "report.html",
    "activations",
    "features.f32",
    "ablate.json",
    "dose_response.csv",
    "baseline",
    "mean_ablate",
];
const LEGACY_PREFIXES: &[&str] = &["scale_", "only_"];

/// This process's identity in a lock: pid, start time (clock ticks since boot, so a reused
/// pid is not mistaken for the holder) and host.
fn process_start(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19).map(str::to_string)
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// Whether the process that wrote lock content `text` is still running (unknown: yes).
fn holder_alive(text: &str) -> bool {
    let first = text.lines().next().unwrap_or("");
    let field = |key: &str| {
        let mut it = first.split_whitespace();
        while let Some(k) = it.next() {
            if k == key {
                return it.next().map(str::to_string);
            }
        }
        None
    };
    let (Some(pid), Some(start)) = (field("pid"), field("start")) else { return true };
    if field("host").unwrap_or_default() != host() || !Path::new("/proc/self/stat").exists() {
        return true; // cannot tell from here
    }
    process_start(&pid).is_some_and(|s| s == start)
}

/// Creates the lock file exclusively; a lock whose holder is gone is replaced once.
fn take_lock(lock: &Path) -> Result<String, OutputError> {
    let pid = std::process::id();
    let start = process_start("self").unwrap_or_else(|| "?".into());
    let command: Vec<String> = std::env::args().collect();
    let token = format!("pid {pid} start {start} host {}\n{}\n", host(), command.join(" "));
    for attempt in 0..2 {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).mode(0o644);
        }
        match o.open(lock) {
            Ok(mut f) => {
                f.write_all(token.as_bytes()).map_err(OutputError::io(lock))?;
                return Ok(token);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt == 0 => {
                if std::fs::symlink_metadata(lock).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(OutputError::Symlink { path: lock.to_path_buf() });
                }
                let text = std::fs::read_to_string(lock).unwrap_or_default();
                if holder_alive(&text) {
                    let holder = text.lines().take(2).collect::<Vec<_>>().join(": ");
                    return Err(OutputError::Locked { lock: lock.to_path_buf(), holder });
                }
                let _ = std::fs::remove_file(lock); // stale: its process is gone
            }
            Err(e) => return Err(OutputError::Io { path: lock.to_path_buf(), source: e }),
        }
    }
    Err(OutputError::Locked { lock: lock.to_path_buf(), holder: "another run took it first".into() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// A fresh folder, removed when the guard drops.
    fn tmp(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("sinkscope-claim-{name}-")).tempdir().unwrap()
    }

    fn claim<'a>(mode: Mode, inputs: &'a [&'a Path]) -> Claim<'a> {
        Claim { kind: "profile", entries: &["manifest.json", "plots"], prefixes: &["scale_"], inputs, mode }
    }

    /// A second claim is refused while the first is held; released on drop.
    #[test]
    fn lock_refuses_a_second_run_and_is_released() {
        let guard = tmp("lock");
        let d = guard.path().to_path_buf();
        let a = OutDir::claim(&d, &claim(Mode::Fresh, &[])).unwrap();
        let e = OutDir::claim(&d, &claim(Mode::Resume, &[])).unwrap_err();
        assert!(matches!(e, OutputError::Locked { .. }), "{e}");
        assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
        drop(a);
        assert!(!d.join(LOCK_FILE).exists());
        // A lock left by a dead process is taken over.
        std::fs::write(d.join(LOCK_FILE), "pid 999999999 start 1 host x\nold\n").unwrap();
        let host_line = format!("pid 999999999 start 1 host {}\nold\n", host());
        std::fs::write(d.join(LOCK_FILE), host_line).unwrap();
        OutDir::claim(&d, &claim(Mode::Fresh, &[])).unwrap();
    }

    /// Earlier runs: refused when fresh, removed with force (ours only), kept with resume.
    #[test]
    fn earlier_run_modes() {
        let guard = tmp("modes");
        let d = guard.path().to_path_buf();
        drop(OutDir::claim(&d, &claim(Mode::Fresh, &[])).unwrap());
        std::fs::write(d.join("manifest.json"), "{}").unwrap();
        std::fs::create_dir(d.join("scale_0")).unwrap();
        std::fs::write(d.join("notes.txt"), "mine").unwrap();
        let e = OutDir::claim(&d, &claim(Mode::Fresh, &[])).unwrap_err();
        assert!(matches!(e, OutputError::EarlierRun { .. }), "{e}");
        let r = OutDir::claim(&d, &claim(Mode::Resume, &[])).unwrap();
        assert!(r.resumed());
        drop(r);
        assert!(d.join("manifest.json").exists());
        drop(OutDir::claim(&d, &claim(Mode::Force, &[])).unwrap());
        assert!(!d.join("manifest.json").exists() && !d.join("scale_0").exists());
        assert_eq!(std::fs::read_to_string(d.join("notes.txt")).unwrap(), "mine");
    }

    /// A file we did not write is never replaced, even with force; an input inside an entry
    /// is refused.
    #[test]
    fn foreign_files_and_inputs() {
        let guard = tmp("foreign");
        let d = guard.path().to_path_buf();
        std::fs::write(d.join("manifest.json"), "{\"not\": \"ours\"}").unwrap();
        let e = OutDir::claim(&d, &claim(Mode::Force, &[])).unwrap_err();
        assert!(matches!(e, OutputError::NotOurs { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(d.join("manifest.json")).unwrap(), "{\"not\": \"ours\"}");
        let input = d.join("manifest.json");
        let inputs = [input.as_path()];
        let e = OutDir::claim(&d, &claim(Mode::Force, &inputs)).unwrap_err();
        assert!(matches!(e, OutputError::InputInside { .. }), "{e}");
        assert!(!d.join(LOCK_FILE).exists());
        // The output folder itself as an input (e.g. `compare RUN --out RUN`).
        let folder = [d.as_path()];
        let e = OutDir::claim(&d, &claim(Mode::Force, &folder)).unwrap_err();
        assert!(matches!(e, OutputError::InputInside { .. }), "{e}");
    }

    /// A folder written before markers: a sinkscope `run` manifest makes only `run`'s entries
    /// ours, so a user's `prompts.jsonl` beside it is not.
    #[test]
    fn legacy_run_folder() {
        let guard = tmp("legacy");
        let d = guard.path().to_path_buf();
        std::fs::write(d.join("manifest.json"), r#"{"kind": "run", "tool": {"name": "sinkscope"}}"#).unwrap();
        let c = Claim {
            kind: "profile",
            entries: &["manifest.json", "prompts.jsonl"],
            prefixes: &[],
            inputs: &[],
            mode: Mode::Force,
        };
        std::fs::write(d.join("prompts.jsonl"), "mine").unwrap();
        let e = OutDir::claim(&d, &c).unwrap_err();
        assert!(matches!(e, OutputError::NotOurs { .. }), "{e}");
        std::fs::remove_file(d.join("prompts.jsonl")).unwrap();
        drop(OutDir::claim(&d, &c).unwrap());
        assert!(!d.join("manifest.json").exists());
    }
}
