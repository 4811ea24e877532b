//! The manifest blocks every run records about the tool, the model and its tokenizer, and the
//! model's content hash: one definition for the CLI and the Python package.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sinkscope_io::tokenizer::BosPolicy;
use sinkscope_schema::{ModelInfo, TokenizerInfo, ToolInfo};
use std::io::Read;
use std::path::{Path, PathBuf};

/// sha256 of a file, streamed.
///
/// # Errors
/// The file cannot be opened or read (the error names it).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let named = |e: std::io::Error, what: &str| {
        std::io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
    };
    let mut f = std::fs::File::open(path).map_err(|e| named(e, "cannot open"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| named(e, "read error"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Lower-case hexadecimal digits of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Content hash of a model: the GGUF file's sha256, or for a HF folder the sha256 of the
/// concatenated sha256s of `config.json` and every `*.safetensors` file (sorted by name).
///
/// # Errors
/// A file that cannot be listed, opened or read (the error names it).
pub fn model_sha256(path: &Path) -> std::io::Result<String> {
    if path.is_file() {
        return sha256_file(path);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: cannot list: {e}", path.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "safetensors")
                || p.file_name().is_some_and(|n| n == "config.json")
        })
        .collect();
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(sha256_file(&f)?.as_bytes());
    }
    Ok(hex(&h.finalize()))
}

/// The `tool` block of every manifest (`command_line`: this process's arguments).
pub fn tool() -> ToolInfo {
    ToolInfo {
        name: Some("sinkscope".into()),
        version: Some(env!("CARGO_PKG_VERSION").into()),
        command_line: std::env::args().collect(),
        engine: Some(
            "candle-core (CPU, f32 activations; quantised weights dequantised exactly to f32)".into(),
        ),
    }
}

/// [`tool`] as JSON (the form [`crate::profile::ManifestHeader`] holds).
pub fn tool_info() -> Value {
    as_json(&tool())
}

/// The `model` block of every manifest.
pub fn model(files: &sinkscope_io::ModelFiles, sha: &str) -> ModelInfo {
    ModelInfo {
        path: Some(files.path.to_string_lossy().into_owned()),
        format: serde_json::to_value(files.format).ok(),
        sha256: Some(sha.to_string()),
        family: serde_json::to_value(files.config.family).ok(),
        config: serde_json::to_value(&files.config).ok(),
        dtype_mix: files.dtype_mix().into_iter().map(|(k, n)| (k, Value::from(n))).collect(),
    }
}

/// [`model`] as JSON.
pub fn model_info(files: &sinkscope_io::ModelFiles, sha: &str) -> Value {
    as_json(&model(files, sha))
}

/// The `tokenizer` block of every manifest.
pub fn tokenizer(files: &sinkscope_io::ModelFiles, bos: BosPolicy) -> TokenizerInfo {
    let t = &files.tokenizer;
    TokenizerInfo {
        source: Some(t.source().to_string()),
        vocab_size: Some(t.vocab_size()),
        bos_policy: Some(bos.as_str().to_string()),
        bos_token: t.bos_token().map(str::to_string),
        bos_id: t.bos_id().map(u64::from),
        model_adds_bos: Some(t.add_bos_default()),
        method: Some(
            "ids = ([bos] if the policy prepends it) + encode(text, add_special_tokens=false); no chat template, no EOS"
                .into(),
        ),
    }
}

/// [`tokenizer`] as JSON.
pub fn tokenizer_info(files: &sinkscope_io::ModelFiles, bos: BosPolicy) -> Value {
    as_json(&tokenizer(files, bos))
}

/// A manifest block as JSON (`null` if it cannot be; these blocks hold only strings,
/// numbers and maps with string keys, so it always can).
fn as_json(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
