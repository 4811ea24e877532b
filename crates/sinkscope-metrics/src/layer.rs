//! [`LayerMetrics`]: every norm, spectral and Theorem-1 metric of one `X(l)` in one call,
//! with a flat, named view for reports.

use serde::{Deserialize, Serialize};

use crate::norms::{norm_stats, NormStats};
use crate::spectrum::{gram_eigenvalues, SpectralStats, Spectrum};
use crate::theorem::TheoremCheck;
use crate::{Matrix, MetricsError};
use sinkscope_schema::Metric;

/// The names produced by [`LayerMetrics::to_named`], in order (metrics.md names).
pub const LAYER_METRIC_NAMES: [&str; 25] = [
    Metric::BosNorm.name(),
    Metric::TokenNormMean.name(),
    Metric::BosRatio.name(),
    Metric::MaxAbs.name(),
    Metric::RestNorm.name(),
    Metric::C.name(),
    Metric::Alpha.name(),
    Metric::MedianAbsActivation.name(),
    Metric::Massive.name(),
    Metric::Entropy.name(),
    Metric::EntropyNorm.name(),
    Metric::EntropyNormLogT.name(),
    Metric::RenyiEntropy2.name(),
    Metric::EffectiveRank.name(),
    Metric::Anisotropy.name(),
    Metric::Dominance.name(),
    Metric::Sigma1Sq.name(),
    Metric::Sigma1SqBound.name(),
    Metric::AnisotropyBound.name(),
    Metric::EntropyBound.name(),
    Metric::DominanceBound.name(),
    Metric::Sigma1SqTightness.name(),
    Metric::AnisotropyTightness.name(),
    Metric::EntropyTightness.name(),
    Metric::DominanceTightness.name(),
];

/// Norms, spectrum and Theorem-1 check of one activation matrix `X(l)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerMetrics {
    /// Norm statistics (see [`crate::norms`]).
    pub norms: NormStats,
    /// Spectral statistics (see [`crate::spectrum`]).
    pub spectral: SpectralStats,
    /// Theorem-1 bounds, tightness and violations (see [`crate::theorem`]).
    pub theorem: TheoremCheck,
    /// The full Gram spectrum (`min(T, d)` eigenvalues, decreasing).
    pub spectrum: Spectrum,
}

impl LayerMetrics {
    /// Computes everything for `x`, reporting the `top_k` largest activations
    /// ([`crate::norms::DEFAULT_TOP_K`] = 5 by default).
    ///
    /// # Errors
    /// As [`gram_eigenvalues`].
    pub fn compute(x: &Matrix<'_>, top_k: usize) -> Result<Self, MetricsError> {
        let norms = norm_stats(x, top_k);
        let spectrum = gram_eigenvalues(x)?;
        let spectral = spectrum.stats();
        let theorem = TheoremCheck::new(&norms, &spectral);
        Ok(Self { norms, spectral, theorem, spectrum })
    }

    /// The scalar metrics under their metric names ([`LAYER_METRIC_NAMES`], same order);
    /// `None` where undefined; `massive` is 1.0 or 0.0. `top_activations` (structured)
    /// and the spectrum are not included.
    pub fn to_named(&self) -> Vec<(&'static str, Option<f64>)> {
        let n = &self.norms;
        let s = &self.spectral;
        let t = &self.theorem;
        let values = [
            Some(n.bos_norm),
            n.token_norm_mean,
            n.bos_ratio,
            Some(n.m),
            Some(n.r),
            n.c,
            n.alpha,
            Some(n.median_abs_activation),
            Some(if n.massive { 1.0 } else { 0.0 }),
            s.entropy,
            s.entropy_norm,
            s.entropy_norm_log_t,
            s.renyi_entropy_2,
            s.effective_rank,
            s.anisotropy,
            s.dominance,
            Some(s.sigma1_sq),
            t.sigma1_sq_bound,
            t.anisotropy_bound,
            t.entropy_bound,
            t.dominance_bound,
            t.sigma1_sq_tightness,
            t.anisotropy_tightness,
            t.entropy_tightness,
            t.dominance_tightness,
        ];
        LAYER_METRIC_NAMES.into_iter().zip(values).collect()
    }

    /// The `k` largest Gram eigenvalues `σ_1², …, σ_k²` (fewer if `min(T, d) < k`).
    pub fn sigma_sq_top(&self, k: usize) -> &[f64] {
        let e = self.spectrum.eigenvalues();
        e.get(..k.min(e.len())).unwrap_or(e)
    }
}
