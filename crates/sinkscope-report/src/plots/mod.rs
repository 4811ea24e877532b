//! The plots, drawn once with plotters and rendered twice: to SVG (inlined in the HTML)
//! and to PNG (in-memory RGB bitmap encoded with `png`, text from the bundled font, see
//! [`crate::font`]).
//!
//! - `fig1`: the paper's Fig. 1: `entropy_norm`, `sink_rate`, `bos_norm` (log scale) vs
//!   layer, mean ± std band, Mix/Compress/Refine shaded.
//! - `fig3`: the paper's Fig. 3: measured vs Theorem-1 bound for `sigma1_sq` (log),
//!   `anisotropy` and `entropy`.
//! - `bos_attention_heads`: layer × head heatmap of `bos_attention`.
//! - `top_activations`: the largest |activations| of every layer, coloured by
//!   (token, dimension).
//! - `compare_fig1`: Fig. 1 of several runs on normalised depth `l / L`.

use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::png_backend::PngBackend;
use crate::schema::{Phase, Run};
use crate::{font, ReportError};

mod figures;
pub(crate) use figures::*;

/// A plot written to disk: its SVG and PNG files and the SVG text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPlot {
    /// File stem (`fig1`, ...).
    pub stem: String,
    /// Title (also the SVG's `<title>`).
    pub title: String,
    /// The SVG file.
    pub svg_path: PathBuf,
    /// The PNG file.
    pub png_path: PathBuf,
    /// The SVG document.
    pub svg: String,
    /// Width and height in pixels.
    pub size: (u32, u32),
}

pub(crate) type DrawResult<T = ()> = Result<T, String>;

pub(crate) fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Something that draws itself on any plotters backend.
pub(crate) trait Figure {
    /// File stem.
    fn stem(&self) -> String;
    /// Title, for the SVG `<title>` and the HTML.
    fn title(&self) -> String;
    /// Size in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws on `root` (already filled white).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult;
}

/// Renders `fig` to `dir/<stem>.svg` and `dir/<stem>.png`.
pub(crate) fn render<F: Figure>(fig: &F, dir: &Path) -> Result<RenderedPlot, ReportError> {
    font::ensure_registered()?;
    let stem = fig.stem();
    let plot_err = |message: String| ReportError::Plot { plot: stem.clone(), message };
    let (w, h) = fig.size();
    let title = fig.title();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err).map_err(plot_err)?;
        fig.draw(&root).map_err(plot_err)?;
        root.present().map_err(err).map_err(plot_err)?;
    }
    let svg = insert_svg_title(&svg, &title);

    let mut rgb = vec![0_u8; w as usize * h as usize * 3];
    {
        let root = PngBackend::new(&mut rgb, (w, h), font::font_ref()?).into_drawing_area();
        root.fill(&WHITE).map_err(err).map_err(plot_err)?;
        fig.draw(&root).map_err(plot_err)?;
        root.present().map_err(err).map_err(plot_err)?;
    }

    sinkscope_output::create_dir(dir)?;
    let svg_path = dir.join(format!("{stem}.svg"));
    sinkscope_output::write_atomic(&svg_path, svg.as_bytes())?;
    let png_path = dir.join(format!("{stem}.png"));
    write_png(&png_path, &rgb, (w, h))?;
    Ok(RenderedPlot { stem, title, svg_path, png_path, svg, size: (w, h) })
}

/// Encodes an RGB8 buffer as a PNG file.
fn write_png(path: &Path, rgb: &[u8], (w, h): (u32, u32)) -> Result<(), ReportError> {
    let png_err =
        |e: png::EncodingError| ReportError::Png { path: path.to_path_buf(), message: e.to_string() };
    let mut bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut bytes, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(sinkscope_output::write_atomic(path, &bytes)?)
}

