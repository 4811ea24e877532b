//! The "sinks are no-ops" check (metrics.md, "Sink values"): how large the first token's
//! value vector is, and how much of each head's output it supplies.
//!
//! A sink head puts most of its attention on position 0; the paper's point is that the
//! first token's value vector is small, so the head then adds almost nothing (a learned
//! no-op). With `A` the head's `T x T` pattern and `v_j` the value vector of key `j` (the
//! head's kv head, `attn.hook_v`, as projected):
//!
//! | name | definition |
//! |---|---|
//! | `sink_value_norm(l,h)` | `‖v_0‖₂` |
//! | `sink_value_ratio(l,h)` | `‖v_0‖ / mean_{j≥1} ‖v_j‖` (`None` when `T = 1` or the mean is 0) |
//! | `sink_output_share(l,h)` | mean over `t ≥ 1` of `A[t,0]‖v_0‖ / Σ_j A[t,j]‖v_j‖` (queries whose denominator is 0 skipped) |
//!
//! `sink_output_share` is the first token's share of the attention-weighted value-norm mass
//! of the query's output `z_t = Σ_j A[t,j] v_j`: 0 when the sink supplies nothing, 1 when
//! it supplies everything, and exactly `A[t,0]` when every value vector has the same norm.
//! It bounds the share of `‖z_t‖` by the triangle inequality
//! (`‖A[t,0] v_0‖ ≤ share · Σ_j A[t,j]‖v_j‖`), without the cancellations that make
//! `‖A[t,0] v_0‖ / ‖z_t‖` exceed 1.

use serde::{Deserialize, Serialize};

use crate::{Matrix, MetricsError};

/// The sink-value statistics of one head (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SinkValueStats {
    /// `sink_value_norm`: `‖v_0‖`.
    pub sink_value_norm: f64,
    /// `sink_value_ratio`: `‖v_0‖ / mean_{j≥1} ‖v_j‖`.
    pub sink_value_ratio: Option<f64>,
    /// `sink_output_share`: mean over `t ≥ 1` of `A[t,0]‖v_0‖ / Σ_j A[t,j]‖v_j‖`.
    pub sink_output_share: Option<f64>,
}

impl SinkValueStats {
    /// The statistics of one head from its pattern (`T x T`) and its value vectors
    /// (`T x d_head`).
    ///
    /// # Errors
    /// [`MetricsError::NotSquare`] for a pattern that is not square, and
    /// [`MetricsError::LengthMismatch`] when the values do not have `T` rows.
    ///
    /// ```
    /// use sinkscope_metrics::{Matrix, values::SinkValueStats};
    /// // Every query attends only to position 0, whose value vector is zero: a no-op.
    /// let a = [1.0_f32, 0.0, 1.0, 0.0];
    /// let v = [0.0_f32, 0.0, 3.0, 4.0];
    /// let s = SinkValueStats::from_head(&Matrix::new(&a, 2, 2)?, &Matrix::new(&v, 2, 2)?)?;
    /// assert_eq!((s.sink_value_norm, s.sink_value_ratio), (0.0, Some(0.0)));
    /// assert_eq!(s.sink_output_share, None); // query 1 gets nothing at all
    /// # Ok::<(), sinkscope_metrics::MetricsError>(())
    /// ```
    pub fn from_head(pattern: &Matrix<'_>, values: &Matrix<'_>) -> Result<Self, MetricsError> {
        let t_len = pattern.rows();
        if pattern.cols() != t_len {
            return Err(MetricsError::NotSquare { rows: t_len, cols: pattern.cols() });
        }
        if values.rows() != t_len {
            return Err(MetricsError::LengthMismatch {
                what: "value vectors vs pattern rows",
                left: values.rows(),
                right: t_len,
            });
        }
        let norms: Vec<f64> = values
            .iter_rows()
            .map(|r| r.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt())
            .collect();
        let v0 = norms.first().copied().unwrap_or(0.0);
        let others = norms.get(1..).unwrap_or(&[]);
        let mean_others = (!others.is_empty()).then(|| others.iter().sum::<f64>() / others.len() as f64);
        let sink_value_ratio = mean_others.filter(|&m| m > 0.0).map(|m| v0 / m);
        let (mut share_sum, mut n) = (0.0_f64, 0_usize);
        for row in pattern.iter_rows().skip(1) {
            let denom: f64 = row.iter().zip(&norms).map(|(&a, &vn)| f64::from(a) * vn).sum();
            if denom > 0.0 {
                let a0 = row.first().copied().map_or(0.0, f64::from);
                share_sum += a0 * v0 / denom;
                n += 1;
            }
        }
        Ok(Self {
            sink_value_norm: v0,
            sink_value_ratio,
            sink_output_share: (n > 0).then(|| share_sum / n as f64),
        })
    }
}

