//! Lens and probe run folders (`docs/results-schema.md`, "`lens` runs", "`probe` runs"):
//! `layers.csv`, one plot (`plots/lens.{svg,png}` or `plots/probe.{svg,png}`) and a
//! self-contained `report.html`.
//!
//! - Lens: token-weighted LogitLens perplexity (log scale) and top-1 accuracy vs layer, with
//!   the per-prompt mean ± std band of `logit_lens_ppl` / `logit_lens_top1` and the model's
//!   own perplexity as a reference line.
//! - Probe: k-fold CV accuracy ± std (over folds) vs layer, the majority-class baseline, the
//!   best layer, and the solver's convergence (largest final gradient norm per layer;
//!   layers where some fold did not converge are marked).

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::csv::{fmt_cell, layers_csv_with, ExtraColumn};
use crate::html::{conventions, figure, num, opt, page, pct, run_details};
use crate::plots::xml_escape as esc;
use crate::plots::{
    draw_panel_pair, layer_range, DrawResult, Figure, Panel, RenderedPlot, Series, VLine, YScale, PALETTE,
};
use crate::schema::{Curve, Run, RunKind, TaskMetric};
use crate::{plots, write_file, PlotFiles, RenderSummary, ReportError, LAYERS_CSV, PLOTS_DIR, REPORT_HTML};

/// Colour of the "not converged" markers.
const NOT_CONVERGED: RGBColor = RGBColor(214, 39, 40);
/// Colour of reference lines (model perplexity, majority baseline).
const REFERENCE: RGBColor = RGBColor(90, 90, 90);

use crate::schema::at;
pub use crate::schema::MeanStd;

fn cells(v: &[Option<f64>]) -> Vec<String> {
    v.iter().map(|x| fmt_cell(*x)).collect()
}

/// `layers.csv` of a lens run: the metric columns, then `token_weighted_nll`,
/// `token_weighted_ppl`, `token_weighted_top1`.
pub(crate) fn lens_layers_csv(run: &Run) -> String {
    let extra: Vec<ExtraColumn> = vec![
        ("token_weighted_nll".into(), cells(&run.lens_nll())),
        ("token_weighted_ppl".into(), cells(&run.lens_ppl())),
        ("token_weighted_top1".into(), cells(&run.lens_top1())),
    ];
    layers_csv_with(&run.metrics, &extra)
}

/// `layers.csv` of a probe run: the metric columns (`probe_accuracy_mean`,
/// `probe_accuracy_std`, ...), then from `summary.per_layer`: `pooled_accuracy`,
/// `baseline_accuracy`, `converged` (`true`/`false`), `max_iterations`, `max_grad_norm`.
pub(crate) fn probe_layers_csv(run: &Run) -> String {
    let n = run.n_layers() + 1;
    let per = |f: &dyn Fn(&crate::schema::ProbeLayer) -> String| -> Vec<String> {
        (0..n).map(|l| run.probe.as_ref().and_then(|s| s.layer(l)).map(f).unwrap_or_default()).collect()
    };
    let mut extra: Vec<ExtraColumn> = Vec::new();
    if run.metrics.metric(TaskMetric::ProbeAccuracy.name()).is_none() {
        let acc = run.probe_accuracy();
        extra.push(("probe_accuracy_mean".into(), acc.iter().map(|p| fmt_cell(p.0)).collect()));
        extra.push(("probe_accuracy_std".into(), acc.iter().map(|p| fmt_cell(p.1)).collect()));
    }
    extra.push(("pooled_accuracy".into(), per(&|p| fmt_cell(p.pooled_accuracy))));
    extra.push(("baseline_accuracy".into(), per(&|p| fmt_cell(p.baseline_accuracy))));
    extra.push(("converged".into(), per(&|p| p.converged.map(|c| c.to_string()).unwrap_or_default())));
    extra.push((
        "max_iterations".into(),
        per(&|p| p.max_iterations.map(|c| c.to_string()).unwrap_or_default()),
    ));
    extra.push(("max_grad_norm".into(), per(&|p| fmt_cell(p.max_grad_norm))));
    layers_csv_with(&run.metrics, &extra)
}

fn points(v: &[MeanStd], x_scale: f64) -> Vec<(f64, Option<f64>, Option<f64>)> {
    v.iter().enumerate().map(|(l, &(m, s))| (l as f64 * x_scale, m, s)).collect()
}

