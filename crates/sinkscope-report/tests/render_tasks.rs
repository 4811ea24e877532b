//! Tasks vs depth (the paper's Fig. 7): `render_tasks`, and `render_compare` with lens and
//! probe folders mixed in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;
use sinkscope_report::synthetic::{SyntheticLens, SyntheticProbe, SyntheticRun};
use sinkscope_report::{render_compare, render_tasks, ReportError, TaskDirs};

#[test]
fn tasks_plot_and_table_with_all_three_runs() {
    let root = fresh_dir("tasks_all");
    let (p, l, q) = (root.join("profile"), root.join("lens"), root.join("probe"));
    write_fixture(&p);
    write_lens(&l);
    write_probe(&q);
    let out_dir = root.join("tasks");
    let out =
        render_tasks(&TaskDirs { profile: Some(&p), lens: Some(&l), probe: Some(&q), mc: None }, &out_dir)
            .unwrap();
    assert_eq!(out.tasks_csv, out_dir.join("tasks.csv"));
    assert_eq!(out.tasks_html, out_dir.join("tasks.html"));
    assert_eq!(out.plots.len(), 1);
    assert_eq!(out.plots[0].stem, "tasks_fig7");
    assert_eq!(out.plots[0].svg, out_dir.join("plots/tasks_fig7.svg"));
    for f in out.files() {
        assert!(std::fs::metadata(&f).unwrap().len() > 100, "{}", f.display());
    }

    let (header, rows) = read_csv(&out.tasks_csv);
    assert_eq!(
        header,
        [
            "layer",
            "depth",
            "phase",
            "lens_nll",
            "lens_ppl",
            "lens_top1",
            "logit_lens_ppl_mean",
            "logit_lens_ppl_std",
            "probe_accuracy_mean",
            "probe_accuracy_std",
            "probe_baseline"
        ]
    );
    assert_eq!(rows.len(), L + 1);
    let phases: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(phases, ["Mix", "Mix", "Compress", "Compress", "Compress", "Refine", "Refine"]);
    let m = lens_metrics();
    for (l, r) in rows.iter().enumerate() {
        assert_eq!(r[4].parse::<f64>().unwrap(), m["summary"]["token_weighted_ppl"][l].as_f64().unwrap());
        assert_eq!(r[8].parse::<f64>().unwrap(), PROBE_ACC[l]);
        assert_eq!(r[10].parse::<f64>().unwrap(), 0.55);
        assert!((r[1].parse::<f64>().unwrap() - l as f64 / 6.0).abs() < 1e-12);
    }

    let p = &out.plots[0];
    assert_eq!(
        p.title,
        "Fig. 7 — Tiny-Valley-6L.Q8_0: LogitLens perplexity and probe accuracy vs depth l / L"
    );
    let svg = std::fs::read_to_string(&p.svg).unwrap();
    assert_eq!(check_xml(&svg), Ok("svg".into()));
    assert!(svg.contains(&format!("<title>{}</title>", p.title)));
    for t in [
        "depth l / L",
        "LogitLens perplexity (log)",
        "linear-probe accuracy",
        "Mix",
        "Compress",
        "Refine",
        "majority baseline",
    ] {
        assert!(svg.contains(t), "fig7 shows {t:?}");
    }
    let (w, h, colours) = decode_png(&p.png);
    assert_eq!((w, h), p.size);
    assert!(colours > 50);

    let html = std::fs::read_to_string(&out.tasks_html).unwrap();
    assert_eq!(external_references(&html), Vec::<String>::new());
    for s in [
        "<h1>sinkscope tasks vs depth: Tiny-Valley-6L.Q8_0</h1>",
        "Best probe layer: <strong>3</strong> (50 % of depth, in the <strong>Compress</strong> phase) with accuracy <strong>0.810</strong>",
        "LogitLens perplexity at the last layer: <strong>12.2</strong>; at the end of the Compress phase (layer 4, 67 % of depth) it is still 270",
        "<a href=\"tasks.csv\">",
    ] {
        assert!(html.contains(s), "tasks.html says {s:?}");
    }
}

