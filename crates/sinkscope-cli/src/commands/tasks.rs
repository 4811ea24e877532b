//! `sinkscope tasks [--profile DIR] [--lens DIR] [--probe DIR] --out DIR`: the paper's Fig. 7,
//! LogitLens perplexity and probe accuracy against normalised depth, with the profile's
//! phases shaded (tasks.html, tasks.csv, plots/tasks_fig7.*).

use crate::term::say;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// A profile run folder (for the phases).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// A lens run folder.
    #[arg(long)]
    pub lens: Option<PathBuf>,
    /// A probe run folder.
    #[arg(long)]
    pub probe: Option<PathBuf>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an earlier tasks output in --out.
    #[arg(long)]
    pub force: bool,
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    let inputs: Vec<&std::path::Path> =
        [a.profile.as_deref(), a.lens.as_deref(), a.probe.as_deref()].into_iter().flatten().collect();
    let entries = [sinkscope_report::TASKS_CSV, sinkscope_report::TASKS_HTML, sinkscope_report::PLOTS_DIR];
    let _out = crate::common::claim_out(&a.out, "tasks", &entries, &[], &inputs, a.force, false)?;
    sinkscope_report::render_tasks(a.profile.as_deref(), a.lens.as_deref(), a.probe.as_deref(), &a.out)
        .with_context(|| format!("{}: rendering tasks vs depth", a.out.display()))?;
    say!("{}", a.out.join("tasks.html").display());
    Ok(())
}
