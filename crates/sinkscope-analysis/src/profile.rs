//! `profile`: the paper's per-layer measurements on a prompt set.
//!
//! Each prompt is tokenised ([`prepare`]), run once through the model with the streaming
//! collectors of [`crate::collectors`] ([`profile_tokens`]), turned into one
//! [`PromptRecord`] (one line of `prompts.jsonl`, appended and flushed as soon as the prompt
//! completes) and folded into an [`Aggregator`] whose state does not grow with the number
//! of prompts. At the end the aggregator writes `metrics.json` and [`run_profile`] writes
//! `manifest.json` (see `docs/results-schema.md`).
//!
//! Layer-indexed arrays have `L + 1` entries (`l = 0` is `X(0)`, `l ≥ 1` the output of
//! block `l` before the final norm); attention and MLP metrics belong to block `l` and
//! their entry 0 is `null`.

use crate::aggregate::{Aggregator, MetricsFile};
use crate::collectors::{AttentionCollector, MlpCollector, ResidualCollector, SinkValueCollector};
use crate::datasets::{Example, Provenance};
use crate::error::{AnalysisError, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sinkscope_io::tokenizer::BosPolicy;
use sinkscope_io::ModelFiles;
use sinkscope_metrics::massive_layers::{detect_massive_layers, MassiveLayerParams, MlpOutNorms};
use sinkscope_metrics::norms::TopActivation;
use sinkscope_metrics::values::SinkValueStats;
use sinkscope_metrics::{AttentionParams, HeadClass, LayerAttention, LayerMetrics, MetricsError};
use sinkscope_model::{ForwardCtx, Model};
use sinkscope_schema::Metric;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Schema version of `manifest.json`, `metrics.json` and `prompts.jsonl` (the one of
/// `sinkscope-schema`, which the readers share).
pub use sinkscope_schema::SCHEMA_VERSION;

/// Options of a profile run; every value is recorded in the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileOptions {
    /// Attention thresholds: ε (sink), τ (head classes), mixing threshold.
    pub attention: AttentionParams,
    /// Massive-layer detection thresholds.
    pub massive: MassiveLayerParams,
    /// Number of top activations kept per layer (metrics.md: k = 5).
    pub top_k: usize,
    /// BOS policy.
    pub bos: BosPolicy,
    /// Keep at most this many tokens of each prompt (a cap always cuts).
    pub max_tokens: Option<usize>,
    /// Cut prompts longer than the model's context instead of failing.
    pub truncate: bool,
    /// Interventions applied during every forward pass (`ablate` runs; empty for a plain
    /// profile).
    pub edits: Vec<sinkscope_spec::Edit>,
    /// Also compute the model's own next-token NLL (runs the LM head).
    pub nll: bool,
    /// Continue an interrupted run in the output folder ([`crate::resume`]). How the run
    /// executes, not what it measures: not recorded among the options.
    pub resume: bool,
    /// `--first-token`: put this token at position 0 instead of any BOS (`bos` must be
    /// `auto` or `never`).
    pub first_token: Option<FirstTokenSpec>,
    /// Thresholds of the Mix–Compress–Refine rule.
    pub phases: sinkscope_metrics::phases::PhaseParams,
    /// Replicates and seed of the bootstrap intervals over prompts.
    pub bootstrap: sinkscope_metrics::bootstrap::BootstrapParams,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            attention: AttentionParams::default(),
            massive: MassiveLayerParams::default(),
            top_k: sinkscope_metrics::norms::DEFAULT_TOP_K,
            bos: BosPolicy::Auto,
            max_tokens: None,
            truncate: false,
            edits: Vec::new(),
            nll: false,
            resume: false,
            first_token: None,
            phases: sinkscope_metrics::phases::PhaseParams::default(),
            bootstrap: sinkscope_metrics::bootstrap::BootstrapParams::default(),
        }
    }
}

impl ProfileOptions {
    /// Checks the values (ε, τ and the mixing threshold finite, `max_tokens ≥ 2`).
    ///
    /// # Errors
    /// [`AnalysisError::Options`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        let a = &self.attention;
        for (name, v) in [
            ("epsilon", a.sink_epsilon),
            ("tau", a.class_tau),
            ("mixing threshold", a.mixing_threshold),
            ("massive mlp factor", self.massive.mlp_factor),
            ("massive ratio factor", self.massive.ratio_factor),
        ] {
            if !v.is_finite() {
                return Err(AnalysisError::Options(format!("{name} must be a finite number, got {v}")));
            }
        }
        if !(a.sink_epsilon > 0.0 && a.sink_epsilon < 1.0) {
            return Err(AnalysisError::Options(format!(
                "--epsilon must be in (0, 1) (a head is a sink when its BOS attention exceeds it), got {}",
                a.sink_epsilon
            )));
        }
        if self.first_token.is_some() && matches!(self.bos, BosPolicy::Always | BosPolicy::Eos) {
            return Err(AnalysisError::Options(format!(
                "--first-token replaces the BOS at position 0; it cannot be combined with --bos {}",
                self.bos
            )));
        }
        if let Some(m) = self.max_tokens {
            if m < 2 {
                return Err(AnalysisError::Options(format!(
                    "--max-tokens must be at least 2 (the metrics need T >= 2), got {m}"
                )));
            }
        }
        Ok(())
    }

    /// The `options` block of the manifest.
    pub fn to_json(&self) -> Value {
        json!({
            "epsilon": self.attention.sink_epsilon,
            "tau": self.attention.class_tau,
            "mixing_threshold": self.attention.mixing_threshold,
            "top_k": self.top_k,
            "massive_mlp_factor": self.massive.mlp_factor,
            "massive_ratio_factor": self.massive.ratio_factor,
            "massive_abs_threshold": sinkscope_metrics::norms::MASSIVE_ABS_THRESHOLD,
            "massive_median_factor": sinkscope_metrics::norms::MASSIVE_MEDIAN_FACTOR,
            "compress_min_sink_rate": self.phases.sink_rate_min,
            "phases": self.phases,
            "bootstrap": {"method": "poisson", "replicates": self.bootstrap.replicates,
                          "seed": self.bootstrap.seed, "level": sinkscope_metrics::bootstrap::LEVEL},
            "bound_tolerance": sinkscope_metrics::theorem::BOUND_TOLERANCE,
            "renyi_alpha": 2.0,
            "bos": self.bos.as_str(),
            "first_token": self.first_token.as_ref().map(FirstTokenSpec::to_json),
            "max_tokens": self.max_tokens,
            "truncate": self.truncate,
            "edits": self.edits,
            "nll": self.nll,
        })
    }
}

/// `--first-token ID|TEXT`: the token put at position 0 of every prompt instead of a BOS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstTokenSpec {
    /// A token id.
    Id(u32),
    /// A text that must tokenise (without BOS) to exactly one token.
    Text(String),
}

