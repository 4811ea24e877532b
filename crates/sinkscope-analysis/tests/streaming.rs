//! Streaming invariants of a profile run, on the fixture Llama (HF folder, 3 blocks, 4 heads):
//!
//! - the state kept across prompts does not grow with their number: the aggregator's
//!   footprint after 300 prompts equals its footprint after 6 (the same 6 texts cycled);
//! - each prompt's line is in `prompts.jsonl` (flushed) when its progress report arrives;
//! - re-aggregating `prompts.jsonl` gives exactly the `metrics.json` of the run;
//! - a `T = 1` prompt is an error naming it; `--max-tokens` caps every prompt.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use sinkscope_analysis::aggregate::aggregate_file;
use sinkscope_analysis::datasets::Example;
use sinkscope_analysis::profile::{
    prepare, run_profile, DataSource, ManifestHeader, ProfileInput, ProfileOptions, Progress,
};
use sinkscope_analysis::AnalysisError;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn out_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("streaming").join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

const TEXTS: [&str; 6] = [
    "The quiet river carried small boats past the old mill.",
    "A farmer counted twelve sheep and four cows in the field.",
    "Rain fell on the city all night.",
    "She opened the window and the cold air rushed in.",
    "Two trains left the station at noon, one going north.",
    "The library was closed, so they read under the tree.",
];

fn examples(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| Example { id: format!("p{i}"), text: TEXTS[i % TEXTS.len()].to_string(), label: None })
        .collect()
}

fn header() -> ManifestHeader {
    ManifestHeader {
        tool: json!({"name": "test"}),
        model: json!({}),
        tokenizer: json!({}),
        load_s: 0.0,
        extra: Default::default(),
    }
}

/// Checks, at every progress report, that `prompts.jsonl` already holds `done` lines.
struct LineCheck {
    path: PathBuf,
    calls: usize,
}

impl Progress for LineCheck {
    fn prompt_done(&mut self, done: usize, _tokens: usize, _elapsed: Duration) {
        let text = std::fs::read_to_string(&self.path).unwrap();
        assert_eq!(text.lines().count(), done, "prompt {done}'s line is flushed before the next prompt");
        self.calls += 1;
    }
}

fn run(n: usize, name: &str, workers: usize) -> (sinkscope_analysis::profile::ProfileSummary, PathBuf) {
    let (files, model) =
        sinkscope_model::load(&root().join("tests/fixtures/models/llama"), &candle_core::Device::Cpu)
            .unwrap();
    let out = out_dir(name);
    let mut it = examples(n).into_iter();
    let input = ProfileInput {
        source: DataSource::File(std::path::PathBuf::from("inline").into()),
        limit: None,
        prompts: &mut it,
        total: Some(n),
        workers,
        pack_tokens: sinkscope_analysis::profile::DEFAULT_PACK_TOKENS,
    };
    let mut check = LineCheck { path: out.join("prompts.jsonl"), calls: 0 };
    let s =
        run_profile(&model, &files, &ProfileOptions::default(), &header(), input, &out, &mut check).unwrap();
    assert_eq!(check.calls, n);
    assert_eq!(s.n_prompts, n);
    assert_eq!(s.bound_violations, 0);
    (s, out)
}

/// The cross-prompt state is the same size after 6 and after 300 prompts.
#[test]
fn state_does_not_grow_with_prompts() {
    let (small, _) = run(6, "small", 1);
    let (large, out) = run(300, "large", 3);
    assert!(small.aggregator_footprint > 0);
    assert_eq!(
        small.aggregator_footprint, large.aggregator_footprint,
        "aggregator state must not grow with the number of prompts"
    );
    let lines = std::fs::read_to_string(out.join("prompts.jsonl")).unwrap().lines().count();
    assert_eq!(lines, 300);
}

