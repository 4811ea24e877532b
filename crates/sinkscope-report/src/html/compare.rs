//! `compare.html`: the runs side by side (columns), the task runs' rows and the across-models
//! note.

use super::*;

/// One column of the comparison: a profile run with its model's lens and probe runs, or a
/// model that has only lens/probe runs.
#[derive(Debug, Clone)]
pub(crate) struct Column<'a> {
    pub label: String,
    pub profile: Option<&'a Run>,
    pub lens: Option<&'a Run>,
    pub probe: Option<&'a Run>,
    pub mc: Option<&'a Run>,
}

impl<'a> Column<'a> {
    /// Any run of the column (profile first), for model facts.
    fn any(&self) -> Option<&'a Run> {
        self.profile.or(self.lens).or(self.probe).or(self.mc)
    }
}

/// Rows of the side-by-side table: (quantity, value per column). The lens/probe rows are
/// added when some column has a lens or probe run.
pub(crate) fn compare_rows(cols: &[Column<'_>]) -> Vec<(String, Vec<String>)> {
    let dash = || "–".to_string();
    // Model facts, from any run of the column.
    let any = |f: &dyn Fn(&Run) -> Option<String>| -> Vec<String> {
        cols.iter().map(|c| c.any().and_then(f).unwrap_or_else(dash)).collect()
    };
    let mut rows: Vec<(String, Vec<String>)> = vec![
        (
            "family".to_string(),
            any(&|r| r.manifest.model.as_ref().and_then(|m| m.family.as_ref()).map(json_text)),
        ),
        ("blocks L".to_string(), any(&|r| Some(r.n_layers().to_string()))),
        ("d_model".to_string(), any(&|r| config_field(r, "d_model"))),
    ];
    // Profile quantities: "–" for a column without a profile run.
    let mut row = |name: &str, f: &dyn Fn(&Run) -> String| {
        rows.push((name.to_string(), cols.iter().map(|c| c.profile.map(f).unwrap_or_else(dash)).collect()))
    };
    row("heads", &|r| r.metrics.head_count().to_string());
    row("prompts", &|r| r.n_prompts().to_string());
    row("tokens", &|r| r.manifest.n_tokens.map(|n| n.to_string()).unwrap_or_else(|| "–".into()));
    row("BOS policy", &|r| {
        r.manifest.tokenizer.as_ref().and_then(|t| t.bos_policy.clone()).unwrap_or_else(|| "–".into())
    });
    row("first token (BOS?)", &|r| {
        let ft = r.manifest.first_token.as_ref();
        let t = ft.and_then(|f| f.token.clone()).map(|t| format!("{t:?}")).unwrap_or_else(|| "?".into());
        let b = match ft.and_then(|f| f.is_bos) {
            Some(true) => "BOS",
            Some(false) => "not BOS",
            None => "?",
        };
        let same = match ft.and_then(|f| f.same_for_all_prompts) {
            Some(false) => ", varies",
            _ => "",
        };
        format!("{t} ({b}{same})")
    });
    row("massive layers (depth)", &|r| {
        let v: Vec<String> = r
            .metrics
            .summary
            .massive_layers
            .iter()
            .filter_map(|m| m.layer_index())
            .map(|l| format!("{l} ({})", pct(r.depth(l))))
            .collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    });
    row("peak bos_ratio (layer, depth)", &|r| {
        r.metrics
            .summary
            .peak_bos_ratio
            .map(|p| format!("{} ({}, {})", num(p.value), p.layer, pct(r.depth(p.layer))))
            .unwrap_or_else(|| "–".into())
    });
    row("min entropy_norm (layer, depth)", &|r| {
        r.metrics
            .summary
            .min_entropy_norm
            .map(|p| format!("{} ({}, {})", num(p.value), p.layer, pct(r.depth(p.layer))))
            .unwrap_or_else(|| "–".into())
    });
    for (name, phase) in [("Mix", Phase::Mix), ("Compress", Phase::Compress), ("Refine", Phase::Refine)] {
        row(&format!("{name} (layers, depth)"), &|r| {
            let rg = r.metrics.summary.phases.and_then(|p| match phase {
                Phase::Mix => p.mix,
                Phase::Compress => p.compress,
                Phase::Refine => p.refine,
            });
            match (rg, r.metrics.summary.phases) {
                (Some(rg), _) => {
                    let fd = rg.first_depth.unwrap_or_else(|| r.depth(rg.first));
                    let ld = rg.last_depth.unwrap_or_else(|| r.depth(rg.last));
                    if rg.first == rg.last {
                        format!("{} ({})", rg.first, pct(fd))
                    } else {
                        format!("{}–{} ({}–{})", rg.first, rg.last, pct(fd), pct(ld))
                    }
                }
                (None, Some(_)) => "none".into(),
                (None, None) => "no compression phase".into(),
            }
        });
    }
    row("mean sink_rate (blocks 1..L)", &|r| {
        let v: Vec<f64> = (1..=r.n_layers()).filter_map(|l| r.metrics.mean_at("sink_rate", l)).collect();
        if v.is_empty() {
            "–".into()
        } else {
            num(v.iter().sum::<f64>() / v.len() as f64)
        }
    });
    row("corr_bos_entropy", &|r| {
        r.metrics.summary.corr_bos_entropy.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into())
    });
    row("corr_bos_sink", &|r| {
        r.metrics.summary.corr_bos_sink.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into())
    });
    row("corr_bos_entropy, lag 1", &|r| {
        r.metrics.summary.corr_bos_entropy_lag1.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into())
    });
    row("corr_bos_sink, lag 1", &|r| {
        r.metrics.summary.corr_bos_sink_lag1.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into())
    });
    row("bound_violations", &|r| {
        r.metrics.summary.bound_violations.map(|x| x.to_string()).unwrap_or_else(|| "–".into())
    });
    if cols.iter().any(|c| c.lens.is_some() || c.probe.is_some()) {
        rows.extend(task_rows(cols));
    }
    if cols.iter().any(|c| c.mc.is_some()) {
        let cell = |r: &Run| {
            let l = r.n_layers();
            let m = r.metrics.metric(TaskMetric::McAccuracy.name());
            let ci =
                m.and_then(|m| m.ci_at(l)).map(|(a, b)| format!(" [{a:.2}, {b:.2}]")).unwrap_or_default();
            let chance =
                r.mc.as_ref().and_then(|s| s.chance).map(|c| format!(" (chance {c:.2})")).unwrap_or_default();
            format!("{}{ci}{chance}", opt(m.and_then(|m| m.mean_at(l))))
        };
        rows.push((
            "multiple-choice LogitLens accuracy at layer L [95 % CI]".into(),
            cols.iter().map(|c| c.mc.map(cell).unwrap_or_else(dash)).collect(),
        ));
    }
    rows
}

