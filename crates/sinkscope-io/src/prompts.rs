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
}

/// Parses prompt-file bytes. The file is JSONL when its first non-blank line starts with `{`.
/// Blank lines are skipped in both formats; ids must be unique.
pub fn parse_prompts(path: &Path, bytes: &[u8]) -> Result<Vec<Prompt>, PromptError> {
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let mut texts = Vec::with_capacity(lines.len());
    for (i, raw) in lines.iter().enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let s = std::str::from_utf8(raw).map_err(|_| PromptError::Utf8 { path: path.into(), line: i + 1 })?;
        texts.push(s);
    }
    let jsonl = texts.iter().find(|l| !l.trim().is_empty()).is_some_and(|l| l.trim_start().starts_with('{'));
    let mut out: Vec<Prompt> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, line) in texts.iter().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
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
        if prompt.id.is_empty() || !seen.insert(prompt.id.clone()) {
            return Err(bad(format!("id '{}' is empty or used twice", prompt.id)));
        }
        out.push(prompt);
    }
    if out.is_empty() {
        return Err(PromptError::Empty { path: path.into() });
    }
    Ok(out)
}

/// Reads and parses a prompt file.
pub fn read_prompts(path: &Path) -> Result<Vec<Prompt>, PromptError> {
    let bytes = std::fs::read(path).map_err(|source| PromptError::Os { path: path.into(), source })?;
    parse_prompts(path, &bytes)
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
}
