//! The run report's figures: Fig. 1, Fig. 3, the per-head heatmaps, the top activations and
//! the comparison of several runs' Fig. 1.

use super::*;

/// Fig. 1 of a run.
pub(crate) struct Fig1<'a>(pub &'a Run);

impl Figure for Fig1<'_> {
    fn stem(&self) -> String {
        "fig1".into()
    }
    fn title(&self) -> String {
        format!("Fig. 1 — {}: entropy_norm, sink_rate and bos_norm vs layer", self.0.label())
    }
    fn size(&self) -> (u32, u32) {
        (1500, 470)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let run = self.0;
        let shades = phase_shades(run);
        let band_label = if has_intervals(run) {
            "mean, 95 % bootstrap CI over prompts"
        } else {
            "mean ± std over prompts"
        };
        let mk = |title: &str, name: &str, y: YScale, color: RGBColor| Panel {
            title: title.to_string(),
            x_desc: "layer l".into(),
            y_desc: name.to_string(),
            x_range: layer_range(run),
            x_integer: true,
            y_scale: y,
            series: vec![Series::line(band_label, color, metric_points(run, name, 1.0))
                .with_band(0.25)
                .band_interval(metric_intervals(run, name))
                .clipped(fraction_range(y))],
            shades: shades.clone(),
            legend: None,
            vlines: Vec::new(),
        };
        let panels = [
            mk("matrix entropy (normalised)", "entropy_norm", YScale::Fixed(0.0, 1.05), PALETTE[0]),
            mk("sink rate (ε-sink heads)", "sink_rate", YScale::Fixed(0.0, 1.05), PALETTE[3]),
            mk("first-token norm ‖x₀‖ (log)", "bos_norm", YScale::Log, PALETTE[2]),
        ];
        let title = format!("{} — {band_label} ({} prompts)", run.label(), run.n_prompts());
        draw_panels(root, &title, &panels)
    }
}

/// Fig. 3 of a run: measured vs Theorem-1 bound.
pub(crate) struct Fig3<'a>(pub &'a Run);

impl Figure for Fig3<'_> {
    fn stem(&self) -> String {
        "fig3".into()
    }
    fn title(&self) -> String {
        format!("Fig. 3 — {}: measured vs Theorem-1 bound (sigma1_sq, anisotropy, entropy)", self.0.label())
    }
    fn size(&self) -> (u32, u32) {
        (1500, 470)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let run = self.0;
        let shades = phase_shades(run);
        let mk = |title: &str, name: &str, bound: &str, y: YScale, pos: SeriesLabelPosition| Panel {
            title: title.to_string(),
            x_desc: "layer l".into(),
            y_desc: name.to_string(),
            x_range: layer_range(run),
            x_integer: true,
            y_scale: y,
            series: vec![
                Series::line(format!("{name} (measured)"), PALETTE[0], metric_points(run, name, 1.0))
                    .with_band(0.2)
                    .clipped(fraction_range(y)),
                Series::line(format!("{bound} (Theorem 1)"), PALETTE[3], metric_points(run, bound, 1.0))
                    .dashed(),
            ],
            shades: shades.clone(),
            legend: Some(pos),
            vlines: Vec::new(),
        };
        let panels = [
            mk(
                "σ₁² ≥ M + αR (log)",
                "sigma1_sq",
                "sigma1_sq_bound",
                YScale::Log,
                SeriesLabelPosition::LowerRight,
            ),
            mk(
                "anisotropy p₁ ≥ (c+α)/(c+1)",
                "anisotropy",
                "anisotropy_bound",
                YScale::Fixed(0.0, 1.05),
                SeriesLabelPosition::LowerRight,
            ),
            mk("entropy H ≤ bound", "entropy", "entropy_bound", YScale::Auto, SeriesLabelPosition::LowerLeft),
        ];
        let title = format!("{} — Theorem 1: measured (solid, mean ± std) vs bound (dashed)", run.label());
        draw_panels(root, &title, &panels)
    }
}

/// Heatmap of `bos_attention[l][h]`.
pub(crate) struct HeadsHeatmap<'a>(pub &'a Run);

impl HeadsHeatmap<'_> {
    fn epsilon(&self) -> Option<f64> {
        self.0.manifest.options.get("epsilon").and_then(serde_json::Value::as_f64)
    }
}

