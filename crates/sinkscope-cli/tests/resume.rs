//! Kill and resume: a `profile` (`lens`, `ablate`) run is SIGKILLed midway (after some
//! prompts.jsonl lines have been flushed), a torn half-line is left at the end of prompts.jsonl
//! as a crash mid-write would, and `--resume` finishes the run. Its metrics.json and
//! prompts.jsonl (ablate: every sub-run's, and ablate.json) must equal an uninterrupted run's
//! byte for byte (they hold no timings). A resume with other options is refused, naming the
//! field. (`probe` needs a labelled dataset: its kill-and-resume test runs the library in a
//! child process, `crates/sinkscope-analysis/tests/resume_probe.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf/llama/llama-f32.gguf")
}

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("resume").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Enough distinct prompts for the run to take a few seconds on the fixture model.
fn prompt_file(d: &Path, n: usize) -> PathBuf {
    let words = ["river", "boats", "mill", "quiet", "small", "old", "the", "past", "carried", "children"];
    let mut s = String::new();
    for i in 0..n {
        let text: Vec<&str> = (0..6 + i % 40).map(|j| words[(i * 7 + j * 3) % words.len()]).collect();
        s.push_str(&serde_json::json!({"id": format!("p{i}"), "text": text.join(" ")}).to_string());
        s.push('\n');
    }
    let p = d.join("prompts.jsonl");
    std::fs::write(&p, s).unwrap();
    p
}

fn profile_cmd(prompts: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = cmd("profile", prompts, out, &["--threads", "1"]);
    c.args(extra);
    c
}

/// `sinkscope SUB MODEL --prompts P --out OUT --no-report --quiet EXTRA...` on the fixture.
fn cmd(sub: &str, prompts: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sinkscope"));
    c.arg(sub)
        .arg(fixture_model())
        .arg("--prompts")
        .arg(prompts)
        .arg("--out")
        .arg(out)
        .args(["--no-report", "--quiet"])
        .args(extra)
        .env_remove("SINKSCOPE_AVAILABLE_MEMORY");
    c
}