#[test]
fn tasks_with_one_run_and_errors() {
    let root = fresh_dir("tasks_one");
    let (p, l, q) = (root.join("profile"), root.join("lens"), root.join("probe"));
    write_fixture(&p);
    write_lens(&l);
    write_probe(&q);
    // Probe only, no profile: one panel, no phases; the output may be the run folder itself.
    let out = render_tasks(&TaskDirs { profile: None, lens: None, probe: Some(&q), mc: None }, &q).unwrap();
    assert_eq!(out.tasks_html, q.join("tasks.html"));
    assert_eq!(out.plots[0].title, "Fig. 7 — Tiny-Valley-6L.Q8_0: probe accuracy vs depth l / L");
    let (header, _) = read_csv(&out.tasks_csv);
    assert_eq!(
        header,
        ["layer", "depth", "phase", "probe_accuracy_mean", "probe_accuracy_std", "probe_baseline"]
    );
    let html = std::fs::read_to_string(&out.tasks_html).unwrap();
    assert!(html.contains("No profile run was given"));

    // Errors.
    assert!(matches!(
        render_tasks(&TaskDirs { profile: Some(&p), lens: None, probe: None, mc: None }, &root.join("o")),
        Err(ReportError::NoTaskRuns)
    ));
    let e = render_tasks(&TaskDirs { profile: None, lens: Some(&p), probe: None, mc: None }, &root.join("o"))
        .unwrap_err();
    assert!(matches!(e, ReportError::WrongKind { .. }), "{e:?}");
    assert!(e.to_string().contains("a profile run, where a lens run was expected"), "{e}");
    let e =
        render_tasks(&TaskDirs { profile: Some(&l), lens: Some(&l), probe: None, mc: None }, &root.join("o"))
            .unwrap_err();
    assert!(matches!(e, ReportError::WrongKind { .. }), "{e:?}");
    // Another model's profile.
    let other = root.join("other");
    let mut man = manifest_json();
    man["model"]["sha256"] = json!("ffff");
    write_run(&other, &man, &metrics_json(), &prompt_lines());
    let e = render_tasks(
        &TaskDirs { profile: Some(&other), lens: Some(&l), probe: None, mc: None },
        &root.join("o"),
    )
    .unwrap_err();
    assert!(matches!(e, ReportError::ModelMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("ffff") && e.to_string().contains("ab12"), "{e}");
}

#[test]
fn compare_mixes_profile_lens_and_probe_runs() {
    let root = fresh_dir("compare_tasks");
    // Model A (hand-written): profile, lens, probe. Model B: profile only. Model C: probe only.
    let (pa, la, qa) = (root.join("a-profile"), root.join("a-lens"), root.join("a-probe"));
    write_fixture(&pa);
    write_lens(&la);
    write_probe(&qa);
    let b = SyntheticRun { n_layers: 20, model_path: "models/B-20L.gguf".into(), ..SyntheticRun::default() };
    b.write(&root.join("b-profile")).unwrap();
    let c = SyntheticRun { n_layers: 10, model_path: "models/C-10L.gguf".into(), ..SyntheticRun::default() };
    SyntheticProbe { model: c.clone(), n_samples: 20, not_converged: vec![] }
        .write(&root.join("c-probe"))
        .unwrap();
    // A second lens run of model A is listed but not used.
    write_lens(&root.join("a-lens-2"));
    let dirs: Vec<_> = ["a-lens", "a-profile", "b-profile", "c-probe", "a-probe", "a-lens-2"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    let out_dir = root.join("cmp");
    let out = render_compare(&dirs, &out_dir).unwrap();
    assert_eq!(out.labels, ["Tiny-Valley-6L.Q8_0", "B-20L", "C-10L"]);
    let stems: Vec<&str> = out.plots.iter().map(|p| p.stem.as_str()).collect();
    assert_eq!(stems, ["compare_fig1", "compare_fig6", "compare_fig7_1", "compare_fig7_2"]);
    assert_eq!(
        out.plots[2].title,
        "Fig. 7 — Tiny-Valley-6L.Q8_0: LogitLens perplexity and probe accuracy vs depth l / L"
    );
    assert_eq!(out.plots[3].title, "Fig. 7 — C-10L: probe accuracy vs depth l / L");
    for p in &out.plots {
        let svg = std::fs::read_to_string(&p.svg).unwrap();
        assert_eq!(check_xml(&svg), Ok("svg".into()));
        assert!(svg.contains(&format!("<title>{}</title>", p.title)));
        let (w, h, _) = decode_png(&p.png);
        assert_eq!((w, h), p.size);
    }
    // Fig. 1 has the two profile runs only.
    let fig1 = std::fs::read_to_string(&out.plots[0].svg).unwrap();
    assert!(fig1.contains("<title>Fig. 1 compared — 2 runs on normalised depth l / L</title>"));

    let text = std::fs::read_to_string(&out.compare_csv).unwrap();
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row {start}\n{text}"))
            .to_string()
    };
    assert_eq!(text.lines().next().unwrap(), "quantity,Tiny-Valley-6L.Q8_0,B-20L,C-10L");
    assert_eq!(line("blocks L,"), "blocks L,6,20,10");
    assert_eq!(line("heads,"), "heads,3,4,–");
    assert_eq!(
        line("LogitLens ppl at layer L (token-weighted),"),
        "LogitLens ppl at layer L (token-weighted),12.2,–,–"
    );
    let c_best = SyntheticProbe { model: c, n_samples: 20, not_converged: vec![] }.best_layer();
    assert_eq!(
        line("best probe layer (depth),"),
        format!("best probe layer (depth),3 (50 %),–,{c_best} ({} %)", c_best * 10)
    );
    assert!(line("best probe accuracy (baseline),")
        .starts_with("best probe accuracy (baseline),0.810 ± 0.020 (0.550),–,"));
    assert_eq!(line("probe solver converged,"), "probe solver converged,no (1 layer),–,yes");

    let html = std::fs::read_to_string(&out.compare_html).unwrap();
    assert_eq!(external_references(&html), Vec::<String>::new());
    assert_eq!(html.matches("<svg ").count(), 4);
    assert!(html.contains("not shown: another run of this kind and model was given first"));
    assert!(html.contains("matched to profile runs by the model's sha256"));

    // Lens runs alone: no Fig. 1.
    let out = render_compare(std::slice::from_ref(&la), &root.join("cmp-lens")).unwrap();
    let stems: Vec<&str> = out.plots.iter().map(|p| p.stem.as_str()).collect();
    assert_eq!(stems, ["compare_fig7_1"]);
    // Profile runs alone: as before, no lens/probe rows.
    let out = render_compare(std::slice::from_ref(&pa), &root.join("cmp-profile")).unwrap();
    assert_eq!(out.plots.len(), 2);
    assert!(!std::fs::read_to_string(&out.compare_csv).unwrap().contains("probe"));
}

#[test]
fn compare_refuses_an_ablate_folder() {
    let root = fresh_dir("compare_ablate");
    let dir = root.join("abl");
    write_ablate(&dir);
    let e = render_compare(&[dir], &root.join("o")).unwrap_err();
    assert!(matches!(e, ReportError::WrongKind { .. }), "{e:?}");
    assert!(e.to_string().contains("/baseline"), "the message says what to pass instead: {e}");
}

#[test]
fn synthetic_lens_probe_and_profile_share_a_model() {
    let root = fresh_dir("tasks_synthetic");
    let model =
        SyntheticRun { n_layers: 18, model_path: "models/S18.gguf".into(), ..SyntheticRun::default() };
    model.write(&root.join("p")).unwrap();
    SyntheticLens { model: model.clone() }.write(&root.join("l")).unwrap();
    SyntheticProbe { model, n_samples: 10, not_converged: vec![2] }.write(&root.join("q")).unwrap();
    let out = render_tasks(
        &TaskDirs {
            profile: Some(&root.join("p")),
            lens: Some(&root.join("l")),
            probe: Some(&root.join("q")),
            mc: None,
        },
        &root.join("t"),
    )
    .unwrap();
    let (_, rows) = read_csv(&out.tasks_csv);
    assert_eq!(rows.len(), 19);
}
