//! The ablation's figures: Fig. 4 (the curves of every intervention) and the dose response.

use super::*;

pub(super) fn curve(run: &Run, name: &str) -> Vec<(f64, Option<f64>, Option<f64>)> {
    run.mean_std(name).into_iter().enumerate().map(|(l, (m, s))| (l as f64, m, s)).collect()
}

/// The paper's Fig. 4.
pub(super) struct Fig4<'a>(pub(super) &'a Ablation);

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
pub(super) struct DoseResponse<'a>(pub(super) &'a Ablation);

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
                    mean.map(|m| m.entry.dims().iter().map(|d| d.to_string()).collect()).unwrap_or_default();
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
