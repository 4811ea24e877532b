//! `render_run` on a hand-written run folder (docs/results-schema.md, L = 6 with a valley).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sinkscope_report::{render_run, ReportError};

#[test]
fn writes_every_file_of_the_schema() {
    let dir = fresh_dir("writes_every_file");
    write_fixture(&dir);
    let out = render_run(&dir).unwrap();
    assert_eq!(out.layers_csv, dir.join("layers.csv"));
    assert_eq!(out.report_html, dir.join("report.html"));
    let stems: Vec<&str> = out.plots.iter().map(|p| p.stem.as_str()).collect();
    assert_eq!(stems, ["fig1", "fig3", "bos_attention_heads", "top_activations", "fig5", "fig6"]);
    for p in &out.plots {
        assert_eq!(p.svg, dir.join("plots").join(format!("{}.svg", p.stem)));
        assert_eq!(p.png, dir.join("plots").join(format!("{}.png", p.stem)));
    }
    assert_eq!(out.files().len(), 1 + 2 * 6 + 1);
    assert!(dir.join("heads.csv").is_file());
    for f in out.files() {
        let len = std::fs::metadata(&f).unwrap().len();
        assert!(len > 100, "{} is only {len} bytes", f.display());
    }
}

#[test]
fn layers_csv_has_one_row_per_layer_and_mean_std_columns() {
    let dir = fresh_dir("layers_csv");
    write_fixture(&dir);
    render_run(&dir).unwrap();
    let (header, rows) = read_csv(&dir.join("layers.csv"));
    assert_eq!(rows.len(), L + 1, "L + 1 rows");
    assert_eq!(&header[..2], ["layer", "depth"]);
    // Known metrics in the metrics crate's order, then unknown ones alphabetically.
    let expect_metrics = [
        "bos_norm",
        "token_norm_mean",
        "bos_ratio",
        "massive",
        "entropy",
        "entropy_norm",
        "anisotropy",
        "sigma1_sq",
        "sigma1_sq_bound",
        "anisotropy_bound",
        "entropy_bound",
        "sink_rate",
        "mixing_score",
        "custom_extra_metric",
    ];
    let mut want = vec!["layer".to_string(), "depth".to_string()];
    for m in expect_metrics {
        want.push(format!("{m}_mean"));
        want.push(format!("{m}_std"));
    }
    assert_eq!(header, want);
    for (l, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), header.len(), "row {l} has every column");
        assert_eq!(row[0], l.to_string());
        let depth: f64 = row[1].parse().unwrap();
        assert!((depth - l as f64 / L as f64).abs() < 1e-12);
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    // Undefined = empty cell (sink_rate at layer 0); values round-trip exactly.
    assert_eq!(rows[0][col("sink_rate_mean")], "");
    assert_eq!(rows[0][col("sink_rate_std")], "");
    assert_eq!(rows[3][col("sink_rate_mean")].parse::<f64>().unwrap(), 1.0);
    assert_eq!(rows[2][col("bos_norm_mean")].parse::<f64>().unwrap(), 400.0);
    assert_eq!(rows[3][col("entropy_norm_mean")].parse::<f64>().unwrap(), 0.013);
    assert_eq!(rows[2][col("bos_ratio_std")].parse::<f64>().unwrap(), 5.0);
}

/// The CSV loads with Python's csv module (and pandas, when installed) as is.
#[test]
fn layers_csv_loads_in_python() {
    let dir = fresh_dir("layers_csv_python");
    write_fixture(&dir);
    render_run(&dir).unwrap();
    let script = r#"
import csv, sys
path = sys.argv[1]
with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
assert len(rows) == 7, len(rows)
assert rows[0]["sink_rate_mean"] == "", rows[0]["sink_rate_mean"]
assert float(rows[2]["bos_norm_mean"]) == 400.0
try:
    import pandas as pd
except ImportError:
    import os
    if os.environ.get("CI") == "true":
        raise SystemExit("CI=true but pandas is not installed (scripts/test.sh installs it)")
    print("csv-ok (pandas not installed)")
    sys.exit(0)
df = pd.read_csv(path)
assert df.shape == (7, 2 + 2 * 14), df.shape
assert pd.isna(df["sink_rate_mean"][0])
assert df["layer"].dtype.kind == "i"
assert all(df[c].dtype.kind == "f" for c in df.columns if c not in ("layer",))
print("pandas-ok")
"#;
    match std::process::Command::new("python3").arg("-c").arg(script).arg(dir.join("layers.csv")).output() {
        Ok(o) => {
            assert!(o.status.success(), "python failed: {}", String::from_utf8_lossy(&o.stderr));
            eprintln!("python3: {}", String::from_utf8_lossy(&o.stdout).trim());
        }
        Err(e) => missing_tool(&format!("python3 not available ({e}); the CSV was checked in Rust only")),
    }
}