fn plain(v: &[Option<f64>], x_scale: f64) -> Vec<(f64, Option<f64>, Option<f64>)> {
    v.iter().enumerate().map(|(l, &m)| (l as f64 * x_scale, m, None)).collect()
}

/// Per-layer `(min, max)` over prompts of metric `name` (infinite where unknown): the
/// limits of its mean ± std band.
fn min_max(run: &Run, name: &str) -> Vec<(f64, f64)> {
    let m = run.metrics.metric(name);
    (0..=run.n_layers())
        .map(|l| {
            let g = |c: Option<&Curve>| c.and_then(|c| at(c, l));
            (g(m.map(|m| &m.min)).unwrap_or(f64::NEG_INFINITY), g(m.map(|m| &m.max)).unwrap_or(f64::INFINITY))
        })
        .collect()
}

/// Layers whose perplexity is far off the rest (more than 1000× the median over layers;
/// typically layer 0, the embeddings read through the unembedding) and the axis cap that
/// keeps the others readable: 10× the largest of the rest. `None` when none is off.
pub(crate) fn ppl_off_scale(run: &Run) -> Option<(Vec<usize>, f64)> {
    let tw = run.lens_ppl();
    let pm = run.mean_std(TaskMetric::LogitLensPpl.name());
    let value = |l: usize| -> Option<f64> {
        let a = tw.get(l).copied().flatten();
        let b = pm.get(l).and_then(|p| p.0);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
        .filter(|v| v.is_finite() && *v > 0.0)
    };
    let mut vals: Vec<f64> = (0..=run.n_layers()).filter_map(value).collect();
    if vals.len() < 3 {
        return None;
    }
    vals.sort_by(f64::total_cmp);
    let median = vals[vals.len() / 2];
    let off: Vec<usize> =
        (0..=run.n_layers()).filter(|&l| value(l).is_some_and(|v| v > 1000.0 * median)).collect();
    if off.is_empty() {
        return None;
    }
    let rest = (0..=run.n_layers()).filter(|l| !off.contains(l)).filter_map(value).fold(0.0, f64::max);
    (rest > 0.0).then_some((off, 10.0 * rest))
}

/// The lens panels (perplexity, top-1) on `x = l · x_scale`.
pub(crate) fn lens_panels(run: &Run, x_scale: f64, x_range: (f64, f64), x_desc: &str) -> (Panel, Panel) {
    let n_tok = run.lens.as_ref().and_then(|s| s.n_predicted_tokens);
    let tw = match n_tok {
        Some(n) => format!("token-weighted ({n} tokens)"),
        None => "token-weighted".to_string(),
    };
    let mut ppl_series = vec![
        Series::line(
            "per-prompt mean ± std",
            PALETTE[1],
            points(&run.mean_std(TaskMetric::LogitLensPpl.name()), x_scale),
        )
        .with_band(0.18)
        .band_within(min_max(run, TaskMetric::LogitLensPpl.name())),
        Series::line(tw.clone(), PALETTE[0], plain(&run.lens_ppl(), x_scale)),
    ];
    if let Some(m) = run.lens.as_ref().and_then(|s| s.model_ppl.or(s.model_nll.map(f64::exp))) {
        ppl_series.push(Series::hline(format!("model ppl = {}", num(m)), REFERENCE, x_range, m));
    }
    let off = ppl_off_scale(run);
    let title = match &off {
        Some((layers, _)) => {
            let tw = run.lens_ppl();
            let what: Vec<String> = layers
                .iter()
                .take(3)
                .map(|&l| match tw.get(l).copied().flatten() {
                    Some(v) => format!("layer {l}: {v:.1e}"),
                    None => format!("layer {l}"),
                })
                .collect();
            format!("LogitLens perplexity (log; off scale: {})", what.join(", "))
        }
        None => "LogitLens perplexity (log)".to_string(),
    };
    let ppl = Panel {
        title,
        x_desc: x_desc.into(),
        y_desc: "perplexity".into(),
        x_range,
        x_integer: x_scale == 1.0,
        y_scale: off.map_or(YScale::Log, |(_, cap)| YScale::LogMax(cap)),
        series: ppl_series,
        shades: Vec::new(),
        legend: Some(SeriesLabelPosition::UpperRight),
        vlines: Vec::new(),
    };
    let top1 = Panel {
        title: "LogitLens top-1 accuracy".into(),
        x_desc: x_desc.into(),
        y_desc: "top-1 accuracy".into(),
        x_range,
        x_integer: x_scale == 1.0,
        y_scale: YScale::Fixed(0.0, 1.05),
        series: vec![
            Series::line(
                "per-prompt mean ± std",
                PALETTE[1],
                points(&run.mean_std(TaskMetric::LogitLensTop1.name()), x_scale),
            )
            .with_band(0.18)
            .band_within(min_max(run, TaskMetric::LogitLensTop1.name()))
            .clipped(Some((0.0, 1.0))),
            Series::line(tw, PALETTE[0], plain(&run.lens_top1(), x_scale)),
        ],
        shades: Vec::new(),
        legend: Some(SeriesLabelPosition::UpperLeft),
        vlines: Vec::new(),
    };
    (ppl, top1)
}

