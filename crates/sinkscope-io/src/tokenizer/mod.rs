//! Tokenizers: a Hugging Face `tokenizer.json` folder or the vocabulary embedded in a GGUF file,
//! both run by the `tokenizers` crate, with one explicit rule for the BOS token.
//!
//! Encoding is always `[BOS if wanted] + encode(text, add_special_tokens = false)`: the library's
//! post-processor is never used to add special tokens, so the BOS decision is made in one place
//! ([`BosPolicy`]) and reported back ([`Encoded::bos_prepended`]). No EOS is ever appended.
//!
//! Literal special-token text in the input (e.g. `"<|im_start|>"`) is matched as that single token,
//! like `transformers` and like llama.cpp's `tokenize(..., special=True)`.
//!
//! * [`Tokenizer::from_hf_folder`]: see there for how the model's own BOS setting is determined.
//! * [`Tokenizer::from_gguf_vocab`]: rebuilds the pipeline from `tokenizer.ggml.*` metadata
//!   ([`GgufVocab`]); byte-level BPE (`tokenizer.ggml.model = "gpt2"`) with the pre-tokenizer chosen
//!   by `tokenizer.ggml.pre`, and SentencePiece (`"llama"`).

mod gguf_vocab;
mod hf_folder;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use gguf_vocab::{supported_gguf_pre_tokenizers, GgufVocab};

/// Errors from loading a tokenizer or encoding/decoding with it.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required file does not exist.
    #[error("tokenizer file not found: {path}")]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// A file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `tokenizer.json` could not be parsed by the `tokenizers` library.
    #[error("invalid tokenizer file {path}: {message}")]
    InvalidTokenizerJson {
        /// The file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
    /// An auxiliary JSON file (`tokenizer_config.json`, `special_tokens_map.json`) is not valid JSON.
    #[error("invalid JSON in {path}: {source}")]
    InvalidJson {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A field of an auxiliary JSON file has an unexpected shape or value.
    #[error("invalid field `{field}` in {path}: {message}")]
    InvalidField {
        /// The file.
        path: PathBuf,
        /// The field name.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// `tokenizer.ggml.model` names a tokenizer type this constructor cannot build.
    #[error("unsupported tokenizer model '{model}' in GGUF (field tokenizer.ggml.model): {hint}")]
    UnsupportedGgufModel {
        /// The value of `tokenizer.ggml.model`.
        model: String,
        /// What is supported instead.
        hint: String,
    },
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not know.
    #[error("unsupported pre-tokenizer '{pre}' in GGUF (field tokenizer.ggml.pre); supported: {supported}")]
    UnsupportedGgufPre {
        /// The value of `tokenizer.ggml.pre`.
        pre: String,
        /// Comma-separated list of the supported names.
        supported: String,
    },
    /// A `tokenizer.ggml.*` field is missing, inconsistent or out of range.
    #[error("invalid GGUF tokenizer metadata (field {field}): {message}")]
    InvalidGguf {
        /// The GGUF key, e.g. `tokenizer.ggml.bos_token_id`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// [`BosPolicy::Always`] was requested but the tokenizer has no BOS token.
    #[error(
        "a BOS token was requested (bos policy 'always') but the tokenizer ({source_desc}) has no BOS token"
    )]
    NoBosToken {
        /// [`Tokenizer::source`] of the tokenizer.
        source_desc: String,
    },
    /// `--bos eos` was requested but the tokenizer has no EOS token.
    #[error("--bos eos: the tokenizer ({source_desc}) has no EOS token")]
    NoEosToken {
        /// [`Tokenizer::source`] of the tokenizer.
        source_desc: String,
    },
    /// The `tokenizers` library failed while encoding.
    #[error("encoding failed ({source_desc}): {message}")]
    Encode {
        /// [`Tokenizer::source`] of the tokenizer.
        source_desc: String,
        /// The library's message.
        message: String,
    },
    /// The `tokenizers` library failed while decoding.
    #[error("decoding failed ({source_desc}): {message}")]
    Decode {
        /// [`Tokenizer::source`] of the tokenizer.
        source_desc: String,
        /// The library's message.
        message: String,
    },
}

/// Whether [`Tokenizer::encode`] prepends the BOS token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BosPolicy {
    /// Do what the model does by default ([`Tokenizer::add_bos_default`]).
    #[default]
    Auto,
    /// Always prepend BOS; an error if the tokenizer has none.
    Always,
    /// Never prepend BOS.
    Never,
    /// Prepend the EOS token in BOS's place (Gu et al. 2025's convention for models without a
    /// BOS token); an error if the tokenizer has no EOS.
    Eos,
}

impl BosPolicy {
    /// The lowercase name used by serde, [`FromStr`] and [`fmt::Display`].
    pub fn as_str(self) -> &'static str {
        match self {
            BosPolicy::Auto => "auto",
            BosPolicy::Always => "always",
            BosPolicy::Never => "never",
            BosPolicy::Eos => "eos",
        }
    }
}

