//! The ablation's `report.html`: what happened, in sentences, and the tables of every
//! intervention.

use super::*;

pub(super) fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => Some(b / a),
        _ => None,
    }
}

pub(super) fn arrow(a: Option<f64>, b: Option<f64>) -> String {
    format!("{} → {}", opt(a), opt(b))
}

/// The peak of a run's mean `bos_ratio` over the layers: `(layer, value)`.
pub(super) fn peak_ratio(run: &Run) -> Option<(usize, f64)> {
    (0..=run.n_layers())
        .filter_map(|l| run.metrics.mean_at("bos_ratio", l).map(|v| (l, v)))
        .reduce(|best, x| if x.1 > best.1 { x } else { best })
}

/// A multi-stage model, in words: zeroing `blocks` left the valley (its minimum entropy rose
/// less than 10×) while later blocks rebuilt the first-token ratio to at least half the
/// baseline's peak, after the last ablated block. `None` otherwise.
pub(super) fn rebuilt_stage(a: &Ablation, row: &Row, blocks: &[usize]) -> Option<String> {
    let run = row.run.as_ref()?;
    let last = blocks.iter().copied().max()?;
    let (l0, r0) = peak_ratio(&a.baseline)?;
    let (l1, r1) = peak_ratio(run)?;
    let rise = ratio(a.baseline_row().and_then(Row::valley_min), row.valley_min())?;
    if rise >= 10.0 || r1 < 0.5 * r0 || l1 <= last {
        return None;
    }
    let names: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
    Some(format!(
        "<strong>A multi-stage model</strong>: with block{} {} zeroed at position 0 the valley stays (its minimum \
         entropy rises only {}×) because later blocks rebuild the first-token ratio: it peaks at {} at layer {l1} \
         ({} of depth), against {} at layer {l0} on the baseline. The massive activation is written in more than one \
         stage; ablate the later stage too (<code>--layers {},{l1}</code>, or <code>--one-by-one</code> to see each).",
        if blocks.len() == 1 { "" } else { "s" },
        names.join(", "),
        num(rise),
        num(r1),
        pct(a.baseline.depth(l1)),
        num(r0),
        names.join(","),
    ))
}

