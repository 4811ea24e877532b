//! `render_ablate` (and `render_run` on an ablate folder): a hand-written folder that relies
//! on the documented defaults (folder names, valley, recomputed values) and a synthetic one
//! with every part (mean-ablation, one-by-one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{json, Value};
use sinkscope_report::synthetic::{SyntheticAblate, SyntheticRun};
use sinkscope_report::{render_ablate, render_run, ReportError, RunKind};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn hand_written_ablate_folder_uses_the_documented_defaults() {
    let dir = fresh_dir("ablate_hand");
    write_ablate(&dir);
    let out = render_ablate(&dir).unwrap();
    assert_eq!(out.report_html, dir.join("report.html"));
    assert_eq!(out.layers_csv, dir.join("layers.csv"));
    assert_eq!(out.dose_response_csv, dir.join("dose_response.csv"));
    let stems: Vec<&str> = out.plots.iter().map(|p| p.stem.as_str()).collect();
    assert_eq!(stems, ["ablate_fig4", "dose_response"]);
    for p in &out.plots {
        assert_eq!(p.svg, dir.join("plots").join(format!("{}.svg", p.stem)));
        assert_eq!(p.png, dir.join("plots").join(format!("{}.png", p.stem)));
    }
    for f in out.files() {
        assert!(std::fs::metadata(&f).unwrap().len() > 100, "{}", f.display());
    }
    // Each sub-run got its own report (baseline, scale_0.5, scale_0), in λ order.
    let subs: Vec<_> = out.sub_runs.iter().map(|s| s.report_html.clone()).collect();
    assert_eq!(subs, ["baseline", "scale_0.5", "scale_0"].map(|d| dir.join(d).join("report.html")).to_vec());

    // dose_response.csv: sorted by λ, default folders, ablate.json's values where given,
    // the rest recomputed from the sub-runs over the baseline's compress phase (layers 2–4).
    let (header, rows) = read_csv(&out.dose_response_csv);
    assert_eq!(
        header,
        [
            "intervention",
            "scale",
            "block",
            "dims",
            "run",
            "valley_min_entropy_norm",
            "max_bos_ratio",
            "valley_mean_sink_rate",
            "nll"
        ]
    );
    let num = |s: &str| s.parse::<f64>().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(&rows[0][..5], ["scale", "1.0", "", "", "baseline"]);
    assert_eq!(&rows[1][..5], ["scale", "0.5", "", "", "scale_0.5"]);
    assert_eq!(&rows[2][..5], ["scale", "0.0", "", "", "scale_0"]);
    // Baseline: all from ablate.json but nll (from baseline/metrics.json).
    assert_eq!(num(&rows[0][5]), 0.013);
    assert_eq!(num(&rows[0][6]), 114.0);
    assert_eq!(num(&rows[0][7]), 0.889);
    assert_eq!(num(&rows[0][8]), 2.5);
    // λ = 0.5: everything recomputed.
    assert!(close(num(&rows[1][5]), 0.013 + 0.5 * (0.5 - 0.013)), "{}", rows[1][5]);
    assert!(close(num(&rows[1][6]), 114.0 * 0.525));
    assert!(close(num(&rows[1][7]), (0.667 * 0.6 + 0.6 + 0.6) / 3.0), "{}", rows[1][7]);
    assert_eq!(num(&rows[1][8]), 2.7);
    // λ = 0: null in the file → recomputed; max_bos_ratio from the file.
    assert!(close(num(&rows[2][5]), 0.5));
    assert_eq!(num(&rows[2][6]), 5.7);
    assert_eq!(num(&rows[2][8]), 3.1);

    // layers.csv: baseline and ablated Fig.-1 curves side by side, no mean-ablation.
    let (header, rows) = read_csv(&out.layers_csv);
    assert_eq!(rows.len(), L + 1);
    assert_eq!(header.len(), 2 + 2 * 2 * 4);
    assert_eq!(&header[..4], ["layer", "depth", "baseline_entropy_norm_mean", "baseline_entropy_norm_std"]);
    assert!(header.contains(&"ablated_sink_rate_mean".to_string()));
    assert!(!header.iter().any(|h| h.starts_with("mean_ablate")));
    let c = header.iter().position(|h| h == "ablated_entropy_norm_mean").unwrap();
    let b = header.iter().position(|h| h == "baseline_entropy_norm_mean").unwrap();
    assert_eq!(num(&rows[3][b]), 0.013);
    assert_eq!(num(&rows[3][c]), 0.5);
    assert_eq!(rows[0][header.iter().position(|h| h == "ablated_sink_rate_mean").unwrap()], "");

    // Plots.
    let fig4 = &out.plots[0];
    assert_eq!(
        fig4.title,
        "Fig. 4 — Tiny-Valley-6L.Q8_0: baseline vs mlp output at position 0 ablated (λ = 0) in block 2"
    );
    let dose = &out.plots[1];
    assert_eq!(
        dose.title,
        "Dose–response — Tiny-Valley-6L.Q8_0: valley depth, max bos_ratio, valley sink rate and NLL vs λ"
    );
    for p in &out.plots {
        let svg = std::fs::read_to_string(&p.svg).unwrap();
        assert_eq!(check_xml(&svg), Ok("svg".into()), "{} is well-formed", p.stem);
        assert!(svg.contains(&format!("<title>{}</title>", p.title)), "{} has its title", p.stem);
        let (w, h, colours) = decode_png(&p.png);
        assert_eq!((w, h), p.size);
        assert!(colours > 50, "{} has {colours} colours", p.stem);
    }
    let svg = std::fs::read_to_string(&fig4.svg).unwrap();
    for t in [
        "baseline (λ = 1)",
        "ablated (λ = 0)",
        "ablated: 2",
        "Mix",
        "Compress",
        "Refine",
        "entropy_norm",
        "bos_norm",
    ] {
        assert!(svg.contains(t), "fig4 shows {t:?}");
    }
    let svg = std::fs::read_to_string(&dose.svg).unwrap();
    for t in [
        "valley_min_entropy_norm",
        "max_bos_ratio",
        "valley_mean_sink_rate",
        "nll",
        "10× baseline",
        "scale λ",
    ] {
        assert!(svg.contains(t), "dose_response shows {t:?}");
    }

    // The report.
    let html = std::fs::read_to_string(&out.report_html).unwrap();
    assert_eq!(external_references(&html), Vec::<String>::new());
    assert_eq!(html.matches("<svg ").count(), 2);
    for s in [
        "<h1>sinkscope ablate: Tiny-Valley-6L.Q8_0</h1>",
        "The <strong>mlp</strong> output at position 0 (the first token) of <strong>block 2</strong> was multiplied by λ ∈ {1, 0.5, 0}",
        "block 2 (33 % of depth): its MLP output at position 0 is 52.0× the median of the other positions, and bos_ratio jumps ×85.7 across it",
        "The valley quantities below are taken over layers 2–4 (33 %–67 % of depth) (the baseline's compression valley).",
        "At λ = 0 the minimum entropy_norm over the valley goes 0.013 → 0.500 (<strong>38.5×</strong>)",
        "<span class=\"ok\">The compression valley disappears</span>",
        "The mean-ablation of the massive dimensions was not run.",
        "id=\"dose-table\"",
        "id=\"evidence-table\"",
        "<a href=\"scale_0/report.html\"><code>scale_0</code></a>",
        "<a href=\"baseline/report.html\">",
    ] {
        assert!(html.contains(s), "ablate report says {s:?}");
    }
    // render_run dispatches on ablate.json.
    let again = render_run(&dir).unwrap();
    assert_eq!(again.kind, RunKind::Ablate);
    assert_eq!(again.report_html, out.report_html);
    assert_eq!(again.plots, out.plots);
}

