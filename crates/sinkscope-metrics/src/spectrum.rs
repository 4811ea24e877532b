//! Spectrum and compression (metrics.md, "Spectrum and compression").
//!
//! `λ_1 ≥ λ_2 ≥ …` are the eigenvalues of the Gram matrix `G = X Xᵀ` (`T x T`) when
//! `T ≤ d`, else of `Xᵀ X` (`d x d`): the same non-zero spectrum, the squared singular
//! values `σ_j²` of `X`, always `r = min(T, d)` of them. `G` is formed in `f64` with a
//! faer matrix product (only its lower triangle), and only eigenvalues are computed
//! (faer's self-adjoint eigensolver, no eigenvectors). Negative eigenvalues of the
//! positive semi-definite `G` can only be round-off (of order `r·ε·λ_1`) and are clamped
//! to 0. With `p_j = λ_j / Σλ` (`Σλ = ‖X‖_F²`):
//!
//! | field | name | definition |
//! |---|---|---|
//! | [`SpectralStats::entropy`] | `entropy` | `H = −Σ p_j ln p_j` (terms with `p_j = 0` skipped) |
//! | [`SpectralStats::entropy_norm`] | `entropy_norm` | `H / ln min(T, d)` |
//! | [`SpectralStats::entropy_norm_log_t`] | `entropy_norm_logT` | `H / ln T` |
//! | [`SpectralStats::renyi_entropy_2`] | `renyi_entropy_2` | `−ln Σ p_j²` |
//! | [`SpectralStats::effective_rank`] | `effective_rank` | `exp(H)` |
//! | [`SpectralStats::anisotropy`] | `anisotropy` | `p_1` |
//! | [`SpectralStats::dominance`] | `dominance` | `σ_1² / Σ_{j≥2} σ_j²` |
//! | [`SpectralStats::sigma1_sq`] | `sigma1_sq` | `σ_1² = λ_1` |
//!
//! Degenerate inputs never produce NaN: when `X = 0` every `p_j`-based value is `None`;
//! when `r = 1` (`T = 1` or `d = 1`) `entropy_norm` is `None` (`ln 1 = 0`); when `T = 1`
//! `entropy_norm_logT` is `None`; when `X` has rank ≤ 1 `dominance` is `None` (it would be
//! `+∞`).
//!
//! Parallelism: the product and the eigensolver use faer's global parallelism
//! (`faer::set_global_parallelism`; rayon with all threads by default).

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, Side};
use serde::{Deserialize, Serialize};

use crate::{Matrix, MetricsError};

/// The eigenvalues of the Gram matrix of one `X`, in decreasing order, clamped at 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spectrum {
    rows: usize,
    cols: usize,
    eigenvalues: Vec<f64>,
}

