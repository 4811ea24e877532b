//! The new families end to end through the binary.
//!
//! - Gemma-3 270M (the second real model, `sinkscope fetch gemma3`): `inspect` shows the
//!   per-layer attention type, window and RoPE base (the GGUF does not store them: every 6th
//!   layer global, local base 10,000); `run` captures the rotated queries and the scores;
//!   `profile` records the resolved per-layer spec in its manifest; `lens` runs; `ablate
//!   --layers auto` detects block 1 and its report says that later blocks rebuild the
//!   first-token ratio (the multi-stage case of the paper's appendix: with block 1 zeroed at
//!   position 0 the valley stays, the ratio peaks again at layer 7).
//! - GPT-OSS fixture: `profile` reports the mass the learned sinks take (`learned_sink_mass`,
//!   the pattern rows sum to one minus it) and `run` captures the sink mass and the router.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("families_e2e").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sinkscope(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sinkscope")).args(args).current_dir(root()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sinkscope {args:?} failed ({:?}): {stderr}", out.status.code());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn gemma3() -> String {
    let p = root().join("models/gemma-3-270m-q4_k_m.gguf");
    assert!(p.exists(), "{} is missing: run `sinkscope fetch gemma3` (scripts/test.sh does)", p.display());
    p.to_str().unwrap().to_string()
}

#[test]
fn gemma3_inspect_run_profile_lens_ablate() {
    let model = gemma3();
    let dir = tmp("gemma3");
    let inspect = sinkscope(&["inspect", &model]);
    assert!(inspect.contains("layers 0-4      local, window 512, RoPE base 10000"), "{inspect}");
    assert!(inspect.contains("layers 5        global, RoPE base 1000000"), "{inspect}");
    assert!(inspect.contains("Sandwich placement") && inspect.contains("QK-norm PerHead"), "{inspect}");

    // The first two reference prompts.
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/reference/gemma3/prompts_a.jsonl")).unwrap();
    let prompts = dir.join("prompts.jsonl");
    std::fs::write(&prompts, text.lines().take(2).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let p = prompts.to_str().unwrap();

    let run = dir.join("run");
    sinkscope(&[
        "run",
        &model,
        "--prompts",
        p,
        "--capture",
        "blocks.5.attn.hook_rot_q,blocks.5.attn.hook_attn_scores,blocks.*.ln2_post.hook_normalized",
        "--out",
        run.to_str().unwrap(),
    ]);
    let manifest = json(&run.join("manifest.json"));
    assert_eq!(manifest["model"]["config"]["family"], "gemma3");

    let prof = dir.join("profile");
    sinkscope(&[
        "profile",
        &model,
        "--prompts",
        p,
        "--quiet",
        "--no-report",
        "--out",
        prof.to_str().unwrap(),
    ]);
    let layers = json(&prof.join("manifest.json"))["model"]["config"]["layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), 18);
    for (i, l) in layers.iter().enumerate() {
        let global = (i + 1) % 6 == 0;
        assert_eq!(l["sliding_window"].as_u64(), if global { None } else { Some(512) }, "layer {i}");
        assert_eq!(l["rope"]["theta"].as_f64(), if global { None } else { Some(10000.0) }, "layer {i}");
    }

    let lens = dir.join("lens");
    let out = sinkscope(&["lens", &model, "--prompts", p, "--quiet", "--out", lens.to_str().unwrap()]);
    assert!(out.trim_end().ends_with("report.html"), "{out}");

    let abl = dir.join("ablate");
    let out = sinkscope(&[
        "ablate",
        &model,
        "--prompts",
        p,
        "--scales",
        "0",
        "--quiet",
        "--out",
        abl.to_str().unwrap(),
    ]);
    assert!(out.contains("ablated blocks [1]"), "{out}");
    let report = std::fs::read_to_string(abl.join("report.html")).unwrap();
    assert!(report.contains("A multi-stage model"), "the report names the rebuilt stage");
    assert!(report.contains("rebuild the first-token ratio"));
}

#[test]
fn gpt_oss_profile_reports_the_learned_sink_mass() {
    let model = root().join("tests/fixtures/models/gpt_oss");
    let m = model.to_str().unwrap();
    let dir = tmp("gpt_oss");
    let prompts = dir.join("p.txt");
    std::fs::write(&prompts, "The quiet river carried small boats past the old mill.\ndef add(a, b):\n")
        .unwrap();
    let p = prompts.to_str().unwrap();
    let prof = dir.join("profile");
    sinkscope(&["profile", m, "--prompts", p, "--quiet", "--no-report", "--out", prof.to_str().unwrap()]);
    let metrics = json(&prof.join("metrics.json"));
    let mass: Vec<Option<f64>> = metrics["metrics"]["learned_sink_mass"]["mean"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::as_f64)
        .collect();
    assert_eq!(mass.len(), 4);
    assert_eq!(mass[0], None, "no attention at l = 0");
    assert!(mass[1..].iter().all(|m| m.is_some_and(|v| v > 0.0 && v < 1.0)), "{mass:?}");

    let run = dir.join("run");
    sinkscope(&[
        "run",
        m,
        "--prompts",
        p,
        "--capture",
        "blocks.*.attn.hook_sink_prob,blocks.*.mlp.hook_router_indices",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(run.join("manifest.json").exists());
}
