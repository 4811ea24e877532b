//! End to end through the binary on the tiny llama fixture: `lens`, `ablate` (the planted
//! massive activation is written by block 2, i.e. `blocks.1.hook_mlp_out`) and `tasks` write
//! their folders and reports, and exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sinkscope(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sinkscope")).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sinkscope {args:?} failed ({:?}): {stderr}", out.status.code());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn lens_ablate_tasks_on_fixture() {
    let tmp = std::env::temp_dir().join(format!("sinkscope-exp-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let prompts = tmp.join("p.txt");
    std::fs::write(
        &prompts,
        "The quiet river carried small boats past the old mill.\ndef add(a, b):\nx=1234 café 2024 and more words\n",
    )
    .unwrap();
    let model = root().join("tests/fixtures/models/llama");
    let (m, p) = (model.to_str().unwrap(), prompts.to_str().unwrap());
    let lens = tmp.join("lens");
    let out = sinkscope(&["lens", m, "--prompts", p, "--quiet", "--out", lens.to_str().unwrap()]);
    assert!(out.trim_end().ends_with("report.html"), "{out}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lens.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["metrics"]["logit_lens_nll"]["mean"].as_array().unwrap().len(), 4);
    assert_eq!(metrics["summary"]["lens_at_L_minus_model_nll"].as_f64(), Some(0.0));

    let abl = tmp.join("ablate");
    let out = sinkscope(&[
        "ablate",
        m,
        "--prompts",
        p,
        "--layers",
        "2",
        "--scales",
        "1,0",
        "--mean-ablate",
        "--quiet",
        "--out",
        abl.to_str().unwrap(),
    ]);
    assert!(out.contains("ablated blocks [2]"), "{out}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(abl.join("ablate.json")).unwrap()).unwrap();
    assert_eq!(doc["dose_response"].as_array().unwrap().len(), 2);
    assert!(
        doc["mean_ablate"]["dims"].as_array().unwrap().iter().any(|d| d.as_u64() == Some(17)),
        "the planted massive dimension is 17: {}",
        doc["mean_ablate"]
    );
    assert!(abl.join("report.html").exists() && abl.join("baseline/report.html").exists());

    let tasks = tmp.join("tasks");
    let out = sinkscope(&[
        "tasks",
        "--profile",
        abl.join("baseline").to_str().unwrap(),
        "--lens",
        lens.to_str().unwrap(),
        "--out",
        tasks.to_str().unwrap(),
    ]);
    assert!(out.trim_end().ends_with("tasks.html"), "{out}");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `lens --mc` on the first OpenBookQA items (the fixture copy of the pinned dataset), then
/// `tasks --mc`: per-layer accuracies in [0, 1] on L + 1 layers, the count of items, chance
/// 1/4 (every item has four choices), and the multiple-choice columns in tasks.csv.
#[test]
fn lens_mc_and_tasks_on_fixture() {
    let tmp = std::env::temp_dir().join(format!("sinkscope-mc-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let model = root().join("tests/fixtures/models/llama");
    let data = root().join("tests/fixtures/data");
    let mc = tmp.join("mc");
    let out = sinkscope(&[
        "lens",
        model.to_str().unwrap(),
        "--dataset",
        "openbookqa-mc",
        "--data-dir",
        data.to_str().unwrap(),
        "--limit",
        "6",
        "--mc",
        "--quiet",
        "--out",
        mc.to_str().unwrap(),
    ]);
    assert!(out.trim_end().ends_with("report.html"), "{out}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(mc.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["kind"], "mc");
    assert_eq!(m["summary"]["n_items"].as_u64(), Some(6));
    assert_eq!(m["summary"]["chance"].as_f64(), Some(0.25));
    for name in ["mc_accuracy", "mc_accuracy_norm"] {
        let mean = m["metrics"][name]["mean"].as_array().unwrap();
        assert_eq!(mean.len(), 4, "{name}: L + 1 = 4 layers");
        for v in mean {
            let v = v.as_f64().unwrap();
            // Six items: every accuracy is a multiple of 1/6.
            assert!((0.0..=1.0).contains(&v) && ((v * 6.0) - (v * 6.0).round()).abs() < 1e-9, "{name}: {v}");
        }
    }
    assert_eq!(std::fs::read_to_string(mc.join("prompts.jsonl")).unwrap().lines().count(), 6);

    let tasks = tmp.join("tasks");
    let out = sinkscope(&["tasks", "--mc", mc.to_str().unwrap(), "--out", tasks.to_str().unwrap()]);
    assert!(out.trim_end().ends_with("tasks.html"), "{out}");
    let csv = std::fs::read_to_string(tasks.join("tasks.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert_eq!(header, "layer,depth,phase,mc_accuracy_mean,mc_accuracy_norm_mean,mc_chance");
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.lines().skip(1).all(|l| l.ends_with(",0.25")), "{csv}");
    let html = std::fs::read_to_string(tasks.join("tasks.html")).unwrap();
    assert!(html.contains("multiple-choice"), "tasks.html names the multiple-choice panel");
    let _ = std::fs::remove_dir_all(&tmp);
}