/// Escapes text for XML/HTML content and attributes.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Inserts `<title>` as the first child of the root `<svg>` element (accessibility, and
/// what a viewer shows as the document's name).
fn insert_svg_title(svg: &str, title: &str) -> String {
    let tag = format!("<title>{}</title>", xml_escape(title));
    match svg.find("<svg").and_then(|i| svg[i..].find('>').map(|j| i + j + 1)) {
        Some(at) => format!("{}\n{}{}", &svg[..at], tag, &svg[at..]),
        None => svg.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Colours
// ---------------------------------------------------------------------------------------

/// Tableau-10: distinguishable line colours, one per model or key.
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub(crate) fn palette(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Background colour of each phase (drawn translucent), also used by the HTML.
pub(crate) fn phase_color(p: Phase) -> RGBColor {
    match p {
        Phase::Mix => RGBColor(86, 180, 233),
        Phase::Compress => RGBColor(230, 159, 0),
        Phase::Refine => RGBColor(0, 158, 115),
    }
}

/// Viridis, sampled at 9 points and linearly interpolated; `t` in [0, 1].
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let lerp = |p: u8, q: u8| (f64::from(p) + (f64::from(q) - f64::from(p)) * f).round() as u8;
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

pub(crate) const FONT: &str = "sans-serif";
const GRID: RGBColor = RGBColor(225, 225, 225);

// ---------------------------------------------------------------------------------------
// Line panels (Fig. 1, Fig. 3, compare)
// ---------------------------------------------------------------------------------------

/// One line of a panel: points `(x, mean, std)`, `None` mean = gap.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<(f64, Option<f64>, Option<f64>)>,
    pub dashed: bool,
    /// Draw the mean ± std band.
    pub band: bool,
    /// Opacity of the band.
    pub band_alpha: f64,
    /// Natural range of the metric (e.g. [0, 1] for fractions): the band is clipped to it.
    pub range: Option<(f64, f64)>,
    /// Draw a dot at every defined point.
    pub markers: bool,
    /// Join the points with a line (`false`: dots only).
    pub line: bool,
    /// Per-point limits `(low, high)` of the band (e.g. the min and max over prompts: a
    /// mean ± std band never leaves the range of the data); empty = none.
    pub clip: Vec<(f64, f64)>,
    /// Per-point band `(low, high)` drawn instead of mean ± std where present (the 95 %
    /// bootstrap interval of the mean); empty = none.
    pub interval: Vec<Option<(f64, f64)>>,
}

impl Series {
    /// A solid line without band or markers.
    pub(crate) fn line(
        label: impl Into<String>,
        color: RGBColor,
        points: Vec<(f64, Option<f64>, Option<f64>)>,
    ) -> Self {
        Self {
            label: label.into(),
            color,
            points,
            dashed: false,
            band: false,
            band_alpha: 0.2,
            range: None,
            markers: false,
            line: true,
            clip: Vec::new(),
            interval: Vec::new(),
        }
    }

    /// The band is the per-point interval where present (mean ± std elsewhere).
    pub(crate) fn band_interval(mut self, interval: Vec<Option<(f64, f64)>>) -> Self {
        self.interval = interval;
        self
    }

    /// The band stays within the per-point `(low, high)` limits.
    pub(crate) fn band_within(mut self, clip: Vec<(f64, f64)>) -> Self {
        self.clip = clip;
        self
    }

    /// Contiguous runs of the band: `(x, low, high)` where the mean is defined, the
    /// per-point limits applied.
    fn band_runs(&self) -> Vec<Vec<(f64, f64, f64)>> {
        let mut out: Vec<Vec<(f64, f64, f64)>> = Vec::new();
        let mut cur = Vec::new();
        for (i, &(x, m, sd)) in self.points.iter().enumerate() {
            match m.filter(|m| m.is_finite()) {
                Some(m) => {
                    let sd = sd.filter(|v| v.is_finite()).unwrap_or(0.0);
                    let (mut low, mut high) = match self.interval.get(i).copied().flatten() {
                        Some((a, b)) if a.is_finite() && b.is_finite() => (a.min(m), b.max(m)),
                        _ => (m - sd, m + sd),
                    };
                    if let Some(&(a, b)) = self.clip.get(i) {
                        if a.is_finite() {
                            low = low.max(a.min(m));
                        }
                        if b.is_finite() {
                            high = high.min(b.max(m));
                        }
                    }
                    cur.push((x, low, high));
                }
                None => {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                }
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    /// With a mean ± std band of opacity `alpha`.
    pub(crate) fn with_band(mut self, alpha: f64) -> Self {
        self.band = true;
        self.band_alpha = alpha;
        self
    }

    /// Dashed.
    pub(crate) fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }

    /// With a dot at every point.
    pub(crate) fn with_markers(mut self) -> Self {
        self.markers = true;
        self
    }

    /// Dots only, no line.
    pub(crate) fn dots(mut self) -> Self {
        self.markers = true;
        self.line = false;
        self
    }

    /// Band clipped to `range`.
    pub(crate) fn clipped(mut self, range: Option<(f64, f64)>) -> Self {
        self.range = range;
        self
    }

    /// A horizontal line at `y` across `x_range` (a reference value).
    pub(crate) fn hline(label: impl Into<String>, color: RGBColor, x_range: (f64, f64), y: f64) -> Self {
        Self::line(label, color, vec![(x_range.0, Some(y), None), (x_range.1, Some(y), None)]).dashed()
    }
}

/// How the y axis is scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum YScale {
    /// Linear, fixed range.
    Fixed(f64, f64),
    /// Linear, range from the data (starting at 0 when all data are ≥ 0).
    Auto,
    /// Log10, range from the positive data.
    Log,
    /// Log10, range from the positive data but at most up to the given value; larger
    /// values are drawn at the top edge.
    LogMax(f64),
    /// Linear, range from the data with a margin, not forced to include 0, within the
    /// given bounds (e.g. accuracies: within [0, 1]).
    Tight(f64, f64),
}

/// The panels with a fixed linear range show fractions (entropy_norm, sink_rate,
/// anisotropy): their bands stay within [0, 1].
pub(crate) fn fraction_range(y: YScale) -> Option<(f64, f64)> {
    matches!(y, YScale::Fixed(..)).then_some((0.0, 1.0))
}

/// A shaded x range with a label.
#[derive(Debug, Clone)]
pub(crate) struct Shade {
    pub from: f64,
    pub to: f64,
    pub label: String,
    pub color: RGBColor,
}

/// One panel: title, axes and lines.
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub x_range: (f64, f64),
    /// Integer ticks (layers) rather than fractions.
    pub x_integer: bool,
    pub y_scale: YScale,
    pub series: Vec<Series>,
    pub shades: Vec<Shade>,
    pub legend: Option<SeriesLabelPosition>,
    /// Vertical marker lines (drawn dashed, labelled at the bottom).
    pub vlines: Vec<VLine>,
}

/// A labelled vertical line at `x`.
#[derive(Debug, Clone)]
pub(crate) struct VLine {
    pub x: f64,
    pub label: String,
    pub color: RGBColor,
}

/// Splits points into contiguous runs of defined means.
fn segments(points: &[(f64, Option<f64>, Option<f64>)]) -> Vec<Vec<(f64, f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64, f64)>> = Vec::new();
    let mut cur = Vec::new();
    for &(x, m, s) in points {
        match m {
            Some(m) if m.is_finite() => cur.push((x, m, s.filter(|s| s.is_finite()).unwrap_or(0.0))),
            _ => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn y_extent(series: &[Series], positive_only: bool) -> Option<(f64, f64)> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut add = |v: f64| {
        if v.is_finite() && (!positive_only || v > 0.0) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    };
    for s in series {
        for &(_, m, _) in &s.points {
            if let Some(m) = m {
                add(m);
            }
        }
        if s.band {
            for &(_, low, high) in s.band_runs().iter().flatten() {
                add(low);
                add(high);
            }
        }
    }
    (lo.is_finite() && hi.is_finite()).then_some((lo, hi))
}

pub(crate) fn tick_label_x(x: f64, integer: bool) -> String {
    if integer {
        if (x - x.round()).abs() < 1e-6 {
            format!("{}", x.round() as i64)
        } else {
            String::new()
        }
    } else {
        format!("{x:.1}")
    }
}

/// Short label for a y value on a linear axis.
pub(crate) fn tick_label_y(y: f64) -> String {
    let a = y.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{y:.0e}")
    } else if a >= 100.0 {
        format!("{y:.0}")
    } else {
        let s = format!("{y:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Label for a power of ten on a log axis (`10^k` ticks only; others are blank).
pub(crate) fn tick_label_log(y: f64) -> String {
    if y <= 0.0 {
        return String::new();
    }
    let k = y.log10();
    if (k - k.round()).abs() > 1e-6 {
        return String::new();
    }
    let k = k.round() as i32;
    match k {
        -2..=4 => tick_label_y(10_f64.powi(k)),
        _ => format!("1e{k}"),
    }
}

/// Draws a panel on `area`.
pub(crate) fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> DrawResult {
    let (x0, x1) = p.x_range;
    let mut chart = ChartBuilder::on(area);
    chart
        .caption(&p.title, (FONT, 17))
        .margin(8)
        .margin_right(14)
        .x_label_area_size(42)
        .y_label_area_size(62);
    match p.y_scale {
        YScale::Log | YScale::LogMax(_) => {
            let (lo, hi) = y_extent(&p.series, true).unwrap_or((1.0, 10.0));
            let hi = match p.y_scale {
                YScale::LogMax(cap) if cap > 0.0 && cap.is_finite() => hi.min(cap),
                _ => hi,
            };
            let lo = 10_f64.powf(lo.log10().floor());
            let hi = 10_f64.powf((hi.log10() + 0.05).ceil());
            let hi = if hi <= lo { lo * 10.0 } else { hi };
            let mut c = chart.build_cartesian_2d(x0..x1, (lo..hi).log_scale()).map_err(err)?;
            c.configure_mesh()
                .x_desc(&p.x_desc)
                .y_desc(&p.y_desc)
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .light_line_style(GRID.mix(0.0))
                .bold_line_style(GRID)
                .x_label_formatter(&|x| tick_label_x(*x, p.x_integer))
                .y_label_formatter(&|y| tick_label_log(*y))
                .draw()
                .map_err(err)?;
            draw_panel_body(&mut c, p, (lo, hi), true)
        }
        YScale::Fixed(..) | YScale::Auto | YScale::Tight(..) => {
            let (lo, hi) = match p.y_scale {
                YScale::Fixed(a, b) => (a, b),
                YScale::Tight(min, max) => {
                    let (lo, hi) = y_extent(&p.series, false).unwrap_or((min, max));
                    let (lo, hi) = (lo.max(min), hi.min(max));
                    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.01).max(1e-9);
                    let (lo, hi) = ((lo - pad).max(min), (hi + pad).min(max));
                    if hi > lo {
                        (lo, hi)
                    } else {
                        (min, max)
                    }
                }
                _ => {
                    let (lo, hi) = y_extent(&p.series, false).unwrap_or((0.0, 1.0));
                    let lo = if lo >= 0.0 { 0.0 } else { lo };
                    let pad = ((hi - lo) * 0.06).max(1e-9);
                    (lo - if lo < 0.0 { pad } else { 0.0 }, hi + pad)
                }
            };
            let mut c = chart.build_cartesian_2d(x0..x1, lo..hi).map_err(err)?;
            c.configure_mesh()
                .x_desc(&p.x_desc)
                .y_desc(&p.y_desc)
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .light_line_style(GRID.mix(0.0))
                .bold_line_style(GRID)
                .x_label_formatter(&|x| tick_label_x(*x, p.x_integer))
                .y_label_formatter(&|y| tick_label_y(*y))
                .draw()
                .map_err(err)?;
            draw_panel_body(&mut c, p, (lo, hi), false)
        }
    }
}

fn draw_panel_body<'a, DB, Y>(
    c: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    p: &Panel,
    (lo, hi): (f64, f64),
    log: bool,
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    Y: Ranged<ValueType = f64>,
{
    // Phases first, behind everything.
    for s in &p.shades {
        c.draw_series(std::iter::once(Rectangle::new(
            [(s.from, lo), (s.to, hi)],
            s.color.mix(0.16).filled(),
        )))
        .map_err(err)?;
        let y_top = hi;
        let style =
            (FONT, 13).into_font().color(&RGBColor(70, 70, 70)).pos(Pos::new(HPos::Center, VPos::Top));
        let xc = (s.from + s.to) / 2.0;
        // A band too narrow for its name gets its initial only.
        let (x0, x1) = p.x_range;
        let frac = (s.to - s.from) / (x1 - x0).max(f64::MIN_POSITIVE);
        let label = if frac * 420.0 < 7.5 * s.label.chars().count() as f64 {
            s.label.chars().next().map(String::from).unwrap_or_default()
        } else {
            s.label.clone()
        };
        c.draw_series(std::iter::once(Text::new(label, (xc, y_top), style))).map_err(err)?;
    }
    for s in &p.series {
        let segs = segments(&s.points);
        if s.band {
            for seg in &s.band_runs() {
                if seg.iter().all(|&(_, low, high)| high - low <= 0.0) {
                    continue;
                }
                let (r_lo, r_hi) = s.range.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
                let top = hi.min(r_hi);
                let bottom = lo.max(r_lo);
                let mut poly: Vec<(f64, f64)> =
                    seg.iter().map(|&(x, _, high)| (x, high.min(top).max(bottom))).collect();
                poly.extend(seg.iter().rev().map(|&(x, low, _)| (x, low.max(bottom).min(top))));
                c.draw_series(std::iter::once(Polygon::new(poly, s.color.mix(s.band_alpha).filled())))
                    .map_err(err)?;
            }
        }
        let style = s.color.stroke_width(2);
        let mut first = true;
        for seg in &segs {
            let pts: Vec<(f64, f64)> =
                seg.iter().map(|&(x, m, _)| (x, if log { m.max(lo).min(hi) } else { m })).collect();
            // A single point would not show as a line.
            if s.markers || pts.len() == 1 {
                let r = if s.markers { 4 } else { 3 };
                let anno =
                    c.draw_series(pts.iter().map(|&pt| Circle::new(pt, r, s.color.filled()))).map_err(err)?;
                if !s.line && first && p.legend.is_some() && !s.label.is_empty() {
                    let color = s.color;
                    anno.label(s.label.clone())
                        .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
                    first = false;
                }
            }
            if !s.line {
                continue;
            }
            let anno = if s.dashed {
                c.draw_series(DashedLineSeries::new(pts, 7, 5, style)).map_err(err)?
            } else {
                c.draw_series(LineSeries::new(pts, style)).map_err(err)?
            };
            if first && p.legend.is_some() && !s.label.is_empty() {
                let color = s.color;
                let dashed = s.dashed;
                anno.label(s.label.clone()).legend(move |(x, y)| {
                    // Two segments: with a gap when dashed, touching when solid.
                    let (a, b) = if dashed { (7, 13) } else { (10, 10) };
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (a, 0)], color.stroke_width(2))
                        + PathElement::new(vec![(b, 0), (20, 0)], color.stroke_width(2))
                });
                first = false;
            }
        }
    }
    for v in &p.vlines {
        c.draw_series(DashedLineSeries::new(vec![(v.x, lo), (v.x, hi)], 5, 4, v.color.stroke_width(2)))
            .map_err(err)?;
        if !v.label.is_empty() {
            let style = (FONT, 12).into_font().color(&v.color).pos(Pos::new(HPos::Left, VPos::Bottom));
            let y = if log { lo * (hi / lo).powf(0.03) } else { lo + (hi - lo) * 0.03 };
            c.draw_series(std::iter::once(Text::new(v.label.clone(), (v.x, y), style))).map_err(err)?;
        }
    }
    if let Some(pos) = &p.legend {
        c.configure_series_labels()
            .position(pos.clone())
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FONT, 13))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// Draws `panels` in a `rows × cols` grid (row by row) under an optional figure title.
pub(crate) fn draw_panel_grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[Panel],
    (rows, cols): (usize, usize),
) -> DrawResult {
    let area = if title.is_empty() { root.clone() } else { root.titled(title, (FONT, 20)).map_err(err)? };
    let cells = area.split_evenly((rows.max(1), cols.max(1)));
    for (cell, p) in cells.iter().zip(panels) {
        draw_panel(cell, p)?;
    }
    Ok(())
}

/// Draws two panels side by side, the first taking `frac` of the width.
pub(crate) fn draw_panel_pair<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    (a, b): (&Panel, &Panel),
    frac: f64,
) -> DrawResult {
    let area = if title.is_empty() { root.clone() } else { root.titled(title, (FONT, 20)).map_err(err)? };
    let w = area.dim_in_pixel().0;
    let (left, right) = area.split_horizontally((f64::from(w) * frac.clamp(0.1, 0.9)).round() as u32);
    draw_panel(&left, a)?;
    draw_panel(&right, b)
}