pub(super) fn sentences(a: &Ablation) -> Vec<String> {
    let mut out = Vec::new();
    let scales: Vec<String> = a
        .rows
        .iter()
        .filter(|r| r.which == Which::Scale)
        .filter_map(|r| r.entry.scale)
        .map(|s| s.to_string())
        .collect();
    let comp = a.component();
    let control = if comp == "attn" {
        " This is the attention-output control, not the paper's MLP ablation."
    } else {
        ""
    };
    out.push(format!(
        "The <strong>{}</strong> output at position 0 (the first token) of <strong>{}</strong> was multiplied by λ ∈ {{{}}}; \
         λ = 0 removes it (the paper's ablation), λ = 1 is the unmodified baseline.{control}",
        esc(&comp),
        esc(&a.blocks_text()),
        scales.join(", ")
    ));
    if let Some(src) = &a.file.blocks_source {
        out.push(format!("Blocks: {}.", esc(src)));
    }
    if a.file.evidence.is_empty() {
        out.push("No detection evidence was recorded (the blocks were given on the command line).".into());
    } else {
        let parts: Vec<String> = a
            .file
            .evidence
            .iter()
            .map(|e| {
                let l = e.layer_index();
                let mut t = l
                    .map(|l| format!("block {l} ({} of depth)", pct(a.baseline.depth(l))))
                    .unwrap_or_else(|| "a block".into());
                if let Some(r) = e.mlp_ratio {
                    let _ = write!(
                        t,
                        ": its MLP output at position 0 is {}× the median of the other positions",
                        num(r)
                    );
                }
                if let Some(g) = e.bos_ratio_gain {
                    let _ = write!(
                        t,
                        "{} bos_ratio jumps ×{} across it",
                        if e.mlp_ratio.is_some() { ", and" } else { ":" },
                        num(g)
                    );
                }
                t
            })
            .collect();
        out.push(format!(
            "Detected automatically on the baseline (metrics.md, \"Interventions\": MLP output at position 0 ≥ 10× the others' \
             median and a bos_ratio jump ≥ 3×): {}.",
            parts.join("; ")
        ));
    }
    match a.valley {
        Some(v) => out.push(format!(
            "The valley quantities below are taken over {}{}.",
            crate::html::range_text(&v, &a.baseline),
            match a.file.valley.as_ref().and_then(|v| v.rule.as_deref()) {
                Some(rule) => format!(" ({})", esc(rule)),
                None => " (the baseline's compression valley)".to_string(),
            }
        )),
        None => {
            out.push("The baseline has no compression valley, so the valley quantities are undefined.".into())
        }
    }
    let base = a.baseline_row();
    let abl = a.ablated_row();
    let lam = a.lambda_text();
    let bv = base.and_then(Row::valley_min);
    let av = abl.valley_min();
    let rise = ratio(bv, av);
    let (bs, as_) = (base.and_then(Row::valley_sink), abl.valley_sink());
    let mut t = format!(
        "At {lam} the minimum entropy_norm over the valley goes {}{}; its mean sink_rate {}; max bos_ratio {}; the prompts' NLL {}",
        arrow(bv, av),
        rise.map(|r| format!(" (<strong>{}×</strong>)", num(r))).unwrap_or_default(),
        arrow(bs, as_),
        arrow(base.and_then(Row::max_bos), abl.max_bos()),
        arrow(base.and_then(Row::nll), abl.nll()),
    );
    if let (Some(x), Some(y)) = (base.and_then(Row::nll), abl.nll()) {
        let _ = write!(t, " ({:+.3})", y - x);
    }
    t.push('.');
    let sink_falls = matches!((bs, as_), (Some(b), Some(x)) if x < b);
    match rise {
        Some(r) if r >= 10.0 && sink_falls => t.push_str(
            " <span class=\"ok\">The compression valley disappears</span> (≥ 10× rise of its minimum entropy and the sink rate falls)."
        ),
        Some(r) if r >= 10.0 => t.push_str(
            " The valley's minimum entropy rises ≥ 10×, but <span class=\"bad\">the sink rate does not fall</span>."
        ),
        Some(_) => t.push_str(" <span class=\"bad\">The compression valley does not disappear</span> by the ≥ 10× criterion."),
        None => {}
    }
    out.push(t);
    let ablated_blocks = if a.ablated_row().entry.block.is_some() {
        a.ablated_row().entry.block.into_iter().collect()
    } else {
        a.file.blocks.clone()
    };
    let zeroed = a.ablated_row().entry.scale == Some(0.0) || a.ablated_row().which == Which::OneByOne;
    if let Some(s) = zeroed.then(|| rebuilt_stage(a, a.ablated_row(), &ablated_blocks)).flatten() {
        out.push(s);
    }
    for r in a.rows.iter().filter(|r| {
        r.which == Which::OneByOne && r.entry.block.map(|b| vec![b]) != Some(ablated_blocks.clone())
    }) {
        if let Some(s) = rebuilt_stage(a, r, &r.entry.block.into_iter().collect::<Vec<_>>()) {
            out.push(s);
        }
    }
    // The largest λ that already removes the valley.
    if let Some(bv) = bv.filter(|b| *b > 0.0) {
        let gone: Vec<f64> = a
            .rows
            .iter()
            .filter(|r| r.which == Which::Scale)
            .filter(|r| r.valley_min().is_some_and(|v| v >= 10.0 * bv))
            .filter_map(|r| r.entry.scale)
            .collect();
        if let Some(max) = gone.iter().copied().reduce(f64::max) {
            out.push(format!(
                "The valley minimum is ≥ 10× the baseline's already at λ = {max} (and at {} scale{} in all).",
                gone.len(),
                if gone.len() == 1 { "" } else { "s" }
            ));
        }
    }
    match a.mean_row() {
        Some(m) => {
            let dims: Vec<String> = m.entry.dims().iter().map(|d| d.to_string()).collect();
            out.push(format!(
                "Mean-ablation (Sun et al.): dimension{} <strong>{}</strong> at position 0 (found from the top activations) \
                 replaced by {} mean over the other positions: valley min entropy_norm {}{}, mean sink_rate {}, max bos_ratio {}, NLL {}.",
                if dims.len() == 1 { "" } else { "s" },
                if dims.is_empty() { "?".into() } else { dims.join(", ") },
                if dims.len() == 1 { "its" } else { "their" },
                arrow(bv, m.valley_min()),
                ratio(bv, m.valley_min()).map(|r| format!(" ({}×)", num(r))).unwrap_or_default(),
                arrow(bs, m.valley_sink()),
                arrow(base.and_then(Row::max_bos), m.max_bos()),
                arrow(base.and_then(Row::nll), m.nll()),
            ));
        }
        None => out.push("The mean-ablation of the massive dimensions was not run.".into()),
    }
    let singles: Vec<String> = a
        .rows
        .iter()
        .filter(|r| r.which == Which::OneByOne)
        .map(|r| {
            format!(
                "block {}: valley min {}{}",
                r.entry.block.map(|b| b.to_string()).unwrap_or_else(|| "?".into()),
                opt(r.valley_min()),
                ratio(bv, r.valley_min()).map(|x| format!(" ({}×)", num(x))).unwrap_or_default()
            )
        })
        .collect();
    if !singles.is_empty() {
        out.push(format!("Each block ablated alone: {}.", singles.join("; ")));
    }
    out
}