impl FirstTokenSpec {
    /// Parses `ID` (all digits) or `TEXT`.
    pub fn parse(s: &str) -> Self {
        match s.parse::<u32>() {
            Ok(id) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => FirstTokenSpec::Id(id),
            _ => FirstTokenSpec::Text(s.to_string()),
        }
    }

    /// The token id.
    ///
    /// # Errors
    /// [`AnalysisError::Options`] for an id beyond the vocabulary or a text that is not one
    /// token.
    pub fn resolve(&self, files: &ModelFiles) -> Result<u32> {
        let t = &files.tokenizer;
        match self {
            FirstTokenSpec::Id(id) => {
                if (*id as usize) < t.vocab_size() {
                    Ok(*id)
                } else {
                    Err(AnalysisError::Options(format!(
                        "--first-token {id}: beyond the vocabulary ({} ids)",
                        t.vocab_size()
                    )))
                }
            }
            FirstTokenSpec::Text(text) => {
                let e = t
                    .encode(text, BosPolicy::Never)
                    .map_err(|source| AnalysisError::Tokenize { id: "--first-token".into(), source })?;
                match e.ids.as_slice() {
                    [id] => Ok(*id),
                    ids => Err(AnalysisError::Options(format!(
                        "--first-token {text:?} is {} tokens ({:?}); give one token or its id",
                        ids.len(),
                        e.tokens
                    ))),
                }
            }
        }
    }

    /// As recorded in the manifest.
    pub fn to_json(&self) -> Value {
        match self {
            FirstTokenSpec::Id(id) => json!({"id": id}),
            FirstTokenSpec::Text(t) => json!({"text": t}),
        }
    }
}

/// A tokenised prompt, cut as the options ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Token ids (BOS included when prepended).
    pub ids: Vec<u32>,
    /// Whether a BOS was prepended.
    pub bos_prepended: bool,
    /// The number of tokens before any cut.
    pub n_tokens_original: usize,
}

impl Prepared {
    /// Whether the prompt was cut.
    pub fn truncated(&self) -> bool {
        self.ids.len() < self.n_tokens_original
    }
}

/// Tokenises `text` and applies the length rules: `--max-tokens T` keeps the first `T`
/// tokens; a prompt longer than the model's context is an error unless `truncate` is set
/// (then it is cut at the context); fewer than 2 tokens is an error.
///
/// # Errors
/// [`AnalysisError::Tokenize`], [`AnalysisError::PromptTooLong`],
/// [`AnalysisError::PromptTooShort`].
pub fn prepare(files: &ModelFiles, id: &str, text: &str, opts: &ProfileOptions) -> Result<Prepared> {
    let tok = |source| AnalysisError::Tokenize { id: id.to_string(), source };
    let mut enc = match &opts.first_token {
        None => files.tokenizer.encode(text, opts.bos).map_err(tok)?,
        Some(spec) => {
            let first = spec.resolve(files)?;
            let mut e = files.tokenizer.encode(text, BosPolicy::Never).map_err(tok)?;
            e.ids.insert(0, first);
            e.tokens.insert(0, files.tokenizer.id_to_token(first).unwrap_or_default());
            e.bos_prepended = true;
            e
        }
    };
    let mut ids = std::mem::take(&mut enc.ids);
    let n_tokens_original = ids.len();
    if let Some(m) = opts.max_tokens {
        ids.truncate(m);
    }
    let ctx = files.config.context_length;
    if ids.len() > ctx {
        if !opts.truncate {
            return Err(AnalysisError::PromptTooLong { id: id.to_string(), n_tokens: ids.len(), limit: ctx });
        }
        ids.truncate(ctx);
    }
    if ids.len() < 2 {
        return Err(AnalysisError::PromptTooShort { id: id.to_string(), n_tokens: ids.len() });
    }
    Ok(Prepared { ids, bos_prepended: enc.bos_prepended, n_tokens_original })
}

/// Everything the collectors measured on one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptProfile {
    /// Metrics of `X(l)`, `l = 0..L`.
    pub layers: Vec<LayerMetrics>,
    /// Attention statistics of block `l` at index `l − 1`.
    pub attention: Vec<LayerAttention>,
    /// MLP output norms of block `l` at index `l − 1`.
    pub mlp: Vec<MlpOutNorms>,
    /// Per-head sink-value statistics of block `l` at index `l − 1`.
    pub values: Vec<Vec<SinkValueStats>>,
    /// The model's own next-token statistics (when [`ProfileOptions::nll`] is set).
    pub nll: Option<sinkscope_metrics::lens::LensStats>,
}

/// Runs the model once on `ids` with the three collectors (no logits) and returns their
/// reductions.
///
/// # Errors
/// [`AnalysisError::Forward`] (a NaN/Inf names its site), [`AnalysisError::Metrics`],
/// [`AnalysisError::MissingSite`].
pub fn profile_tokens(model: &Model, id: &str, ids: &[u32], opts: &ProfileOptions) -> Result<PromptProfile> {
    crate::pack::run_one(model, (id, ids), &|_| Collectors::new(model.config.n_layers, opts))
}

/// [`profile_tokens`] for several prompts in one packed forward pass
/// ([`Model::forward_packed`]): the same results, bit for bit, one per prompt in order. When
/// the packed pass fails, the prompts are rerun one by one, so that each error (or result) is
/// exactly what [`profile_tokens`] gives for that prompt.
pub fn profile_pack(
    model: &Model,
    prompts: &[(&str, &[u32])],
    opts: &ProfileOptions,
) -> Vec<Result<PromptProfile>> {
    crate::pack::run_pack(model, prompts, &|_| Collectors::new(model.config.n_layers, opts))
}

/// Default `pack_tokens` of a profile ([`ProfileInput::pack_tokens`]): packs of up to 128
/// tokens give the projections enough rows to run near the kernel's peak (BENCHMARKS.md)
/// while keeping several packs per worker for short prompt sets.
pub const DEFAULT_PACK_TOKENS: usize = 128;

/// The hooks of one prompt's profile pass: the edits (first, so that every collector sees the
/// edited activations) and the three collectors.
struct Collectors {
    editor: sinkscope_model::EditHook,
    resid: ResidualCollector,
    attn: AttentionCollector,
    mlp: MlpCollector,
    values: SinkValueCollector,
    /// Run the editor (there are edits).
    edits: bool,
    /// Ask for the logits (for the model's NLL).
    nll: bool,
}

impl Collectors {
    fn new(n_layers: usize, opts: &ProfileOptions) -> Self {
        Collectors {
            editor: sinkscope_model::EditHook::new(opts.edits.clone()),
            resid: ResidualCollector::new(n_layers, opts.top_k),
            attn: AttentionCollector::new(n_layers, opts.attention),
            mlp: MlpCollector::new(n_layers),
            values: SinkValueCollector::new(n_layers),
            edits: !opts.edits.is_empty(),
            nll: opts.nll,
        }
    }
}