impl Figure for HeadsHeatmap<'_> {
    fn stem(&self) -> String {
        "bos_attention_heads".into()
    }
    fn title(&self) -> String {
        format!("bos_attention per head — {}: layer × head heatmap", self.0.label())
    }
    fn size(&self) -> (u32, u32) {
        let h = self.0.metrics.head_count() as u32;
        (1100, (150 + 24 * h).clamp(360, 900))
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let run = self.0;
        let l_max = run.n_layers();
        let n_heads = run.metrics.head_count().max(1);
        let eps = self.epsilon();
        let title = format!(
            "{} — bos_attention(l, h): mean over prompts of the attention paid to position 0{}",
            run.label(),
            eps.map(|e| format!(" (sink head: > ε = {e})")).unwrap_or_default()
        );
        let area = root.titled(&title, (FONT, 18)).map_err(err)?;
        let (main, bar) = area.split_horizontally(area.dim_in_pixel().0.saturating_sub(110));
        let mut c = ChartBuilder::on(&main)
            .margin(10)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(0.5..l_max as f64 + 0.5, -0.5..n_heads as f64 - 0.5)
            .map_err(err)?;
        c.configure_mesh()
            .disable_mesh()
            .x_desc("layer l (block)")
            .y_desc("head h")
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .x_labels(l_max.min(40))
            .y_labels(n_heads.min(40))
            .x_label_formatter(&|x| tick_label_x(*x, true))
            .y_label_formatter(&|y| tick_label_x(*y, true))
            .draw()
            .map_err(err)?;
        let rows = &run.metrics.heads.bos_attention;
        let mut cells = Vec::new();
        let mut missing = Vec::new();
        for l in 1..=l_max {
            let row = rows.get(l).and_then(Option::as_ref);
            for h in 0..n_heads {
                let x = l as f64;
                let y = h as f64;
                let rect = [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)];
                match row.and_then(|r| r.get(h).copied().flatten()) {
                    Some(v) => cells.push(Rectangle::new(rect, viridis(v).filled())),
                    None => missing.push(Rectangle::new(rect, RGBColor(235, 235, 235).filled())),
                }
            }
        }
        c.draw_series(missing).map_err(err)?;
        c.draw_series(cells).map_err(err)?;
        if rows.iter().all(Option::is_none) {
            let style = (FONT, 18).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
            c.draw_series(std::iter::once(Text::new(
                "no attention statistics in this run",
                (l_max as f64 / 2.0 + 0.5, (n_heads as f64 - 1.0) / 2.0),
                style,
            )))
            .map_err(err)?;
        }

        // Colour bar 0..1 with the sink threshold.
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(10)
            .margin_bottom(52)
            .margin_right(8)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(err)?;
        cb.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(6)
            .label_style((FONT, 12))
            .y_label_formatter(&|y| tick_label_y(*y))
            .draw()
            .map_err(err)?;
        let steps = 100;
        cb.draw_series((0..steps).map(|i| {
            let a = i as f64 / steps as f64;
            let b = (i + 1) as f64 / steps as f64;
            // Overlap the next step a little so no anti-aliasing seam shows between steps.
            Rectangle::new([(0.0, a), (1.0, (b + 0.004).min(1.0))], viridis((a + b) / 2.0).filled())
        }))
        .map_err(err)?;
        if let Some(e) = eps.filter(|e| (0.0..=1.0).contains(e)) {
            cb.draw_series(std::iter::once(PathElement::new(vec![(0.0, e), (1.0, e)], RED.stroke_width(2))))
                .map_err(err)?;
            let style = (FONT, 12).into_font().color(&WHITE).pos(Pos::new(HPos::Center, VPos::Bottom));
            cb.draw_series(std::iter::once(Text::new("ε", (0.5, e), style))).map_err(err)?;
        }
        Ok(())
    }
}

/// The top activations of every layer.
pub(crate) struct TopActivations<'a>(pub &'a Run);

/// Most prominent (token, dim) keys: those that are a layer's top entry, by how often.
pub(super) fn top_keys(run: &Run, max: usize) -> Vec<(usize, usize)> {
    let mut counts: Vec<((usize, usize), usize, f64)> = Vec::new();
    for list in &run.metrics.top_activations {
        for (rank, a) in list.iter().enumerate() {
            let key = (a.token, a.dim);
            let w = if rank == 0 { 1 } else { 0 };
            match counts.iter_mut().find(|(k, _, _)| *k == key) {
                Some(e) => {
                    e.1 += w;
                    e.2 = e.2.max(a.value.abs());
                }
                None => counts.push((key, w, a.value.abs())),
            }
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.total_cmp(&a.2)));
    counts.into_iter().take(max).map(|(k, _, _)| k).collect()
}