pub(super) fn run_link(a: &Ablation, r: &Row) -> String {
    if r.folder.is_empty() {
        return "–".into();
    }
    let has_report = a.dir.join(&r.folder).join(REPORT_HTML).is_file();
    if has_report {
        format!("<a href=\"{0}/report.html\"><code>{0}</code></a>", esc(&r.folder))
    } else {
        format!("<code>{}</code>", esc(&r.folder))
    }
}

pub(super) fn intervention_table(a: &Ablation, id: &str, rows: &[&Row], first_col: &str) -> String {
    let base = a.baseline_row();
    let bv = base.and_then(Row::valley_min);
    let bn = base.and_then(Row::nll);
    let mut s = format!(
        "<div class=\"scroll\"><table id=\"{id}\">\n<thead><tr><th>{first_col}</th><th class=\"l\">run</th>\
         <th>valley min entropy_norm</th><th>× baseline</th><th>max bos_ratio</th><th>valley mean sink_rate</th>\
         <th>NLL</th><th>Δ NLL</th><th>bound violations</th></tr></thead>\n<tbody>\n"
    );
    for r in rows {
        let first = match r.which {
            Which::Scale => r.entry.scale.map(|x| x.to_string()).unwrap_or_else(|| "?".into()),
            Which::MeanAblate | Which::SunMean | Which::ZeroDims => {
                let dims = r.entry.dims().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
                match r.which {
                    Which::SunMean => format!("{dims}: mean over prompts (Sun et al.)"),
                    Which::ZeroDims => format!("{dims}: zero"),
                    _ => format!("{dims}: mean over the prompt's other positions"),
                }
            }
            Which::OneByOne => r.entry.block.map(|b| b.to_string()).unwrap_or_else(|| "?".into()),
        };
        let dn = match (bn, r.nll()) {
            (Some(b), Some(x)) => format!("{:+.3}", x - b),
            _ => "–".into(),
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{dn}</td><td>{}</td></tr>",
            esc(&first),
            run_link(a, r),
            opt(r.valley_min()),
            opt(ratio(bv, r.valley_min())),
            opt(r.max_bos()),
            opt(r.valley_sink()),
            opt(r.nll()),
            bound_cell(r),
        );
    }
    s.push_str("</tbody></table></div>\n");
    s
}

/// Bound violations of an intervention: from `ablate.json`, else the sub-run's summary.
pub(super) fn bound_cell(r: &Row) -> String {
    let n =
        r.entry.bound_violations.or_else(|| r.run.as_ref().and_then(|x| x.metrics.summary.bound_violations));
    match n {
        Some(0) => "<span class=\"ok\">0</span>".into(),
        Some(n) => format!("<span class=\"bad\">{n}</span>"),
        None => "–".into(),
    }
}

