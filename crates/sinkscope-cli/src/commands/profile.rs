//! `sinkscope profile MODEL (--prompts FILE | --dataset NAME) [--limit N] [--max-tokens T]
//! [--truncate] [--bos ...] [--epsilon 0.3] [--quiet] --out DIR`.

use crate::common::*;
use crate::term::{note, say};
use anyhow::{bail, Context, Result};
use sinkscope_analysis::datasets::Example;
use sinkscope_analysis::profile::{
    prepare, run_profile, DataSource, ManifestHeader, ProfileInput, ProfileOptions, Progress,
};
use sinkscope_analysis::setup::{self, PromptSource};
use sinkscope_analysis::AnalysisError;
use sinkscope_metrics::AttentionParams;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["prompts", "dataset"])))]
pub struct Args {
    /// A `.gguf` file or a Hugging Face folder.
    pub model: PathBuf,
    /// Prompts, tokenisation, dataset cache, progress and memory-guard options.
    #[command(flatten)]
    pub input: super::experiment::InputArgs,
    /// Sink threshold ε: a head is a sink head when bos_attention > ε.
    #[arg(long, default_value_t = 0.3)]
    pub epsilon: f64,
    /// Output folder: manifest.json, metrics.json, prompts.jsonl, then the report.
    #[arg(long)]
    pub out: PathBuf,
    /// Skip the report (layers.csv, plots/, report.html).
    #[arg(long)]
    pub no_report: bool,
    /// Prompts run at the same time, one core each (default: the cores available). With more
    /// than one, each forward pass is single-threaded (RAYON_NUM_THREADS=1), which avoids the
    /// thread hand-offs that dominate small per-prompt matrices.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Consecutive prompts run together in one forward pass, up to this many tokens per pass
    /// (bigger matrix products: faster for short prompts). The results are bit-identical to
    /// one pass per prompt; 1 turns packing off.
    #[arg(long, default_value_t = sinkscope_analysis::profile::DEFAULT_PACK_TOKENS)]
    pub pack_tokens: usize,
}

/// The prompts of `--prompts` or `--dataset`, the data source, and the first N
/// ([`sinkscope_analysis::setup::load_examples`]).
pub fn load_examples(
    prompts: Option<&Path>,
    dataset: Option<&str>,
    limit: Option<usize>,
    data_dir: &Path,
    python: &str,
) -> Result<(Vec<Example>, DataSource)> {
    let source = match (prompts, dataset) {
        (Some(path), None) => PromptSource::File(path),
        (None, Some(name)) => PromptSource::Dataset { name, data_dir, python },
        _ => bail!("give exactly one of --prompts FILE and --dataset NAME"),
    };
    Ok(setup::load_examples(source, limit, &mut notes())?)
}

/// Where the prompts come from, for error messages (the error catalogue's rule: file and
/// line/prompt): the prompt file as the user spelled it, or the dataset.
pub fn origin(source: &DataSource, prompts: Option<&Path>) -> String {
    match (source, prompts) {
        (DataSource::File(_), Some(p)) => p.display().to_string(),
        (DataSource::File(f), None) => f.path.display().to_string(),
        (DataSource::Dataset(d), _) => format!("dataset '{}'", d.name),
    }
}

