//! `sinkscope merge RUN... [--keep-features] [--force] [--no-report] --out DIR`: joins the
//! shard folders of one `profile`, `lens`, `probe` or `ablate` run (`--shard I/N`) into the
//! unsharded run: `prompts.jsonl`, `metrics.json` (and an ablate study's `ablate.json`)
//! byte-identical to a run over all prompts at once, then the report.

use crate::common::*;
use crate::term::say;
use anyhow::{Context, Result};
use sinkscope_analysis::shard::{merge_runs, MergeOptions, Merged};
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The shard folders (any order; all N of them).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output folder of the merged run.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an earlier run in --out (only the files sinkscope wrote there are removed).
    #[arg(long)]
    pub force: bool,
    /// probe: keep the merged features.f32.
    #[arg(long)]
    pub keep_features: bool,
    /// Skip the report.
    #[arg(long)]
    pub no_report: bool,
}

/// Claims `out` and merges the shard folders `runs` into it: an `ablate` study (its folders
/// hold `ablate.json`) or a `profile`, `lens` or `probe` run (`kind` of the shards' manifests).
pub(crate) fn merge_folders(
    runs: &[PathBuf],
    out: &std::path::Path,
    force: bool,
    keep_features: bool,
) -> Result<Merged> {
    let inputs: Vec<&std::path::Path> = runs.iter().map(PathBuf::as_path).collect();
    let opts = MergeOptions { tool: tool_info(), keep_features };
    if runs.first().is_some_and(|d| d.join(sinkscope_report::schema::ABLATE_FILE).is_file()) {
        let entries = sinkscope_analysis::ablate::ABLATE_ENTRIES;
        let _out = claim_out(
            out,
            "ablate",
            entries,
            sinkscope_analysis::ablate::ABLATE_PREFIXES,
            &inputs,
            force,
            false,
        )?;
        return Ok(sinkscope_analysis::ablate::merge_ablate(runs, out, &opts)?);
    }
    // The kind of the merged run is the shards' (checked again by the merge itself).
    let first = runs.first().map(|d| d.join("manifest.json")).unwrap_or_default();
    let kind = std::fs::read_to_string(&first)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|m| m["kind"].as_str().map(str::to_string))
        .unwrap_or_else(|| "profile".into());
    let entries = sinkscope_analysis::probe::probe_entries();
    let _out = claim_out(out, &kind, &entries, &[], &inputs, force, false)?;
    Ok(merge_runs(runs, out, &opts)?)
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    let m = merge_folders(&a.runs, &a.out, a.force, a.keep_features)?;
    say!("merged {} {} shard(s): {} prompts", m.n_shards, m.kind, m.n_prompts);
    if a.no_report {
        let result = if m.kind == "ablate" { sinkscope_report::schema::ABLATE_FILE } else { "metrics.json" };
        say!("{}", a.out.join(result).display());
        return Ok(());
    }
    sinkscope_report::render_run(&a.out)
        .with_context(|| format!("{}: rendering the report", a.out.display()))?;
    say!("{}", a.out.join("report.html").display());
    Ok(())
}
