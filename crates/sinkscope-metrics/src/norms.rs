//! Norms and massive activations (metrics.md, "Norms and massive activations").
//!
//! All quantities are accumulated in `f64` from the `f32` activations; `X` is never
//! centred or row-normalised. Row 0 is "the first token" `x_0`.
//!
//! | field | name | definition |
//! |---|---|---|
//! | [`NormStats::bos_norm`] | `bos_norm` | `‖x_0‖₂` |
//! | [`NormStats::token_norm_mean`] | `token_norm_mean` | mean of `‖x_i‖₂` over `i ≥ 1` |
//! | [`NormStats::bos_ratio`] | `bos_ratio` | `bos_norm / token_norm_mean` |
//! | [`NormStats::m`] | `M` | `‖x_0‖²` |
//! | [`NormStats::r`] | `R` | `Σ_{i≥1} ‖x_i‖²` |
//! | [`NormStats::c`] | `c` | `M / R` |
//! | [`NormStats::alpha`] | `alpha` | `Σ_{i≥1} (x_i·x̂_0)² / R` |
//! | [`NormStats::top_activations`] | `top_activations` | the k largest `|X[i,j]|` |
//! | [`NormStats::median_abs_activation`] | `median_abs_activation` | median of `|X[i,j]|` |
//! | [`NormStats::massive`] | `massive` | top `|X|` > 100 and > 1000 x median (Sun et al.) |

use serde::{Deserialize, Serialize};

use crate::Matrix;

/// Default number of top activations reported (metrics.md: k = 5).
pub const DEFAULT_TOP_K: usize = 5;

/// Sun et al.'s absolute threshold: a massive activation exceeds this magnitude.
pub const MASSIVE_ABS_THRESHOLD: f64 = 100.0;

/// Sun et al.'s relative threshold: a massive activation exceeds this multiple of the
/// median absolute activation.
pub const MASSIVE_MEDIAN_FACTOR: f64 = 1000.0;

/// One entry of [`NormStats::top_activations`] (the result schema's per-prompt entry).
pub use sinkscope_schema::PromptTopActivation as TopActivation;

/// Norm statistics of one activation matrix `X` (shape `(T, d)`), see the module docs.
///
/// Undefined quantities are `None` (`null` in JSON) rather than NaN or infinity:
/// - `T = 1`: `token_norm_mean`, `bos_ratio`, `c`, `alpha` are `None` (no token `i ≥ 1`).
/// - `token_norm_mean = 0` (all other rows zero): `bos_ratio` is `None`.
/// - `R = 0`: `c` and `alpha` are `None`.
/// - `x_0 = 0`: `alpha` and `aligned_energy` are `None` (`x̂_0` is undefined).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormStats {
    /// Number of rows `T`.
    pub rows: usize,
    /// Number of columns `d`.
    pub cols: usize,
    /// `bos_norm = ‖x_0‖₂`.
    pub bos_norm: f64,
    /// `token_norm_mean`: mean of `‖x_i‖₂` over `i ≥ 1`; `None` when `T = 1`.
    pub token_norm_mean: Option<f64>,
    /// `bos_ratio = bos_norm / token_norm_mean`; `None` when the denominator is `None` or 0.
    pub bos_ratio: Option<f64>,
    /// `M = ‖x_0‖²`.
    #[serde(rename = "M")]
    pub m: f64,
    /// `R = Σ_{i≥1} ‖x_i‖²` (a sum, not a mean).
    #[serde(rename = "R")]
    pub r: f64,
    /// `c = M / R`; `None` when `R = 0`.
    pub c: Option<f64>,
    /// `alpha = Σ_{i≥1} (x_i·x̂_0)² / R`; `None` when `R = 0` or `x_0 = 0`. Clamped to at
    /// most 1 (Cauchy–Schwarz; only round-off can push it above).
    pub alpha: Option<f64>,
    /// `Σ_{i≥1} (x_i·x̂_0)²` (`= alpha · R`, defined also when `R = 0`); `None` when
    /// `x_0 = 0`. Clamped to at most `R`.
    pub aligned_energy: Option<f64>,
    /// The k largest `|X[i,j]|`, by decreasing magnitude (ties: lower token, then lower
    /// dimension first).
    pub top_activations: Vec<TopActivation>,
    /// `max |X[i,j]|` over the whole matrix (the "top activation" of the `massive` test,
    /// available even when `k = 0`).
    pub max_abs_activation: f64,
    /// `median_abs_activation`: median of `|X[i,j]|` over all `T·d` entries (for an even
    /// count, the mean of the two middle values).
    pub median_abs_activation: f64,
    /// `massive`: `max_abs_activation > 100` and `> 1000 · median_abs_activation`.
    pub massive: bool,
}

