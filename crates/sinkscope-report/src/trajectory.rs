//! Training dynamics: how the three faces of the phenomenon evolve over a model's training
//! checkpoints (the paper's "they emerge together" claim).
//!
//! [`render_trajectory`] reads one profile run folder per checkpoint step and writes
//! `trajectory.csv`, `trajectory.json`, `plots/trajectory.{svg,png}` and `trajectory.html`:
//! per step the peak first-token ratio (`summary.peak_bos_ratio`) and its block, the minimum
//! `entropy_norm` and its layer, the peak `sink_rate` (max over layers of the prompt mean) and
//! its layer, the massive-activation blocks, the compress phase; and the first step at which
//! each phenomenon is present by its own metrics.md rule:
//!
//! - massive activation: a massive-activation block is detected (`summary.massive_layers`);
//! - attention sinks: peak mean `sink_rate` ≥ 0.5 (the compress phase's sink condition);
//! - compression valley: a compress phase is detected (`summary.phases.compress`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::html::{figure, num, page};
use crate::plots::xml_escape as esc;
use crate::plots::{self, DrawResult, Figure, Panel, Series, VLine, YScale};
use crate::schema::{Crossings, LayerSpan, LayerValue, Run, TrajectoryFile, TrajectoryStep};
use crate::{write_file, ReportError, PLOTS_DIR};

/// `trajectory.csv`.
pub const TRAJECTORY_CSV: &str = "trajectory.csv";
/// `trajectory.json`.
pub const TRAJECTORY_JSON: &str = crate::schema::TRAJECTORY_FILE;
/// `trajectory.html`.
pub const TRAJECTORY_HTML: &str = "trajectory.html";

/// The sink-rate threshold of the "attention sinks" crossing (metrics.md's compress rule).
pub const SINK_RATE_THRESHOLD: f64 = sinkscope_metrics::phases::COMPRESS_MIN_SINK_RATE;

/// One checkpoint's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    /// Training step.
    pub step: u64,
    /// The run folder.
    pub run: PathBuf,
    /// Largest prompt-mean `bos_ratio` and its layer (= the block writing it).
    pub peak_bos_ratio: Option<(usize, f64)>,
    /// Smallest prompt-mean `entropy_norm` and its layer.
    pub min_entropy_norm: Option<(usize, f64)>,
    /// Largest prompt-mean `sink_rate` and its layer.
    pub peak_sink_rate: Option<(usize, f64)>,
    /// Detected massive-activation blocks.
    pub massive_blocks: Vec<usize>,
    /// The compress phase (first, last layer).
    pub compress: Option<(usize, usize)>,
    /// Number of blocks L.
    pub n_layers: usize,
}

impl StepRow {
    fn massive(&self) -> bool {
        !self.massive_blocks.is_empty()
    }
    fn sinks(&self) -> bool {
        self.peak_sink_rate.is_some_and(|(_, v)| v >= SINK_RATE_THRESHOLD)
    }
    fn valley(&self) -> bool {
        self.compress.is_some()
    }
}

/// What [`render_trajectory`] found and wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct TrajectorySummary {
    /// One row per step, by increasing step.
    pub rows: Vec<StepRow>,
    /// First step with a massive activation, attention sinks, a compression valley.
    pub crossings: [Option<u64>; 3],
}

fn row(step: u64, dir: &Path) -> Result<StepRow, ReportError> {
    let run = Run::load(dir)?;
    let s = &run.metrics.summary;
    let lv = |v: &Option<crate::schema::LayerValue>| v.as_ref().map(|v| (v.layer, v.value));
    let n_layers = run.n_layers();
    let peak_sink = (0..=n_layers).filter_map(|l| run.metrics.mean_at("sink_rate", l).map(|v| (l, v))).fold(
        None,
        |best: Option<(usize, f64)>, (l, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((l, v)),
        },
    );
    Ok(StepRow {
        step,
        run: dir.to_path_buf(),
        peak_bos_ratio: lv(&s.peak_bos_ratio),
        min_entropy_norm: lv(&s.min_entropy_norm),
        peak_sink_rate: peak_sink,
        massive_blocks: s.massive_layers.iter().filter_map(|m| m.block).collect(),
        compress: s.phases.and_then(|p| p.compress).map(|c| (c.first, c.last)),
        n_layers,
    })
}

fn x_of(step: u64) -> f64 {
    ((step + 1) as f64).log10()
}

