//! The self-contained HTML pages: `report.html` (one run) and `compare.html` (several).
//!
//! Self-contained means: CSS inline, SVGs inline (without their XML namespace URL, which
//! inline SVG in HTML does not need), no script, no font, image or style fetched from
//! anywhere. Links point only at files in the run folder (relative paths).

use std::fmt::Write as _;

use serde_json::Value;

use crate::plots::{phase_color, xml_escape as esc, RenderedPlot};
use crate::schema::{LayerRange, Phase, Run, TaskMetric};

mod compare;
pub(crate) use compare::*;

const CSS: &str = r#"
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #d9dce0; --bg-alt: #f6f7f9; --accent: #1f77b4; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Roboto, Helvetica, Arial, sans-serif;
       color: var(--fg); margin: 0 auto; max-width: 1560px; padding: 24px 28px 60px; line-height: 1.45; }
h1 { font-size: 1.7rem; margin: 0 0 4px; }
h2 { font-size: 1.25rem; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 18px 0 6px; }
.sub { color: var(--muted); margin: 0 0 12px; }
.summary li { margin: 4px 0; }
.ok { color: #0a7d32; font-weight: 600; }
.bad { color: #c62828; font-weight: 700; }
.note { color: var(--muted); font-size: 0.92rem; }
figure { margin: 10px 0 22px; }
figure svg { width: 100%; height: auto; max-width: 100%; display: block; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 0.92rem; margin-top: 6px; }
table { border-collapse: collapse; font-size: 0.86rem; margin: 6px 0 14px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: right; vertical-align: top; }
#layer-table td, #prompt-table td, #compare-table td { white-space: nowrap; }
th { background: var(--bg-alt); position: sticky; top: 0; }
td.l, th.l { text-align: left; }
tr.massive td { font-weight: 600; }
.scroll { overflow-x: auto; max-height: 720px; overflow-y: auto; border: 1px solid var(--line); }
.scroll table { margin: 0; }
code, .mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.85rem; }
.phase { display: inline-block; padding: 0 6px; border-radius: 3px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 0.9rem; }
dl.kv dt { font-weight: 600; } dl.kv dd { margin: 0; word-break: break-word; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; }
"#;

/// Formats a number with about 3 significant digits.
pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub(crate) fn opt(v: Option<f64>) -> String {
    v.map(num).unwrap_or_else(|| "–".into())
}

pub(crate) fn pct(d: f64) -> String {
    format!("{:.0} %", d * 100.0)
}

pub(crate) fn range_text(r: &LayerRange, run: &Run) -> String {
    let fd = r.first_depth.unwrap_or_else(|| run.depth(r.first));
    let ld = r.last_depth.unwrap_or_else(|| run.depth(r.last));
    if r.first == r.last {
        format!("layer {} ({} of depth)", r.first, pct(fd))
    } else {
        format!("layers {}–{} ({}–{} of depth)", r.first, r.last, pct(fd), pct(ld))
    }
}

pub(crate) fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// Inline form of a plot's SVG: no XML declaration, no namespace URL, scalable.
pub(crate) fn inline_svg(svg: &str) -> String {
    let body = match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    };
    body.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1).replacen(
        "<svg ",
        "<svg role=\"img\" preserveAspectRatio=\"xMidYMid meet\" ",
        1,
    )
}

pub(crate) fn figure(plot: &RenderedPlot, caption: &str) -> String {
    let png = plot.png_path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let svg = plot.svg_path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    format!(
        "<figure id=\"plot-{stem}\">\n{svg_text}\n<figcaption>{caption} Files: <a href=\"plots/{svg}\">plots/{svg}</a>, \
         <a href=\"plots/{png}\">plots/{png}</a>.</figcaption>\n</figure>\n",
        stem = esc(&plot.stem),
        // Never wider than drawn: a narrow plot is not blown up to the page width.
        svg_text = inline_svg(&plot.svg).replacen("<svg ", &format!("<svg style=\"max-width: {}px\" ", plot.size.0), 1),
        caption = caption,
        svg = esc(&svg),
        png = esc(&png),
    )
}

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        esc(title)
    )
}

// ---------------------------------------------------------------------------------------
// Summary in words
// ---------------------------------------------------------------------------------------

