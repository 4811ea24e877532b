//! `sinkscope sweep` with the local executor on a synthetic 3-step checkpoint series (the tiny
//! llama fixture with its planted massive activation scaled per step, `support/checkpoints.rs`):
//! every merged run equals an unsharded `profile` of that checkpoint byte for byte; the
//! trajectory report finds the planted activation growing with the step and first detected at
//! the step where the plant is at full strength; a task interrupted mid-way (its prompts.jsonl
//! cut, a torn last line, status running) is resumed by running the sweep again, with the same
//! bytes; `--executor slurm --dry-run` prints one array script over every task.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/checkpoints.rs"]
mod checkpoints;
#[path = "support/compare.rs"]
mod compare;

use compare::assert_same_run;
use sinkscope_report::schema::{SweepFile, TrajectoryFile};
use std::path::{Path, PathBuf};
use std::process::Command;

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sweep").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sinkscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sinkscope"))
        .args(args)
        .env_remove("SINKSCOPE_AVAILABLE_MEMORY")
        .output()
        .unwrap()
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

const PROMPTS: &str = "{\"id\": \"a\", \"text\": \"the river carried small boats past the old mill\"}\n\
{\"id\": \"b\", \"text\": \"quiet children\"}\n\
{\"id\": \"c\", \"text\": \"the mill was old and the river was quiet\"}\n\
{\"id\": \"d\", \"text\": \"boats boats boats\"}\n\
{\"id\": \"e\", \"text\": \"small old quiet river past the mill\"}\n";

