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

mod figures;
mod page;
use figures::*;
use page::*;

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
            r.entry.dims().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" "),
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
