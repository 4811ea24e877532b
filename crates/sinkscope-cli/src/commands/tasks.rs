//! `sinkscope tasks [--profile DIR] [--lens DIR] [--probe DIR] --out DIR`: the paper's Fig. 7,
//! LogitLens perplexity and probe accuracy against normalised depth, with the profile's
//! phases shaded (tasks.html, tasks.csv, plots/tasks_fig7.*).

use super::profile::say;
use anyhow::{Context, Result};
use std::io::Write;
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
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    crate::common::create_dir(&a.out)?;
    sinkscope_report::render_tasks(a.profile.as_deref(), a.lens.as_deref(), a.probe.as_deref(), &a.out)
        .with_context(|| format!("{}: rendering tasks vs depth", a.out.display()))?;
    say!("{}", a.out.join("tasks.html").display());
    Ok(())
}