impl Figure for TopActivations<'_> {
    fn stem(&self) -> String {
        "top_activations".into()
    }
    fn title(&self) -> String {
        format!("Top activations per layer — {}: |value| and (token, dimension)", self.0.label())
    }
    fn size(&self) -> (u32, u32) {
        (1200, 500)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let run = self.0;
        let l_max = run.n_layers();
        let lists = &run.metrics.top_activations;
        let keys = top_keys(run, 7);
        let color_of =
            |k: (usize, usize)| keys.iter().position(|&q| q == k).map_or(RGBColor(150, 150, 150), palette);
        let mut lo = f64::INFINITY;
        let mut hi: f64 = 0.0;
        for a in lists.iter().flatten() {
            let v = a.value.abs();
            if v > 0.0 && v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        if !lo.is_finite() {
            lo = 1.0;
            hi = 1000.0;
        }
        // Sun et al.'s absolute threshold (100) stays visible for reference.
        hi = hi.max(200.0);
        let lo = 10_f64.powf(lo.log10().floor());
        let hi = 10_f64.powf((hi.log10() + 0.1).ceil());
        let title = format!(
            "{} — largest |X[i, j]| per layer (filled: positive, hollow: negative); dashed: 100 (Sun et al.)",
            run.label()
        );
        let area = root.titled(&title, (FONT, 18)).map_err(err)?;
        let mut c = ChartBuilder::on(&area)
            .margin(10)
            .margin_right(16)
            .x_label_area_size(42)
            .y_label_area_size(62)
            .build_cartesian_2d(-0.5..l_max as f64 + 0.5, (lo..hi).log_scale())
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("layer l")
            .y_desc("|activation|")
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(GRID.mix(0.0))
            .bold_line_style(GRID)
            .x_label_formatter(&|x| tick_label_x(*x, true))
            .y_label_formatter(&|y| tick_label_log(*y))
            .draw()
            .map_err(err)?;
        c.draw_series(DashedLineSeries::new(
            vec![(-0.5, 100.0), (l_max as f64 + 0.5, 100.0)],
            6,
            5,
            RGBColor(120, 120, 120).stroke_width(1),
        ))
        .map_err(err)?;
        // Legend entries, one per highlighted key.
        for (i, &(tok, dim)) in keys.iter().enumerate() {
            let col = palette(i);
            c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                .map_err(err)?
                .label(format!("dim {dim} @ token {tok}"))
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, col.filled()));
        }
        for (l, list) in lists.iter().enumerate() {
            let x = l as f64;
            // Smallest first so the top entry is drawn on top.
            for a in list.iter().rev() {
                let v = a.value.abs().max(lo);
                let col = color_of((a.token, a.dim));
                let style = if a.value >= 0.0 { col.filled() } else { col.stroke_width(2) };
                c.draw_series(std::iter::once(Circle::new((x, v), 5, style))).map_err(err)?;
            }
        }
        // Labels last, above the points: the top entry's dimension wherever it changes.
        let mut prev_dim: Option<usize> = None;
        for (l, list) in lists.iter().enumerate() {
            let Some(top) = list.first() else { continue };
            if prev_dim != Some(top.dim) {
                let style = (FONT, 12)
                    .into_font()
                    .color(&RGBColor(40, 40, 40))
                    .pos(Pos::new(HPos::Center, VPos::Bottom));
                let peak = list.iter().map(|a| a.value.abs()).fold(lo, f64::max);
                c.draw_series(std::iter::once(Text::new(
                    format!("d{}", top.dim),
                    (l as f64, peak * 1.6),
                    style,
                )))
                .map_err(err)?;
            }
            prev_dim = Some(top.dim);
        }
        if !keys.is_empty() {
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .label_font((FONT, 13))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Compare
// ---------------------------------------------------------------------------------------

/// Fig. 1 of several runs on normalised depth.
pub(crate) struct CompareFig1<'a>(pub &'a [&'a Run], pub &'a [String]);

impl Figure for CompareFig1<'_> {
    fn stem(&self) -> String {
        "compare_fig1".into()
    }
    fn title(&self) -> String {
        format!("Fig. 1 compared — {} runs on normalised depth l / L", self.0.len())
    }
    fn size(&self) -> (u32, u32) {
        (1500, 490)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let (runs, labels) = (self.0, self.1);
        // The paper's nominal phases, for orientation only (each run's own are in the table).
        let shades = vec![
            Shade { from: 0.0, to: 0.2, label: "Mix (paper)".into(), color: phase_color(Phase::Mix) },
            Shade {
                from: 0.2,
                to: 0.85,
                label: "Compress (paper)".into(),
                color: phase_color(Phase::Compress),
            },
            Shade { from: 0.85, to: 1.0, label: "Refine".into(), color: phase_color(Phase::Refine) },
        ];
        let mk = |title: &str, name: &str, y: YScale, legend: Option<SeriesLabelPosition>| Panel {
            title: title.to_string(),
            x_desc: "depth l / L".into(),
            y_desc: name.to_string(),
            x_range: (0.0, 1.0),
            x_integer: false,
            y_scale: y,
            series: runs
                .iter()
                .zip(labels)
                .enumerate()
                .map(|(i, (r, label))| {
                    Series::line(
                        label.clone(),
                        palette(i),
                        metric_points(r, name, 1.0 / r.n_layers().max(1) as f64),
                    )
                    .with_band(0.12)
                    .clipped(fraction_range(y))
                })
                .collect(),
            shades: shades.clone(),
            legend,
            vlines: Vec::new(),
        };
        let panels = [
            mk(
                "matrix entropy (normalised)",
                "entropy_norm",
                YScale::Fixed(0.0, 1.05),
                Some(SeriesLabelPosition::LowerLeft),
            ),
            mk("sink rate (ε-sink heads)", "sink_rate", YScale::Fixed(0.0, 1.05), None),
            mk("first-token norm ‖x₀‖ (log)", "bos_norm", YScale::Log, None),
        ];
        draw_panels(
            root,
            "Fig. 1 per model on normalised depth — mean ± std band; shading: the paper's nominal phases",
            &panels,
        )
    }
}