fn cell<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn csv(rows: &[StepRow]) -> String {
    let mut s = String::from(
        "step,peak_bos_ratio,peak_bos_ratio_layer,min_entropy_norm,min_entropy_norm_layer,peak_sink_rate,peak_sink_rate_layer,massive_blocks,compress_first,compress_last,n_layers,run\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            r.step,
            cell(r.peak_bos_ratio.map(|x| x.1)),
            cell(r.peak_bos_ratio.map(|x| x.0)),
            cell(r.min_entropy_norm.map(|x| x.1)),
            cell(r.min_entropy_norm.map(|x| x.0)),
            cell(r.peak_sink_rate.map(|x| x.1)),
            cell(r.peak_sink_rate.map(|x| x.0)),
            r.massive_blocks.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
            cell(r.compress.map(|c| c.0)),
            cell(r.compress.map(|c| c.1)),
            r.n_layers,
            r.run.display().to_string().replace(',', "%2C"),
        );
    }
    s
}

fn document(rows: &[StepRow], crossings: &[Option<u64>; 3]) -> TrajectoryFile {
    let lv = |v: Option<(usize, f64)>| v.map(|(layer, value)| LayerValue { layer, value });
    let together = crossings.iter().all(Option::is_some) && crossings.windows(2).all(|w| w[0] == w[1]);
    TrajectoryFile {
        schema_version: crate::schema::SCHEMA_VERSION,
        kind: "trajectory".into(),
        steps: rows
            .iter()
            .map(|r| TrajectoryStep {
                step: r.step,
                run: r.run.clone(),
                peak_bos_ratio: lv(r.peak_bos_ratio),
                min_entropy_norm: lv(r.min_entropy_norm),
                peak_sink_rate: lv(r.peak_sink_rate),
                massive_blocks: r.massive_blocks.clone(),
                compress: r.compress.map(|(first, last)| LayerSpan { first, last }),
                n_layers: r.n_layers,
            })
            .collect(),
        thresholds: Crossings {
            massive_activation:
                "a massive-activation block is detected (summary.massive_layers, metrics.md rule)".into(),
            attention_sinks: format!("peak prompt-mean sink_rate >= {SINK_RATE_THRESHOLD}"),
            compression_valley: "a compress phase is detected (summary.phases.compress, metrics.md rule)"
                .into(),
        },
        crossings: Crossings {
            massive_activation: crossings[0],
            attention_sinks: crossings[1],
            compression_valley: crossings[2],
        },
        emerge_together: together,
    }
}

struct TrajectoryFig<'a> {
    rows: &'a [StepRow],
    crossings: [Option<u64>; 3],
    title: String,
}

impl Figure for TrajectoryFig<'_> {
    fn stem(&self) -> String {
        "trajectory".into()
    }
    fn title(&self) -> String {
        self.title.clone()
    }
    fn size(&self) -> (u32, u32) {
        (1400, 460)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let xs: Vec<f64> = self.rows.iter().map(|r| x_of(r.step)).collect();
        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // A margin so that the first and last steps (and their marker labels) stay inside.
        let pad = if hi > lo { (hi - lo) * 0.06 } else { 0.5 };
        let x_range = (lo - pad, hi + pad);
        let pts = |f: &dyn Fn(&StepRow) -> Option<f64>| -> Vec<(f64, Option<f64>, Option<f64>)> {
            self.rows.iter().map(|r| (x_of(r.step), f(r), None)).collect()
        };
        let vl = |i: usize, label: &str| {
            self.crossings[i].map(|s| VLine {
                x: x_of(s),
                label: format!("{label} @ {s}"),
                color: plots::palette(i),
            })
        };
        let panel = |title: &str, y_desc: &str, y_scale: YScale, s: Series, v: Option<VLine>| Panel {
            title: title.into(),
            x_desc: "log10(step + 1)".into(),
            y_desc: y_desc.into(),
            x_range,
            x_integer: false,
            y_scale,
            series: vec![s.with_markers()],
            shades: Vec::new(),
            legend: None,
            vlines: v.into_iter().collect(),
        };
        let panels = [
            panel(
                "peak first-token ratio (bos_ratio)",
                "max over layers of mean bos_ratio",
                YScale::Log,
                Series::line("peak bos_ratio", plots::palette(0), pts(&|r| r.peak_bos_ratio.map(|x| x.1))),
                vl(0, "massive"),
            ),
            panel(
                "peak sink rate",
                "max over layers of mean sink_rate",
                YScale::Fixed(0.0, 1.0),
                Series::line("peak sink_rate", plots::palette(1), pts(&|r| r.peak_sink_rate.map(|x| x.1))),
                vl(1, "sinks"),
            ),
            panel(
                "min normalised entropy",
                "min over layers of mean entropy_norm",
                YScale::Fixed(0.0, 1.0),
                Series::line(
                    "min entropy_norm",
                    plots::palette(2),
                    pts(&|r| r.min_entropy_norm.map(|x| x.1)),
                ),
                vl(2, "valley"),
            ),
        ];
        plots::draw_panels(root, &self.title, &panels)
    }
}

