//! Attention statistics (metrics.md, "Attention").
//!
//! Each head's `T x T` pattern `A` (row `t` = query `t`, column `j` = key `j`), exactly
//! as the model uses it, is reduced to a [`HeadStats`] as soon as it is computed, so no
//! layer's full pattern needs to be stored; a layer's heads are then combined into a
//! [`LayerAttention`].
//!
//! | name | definition |
//! |---|---|
//! | `bos_attention` | `(1/T) Σ_{t=0}^{T−1} A[t,0]` (Gu et al.; includes query 0) |
//! | `bos_attention_excl` | `(1/(T−1)) Σ_{t≥1} A[t,0]` |
//! | `sink_head` | `bos_attention > ε` (strict), ε = 0.3 |
//! | `sink_rate` | fraction of a layer's heads that are sink heads |
//! | `attn_entropy` | mean over `t ≥ 1` of `−Σ_j A[t,j] ln A[t,j] / ln(t+1)` |
//! | `mixing_score` | mean of `attn_entropy` over a layer's heads |
//! | `identity_score` | mean over all `t` of `A[t,t]` |
//! | `prev_token_score` | mean over `t ≥ 1` of `A[t,t−1]` |
//! | `head_class` | first of sink / identity / previous-token / mixing that applies, else other |
//! | `learned_sink_mass` | `max(0, 1 − mean_t Σ_j A[t,j])` |
//!
//! Conventions (record them in the manifest via [`AttentionParams`] and this list):
//! - `head_class`: `sink` when the head is a sink head (`bos_attention > sink_epsilon`,
//!   the same test as `sink_rate`, so every head counted in `sink_rate` is classed
//!   `sink`); else `identity` when `identity_score > class_tau`; else `previous-token`
//!   when `prev_token_score > class_tau`; else `mixing` when
//!   `attn_entropy > mixing_threshold`; else `other`. All comparisons strict.
//! - Row entropies use the row as given, without renormalising rows that sum to less than
//!   1 (learned sinks); the sink's mass is reported only as `learned_sink_mass` and never
//!   folded into position 0. Zero entries contribute 0 (`0 ln 0 = 0`).
//! - `learned_sink_mass` averages `1 − Σ_j A[t,j]` over all queries `t = 0..T−1` and
//!   clamps the (round-off) negative values of ordinary softmax heads to 0.
//! - With `T = 1` the `t ≥ 1` means (`bos_attention_excl`, `attn_entropy`,
//!   `prev_token_score`) are `None`.

use serde::{Deserialize, Serialize};

use crate::{Matrix, MetricsError};

/// Thresholds of the attention statistics; serialisable so that a run's manifest records
/// the values used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionParams {
    /// ε: a head is a sink head when `bos_attention > sink_epsilon` (strict). Default 0.3
    /// (Gu et al.).
    pub sink_epsilon: f64,
    /// τ: `identity` / `previous-token` classes need their score `> class_tau`.
    /// Default 0.5.
    pub class_tau: f64,
    /// A head is `mixing` when `attn_entropy > mixing_threshold`. Default 0.7.
    pub mixing_threshold: f64,
}

impl Default for AttentionParams {
    fn default() -> Self {
        Self { sink_epsilon: 0.3, class_tau: 0.5, mixing_threshold: 0.7 }
    }
}

/// The class of a head, checked in this order (see the module docs); defined in the result
/// schema, whose files record it.
pub use sinkscope_schema::HeadClass;

/// Statistics of one head's pattern (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeadStats {
    /// `bos_attention`.
    pub bos_attention: f64,
    /// `bos_attention_excl`; `None` when `T = 1`.
    pub bos_attention_excl: Option<f64>,
    /// `attn_entropy`; `None` when `T = 1`.
    pub attn_entropy: Option<f64>,
    /// `identity_score`.
    pub identity_score: f64,
    /// `prev_token_score`; `None` when `T = 1`.
    pub prev_token_score: Option<f64>,
    /// `learned_sink_mass`.
    pub learned_sink_mass: f64,
    /// `sink_head`: `bos_attention > sink_epsilon`.
    pub sink_head: bool,
    /// `head_class`.
    pub head_class: HeadClass,
}

/// Names of [`HeadStats::to_named`], in order.
pub const HEAD_METRIC_NAMES: [&str; 7] = [
    "bos_attention",
    "bos_attention_excl",
    "attn_entropy",
    "identity_score",
    "prev_token_score",
    "learned_sink_mass",
    "sink_head",
];