#[test]
fn synthetic_ablate_with_mean_ablation_and_one_by_one() {
    let dir = fresh_dir("ablate_synthetic");
    let model =
        SyntheticRun { n_layers: 20, model_path: "models/Syn-20L.gguf".into(), ..SyntheticRun::default() };
    let m = model.massive_layer();
    SyntheticAblate { model, one_by_one: true, ..SyntheticAblate::default() }.write(&dir).unwrap();
    let out = render_ablate(&dir).unwrap();
    assert_eq!(out.sub_runs.len(), 5 + 1 + 1);
    let ablate: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ablate.json")).unwrap()).unwrap();
    // dose_response.csv round-trips ablate.json's numbers.
    let (header, rows) = read_csv(&out.dose_response_csv);
    assert_eq!(rows.len(), 5 + 1 + 1);
    let kinds: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(kinds, ["scale", "scale", "scale", "scale", "scale", "mean_ablate", "one_by_one"]);
    for (row, want) in rows[..5].iter().zip(ablate["dose_response"].as_array().unwrap()) {
        assert_eq!(row[1].parse::<f64>().unwrap(), want["scale"].as_f64().unwrap());
        assert_eq!(row[4], want["run"].as_str().unwrap());
        for (i, k) in
            ["valley_min_entropy_norm", "max_bos_ratio", "valley_mean_sink_rate", "nll"].iter().enumerate()
        {
            assert_eq!(row[5 + i].parse::<f64>().unwrap(), want["summary"][k].as_f64().unwrap(), "{k}");
            assert_eq!(header[5 + i], *k);
        }
    }
    assert_eq!(rows[5][3], "17");
    assert_eq!(rows[5][2], m.to_string(), "the mean-ablation's block");
    assert_eq!(rows[6][2], m.to_string());
    // The issue's criterion holds on the synthetic data: ≥ 10× and the sink rate falls.
    let v = |r: &Vec<String>, i: usize| r[i].parse::<f64>().unwrap();
    assert!(v(&rows[4], 5) >= 10.0 * v(&rows[0], 5));
    assert!(v(&rows[4], 7) < v(&rows[0], 7));
    let (lh, _) = read_csv(&out.layers_csv);
    assert!(lh.contains(&"mean_ablate_bos_norm_mean".to_string()));

    let html = std::fs::read_to_string(&out.report_html).unwrap();
    assert_eq!(external_references(&html), Vec::<String>::new());
    for s in [
        "<span class=\"ok\">The compression valley disappears</span>",
        "Mean-ablation (Sun et al.): dimension <strong>17</strong> at position 0",
        "id=\"mean-ablate-table\"",
        "id=\"one-by-one-table\"",
        "Each block ablated alone: block",
        "<a href=\"mean_ablate/report.html\">",
        "<a href=\"only_",
        "Blocks: detected on the baseline (metrics.md rule).",
        "(the baseline&#39;s compress phase)",
        "<code>blocks.",
        "dimensions chosen as: synthetic: the made-up massive dimension",
        "<span class=\"ok\">0</span>",
    ] {
        assert!(html.contains(s), "ablate report says {s:?}");
    }
    let svg = std::fs::read_to_string(&out.plots[1].svg).unwrap();
    assert!(svg.contains("mean-ablate dim 17") && svg.contains(&format!("block {m} alone")));
    let svg = std::fs::read_to_string(&out.plots[0].svg).unwrap();
    assert!(svg.contains("mean-ablated dims"));
}