/// The first-token sentence: which token sits at position 0 and whether it is a BOS.
fn first_token_sentence(run: &Run) -> String {
    let m = &run.manifest;
    let ft = m.first_token.clone().or_else(|| run.prompts.first().and_then(|p| p.first_token().cloned()));
    let policy = m.tokenizer.as_ref().and_then(|t| t.bos_policy.clone());
    let adds = m.tokenizer.as_ref().and_then(|t| t.model_adds_bos);
    let mut s = match ft {
        Some(ft) => {
            let tok = ft.token.as_deref().map(|t| format!("<code>{}</code>", esc(&format!("{t:?}"))));
            let id = ft.id.map(|i| format!("id {i}"));
            let what = match (tok, id) {
                (Some(t), Some(i)) => format!("{t} ({i})"),
                (Some(t), None) => t,
                (None, Some(i)) => i,
                (None, None) => "an unrecorded token".into(),
            };
            let bos = match ft.is_bos {
                Some(true) => "<strong>a BOS token</strong>".to_string(),
                Some(false) => "<strong>not a BOS token</strong>".to_string(),
                None => "of unknown BOS status".to_string(),
            };
            let mix = first_token_mix(run);
            match ft.same_for_all_prompts {
                Some(false) if !mix.is_empty() => format!(
                    "Position 0 (the sink candidate) holds each prompt's own first token, which differs between \
                     prompts{mix}."
                ),
                Some(false) => format!(
                    "Position 0 (the sink candidate) differs between prompts; the first prompt's is {what}, which \
                     is {bos}."
                ),
                Some(true) => format!(
                    "Position 0 (the sink candidate) holds {what}, which is {bos}. It is the same token for every \
                     prompt."
                ),
                None => format!("Position 0 (the sink candidate) holds {what}, which is {bos}."),
            }
        }
        None => "The manifest does not record the token at position 0.".to_string(),
    };
    if policy.is_some() || adds.is_some() {
        let _ = write!(
            s,
            " BOS policy: <code>{}</code>{}.",
            esc(policy.as_deref().unwrap_or("?")),
            match adds {
                Some(true) => " (the model adds a BOS by default)",
                Some(false) => " (the model adds no BOS by default)",
                None => "",
            }
        );
    }
    s
}

