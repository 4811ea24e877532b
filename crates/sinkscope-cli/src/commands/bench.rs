//! `sinkscope bench MODEL`: profile throughput (tokens/s) and peak memory on fixed workloads.
//!
//! Each workload runs `sinkscope profile ... --quiet --no-report` (with `--lens`, also
//! `sinkscope lens ...`) in a child process, so that its peak RSS (VmHWM, model load included)
//! is its own; the figures come from the child's `manifest.json` timings, and the matmul
//! kernel path from its `execution` block.

use crate::term::say;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// A `.gguf` file or a Hugging Face folder.
    pub model: PathBuf,
    /// Prompt file of the first workload.
    #[arg(long, default_value = "data/prompts/smollm2_reference_a.jsonl")]
    pub prompts: PathBuf,
    /// Dataset of the second workload.
    #[arg(long, default_value = "gsm8k-like")]
    pub dataset: String,
    /// Prompts taken from the dataset.
    #[arg(long, default_value_t = 64)]
    pub limit: usize,
    /// Runs per workload (the best tokens/s and the largest peak RSS are reported).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Where the runs' folders go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// Passed to `profile --threads` (default: profile's own default, the cores available).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also time `sinkscope lens` (LogitLens) on `--lens-dataset`, `--lens-limit` prompts cut
    /// to `--lens-max-tokens` tokens.
    #[arg(long)]
    pub lens: bool,
    /// Dataset of the lens workload.
    #[arg(long, default_value = "wikitext-like")]
    pub lens_dataset: String,
    /// Prompts of the lens workload.
    #[arg(long, default_value_t = 8)]
    pub lens_limit: usize,
    /// Token cap of the lens workload's prompts.
    #[arg(long, default_value_t = 256)]
    pub lens_max_tokens: usize,
    /// Only the first (prompt file) workload.
    #[arg(long)]
    pub file_only: bool,
}

/// The 1-minute load average (other work competing for the cores), as text.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// The CPU in words from `/proc/cpuinfo`'s text: its model name, then its family and model
/// numbers (a KVM guest often shows only "AMD EPYC", which both Zen 3 and Zen 4 print) and the
/// widest vector extension it has.
fn cpu_words(cpuinfo: &str) -> String {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let name = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let ids = match (field("cpu family"), field("model")) {
        (Some(f), Some(m)) => format!(" (family {f}, model {m})"),
        _ => String::new(),
    };
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let widest = ["avx512f", "avx2"].into_iter().find(|f| has(f)).map_or(String::new(), |f| format!(", {f}"));
    format!("{name}{ids}{widest}")
}

/// The machine, in words (CPU, logical cores, memory).
fn machine() -> String {
    let cpu =
        std::fs::read_to_string("/proc/cpuinfo").map_or_else(|_| "unknown CPU".into(), |s| cpu_words(&s));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or("unknown memory".into(), |kb| format!("{:.1} GiB RAM", kb / 1024.0 / 1024.0));
    format!("{cpu}, {cores} logical cores available, {mem}")
}

/// The packed matmul kernel path a run's manifest records (`execution.kernel_path`, with its
/// note when the requested path was not taken), in words.
fn kernel_path(m: &serde_json::Value) -> Option<String> {
    let e = m.get("execution")?;
    let path = match e.get("kernel_path")? {
        serde_json::Value::String(p) => p.clone(),
        serde_json::Value::Null => "off (candle matmul)".into(),
        other => other.to_string(),
    };
    Some(match e.get("kernel_path_note").and_then(|n| n.as_str()) {
        Some(note) => format!("{path} ({note})"),
        None => path,
    })
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the sinkscope executable")?;
    let threads = a.threads.map(|t| vec!["--threads".to_string(), t.to_string()]).unwrap_or_default();
    let mut workloads: Vec<(String, &str, Vec<String>)> = vec![(
        format!("profile {} (file)", a.prompts.display()),
        "profile",
        [vec!["--prompts".into(), a.prompts.display().to_string()], threads.clone()].concat(),
    )];
    if !a.file_only {
        workloads.push((
            format!("profile {} x{}", a.dataset, a.limit),
            "profile",
            [vec!["--dataset".into(), a.dataset.clone(), "--limit".into(), a.limit.to_string()], threads]
                .concat(),
        ));
    }
    if a.lens {
        workloads.push((
            format!("lens {} x{}, max {} tokens", a.lens_dataset, a.lens_limit, a.lens_max_tokens),
            "lens",
            vec![
                "--dataset".into(),
                a.lens_dataset.clone(),
                "--limit".into(),
                a.lens_limit.to_string(),
                "--max-tokens".into(),
                a.lens_max_tokens.to_string(),
            ],
        ));
    }
    let mut kernel = None;
    say!("machine: {}", machine());
    say!("model: {}", a.model.display());
    say!("load average before: {}", load_average());
    say!();
    say!("| workload | prompts | tokens | load s | run s | tokens/s | tokens per CPU-s | peak RSS MiB |");
    say!("|---|---|---|---|---|---|---|---|");
    for (k, (name, command, args)) in workloads.iter().enumerate() {
        let mut best: Option<(f64, serde_json::Value)> = None;
        let mut peak = 0.0f64;
        for r in 0..a.repeat.max(1) {
            let dir = a.out.join(format!("w{k}-r{r}"));
            let status = Command::new(&exe)
                .arg(command)
                .arg(&a.model)
                .args(args)
                // --force: each workload's folder replaces the previous bench's (only the
                // files sinkscope wrote there are removed).
                .args(["--quiet", "--no-report", "--force", "--out"])
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .status()
                .with_context(|| format!("cannot run {}", exe.display()))?;
            if !status.success() {
                bail!("workload '{name}': sinkscope {command} failed ({status})");
            }
            let path = dir.join("manifest.json");
            let m: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&path)
                    .with_context(|| format!("{}: cannot read", path.display()))?,
            )
            .with_context(|| format!("{}: not JSON", path.display()))?;
            let tps = m["timings"]["tokens_per_s"].as_f64().unwrap_or(0.0);
            if kernel.is_none() {
                kernel = kernel_path(&m);
            }
            peak = peak.max(m["timings"]["peak_rss_mib"].as_f64().unwrap_or(0.0));
            if best.as_ref().is_none_or(|(b, _)| tps > *b) {
                best = Some((tps, m));
            }
        }
        if let Some((tps, m)) = best {
            let t = &m["timings"];
            say!(
                "| {name} | {} | {} | {:.2} | {:.2} | {tps:.0} | {} | {peak:.0} |",
                m["n_prompts"],
                m["n_tokens"],
                t["load_s"].as_f64().unwrap_or(0.0),
                t["run_s"].as_f64().unwrap_or(0.0),
                // lens does not record its CPU time
                t["tokens_per_cpu_s"].as_f64().map_or("–".to_string(), |v| format!("{v:.0}")),
            );
        }
    }
    say!();
    say!("matmul kernel path: {}", kernel.unwrap_or_else(|| "unknown".into()));
    say!("load average after: {}", load_average());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cpu_words;

    #[test]
    fn cpu_words_name_family_model_and_widest_vectors() {
        let zen4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n\
                    model name\t: AMD EPYC\nflags\t\t: fpu avx2 fma avx512f avx512bw\n";
        assert_eq!(cpu_words(zen4), "AMD EPYC (family 25, model 17), avx512f");
        let zen3 = "cpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fma avx2\n";
        assert_eq!(cpu_words(zen3), "AMD EPYC (family 25, model 1), avx2");
        assert_eq!(cpu_words(""), "unknown CPU");
    }
}
