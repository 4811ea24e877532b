//! `ablate` folders (`docs/results-schema.md`, "`ablate` runs"): `ablate.json` plus
//! profile-style sub-runs (`baseline/`, `scale_<λ>/`, `mean_ablate/`, `only_<block>/`).
//!
//! [`render_ablate`] writes into the folder:
//! - `plots/ablate_fig4.{svg,png}`: the paper's Fig. 4 — the baseline's and the ablated
//!   (λ = 0) run's Fig.-1 curves (`entropy_norm`, `sink_rate`, `bos_norm` on a log scale)
//!   overlaid, the mean-ablation's too when present, the baseline's phases shaded and the
//!   ablated blocks marked;
//! - `plots/dose_response.{svg,png}`: valley depth (`valley_min_entropy_norm`),
//!   `max_bos_ratio`, `valley_mean_sink_rate` and `nll` against λ, with the mean-ablation
//!   and the one-by-one ablations as reference marks;
//! - `layers.csv`: the Fig.-4 curves side by side (`baseline_<metric>_mean`,
//!   `ablated_<metric>_mean`, `mean_ablate_<metric>_mean` and their `_std`);
//! - `dose_response.csv`: one row per intervention;
//! - `report.html`: self-contained, with the detection evidence and the results in words
//!   and tables;
//! - each sub-run's own profile report (`<sub-run>/report.html`, via
//!   [`crate::render_loaded_run`]), linked from the combined report.
//!
//! Resolution rules (documented in `docs/results-schema.md`): a sub-run folder is the
//! entry's `run`, else `baseline` for λ = 1 and `scale_<λ>` (λ written as the shortest
//! decimal: `scale_0.5`, `scale_0`) otherwise; the "ablated" run of Fig. 4 is the
//! `dose_response` entry with λ = 0, else the smallest λ; the valley is `ablate.json`'s
//! `valley`, else the baseline's compress phase; a quantity that is `null` or absent in
//! `ablate.json` is recomputed from the sub-run's `metrics.json` with the same definition.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::csv::{fmt_cell, table_csv};
use crate::html::{conventions, figure, num, opt, page, pct, run_details};
use crate::plots::{
    draw_panel_grid, draw_panels, fraction_range, layer_range, phase_shades, xml_escape as esc, DrawResult,
    Figure, Panel, RenderedPlot, Series, VLine, YScale, PALETTE,
};
use crate::schema::{
    AblateFile, Intervention, LayerRange, Manifest, Run, RunKind, ABLATE_FILE, MANIFEST_FILE,
};
use crate::{
    plots, render_loaded_run, write_file, PlotFiles, RenderSummary, ReportError, LAYERS_CSV, PLOTS_DIR,
    REPORT_HTML,
};

/// File name of the dose–response table inside an `ablate` folder.
pub const DOSE_RESPONSE_CSV: &str = "dose_response.csv";

/// The files written by [`render_ablate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AblateSummary {
    /// `layers.csv`: the Fig.-4 curves of the baseline, the ablated run and the
    /// mean-ablation side by side.
    pub layers_csv: PathBuf,
    /// `dose_response.csv`: one row per intervention.
    pub dose_response_csv: PathBuf,
    /// `plots/ablate_fig4` and `plots/dose_response`.
    pub plots: Vec<PlotFiles>,
    /// The combined `report.html`.
    pub report_html: PathBuf,
    /// The sub-runs' own reports, in the order of `dose_response`, `mean_ablate`, `one_by_one`.
    pub sub_runs: Vec<RenderSummary>,
}

impl AblateSummary {
    /// Every file written into the ablate folder itself (not the sub-runs'), in the order
    /// written.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.layers_csv.clone(), self.dose_response_csv.clone()];
        for p in &self.plots {
            v.push(p.svg.clone());
            v.push(p.png.clone());
        }
        v.push(self.report_html.clone());
        v
    }

    /// The combined report as a [`RenderSummary`] (what [`crate::render_run`] returns for an
    /// ablate folder).
    pub(crate) fn render_summary(&self) -> RenderSummary {
        RenderSummary {
            kind: RunKind::Ablate,
            layers_csv: self.layers_csv.clone(),
            plots: self.plots.clone(),
            report_html: self.report_html.clone(),
        }
    }
}

/// What an intervention is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Scale,
    MeanAblate,
    SunMean,
    ZeroDims,
    OneByOne,
}

impl Which {
    fn as_str(self) -> &'static str {
        match self {
            Which::Scale => "scale",
            Which::MeanAblate => "mean_ablate",
            Which::SunMean => "sun_mean_ablate",
            Which::ZeroDims => "zero_dims",
            Which::OneByOne => "one_by_one",
        }
    }
}

/// One intervention with its effective values and its sub-run (when the folder exists).
#[derive(Debug, Clone)]
struct Row {
    which: Which,
    entry: Intervention,
    /// The sub-run folder name relative to the ablate folder.
    folder: String,
    run: Option<Run>,
    /// valley_min_entropy_norm, max_bos_ratio, valley_mean_sink_rate, nll.
    values: [Option<f64>; 4],
}

impl Row {
    fn valley_min(&self) -> Option<f64> {
        self.values[0]
    }
    fn max_bos(&self) -> Option<f64> {
        self.values[1]
    }
    fn valley_sink(&self) -> Option<f64> {
        self.values[2]
    }
    fn nll(&self) -> Option<f64> {
        self.values[3]
    }
}

/// The whole folder in memory.
struct Ablation {
    dir: PathBuf,
    file: AblateFile,
    /// `DIR/manifest.json`, when present.
    manifest: Option<Manifest>,
    valley: Option<LayerRange>,
    /// Dose–response rows sorted by λ descending (baseline first), then mean-ablate, then
    /// one-by-one.
    rows: Vec<Row>,
    baseline: Run,
    /// Index into `rows` of the Fig.-4 ablated run.
    ablated: usize,
}

