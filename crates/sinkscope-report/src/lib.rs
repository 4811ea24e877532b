//! sinkscope-report: turns a run folder into human-readable output.
//!
//! A run folder (`docs/results-schema.md`, schema version [`SCHEMA_VERSION`]) holds
//! `manifest.json`, `metrics.json` and `prompts.jsonl`, written by `sinkscope profile`.
//! [`render_run`] reads them — it never re-runs a model — and writes next to them:
//!
//! - `layers.csv`: one row per layer `l = 0..L`, `layer,depth,<metric>_mean,<metric>_std,...`,
//!   empty cells where undefined (loads with `pandas.read_csv` as is);
//! - `plots/fig1.{svg,png}`: the paper's Fig. 1 (entropy_norm, sink_rate, bos_norm on a log
//!   scale vs layer, mean ± std band, Mix/Compress/Refine shaded);
//! - `plots/fig3.{svg,png}`: the paper's Fig. 3 (measured vs Theorem-1 bound for
//!   `sigma1_sq`, `anisotropy`, `entropy`);
//! - `plots/bos_attention_heads.{svg,png}`: a layer × head heatmap of `bos_attention`;
//! - `plots/top_activations.{svg,png}`: the largest activations of every layer with their
//!   dimension;
//! - `report.html`: self-contained (inline CSS and SVG, no script, nothing fetched), with
//!   the plots, a summary in words, a per-layer table, the prompts and the conventions.
//!
//! [`render_compare`] overlays several runs on normalised depth `l / L` and writes
//! `compare.html`, `compare.csv` and `plots/compare_fig1.{svg,png}`.
//!
//! The result schema itself is in [`schema`]: serde structs that ignore unknown fields and
//! reject a different `schema_version` with an error naming the file.
//!
//! # Example
//!
//! ```
//! use sinkscope_report::{render_run, synthetic::SyntheticRun};
//!
//! let dir = std::env::temp_dir().join(format!("sinkscope-report-doc-{}", std::process::id()));
//! // A made-up 8-layer profile with a compression valley (normally `sinkscope profile` writes this).
//! SyntheticRun { n_layers: 8, ..SyntheticRun::default() }.write(&dir)?;
//! let out = render_run(&dir)?;
//! assert!(out.report_html.ends_with("report.html"));
//! assert_eq!(out.plots.len(), 4);
//! let csv = std::fs::read_to_string(&out.layers_csv)?;
//! assert_eq!(csv.lines().count(), 1 + 9); // header + L + 1 layers
//! assert!(csv.starts_with("layer,depth,bos_norm_mean,bos_norm_std,"));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod csv;
mod error;
mod font;
mod html;
mod plots;
mod png_backend;
pub mod schema;
pub mod synthetic;

use std::path::{Path, PathBuf};

pub use crate::csv::{layers_csv, metric_order};
pub use crate::error::ReportError;
pub use crate::plots::RenderedPlot;
pub use crate::schema::{Manifest, MetricsFile, PromptRecord, Run, SCHEMA_VERSION};

/// File name of the per-layer CSV inside a run folder.
pub const LAYERS_CSV: &str = "layers.csv";
/// File name of the HTML report inside a run folder.
pub const REPORT_HTML: &str = "report.html";
/// Folder of the plots inside a run (or compare) folder.
pub const PLOTS_DIR: &str = "plots";
/// File name of the comparison page.
pub const COMPARE_HTML: &str = "compare.html";
/// File name of the comparison table.
pub const COMPARE_CSV: &str = "compare.csv";

/// One plot's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotFiles {
    /// File stem (`fig1`, `fig3`, `bos_attention_heads`, `top_activations`, `compare_fig1`).
    pub stem: String,
    /// Title (also the SVG's `<title>`).
    pub title: String,
    /// The SVG file.
    pub svg: PathBuf,
    /// The PNG file.
    pub png: PathBuf,
    /// Width and height in pixels (of the PNG, and the SVG's view box).
    pub size: (u32, u32),
}

impl From<&RenderedPlot> for PlotFiles {
    fn from(p: &RenderedPlot) -> Self {
        Self {
            stem: p.stem.clone(),
            title: p.title.clone(),
            svg: p.svg_path.clone(),
            png: p.png_path.clone(),
            size: p.size,
        }
    }
}

/// The files written by [`render_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderSummary {
    /// `layers.csv`.
    pub layers_csv: PathBuf,
    /// The plots, in report order.
    pub plots: Vec<PlotFiles>,
    /// `report.html`.
    pub report_html: PathBuf,
}

impl RenderSummary {
    /// Every file written, in the order written.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.layers_csv.clone()];
        for p in &self.plots {
            v.push(p.svg.clone());
            v.push(p.png.clone());
        }
        v.push(self.report_html.clone());
        v
    }
}