/// Every head's [`SinkValueStats`] of one layer: `patterns` row-major `[n_heads, T, T]`,
/// `values` row-major `[T, n_kv_heads, d_head]` (as `attn.hook_v`); query head `h` reads kv
/// head `h / (n_heads / n_kv_heads)`.
///
/// # Errors
/// [`MetricsError::HeadShape`] when the pattern data is not `n_heads · T · T`,
/// [`MetricsError::LengthMismatch`] when the values are not `T · n_kv_heads · d_head` or the
/// heads do not divide into kv groups, and any error of [`Matrix::new`].
pub fn layer_sink_values(
    patterns: &[f32],
    n_heads: usize,
    t: usize,
    values: &[f32],
    n_kv_heads: usize,
    d_head: usize,
) -> Result<Vec<SinkValueStats>, MetricsError> {
    let per_head = t.saturating_mul(t);
    if n_heads == 0 || t == 0 || Some(patterns.len()) != per_head.checked_mul(n_heads) {
        return Err(MetricsError::HeadShape { len: patterns.len(), n_heads, t });
    }
    if n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(MetricsError::LengthMismatch {
            what: "query heads vs kv heads",
            left: n_heads,
            right: n_kv_heads,
        });
    }
    let want = t.saturating_mul(n_kv_heads).saturating_mul(d_head);
    if values.len() != want || d_head == 0 {
        return Err(MetricsError::LengthMismatch {
            what: "value data vs T x kv heads x d_head",
            left: values.len(),
            right: want,
        });
    }
    let group = n_heads / n_kv_heads;
    let row = n_kv_heads * d_head;
    let mut per_kv: Vec<Vec<f32>> = vec![Vec::with_capacity(t * d_head); n_kv_heads];
    for tok in values.chunks_exact(row) {
        for (g, dst) in per_kv.iter_mut().enumerate() {
            dst.extend_from_slice(tok.get(g * d_head..(g + 1) * d_head).unwrap_or(&[]));
        }
    }
    patterns
        .chunks_exact(per_head)
        .enumerate()
        .map(|(h, chunk)| {
            let v = per_kv.get(h / group).map_or(&[][..], Vec::as_slice);
            SinkValueStats::from_head(&Matrix::new(chunk, t, t)?, &Matrix::new(v, t, d_head)?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Known answer (exact in f64): T = 3, ‖v_0‖ = 1, ‖v_1‖ = 2, ‖v_2‖ = 4.
    /// Query 1 = [0.5, 0.5, 0]: share 0.5·1 / (0.5·1 + 0.5·2) = 1/3;
    /// query 2 = [0.5, 0.25, 0.25]: 0.5 / (0.5 + 0.5 + 1) = 1/4; mean 7/24.
    /// Ratio 1 / ((2 + 4) / 2) = 1/3.
    #[test]
    fn known_answer_three_tokens() {
        let a = [1.0_f32, 0.0, 0.0, 0.5, 0.5, 0.0, 0.5, 0.25, 0.25];
        let v = [1.0_f32, 0.0, 0.0, 2.0, 4.0, 0.0];
        let s = SinkValueStats::from_head(&Matrix::new(&a, 3, 3).unwrap(), &Matrix::new(&v, 3, 2).unwrap())
            .unwrap();
        assert_eq!(s.sink_value_norm, 1.0);
        assert!((s.sink_value_ratio.unwrap() - 1.0 / 3.0).abs() < 1e-15);
        assert!((s.sink_output_share.unwrap() - 7.0 / 24.0).abs() < 1e-15);
    }

    /// Invariant: with equal value norms the share is the mean attention to position 0 over
    /// queries t ≥ 1 (`bos_attention_excl`), to 1e-12.
    #[test]
    fn equal_norms_give_bos_attention_excl() {
        let a = [1.0_f32, 0.0, 0.0, 0.9, 0.1, 0.0, 0.2, 0.3, 0.5];
        let v = [3.0_f32, 4.0, 0.0, 5.0, 5.0, 0.0];
        let s = SinkValueStats::from_head(&Matrix::new(&a, 3, 3).unwrap(), &Matrix::new(&v, 3, 2).unwrap())
            .unwrap();
        assert!((s.sink_output_share.unwrap() - (0.9 + 0.2) / 2.0).abs() < 1e-7);
        assert!((s.sink_value_ratio.unwrap() - 1.0).abs() < 1e-12);
    }

    /// Grouped-query attention: query heads 0, 1 read kv head 0, heads 2, 3 kv head 1.
    #[test]
    fn gqa_heads_read_their_kv_head() {
        let t = 2;
        // Every head: query 1 splits 0.5 / 0.5.
        let one = [1.0_f32, 0.0, 0.5, 0.5];
        let patterns: Vec<f32> = (0..4).flat_map(|_| one).collect();
        // [T, KVH = 2, d_head = 1]: kv 0 has norms (1, 1), kv 1 has norms (3, 1).
        let values = [1.0_f32, 3.0, 1.0, 1.0];
        let s = layer_sink_values(&patterns, 4, t, &values, 2, 1).unwrap();
        let shares: Vec<f64> = s.iter().map(|x| x.sink_output_share.unwrap()).collect();
        assert_eq!(shares, [0.5, 0.5, 0.75, 0.75]);
        assert_eq!(s[2].sink_value_norm, 3.0);
        assert!(layer_sink_values(&patterns, 4, t, &values, 3, 1).is_err());
        assert!(layer_sink_values(&patterns, 4, t, &values[..3], 2, 1).is_err());
    }
}