/// The default folder name of scale λ: `baseline` for 1, else `scale_<λ>`.
fn default_folder(scale: Option<f64>) -> String {
    match scale {
        Some(1.0) => "baseline".into(),
        Some(s) => format!("scale_{s}"),
        None => String::new(),
    }
}

fn valley_layers(valley: Option<LayerRange>, n_layers: usize) -> Vec<usize> {
    valley.map(|v| (v.first..=v.last.min(n_layers)).collect()).unwrap_or_default()
}

/// The four quantities recomputed from a sub-run (metrics.md, "Interventions").
fn recompute(run: &Run, valley: Option<LayerRange>) -> [Option<f64>; 4] {
    let layers = valley_layers(valley, run.n_layers());
    let ent: Vec<f64> = layers.iter().filter_map(|&l| run.metrics.mean_at("entropy_norm", l)).collect();
    let sink: Vec<f64> = layers.iter().filter_map(|&l| run.metrics.mean_at("sink_rate", l)).collect();
    let bos = run.metrics.summary.peak_bos_ratio.map(|p| p.value).or_else(|| {
        (0..=run.n_layers()).filter_map(|l| run.metrics.mean_at("bos_ratio", l)).reduce(f64::max)
    });
    [
        ent.iter().copied().reduce(f64::min),
        bos,
        (!sink.is_empty()).then(|| sink.iter().sum::<f64>() / sink.len() as f64),
        run.metrics.summary.nll,
    ]
}

fn load(dir: &Path) -> Result<Ablation, ReportError> {
    let file = AblateFile::load(&dir.join(ABLATE_FILE))?;
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = if manifest_path.is_file() { Some(Manifest::load(&manifest_path)?) } else { None };
    let baseline_folder = file
        .dose_response
        .iter()
        .find(|e| e.scale == Some(1.0))
        .and_then(|e| e.run.clone())
        .unwrap_or_else(|| "baseline".into());
    let baseline = Run::load_profile_style(&dir.join(&baseline_folder))?;
    let valley = file
        .valley
        .as_ref()
        .map(crate::schema::Valley::range)
        .or_else(|| baseline.metrics.summary.phases.and_then(|p| p.compress));

    let mut entries: Vec<(Which, Intervention)> = Vec::new();
    let mut dose = file.dose_response.clone();
    dose.sort_by(|a, b| b.scale.unwrap_or(f64::NAN).total_cmp(&a.scale.unwrap_or(f64::NAN)));
    entries.extend(dose.into_iter().map(|e| (Which::Scale, e)));
    entries.extend(file.mean_ablate.clone().map(|e| (Which::MeanAblate, e)));
    entries.extend(file.sun_mean_ablate.clone().map(|e| (Which::SunMean, e)));
    entries.extend(file.zero_dims.clone().map(|e| (Which::ZeroDims, e)));
    entries.extend(file.one_by_one.iter().cloned().map(|e| (Which::OneByOne, e)));

    let mut rows = Vec::new();
    for (which, entry) in entries {
        let folder = entry.run.clone().unwrap_or_else(|| match which {
            Which::Scale => default_folder(entry.scale),
            Which::MeanAblate => "mean_ablate".into(),
            Which::SunMean => "sun_mean".into(),
            Which::ZeroDims => "zero_dims".into(),
            Which::OneByOne => entry.block.map(|b| format!("only_{b}")).unwrap_or_default(),
        });
        let path = dir.join(&folder);
        let run = if folder.is_empty() {
            None
        } else if folder == baseline_folder {
            Some(baseline.clone())
        } else if path.join(crate::schema::METRICS_FILE).is_file() {
            Some(Run::load_profile_style(&path)?)
        } else {
            None
        };
        if let Some(r) = &run {
            if r.n_layers() != baseline.n_layers() {
                return Err(ReportError::Schema(sinkscope_schema::SchemaError::Invalid {
                    path: path.join(crate::schema::METRICS_FILE),
                    message: format!(
                        "n_layers is {}, but the baseline's is {}",
                        r.n_layers(),
                        baseline.n_layers()
                    ),
                }));
            }
        }
        let from_file =
            [entry.valley_min_entropy_norm, entry.max_bos_ratio, entry.valley_mean_sink_rate, entry.nll];
        let computed = run.as_ref().map(|r| recompute(r, valley)).unwrap_or([None; 4]);
        let mut values = [None; 4];
        for i in 0..4 {
            values[i] = from_file[i].filter(|v| v.is_finite()).or(computed[i]);
        }
        rows.push(Row { which, entry, folder, run, values });
    }
    // The Fig.-4 ablated run: λ = 0, else the smallest λ below 1; its folder must exist.
    let scale_rows: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].which == Which::Scale).collect();
    let ablated = scale_rows
        .iter()
        .copied()
        .find(|&i| rows[i].entry.scale == Some(0.0))
        .or_else(|| scale_rows.iter().copied().rfind(|&i| rows[i].entry.scale.is_some_and(|s| s < 1.0)))
        .ok_or_else(|| {
            ReportError::Schema(sinkscope_schema::SchemaError::Invalid {
                path: dir.join(ABLATE_FILE),
                message: "dose_response has no entry with a scale below 1 (nothing ablated)".into(),
            })
        })?;
    if rows[ablated].run.is_none() {
        let folder = dir.join(&rows[ablated].folder);
        return Err(ReportError::Schema(sinkscope_schema::SchemaError::Io {
            path: folder.join(crate::schema::METRICS_FILE),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the ablated (λ = 0) sub-run is missing",
            ),
        }));
    }
    Ok(Ablation { dir: dir.to_path_buf(), file, manifest, valley, rows, baseline, ablated })
}

