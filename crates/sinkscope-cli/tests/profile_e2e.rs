//! End-to-end `sinkscope profile` through the real binary, on the fixture Llama (HF folder,
//! 3 blocks, 4 heads, context 128) and on the demo model SmolLM2-135M-Instruct (GGUF Q4_1).
//!
//! Invariants checked: the run folder holds manifest.json, metrics.json, prompts.jsonl (one
//! line per prompt), layers.csv and report.html, all parse; every per-layer array has L + 1
//! entries with `null` at entry 0 for attention/MLP metrics; `summary.bound_violations` is 0
//! (Theorem 1 is never violated); the last stdout line is the path of report.html; input errors
//! (too short, too long) exit with code 3 and name the prompt; `--max-tokens` and `--truncate`
//! cut prompts as documented.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn case_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("profile_e2e").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn sinkscope(args: &[&str]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_sinkscope")).args(args).current_dir(root()).output().unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const BLOCK_METRICS: [&str; 11] = [
    "sink_rate",
    "sink_rate_excl_q0",
    "mixing_score",
    "bos_attention",
    "bos_attention_excl",
    "identity_score",
    "prev_token_score",
    "learned_sink_mass",
    "mlp_bos_norm",
    "mlp_other_median",
    "mlp_ratio",
];

const LAYER_METRICS: [&str; 24] = [
    "bos_norm",
    "token_norm_mean",
    "bos_ratio",
    "M",
    "R",
    "c",
    "alpha",
    "median_abs_activation",
    "massive",
    "entropy",
    "entropy_norm",
    "entropy_norm_logT",
    "renyi_entropy_2",
    "effective_rank",
    "anisotropy",
    "dominance",
    "sigma1_sq",
    "sigma1_sq_bound",
    "anisotropy_bound",
    "entropy_bound",
    "dominance_bound",
    "sigma1_sq_tightness",
    "anisotropy_tightness",
    "entropy_tightness",
];

