//! The paper's Fig. 5 (sinks that adapt to the input: dormant heads, mixing invariant to the
//! input) and Fig. 6 (the phases' mechanics), for one run and across runs.
//!
//! - `fig5` (a run): every head's sink score `bos_attention(l, h)` with its 95 % bootstrap
//!   interval over prompts, dormant heads filled (criterion below), and `mixing_score` with
//!   its interval.
//! - `compare_fig5_<k>` (the k-th model with two or more profile runs on different prompt
//!   sets): the same, one colour per prompt set, input-adaptive heads ringed; `mixing_score`
//!   and `sink_rate` per set.
//! - `fig6` (a run): head-class fractions per layer; first-token vs content-token norms;
//!   `c = M/R` and `α` (Theorem 1: `σ₁² ≥ M + αR`, so `α ≪ c` means `αR ≪ M`: the first
//!   token alone makes X near rank one); the sink's value-norm ratio; attention paid to the
//!   sink vs its share of the heads' output ("sinks are no-ops").
//! - `compare_fig6`: `c`, `α`, the sink heads' output share and the mixing-head fraction of
//!   every profile run on normalised depth.
//!
//! **Dormant** (metrics.md, "Dormant heads"; our criterion — the paper's text is not
//! available to us): head `(l, h)` is dormant on a prompt set when its prompt-mean
//! `bos_attention > ε` (the sink-head test of `sink_rate`, applied to the mean). It is
//! **input-adaptive** across sets when it is dormant on one set and not on another and the
//! two sets' 95 % intervals are disjoint (a run without intervals counts its mean as a
//! zero-width interval).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::csv::{fmt_cell, table_csv};
use crate::html::opt;
use crate::plots::xml_escape as esc;
use crate::plots::{
    draw_panel, draw_panel_grid, err, fraction_range, layer_range, metric_intervals, metric_points, palette,
    phase_shades, tick_label_x, tick_label_y, DrawResult, Figure, Panel, Series, YScale, FONT, PALETTE,
};
use crate::schema::Run;

/// The sink-head threshold ε of a run (`options.epsilon`, default 0.3).
pub(crate) fn epsilon(run: &Run) -> f64 {
    run.manifest.options.get("epsilon").and_then(serde_json::Value::as_f64).unwrap_or(0.3)
}

/// One head's sink score on one prompt set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HeadScore {
    /// Prompt-mean `bos_attention`.
    pub mean: f64,
    /// 95 % interval (the mean itself when the run has none).
    pub ci: (f64, f64),
}

/// `score[l][h]` of a run (`l = 0..L`, entry 0 empty).
pub(crate) fn head_scores(run: &Run) -> Vec<Vec<Option<HeadScore>>> {
    let heads = &run.metrics.heads;
    let n_heads = run.metrics.head_count();
    (0..=run.n_layers())
        .map(|l| {
            (0..n_heads)
                .map(|h| {
                    let mean = heads.bos_attention_at(l, h)?;
                    Some(HeadScore { mean, ci: heads.bos_attention_ci(l, h).unwrap_or((mean, mean)) })
                })
                .collect()
        })
        .collect()
}

/// Whether a head is dormant: prompt-mean `bos_attention > ε` (strict).
pub(crate) fn is_dormant(s: &HeadScore, eps: f64) -> bool {
    s.mean > eps
}

/// An input-adaptive head: dormant on some sets, active on others, with disjoint intervals.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AdaptiveHead {
    /// Layer (block) l.
    pub layer: usize,
    /// Head h.
    pub head: usize,
    /// Its sink score on each set (`None` where the set has no value).
    pub scores: Vec<Option<HeadScore>>,
}

