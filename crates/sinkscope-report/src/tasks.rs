//! Tasks vs depth (the paper's Fig. 7): LogitLens perplexity (log scale) and linear-probe
//! accuracy against normalised depth `l / L`, with a profile's Mix/Compress/Refine phases
//! shaded. [`render_tasks`] writes `tasks.csv`, `plots/tasks_fig7.{svg,png}` and
//! `tasks.html`; `render_compare` draws the same figure per model.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::csv::{fmt_cell, table_csv};
use crate::html::{num, opt, page, pct};
use crate::lens_probe::{lens_panels, probe_accuracy_panel};
use crate::plots::{
    draw_panel_pair, draw_panels, phase_color, xml_escape as esc, DrawResult, Figure, RenderedPlot, Shade,
};
use crate::schema::{Run, RunKind, TaskMetric};
use crate::{load_kind, plots, write_file, PlotFiles, ReportError, PLOTS_DIR};

/// File name of the tasks-vs-depth page.
pub const TASKS_HTML: &str = "tasks.html";
/// File name of the tasks-vs-depth table.
pub const TASKS_CSV: &str = "tasks.csv";

/// The files written by [`render_tasks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TasksSummary {
    /// `tasks.csv`: one row per layer.
    pub tasks_csv: PathBuf,
    /// `plots/tasks_fig7`.
    pub plots: Vec<PlotFiles>,
    /// `tasks.html`.
    pub tasks_html: PathBuf,
}

impl TasksSummary {
    /// Every file written, in the order written.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.tasks_csv.clone()];
        for p in &self.plots {
            v.push(p.svg.clone());
            v.push(p.png.clone());
        }
        v.push(self.tasks_html.clone());
        v
    }
}

/// The runs of one model for Fig. 7.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskRuns<'a> {
    pub profile: Option<&'a Run>,
    pub lens: Option<&'a Run>,
    pub probe: Option<&'a Run>,
    /// A multiple-choice LogitLens run (`lens --mc`).
    pub mc: Option<&'a Run>,
}

impl<'a> TaskRuns<'a> {
    /// The model's label: from the lens, probe or profile run.
    pub fn label(&self) -> String {
        self.lens
            .or(self.probe)
            .or(self.mc)
            .or(self.profile)
            .map(Run::label)
            .unwrap_or_else(|| "model".into())
    }

    /// Number of blocks `L` (lens, else probe, else profile).
    fn n_layers(&self) -> usize {
        self.lens.or(self.probe).or(self.mc).or(self.profile).map(Run::n_layers).unwrap_or(1)
    }
}

