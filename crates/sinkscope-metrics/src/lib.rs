//! sinkscope-metrics: the numbers sinkscope reports, as pure `f64` numerics on plain
//! slices (no tensor engine).
//!
//! Every metric follows `metrics.md` (the contract) and carries its exact name there.
//! Inputs are borrowed row-major `f32` matrices ([`Matrix`]): an activation matrix
//! `X(l)` of shape `(T, d)` (row 0 = the first token), or one head's `T x T` attention
//! pattern. Accumulation is in `f64`; `X` is never centred or normalised. Undefined values
//! (e.g. `bos_ratio` when `T = 1`, anything spectral for `X = 0`) are `None` (`null` in
//! JSON), never NaN.
//!
//! Modules:
//! - [`norms`] — `bos_norm`, `bos_ratio`, `M`, `R`, `c`, `alpha`, top activations,
//!   `massive` (Sun et al.).
//! - [`spectrum`] — Gram-matrix eigenvalues (faer) and `entropy`, `entropy_norm`,
//!   `anisotropy`, `dominance`, ...
//! - [`theorem`] — the Theorem-1 bounds of arXiv 2510.06477, tightness, violations.
//! - [`attention`] — per-head and per-layer attention statistics (`sink_rate`,
//!   `mixing_score`, `head_class`, ...).
//! - [`aggregate`] — per-layer summaries over prompts, Pearson r, `corr_bos_entropy`,
//!   `corr_bos_sink`.
//! - [`phases`] — Mix–Compress–Refine.
//! - [`values`] — the sink token's value norm and its share of each head's output
//!   ("sinks are no-ops").
//! - [`bootstrap`] — seeded Poisson bootstrap intervals over prompts (flat memory).
//! - [`massive_layers`] — automatic detection of the blocks that create the massive
//!   activation.
//! - [`layer`] — [`LayerMetrics`], everything for one `X(l)` with named output.
//! - [`lens`] — LogitLens next-token NLL, perplexity and top-1 accuracy (`logit_lens_nll`).
//! - [`mc`] — multiple-choice LogitLens accuracy per layer (`mc_accuracy`).
//! - [`probe`] — layer-wise linear probes: standardised, L2-regularised logistic regression,
//!   stratified k-fold cross-validation (`probe_accuracy`).
//!
//! # Example
//!
//! ```
//! use sinkscope_metrics::{LayerMetrics, Matrix};
//!
//! // T = 3 tokens, d = 4: the first token is 100x larger than the others.
//! let data: Vec<f32> = vec![
//!     100.0, 0.0, 0.0, 0.0, //
//!     0.0, 1.0, 0.0, 0.0, //
//!     0.0, 0.0, 1.0, 0.0,
//! ];
//! let x = Matrix::new(&data, 3, 4)?;
//! let m = LayerMetrics::compute(&x, 5)?;
//! assert_eq!(m.norms.bos_ratio, Some(100.0));
//! // Nearly all energy is in one direction: anisotropy ≈ 1, entropy ≈ 0.
//! let a = m.spectral.anisotropy.unwrap_or(0.0);
//! assert!(a > 0.999);
//! // Theorem 1 holds (here with equality: the rows are orthogonal).
//! assert_eq!(m.theorem.violations(), 0);
//! let named = m.to_named();
//! assert_eq!(named[0], ("bos_norm", Some(100.0)));
//! # Ok::<(), sinkscope_metrics::MetricsError>(())
//! ```

#![warn(missing_docs)]

pub mod aggregate;
pub mod attention;
pub mod bootstrap;
mod error;
pub mod expsum;
pub mod layer;
pub mod lens;
pub mod massive_layers;
mod matrix;
pub mod mc;
pub mod norms;
pub mod phases;
pub mod probe;
pub mod spectrum;
pub mod theorem;
pub mod values;

pub use attention::{AttentionParams, HeadClass, HeadStats, LayerAttention};
pub use error::MetricsError;
pub use layer::LayerMetrics;
pub use lens::{next_token_nll, LensAccumulator, LensError, LensStats};
pub use matrix::Matrix;
pub use norms::{norm_stats, NormStats};
pub use probe::{cross_validate, Features, LogisticParams, ProbeError, ProbeParams, ProbeReport};
pub use spectrum::{gram_eigenvalues, spectral_stats, SpectralStats, Spectrum};
pub use theorem::TheoremCheck;

/// Sets how many ways faer splits the spectra's and the probes' linear algebra (1:
/// sequential). faer's default follows the size of rayon's global pool, which depends on when
/// and under which `RAYON_NUM_THREADS` the pool started; the split decides the rounding, so a
/// run sets it explicitly ([`sinkscope_analysis::setup`]) and gets the same bits wherever its
/// settings are the same (a CLI run and the same run from a Python session, for one).
pub fn set_parallelism(ways: usize) {
    faer::set_global_parallelism(if ways <= 1 { faer::Par::Seq } else { faer::Par::rayon(ways) });
}
