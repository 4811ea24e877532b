//! Figs. 5, 6 and the multiple-choice half of Fig. 7 in `report.html` and `compare.html`,
//! with known answers from hand-written or synthetic run folders.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;
use sinkscope_report::synthetic::SyntheticRun;
use sinkscope_report::{render_compare, render_run, RunKind};

/// Known answer: `heads.csv` has one row per head of every block (L · H), and `dormant` is
/// `bos_attention > ε = 0.3` of the fixture's per-head means.
#[test]
fn heads_csv_flags_dormant_heads() {
    let dir = fresh_dir("fig5_heads_csv");
    write_fixture(&dir);
    render_run(&dir).unwrap();
    let (header, rows) = read_csv(&dir.join("heads.csv"));
    assert_eq!(
        header,
        ["layer", "head", "bos_attention", "bos_attention_ci_low", "bos_attention_ci_high", "dormant"]
    );
    assert_eq!(rows.len(), L * H);
    let metrics = metrics_json();
    for r in &rows {
        let (l, h): (usize, usize) = (r[0].parse().unwrap(), r[1].parse().unwrap());
        let want = metrics["heads"]["bos_attention"][l][h].as_f64();
        match want {
            Some(v) => {
                assert_eq!(r[2].parse::<f64>().unwrap(), v);
                assert_eq!(r[5], (v > 0.3).to_string(), "layer {l} head {h}");
            }
            None => assert_eq!(r[2], ""),
        }
    }
}

/// Known answer: one model on two prompt sets where head 0 of every compressed layer
/// (layers 4..=10 of the 12-layer synthetic model) is dormant on one set (≥ 0.8 ± 0.03) and
/// active on the other (0.05 ± 0.03): exactly those 7 heads are input-adaptive; the mixing
/// score is identical on both sets (largest difference 0).
#[test]
fn compare_fig5_flags_input_adaptive_heads() {
    let root = fresh_dir("fig5_compare");
    let run = |name: &str, active: bool| {
        let d = root.join(name);
        SyntheticRun { dataset: Some(name.into()), head0_active: active, ..SyntheticRun::default() }
            .write(&d)
            .unwrap();
        d
    };
    let model = SyntheticRun::default();
    let (m, c) = (model.massive_layer(), model.compress_last());
    assert_eq!((m, c), (4, 10));
    let out_dir = root.join("cmp");
    let out = render_compare(&[run("gsm8k-like", false), run("wikitext-like", true)], &out_dir).unwrap();
    let stems: Vec<&str> = out.plots.iter().map(|p| p.stem.as_str()).collect();
    assert_eq!(stems, ["compare_fig1", "compare_fig6", "compare_fig5_1"]);
    let (header, rows) = read_csv(&out_dir.join("fig5_heads.csv"));
    assert_eq!(header.last().map(String::as_str), Some("adaptive"));
    let adaptive: Vec<(String, String)> =
        rows.iter().filter(|r| r[8] == "true").map(|r| (r[2].clone(), r[3].clone())).collect();
    let want: Vec<(String, String)> =
        (m..=c).chain(m..=c).map(|l| (l.to_string(), "0".to_string())).collect();
    assert_eq!(adaptive, want, "head 0 of layers 4..=10, in each set's rows");
    let html = std::fs::read_to_string(&out.compare_html).unwrap();
    assert!(html.contains("95 % intervals disjoint): <strong>7</strong> of 48"), "{html}");
    assert!(html.contains("Mixing score: largest |Δ| across sets 0 over 12 layers, intervals disjoint at 0"));
    assert!(
        html.contains("synthetic-model (data=gsm8k-like)")
            && html.contains("synthetic-model (data=wikitext-like)")
    );
    assert_eq!(html.matches("<svg ").count(), 3);

    // One model on one prompt set: no Fig. 5 across sets.
    let out = render_compare(&[root.join("gsm8k-like")], &root.join("cmp1")).unwrap();
    assert!(out.plots.iter().all(|p| !p.stem.starts_with("compare_fig5")));
    assert!(!root.join("cmp1/fig5_heads.csv").exists());
}