/// A hand-drawn progress bar on stderr: prompts, tokens, tokens/s, ETA. On a terminal it
/// redraws one line; otherwise it prints a line every 10 seconds and at the end.
struct Bar {
    total: usize,
    tty: bool,
    last: Option<Instant>,
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Progress for Bar {
    fn prompt_done(&mut self, done: usize, tokens: usize, elapsed: Duration) {
        let finished = done >= self.total;
        let now = Instant::now();
        let due = self.last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10));
        if !self.tty && !finished && !due {
            return;
        }
        self.last = Some(now);
        let secs = elapsed.as_secs_f64().max(1e-9);
        let rate = tokens as f64 / secs;
        let eta = if done > 0 {
            Duration::from_secs_f64(secs / done as f64 * self.total.saturating_sub(done) as f64)
        } else {
            Duration::ZERO
        };
        let width = 30usize;
        let filled = (done * width).checked_div(self.total).unwrap_or(width).min(width);
        let line = format!(
            "[{}{}] {done}/{} prompts  {tokens} tokens  {rate:.0} tokens/s  {} {}",
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.total,
            if finished { "in" } else { "ETA" },
            fmt_duration(if finished { elapsed } else { eta }),
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r{line:<100}{}", if finished { "\n" } else { "" })
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

struct Silent;

impl Progress for Silent {
    fn prompt_done(&mut self, _: usize, _: usize, _: Duration) {}
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    if a.input.max_tokens.len() > 1 {
        return length_sweep(a);
    }
    if a.pack_tokens == 0 {
        return Err(
            AnalysisError::Options("--pack-tokens must be at least 1 (1 turns packing off)".into()).into()
        );
    }
    let workers = setup::worker_count(a.threads, &mut notes())?;
    let opts = ProfileOptions {
        attention: AttentionParams { sink_epsilon: a.epsilon, ..AttentionParams::default() },
        bos: a.input.bos,
        first_token: a.input.first_token.as_deref().map(sinkscope_analysis::profile::FirstTokenSpec::parse),
        max_tokens: a.input.max_tokens.first().copied(),
        truncate: a.input.truncate,
        resume: a.input.resume,
        ..ProfileOptions::default()
    };
    opts.validate()?;
    let (mut examples, source) = load_examples(
        a.input.prompts.as_deref(),
        a.input.dataset.as_deref(),
        a.input.limit,
        &a.input.data_dir,
        &a.input.python,
    )?;
    let shard = super::experiment::apply_shard(a.input.shard, &mut examples)?;
    let t0 = Instant::now();
    let files = sinkscope_io::ModelFiles::open(&a.model)?;
    // Every prompt is tokenised and length-checked before the weights are loaded.
    let mut lengths = Vec::with_capacity(examples.len());
    let origin = origin(&source, a.input.prompts.as_deref());
    for ex in &examples {
        let prepared = prepare(&files, &ex.id, &ex.text, &opts).with_context(|| origin.clone())?;
        lengths.push(prepared.ids.len());
    }
    let (workers, placement) = setup::profile_placement(
        &files,
        &lengths,
        a.pack_tokens,
        workers,
        a.input.stream.stream_layers,
        a.input.force,
        &mut notes(),
    )?;
    let passes = sinkscope_analysis::runner::pack_ranges(&lengths, a.pack_tokens).len();
    setup::single_threaded_passes_for(workers, passes);
    let inputs: Vec<&Path> =
        [Some(a.model.as_path()), a.input.prompts.as_deref()].into_iter().flatten().collect();
    let _out = claim_out(&a.out, "profile", RUN_ENTRIES, &[], &inputs, a.input.force, a.input.resume)?;
    let model = load_model(&files, &placement)?;
    let load_s = t0.elapsed().as_secs_f64();
    for w in model.non_finite_weights() {
        note!("warning: non-finite weights: {w} (a run fails at the first non-finite activation)");
    }
    let sha = model_sha256(&a.model)?;
    let mut extra = placement.manifest_extra(a.input.force);
    if let Some(block) = shard {
        extra.insert(sinkscope_analysis::shard::SHARD_KEY.into(), block);
    }
    let header = ManifestHeader {
        tool: tool_info(),
        model: model_info(&files, &sha),
        tokenizer: tokenizer_info(&files, a.input.bos),
        load_s,
        extra,
    };
    let total = examples.len();
    let mut bar = Bar { total, tty: std::io::stderr().is_terminal(), last: None };
    let mut silent = Silent;
    let progress: &mut dyn Progress = if a.input.quiet { &mut silent } else { &mut bar };
    let mut iter = examples.into_iter();
    let input = ProfileInput {
        source,
        limit: a.input.limit,
        prompts: &mut iter,
        total: Some(total),
        workers,
        pack_tokens: a.pack_tokens,
    };
    let s = run_profile(&model, &files, &opts, &header, input, &a.out, progress)?;
    drop(model);
    let summary = &s.metrics.summary;
    let massive: Vec<String> =
        summary.massive_layers.iter().filter_map(|x| x.block).map(|b| b.to_string()).collect();
    say!(
        "{} prompts, {} tokens in {:.2}s ({:.0} tokens/s), peak RSS {}",
        s.n_prompts,
        s.n_tokens,
        s.run_s,
        s.tokens_per_s,
        s.peak_rss_mib.map_or("unknown".into(), |v| format!("{v:.0} MiB"))
    );
    say!(
        "massive-activation blocks: {}; peak bos_ratio {}; min entropy_norm {}",
        if massive.is_empty() { "none".to_string() } else { massive.join(", ") },
        fmt_layer_value(summary.peak_bos_ratio),
        fmt_layer_value(summary.min_entropy_norm),
    );
    say!(
        "corr_bos_entropy {}, corr_bos_sink {}, Theorem-1 bound violations {}",
        fmt_opt(summary.corr_bos_entropy),
        fmt_opt(summary.corr_bos_sink),
        s.bound_violations
    );
    if a.no_report {
        say!("{}", a.out.join("metrics.json").display());
        return Ok(());
    }
    // The report (another crate): layers.csv, plots/ and report.html from the run folder.
    sinkscope_report::render_run(&a.out)
        .with_context(|| format!("{}: rendering the report", a.out.display()))?;
    say!("{}", a.out.join("report.html").display());
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.3}"))
}

fn fmt_layer_value(v: Option<sinkscope_report::schema::LayerValue>) -> String {
    match v {
        Some(v) => format!("{:.4} at layer {}", v.value, v.layer),
        None => "n/a".into(),
    }
}

/// The progress reporter of every per-prompt command: the bar, or nothing with `--quiet`.
pub fn progress(total: usize, quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(Silent)
    } else {
        Box::new(Bar { total, tty: std::io::stderr().is_terminal(), last: None })
    }
}

