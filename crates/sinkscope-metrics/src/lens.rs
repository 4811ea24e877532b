//! LogitLens next-token likelihood (metrics.md, "Task probes": `logit_lens_nll`,
//! `logit_lens_ppl`).
//!
//! The caller applies the final norm and the unembedding to `X(l)` and hands over the logits,
//! a row-major `[T, V]` [`Matrix`] (row `t` = the logits produced at position `t`), together
//! with the `T` token ids of the prompt. The row at position `t − 1` predicts token `t`, so
//! positions `1..T−1` are scored (`T − 1` predictions):
//!
//! | field | name | definition |
//! |---|---|---|
//! | [`LensStats::nll`] | `logit_lens_nll` | `(1/(T−1)) Σ_{t=1}^{T−1} −ln softmax(z_{t−1})[x_t]` |
//! | [`LensStats::ppl`] | `logit_lens_ppl` | `exp(logit_lens_nll)` |
//! | [`LensStats::top1_accuracy`] | `logit_lens_top1` | fraction of `t` with `argmax z_{t−1} = x_t` |
//! | [`LensStats::per_position`] | — | the `T − 1` values `−ln softmax(z_{t−1})[x_t]`, `t = 1..T−1` |
//!
//! With a final logit soft-cap `c` (Gemma-2 style, `Some(c)`), every logit `z` is first
//! replaced by `c·tanh(z/c)`, as the model does before its own softmax.
//!
//! # Numerics
//! Each logit is widened to `f64`; the log-softmax is the log-sum-exp with max-subtraction,
//! `−ln softmax(z)[y] = m + ln Σ_j exp(z_j − m) − z_y` with `m = max_j z_j`, so every
//! exponent is `≤ 0` (no overflow) and the largest term is exactly `1` (no underflow of the
//! sum). The sum is [`crate::expsum::sum_exp_shifted`] (each term within about 1 ulp of the
//! exact exponential, sixteen partial sums; the same bits on every CPU); with a soft-cap the
//! C library's `exp` and `tanh` are used. The result is exact to a few ulps of `f64` for logits of any magnitude an `f32` can
//! hold (e.g. `±1e4`, where a naive `exp` overflows). Because `c·tanh(z/c)` is strictly
//! increasing, the maximum (and the arg-max used for top-1) is taken on the raw logits; ties
//! go to the lowest token id (as `torch.argmax`).
//!
//! Cost: one `exp` per logit (`T·V`); [`next_token_nll`] shares a large matrix's rows among
//! rayon's threads (each row is scored alone and the sums run in order, so the bits are those
//! of one thread).
//!
//! Undefined values follow the crate's rule: with `T = 1` there is nothing to predict and the
//! means are `None` (never NaN); such a prompt adds zero tokens to a [`LensAccumulator`].
//!
//! # Example
//! ```
//! use sinkscope_metrics::lens::next_token_nll;
//! use sinkscope_metrics::Matrix;
//!
//! // T = 3 positions over a vocabulary of V = 4, uniform logits: NLL = ln 4 everywhere.
//! let logits = vec![0.0_f32; 3 * 4];
//! let stats = next_token_nll(&Matrix::new(&logits, 3, 4)?, &[0, 1, 2], None)?;
//! assert_eq!(stats.n_tokens, 2);
//! assert!((stats.nll.unwrap_or(0.0) - 4f64.ln()).abs() < 1e-12);
//! assert!((stats.ppl.unwrap_or(0.0) - 4.0).abs() < 1e-12);
//! # Ok::<(), sinkscope_metrics::lens::LensError>(())
//! ```

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{Matrix, MetricsError};

/// What can go wrong when scoring logits.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LensError {
    /// The logits matrix itself is invalid (shape, empty, non-finite).
    #[error(transparent)]
    Matrix(#[from] MetricsError),
    /// The number of token ids differs from the number of logit rows `T`.
    #[error("{tokens} token ids for {rows} logit rows; they must be equal")]
    TokenCount {
        /// Number of token ids supplied.
        tokens: usize,
        /// Number of logit rows `T`.
        rows: usize,
    },
    /// A token id is outside the vocabulary `0..V`.
    #[error("token id {token} at position {position} is outside the vocabulary of size {vocab}")]
    TokenOutOfRange {
        /// Position of the offending token.
        position: usize,
        /// The token id.
        token: u32,
        /// Vocabulary size `V` (the number of logit columns).
        vocab: usize,
    },
    /// A logit row used alone has no entries or a non-finite value.
    #[error("logit row has length {len} or a non-finite value at index {index:?}")]
    BadRow {
        /// Length of the row.
        len: usize,
        /// Index of the first non-finite value, if that is the problem.
        index: Option<usize>,
    },
    /// The soft-cap must be finite and strictly positive.
    #[error("logit soft-cap must be finite and > 0, got {0}")]
    BadSoftcap(f32),
}