impl Ablation {
    fn label(&self) -> String {
        self.manifest
            .as_ref()
            .and_then(Manifest::model_name)
            .or_else(|| self.baseline.manifest.model_name())
            .unwrap_or_else(|| {
                self.dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "ablate".into())
            })
    }

    fn component(&self) -> String {
        self.file.component.clone().unwrap_or_else(|| "mlp".into())
    }

    fn blocks_text(&self) -> String {
        let b: Vec<String> = self.file.blocks.iter().map(|b| b.to_string()).collect();
        match b.len() {
            0 => "no recorded block".into(),
            1 => format!("block {}", b[0]),
            _ => format!("blocks {}", b.join(", ")),
        }
    }

    fn baseline_row(&self) -> Option<&Row> {
        self.rows.iter().find(|r| r.which == Which::Scale && r.entry.scale == Some(1.0))
    }

    fn ablated_row(&self) -> &Row {
        &self.rows[self.ablated]
    }

    fn ablated_run(&self) -> &Run {
        self.ablated_row().run.as_ref().unwrap_or(&self.baseline)
    }

    fn mean_row(&self) -> Option<&Row> {
        self.rows.iter().find(|r| r.which == Which::MeanAblate)
    }

    fn lambda_text(&self) -> String {
        self.ablated_row().entry.scale.map(|s| format!("λ = {s}")).unwrap_or_else(|| "ablated".into())
    }
}

// ---------------------------------------------------------------------------------------
// CSVs
// ---------------------------------------------------------------------------------------

const FIG4_METRICS: [&str; 4] = ["entropy_norm", "sink_rate", "bos_norm", "bos_ratio"];

fn layers_csv(a: &Ablation) -> String {
    let mut runs: Vec<(&str, &Run)> = vec![("baseline", &a.baseline), ("ablated", a.ablated_run())];
    if let Some(r) = a.mean_row().and_then(|r| r.run.as_ref()) {
        runs.push(("mean_ablate", r));
    }
    let mut header = vec!["layer".to_string(), "depth".to_string()];
    for (tag, _) in &runs {
        for m in FIG4_METRICS {
            header.push(format!("{tag}_{m}_mean"));
            header.push(format!("{tag}_{m}_std"));
        }
    }
    let mut rows = vec![header];
    for l in 0..=a.baseline.n_layers() {
        let mut row = vec![l.to_string(), fmt_cell(Some(a.baseline.depth(l)))];
        for (_, r) in &runs {
            for m in FIG4_METRICS {
                let s = r.metrics.metric(m);
                row.push(fmt_cell(s.and_then(|s| s.mean_at(l))));
                row.push(fmt_cell(s.and_then(|s| s.std_at(l))));
            }
        }
        rows.push(row);
    }
    table_csv(&rows)
}

fn dose_csv(a: &Ablation) -> String {
    let mut rows = vec![[
        "intervention",
        "scale",
        "block",
        "dims",
        "run",
        "valley_min_entropy_norm",
        "max_bos_ratio",
        "valley_mean_sink_rate",
        "nll",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for r in &a.rows {
        let mut row = vec![
            r.which.as_str().to_string(),
            fmt_cell(r.entry.scale),
            r.entry.block.map(|b| b.to_string()).unwrap_or_default(),
            r.entry.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" "),
            r.folder.clone(),
        ];
        row.extend(r.values.iter().map(|v| fmt_cell(*v)));
        rows.push(row);
    }
    table_csv(&rows)
}

// ---------------------------------------------------------------------------------------
// Plots
// ---------------------------------------------------------------------------------------

fn curve(run: &Run, name: &str) -> Vec<(f64, Option<f64>, Option<f64>)> {
    run.mean_std(name).into_iter().enumerate().map(|(l, (m, s))| (l as f64, m, s)).collect()
}

/// The paper's Fig. 4.
struct Fig4<'a>(&'a Ablation);

impl Figure for Fig4<'_> {
    fn stem(&self) -> String {
        "ablate_fig4".into()
    }
    fn title(&self) -> String {
        let a = self.0;
        format!(
            "Fig. 4 — {}: baseline vs {} output at position 0 ablated ({}) in {}",
            a.label(),
            a.component(),
            a.lambda_text(),
            a.blocks_text()
        )
    }
    fn size(&self) -> (u32, u32) {
        (1500, 490)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let a = self.0;
        let base = &a.baseline;
        let abl = a.ablated_run();
        let mean = a.mean_row().and_then(|r| r.run.as_ref());
        let shades = phase_shades(base);
        let vlines: Vec<VLine> = a
            .file
            .blocks
            .iter()
            .map(|&b| VLine { x: b as f64, label: format!("ablated: {b}"), color: RGBColor(110, 110, 110) })
            .collect();
        let mk = |title: &str, name: &str, y: YScale, legend: Option<SeriesLabelPosition>| {
            let mut series = vec![
                Series::line("baseline (λ = 1)", PALETTE[0], curve(base, name))
                    .with_band(0.22)
                    .clipped(fraction_range(y)),
                Series::line(format!("ablated ({})", a.lambda_text()), PALETTE[3], curve(abl, name))
                    .with_band(0.15)
                    .clipped(fraction_range(y))
                    .dashed(),
            ];
            if let Some(m) = mean {
                series.push(Series::line("mean-ablated dims", PALETTE[2], curve(m, name)).dashed());
            }
            Panel {
                title: title.to_string(),
                x_desc: "layer l".into(),
                y_desc: name.to_string(),
                x_range: layer_range(base),
                x_integer: true,
                y_scale: y,
                series,
                shades: shades.clone(),
                legend,
                vlines: vlines.clone(),
            }
        };
        let panels = [
            mk("matrix entropy (normalised)", "entropy_norm", YScale::Fixed(0.0, 1.05), None),
            mk(
                "sink rate (ε-sink heads)",
                "sink_rate",
                YScale::Fixed(0.0, 1.05),
                Some(SeriesLabelPosition::LowerRight),
            ),
            mk("first-token norm ‖x₀‖ (log)", "bos_norm", YScale::Log, None),
        ];
        let title = format!(
            "{} — {} at position 0 × λ in {}: baseline (solid) vs {} (dashed); shading: the baseline's phases",
            a.label(),
            a.component(),
            a.blocks_text(),
            a.lambda_text()
        );
        draw_panels(root, &title, &panels)
    }
}

