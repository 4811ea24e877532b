//! Prompt files: JSONL (`{"id": "...", "text": "..."}`, id optional, default the line number)
//! or plain text (one prompt per line). Errors name the file and the line.

use std::path::{Path, PathBuf};

/// One prompt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Prompt {
    /// Identifier (from the file, or the 1-based line number).
    pub id: String,
    /// The text.
    pub text: String,
}

/// Limits of the prompt reader (RELIABILITY.md, "Prompt files"): a longer line or a bigger
/// file is an error naming the file, never an unbounded allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Bytes in one line (one prompt), newline excluded.
    pub max_line_bytes: usize,
    /// Bytes in the whole file.
    pub max_file_bytes: u64,
}

/// A prompt may be up to 4 MiB (far beyond any model's context; `--truncate` cuts it).
pub const MAX_LINE_BYTES: usize = 4 << 20;
/// A prompt file may be up to 1 GiB.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

impl Default for Caps {
    fn default() -> Self {
        Caps { max_line_bytes: MAX_LINE_BYTES, max_file_bytes: MAX_FILE_BYTES }
    }
}

/// Errors reading a prompt file.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Os {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not valid UTF-8.
    #[error("{path}: line {line}: not valid UTF-8")]
    Utf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// A malformed line.
    #[error("{path}: line {line}: {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why.
        reason: String,
    },
    /// No prompts at all.
    #[error("{path}: no prompts in the file")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A line longer than [`Caps::max_line_bytes`].
    #[error(
        "{path}: line {line}: longer than {max} bytes (the limit of one prompt; is this a prompt file?)"
    )]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The cap.
        max: usize,
    },
    /// A file bigger than [`Caps::max_file_bytes`].
    #[error("{path}: larger than {max} bytes (the limit of a prompt file; use --limit or split it)")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
    /// UTF-16 text (a UTF-16 byte-order mark).
    #[error("{path}: starts with a UTF-16 byte-order mark; prompt files must be UTF-8")]
    Utf16 {
        /// The file.
        path: PathBuf,
    },
}

/// A prompt file as read: its prompts and what identifies it (recorded in manifests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptFile {
    /// The prompts, in file order (at most `limit` of them).
    pub prompts: Vec<Prompt>,
    /// The file's canonical path (the path as given when it cannot be resolved), so that
    /// `./f.jsonl` and `f.jsonl` are the same input.
    pub path: PathBuf,
    /// sha256 of the file's bytes (all of them, also past `limit`).
    pub sha256: String,
    /// Whether a UTF-8 byte-order mark was skipped at its start.
    pub bom: bool,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Streams prompts out of `reader` (the contents of `path`): one line at a time, at most
