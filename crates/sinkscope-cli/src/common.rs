//! Helpers shared by the commands: model opening, hashing, output folders, exit-code mapping.

use crate::exit;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sinkscope_io::tokenizer::BosPolicy;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The error and its causes on one line, `outer: inner: ...`, each text once: library errors
/// often print their source inside their own message, and repeating it would only add noise.
pub fn render(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Maps an error chain to the documented exit code.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(code) = crate::commands::profile::exit_code_for(cause) {
            return code;
        }
        if let Some(code) = crate::commands::compare::exit_code_for(cause) {
            return code;
        }
        if cause.downcast_ref::<sinkscope_io::prompts::PromptError>().is_some()
            || cause.downcast_ref::<sinkscope_output::OutputError>().is_some()
            || cause.downcast_ref::<crate::term::StdoutError>().is_some()
        {
            return exit::INPUT;
        }
        if let Some(m) = cause.downcast_ref::<sinkscope_model::ModelError>() {
            return match m {
                sinkscope_model::ModelError::NonFinite { .. }
                | sinkscope_model::ModelError::NonFiniteWeights { .. } => exit::NUMERICAL,
                sinkscope_model::ModelError::Input(_) => exit::INPUT,
                sinkscope_model::ModelError::Hook { .. } => exit::USAGE,
                _ => exit::OTHER,
            };
        }
        if let Some(m) = cause.downcast_ref::<sinkscope_model::memory::MemoryError>() {
            return match m {
                sinkscope_model::memory::MemoryError::Insufficient { .. } => exit::MEMORY,
                sinkscope_model::memory::MemoryError::BadOverride { .. } => exit::USAGE,
            };
        }
        if cause.downcast_ref::<sinkscope_spec::HookError>().is_some() {
            return exit::USAGE;
        }
        if cause.downcast_ref::<sinkscope_io::IoError>().is_some()
            || cause.downcast_ref::<sinkscope_model::LoadError>().is_some()
        {
            return exit::MODEL;
        }
        if cause.downcast_ref::<sinkscope_io::tokenizer::TokenizerError>().is_some() {
            return exit::INPUT;
        }
    }
    exit::OTHER
}

