//! Writes a random-weight, Llama-shaped checkpoint with a planted massive activation, for
//! benchmarks at real scale (see BENCHMARKS.md, "Checkpoints at scale"):
//!
//! ```sh
//! cargo run --release -p sinkscope-cli --example gen_checkpoint -- \
//!     --shape llama3-8b --format q4_k_m --out /tmp/llama3-8b-random.Q4_K_M.gguf
//! cargo run --release -p sinkscope-cli --example gen_checkpoint -- \
//!     --shape llama3-8b --format bf16 --out /tmp/llama3-8b-random-bf16
//! ```
//!
//! Shapes: `tiny` (4 layers, d 256: tests), `llama3-8b`, `llama3-70b`. Formats: `q4_k_m`,
//! `q2_k` (GGUF files) and `bf16` (a folder of sharded safetensors with config and tokenizer).
//! Memory stays constant (one row at a time) whatever the shape.
#![allow(clippy::print_stderr)]

mod checkpoint;

use anyhow::{bail, Context, Result};
use checkpoint::model::{shape, SHAPES};
use checkpoint::GgufMix;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Parser)]
struct Args {
    /// tiny, llama3-8b or llama3-70b.
    #[arg(long)]
    shape: String,
    /// q4_k_m, q2_k (a GGUF file) or bf16 (a folder of safetensors shards).
    #[arg(long)]
    format: String,
    /// The GGUF file or the safetensors folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Largest safetensors shard, in bytes (Hugging Face's default, 5 GB).
    #[arg(long, default_value_t = 5_000_000_000)]
    shard_bytes: u64,
}

fn main() -> Result<()> {
    let a: Args = clap::Parser::parse();
    let Some(s) = shape(&a.shape) else {
        let names: Vec<&str> = SHAPES.iter().map(|s| s.name).collect();
        bail!("--shape {}: unknown (known: {})", a.shape, names.join(", "));
    };
    let t0 = Instant::now();
    let mut last = Instant::now();
    let mut progress = |done: u64, total: u64| {
        if last.elapsed().as_secs_f64() > 10.0 || done == total {
            last = Instant::now();
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "{:.1} / {:.1} GB, {secs:.0} s, {:.0} MB/s",
                done as f64 / 1e9,
                total as f64 / 1e9,
                done as f64 / 1e6 / secs.max(1e-9)
            );
        }
    };
    eprintln!("{} parameters; plant: {}", s.n_params(), checkpoint::plant_json(&s, a.seed));
    match a.format.as_str() {
        "q4_k_m" | "q2_k" => {
            let mix = if a.format == "q2_k" { GgufMix::Q2K } else { GgufMix::Q4KM };
            checkpoint::write_gguf(&s, a.seed, mix, &a.out, &mut progress)
                .with_context(|| format!("{}: cannot write", a.out.display()))?;
        }
        "bf16" => {
            checkpoint::write_safetensors(&s, a.seed, &a.out, a.shard_bytes, &mut progress)
                .with_context(|| format!("{}: cannot write", a.out.display()))?;
        }
        other => bail!("--format {other}: unknown (q4_k_m, q2_k, bf16)"),
    }
    println!("{}", a.out.display());
    Ok(())
}