/// The heads that are dormant on one set and not on another with disjoint 95 % intervals
/// (module docs); `sets[k]` = [`head_scores`] of set k, `eps` = ε.
pub(crate) fn adaptive_heads(sets: &[Vec<Vec<Option<HeadScore>>>], eps: f64) -> Vec<AdaptiveHead> {
    let n_layers = sets.iter().map(Vec::len).min().unwrap_or(0);
    let mut out = Vec::new();
    for l in 1..n_layers {
        let n_heads = sets.iter().map(|s| s.get(l).map_or(0, Vec::len)).min().unwrap_or(0);
        for h in 0..n_heads {
            let scores: Vec<Option<HeadScore>> =
                sets.iter().map(|s| s.get(l).and_then(|r| r.get(h)).copied().flatten()).collect();
            let present: Vec<HeadScore> = scores.iter().flatten().copied().collect();
            let flips = present.iter().any(|a| {
                is_dormant(a, eps) && present.iter().any(|b| !is_dormant(b, eps) && a.ci.0 > b.ci.1)
            });
            if flips {
                out.push(AdaptiveHead { layer: l, head: h, scores });
            }
        }
    }
    out
}

/// Number of dormant heads of a set.
pub(crate) fn dormant_count(scores: &[Vec<Option<HeadScore>>], eps: f64) -> usize {
    scores.iter().flatten().flatten().filter(|s| is_dormant(s, eps)).count()
}

/// How much a per-layer curve moves between sets: the largest `|Δ mean|` over layers and
/// pairs of sets, and the number of layers where some pair's 95 % intervals are disjoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    /// Largest `|mean_a(l) − mean_b(l)|`.
    pub max_abs_diff: Option<f64>,
    /// Layers where two sets' intervals do not overlap.
    pub layers_disjoint: usize,
    /// Layers compared.
    pub layers: usize,
}

/// [`Spread`] of metric `name` across `runs` (the same model: layers compared one to one).
pub(crate) fn spread(runs: &[&Run], name: &str) -> Spread {
    let n = runs.iter().map(|r| r.n_layers()).min().unwrap_or(0);
    let mut max: Option<f64> = None;
    let (mut disjoint, mut layers) = (0, 0);
    for l in 0..=n {
        let vals: Vec<(f64, Option<(f64, f64)>)> = runs
            .iter()
            .filter_map(|r| {
                let m = r.metrics.metric(name)?;
                Some((m.mean_at(l)?, m.ci_at(l)))
            })
            .collect();
        if vals.len() < 2 {
            continue;
        }
        layers += 1;
        let mut any_disjoint = false;
        for (i, a) in vals.iter().enumerate() {
            for b in vals.iter().skip(i + 1) {
                let d = (a.0 - b.0).abs();
                max = Some(max.map_or(d, |m: f64| m.max(d)));
                if let (Some(x), Some(y)) = (a.1, b.1) {
                    any_disjoint |= x.0 > y.1 || y.0 > x.1;
                }
            }
        }
        disjoint += usize::from(any_disjoint);
    }
    Spread { max_abs_diff: max, layers_disjoint: disjoint, layers }
}

