//! Loading a Hugging Face tokenizer folder (`tokenizer.json` + optional config files).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Tokenizer, TokenizerError};

/// Text used to observe what the `tokenizer.json` post-processor adds around a sequence.
const PROBE_TEXT: &str = "Hello world";

/// A special token named in a JSON file: its text, or `None` when the file says `null`.
struct NamedToken {
    text: Option<String>,
    path: PathBuf,
    field: &'static str,
}

impl Tokenizer {
    /// Loads a Hugging Face tokenizer folder.
    ///
    /// * `tokenizer.json` is required (run by the `tokenizers` library as is: normalizer,
    ///   pre-tokenizer, model, added tokens, decoder).
    /// * `tokenizer_config.json` (optional): `bos_token` / `eos_token` (a string, an object with
    ///   `"content"`, or `null`) and `add_bos_token`.
    /// * `special_tokens_map.json` (optional): `bos_token` / `eos_token`, used when
    ///   `tokenizer_config.json` does not name them.
    ///
    /// The model's own BOS setting (`add_bos_default`) follows `transformers` ≥ 5:
    /// 1. if `tokenizer_config.json` has a boolean `add_bos_token`, that value wins (transformers
    ///    then rebuilds the post-processor from it); `true` without a BOS token counts as `false`,
    ///    as in transformers;
    /// 2. otherwise the `tokenizer.json` post-processor decides: a probe text is encoded with and
    ///    without `add_special_tokens`; BOS is on when the former is the BOS id followed by the latter.
    ///    If no file names a BOS token but the post-processor prepends a token, that token is
    ///    taken as the BOS.
    pub fn from_hf_folder(dir: &Path) -> Result<Tokenizer, TokenizerError> {
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(TokenizerError::NotFound { path: tokenizer_path });
        }
        let bytes = std::fs::read(&tokenizer_path)
            .map_err(|source| TokenizerError::Io { path: tokenizer_path.clone(), source })?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| {
            TokenizerError::InvalidTokenizerJson { path: tokenizer_path.clone(), message: e.to_string() }
        })?;

        let config_path = dir.join("tokenizer_config.json");
        let config = read_optional_json(&config_path)?;
        let map_path = dir.join("special_tokens_map.json");
        let special_map = read_optional_json(&map_path)?;

        let named = |field: &'static str| -> Result<Option<NamedToken>, TokenizerError> {
            for (json, path) in [(&config, &config_path), (&special_map, &map_path)] {
                if let Some(value) = json.as_ref().and_then(|v| v.get(field)) {
                    return Ok(Some(NamedToken {
                        text: token_text(value, path, field)?,
                        path: path.clone(),
                        field,
                    }));
                }
            }
            Ok(None)
        };
        let bos_named = named("bos_token")?;
        let eos_named = named("eos_token")?;

        let add_bos_flag = match config.as_ref().and_then(|c| c.get("add_bos_token")) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                return Err(TokenizerError::InvalidField {
                    path: config_path.clone(),
                    field: "add_bos_token".to_string(),
                    message: format!("expected a boolean, found {other}"),
                })
            }
        };

        let (mut bos_id, mut bos_token) = resolve_named(&inner, bos_named.as_ref())?;
        let (eos_id, eos_token) = resolve_named(&inner, eos_named.as_ref())?;

        let add_bos_default = match add_bos_flag {
            Some(flag) => flag && bos_id.is_some(),
            None => {
                let prefix = post_processor_prefix(&inner, &tokenizer_path)?;
                match (bos_id, prefix) {
                    (Some(bos), Some(first)) => first == bos,
                    (Some(_), None) => false,
                    (None, Some(first)) if bos_named.is_none() => {
                        bos_id = Some(first);
                        bos_token = inner.id_to_token(first);
                        true
                    }
                    (None, _) => false,
                }
            }
        };

        Ok(Tokenizer {
            inner,
            bos_id,
            bos_token,
            eos_id,
            eos_token,
            add_bos_default,
            source: format!("Hugging Face tokenizer {}", tokenizer_path.display()),
        })
    }
}

/// Reads a JSON file if it exists; a file that exists but is unreadable/invalid is an error.
fn read_optional_json(path: &Path) -> Result<Option<Value>, TokenizerError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|source| TokenizerError::Io { path: path.to_path_buf(), source })?;
    let value = serde_json::from_str(&text)
        .map_err(|source| TokenizerError::InvalidJson { path: path.to_path_buf(), source })?;
    Ok(Some(value))
}

/// The text of a special-token entry: `"<s>"`, `{"content": "<s>", ...}` or `null`.
fn token_text(value: &Value, path: &Path, field: &str) -> Result<Option<String>, TokenizerError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Object(map) => match map.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(TokenizerError::InvalidField {
                path: path.to_path_buf(),
                field: field.to_string(),
                message: "expected an object with a string \"content\"".to_string(),
            }),
        },
        other => Err(TokenizerError::InvalidField {
            path: path.to_path_buf(),
            field: field.to_string(),
            message: format!("expected a string, an object with \"content\", or null; found {other}"),
        }),
    }
}

/// Looks a named special token up in the vocabulary.
fn resolve_named(
    inner: &tokenizers::Tokenizer,
    named: Option<&NamedToken>,
) -> Result<(Option<u32>, Option<String>), TokenizerError> {
    let Some(named) = named else {
        return Ok((None, None));
    };
    let Some(text) = &named.text else {
        return Ok((None, None));
    };
    match inner.token_to_id(text) {
        Some(id) => Ok((Some(id), Some(text.clone()))),
        None => Err(TokenizerError::InvalidField {
            path: named.path.clone(),
            field: named.field.to_string(),
            message: format!("token '{text}' is not in the vocabulary of tokenizer.json"),
        }),
    }
}

/// The id the post-processor puts in front of a sequence, if any.
fn post_processor_prefix(
    inner: &tokenizers::Tokenizer,
    tokenizer_path: &Path,
) -> Result<Option<u32>, TokenizerError> {
    let encode = |add_special: bool| {
        inner.encode(PROBE_TEXT, add_special).map(|e| e.get_ids().to_vec()).map_err(|e| {
            TokenizerError::InvalidTokenizerJson {
                path: tokenizer_path.to_path_buf(),
                message: format!("probe encoding failed: {e}"),
            }
        })
    };
    let with = encode(true)?;
    let without = encode(false)?;
    match with.split_first() {
        Some((&first, rest)) if rest.starts_with(&without) && with.len() > without.len() => Ok(Some(first)),
        _ => Ok(None),
    }
}