pub(super) fn evidence_table(a: &Ablation) -> String {
    if a.file.evidence.is_empty() {
        return "<p class=\"note\">ablate.json records no detection evidence.</p>\n".into();
    }
    let mut s = String::from(
        "<table id=\"evidence-table\"><thead><tr><th>block</th><th>depth</th><th class=\"l\">hook</th>\
         <th>MLP ‖out‖ at position 0</th><th>median of the others</th><th>ratio</th>\
         <th>bos_ratio before → after</th><th>gain</th><th>prompts</th><th class=\"l\">ablated</th></tr></thead><tbody>\n",
    );
    for e in &a.file.evidence {
        let l = e.layer_index();
        let before_after = match (e.bos_ratio_before, e.bos_ratio_after) {
            (None, None) => "–".to_string(),
            (b, c) => format!("{} → {}", opt(b), opt(c)),
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{before_after}</td>\
             <td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            l.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
            l.map(|l| pct(a.baseline.depth(l))).unwrap_or_else(|| "–".into()),
            e.hook.as_deref().map(|h| format!("<code>{}</code>", esc(h))).unwrap_or_else(|| "–".into()),
            opt(e.mlp_out_bos_norm),
            opt(e.mlp_out_other_median),
            opt(e.mlp_ratio),
            opt(e.bos_ratio_gain),
            e.n_prompts.map(|n| n.to_string()).unwrap_or_else(|| "–".into()),
            if l.is_some_and(|l| a.file.blocks.contains(&l)) { "yes" } else { "no" }
        );
    }
    s.push_str("</tbody></table>\n<p class=\"note\">The rule (metrics.md, \"Interventions\"): a block creates the \
                massive activation when its MLP output at position 0 is ≥ 10× the median over the other positions and \
                bos_ratio rises ≥ 3× across it.</p>\n");
    s
}

