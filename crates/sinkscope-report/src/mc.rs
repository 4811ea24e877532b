//! `mc` runs (`sinkscope lens --mc`): multiple-choice LogitLens accuracy per layer, the
//! multiple-choice half of the paper's Fig. 7. Writes `layers.csv` (the standard per-layer
//! CSV: `mc_accuracy` and `mc_accuracy_norm` with their intervals), `plots/mc.{svg,png}` and
//! `report.html`; [`mc_panel`] is the panel that Fig. 7 in `compare.html` adds per model.

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::html::{figure, opt, page, run_details};
use crate::plots::xml_escape as esc_html;
use crate::plots::{
    draw_panels, layer_range, metric_intervals, metric_points, DrawResult, Figure, Panel, RenderedPlot,
    Series, YScale, PALETTE,
};
use crate::schema::{Run, RunKind};
use crate::{
    csv, plots, write_file, PlotFiles, RenderSummary, ReportError, LAYERS_CSV, PLOTS_DIR, REPORT_HTML,
};

/// The accuracy panel of an `mc` run: `mc_accuracy` and `mc_accuracy_norm` with their 95 %
/// bootstrap intervals over items, and chance.
pub(crate) fn mc_panel(run: &Run, x_scale: f64, x_range: (f64, f64), x_desc: &str) -> Panel {
    let y = YScale::Fixed(0.0, 1.05);
    let line = |name: &str, label: &str, color| {
        Series::line(label, color, metric_points(run, name, x_scale))
            .with_band(0.2)
            .band_interval(metric_intervals(run, name))
            .with_markers()
            .clipped(Some((0.0, 1.0)))
    };
    let mut series = vec![
        line("mc_accuracy", "accuracy (summed log-likelihood)", PALETTE[0]),
        line("mc_accuracy_norm", "accuracy (per byte)", PALETTE[1]).dashed(),
    ];
    if let Some(c) = run.mc.as_ref().and_then(|m| m.chance) {
        series.push(Series::hline(format!("chance = {c:.2}"), RGBColor(120, 120, 120), x_range, c));
    }
    let n = run.mc.as_ref().and_then(|m| m.n_items).unwrap_or_else(|| run.n_prompts());
    Panel {
        title: format!("multiple-choice LogitLens accuracy ({n} items, 95 % CI)"),
        x_desc: x_desc.into(),
        y_desc: "accuracy".into(),
        x_range,
        x_integer: x_scale == 1.0,
        y_scale: y,
        series,
        shades: Vec::new(),
        legend: Some(SeriesLabelPosition::UpperLeft),
        vlines: Vec::new(),
    }
}

struct McFig<'a>(&'a Run);

impl Figure for McFig<'_> {
    fn stem(&self) -> String {
        "mc".into()
    }
    fn title(&self) -> String {
        format!("Fig. 7 (multiple choice) — {}: LogitLens accuracy per layer", self.0.label())
    }
    fn size(&self) -> (u32, u32) {
        (1000, 520)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let run = self.0;
        let data = run
            .manifest
            .data
            .as_ref()
            .and_then(|d| d.pointer("/dataset/name"))
            .and_then(|v| v.as_str())
            .unwrap_or("items")
            .to_string();
        let panel = mc_panel(run, 1.0, layer_range(run), "layer l");
        draw_panels(root, &format!("{} — {data}", run.label()), &[panel])
    }
}

/// Renders an `mc` run already in memory into `run.dir`.
pub(crate) fn render_mc_run(run: &Run) -> Result<RenderSummary, ReportError> {
    let layers_csv = run.dir.join(LAYERS_CSV);
    write_file(&layers_csv, &csv::layers_csv(&run.metrics))?;
    let rendered = vec![plots::render(&McFig(run), &run.dir.join(PLOTS_DIR))?];
    let report_html = run.dir.join(REPORT_HTML);
    write_file(&report_html, &mc_html(run, &rendered))?;
    Ok(RenderSummary {
        kind: RunKind::Mc,
        layers_csv,
        plots: rendered.iter().map(PlotFiles::from).collect(),
        report_html,
    })
}

fn mc_html(run: &Run, plots: &[RenderedPlot]) -> String {
    let s = run.mc.clone().unwrap_or_default();
    let mut b = String::new();
    let _ = writeln!(b, "<header><h1>sinkscope lens --mc: {}</h1>", esc_html(&run.label()));
    let _ = writeln!(
        b,
        "<p class=\"sub\">{} blocks, {} items · result schema v{}</p></header>",
        run.n_layers(),
        s.n_items.unwrap_or_else(|| run.n_prompts()),
        crate::schema::SCHEMA_VERSION
    );
    let acc = run.metrics.metric("mc_accuracy");
    let ci = |l: usize| {
        acc.and_then(|m| m.ci_at(l)).map(|(a, b)| format!(" [{a:.3}, {b:.3}]")).unwrap_or_default()
    };
    let l = run.n_layers();
    b.push_str("<section id=\"summary\"><h2>Summary</h2><ul class=\"summary\">\n");
    let _ = writeln!(
        b,
        "<li>Accuracy at the last layer (the model's own prediction): <strong>{}</strong>{} (95 % bootstrap interval over \
         items); chance {}.</li>",
        opt(acc.and_then(|m| m.mean_at(l))),
        ci(l),
        opt(s.chance)
    );
    if let Some(best) = &s.best_layer {
        let _ = writeln!(
            b,
            "<li>Best layer {} (depth {:.2}): accuracy {}{}.</li>",
            best.layer,
            run.depth(best.layer),
            opt(Some(best.value)),
            ci(best.layer)
        );
    }
    b.push_str(
        "<li>One small model and a few hundred items at most: read the curve with its interval. Secondary summaries of the \
         paper report generation improving to the last layer; how its multiple-choice panel was scored is not something we \
         could check.</li>\n</ul></section>\n<section id=\"plots\"><h2>Plots</h2>\n",
    );
    for p in plots {
        let _ = writeln!(b, "<h3>{}</h3>", esc_html(&p.title));
        b.push_str(&figure(
            p,
            "Each choice is scored at every layer by its LogitLens log-likelihood (final norm and unembedding applied to \
             X(l) at the positions that predict the choice's tokens, summed over them); the layer answers with the choice of \
             largest log-likelihood (solid) or largest log-likelihood per UTF-8 byte (dashed, lm-evaluation-harness's \
             acc_norm). Band = 95 % Poisson-bootstrap interval over items; grey = chance. Per-layer values: \
             <a href=\"layers.csv\">layers.csv</a>.",
        ));
    }
    b.push_str("</section>\n<section id=\"run\"><h2>Run</h2>\n");
    b.push_str(&run_details(run));
    b.push_str("</section>\n");
    page(&format!("sinkscope mc — {}", run.label()), &b)
}
