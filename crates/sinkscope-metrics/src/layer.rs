//! [`LayerMetrics`]: every norm, spectral and Theorem-1 metric of one `X(l)` in one call,
//! with a flat, named view for reports.

use serde::{Deserialize, Serialize};

use crate::norms::{norm_stats, NormStats};
use crate::spectrum::{gram_eigenvalues, SpectralStats, Spectrum};
use crate::theorem::TheoremCheck;
use crate::{Matrix, MetricsError};

/// The names produced by [`LayerMetrics::to_named`], in order (metrics.md names).
pub const LAYER_METRIC_NAMES: [&str; 25] = [
    "bos_norm",
    "token_norm_mean",
    "bos_ratio",
    "M",
    "R",
    "c",
    "alpha",
    "median_abs_activation",
    "massive",
    "entropy",
    "entropy_norm",
    "entropy_norm_logT",
    "renyi_entropy_2",
    "effective_rank",
    "anisotropy",
    "dominance",
    "sigma1_sq",
    "sigma1_sq_bound",
    "anisotropy_bound",
    "entropy_bound",
    "dominance_bound",
    "sigma1_sq_tightness",
    "anisotropy_tightness",
    "entropy_tightness",
    "dominance_tightness",
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
        vec![
            ("bos_norm", Some(n.bos_norm)),
            ("token_norm_mean", n.token_norm_mean),
            ("bos_ratio", n.bos_ratio),
            ("M", Some(n.m)),
            ("R", Some(n.r)),
            ("c", n.c),
            ("alpha", n.alpha),
            ("median_abs_activation", Some(n.median_abs_activation)),
            ("massive", Some(if n.massive { 1.0 } else { 0.0 })),
            ("entropy", s.entropy),
            ("entropy_norm", s.entropy_norm),
            ("entropy_norm_logT", s.entropy_norm_log_t),
            ("renyi_entropy_2", s.renyi_entropy_2),
            ("effective_rank", s.effective_rank),
            ("anisotropy", s.anisotropy),
            ("dominance", s.dominance),
            ("sigma1_sq", Some(s.sigma1_sq)),
            ("sigma1_sq_bound", t.sigma1_sq_bound),
            ("anisotropy_bound", t.anisotropy_bound),
            ("entropy_bound", t.entropy_bound),
            ("dominance_bound", t.dominance_bound),
            ("sigma1_sq_tightness", t.sigma1_sq_tightness),
            ("anisotropy_tightness", t.anisotropy_tightness),
            ("entropy_tightness", t.entropy_tightness),
            ("dominance_tightness", t.dominance_tightness),
        ]
    }

    /// The `k` largest Gram eigenvalues `σ_1², …, σ_k²` (fewer if `min(T, d) < k`).
    pub fn sigma_sq_top(&self, k: usize) -> &[f64] {
        let e = self.spectrum.eigenvalues();
        e.get(..k.min(e.len())).unwrap_or(e)
    }
}