/// The profile's phases on normalised depth: each layer `l` covers `[(l − ½)/L, (l + ½)/L]`,
/// clipped to `[0, 1]`.
pub(crate) fn depth_shades(profile: Option<&Run>) -> Vec<Shade> {
    let Some(run) = profile else { return Vec::new() };
    let l = run.n_layers().max(1) as f64;
    run.metrics
        .summary
        .phases
        .map(|ph| {
            ph.named()
                .into_iter()
                .map(|(p, r)| Shade {
                    from: ((r.first as f64 - 0.5) / l).max(0.0),
                    to: ((r.last as f64 + 0.5) / l).min(1.0),
                    label: p.as_str().to_string(),
                    color: phase_color(p),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The paper's Fig. 7 for one model.
pub(crate) struct TasksFig7<'a> {
    pub runs: TaskRuns<'a>,
    pub stem: String,
}

impl Figure for TasksFig7<'_> {
    fn stem(&self) -> String {
        self.stem.clone()
    }
    fn title(&self) -> String {
        let mut what = match (self.runs.lens.is_some(), self.runs.probe.is_some()) {
            (true, true) => "LogitLens perplexity and probe accuracy",
            (true, false) => "LogitLens perplexity",
            (false, true) => "probe accuracy",
            (false, false) => "",
        }
        .to_string();
        if self.runs.mc.is_some() {
            what = if what.is_empty() {
                "multiple-choice LogitLens accuracy".into()
            } else {
                format!("{what}, multiple-choice accuracy")
            };
        }
        format!("Fig. 7 — {}: {what} vs depth l / L", self.runs.label())
    }
    fn size(&self) -> (u32, u32) {
        let n = [self.runs.lens.is_some(), self.runs.probe.is_some(), self.runs.mc.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        match n {
            3 => (1800, 500),
            2 => (1400, 500),
            _ => (900, 500),
        }
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let r = &self.runs;
        let shades = depth_shades(r.profile);
        let x_desc = "depth l / L";
        let mut panels = Vec::new();
        if let Some(lens) = r.lens {
            let (mut p, _) = lens_panels(lens, 1.0 / lens.n_layers().max(1) as f64, (0.0, 1.0), x_desc);
            p.shades = shades.clone();
            panels.push(p);
        }
        if let Some(probe) = r.probe {
            let mut p = probe_accuracy_panel(probe, 1.0 / probe.n_layers().max(1) as f64, (0.0, 1.0), x_desc);
            p.shades = shades.clone();
            panels.push(p);
        }
        if let Some(mc) = r.mc {
            let mut p = crate::mc::mc_panel(mc, 1.0 / mc.n_layers().max(1) as f64, (0.0, 1.0), x_desc);
            p.shades = shades.clone();
            p.x_integer = false;
            panels.push(p);
        }
        let phases = if r.profile.is_some_and(|p| p.metrics.summary.phases.is_some()) {
            "shading: the profile's Mix / Compress / Refine phases"
        } else if r.profile.is_some() {
            "the profile found no compression phase"
        } else {
            "no profile run: phases not shaded"
        };
        let title = format!("{} — tasks vs depth ({phases})", r.label());
        match panels.as_slice() {
            [a, b] => draw_panel_pair(root, &title, (a, b), 0.5),
            _ => draw_panels(root, &title, &panels),
        }
    }
}

/// Checks that the given runs are of one model (equal `sha256` where both record one) and
/// have the same number of blocks.
fn check_same_model(runs: &[&Run]) -> Result<(), ReportError> {
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            let sa = a.manifest.model.as_ref().and_then(|m| m.sha256.clone()).filter(|s| !s.is_empty());
            let sb = b.manifest.model.as_ref().and_then(|m| m.sha256.clone()).filter(|s| !s.is_empty());
            if let (Some(sa), Some(sb)) = (sa, sb) {
                if sa != sb {
                    return Err(ReportError::ModelMismatch {
                        a: a.dir.clone(),
                        sha_a: sa,
                        b: b.dir.clone(),
                        sha_b: sb,
                    });
                }
            }
            if a.n_layers() != b.n_layers() {
                return Err(ReportError::Schema(sinkscope_schema::SchemaError::Invalid {
                    path: b.dir.join(crate::schema::METRICS_FILE),
                    message: format!(
                        "n_layers is {}, but {} has {}: not runs of the same model",
                        b.n_layers(),
                        a.dir.display(),
                        a.n_layers()
                    ),
                }));
            }
        }
    }
    Ok(())
}

/// `tasks.csv`: `layer,depth,phase`, then (lens) `lens_nll,lens_ppl,lens_top1,
/// logit_lens_ppl_mean,logit_lens_ppl_std`, then (probe) `probe_accuracy_mean,
/// probe_accuracy_std,probe_baseline`.
fn tasks_csv(r: &TaskRuns<'_>) -> String {
    let mut header: Vec<String> = vec!["layer".into(), "depth".into(), "phase".into()];
    if r.lens.is_some() {
        for h in ["lens_nll", "lens_ppl", "lens_top1", "logit_lens_ppl_mean", "logit_lens_ppl_std"] {
            header.push(h.into());
        }
    }
    if r.probe.is_some() {
        for h in ["probe_accuracy_mean", "probe_accuracy_std", "probe_baseline"] {
            header.push(h.into());
        }
    }
    if r.mc.is_some() {
        for h in ["mc_accuracy_mean", "mc_accuracy_norm_mean", "mc_chance"] {
            header.push(h.into());
        }
    }
    let l_max = r.n_layers();
    let mut rows = vec![header];
    let lens = r
        .lens
        .map(|x| (x.lens_nll(), x.lens_ppl(), x.lens_top1(), x.mean_std(TaskMetric::LogitLensPpl.name())));
    let probe = r.probe.map(|x| (x.probe_accuracy(), x.probe_baseline()));
    let mc = r.mc.map(|x| {
        let chance = x.mc.as_ref().and_then(|m| m.chance);
        (x.mean_std(TaskMetric::McAccuracy.name()), x.mean_std(TaskMetric::McAccuracyNorm.name()), chance)
    });
    for l in 0..=l_max {
        let phase = r
            .profile
            .and_then(|p| p.metrics.summary.phases)
            .and_then(|ph| ph.phase_of(l))
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let mut row = vec![l.to_string(), fmt_cell(Some(l as f64 / l_max.max(1) as f64)), phase];
        if let Some((nll, ppl, top1, pp)) = &lens {
            let g = |v: &[Option<f64>]| fmt_cell(v.get(l).copied().flatten());
            row.push(g(nll));
            row.push(g(ppl));
            row.push(g(top1));
            let p = pp.get(l).copied().unwrap_or((None, None));
            row.push(fmt_cell(p.0));
            row.push(fmt_cell(p.1));
        }
        if let Some((acc, base)) = &probe {
            let p = acc.get(l).copied().unwrap_or((None, None));
            row.push(fmt_cell(p.0));
            row.push(fmt_cell(p.1));
            row.push(fmt_cell(*base));
        }
        if let Some((acc, norm, chance)) = &mc {
            row.push(fmt_cell(acc.get(l).and_then(|p| p.0)));
            row.push(fmt_cell(norm.get(l).and_then(|p| p.0)));
            row.push(fmt_cell(*chance));
        }
        rows.push(row);
    }
    table_csv(&rows)
}

/// Sentences (HTML) about tasks vs depth for one model.
pub(crate) fn task_sentences(r: &TaskRuns<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let phase_at = |l: usize| {
        r.profile
            .and_then(|p| p.metrics.summary.phases)
            .and_then(|ph| ph.phase_of(l))
            .map(|p| format!(", in the <strong>{}</strong> phase", p.as_str()))
            .unwrap_or_default()
    };
    if let Some(lens) = r.lens {
        let ppl = lens.lens_ppl();
        let last = ppl.last().copied().flatten();
        let mut t = format!("LogitLens perplexity at the last layer: <strong>{}</strong>", opt(last));
        if let Some(c) = r.profile.and_then(|p| p.metrics.summary.phases).and_then(|p| p.compress) {
            if let Some(v) = ppl.get(c.last).copied().flatten() {
                let _ = write!(
                    t,
                    "; at the end of the Compress phase (layer {}, {} of depth) it is still {}{}",
                    c.last,
                    pct(lens.depth(c.last)),
                    num(v),
                    last.filter(|x| *x > 0.0)
                        .map(|x| format!(" ({}× the final)", num(v / x)))
                        .unwrap_or_default()
                );
            }
        }
        t.push_str(" — generation uses the full depth.");
        out.push(t);
    }
    if let Some(probe) = r.probe {
        if let Some((l, a)) = probe.probe_best() {
            out.push(format!(
                "Best probe layer: <strong>{l}</strong> ({} of depth{}) with accuracy <strong>{}</strong>{}; at the last layer: {}.",
                pct(probe.depth(l)),
                phase_at(l),
                num(a),
                probe.probe_baseline().map(|b| format!(" (majority baseline {})", num(b))).unwrap_or_default(),
                opt(probe.probe_accuracy().last().and_then(|p| p.0))
            ));
        }
    }
    if r.profile.is_none() {
        out.push("No profile run was given, so the Mix / Compress / Refine phases are not shaded.".into());
    } else if r.profile.is_some_and(|p| p.metrics.summary.phases.is_none()) {
        out.push("The profile found no compression phase, so no phases are shaded.".into());
    }
    out
}

fn runs_list(r: &TaskRuns<'_>) -> String {
    let mut s = String::from("<ul>\n");
    for (what, run) in [("profile", r.profile), ("lens", r.lens), ("probe", r.probe)] {
        match run {
            Some(run) => {
                let _ = writeln!(
                    s,
                    "<li>{what}: <code>{}</code>{}</li>",
                    esc(&run.dir.display().to_string()),
                    run.manifest
                        .model
                        .as_ref()
                        .and_then(|m| m.sha256.as_ref())
                        .map(|h| format!(" · model sha256 <code>{}</code>", esc(h)))
                        .unwrap_or_default()
                );
            }
            None => {
                let _ = writeln!(s, "<li>{what}: none</li>");
            }
        }
    }
    s.push_str("</ul>\n");
    s
}

fn tasks_html(r: &TaskRuns<'_>, plots: &[RenderedPlot]) -> String {
    let label = r.label();
    let mut b = String::new();
    let _ = writeln!(b, "<header><h1>sinkscope tasks vs depth: {}</h1>", esc(&label));
    let _ = writeln!(
        b,
        "<p class=\"sub\">{} blocks · depth normalised to l / L · result schema v{}</p></header>",
        r.n_layers(),
        crate::schema::SCHEMA_VERSION
    );
    b.push_str("<section id=\"summary\"><h2>Summary</h2>\n<ul class=\"summary\">\n");
    for s in task_sentences(r) {
        let _ = writeln!(b, "<li>{s}</li>");
    }
    b.push_str("</ul>\n</section>\n<section id=\"plots\"><h2>Plots</h2>\n");
    for p in plots {
        let _ = writeln!(b, "<h3>{}</h3>", esc(&p.title));
        b.push_str(&crate::html::figure(p, FIG7_CAPTION));
    }
    b.push_str(
        "</section>\n<section id=\"table\"><h2>Per-layer values</h2>\n<p class=\"note\">In \
         <a href=\"tasks.csv\">tasks.csv</a>: one row per layer with its depth, the profile's phase, the lens and the \
         probe columns.</p>\n</section>\n<section id=\"runs\"><h2>Runs</h2>\n",
    );
    b.push_str(&runs_list(r));
    b.push_str("</section>\n");
    page(&format!("sinkscope tasks vs depth — {label}"), &b)
}

/// The caption of Fig. 7.
pub(crate) const FIG7_CAPTION: &str = "The paper's Fig. 7: LogitLens perplexity (log scale; blue: token-weighted, orange: \
     per-prompt mean ± std, grey dashed: the model's own perplexity) and linear-probe accuracy (± std over folds; grey \
     dashed: majority baseline; green: best layer) and, with a `lens --mc` run, multiple-choice LogitLens accuracy (solid: \
     summed log-likelihood, dashed: per byte, band: 95 % bootstrap interval over items, grey: chance) against normalised \
     depth l / L, with the profile's phases shaded.";

/// The run folders [`render_tasks`] reads (each optional; see there).
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskDirs<'a> {
    /// A profile run (its phases are shaded).
    pub profile: Option<&'a Path>,
    /// A lens run (next-token LogitLens).
    pub lens: Option<&'a Path>,
    /// A probe run.
    pub probe: Option<&'a Path>,
    /// A `lens --mc` run (multiple-choice LogitLens accuracy).
    pub mc: Option<&'a Path>,
}

/// Tasks vs depth (the paper's Fig. 7) for one model: writes `out/tasks.csv` (one row per
/// layer: `layer,depth,phase`, the lens columns `lens_nll,lens_ppl,lens_top1,
/// logit_lens_ppl_mean,logit_lens_ppl_std` and the probe columns `probe_accuracy_mean,
/// probe_accuracy_std,probe_baseline`, each group only when that run is given),
/// `out/plots/tasks_fig7.{svg,png}` and `out/tasks.html` (self-contained).
///
/// `profile` (optional) only supplies the Mix/Compress/Refine phases that are shaded; at
/// least one of `lens`, `probe` and `mc` (a `lens --mc` run) must be given. `out` is created; it may be one of the run
/// folders (the file names do not clash with a run's own).
///
/// # Example
/// ```
/// use sinkscope_report::{render_tasks, TaskDirs};
/// use sinkscope_report::synthetic::{SyntheticLens, SyntheticProbe, SyntheticRun};
///
/// let dir = std::env::temp_dir().join(format!("sinkscope-tasks-doc-{}", std::process::id()));
/// let model = SyntheticRun::default();
/// model.write(&dir.join("profile"))?;
/// SyntheticLens { model: model.clone() }.write(&dir.join("lens"))?;
/// SyntheticProbe { model, n_samples: 20, not_converged: vec![] }.write(&dir.join("probe"))?;
/// let dirs = TaskDirs {
///     profile: Some(&dir.join("profile")),
///     lens: Some(&dir.join("lens")),
///     probe: Some(&dir.join("probe")),
///     mc: None,
/// };
/// let out = render_tasks(&dirs, &dir.join("tasks"))?;
/// assert_eq!(out.plots[0].stem, "tasks_fig7");
/// assert!(out.tasks_html.is_file() && out.tasks_csv.is_file());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`ReportError::NoTaskRuns`] without a lens, probe or mc run; [`ReportError::WrongKind`] for a
/// folder of another kind; [`ReportError::ModelMismatch`] when two runs record different
/// model hashes; [`SchemaError::Invalid`](sinkscope_schema::SchemaError::Invalid) when their `n_layers` differ; otherwise as
/// [`crate::render_run`].
pub fn render_tasks(dirs: &TaskDirs<'_>, out: &Path) -> Result<TasksSummary, ReportError> {
    if dirs.lens.is_none() && dirs.probe.is_none() && dirs.mc.is_none() {
        return Err(ReportError::NoTaskRuns);
    }
    let load = |d: Option<&Path>, kind| d.map(|d| load_kind(d, kind)).transpose();
    let profile = load(dirs.profile, RunKind::Profile)?;
    let lens = load(dirs.lens, RunKind::Lens)?;
    let probe = load(dirs.probe, RunKind::Probe)?;
    let mc = load(dirs.mc, RunKind::Mc)?;
    let all: Vec<&Run> =
        [profile.as_ref(), lens.as_ref(), probe.as_ref(), mc.as_ref()].into_iter().flatten().collect();
    check_same_model(&all)?;
    let runs =
        TaskRuns { profile: profile.as_ref(), lens: lens.as_ref(), probe: probe.as_ref(), mc: mc.as_ref() };
    std::fs::create_dir_all(out).map_err(ReportError::io(out))?;
    let tasks_csv_path = out.join(TASKS_CSV);
    write_file(&tasks_csv_path, &tasks_csv(&runs))?;
    let rendered = vec![plots::render(&TasksFig7 { runs, stem: "tasks_fig7".into() }, &out.join(PLOTS_DIR))?];
    let tasks_html_path = out.join(TASKS_HTML);
    write_file(&tasks_html_path, &tasks_html(&runs, &rendered))?;
    Ok(TasksSummary {
        tasks_csv: tasks_csv_path,
        plots: rendered.iter().map(PlotFiles::from).collect(),
        tasks_html: tasks_html_path,
    })
}