impl Spectrum {
    /// Builds a spectrum from known eigenvalues of the Gram matrix of a `rows x cols`
    /// matrix (e.g. from a reference implementation or a test). The values are sorted in
    /// decreasing order and negatives clamped to 0, as for computed spectra.
    ///
    /// # Errors
    /// [`MetricsError::Empty`] for a zero dimension, [`MetricsError::LengthMismatch`] when
    /// there are not exactly `min(rows, cols)` values, [`MetricsError::NonFiniteValue`]
    /// for NaN or infinite values.
    pub fn from_eigenvalues(
        mut eigenvalues: Vec<f64>,
        rows: usize,
        cols: usize,
    ) -> Result<Self, MetricsError> {
        if rows == 0 || cols == 0 {
            return Err(MetricsError::Empty { rows, cols });
        }
        let r = rows.min(cols);
        if eigenvalues.len() != r {
            return Err(MetricsError::LengthMismatch {
                what: "eigenvalues vs min(rows, cols)",
                left: eigenvalues.len(),
                right: r,
            });
        }
        if let Some((index, &value)) = eigenvalues.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(MetricsError::NonFiniteValue { what: "eigenvalues", index, value });
        }
        for v in &mut eigenvalues {
            *v = v.max(0.0);
        }
        eigenvalues.sort_by(|a, b| b.total_cmp(a));
        Ok(Self { rows, cols, eigenvalues })
    }

    /// `T`, the number of rows of `X`.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `d`, the number of columns of `X`.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `r = min(T, d)`: the number of eigenvalues and an upper bound on the rank.
    pub fn rank_bound(&self) -> usize {
        self.rows.min(self.cols)
    }

    /// The eigenvalues `λ_1 ≥ … ≥ λ_r ≥ 0`.
    pub fn eigenvalues(&self) -> &[f64] {
        &self.eigenvalues
    }

    /// `σ_1² = λ_1`.
    pub fn sigma1_sq(&self) -> f64 {
        self.eigenvalues.first().copied().unwrap_or(0.0)
    }

    /// `Σ λ = ‖X‖_F²` (of the clamped eigenvalues).
    pub fn total(&self) -> f64 {
        self.eigenvalues.iter().sum()
    }

    /// `Σ_{j≥2} λ_j`, summed directly (not as `total − λ_1`, which would cancel).
    pub fn tail(&self) -> f64 {
        self.eigenvalues.iter().skip(1).sum()
    }

    /// `p_j = λ_j / Σλ`; `None` when `X = 0`.
    pub fn probabilities(&self) -> Option<Vec<f64>> {
        let total = self.total();
        (total > 0.0).then(|| self.eigenvalues.iter().map(|&l| l / total).collect())
    }

    /// Shannon entropy `H = −Σ p_j ln p_j` (natural log); `None` when `X = 0`.
    pub fn entropy(&self) -> Option<f64> {
        let p = self.probabilities()?;
        Some(shannon(&p))
    }

    /// Rényi entropy `ln(Σ p_j^α) / (1 − α)` for `α > 0` (`α = 1` gives the Shannon
    /// entropy, its limit). `None` when `X = 0` or `α` is not a positive finite number.
    pub fn renyi_entropy(&self, alpha: f64) -> Option<f64> {
        if !(alpha.is_finite() && alpha > 0.0) {
            return None;
        }
        let p = self.probabilities()?;
        if (alpha - 1.0).abs() < f64::EPSILON {
            return Some(shannon(&p));
        }
        let s: f64 = p.iter().filter(|&&q| q > 0.0).map(|&q| q.powf(alpha)).sum();
        (s > 0.0).then(|| s.ln() / (1.0 - alpha))
    }

    /// All spectral statistics (see [`SpectralStats`]).
    pub fn stats(&self) -> SpectralStats {
        let r = self.rank_bound();
        let sigma1_sq = self.sigma1_sq();
        let total = self.total();
        let tail = self.tail();
        let entropy = self.entropy();
        let ln_r = (r as f64).ln();
        let ln_t = (self.rows as f64).ln();
        SpectralStats {
            rows: self.rows,
            cols: self.cols,
            entropy,
            entropy_norm: entropy.filter(|_| r > 1).map(|h| h / ln_r),
            entropy_norm_log_t: entropy.filter(|_| self.rows > 1).map(|h| h / ln_t),
            renyi_entropy_2: self.renyi_entropy(2.0),
            effective_rank: entropy.map(f64::exp),
            anisotropy: (total > 0.0).then(|| sigma1_sq / total),
            dominance: (tail > 0.0).then(|| sigma1_sq / tail),
            sigma1_sq,
            frobenius_sq: total,
            tail_sq: tail,
        }
    }
}

/// `−Σ p ln p` over the positive entries.
fn shannon(p: &[f64]) -> f64 {
    let h: f64 = p.iter().filter(|&&q| q > 0.0).map(|&q| -q * q.ln()).sum();
    // Exact zero for a point mass (−1·ln 1 = −0.0 otherwise).
    h.max(0.0)
}

