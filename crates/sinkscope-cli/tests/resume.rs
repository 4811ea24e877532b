//! Kill and resume: a `profile` run is SIGKILLed midway (after some prompts.jsonl lines have
//! been flushed), a torn half-line is left at the end of prompts.jsonl as a crash mid-write
//! would, and `--resume` finishes the run. Its metrics.json and prompts.jsonl must equal an
//! uninterrupted run's byte for byte (metrics.json holds no timings). A resume with other
//! options is refused, naming the field.
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
    let mut c = Command::new(env!("CARGO_BIN_EXE_sinkscope"));
    c.arg("profile")
        .arg(fixture_model())
        .arg("--prompts")
        .arg(prompts)
        .arg("--out")
        .arg(out)
        .args(["--no-report", "--quiet", "--threads", "1"])
        .args(extra)
        .env_remove("SINKSCOPE_AVAILABLE_MEMORY");
    c
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
    assert!(err.contains("prompts.jsonl") && err.contains("line 1") && err.contains("'p0'"), "{err}");
}