/// Draws the head-score panel: every head of every set as a dot with its interval, dormant
/// heads filled, `adaptive` heads ringed, ε dashed.
fn draw_heads<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    sets: &[(String, Vec<Vec<Option<HeadScore>>>)],
    eps: f64,
    adaptive: &[AdaptiveHead],
) -> DrawResult {
    let n_layers = sets.iter().map(|(_, s)| s.len().saturating_sub(1)).max().unwrap_or(0);
    let n_heads = sets.iter().flat_map(|(_, s)| s.iter().map(Vec::len)).max().unwrap_or(1).max(1);
    let n_sets = sets.len().max(1);
    let mut c = ChartBuilder::on(area)
        .caption(title, (FONT, 17))
        .margin(8)
        .margin_right(14)
        .x_label_area_size(42)
        .y_label_area_size(62)
        .build_cartesian_2d(0.5..n_layers as f64 + 0.5, 0.0..1.05)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("layer l (heads spread within the layer, sets side by side)")
        .y_desc("bos_attention(l, h)")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(235, 235, 235).mix(0.0))
        .x_labels(n_layers.min(40))
        .x_label_formatter(&|x| tick_label_x(*x, true))
        .y_label_formatter(&|y| tick_label_y(*y))
        .draw()
        .map_err(err)?;
    c.draw_series(DashedLineSeries::new(
        vec![(0.5, eps), (n_layers as f64 + 0.5, eps)],
        6,
        5,
        RGBColor(200, 0, 0).stroke_width(1),
    ))
    .map_err(err)?
    .label(format!("ε = {eps} (dormant above)"))
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RGBColor(200, 0, 0)));
    let slots = (n_heads * n_sets) as f64;
    let x_of = |l: usize, h: usize, k: usize| l as f64 - 0.4 + 0.8 * ((h * n_sets + k) as f64 + 0.5) / slots;
    for (k, (label, scores)) in sets.iter().enumerate() {
        let col = palette(k);
        let mut whiskers = Vec::new();
        let mut dots = Vec::new();
        for (l, row) in scores.iter().enumerate().skip(1) {
            for (h, s) in row.iter().enumerate() {
                let Some(s) = s else { continue };
                let x = x_of(l, h, k);
                if s.ci.1 > s.ci.0 {
                    whiskers
                        .push(PathElement::new(vec![(x, s.ci.0), (x, s.ci.1)], col.mix(0.6).stroke_width(1)));
                }
                let style = if is_dormant(s, eps) { col.filled() } else { col.stroke_width(1) };
                dots.push(Circle::new((x, s.mean), 3, style));
            }
        }
        c.draw_series(whiskers).map_err(err)?;
        c.draw_series(dots)
            .map_err(err)?
            .label(label.clone())
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, col.filled()));
    }
    if !adaptive.is_empty() {
        let ring = RGBColor(0, 0, 0);
        let mut rings = Vec::new();
        for a in adaptive {
            for (k, s) in a.scores.iter().enumerate() {
                if let Some(s) = s {
                    rings.push(Circle::new((x_of(a.layer, a.head, k), s.mean), 6, ring.stroke_width(1)));
                }
            }
        }
        c.draw_series(rings)
            .map_err(err)?
            .label("input-adaptive head (dormant on one set only)")
            .legend(move |(x, y)| Circle::new((x + 8, y), 5, ring.stroke_width(1)));
    }
    if sets.iter().all(|(_, s)| s.iter().all(|r| r.iter().all(Option::is_none))) {
        let style = (FONT, 16).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
        c.draw_series(std::iter::once(Text::new(
            "no per-head statistics in this run",
            (n_layers as f64 / 2.0 + 0.5, 0.5),
            style,
        )))
        .map_err(err)?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font((FONT, 13))
        .draw()
        .map_err(err)?;
    Ok(())
}

fn curve_series(run: &Run, name: &str, label: &str, color: RGBColor, x_scale: f64, y: YScale) -> Series {
    let interval = metric_intervals(run, name);
    Series::line(label, color, metric_points(run, name, x_scale))
        .with_band(0.18)
        .band_interval(interval)
        .clipped(fraction_range(y))
}

/// Fig. 5 of one run: its heads' sink scores and its mixing score.
pub(crate) struct Fig5<'a>(pub &'a Run);

impl Figure for Fig5<'_> {
    fn stem(&self) -> String {
        "fig5".into()
    }
    fn title(&self) -> String {
        format!("Fig. 5 — {}: per-head sink score with dormant heads, and mixing score", self.0.label())
    }
    fn size(&self) -> (u32, u32) {
        (1500, 520)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let run = self.0;
        let eps = epsilon(run);
        let title = format!(
            "{} — dots: prompt mean, whiskers: 95 % bootstrap CI over {} prompts; filled = dormant (> ε)",
            run.label(),
            run.n_prompts()
        );
        let area = root.titled(&title, (FONT, 18)).map_err(err)?;
        let w = area.dim_in_pixel().0;
        let (left, right) = area.split_horizontally((f64::from(w) * 0.68).round() as u32);
        let sets = vec![(run.label(), head_scores(run))];
        draw_heads(&left, "sink score per head", &sets, eps, &[])?;
        let y = YScale::Fixed(0.0, 1.05);
        let panel = Panel {
            title: "mixing score (mean attn_entropy)".into(),
            x_desc: "layer l".into(),
            y_desc: "mixing_score".into(),
            x_range: layer_range(run),
            x_integer: true,
            y_scale: y,
            series: vec![curve_series(run, "mixing_score", "mixing_score", PALETTE[0], 1.0, y)],
            shades: phase_shades(run),
            legend: None,
            vlines: Vec::new(),
        };
        draw_panel(&right, &panel)
    }
}