impl HeadStats {
    /// Reduces one head's `T x T` pattern to its statistics.
    ///
    /// # Errors
    /// [`MetricsError::NotSquare`] when the pattern is not `T x T`.
    ///
    /// ```
    /// use sinkscope_metrics::{Matrix, attention::{AttentionParams, HeadClass, HeadStats}};
    /// // Every query attends only to position 0: a perfect sink.
    /// let a = [1.0_f32, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
    /// let h = HeadStats::from_pattern(&Matrix::new(&a, 3, 3)?, &AttentionParams::default())?;
    /// assert_eq!(h.bos_attention, 1.0);
    /// assert_eq!(h.head_class, HeadClass::Sink);
    /// # Ok::<(), sinkscope_metrics::MetricsError>(())
    /// ```
    pub fn from_pattern(pattern: &Matrix<'_>, params: &AttentionParams) -> Result<Self, MetricsError> {
        let t_len = pattern.rows();
        if pattern.cols() != t_len {
            return Err(MetricsError::NotSquare { rows: t_len, cols: pattern.cols() });
        }
        let mut bos_sum = 0.0_f64;
        let mut bos_excl_sum = 0.0_f64;
        let mut diag_sum = 0.0_f64;
        let mut prev_sum = 0.0_f64;
        let mut ent_sum = 0.0_f64;
        let mut row_mass_sum = 0.0_f64;
        for (t, row) in pattern.iter_rows().enumerate() {
            let a0 = row.first().copied().map_or(0.0, f64::from);
            bos_sum += a0;
            diag_sum += row.get(t).copied().map_or(0.0, f64::from);
            let mut mass = 0.0_f64;
            let mut h = 0.0_f64;
            for &a in row {
                let a = f64::from(a);
                mass += a;
                if a > 0.0 {
                    h -= a * a.ln();
                }
            }
            row_mass_sum += mass;
            if t >= 1 {
                bos_excl_sum += a0;
                prev_sum += row.get(t - 1).copied().map_or(0.0, f64::from);
                ent_sum += h / ((t + 1) as f64).ln();
            }
        }
        let n = t_len as f64;
        let n_excl = t_len.saturating_sub(1);
        let mean_excl = |s: f64| (n_excl > 0).then(|| s / n_excl as f64);
        let bos_attention = bos_sum / n;
        let attn_entropy = mean_excl(ent_sum);
        let identity_score = diag_sum / n;
        let prev_token_score = mean_excl(prev_sum);
        let sink_head = bos_attention > params.sink_epsilon;
        let head_class = classify(sink_head, identity_score, prev_token_score, attn_entropy, params);
        Ok(Self {
            bos_attention,
            bos_attention_excl: mean_excl(bos_excl_sum),
            attn_entropy,
            identity_score,
            prev_token_score,
            learned_sink_mass: (1.0 - row_mass_sum / n).max(0.0),
            sink_head,
            head_class,
        })
    }

    /// The statistics under their metric names ([`HEAD_METRIC_NAMES`]); `sink_head` is
    /// 1.0 or 0.0. `head_class` is categorical and not included.
    pub fn to_named(&self) -> Vec<(&'static str, Option<f64>)> {
        vec![
            ("bos_attention", Some(self.bos_attention)),
            ("bos_attention_excl", self.bos_attention_excl),
            ("attn_entropy", self.attn_entropy),
            ("identity_score", Some(self.identity_score)),
            ("prev_token_score", self.prev_token_score),
            ("learned_sink_mass", Some(self.learned_sink_mass)),
            ("sink_head", Some(if self.sink_head { 1.0 } else { 0.0 })),
        ]
    }
}

fn classify(
    sink_head: bool,
    identity_score: f64,
    prev_token_score: Option<f64>,
    attn_entropy: Option<f64>,
    params: &AttentionParams,
) -> HeadClass {
    if sink_head {
        HeadClass::Sink
    } else if identity_score > params.class_tau {
        HeadClass::Identity
    } else if prev_token_score.is_some_and(|s| s > params.class_tau) {
        HeadClass::PreviousToken
    } else if attn_entropy.is_some_and(|e| e > params.mixing_threshold) {
        HeadClass::Mixing
    } else {
        HeadClass::Other
    }
}