/// Draws `panels` side by side under an optional figure title.
pub(crate) fn draw_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[Panel],
) -> DrawResult {
    let area = if title.is_empty() { root.clone() } else { root.titled(title, (FONT, 20)).map_err(err)? };
    let cells = area.split_evenly((1, panels.len().max(1)));
    for (cell, p) in cells.iter().zip(panels) {
        draw_panel(cell, p)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Run figures
// ---------------------------------------------------------------------------------------

/// `(x, mean, std)` of a metric at every layer, `x = l * x_scale`.
pub(crate) fn metric_points(run: &Run, name: &str, x_scale: f64) -> Vec<(f64, Option<f64>, Option<f64>)> {
    let m = run.metrics.metric(name);
    (0..=run.n_layers())
        .map(|l| (l as f64 * x_scale, m.and_then(|m| m.mean_at(l)), m.and_then(|m| m.std_at(l))))
        .collect()
}

/// The 95 % bootstrap interval of a metric's mean at every layer (empty when the run has none).
pub(crate) fn metric_intervals(run: &Run, name: &str) -> Vec<Option<(f64, f64)>> {
    match run.metrics.metric(name).filter(|m| m.has_ci()) {
        Some(m) => (0..=run.n_layers()).map(|l| m.ci_at(l)).collect(),
        None => Vec::new(),
    }
}

/// Whether every curve of Fig. 1 carries bootstrap intervals.
pub(crate) fn has_intervals(run: &Run) -> bool {
    ["entropy_norm", "sink_rate", "bos_norm"]
        .iter()
        .all(|n| run.metrics.metric(n).is_some_and(|m| m.has_ci()))
}

pub(crate) fn phase_shades(run: &Run) -> Vec<Shade> {
    run.metrics
        .summary
        .phases
        .map(|ph| {
            ph.named()
                .into_iter()
                .map(|(p, r)| Shade {
                    from: r.first as f64 - 0.5,
                    to: r.last as f64 + 0.5,
                    label: p.as_str().to_string(),
                    color: phase_color(p),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn layer_range(run: &Run) -> (f64, f64) {
    (-0.5, run.n_layers() as f64 + 0.5)
}