/// The probe accuracy panel on `x = l · x_scale`.
pub(crate) fn probe_accuracy_panel(run: &Run, x_scale: f64, x_range: (f64, f64), x_desc: &str) -> Panel {
    let acc = run.probe_accuracy();
    let folds = run.probe.as_ref().and_then(|s| s.folds);
    let label = match folds {
        Some(k) => format!("{k}-fold CV accuracy ± std"),
        None => "CV accuracy ± std".to_string(),
    };
    let mut series = vec![Series::line(label, PALETTE[0], points(&acc, x_scale))
        .with_band(0.2)
        .band_within(min_max(run, TaskMetric::ProbeAccuracy.name()))
        .with_markers()
        .clipped(Some((0.0, 1.0)))];
    if let Some(b) = run.probe_baseline() {
        series.push(Series::hline(format!("majority baseline = {}", num(b)), REFERENCE, x_range, b));
    }
    let bad = run.probe_not_converged();
    if !bad.is_empty() {
        let pts = acc
            .iter()
            .enumerate()
            .map(|(l, p)| (l as f64 * x_scale, if bad.contains(&l) { p.0 } else { None }, None))
            .collect();
        series.push(Series::line("solver not converged", NOT_CONVERGED, pts).dots());
    }
    let mut vlines = Vec::new();
    if let Some((l, a)) = run.probe_best() {
        vlines.push(VLine {
            x: l as f64 * x_scale,
            label: format!("best: layer {l} ({})", num(a)),
            color: PALETTE[2],
        });
    }
    Panel {
        title: "linear-probe accuracy".into(),
        x_desc: x_desc.into(),
        y_desc: "accuracy".into(),
        x_range,
        x_integer: x_scale == 1.0,
        y_scale: YScale::Tight(0.0, 1.0),
        series,
        shades: Vec::new(),
        legend: Some(SeriesLabelPosition::UpperRight),
        vlines,
    }
}

/// The lens plot of a run.
pub(crate) struct LensFig<'a>(pub &'a Run);

impl Figure for LensFig<'_> {
    fn stem(&self) -> String {
        "lens".into()
    }
    fn title(&self) -> String {
        format!("LogitLens — {}: perplexity (log) and top-1 accuracy vs layer", self.0.label())
    }
    fn size(&self) -> (u32, u32) {
        (1400, 500)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let run = self.0;
        let (a, b) = lens_panels(run, 1.0, layer_range(run), "layer l");
        let title = format!(
            "{} — LogitLens next-token prediction from X(l), {} prompts",
            run.label(),
            run.n_prompts()
        );
        draw_panel_pair(root, &title, (&a, &b), 0.5)
    }
}

/// The probe plot of a run.
pub(crate) struct ProbeFig<'a>(pub &'a Run);