/// The attention statistics of one layer (block `l`): per-head values and their
/// layer-level summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerAttention {
    /// Per-head statistics, in head order.
    pub heads: Vec<HeadStats>,
    /// `sink_rate`: fraction of heads with `sink_head`; `None` with no heads.
    pub sink_rate: Option<f64>,
    /// `mixing_score`: mean of `attn_entropy` over heads (heads with `None` skipped).
    pub mixing_score: Option<f64>,
    /// Mean over heads of `bos_attention`.
    pub bos_attention: Option<f64>,
    /// Mean over heads of `bos_attention_excl`.
    pub bos_attention_excl: Option<f64>,
    /// Mean over heads of `identity_score`.
    pub identity_score: Option<f64>,
    /// Mean over heads of `prev_token_score`.
    pub prev_token_score: Option<f64>,
    /// Mean over heads of `learned_sink_mass`.
    pub learned_sink_mass: Option<f64>,
}

/// Names of [`LayerAttention::to_named`], in order.
pub const LAYER_ATTENTION_METRIC_NAMES: [&str; 7] = [
    sinkscope_schema::Metric::SinkRate.name(),
    sinkscope_schema::Metric::MixingScore.name(),
    sinkscope_schema::Metric::BosAttention.name(),
    sinkscope_schema::Metric::BosAttentionExcl.name(),
    sinkscope_schema::Metric::IdentityScore.name(),
    sinkscope_schema::Metric::PrevTokenScore.name(),
    sinkscope_schema::Metric::LearnedSinkMass.name(),
];

/// `sink_rate`: the fraction of heads whose `bos_attention > epsilon` (strict); `None`
/// with no heads.
pub fn sink_rate(bos_attention: &[f64], epsilon: f64) -> Option<f64> {
    mean_of(bos_attention.iter().map(|&b| Some(if b > epsilon { 1.0 } else { 0.0 })))
}

/// `mixing_score`: the mean of the heads' `attn_entropy` (missing values skipped);
/// `None` when no head has one.
pub fn mixing_score(attn_entropy: &[Option<f64>]) -> Option<f64> {
    mean_of(attn_entropy.iter().copied())
}

fn mean_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let (sum, n) = values.flatten().fold((0.0_f64, 0_usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

impl LayerAttention {
    /// Combines a layer's per-head statistics.
    pub fn from_heads(heads: Vec<HeadStats>) -> Self {
        let sink_rate = mean_of(heads.iter().map(|h| Some(if h.sink_head { 1.0 } else { 0.0 })));
        let mixing_score = mean_of(heads.iter().map(|h| h.attn_entropy));
        let bos_attention = mean_of(heads.iter().map(|h| Some(h.bos_attention)));
        let bos_attention_excl = mean_of(heads.iter().map(|h| h.bos_attention_excl));
        let identity_score = mean_of(heads.iter().map(|h| Some(h.identity_score)));
        let prev_token_score = mean_of(heads.iter().map(|h| h.prev_token_score));
        let learned_sink_mass = mean_of(heads.iter().map(|h| Some(h.learned_sink_mass)));
        Self {
            heads,
            sink_rate,
            mixing_score,
            bos_attention,
            bos_attention_excl,
            identity_score,
            prev_token_score,
            learned_sink_mass,
        }
    }

    /// Computes every head's statistics from a layer's patterns, `data` being row-major
    /// `[n_heads, T, T]`.
    ///
    /// # Errors
    /// [`MetricsError::HeadShape`] when `data.len() != n_heads · T · T` or either is 0,
    /// and any error of [`Matrix::new`] (non-finite values).
    pub fn from_patterns(
        data: &[f32],
        n_heads: usize,
        t: usize,
        params: &AttentionParams,
    ) -> Result<Self, MetricsError> {
        let per_head = t.saturating_mul(t);
        if n_heads == 0 || t == 0 || Some(data.len()) != per_head.checked_mul(n_heads) {
            return Err(MetricsError::HeadShape { len: data.len(), n_heads, t });
        }
        let heads = data
            .chunks_exact(per_head)
            .map(|chunk| HeadStats::from_pattern(&Matrix::new(chunk, t, t)?, params))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_heads(heads))
    }

    /// Number of heads in each class, in [`HeadClass::ALL`] order.
    pub fn class_counts(&self) -> [(HeadClass, usize); 5] {
        HeadClass::ALL.map(|c| (c, self.heads.iter().filter(|h| h.head_class == c).count()))
    }

    /// The layer-level statistics under their metric names
    /// ([`LAYER_ATTENTION_METRIC_NAMES`]); per-head values stay in [`Self::heads`].
    pub fn to_named(&self) -> Vec<(&'static str, Option<f64>)> {
        let values = [
            self.sink_rate,
            self.mixing_score,
            self.bos_attention,
            self.bos_attention_excl,
            self.identity_score,
            self.prev_token_score,
            self.learned_sink_mass,
        ];
        LAYER_ATTENTION_METRIC_NAMES.into_iter().zip(values).collect()
    }
}