impl crate::pack::HookSet for Collectors {
    type Output = PromptProfile;

    fn ctx(&mut self) -> ForwardCtx<'_> {
        let mut ctx = ForwardCtx::new();
        if self.edits {
            ctx = ctx.with(&mut self.editor);
        }
        let ctx = ctx.with(&mut self.resid).with(&mut self.attn).with(&mut self.mlp).with(&mut self.values);
        if self.nll {
            ctx.with_logits()
        } else {
            ctx
        }
    }

    /// The reductions, given the outcome of the forward pass.
    fn finish(
        mut self,
        id: &str,
        ids: &[u32],
        result: std::result::Result<Option<Tensor>, sinkscope_model::ModelError>,
    ) -> Result<PromptProfile> {
        let typed = [
            self.resid.take_error(),
            self.attn.take_error(),
            self.mlp.take_error(),
            self.values.take_error(),
        ]
        .into_iter()
        .flatten()
        .next();
        if let Some((site, source)) = typed {
            if let MetricsError::NonFinite { .. } = source {
                let source = sinkscope_model::ModelError::NonFinite { site };
                return Err(AnalysisError::Forward { id: id.to_string(), source });
            }
            return Err(AnalysisError::Metrics { id: id.to_string(), site, source });
        }
        let logits = result.map_err(|source| AnalysisError::Forward { id: id.to_string(), source })?;
        let nll = match logits {
            Some(l) => Some(own_nll(id, &l, ids)?),
            None => None,
        };
        use sinkscope_spec::{HookSite, SiteKind};
        let layers = all_present(id, self.resid.into_layers(), |l| match l {
            0 => HookSite::global(SiteKind::Embed),
            l => HookSite::block(l - 1, SiteKind::ResidPost),
        })?;
        let attention =
            all_present(id, self.attn.into_blocks(), |b| HookSite::block(b, SiteKind::AttnPattern))?;
        let mlp = all_present(id, self.mlp.into_blocks(), |b| HookSite::block(b, SiteKind::MlpOut))?;
        let values =
            all_present(id, self.values.into_blocks(), |b| HookSite::block(b, SiteKind::AttnPattern))?;
        Ok(PromptProfile { layers, attention, mlp, values, nll })
    }
}

/// The values of a collector that must have seen every one of its sites; the first gap is
/// named (`site(i)` is the site of entry `i`).
fn all_present<T>(
    id: &str,
    values: Vec<Option<T>>,
    site: impl Fn(usize) -> sinkscope_spec::HookSite,
) -> Result<Vec<T>> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| AnalysisError::MissingSite { id: id.to_string(), site: site(i) }))
        .collect()
}

/// The names of the attention curves added to the residual ones (all `L + 1` entries,
/// entry 0 `null`): the layer summaries of [`LayerAttention::to_named`] (head means) plus
/// `sink_rate_excl_q0`.
pub const ATTENTION_CURVES: [&str; 8] = [
    Metric::SinkRate.name(),
    Metric::SinkRateExclQ0.name(),
    Metric::MixingScore.name(),
    Metric::BosAttention.name(),
    Metric::BosAttentionExcl.name(),
    Metric::IdentityScore.name(),
    Metric::PrevTokenScore.name(),
    Metric::LearnedSinkMass.name(),
];

/// The head-class curves (`L + 1` entries, entry 0 `null`): the fraction of the layer's
/// heads in each class of [`HeadClass::ALL`] (`head_class` of the prompt's own pattern), in
/// that order; they sum to 1 and `head_frac_sink` equals `sink_rate`.
pub const CLASS_CURVES: [&str; 5] = [
    Metric::HeadFracSink.name(),
    Metric::HeadFracIdentity.name(),
    Metric::HeadFracPreviousToken.name(),
    Metric::HeadFracMixing.name(),
    Metric::HeadFracOther.name(),
];

/// The sink-value curves (`L + 1` entries, entry 0 `null`; metrics.md, "Sink values"): the
/// means over the layer's heads of `sink_value_norm`, `sink_value_ratio` and
/// `sink_output_share`, and the mean `sink_output_share` over its sink heads only (`null`
/// when it has none).
pub const VALUE_CURVES: [&str; 4] = [
    Metric::SinkValueNorm.name(),
    Metric::SinkValueRatio.name(),
    Metric::SinkOutputShare.name(),
    Metric::SinkOutputShareSinkHeads.name(),
];

/// The names of the MLP curves (`L + 1` entries, entry 0 `null`).
pub const MLP_CURVES: [&str; 3] =
    [Metric::MlpBosNorm.name(), Metric::MlpOtherMedian.name(), Metric::MlpRatio.name()];

impl PromptProfile {
    /// `L`, the number of blocks.
    pub fn n_layers(&self) -> usize {
        self.attention.len()
    }

