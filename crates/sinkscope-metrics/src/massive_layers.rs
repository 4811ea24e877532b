//! Automatic detection of massive-activation layers (metrics.md, "Interventions").
//!
//! Block `l` (`1 ≤ l ≤ L`) is a massive-activation layer when both hold:
//! - its MLP output at position 0 has norm at least `mlp_factor` (10) times the median
//!   MLP-output norm of the other positions (`‖mlp_out_0‖ ≥ 10 · median_{i≥1} ‖mlp_out_i‖`);
//! - it raises `bos_ratio` at least `ratio_factor` (3) times over the previous layer:
//!   `bos_ratio(l) ≥ 3 · bos_ratio(l − 1)` (`bos_ratio(l)` is measured on `X(l)`).
//!
//! Comparisons are `≥` as in metrics.md. A block with any needed value missing is not
//! detected. Inputs are per-layer arrays of `L + 1` entries indexed by `l` (entry 0 of the
//! MLP arrays is ignored: there is no block 0); the caller chooses whether they are one
//! prompt's values or prompt means, and records that choice.

use serde::{Deserialize, Serialize};

use crate::norms::median_in_place_f64;
use crate::{Matrix, MetricsError};

/// Thresholds of the massive-layer rule; serialisable for the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MassiveLayerParams {
    /// Minimum ratio of the position-0 MLP-output norm to the median of the other
    /// positions. Default 10.
    pub mlp_factor: f64,
    /// Minimum factor by which the block raises `bos_ratio`. Default 3.
    pub ratio_factor: f64,
}

impl Default for MassiveLayerParams {
    fn default() -> Self {
        Self { mlp_factor: 10.0, ratio_factor: 3.0 }
    }
}

/// Norms of one block's MLP output (`T x d`, the value added to the residual stream).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MlpOutNorms {
    /// `‖mlp_out_0‖₂`.
    pub bos_norm: f64,
    /// Median of `‖mlp_out_i‖₂` over `i ≥ 1` (mean of the two middle values for an even
    /// count); `None` when `T = 1`.
    pub other_median: Option<f64>,
}

/// The position-0 norm and the median norm of the other positions of an MLP output.
pub fn mlp_out_norms(mlp_out: &Matrix<'_>) -> MlpOutNorms {
    let mut norms: Vec<f64> = mlp_out
        .iter_rows()
        .map(|row| row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt())
        .collect();
    let bos_norm = norms.first().copied().unwrap_or(0.0);
    let other_median = norms.get_mut(1..).and_then(median_in_place_f64);
    MlpOutNorms { bos_norm, other_median }
}

/// A detected massive-activation layer and the evidence for it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MassiveLayer {
    /// The block `l` (1-based).
    pub layer: usize,
    /// `‖mlp_out_0‖` of block `l`.
    pub mlp_out_bos_norm: f64,
    /// Median MLP-output norm of the other positions of block `l`.
    pub mlp_out_other_median: f64,
    /// `bos_ratio(l − 1)` (on `X(l−1)`).
    pub bos_ratio_before: f64,
    /// `bos_ratio(l)` (on `X(l)`).
    pub bos_ratio_after: f64,
}

impl MassiveLayer {
    /// `mlp_out_bos_norm / mlp_out_other_median` (`None` if the median is 0).
    pub fn mlp_ratio(&self) -> Option<f64> {
        (self.mlp_out_other_median > 0.0).then(|| self.mlp_out_bos_norm / self.mlp_out_other_median)
    }

    /// `bos_ratio_after / bos_ratio_before` (`None` if the former is 0).
    pub fn bos_ratio_gain(&self) -> Option<f64> {
        (self.bos_ratio_before > 0.0).then(|| self.bos_ratio_after / self.bos_ratio_before)
    }
}

/// Detects the massive-activation layers from per-layer arrays of `L + 1` entries:
/// `mlp_out_bos_norm[l]` and `mlp_out_other_median[l]` for block `l` (entry 0 ignored),
/// and the `bos_ratio` curve (`l = 0..L`). Returned in increasing layer order.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] when the arrays differ in length,
/// [`MetricsError::NonFiniteValue`] for non-finite values.
///
/// ```
/// use sinkscope_metrics::massive_layers::{detect_massive_layers, MassiveLayerParams};
/// let mlp_bos = [None, Some(1.0), Some(500.0), Some(2.0)];
/// let mlp_med = [None, Some(1.0), Some(1.0), Some(1.0)];
/// let ratio = [Some(1.0), Some(1.1), Some(90.0), Some(95.0)];
/// let found = detect_massive_layers(&mlp_bos, &mlp_med, &ratio, &MassiveLayerParams::default())?;
/// assert_eq!(found.iter().map(|m| m.layer).collect::<Vec<_>>(), vec![2]);
/// # Ok::<(), sinkscope_metrics::MetricsError>(())
/// ```
pub fn detect_massive_layers(
    mlp_out_bos_norm: &[Option<f64>],
    mlp_out_other_median: &[Option<f64>],
    bos_ratio: &[Option<f64>],
    params: &MassiveLayerParams,
) -> Result<Vec<MassiveLayer>, MetricsError> {
    let n = bos_ratio.len();
    for (what, arr) in [
        ("mlp_out_bos_norm vs bos_ratio", mlp_out_bos_norm),
        ("mlp_out_other_median vs bos_ratio", mlp_out_other_median),
    ] {
        if arr.len() != n {
            return Err(MetricsError::LengthMismatch { what, left: arr.len(), right: n });
        }
    }
    for (what, arr) in [
        ("mlp_out_bos_norm", mlp_out_bos_norm),
        ("mlp_out_other_median", mlp_out_other_median),
        ("bos_ratio", bos_ratio),
    ] {
        if let Some((index, value)) =
            arr.iter().enumerate().find_map(|(i, v)| v.filter(|v| !v.is_finite()).map(|v| (i, v)))
        {
            return Err(MetricsError::NonFiniteValue { what, index, value });
        }
    }
    let at = |a: &[Option<f64>], i: usize| a.get(i).copied().flatten();
    let found = (1..n)
        .filter_map(|l| {
            let bos = at(mlp_out_bos_norm, l)?;
            let med = at(mlp_out_other_median, l)?;
            let before = at(bos_ratio, l - 1)?;
            let after = at(bos_ratio, l)?;
            (bos >= params.mlp_factor * med && after >= params.ratio_factor * before).then_some(
                MassiveLayer {
                    layer: l,
                    mlp_out_bos_norm: bos,
                    mlp_out_other_median: med,
                    bos_ratio_before: before,
                    bos_ratio_after: after,
                },
            )
        })
        .collect();
    Ok(found)
}