/// Checks a finished run folder; returns (manifest, metrics, records).
fn check_run(dir: &Path, n_layers: usize, n_heads: usize, n_prompts: usize) -> (Value, Value, Vec<Value>) {
    let n = n_layers + 1;
    for f in ["manifest.json", "metrics.json", "prompts.jsonl", "layers.csv", "report.html"] {
        assert!(dir.join(f).is_file(), "{} is missing", dir.join(f).display());
    }
    let manifest = read_json(&dir.join("manifest.json"));
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["kind"], "profile");
    assert_eq!(manifest["n_prompts"].as_u64(), Some(n_prompts as u64));
    for k in ["epsilon", "tau", "mixing_threshold", "top_k", "bos", "max_tokens", "truncate"] {
        assert!(manifest["options"].get(k).is_some(), "manifest options lack {k}");
    }
    for k in ["load_s", "run_s", "tokens_per_s", "peak_rss_mib"] {
        assert!(manifest["timings"][k].is_number(), "manifest timings lack {k}");
    }
    assert!(manifest["model"]["sha256"].as_str().is_some_and(|s| s.len() == 64));
    assert!(manifest["conventions"]["entropy_norm"].is_string());
    assert!(manifest["first_token"]["is_bos"].is_boolean());

    let metrics = read_json(&dir.join("metrics.json"));
    assert_eq!(metrics["schema_version"], 1);
    assert_eq!(metrics["n_layers"].as_u64(), Some(n_layers as u64));
    assert_eq!(metrics["summary"]["bound_violations"].as_u64(), Some(0), "Theorem-1 bound violations");
    for name in LAYER_METRICS.iter().chain(&BLOCK_METRICS) {
        let m = &metrics["metrics"][name];
        for stat in ["mean", "std", "min", "max"] {
            let a = m[stat].as_array().unwrap_or_else(|| panic!("metrics.{name}.{stat} missing"));
            assert_eq!(a.len(), n, "metrics.{name}.{stat}: L + 1 entries");
        }
        if BLOCK_METRICS.contains(name) {
            assert!(m["mean"][0].is_null(), "metrics.{name}.mean[0] must be null");
            assert!(m["mean"][1].is_number(), "metrics.{name}.mean[1] must be a number");
        } else if *name != "dominance_bound" && *name != "dominance_tightness" {
            assert!(m["mean"][0].is_number(), "metrics.{name}.mean[0] must be a number");
        }
    }
    let bos = metrics["heads"]["bos_attention"].as_array().unwrap();
    assert_eq!(bos.len(), n);
    assert!(bos[0].is_null());
    assert!(bos[1..].iter().all(|row| row.as_array().is_some_and(|r| r.len() == n_heads)));
    let counts = metrics["heads"]["head_class_counts"].as_array().unwrap();
    assert!(counts[0].is_null());
    for c in &counts[1..] {
        let total: u64 = c.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(total, n_heads as u64, "head classes partition the heads");
    }
    assert_eq!(metrics["top_activations"].as_array().unwrap().len(), n);
    let s = &metrics["summary"];
    for k in [
        "massive_layers",
        "phases",
        "corr_bos_entropy",
        "corr_bos_sink",
        "peak_bos_ratio",
        "min_entropy_norm",
    ] {
        assert!(s.get(k).is_some(), "summary lacks {k}");
    }

    let text = std::fs::read_to_string(dir.join("prompts.jsonl")).unwrap();
    let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), n_prompts);
    for r in &records {
        assert_eq!(r["bound_violations"], 0);
        let t = r["n_tokens"].as_u64().unwrap() as usize;
        assert_eq!(r["token_ids"].as_array().unwrap().len(), t);
        for name in LAYER_METRICS.iter().chain(&BLOCK_METRICS) {
            let a = r["metrics"][name].as_array().unwrap_or_else(|| panic!("record lacks {name}"));
            assert_eq!(a.len(), n, "{}: {name} has L + 1 entries", r["id"]);
        }
        for name in BLOCK_METRICS {
            assert!(r["metrics"][name][0].is_null(), "{}: {name}[0] must be null", r["id"]);
        }
        assert!(r["heads"]["bos_attention"][0].is_null());
        assert_eq!(r["heads"]["bos_attention"][n_layers].as_array().unwrap().len(), n_heads);
    }
    (manifest, metrics, records)
}

fn write_prompts(dir: &Path, lines: &[(&str, &str)]) -> PathBuf {
    let p = dir.join("prompts.jsonl");
    let text: String =
        lines.iter().map(|(id, t)| format!("{}\n", serde_json::json!({"id": id, "text": t}))).collect();
    std::fs::write(&p, text).unwrap();
    p
}

