//! Aggregates over a prompt set (metrics.md, "Aggregates over a prompt set").
//!
//! - Per-layer summaries ([`summarize`], [`per_layer_summaries`]): mean, **sample**
//!   standard deviation (divisor `n − 1`; 0 when `n = 1`), min and max over prompts, with
//!   missing values (`None`, JSON `null`) skipped. A non-finite value is an error rather
//!   than silently skipped: the metric functions of this crate never produce one.
//! - [`pearson`]: Pearson's r.
//! - [`corr_bos_entropy`] and [`corr_bos_sink`]: Pearson r over layers `l = 1..L` between
//!   `Δ log bos_norm(l)` and `Δ entropy(l)` (resp. `Δ sink_rate(l)`), where
//!   `Δ f(l) = f(l) − f(l−1)` is taken on the prompt-mean curves ([`mean_curve`]). A layer
//!   whose difference is undefined on either side (a `None` endpoint, or
//!   `bos_norm ≤ 0`) is dropped pairwise; in particular `Δ sink_rate(1)` is undefined
//!   because `sink_rate(0)` is `null`, so `corr_bos_sink` uses `l = 2..L`.

use serde::{Deserialize, Serialize};

use crate::MetricsError;

/// Summary of one metric at one layer over prompts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of (non-missing) values.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (divisor `n − 1`); 0 when `n = 1`.
    pub std: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

/// Summarises `values`, skipping `None`; `Ok(None)` when nothing is left.
///
/// # Errors
/// [`MetricsError::NonFiniteValue`] for a NaN or infinite value.
///
/// ```
/// use sinkscope_metrics::aggregate::summarize;
/// let s = summarize([Some(1.0), None, Some(3.0)])?;
/// assert_eq!(s.map(|s| (s.n, s.mean, s.min, s.max)), Some((2, 2.0, 1.0, 3.0)));
/// assert!(s.is_some_and(|s| (s.std - 2.0_f64.sqrt()).abs() < 1e-15));
/// # Ok::<(), sinkscope_metrics::MetricsError>(())
/// ```
pub fn summarize(values: impl IntoIterator<Item = Option<f64>>) -> Result<Option<Summary>, MetricsError> {
    let mut vals = Vec::new();
    for (index, v) in values.into_iter().enumerate() {
        if let Some(v) = v {
            if !v.is_finite() {
                return Err(MetricsError::NonFiniteValue { what: "summarize", index, value: v });
            }
            vals.push(v);
        }
    }
    let n = vals.len();
    if n == 0 {
        return Ok(None);
    }
    let mean = vals.iter().sum::<f64>() / n as f64;
    let std = if n > 1 {
        let ss: f64 = vals.iter().map(|v| (v - mean) * (v - mean)).sum();
        (ss / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Ok(Some(Summary { n, mean, std, min, max }))
}

fn check_same_len<C: AsRef<[Option<f64>]>>(curves: &[C]) -> Result<usize, MetricsError> {
    let len = curves.first().map_or(0, |c| c.as_ref().len());
    for c in curves {
        if c.as_ref().len() != len {
            return Err(MetricsError::LengthMismatch {
                what: "per-prompt curves",
                left: len,
                right: c.as_ref().len(),
            });
        }
    }
    Ok(len)
}

/// Per-layer summaries of per-prompt curves (`curves[prompt][layer]`, all of one
/// length); entry `l` is `None` when no prompt has a value at layer `l`.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] when the curves differ in length, and
/// [`MetricsError::NonFiniteValue`] as [`summarize`].
pub fn per_layer_summaries<C: AsRef<[Option<f64>]>>(
    curves: &[C],
) -> Result<Vec<Option<Summary>>, MetricsError> {
    let len = check_same_len(curves)?;
    (0..len).map(|l| summarize(curves.iter().map(|c| c.as_ref().get(l).copied().flatten()))).collect()
}

/// The prompt-mean curve: entry `l` is the mean over prompts of `curves[·][l]`, missing
/// values skipped (`None` when all are missing).
///
/// # Errors
/// As [`per_layer_summaries`].
pub fn mean_curve<C: AsRef<[Option<f64>]>>(curves: &[C]) -> Result<Vec<Option<f64>>, MetricsError> {
    Ok(per_layer_summaries(curves)?.into_iter().map(|s| s.map(|s| s.mean)).collect())
}

/// Pearson's correlation coefficient of `a` and `b`; `Ok(None)` when `n < 2` or either
/// has zero variance.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] when the lengths differ,
/// [`MetricsError::NonFiniteValue`] for NaN or infinite values.
pub fn pearson(a: &[f64], b: &[f64]) -> Result<Option<f64>, MetricsError> {
    if a.len() != b.len() {
        return Err(MetricsError::LengthMismatch { what: "pearson inputs", left: a.len(), right: b.len() });
    }
    for (what, xs) in [("pearson a", a), ("pearson b", b)] {
        if let Some((index, &value)) = xs.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(MetricsError::NonFiniteValue { what, index, value });
        }
    }
    let n = a.len();
    if n < 2 {
        return Ok(None);
    }
    let ma = a.iter().sum::<f64>() / n as f64;
    let mb = b.iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0_f64, 0.0_f64, 0.0_f64);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return Ok(None);
    }
    Ok(Some((sab / (saa.sqrt() * sbb.sqrt())).clamp(-1.0, 1.0)))
}