    /// Every scalar per-layer metric as `(name, L + 1 values)`: the residual metrics of
    /// [`LayerMetrics::to_named`], then [`ATTENTION_CURVES`], [`MLP_CURVES`], [`CLASS_CURVES`]
    /// and [`VALUE_CURVES`].
    /// `sink_rate_excl_q0` counts heads with `bos_attention_excl > ε` (strict).
    pub fn curves(&self, epsilon: f64) -> Vec<(&'static str, Vec<Option<f64>>)> {
        let n = self.layers.len();
        let mut out: Vec<(&'static str, Vec<Option<f64>>)> = Vec::new();
        for (l, m) in self.layers.iter().enumerate() {
            for (k, (name, v)) in m.to_named().into_iter().enumerate() {
                if l == 0 {
                    out.push((name, vec![None; n]));
                }
                if let Some(slot) = out.get_mut(k).and_then(|(_, c)| c.get_mut(l)) {
                    *slot = v;
                }
            }
        }
        let block_curve = |f: &dyn Fn(usize) -> Option<f64>| -> Vec<Option<f64>> {
            std::iter::once(None).chain((0..self.attention.len()).map(f)).collect()
        };
        for name in ATTENTION_CURVES {
            let curve = block_curve(&|b| {
                let a = self.attention.get(b)?;
                match name {
                    "sink_rate_excl_q0" => {
                        let excl: Vec<Option<f64>> = a.heads.iter().map(|h| h.bos_attention_excl).collect();
                        let n = excl.iter().flatten().count();
                        (n > 0).then(|| {
                            excl.iter().flatten().filter(|&&v| v > epsilon).count() as f64 / n as f64
                        })
                    }
                    other => a.to_named().into_iter().find(|(k, _)| *k == other).and_then(|(_, v)| v),
                }
            });
            out.push((name, curve));
        }
        for name in MLP_CURVES {
            let curve = block_curve(&|b| {
                let m = self.mlp.get(b)?;
                match name {
                    "mlp_bos_norm" => Some(m.bos_norm),
                    "mlp_other_median" => m.other_median,
                    _ => m.other_median.filter(|&med| med > 0.0).map(|med| m.bos_norm / med),
                }
            });
            out.push((name, curve));
        }
        for (name, class) in CLASS_CURVES.into_iter().zip(HeadClass::ALL) {
            let curve = block_curve(&|b| {
                let a = self.attention.get(b)?;
                (!a.heads.is_empty()).then(|| {
                    a.heads.iter().filter(|h| h.head_class == class).count() as f64 / a.heads.len() as f64
                })
            });
            out.push((name, curve));
        }
        let mean = |it: &mut dyn Iterator<Item = Option<f64>>| {
            let (s, n) = it.flatten().fold((0.0_f64, 0_usize), |(s, n), v| (s + v, n + 1));
            (n > 0).then(|| s / n as f64)
        };
        for name in VALUE_CURVES {
            let curve = block_curve(&|b| {
                let v = self.values.get(b)?;
                match name {
                    "sink_value_norm" => mean(&mut v.iter().map(|s| Some(s.sink_value_norm))),
                    "sink_value_ratio" => mean(&mut v.iter().map(|s| s.sink_value_ratio)),
                    "sink_output_share" => mean(&mut v.iter().map(|s| s.sink_output_share)),
                    _ => {
                        let heads = &self.attention.get(b)?.heads;
                        mean(
                            &mut v
                                .iter()
                                .zip(heads)
                                .filter(|(_, h)| h.sink_head)
                                .map(|(s, _)| s.sink_output_share),
                        )
                    }
                }
            });
            out.push((name, curve));
        }
        out
    }

    /// Theorem-1 bound violations over every layer (0 unless there is a bug).
    pub fn bound_violations(&self) -> usize {
        self.layers.iter().map(|m| m.theorem.violations()).sum()
    }
}

/// The model's next-token statistics from its `[T, V]` logits.
fn own_nll(
    id: &str,
    logits: &candle_core::Tensor,
    ids: &[u32],
) -> Result<sinkscope_metrics::lens::LensStats> {
    let fwd = |e: candle_core::Error| AnalysisError::Forward { id: id.to_string(), source: e.into() };
    let (t, v) = logits.dims2().map_err(fwd)?;
    let data: Vec<f32> = logits.flatten_all().and_then(|x| x.to_vec1()).map_err(fwd)?;
    sinkscope_metrics::Matrix::new(&data, t, v)
        .map_err(|e| e.to_string())
        .and_then(|m| sinkscope_metrics::lens::next_token_nll(&m, ids, None).map_err(|e| e.to_string()))
        .map_err(|e| AnalysisError::Options(format!("prompt '{id}': model NLL: {e}")))
}

/// The token at position 0 of a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstToken {
    /// Its id.
    pub id: u32,
    /// Its vocabulary string.
    pub token: Option<String>,
    /// Whether it is the BOS token (prepended, or the BOS id found as the first token).
    pub is_bos: bool,
    /// Whether sinkscope prepended it.
    pub bos_prepended: bool,
}

/// Per-head values of one prompt, each `L + 1` entries (entry 0 `null`, entry `l` the
/// heads of block `l` in head order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadRecord {
    /// `bos_attention(l, h)`.
    pub bos_attention: Vec<Option<Vec<f64>>>,
    /// `bos_attention_excl(l, h)`.
    pub bos_attention_excl: Vec<Option<Vec<Option<f64>>>>,
    /// `attn_entropy(l, h)`.
    pub attn_entropy: Vec<Option<Vec<Option<f64>>>>,
    /// `identity_score(l, h)`.
    pub identity_score: Vec<Option<Vec<f64>>>,
    /// `prev_token_score(l, h)`.
    pub prev_token_score: Vec<Option<Vec<Option<f64>>>>,
    /// `head_class(l, h)`.
    pub head_class: Vec<Option<Vec<HeadClass>>>,
}

/// One line of `prompts.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    /// Prompt id.
    pub id: String,
    /// `T`, the number of tokens run.
    pub n_tokens: usize,
    /// Whether the prompt was cut (`--max-tokens` or `--truncate`).
    pub truncated: bool,
    /// The number of tokens before the cut.
    pub n_tokens_original: usize,
    /// The token ids run.
    pub token_ids: Vec<u32>,
    /// The token at position 0.
    pub first_token: FirstToken,
    /// The example's label (datasets with labels only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<bool>,
    /// Scalar per-layer metrics, `L + 1` values each (see [`PromptProfile::curves`]).
    pub metrics: BTreeMap<String, Vec<Option<f64>>>,
    /// Per-head values.
    pub heads: HeadRecord,
    /// The `top_k` largest `|X[i,j]|` of each layer `l = 0..L`.
    pub top_activations: Vec<Vec<TopActivation>>,
    /// Massive-activation blocks detected on this prompt's own curves.
    pub massive_layers: Vec<usize>,
    /// Theorem-1 bound violations over all layers (must be 0).
    pub bound_violations: usize,
    /// The model's own next-token NLL: `[sum over positions 1..T-1, number of positions]`
    /// (runs with `nll` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nll: Option<(f64, usize)>,
    /// The Mix–Compress–Refine boundaries of this prompt's own curves (`None` when it has no
    /// compressed layer; absent in records written before phases were per prompt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<PromptPhases>,
}

/// The phase boundaries of one prompt (`prompts.jsonl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptPhases {
    /// First layer of Compress.
    pub compress_start: usize,
    /// First layer of Refine, `None` when the prompt has none.
    pub refine_start: Option<usize>,
}