/// `--max-tokens T1,T2,...`: one profile per T in `OUT/max_tokens_<T>/` (each a full run
/// folder with its report), then `OUT/length_sweep.csv` and `OUT/length_sweep.json`: per T the
/// mean sink rate over blocks 1..L, the smallest mean entropy_norm (and its layer), the mean
/// entropy_norm and sink rate over the run's compress phase, the phase boundaries and the
/// lag-0/lag-1 correlations — sink rate and entropy against the sequence length.
fn length_sweep(a: Args) -> Result<()> {
    let mut ts = a.input.max_tokens.clone();
    ts.sort_unstable();
    ts.dedup();
    if let Some(bad) = ts.iter().find(|&&t| t < 2) {
        return Err(AnalysisError::Options(format!(
            "--max-tokens must be at least 2 (the metrics need T >= 2), got {bad}"
        ))
        .into());
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}: cannot create", a.out.display()))?;
    let mut rows: Vec<serde_json::Value> = Vec::new();
    for &t in &ts {
        let sub = Args {
            model: a.model.clone(),
            input: super::experiment::InputArgs { max_tokens: vec![t], ..a.input.clone() },
            epsilon: a.epsilon,
            out: a.out.join(format!("max_tokens_{t}")),
            no_report: a.no_report,
            threads: a.threads,
            pack_tokens: a.pack_tokens,
        };
        let dir = sub.out.clone();
        run(sub)?;
        let path = dir.join("metrics.json");
        let m: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?,
        )?;
        rows.push(sweep_row(t, &m));
    }
    let cols = [
        "max_tokens",
        "n_prompts",
        "mean_tokens",
        "mean_sink_rate",
        "min_entropy_norm",
        "min_entropy_norm_layer",
        "compress_mean_entropy_norm",
        "compress_mean_sink_rate",
        "compress_start",
        "refine_start",
        "corr_bos_entropy",
        "corr_bos_sink",
        "corr_bos_sink_lag1",
    ];
    let mut csv = cols.join(",");
    csv.push('\n');
    for r in &rows {
        let cells: Vec<String> = cols
            .iter()
            .map(|c| match &r[*c] {
                serde_json::Value::Null => String::new(),
                v => v.to_string(),
            })
            .collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    let csv_path = a.out.join("length_sweep.csv");
    sinkscope_output::write_atomic(&csv_path, csv.as_bytes())?;
    let doc = serde_json::json!({
        "schema_version": sinkscope_analysis::profile::SCHEMA_VERSION,
        "kind": "length_sweep",
        "max_tokens": ts,
        "runs": rows,
        "note": "each row summarises OUT/max_tokens_<T>/metrics.json (prompt-mean curves); a prompt shorter than T runs whole",
    });
    sinkscope_output::write_atomic(
        &a.out.join("length_sweep.json"),
        serde_json::to_string_pretty(&doc)?.as_bytes(),
    )?;
    for r in &rows {
        note!(
            "T = {:>5}: mean sink_rate {}, min entropy_norm {} (layer {}), Compress from layer {}, Refine from {}, r(Δlog‖x₀‖, Δsink) lag 1 {}",
            r["max_tokens"],
            r["mean_sink_rate"].as_f64().map_or("–".into(), |v| format!("{v:.3}")),
            r["min_entropy_norm"].as_f64().map_or("–".into(), |v| format!("{v:.4}")),
            r["min_entropy_norm_layer"],
            r["compress_start"],
            r["refine_start"],
            r["corr_bos_sink_lag1"].as_f64().map_or("–".into(), |v| format!("{v:.2}")),
        );
    }
    say!("{}", csv_path.display());
    Ok(())
}