#[test]
fn ablate_errors_name_the_file() {
    let root = fresh_dir("ablate_errors");
    // No ablate.json.
    let e = render_ablate(&root.join("nothing")).unwrap_err();
    assert!(
        matches!(e, ReportError::Schema(sinkscope_schema::SchemaError::Io { .. }))
            && e.to_string().contains("ablate.json"),
        "{e}"
    );

    // The λ = 0 sub-run is missing.
    let dir = root.join("missing_zero");
    write_ablate(&dir);
    std::fs::remove_dir_all(dir.join("scale_0")).unwrap();
    let e = render_ablate(&dir).unwrap_err();
    assert!(e.to_string().contains("scale_0") && e.to_string().contains("metrics.json"), "{e}");

    // A run outside the folder.
    let dir = root.join("escape");
    write_ablate(&dir);
    let mut a: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ablate.json")).unwrap()).unwrap();
    a["dose_response"][2]["run"] = json!("../elsewhere");
    std::fs::write(dir.join("ablate.json"), a.to_string()).unwrap();
    let e = render_ablate(&dir).unwrap_err();
    assert!(
        matches!(e, ReportError::Schema(sinkscope_schema::SchemaError::Invalid { .. }))
            && e.to_string().contains("\"../elsewhere\""),
        "{e}"
    );

    // Another schema version.
    let dir = root.join("v2");
    write_ablate(&dir);
    let text = std::fs::read_to_string(dir.join("ablate.json")).unwrap().replacen(
        "\"schema_version\": 1",
        "\"schema_version\": 2",
        1,
    );
    std::fs::write(dir.join("ablate.json"), text).unwrap();
    let e = render_run(&dir).unwrap_err();
    assert!(
        matches!(e, ReportError::Schema(sinkscope_schema::SchemaError::SchemaVersion { .. }))
            && e.to_string().contains("ablate.json"),
        "{e}"
    );

    // Nothing below λ = 1.
    let dir = root.join("only_baseline");
    write_ablate(&dir);
    let mut a: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ablate.json")).unwrap()).unwrap();
    a["dose_response"] = json!([{"scale": 1.0}]);
    std::fs::write(dir.join("ablate.json"), a.to_string()).unwrap();
    let e = render_ablate(&dir).unwrap_err();
    assert!(e.to_string().contains("no entry with a scale below 1"), "{e}");

    // A sub-run of another depth.
    let dir = root.join("depth");
    write_ablate(&dir);
    let m = serde_json::json!({"schema_version": 1, "n_layers": 3, "metrics": {}});
    std::fs::write(dir.join("scale_0.5/metrics.json"), m.to_string()).unwrap();
    let e = render_ablate(&dir).unwrap_err();
    assert!(e.to_string().contains("n_layers is 3, but the baseline's is 6"), "{e}");
}

/// dose_response.csv loads with Python's csv module as is.
#[test]
fn dose_response_csv_loads_in_python() {
    let dir = fresh_dir("ablate_python");
    write_ablate(&dir);
    render_ablate(&dir).unwrap();
    let script = r#"
import csv, sys
with open(sys.argv[1], newline="") as f:
    rows = list(csv.DictReader(f))
assert [r["run"] for r in rows] == ["baseline", "scale_0.5", "scale_0"], rows
assert float(rows[2]["valley_min_entropy_norm"]) == 0.5
with open(sys.argv[2], newline="") as f:
    rows = list(csv.DictReader(f))
assert len(rows) == 7 and rows[0]["ablated_sink_rate_mean"] == ""
print("csv-ok")
"#;
    match std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("dose_response.csv"))
        .arg(dir.join("layers.csv"))
        .output()
    {
        Ok(o) => assert!(o.status.success(), "python failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => missing_tool(&format!("python3 not available ({e}); the CSV was checked in Rust only")),
    }
}
