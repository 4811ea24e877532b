//! Layer streaming (`--stream-layers`) writes the same bytes as the in-memory mode.
//!
//! For fixture models of several families and formats (safetensors F32, GGUF F32, Q8_0 and a
//! Q4_0 quantised GGUF; sequential, parallel, sandwich-norm, MoE and Conv1D blocks) and the demo
//! model SmolLM2 (Q4_1): `profile` (several passes per chunk: `--pack-tokens 16`), `run` with
//! `--capture` and an `--edit`, `lens`, and `ablate` on one fixture, each in both modes; every
//! output file must be byte-identical, the manifest too once its timings, execution and
//! memory blocks (how the run was executed) and the command line are removed. Also: a
//! resident run resumed streamed ends with the bytes of an uninterrupted run, and the memory
//! guard streams on its own when the model as stored does not fit but streamed it does (a
//! note on stderr, recorded in `execution.stream_layers`), and refuses (exit 6) what does not
//! fit even streamed. No tolerance anywhere: equality of bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stream_layers").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn prompts(d: &Path) -> PathBuf {
    let p = d.join("prompts.jsonl");
    let texts = [
        "The quiet river carried small boats past the old mill, and the children watched them from the bridge.",
        "def add(a, b):\n    return a + b  # sum of two numbers",
        "In 1969 the first humans walked on the Moon; Apollo 11 returned after eight days.",
        "Seven plus five is twelve.",
        "She packed a map, two apples and a torch before the long walk north.",
    ];
    let lines: String = texts
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": format!("p{i}"), "text": t}).to_string() + "\n")
        .collect();
    std::fs::write(&p, lines).unwrap();
    p
}

