//! Seeded, deterministic bootstrap over prompts whose memory does not grow with the
//! number of prompts (metrics.md, "Intervals").
//!
//! This is the **Poisson bootstrap** (Hanley & MacGibbon 2006; Oza & Russell 2001): instead
//! of drawing `n` prompts with replacement, every prompt enters replicate `b` with an
//! independent weight `w ~ Poisson(1)` — the large-`n` limit of the multinomial counts —
//! so each replicate is a pair of running sums `Σ w·x`, `Σ w` per statistic and the prompts
//! can stream past. The weight of prompt `i` in replicate `b` is a pure function of
//! `(seed, i, b)` ([`poisson_weight`]): the same prompt weighs the same in every statistic
//! of a replicate (so curves, correlations and phase boundaries are computed on one
//! consistent resample), and a run, its resumption and a re-aggregation of its
//! `prompts.jsonl` give the same intervals bit for bit.
//!
//! Intervals are percentile intervals: the 2.5 % and 97.5 % quantiles (linear
//! interpolation between order statistics, numpy's default "type 7") of the replicate
//! values, replicates whose statistic is undefined (`Σ w = 0` at that entry, or a
//! correlation without variance) skipped. One prompt gives a zero-width interval.

use serde::{Deserialize, Serialize};

/// Default number of replicates.
pub const DEFAULT_REPLICATES: usize = 1000;
/// Default seed (the paper's arXiv number, 2510.06477).
pub const DEFAULT_SEED: u64 = 251_006_477;
/// The interval's coverage.
pub const LEVEL: f64 = 0.95;

/// How the bootstrap is run; recorded in manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapParams {
    /// Number of replicates `B`.
    pub replicates: usize,
    /// Seed of the weights.
    pub seed: u64,
}

impl Default for BootstrapParams {
    fn default() -> Self {
        BootstrapParams { replicates: DEFAULT_REPLICATES, seed: DEFAULT_SEED }
    }
}

/// SplitMix64's finaliser: a bijective 64-bit mix.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The Poisson(1) weight of prompt `prompt` in replicate `replicate` (inversion of the CDF
/// with a uniform from a hash of `(seed, prompt, replicate)`).
pub fn poisson_weight(seed: u64, prompt: u64, replicate: u64) -> u32 {
    let h = mix64(mix64(mix64(seed) ^ prompt) ^ replicate.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    // 53 random bits -> uniform in [0, 1).
    let u = (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let mut k = 0u32;
    let mut p = (-1.0f64).exp(); // P(K = 0)
    let mut cdf = p;
    while u >= cdf && k < 64 {
        k += 1;
        p /= f64::from(k);
        cdf += p;
    }
    k
}

/// Running weighted sums of `n_stats` statistics in `B` replicates.
#[derive(Debug, Clone, PartialEq)]
pub struct PoissonBootstrap {
    params: BootstrapParams,
    n_stats: usize,
    /// `[b * n_stats + k]`: `Σ w x`.
    sum_wx: Vec<f64>,
    /// `[b * n_stats + k]`: `Σ w` over prompts with a value.
    sum_w: Vec<f64>,
    weights: Vec<f64>,
}

impl PoissonBootstrap {
    /// Empty sums for `n_stats` statistics.
    pub fn new(n_stats: usize, params: BootstrapParams) -> Self {
        let n = n_stats * params.replicates;
        PoissonBootstrap {
            params,
            n_stats,
            sum_wx: vec![0.0; n],
            sum_w: vec![0.0; n],
            weights: vec![0.0; params.replicates],
        }
    }

    /// The parameters.
    pub fn params(&self) -> BootstrapParams {
        self.params
    }

    /// Number of statistics.
    pub fn n_stats(&self) -> usize {
        self.n_stats
    }

    /// Number of values held (independent of the number of prompts).
    pub fn footprint(&self) -> usize {
        self.sum_wx.len() + self.sum_w.len() + self.weights.len()
    }

    /// Adds prompt number `prompt` (its ordinal in the run): `values[k]` is its value of
    /// statistic `k` (`None` = missing; entries beyond `values.len()` are missing too).
    pub fn add(&mut self, prompt: u64, values: &[Option<f64>]) {
        for (b, w) in self.weights.iter_mut().enumerate() {
            *w = f64::from(poisson_weight(self.params.seed, prompt, b as u64));
        }
        for (b, &w) in self.weights.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let base = b * self.n_stats;
            for (k, v) in values.iter().enumerate().take(self.n_stats) {
                if let Some(v) = v {
                    self.sum_wx[base + k] += w * v;
                    self.sum_w[base + k] += w;
                }
            }
        }
    }

    /// The weighted mean of statistic `k` in replicate `b` (`None` when its weights sum to 0).
    pub fn mean(&self, b: usize, k: usize) -> Option<f64> {
        let i = b * self.n_stats + k;
        let w = *self.sum_w.get(i)?;
        (w > 0.0 && k < self.n_stats).then(|| self.sum_wx[i] / w)
    }

    /// The replicate means of statistics `range` in replicate `b` (a replicate's curve).
    pub fn means(&self, b: usize, range: std::ops::Range<usize>) -> Vec<Option<f64>> {
        range.map(|k| self.mean(b, k)).collect()
    }

    /// The percentile interval of the mean of statistic `k` (see the module docs).
    pub fn interval(&self, k: usize) -> Option<(f64, f64)> {
        let mut v: Vec<f64> = (0..self.params.replicates).filter_map(|b| self.mean(b, k)).collect();
        percentile_interval(&mut v)
    }

    /// The percentile interval of any statistic of a replicate: `f(b)` for every replicate.
    pub fn interval_of(&self, f: impl Fn(usize) -> Option<f64>) -> Option<(f64, f64)> {
        let mut v: Vec<f64> = (0..self.params.replicates).filter_map(f).filter(|x| x.is_finite()).collect();
        percentile_interval(&mut v)
    }
}

/// Quantile `q` of sorted values by linear interpolation between order statistics
/// (numpy's default); `None` for no values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let h = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let (a, b) = (*sorted.get(lo)?, *sorted.get(hi)?);
    Some(a + (h - lo as f64) * (b - a))
}

