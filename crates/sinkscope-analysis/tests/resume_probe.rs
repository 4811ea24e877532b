//! Kill and resume for `probe` (the CLI's probe needs a labelled dataset, so this runs
//! `run_probe` itself, on the tiny llama fixture and a synthetic labelled set): a child process
//! (this test binary, re-executed) is SIGKILLed midway through the feature extraction, a torn
//! half line and a partial feature row are left behind as a kill mid-write would, and a
//! resumed run must write the same metrics.json, prompts.jsonl and features.f32 as an
//! uninterrupted one. A resume with other options is refused; a finished run whose features
//! were removed (no `--keep-features`) is redone from scratch to the same result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use sinkscope_analysis::datasets::Example;
use sinkscope_analysis::probe::{run_probe, ProbeOptions, ProbeSummary};
use sinkscope_analysis::profile::{DataSource, ManifestHeader, NoProgress, ProfileInput, ProfileOptions};
use sinkscope_metrics::probe::{Pool, ProbeParams};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child process: the output folder of the run to be killed.
const CHILD_OUT: &str = "SINKSCOPE_TEST_PROBE_CHILD_OUT";
const N: usize = 400;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("resume-probe").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn examples(n: usize) -> Vec<Example> {
    let pos = ["river", "boats", "quiet", "mill", "small"];
    let neg = ["def", "return", "sum", "add", "1234"];
    (0..n)
        .map(|i| {
            let label = i % 2 == 0;
            let w = if label { pos[i % 5] } else { neg[(i / 2) % 5] };
            let filler: Vec<&str> = (0..i % 7).map(|j| pos[(i + j) % 5]).collect();
            Example {
                id: format!("s{i}"),
                text: format!("{w} {} the {w}", filler.join(" ")),
                label: Some(label),
            }
        })
        .collect()
}

fn probe(
    out: &Path,
    folds: usize,
    keep_features: bool,
    resume: bool,
) -> sinkscope_analysis::Result<ProbeSummary> {
    let (files, model) = sinkscope_model::load(
        &root().join("tests/fixtures/gguf/llama/llama-f32.gguf"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let opts = ProbeOptions {
        prompt: ProfileOptions { resume, ..ProfileOptions::default() },
        pool: Pool::Mean,
        params: ProbeParams { folds, ..ProbeParams::default() },
        keep_features,
    };
    let header = ManifestHeader {
        tool: json!({"name": "test"}),
        model: json!({"sha256": "fixture"}),
        tokenizer: json!({}),
        load_s: 0.0,
        extra: Default::default(),
    };
    let mut iter = examples(N).into_iter();
    let input = ProfileInput {
        source: DataSource::File(PathBuf::from("synthetic").into()),
        limit: None,
        prompts: &mut iter,
        total: Some(N),
        workers: 1,
        pack_tokens: sinkscope_analysis::profile::DEFAULT_PACK_TOKENS,
    };
    run_probe(&model, &files, &opts, &header, input, out, &mut NoProgress)
}

fn complete_lines(p: &Path) -> usize {
    std::fs::read(p).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0)
}

fn assert_same_files(a: &Path, b: &Path, files: &[&str]) {
    for file in files {
        let (x, y) = (std::fs::read(a.join(file)).unwrap(), std::fs::read(b.join(file)).unwrap());
        assert!(x == y, "{file} of the resumed run differs from the uninterrupted run's");
    }
}

/// The run the parent kills; a no-op in an ordinary test run.
#[test]
fn probe_child() {
    if let Some(out) = std::env::var_os(CHILD_OUT) {
        probe(Path::new(&out), 4, true, false).unwrap();
    }
}

#[test]
fn killed_probe_resumes_to_the_same_result() {
    let d = dir("kill");
    let full = d.join("full");
    probe(&full, 4, true, false).unwrap();

    let out = d.join("killed");
    let lines = out.join("prompts.jsonl");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["probe_child", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_OUT, &out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while complete_lines(&lines) < 40 {
        assert!(start.elapsed() < Duration::from_secs(120), "the child never wrote 40 lines");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child ended ({status}) before it could be killed; use more sentences");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = complete_lines(&lines);
    assert!(done < N, "the run finished before the kill ({done} lines)");
    assert!(!out.join("metrics.json").exists());
    // A kill mid-write: half a line, and part of the next sentence's feature row.
    let mut f = std::fs::OpenOptions::new().append(true).open(&lines).unwrap();
    if std::fs::read(&lines).unwrap().last() == Some(&b'\n') {
        f.write_all(b"{\"id\": \"s").unwrap();
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(out.join("features.f32")).unwrap();
    f.write_all(&[1u8; 20]).unwrap();
    drop(f);

    let s = probe(&out, 4, true, true).unwrap();
    assert_eq!(s.n_samples, N);
    assert_eq!(complete_lines(&lines), N);
    assert_same_files(&full, &out, &["metrics.json", "prompts.jsonl", "features.f32"]);

    // Resuming the finished run (features kept) changes nothing.
    probe(&out, 4, true, true).unwrap();
    assert_same_files(&full, &out, &["metrics.json", "prompts.jsonl", "features.f32"]);
}

#[test]
fn probe_resume_checks_the_run() {
    let d = dir("mismatch");
    let full = d.join("full");
    probe(&full, 4, true, false).unwrap();
    // Another fold count is another run: refused, naming the manifest and the field.
    let out = d.join("out");
    probe(&out, 4, false, false).unwrap();
    let e = probe(&out, 3, false, true).unwrap_err().to_string();
    assert!(e.contains("manifest.json") && e.contains("cannot resume") && e.contains("'options'"), "{e}");
    // The finished run removed its features: resuming it redoes every sentence.
    assert!(!out.join("features.f32").exists());
    probe(&out, 4, false, true).unwrap();
    assert_eq!(complete_lines(&out.join("prompts.jsonl")), N);
    assert_same_files(&full, &out, &["metrics.json", "prompts.jsonl"]);
}