/// Fig. 5 across prompt sets: the profile runs of one model on different data.
pub(crate) struct CompareFig5<'a> {
    /// The runs (one model).
    pub runs: Vec<&'a Run>,
    /// Their labels (what sets them apart).
    pub labels: Vec<String>,
    /// File stem (`compare_fig5_<k>`).
    pub stem: String,
}

impl Figure for CompareFig5<'_> {
    fn stem(&self) -> String {
        self.stem.clone()
    }
    fn title(&self) -> String {
        let model = self.runs.first().map(|r| r.label()).unwrap_or_default();
        format!("Fig. 5 — {model}: sink scores and mixing across {} prompt sets", self.runs.len())
    }
    fn size(&self) -> (u32, u32) {
        (1500, 900)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let eps = self.runs.first().map_or(0.3, |r| epsilon(r));
        let sets: Vec<(String, Vec<Vec<Option<HeadScore>>>)> =
            self.labels.iter().cloned().zip(self.runs.iter().map(|r| head_scores(r))).collect();
        let scores: Vec<_> = sets.iter().map(|(_, s)| s.clone()).collect();
        let adaptive = adaptive_heads(&scores, eps);
        let title =
            "dots: prompt mean, whiskers: 95 % bootstrap CI; filled = dormant (> ε); ringed = input-adaptive";
        let area = root.titled(title, (FONT, 18)).map_err(err)?;
        let (top, bottom) = area.split_vertically(area.dim_in_pixel().1 * 11 / 20);
        draw_heads(
            &top,
            &format!("sink score per head ({} input-adaptive)", adaptive.len()),
            &sets,
            eps,
            &adaptive,
        )?;
        let y = YScale::Fixed(0.0, 1.05);
        let x_range = self
            .runs
            .iter()
            .map(|r| layer_range(r))
            .fold((0.0_f64, 0.0_f64), |a, b| (a.0.min(b.0), a.1.max(b.1)));
        let mk = |title: &str, name: &str| Panel {
            title: title.into(),
            x_desc: "layer l".into(),
            y_desc: name.into(),
            x_range,
            x_integer: true,
            y_scale: y,
            series: self
                .runs
                .iter()
                .zip(&self.labels)
                .enumerate()
                .map(|(k, (r, label))| curve_series(r, name, label, palette(k), 1.0, y))
                .collect(),
            shades: Vec::new(),
            legend: Some(SeriesLabelPosition::LowerLeft),
            vlines: Vec::new(),
        };
        let mix = spread(&self.runs, "mixing_score");
        let sink = spread(&self.runs, "sink_rate");
        let fmt = |s: Spread| s.max_abs_diff.map_or("–".into(), |d| format!("{d:.3}"));
        let panels = [
            mk(&format!("mixing score — max |Δ| across sets {}", fmt(mix)), "mixing_score"),
            mk(&format!("sink rate — max |Δ| across sets {}", fmt(sink)), "sink_rate"),
        ];
        draw_panel_grid(&bottom, "", &panels, (1, 2))
    }
}

/// Fig. 6 of one run: the mechanics of the phases.
pub(crate) struct Fig6<'a>(pub &'a Run);

/// The head-class curves and their labels.
const CLASSES: [(&str, &str); 5] = [
    ("head_frac_sink", "sink"),
    ("head_frac_identity", "identity"),
    ("head_frac_previous_token", "previous-token"),
    ("head_frac_mixing", "mixing"),
    ("head_frac_other", "other"),
];

