//! `sinkscope tasks [--profile DIR] [--lens DIR] [--probe DIR] [--mc DIR] --out DIR`: the
//! paper's Fig. 7, LogitLens perplexity, probe accuracy and multiple-choice LogitLens accuracy
//! against normalised depth, with the profile's phases shaded (tasks.html, tasks.csv,
//! plots/tasks_fig7.*).

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
    /// A `lens --mc` run folder (multiple-choice LogitLens accuracy).
    #[arg(long)]
    pub mc: Option<PathBuf>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an earlier tasks output in --out.
    #[arg(long)]
    pub force: bool,
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    let dirs = sinkscope_report::TaskDirs {
        profile: a.profile.as_deref(),
        lens: a.lens.as_deref(),
        probe: a.probe.as_deref(),
        mc: a.mc.as_deref(),
    };
    let inputs: Vec<&std::path::Path> =
        [dirs.profile, dirs.lens, dirs.probe, dirs.mc].into_iter().flatten().collect();
    let entries = [sinkscope_report::TASKS_CSV, sinkscope_report::TASKS_HTML, sinkscope_report::PLOTS_DIR];
    let _out = crate::common::claim_out(&a.out, "tasks", &entries, &[], &inputs, a.force, false)?;
    sinkscope_report::render_tasks(&dirs, &a.out)
        .with_context(|| format!("{}: rendering tasks vs depth", a.out.display()))?;
    say!("{}", a.out.join("tasks.html").display());
    Ok(())
}