/// `caps.max_line_bytes` per line and `caps.max_file_bytes` in all, stopping the parse after
/// `limit` prompts (the rest is only hashed). A UTF-8 byte-order mark is skipped (and
/// reported); a UTF-16 one is an error. The file is JSONL when its first non-blank line starts
/// with `{`. Blank lines are skipped in both formats; ids must be unique.
///
/// # Errors
/// [`PromptError`] naming the file (and the line).
pub fn read_prompts_from(
    path: &Path,
    reader: impl std::io::Read,
    limit: Option<usize>,
    caps: Caps,
) -> Result<PromptFile, PromptError> {
    use sha2::{Digest, Sha256};
    use std::io::{BufRead, Read};
    let os = |source| PromptError::Os { path: path.into(), source };
    let mut reader = std::io::BufReader::with_capacity(1 << 16, reader);
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    let mut buf = Vec::new();
    let mut out: Vec<Prompt> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut jsonl: Option<bool> = None;
    let mut bom = false;
    let mut n = 0usize;
    let max_line = caps.max_line_bytes;
    while limit.is_none_or(|l| out.len() < l) {
        buf.clear();
        // +2: room for the newline (and a CR) of a line of exactly the maximum length.
        let take = u64::try_from(max_line).unwrap_or(u64::MAX).saturating_add(2);
        let got = reader.by_ref().take(take).read_until(b'\n', &mut buf).map_err(os)?;
        if got == 0 {
            break;
        }
        n += 1;
        hasher.update(&buf);
        total += got as u64;
        if total > caps.max_file_bytes {
            return Err(PromptError::FileTooLarge { path: path.into(), max: caps.max_file_bytes });
        }
        let mut raw: &[u8] = &buf;
        raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > max_line || (buf.last() != Some(&b'\n') && got as u64 == take) {
            return Err(PromptError::LineTooLong { path: path.into(), line: n, max: max_line });
        }
        if n == 1 {
            if let Some(rest) = raw.strip_prefix(UTF8_BOM) {
                raw = rest;
                bom = true;
            } else if raw.starts_with(b"\xFF\xFE") || raw.starts_with(b"\xFE\xFF") {
                return Err(PromptError::Utf16 { path: path.into() });
            }
        }
        let line = std::str::from_utf8(raw).map_err(|_| PromptError::Utf8 { path: path.into(), line: n })?;
        if line.trim().is_empty() {
            continue;
        }
        let jsonl = *jsonl.get_or_insert_with(|| line.trim_start().starts_with('{'));
        let prompt = parse_line(path, n, line, jsonl)?;
        if prompt.id.is_empty() || !seen.insert(prompt.id.clone()) {
            let reason = format!("id '{}' is empty or used twice", prompt.id);
            return Err(PromptError::Line { path: path.into(), line: n, reason });
        }
        out.push(prompt);
    }
    // Past the limit the rest is hashed, not parsed (still within the file-size cap).
    let room = caps.max_file_bytes.saturating_sub(total).saturating_add(1);
    let mut sink = HashWriter(&mut hasher);
    let rest = std::io::copy(&mut reader.by_ref().take(room), &mut sink).map_err(os)?;
    if total + rest > caps.max_file_bytes {
        return Err(PromptError::FileTooLarge { path: path.into(), max: caps.max_file_bytes });
    }
    if out.is_empty() {
        return Err(PromptError::Empty { path: path.into() });
    }
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(PromptFile { prompts: out, path: canonical, sha256, bom })
}

/// Feeds written bytes to a hasher.
struct HashWriter<'a>(&'a mut sha2::Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(self.0, b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One non-blank line as a prompt.
fn parse_line(path: &Path, n: usize, line: &str, jsonl: bool) -> Result<Prompt, PromptError> {
    let bad = |reason: String| PromptError::Line { path: path.into(), line: n, reason };
    let prompt = if jsonl {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let obj = v.as_object().ok_or_else(|| bad("expected a JSON object".into()))?;
        let text = obj
            .get("text")
            .ok_or_else(|| bad("missing field 'text'".into()))?
            .as_str()
            .ok_or_else(|| bad("field 'text' is not a string".into()))?;
        let id = match obj.get("id") {
            None | Some(serde_json::Value::Null) => n.to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(x)) => x.to_string(),
            Some(_) => return Err(bad("field 'id' must be a string or a number".into())),
        };
        Prompt { id, text: text.to_string() }
    } else {
        Prompt { id: n.to_string(), text: line.to_string() }
    };
    if prompt.text.trim().is_empty() {
        return Err(bad("empty prompt".into()));
    }
    Ok(prompt)
}

/// Parses prompt-file bytes (all of them; see [`read_prompts_from`]).
///
/// # Errors
/// [`PromptError`] naming the file (and the line).
pub fn parse_prompts(path: &Path, bytes: &[u8]) -> Result<Vec<Prompt>, PromptError> {
    read_prompts_from(path, bytes, None, Caps::default()).map(|f| f.prompts)
}

/// Opens and streams a prompt file ([`read_prompts_from`] with the default caps), keeping the
/// first `limit` prompts.
///
/// # Errors
/// [`PromptError`] naming the file (and the line).
pub fn read_prompt_file(path: &Path, limit: Option<usize>) -> Result<PromptFile, PromptError> {
    let file = std::fs::File::open(path).map_err(|source| PromptError::Os { path: path.into(), source })?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        let source = std::io::Error::other("is a folder, not a prompt file");
        return Err(PromptError::Os { path: path.into(), source });
    }
    read_prompts_from(path, file, limit, Caps::default())
}

