//! `sinkscope compare RUN_DIR... --out DIR`: several runs (models) overlaid on normalised
//! depth l / L — Fig. 1 with one line per profile run, the paper's Fig. 7 (LogitLens
//! perplexity and probe accuracy vs depth) per model that has lens/probe runs — and a
//! side-by-side summary table, as `DIR/compare.html` (self-contained), `DIR/compare.csv`,
//! `DIR/plots/compare_fig1.{svg,png}` and `DIR/plots/compare_fig7_<k>.{svg,png}`.
//! Profile, lens and probe folders may be mixed; they are matched by the model's sha256.
//! The logic is `sinkscope_report::render_compare`; this only parses arguments.

use anyhow::{Context, Result};
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Run folders written by `sinkscope profile`, `lens` or `probe` (each holds
    /// manifest.json, metrics.json and prompts.jsonl), in any mix: one column per profile
    /// run (with its model's first lens and probe run, matched by model sha256), plus one per
    /// model that has only lens/probe runs; Fig. 7 per model with a lens or probe run.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Output folder (created): compare.html, compare.csv, plots/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace an earlier comparison in --out.
    #[arg(long)]
    pub force: bool,
}

/// Runs the command: prints the path of compare.html.
pub fn run(a: Args) -> Result<()> {
    let inputs: Vec<&std::path::Path> = a.runs.iter().map(PathBuf::as_path).collect();
    let entries = [
        sinkscope_report::COMPARE_CSV,
        sinkscope_report::COMPARE_HTML,
        sinkscope_report::FIG5_HEADS_CSV,
        sinkscope_report::PLOTS_DIR,
    ];
    let _out = crate::common::claim_out(&a.out, "compare", &entries, &[], &inputs, a.force, false)?;
    let s = sinkscope_report::render_compare(&a.runs, &a.out)
        .with_context(|| format!("comparing {} runs into {}", a.runs.len(), a.out.display()))?;
    crate::term::note!(
        "compared {} runs in {} columns: {}",
        a.runs.len(),
        s.labels.len(),
        s.labels.join(", ")
    );
    crate::term::say!("{}", s.compare_html.display());
    Ok(())
}
