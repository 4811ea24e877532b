//! `sinkscope ablate MODEL (--prompts FILE | --dataset NAME) [--layers auto|LIST]
//! [--scales 1,0.75,0.5,0.25,0] [--component mlp|attn] [--one-by-one] [--mean-ablate] --out DIR`.

use super::experiment::{open, InputArgs};
use crate::term::say;
use anyhow::Result;
use sinkscope_analysis::ablate::{run_ablate, AblateOptions};
use sinkscope_metrics::AttentionParams;
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["prompts", "dataset"])))]
pub struct Args {
    /// A `.gguf` file or a Hugging Face folder.
    pub model: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
    /// Blocks to ablate, numbered as in metrics.md (block l writes X(l), 1..=L), or `auto`
    /// (detect the massive-activation blocks on the baseline).
    #[arg(long, default_value = "auto")]
    pub layers: String,
    /// Scales λ applied to the component's output at position 0 (0 = the paper's ablation).
    #[arg(long, default_value = "1,0.75,0.5,0.25,0", value_delimiter = ',')]
    pub scales: Vec<f32>,
    /// The sublayer whose output is scaled: mlp (the paper) or attn (a control).
    #[arg(long, default_value = "mlp", value_parser = ["mlp", "attn"])]
    pub component: String,
    /// Also ablate each block alone.
    #[arg(long)]
    pub one_by_one: bool,
    /// Also ablate the massive dimensions of X(block) at position 0 three ways: Sun et al.'s
    /// mean-ablation (their mean at position 0 over the prompt set, from a first pass;
    /// `sun_mean/`), zero-ablation (`zero_dims/`), and the mean over the other positions of
    /// the same prompt (`mean_ablate/`).
    #[arg(long)]
    pub mean_ablate: bool,
    /// Sink threshold ε.
    #[arg(long, default_value_t = 0.3)]
    pub epsilon: f64,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Skip the reports.
    #[arg(long)]
    pub no_report: bool,
}

use sinkscope_analysis::ablate::{check_scales, parse_layers, ABLATE_ENTRIES, ABLATE_PREFIXES};

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    let blocks = parse_layers(&a.layers)?;
    let scales = check_scales(&a.scales)?;
    if scales.len() < a.scales.len() {
        crate::term::note!("note: --scales: duplicate values folded, running {scales:?}");
    }

    let opts = AblateOptions {
        profile: sinkscope_analysis::profile::ProfileOptions {
            attention: AttentionParams { sink_epsilon: a.epsilon, ..AttentionParams::default() },
            ..a.input.prompt_options()
        },
        blocks,
        scales,
        component: sinkscope_analysis::ablate::parse_component(&a.component)?,
        one_by_one: a.one_by_one,
        mean_ablate: a.mean_ablate,
        shard: a.input.shard,
    };
    opts.profile.validate()?;
    let mut claimed = None;
    // The study opens every prompt (its baseline covers them all); `run_ablate` runs the
    // ablations on the shard's prompts only.
    let all_prompts = InputArgs { shard: None, ..a.input.clone() };
    let o =
        open(&a.model, &all_prompts, true, sinkscope_analysis::profile::DEFAULT_PACK_TOKENS, &mut |_| {
            let prefixes = ABLATE_PREFIXES;
            claimed = Some(super::experiment::claim(
                &a.out,
                "ablate",
                ABLATE_ENTRIES,
                prefixes,
                &a.model,
                &a.input,
            )?);
            Ok(())
        })?;
    let total = o.examples.len();
    let quiet = a.input.quiet;
    let mut progress = |name: &str| {
        if !quiet {
            crate::term::note!("run '{name}':");
        }
        super::profile::progress(total, quiet)
    };
    let s = run_ablate(
        &o.model,
        &o.files,
        &opts,
        &o.header,
        &o.examples,
        &o.source,
        a.input.limit,
        &a.out,
        &mut progress,
    )?;
    let d = &s.document;
    say!(
        "ablated blocks {} ({}); valley layers {}..{}",
        d["blocks"],
        d["blocks_source"].as_str().unwrap_or(""),
        d["valley"]["first"],
        d["valley"]["last"]
    );
    for r in d["dose_response"].as_array().into_iter().flatten() {
        let m = &r["summary"];
        say!(
            "  λ = {:<5} valley min entropy_norm {:<10} valley mean sink_rate {:<8} max bos_ratio {:<10} NLL {}",
            r["scale"],
            fmt(&m["valley_min_entropy_norm"]),
            fmt(&m["valley_mean_sink_rate"]),
            fmt(&m["max_bos_ratio"]),
            fmt(&m["nll"])
        );
    }
    super::experiment::finish(&a.out, a.no_report, "ablate.json")
}

fn fmt(v: &serde_json::Value) -> String {
    v.as_f64().map_or("n/a".into(), |x| format!("{x:.4}"))
}