impl Figure for Fig6<'_> {
    fn stem(&self) -> String {
        "fig6".into()
    }
    fn title(&self) -> String {
        format!(
            "Fig. 6 — {}: head classes, first-token vs content norms, c and α, the sink's value and output share",
            self.0.label()
        )
    }
    fn size(&self) -> (u32, u32) {
        (1500, 900)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let run = self.0;
        let shades = phase_shades(run);
        let missing = |names: &[&str]| {
            if names.iter().all(|n| run.metrics.metric(n).is_none()) {
                " (not in this run)"
            } else {
                ""
            }
        };
        let mk = |title: String, y_desc: &str, y: YScale, series: Vec<Series>, legend| Panel {
            title,
            x_desc: "layer l".into(),
            y_desc: y_desc.into(),
            x_range: layer_range(run),
            x_integer: true,
            y_scale: y,
            series,
            shades: shades.clone(),
            legend,
            vlines: Vec::new(),
        };
        let frac = YScale::Fixed(0.0, 1.05);
        let class_names: Vec<&str> = CLASSES.iter().map(|c| c.0).collect();
        let range = layer_range(run);
        let panels = [
            mk(
                format!("head classes (fraction of heads){}", missing(&class_names)),
                "fraction of heads",
                frac,
                CLASSES
                    .iter()
                    .enumerate()
                    .map(|(i, (n, label))| curve_series(run, n, label, palette(i), 1.0, frac))
                    .collect(),
                Some(SeriesLabelPosition::UpperRight),
            ),
            mk(
                "first-token vs content-token norm (log)".into(),
                "‖x‖₂",
                YScale::Log,
                vec![
                    curve_series(run, "bos_norm", "first token ‖x₀‖", PALETTE[2], 1.0, YScale::Log),
                    curve_series(run, "token_norm_mean", "mean ‖x_i‖, i ≥ 1", PALETTE[0], 1.0, YScale::Log),
                ],
                Some(SeriesLabelPosition::UpperLeft),
            ),
            mk(
                "c = M/R and α (log): α ≪ c ⇔ αR ≪ M".into(),
                "c, α",
                YScale::Log,
                vec![
                    curve_series(run, "c", "c = M/R", PALETTE[3], 1.0, YScale::Log),
                    curve_series(run, "alpha", "α", PALETTE[4], 1.0, YScale::Log),
                ],
                Some(SeriesLabelPosition::UpperLeft),
            ),
            mk(
                format!("sink value norm ‖v₀‖ / mean ‖v_j‖ (log){}", missing(&["sink_value_ratio"])),
                "sink_value_ratio",
                YScale::Log,
                vec![
                    curve_series(run, "sink_value_ratio", "mean over heads", PALETTE[1], 1.0, YScale::Log),
                    Series::hline("1 (as large as the others)", RGBColor(120, 120, 120), range, 1.0),
                ],
                Some(SeriesLabelPosition::UpperRight),
            ),
            mk(
                format!("attention to the sink vs its output share{}", missing(&["sink_output_share"])),
                "fraction",
                frac,
                vec![
                    curve_series(run, "bos_attention_excl", "attention to position 0", PALETTE[0], 1.0, frac),
                    curve_series(
                        run,
                        "sink_output_share",
                        "sink's output share (all heads)",
                        PALETTE[3],
                        1.0,
                        frac,
                    ),
                    curve_series(
                        run,
                        "sink_output_share_sink_heads",
                        "… of sink heads",
                        PALETTE[2],
                        1.0,
                        frac,
                    )
                    .dashed(),
                ],
                Some(SeriesLabelPosition::UpperRight),
            ),
            mk(
                "mixing score".into(),
                "mixing_score",
                frac,
                vec![curve_series(run, "mixing_score", "mixing_score", PALETTE[0], 1.0, frac)],
                None,
            ),
        ];
        let title = format!("{} — mean with 95 % bootstrap CI over {} prompts", run.label(), run.n_prompts());
        draw_panel_grid(root, &title, &panels, (2, 3))
    }
}

/// Fig. 6 of several runs on normalised depth.
pub(crate) struct CompareFig6<'a>(pub &'a [&'a Run], pub &'a [String]);