/// Dose–response: the four quantities against λ.
struct DoseResponse<'a>(&'a Ablation);

impl Figure for DoseResponse<'_> {
    fn stem(&self) -> String {
        "dose_response".into()
    }
    fn title(&self) -> String {
        format!(
            "Dose–response — {}: valley depth, max bos_ratio, valley sink rate and NLL vs λ",
            self.0.label()
        )
    }
    fn size(&self) -> (u32, u32) {
        (1300, 900)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let a = self.0;
        let scales: Vec<&Row> = a.rows.iter().filter(|r| r.which == Which::Scale).collect();
        let xs: Vec<f64> = scales.iter().filter_map(|r| r.entry.scale).collect();
        let x_lo = xs.iter().copied().fold(0.0_f64, f64::min);
        let x_hi = xs.iter().copied().fold(1.0_f64, f64::max);
        let pad = (x_hi - x_lo).max(1e-9) * 0.05;
        let x_range = (x_lo - pad, x_hi + pad);
        let mean = a.mean_row();
        let singles: Vec<&Row> = a.rows.iter().filter(|r| r.which == Which::OneByOne).collect();
        let baseline_valley = a.baseline_row().and_then(Row::valley_min);
        let mk = |title: &str, y_desc: &str, i: usize, y: YScale, legend: Option<SeriesLabelPosition>| {
            let pts = scales.iter().filter_map(|r| r.entry.scale.map(|s| (s, r.values[i], None))).collect();
            let mut series =
                vec![Series::line(format!("{} × λ in {}", a.component(), a.blocks_text()), PALETTE[0], pts)
                    .with_markers()];
            if i == 0 {
                if let Some(b) = baseline_valley.filter(|b| *b > 0.0) {
                    series.push(Series::hline("10× baseline", RGBColor(120, 120, 120), x_range, 10.0 * b));
                }
            }
            if let Some(v) = mean.and_then(|m| m.values[i]) {
                let dims: Vec<String> =
                    mean.map(|m| m.entry.dims.iter().map(|d| d.to_string()).collect()).unwrap_or_default();
                let label = if dims.is_empty() {
                    "mean-ablate".to_string()
                } else {
                    format!("mean-ablate dim{} {}", if dims.len() == 1 { "" } else { "s" }, dims.join(", "))
                };
                series.push(Series::hline(label, PALETTE[2], x_range, v));
            }
            for (k, r) in singles.iter().enumerate() {
                let x = r.entry.scale.unwrap_or(0.0);
                let label =
                    r.entry.block.map(|b| format!("block {b} alone")).unwrap_or_else(|| r.folder.clone());
                series.push(
                    Series::line(label, PALETTE[(4 + k) % PALETTE.len()], vec![(x, r.values[i], None)])
                        .dots(),
                );
            }
            Panel {
                title: title.to_string(),
                x_desc: "scale λ (1 = baseline, 0 = ablated)".into(),
                y_desc: y_desc.to_string(),
                x_range,
                x_integer: false,
                y_scale: y,
                series,
                shades: Vec::new(),
                legend,
                vlines: Vec::new(),
            }
        };
        let panels = [
            mk(
                "valley depth: min entropy_norm over the baseline valley (log)",
                "valley_min_entropy_norm",
                0,
                YScale::Log,
                Some(SeriesLabelPosition::UpperRight),
            ),
            mk("max bos_ratio over layers (log)", "max_bos_ratio", 1, YScale::Log, None),
            mk(
                "mean sink_rate over the baseline valley",
                "valley_mean_sink_rate",
                2,
                YScale::Fixed(0.0, 1.05),
                None,
            ),
            mk("next-token NLL of the prompts", "nll", 3, YScale::Tight(0.0, f64::MAX), None),
        ];
        let valley = a
            .valley
            .map(|v| format!("valley = baseline layers {}–{}", v.first, v.last))
            .unwrap_or_else(|| "no baseline valley".into());
        let title =
            format!("{} — dose–response of the position-0 {} ablation ({valley})", a.label(), a.component());
        draw_panel_grid(root, &title, &panels, (2, 2))
    }
}

// ---------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => Some(b / a),
        _ => None,
    }
}

fn arrow(a: Option<f64>, b: Option<f64>) -> String {
    format!("{} → {}", opt(a), opt(b))
}

/// The peak of a run's mean `bos_ratio` over the layers: `(layer, value)`.
fn peak_ratio(run: &Run) -> Option<(usize, f64)> {
    (0..=run.n_layers())
        .filter_map(|l| run.metrics.mean_at("bos_ratio", l).map(|v| (l, v)))
        .reduce(|best, x| if x.1 > best.1 { x } else { best })
}

/// A multi-stage model, in words: zeroing `blocks` left the valley (its minimum entropy rose
/// less than 10×) while later blocks rebuilt the first-token ratio to at least half the
/// baseline's peak, after the last ablated block. `None` otherwise.
fn rebuilt_stage(a: &Ablation, row: &Row, blocks: &[usize]) -> Option<String> {
    let run = row.run.as_ref()?;
    let last = blocks.iter().copied().max()?;
    let (l0, r0) = peak_ratio(&a.baseline)?;
    let (l1, r1) = peak_ratio(run)?;
    let rise = ratio(a.baseline_row().and_then(Row::valley_min), row.valley_min())?;
    if rise >= 10.0 || r1 < 0.5 * r0 || l1 <= last {
        return None;
    }
    let names: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
    Some(format!(
        "<strong>A multi-stage model</strong>: with block{} {} zeroed at position 0 the valley stays (its minimum \
         entropy rises only {}×) because later blocks rebuild the first-token ratio: it peaks at {} at layer {l1} \
         ({} of depth), against {} at layer {l0} on the baseline. The massive activation is written in more than one \
         stage; ablate the later stage too (<code>--layers {},{l1}</code>, or <code>--one-by-one</code> to see each).",
        if blocks.len() == 1 { "" } else { "s" },
        names.join(", "),
        num(rise),
        num(r1),
        pct(a.baseline.depth(l1)),
        num(r0),
        names.join(","),
    ))
}