#[test]
fn svgs_are_well_formed_with_titles() {
    let dir = fresh_dir("svgs");
    write_fixture(&dir);
    let out = render_run(&dir).unwrap();
    let titles = [
        ("fig1", "Fig. 1 — Tiny-Valley-6L.Q8_0: entropy_norm, sink_rate and bos_norm vs layer"),
        (
            "fig3",
            "Fig. 3 — Tiny-Valley-6L.Q8_0: measured vs Theorem-1 bound (sigma1_sq, anisotropy, entropy)",
        ),
        ("bos_attention_heads", "bos_attention per head — Tiny-Valley-6L.Q8_0: layer × head heatmap"),
        (
            "top_activations",
            "Top activations per layer — Tiny-Valley-6L.Q8_0: |value| and (token, dimension)",
        ),
    ];
    for (p, (stem, title)) in out.plots.iter().zip(titles) {
        assert_eq!(p.stem, stem);
        assert_eq!(p.title, title);
        let svg = std::fs::read_to_string(&p.svg).unwrap();
        assert_eq!(check_xml(&svg), Ok("svg".to_string()), "{stem}.svg is well-formed");
        assert!(
            svg.contains(&format!("<title>{}</title>", title.replace('&', "&amp;"))),
            "{stem}.svg has its title"
        );
        assert!(svg.contains(&format!("viewBox=\"0 0 {} {}\"", p.size.0, p.size.1)));
        assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""), "standalone SVG keeps its namespace");
    }
    let fig1 = std::fs::read_to_string(dir.join("plots/fig1.svg")).unwrap();
    for text in ["Mix", "Compress", "Refine", "entropy_norm", "sink_rate", "bos_norm", "layer l"] {
        assert!(fig1.contains(text), "fig1 shows {text:?}");
    }
    let fig3 = std::fs::read_to_string(dir.join("plots/fig3.svg")).unwrap();
    for text in ["sigma1_sq_bound (Theorem 1)", "anisotropy (measured)", "entropy_bound (Theorem 1)"] {
        assert!(fig3.contains(text), "fig3 shows {text:?}");
    }
    let top = std::fs::read_to_string(dir.join("plots/top_activations.svg")).unwrap();
    assert!(top.contains("dim 17 @ token 0"), "top activations legend names the massive dimension");
}

#[test]
fn pngs_decode_with_the_plot_size_and_real_content() {
    let dir = fresh_dir("pngs");
    write_fixture(&dir);
    let out = render_run(&dir).unwrap();
    for p in &out.plots {
        let (w, h, colours) = decode_png(&p.png);
        assert_eq!((w, h), p.size, "{} size", p.stem);
        assert!(w >= 600 && h >= 300);
        // Text anti-aliasing, lines, shading: far more than a blank or flat image.
        assert!(colours > 50, "{} has only {colours} colours", p.stem);
    }
}

#[test]
fn report_html_is_self_contained_and_says_what_matters() {
    let dir = fresh_dir("html");
    write_fixture(&dir);
    render_run(&dir).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(external_references(&html), Vec::<String>::new(), "no external resource, no script");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg ").count(), 6, "the six plots are inlined");
    assert_eq!(html.matches("</svg>").count(), 6);
    assert!(html.contains("<style>"), "inline CSS");
    // Summary in words.
    for s in [
        "The massive activation forms at <strong>layer 2</strong> (33 % of depth; block 2's MLP output at position 0 is 52.0× the other positions' median; bos_ratio ×85.7)",
        "peaks at <strong>114</strong> at layer 2",
        "layers 0–1 (0 %–17 % of depth)",
        "layers 2–4 (33 %–67 % of depth)",
        "layers 5–6 (83 %–100 % of depth)",
        "<strong>r = -0.93</strong>",
        "<strong>r = 0.55</strong>",
        "0 violations",
        "<code>&quot;A&quot;</code> (id 49), which is <strong>not a BOS token</strong>",
        "It is the same token for every prompt.",
        "BOS policy: <code>auto</code>",
    ] {
        assert!(html.contains(s), "report says {s:?}");
    }
    // Conventions, tables, run details.
    for s in [
        "H / ln min(T, d)",
        "sample (n-1)",
        "id=\"layer-table\"",
        "id=\"prompt-table\"",
        "Tiny-Valley-6L.Q8_0",
        "<dt>epsilon</dt><dd>0.3</dd>",
    ] {
        assert!(html.contains(s), "report has {s:?}");
    }
    // One row per layer in the per-layer table.
    let table = &html[html.find("id=\"layer-table\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr").count(), 1 + L + 1);
}

