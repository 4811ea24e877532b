//! Theorem 1 of arXiv 2510.06477 and its corollaries, checked per layer.
//!
//! For any `X`: `σ_1² ≥ M + αR` (the Rayleigh quotient of `XᵀX` at `x̂_0` is
//! `M + αR`). With `c = M/R` and `p = (c + α)/(c + 1) = (M + αR)/‖X‖_F²`:
//!
//! | bound | name | measured | holds as |
//! |---|---|---|---|
//! | `M + αR` | `sigma1_sq_bound` | `sigma1_sq` | measured ≥ bound |
//! | `p` | `anisotropy_bound` | `anisotropy` | measured ≥ bound |
//! | `(c + α)/(1 − α)` | `dominance_bound` | `dominance` | measured ≥ bound |
//! | `−p ln p − (1−p) ln(1−p) + (1−p) ln(r−1)` | `entropy_bound` | `entropy` | measured ≤ bound |
//!
//! with `r = min(T, d)`. The tightness is `measured / bound` (`*_tightness`): ≥ 1 for the
//! three lower bounds, ≤ 1 for the entropy upper bound, 1 when the bound is attained.
//!
//! The bounds are computed as `M + S`, `(M + S)/(M + R)` and `(M + S)/(R − S)` with
//! `S = Σ_{i≥1} (x_i·x̂_0)² = αR` ([`NormStats::aligned_energy`]), which is the same
//! algebra without dividing by `R` (so it stays defined when `R = 0`).
//!
//! `None` where undefined: every bound is `None` when `x_0 = 0` (no `x̂_0`) — this
//! includes `X = 0`; `dominance_bound` is `None` when `α = 1` (`R − S ≤ 0`, the bound
//! is `+∞` and `X` has rank 1); a tightness is `None` when either side is `None` or the
//! bound is 0.
//!
//! # Round-off tolerance
//! A measured value counts as a violation ([`TheoremCheck::violations`]) only when it is on
//! the wrong side of its bound by more than [`BOUND_TOLERANCE`] (`1e-9`) relative to the
//! quantity's natural scale:
//! - `sigma1_sq < sigma1_sq_bound − 1e-9 · ‖X‖_F²`;
//! - `anisotropy < anisotropy_bound − 1e-9` (both are fractions of `‖X‖_F²`);
//! - dominance, checked in its exactly equivalent tail form
//!   `Σ_{j≥2} σ_j² > (1 − α)R + 1e-9 · ‖X‖_F²` (the ratio itself amplifies round-off
//!   without limit as `α → 1`);
//! - `entropy > entropy_bound + 1e-9 · max(1, ln r)`.
//!
//! The `f64` Gram eigenvalues carry errors of order `r·ε·λ_1 ≈ 5·10⁻¹³ λ_1` for
//! `r = 2048`, far inside this tolerance.

use serde::{Deserialize, Serialize};

use crate::norms::NormStats;
use crate::spectrum::SpectralStats;

/// Relative round-off tolerance of the bound checks (see the module docs for the scale
/// each check uses).
pub const BOUND_TOLERANCE: f64 = 1e-9;

/// One of the four bounds of Theorem 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// `sigma1_sq ≥ sigma1_sq_bound`.
    Sigma1Sq,
    /// `anisotropy ≥ anisotropy_bound`.
    Anisotropy,
    /// `dominance ≥ dominance_bound`.
    Dominance,
    /// `entropy ≤ entropy_bound`.
    Entropy,
}

impl Bound {
    /// The metric name of the bound (`sigma1_sq_bound`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Bound::Sigma1Sq => "sigma1_sq_bound",
            Bound::Anisotropy => "anisotropy_bound",
            Bound::Dominance => "dominance_bound",
            Bound::Entropy => "entropy_bound",
        }
    }
}