#[test]
fn local_sweep_merges_exactly_and_draws_the_trajectory() {
    let d = dir("local");
    let ckpts = checkpoints::write_series(&d.join("ckpt"));
    std::fs::write(d.join("prompts.jsonl"), PROMPTS).unwrap();
    let plan = d.join("plan.toml");
    std::fs::write(
        &plan,
        "name = \"synthetic\"\nout = \"out\"\ncommands = [\"profile\"]\nshards = 2\nbos = \"always\"\n\
         [[models]]\npath = \"ckpt/step*\"\n[[data]]\nprompts = \"prompts.jsonl\"\nlabel = \"p\"\n",
    )
    .unwrap();
    let plan_s = plan.to_str().unwrap();

    // The task list is stable and named after model, data, command and shard.
    let listed = ok(&sinkscope(&["sweep", plan_s, "--dry-run"]));
    let ids: Vec<&str> = listed.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "ckpt-step10.p.profile.0of2",
            "ckpt-step10.p.profile.1of2",
            "ckpt-step100.p.profile.0of2",
            "ckpt-step100.p.profile.1of2",
            "ckpt-step1000.p.profile.0of2",
            "ckpt-step1000.p.profile.1of2"
        ]
    );
    // The Slurm script covers every task in one array, with a memory request.
    let script = ok(&sinkscope(&["sweep", plan_s, "--executor", "slurm", "--dry-run"]));
    assert!(script.starts_with("#!/bin/bash\n") && script.contains("#SBATCH --array=0-5\n"), "{script}");
    assert!(script.contains("#SBATCH --mem=") && script.contains("--run-task \"$TASK\""), "{script}");

    ok(&sinkscope(&["sweep", plan_s, "--jobs", "2"]));
    let out = d.join("out");
    for (ckpt, (step, _)) in ckpts.iter().zip(checkpoints::SERIES) {
        let full = d.join(format!("full{step}"));
        ok(&sinkscope(&[
            "profile",
            ckpt.to_str().unwrap(),
            "--prompts",
            d.join("prompts.jsonl").to_str().unwrap(),
            "--bos",
            "always",
            "--quiet",
            "--out",
            full.to_str().unwrap(),
        ]));
        assert_same_run(&full, &out.join("runs").join(format!("ckpt-step{step}.p.profile")));
    }

    // The trajectory: one row per step, the planted activation grows with the step and is
    // detected (metrics.md rule) only at full strength, by the block the fixture plants it in
    // (HF layer 1's MLP = block 2).
    let tdir = out.join("trajectory").join("ckpt.p");
    for f in [
        "trajectory.html",
        "trajectory.csv",
        "trajectory.json",
        "plots/trajectory.svg",
        "plots/trajectory.png",
    ] {
        assert!(tdir.join(f).is_file(), "{f} missing");
    }
    compare::roundtrip::<SweepFile>(&out.join("sweep.json"));
    compare::roundtrip::<TrajectoryFile>(&tdir.join("trajectory.json"));
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tdir.join("trajectory.json")).unwrap()).unwrap();
    let steps: Vec<u64> =
        t["steps"].as_array().unwrap().iter().map(|s| s["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [10, 100, 1000]);
    let peak: Vec<f64> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["peak_bos_ratio"]["value"].as_f64().unwrap())
        .collect();
    assert!(peak[0] <= peak[1] && peak[1] < peak[2], "peak bos_ratio does not grow with the step: {peak:?}");
    // At the planted block's output (layer 2) the first-token ratio grows strictly.
    let at2: Vec<f64> = checkpoints::SERIES
        .iter()
        .map(|(step, _)| {
            let m = compare::manifest(&out.join("runs").join(format!("ckpt-step{step}.p.profile")));
            assert_eq!(m["kind"], "profile");
            let metrics: serde_json::Value = serde_json::from_slice(
                &std::fs::read(out.join("runs").join(format!("ckpt-step{step}.p.profile/metrics.json")))
                    .unwrap(),
            )
            .unwrap();
            metrics["metrics"]["bos_ratio"]["mean"][2].as_f64().unwrap()
        })
        .collect();
    assert!(at2[0] < at2[1] && at2[1] < at2[2], "bos_ratio at layer 2 does not grow with the step: {at2:?}");
    assert_eq!(t["crossings"]["massive_activation"], 1000, "{t}");
    assert_eq!(t["steps"][2]["massive_blocks"], serde_json::json!([2]), "{t}");
    assert_eq!(t["steps"][0]["massive_blocks"], serde_json::json!([]), "{t}");
    let csv = std::fs::read_to_string(tdir.join("trajectory.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);

    // Nothing left to submit once every task is complete.
    let script = ok(&sinkscope(&["sweep", plan_s, "--executor", "slurm", "--dry-run"]));
    assert!(script.contains("nothing to submit"), "{script}");

    // A task killed mid-way: resumed by the next sweep, same bytes.
    let merged = out.join("runs").join("ckpt-step100.p.profile");
    let before = std::fs::read(merged.join("metrics.json")).unwrap();
    let task = out.join("tasks").join("ckpt-step100.p.profile.1of2");
    let lines = std::fs::read_to_string(task.join("prompts.jsonl")).unwrap();
    let first = lines.lines().next().unwrap();
    std::fs::write(task.join("prompts.jsonl"), format!("{first}\n{{\"id\": \"d")).unwrap();
    std::fs::remove_file(task.join("metrics.json")).unwrap();
    let mut m = compare::manifest(&task);
    m["status"] = "running".into();
    std::fs::write(task.join("manifest.json"), m.to_string()).unwrap();
    let o = sinkscope(&["sweep", plan_s]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    ok(&o);
    assert!(err.contains("1 to run, 5 already complete"), "{err}");
    let log =
        std::fs::read_to_string(out.join("logs").join("ckpt-step100.p.profile.1of2.log")).unwrap_or_default();
    assert_eq!(
        std::fs::read(merged.join("metrics.json")).unwrap(),
        before,
        "resumed sweep differs; log: {log}"
    );
    assert_eq!(compare::manifest(&task)["status"], "complete");
}

/// Bad sweep files are refused with exit 3 naming the file and the field.
#[test]
fn bad_sweep_files_are_refused() {
    let d = dir("bad");
    let cases = [
        ("out = \"o\"\n[[models]]\npath = \"m\"\n", "at least one [[models]] and one [[data]]"),
        (
            "out = \"o\"\ncommands = [\"run\"]\n[[models]]\npath = \"m\"\n[[data]]\nprompts = \"p\"\n",
            "cannot be swept",
        ),
        ("out = \"o\"\nbogus = 1\n", "bogus"),
        (
            "out = \"o\"\nshards = 0\n[[models]]\npath = \"m\"\n[[data]]\nprompts = \"p\"\n",
            "shards must be at least 1",
        ),
        ("[[models]]\npath = \"m\"\n[[data]]\nprompts = \"p\"\n", "no 'out' folder"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = d.join(format!("plan{i}.toml"));
        std::fs::write(&p, text).unwrap();
        let o = sinkscope(&["sweep", p.to_str().unwrap(), "--dry-run"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{text}: {err}");
        assert!(err.contains(want) && err.contains(&format!("plan{i}.toml")), "{text}: {err}");
    }
}

/// A task that fails is listed with its log (exit 1) while the others are merged; once the
/// cause is fixed, `--only ID` reruns that task alone and the sweep completes.
#[test]
fn failed_tasks_are_listed_and_rerun_alone() {
    let d = dir("failed");
    let good = checkpoints::write_checkpoint(&d.join("good"), 1.0);
    // A checkpoint whose weights are missing: its tasks fail (exit 4) until they are written.
    let bad = d.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(good.join(f), bad.join(f)).unwrap();
    }
    std::fs::write(d.join("prompts.jsonl"), PROMPTS).unwrap();
    let plan = d.join("plan.toml");
    std::fs::write(
        &plan,
        "out = \"out\"\n[[models]]\npath = \"good\"\n[[models]]\npath = \"bad\"\n[[data]]\nprompts = \"prompts.jsonl\"\n",
    )
    .unwrap();
    let plan_s = plan.to_str().unwrap();
    let o = sinkscope(&["sweep", plan_s]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{err}");
    let log = d.join("out/logs/bad.prompts.profile.0of1.log");
    assert!(err.contains(&format!("failed: bad.prompts.profile.0of1 (log: {})", log.display())), "{err}");
    assert!(
        std::fs::read_to_string(&log).unwrap().contains("model.safetensors"),
        "the log names the missing file"
    );
    assert!(d.join("out/runs/good.prompts.profile/metrics.json").is_file(), "the complete group is merged");
    let summary: SweepFile = compare::roundtrip(&d.join("out/sweep.json"));
    assert_eq!(summary.tasks[1].id, "bad.prompts.profile.0of1");
    assert!(!summary.tasks[1].complete && summary.tasks[0].complete);
    assert_eq!(summary.runs.keys().collect::<Vec<_>>(), ["good.prompts.profile"]);

    std::fs::copy(good.join("model.safetensors"), bad.join("model.safetensors")).unwrap();
    let o = sinkscope(&["sweep", plan_s, "--only", "bad.prompts.profile.0of1"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    ok(&o);
    assert!(err.contains("1 task(s), 1 to run"), "{err}");
    assert!(d.join("out/runs/bad.prompts.profile/metrics.json").is_file());
    let o = sinkscope(&["sweep", plan_s, "--only", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
}

/// An `ablate` sweep over 2 shards merges into the unsharded study: the same ablate.json and
/// sub-run metrics, byte for byte.
#[test]
fn ablate_sweep_merges_the_study_exactly() {
    let d = dir("ablate");
    std::fs::write(d.join("prompts.jsonl"), PROMPTS).unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf/llama/llama-f32.gguf");
    let model = model.to_str().unwrap();
    let plan = d.join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "out = \"out\"\ncommands = [\"ablate\"]\nshards = 2\noptions = [\"--layers\", \"1\", \"--scales\", \"0\"]\n\
             [[models]]\npath = \"{model}\"\nlabel = \"llama\"\n[[data]]\nprompts = \"prompts.jsonl\"\nlabel = \"p\"\n"
        ),
    )
    .unwrap();
    ok(&sinkscope(&["sweep", plan.to_str().unwrap()]));
    let full = d.join("full");
    ok(&sinkscope(&[
        "ablate",
        model,
        "--prompts",
        d.join("prompts.jsonl").to_str().unwrap(),
        "--layers",
        "1",
        "--scales",
        "0",
        "--quiet",
        "--out",
        full.to_str().unwrap(),
    ]));
    let merged = d.join("out").join("runs").join("llama.p.ablate");
    for f in ["ablate.json", "baseline/metrics.json", "scale_0/metrics.json", "scale_0/prompts.jsonl"] {
        assert!(
            std::fs::read(full.join(f)).unwrap() == std::fs::read(merged.join(f)).unwrap(),
            "{f} of the swept study differs from the unsharded one's"
        );
    }
    assert_same_run(&full.join("scale_0"), &merged.join("scale_0"));
    // Running the sweep again finds every task complete.
    let again = sinkscope(&["sweep", plan.to_str().unwrap()]);
    ok(&again);
    let said = String::from_utf8_lossy(&again.stdout).to_string() + &String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("0 to run"), "{said}");
}