impl PromptRecord {
    /// Builds the record of a profiled prompt.
    ///
    /// # Errors
    /// [`AnalysisError::Aggregate`] if massive-layer detection rejects the curves (not
    /// expected: the curves come from the same prompt).
    pub fn new(
        id: &str,
        prepared: &Prepared,
        first_token: FirstToken,
        label: Option<bool>,
        profile: &PromptProfile,
        opts: &ProfileOptions,
    ) -> Result<Self> {
        let metrics: BTreeMap<String, Vec<Option<f64>>> = profile
            .curves(opts.attention.sink_epsilon)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        fn per_block<T>(
            attention: &[LayerAttention],
            f: impl Fn(&sinkscope_metrics::HeadStats) -> T,
        ) -> Vec<Option<Vec<T>>> {
            std::iter::once(None)
                .chain(attention.iter().map(|a| Some(a.heads.iter().map(&f).collect())))
                .collect()
        }
        let a = &profile.attention;
        let heads = HeadRecord {
            bos_attention: per_block(a, |h| h.bos_attention),
            bos_attention_excl: per_block(a, |h| h.bos_attention_excl),
            attn_entropy: per_block(a, |h| h.attn_entropy),
            identity_score: per_block(a, |h| h.identity_score),
            prev_token_score: per_block(a, |h| h.prev_token_score),
            head_class: per_block(a, |h| h.head_class),
        };
        let empty = Vec::new();
        let get = |k: &str| metrics.get(k).unwrap_or(&empty);
        let massive_layers = detect_massive_layers(
            get("mlp_bos_norm"),
            get("mlp_other_median"),
            get("bos_ratio"),
            &opts.massive,
        )
        .map_err(|source| AnalysisError::Aggregate { what: "massive layers of a prompt", source })?
        .into_iter()
        .map(|m| m.layer)
        .collect();
        let phases =
            crate::aggregate::curve_phases(&|n| metrics.get(n).cloned(), profile.n_layers(), &opts.phases)
                .map_err(|source| AnalysisError::Aggregate { what: "phases of a prompt", source })?
                .map(|p| PromptPhases { compress_start: p.compress_start(), refine_start: p.refine_start() });
        Ok(PromptRecord {
            id: id.to_string(),
            n_tokens: prepared.ids.len(),
            truncated: prepared.truncated(),
            n_tokens_original: prepared.n_tokens_original,
            token_ids: prepared.ids.clone(),
            first_token,
            label,
            top_activations: profile.layers.iter().map(|m| m.norms.top_activations.clone()).collect(),
            massive_layers,
            bound_violations: profile.bound_violations(),
            nll: profile.nll.as_ref().map(|s| (s.nll_sum, s.n_tokens)),
            phases,
            metrics,
            heads,
        })
    }
}

/// Describes the token at position 0 of `ids`.
pub fn first_token(files: &ModelFiles, ids: &[u32], bos_prepended: bool) -> FirstToken {
    let id = ids.first().copied().unwrap_or(0);
    FirstToken {
        id,
        token: files.tokenizer.id_to_token(id),
        is_bos: Some(id) == files.tokenizer.bos_id(),
        bos_prepended,
    }
}

/// Tokenises, runs and records one prompt.
///
/// # Errors
/// As [`prepare`], [`profile_tokens`] and [`PromptRecord::new`].
pub fn profile_example(
    model: &Model,
    files: &ModelFiles,
    example: &Example,
    opts: &ProfileOptions,
) -> Result<PromptRecord> {
    let prepared = prepare(files, &example.id, &example.text, opts)?;
    let profile = profile_tokens(model, &example.id, &prepared.ids, opts)?;
    let first = first_token(files, &prepared.ids, prepared.bos_prepended);
    PromptRecord::new(&example.id, &prepared, first, example.label, &profile, opts)
}

/// Where the prompts came from (recorded in the manifest's `data` block).
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A prompt file.
    File(FileSource),
    /// A dataset from [`crate::datasets`].
    Dataset(Box<Provenance>),
}

/// A prompt file as recorded in the manifest (and compared by `--resume`): its canonical path
/// and content hash, so that the spelling of the path does not matter.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSource {
    /// The canonical path.
    pub path: PathBuf,
    /// sha256 of the file's bytes (`None`: not known, e.g. in-memory prompts).
    pub sha256: Option<String>,
    /// Whether a UTF-8 byte-order mark was skipped.
    pub bom: bool,
}

impl From<PathBuf> for FileSource {
    fn from(path: PathBuf) -> Self {
        FileSource { path, sha256: None, bom: false }
    }
}

impl From<&sinkscope_io::prompts::PromptFile> for FileSource {
    fn from(f: &sinkscope_io::prompts::PromptFile) -> Self {
        FileSource { path: f.path.clone(), sha256: Some(f.sha256.clone()), bom: f.bom }
    }
}

/// The manifest blocks that the caller knows best (the CLI builds them).
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestHeader {
    /// `tool`: name, version, command line, engine.
    pub tool: Value,
    /// `model`: path, format, sha256, family, config, dtype mix.
    pub model: Value,
    /// `tokenizer`: source, vocabulary, BOS policy and token.
    pub tokenizer: Value,
    /// Seconds spent loading the model.
    pub load_s: f64,
    /// Further top-level manifest blocks (e.g. the memory estimate).
    pub extra: serde_json::Map<String, Value>,
}

/// Progress reports from [`run_profile`] (the CLI draws a bar).
pub trait Progress {
    /// Called after each prompt: prompts done, tokens done, time since the run started.
    fn prompt_done(&mut self, done: usize, tokens: usize, elapsed: Duration);
}

/// A [`Progress`] that reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn prompt_done(&mut self, _: usize, _: usize, _: Duration) {}
}

/// What a finished run reports back.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSummary {
    /// Prompts profiled.
    pub n_prompts: usize,
    /// Tokens run.
    pub n_tokens: usize,
    /// Seconds spent on the prompts (forward passes and metrics, no load).
    pub run_s: f64,
    /// `n_tokens / run_s`.
    pub tokens_per_s: f64,
    /// Peak resident memory of the process (VmHWM), MiB; `None` off Linux.
    pub peak_rss_mib: Option<f64>,
    /// Theorem-1 violations over all prompts and layers (must be 0).
    pub bound_violations: usize,
    /// The aggregated metrics (as written to `metrics.json`).
    pub metrics: MetricsFile,
    /// [`Aggregator::footprint`] at the end: the run's only state that lives across
    /// prompts (it must not grow with their number).
    pub aggregator_footprint: usize,
}

/// CPU time (user + system, all threads) this process has used so far, in seconds, from
/// `/proc/self/stat` (clock ticks of 1/100 s, Linux's USER_HZ); `None` off Linux.
pub fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Peak resident set size of this process in MiB (`VmHWM` of `/proc/self/status`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(crate) fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    Ok(sinkscope_output::write_atomic(path, text.as_bytes())?)
}