/// The score of one prediction: `−ln softmax(z)[y]` and whether `argmax z = y`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenScore {
    /// Negative log-likelihood of the target token, `≥ 0`.
    pub nll: f64,
    /// The arg-max of the logits (ties: the lowest id).
    pub argmax: usize,
    /// `argmax == target`.
    pub correct: bool,
}

/// LogitLens statistics of one prompt at one layer (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensStats {
    /// `logit_lens_nll`: mean NLL over positions `1..T−1`; `None` when `T = 1`.
    pub nll: Option<f64>,
    /// `logit_lens_ppl = exp(nll)`; `None` when `T = 1`.
    pub ppl: Option<f64>,
    /// Top-1 accuracy over positions `1..T−1`; `None` when `T = 1`.
    pub top1_accuracy: Option<f64>,
    /// Entry `i` is the NLL of token `i + 1` given the logits of row `i` (`T − 1` values).
    pub per_position: Vec<f64>,
    /// Sum of the per-position NLLs.
    pub nll_sum: f64,
    /// Number of scored predictions, `T − 1`.
    pub n_tokens: usize,
    /// Number of predictions whose arg-max is the next token.
    pub n_correct: usize,
}

/// From this many logits (`T·V`) on, [`next_token_nll`] scores its rows on rayon's threads
/// (the same bits as one thread; below it the hand-off costs more than it saves).
const PARALLEL_MIN_LOGITS: usize = 1 << 18;

/// `logit_lens_ppl = exp(nll)`.
pub fn logit_lens_ppl(nll: f64) -> f64 {
    nll.exp()
}

fn check_softcap(softcap: Option<f32>) -> Result<Option<f64>, LensError> {
    match softcap {
        None => Ok(None),
        Some(c) if c.is_finite() && c > 0.0 => Ok(Some(f64::from(c))),
        Some(c) => Err(LensError::BadSoftcap(c)),
    }
}

/// Lanes of [`max_and_argmax`]'s maximum, and the block its position search tests at once.
const MAX_LANES: usize = 16;
const FIND_BLOCK: usize = 64;

/// The maximum of a finite, non-empty row and its first position (ties: the lowest index, as
/// `torch.argmax`): the maximum over lanes (finite values, so the order does not matter),
/// then the first block of 64 that holds it (each block tested whole, which vectorises),
/// then the position inside that block.
fn max_and_argmax(row: &[f32]) -> (f32, usize) {
    let mut lanes = [f32::NEG_INFINITY; MAX_LANES];
    let mut chunks = row.chunks_exact(MAX_LANES);
    for c in &mut chunks {
        for (l, &z) in lanes.iter_mut().zip(c) {
            *l = l.max(z);
        }
    }
    let max = chunks.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |a, &z| a.max(z));
    // The values before the first block that holds the maximum, then those before it there.
    let before = FIND_BLOCK
        * row
            .chunks(FIND_BLOCK)
            .take_while(|c| !c.iter().fold(false, |found, &z| found | (z == max)))
            .count();
    (max, before + row.iter().skip(before).take_while(|&&z| z != max).count())
}

/// Scores a finite, non-empty row with a validated cap (`target < row.len()`).
fn score_row(row: &[f32], target: usize, cap: Option<f64>) -> TokenScore {
    // Max and arg-max on the raw logits (the cap is strictly increasing).
    let (max_raw, argmax) = max_and_argmax(row);
    let target_raw = row.get(target).copied().unwrap_or(max_raw);
    let (m, sum, zy) = match cap {
        None => {
            let m = f64::from(max_raw);
            (m, crate::expsum::sum_exp_shifted(row, m), f64::from(target_raw))
        }
        Some(c) => {
            let f = |z: f32| c * (f64::from(z) / c).tanh();
            let m = f(max_raw);
            let sum: f64 = row.iter().map(|&z| (f(z) - m).exp()).sum();
            (m, sum, f(target_raw))
        }
    };
    // sum >= 1 (the max term is exp(0) = 1), so ln(sum) >= 0 and nll >= 0 up to round-off.
    let nll = (m - zy + sum.ln()).max(0.0);
    TokenScore { nll, argmax, correct: argmax == target }
}