/// Spectral statistics of one `X`; see the module docs for definitions and for which
/// fields are `None` on degenerate input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpectralStats {
    /// `T`.
    pub rows: usize,
    /// `d`.
    pub cols: usize,
    /// `entropy`: `H = −Σ p_j ln p_j`.
    pub entropy: Option<f64>,
    /// `entropy_norm`: `H / ln min(T, d)`.
    pub entropy_norm: Option<f64>,
    /// `entropy_norm_logT`: `H / ln T`.
    #[serde(rename = "entropy_norm_logT")]
    pub entropy_norm_log_t: Option<f64>,
    /// `renyi_entropy_2`: Rényi entropy of order 2, `−ln Σ p_j²`.
    pub renyi_entropy_2: Option<f64>,
    /// `effective_rank`: `exp(H)`.
    pub effective_rank: Option<f64>,
    /// `anisotropy`: `p_1 = σ_1² / ‖X‖_F²`.
    pub anisotropy: Option<f64>,
    /// `dominance`: `σ_1² / Σ_{j≥2} σ_j²`; `None` when the tail is 0 (rank ≤ 1).
    pub dominance: Option<f64>,
    /// `sigma1_sq`: `σ_1²`, the largest eigenvalue (0 for `X = 0`).
    pub sigma1_sq: f64,
    /// `Σ_j σ_j² = ‖X‖_F²` (from the clamped eigenvalues).
    pub frobenius_sq: f64,
    /// `Σ_{j≥2} σ_j²`.
    pub tail_sq: f64,
}

impl SpectralStats {
    /// `r = min(T, d)`.
    pub fn rank_bound(&self) -> usize {
        self.rows.min(self.cols)
    }
}

/// Eigenvalues of the Gram matrix of `x` (`X Xᵀ` if `T ≤ d`, else `Xᵀ X`), in `f64`,
/// decreasing, negatives clamped to 0.
///
/// Cost: one `f64` product of `O(r² · max(T, d))` (lower triangle only) and one
/// eigenvalues-only self-adjoint decomposition of order `r = min(T, d)`.
///
/// # Errors
/// [`MetricsError::EigenNoConvergence`] if faer's eigensolver fails to converge (not
/// expected for finite input, which [`Matrix`] guarantees).
pub fn gram_eigenvalues(x: &Matrix<'_>) -> Result<Spectrum, MetricsError> {
    let (t, d) = (x.rows(), x.cols());
    let data = x.data();
    let xf = Mat::<f64>::from_fn(t, d, |i, j| data.get(i * d + j).copied().map_or(0.0, f64::from)); // [t, d]
    let n = t.min(d);
    let mut gram = Mat::<f64>::zeros(n, n); // [n, n], lower triangle filled
    let par = faer::get_global_parallelism();
    if t <= d {
        triangular::matmul(
            gram.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Replace,
            xf.as_ref(),
            BlockStructure::Rectangular,
            xf.transpose(),
            BlockStructure::Rectangular,
            1.0,
            par,
        );
    } else {
        triangular::matmul(
            gram.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Replace,
            xf.transpose(),
            BlockStructure::Rectangular,
            xf.as_ref(),
            BlockStructure::Rectangular,
            1.0,
            par,
        );
    }
    let eigenvalues = if n == 1 {
        vec![gram[(0, 0)].max(0.0)]
    } else {
        gram.self_adjoint_eigenvalues(Side::Lower).map_err(|_| MetricsError::EigenNoConvergence { n })?
    };
    Spectrum::from_eigenvalues(eigenvalues, t, d)
}

/// [`gram_eigenvalues`] followed by [`Spectrum::stats`].
///
/// # Errors
/// As [`gram_eigenvalues`].
pub fn spectral_stats(x: &Matrix<'_>) -> Result<SpectralStats, MetricsError> {
    Ok(gram_eigenvalues(x)?.stats())
}