fn html(title: &str, rows: &[StepRow], crossings: &[Option<u64>; 3], plot: &plots::RenderedPlot) -> String {
    let mut b = String::new();
    let _ = writeln!(b, "<h1>{}</h1>", esc(title));
    let step = |s: Option<u64>| s.map_or("never (in these checkpoints)".to_string(), |s| format!("step {s}"));
    let together = crossings.iter().all(Option::is_some) && crossings.windows(2).all(|w| w[0] == w[1]);
    let _ = writeln!(
        b,
        "<p>Massive activation first detected at <strong>{}</strong>; attention sinks (peak sink rate ≥ {}) at \
         <strong>{}</strong>; compression valley at <strong>{}</strong>. {}</p>",
        step(crossings[0]),
        SINK_RATE_THRESHOLD,
        step(crossings[1]),
        step(crossings[2]),
        if together {
            "The three emerge together (at the same checkpoint)."
        } else {
            "They do not all emerge at the same checkpoint of this series."
        }
    );
    b.push_str(&figure(plot, "Per checkpoint, against log10(step + 1): the peak first-token ratio, the peak sink rate and the minimum normalised entropy; dashed lines mark the first step each phenomenon is present."));
    b.push_str("<table>\n<tr><th>step</th><th>peak bos_ratio (layer)</th><th>min entropy_norm (layer)</th><th>peak sink_rate (layer)</th><th>massive blocks</th><th>compress phase</th><th>run</th></tr>\n");
    let lv = |v: Option<(usize, f64)>| v.map_or("–".to_string(), |(l, x)| format!("{} ({l})", num(x)));
    for r in rows {
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            r.step,
            lv(r.peak_bos_ratio),
            lv(r.min_entropy_norm),
            lv(r.peak_sink_rate),
            if r.massive_blocks.is_empty() {
                "none".to_string()
            } else {
                r.massive_blocks.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            },
            r.compress.map_or("none".to_string(), |(a, c)| format!("{a}–{c}")),
            esc(&r.run.display().to_string()),
        );
    }
    b.push_str("</table>\n");
    page(title, &b)
}

/// Writes the trajectory of `runs` (`(step, profile run folder)`, any order) into `out`:
/// `trajectory.csv`, `trajectory.json`, `plots/trajectory.{svg,png}`, `trajectory.html`.
///
/// # Errors
/// A run folder that cannot be read, no runs, two runs at one step, or an unwritable output.
pub fn render_trajectory(
    title: &str,
    runs: &[(u64, PathBuf)],
    out: &Path,
) -> Result<TrajectorySummary, ReportError> {
    let mut rows = runs.iter().map(|(s, d)| row(*s, d)).collect::<Result<Vec<_>, _>>()?;
    rows.sort_by_key(|r| r.step);
    if let Some(w) = rows.windows(2).find(|w| w[0].step == w[1].step) {
        return Err(ReportError::Schema(sinkscope_schema::SchemaError::Invalid {
            path: w[1].run.clone(),
            message: format!(
                "two runs at step {} ({} and {})",
                w[1].step,
                w[0].run.display(),
                w[1].run.display()
            ),
        }));
    }
    if rows.is_empty() {
        return Err(ReportError::Schema(sinkscope_schema::SchemaError::Invalid {
            path: out.to_path_buf(),
            message: "no checkpoint runs".into(),
        }));
    }
    let first = |f: fn(&StepRow) -> bool| rows.iter().find(|r| f(r)).map(|r| r.step);
    let crossings = [first(StepRow::massive), first(StepRow::sinks), first(StepRow::valley)];
    std::fs::create_dir_all(out).map_err(ReportError::io(out))?;
    write_file(&out.join(TRAJECTORY_CSV), &csv(&rows))?;
    let doc = document(&rows, &crossings);
    // Keys sorted, as in every results file (the type declares its fields in reading order).
    let text = serde_json::to_value(&doc).and_then(|v| serde_json::to_string_pretty(&v)).map_err(|e| {
        ReportError::Schema(sinkscope_schema::SchemaError::Invalid {
            path: out.join(TRAJECTORY_JSON),
            message: e.to_string(),
        })
    })?;
    write_file(&out.join(TRAJECTORY_JSON), &text)?;
    let fig = TrajectoryFig { rows: &rows, crossings, title: format!("Training dynamics — {title}") };
    let plot = plots::render(&fig, &out.join(PLOTS_DIR))?;
    write_file(
        &out.join(TRAJECTORY_HTML),
        &html(&format!("Training dynamics — {title}"), &rows, &crossings, &plot),
    )?;
    Ok(TrajectorySummary { rows, crossings })
}
