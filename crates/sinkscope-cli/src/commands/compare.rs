//! `sinkscope compare RUN_DIR... --out DIR`: several runs (models) overlaid on normalised
//! depth l / L — Fig. 1 with one line per model — and a side-by-side summary table, as
//! `DIR/compare.html` (self-contained), `DIR/compare.csv` and `DIR/plots/compare_fig1.{svg,png}`.
//! The logic is `sinkscope_report::render_compare`; this only parses arguments.

use anyhow::{Context, Result};
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Run folders written by `sinkscope profile` (each holds manifest.json, metrics.json and
    /// prompts.jsonl); one line per run in the plots, one column in the table.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Output folder (created): compare.html, compare.csv, plots/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs the command: prints the path of compare.html.
pub fn run(a: Args) -> Result<()> {
    let s = sinkscope_report::render_compare(&a.runs, &a.out)
        .with_context(|| format!("comparing {} runs into {}", a.runs.len(), a.out.display()))?;
    eprintln!("compared {} runs: {}", s.labels.len(), s.labels.join(", "));
    println!("{}", s.compare_html.display());
    Ok(())
}

/// The exit code for a compare failure: a run folder that cannot be read or an output that
/// cannot be written is a bad input/output file (3); anything else is 1.
pub fn exit_code_for(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    use sinkscope_report::ReportError as E;
    cause.downcast_ref::<E>().map(|e| match e {
        E::Io { .. } | E::Parse { .. } | E::SchemaVersion { .. } | E::Invalid { .. } | E::Png { .. } => {
            crate::exit::INPUT
        }
        E::NoRuns => crate::exit::USAGE,
        E::Plot { .. } => crate::exit::OTHER,
    })
}
