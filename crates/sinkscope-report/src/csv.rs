//! `layers.csv`: one row per layer `l = 0..L`, `layer,depth,<metric>_mean,<metric>_std,...`,
//! with `<metric>_ci_low,<metric>_ci_high` (the 95 % bootstrap interval of the mean) after
//! the std of every metric whose summary carries an interval.

use std::fmt::Write as _;

use crate::schema::MetricsFile;

/// The scalar per-layer metrics of `metrics`, in report order: first the names of
/// `metrics.md` in the order the metrics crate defines them (norms, spectrum, Theorem 1,
/// then attention), then any other metric in the file, alphabetically.
pub fn metric_order(metrics: &MetricsFile) -> Vec<String> {
    let known = sinkscope_metrics::layer::LAYER_METRIC_NAMES
        .iter()
        .chain(sinkscope_metrics::attention::LAYER_ATTENTION_METRIC_NAMES.iter());
    let mut out: Vec<String> = Vec::new();
    for name in known {
        if metrics.metrics.contains_key(*name) && !out.iter().any(|o| o == name) {
            out.push((*name).to_string());
        }
    }
    for name in metrics.metrics.keys() {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// Formats a number for CSV: shortest round-trip representation, empty when undefined.
pub fn fmt_cell(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:?}"),
        _ => String::new(),
    }
}

/// Quotes a CSV field when it needs it (RFC 4180).
pub(crate) fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// The text of `layers.csv` for `metrics`: a header and `L + 1` rows, `\n` line ends.
pub fn layers_csv(metrics: &MetricsFile) -> String {
    layers_csv_with(metrics, &[])
}

/// One extra column of `layers.csv`: its name and `L + 1` cells, already formatted.
pub(crate) type ExtraColumn = (String, Vec<String>);

/// As [`layers_csv`], with `extra` columns after the metric columns (a missing cell is
/// written empty).
pub(crate) fn layers_csv_with(metrics: &MetricsFile, extra: &[ExtraColumn]) -> String {
    let names = metric_order(metrics);
    let has_ci = |n: &str| metrics.metric(n).is_some_and(crate::schema::MetricSummary::has_ci);
    let mut s = String::from("layer,depth");
    for n in &names {
        let _ = write!(s, ",{},{}", quote(&format!("{n}_mean")), quote(&format!("{n}_std")));
        if has_ci(n) {
            let _ = write!(s, ",{},{}", quote(&format!("{n}_ci_low")), quote(&format!("{n}_ci_high")));
        }
    }
    for (name, _) in extra {
        let _ = write!(s, ",{}", quote(name));
    }
    s.push('\n');
    let l_max = metrics.n_layers;
    for l in 0..=l_max {
        let _ = write!(s, "{l},{}", fmt_cell(Some(l as f64 / l_max.max(1) as f64)));
        for n in &names {
            let m = metrics.metric(n);
            let _ = write!(
                s,
                ",{},{}",
                fmt_cell(m.and_then(|m| m.mean_at(l))),
                fmt_cell(m.and_then(|m| m.std_at(l)))
            );
            if has_ci(n) {
                let ci = m.and_then(|m| m.ci_at(l));
                let _ = write!(s, ",{},{}", fmt_cell(ci.map(|c| c.0)), fmt_cell(ci.map(|c| c.1)));
            }
        }
        for (_, cells) in extra {
            let _ = write!(s, ",{}", quote(cells.get(l).map(String::as_str).unwrap_or("")));
        }
        s.push('\n');
    }
    s
}

/// Writes `rows` (the first is the header) as CSV text, quoting where needed.
pub(crate) fn table_csv(rows: &[Vec<String>]) -> String {
    let mut s = String::new();
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| quote(c)).collect();
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    s
}