impl fmt::Display for BosPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`BosPolicy::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid BOS policy '{0}': expected one of auto, always, never, eos")]
pub struct ParseBosPolicyError(pub String);

impl FromStr for BosPolicy {
    type Err = ParseBosPolicyError;

    /// Parses `auto`, `always`, `never` or `eos` (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BosPolicy::Auto),
            "always" => Ok(BosPolicy::Always),
            "never" => Ok(BosPolicy::Never),
            "eos" => Ok(BosPolicy::Eos),
            _ => Err(ParseBosPolicyError(s.to_string())),
        }
    }
}

/// Result of [`Tokenizer::encode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encoded {
    /// Token ids, BOS included when [`Encoded::bos_prepended`].
    pub ids: Vec<u32>,
    /// Token strings as the vocabulary spells them (byte-level BPE: space = `Ġ`, newline = `Ċ`),
    /// one per id.
    pub tokens: Vec<String>,
    /// Whether `ids[0]` was prepended by the policy (a BOS, or the EOS for [`BosPolicy::Eos`];
    /// not BOS text found in the input).
    pub bos_prepended: bool,
}

/// A tokenizer plus the special-token facts sinkscope needs.
///
/// Invariant: `add_bos_default` implies `bos_id.is_some()`.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_id: Option<u32>,
    bos_token: Option<String>,
    eos_id: Option<u32>,
    eos_token: Option<String>,
    add_bos_default: bool,
    source: String,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("bos_token", &self.bos_token)
            .field("eos_id", &self.eos_id)
            .field("eos_token", &self.eos_token)
            .field("add_bos_default", &self.add_bos_default)
            .finish()
    }
}

impl Tokenizer {
    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Id of the BOS token, if the tokenizer has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Text of the BOS token, if the tokenizer has one.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// Id of the EOS token, if known.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Text of the EOS token, if known.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// Whether the model itself prepends BOS (what [`BosPolicy::Auto`] does).
    pub fn add_bos_default(&self) -> bool {
        self.add_bos_default
    }

    /// Human-readable description of where the tokenizer came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Number of ids, added/special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The token string of `id` (added tokens included), `None` if out of range.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of an exact token string (added tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Whether `policy` prepends a token for this tokenizer (errors only for `Always` without
    /// BOS and `Eos` without EOS).
    pub fn wants_bos(&self, policy: BosPolicy) -> Result<bool, TokenizerError> {
        Ok(self.prefix_id(policy)?.is_some())
    }

    /// The token `policy` prepends: the BOS (`Auto` when the model adds one, `Always`), the
    /// EOS (`Eos`), or none.
    pub fn prefix_id(&self, policy: BosPolicy) -> Result<Option<u32>, TokenizerError> {
        match policy {
            BosPolicy::Auto => Ok(self.bos_id.filter(|_| self.add_bos_default)),
            BosPolicy::Never => Ok(None),
            BosPolicy::Always => match self.bos_id {
                Some(id) => Ok(Some(id)),
                None => Err(TokenizerError::NoBosToken { source_desc: self.source.clone() }),
            },
            BosPolicy::Eos => match self.eos_id {
                Some(id) => Ok(Some(id)),
                None => Err(TokenizerError::NoEosToken { source_desc: self.source.clone() }),
            },
        }
    }

    /// Encodes `text`: `[BOS if the policy says so] + encode(text, add_special_tokens = false)`.
    ///
    /// Literal special-token text in `text` becomes that token. A BOS is prepended even if the
    /// text itself starts with BOS text (as `transformers` and llama.cpp do).
    pub fn encode(&self, text: &str, bos: BosPolicy) -> Result<Encoded, TokenizerError> {
        let prefix = self.prefix_id(bos)?;
        let encoding = self.inner.encode(text, false).map_err(|e| TokenizerError::Encode {
            source_desc: self.source.clone(),
            message: e.to_string(),
        })?;
        let body_ids = encoding.get_ids();
        let body_tokens = encoding.get_tokens();
        let extra = usize::from(prefix.is_some());
        let mut ids = Vec::with_capacity(body_ids.len() + extra);
        let mut tokens = Vec::with_capacity(body_ids.len() + extra);
        if let Some(id) = prefix {
            ids.push(id);
            let named = if Some(id) == self.bos_id { self.bos_token.clone() } else { self.eos_token.clone() };
            tokens.push(named.or_else(|| self.inner.id_to_token(id)).unwrap_or_default());
        }
        ids.extend_from_slice(body_ids);
        tokens.extend(body_tokens.iter().cloned());
        Ok(Encoded { ids, tokens, bos_prepended: prefix.is_some() })
    }

    /// Decodes ids to text, special tokens kept (like `transformers`' `decode` default).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| TokenizerError::Decode { source_desc: self.source.clone(), message: e.to_string() })
    }
}
