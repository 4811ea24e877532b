//! `render_compare`: several runs on normalised depth.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sinkscope_report::{render_compare, synthetic::SyntheticRun, ReportError};

#[test]
fn compare_overlays_runs_of_different_depth() {
    let root = fresh_dir("compare");
    let a = root.join("run-a");
    write_fixture(&a);
    let b = root.join("run-b");
    SyntheticRun {
        n_layers: 30,
        n_heads: 9,
        model_path: "models/Deep-30L.gguf".into(),
        bos: true,
        ..Default::default()
    }
    .write(&b)
    .unwrap();
    let out_dir = root.join("out");
    let out = render_compare(&[a.clone(), b.clone()], &out_dir).unwrap();
    assert_eq!(out.labels, ["Tiny-Valley-6L.Q8_0", "Deep-30L"]);
    assert_eq!(out.compare_html, out_dir.join("compare.html"));
    assert_eq!(out.plots.len(), 2);
    assert_eq!(out.plots[1].stem, "compare_fig6");
    for f in out.files() {
        assert!(std::fs::metadata(&f).unwrap().len() > 100, "{}", f.display());
    }

    let svg = std::fs::read_to_string(&out.plots[0].svg).unwrap();
    assert_eq!(check_xml(&svg), Ok("svg".into()));
    assert!(svg.contains("<title>Fig. 1 compared — 2 runs on normalised depth l / L</title>"));
    assert!(svg.contains("depth l / L") && svg.contains("Tiny-Valley-6L.Q8_0") && svg.contains("Deep-30L"));
    let (w, h, colours) = decode_png(&out.plots[0].png);
    assert_eq!((w, h), out.plots[0].size);
    assert!(colours > 50);

    let html = std::fs::read_to_string(&out.compare_html).unwrap();
    assert_eq!(external_references(&html), Vec::<String>::new());
    assert_eq!(html.matches("<svg ").count(), 2);
    for s in [
        "id=\"compare-table\"",
        "Tiny-Valley-6L.Q8_0",
        "Deep-30L",
        "2 (33 %)",
        "corr_bos_entropy",
        "-0.93",
        "not BOS",
        "(BOS)",
    ] {
        assert!(html.contains(s), "compare.html has {s:?}");
    }

    // The CSV: one column per run, a row per quantity.
    let text = std::fs::read_to_string(&out.compare_csv).unwrap();
    let first = text.lines().next().unwrap();
    assert_eq!(first, "quantity,Tiny-Valley-6L.Q8_0,Deep-30L");
    assert!(text.lines().any(|l| l.starts_with("blocks L,6,30")));
    assert!(text.lines().any(|l| l.starts_with("bound_violations,0,0")));

    // The same model twice gets distinct labels.
    let out = render_compare(&[a.clone(), a], &root.join("out2")).unwrap();
    assert_ne!(out.labels[0], out.labels[1]);
}

#[test]
fn compare_needs_runs_and_reports_bad_ones() {
    let root = fresh_dir("compare_errors");
    assert!(matches!(render_compare(&[], &root.join("o")), Err(ReportError::NoRuns)));
    let missing = root.join("nope");
    let e = render_compare(&[missing], &root.join("o")).unwrap_err();
    assert!(e.to_string().contains("nope") && e.to_string().contains("manifest.json"), "{e}");
}
