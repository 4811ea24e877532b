//! File operations that never follow a symbolic link and never leave a half-written file
//! under its final name.

use crate::OutputError;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary name next to `path` (same folder, so the rename is atomic): hidden, unique to
/// this process and call.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Options that create a new file, failing if anything (a symlink included) has that name.
fn new_file_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).mode(0o644);
    }
    o
}

/// Creates a uniquely named temporary file next to `path`.
fn create_temp(path: &Path) -> Result<(PathBuf, File), OutputError> {
    let tmp = temp_path(path);
    let file = new_file_options().open(&tmp).map_err(OutputError::io(path))?;
    Ok((tmp, file))
}

/// Writes `bytes` to `path` atomically: to a temporary file in the same folder (created with
/// `O_EXCL | O_NOFOLLOW`), then renamed over `path`. A symlink at `path` is replaced, never
/// followed; a reader sees the old file or the whole new one.
///
/// # Errors
/// [`OutputError::Io`] naming `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let (tmp, mut file) = create_temp(path)?;
    let written = file.write_all(bytes).and_then(|()| file.flush());
    drop(file);
    let result = written.and_then(|()| std::fs::rename(&tmp, path));
    if let Err(source) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(OutputError::Io { path: path.to_path_buf(), source });
    }
    Ok(())
}

/// Creates `path` as a new, empty file for streaming (e.g. a JSONL file flushed line by line):
/// created under a temporary name with `O_EXCL | O_NOFOLLOW` and renamed into place before
/// the first byte is written, so an existing file or planted symlink at `path` is replaced,
/// never written through.
///
/// # Errors
/// [`OutputError::Io`] naming `path`.
pub fn create_fresh(path: &Path) -> Result<File, OutputError> {
    let (tmp, file) = create_temp(path)?;
    if let Err(source) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(OutputError::Io { path: path.to_path_buf(), source });
    }
    Ok(file)
}

/// Opens an existing streamed file to continue it (`--resume`), read-write, created if
/// missing; a symbolic link at `path` is refused (`O_NOFOLLOW`).
///
/// # Errors
/// [`OutputError::Symlink`] or [`OutputError::Io`] naming `path`.
pub fn open_existing(path: &Path) -> Result<File, OutputError> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(OutputError::Symlink { path: path.to_path_buf() });
    }
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).mode(0o644);
    }
    o.open(path).map_err(OutputError::io(path))
}

/// Makes sure `path` is a real folder (created with its parents when missing); a symbolic
/// link there is refused, so nothing is written through it.
///
/// # Errors
/// [`OutputError::Symlink`], or [`OutputError::Io`] naming `path` (e.g. a regular file).
pub fn create_dir(path: &Path) -> Result<(), OutputError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(OutputError::Symlink { path: path.to_path_buf() }),
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(OutputError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("exists and is not a folder"),
        }),
        Err(_) => std::fs::create_dir_all(path).map_err(OutputError::io(path)),
    }
}

/// Removes a file, a symbolic link (not its target) or a whole folder.
///
/// # Errors
/// [`OutputError::Io`] naming `path`.
pub fn remove_entry(path: &Path) -> Result<(), OutputError> {
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(OutputError::Io { path: path.to_path_buf(), source: e }),
    };
    if m.is_dir() {
        std::fs::remove_dir_all(path).map_err(OutputError::io(path))
    } else {
        std::fs::remove_file(path).map_err(OutputError::io(path))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A fresh folder, removed when the guard drops.
    fn tmp(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("sinkscope-output-{name}-")).tempdir().unwrap()
    }

    /// A planted symlink is replaced by the new file; its target is untouched.
    #[cfg(unix)]
    #[test]
    fn atomic_write_replaces_a_symlink_without_following_it() {
        let guard = tmp("symlink");
        let d = guard.path().to_path_buf();
        let victim = d.join("victim.txt");
        std::fs::write(&victim, "precious").unwrap();
        let link = d.join("manifest.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "new");
        let link2 = d.join("prompts.jsonl");
        std::os::unix::fs::symlink(&victim, &link2).unwrap();
        let mut f = create_fresh(&link2).unwrap();
        f.write_all(b"line\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&link2).unwrap(), "line\n");
        std::os::unix::fs::symlink(&victim, d.join("again")).unwrap();
        assert!(matches!(open_existing(&d.join("again")), Err(OutputError::Symlink { .. })));
        std::os::unix::fs::symlink(&d, d.join("plots")).unwrap();
        assert!(matches!(create_dir(&d.join("plots")), Err(OutputError::Symlink { .. })));
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(left.is_empty());
    }
}
