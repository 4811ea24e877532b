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
//! [`render_run`] dispatches on the kind of folder: a `lens` run gets `layers.csv`,
//! `plots/lens.{svg,png}` and `report.html` ([`render_lens`]); a `probe` run
//! `layers.csv`, `plots/probe.{svg,png}` and `report.html` ([`render_probe`]); an `ablate`
//! folder the paper's Fig. 4, the dose–response plot, `dose_response.csv` and a combined
//! `report.html` ([`render_ablate`]).
//!
//! [`render_tasks`] draws the paper's Fig. 7 (LogitLens perplexity and probe accuracy vs
//! normalised depth, a profile's phases shaded) and writes `tasks.csv` and `tasks.html`.
//!
//! [`render_compare`] overlays several runs on normalised depth `l / L` and writes
//! `compare.html`, `compare.csv`, `plots/compare_fig1.{svg,png}` and, for models with lens
//! or probe runs among the folders, `plots/compare_fig7_<k>.{svg,png}`.
//!
//! Every folder layout, and the rules used where `docs/results-schema.md` leaves a choice,
//! are documented there ("What the report writes").
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
//! assert_eq!(out.plots.len(), 6);
//! let csv = std::fs::read_to_string(&out.layers_csv)?;
//! assert_eq!(csv.lines().count(), 1 + 9); // header + L + 1 layers
//! assert!(csv.starts_with("layer,depth,bos_norm_mean,bos_norm_std,"));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod ablate;
mod csv;
mod error;
mod font;
mod html;
mod lens_probe;
mod mc;
mod mechanics;
mod plots;
mod png_backend;
pub mod schema;
pub mod synthetic;
mod tasks;
mod trajectory;

use std::path::{Path, PathBuf};

pub use crate::ablate::{render_ablate, AblateSummary, DOSE_RESPONSE_CSV};
pub use crate::csv::{layers_csv, metric_order};
pub use crate::error::ReportError;
pub use crate::lens_probe::MeanStd;
pub use crate::plots::RenderedPlot;
pub use crate::schema::{
    AblateFile, Evidence, Intervention, InterventionValues, LensRecord, LensSummary, Manifest, McRecord,
    MetricsFile, ProbeLayer, ProbeRecord, ProbeSummary, PromptLine, PromptRecord, Run, RunKind, Valley,
    SCHEMA_VERSION,
};
pub use crate::tasks::{render_tasks, TaskDirs, TasksSummary, TASKS_CSV, TASKS_HTML};
pub use crate::trajectory::{
    render_trajectory, StepRow, TrajectorySummary, TRAJECTORY_CSV, TRAJECTORY_HTML, TRAJECTORY_JSON,
};

/// File name of the per-layer CSV inside a run folder.
pub const LAYERS_CSV: &str = "layers.csv";
/// File name of the per-head CSV (Fig. 5) inside a run folder.
pub const HEADS_CSV: &str = "heads.csv";
/// File name of the per-head, per-set CSV of the comparison's Fig. 5.
pub const FIG5_HEADS_CSV: &str = "fig5_heads.csv";
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
    /// The kind of run rendered.
    pub kind: RunKind,
    /// `layers.csv` (for an `ablate` folder: the baseline and ablated Fig.-1 curves side by
    /// side).
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
    /// The label of each column of the table (model names, made unique): every profile
    /// run in input order, then every model that has only lens/probe runs.
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

/// Every report file is written atomically, never through a symlink (`sinkscope_output`).
pub(crate) fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    Ok(sinkscope_output::write_atomic(path, text.as_bytes())?)
}