/// The NLL of `target` under `softmax(cap(row))`, and whether it is the arg-max.
///
/// # Errors
/// [`LensError::BadRow`] for an empty row or a non-finite logit,
/// [`LensError::TokenOutOfRange`] (with `position` 0) when `target ≥ row.len()`,
/// [`LensError::BadSoftcap`] for a cap that is not finite and positive.
pub fn token_nll(row: &[f32], target: u32, softcap: Option<f32>) -> Result<TokenScore, LensError> {
    let cap = check_softcap(softcap)?;
    if row.is_empty() {
        return Err(LensError::BadRow { len: 0, index: None });
    }
    if let Some(index) = row.iter().position(|z| !z.is_finite()) {
        return Err(LensError::BadRow { len: row.len(), index: Some(index) });
    }
    let t = target as usize;
    if t >= row.len() {
        return Err(LensError::TokenOutOfRange { position: 0, token: target, vocab: row.len() });
    }
    Ok(score_row(row, t, cap))
}

/// LogitLens statistics of one prompt: the row at position `t − 1` of `logits` (`[T, V]`)
/// scores token `tokens[t]`, `t = 1..T−1`. `softcap = Some(c)` applies `c·tanh(z/c)` first.
///
/// # Errors
/// [`LensError::TokenCount`] when `tokens.len() != T`, [`LensError::TokenOutOfRange`] for a
/// scored token id `≥ V` (the first token is never scored and not checked),
/// [`LensError::BadSoftcap`] for a cap that is not finite and positive. ([`Matrix`] already
/// guarantees finite logits.)
pub fn next_token_nll(
    logits: &Matrix<'_>,
    tokens: &[u32],
    softcap: Option<f32>,
) -> Result<LensStats, LensError> {
    let cap = check_softcap(softcap)?;
    let (t_len, vocab) = (logits.rows(), logits.cols());
    if tokens.len() != t_len {
        return Err(LensError::TokenCount { tokens: tokens.len(), rows: t_len });
    }
    let targets = tokens.get(1..).unwrap_or(&[]);
    // Targets first, in order, so that the error is always the first bad position's.
    if let Some((i, &tok)) = targets.iter().enumerate().find(|&(_, &tok)| tok as usize >= vocab) {
        return Err(LensError::TokenOutOfRange { position: i + 1, token: tok, vocab });
    }
    // Row i scores token i + 1; rows are independent and the sums below run in order, so the
    // bits do not depend on how the rows were shared out.
    let score = |(row, &tok): (&[f32], &u32)| score_row(row, tok as usize, cap);
    let scores: Vec<TokenScore> = if t_len * vocab >= PARALLEL_MIN_LOGITS {
        use rayon::prelude::*;
        logits.data().par_chunks_exact(vocab).zip(targets.par_iter()).map(score).collect()
    } else {
        logits.iter_rows().zip(targets).map(score).collect()
    };
    let per_position: Vec<f64> = scores.iter().map(|s| s.nll).collect();
    let n_correct = scores.iter().filter(|s| s.correct).count();
    let n_tokens = per_position.len();
    let nll_sum: f64 = per_position.iter().sum();
    let (nll, ppl, top1_accuracy) = if n_tokens == 0 {
        (None, None, None)
    } else {
        let n = n_tokens as f64;
        let mean = nll_sum / n;
        (Some(mean), Some(logit_lens_ppl(mean)), Some(n_correct as f64 / n))
    };
    Ok(LensStats { nll, ppl, top1_accuracy, per_position, nll_sum, n_tokens, n_correct })
}

/// Token-weighted LogitLens totals over many prompts (one accumulator per layer):
/// `nll = Σ_prompts nll_sum / Σ_prompts n_tokens`, `ppl = exp(nll)`, so longer prompts weigh
/// more (the usual corpus perplexity), unlike a mean of per-prompt perplexities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LensAccumulator {
    /// Sum of all per-token NLLs.
    pub nll_sum: f64,
    /// Number of scored tokens.
    pub n_tokens: usize,
    /// Number of correct top-1 predictions.
    pub n_correct: usize,
    /// Number of prompts added (including ones with `T = 1`, which add no tokens).
    pub n_prompts: usize,
}