/// The files written by [`render_compare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareSummary {
    /// The label of each run, in input order (model names, made unique).
    pub labels: Vec<String>,
    /// `compare.csv`: the side-by-side table (one row per quantity, one column per run).
    pub compare_csv: PathBuf,
    /// The plots.
    pub plots: Vec<PlotFiles>,
    /// `compare.html`.
    pub compare_html: PathBuf,
}

impl CompareSummary {
    /// Every file written, in the order written.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.compare_csv.clone()];
        for p in &self.plots {
            v.push(p.svg.clone());
            v.push(p.png.clone());
        }
        v.push(self.compare_html.clone());
        v
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(ReportError::io(path))
}

/// Reads `dir/manifest.json`, `dir/metrics.json` and `dir/prompts.jsonl` and writes
/// `dir/layers.csv`, `dir/plots/*.svg`, `dir/plots/*.png` and `dir/report.html`.
///
/// # Errors
/// A missing or malformed input file ([`ReportError::Io`], [`ReportError::Parse`],
/// [`ReportError::Invalid`]), a different `schema_version`
/// ([`ReportError::SchemaVersion`]), or an output that cannot be drawn or written.
pub fn render_run(dir: &Path) -> Result<RenderSummary, ReportError> {
    let run = Run::load(dir)?;
    render_loaded_run(&run)
}

/// As [`render_run`], for a run already in memory; writes into `run.dir`.
///
/// # Errors
/// As [`render_run`], for the outputs.
pub fn render_loaded_run(run: &Run) -> Result<RenderSummary, ReportError> {
    let dir = &run.dir;
    let layers_csv = dir.join(LAYERS_CSV);
    write_file(&layers_csv, &csv::layers_csv(&run.metrics))?;

    let plots_dir = dir.join(PLOTS_DIR);
    let rendered = vec![
        plots::render(&plots::Fig1(run), &plots_dir)?,
        plots::render(&plots::Fig3(run), &plots_dir)?,
        plots::render(&plots::HeadsHeatmap(run), &plots_dir)?,
        plots::render(&plots::TopActivations(run), &plots_dir)?,
    ];

    let report_html = dir.join(REPORT_HTML);
    write_file(&report_html, &html::report_html(run, &rendered))?;
    Ok(RenderSummary { layers_csv, plots: rendered.iter().map(PlotFiles::from).collect(), report_html })
}

/// Distinct labels for `runs`: the model name, with the folder name (then an index) added
/// where two runs would otherwise share one.
fn unique_labels(runs: &[Run]) -> Vec<String> {
    let base: Vec<String> = runs.iter().map(Run::label).collect();
    let mut labels: Vec<String> = base
        .iter()
        .zip(runs)
        .map(|(b, r)| {
            if base.iter().filter(|x| *x == b).count() > 1 {
                let folder = r.dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                if folder.is_empty() || folder == *b {
                    b.clone()
                } else {
                    format!("{b} ({folder})")
                }
            } else {
                b.clone()
            }
        })
        .collect();
    for i in 0..labels.len() {
        if labels[..i].contains(&labels[i]) {
            labels[i] = format!("{} #{}", labels[i], i + 1);
        }
    }
    labels
}

/// Overlays several runs (models) on normalised depth `l / L`: writes
/// `out/plots/compare_fig1.{svg,png}` (Fig. 1 with one line per run), `out/compare.csv`
/// (the side-by-side summary table) and `out/compare.html` (self-contained).
///
/// # Errors
/// [`ReportError::NoRuns`] for an empty list; otherwise as [`render_run`] for each run
/// folder and for the outputs.
pub fn render_compare(runs: &[PathBuf], out: &Path) -> Result<CompareSummary, ReportError> {
    if runs.is_empty() {
        return Err(ReportError::NoRuns);
    }
    let loaded: Vec<Run> = runs.iter().map(|d| Run::load(d)).collect::<Result<_, _>>()?;
    let labels = unique_labels(&loaded);
    std::fs::create_dir_all(out).map_err(ReportError::io(out))?;

    let rows = html::compare_rows(&loaded);
    let mut text = String::from("quantity");
    for l in &labels {
        text.push(',');
        text.push_str(&csv_quote(l));
    }
    text.push('\n');
    for (name, vals) in &rows {
        text.push_str(&csv_quote(name));
        for v in vals {
            text.push(',');
            text.push_str(&csv_quote(v));
        }
        text.push('\n');
    }
    let compare_csv = out.join(COMPARE_CSV);
    write_file(&compare_csv, &text)?;

    let rendered = vec![plots::render(&plots::CompareFig1(&loaded, &labels), &out.join(PLOTS_DIR))?];
    let compare_html = out.join(COMPARE_HTML);
    write_file(&compare_html, &html::compare_html(&loaded, &labels, &rendered))?;
    Ok(CompareSummary {
        labels,
        compare_csv,
        plots: rendered.iter().map(PlotFiles::from).collect(),
        compare_html,
    })
}

fn csv_quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}