/// The conventions block of the manifest: how every reported number was computed.
pub fn conventions() -> Value {
    json!({
        "layer_index": "l = 0..L; l = 0 is X(0) = hook_embed (embedding output after any scaling or position add), l >= 1 is X(l) = blocks.{l-1}.hook_resid_post, before the final norm; depth = l / L",
        "attention_index": "attention and MLP metrics at entry l belong to block l (blocks.{l-1}.attn.hook_pattern, blocks.{l-1}.hook_mlp_out); entry 0 is null",
        "null": "null marks an undefined value (never NaN)",
        "numerics": "activations float32 (candle-core, CPU); every metric accumulated in float64; X is never centred or row-normalised",
        "spectrum": "eigenvalues of the Gram matrix X Xᵀ (Xᵀ X when d < T) in float64 (faer), negatives clamped to 0; p_j = λ_j / Σλ",
        "entropy": "natural log, terms with p_j = 0 skipped",
        "entropy_norm": "H / ln min(T, d)",
        "entropy_norm_logT": "H / ln T",
        "renyi_entropy_2": "-ln Σ p_j²",
        "effective_rank": "exp(H)",
        "c": "M / R with R a sum over i >= 1 (not a mean)",
        "massive": "top |X[i,j]| > 100 and > 1000 x median |X[i,j]| (Sun et al.); reported as 1 or 0, its mean is the fraction of prompts",
        "theorem_bounds": "Theorem 1 of arXiv 2510.06477: sigma1_sq >= M + alpha R, anisotropy >= p = (c + alpha)/(c + 1), dominance >= (c + alpha)/(1 - alpha), entropy <= -p ln p - (1-p) ln(1-p) + (1-p) ln(r-1) with r = min(T, d); tightness = measured / bound",
        "bound_violations": "number of (prompt, layer, bound) with the measured value on the wrong side of its bound by more than 1e-9 relative (see options.bound_tolerance); must be 0",
        "bos_attention": "(1/T) Σ_t A[t,0] (Gu et al.; query 0 included); metrics.bos_attention is the mean over the layer's heads, heads.bos_attention is per head",
        "bos_attention_excl": "(1/(T-1)) Σ_{t>=1} A[t,0]; metrics.bos_attention_excl is the mean over heads",
        "sink_rate": "fraction of the layer's heads with bos_attention > epsilon (strict)",
        "sink_rate_excl_q0": "fraction of the layer's heads with bos_attention_excl > epsilon (strict)",
        "attn_entropy": "mean over t >= 1 of the row entropy of A[t, :] divided by ln(t + 1)",
        "mixing_score": "mean of attn_entropy over the layer's heads",
        "identity_score": "mean over t of A[t,t] (metrics: mean over heads)",
        "prev_token_score": "mean over t >= 1 of A[t,t-1] (metrics: mean over heads)",
        "learned_sink_mass": "max(0, 1 - mean_t Σ_j A[t,j]); 0 for ordinary softmax heads",
        "head_class": "sink if bos_attention > epsilon; else identity if identity_score > tau; else previous-token if prev_token_score > tau; else mixing if attn_entropy > mixing_threshold; else other (all strict)",
        "head_class_counts": "per layer, the heads classed by the rule above applied to their prompt-mean statistics",
        "head_frac": "head_frac_<class>(l): fraction of the layer's heads whose own head_class on the prompt is <class> (sink, identity, previous_token, mixing, other); they sum to 1 and head_frac_sink = sink_rate",
        "sink_values": "v_j = the head's value vector of key j (blocks.{l-1}.attn.hook_v, its kv head); sink_value_norm = ||v_0||₂, sink_value_ratio = ||v_0|| / mean_{j>=1} ||v_j||, sink_output_share = mean over t >= 1 of A[t,0] ||v_0|| / Σ_j A[t,j] ||v_j|| (queries with a zero denominator skipped); the curves are means over the layer's heads, sink_output_share_sink_heads over its sink heads only (null when none)",
        "mlp_bos_norm": "||mlp_out_0||₂ of block l (blocks.{l-1}.hook_mlp_out)",
        "mlp_other_median": "median over i >= 1 of ||mlp_out_i||₂ of block l",
        "mlp_ratio": "mlp_bos_norm / mlp_other_median",
        "massive_layers": "block l with mlp_bos_norm >= 10 x mlp_other_median and bos_ratio(l) >= 3 x bos_ratio(l-1), detected on the prompt-mean curves; n_prompts counts the prompts whose own curves detect it too",
        "std": "sample standard deviation (n - 1); 0 for a single prompt",
        "aggregates": "per layer over prompts: mean, std, min, max of the per-prompt values; undefined (null) values skipped; prompts of different lengths are fine (metrics are per prompt first)",
        "corr_bos_entropy": "Pearson r over l = 1..L between Δ log bos_norm(l) and Δ entropy(l), first differences of the prompt-mean curves; pairs with an undefined side dropped",
        "corr_bos_sink": "Pearson r between Δ log bos_norm(l) and Δ sink_rate(l) as above (Δ sink_rate(1) is undefined, so l = 2..L)",
        "phases": "curves smoothed by a centred running median of 3 (layers 0 and L kept); a layer l >= 1 is compressed when bos_ratio >= 3 (massive activation) and at least two of: sink_rate >= 0.5, entropy_norm below the midpoint of its min and max, mixing_score < 0.7; compress starts at the first compressed layer a; a layer l > a is decompressed when at least two of: entropy_norm >= floor + 0.15 (max - floor) with floor the smallest entropy_norm at layers >= a, bos_norm <= 0.5 x its peak, sink_rate < 0.5; refine = the longest run of decompressed layers ending at L; compress = a up to refine's start - 1; mix = the layers before a; null when no layer is compressed. Applied to the prompt-mean curves (summary.phases), to each prompt (prompts.jsonl phases, summary.phase_boundaries.per_prompt) and to every bootstrap replicate of the mean curves (summary.phase_boundaries.mean_curves)",
        "bootstrap": "Poisson bootstrap over prompts: prompt i enters replicate b with weight w ~ Poisson(1) drawn from a hash of (seed, i, b), i = the prompt's line in prompts.jsonl; replicate statistics are weighted means (curves) or functions of the weighted mean curves (correlations, phase boundaries); interval = the 2.5 and 97.5 percentiles of the replicates (linear interpolation), replicates where the statistic is undefined skipped",
        "corr_lag1": "Pearson r between Δ log bos_norm(l) and Δ y(l + 1) (block l + 1's attention is the first to read X(l)); per_prompt = one r per prompt, mean and sample sd over prompts",
        "top_activations": "over prompts, each prompt's top-k |X[i,j]| of layer l grouped by (token position, dimension); value = the signed value of largest magnitude seen, n_prompts = prompts where that pair was in the top k; sorted by |value|, at most k",
        "peak_bos_ratio": "the layer with the largest prompt-mean bos_ratio",
        "min_entropy_norm": "the layer with the smallest prompt-mean entropy_norm",
        "tokenization": "ids = ([bos] if the policy prepends it) + encode(text, add_special_tokens=false); no chat template, no EOS",
        "truncation": "--max-tokens T keeps the first T tokens of every prompt; a prompt longer than the model's context is an error unless --truncate (then it is cut at the context); prompts with T < 2 are errors",
        "selection": "--limit N takes the first N prompts in file or dataset order",
    })
}