impl Figure for ProbeFig<'_> {
    fn stem(&self) -> String {
        "probe".into()
    }
    fn title(&self) -> String {
        format!(
            "Linear probe — {}: CV accuracy vs layer, majority baseline, solver convergence",
            self.0.label()
        )
    }
    fn size(&self) -> (u32, u32) {
        (1400, 500)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let run = self.0;
        let x_range = layer_range(run);
        let acc = probe_accuracy_panel(run, 1.0, x_range, "layer l");
        let s = run.probe.as_ref();
        let bad = run.probe_not_converged();
        let grad: Vec<(f64, Option<f64>, Option<f64>)> = (0..=run.n_layers())
            .map(|l| {
                (
                    l as f64,
                    s.and_then(|s| s.layer(l)).and_then(|p| p.max_grad_norm).filter(|g| *g > 0.0),
                    None,
                )
            })
            .collect();
        let mut series =
            vec![Series::line("largest final ‖∇‖ over folds", PALETTE[4], grad.clone()).with_markers()];
        if !bad.is_empty() {
            let pts = grad
                .iter()
                .map(|&(x, g, _)| (x, if bad.contains(&(x as usize)) { g } else { None }, None))
                .collect();
            series.push(Series::line("not converged", NOT_CONVERGED, pts).dots());
        }
        let conv = match (s.and_then(|s| s.all_converged), bad.len()) {
            (Some(true), _) | (None, 0) => "solver: converged everywhere".to_string(),
            (_, 0) => "solver: NOT converged".to_string(),
            (_, n) => format!("solver: {n} layer{} NOT converged", if n == 1 { "" } else { "s" }),
        };
        let grad_panel = Panel {
            title: format!("{conv} (log ‖∇‖)"),
            x_desc: "layer l".into(),
            y_desc: "gradient norm".into(),
            x_range,
            x_integer: true,
            y_scale: YScale::Log,
            series,
            shades: Vec::new(),
            legend: Some(SeriesLabelPosition::UpperRight),
            vlines: Vec::new(),
        };
        let n = run.metrics.n_samples.map(|n| format!("{n} sentences, ")).unwrap_or_default();
        let title = format!(
            "{} — linear probe per layer ({n}{} classes)",
            run.label(),
            opt_usize(run.metrics.n_classes)
        );
        draw_panel_pair(root, &title, (&acc, &grad_panel), 0.64)
    }
}

fn opt_usize(v: Option<usize>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}

/// Renders a lens run already in memory into `run.dir`.
pub(crate) fn render_lens_run(run: &Run) -> Result<RenderSummary, ReportError> {
    let layers_csv = run.dir.join(LAYERS_CSV);
    write_file(&layers_csv, &lens_layers_csv(run))?;
    let rendered = vec![plots::render(&LensFig(run), &run.dir.join(PLOTS_DIR))?];
    let report_html = run.dir.join(REPORT_HTML);
    write_file(&report_html, &lens_html(run, &rendered))?;
    Ok(RenderSummary {
        kind: RunKind::Lens,
        layers_csv,
        plots: rendered.iter().map(PlotFiles::from).collect(),
        report_html,
    })
}

/// Renders a probe run already in memory into `run.dir`.
pub(crate) fn render_probe_run(run: &Run) -> Result<RenderSummary, ReportError> {
    let layers_csv = run.dir.join(LAYERS_CSV);
    write_file(&layers_csv, &probe_layers_csv(run))?;
    let rendered = vec![plots::render(&ProbeFig(run), &run.dir.join(PLOTS_DIR))?];
    let report_html = run.dir.join(REPORT_HTML);
    write_file(&report_html, &probe_html(run, &rendered))?;
    Ok(RenderSummary {
        kind: RunKind::Probe,
        layers_csv,
        plots: rendered.iter().map(PlotFiles::from).collect(),
        report_html,
    })
}

// ---------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------

fn header(run: &Run, what: &str, counts: &str) -> String {
    let mut b = String::new();
    let _ = writeln!(b, "<header><h1>sinkscope {}: {}</h1>", run.kind, esc(&run.label()));
    let _ = writeln!(
        b,
        "<p class=\"sub\">{what} · {} blocks, {counts} · result schema v{} · generated from <code>manifest.json</code>, \
         <code>metrics.json</code>, <code>prompts.jsonl</code> in this folder</p>",
        run.n_layers(),
        crate::schema::SCHEMA_VERSION
    );
    b.push_str(
        "<nav><a href=\"#summary\">Summary</a><a href=\"#plots\">Plots</a><a href=\"#layers\">Per-layer table</a>\
         <a href=\"#prompts\">Prompts</a><a href=\"#conventions-sec\">Conventions</a><a href=\"#run\">Run</a></nav></header>\n",
    );
    b
}