/// Renders any run folder, dispatching on its kind: `dir/ablate.json` present (or
/// `kind: "ablate"`) → [`render_ablate`]; otherwise the kind of [`Run::load`] (`manifest.kind`,
/// else `metrics.kind`, else `profile`) → the profile report, [`render_lens`] or
/// [`render_probe`].
///
/// A profile folder gets `layers.csv`, `plots/fig1`, `plots/fig3`,
/// `plots/bos_attention_heads`, `plots/top_activations` (each `.svg` and `.png`) and
/// `report.html`; a lens or probe folder gets `layers.csv`, `plots/lens` or `plots/probe`
/// and `report.html`; an ablate folder as [`render_ablate`].
///
/// # Errors
/// A missing or malformed input file ([`SchemaError::Io`](sinkscope_schema::SchemaError::Io), [`SchemaError::Parse`](sinkscope_schema::SchemaError::Parse),
/// [`SchemaError::Invalid`](sinkscope_schema::SchemaError::Invalid)), a different `schema_version`
/// ([`SchemaError::SchemaVersion`](sinkscope_schema::SchemaError::SchemaVersion)), an unknown kind ([`SchemaError::UnknownKind`](sinkscope_schema::SchemaError::UnknownKind)), or an
/// output that cannot be drawn or written.
pub fn render_run(dir: &Path) -> Result<RenderSummary, ReportError> {
    if dir.join(schema::ABLATE_FILE).is_file() {
        return render_ablate(dir).map(|a| a.render_summary());
    }
    let run = Run::load(dir)?;
    if run.kind == RunKind::Ablate {
        return render_ablate(dir).map(|a| a.render_summary());
    }
    render_loaded_run(&run)
}

/// Renders a lens run folder (`kind: "lens"`): `layers.csv` (the per-prompt
/// `logit_lens_*` mean/std columns, then `token_weighted_nll`, `token_weighted_ppl`,
/// `token_weighted_top1`), `plots/lens.{svg,png}` (token-weighted perplexity on a log scale
/// with the per-prompt mean ± std band, the model's own perplexity, top-1 accuracy) and
/// `report.html`.
///
/// # Errors
/// As [`render_run`]; [`ReportError::WrongKind`] for a folder of another kind.
pub fn render_lens(dir: &Path) -> Result<RenderSummary, ReportError> {
    let run = load_kind(dir, RunKind::Lens)?;
    lens_probe::render_lens_run(&run)
}

/// Renders a probe run folder (`kind: "probe"`): `layers.csv` (`probe_accuracy_mean`,
/// `probe_accuracy_std`, then `pooled_accuracy`, `baseline_accuracy`, `converged`,
/// `max_iterations`, `max_grad_norm`), `plots/probe.{svg,png}` (CV accuracy ± std vs layer,
/// majority baseline, best layer, solver convergence) and `report.html`.
///
/// # Errors
/// As [`render_run`]; [`ReportError::WrongKind`] for a folder of another kind.
pub fn render_probe(dir: &Path) -> Result<RenderSummary, ReportError> {
    let run = load_kind(dir, RunKind::Probe)?;
    lens_probe::render_probe_run(&run)
}

/// Loads a run and checks its kind.
pub(crate) fn load_kind(dir: &Path, want: RunKind) -> Result<Run, ReportError> {
    if want != RunKind::Ablate && dir.join(schema::ABLATE_FILE).is_file() {
        return Err(wrong_kind(dir, want, RunKind::Ablate));
    }
    let run = Run::load(dir)?;
    if run.kind != want {
        return Err(wrong_kind(dir, want, run.kind));
    }
    Ok(run)
}

pub(crate) fn wrong_kind(dir: &Path, want: RunKind, found: RunKind) -> ReportError {
    let hint = match found {
        RunKind::Ablate => format!("; its profile-style sub-runs are in {}/baseline etc.", dir.display()),
        _ => String::new(),
    };
    ReportError::WrongKind {
        path: dir.to_path_buf(),
        expected: want.to_string(),
        found: found.to_string(),
        hint,
    }
}