/// The lens and probe rows of the comparison.
pub(super) fn task_rows(cols: &[Column<'_>]) -> Vec<(String, Vec<String>)> {
    let dash = || "–".to_string();
    let lens_row = |name: &str, f: &dyn Fn(&Run) -> String| {
        (name.to_string(), cols.iter().map(|c| c.lens.map(f).unwrap_or_else(dash)).collect::<Vec<_>>())
    };
    let probe_row = |name: &str, f: &dyn Fn(&Run) -> String| {
        (name.to_string(), cols.iter().map(|c| c.probe.map(f).unwrap_or_else(dash)).collect::<Vec<_>>())
    };
    vec![
        lens_row("LogitLens ppl at layer L (token-weighted)", &|r| opt(r.lens_final_ppl())),
        lens_row("model ppl (lens run)", &|r| {
            opt(r.lens.as_ref().and_then(|s| s.model_ppl.or(s.model_nll.map(f64::exp))))
        }),
        lens_row("LogitLens lowest-ppl layer (depth)", &|r| {
            r.lens_best().map(|(l, _)| format!("{l} ({})", pct(r.depth(l)))).unwrap_or_else(dash)
        }),
        lens_row("LogitLens predicted tokens", &|r| {
            r.lens.as_ref().and_then(|s| s.n_predicted_tokens).map(|n| n.to_string()).unwrap_or_else(dash)
        }),
        probe_row("best probe layer (depth)", &|r| {
            r.probe_best().map(|(l, _)| format!("{l} ({})", pct(r.depth(l)))).unwrap_or_else(dash)
        }),
        probe_row("best probe accuracy (baseline)", &|r| match r.probe_best() {
            Some((l, a)) => {
                let sd = r
                    .probe_accuracy()
                    .get(l)
                    .and_then(|p| p.1)
                    .map(|s| format!(" ± {}", num(s)))
                    .unwrap_or_default();
                let b = r.probe_baseline().map(|b| format!(" ({})", num(b))).unwrap_or_default();
                format!("{}{sd}{b}", num(a))
            }
            None => dash(),
        }),
        probe_row("probe accuracy at layer L", &|r| opt(r.probe_accuracy().last().and_then(|p| p.0))),
        probe_row("probe solver converged", &|r| {
            let bad = r.probe_not_converged();
            match (r.probe.as_ref().and_then(|s| s.all_converged), bad.is_empty()) {
                (Some(false), _) | (_, false) => {
                    format!("no ({} layer{})", bad.len(), if bad.len() == 1 { "" } else { "s" })
                }
                (Some(true), true) => "yes".into(),
                (None, true) => "–".into(),
            }
        }),
    ]
}

/// The whole `compare.html`. `runs` are all input runs (for the list at the end).
/// The mean ± sd across models of each run's correlations, the way the paper's figure is
/// made: one r per model (the mean over that model's profile runs), then mean ± sample sd over
/// models. Empty without at least one profile run with correlations.
pub(crate) fn across_models_note(runs: &[Run]) -> String {
    type Pick = fn(&crate::schema::RunSummary) -> Option<f64>;
    let picks: [(&str, Pick); 4] = [
        ("r(Δ log bos_norm, Δ entropy), lag 0", |s| s.corr_bos_entropy),
        ("r(Δ log bos_norm, Δ entropy), lag 1", |s| s.corr_bos_entropy_lag1),
        ("r(Δ log bos_norm, Δ sink_rate), lag 0", |s| s.corr_bos_sink),
        ("r(Δ log bos_norm, Δ sink_rate), lag 1", |s| s.corr_bos_sink_lag1),
    ];
    let profiles: Vec<&Run> = runs.iter().filter(|r| r.kind == crate::schema::RunKind::Profile).collect();
    let mut keys: Vec<String> = Vec::new();
    for r in &profiles {
        let k = r.model_key().unwrap_or_else(|| r.dir.display().to_string());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut parts = Vec::new();
    for (name, pick) in picks {
        let per_model: Vec<f64> = keys
            .iter()
            .filter_map(|k| {
                let v: Vec<f64> = profiles
                    .iter()
                    .filter(|r| r.model_key().unwrap_or_else(|| r.dir.display().to_string()) == *k)
                    .filter_map(|r| pick(&r.metrics.summary))
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            })
            .collect();
        if per_model.is_empty() {
            continue;
        }
        let n = per_model.len();
        let mean = per_model.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (per_model.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        parts.push(format!("{name}: <strong>{mean:.2} ± {sd:.2}</strong>"));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!(
        "<p class=\"note\" id=\"across-models\">Across the {} model{} compared (one r per model — the mean over its profile runs — then mean ± sample sd over models, as the paper's six-model figure is made): {}.{}</p>\n",
        keys.len(),
        if keys.len() == 1 { "" } else { "s" },
        parts.join("; "),
        if keys.len() < 3 { " With so few models the sd says little." } else { "" }
    )
}

/// Caption of the across-sets Fig. 5.
pub(super) const FIG5_COMPARE_CAPTION: &str = "The paper's Fig. 5: the profile runs of one model on different prompt sets. Top: every \
    head's sink score bos_attention(l, h) per set (dot = mean over prompts, whisker = 95 % bootstrap interval); filled = dormant \
    on that set (prompt-mean bos_attention > ε), ringed = input-adaptive (dormant on one set and not on another, intervals \
    disjoint) — our criteria, docs/metrics.md \"Dormant heads\". Bottom: mixing score and sink rate per set with their \
    intervals, titled with the largest difference between sets over layers. Per-head values: fig5_heads.csv.";

pub(crate) fn compare_html(
    cols: &[Column<'_>],
    runs: &[Run],
    plots: &[RenderedPlot],
    fig5_section: &str,
) -> String {
    let labels: Vec<&str> = cols.iter().map(|c| c.label.as_str()).collect();
    let mut b = String::new();
    let n_tasks = runs.iter().filter(|r| r.kind != crate::schema::RunKind::Profile).count();
    let _ = writeln!(
        b,
        "<header><h1>sinkscope compare: {} column{}{}</h1>",
        cols.len(),
        if cols.len() == 1 { "" } else { "s" },
        if n_tasks > 0 {
            format!(" ({} runs, {n_tasks} of them lens/probe)", runs.len())
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        b,
        "<p class=\"sub\">{} · depth is normalised to l / L so models of different depth line up</p></header>",
        labels.iter().map(|l| esc(l)).collect::<Vec<_>>().join(" · ")
    );
    b.push_str("<section id=\"table\"><h2>Side by side</h2>\n<div class=\"scroll\"><table id=\"compare-table\"><thead><tr><th class=\"l\">quantity</th>");
    for (i, l) in labels.iter().enumerate() {
        let c = crate::plots::PALETTE[i % crate::plots::PALETTE.len()];
        let _ = write!(
            b,
            "<th class=\"l\"><span style=\"color: rgb({},{},{})\">■</span> {}</th>",
            c.0,
            c.1,
            c.2,
            esc(l)
        );
    }
    b.push_str("</tr></thead><tbody>\n");
    for (name, vals) in compare_rows(cols) {
        let _ = write!(b, "<tr><td class=\"l\">{}</td>", esc(&name));
        for v in vals {
            let _ = write!(b, "<td class=\"l\">{}</td>", esc(&v));
        }
        b.push_str("</tr>\n");
    }
    b.push_str("</tbody></table></div>\n");
    b.push_str(&across_models_note(runs));
    b.push_str("<p class=\"note\">For orientation only: secondary summaries of the paper (not its own text, which we could not check) quote r(Δ log bos_norm, Δ entropy) = −0.9 ± 0.18 and r(Δ log bos_norm, Δ sink_rate) = 0.58 ± 0.25 as a mean ± sd of one r per model across six models, and Mix / Compress / Refine near 0–20 %, 20–85 %, 85–100 % of depth.</p>\n");
    if n_tasks > 0 {
        b.push_str("<p class=\"note\">Lens and probe runs are matched to profile runs by the model's sha256 (else its path): \
                    every profile column of a model shows that model's first lens and first probe run; a model with only lens/probe \
                    runs gets a column of its own.</p>\n");
    }
    b.push_str(fig5_section);
    b.push_str("</section>\n<section id=\"plots\"><h2>Plots</h2>\n");
    for p in plots {
        let _ = writeln!(b, "<h3>{}</h3>", esc(&p.title));
        let caption = if p.stem.starts_with("compare_fig7") {
            crate::tasks::FIG7_CAPTION
        } else if p.stem.starts_with("compare_fig5") {
            FIG5_COMPARE_CAPTION
        } else if p.stem == "compare_fig6" {
            "The paper's Fig. 6 per run on normalised depth: c = M/R and α of Theorem 1 (α ≪ c ⇔ αR ≪ M), the first token's \
             share of the sink heads' output (A[t,0]‖v₀‖ / Σ_j A[t,j]‖v_j‖, low = the sink is a no-op), and the fraction of \
             mixing heads; line = mean over prompts, band = 95 % bootstrap interval."
        } else {
            "One line per profile run (colours as in the table), mean over prompts with a ± std band, against normalised depth l / L. \
             The shading marks the paper's nominal phases; each run's own phases are in the table."
        };
        b.push_str(&figure(p, caption));
    }
    b.push_str("</section>\n<section id=\"runs\"><h2>Runs</h2>\n<ul>\n");
    for r in runs {
        let used = cols
            .iter()
            .find(|c| [c.profile, c.lens, c.probe, c.mc].into_iter().flatten().any(|x| std::ptr::eq(x, r)));
        let _ = writeln!(
            b,
            "<li><strong>{}</strong> ({}): <code>{}</code>{}{}</li>",
            esc(&r.label()),
            r.kind,
            esc(&r.dir.display().to_string()),
            r.manifest
                .model
                .as_ref()
                .and_then(|m| m.sha256.as_ref())
                .map(|s| format!(" · model sha256 <code>{}</code>", esc(s)))
                .unwrap_or_default(),
            match used {
                Some(c) => format!(" · column <em>{}</em>", esc(&c.label)),
                None => " · <span class=\"note\">not shown: another run of this kind and model was given first</span>".into(),
            }
        );
    }
    b.push_str("</ul>\n</section>\n");
    page(&format!("sinkscope compare — {}", labels.join(", ")), &b)
}