fn footer(run: &Run, b: &mut String) {
    b.push_str("<section id=\"conventions-sec\"><h2>Conventions</h2>\n");
    b.push_str(&conventions(run));
    b.push_str("</section>\n<section id=\"run\"><h2>Run</h2>\n");
    b.push_str(&run_details(run));
    b.push_str("</section>\n");
}

fn summary_list(b: &mut String, items: &[String]) {
    b.push_str("<section id=\"summary\"><h2>Summary</h2>\n<ul class=\"summary\">\n");
    for s in items {
        let _ = writeln!(b, "<li>{s}</li>");
    }
    b.push_str("</ul>\n</section>\n");
}

fn plots_section(b: &mut String, plots: &[RenderedPlot], caption: &str) {
    b.push_str("<section id=\"plots\"><h2>Plots</h2>\n");
    for p in plots {
        let _ = writeln!(b, "<h3>{}</h3>", esc(&p.title));
        b.push_str(&figure(p, caption));
    }
    b.push_str("</section>\n");
}

fn mean_pm(p: MeanStd) -> String {
    match p {
        (Some(v), Some(sd)) if sd > 0.0 => format!("{} <span class=\"note\">± {}</span>", num(v), num(sd)),
        (Some(v), _) => num(v),
        (None, _) => "–".into(),
    }
}

/// Sentences (HTML) summarising a lens run.
pub(crate) fn lens_sentences(run: &Run) -> Vec<String> {
    let l_max = run.n_layers();
    let s = run.lens.clone().unwrap_or_default();
    let ppl = run.lens_ppl();
    let top1 = run.lens_top1();
    let mut out = Vec::new();
    out.push(format!(
        "LogitLens reads every layer's residual stream X(l) through the model's final norm and unembedding and scores \
         the next token: {} predictions from {} prompts{}.",
        s.n_predicted_tokens.map(|n| n.to_string()).unwrap_or_else(|| "an unrecorded number of".into()),
        run.n_prompts(),
        if ppl.is_empty() { "" } else { "; perplexities are token-weighted over all predictions" }
    ));
    let p0 = ppl.first().copied().flatten();
    let pl = ppl.last().copied().flatten();
    out.push(format!(
        "Perplexity is <strong>{}</strong> at layer 0 (the embeddings) and <strong>{}</strong> at layer L = {l_max}; \
         the model's own perplexity is {} (NLL {}).",
        opt(p0),
        opt(pl),
        opt(s.model_ppl.or(s.model_nll.map(f64::exp))),
        opt(s.model_nll)
    ));
    if let Some(d) = s.lens_at_l_minus_model_nll {
        let tol = 1e-6 * s.model_nll.map(f64::abs).unwrap_or(1.0).max(1.0);
        let verdict = if d.abs() <= tol {
            "<span class=\"ok\">matches the model</span>"
        } else {
            "<span class=\"bad\">differs from the model — the lens at L should be the model itself</span>"
        };
        out.push(format!("At l = L the lens NLL minus the model's NLL is {d:.2e}: it {verdict}."));
    }
    if let (Some((best, bp)), Some(pl)) = (run.lens_best(), pl) {
        let within = ppl.iter().enumerate().find(|(_, v)| v.is_some_and(|v| v <= 2.0 * pl)).map(|(l, _)| l);
        let half = ppl.get(l_max / 2).copied().flatten();
        let mut t =
            format!("Lowest perplexity at layer {best} ({} of depth): {}.", pct(run.depth(best)), opt(bp));
        if let Some(w) = within {
            let _ = write!(
                t,
                " Perplexity first comes within 2× of the final layer's at layer {w} ({} of depth)",
                pct(run.depth(w))
            );
            if let Some(h) = half.filter(|_| pl > 0.0) {
                let _ = write!(t, "; at half depth (layer {}) it is {}× the final", l_max / 2, num(h / pl));
            }
            t.push_str(" — next-token prediction needs (nearly) the full depth.");
        }
        out.push(t);
    }
    if !top1.is_empty() {
        let best = top1.iter().enumerate().filter_map(|(l, v)| v.map(|v| (l, v))).fold(
            None,
            |b: Option<(usize, f64)>, (l, v)| match b {
                Some((_, bv)) if bv >= v => b,
                _ => Some((l, v)),
            },
        );
        out.push(format!(
            "Top-1 accuracy: {} at layer 0, {} at layer L{}.",
            opt(top1.first().copied().flatten()),
            opt(top1.last().copied().flatten()),
            best.map(|(l, v)| format!(", highest {} at layer {l}", num(v))).unwrap_or_default()
        ));
    }
    out
}

