//! `render_run` / `render_lens` / `render_probe` on lens and probe run folders: hand-written
//! ones (docs/results-schema.md, L = 6) and synthetic ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;
use sinkscope_report::synthetic::{SyntheticLens, SyntheticProbe, SyntheticRun};
use sinkscope_report::{render_lens, render_probe, render_run, ReportError, Run, RunKind};

fn col(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

#[test]
fn lens_run_renders_csv_plot_and_report() {
    let dir = fresh_dir("lens_run");
    write_lens(&dir);
    let out = render_run(&dir).unwrap();
    assert_eq!(out.kind, RunKind::Lens);
    assert_eq!(out.layers_csv, dir.join("layers.csv"));
    assert_eq!(out.report_html, dir.join("report.html"));
    let stems: Vec<&str> = out.plots.iter().map(|p| p.stem.as_str()).collect();
    assert_eq!(stems, ["lens"]);
    assert_eq!(out.plots[0].svg, dir.join("plots/lens.svg"));
    for f in out.files() {
        assert!(std::fs::metadata(&f).unwrap().len() > 100, "{}", f.display());
    }

    // layers.csv: the metric columns, then the token-weighted ones; values round-trip.
    let (header, rows) = read_csv(&out.layers_csv);
    assert_eq!(
        header,
        [
            "layer",
            "depth",
            "logit_lens_nll_mean",
            "logit_lens_nll_std",
            "logit_lens_ppl_mean",
            "logit_lens_ppl_std",
            "logit_lens_top1_mean",
            "logit_lens_top1_std",
            "token_weighted_nll",
            "token_weighted_ppl",
            "token_weighted_top1"
        ]
    );
    assert_eq!(rows.len(), L + 1);
    let m = lens_metrics();
    for (l, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), header.len());
        assert_eq!(row[0], l.to_string());
        for (c, v) in [
            ("token_weighted_ppl", &m["summary"]["token_weighted_ppl"][l]),
            ("token_weighted_nll", &m["summary"]["token_weighted_nll"][l]),
            ("token_weighted_top1", &m["summary"]["token_weighted_top1"][l]),
            ("logit_lens_ppl_mean", &m["metrics"]["logit_lens_ppl"]["mean"][l]),
            ("logit_lens_ppl_std", &m["metrics"]["logit_lens_ppl"]["std"][l]),
        ] {
            assert_eq!(row[col(&header, c)].parse::<f64>().unwrap(), v.as_f64().unwrap(), "{c} at layer {l}");
        }
    }

    // The plot.
    let p = &out.plots[0];
    assert_eq!(p.title, "LogitLens — Tiny-Valley-6L.Q8_0: perplexity (log) and top-1 accuracy vs layer");
    let svg = std::fs::read_to_string(&p.svg).unwrap();
    assert_eq!(check_xml(&svg), Ok("svg".into()));
    assert!(svg.contains(&format!("<title>{}</title>", p.title)));
    for t in [
        "LogitLens perplexity (log)",
        "LogitLens top-1 accuracy",
        "per-prompt mean ± std",
        "token-weighted (15 tokens)",
        "model ppl = 12.2",
        "layer l",
    ] {
        assert!(svg.contains(t), "lens.svg shows {t:?}");
    }
    let (w, h, colours) = decode_png(&p.png);
    assert_eq!((w, h), p.size);
    assert!(colours > 50, "{colours} colours");

    // The report.
    let html = std::fs::read_to_string(&out.report_html).unwrap();
    assert_eq!(external_references(&html), Vec::<String>::new());
    assert_eq!(html.matches("<svg ").count(), 1);
    for s in [
        "<h1>sinkscope lens: Tiny-Valley-6L.Q8_0</h1>",
        "15 predictions from 2 prompts",
        "Perplexity is <strong>8955</strong> at layer 0 (the embeddings) and <strong>12.2</strong> at layer L = 6",
        "<span class=\"ok\">matches the model</span>",
        "Lowest perplexity at layer 6 (100 % of depth)",
        "id=\"layer-table\"",
        "id=\"prompt-table\"",
        "H / ln min(T, d)",
    ] {
        assert!(html.contains(s), "lens report says {s:?}");
    }
    let table = &html[html.find("id=\"layer-table\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr").count(), 1 + L + 1);
    // The same through render_lens.
    assert_eq!(render_lens(&dir).unwrap(), out);
}

#[test]
fn lens_summary_gaps_are_filled_and_mismatches_flagged() {
    let dir = fresh_dir("lens_gaps");
    let mut m = lens_metrics();
    m["summary"].as_object_mut().unwrap().remove("token_weighted_ppl");
    m["summary"].as_object_mut().unwrap().remove("best_layer");
    m["summary"]["lens_at_L_minus_model_nll"] = json!(0.25);
    m.as_object_mut().unwrap().remove("kind"); // the manifest says "lens"
    write_run(&dir, &lens_manifest(), &m, &lens_prompts());
    let run = Run::load(&dir).unwrap();
    assert_eq!(run.kind, RunKind::Lens);
    let ppl = run.lens_ppl();
    assert!((ppl[3].unwrap() - 7.1_f64.exp()).abs() < 1e-9, "ppl = exp(nll) when absent");
    assert_eq!(run.lens_best(), Some((6, Some(2.5_f64.exp()))));
    render_run(&dir).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("the lens at L should be the model itself"), "a lens/model mismatch is flagged");
}