fn sinkscope(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sinkscope"));
    cmd.args(args).env_remove("SINKSCOPE_AVAILABLE_MEMORY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[track_caller]
fn ok(args: &[&str]) -> Output {
    let out = sinkscope(args, &[]);
    assert!(out.status.success(), "{args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[track_caller]
fn ok_owned(args: &[String]) -> Output {
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The manifest without how the run was executed.
fn stable_manifest(path: &Path) -> serde_json::Value {
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let o = m.as_object_mut().unwrap();
    for k in ["timings", "execution", "memory"] {
        o.remove(k);
    }
    if let Some(t) = o.get_mut("tool").and_then(|t| t.as_object_mut()) {
        t.remove("command_line");
    }
    m
}

/// Every file under `a` and `b` (relative paths, sorted).
fn files(a: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(a, a, &mut out);
    out.sort();
    out
}

/// A `run` folder's manifest parses into `ActivationManifest`, which serialises back (keys
/// sorted, as the writer does) to the same bytes.
fn manifest_roundtrips(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let typed: sinkscope_report::schema::ActivationManifest =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(typed.kind, "run");
    let back = serde_json::to_string_pretty(&serde_json::to_value(&typed).unwrap()).unwrap();
    assert_eq!(back, text, "{} does not round-trip through ActivationManifest", path.display());
}

/// Both folders hold the same files with the same bytes (manifests: but for execution).
#[track_caller]
fn same_run(a: &Path, b: &Path) {
    let (fa, fb) = (files(a), files(b));
    assert_eq!(fa, fb, "different files in {} and {}", a.display(), b.display());
    assert!(fa.len() >= 2, "{}: nothing written", a.display());
    for f in fa {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name == "manifest.json" {
            assert_eq!(stable_manifest(&a.join(&f)), stable_manifest(&b.join(&f)), "{}", f.display());
            let m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(b.join(&f)).unwrap()).unwrap();
            if m["kind"] == "run" {
                // An activation dump's manifest is exactly its schema type.
                for dir in [a, b] {
                    manifest_roundtrips(&dir.join(&f));
                }
            }
            if m.get("merged_from").is_none() && m["kind"] != "ablate" {
                assert_eq!(m["execution"]["stream_layers"]["enabled"], true, "{}", b.join(&f).display());
            }
        } else if name.starts_with('.') || name.ends_with(".lock") {
            continue;
        } else {
            let (x, y) = (std::fs::read(a.join(&f)).unwrap(), std::fs::read(b.join(&f)).unwrap());
            assert!(x == y, "{} differs between the in-memory and the streamed run", a.join(&f).display());
        }
    }
}

/// `cmd MODEL ARGS --out d/<tag>-{mem,stream}` in both modes, compared.
fn both(d: &Path, tag: &str, cmd: &str, model: &Path, args: &[&str]) {
    let runs = ["mem", "stream"].map(|mode| {
        let out = d.join(format!("{tag}-{mode}"));
        let mut a: Vec<&str> = vec![cmd, model.to_str().unwrap()];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--out", out.to_str().unwrap()]);
        if mode == "stream" {
            a.push("--stream-layers");
        }
        ok(&a);
        out
    });
    same_run(&runs[0], &runs[1]);
}

fn profile_and_run(d: &Path, tag: &str, model: &Path, edit: &str) {
    let p = prompts(d);
    let p = p.to_str().unwrap();
    both(
        d,
        &format!("{tag}-profile"),
        "profile",
        model,
        &["--prompts", p, "--no-report", "--quiet", "--pack-tokens", "16"],
    );
    let capture = "hook_embed,blocks.*.hook_resid_post,blocks.*.attn.hook_pattern,blocks.*.hook_mlp_out,ln_final.hook_normalized,logits";
    both(d, &format!("{tag}-run"), "run", model, &["--prompts", p, "--capture", capture, "--edit", edit]);
}

/// Fixture families in every stored layout the loader has (mapped F32 safetensors and GGUF,
/// Q8_0 and Q4_0 rows, Conv1D weights read as f32): profile and run (capture + edit).
#[test]
fn fixtures_profile_and_run_are_byte_identical_streamed() {
    let fx = root().join("tests/fixtures");
    let models = [
        ("llama_hf", fx.join("models/llama")),
        ("llama_q4_0", fx.join("gguf/llama/llama-q4_0.gguf")),
        ("gemma2_q8_0", fx.join("gguf/gemma2/gemma2-q8_0.gguf")),
        ("gpt_neox_hf", fx.join("models/gpt_neox")),
        ("gpt_oss_q8_0", fx.join("gguf/gpt_oss/gpt_oss-q8_0.gguf")),
        ("bloom_f32", fx.join("gguf/bloom/bloom-f32.gguf")),
        ("gpt2_hf", fx.join("models/gpt2")),
        ("qwen3_hf", fx.join("models/qwen3")),
    ];
    let d = dir("fixtures");
    for (tag, m) in models {
        profile_and_run(&d, tag, &m, "blocks.1.hook_mlp_out:pos=0:zero");
    }
}

/// The demo model (Q4_1 GGUF, 30 blocks): profile, run with an edit, and lens.
#[test]
fn smollm2_profile_run_and_lens_are_byte_identical_streamed() {
    let m = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(m.exists(), "{} is missing: run `sinkscope fetch smollm2` first", m.display());
    let d = dir("smollm2");
    profile_and_run(&d, "smollm2", &m, "blocks.3.hook_mlp_out:pos=0:scale=0.5");
    let p = prompts(&d);
    both(&d, "smollm2-lens", "lens", &m, &["--prompts", p.to_str().unwrap(), "--no-report", "--quiet"]);
}

/// `lens`, `ablate` (its baseline and scaled sub-runs) and `run` with a `mean_prompts` edit
/// (its first pass) on a fixture.
#[test]
fn lens_and_ablate_are_byte_identical_streamed() {
    let m = root().join("tests/fixtures/gguf/llama/llama-q8_0.gguf");
    let d = dir("lens_ablate");
    let p = prompts(&d);
    let p = p.to_str().unwrap();
    both(&d, "lens", "lens", &m, &["--prompts", p, "--no-report", "--quiet"]);
    both(
        &d,
        "ablate",
        "ablate",
        &m,
        &["--prompts", p, "--no-report", "--quiet", "--layers", "1,2", "--scales", "1,0"],
    ); // Sun et al.'s mean-ablation: a first pass over the prompts measures the means.
    let edit = "blocks.1.hook_resid_post:pos=0:dim=0..4:mean_prompts";
    both(
        &d,
        "run-mean",
        "run",
        &m,
        &["--prompts", p, "--capture", "blocks.*.hook_resid_post", "--edit", edit],
    );
    let m: sinkscope_report::schema::ActivationManifest =
        serde_json::from_str(&std::fs::read_to_string(d.join("run-mean-mem/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m.reference_means.len(), 1);
    assert_eq!(m.reference_means[0].site, "blocks.1.hook_resid_post");
    assert_eq!(m.reference_means[0].positions, [0]);
    assert_eq!(m.reference_means[0].dims, [0, 1, 2, 3]);
}

/// A resident run cut after two prompts and resumed with `--stream-layers` ends with the bytes
/// of an uninterrupted run.
#[test]
fn a_resident_run_resumed_streamed_is_identical() {
    let m = root().join("tests/fixtures/gguf/gemma2/gemma2-q8_0.gguf");
    let d = dir("resume");
    let p = prompts(&d);
    let (full, cut) = (d.join("full"), d.join("cut"));
    let args = |out: &Path| {
        vec![
            "profile".to_string(),
            m.to_str().unwrap().into(),
            "--prompts".into(),
            p.to_str().unwrap().into(),
            "--no-report".into(),
            "--quiet".into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]
    };
    ok_owned(&args(&full));
    ok_owned(&args(&cut));
    let lines = std::fs::read_to_string(cut.join("prompts.jsonl")).unwrap();
    let kept: String = lines.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(cut.join("prompts.jsonl"), kept).unwrap();
    std::fs::remove_file(cut.join("metrics.json")).unwrap();
    let mut a = args(&cut);
    a.extend(["--resume".to_string(), "--stream-layers".to_string()]);
    let out = ok_owned(&a);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("error"), "{err}");
    for f in ["prompts.jsonl", "metrics.json"] {
        assert_eq!(std::fs::read(full.join(f)).unwrap(), std::fs::read(cut.join(f)).unwrap(), "{f}");
    }
}

/// With the memory available between the streamed and the resident estimates, the guard
/// streams on its own (a note on stderr, `execution.stream_layers.chosen_by`), with the same
/// bytes; below the streamed estimate it refuses with exit code 6, naming streaming.
#[test]
fn the_guard_streams_when_only_streaming_fits_and_refuses_below() {
    let m = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(m.exists(), "{} is missing: run `sinkscope fetch smollm2` first", m.display());
    let d = dir("auto");
    let p = prompts(&d);
    let p = p.to_str().unwrap();
    let base = |out: &Path| -> Vec<String> {
        [
            "profile",
            m.to_str().unwrap(),
            "--prompts",
            p,
            "--no-report",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let (mem, stream, auto, refused) = (d.join("mem"), d.join("stream"), d.join("auto"), d.join("refused"));
    ok_owned(&base(&mem));
    let mut s = base(&stream);
    s.push("--stream-layers".into());
    ok_owned(&s);
    let estimate = |dir: &Path| -> u64 {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
        m["memory"]["estimate_bytes"].as_u64().unwrap()
    };
    let (resident, streamed) = (estimate(&mem), estimate(&stream));
    assert!(streamed * 2 < resident, "streamed {streamed} vs resident {resident}");
    let between = ((resident + streamed) / 2).to_string();
    let a = base(&auto);
    let out = sinkscope(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &[("SINKSCOPE_AVAILABLE_MEMORY", &between)],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("does not fit") && err.contains("streaming its layers"), "{err}");
    same_run(&mem, &auto);
    let man: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(auto.join("manifest.json")).unwrap()).unwrap();
    assert!(man["execution"]["stream_layers"]["chosen_by"].as_str().unwrap().contains("memory guard"));
    let below = (streamed / 2).to_string();
    let a = base(&refused);
    let out = sinkscope(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &[("SINKSCOPE_AVAILABLE_MEMORY", &below)],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains("streaming layers"), "{err}");
}