fn lens_layer_table(run: &Run) -> String {
    let (nll, ppl, top1) = (run.lens_nll(), run.lens_ppl(), run.lens_top1());
    let (pp, pt) =
        (run.mean_std(TaskMetric::LogitLensPpl.name()), run.mean_std(TaskMetric::LogitLensTop1.name()));
    let best = run.lens_best().map(|b| b.0);
    let mut s = String::from(
        "<div class=\"scroll\"><table id=\"layer-table\">\n<thead><tr><th>layer</th><th>depth</th>\
         <th>NLL (token-weighted)</th><th>perplexity (token-weighted)</th><th>top-1 (token-weighted)</th>\
         <th>perplexity (per-prompt mean ± std)</th><th>top-1 (per-prompt mean ± std)</th></tr></thead>\n<tbody>\n",
    );
    for l in 0..=run.n_layers() {
        let cls = if best == Some(l) { " class=\"massive\"" } else { "" };
        let g = |v: &[Option<f64>]| opt(v.get(l).copied().flatten());
        let _ = writeln!(
            s,
            "<tr{cls}><td>{l}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            pct(run.depth(l)),
            g(&nll),
            g(&ppl),
            g(&top1),
            mean_pm(pp.get(l).copied().unwrap_or((None, None))),
            mean_pm(pt.get(l).copied().unwrap_or((None, None))),
        );
    }
    s.push_str("</tbody></table></div>\n<p class=\"note\">Bold row: the layer with the lowest token-weighted NLL.</p>\n");
    s
}

fn lens_prompt_table(run: &Run) -> String {
    if run.prompts.is_empty() {
        return "<p class=\"note\">prompts.jsonl was not found or is empty.</p>\n".into();
    }
    let mut s = String::from(
        "<div class=\"scroll\"><table id=\"prompt-table\">\n<thead><tr><th class=\"l\">id</th><th>tokens</th>\
         <th>model NLL</th><th>lens NLL at L</th><th>lens ppl at L</th><th>lowest lens NLL (layer)</th></tr></thead>\n<tbody>\n",
    );
    for p in &run.prompts {
        let nll = p.metrics().and_then(|m| m.get(TaskMetric::LogitLensNll.name()));
        let last = nll.and_then(|c| c.last().copied().flatten());
        let ppl_l = p
            .metrics()
            .and_then(|m| m.get(TaskMetric::LogitLensPpl.name()))
            .and_then(|c| c.last().copied().flatten());
        let best = nll.and_then(|c| {
            c.iter().enumerate().filter_map(|(l, v)| v.map(|v| (l, v))).min_by(|a, b| a.1.total_cmp(&b.1))
        });
        let n = p.n_tokens();
        let _ = writeln!(
            s,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(p.id()),
            n.map(|n| n.to_string()).unwrap_or_else(|| "–".into()),
            opt(p.model_nll()),
            opt(last),
            opt(ppl_l),
            best.map(|(l, v)| format!("{} ({l})", num(v))).unwrap_or_else(|| "–".into()),
        );
    }
    s.push_str("</tbody></table></div>\n");
    s
}