/// First differences `Δ f(l) = f(l) − f(l−1)` for `l = 1..L`: a curve of `L + 1` entries
/// gives `L` differences (entry `l − 1` holds `Δ f(l)`), `None` where either endpoint is
/// missing.
pub fn first_differences(curve: &[Option<f64>]) -> Vec<Option<f64>> {
    curve
        .windows(2)
        .map(|w| match w {
            [Some(a), Some(b)] => Some(b - a),
            _ => None,
        })
        .collect()
}

/// Pearson r between `Δ log x(l)` and `Δ y(l + lag)` over the layers where both are
/// defined, pairs with a missing difference dropped; entries of `x` that are `≤ 0` count as
/// missing.
fn corr_log_diff(
    what: &'static str,
    x: &[Option<f64>],
    y: &[Option<f64>],
    lag: usize,
) -> Result<Option<f64>, MetricsError> {
    if x.len() != y.len() {
        return Err(MetricsError::LengthMismatch { what, left: x.len(), right: y.len() });
    }
    if x.len() < 2 {
        return Err(MetricsError::TooShort { what, min: 2, len: x.len() });
    }
    let log_x: Vec<Option<f64>> = x.iter().map(|v| v.filter(|&v| v > 0.0).map(f64::ln)).collect();
    let dx = first_differences(&log_x);
    let dy = first_differences(y);
    let (a, b): (Vec<f64>, Vec<f64>) =
        dx.iter().zip(dy.iter().skip(lag)).filter_map(|(a, b)| Some(((*a)?, (*b)?))).unzip();
    pearson(&a, &b)
}

/// `corr_bos_entropy`: Pearson r over `l = 1..L` between `Δ log bos_norm(l)` and
/// `Δ entropy(l)`, from prompt-mean curves of `L + 1` entries each.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] / [`MetricsError::TooShort`] for curves of different
/// lengths or shorter than 2, [`MetricsError::NonFiniteValue`] for non-finite values.
pub fn corr_bos_entropy(
    bos_norm_mean: &[Option<f64>],
    entropy_mean: &[Option<f64>],
) -> Result<Option<f64>, MetricsError> {
    corr_log_diff("corr_bos_entropy curves", bos_norm_mean, entropy_mean, 0)
}

/// `corr_bos_sink`: Pearson r over `l = 1..L` between `Δ log bos_norm(l)` and
/// `Δ sink_rate(l)`, from prompt-mean curves of `L + 1` entries each (`sink_rate(0)` is
/// `null`, so the `l = 1` pair is dropped).
///
/// # Errors
/// As [`corr_bos_entropy`].
pub fn corr_bos_sink(
    bos_norm_mean: &[Option<f64>],
    sink_rate_mean: &[Option<f64>],
) -> Result<Option<f64>, MetricsError> {
    corr_log_diff("corr_bos_sink curves", bos_norm_mean, sink_rate_mean, 0)
}

/// The lagged correlation `r_lag`: Pearson r between `Δ log bos_norm(l)` and `Δ y(l + lag)`
/// over the layers where both differences are defined (`l = 1..L − lag`). Lag 1 pairs the
/// spike written by block `l` with the sinks of block `l + 1`, whose attention is the first
/// to read `X(l)` (`sink_rate(l)` is computed by block `l` from `X(l − 1)`); lag 0 is
/// [`corr_bos_entropy`] / [`corr_bos_sink`].
///
/// # Errors
/// As [`corr_bos_entropy`].
pub fn corr_bos_lagged(
    bos_norm: &[Option<f64>],
    y: &[Option<f64>],
    lag: usize,
) -> Result<Option<f64>, MetricsError> {
    corr_log_diff("lagged correlation curves", bos_norm, y, lag)
}