fn sentences(a: &Ablation) -> Vec<String> {
    let mut out = Vec::new();
    let scales: Vec<String> = a
        .rows
        .iter()
        .filter(|r| r.which == Which::Scale)
        .filter_map(|r| r.entry.scale)
        .map(|s| s.to_string())
        .collect();
    let comp = a.component();
    let control = if comp == "attn" {
        " This is the attention-output control, not the paper's MLP ablation."
    } else {
        ""
    };
    out.push(format!(
        "The <strong>{}</strong> output at position 0 (the first token) of <strong>{}</strong> was multiplied by λ ∈ {{{}}}; \
         λ = 0 removes it (the paper's ablation), λ = 1 is the unmodified baseline.{control}",
        esc(&comp),
        esc(&a.blocks_text()),
        scales.join(", ")
    ));
    if let Some(src) = &a.file.blocks_source {
        out.push(format!("Blocks: {}.", esc(src)));
    }
    if a.file.evidence.is_empty() {
        out.push("No detection evidence was recorded (the blocks were given on the command line).".into());
    } else {
        let parts: Vec<String> = a
            .file
            .evidence
            .iter()
            .map(|e| {
                let l = e.layer_index();
                let mut t = l
                    .map(|l| format!("block {l} ({} of depth)", pct(a.baseline.depth(l))))
                    .unwrap_or_else(|| "a block".into());
                if let Some(r) = e.mlp_ratio {
                    let _ = write!(
                        t,
                        ": its MLP output at position 0 is {}× the median of the other positions",
                        num(r)
                    );
                }
                if let Some(g) = e.bos_ratio_gain {
                    let _ = write!(
                        t,
                        "{} bos_ratio jumps ×{} across it",
                        if e.mlp_ratio.is_some() { ", and" } else { ":" },
                        num(g)
                    );
                }
                t
            })
            .collect();
        out.push(format!(
            "Detected automatically on the baseline (metrics.md, \"Interventions\": MLP output at position 0 ≥ 10× the others' \
             median and a bos_ratio jump ≥ 3×): {}.",
            parts.join("; ")
        ));
    }
    match a.valley {
        Some(v) => out.push(format!(
            "The valley quantities below are taken over {}{}.",
            crate::html::range_text(&v, &a.baseline),
            match a.file.valley.as_ref().and_then(|v| v.rule.as_deref()) {
                Some(rule) => format!(" ({})", esc(rule)),
                None => " (the baseline's compression valley)".to_string(),
            }
        )),
        None => {
            out.push("The baseline has no compression valley, so the valley quantities are undefined.".into())
        }
    }
    let base = a.baseline_row();
    let abl = a.ablated_row();
    let lam = a.lambda_text();
    let bv = base.and_then(Row::valley_min);
    let av = abl.valley_min();
    let rise = ratio(bv, av);
    let (bs, as_) = (base.and_then(Row::valley_sink), abl.valley_sink());
    let mut t = format!(
        "At {lam} the minimum entropy_norm over the valley goes {}{}; its mean sink_rate {}; max bos_ratio {}; the prompts' NLL {}",
        arrow(bv, av),
        rise.map(|r| format!(" (<strong>{}×</strong>)", num(r))).unwrap_or_default(),
        arrow(bs, as_),
        arrow(base.and_then(Row::max_bos), abl.max_bos()),
        arrow(base.and_then(Row::nll), abl.nll()),
    );
    if let (Some(x), Some(y)) = (base.and_then(Row::nll), abl.nll()) {
        let _ = write!(t, " ({:+.3})", y - x);
    }
    t.push('.');
    let sink_falls = matches!((bs, as_), (Some(b), Some(x)) if x < b);
    match rise {
        Some(r) if r >= 10.0 && sink_falls => t.push_str(
            " <span class=\"ok\">The compression valley disappears</span> (≥ 10× rise of its minimum entropy and the sink rate falls)."
        ),
        Some(r) if r >= 10.0 => t.push_str(
            " The valley's minimum entropy rises ≥ 10×, but <span class=\"bad\">the sink rate does not fall</span>."
        ),
        Some(_) => t.push_str(" <span class=\"bad\">The compression valley does not disappear</span> by the ≥ 10× criterion."),
        None => {}
    }
    out.push(t);
    let ablated_blocks = if a.ablated_row().entry.block.is_some() {
        a.ablated_row().entry.block.into_iter().collect()
    } else {
        a.file.blocks.clone()
    };
    let zeroed = a.ablated_row().entry.scale == Some(0.0) || a.ablated_row().which == Which::OneByOne;
    if let Some(s) = zeroed.then(|| rebuilt_stage(a, a.ablated_row(), &ablated_blocks)).flatten() {
        out.push(s);
    }
    for r in a.rows.iter().filter(|r| {
        r.which == Which::OneByOne && r.entry.block.map(|b| vec![b]) != Some(ablated_blocks.clone())
    }) {
        if let Some(s) = rebuilt_stage(a, r, &r.entry.block.into_iter().collect::<Vec<_>>()) {
            out.push(s);
        }
    }
    // The largest λ that already removes the valley.
    if let Some(bv) = bv.filter(|b| *b > 0.0) {
        let gone: Vec<f64> = a
            .rows
            .iter()
            .filter(|r| r.which == Which::Scale)
            .filter(|r| r.valley_min().is_some_and(|v| v >= 10.0 * bv))
            .filter_map(|r| r.entry.scale)
            .collect();
        if let Some(max) = gone.iter().copied().reduce(f64::max) {
            out.push(format!(
                "The valley minimum is ≥ 10× the baseline's already at λ = {max} (and at {} scale{} in all).",
                gone.len(),
                if gone.len() == 1 { "" } else { "s" }
            ));
        }
    }
    match a.mean_row() {
        Some(m) => {
            let dims: Vec<String> = m.entry.dims.iter().map(|d| d.to_string()).collect();
            out.push(format!(
                "Mean-ablation (Sun et al.): dimension{} <strong>{}</strong> at position 0 (found from the top activations) \
                 replaced by {} mean over the other positions: valley min entropy_norm {}{}, mean sink_rate {}, max bos_ratio {}, NLL {}.",
                if dims.len() == 1 { "" } else { "s" },
                if dims.is_empty() { "?".into() } else { dims.join(", ") },
                if dims.len() == 1 { "its" } else { "their" },
                arrow(bv, m.valley_min()),
                ratio(bv, m.valley_min()).map(|r| format!(" ({}×)", num(r))).unwrap_or_default(),
                arrow(bs, m.valley_sink()),
                arrow(base.and_then(Row::max_bos), m.max_bos()),
                arrow(base.and_then(Row::nll), m.nll()),
            ));
        }
        None => out.push("The mean-ablation of the massive dimensions was not run.".into()),
    }
    let singles: Vec<String> = a
        .rows
        .iter()
        .filter(|r| r.which == Which::OneByOne)
        .map(|r| {
            format!(
                "block {}: valley min {}{}",
                r.entry.block.map(|b| b.to_string()).unwrap_or_else(|| "?".into()),
                opt(r.valley_min()),
                ratio(bv, r.valley_min()).map(|x| format!(" ({}×)", num(x))).unwrap_or_default()
            )
        })
        .collect();
    if !singles.is_empty() {
        out.push(format!("Each block ablated alone: {}.", singles.join("; ")));
    }
    out
}