impl LensAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one prompt's statistics.
    pub fn add(&mut self, stats: &LensStats) {
        self.nll_sum += stats.nll_sum;
        self.n_tokens += stats.n_tokens;
        self.n_correct += stats.n_correct;
        self.n_prompts += 1;
    }

    /// Adds another accumulator's totals (e.g. from another thread).
    pub fn merge(&mut self, other: &LensAccumulator) {
        self.nll_sum += other.nll_sum;
        self.n_tokens += other.n_tokens;
        self.n_correct += other.n_correct;
        self.n_prompts += other.n_prompts;
    }

    /// Token-weighted mean NLL; `None` when no token was scored.
    pub fn nll(&self) -> Option<f64> {
        (self.n_tokens > 0).then(|| self.nll_sum / self.n_tokens as f64)
    }

    /// Token-weighted perplexity `exp(nll)`; `None` when no token was scored.
    pub fn ppl(&self) -> Option<f64> {
        self.nll().map(logit_lens_ppl)
    }

    /// Token-weighted top-1 accuracy; `None` when no token was scored.
    pub fn top1_accuracy(&self) -> Option<f64> {
        (self.n_tokens > 0).then(|| self.n_correct as f64 / self.n_tokens as f64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn stats(data: &[f32], t: usize, v: usize, tokens: &[u32], cap: Option<f32>) -> LensStats {
        let m = Matrix::new(data, t, v).unwrap();
        next_token_nll(&m, tokens, cap).unwrap()
    }

    /// Uniform logits: every prediction has probability 1/V, so NLL = ln V (to 1e-12), ppl = V,
    /// and the arg-max (ties → id 0) is correct exactly when the target is 0.
    #[test]
    fn uniform_logits_give_ln_v() {
        for v in [1usize, 2, 7, 50_000] {
            let t = 4;
            let data = vec![3.25_f32; t * v];
            let tokens: Vec<u32> = (0..t as u32).map(|i| i % v as u32).collect();
            let s = stats(&data, t, v, &tokens, None);
            let ln_v = (v as f64).ln();
            assert_eq!(s.n_tokens, t - 1);
            assert!((s.nll.unwrap() - ln_v).abs() < 1e-12, "V={v}: {:?}", s.nll);
            assert!((s.ppl.unwrap() - v as f64).abs() < 1e-9 * v as f64);
            for &x in &s.per_position {
                assert!((x - ln_v).abs() < 1e-12);
            }
            let expect_correct = tokens[1..].iter().filter(|&&x| x == 0).count();
            assert_eq!(s.n_correct, expect_correct);
        }
    }

    /// A huge logit (1e4 above the rest) on the right token: NLL is ~exp(−1e4) = 0 to 1e-12,
    /// accuracy 1; on the wrong token the NLL is ~1e4 (exact to 1e-9 relative).
    #[test]
    fn one_hot_huge_logit() {
        let (t, v) = (3, 5);
        let tokens = [4u32, 2, 3];
        let mut data = vec![0.0_f32; t * v];
        data[2] = 1e4; // row 0 predicts token 2
        data[v + 3] = 1e4; // row 1 predicts token 3
        let s = stats(&data, t, v, &tokens, None);
        assert!(s.nll.unwrap().abs() < 1e-12);
        assert_eq!(s.top1_accuracy, Some(1.0));
        assert_eq!(s.ppl, Some(1.0));

        let wrong = [4u32, 1, 1];
        let s = stats(&data, t, v, &wrong, None);
        // NLL = 1e4 + ln(1 + 4·e^{-1e4}) − 0 = 1e4 exactly in f64.
        assert!((s.nll.unwrap() - 1e4).abs() < 1e-9 * 1e4);
        assert_eq!(s.n_correct, 0);
    }

    /// Hand-computed: logits [1, 2, 3] and target 0:
    /// NLL = ln(e + e² + e³) − 1 = 2 + ln(1 + e⁻¹ + e⁻²) = 2.40760596444438 (to 1e-13).
    /// Second row [0, ln 3, 0] with target 1: p = 3/5, NLL = ln(5/3) = 0.5108256237659907.
    #[test]
    fn hand_computed_example() {
        let l3 = 3f64.ln() as f32;
        let data = [1.0_f32, 2.0, 3.0, 0.0, l3, 0.0, 9.0, 9.0, 9.0];
        let s = stats(&data, 3, 3, &[2, 0, 1], None);
        let a = 2.0 + (1.0 + (-1f64).exp() + (-2f64).exp()).ln();
        assert!((a - 2.407_605_964_444_38).abs() < 1e-13);
        // The f32-rounded ln 3 is the logit actually used.
        let lf = f64::from(l3);
        let b = (2.0 + lf.exp()).ln() - lf;
        assert!((b - (5.0f64 / 3.0).ln()).abs() < 1e-7);
        assert!((s.per_position[0] - a).abs() < 1e-13);
        assert!((s.per_position[1] - b).abs() < 1e-13);
        assert!((s.nll.unwrap() - (a + b) / 2.0).abs() < 1e-13);
        assert!((s.nll_sum - (a + b)).abs() < 1e-13);
        // Row 0's arg-max is 2 (≠ 0), row 1's is 1 (= target).
        assert_eq!(s.n_correct, 1);
        assert_eq!(s.top1_accuracy, Some(0.5));
    }

    /// Shift invariance and stability: logits around ±1e4 give the same NLL (to 1e-9 absolute,
    /// the f32 spacing at 1e4 is ~1e-3 so the offsets are chosen exactly representable) as the
    /// same pattern around 0, and never NaN/inf.
    #[test]
    fn stable_for_large_logits() {
        let base = [0.5_f32, -1.25, 2.0, 0.0, 1.0, -3.0];
        for offset in [1e4_f32, -1e4, 3e4, -3e4] {
            let shifted: Vec<f32> = base.iter().map(|z| z + offset).collect();
            // The base values are multiples of 1/4, exact in f32 next to |offset| ≤ 3e4.
            assert!(shifted
                .iter()
                .zip(base.iter())
                .all(|(s, b)| f64::from(*s) - f64::from(offset) == f64::from(*b)));
            let a = stats(&base, 2, 3, &[0, 2], None);
            let b = stats(&shifted, 2, 3, &[0, 2], None);
            assert!(b.nll.unwrap().is_finite());
            assert!((a.nll.unwrap() - b.nll.unwrap()).abs() < 1e-9, "{offset}: {a:?} vs {b:?}");
        }
        // Extreme spread: one logit at +1e4, one at −1e4.
        let s = stats(&[1e4, -1e4, 0.0, 0.0], 2, 2, &[0, 1], None);
        assert!((s.nll.unwrap() - 2e4).abs() < 1e-9 * 2e4);
        let s = stats(&[1e4, -1e4, 0.0, 0.0], 2, 2, &[0, 0], None);
        assert!(s.nll.unwrap() >= 0.0 && s.nll.unwrap() < 1e-12);
    }

    /// Soft-cap: with cap c the NLL equals the NLL of the pre-capped logits c·tanh(z/c)
    /// (to 1e-6, the f32 rounding of the pre-capped values); a huge cap is the identity (1e-9);
    /// a cap of 1 squeezes logits into (−1, 1) so NLL ≤ ln V + 2.
    #[test]
    fn softcap_matches_precapped_logits() {
        let raw = [10.0_f32, -20.0, 35.0, 0.5, 60.0, -1.0];
        let c = 30.0_f32;
        let capped: Vec<f32> =
            raw.iter().map(|&z| (f64::from(c) * (f64::from(z) / f64::from(c)).tanh()) as f32).collect();
        let a = stats(&raw, 2, 3, &[0, 1], Some(c));
        let b = stats(&capped, 2, 3, &[0, 1], None);
        assert!((a.nll.unwrap() - b.nll.unwrap()).abs() < 1e-6);
        let id = stats(&raw, 2, 3, &[0, 1], Some(1e9));
        let none = stats(&raw, 2, 3, &[0, 1], None);
        assert!((id.nll.unwrap() - none.nll.unwrap()).abs() < 1e-9);
        let one = stats(&raw, 2, 3, &[0, 1], Some(1.0));
        assert!(one.nll.unwrap() <= 3f64.ln() + 2.0);
        // Capped and raw agree on the arg-max.
        assert_eq!(a.n_correct, none.n_correct);
    }

    /// The one-pass maximum and first arg-max equal a plain scan's on rows of every length
    /// around the lane and block edges, with the maximum repeated (ties: the lowest index).
    #[test]
    fn argmax_is_the_first_maximum() {
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        for len in (1..200).chain([4095, 4096, 4097, 49_152]) {
            for _ in 0..4 {
                let row: Vec<f32> = (0..len)
                    .map(|_| {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        // Few distinct values, so the maximum repeats.
                        (s % 7) as f32 - 3.0
                    })
                    .collect();
                let plain =
                    row.iter().enumerate().fold(
                        (f32::NEG_INFINITY, 0),
                        |(m, a), (i, &z)| {
                            if z > m {
                                (z, i)
                            } else {
                                (m, a)
                            }
                        },
                    );
                assert_eq!(max_and_argmax(&row), plain, "len {len}");
            }
        }
    }

    /// Edge cases: T = 1 gives None (not NaN) and adds no tokens; bad inputs give typed errors.
    #[test]
    fn edge_cases_and_errors() {
        let s = stats(&[1.0, 2.0], 1, 2, &[1], None);
        assert_eq!((s.nll, s.ppl, s.top1_accuracy, s.n_tokens), (None, None, None, 0));
        let m = Matrix::new(&[1.0, 2.0, 3.0, 4.0], 2, 2).unwrap();
        assert_eq!(next_token_nll(&m, &[0], None), Err(LensError::TokenCount { tokens: 1, rows: 2 }));
        assert_eq!(
            next_token_nll(&m, &[0, 2], None),
            Err(LensError::TokenOutOfRange { position: 1, token: 2, vocab: 2 })
        );
        assert_eq!(next_token_nll(&m, &[0, 1], Some(0.0)), Err(LensError::BadSoftcap(0.0)));
        assert!(matches!(next_token_nll(&m, &[0, 1], Some(f32::NAN)), Err(LensError::BadSoftcap(_))));
        assert_eq!(token_nll(&[], 0, None), Err(LensError::BadRow { len: 0, index: None }));
        assert_eq!(token_nll(&[0.0, f32::NAN], 0, None), Err(LensError::BadRow { len: 2, index: Some(1) }));
        let ts = token_nll(&[0.0, 0.0], 1, None).unwrap();
        assert!((ts.nll - 2f64.ln()).abs() < 1e-15);
        assert_eq!((ts.argmax, ts.correct), (0, false));
    }

    /// Timing at SmolLM2 scale (T = 512, V = 49,152, one layer); run with
    /// `cargo test -p sinkscope-metrics lens_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, not a check"]
    fn lens_timing() {
        let (t, v) = (512usize, 49_152usize);
        let data: Vec<f32> = (0..t * v).map(|i| ((i * 7919) % 1000) as f32 * 0.01 - 5.0).collect();
        let tokens: Vec<u32> = (0..t as u32).map(|i| (i * 31) % v as u32).collect();
        let m = Matrix::new(&data, t, v).unwrap();
        // Best of five (the first call also starts rayon's threads).
        let best = |cap: Option<f32>| {
            (0..5)
                .map(|_| {
                    let t0 = std::time::Instant::now();
                    let s = next_token_nll(&m, &tokens, cap).unwrap();
                    (t0.elapsed(), s.nll)
                })
                .min_by_key(|r| r.0)
                .unwrap()
        };
        let (dt, nll) = best(None);
        let (dc, nll_c) = best(Some(30.0));
        println!(
            "T={t} V={v}: {dt:?} ({:.0} tokens/s), with soft-cap {dc:?}; nll {nll:?} {nll_c:?}",
            (t - 1) as f64 / dt.as_secs_f64(),
        );
    }

    /// The accumulator is token-weighted: prompts with NLL 1 (1 token) and 4 (3 tokens) give
    /// (1 + 12)/4 = 3.25, not the prompt mean 2.5 (exact in f64); empty gives None.
    #[test]
    fn accumulator_is_token_weighted() {
        let mut acc = LensAccumulator::new();
        assert_eq!(acc.nll(), None);
        let p1 = LensStats {
            nll: Some(1.0),
            ppl: Some(1f64.exp()),
            top1_accuracy: Some(1.0),
            per_position: vec![1.0],
            nll_sum: 1.0,
            n_tokens: 1,
            n_correct: 1,
        };
        let p2 = LensStats {
            nll: Some(4.0),
            ppl: Some(4f64.exp()),
            top1_accuracy: Some(0.0),
            per_position: vec![4.0; 3],
            nll_sum: 12.0,
            n_tokens: 3,
            n_correct: 0,
        };
        acc.add(&p1);
        let mut other = LensAccumulator::new();
        other.add(&p2);
        acc.merge(&other);
        assert_eq!(acc.nll(), Some(3.25));
        assert_eq!(acc.ppl(), Some(3.25f64.exp()));
        assert_eq!(acc.top1_accuracy(), Some(0.25));
        assert_eq!((acc.n_tokens, acc.n_prompts), (4, 2));
    }
}
