//! Typed access to `<arch>.*` GGUF metadata for the family declarations.

use crate::error::IoError;
use crate::gguf::GgufFile;
use std::path::{Path, PathBuf};

/// GGUF metadata of one architecture: keys are read relative to `<arch>.`.
pub struct GgufMeta<'a> {
    /// The parsed file.
    pub file: &'a GgufFile,
    /// `general.architecture`.
    pub arch: String,
    /// The file path, for errors.
    pub path: PathBuf,
}

impl<'a> GgufMeta<'a> {
    /// Wraps a parsed file.
    pub fn new(file: &'a GgufFile, path: &Path) -> Result<Self, IoError> {
        let arch = file.get_str("general.architecture")?.to_string();
        Ok(GgufMeta { file, arch, path: path.to_path_buf() })
    }

    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    /// Whether `<arch>.k` exists.
    pub fn has(&self, k: &str) -> bool {
        self.file.metadata().contains_key(&self.key(k))
    }

    /// Required unsigned integer `<arch>.k`.
    pub fn usize(&self, k: &str) -> Result<usize, IoError> {
        let key = self.key(k);
        let v = self.file.get_u64(&key)?;
        usize::try_from(v).map_err(|_| self.err(&key, &format!("value {v} does not fit")))
    }

    /// Optional unsigned integer.
    pub fn opt_usize(&self, k: &str) -> Result<Option<usize>, IoError> {
        if self.has(k) {
            self.usize(k).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Optional float.
    pub fn opt_f64(&self, k: &str) -> Result<Option<f64>, IoError> {
        if self.has(k) {
            Ok(Some(self.file.get_f64(&self.key(k))?))
        } else {
            Ok(None)
        }
    }

    /// Required float.
    pub fn f64(&self, k: &str) -> Result<f64, IoError> {
        Ok(self.file.get_f64(&self.key(k))?)
    }

    /// Optional boolean.
    pub fn opt_bool(&self, k: &str) -> Result<Option<bool>, IoError> {
        if self.has(k) {
            Ok(Some(self.file.get_bool(&self.key(k))?))
        } else {
            Ok(None)
        }
    }

    /// An error about a metadata key.
    pub fn err(&self, field: &str, reason: &str) -> IoError {
        IoError::Config { path: self.path.clone(), field: field.into(), reason: reason.into() }
    }

    /// Whether the file has a tensor of this name.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.file.tensors().iter().any(|t| t.name == name)
    }

    /// Vocabulary size: `<arch>.vocab_size`, else the token list, else `token_embd`'s rows.
    pub fn vocab_size(&self) -> Result<usize, IoError> {
        if let Some(v) = self.opt_usize("vocab_size")? {
            return Ok(v);
        }
        if let Ok(t) = self.file.get_str_array("tokenizer.ggml.tokens") {
            return Ok(t.len());
        }
        self.file
            .tensors()
            .iter()
            .find(|t| t.name == "token_embd.weight")
            .and_then(|t| t.shape.first().copied())
            .ok_or_else(|| self.err("tokenizer.ggml.tokens", "cannot determine the vocabulary size"))
    }
}