/// The Theorem-1 bounds of one `X`, their tightness, and which were violated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TheoremCheck {
    /// `sigma1_sq_bound = M + αR`.
    pub sigma1_sq_bound: Option<f64>,
    /// `anisotropy_bound = p = (c + α)/(c + 1)`.
    pub anisotropy_bound: Option<f64>,
    /// `dominance_bound = (c + α)/(1 − α)`, for `α < 1`.
    pub dominance_bound: Option<f64>,
    /// `entropy_bound = −p ln p − (1−p) ln(1−p) + (1−p) ln(r−1)`, `r = min(T, d)`.
    pub entropy_bound: Option<f64>,
    /// `sigma1_sq / sigma1_sq_bound`.
    pub sigma1_sq_tightness: Option<f64>,
    /// `anisotropy / anisotropy_bound`.
    pub anisotropy_tightness: Option<f64>,
    /// `dominance / dominance_bound`.
    pub dominance_tightness: Option<f64>,
    /// `entropy / entropy_bound`.
    pub entropy_tightness: Option<f64>,
    /// The bounds found on the wrong side beyond [`BOUND_TOLERANCE`] (empty unless
    /// there is a bug).
    pub violated: Vec<Bound>,
}

/// The entropy bound `−p ln p − (1−p) ln(1−p) + (1−p) ln(r−1)` (with `0 ln 0 = 0`;
/// `p` clamped to `[0, 1]`; the last term is 0 for `r ≤ 1`).
pub fn entropy_bound(p: f64, r: usize) -> f64 {
    let p = p.clamp(0.0, 1.0);
    let q = 1.0 - p;
    let xlnx = |v: f64| if v > 0.0 { v * v.ln() } else { 0.0 };
    let tail = if r > 1 { q * ((r - 1) as f64).ln() } else { 0.0 };
    (-xlnx(p) - xlnx(q) + tail).max(0.0)
}

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

impl TheoremCheck {
    /// Computes the bounds from the norm statistics and checks them against the
    /// measured spectrum. Both arguments must describe the same `X`.
    pub fn new(norms: &NormStats, spectral: &SpectralStats) -> Self {
        let m = norms.m;
        let r_sum = norms.r;
        let total = m + r_sum;
        let Some(s) = norms.aligned_energy.filter(|_| m > 0.0) else {
            return Self {
                sigma1_sq_bound: None,
                anisotropy_bound: None,
                dominance_bound: None,
                entropy_bound: None,
                sigma1_sq_tightness: None,
                anisotropy_tightness: None,
                dominance_tightness: None,
                entropy_tightness: None,
                violated: Vec::new(),
            };
        };
        let rank_bound = spectral.rank_bound();
        let sigma1_sq_bound = m + s;
        let p = (sigma1_sq_bound / total).min(1.0);
        let unaligned = r_sum - s;
        let dominance_bound = (unaligned > 0.0).then(|| sigma1_sq_bound / unaligned);
        let h_bound = entropy_bound(p, rank_bound);

        let mut violated = Vec::new();
        let scale = spectral.frobenius_sq.max(total);
        if spectral.sigma1_sq < sigma1_sq_bound - BOUND_TOLERANCE * scale {
            violated.push(Bound::Sigma1Sq);
        }
        if let Some(a) = spectral.anisotropy {
            if a < p - BOUND_TOLERANCE {
                violated.push(Bound::Anisotropy);
            }
        }
        if dominance_bound.is_some() && spectral.tail_sq > unaligned + BOUND_TOLERANCE * scale {
            violated.push(Bound::Dominance);
        }
        if let Some(h) = spectral.entropy {
            let ln_r = (rank_bound as f64).ln().max(1.0);
            if h > h_bound + BOUND_TOLERANCE * ln_r {
                violated.push(Bound::Entropy);
            }
        }

        Self {
            sigma1_sq_bound: Some(sigma1_sq_bound),
            anisotropy_bound: Some(p),
            dominance_bound,
            entropy_bound: Some(h_bound),
            sigma1_sq_tightness: ratio(Some(spectral.sigma1_sq), Some(sigma1_sq_bound)),
            anisotropy_tightness: ratio(spectral.anisotropy, Some(p)),
            dominance_tightness: ratio(spectral.dominance, dominance_bound),
            entropy_tightness: ratio(spectral.entropy, Some(h_bound)),
            violated,
        }
    }

    /// Number of bounds violated beyond the round-off tolerance (0 unless there is a bug).
    pub fn violations(&self) -> usize {
        self.violated.len()
    }
}