/// Computes every norm statistic of `x` in one pass over the rows (plus one selection pass
/// for the median), reporting the `k` largest activations.
///
/// ```
/// use sinkscope_metrics::{Matrix, norms::norm_stats};
/// // x_0 = (3, 4), x_1 = (1, 0): M = 25, R = 1, alpha = (x_1·x̂_0)² / R = 0.36
/// let data = [3.0_f32, 4.0, 1.0, 0.0];
/// let s = norm_stats(&Matrix::new(&data, 2, 2)?, 2);
/// assert_eq!(s.bos_norm, 5.0);
/// assert_eq!(s.bos_ratio, Some(5.0));
/// assert!(s.alpha.is_some_and(|a| (a - 0.36).abs() < 1e-12));
/// assert_eq!(s.top_activations[0].value, 4.0);
/// # Ok::<(), sinkscope_metrics::MetricsError>(())
/// ```
pub fn norm_stats(x: &Matrix<'_>, k: usize) -> NormStats {
    let rows = x.rows();
    let cols = x.cols();
    let mut it = x.iter_rows();
    let x0: &[f32] = it.next().unwrap_or(&[]);
    let m: f64 = x0.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let bos_norm = m.sqrt();

    let mut r = 0.0_f64;
    let mut norm_sum = 0.0_f64;
    // Σ_{i≥1} (x_i · x_0)²; divided by M at the end gives Σ (x_i · x̂_0)².
    let mut dot_sq_sum = 0.0_f64;
    for xi in it {
        let mut nsq = 0.0_f64;
        let mut dot = 0.0_f64;
        for (&a, &b) in xi.iter().zip(x0) {
            let a = f64::from(a);
            nsq += a * a;
            dot += a * f64::from(b);
        }
        r += nsq;
        norm_sum += nsq.sqrt();
        dot_sq_sum += dot * dot;
    }

    let n_other = rows.saturating_sub(1);
    let token_norm_mean = (n_other > 0).then(|| norm_sum / n_other as f64);
    let bos_ratio = token_norm_mean.filter(|&t| t > 0.0).map(|t| bos_norm / t);
    let c = (n_other > 0 && r > 0.0).then(|| m / r);
    let aligned_energy = (m > 0.0).then(|| (dot_sq_sum / m).min(r));
    let alpha = match aligned_energy {
        Some(s) if r > 0.0 => Some((s / r).min(1.0)),
        _ => None,
    };

    let top_activations = top_k_abs(x, k);
    let max_abs_activation = x.data().iter().fold(0.0_f64, |acc, &v| acc.max(f64::from(v.abs())));
    let median_abs_activation = median_abs(x.data());
    let massive = max_abs_activation > MASSIVE_ABS_THRESHOLD
        && max_abs_activation > MASSIVE_MEDIAN_FACTOR * median_abs_activation;

    NormStats {
        rows,
        cols,
        bos_norm,
        token_norm_mean,
        bos_ratio,
        m,
        r,
        c,
        alpha,
        aligned_energy,
        top_activations,
        max_abs_activation,
        median_abs_activation,
        massive,
    }
}

/// The `k` entries of largest magnitude, ordered by decreasing `|value|`, ties broken by
/// row-major position (lower first).
fn top_k_abs(x: &Matrix<'_>, k: usize) -> Vec<TopActivation> {
    if k == 0 {
        return Vec::new();
    }
    let cols = x.cols();
    // (|v|, flat index, v), kept sorted by decreasing |v| then increasing index.
    let mut best: Vec<(f32, usize, f32)> = Vec::with_capacity(k + 1);
    for (idx, &v) in x.data().iter().enumerate() {
        let a = v.abs();
        if best.len() == k {
            // A later index never beats an equal magnitude already kept.
            match best.last() {
                Some(&(min_a, _, _)) if a <= min_a => continue,
                _ => {}
            }
        }
        let pos = best.partition_point(|&(ba, _, _)| ba >= a);
        best.insert(pos, (a, idx, v));
        best.truncate(k);
    }
    best.into_iter()
        .map(|(_, idx, v)| TopActivation { value: f64::from(v), token: idx / cols, dim: idx % cols })
        .collect()
}

/// Median of `|v|` over `data` in `f64` (mean of the two middle values for an even
/// count); 0 for empty input.
fn median_abs(data: &[f32]) -> f64 {
    let mut abs: Vec<f32> = data.iter().map(|v| v.abs()).collect();
    median_in_place_f32(&mut abs).unwrap_or(0.0)
}

/// Median of `values` (reordered in place); mean of the two middle values for an even
/// count; `None` when empty.
pub(crate) fn median_in_place_f32(values: &mut [f32]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lower, upper_mid, _) = values.select_nth_unstable_by(mid, f32::total_cmp);
    let upper = f64::from(*upper_mid);
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower_max = lower.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    Some(0.5 * (f64::from(lower_max) + upper))
}

/// Median of `values` (reordered in place), as [`median_in_place_f32`].
pub(crate) fn median_in_place_f64(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lower, upper_mid, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper_mid;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower_max = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(0.5 * (lower_max + upper))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Invariant: the median of an even count is the mean of the two middle values.
    #[test]
    fn median_even_and_odd() {
        let mut a = [3.0_f32, 1.0, 2.0];
        assert_eq!(median_in_place_f32(&mut a), Some(2.0));
        let mut b = [4.0_f32, 1.0, 3.0, 2.0];
        assert_eq!(median_in_place_f32(&mut b), Some(2.5));
        let mut c: [f64; 0] = [];
        assert_eq!(median_in_place_f64(&mut c), None);
        let mut d = [5.0_f64, -1.0];
        assert_eq!(median_in_place_f64(&mut d), Some(2.0));
    }

    /// Invariant: top-k is ordered by |value| with row-major tie-breaking and keeps the sign.
    #[test]
    fn top_k_order_and_ties() -> Result<(), crate::MetricsError> {
        let data = [1.0_f32, -7.0, 7.0, 0.5, 3.0, -7.0];
        let x = Matrix::new(&data, 2, 3)?;
        let top = top_k_abs(&x, 4);
        let got: Vec<(f64, usize, usize)> = top.iter().map(|t| (t.value, t.token, t.dim)).collect();
        assert_eq!(got, vec![(-7.0, 0, 1), (7.0, 0, 2), (-7.0, 1, 2), (3.0, 1, 1)]);
        assert_eq!(top_k_abs(&x, 10).len(), 6);
        assert!(top_k_abs(&x, 0).is_empty());
        Ok(())
    }
}