/// The manifest's `data` block.
pub(crate) fn data_block(source: &DataSource, limit: Option<usize>, opts: &ProfileOptions) -> Value {
    match source {
        DataSource::File(f) => {
            let mut v = json!({
                "source": "file", "path": f.path, "sha256": f.sha256, "dataset": null,
                "limit": limit, "max_tokens": opts.max_tokens, "truncate": opts.truncate,
            });
            if f.bom {
                v["utf8_bom_skipped"] = json!(true);
            }
            v
        }
        DataSource::Dataset(p) => json!({
            "source": "dataset", "path": p.file, "dataset": p,
            "limit": limit, "max_tokens": opts.max_tokens, "truncate": opts.truncate,
        }),
    }
}

/// One tokenised prompt waiting for its forward pass.
struct Job {
    id: String,
    label: Option<bool>,
    prepared: Prepared,
    first: FirstToken,
}

impl Job {
    /// Profiles a pack of jobs in one forward pass ([`profile_pack`]).
    fn run_pack(jobs: Vec<Job>, model: &Model, opts: &ProfileOptions) -> Vec<Result<PromptRecord>> {
        let prompts: Vec<(&str, &[u32])> =
            jobs.iter().map(|j| (j.id.as_str(), j.prepared.ids.as_slice())).collect();
        let profiles = profile_pack(model, &prompts, opts);
        jobs.into_iter()
            .zip(profiles)
            .map(|(j, p)| PromptRecord::new(&j.id, &j.prepared, j.first, j.label, &p?, opts))
            .collect()
    }
}

/// Runs `jobs` through `work` on `workers` threads and hands the results to `write` in input
/// order.
///
/// At most `2 · workers` jobs are in flight (sent but not yet written), so memory stays
/// bounded whatever the number of jobs. The first error in input order stops the run after
/// every earlier result has been written.
pub fn run_ordered<J: Send, R: Send>(
    workers: usize,
    jobs: &mut dyn Iterator<Item = Result<J>>,
    work: &(dyn Fn(J) -> Result<R> + Sync),
    write: &mut dyn FnMut(R) -> Result<()>,
) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    let workers = workers.max(1);
    let window = 2 * workers;
    let (job_tx, job_rx) = mpsc::sync_channel::<(usize, J)>(window);
    let job_rx = std::sync::Mutex::new(job_rx);
    let stop = AtomicBool::new(false);
    let (res_tx, res_rx) = mpsc::channel::<(usize, Result<R>)>();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..workers {
            let res_tx = res_tx.clone();
            let (job_rx, stop) = (&job_rx, &stop);
            scope.spawn(move || loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let next = match job_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok((i, job)) = next else { return };
                if res_tx.send((i, work(job))).is_err() {
                    return;
                }
            });
        }
        drop(res_tx);
        let lost = |n: usize| {
            AnalysisError::Internal(format!("the worker threads stopped with {n} job(s) unfinished"))
        };
        let mut pending: BTreeMap<usize, Result<R>> = BTreeMap::new();
        let (mut sent, mut written) = (0usize, 0usize);
        let mut exhausted = false;
        let outcome: Result<()> = 'run: loop {
            while !exhausted && sent < written + window {
                match jobs.next() {
                    Some(Ok(job)) => {
                        if job_tx.send((sent, job)).is_err() {
                            break 'run Err(lost(sent - written));
                        }
                        sent += 1;
                    }
                    // A job that could not be made (e.g. a prompt that cannot be tokenised):
                    // the earlier ones are written first.
                    Some(Err(e)) => {
                        pending.insert(sent, Err(e));
                        sent += 1;
                        exhausted = true;
                    }
                    None => exhausted = true,
                }
            }
            while let Some(r) = pending.remove(&written) {
                if let Err(e) = r.and_then(&mut *write) {
                    break 'run Err(e);
                }
                written += 1;
            }
            // Nothing in flight: refill (or finish) rather than wait for a result that will
            // never come (the drain above may have written every job sent so far).
            if written == sent {
                if exhausted {
                    break Ok(());
                }
                continue;
            }
            match res_rx.recv() {
                Ok((i, r)) => {
                    pending.insert(i, r);
                }
                Err(_) => break Err(lost(sent - written)),
            }
        };
        stop.store(true, Ordering::Relaxed);
        drop(job_tx);
        outcome
    })
}

/// Adds the header's further blocks to a manifest; an `execution` block's fields join the
/// manifest's own `execution` block (e.g. how the layers were held).
fn merge_extra(v: &mut Value, header: &ManifestHeader) {
    let Some(m) = v.as_object_mut() else { return };
    for (k, x) in &header.extra {
        match (m.get_mut(k.as_str()).and_then(Value::as_object_mut), x.as_object()) {
            (Some(own), Some(more)) if k == "execution" => {
                own.extend(more.iter().map(|(a, b)| (a.clone(), b.clone())));
            }
            _ => {
                m.insert(k.clone(), x.clone());
            }
        }
    }
}

/// The input of a profile run.
pub struct ProfileInput<'a> {
    /// Where the prompts come from.
    pub source: DataSource,
    /// The `--limit` asked for (already applied by the caller), for the record.
    pub limit: Option<usize>,
    /// The prompts, in order.
    pub prompts: &'a mut dyn Iterator<Item = Example>,
    /// How many prompts will come (for progress), when known.
    pub total: Option<usize>,
    /// Packs run at the same time, one thread each (1: on the calling thread).
    pub workers: usize,
    /// Consecutive prompts run together in packs of at most this many tokens
    /// ([`profile_pack`]; 0 or 1: one prompt per pass). Results do not depend on it.
    pub pack_tokens: usize,
}

/// The manifest of a profile run in `status` (`running` or, before the final blocks are
/// added, `complete`).
pub(crate) fn profile_manifest(
    opts: &ProfileOptions,
    header: &ManifestHeader,
    source: &DataSource,
    limit: Option<usize>,
    (workers, pack_tokens): (usize, usize),
    status: &str,
) -> Value {
    let mut v = json!({
        "schema_version": SCHEMA_VERSION,
        "kind": "profile",
        "status": status,
        "tool": header.tool,
        "model": header.model,
        "tokenizer": header.tokenizer,
        "data": data_block(source, limit, opts),
        "options": opts.to_json(),
        "execution": {
            "prompt_workers": workers.max(1),
            "pack_tokens": pack_tokens,
            "rayon_num_threads": std::env::var("RAYON_NUM_THREADS").ok(),
            "packed_matmul": sinkscope_model::layers::gemm::available(),
            "kernel_path": sinkscope_model::layers::gemm::kernel_path().map(|p| p.name()),
            "kernel_path_note": sinkscope_model::layers::gemm::kernel_path_note(),
            "order": "consecutive prompts run together in packs of at most pack_tokens tokens (bit-identical to one pass per prompt); packs run concurrently on prompt_workers threads; records are written in input order",
        },
        "conventions": conventions(),
    });
    merge_extra(&mut v, header);
    v
}

impl crate::runner::PromptLine for PromptRecord {
    fn id(&self) -> &str {
        &self.id
    }