fn run_link(a: &Ablation, r: &Row) -> String {
    if r.folder.is_empty() {
        return "–".into();
    }
    let has_report = a.dir.join(&r.folder).join(REPORT_HTML).is_file();
    if has_report {
        format!("<a href=\"{0}/report.html\"><code>{0}</code></a>", esc(&r.folder))
    } else {
        format!("<code>{}</code>", esc(&r.folder))
    }
}

fn intervention_table(a: &Ablation, id: &str, rows: &[&Row], first_col: &str) -> String {
    let base = a.baseline_row();
    let bv = base.and_then(Row::valley_min);
    let bn = base.and_then(Row::nll);
    let mut s = format!(
        "<div class=\"scroll\"><table id=\"{id}\">\n<thead><tr><th>{first_col}</th><th class=\"l\">run</th>\
         <th>valley min entropy_norm</th><th>× baseline</th><th>max bos_ratio</th><th>valley mean sink_rate</th>\
         <th>NLL</th><th>Δ NLL</th><th>bound violations</th></tr></thead>\n<tbody>\n"
    );
    for r in rows {
        let first = match r.which {
            Which::Scale => r.entry.scale.map(|x| x.to_string()).unwrap_or_else(|| "?".into()),
            Which::MeanAblate | Which::SunMean | Which::ZeroDims => {
                let dims = r.entry.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
                match r.which {
                    Which::SunMean => format!("{dims}: mean over prompts (Sun et al.)"),
                    Which::ZeroDims => format!("{dims}: zero"),
                    _ => format!("{dims}: mean over the prompt's other positions"),
                }
            }
            Which::OneByOne => r.entry.block.map(|b| b.to_string()).unwrap_or_else(|| "?".into()),
        };
        let dn = match (bn, r.nll()) {
            (Some(b), Some(x)) => format!("{:+.3}", x - b),
            _ => "–".into(),
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{dn}</td><td>{}</td></tr>",
            esc(&first),
            run_link(a, r),
            opt(r.valley_min()),
            opt(ratio(bv, r.valley_min())),
            opt(r.max_bos()),
            opt(r.valley_sink()),
            opt(r.nll()),
            bound_cell(r),
        );
    }
    s.push_str("</tbody></table></div>\n");
    s
}

/// Bound violations of an intervention: from `ablate.json`, else the sub-run's summary.
fn bound_cell(r: &Row) -> String {
    let n =
        r.entry.bound_violations.or_else(|| r.run.as_ref().and_then(|x| x.metrics.summary.bound_violations));
    match n {
        Some(0) => "<span class=\"ok\">0</span>".into(),
        Some(n) => format!("<span class=\"bad\">{n}</span>"),
        None => "–".into(),
    }
}

fn evidence_table(a: &Ablation) -> String {
    if a.file.evidence.is_empty() {
        return "<p class=\"note\">ablate.json records no detection evidence.</p>\n".into();
    }
    let mut s = String::from(
        "<table id=\"evidence-table\"><thead><tr><th>block</th><th>depth</th><th class=\"l\">hook</th>\
         <th>MLP ‖out‖ at position 0</th><th>median of the others</th><th>ratio</th>\
         <th>bos_ratio before → after</th><th>gain</th><th>prompts</th><th class=\"l\">ablated</th></tr></thead><tbody>\n",
    );
    for e in &a.file.evidence {
        let l = e.layer_index();
        let before_after = match (e.bos_ratio_before, e.bos_ratio_after) {
            (None, None) => "–".to_string(),
            (b, c) => format!("{} → {}", opt(b), opt(c)),
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{before_after}</td>\
             <td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            l.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
            l.map(|l| pct(a.baseline.depth(l))).unwrap_or_else(|| "–".into()),
            e.hook.as_deref().map(|h| format!("<code>{}</code>", esc(h))).unwrap_or_else(|| "–".into()),
            opt(e.mlp_out_bos_norm),
            opt(e.mlp_out_other_median),
            opt(e.mlp_ratio),
            opt(e.bos_ratio_gain),
            e.n_prompts.map(|n| n.to_string()).unwrap_or_else(|| "–".into()),
            if l.is_some_and(|l| a.file.blocks.contains(&l)) { "yes" } else { "no" }
        );
    }
    s.push_str("</tbody></table>\n<p class=\"note\">The rule (metrics.md, \"Interventions\"): a block creates the \
                massive activation when its MLP output at position 0 is ≥ 10× the median over the other positions and \
                bos_ratio rises ≥ 3× across it.</p>\n");
    s
}