/// One row of the length sweep from a run's `metrics.json`.
fn sweep_row(t: usize, m: &serde_json::Value) -> serde_json::Value {
    let curve = |name: &str| -> Vec<Option<f64>> {
        m["metrics"][name]["mean"]
            .as_array()
            .map(|a| a.iter().map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    };
    let mean_of = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let sink = curve("sink_rate");
    let ent = curve("entropy_norm");
    let s = &m["summary"];
    let compress = &s["phases"]["compress"];
    let in_compress = |c: &[Option<f64>]| -> Vec<f64> {
        match (compress["first"].as_u64(), compress["last"].as_u64()) {
            (Some(a), Some(b)) => {
                (a as usize..=b as usize).filter_map(|l| c.get(l).copied().flatten()).collect()
            }
            _ => Vec::new(),
        }
    };
    let n_prompts = m["n_prompts"].as_f64().unwrap_or(0.0);
    serde_json::json!({
        "max_tokens": t,
        "n_prompts": m["n_prompts"],
        "mean_tokens": (n_prompts > 0.0).then(|| m["n_tokens"].as_f64().unwrap_or(0.0) / n_prompts),
        "mean_sink_rate": mean_of(&sink.iter().skip(1).flatten().copied().collect::<Vec<_>>()),
        "min_entropy_norm": s["min_entropy_norm"]["value"],
        "min_entropy_norm_layer": s["min_entropy_norm"]["layer"],
        "compress_mean_entropy_norm": mean_of(&in_compress(&ent)),
        "compress_mean_sink_rate": mean_of(&in_compress(&sink)),
        "compress_start": compress["first"],
        "refine_start": s["phases"]["refine"]["first"],
        "corr_bos_entropy": s["corr_bos_entropy"],
        "corr_bos_sink": s["corr_bos_sink"],
        "corr_bos_sink_lag1": s["corr_bos_sink_lag1"],
    })
}