/// ": "A" in 3 prompts, "The" in 2 (none a BOS)" from prompts.jsonl; empty without it.
fn first_token_mix(run: &Run) -> String {
    let mut counts: Vec<(String, usize, bool)> = Vec::new();
    for p in &run.prompts {
        let Some(ft) = p.first_token() else { continue };
        let tok =
            ft.token.clone().unwrap_or_else(|| ft.id.map(|i| format!("#{i}")).unwrap_or_else(|| "?".into()));
        let bos = ft.is_bos == Some(true);
        match counts.iter_mut().find(|(t, _, _)| *t == tok) {
            Some(c) => c.1 += 1,
            None => counts.push((tok, 1, bos)),
        }
    }
    if counts.is_empty() {
        return String::new();
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let n_bos: usize = counts.iter().filter(|c| c.2).map(|c| c.1).sum();
    let shown: Vec<String> = counts
        .iter()
        .take(6)
        .map(|(t, n, _)| format!("<code>{}</code> in {n}", esc(&format!("{t:?}"))))
        .collect();
    let more = if counts.len() > 6 { format!(" and {} more", counts.len() - 6) } else { String::new() };
    let bos = match n_bos {
        0 => " — <strong>none is a BOS token</strong>".to_string(),
        n if n == run.prompts.len() => " — <strong>all are BOS tokens</strong>".to_string(),
        n => format!(" — <strong>{n} of them BOS tokens</strong>"),
    };
    format!(": {}{more}{bos}", shown.join(", "))
}

/// Sentences (HTML) summarising a run.
pub(crate) fn summary_sentences(run: &Run) -> Vec<String> {
    let s = &run.metrics.summary;
    let mut out = Vec::new();

    // Massive activation.
    let peak = s.peak_bos_ratio.map(|p| {
        format!(
            "the first token's norm ratio to the other tokens (<code>bos_ratio</code>) peaks at <strong>{}</strong> at layer {} ({} of depth)",
            num(p.value),
            p.layer,
            pct(run.depth(p.layer))
        )
    });
    if s.massive_layers.is_empty() {
        out.push(format!(
            "No massive-activation block was detected (no block whose MLP output at position 0 is ≥ 10× the median of the other positions and raises <code>bos_ratio</code> ≥ 3×){}.",
            peak.map(|p| format!("; {p}")).unwrap_or_default()
        ));
    } else {
        let parts: Vec<String> = s
            .massive_layers
            .iter()
            .map(|m| {
                let l = m.layer_index();
                let mut t = match l {
                    Some(l) => format!("<strong>layer {l}</strong> ({} of depth", pct(run.depth(l))),
                    None => "an unnamed layer (".to_string(),
                };
                let block = l.map(|l| format!("block {l}'s")).unwrap_or_else(|| "the block's".into());
                if let Some(r) = m.mlp_ratio {
                    let _ = write!(
                        t,
                        "; {block} MLP output at position 0 is {}× the other positions' median",
                        num(r)
                    );
                }
                if let Some(g) = m.bos_ratio_gain {
                    let _ = write!(t, "; bos_ratio ×{}", num(g));
                }
                t.push(')');
                t
            })
            .collect();
        out.push(format!(
            "The massive activation forms at {}{}.",
            parts.join(" and "),
            peak.map(|p| format!("; {p}")).unwrap_or_default()
        ));
    }
    // Massive by Sun et al.'s criterion.
    let massive_frac: Vec<usize> = (0..=run.n_layers())
        .filter(|&l| run.metrics.mean_at("massive", l).is_some_and(|v| v >= 0.5))
        .collect();
    if run.metrics.metric("massive").is_some() {
        if let (Some(a), Some(b)) = (massive_frac.first(), massive_frac.last()) {
            out.push(format!(
                "By Sun et al.'s criterion (top |activation| &gt; 100 and &gt; 1000× the median) the activations are massive in most prompts at {} layers, from layer {a} to layer {b}.",
                massive_frac.len()
            ));
        } else {
            out.push("By Sun et al.'s criterion (top |activation| &gt; 100 and &gt; 1000× the median) no layer has massive activations in most prompts.".into());
        }
    }

    // Phases.
    match s.phases {
        Some(ph) => {
            let parts: Vec<String> = ph
                .named()
                .into_iter()
                .map(|(p, r)| {
                    let c = phase_color(p);
                    format!(
                        "<span class=\"phase\" style=\"background: rgba({},{},{},0.22)\">{}</span> {}",
                        c.0,
                        c.1,
                        c.2,
                        p.as_str(),
                        range_text(&r, run)
                    )
                })
                .collect();
            out.push(format!(
                "Phases: {}{}. The rule (docs/metrics.md, \"Phases\") uses the massive activation, the entropy valley, sinks and mixing together on median-of-3 smoothed curves. Secondary summaries of the paper place the phases near 0–20 %, 20–85 % and 85–100 % of depth; the paper's own text gives no such fractions that we could check.",
                parts.join("; "),
                boundary_text(s.phase_boundaries.as_ref(), run)
            ));
        }
        None => out.push(
            "No compression phase was found (no layer where the first token's norm ratio reaches 3 together with at least two of: sink_rate ≥ 0.5, entropy_norm below the midpoint of its range, mixing_score &lt; 0.7), so no Mix/Compress/Refine split is reported."
                .into(),
        ),
    }
    if let Some(m) = s.min_entropy_norm {
        out.push(format!(
            "Normalised entropy is lowest at layer {} ({} of depth): <strong>{}</strong>; it starts at {} (layer 0) and ends at {} (layer {}).",
            m.layer,
            pct(run.depth(m.layer)),
            num(m.value),
            opt(run.metrics.mean_at("entropy_norm", 0)),
            opt(run.metrics.mean_at("entropy_norm", run.n_layers())),
            run.n_layers()
        ));
    }
    if let Some(sr) = run.metrics.metric("sink_rate") {
        let vals: Vec<(usize, f64)> =
            (1..=run.n_layers()).filter_map(|l| sr.mean_at(l).map(|v| (l, v))).collect();
        if !vals.is_empty() {
            let mean = vals.iter().map(|v| v.1).sum::<f64>() / vals.len() as f64;
            let max = vals.iter().map(|v| v.1).fold(f64::NEG_INFINITY, f64::max);
            let at: Vec<String> =
                vals.iter().filter(|v| (v.1 - max).abs() < 1e-12).map(|v| v.0.to_string()).collect();
            out.push(format!(
                "Sink rate: mean {} over blocks 1–{}, maximum {} at layer{} {}.",
                num(mean),
                run.n_layers(),
                num(max),
                if at.len() > 1 { "s" } else { "" },
                compact_list(&at)
            ));
        }
    }

    // Correlations.
    out.push(correlation_text(s));

    // Theorem 1.
    out.push(match s.bound_violations {
        Some(0) => "Theorem-1 bounds (σ₁², anisotropy, entropy, dominance): <span class=\"ok\">0 violations</span> at every layer of every prompt.".into(),
        Some(n) => format!(
            "Theorem-1 bounds: <span class=\"bad\">{n} violation{}</span> — a measured value on the wrong side of its bound is a bug (see docs/metrics.md).",
            if n == 1 { "" } else { "s" }
        ),
        None => "Theorem-1 bound violations were not recorded.".into(),
    });

    out.push(first_token_sentence(run));
    out
}

/// "1, 2, 3, 5" → "1–3, 5".
pub(crate) fn compact_list(items: &[String]) -> String {
    let nums: Option<Vec<usize>> = items.iter().map(|s| s.parse().ok()).collect();
    let Some(nums) = nums else { return items.join(", ") };
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < nums.len() {
        let mut j = i;
        while j + 1 < nums.len() && nums[j + 1] == nums[j] + 1 {
            j += 1;
        }
        out.push(if j > i { format!("{}–{}", nums[i], nums[j]) } else { nums[i].to_string() });
        i = j + 1;
    }
    out.join(", ")
}

// ---------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------

/// Columns of the per-layer HTML table (those present in the run).
const TABLE_METRICS: [&str; 10] = [
    "bos_norm",
    "token_norm_mean",
    "bos_ratio",
    "entropy_norm",
    "anisotropy",
    "alpha",
    "sink_rate",
    "mixing_score",
    "bos_attention",
    "massive",
];

/// `[lo, hi]` of an interval, or nothing.
fn ci_text(ci: Option<crate::schema::Interval>) -> String {
    ci.map(|c| format!(" [{:.2}, {:.2}]", c.low, c.high)).unwrap_or_default()
}

/// The phase boundaries with their intervals (empty when the file has none).
fn boundary_text(b: Option<&crate::schema::PhaseBoundaries>, run: &Run) -> String {
    let Some(b) = b else { return String::new() };
    let mut parts = Vec::new();
    if let Some(m) = b.mean_curves {
        let reps = m.replicates.map(|n| format!(" of {n}")).unwrap_or_default();
        if let Some(c) = m.compress_start.filter(|c| c.layer.is_some()) {
            parts.push(format!(
                "Compress starts at layer {}{} (95 % bootstrap interval over prompts; {}{reps} replicates have phases)",
                opt_usize(c.layer),
                ci_text(c.ci),
                opt_usize(c.replicates_with_phases)
            ));
        }
        if let Some(r) = m.refine_start {
            parts.push(format!(
                "Refine starts at layer {}{} ({}{reps} replicates have a Refine phase)",
                opt_usize(r.layer),
                ci_text(r.ci),
                opt_usize(r.replicates_with_refine)
            ));
        }
    }
    if let Some(pp) = b.per_prompt {
        let stat = |s: Option<crate::schema::PerPromptBoundary>| {
            s.and_then(|s| Some(format!("{:.1} ± {:.1} (n = {})", s.mean?, s.sd?, s.n)))
        };
        if let Some(c) = stat(pp.compress_start) {
            let r = stat(pp.refine_start).unwrap_or_else(|| "none".into());
            parts.push(format!(
                "on each prompt's own curves (mean ± sd over prompts, {} layers in all): Compress starts at {c}, Refine at {r}{}",
                run.n_layers(),
                pp.n_prompts_without_phases
                    .filter(|&n| n > 0)
                    .map(|n| format!("; {n} prompts have no compressed layer"))
                    .unwrap_or_default()
            ));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(". {}", parts.join("; "))
    }
}

fn opt_usize(v: Option<usize>) -> String {
    v.map_or_else(|| "–".into(), |v| v.to_string())
}

/// The correlation paragraph: lag 0 and lag 1 with intervals and per-prompt r, and what the
/// paper's figure is (and is not).
fn correlation_text(s: &crate::schema::RunSummary) -> String {
    let r = |v: Option<f64>| {
        v.map(|x| format!("<strong>r = {x:.2}</strong>")).unwrap_or_else(|| "undefined".into())
    };
    let lagged = |c: Option<crate::schema::LaggedCorrelation>, fallback: Option<f64>| -> String {
        match c {
            Some(c) => {
                let pp = c
                    .per_prompt
                    .and_then(|p| Some(format!("; per prompt {:.2} ± {:.2}, n = {}", p.mean?, p.sd?, p.n)))
                    .unwrap_or_default();
                format!("{}{}{pp}", r(c.r), ci_text(c.ci))
            }
            None => r(fallback),
        }
    };
    let corr = s.correlations.unwrap_or_default();
    let e = corr.bos_entropy.unwrap_or_default();
    let k = corr.bos_sink.unwrap_or_default();
    format!(
        "Layer-to-layer change of log bos_norm vs change of entropy: {} at lag 0 (<code>corr_bos_entropy</code>), {} at lag 1; \
         vs change of sink rate: {} at lag 0 (<code>corr_bos_sink</code>), {} at lag 1 (block l + 1's sinks against block l's spike: \
         sink_rate(l) is computed by block l's attention, which reads X(l − 1), so a spike written by block l shows in the sinks \
         one layer later). Brackets: 95 % bootstrap intervals over prompts. For orientation only: r = −0.9 ± 0.18 (entropy) and \
         0.58 ± 0.25 (sink rate) are quoted for the paper by secondary summaries as a mean ± sd of one r per model across six \
         models, with an unpublished method — not a per-run figure (<code>sinkscope compare</code> gives the mean ± sd across runs).",
        lagged(e.lag0, s.corr_bos_entropy),
        lagged(e.lag1, s.corr_bos_entropy_lag1),
        lagged(k.lag0, s.corr_bos_sink),
        lagged(k.lag1, s.corr_bos_sink_lag1),
    )
}

fn layer_table(run: &Run) -> String {
    let cols: Vec<&str> = TABLE_METRICS.iter().copied().filter(|n| run.metrics.metric(n).is_some()).collect();
    let massive: Vec<usize> =
        run.metrics.summary.massive_layers.iter().filter_map(|m| m.layer_index()).collect();
    let phases = run.metrics.summary.phases;
    let mut s = String::from("<div class=\"scroll\"><table id=\"layer-table\">\n<thead><tr><th>layer</th><th>depth</th><th class=\"l\">phase</th>");
    for c in &cols {
        let _ = write!(s, "<th>{}</th>", esc(c));
    }
    s.push_str("<th class=\"l\">top activation (value @ dim, token)</th></tr></thead>\n<tbody>\n");
    for l in 0..=run.n_layers() {
        let cls = if massive.contains(&l) { " class=\"massive\"" } else { "" };
        let _ = write!(s, "<tr{cls}><td>{l}</td><td>{}</td>", pct(run.depth(l)));
        match phases.and_then(|p| p.phase_of(l)) {
            Some(p) => {
                let c = phase_color(p);
                let _ = write!(
                    s,
                    "<td class=\"l\"><span class=\"phase\" style=\"background: rgba({},{},{},0.22)\">{}</span></td>",
                    c.0,
                    c.1,
                    c.2,
                    p.as_str()
                );
            }
            None => s.push_str("<td class=\"l\"></td>"),
        }
        for c in &cols {
            let m = run.metrics.metric(c);
            let mean = m.and_then(|m| m.mean_at(l));
            let std = m.and_then(|m| m.std_at(l));
            let cell = match (mean, std) {
                (Some(v), Some(sd)) if sd > 1e-9 * v.abs().max(1e-300) => {
                    format!("{} <span class=\"note\">± {}</span>", num(v), num(sd))
                }
                (Some(v), _) => num(v),
                (None, _) => "–".into(),
            };
            let _ = write!(s, "<td>{cell}</td>");
        }
        let top = run.metrics.top_activations.get(l).and_then(|v| v.first());
        match top {
            Some(a) => {
                let _ = write!(
                    s,
                    "<td class=\"l\">{} @ dim {}, token {}{}</td>",
                    num(a.value),
                    a.dim,
                    a.token,
                    a.n_prompts
                        .map(|n| format!(" <span class=\"note\">({n} prompts)</span>"))
                        .unwrap_or_default()
                );
            }
            None => s.push_str("<td class=\"l\">–</td>"),
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table></div>\n");
    if !massive.is_empty() {
        s.push_str("<p class=\"note\">Bold rows: layers written by a massive-activation block.</p>\n");
    }
    s
}

fn prompt_table(run: &Run) -> String {
    if run.prompts.is_empty() {
        return if run.prompts_present {
            "<p class=\"note\">prompts.jsonl is empty.</p>\n".into()
        } else {
            "<p class=\"note\">prompts.jsonl was not found in the run folder.</p>\n".into()
        };
    }
    let peak = |m: &std::collections::BTreeMap<String, Vec<Option<f64>>>, name: &str, max: bool| {
        m.get(name).and_then(|c| {
            c.iter().enumerate().filter_map(|(l, v)| v.map(|v| (l, v))).reduce(|a, b| {
                if (b.1 > a.1) == max && b.1 != a.1 {
                    b
                } else {
                    a
                }
            })
        })
    };
    let mut s = String::from(
        "<div class=\"scroll\"><table id=\"prompt-table\">\n<thead><tr><th class=\"l\">id</th><th>tokens</th>\
         <th class=\"l\">first token</th><th class=\"l\">BOS?</th><th>peak bos_ratio (layer)</th>\
         <th>min entropy_norm (layer)</th></tr></thead>\n<tbody>\n",
    );
    for p in &run.prompts {
        let ft = p.first_token();
        let tok = ft
            .map(|f| {
                let t = f.token.as_deref().map(|t| format!("{t:?}")).unwrap_or_else(|| "?".into());
                format!("<code>{}</code>{}", esc(&t), f.id.map(|i| format!(" ({i})")).unwrap_or_default())
            })
            .unwrap_or_else(|| "–".into());
        let bos = match ft.and_then(|f| f.is_bos) {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        };
        let pr = p
            .metrics()
            .and_then(|m| peak(m, "bos_ratio", true))
            .map(|(l, v)| format!("{} ({l})", num(v)))
            .unwrap_or_else(|| "–".into());
        let me = p
            .metrics()
            .and_then(|m| peak(m, "entropy_norm", false))
            .map(|(l, v)| format!("{} ({l})", num(v)))
            .unwrap_or_else(|| "–".into());
        let n = p.n_tokens();
        let _ = writeln!(
            s,
            "<tr><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{tok}</td><td class=\"l\">{bos}</td><td>{pr}</td><td>{me}</td></tr>",
            esc(p.id()),
            n.map(|n| n.to_string()).unwrap_or_else(|| "–".into()),
        );
    }
    s.push_str("</tbody></table></div>\n");
    s
}

pub(crate) fn kv_list(items: &[(String, String)]) -> String {
    let mut s = String::from("<dl class=\"kv\">\n");
    for (k, v) in items {
        let _ = writeln!(s, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    s.push_str("</dl>\n");
    s
}

pub(crate) fn config_field(run: &Run, key: &str) -> Option<String> {
    run.manifest.model.as_ref()?.config.as_ref()?.get(key).map(json_text)
}

pub(crate) fn run_details(run: &Run) -> String {
    let m = &run.manifest;
    let mut s = String::new();
    let mut model: Vec<(String, String)> = Vec::new();
    if let Some(mi) = &m.model {
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                model.push((k.to_string(), v));
            }
        };
        push("path", mi.path.clone());
        push("format", mi.format.as_ref().map(json_text));
        push("family", mi.family.as_ref().map(json_text));
        push("sha256", mi.sha256.clone());
        for k in
            ["n_layers", "d_model", "n_heads", "n_kv_heads", "d_head", "d_mlp", "d_vocab", "context_length"]
        {
            push(k, config_field(run, k));
        }
        if !mi.dtype_mix.is_empty() {
            let mix: Vec<String> =
                mi.dtype_mix.iter().map(|(k, v)| format!("{k}: {}", json_text(v))).collect();
            push("dtype_mix (tensors)", Some(mix.join(", ")));
        }
    }
    if !model.is_empty() {
        s.push_str("<h3>Model</h3>\n");
        s.push_str(&kv_list(&model));
    }
    if let Some(t) = &m.tokenizer {
        let mut v: Vec<(String, String)> = Vec::new();
        let items = [
            ("source", t.source.clone()),
            ("vocab_size", t.vocab_size.map(|x| x.to_string())),
            ("bos_policy", t.bos_policy.clone()),
            ("bos_token", t.bos_token.clone()),
            ("bos_id", t.bos_id.map(|x| x.to_string())),
            ("model_adds_bos", t.model_adds_bos.map(|x| x.to_string())),
            ("method", t.method.clone()),
        ];
        for (k, x) in items {
            if let Some(x) = x {
                v.push((k.into(), x));
            }
        }
        s.push_str("<h3>Tokenizer</h3>\n");
        s.push_str(&kv_list(&v));
    }
    if let Some(Value::Object(d)) = &m.data {
        s.push_str("<h3>Data</h3>\n");
        let v: Vec<(String, String)> = d.iter().map(|(k, x)| (k.clone(), json_text(x))).collect();
        s.push_str(&kv_list(&v));
    }
    let mut counts: Vec<(String, String)> = Vec::new();
    counts.push(("n_prompts".into(), run.n_prompts().to_string()));
    if let Some(n) = m.n_tokens {
        counts.push(("n_tokens".into(), n.to_string()));
    }
    for (k, v) in &m.timings {
        counts.push((k.clone(), json_text(v)));
    }
    s.push_str("<h3>Prompts and timings</h3>\n");
    s.push_str(&kv_list(&counts));
    if !m.options.is_empty() {
        s.push_str("<h3>Options and thresholds</h3>\n");
        let v: Vec<(String, String)> = m.options.iter().map(|(k, x)| (k.clone(), json_text(x))).collect();
        s.push_str(&kv_list(&v));
    }
    if let Some(t) = &m.tool {
        let mut v: Vec<(String, String)> = Vec::new();
        if let Some(x) = &t.name {
            v.push(("tool".into(), format!("{x} {}", t.version.clone().unwrap_or_default())));
        }
        if let Some(x) = &t.engine {
            v.push(("engine".into(), x.clone()));
        }
        if !t.command_line.is_empty() {
            v.push(("command line".into(), t.command_line.join(" ")));
        }
        s.push_str("<h3>Tool</h3>\n");
        s.push_str(&kv_list(&v));
    }
    s
}

pub(crate) fn conventions(run: &Run) -> String {
    let c = &run.manifest.conventions;
    if c.is_empty() {
        return "<p class=\"note\">The manifest records no conventions; see docs/metrics.md.</p>\n".into();
    }
    let mut s = String::from("<table id=\"conventions\"><thead><tr><th class=\"l\">name</th><th class=\"l\">convention</th></tr></thead><tbody>\n");
    for (k, v) in c {
        let _ = writeln!(
            s,
            "<tr><td class=\"l\"><code>{}</code></td><td class=\"l\">{}</td></tr>",
            esc(k),
            esc(&json_text(v))
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

/// Captions of the run plots, by stem.
fn caption(stem: &str, run: &Run) -> String {
    match stem {
        "fig1" => "The paper's Fig. 1: normalised matrix entropy of X(l) (H / ln min(T, d)), fraction of sink heads \
                   (bos_attention &gt; ε), and the first token's residual norm on a log scale, per layer; line = mean over prompts, \
                   band = 95 % bootstrap interval of the mean over prompts (± one sample standard deviation for runs written \
                   without intervals); background = Mix / Compress / Refine phases."
            .to_string(),
        "fig3" => "The paper's Fig. 3: Theorem 1 checked per layer. σ₁² and anisotropy must lie on or above their (dashed) \
                   lower bounds, entropy on or below its upper bound; where the first token dominates, the bounds are tight."
            .to_string(),
        "bos_attention_heads" => format!(
            "Attention paid to position 0 by each head of each block (mean over prompts; {} heads × {} blocks). Layer 0 \
             (the embeddings) has no attention.",
            run.metrics.head_count(),
            run.n_layers()
        ),
        "top_activations" => "The largest |X[i, j]| of every layer (up to k entries, grouped over prompts by token position and \
                              dimension); colours mark the (dimension, token) pairs that most often hold a layer's top entry, \
                              and a label names the dimension where the top entry changes."
            .to_string(),
        "fig5" => format!(
            "The paper's Fig. 5 for one prompt set: every head's sink score bos_attention(l, h) (mean over prompts, whisker = \
             95 % bootstrap interval over prompts); filled dots are <em>dormant</em> heads (prompt-mean bos_attention &gt; ε = {}, \
             our criterion, docs/metrics.md \"Dormant heads\"); right: the mixing score with its interval. Whether sinks adapt to \
             the input, and mixing does not, needs two or more prompt sets: run <code>profile</code> on each dataset and \
             <code>sinkscope compare</code> the runs (compare.html). Per-head values: <a href=\"heads.csv\">heads.csv</a>.",
            crate::mechanics::epsilon(run)
        ),
        "fig6" => "The paper's Fig. 6, the phases' mechanics: the fraction of heads in each class per layer (classes of each \
                   prompt's own patterns, docs/metrics.md); the first token's norm against the mean norm of the other tokens; \
                   c = M/R and α of Theorem 1 (σ₁² ≥ M + αR: where α ≪ c the term αR is negligible next to M and the first token \
                   alone makes X near rank one); the sink token's value norm relative to the other tokens'; and the attention \
                   heads pay to position 0 against the first token's share of their output (A[t,0]‖v₀‖ / Σ_j A[t,j]‖v_j‖): a \
                   share far below the attention is the \"sinks are no-ops\" signature. Line = mean over prompts, band = 95 % \
                   bootstrap interval; background = phases."
            .to_string(),
        _ => String::new(),
    }
}

/// The whole `report.html` of a run.
pub(crate) fn report_html(run: &Run, plots: &[RenderedPlot]) -> String {
    let label = run.label();
    let kind = run.manifest.kind.clone().unwrap_or_else(|| "run".into());
    let mut b = String::new();
    let _ = writeln!(b, "<header><h1>sinkscope {}: {}</h1>", esc(&kind), esc(&label));
    let _ = writeln!(
        b,
        "<p class=\"sub\">{} blocks, {} heads, {} prompts{} · result schema v{} · generated from <code>manifest.json</code>, \
         <code>metrics.json</code>, <code>prompts.jsonl</code> in this folder</p>",
        run.n_layers(),
        run.metrics.head_count(),
        run.n_prompts(),
        run.manifest.n_tokens.map(|n| format!(", {n} tokens")).unwrap_or_default(),
        crate::schema::SCHEMA_VERSION
    );
    b.push_str("<nav><a href=\"#summary\">Summary</a><a href=\"#plots\">Plots</a><a href=\"#layers\">Per-layer table</a>\
                <a href=\"#prompts\">Prompts</a><a href=\"#conventions-sec\">Conventions</a><a href=\"#run\">Run</a></nav></header>\n");
    b.push_str("<section id=\"summary\"><h2>Summary</h2>\n<ul class=\"summary\">\n");
    for s in summary_sentences(run) {
        let _ = writeln!(b, "<li>{s}</li>");
    }
    b.push_str("</ul>\n</section>\n<section id=\"plots\"><h2>Plots</h2>\n");
    for p in plots {
        let _ = writeln!(b, "<h3>{}</h3>", esc(&p.title));
        b.push_str(&figure(p, &caption(&p.stem, run)));
    }
    b.push_str("</section>\n<section id=\"layers\"><h2>Per-layer table</h2>\n");
    b.push_str(
        "<p class=\"note\">Layer l is X(l), the residual stream after block l (0 = embedding output); attention metrics belong \
         to block l. Cells: mean ± sample std over prompts. Every metric with its std is in \
         <a href=\"layers.csv\">layers.csv</a>.</p>\n",
    );
    b.push_str(&layer_table(run));
    b.push_str("</section>\n<section id=\"prompts\"><h2>Prompts</h2>\n");
    b.push_str(&prompt_table(run));
    b.push_str("</section>\n<section id=\"conventions-sec\"><h2>Conventions</h2>\n");
    b.push_str(&conventions(run));
    b.push_str("</section>\n<section id=\"run\"><h2>Run</h2>\n");
    b.push_str(&run_details(run));
    b.push_str("</section>\n");
    page(&format!("sinkscope {kind} — {label}"), &b)
}

// ---------------------------------------------------------------------------------------
// Compare
// ---------------------------------------------------------------------------------------