/// As [`render_run`], for a run already in memory; writes into `run.dir`.
///
/// # Errors
/// As [`render_run`], for the outputs; [`ReportError::WrongKind`] for an ablate run (render
/// those with [`render_ablate`]).
pub fn render_loaded_run(run: &Run) -> Result<RenderSummary, ReportError> {
    match run.kind {
        RunKind::Profile => {}
        RunKind::Lens => return lens_probe::render_lens_run(run),
        RunKind::Probe => return lens_probe::render_probe_run(run),
        RunKind::Mc => return mc::render_mc_run(run),
        RunKind::Ablate => return Err(wrong_kind(&run.dir, RunKind::Profile, RunKind::Ablate)),
    }
    let dir = &run.dir;
    let layers_csv = dir.join(LAYERS_CSV);
    write_file(&layers_csv, &csv::layers_csv(&run.metrics))?;

    let plots_dir = dir.join(PLOTS_DIR);
    let rendered = vec![
        plots::render(&plots::Fig1(run), &plots_dir)?,
        plots::render(&plots::Fig3(run), &plots_dir)?,
        plots::render(&plots::HeadsHeatmap(run), &plots_dir)?,
        plots::render(&plots::TopActivations(run), &plots_dir)?,
        plots::render(&mechanics::Fig5(run), &plots_dir)?,
        plots::render(&mechanics::Fig6(run), &plots_dir)?,
    ];
    write_file(&dir.join(HEADS_CSV), &mechanics::heads_csv(run))?;

    let report_html = dir.join(REPORT_HTML);
    write_file(&report_html, &html::report_html(run, &rendered))?;
    Ok(RenderSummary {
        kind: RunKind::Profile,
        layers_csv,
        plots: rendered.iter().map(PlotFiles::from).collect(),
        report_html,
    })
}

/// What sets a run apart, as `(what, value)` pairs: the dataset (or prompt file), the BOS
/// policy, the first-token option, then every manifest option by name.
fn run_attributes(r: &Run) -> Vec<(String, String)> {
    let m = &r.manifest;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = Vec::new();
    if let Some(d) = &m.data {
        let data = d
            .pointer("/dataset/name")
            .map(text)
            .or_else(|| {
                d.get("path")
                    .and_then(|p| p.as_str())
                    .and_then(|p| Path::new(p).file_name().map(|f| f.to_string_lossy().into_owned()))
            })
            .unwrap_or_default();
        out.push(("data".to_string(), data));
        for k in ["limit", "max_tokens"] {
            if let Some(v) = d.get(k) {
                out.push((k.to_string(), text(v)));
            }
        }
    }
    for (k, v) in &m.options {
        if !out.iter().any(|(o, _)| o == k) {
            out.push((k.clone(), text(v)));
        }
    }
    out
}