#[test]
fn bound_violations_and_missing_phases_are_reported() {
    let dir = fresh_dir("violations");
    let mut m = metrics_json();
    m["summary"]["bound_violations"] = serde_json::json!(3);
    m["summary"]["phases"] = serde_json::Value::Null;
    m["summary"]["massive_layers"] = serde_json::json!([]);
    write_run(&dir, &manifest_json(), &m, &prompt_lines());
    render_run(&dir).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<span class=\"bad\">3 violations</span>"));
    assert!(html.contains("No compression phase was found"));
    assert!(html.contains("No massive-activation block was detected"));
}

#[test]
fn a_different_schema_version_is_rejected_naming_the_file() {
    let dir = fresh_dir("schema_version");
    let mut m = metrics_json();
    m["schema_version"] = serde_json::json!(2);
    write_run(&dir, &manifest_json(), &m, &prompt_lines());
    let e = render_run(&dir).unwrap_err();
    assert!(matches!(e, ReportError::Schema(sinkscope_schema::SchemaError::SchemaVersion { .. })), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("metrics.json")
            && msg.contains("schema_version 2")
            && msg.contains("reads schema_version 1"),
        "{msg}"
    );

    let mut man = manifest_json();
    man.as_object_mut().unwrap().remove("schema_version");
    write_run(&dir, &man, &metrics_json(), &prompt_lines());
    let msg = render_run(&dir).unwrap_err().to_string();
    assert!(msg.contains("manifest.json") && msg.contains("(missing)"), "{msg}");
    assert!(!dir.join("report.html").exists(), "nothing written for a rejected run");
}

#[test]
fn malformed_inputs_name_the_file_and_place() {
    let dir = fresh_dir("malformed");
    let mut m = metrics_json();
    m["metrics"]["bos_norm"]["mean"] = serde_json::json!([1.0, 2.0]);
    write_run(&dir, &manifest_json(), &m, &prompt_lines());
    let msg = render_run(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("metrics.json")
            && msg.contains("metrics.bos_norm.mean has 2 entries, expected n_layers + 1 = 7"),
        "{msg}"
    );

    write_fixture(&dir);
    std::fs::write(dir.join("prompts.jsonl"), "{\"id\": \"a\"}\nnot json\n").unwrap();
    let msg = render_run(&dir).unwrap_err().to_string();
    assert!(msg.contains("prompts.jsonl line 2"), "{msg}");

    std::fs::remove_file(dir.join("metrics.json")).unwrap();
    let e = render_run(&dir).unwrap_err();
    assert!(
        matches!(e, ReportError::Schema(sinkscope_schema::SchemaError::Io { .. }))
            && e.to_string().contains("metrics.json"),
        "{e}"
    );
}

#[test]
fn a_run_without_attention_or_prompts_still_renders() {
    let dir = fresh_dir("sparse");
    let m = serde_json::json!({
        "schema_version": 1,
        "n_layers": 2,
        "metrics": {"bos_norm": {"mean": [1.0, 50.0, 60.0], "std": [0.0, 1.0, 1.0]}}
    });
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("metrics.json"), m.to_string()).unwrap();
    std::fs::write(dir.join("manifest.json"), r#"{"schema_version": 1}"#).unwrap();
    let out = render_run(&dir).unwrap();
    let (header, rows) = read_csv(&out.layers_csv);
    assert_eq!(header, ["layer", "depth", "bos_norm_mean", "bos_norm_std"]);
    assert_eq!(rows.len(), 3);
    let html = std::fs::read_to_string(&out.report_html).unwrap();
    assert!(html.contains("prompts.jsonl was not found"));
    assert!(html.contains("no attention statistics in this run") || html.matches("<svg ").count() == 4);
}