/// The central [`LEVEL`] percentile interval of `values` (sorted in place); `None` for no
/// values.
pub fn percentile_interval(values: &mut [f64]) -> Option<(f64, f64)> {
    values.sort_by(f64::total_cmp);
    let a = (1.0 - LEVEL) / 2.0;
    Some((quantile_sorted(values, a)?, quantile_sorted(values, 1.0 - a)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Invariant: the weights have the Poisson(1) mean and variance (1 and 1) within 3 %
    /// over 200,000 draws, and P(0) = e⁻¹ within 0.005.
    #[test]
    fn weights_are_poisson_one() {
        let n = 200_000u64;
        let ws: Vec<f64> = (0..n).map(|i| f64::from(poisson_weight(7, i / 100, i % 100))).collect();
        let mean = ws.iter().sum::<f64>() / n as f64;
        let var = ws.iter().map(|w| (w - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let p0 = ws.iter().filter(|w| **w == 0.0).count() as f64 / n as f64;
        assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "var {var}");
        assert!((p0 - (-1.0f64).exp()).abs() < 0.005, "p0 {p0}");
    }

    /// Known answer: numpy.quantile([1, 2, 3, 4], [0.025, 0.975]) = [1.075, 3.925].
    #[test]
    fn quantiles_match_numpy() {
        let (lo, hi) = percentile_interval(&mut [4.0, 1.0, 3.0, 2.0]).unwrap();
        assert!((lo - 1.075).abs() < 1e-12 && (hi - 3.925).abs() < 1e-12, "{lo} {hi}");
        assert_eq!(percentile_interval(&mut []), None);
    }

    /// Known answer: for the mean of n = 400 values with sample sd s, the 95 % bootstrap
    /// interval is mean ± 1.96 s / √n (normal theory) within 10 % of its half-width; the same
    /// seed gives the same interval bit for bit, another seed a different one.
    #[test]
    fn interval_of_a_mean_matches_normal_theory() {
        let n = 400;
        // A deterministic, skew-free sequence: x_i = sin(i) * 3 + 10.
        let xs: Vec<f64> = (0..n).map(|i| (i as f64).sin() * 3.0 + 10.0).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        let half = 1.959_964 * sd / (n as f64).sqrt();
        let run = |seed| {
            let mut bs = PoissonBootstrap::new(1, BootstrapParams { replicates: 2000, seed });
            for (i, &x) in xs.iter().enumerate() {
                bs.add(i as u64, &[Some(x)]);
            }
            bs.interval(0).unwrap()
        };
        let (lo, hi) = run(1);
        assert!(((hi - lo) / 2.0 - half).abs() < 0.1 * half, "[{lo}, {hi}] vs ±{half}");
        assert!(((lo + hi) / 2.0 - mean).abs() < 0.1 * half);
        assert_eq!(run(1), (lo, hi));
        assert_ne!(run(2), (lo, hi));
    }

    /// Invariant: one prompt (or identical prompts) gives a zero-width interval; a missing
    /// statistic gives none.
    #[test]
    fn degenerate_intervals() {
        let mut bs = PoissonBootstrap::new(2, BootstrapParams::default());
        bs.add(0, &[Some(3.0), None]);
        assert_eq!(bs.interval(0), Some((3.0, 3.0)));
        assert_eq!(bs.interval(1), None);
        bs.add(1, &[Some(3.0)]);
        assert_eq!(bs.interval(0), Some((3.0, 3.0)));
    }
}