/// The whole `report.html` of a lens run.
pub(crate) fn lens_html(run: &Run, plots: &[RenderedPlot]) -> String {
    let s = run.lens.clone().unwrap_or_default();
    let counts = format!(
        "{} prompts{}",
        run.n_prompts(),
        s.n_predicted_tokens.map(|n| format!(", {n} predicted tokens")).unwrap_or_default()
    );
    let mut b = header(run, "LogitLens", &counts);
    summary_list(&mut b, &lens_sentences(run));
    plots_section(
        &mut b,
        plots,
        "Left: LogitLens perplexity per layer on a log scale — blue: token-weighted over every prediction (exp of the \
         mean NLL), orange: mean ± std over prompts of each prompt's own perplexity (the band kept within the \
         prompts' min and max), grey dashed: the model's own perplexity. Layers more than 1000× the median perplexity \
         (usually layer 0) are drawn at the top edge, their values named in the panel title. Right: top-1 accuracy of \
         the lens, same colours.",
    );
    b.push_str("<section id=\"layers\"><h2>Per-layer table</h2>\n");
    b.push_str(
        "<p class=\"note\">Layer l is X(l) (0 = embedding output), read through the final norm and the unembedding. \
         Every column is in <a href=\"layers.csv\">layers.csv</a>.</p>\n",
    );
    b.push_str(&lens_layer_table(run));
    b.push_str("</section>\n<section id=\"prompts\"><h2>Prompts</h2>\n");
    b.push_str(&lens_prompt_table(run));
    b.push_str("</section>\n");
    footer(run, &mut b);
    page(&format!("sinkscope lens — {}", run.label()), &b)
}

/// Sentences (HTML) summarising a probe run.
pub(crate) fn probe_sentences(run: &Run) -> Vec<String> {
    let s = run.probe.clone().unwrap_or_default();
    let acc = run.probe_accuracy();
    let mut out = Vec::new();
    out.push(format!(
        "Linear probe: L2-regularised logistic regression (C = {}{}) on standardised, {}-pooled sentence vectors X(l) of \
         every layer; {}-fold stratified cross-validation (seed {}); {} sentences, {} classes.",
        opt(s.c),
        s.solver.as_deref().map(|x| format!(", solver: {}", esc(x))).unwrap_or_default(),
        esc(s.pool.as_deref().unwrap_or("?")),
        s.folds.map(|k| k.to_string()).unwrap_or_else(|| "k".into()),
        s.seed.map(|k| k.to_string()).unwrap_or_else(|| "?".into()),
        run.metrics.n_samples.map(|n| n.to_string()).unwrap_or_else(|| run.prompts.len().to_string()),
        opt_usize(run.metrics.n_classes),
    ));
    let base = run.probe_baseline();
    if let Some((l, a)) = run.probe_best() {
        let sd = acc.get(l).and_then(|p| p.1);
        let mut t = format!(
            "Best layer: <strong>{l}</strong> ({} of depth) with accuracy <strong>{}</strong>{}",
            pct(run.depth(l)),
            num(a),
            sd.map(|sd| format!(" ± {}", num(sd))).unwrap_or_default()
        );
        if let Some(b) = base {
            let _ = write!(
                t,
                ", against a majority-class baseline of {} ({:+.1} points)",
                num(b),
                (a - b) * 100.0
            );
        }
        t.push('.');
        let d = run.depth(l);
        if d > 0.1 && d < 0.9 {
            t.push_str(" The best layer lies inside the network, not at its end (the paper: middle layers suit embedding tasks).");
        }
        out.push(t);
    }
    let first = acc.first().and_then(|p| p.0);
    let last = acc.last().and_then(|p| p.0);
    out.push(format!(
        "Accuracy at layer 0 (the embeddings): {}; at the last layer L = {}: {}.",
        opt(first),
        run.n_layers(),
        opt(last)
    ));
    let bad = run.probe_not_converged();
    let iters = s.per_layer.iter().filter_map(|p| p.max_iterations).max();
    let grad = s
        .per_layer
        .iter()
        .filter_map(|p| p.max_grad_norm)
        .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g))));
    let detail = format!(
        "{}{}",
        iters.map(|i| format!("at most {i} iterations")).unwrap_or_default(),
        grad.map(|g| format!(
            "{}largest final gradient norm {g:.1e}",
            if iters.is_some() { ", " } else { "" }
        ))
        .unwrap_or_default()
    );
    let detail = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
    out.push(match (s.all_converged, bad.is_empty()) {
        (Some(false), _) | (_, false) => format!(
            "Solver: <span class=\"bad\">did not converge</span> in some fold{}{detail}; those accuracies are less reliable.",
            if bad.is_empty() {
                String::new()
            } else {
                format!(" at layer{} {}", if bad.len() == 1 { "" } else { "s" }, crate::html::compact_list(&bad.iter().map(|l| l.to_string()).collect::<Vec<_>>()))
            }
        ),
        (Some(true), true) => format!("Solver: <span class=\"ok\">converged</span> in every fold of every layer{detail}."),
        (None, true) => format!("Solver convergence was not recorded{detail}."),
    });
    // Label distribution.
    let mut labels: Vec<(String, usize)> = Vec::new();
    for p in &run.prompts {
        let Some(l) = p.label() else { continue };
        let k = l.to_string();
        match labels.iter_mut().find(|(x, _)| *x == k) {
            Some(e) => e.1 += 1,
            None => labels.push((k, 1)),
        }
    }
    if !labels.is_empty() {
        labels.sort();
        let parts: Vec<String> =
            labels.iter().map(|(k, n)| format!("<code>{}</code>: {n}", esc(k))).collect();
        out.push(format!("Labels in prompts.jsonl: {}.", parts.join(", ")));
    }
    out
}