fn report_html(a: &Ablation, plots: &[RenderedPlot]) -> String {
    let label = a.label();
    let mut b = String::new();
    let _ = writeln!(b, "<header><h1>sinkscope ablate: {}</h1>", esc(&label));
    let _ = writeln!(
        b,
        "<p class=\"sub\">{} output at position 0 × λ in {} · {} blocks, {} prompts · result schema v{} · generated from \
         <code>ablate.json</code> and the sub-run folders</p>",
        esc(&a.component()),
        esc(&a.blocks_text()),
        a.baseline.n_layers(),
        a.baseline.n_prompts(),
        crate::schema::SCHEMA_VERSION
    );
    b.push_str(
        "<nav><a href=\"#summary\">Summary</a><a href=\"#plots\">Plots</a><a href=\"#dose\">Dose–response</a>\
         <a href=\"#evidence\">Evidence</a><a href=\"#mean-ablate\">Mean ablation</a><a href=\"#runs\">Runs</a>\
         <a href=\"#run\">Run</a></nav></header>\n",
    );
    b.push_str("<section id=\"summary\"><h2>Summary</h2>\n<ul class=\"summary\">\n");
    for s in sentences(a) {
        let _ = writeln!(b, "<li>{s}</li>");
    }
    b.push_str("</ul>\n</section>\n<section id=\"plots\"><h2>Plots</h2>\n");
    for p in plots {
        let _ = writeln!(b, "<h3>{}</h3>", esc(&p.title));
        let caption = match p.stem.as_str() {
            "ablate_fig4" => format!(
                "The paper's Fig. 4: Fig.-1 curves of the baseline (solid, mean ± std band) and of the run with the {} output \
                 at position 0 scaled to {} in {} (dashed){}; background: the baseline's Mix / Compress / Refine phases; \
                 dashed vertical lines: the ablated blocks.",
                esc(&a.component()),
                a.lambda_text(),
                esc(&a.blocks_text()),
                if a.mean_row().and_then(|r| r.run.as_ref()).is_some() { "; green dashed: the mean-ablation" } else { "" }
            ),
            _ => "Dose–response against λ: the valley's depth (minimum entropy_norm over the baseline's valley, log; the grey \
                  dashed line is 10× the baseline's), the largest bos_ratio, the valley's mean sink rate and the prompts' \
                  next-token NLL. Horizontal green line: the mean-ablation; single dots: each block ablated alone."
                .to_string(),
        };
        b.push_str(&figure(p, &caption));
    }
    b.push_str("</section>\n<section id=\"dose\"><h2>Dose–response</h2>\n");
    let scales: Vec<&Row> = a.rows.iter().filter(|r| r.which == Which::Scale).collect();
    b.push_str(&intervention_table(a, "dose-table", &scales, "λ"));
    b.push_str(
        "<p class=\"note\">Values from <code>ablate.json</code>; any it leaves out are recomputed from the sub-run's \
         <code>metrics.json</code> with the same definitions. All rows are in <a href=\"dose_response.csv\">dose_response.csv</a>; \
         the Fig.-4 curves in <a href=\"layers.csv\">layers.csv</a>.</p>\n",
    );
    let singles: Vec<&Row> = a.rows.iter().filter(|r| r.which == Which::OneByOne).collect();
    if !singles.is_empty() {
        b.push_str("<h3>One block at a time</h3>\n");
        b.push_str(&intervention_table(a, "one-by-one-table", &singles, "block"));
    }
    b.push_str("</section>\n<section id=\"evidence\"><h2>Detection evidence</h2>\n");
    b.push_str(&evidence_table(a));
    b.push_str("</section>\n<section id=\"mean-ablate\"><h2>Mean ablation of the massive dimensions</h2>\n");
    let dim_rows: Vec<&Row> = [Which::SunMean, Which::ZeroDims, Which::MeanAblate]
        .iter()
        .filter_map(|w| a.rows.iter().find(|r| r.which == *w))
        .collect();
    if dim_rows.is_empty() {
        b.push_str("<p class=\"note\">Not run.</p>\n");
    } else {
        b.push_str(&intervention_table(a, "mean-ablate-table", &dim_rows, "dimensions"));
        b.push_str(
            "<p class=\"note\">The massive dimensions of X(block) at position 0, three ways: <strong>Sun et al.'s \
             mean-ablation</strong> (each set to its mean at position 0 over the prompt set, measured in a first pass over \
             the same prompts), <strong>zero-ablation</strong> (Sun et al.'s contrast), and the mean over the <em>other \
             positions of the same prompt</em> (<code>mean_others</code>; for a first-token massive activation this is \
             close to zero-ablation, and it is not Sun et al.'s operation). Sun et al. (2024) report for LLaMA2-7B that \
             mean-ablation leaves perplexity unchanged while zero-ablation destroys the model (reported, not reproduced \
             here); Δ NLL is against the baseline on the same prompts.</p>\n",
        );
    }
    if let Some(m) = dim_rows.first() {
        let mut notes = Vec::new();
        if let Some(site) = &m.entry.site {
            notes.push(format!("edited at <code>{}</code>", esc(site)));
        }
        if let Some(rule) = &m.entry.rule {
            notes.push(format!("dimensions chosen as: {}", esc(rule)));
        }
        if let Some(sun) = a.rows.iter().find(|r| r.which == Which::SunMean) {
            if !sun.entry.reference_means.is_empty() {
                let v: Vec<String> = sun
                    .entry
                    .dims
                    .iter()
                    .zip(&sun.entry.reference_means)
                    .map(|(d, x)| format!("dim {d}: {}", opt(Some(*x))))
                    .collect();
                notes.push(format!(
                    "Sun et al.'s reference means over {} prompts: {}",
                    sun.entry.reference_prompts.map_or_else(|| "?".into(), |n| n.to_string()),
                    v.join(", ")
                ));
            }
        }
        if !notes.is_empty() {
            let _ = writeln!(b, "<p class=\"note\">Dimension ablations {}.</p>", notes.join("; "));
        }
    }
    b.push_str("</section>\n<section id=\"runs\"><h2>Runs</h2>\n<ul>\n");
    for r in &a.rows {
        let what = match r.which {
            Which::Scale => {
                format!("λ = {}", r.entry.scale.map(|s| s.to_string()).unwrap_or_else(|| "?".into()))
            }
            Which::MeanAblate => "massive dims: mean over the prompt's other positions".into(),
            Which::SunMean => "massive dims: Sun et al.'s mean over prompts".into(),
            Which::ZeroDims => "massive dims: zero".into(),
            Which::OneByOne => {
                format!("block {} alone", r.entry.block.map(|b| b.to_string()).unwrap_or_else(|| "?".into()))
            }
        };
        let _ = writeln!(
            b,
            "<li>{what}: {}{}</li>",
            run_link(a, r),
            if r.run.is_none() {
                " <span class=\"note\">(folder not found; values from ablate.json)</span>"
            } else {
                ""
            }
        );
    }
    b.push_str("</ul>\n</section>\n<section id=\"run\"><h2>Run (baseline)</h2>\n");
    b.push_str(&run_details(&a.baseline));
    b.push_str("<h3>Conventions</h3>\n");
    b.push_str(&conventions(&a.baseline));
    b.push_str("</section>\n");
    page(&format!("sinkscope ablate — {label}"), &b)
}