    fn token_ids(&self) -> &[u32] {
        &self.token_ids
    }

    fn is_of(&self, ex: &Example, ids: &[u32]) -> bool {
        self.id == ex.id && self.token_ids == ids && self.label == ex.label
    }
}

/// A profile run's records go to the aggregator.
struct ProfileSink {
    agg: Aggregator,
}

impl crate::runner::PromptSink<PromptRecord, PromptRecord> for ProfileSink {
    fn persist(&mut self, done: PromptRecord) -> Result<PromptRecord> {
        Ok(done)
    }

    fn add(&mut self, record: &PromptRecord) -> Result<()> {
        self.agg.add(record)
    }
}

/// Whether `out` holds a complete profile run of exactly this one (the same manifest
/// identity, `metrics.json` written, one finished record per prompt of `examples`, each the
/// record of that prompt): `ablate --resume` skips such sub-runs.
///
/// # Errors
/// A manifest that does not match this run, or an unreadable result file.
pub(crate) fn is_complete_run(
    files: &ModelFiles,
    opts: &ProfileOptions,
    header: &ManifestHeader,
    source: &DataSource,
    limit: Option<usize>,
    examples: &[Example],
    out: &Path,
) -> Result<bool> {
    use crate::runner::PromptLine;
    let manifest_path = out.join("manifest.json");
    let expected = profile_manifest(opts, header, source, limit, (1, DEFAULT_PACK_TOKENS), "complete");
    if !crate::resume::check_manifest(&manifest_path, &expected)? {
        return Ok(false);
    }
    let status = std::fs::read_to_string(&manifest_path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|m| m["status"].as_str().map(str::to_string));
    if status.as_deref() != Some("complete") || !out.join("metrics.json").is_file() {
        return Ok(false);
    }
    let done = crate::resume::read_finished::<PromptRecord>(&out.join("prompts.jsonl"))?;
    if done.torn || done.records.len() != examples.len() {
        return Ok(false);
    }
    for (r, ex) in done.records.iter().zip(examples) {
        let same = prepare(files, &ex.id, &ex.text, opts).is_ok_and(|p| r.is_of(ex, &p.ids));
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Runs a whole profile into `out`: `prompts.jsonl` (one line per prompt, flushed as it
/// completes), `metrics.json` and `manifest.json` (written first with
/// `"status": "running"`, rewritten at the end with `"status": "complete"`).
///
/// Memory: one prompt's activations at a time and one layer's pattern at a time; the
/// aggregator's state does not grow with the number of prompts.
///
/// # Errors
/// Any error of [`profile_example`] (naming the prompt), an unwritable output, or
/// [`AnalysisError::NoPrompts`].
pub fn run_profile(
    model: &Model,
    files: &ModelFiles,
    opts: &ProfileOptions,
    header: &ManifestHeader,
    input: ProfileInput<'_>,
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<ProfileSummary> {
    opts.validate()?;
    std::fs::create_dir_all(out)
        .map_err(|source| AnalysisError::Output { path: out.to_path_buf(), source })?;
    let manifest_path = out.join("manifest.json");
    let base = |status: &str| {
        profile_manifest(opts, header, &input.source, input.limit, (input.workers, input.pack_tokens), status)
    };
    let lines_path = out.join("prompts.jsonl");
    let mut sink =
        ProfileSink { agg: Aggregator::new(model.config.n_layers, model.config.n_heads, opts.clone()) };
    let cpu0 = process_cpu_s();
    let running = base("running");
    let (workers, pack_tokens) = crate::pack::schedule(model, input.workers.max(1), input.pack_tokens);
    let run = crate::runner::PromptRun {
        files,
        opts,
        manifest_path: &manifest_path,
        manifest: &running,
        lines_path: &lines_path,
        workers,
        pack_tokens,
    };
    let ran = crate::runner::run_prompts(
        &run,
        input.prompts,
        &|ex: Example, prepared: Prepared| {
            let first = first_token(files, &prepared.ids, prepared.bos_prepended);
            Ok(Job { id: ex.id, label: ex.label, prepared, first })
        },
        &|jobs: Vec<Job>| Job::run_pack(jobs, model, opts),
        &mut sink,
        progress,
    )?;
    let agg = sink.agg;
    let (n_prompts, n_tokens) = (ran.n_prompts, ran.n_tokens);
    if n_prompts == 0 {
        return Err(AnalysisError::NoPrompts);
    }
    let run_s = ran.elapsed.as_secs_f64();
    let t1 = Instant::now();
    let metrics = agg.finish()?;
    write_json(&out.join("metrics.json"), &metrics.0)?;
    let aggregate_s = t1.elapsed().as_secs_f64();
    let tokens_per_s = n_tokens as f64 / run_s.max(1e-9);
    let peak = peak_rss_mib();
    let cpu_s = process_cpu_s().zip(cpu0).map(|(b, a)| b - a);
    let mut manifest = base("complete");
    if let Some(m) = manifest.as_object_mut() {
        m.insert("first_token".into(), agg.first_token_json());
        m.insert("n_prompts".into(), json!(n_prompts));
        m.insert("n_tokens".into(), json!(n_tokens));
        m.insert("n_truncated".into(), json!(agg.n_truncated()));
        m.insert(
            "timings".into(),
            json!({
                "load_s": header.load_s,
                "run_s": run_s,
                "aggregate_s": aggregate_s,
                "tokens_per_s": tokens_per_s,
                "peak_rss_mib": peak,
                "peak_rss_source": "VmHWM of /proc/self/status at the end of the run (whole process, model included)",
                "cpu_s": cpu_s,
                "tokens_per_cpu_s": cpu_s.filter(|&c| c > 0.0).map(|c| n_tokens as f64 / c),
                "cpu_source": "user + system time of all threads during the prompts and aggregation (/proc/self/stat); unlike tokens_per_s it does not depend on other load on the machine",
            }),
        );
    }
    write_json(&manifest_path, &manifest)?;
    Ok(ProfileSummary {
        n_prompts,
        n_tokens,
        run_s,
        tokens_per_s,
        peak_rss_mib: peak,
        bound_violations: agg.bound_violations(),
        metrics,
        aggregator_footprint: agg.footprint(),
    })
}

/// The common blocks of every run manifest (`lens`, `probe`, ...): schema version, kind,
/// status, the caller's header blocks (and its extras), data source, options, conventions.
pub(crate) fn manifest_base(
    kind: &str,
    status: &str,
    header: &ManifestHeader,
    data: &Value,
    options: &Value,
    conventions: &Value,
) -> Value {
    let mut v = json!({
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "status": status,
        "tool": header.tool,
        "model": header.model,
        "tokenizer": header.tokenizer,
        "data": data,
        "options": options,
        "conventions": conventions,
    });
    merge_extra(&mut v, header);
    v
}