#[test]
fn probe_run_renders_csv_plot_and_report() {
    let dir = fresh_dir("probe_run");
    write_probe(&dir);
    let out = render_run(&dir).unwrap();
    assert_eq!(out.kind, RunKind::Probe);
    let stems: Vec<&str> = out.plots.iter().map(|p| p.stem.as_str()).collect();
    assert_eq!(stems, ["probe"]);
    for f in out.files() {
        assert!(std::fs::metadata(&f).unwrap().len() > 100, "{}", f.display());
    }
    let (header, rows) = read_csv(&out.layers_csv);
    assert_eq!(
        header,
        [
            "layer",
            "depth",
            "probe_accuracy_mean",
            "probe_accuracy_std",
            "pooled_accuracy",
            "baseline_accuracy",
            "converged",
            "max_iterations",
            "max_grad_norm"
        ]
    );
    assert_eq!(rows.len(), L + 1);
    for (l, row) in rows.iter().enumerate() {
        assert_eq!(row[2].parse::<f64>().unwrap(), PROBE_ACC[l]);
        assert_eq!(row[3].parse::<f64>().unwrap(), 0.02);
        assert_eq!(row[5].parse::<f64>().unwrap(), 0.55);
        assert_eq!(row[6], if l == 5 { "false" } else { "true" });
        assert_eq!(row[7], if l == 5 { "100" } else { "7" });
    }

    let p = &out.plots[0];
    assert_eq!(
        p.title,
        "Linear probe — Tiny-Valley-6L.Q8_0: CV accuracy vs layer, majority baseline, solver convergence"
    );
    let svg = std::fs::read_to_string(&p.svg).unwrap();
    assert_eq!(check_xml(&svg), Ok("svg".into()));
    assert!(svg.contains(&format!("<title>{}</title>", p.title)));
    for t in [
        "5-fold CV accuracy ± std",
        "majority baseline = 0.550",
        "best: layer 3 (0.810)",
        "solver not converged",
        "solver: 1 layer NOT converged",
    ] {
        assert!(svg.contains(t), "probe.svg shows {t:?}");
    }
    let (w, h, colours) = decode_png(&p.png);
    assert_eq!((w, h), p.size);
    assert!(colours > 50);

    let html = std::fs::read_to_string(&out.report_html).unwrap();
    assert_eq!(external_references(&html), Vec::<String>::new());
    for s in [
        "<h1>sinkscope probe: Tiny-Valley-6L.Q8_0</h1>",
        "5-fold stratified cross-validation (seed 42); 40 sentences, 2 classes",
        "Best layer: <strong>3</strong> (50 % of depth) with accuracy <strong>0.810</strong> ± 0.020, against a majority-class baseline of 0.550 (+26.0 points)",
        "<span class=\"bad\">did not converge</span> in some fold at layer 5",
        "Labels in prompts.jsonl: <code>false</code>: 18, <code>true</code>: 22.",
    ] {
        assert!(html.contains(s), "probe report says {s:?}");
    }
    assert_eq!(render_probe(&dir).unwrap(), out);
}

#[test]
fn synthetic_lens_and_probe_render() {
    let root = fresh_dir("synthetic_lens_probe");
    let model =
        SyntheticRun { n_layers: 16, model_path: "models/S16.gguf".into(), ..SyntheticRun::default() };
    SyntheticLens { model: model.clone() }.write(&root.join("lens")).unwrap();
    let probe = SyntheticProbe { model, n_samples: 30, not_converged: vec![] };
    probe.write(&root.join("probe")).unwrap();
    let lens = render_run(&root.join("lens")).unwrap();
    let run = Run::load(&root.join("lens")).unwrap();
    // At l = L the lens is the model.
    let s = run.lens.as_ref().unwrap();
    assert!((run.lens_nll()[16].unwrap() - s.model_nll.unwrap()).abs() < 1e-12);
    assert_eq!(read_csv(&lens.layers_csv).1.len(), 17);
    let out = render_run(&root.join("probe")).unwrap();
    let run = Run::load(&root.join("probe")).unwrap();
    assert_eq!(run.probe_best().map(|b| b.0), Some(probe.best_layer()));
    let html = std::fs::read_to_string(&out.report_html).unwrap();
    assert!(html.contains("<span class=\"ok\">converged</span> in every fold of every layer"));
}