/// Fig. 6 of a synthetic run draws every panel's curves (the SVG names them) and says which
/// are missing from an older run (the hand-written fixture has no sink-value curves).
#[test]
fn fig6_panels() {
    let root = fresh_dir("fig6");
    let d = root.join("syn");
    SyntheticRun::default().write(&d).unwrap();
    let out = render_run(&d).unwrap();
    let fig6 = out.plots.iter().find(|p| p.stem == "fig6").unwrap();
    let svg = std::fs::read_to_string(&fig6.svg).unwrap();
    assert_eq!(check_xml(&svg), Ok("svg".into()));
    for s in ["head classes", "c = M/R", "sink value norm", "output share", "previous-token"] {
        assert!(svg.contains(s), "fig6 has {s:?}");
    }
    assert!(!svg.contains("not in this run"));
    let old = root.join("old");
    write_fixture(&old);
    let out = render_run(&old).unwrap();
    let svg = std::fs::read_to_string(&out.plots.iter().find(|p| p.stem == "fig6").unwrap().svg).unwrap();
    assert!(svg.contains("(not in this run)"));
}

fn write_mc(dir: &std::path::Path, model_path: &str) {
    let mut manifest = manifest_json();
    manifest["kind"] = json!("mc");
    manifest["model"]["path"] = json!(model_path);
    manifest["data"] = json!({"source": "dataset", "dataset": {"name": "openbookqa-mc"}, "limit": 4});
    let acc = [0.25, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75];
    let (std, min, max) = ([0.5; 7], [0.0; 7], [1.0; 7]);
    let metrics = json!({
        "schema_version": 1, "kind": "mc", "n_layers": 6, "n_prompts": 4,
        "metrics": {
            "mc_accuracy": {"mean": acc, "std": std, "min": min, "max": max,
                            "ci_low": acc.map(|a| (a - 0.25_f64).max(0.0)), "ci_high": acc.map(|a| (a + 0.25_f64).min(1.0))},
            "mc_accuracy_norm": {"mean": acc, "std": std, "min": min, "max": max}
        },
        "summary": {"n_items": 4, "chance": 0.25, "best_layer": {"layer": 5, "value": 0.75},
                    "best_layer_norm": {"layer": 5, "value": 0.75}, "accuracy_at_L": 0.75}
    });
    write_run(dir, &manifest, &metrics, &[]);
}

/// An `mc` run renders its own report (accuracy with interval, chance), its layers.csv carries
/// the interval columns, and compare puts it beside its model's profile run in Fig. 7 and the
/// table (known values: 0.750 [0.50, 1.00] (chance 0.25)).
#[test]
fn mc_run_and_compare() {
    let root = fresh_dir("mc");
    let mc = root.join("mc");
    let model = manifest_json()["model"]["path"].as_str().unwrap().to_string();
    write_mc(&mc, &model);
    let out = render_run(&mc).unwrap();
    assert_eq!(out.kind, RunKind::Mc);
    assert_eq!(out.plots.iter().map(|p| p.stem.as_str()).collect::<Vec<_>>(), ["mc"]);
    let (header, rows) = read_csv(&out.layers_csv);
    assert!(header.contains(&"mc_accuracy_ci_low".to_string()));
    assert_eq!(rows.len(), 7);
    let html = std::fs::read_to_string(&out.report_html).unwrap();
    assert!(
        html.contains("<strong>0.750</strong> [0.500, 1.000]") && html.contains("chance 0.250"),
        "{html}"
    );
    assert_eq!(external_references(&html), Vec::<String>::new());

    let prof = root.join("prof");
    write_fixture(&prof);
    let out = render_compare(&[prof, mc], &root.join("cmp")).unwrap();
    let stems: Vec<&str> = out.plots.iter().map(|p| p.stem.as_str()).collect();
    assert_eq!(stems, ["compare_fig1", "compare_fig6", "compare_fig7_1"]);
    assert!(out.plots[2].title.contains("multiple-choice LogitLens accuracy"), "{}", out.plots[2].title);
    let text = std::fs::read_to_string(&out.compare_csv).unwrap();
    assert!(
        text.lines().any(|l| l == "multiple-choice LogitLens accuracy at layer L [95 % CI],\"0.750 [0.50, 1.00] (chance 0.25)\""),
        "{text}"
    );
}
