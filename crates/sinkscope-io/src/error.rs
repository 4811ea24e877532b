//! The io crate's typed errors. Every message names the file and, where there is one, the
//! tensor or field.

use std::path::PathBuf;

/// Errors from opening a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// Operating-system error on a file.
    #[error("{path}: {source}")]
    Os {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path is neither a `.gguf` file nor a Hugging Face folder.
    #[error("{path}: not a model: {reason}")]
    NotAModel {
        /// The path given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A malformed or inconsistent configuration field.
    #[error("{path}: field '{field}': {reason}")]
    Config {
        /// The file (config.json or the GGUF).
        path: PathBuf,
        /// The field or metadata key.
        field: String,
        /// Why.
        reason: String,
    },
    /// An architecture no declaration covers.
    #[error("{path}: unknown architecture '{arch}' (supported: {supported})")]
    UnknownArchitecture {
        /// The file.
        path: PathBuf,
        /// The architecture named by the file.
        arch: String,
        /// The supported names.
        supported: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("{path}: missing tensor '{name}' (expected shape {expected:?}){}", fmt_nearest(.nearest))]
    MissingTensor {
        /// The checkpoint.
        path: PathBuf,
        /// The tensor name looked for.
        name: String,
        /// Its expected shape.
        expected: Vec<usize>,
        /// Existing names that look alike.
        nearest: Vec<String>,
    },
    /// A tensor with an unexpected shape.
    #[error("{path}: tensor '{name}' has shape {actual:?}, expected {expected:?}")]
    WrongShape {
        /// The checkpoint.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Expected shape (row-major).
        expected: Vec<usize>,
        /// Shape in the file.
        actual: Vec<usize>,
    },
    /// Tensors in the checkpoint that nothing used.
    #[error("{path}: {} unused tensor(s) in the checkpoint: {} (shapes {:?}); the model declaration does not know them", .names.len(), .names.join(", "), .shapes)]
    UnusedTensors {
        /// The checkpoint.
        path: PathBuf,
        /// Their names.
        names: Vec<String>,
        /// Their shapes.
        shapes: Vec<Vec<usize>>,
    },
    /// A malformed safetensors header (length prefix, JSON, or one tensor's entry).
    #[error("{path}: safetensors header: {reason}")]
    BadHeader {
        /// The safetensors file.
        path: PathBuf,
        /// What is wrong (names the tensor when one entry is at fault).
        reason: String,
    },
    /// A tensor whose bytes cannot be read as the declared dtype/shape.
    #[error("{path}: tensor '{name}': {reason}")]
    BadTensor {
        /// The checkpoint.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Why.
        reason: String,
    },
    /// GGUF parsing or dequantisation error.
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// Tokenizer error.
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
}

fn fmt_nearest(n: &[String]) -> String {
    if n.is_empty() {
        String::new()
    } else {
        format!("; closest names in the file: {}", n.join(", "))
    }
}

/// Names in `pool` closest to `name` (shared-prefix then edit-distance ranking), at most 3.
pub fn closest_names<'a>(name: &str, pool: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = pool.map(|p| (distance(name, p), p)).collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, p)| p.to_string()).collect()
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