impl Figure for CompareFig6<'_> {
    fn stem(&self) -> String {
        "compare_fig6".into()
    }
    fn title(&self) -> String {
        format!("Fig. 6 compared — {} runs on normalised depth l / L", self.0.len())
    }
    fn size(&self) -> (u32, u32) {
        (1500, 820)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let (runs, labels) = (self.0, self.1);
        let mk = |title: &str, name: &str, y: YScale, legend| Panel {
            title: title.into(),
            x_desc: "depth l / L".into(),
            y_desc: name.into(),
            x_range: (0.0, 1.0),
            x_integer: false,
            y_scale: y,
            series: runs
                .iter()
                .zip(labels)
                .enumerate()
                .map(|(i, (r, label))| {
                    curve_series(r, name, label, palette(i), 1.0 / r.n_layers().max(1) as f64, y)
                })
                .collect(),
            shades: Vec::new(),
            legend,
            vlines: Vec::new(),
        };
        let frac = YScale::Fixed(0.0, 1.05);
        let panels = [
            mk("c = M/R (log)", "c", YScale::Log, Some(SeriesLabelPosition::UpperLeft)),
            mk("α (log)", "alpha", YScale::Log, None),
            mk("sink heads: the sink's share of their output", "sink_output_share_sink_heads", frac, None),
            mk("mixing heads (fraction of heads)", "head_frac_mixing", frac, None),
        ];
        draw_panel_grid(
            root,
            "Fig. 6 per run on normalised depth — mean with 95 % bootstrap CI",
            &panels,
            (2, 2),
        )
    }
}

/// `heads.csv` of a run: `layer,head,bos_attention,bos_attention_ci_low,bos_attention_ci_high,dormant`
/// (one row per head of every block; empty cells where undefined).
pub(crate) fn heads_csv(run: &Run) -> String {
    let eps = epsilon(run);
    let mut rows =
        vec![["layer", "head", "bos_attention", "bos_attention_ci_low", "bos_attention_ci_high", "dormant"]
            .map(String::from)
            .to_vec()];
    for (l, row) in head_scores(run).iter().enumerate().skip(1) {
        for (h, s) in row.iter().enumerate() {
            let ci = run.metrics.heads.bos_attention_ci(l, h);
            rows.push(vec![
                l.to_string(),
                h.to_string(),
                fmt_cell(s.map(|s| s.mean)),
                fmt_cell(ci.map(|c| c.0)),
                fmt_cell(ci.map(|c| c.1)),
                s.map(|s| is_dormant(&s, eps).to_string()).unwrap_or_default(),
            ]);
        }
    }
    table_csv(&rows)
}

/// One model's prompt sets in Fig. 5 (`runs`: its profile runs, `labels`: theirs).
pub(crate) struct Fig5Group<'a> {
    /// The runs, one per prompt set.
    pub runs: Vec<&'a Run>,
    /// Their labels.
    pub labels: Vec<String>,
}

