//! `sinkscope lens MODEL (--prompts FILE | --dataset wikitext-like) [--limit N]
//! [--max-tokens T] --out DIR`: LogitLens NLL / perplexity / top-1 accuracy per layer.
//! With `--mc` (a multiple-choice dataset, `openbookqa-mc`): LogitLens accuracy per layer on
//! the items (the multiple-choice half of the paper's Fig. 7).

use super::experiment::{open, InputArgs};
use crate::term::say;
use anyhow::Result;
use sinkscope_analysis::profile::ProfileInput;
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["prompts", "dataset"])))]
pub struct Args {
    /// A `.gguf` file or a Hugging Face folder.
    pub model: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
    /// Output folder: manifest.json, prompts.jsonl, metrics.json, layers.csv, report.html.
    #[arg(long)]
    pub out: PathBuf,
    /// Skip the report.
    #[arg(long)]
    pub no_report: bool,
    /// Score the dataset's multiple-choice items (each choice by its LogitLens
    /// log-likelihood at every layer) instead of next-token NLL; needs a multiple-choice
    /// --dataset (openbookqa-mc).
    #[arg(long)]
    pub mc: bool,
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    let mut claimed = None;
    let o = open(&a.model, &a.input, true, 0, &mut |_| {
        claimed = Some(super::experiment::claim(
            &a.out,
            "lens",
            crate::common::RUN_ENTRIES,
            &[],
            &a.model,
            &a.input,
        )?);
        Ok(())
    })?;
    if a.mc {
        return run_mc(&a, o);
    }
    let total = o.examples.len();
    let mut progress = super::profile::progress(total, a.input.quiet);
    let mut iter = o.examples.into_iter();
    let input = ProfileInput {
        source: o.source,
        limit: a.input.limit,
        prompts: &mut iter,
        total: Some(total),
        workers: 1,
        pack_tokens: 0,
    };
    let s = sinkscope_analysis::lens::run_lens(
        &o.model,
        &o.files,
        &a.input.prompt_options(),
        &o.header,
        input,
        &a.out,
        progress.as_mut(),
    )?;
    say!(
        "{} prompts, {} tokens in {:.1}s ({:.0} tokens/s); model perplexity {}",
        s.n_prompts,
        s.n_tokens,
        s.run_s,
        s.n_tokens as f64 / s.run_s.max(1e-9),
        s.model_ppl.map_or("n/a".into(), |p| format!("{p:.3}"))
    );
    super::experiment::finish(&a.out, a.no_report, "metrics.json")
}

/// `lens --mc`: multiple-choice accuracy per layer.
fn run_mc(a: &Args, o: super::experiment::Opened) -> Result<()> {
    use sinkscope_analysis::datasets;
    let name = a.input.dataset.as_deref().ok_or_else(|| {
        sinkscope_analysis::AnalysisError::Options(
            "--mc needs a multiple-choice --dataset (openbookqa-mc)".into(),
        )
    })?;
    let spec = datasets::by_name(name)?;
    let all = datasets::load_mc(spec, &a.input.data_dir)?;
    // The items the prompt selection kept (--limit, --shard), in its order.
    let items: Vec<datasets::McItem> =
        o.examples.iter().filter_map(|ex| all.iter().find(|i| i.id == ex.id).cloned()).collect();
    let mut progress = super::profile::progress(items.len(), a.input.quiet);
    let s = sinkscope_analysis::mc::run_mc(
        &o.model,
        &o.files,
        &a.input.prompt_options(),
        &o.header,
        sinkscope_analysis::mc::McInput { source: o.source, limit: a.input.limit, items: &items },
        &a.out,
        progress.as_mut(),
    )?;
    say!(
        "{} items in {:.1}s; LogitLens accuracy at the last layer {} (chance {})",
        s.n_items,
        s.run_s,
        s.accuracy_at_l.map_or("n/a".into(), |p| format!("{p:.3}")),
        s.chance.map_or("n/a".into(), |p| format!("{p:.3}"))
    );
    super::experiment::finish(&a.out, a.no_report, "metrics.json")
}