pub(super) fn report_html(a: &Ablation, plots: &[RenderedPlot]) -> String {
    let label = a.label();
    let mut b = String::new();
    let _ = writeln!(b, "<header><h1>sinkscope ablate: {}</h1>", esc(&label));
    let _ = writeln!(
        b,
        "<p class=\"sub\">{} output at position 0 × λ in {} · {} blocks, {} prompts · result schema v{} · generated from \
         <code>ablate.json</code> and the sub-run folders</p>",
        esc(&a.component()),
        esc(&a.blocks_text()),
        a.baseline.n_layers(),
        a.baseline.n_prompts(),
        crate::schema::SCHEMA_VERSION
    );
    b.push_str(
        "<nav><a href=\"#summary\">Summary</a><a href=\"#plots\">Plots</a><a href=\"#dose\">Dose–response</a>\
         <a href=\"#evidence\">Evidence</a><a href=\"#mean-ablate\">Mean ablation</a><a href=\"#runs\">Runs</a>\
         <a href=\"#run\">Run</a></nav></header>\n",
    );
    b.push_str("<section id=\"summary\"><h2>Summary</h2>\n<ul class=\"summary\">\n");
    for s in sentences(a) {
        let _ = writeln!(b, "<li>{s}</li>");
    }
    b.push_str("</ul>\n</section>\n<section id=\"plots\"><h2>Plots</h2>\n");
    for p in plots {
        let _ = writeln!(b, "<h3>{}</h3>", esc(&p.title));
        let caption = match p.stem.as_str() {
            "ablate_fig4" => format!(
                "The paper's Fig. 4: Fig.-1 curves of the baseline (solid, mean ± std band) and of the run with the {} output \
                 at position 0 scaled to {} in {} (dashed){}; background: the baseline's Mix / Compress / Refine phases; \
                 dashed vertical lines: the ablated blocks.",
                esc(&a.component()),
                a.lambda_text(),
                esc(&a.blocks_text()),
                if a.mean_row().and_then(|r| r.run.as_ref()).is_some() { "; green dashed: the mean-ablation" } else { "" }
            ),
            _ => "Dose–response against λ: the valley's depth (minimum entropy_norm over the baseline's valley, log; the grey \
                  dashed line is 10× the baseline's), the largest bos_ratio, the valley's mean sink rate and the prompts' \
                  next-token NLL. Horizontal green line: the mean-ablation; single dots: each block ablated alone."
                .to_string(),
        };
        b.push_str(&figure(p, &caption));
    }
    b.push_str("</section>\n<section id=\"dose\"><h2>Dose–response</h2>\n");
    let scales: Vec<&Row> = a.rows.iter().filter(|r| r.which == Which::Scale).collect();
    b.push_str(&intervention_table(a, "dose-table", &scales, "λ"));
    b.push_str(
        "<p class=\"note\">Values from <code>ablate.json</code>; any it leaves out are recomputed from the sub-run's \
         <code>metrics.json</code> with the same definitions. All rows are in <a href=\"dose_response.csv\">dose_response.csv</a>; \
         the Fig.-4 curves in <a href=\"layers.csv\">layers.csv</a>.</p>\n",
    );
    let singles: Vec<&Row> = a.rows.iter().filter(|r| r.which == Which::OneByOne).collect();
    if !singles.is_empty() {
        b.push_str("<h3>One block at a time</h3>\n");
        b.push_str(&intervention_table(a, "one-by-one-table", &singles, "block"));
    }
    b.push_str("</section>\n<section id=\"evidence\"><h2>Detection evidence</h2>\n");
    b.push_str(&evidence_table(a));
    b.push_str("</section>\n<section id=\"mean-ablate\"><h2>Mean ablation of the massive dimensions</h2>\n");
    let dim_rows: Vec<&Row> = [Which::SunMean, Which::ZeroDims, Which::MeanAblate]
        .iter()
        .filter_map(|w| a.rows.iter().find(|r| r.which == *w))
        .collect();
    if dim_rows.is_empty() {
        b.push_str("<p class=\"note\">Not run.</p>\n");
    } else {
        b.push_str(&intervention_table(a, "mean-ablate-table", &dim_rows, "dimensions"));
        b.push_str(
            "<p class=\"note\">The massive dimensions of X(block) at position 0, three ways: <strong>Sun et al.'s \
             mean-ablation</strong> (each set to its mean at position 0 over the prompt set, measured in a first pass over \
             the same prompts), <strong>zero-ablation</strong> (Sun et al.'s contrast), and the mean over the <em>other \
             positions of the same prompt</em> (<code>mean_others</code>; for a first-token massive activation this is \
             close to zero-ablation, and it is not Sun et al.'s operation). Sun et al. (2024) report for LLaMA2-7B that \
             mean-ablation leaves perplexity unchanged while zero-ablation destroys the model (reported, not reproduced \
             here); Δ NLL is against the baseline on the same prompts.</p>\n",
        );
    }
    if let Some(m) = dim_rows.first() {
        let mut notes = Vec::new();
        if let Some(site) = &m.entry.site {
            notes.push(format!("edited at <code>{}</code>", esc(site)));
        }
        if let Some(rule) = &m.entry.rule {
            notes.push(format!("dimensions chosen as: {}", esc(rule)));
        }
        if let Some(sun) = a.rows.iter().find(|r| r.which == Which::SunMean) {
            if !sun.entry.reference_means().is_empty() {
                let v: Vec<String> = sun
                    .entry
                    .dims()
                    .iter()
                    .zip(sun.entry.reference_means())
                    .map(|(d, x)| format!("dim {d}: {}", opt(Some(*x))))
                    .collect();
                notes.push(format!(
                    "Sun et al.'s reference means over {} prompts: {}",
                    sun.entry.reference_prompts.map_or_else(|| "?".into(), |n| n.to_string()),
                    v.join(", ")
                ));
            }
        }
        if !notes.is_empty() {
            let _ = writeln!(b, "<p class=\"note\">Dimension ablations {}.</p>", notes.join("; "));
        }
    }
    b.push_str("</section>\n<section id=\"runs\"><h2>Runs</h2>\n<ul>\n");
    for r in &a.rows {
        let what = match r.which {
            Which::Scale => {
                format!("λ = {}", r.entry.scale.map(|s| s.to_string()).unwrap_or_else(|| "?".into()))
            }
            Which::MeanAblate => "massive dims: mean over the prompt's other positions".into(),
            Which::SunMean => "massive dims: Sun et al.'s mean over prompts".into(),
            Which::ZeroDims => "massive dims: zero".into(),
            Which::OneByOne => {
                format!("block {} alone", r.entry.block.map(|b| b.to_string()).unwrap_or_else(|| "?".into()))
            }
        };
        let _ = writeln!(
            b,
            "<li>{what}: {}{}</li>",
            run_link(a, r),
            if r.run.is_none() {
                " <span class=\"note\">(folder not found; values from ablate.json)</span>"
            } else {
                ""
            }
        );
    }
    b.push_str("</ul>\n</section>\n<section id=\"run\"><h2>Run (baseline)</h2>\n");
    b.push_str(&run_details(&a.baseline));
    b.push_str("<h3>Conventions</h3>\n");
    b.push_str(&conventions(&a.baseline));
    b.push_str("</section>\n");
    page(&format!("sinkscope ablate — {label}"), &b)
}