/// The fixture Llama: every file written and consistent, the report's path printed last.
#[test]
fn profile_fixture_llama() {
    let dir = case_dir("llama");
    let prompts = write_prompts(
        &dir,
        &[
            ("a", "The quiet river carried small boats past the old mill."),
            ("b", "A farmer counted twelve sheep and four cows in the field."),
            ("c", "Rain fell on the city all night."),
        ],
    );
    let out = dir.join("run");
    let model = root().join("tests/fixtures/models/llama");
    let o = sinkscope(&[
        "profile",
        model.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "stderr: {}", o.stderr);
    assert_eq!(o.stdout.lines().last(), Some(out.join("report.html").to_str().unwrap()));
    assert!(o.stderr.is_empty() || !o.stderr.contains('\r'), "--quiet draws no progress bar");
    let (manifest, _, records) = check_run(&out, 3, 4, 3);
    assert_eq!(manifest["data"]["source"], "file");
    assert_eq!(records[0]["id"], "a");
}

/// Length rules: T < 2 and T > context are input errors (exit 3) naming the prompt;
/// `--truncate` cuts at the context; `--max-tokens` caps every prompt.
#[test]
fn profile_length_rules() {
    let dir = case_dir("lengths");
    let model = root().join("tests/fixtures/models/llama");
    let model = model.to_str().unwrap();
    let long = "the river and the mill and the boats ".repeat(40); // far above 128 tokens
    let short = write_prompts(&dir, &[("ok", "Rain fell on the city all night."), ("tiny", "a")]);
    let out = dir.join("short");
    // The fixture tokenizer prepends a BOS by default; without it "a" is a single token.
    let o = sinkscope(&[
        "profile",
        model,
        "--prompts",
        short.to_str().unwrap(),
        "--bos",
        "never",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 3, "stderr: {}", o.stderr);
    assert!(o.stderr.contains("'tiny'") && o.stderr.contains("at least 2"), "{}", o.stderr);

    let longp = write_prompts(&dir, &[("long", &long)]);
    let lp = longp.to_str().unwrap();
    let out = dir.join("long");
    let o = sinkscope(&[
        "profile",
        model,
        "--prompts",
        lp,
        "--quiet",
        "--no-report",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 3, "stderr: {}", o.stderr);
    assert!(o.stderr.contains("'long'") && o.stderr.contains("context length 128"), "{}", o.stderr);

    let o = sinkscope(&[
        "profile",
        model,
        "--prompts",
        lp,
        "--truncate",
        "--quiet",
        "--no-report",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "stderr: {}", o.stderr);
    let rec: Value =
        serde_json::from_str(std::fs::read_to_string(out.join("prompts.jsonl")).unwrap().trim()).unwrap();
    assert_eq!(rec["n_tokens"], 128);
    assert_eq!(rec["truncated"], true);
    assert!(rec["n_tokens_original"].as_u64().unwrap() > 128);

    let o = sinkscope(&[
        "profile",
        model,
        "--prompts",
        lp,
        "--max-tokens",
        "16",
        "--quiet",
        "--no-report",
        // The folder holds the --truncate run: replacing it takes --force (RELIABILITY.md).
        "--force",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "stderr: {}", o.stderr);
    let rec: Value =
        serde_json::from_str(std::fs::read_to_string(out.join("prompts.jsonl")).unwrap().trim()).unwrap();
    assert_eq!(rec["n_tokens"], 16);
    assert_eq!(read_json(&out.join("manifest.json"))["options"]["max_tokens"], 16);

    let o = sinkscope(&[
        "profile",
        model,
        "--prompts",
        lp,
        "--max-tokens",
        "1",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 2, "stderr: {}", o.stderr);
    let o =
        sinkscope(&["profile", model, "--dataset", "no-such-set", "--quiet", "--out", out.to_str().unwrap()]);
    assert_eq!(o.code, 2, "stderr: {}", o.stderr);
    assert!(o.stderr.contains("gsm8k-like"), "{}", o.stderr);
}

/// The demo model on the 8 reference prompts: the files are complete, bound violations 0,
/// and the massive activation is found where the independent reference puts it (block 12:
/// bos_ratio peaks at layer 12, reference max 164).
#[test]
fn profile_smollm2_reference_prompts() {
    let model = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.exists(),
        "{} is missing: run `cargo run -p sinkscope-cli -- fetch smollm2` (scripts/test.sh does) first",
        model.display()
    );
    let dir = case_dir("smollm2");
    let out = dir.join("run");
    let prompts = root().join("tests/fixtures/reference/smollm2/prompts_a.jsonl");
    let o = sinkscope(&[
        "profile",
        model.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "stderr: {}", o.stderr);
    assert_eq!(o.stdout.lines().last(), Some(out.join("report.html").to_str().unwrap()));
    let (manifest, metrics, _) = check_run(&out, 30, 9, 8);
    assert_eq!(manifest["first_token"]["is_bos"], false, "SmolLM2's GGUF adds no BOS");
    let s = &metrics["summary"];
    assert_eq!(s["peak_bos_ratio"]["layer"], 12);
    let v = s["peak_bos_ratio"]["value"].as_f64().unwrap();
    assert!((v - 164.2778269212582).abs() / 164.28 < 1e-3, "peak bos_ratio {v} vs reference 164.28");
    let blocks: Vec<u64> =
        s["massive_layers"].as_array().unwrap().iter().map(|m| m["block"].as_u64().unwrap()).collect();
    assert!(blocks.contains(&12), "massive layers {blocks:?} should include block 12");
}