/// Renders an `ablate` folder: reads `dir/ablate.json` and the sub-run folders, renders each
/// sub-run's own profile report (`<sub-run>/report.html`, linked from the combined one), and
/// writes into `dir`:
/// - `layers.csv`: the Fig.-4 curves side by side (`baseline_<m>_mean|std`,
///   `ablated_<m>_mean|std`, `mean_ablate_<m>_mean|std` for `m` = `entropy_norm`,
///   `sink_rate`, `bos_norm`, `bos_ratio`);
/// - `dose_response.csv`: `intervention,scale,block,dims,run,valley_min_entropy_norm,
///   max_bos_ratio,valley_mean_sink_rate,nll`, one row per intervention;
/// - `plots/ablate_fig4.{svg,png}`: the paper's Fig. 4, baseline vs ablated (λ = 0)
///   `entropy_norm`, `sink_rate`, `bos_norm` (log) overlaid (the mean-ablation too when
///   present), the baseline's phases shaded, the ablated blocks marked;
/// - `plots/dose_response.{svg,png}`: the four quantities against λ, with the
///   mean-ablation and the one-by-one ablations as references;
/// - `report.html`: self-contained; the detection evidence, the effect at λ = 0 (and whether
///   the valley disappears: its minimum entropy rises ≥ 10× and its sink rate falls), the
///   mean-ablation and the tables.
///
/// How sub-run folders, the ablated run, the valley and missing values are resolved is in
/// `docs/results-schema.md`, "Reading rules for `ablate` folders". The baseline sub-run and
/// the ablated (λ = 0) one must exist; other sub-run folders are optional (their numbers then
/// come from `ablate.json` alone).
///
/// # Example
/// ```
/// use sinkscope_report::{render_ablate, synthetic::SyntheticAblate};
///
/// let dir = std::env::temp_dir().join(format!("sinkscope-ablate-doc-{}", std::process::id()));
/// SyntheticAblate::default().write(&dir)?; // normally `sinkscope ablate` writes this
/// let out = render_ablate(&dir)?;
/// assert!(out.report_html.ends_with("report.html"));
/// assert_eq!(out.plots[0].stem, "ablate_fig4");
/// assert!(dir.join("scale_0/report.html").is_file()); // each sub-run's own report
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// As [`AblateFile::load`] and [`Run::load_profile_style`] (naming the file), a sub-run with
/// a different `n_layers` ([`SchemaError::Invalid`](sinkscope_schema::SchemaError::Invalid)), a missing baseline or ablated sub-run
/// ([`SchemaError::Io`](sinkscope_schema::SchemaError::Io)), or an output that cannot be drawn or written.
pub fn render_ablate(dir: &Path) -> Result<AblateSummary, ReportError> {
    let a = load(dir)?;
    let mut sub_runs = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    for r in &a.rows {
        if let Some(run) = &r.run {
            if !done.contains(&r.folder.as_str()) {
                sub_runs.push(render_loaded_run(run)?);
                done.push(&r.folder);
            }
        }
    }
    let layers_csv_path = dir.join(LAYERS_CSV);
    write_file(&layers_csv_path, &layers_csv(&a))?;
    let dose_response_csv = dir.join(DOSE_RESPONSE_CSV);
    write_file(&dose_response_csv, &dose_csv(&a))?;
    let plots_dir = dir.join(PLOTS_DIR);
    let rendered = vec![plots::render(&Fig4(&a), &plots_dir)?, plots::render(&DoseResponse(&a), &plots_dir)?];
    let report_html_path = dir.join(REPORT_HTML);
    write_file(&report_html_path, &report_html(&a, &rendered))?;
    Ok(AblateSummary {
        layers_csv: layers_csv_path,
        dose_response_csv,
        plots: rendered.iter().map(PlotFiles::from).collect(),
        report_html: report_html_path,
        sub_runs,
    })
}