/// Reads and parses a whole prompt file.
///
/// # Errors
/// [`PromptError`] naming the file (and the line).
pub fn read_prompts(path: &Path) -> Result<Vec<Prompt>, PromptError> {
    read_prompt_file(path, None).map(|f| f.prompts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// JSONL ids default to the line number; plain text is one prompt per line.
    #[test]
    fn both_formats() {
        let p = Path::new("p.jsonl");
        let v = parse_prompts(p, b"{\"id\":\"a\",\"text\":\"x y\"}\n\n{\"text\":\"z\"}\n").unwrap();
        assert_eq!(
            v,
            vec![Prompt { id: "a".into(), text: "x y".into() }, Prompt { id: "3".into(), text: "z".into() }]
        );
        let v = parse_prompts(p, b"hello\r\nworld\n").unwrap();
        assert_eq!(v[1], Prompt { id: "2".into(), text: "world".into() });
    }

    /// Broken inputs name the line.
    #[test]
    fn errors_name_the_line() {
        let p = Path::new("p.jsonl");
        let e = parse_prompts(p, b"{\"text\":\"a\"}\n{oops\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("invalid JSON"), "{e}");
        let e = parse_prompts(p, b"ok\n\xff\xfe\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("UTF-8"), "{e}");
        assert!(parse_prompts(p, b"\n\n").unwrap_err().to_string().contains("no prompts"));
        let e = parse_prompts(p, b"{\"text\":\"  \"}\n").unwrap_err().to_string();
        assert!(e.contains("empty prompt"), "{e}");
        let e = parse_prompts(p, b"{\"id\":\"a\",\"text\":\"x\"}\n{\"id\":\"a\",\"text\":\"y\"}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("used twice"), "{e}");
    }

    /// A UTF-8 byte-order mark is skipped and reported (the file stays JSONL); UTF-16 is an
    /// error.
    #[test]
    fn byte_order_mark() {
        let p = Path::new("p.jsonl");
        let f =
            read_prompts_from(p, &b"\xEF\xBB\xBF{\"id\":\"a\",\"text\":\"x\"}\n"[..], None, Caps::default())
                .unwrap();
        assert!(f.bom);
        assert_eq!(f.prompts, vec![Prompt { id: "a".into(), text: "x".into() }]);
        let e = parse_prompts(p, b"\xFF\xFEa\x00").unwrap_err().to_string();
        assert!(e.contains("UTF-16"), "{e}");
    }

    /// Caps: a long line and a big file are errors naming the line / the file; `limit` stops
    /// the parse (a broken line after it is never seen) but the whole file is hashed.
    #[test]
    fn caps_and_limit() {
        let p = Path::new("p.txt");
        let caps = Caps { max_line_bytes: 8, max_file_bytes: 64 };
        assert!(read_prompts_from(p, &b"12345678\r\nok\n"[..], None, caps).is_ok());
        let e = read_prompts_from(p, &b"ok\n123456789\n"[..], None, caps).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("longer than 8 bytes"), "{e}");
        let e = read_prompts_from(p, std::io::repeat(0), None, caps).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("longer than"), "{e}");
        let e = read_prompts_from(p, &b"a\n".repeat(40)[..], None, caps).unwrap_err().to_string();
        assert!(e.contains("larger than 64 bytes"), "{e}");
        let e =
            read_prompts_from(p, &[&b"a\n"[..], &b"b".repeat(100)].concat()[..], Some(1), caps).unwrap_err();
        assert!(e.to_string().contains("larger than 64"), "{e}");
        let whole =
            read_prompts_from(p, &b"{\"text\":\"a\"}\n{oops\n"[..], Some(1), Caps::default()).unwrap();
        assert_eq!(whole.prompts.len(), 1);
        let other =
            read_prompts_from(p, &b"{\"text\":\"a\"}\n{oops!\n"[..], Some(1), Caps::default()).unwrap();
        assert_ne!(whole.sha256, other.sha256);
    }
}