#[test]
fn kinds_are_checked() {
    let root = fresh_dir("kinds");
    let lens = root.join("lens");
    write_lens(&lens);
    let probe = root.join("probe");
    write_probe(&probe);
    let profile = root.join("profile");
    write_fixture(&profile);
    // The wrong entry point names the folder and both kinds.
    let e = render_probe(&lens).unwrap_err();
    assert!(matches!(e, ReportError::WrongKind { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("a lens run, where a probe run was expected") && msg.contains("lens"), "{msg}");
    assert!(matches!(render_lens(&profile), Err(ReportError::WrongKind { .. })));
    // A kind nobody knows.
    let mut m = lens_manifest();
    m["kind"] = json!("dream");
    write_run(&root.join("unknown"), &m, &lens_metrics(), &lens_prompts());
    let e = render_run(&root.join("unknown")).unwrap_err();
    assert!(matches!(e, ReportError::Schema(sinkscope_schema::SchemaError::UnknownKind { .. })), "{e:?}");
    assert!(e.to_string().contains("manifest.json") && e.to_string().contains("\"dream\""), "{e}");
    // The two files disagree.
    write_run(&root.join("conflict"), &probe_manifest(), &lens_metrics(), &lens_prompts());
    let e = render_run(&root.join("conflict")).unwrap_err();
    assert!(
        matches!(e, ReportError::Schema(sinkscope_schema::SchemaError::Invalid { .. }))
            && e.to_string().contains("kind is \"lens\" but manifest.json says \"probe\""),
        "{e}"
    );
    // A lens curve of the wrong length.
    let mut m = lens_metrics();
    m["summary"]["token_weighted_nll"] = json!([1.0, 2.0]);
    write_run(&root.join("short"), &lens_manifest(), &m, &lens_prompts());
    let e = render_run(&root.join("short")).unwrap_err();
    assert!(
        e.to_string().contains("summary.token_weighted_nll has 2 entries, expected n_layers + 1 = 7"),
        "{e}"
    );
    // A probe layer beyond L.
    let mut m = probe_metrics();
    m["summary"]["per_layer"][0]["layer"] = json!(9);
    write_run(&root.join("beyond"), &probe_manifest(), &m, &probe_prompts());
    let e = render_run(&root.join("beyond")).unwrap_err();
    assert!(e.to_string().contains("summary.per_layer names layer 9, beyond n_layers = 6"), "{e}");
}

#[test]
fn an_off_scale_layer_is_named_and_the_axis_stays_readable() {
    let dir = fresh_dir("lens_off_scale");
    let mut m = lens_metrics();
    m["summary"]["token_weighted_ppl"][0] = json!(1.4e49);
    m["metrics"]["logit_lens_ppl"]["mean"][0] = json!(2.0e50);
    m["metrics"]["logit_lens_ppl"]["max"][0] = json!(4.0e50);
    write_run(&dir, &lens_manifest(), &m, &lens_prompts());
    let out = render_run(&dir).unwrap();
    let svg = std::fs::read_to_string(&out.plots[0].svg).unwrap();
    assert!(
        svg.contains("LogitLens perplexity (log; off scale: layer 0: 1.4e49)"),
        "the panel names the layer"
    );
    // The axis tops out at 10× the largest of the others (~8.1e3 → 1e5), not at 1e51.
    assert!(svg.contains("\n1e5\n"), "a tick at 1e5");
    assert!(
        !svg.contains("\n1e6\n") && !svg.contains("\n1e51\n"),
        "the axis does not stretch to the outlier"
    );
    // Without the outlier no layer is off scale.
    let plain = fresh_dir("lens_no_off_scale");
    write_lens(&plain);
    let out = render_run(&plain).unwrap();
    let svg = std::fs::read_to_string(&out.plots[0].svg).unwrap();
    assert!(svg.contains("LogitLens perplexity (log)") && !svg.contains("off scale"));
}

/// The lens and probe CSVs load with Python's csv module as is.
#[test]
fn lens_and_probe_csvs_load_in_python() {
    let root = fresh_dir("lens_probe_python");
    write_lens(&root.join("lens"));
    write_probe(&root.join("probe"));
    render_run(&root.join("lens")).unwrap();
    render_run(&root.join("probe")).unwrap();
    let script = r#"
import csv, sys
with open(sys.argv[1], newline="") as f:
    rows = list(csv.DictReader(f))
assert len(rows) == 7 and float(rows[6]["token_weighted_ppl"]) == 12.18, rows[6]
with open(sys.argv[2], newline="") as f:
    rows = list(csv.DictReader(f))
assert len(rows) == 7 and rows[5]["converged"] == "false" and float(rows[3]["probe_accuracy_mean"]) == 0.81
print("csv-ok")
"#;
    match std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(root.join("lens/layers.csv"))
        .arg(root.join("probe/layers.csv"))
        .output()
    {
        Ok(o) => assert!(o.status.success(), "python failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => missing_tool(&format!("python3 not available ({e}); the CSVs were checked in Rust only")),
    }
}
