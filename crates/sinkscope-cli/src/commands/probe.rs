//! `sinkscope probe MODEL --dataset sst2-like [--limit N] [--pool mean|last] [--folds 5]
//! --out DIR`: layer-wise linear probes (cross-validated L2 logistic regression). The sentences
//! are a random sample (seeded by `--seed`) of the set, not its first N lines.

use super::experiment::{open, InputArgs};
use crate::term::say;
use anyhow::Result;
use sinkscope_analysis::probe::{run_probe, ProbeOptions};
use sinkscope_analysis::profile::ProfileInput;
use sinkscope_metrics::probe::{LogisticParams, Pool, ProbeParams};
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["prompts", "dataset"])))]
pub struct Args {
    /// A `.gguf` file or a Hugging Face folder.
    pub model: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
    /// Sentence vector: mean over positions >= 1, or the last token.
    #[arg(long, default_value = "mean", value_parser = parse_pool)]
    pub pool: Pool,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Seed of the fold assignment.
    #[arg(long, default_value_t = sinkscope_metrics::probe::DEFAULT_SEED)]
    pub seed: u64,
    /// Inverse L2 strength C (sklearn's convention).
    #[arg(long, default_value_t = sinkscope_metrics::probe::DEFAULT_C)]
    pub c: f64,
    /// Keep the extracted features (features.f32) in the output folder.
    #[arg(long)]
    pub keep_features: bool,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Skip the report.
    #[arg(long)]
    pub no_report: bool,
}

fn parse_pool(s: &str) -> Result<Pool, String> {
    sinkscope_analysis::probe::parse_pool(s).map_err(|e| match e {
        sinkscope_analysis::AnalysisError::Options(m) => m,
        e => e.to_string(),
    })
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    sinkscope_analysis::probe::check_c(a.c)?;
    // The sentences are a seeded random sample: labelled files are often sorted by label (the
    // vader snippets are: positives first), so `--limit` must not follow the file order.
    let mut input_args = a.input.clone();
    input_args.limit = None;
    let entries = sinkscope_analysis::probe::probe_entries();
    let mut claimed = None;
    let o = open(
        &a.model,
        &input_args,
        false,
        sinkscope_analysis::profile::DEFAULT_PACK_TOKENS,
        &mut |examples| {
            sinkscope_analysis::probe::sample_examples(examples, a.seed, a.input.limit, a.folds)?;
            claimed = Some(super::experiment::claim(&a.out, "probe", &entries, &[], &a.model, &a.input)?);
            Ok(())
        },
    )?;
    let opts = ProbeOptions {
        prompt: a.input.prompt_options(),
        pool: a.pool,
        params: ProbeParams {
            folds: a.folds,
            seed: a.seed,
            logistic: LogisticParams { c: a.c, ..LogisticParams::default() },
        },
        keep_features: a.keep_features,
    };
    let total = o.examples.len();
    let mut progress = super::profile::progress(total, a.input.quiet);
    let mut iter = o.examples.into_iter();
    let input = ProfileInput {
        source: o.source,
        limit: a.input.limit,
        prompts: &mut iter,
        total: Some(total),
        // One worker: the probe's fit uses faer's parallelism over all cores, which
        // RAYON_NUM_THREADS=1 (set for parallel workers) would change, and with it the
        // rounding of the solver's residuals. The matmuls still use every core.
        workers: 1,
        pack_tokens: sinkscope_analysis::profile::DEFAULT_PACK_TOKENS,
    };
    let s = run_probe(&o.model, &o.files, &opts, &o.header, input, &a.out, progress.as_mut())?;
    if s.layers.is_empty() {
        // A shard: features only; `sinkscope merge` fits the probes over all shards.
        say!(
            "{} sentences: features in {:.1}s (a shard: the probes are fit by `sinkscope merge`)",
            s.n_samples,
            s.extract_s
        );
        say!("{}", a.out.join(sinkscope_analysis::probe::FEATURES_FILE).display());
        return Ok(());
    }
    let best = s.layers.iter().enumerate().max_by(|x, y| x.1.accuracy.total_cmp(&y.1.accuracy));
    say!(
        "{} sentences: features in {:.1}s, probes in {:.1}s; majority baseline {:.3}; best layer {} ({:.3}); all converged: {}",
        s.n_samples,
        s.extract_s,
        s.fit_s,
        s.layers.first().map_or(f64::NAN, |r| r.baseline_accuracy),
        best.map_or(0, |b| b.0),
        best.map_or(f64::NAN, |b| b.1.accuracy),
        s.layers.iter().all(|r| r.all_converged)
    );
    super::experiment::finish(&a.out, a.no_report, "metrics.json")
}