/// Distinct labels for `runs`: the model name; where two runs share it, what tells them apart
/// (dataset, BOS policy, options that differ between them: `SmolLM2 (bos=always)` vs
/// `SmolLM2 (bos=never)`), and the folder name (then an index) only when nothing does.
fn unique_labels(runs: &[&Run]) -> Vec<String> {
    let base: Vec<String> = runs.iter().map(|r| r.label()).collect();
    let attrs: Vec<Vec<(String, String)>> = runs.iter().map(|r| run_attributes(r)).collect();
    let mut labels: Vec<String> = base
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let same: Vec<usize> = (0..runs.len()).filter(|&j| base[j] == *b).collect();
            if same.len() < 2 {
                return b.clone();
            }
            let value = |j: usize, k: &str| {
                attrs[j].iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_else(|| "–".into())
            };
            let differing: Vec<String> = attrs[i]
                .iter()
                .map(|(k, _)| k.clone())
                .chain(same.iter().flat_map(|&j| attrs[j].iter().map(|(k, _)| k.clone())))
                .fold(Vec::<String>::new(), |mut acc, k| {
                    if !acc.contains(&k) {
                        acc.push(k);
                    }
                    acc
                })
                .into_iter()
                .filter(|k| same.iter().any(|&j| value(j, k) != value(i, k)))
                .map(|k| format!("{k}={}", value(i, &k)))
                .collect();
            if !differing.is_empty() {
                return format!("{b} ({})", differing.join(", "));
            }
            let folder =
                runs[i].dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            if folder.is_empty() || folder == *b {
                b.clone()
            } else {
                format!("{b} ({folder})")
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

/// The runs of one model in a comparison (indices into the loaded runs).
#[derive(Debug, Default)]
struct ModelGroup {
    key: String,
    profiles: Vec<usize>,
    lens: Vec<usize>,
    probe: Vec<usize>,
    mc: Vec<usize>,
}

/// Compares runs of several models on normalised depth `l / L`.
///
/// `runs` may mix profile, lens and probe run folders (an `ablate` folder is refused: pass
/// its `baseline/` sub-run). Runs are grouped by model — the manifest's model `sha256`,
/// else the model path, else the folder itself. The table has one column per profile run
/// (input order), each showing its model's first lens and first probe run, then one column
/// per model that has only lens/probe runs.
///
/// Writes `out/compare.csv` (the side-by-side table: one row per quantity, one column per
/// table column; with lens/probe runs it gains the rows `LogitLens ppl at layer L
/// (token-weighted)`, `model ppl (lens run)`, `LogitLens lowest-ppl layer (depth)`,
/// `LogitLens predicted tokens`, `best probe layer (depth)`, `best probe accuracy
/// (baseline)`, `probe accuracy at layer L`, `probe solver converged`),
/// `out/plots/compare_fig1.{svg,png}` (Fig. 1 with one line per profile run; only when
/// there is a profile run), `out/plots/compare_fig7_<k>.{svg,png}` (the paper's Fig. 7 for
/// the k-th model, `k = 1, 2, ...` in order of first appearance, for each model with a lens
/// and/or probe run; phases shaded from its first profile run) and `out/compare.html`
/// (self-contained).
///
/// # Errors
/// [`ReportError::NoRuns`] for an empty list; [`ReportError::WrongKind`] for an ablate
/// folder; otherwise as [`render_run`] for each run folder and for the outputs.
pub fn render_compare(runs: &[PathBuf], out: &Path) -> Result<CompareSummary, ReportError> {
    if runs.is_empty() {
        return Err(ReportError::NoRuns);
    }
    let mut loaded: Vec<Run> = Vec::with_capacity(runs.len());
    for d in runs {
        if d.join(schema::ABLATE_FILE).is_file() {
            return Err(wrong_kind(d, RunKind::Profile, RunKind::Ablate));
        }
        let r = Run::load(d)?;
        if r.kind == RunKind::Ablate {
            return Err(wrong_kind(d, RunKind::Profile, RunKind::Ablate));
        }
        loaded.push(r);
    }

    // Group by model, in order of first appearance.
    let mut groups: Vec<ModelGroup> = Vec::new();
    for (i, r) in loaded.iter().enumerate() {
        let key = r.model_key().unwrap_or_else(|| format!("folder:{}", r.dir.display()));
        let g = match groups.iter().position(|g| g.key == key) {
            Some(k) => &mut groups[k],
            None => {
                groups.push(ModelGroup { key, ..ModelGroup::default() });
                let last = groups.len() - 1;
                &mut groups[last]
            }
        };
        match r.kind {
            RunKind::Lens => g.lens.push(i),
            RunKind::Probe => g.probe.push(i),
            RunKind::Mc => g.mc.push(i),
            _ => g.profiles.push(i),
        }
    }
    let group_of = |i: usize| {
        groups.iter().find(|g| {
            g.profiles.contains(&i) || g.lens.contains(&i) || g.probe.contains(&i) || g.mc.contains(&i)
        })
    };

    // Columns: every profile run, then every model with lens/probe runs only.
    let profile_idx: Vec<usize> = (0..loaded.len()).filter(|&i| loaded[i].kind == RunKind::Profile).collect();
    let profile_runs: Vec<&Run> = profile_idx.iter().map(|&i| &loaded[i]).collect();
    let profile_labels = unique_labels(&profile_runs);
    let mut cols: Vec<html::Column<'_>> = Vec::new();
    for (&i, label) in profile_idx.iter().zip(&profile_labels) {
        let g = group_of(i);
        cols.push(html::Column {
            label: label.clone(),
            profile: Some(&loaded[i]),
            lens: g.and_then(|g| g.lens.first()).map(|&k| &loaded[k]),
            probe: g.and_then(|g| g.probe.first()).map(|&k| &loaded[k]),
            mc: g.and_then(|g| g.mc.first()).map(|&k| &loaded[k]),
        });
    }
    for g in groups.iter().filter(|g| g.profiles.is_empty()) {
        let lens = g.lens.first().map(|&k| &loaded[k]);
        let probe = g.probe.first().map(|&k| &loaded[k]);
        let mc = g.mc.first().map(|&k| &loaded[k]);
        let mut label = lens.or(probe).or(mc).map(Run::label).unwrap_or_else(|| "model".into());
        if cols.iter().any(|c| c.label == label) {
            label = format!("{label} #{}", cols.len() + 1);
        }
        cols.push(html::Column { label, profile: None, lens, probe, mc });
    }
    let labels: Vec<String> = cols.iter().map(|c| c.label.clone()).collect();
    std::fs::create_dir_all(out).map_err(ReportError::io(out))?;

    let rows = html::compare_rows(&cols);
    let mut table =
        vec![std::iter::once("quantity".to_string()).chain(labels.iter().cloned()).collect::<Vec<_>>()];
    for (name, vals) in rows {
        table.push(std::iter::once(name).chain(vals).collect());
    }
    let compare_csv = out.join(COMPARE_CSV);
    write_file(&compare_csv, &csv::table_csv(&table))?;

    let plots_dir = out.join(PLOTS_DIR);
    let mut rendered = Vec::new();
    if !profile_runs.is_empty() {
        rendered.push(plots::render(&plots::CompareFig1(&profile_runs, &profile_labels), &plots_dir)?);
        rendered.push(plots::render(&mechanics::CompareFig6(&profile_runs, &profile_labels), &plots_dir)?);
    }
    // Fig. 5: every model with two or more profile runs on different prompt sets.
    let mut fig5_groups: Vec<mechanics::Fig5Group<'_>> = Vec::new();
    for g in &groups {
        let data_of = |i: usize| {
            loaded[i].manifest.data.as_ref().map(|d| {
                d.pointer("/dataset/name")
                    .or_else(|| d.get("path"))
                    .map(ToString::to_string)
                    .unwrap_or_default()
            })
        };
        let mut sets: Vec<usize> = Vec::new();
        for &i in &g.profiles {
            if !sets.iter().any(|&j| data_of(j) == data_of(i)) {
                sets.push(i);
            }
        }
        if sets.len() >= 2 {
            let labels = sets
                .iter()
                .map(|&i| {
                    profile_idx
                        .iter()
                        .position(|&p| p == i)
                        .map(|k| profile_labels[k].clone())
                        .unwrap_or_default()
                })
                .collect();
            fig5_groups
                .push(mechanics::Fig5Group { runs: sets.iter().map(|&i| &loaded[i]).collect(), labels });
        }
    }
    for (k, g) in fig5_groups.iter().enumerate() {
        let fig = mechanics::CompareFig5 {
            runs: g.runs.clone(),
            labels: g.labels.clone(),
            stem: format!("compare_fig5_{}", k + 1),
        };
        rendered.push(plots::render(&fig, &plots_dir)?);
    }
    let (fig5_section, fig5_rows) = mechanics::fig5_compare(&fig5_groups);
    if !fig5_groups.is_empty() {
        write_file(&out.join(FIG5_HEADS_CSV), &csv::table_csv(&fig5_rows))?;
    }
    let mut k = 0;
    for g in &groups {
        if g.lens.is_empty() && g.probe.is_empty() && g.mc.is_empty() {
            continue;
        }
        k += 1;
        let runs = tasks::TaskRuns {
            profile: g.profiles.first().map(|&i| &loaded[i]),
            lens: g.lens.first().map(|&i| &loaded[i]),
            probe: g.probe.first().map(|&i| &loaded[i]),
            mc: g.mc.first().map(|&i| &loaded[i]),
        };
        rendered
            .push(plots::render(&tasks::TasksFig7 { runs, stem: format!("compare_fig7_{k}") }, &plots_dir)?);
    }
    let compare_html = out.join(COMPARE_HTML);
    write_file(&compare_html, &html::compare_html(&cols, &loaded, &rendered, &fig5_section))?;
    Ok(CompareSummary {
        labels,
        compare_csv,
        plots: rendered.iter().map(PlotFiles::from).collect(),
        compare_html,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::schema::{Manifest, MetricsFile, ModelInfo, Run, RunKind, RunSummary};
    use serde_json::json;

    fn run(dir: &str, model: &str, bos: &str, dataset: &str, r: Option<f64>) -> Run {
        let mut options = std::collections::BTreeMap::new();
        options.insert("bos".to_string(), json!(bos));
        options.insert("epsilon".to_string(), json!(0.3));
        Run {
            dir: PathBuf::from(dir),
            manifest: Manifest {
                model: Some(ModelInfo {
                    path: Some(format!("models/{model}.gguf")),
                    sha256: Some(model.into()),
                    ..ModelInfo::default()
                }),
                data: Some(json!({"source": "dataset", "dataset": {"name": dataset}})),
                options,
                ..Manifest::default()
            },
            metrics: MetricsFile {
                summary: RunSummary { corr_bos_sink_lag1: r, ..RunSummary::default() },
                ..MetricsFile::default()
            },
            prompts: Vec::new(),
            prompts_present: false,
            kind: RunKind::Profile,
            lens: None,
            probe: None,
            mc: None,
        }
    }

    /// Known answer: runs are labelled by the model, and two runs of one model by what sets
    /// them apart (here the BOS policy, then the dataset), not by their folder names.
    #[test]
    fn labels_name_what_differs() {
        let a = run("out/a", "SmolLM2", "auto", "gsm8k-like", None);
        let b = run("out/b", "SmolLM2", "eos", "gsm8k-like", None);
        let c = run("out/c", "gemma", "auto", "gsm8k-like", None);
        let d = run("out/d", "gemma", "auto", "web", None);
        let labels = unique_labels(&[&a, &b, &c, &d]);
        assert_eq!(
            labels,
            ["SmolLM2 (bos=auto)", "SmolLM2 (bos=eos)", "gemma (data=gsm8k-like)", "gemma (data=web)"]
        );
        // Nothing differs: the folder name.
        let e = run("out/e", "gemma", "auto", "web", None);
        assert_eq!(unique_labels(&[&d, &e]), ["gemma (d)", "gemma (e)"]);
    }

    /// Known answer: one r per model (the mean over its runs), then mean ± sample sd over
    /// models: models A (0.6, 0.8 → 0.7) and B (0.9) give 0.80 ± 0.14.
    #[test]
    fn across_models_is_mean_sd_of_per_model_r() {
        let runs = [
            run("a1", "A", "auto", "x", Some(0.6)),
            run("a2", "A", "eos", "x", Some(0.8)),
            run("b1", "B", "auto", "x", Some(0.9)),
        ];
        let note = html::across_models_note(&runs);
        assert!(note.contains("Across the 2 models"), "{note}");
        assert!(
            note.contains("r(Δ log bos_norm, Δ sink_rate), lag 1: <strong>0.80 ± 0.14</strong>"),
            "{note}"
        );
    }
}
