//! Helpers shared by the commands: model opening, hashing, output folders, exit-code mapping.

use crate::exit;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sinkscope_io::tokenizer::BosPolicy;
use std::path::Path;

/// The error and its causes on one line ([`sinkscope_analysis::exit::message`]).
pub fn render(e: &anyhow::Error) -> String {
    sinkscope_analysis::exit::message(e.as_ref())
}

/// Maps an error chain to the documented exit code ([`sinkscope_analysis::exit::code`], after
/// the CLI's own stdout error).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.downcast_ref::<crate::term::StdoutError>().is_some()) {
        return exit::INPUT;
    }
    sinkscope_analysis::exit::code(e.as_ref())
}

/// Parses `--bos`.
pub fn parse_bos(s: &str) -> Result<BosPolicy, String> {
    s.parse::<BosPolicy>().map_err(|e| e.to_string())
}

/// sha256 of a file, streamed ([`sinkscope_analysis::header::sha256_file`]).
pub fn sha256_file(path: &Path) -> Result<String> {
    Ok(sinkscope_analysis::header::sha256_file(path)?)
}

/// Content hash of a model ([`sinkscope_analysis::header::model_sha256`]).
pub fn model_sha256(path: &Path) -> Result<String> {
    Ok(sinkscope_analysis::header::model_sha256(path)?)
}

pub use sinkscope_analysis::header::{model_info, tokenizer_info, tool_info};

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
    sinkscope_report::HEADS_CSV,
    sinkscope_report::PLOTS_DIR,
    sinkscope_report::REPORT_HTML,
];

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
            let h = sinkscope_analysis::header::hex(&Sha256::digest(format!("{id}\u{0}{extra}").as_bytes()));
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