/// Starts `c`, SIGKILLs it once `lines` holds at least `at` complete lines, and leaves a torn
/// half line at the end of `lines` (as a kill in the middle of a write would). Returns the
/// number of complete lines left.
fn kill_after(mut c: Command, lines: &Path, at: usize) -> usize {
    let mut child = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while complete_lines(lines) < at {
        assert!(start.elapsed() < Duration::from_secs(120), "the run never wrote {at} lines");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed; use more prompts");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(lines).unwrap();
    if std::fs::read(lines).unwrap().last() == Some(&b'\n') {
        f.write_all(b"{\"id\": \"p").unwrap();
    }
    complete_lines(lines)
}

fn assert_same_files(a: &Path, b: &Path, files: &[&str]) {
    for file in files {
        let (x, y) = (std::fs::read(a.join(file)).unwrap(), std::fs::read(b.join(file)).unwrap());
        assert!(x == y, "{file} of the resumed run differs from the uninterrupted run's");
    }
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn complete_lines(p: &Path) -> usize {
    std::fs::read(p).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0)
}

/// SIGKILL midway, a torn last line, --resume: the same metrics.json and prompts.jsonl as an
/// uninterrupted run.
#[test]
fn killed_profile_resumes_to_the_same_result() {
    let d = dir("kill");
    let n = 800;
    let prompts = prompt_file(&d, n);

    let full = d.join("full");
    let o = profile_cmd(&prompts, &full, &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let out = d.join("killed");
    let mut child =
        profile_cmd(&prompts, &out, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let lines = out.join("prompts.jsonl");
    let start = Instant::now();
    while complete_lines(&lines) < 50 {
        assert!(start.elapsed() < Duration::from_secs(120), "the run never wrote 50 lines");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed; use more prompts");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = complete_lines(&lines);
    assert!(done < n, "the run finished before the kill ({done} lines)");
    assert!(!out.join("metrics.json").exists());
    // A crash in the middle of a write leaves half a line: make sure there is one.
    let mut f = std::fs::OpenOptions::new().append(true).open(&lines).unwrap();
    let bytes = std::fs::read(&lines).unwrap();
    if bytes.last() == Some(&b'\n') {
        f.write_all(b"{\"id\": \"p").unwrap();
    }
    drop(f);

    let o = profile_cmd(&prompts, &out, &["--resume"]).output().unwrap();
    assert!(o.status.success(), "resume failed: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(complete_lines(&lines), n);
    for file in ["metrics.json", "prompts.jsonl"] {
        let (a, b) = (std::fs::read(full.join(file)).unwrap(), std::fs::read(out.join(file)).unwrap());
        assert!(a == b, "{file} of the resumed run differs from the uninterrupted run's");
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "complete");
    assert_eq!(m["n_prompts"], n);

    // Resuming a finished run changes nothing.
    let o = profile_cmd(&prompts, &out, &["--resume"]).output().unwrap();
    assert!(o.status.success());
    assert_eq!(
        std::fs::read(full.join("metrics.json")).unwrap(),
        std::fs::read(out.join("metrics.json")).unwrap()
    );
}

/// A resume whose options differ from the run in the folder is refused (exit 3), naming the
/// manifest and the field; so is a prompt file whose first prompts changed.
#[test]
fn resume_refuses_a_different_run() {
    let d = dir("mismatch");
    let prompts = prompt_file(&d, 20);
    let out = d.join("out");
    assert!(profile_cmd(&prompts, &out, &[]).output().unwrap().status.success());
    let o = profile_cmd(&prompts, &out, &["--resume", "--epsilon", "0.5"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("manifest.json") && err.contains("'options'") && err.contains("cannot resume"),
        "{err}"
    );
    assert!(!err.contains("panicked at"));

    let text = std::fs::read_to_string(&prompts).unwrap().replacen("\"p0\"", "\"renamed\"", 1);
    std::fs::write(&prompts, text).unwrap();
    let o = profile_cmd(&prompts, &out, &["--resume"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    // The prompt file's sha256 is part of the run's identity: a changed file is refused by
    // the manifest check, naming the field.
    assert!(err.contains("manifest.json") && err.contains("'data.sha256'"), "{err}");
}

/// lens: SIGKILL midway, a torn last line, --resume: the same metrics.json and prompts.jsonl
/// as an uninterrupted run; resuming the finished run changes nothing.
#[test]
fn killed_lens_resumes_to_the_same_result() {
    let d = dir("lens");
    let n = 400;
    let prompts = prompt_file(&d, n);
    let full = d.join("full");
    let o = cmd("lens", &prompts, &full, &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let out = d.join("killed");
    let lines = out.join("prompts.jsonl");
    let done = kill_after(cmd("lens", &prompts, &out, &[]), &lines, 40);
    assert!(done < n, "the run finished before the kill ({done} lines)");
    assert!(!out.join("metrics.json").exists());
    assert_eq!(manifest(&out)["status"], "running");

    let o = cmd("lens", &prompts, &out, &["--resume"]).output().unwrap();
    assert!(o.status.success(), "resume failed: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(complete_lines(&lines), n);
    assert_same_files(&full, &out, &["metrics.json", "prompts.jsonl"]);
    let m = manifest(&out);
    assert_eq!((m["status"].as_str(), m["n_prompts"].as_u64()), (Some("complete"), Some(n as u64)));

    let o = cmd("lens", &prompts, &out, &["--resume"]).output().unwrap();
    assert!(o.status.success());
    assert_same_files(&full, &out, &["metrics.json", "prompts.jsonl"]);
}

/// lens: a resume with other options (--max-tokens) is refused with exit 3 naming the
/// manifest; so is a prompt file whose first prompt changed.
#[test]
fn lens_resume_refuses_a_different_run() {
    let d = dir("lens-mismatch");
    let prompts = prompt_file(&d, 10);
    let out = d.join("out");
    assert!(cmd("lens", &prompts, &out, &[]).output().unwrap().status.success());
    let o = cmd("lens", &prompts, &out, &["--resume", "--max-tokens", "8"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("manifest.json") && err.contains("cannot resume") && err.contains("differs"),
        "{err}"
    );
    assert!(!err.contains("panicked at"));

    let text = std::fs::read_to_string(&prompts).unwrap().replacen("\"p0\"", "\"renamed\"", 1);
    std::fs::write(&prompts, text).unwrap();
    let o = cmd("lens", &prompts, &out, &["--resume"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    // The prompt file's sha256 is part of the run's identity: a changed file is refused by
    // the manifest check, naming the field.
    assert!(err.contains("manifest.json") && err.contains("'data.sha256'"), "{err}");
}

const ABLATE: [&str; 4] = ["--layers", "2", "--scales", "1,0"];

/// ablate: killed during its second sub-run (`scale_0`); --resume skips the finished baseline
/// (its files are left untouched, timings included), resumes `scale_0` past its torn line, and
/// ends with the same ablate.json and sub-run results as an uninterrupted study.
#[test]
fn killed_ablate_resumes_to_the_same_result() {
    let d = dir("ablate");
    let n = 300;
    let prompts = prompt_file(&d, n);
    let full = d.join("full");
    let o = cmd("ablate", &prompts, &full, &ABLATE).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let out = d.join("killed");
    let lines = out.join("scale_0/prompts.jsonl");
    let done = kill_after(cmd("ablate", &prompts, &out, &ABLATE), &lines, 30);
    assert!(done < n, "the sub-run finished before the kill ({done} lines)");
    assert_eq!(manifest(&out.join("baseline"))["status"], "complete");
    assert!(!out.join("ablate.json").exists());
    let baseline_manifest = std::fs::read(out.join("baseline/manifest.json")).unwrap();

    let resume: Vec<&str> = ABLATE.iter().copied().chain(["--resume"]).collect();
    let o = cmd("ablate", &prompts, &out, &resume).output().unwrap();
    assert!(o.status.success(), "resume failed: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(out.join("baseline/manifest.json")).unwrap(),
        baseline_manifest,
        "the finished baseline was run again"
    );
    assert_eq!(complete_lines(&lines), n);
    assert_same_files(
        &full,
        &out,
        &[
            "ablate.json",
            "baseline/metrics.json",
            "baseline/prompts.jsonl",
            "scale_0/metrics.json",
            "scale_0/prompts.jsonl",
        ],
    );
    assert_eq!(manifest(&out.join("scale_0"))["status"], "complete");

    // Another --epsilon is another study: refused, naming the sub-run's manifest.
    let other: Vec<&str> = resume.iter().copied().chain(["--epsilon", "0.5"]).collect();
    let o = cmd("ablate", &prompts, &out, &other).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("baseline") && err.contains("manifest.json") && err.contains("'options'"), "{err}");
}