/// Parses `--bos`.
pub fn parse_bos(s: &str) -> Result<BosPolicy, String> {
    s.parse::<BosPolicy>().map_err(|e| e.to_string())
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("{}: read error", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Content hash of a model: the GGUF file's sha256, or for a HF folder the sha256 of the
/// concatenated sha256s of `config.json` and every `*.safetensors` file (sorted by name).
pub fn model_sha256(path: &Path) -> Result<String> {
    if path.is_file() {
        return sha256_file(path);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("{}: cannot list", path.display()))?
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

/// Claims a command's output folder (`sinkscope_output::OutDir::claim`): the lock, the
/// ownership marker, an earlier run refused unless `force` (replaced) or `resume` (continued),
/// and no input inside what the command writes. Call it before any model work; hold the
/// returned value until the command ends (dropping it releases the lock).
pub fn claim_out(
    out: &Path,
    kind: &str,
    entries: &[&str],
    prefixes: &[&str],
    inputs: &[&Path],
    force: bool,
    resume: bool,
) -> Result<sinkscope_output::OutDir, sinkscope_output::OutputError> {
    use sinkscope_output::{Claim, Mode, OutDir};
    let mode = if resume {
        Mode::Resume
    } else if force {
        Mode::Force
    } else {
        Mode::Fresh
    };
    OutDir::claim(out, &Claim { kind, entries, prefixes, inputs, mode })
}

/// What a run folder of `profile`, `lens` and `probe` holds (the report's files included).
pub const RUN_ENTRIES: &[&str] = &[
    sinkscope_report::schema::MANIFEST_FILE,
    sinkscope_report::schema::PROMPTS_FILE,
    sinkscope_report::schema::METRICS_FILE,
    sinkscope_report::LAYERS_CSV,
    sinkscope_report::PLOTS_DIR,
    sinkscope_report::REPORT_HTML,
];

/// The `tool` block of every manifest.
pub fn tool_info() -> Value {
    json!({
        "name": "sinkscope",
        "version": env!("CARGO_PKG_VERSION"),
        "command_line": std::env::args().collect::<Vec<_>>(),
        "engine": "candle-core (CPU, f32 activations; quantised weights dequantised exactly to f32)",
    })
}

/// The `model` block of every manifest.
pub fn model_info(files: &sinkscope_io::ModelFiles, sha: &str) -> Value {
    json!({
        "path": files.path,
        "format": files.format,
        "sha256": sha,
        "family": files.config.family,
        "config": files.config,
        "dtype_mix": files.dtype_mix(),
    })
}

/// The `tokenizer` block of every manifest.
pub fn tokenizer_info(files: &sinkscope_io::ModelFiles, bos: BosPolicy) -> Value {
    let t = &files.tokenizer;
    json!({
        "source": t.source(),
        "vocab_size": t.vocab_size(),
        "bos_policy": bos.as_str(),
        "bos_token": t.bos_token(),
        "bos_id": t.bos_id(),
        "model_adds_bos": t.add_bos_default(),
        "method": "ids = ([bos] if the policy prepends it) + encode(text, add_special_tokens=false); no chat template, no EOS",
    })
}

/// Describes the token at position 0 (the sink candidate).
pub fn first_token(files: &sinkscope_io::ModelFiles, ids: &[u32], bos_prepended: bool) -> Value {
    let id = ids.first().copied();
    json!({
        "id": id,
        "token": id.and_then(|i| files.tokenizer.id_to_token(i)),
        "is_bos": bos_prepended || (id.is_some() && id == files.tokenizer.bos_id()),
        "bos_prepended": bos_prepended,
    })
}

/// The longest id kept as it is in a file name (longer ones are cut and hashed).
pub const MAX_NAME_ID: usize = 80;

/// File-name stems for prompt ids: the id itself when it is a short, plain name
/// (`[A-Za-z0-9._-]`, at most [`MAX_NAME_ID`] bytes, not starting with `.`); otherwise its
/// sanitised first [`MAX_NAME_ID`] bytes plus `-` and 12 hex digits of the id's sha256. Stems
/// are unique even on case-insensitive file systems, and at most 93 bytes (file-name limits
/// are 255), so a run never fails midway on an id.
pub fn file_names<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut used = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for id in ids {
        let plain: String = id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
            .take(MAX_NAME_ID)
            .collect();
        let hashed = |extra: usize| {
            let h = hex(&Sha256::digest(format!("{id}\u{0}{extra}").as_bytes()));
            let stem = plain.strip_prefix('.').map_or(plain.clone(), |s| format!("_{s}"));
            format!("{stem}-{}", h.get(..12).unwrap_or(&h))
        };
        let mut name =
            if plain == id && !id.starts_with('.') && !id.is_empty() { plain.clone() } else { hashed(0) };
        let mut extra = 0;
        while !used.insert(name.to_lowercase()) {
            extra += 1;
            name = hashed(extra);
        }
        out.push(name);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Plain ids are kept; odd, long or case-colliding ones get a bounded hashed name; all
    /// names are distinct ignoring case.
    #[test]
    fn file_names_are_bounded_and_collision_free() {
        let long = "x".repeat(5000);
        let ids = ["river", "River", "a/b", "a_b", ".hidden", &long, "", "ok-1.2"];
        let names = file_names(ids.iter().copied());
        assert_eq!(names[0], "river");
        assert!(names[1].starts_with("River-"));
        assert!(names[2].starts_with("a_b-") && names[3] == "a_b");
        assert!(names[4].starts_with("_hidden-"));
        assert!(names[5].len() <= 93 && names[5].starts_with("xxx"));
        assert_eq!(names[7], "ok-1.2");
        let lower: std::collections::BTreeSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
        assert_eq!(lower.len(), names.len());
        assert!(names.iter().all(|n| !n.is_empty() && n.len() <= 93 && !n.starts_with('.')));
    }
}

/// `--stream-layers`, shared by every command that runs the model.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct StreamArgs {
    /// Stream the model layer by layer: only one block's weights are resident at a time (read
    /// from the file's memory map, used for every prompt of a chunk, then released). The same
    /// output bytes as the in-memory mode. Chosen automatically when the model as stored does
    /// not fit in memory but streamed it does.
    #[arg(long)]
    pub stream_layers: bool,
}

/// Tokens of the prompts whose residual streams advance block by block together when the
/// layers are streamed (a chunk; each block is read once per chunk). Bounds the residual
/// streams held between blocks (`2 x chunk x d x 4` bytes), flat in the number of prompts.
pub const STREAM_CHUNK_TOKENS: usize = 4096;

/// How a command will hold the model's weights, as the memory guard decided.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Resident, streamed on request, or streamed because resident does not fit.
    pub choice: sinkscope_model::memory::LayoutChoice,
    /// The estimate for that layout.
    pub estimate: sinkscope_model::memory::MemoryEstimate,
    /// The memory available, where known.
    pub available: Option<sinkscope_model::memory::Available>,
    /// Tokens per forward pass (the model's passes within a chunk when streaming).
    pub pack_tokens: usize,
    /// Tokens per chunk when streaming.
    pub chunk_tokens: usize,
}

impl Placement {
    /// The model layout to build.
    pub fn layout(&self) -> sinkscope_model::Layout {
        match self.choice.streamed() {
            false => sinkscope_model::Layout::Resident,
            true => sinkscope_model::Layout::Streamed {
                pack_tokens: self.pack_tokens.max(1),
                chunk_tokens: self.chunk_tokens,
            },
        }
    }

    /// The manifest's `execution.stream_layers` entry.
    pub fn execution(&self) -> Value {
        use sinkscope_model::memory::LayoutChoice as C;
        json!({
            "enabled": self.choice.streamed(),
            "chosen_by": match self.choice {
                C::Resident => "default",
                C::Streamed => "--stream-layers",
                C::StreamedAuto => "memory guard (the model as stored does not fit; streamed it does)",
            },
            "chunk_tokens": self.choice.streamed().then_some(self.chunk_tokens),
            "pack_tokens": self.choice.streamed().then_some(self.pack_tokens.max(1)),
        })
    }

    /// The manifest's `memory` block.
    pub fn memory(&self, force: bool) -> Value {
        json!({
            "estimate_bytes": self.estimate.total(),
            "estimate": self.estimate.to_string(),
            "available_bytes": self.available.as_ref().map(|v| v.bytes),
            "available_source": self.available.as_ref().map(|v| v.source.clone()),
            "forced": force,
            "stream_layers": self.choice.streamed(),
        })
    }
}

/// The memory guard with layer streaming ([`sinkscope_model::memory::choose_layout`]): the
/// resident estimate for passes of `pack` tokens (the largest pack the prompts form) and
/// `retained` bytes kept per pack, against the streamed one (passes of `pack` tokens, a chunk
/// of `chunk` tokens, `retained_chunk` bytes kept for a chunk's prompts). Says on stderr when
/// streaming is chosen automatically.
///
/// # Errors
/// Exit code 6 ([`sinkscope_model::memory::MemoryError::Insufficient`]) when neither fits and
/// `force` is not given.
#[allow(clippy::too_many_arguments)]
pub fn place_model(
    files: &sinkscope_io::ModelFiles,
    stream: StreamArgs,
    force: bool,
    (pack, pack_tokens, logits, retained): (usize, usize, bool, u64),
    (chunk, retained_chunk): (usize, u64),
) -> Result<Placement> {
    use sinkscope_model::memory;
    let resident =
        memory::estimate(files, &memory::RunShape { max_tokens: pack, logits, retained_bytes: retained });
    let streamed = memory::estimate_streamed(
        files,
        &memory::RunShape { max_tokens: pack, logits, retained_bytes: retained_chunk },
        chunk,
    );
    let available = memory::available()?;
    let (choice, estimate) = memory::choose_layout(
        &files.path,
        &resident,
        &streamed,
        available.as_ref(),
        stream.stream_layers,
        force,
    )?;
    if choice == memory::LayoutChoice::StreamedAuto {
        crate::term::note!(
            "note: {}: the model as stored does not fit in the memory available ({}: needs about {}); streaming its layers (as with --stream-layers: one block resident at a time, the same results), which needs about {}",
            files.path.display(),
            available.as_ref().map_or("unknown".into(), |a| memory::human(a.bytes)),
            memory::human(resident.total()),
            memory::human(estimate.total())
        );
    }
    Ok(Placement { choice, estimate, available, pack_tokens, chunk_tokens: STREAM_CHUNK_TOKENS })
}

/// Loads the weights as the placement says (streamed: every matrix stays in the file's memory
/// map) and builds the model with its layout.
pub fn load_model(files: &sinkscope_io::ModelFiles, placement: &Placement) -> Result<sinkscope_model::Model> {
    let weights = files.load_weights_for(placement.choice.streamed())?;
    let model = sinkscope_model::Model::new(files.config.clone(), weights, &candle_core::Device::Cpu)
        .with_context(|| format!("{}: building the model", files.path.display()))?;
    Ok(model.with_layout(placement.layout()))
}