fn probe_layer_table(run: &Run) -> String {
    let acc = run.probe_accuracy();
    let best = run.probe_best().map(|b| b.0);
    let s_ = run.probe.clone().unwrap_or_default();
    let mut s = String::from(
        "<div class=\"scroll\"><table id=\"layer-table\">\n<thead><tr><th>layer</th><th>depth</th>\
         <th>CV accuracy ± std</th><th>pooled accuracy</th><th>baseline</th><th class=\"l\">converged</th>\
         <th>max iterations</th><th>max ‖∇‖</th></tr></thead>\n<tbody>\n",
    );
    for l in 0..=run.n_layers() {
        let cls = if best == Some(l) { " class=\"massive\"" } else { "" };
        let p = s_.layer(l);
        let conv = match p.and_then(|p| p.converged) {
            Some(true) => "<span class=\"ok\">yes</span>",
            Some(false) => "<span class=\"bad\">no</span>",
            None => "–",
        };
        let _ = writeln!(
            s,
            "<tr{cls}><td>{l}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{conv}</td><td>{}</td><td>{}</td></tr>",
            pct(run.depth(l)),
            mean_pm(acc.get(l).copied().unwrap_or((None, None))),
            opt(p.and_then(|p| p.pooled_accuracy)),
            opt(p.and_then(|p| p.baseline_accuracy).or(run.probe_baseline())),
            p.and_then(|p| p.max_iterations).map(|i| i.to_string()).unwrap_or_else(|| "–".into()),
            p.and_then(|p| p.max_grad_norm).map(|g| format!("{g:.1e}")).unwrap_or_else(|| "–".into()),
        );
    }
    s.push_str("</tbody></table></div>\n<p class=\"note\">Bold row: the best layer.</p>\n");
    s
}

/// The whole `report.html` of a probe run.
pub(crate) fn probe_html(run: &Run, plots: &[RenderedPlot]) -> String {
    let counts = format!(
        "{} sentences, {} classes",
        run.metrics.n_samples.map(|n| n.to_string()).unwrap_or_else(|| run.prompts.len().to_string()),
        opt_usize(run.metrics.n_classes)
    );
    let mut b = header(run, "linear probe", &counts);
    summary_list(&mut b, &probe_sentences(run));
    plots_section(
        &mut b,
        plots,
        "Left: cross-validated accuracy of the linear probe on each layer's pooled sentence vectors (dots: mean over \
         folds, band: ± the standard deviation over folds), the majority-class baseline (grey dashed) and the best layer \
         (green). Right: the solver's largest final gradient norm over folds per layer (log); red marks layers where a \
         fold did not converge.",
    );
    b.push_str("<section id=\"layers\"><h2>Per-layer table</h2>\n");
    b.push_str(
        "<p class=\"note\">Layer l is X(l) (0 = embedding output). Pooled accuracy: correct test predictions over all \
         folds divided by the number of sentences. Every column is in <a href=\"layers.csv\">layers.csv</a>.</p>\n",
    );
    b.push_str(&probe_layer_table(run));
    b.push_str("</section>\n<section id=\"prompts\"><h2>Prompts</h2>\n");
    let _ = writeln!(
        b,
        "<p class=\"note\">{} sentences in prompts.jsonl{}.</p>",
        run.prompts.len(),
        if run.prompts_present { "" } else { " (file not found)" }
    );
    b.push_str("</section>\n");
    footer(run, &mut b);
    page(&format!("sinkscope probe — {}", run.label()), &b)
}