/// The Fig. 5 part of `compare.html` (a table per model) and the rows of `fig5_heads.csv`
/// (`model,set,layer,head,bos_attention,bos_attention_ci_low,bos_attention_ci_high,dormant,adaptive`).
pub(crate) fn fig5_compare(groups: &[Fig5Group<'_>]) -> (String, Vec<Vec<String>>) {
    use std::fmt::Write as _;
    let mut rows = vec![[
        "model",
        "set",
        "layer",
        "head",
        "bos_attention",
        "bos_attention_ci_low",
        "bos_attention_ci_high",
        "dormant",
        "adaptive",
    ]
    .map(String::from)
    .to_vec()];
    let mut html = String::new();
    if groups.is_empty() {
        return (html, rows);
    }
    html.push_str("<h3>Fig. 5: sinks across prompt sets</h3>\n");
    for g in groups {
        let Some(first) = g.runs.first() else { continue };
        let model = first.label();
        let eps = epsilon(first);
        let scores: Vec<_> = g.runs.iter().map(|r| head_scores(r)).collect();
        let adaptive = adaptive_heads(&scores, eps);
        let mix = spread(&g.runs, "mixing_score");
        let sink = spread(&g.runs, "sink_rate");
        let _ = writeln!(
            html,
            "<table class=\"fig5\"><thead><tr><th class=\"l\">{} — prompt set</th><th>prompts</th><th>tokens / prompt</th>\
             <th>model NLL</th><th>dormant heads</th><th>mean sink_rate</th><th>mean mixing_score</th></tr></thead><tbody>",
            esc(&model)
        );
        for ((r, label), sc) in g.runs.iter().zip(&g.labels).zip(&scores) {
            let n_heads: usize = sc.iter().map(|row| row.iter().flatten().count()).sum();
            let per_prompt =
                r.manifest.n_tokens.filter(|_| r.n_prompts() > 0).map(|t| t as f64 / r.n_prompts() as f64);
            let layer_mean = |name: &str| {
                let m = r.metrics.metric(name)?;
                let v: Vec<f64> = (1..=r.n_layers()).filter_map(|l| m.mean_at(l)).collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            let _ = writeln!(
                html,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td></tr>",
                esc(label),
                r.n_prompts(),
                opt(per_prompt),
                opt(r.metrics.summary.nll),
                dormant_count(sc, eps),
                n_heads,
                opt(layer_mean("sink_rate")),
                opt(layer_mean("mixing_score")),
            );
            for (l, row) in sc.iter().enumerate().skip(1) {
                for (h, s) in row.iter().enumerate() {
                    let ci = r.metrics.heads.bos_attention_ci(l, h);
                    rows.push(vec![
                        model.clone(),
                        label.clone(),
                        l.to_string(),
                        h.to_string(),
                        fmt_cell(s.map(|s| s.mean)),
                        fmt_cell(ci.map(|c| c.0)),
                        fmt_cell(ci.map(|c| c.1)),
                        s.map(|s| is_dormant(&s, eps).to_string()).unwrap_or_default(),
                        adaptive.iter().any(|a| a.layer == l && a.head == h).to_string(),
                    ]);
                }
            }
        }
        html.push_str("</tbody></table>\n");
        let names: Vec<String> = adaptive.iter().map(|a| format!("{}.{}", a.layer, a.head)).collect();
        let fmt = |s: Spread| {
            format!(
                "largest |Δ| across sets {} over {} layers, intervals disjoint at {} of them",
                opt(s.max_abs_diff),
                s.layers,
                s.layers_disjoint
            )
        };
        let _ = writeln!(
            html,
            "<p class=\"note\">Input-adaptive heads (layer.head; dormant on one set, not on another, 95 % intervals \
             disjoint): <strong>{}</strong> of {}{}. Mixing score: {}. Sink rate: {}. ε = {eps}. Our criteria \
             (docs/metrics.md, \"Dormant heads\"); the paper's Fig. 5 makes the qualitative point that sinks adapt to the \
             input while mixing does not — how many heads and how large a difference it found is not something we could check.</p>",
            adaptive.len(),
            first.metrics.head_count() * first.n_layers(),
            if names.is_empty() { String::new() } else { format!(": {}", esc(&names.join(", "))) },
            fmt(mix),
            fmt(sink),
        );
    }
    (html, rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn s(mean: f64, lo: f64, hi: f64) -> Option<HeadScore> {
        Some(HeadScore { mean, ci: (lo, hi) })
    }

    /// Known answer, ε = 0.3: head (1,0) is dormant on set A (0.8 [0.7, 0.9]) and active on
    /// set B (0.1 [0.05, 0.2]) with disjoint intervals: adaptive. Head (1,1) flips too but
    /// its intervals overlap (0.35 [0.25, 0.45] vs 0.28 [0.2, 0.4]): not adaptive. Head
    /// (2,0) is dormant on both: not adaptive. Dormant counts 3 and 1.
    #[test]
    fn adaptive_needs_a_flip_with_disjoint_intervals() {
        let a = vec![vec![], vec![s(0.8, 0.7, 0.9), s(0.35, 0.25, 0.45)], vec![s(0.9, 0.85, 0.95), None]];
        let b = vec![vec![], vec![s(0.1, 0.05, 0.2), s(0.28, 0.2, 0.4)], vec![s(0.95, 0.9, 0.99), None]];
        let got = adaptive_heads(&[a.clone(), b.clone()], 0.3);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].layer, got[0].head), (1, 0));
        assert_eq!(dormant_count(&a, 0.3), 3);
        assert_eq!(dormant_count(&b, 0.3), 1);
        // The order of the sets does not matter.
        assert_eq!(adaptive_heads(&[b, a], 0.3).len(), 1);
    }
}