fn assert_close(a: &serde_json::Value, b: &serde_json::Value, path: &str) {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-300), "{path}: {x} vs {y}");
        }
        (V::Array(x), V::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: lengths");
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                assert_close(u, v, &format!("{path}[{i}]"));
            }
        }
        (V::Object(x), V::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{path}: keys");
            for (k, u) in x {
                assert_close(u, &y[k], &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

/// `metrics.json` equals the aggregation of `prompts.jsonl` read back (the run can be
/// re-aggregated, e.g. after an interruption).
#[test]
fn reaggregation_matches() {
    let (s, out) = run(7, "reagg", 1);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_close(&written, &serde_json::to_value(&s.metrics).unwrap(), "metrics.json");
    let (_, again) = aggregate_file(&out.join("prompts.jsonl"), 3, 4, ProfileOptions::default()).unwrap();
    // serde_json's default float parser may be 1 ulp off (amplified in std): within 1e-9 relative.
    assert_close(&serde_json::to_value(&again).unwrap(), &written, "metrics");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["n_prompts"], 7);
}

/// The profile writes exactly the curves of the shared schema (`sinkscope_schema::Metric`,
/// the one list of names the report and the docs use), and the typed reader parses the file.
#[test]
fn written_curves_are_the_schema_metrics() {
    let (_, out) = run(2, "schema", 1);
    let path = out.join(sinkscope_schema::METRICS_FILE);
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut keys: Vec<&str> = written["metrics"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut want: Vec<&str> = sinkscope_schema::Metric::ALL.iter().map(|m| m.name()).collect();
    keys.sort_unstable();
    want.sort_unstable();
    assert_eq!(keys, want);
    let typed = sinkscope_schema::MetricsFile::load(&path).unwrap();
    assert_eq!(typed.schema_version, sinkscope_schema::SCHEMA_VERSION);
    assert_eq!(typed.metrics.len(), sinkscope_schema::Metric::ALL.len());
    // The writer's curves, in its order, are `Metric::ALL` in order.
    use sinkscope_analysis::profile::{ATTENTION_CURVES, CLASS_CURVES, MLP_CURVES, VALUE_CURVES};
    let order: Vec<&str> = sinkscope_metrics::layer::LAYER_METRIC_NAMES
        .iter()
        .chain(&ATTENTION_CURVES)
        .chain(&MLP_CURVES)
        .chain(&CLASS_CURVES)
        .chain(&VALUE_CURVES)
        .copied()
        .collect();
    let all: Vec<&str> = sinkscope_schema::Metric::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(order, all);
}

/// Length rules of `prepare`: T = 1 is an error naming the prompt; `max_tokens` caps.
#[test]
fn length_rules() {
    let files = sinkscope_io::ModelFiles::open(&root().join("tests/fixtures/models/llama")).unwrap();
    let opts = ProfileOptions::default();
    // The fixture tokenizer prepends a BOS by default: without it, "a" is one token.
    let no_bos =
        ProfileOptions { bos: sinkscope_io::tokenizer::BosPolicy::Never, ..ProfileOptions::default() };
    let e = prepare(&files, "one", "a", &no_bos).unwrap_err();
    assert!(matches!(e, AnalysisError::PromptTooShort { ref id, n_tokens: 1 } if id == "one"), "{e}");
    let capped = ProfileOptions { max_tokens: Some(4), ..ProfileOptions::default() };
    let p = prepare(&files, "cap", TEXTS[0], &capped).unwrap();
    assert_eq!(p.ids.len(), 4);
    assert!(p.truncated() && p.n_tokens_original > 4);
    let long = "the river and the mill ".repeat(60);
    let e = prepare(&files, "long", &long, &opts).unwrap_err();
    assert!(matches!(e, AnalysisError::PromptTooLong { limit: 128, .. }), "{e}");
    let cut = ProfileOptions { truncate: true, ..ProfileOptions::default() };
    assert_eq!(prepare(&files, "long", &long, &cut).unwrap().ids.len(), 128);
    let bad = ProfileOptions { max_tokens: Some(1), ..ProfileOptions::default() };
    assert!(matches!(bad.validate(), Err(AnalysisError::Options(_))));
}

/// Running prompts on several threads changes nothing: the same lines, in input order, byte
/// for byte, and the same metrics.json.
#[test]
fn parallel_equals_sequential() {
    let (a, out_a) = run(12, "seq", 1);
    let (b, out_b) = run(12, "par", 3);
    let read = |p: &Path| std::fs::read_to_string(p.join("prompts.jsonl")).unwrap();
    assert_eq!(read(&out_a), read(&out_b));
    assert_eq!(a.metrics, b.metrics);
    let ids: Vec<String> = read(&out_b)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, (0..12).map(|i| format!("p{i}")).collect::<Vec<_>>());
}

/// `run_ordered` hands every result over, in input order, whatever the jobs' durations — in
/// particular when a whole window of results arrives before the oldest one (the case that
/// once left the writer waiting for a result that never came). Each run must finish within
/// 120 s in all (a hang is a failure, not a stuck test).
#[test]
fn run_ordered_never_stalls() {
    use sinkscope_analysis::profile::run_ordered;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for seed in 0..3000u64 {
            let n = 1 + (seed % 37) as usize;
            for workers in [2usize, 3] {
                let mut jobs = (0..n).map(|i| Ok((i, (i as u64 * 7919 + seed * 104729) % 97)));
                let work = |(i, cost): (usize, u64)| {
                    let mut x = cost;
                    for _ in 0..cost * 50 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                    std::hint::black_box(x);
                    Ok(i)
                };
                let mut seen = Vec::new();
                run_ordered(workers, &mut jobs, &work, &mut |i| {
                    seen.push(i);
                    Ok(())
                })
                .unwrap();
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "seed {seed}, {workers} workers");
            }
        }
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(120)).expect("run_ordered stalled (or a run panicked)");
}

/// An error stops the run after every earlier result has been written, and is returned.
#[test]
fn run_ordered_stops_at_first_error() {
    use sinkscope_analysis::profile::run_ordered;
    let mut jobs = (0..20usize).map(Ok);
    let work = |i: usize| if i == 7 { Err(AnalysisError::Internal(format!("job {i}"))) } else { Ok(i) };
    let mut seen = Vec::new();
    let e = run_ordered(2, &mut jobs, &work, &mut |i| {
        seen.push(i);
        Ok(())
    })
    .unwrap_err();
    assert!(e.to_string().contains("job 7"), "{e}");
    assert_eq!(seen, (0..7).collect::<Vec<_>>());
}
