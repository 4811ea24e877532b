//! The versioned result schema of sinkscope's run folders (`docs/results-schema.md`, schema
//! version [`SCHEMA_VERSION`]), shared by the writers (`sinkscope-analysis`) and the readers
//! (`sinkscope-report`, the Python package): the one schema version, the file names, the metric
//! names ([`Metric`]) and serde types for every file, and [`Run`], a whole run folder in memory.
//!
//! The structs are tolerant: unknown fields are ignored and almost every field is optional,
//! so a newer writer that adds fields (or a kind of run without attention metrics) still
//! renders. What is not tolerated is a different `schema_version`: that is a
//! [`SchemaError::SchemaVersion`] naming the file, checked before anything else is parsed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod activations;
mod error;
mod metric;
mod prompts;
mod sweep;
pub use activations::{
    ActivationManifest, ActivationPrompt, ActivationTimings, ReferenceMeans, ACTIVATIONS_DIR,
};
pub use error::SchemaError;
pub use metric::{Family, Metric, TaskMetric};
pub use prompts::{
    load_lines, ChoiceScores, HeadClass, HeadRecord, LensRecord, LensTotals, McRecord, ProbeRecord,
    PromptLine, PromptPhases, PromptRecord, PromptTopActivation,
};
pub use sweep::{
    Crossings, LayerSpan, SweepFile, SweepTask, TrajectoryFile, TrajectoryStep, SWEEP_FILE, TRAJECTORY_FILE,
};

/// The result-schema version this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// File name of the run manifest inside a run folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the aggregated metrics inside a run folder.
pub const METRICS_FILE: &str = "metrics.json";
/// File name of the per-prompt records inside a run folder.
pub const PROMPTS_FILE: &str = "prompts.jsonl";

/// A per-layer curve: `L + 1` entries indexed by layer `l = 0..L`, `None` (JSON `null`)
/// where undefined.
pub type Curve = Vec<Option<f64>>;

// ---------------------------------------------------------------------------------------
// metrics.json
// ---------------------------------------------------------------------------------------

/// `metrics.json`: per-layer summaries over prompts, per-head statistics, top activations
/// and the run summary.
///
/// The type parameter is the shape of `summary`, which depends on the kind of run:
/// [`RunSummary`] (profile runs and the sub-runs of an `ablate` folder, the default),
/// [`LensSummary`], [`ProbeSummary`] or [`McSummary`]. The writers serialise exactly this
/// type; fields a kind of run does not have are left out of its file (not written as
/// `null`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile<S = RunSummary> {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The command that wrote the folder (`profile` when absent, `lens`, `probe`, `mc`);
    /// profile runs do not write it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Number of blocks `L` (curves have `L + 1` entries).
    pub n_layers: usize,
    /// Query heads per layer (profile runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_heads: Option<usize>,
    /// Number of prompts aggregated (every kind but probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_prompts: Option<usize>,
    /// Total number of tokens run over all prompts (profile runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_tokens: Option<usize>,
    /// Number of labelled sentences (probe runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_samples: Option<usize>,
    /// Number of classes (probe runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_classes: Option<usize>,
    /// Per-layer summary of every scalar metric, keyed by its `metrics.md` name
    /// ([`Metric::name`] or [`TaskMetric::name`]).
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricSummary>,
    /// Per-head statistics (profile runs; left out when empty).
    #[serde(default, skip_serializing_if = "Heads::is_empty")]
    pub heads: Heads,
    /// `top_activations[l]`: the largest activations of layer `l` over prompts (at most k,
    /// sorted by |value|). `null` entries are read as empty lists. Profile runs only (left
    /// out when empty).
    #[serde(default, deserialize_with = "de_null_lists", skip_serializing_if = "Vec::is_empty")]
    pub top_activations: Vec<Vec<TopActivation>>,
    /// The run's headline numbers.
    #[serde(default)]
    pub summary: S,
}

/// Mean, standard deviation, min and max over prompts of one metric at every layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricSummary {
    /// Mean over prompts.
    pub mean: Curve,
    /// Sample standard deviation over prompts.
    pub std: Curve,
    /// Minimum over prompts.
    pub min: Curve,
    /// Maximum over prompts.
    pub max: Curve,
    /// Number of prompts with a value at each layer (profile and mc runs; empty, and left
    /// out of the file, for the others).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub n: Vec<usize>,
    /// Lower end of the 95 % bootstrap interval of the mean (empty, and left out of the
    /// file, when the writer made none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ci_low: Curve,
    /// Upper end of the 95 % bootstrap interval of the mean.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ci_high: Curve,
}

impl MetricSummary {
    /// Mean at layer `l` (`None` when undefined or out of range).
    pub fn mean_at(&self, l: usize) -> Option<f64> {
        self.mean.get(l).copied().flatten()
    }

    /// Standard deviation at layer `l` (`None` when undefined or out of range).
    pub fn std_at(&self, l: usize) -> Option<f64> {
        self.std.get(l).copied().flatten()
    }

    /// The 95 % bootstrap interval of the mean at layer `l`, when the file has one.
    pub fn ci_at(&self, l: usize) -> Option<(f64, f64)> {
        Some((self.ci_low.get(l).copied().flatten()?, self.ci_high.get(l).copied().flatten()?))
    }

    /// Whether the file carries bootstrap intervals for this metric.
    pub fn has_ci(&self) -> bool {
        self.ci_low.iter().any(Option::is_some)
    }
}

/// A per-head table: `[l][h]`, entry 0 (and any layer without attention) `None`.
pub type HeadTable = Vec<Option<Vec<Option<f64>>>>;

/// Per-head statistics of `metrics.json`. Every table has `L + 1` entries (entry 0 `null`);
/// a table that is empty is left out of the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Heads {
    /// `bos_attention[l][h]`, mean over prompts; entry 0 (and any layer without attention)
    /// is `None`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bos_attention: HeadTable,
    /// Lower end of the 95 % bootstrap interval of `bos_attention[l][h]` (empty when the
    /// writer made none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bos_attention_ci_low: HeadTable,
    /// Upper end of the 95 % bootstrap interval of `bos_attention[l][h]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bos_attention_ci_high: HeadTable,
    /// `bos_attention_excl[l][h]` (attention to position 0 from queries `i ≥ 1`), mean over
    /// prompts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bos_attention_excl: HeadTable,
    /// `attn_entropy[l][h]`, mean over prompts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attn_entropy: HeadTable,
    /// `identity_score[l][h]`, mean over prompts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identity_score: HeadTable,
    /// `prev_token_score[l][h]`, mean over prompts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prev_token_score: HeadTable,
    /// `head_class[l][h]`: the class (`sink`, `identity`, `previous-token`, `mixing`,
    /// `other`) of each head, by the metrics crate's rule applied to the prompt-mean
    /// statistics.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub head_class: Vec<Option<Vec<String>>>,
    /// `head_class_counts[l]`: number of heads of each class (`sink`, `identity`,
    /// `previous-token`, `mixing`, `other`) in layer `l`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub head_class_counts: Vec<Option<BTreeMap<String, u64>>>,
}

impl Heads {
    /// Whether no table is present (runs without attention statistics).
    pub fn is_empty(&self) -> bool {
        self.bos_attention.is_empty()
            && self.bos_attention_ci_low.is_empty()
            && self.bos_attention_ci_high.is_empty()
            && self.bos_attention_excl.is_empty()
            && self.attn_entropy.is_empty()
            && self.identity_score.is_empty()
            && self.prev_token_score.is_empty()
            && self.head_class.is_empty()
            && self.head_class_counts.is_empty()
    }

    /// `bos_attention[l][h]` (`None` when undefined or out of range).
    pub fn bos_attention_at(&self, l: usize, h: usize) -> Option<f64> {
        Self::at(&self.bos_attention, l, h)
    }

    /// The 95 % bootstrap interval of `bos_attention[l][h]`, when the file has one.
    pub fn bos_attention_ci(&self, l: usize, h: usize) -> Option<(f64, f64)> {
        Some((Self::at(&self.bos_attention_ci_low, l, h)?, Self::at(&self.bos_attention_ci_high, l, h)?))
    }

    fn at(v: &[Option<Vec<Option<f64>>>], l: usize, h: usize) -> Option<f64> {
        v.get(l)?.as_ref()?.get(h).copied().flatten()
    }
}

/// One entry of `top_activations[l]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TopActivation {
    /// Residual dimension j.
    pub dim: usize,
    /// Token position i.
    pub token: usize,
    /// The signed value with the largest magnitude seen.
    pub value: f64,
    /// Number of prompts where this (position, dimension) was in the top k.
    #[serde(default)]
    pub n_prompts: Option<usize>,
}

/// `summary` of `metrics.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSummary {
    /// The blocks that create the massive activation (metrics.md, "Interventions").
    pub massive_layers: Vec<MassiveLayer>,
    /// Mix–Compress–Refine phases; `None` when no compression phase was found.
    pub phases: Option<Phases>,
    /// Pearson r of `Δ log bos_norm` and `Δ entropy` over layers.
    pub corr_bos_entropy: Option<f64>,
    /// Pearson r of `Δ log bos_norm` and `Δ sink_rate` over layers.
    pub corr_bos_sink: Option<f64>,
    /// Lag 1: `Δ log bos_norm(l)` against `Δ entropy(l + 1)`.
    pub corr_bos_entropy_lag1: Option<f64>,
    /// Lag 1: `Δ log bos_norm(l)` against `Δ sink_rate(l + 1)`.
    pub corr_bos_sink_lag1: Option<f64>,
    /// Every correlation with its interval and the per-prompt r.
    pub correlations: Option<Correlations>,
    /// Phase boundaries with intervals, of the mean curves and per prompt.
    pub phase_boundaries: Option<PhaseBoundaries>,
    /// How the intervals were computed.
    pub bootstrap: Option<BootstrapInfo>,
    /// Number of measured values on the wrong side of a Theorem-1 bound (must be 0).
    pub bound_violations: Option<u64>,
    /// Layer and value of the largest mean `bos_ratio`.
    pub peak_bos_ratio: Option<LayerValue>,
    /// Layer and value of the smallest mean `entropy_norm`.
    pub min_entropy_norm: Option<LayerValue>,
    /// The prompts' token-weighted next-token NLL of the model (the sub-runs of an `ablate`
    /// folder: under that intervention).
    pub nll: Option<f64>,
    /// Number of next-token predictions `nll` is taken over (`None` for runs without NLL).
    pub nll_tokens: Option<u64>,
}

/// A 95 % bootstrap interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// A per-prompt statistic summarised over prompts (the per-prompt r of a correlation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PerPromptStat {
    /// Mean over prompts.
    pub mean: Option<f64>,
    /// Sample standard deviation over prompts.
    pub sd: Option<f64>,
    /// Number of prompts with a value.
    pub n: usize,
    /// Bootstrap interval of the mean.
    pub ci: Option<Interval>,
}

/// A phase boundary of each prompt's own curves, summarised over prompts
/// (`summary.phase_boundaries.per_prompt`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PerPromptBoundary {
    /// Mean over prompts.
    pub mean: Option<f64>,
    /// Sample standard deviation over prompts.
    pub sd: Option<f64>,
    /// Number of prompts with a value.
    pub n: usize,
    /// `mean / L`.
    pub mean_depth: Option<f64>,
    /// Bootstrap interval of the mean.
    pub ci: Option<Interval>,
}

/// One correlation at one lag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LaggedCorrelation {
    /// r of the prompt-mean curves.
    pub r: Option<f64>,
    /// Its bootstrap interval.
    pub ci: Option<Interval>,
    /// One r per prompt, summarised.
    pub per_prompt: Option<PerPromptStat>,
}

/// A correlation at lags 0 and 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorrelationLags {
    /// Lag 0: `Δ log bos_norm(l)` with `Δ y(l)`.
    pub lag0: Option<LaggedCorrelation>,
    /// Lag 1: `Δ log bos_norm(l)` with `Δ y(l + 1)`.
    pub lag1: Option<LaggedCorrelation>,
}

/// `summary.correlations`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Correlations {
    /// Against `Δ entropy`.
    pub bos_entropy: Option<CorrelationLags>,
    /// Against `Δ sink_rate`.
    pub bos_sink: Option<CorrelationLags>,
}

/// A phase boundary of the prompt-mean curves with its bootstrap interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BoundaryEstimate {
    /// The boundary layer of the prompt-mean curves.
    pub layer: Option<usize>,
    /// Interval over bootstrap replicates.
    pub ci: Option<Interval>,
    /// Replicates that had phases (`compress_start` only; left out of `refine_start`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicates_with_phases: Option<usize>,
    /// Replicates that had a refine phase (`refine_start` only; left out of
    /// `compress_start`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicates_with_refine: Option<usize>,
}

/// Boundaries of the prompt-mean curves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeanCurveBoundaries {
    /// Mix → Compress.
    pub compress_start: Option<BoundaryEstimate>,
    /// Compress → Refine.
    pub refine_start: Option<BoundaryEstimate>,
    /// Number of bootstrap replicates.
    pub replicates: Option<usize>,
}

/// Boundaries of each prompt's own curves, summarised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PerPromptBoundaries {
    /// Mix → Compress.
    pub compress_start: Option<PerPromptBoundary>,
    /// Compress → Refine.
    pub refine_start: Option<PerPromptBoundary>,
    /// Prompts whose curves have no compressed layer.
    pub n_prompts_without_phases: Option<usize>,
}

/// `summary.phase_boundaries`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhaseBoundaries {
    /// Of the prompt-mean curves.
    pub mean_curves: Option<MeanCurveBoundaries>,
    /// Per prompt.
    pub per_prompt: Option<PerPromptBoundaries>,
}

/// `summary.bootstrap`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BootstrapInfo {
    /// `poisson`.
    pub method: Option<String>,
    /// Number of replicates.
    pub replicates: Option<usize>,
    /// Seed.
    pub seed: Option<u64>,
    /// Coverage (0.95).
    pub level: Option<f64>,
}

/// One detected massive-activation block (`summary.massive_layers` of `metrics.json`, and
/// `evidence` of `ablate.json`, which copies the baseline's): what the detector measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MassiveLayer {
    /// The block (1-based, = the layer whose `X(l)` it writes).
    pub block: Option<usize>,
    /// The layer `l` (= `block`).
    pub layer: Option<usize>,
    /// MLP output norm at position 0 over the median of the other positions.
    pub mlp_ratio: Option<f64>,
    /// `bos_ratio(l) / bos_ratio(l − 1)`.
    pub bos_ratio_gain: Option<f64>,
    /// MLP output norm at position 0.
    pub mlp_out_bos_norm: Option<f64>,
    /// Median MLP output norm of the other positions.
    pub mlp_out_other_median: Option<f64>,
    /// `bos_ratio(l − 1)`.
    pub bos_ratio_before: Option<f64>,
    /// `bos_ratio(l)`.
    pub bos_ratio_after: Option<f64>,
    /// The hook measured (e.g. `blocks.11.hook_mlp_out`).
    pub hook: Option<String>,
    /// Number of prompts on which the block was detected (on the prompt's own curves).
    pub n_prompts: Option<usize>,
}

impl MassiveLayer {
    /// The layer this block writes (`layer`, else `block`).
    pub fn layer_index(&self) -> Option<usize> {
        self.layer.or(self.block)
    }
}

/// Mix–Compress–Refine phases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Phases {
    /// Every layer before the compression (`None` when it starts at layer 0).
    pub mix: Option<LayerRange>,
    /// The compression valley.
    pub compress: Option<LayerRange>,
    /// Every layer after the compression (`None` when it reaches layer L).
    pub refine: Option<LayerRange>,
    /// Midpoint of `entropy_norm` between its min and max over depth.
    pub entropy_norm_midpoint: Option<f64>,
    /// The smallest smoothed `entropy_norm` at or after the compress start.
    pub valley_floor: Option<f64>,
    /// Its layer.
    pub valley_layer: Option<usize>,
}

impl Phases {
    /// The three phases with their display names, in depth order (absent ones skipped).
    pub fn named(&self) -> Vec<(Phase, LayerRange)> {
        [(Phase::Mix, self.mix), (Phase::Compress, self.compress), (Phase::Refine, self.refine)]
            .into_iter()
            .filter_map(|(p, r)| r.map(|r| (p, r)))
            .collect()
    }

    /// The phase layer `l` belongs to, if any.
    pub fn phase_of(&self, l: usize) -> Option<Phase> {
        self.named().into_iter().find(|(_, r)| r.first <= l && l <= r.last).map(|(p, _)| p)
    }
}

/// One of the three phases of the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Early layers: broad mixing.
    Mix,
    /// Middle layers: massive activation, compression, sinks.
    Compress,
    /// Late layers: decompression.
    Refine,
}

impl Phase {
    /// Display name ("Mix", "Compress", "Refine").
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Mix => "Mix",
            Phase::Compress => "Compress",
            Phase::Refine => "Refine",
        }
    }
}

/// An inclusive range of layers with its depth fractions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerRange {
    /// First layer (inclusive).
    pub first: usize,
    /// Last layer (inclusive).
    pub last: usize,
    /// `first / L`.
    #[serde(default)]
    pub first_depth: Option<f64>,
    /// `last / L`.
    #[serde(default)]
    pub last_depth: Option<f64>,
}

/// A value at a layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerValue {
    /// The layer `l`.
    pub layer: usize,
    /// The value.
    pub value: f64,
}

// ---------------------------------------------------------------------------------------
// manifest.json
// ---------------------------------------------------------------------------------------

/// `manifest.json`: what was run, on what, how, and with which conventions.
///
/// The writers serialise this type; a field that is `None` (or an empty `timings`) is left
/// out of the file. Blocks that only some runs have and that this type does not name
/// (`memory`, `features`, `merged_from`, and any block a caller adds to the header) are kept
/// in [`Manifest::extra`], so reading and writing a manifest loses nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The command that wrote the folder (`profile`, `ablate`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `running` while the run goes, `complete` when it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The tool and its command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolInfo>,
    /// The model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInfo>,
    /// The tokenizer and BOS policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerInfo>,
    /// The token at position 0 (profile runs, once finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token: Option<FirstToken>,
    /// Where the prompts came from (kept as JSON: its shape depends on the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Every threshold and parameter (`epsilon`, `tau`, `top_k`, ...; kept as JSON by name:
    /// each kind of run has its own).
    #[serde(default)]
    pub options: BTreeMap<String, Value>,
    /// Every convention, by name (`layer_index`, `entropy_norm`, `std`, ...).
    #[serde(default)]
    pub conventions: BTreeMap<String, Value>,
    /// Number of prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_prompts: Option<usize>,
    /// Total number of tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_tokens: Option<usize>,
    /// Number of prompts that were cut (`--max-tokens`, `--truncate`; profile runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_truncated: Option<usize>,
    /// How the run was executed (workers, pack size, kernel, `stream_layers`; kept as JSON by
    /// name). None of it changes a result byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<BTreeMap<String, Value>>,
    /// The shard this run holds (`--shard I/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// Timings and memory (kept as JSON numbers by name; each kind of run has its own).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timings: BTreeMap<String, Value>,
    /// Every other block, by name (`memory`, `features`, `merged_from`, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `manifest.tool`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolInfo {
    /// `sinkscope`.
    pub name: Option<String>,
    /// Its version.
    pub version: Option<String>,
    /// The command line, one argument per entry.
    pub command_line: Vec<String>,
    /// The compute engine.
    pub engine: Option<String>,
}

/// `manifest.model`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelInfo {
    /// The model file or folder.
    pub path: Option<String>,
    /// `gguf` or `safetensors` (kept as JSON).
    pub format: Option<Value>,
    /// Content hash.
    pub sha256: Option<String>,
    /// Family id (kept as JSON).
    pub family: Option<Value>,
    /// The resolved `ModelConfig` (kept as JSON).
    pub config: Option<Value>,
    /// Number of tensors per storage dtype.
    pub dtype_mix: BTreeMap<String, Value>,
}

/// `manifest.tokenizer`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenizerInfo {
    /// Where the tokenizer came from.
    pub source: Option<String>,
    /// Vocabulary size.
    pub vocab_size: Option<usize>,
    /// `auto`, `always` or `never`.
    pub bos_policy: Option<String>,
    /// The BOS token's text, if the tokenizer has one.
    pub bos_token: Option<String>,
    /// The BOS token's id, if the tokenizer has one.
    pub bos_id: Option<u64>,
    /// Whether the model adds a BOS by default.
    pub model_adds_bos: Option<bool>,
    /// How ids were made from text.
    pub method: Option<String>,
}

/// The token at position 0 (`manifest.first_token`, and per prompt in `prompts.jsonl`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FirstToken {
    /// Its id.
    pub id: Option<u64>,
    /// Its text.
    pub token: Option<String>,
    /// Whether it is the tokenizer's BOS token.
    pub is_bos: Option<bool>,
    /// Whether sinkscope prepended it (`--bos`, `--first-token`).
    pub bos_prepended: Option<bool>,
    /// Whether every prompt starts with the same token (manifest only; left out of the
    /// per-prompt records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_for_all_prompts: Option<bool>,
}

// ---------------------------------------------------------------------------------------
// prompts.jsonl
// ---------------------------------------------------------------------------------------

// The line types are in `prompts.rs`.

fn de_null_lists<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Vec<TopActivation>>, D::Error> {
    let v: Vec<Option<Vec<TopActivation>>> = Vec::deserialize(d)?;
    Ok(v.into_iter().map(Option::unwrap_or_default).collect())
}

// ---------------------------------------------------------------------------------------
// Kinds of run, lens and probe summaries, ablate.json
// ---------------------------------------------------------------------------------------

/// File name of the ablation summary inside an `ablate` folder.
pub const ABLATE_FILE: &str = "ablate.json";

/// The command that wrote a folder (`kind` in `manifest.json` / `metrics.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunKind {
    /// `sinkscope profile` (also when no `kind` is recorded).
    Profile,
    /// `sinkscope lens`: LogitLens next-token NLL per layer.
    Lens,
    /// `sinkscope probe`: cross-validated linear-probe accuracy per layer.
    Probe,
    /// `sinkscope ablate`: a folder of profile-style sub-runs plus `ablate.json`.
    Ablate,
    /// `sinkscope lens --mc`: multiple-choice LogitLens accuracy per layer.
    Mc,
}

impl RunKind {
    /// Every kind, in the order above.
    pub const ALL: [RunKind; 5] =
        [RunKind::Profile, RunKind::Lens, RunKind::Probe, RunKind::Ablate, RunKind::Mc];

    /// The name written in the files (`profile`, `lens`, `probe`, `ablate`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Profile => "profile",
            RunKind::Lens => "lens",
            RunKind::Probe => "probe",
            RunKind::Ablate => "ablate",
            RunKind::Mc => "mc",
        }
    }

    /// The kind named `s` (exact, lower case).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `summary` of an `mc` run's `metrics.json` (`sinkscope lens --mc`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct McSummary {
    /// Items scored.
    pub n_items: Option<usize>,
    /// Mean over items of `1 / n_choices`.
    pub chance: Option<f64>,
    /// The layer with the highest `mc_accuracy` (the earliest of equals).
    pub best_layer: Option<LayerValue>,
    /// The layer with the highest `mc_accuracy_norm`.
    pub best_layer_norm: Option<LayerValue>,
    /// `mc_accuracy` at layer L.
    #[serde(rename = "accuracy_at_L")]
    pub accuracy_at_l: Option<f64>,
    /// How the intervals of the curves were computed.
    pub bootstrap: Option<BootstrapInfo>,
}

/// `summary` of a lens run's `metrics.json` (token-weighted over every scored prediction of
/// every prompt: `n_predicted_tokens` in all).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LensSummary {
    /// Number of scored next-token predictions (`Σ (T − 1)` over prompts).
    #[serde(default)]
    pub n_predicted_tokens: Option<u64>,
    /// Token-weighted `logit_lens_nll` per layer (`L + 1` entries).
    #[serde(default)]
    pub token_weighted_nll: Curve,
    /// `exp(token_weighted_nll)` per layer.
    #[serde(default)]
    pub token_weighted_ppl: Curve,
    /// Token-weighted top-1 accuracy per layer.
    #[serde(default)]
    pub token_weighted_top1: Curve,
    /// The model's own token-weighted next-token NLL.
    #[serde(default)]
    pub model_nll: Option<f64>,
    /// `exp(model_nll)`.
    #[serde(default)]
    pub model_ppl: Option<f64>,
    /// `token_weighted_nll[L] − model_nll` (0 up to rounding: the lens at L is the model).
    #[serde(default, rename = "lens_at_L_minus_model_nll")]
    pub lens_at_l_minus_model_nll: Option<f64>,
    /// The layer with the lowest token-weighted NLL.
    #[serde(default)]
    pub best_layer: Option<usize>,
}

/// `summary` of a probe run's `metrics.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeSummary {
    /// Accuracy of always predicting the training folds' majority class.
    pub baseline_accuracy: Option<f64>,
    /// The layer with the highest CV accuracy.
    pub best_layer: Option<usize>,
    /// Its CV accuracy.
    pub best_accuracy: Option<f64>,
    /// Sentence pooling (`mean` or `last`).
    pub pool: Option<String>,
    /// Number of CV folds.
    pub folds: Option<usize>,
    /// Seed of the fold shuffle.
    pub seed: Option<u64>,
    /// Inverse L2 regularisation strength.
    pub c: Option<f64>,
    /// The solver, in words.
    pub solver: Option<String>,
    /// Whether the solver converged in every fold of every layer.
    pub all_converged: Option<bool>,
    /// Per-layer details.
    pub per_layer: Vec<ProbeLayer>,
}

/// One entry of a probe summary's `per_layer`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeLayer {
    /// The layer `l`.
    pub layer: usize,
    /// Mean of the per-fold test accuracies (`probe_accuracy`).
    #[serde(default)]
    pub accuracy: Option<f64>,
    /// Standard deviation of the per-fold test accuracies.
    #[serde(default)]
    pub accuracy_std: Option<f64>,
    /// Correct test predictions over all folds divided by the number of samples.
    #[serde(default)]
    pub pooled_accuracy: Option<f64>,
    /// Majority-class baseline accuracy.
    #[serde(default)]
    pub baseline_accuracy: Option<f64>,
    /// Whether the solver converged in every fold.
    #[serde(default)]
    pub converged: Option<bool>,
    /// The most solver iterations any fold took.
    #[serde(default)]
    pub max_iterations: Option<u64>,
    /// The largest final gradient norm over folds.
    #[serde(default)]
    pub max_grad_norm: Option<f64>,
}

impl ProbeSummary {
    /// The `per_layer` entry of layer `l`.
    pub fn layer(&self, l: usize) -> Option<&ProbeLayer> {
        self.per_layer.iter().find(|p| p.layer == l)
    }
}

/// `ablate.json`: what an `ablate` folder ablated, why, and the dose–response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AblateFile {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `ablate`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The component scaled at position 0: `mlp` (the paper's ablation) or `attn` (a control).
    #[serde(default)]
    pub component: Option<String>,
    /// The blocks ablated together.
    #[serde(default)]
    pub blocks: Vec<usize>,
    /// How the blocks were chosen, in words (detected on the baseline, or given).
    #[serde(default)]
    pub blocks_source: Option<String>,
    /// Why those blocks: the massive-activation evidence of each (metrics.md, "Interventions").
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// The layers (inclusive) over which the valley quantities are taken: the baseline's
    /// compression valley; `None` = read it from the baseline's phases.
    #[serde(default)]
    pub valley: Option<Valley>,
    /// The scales λ run (1 = baseline).
    #[serde(default)]
    pub scales: Vec<f64>,
    /// One entry per scale λ (the baseline included, at λ = 1).
    #[serde(default)]
    pub dose_response: Vec<Intervention>,
    /// With `--one-by-one`: each block ablated alone (λ = 0).
    #[serde(default)]
    pub one_by_one: Vec<Intervention>,
    /// The massive dimensions at position 0 set to their mean over the *other positions of
    /// the same prompt* (`mean_others`; not Sun et al.'s mean-ablation); `None` when not run.
    #[serde(default)]
    pub mean_ablate: Option<Intervention>,
    /// Sun et al.'s mean-ablation: the same dimensions set to their mean at position 0 over
    /// the prompt set (`mean_prompts`, from a first pass).
    #[serde(default)]
    pub sun_mean_ablate: Option<Intervention>,
    /// Zero-ablation of the same dimensions (Sun et al.'s contrast).
    #[serde(default)]
    pub zero_dims: Option<Intervention>,
    /// The shard this folder holds (`ablate --shard I/N`; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
}

/// The `shard` block of a shard run's `manifest.json` (and of a shard `ablate.json`):
/// which of the selected prompts the shard holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Shard index I (0-based).
    pub index: usize,
    /// Number of shards N.
    pub count: usize,
    /// Number of prompts selected for the whole run.
    pub n_total: usize,
    /// First prompt of the shard (inclusive).
    pub first: usize,
    /// End of the shard (exclusive).
    pub end: usize,
    /// The split rule, in words.
    pub rule: String,
}

/// `ablate.json`'s `valley`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Valley {
    /// First layer (inclusive).
    pub first: usize,
    /// Last layer (inclusive).
    pub last: usize,
    /// How it was chosen, in words.
    #[serde(default)]
    pub rule: Option<String>,
}

impl Valley {
    /// As a [`LayerRange`] (without depths).
    pub fn range(&self) -> LayerRange {
        LayerRange { first: self.first, last: self.last, first_depth: None, last_depth: None }
    }
}

/// One entry of `ablate.json`'s `evidence`: a block detected as creating the massive
/// activation, copied from the baseline's `summary.massive_layers` (the same type).
pub type Evidence = MassiveLayer;

/// The four quantities of an intervention (and its bound violations), as `sinkscope ablate`
/// nests them under `summary`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InterventionValues {
    /// See [`Intervention::valley_min_entropy_norm`].
    pub valley_min_entropy_norm: Option<f64>,
    /// See [`Intervention::max_bos_ratio`].
    pub max_bos_ratio: Option<f64>,
    /// See [`Intervention::valley_mean_sink_rate`].
    pub valley_mean_sink_rate: Option<f64>,
    /// See [`Intervention::nll`].
    pub nll: Option<f64>,
    /// See [`Intervention::bound_violations`].
    pub bound_violations: Option<u64>,
}

/// One intervention of an `ablate` folder and its effect. The quantities may be given flat
/// or nested under `summary`; [`AblateFile::load`] copies nested ones to the flat fields
/// (a flat value wins). Fields that are `None` or empty are left out of the file
/// (`sinkscope ablate` writes `scale`/`block`, `run` and `summary`, plus the
/// dimension-ablation fields for `mean_ablate`, `sun_mean_ablate` and `zero_dims`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Intervention {
    /// The scale λ (dose–response entries; one-by-one entries ablate at λ = 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// The single block ablated (one-by-one entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<usize>,
    /// The residual dimensions ablated (the dimension ablations only: `None` for the other
    /// entries; `Some` of an empty list when the baseline had no top activation at token 0).
    /// [`Intervention::dims`] reads it as a slice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dims: Option<Vec<usize>>,
    /// The sub-run folder, relative to the `ablate` folder (`baseline`, `scale_0`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Minimum mean `entropy_norm` over the baseline's valley.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valley_min_entropy_norm: Option<f64>,
    /// Maximum mean `bos_ratio` over all layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bos_ratio: Option<f64>,
    /// Mean of the mean `sink_rate` over the baseline's valley.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valley_mean_sink_rate: Option<f64>,
    /// The prompts' token-weighted next-token NLL under the intervention.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nll: Option<f64>,
    /// Theorem-1 bound violations in the sub-run (must be 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_violations: Option<u64>,
    /// The quantities nested (as `sinkscope ablate` writes them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<InterventionValues>,
    /// The block whose output the mean-ablation edits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// How the mean-ablated dimensions were chosen, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Which dimension ablation: `mean_prompts` (Sun et al.), `zero`, `mean_others`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// What the intervention does, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Sun et al.'s reference means (one per dimension, in `dims` order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_means: Option<Vec<f64>>,
    /// Prompts the reference means were taken over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_prompts: Option<usize>,
}

impl Intervention {
    /// The ablated dimensions (empty when the entry has none).
    pub fn dims(&self) -> &[usize] {
        self.dims.as_deref().unwrap_or_default()
    }

    /// Sun et al.'s reference means, one per dimension (empty when the entry has none).
    pub fn reference_means(&self) -> &[f64] {
        self.reference_means.as_deref().unwrap_or_default()
    }

    /// Copies the nested `summary` quantities to the flat fields that are missing.
    fn unnest(&mut self) {
        if let Some(s) = self.summary.clone() {
            self.valley_min_entropy_norm = self.valley_min_entropy_norm.or(s.valley_min_entropy_norm);
            self.max_bos_ratio = self.max_bos_ratio.or(s.max_bos_ratio);
            self.valley_mean_sink_rate = self.valley_mean_sink_rate.or(s.valley_mean_sink_rate);
            self.nll = self.nll.or(s.nll);
            self.bound_violations = self.bound_violations.or(s.bound_violations);
        }
    }
}

impl AblateFile {
    /// Reads and checks `ablate.json`.
    ///
    /// # Errors
    /// [`SchemaError::Io`], [`SchemaError::Parse`], [`SchemaError::SchemaVersion`], and
    /// [`SchemaError::Invalid`] for a `kind` other than `ablate`, an empty `dose_response`,
    /// a `run` that is not a relative path inside the folder, or a valley with
    /// `first > last`.
    pub fn load(path: &Path) -> Result<Self, SchemaError> {
        let mut a: Self = parse_versioned(path)?;
        for e in a
            .dose_response
            .iter_mut()
            .chain(a.one_by_one.iter_mut())
            .chain(a.mean_ablate.iter_mut())
            .chain(a.sun_mean_ablate.iter_mut())
            .chain(a.zero_dims.iter_mut())
        {
            e.unnest();
        }
        let invalid = |message: String| SchemaError::Invalid { path: path.to_path_buf(), message };
        if let Some(k) = a.kind.as_deref().filter(|k| *k != "ablate") {
            return Err(invalid(format!("kind is \"{k}\", expected \"ablate\"")));
        }
        if a.dose_response.is_empty() {
            return Err(invalid("dose_response is empty".into()));
        }
        if let Some(v) = a.valley.as_ref().filter(|v| v.first > v.last) {
            return Err(invalid(format!("valley.first {} > valley.last {}", v.first, v.last)));
        }
        let all = a
            .dose_response
            .iter()
            .chain(&a.one_by_one)
            .chain(a.mean_ablate.as_ref())
            .chain(a.sun_mean_ablate.as_ref())
            .chain(a.zero_dims.as_ref());
        for run in all.filter_map(|i| i.run.as_deref()) {
            let p = Path::new(run);
            let inside =
                !run.is_empty() && p.components().all(|c| matches!(c, std::path::Component::Normal(_)));
            if !inside {
                return Err(invalid(format!(
                    "run \"{run}\" is not a folder name relative to the ablate folder"
                )));
            }
        }
        Ok(a)
    }
}

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

fn read_text(path: &Path) -> Result<String, SchemaError> {
    std::fs::read_to_string(path).map_err(SchemaError::io(path))
}

/// Checks `schema_version` in a parsed JSON document, naming `path` in the error.
fn check_version(path: &Path, v: &Value) -> Result<(), SchemaError> {
    match v.get("schema_version") {
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(SCHEMA_VERSION)) => Ok(()),
        Some(other) => Err(SchemaError::SchemaVersion {
            path: path.to_path_buf(),
            found: other.to_string(),
            expected: SCHEMA_VERSION,
        }),
        None => Err(SchemaError::SchemaVersion {
            path: path.to_path_buf(),
            found: "(missing)".to_string(),
            expected: SCHEMA_VERSION,
        }),
    }
}

fn parse_versioned<T: DeserializeOwned>(path: &Path) -> Result<T, SchemaError> {
    let value = read_versioned(path)?;
    from_value(path, value)
}

/// Reads a JSON file and checks its `schema_version`.
fn read_versioned(path: &Path) -> Result<Value, SchemaError> {
    let text = read_text(path)?;
    let value: Value = serde_json::from_str(&text).map_err(|e| SchemaError::Parse {
        path: path.to_path_buf(),
        line: None,
        message: e.to_string(),
    })?;
    check_version(path, &value)?;
    Ok(value)
}

fn from_value<T: DeserializeOwned>(path: &Path, value: Value) -> Result<T, SchemaError> {
    serde_json::from_value(value).map_err(|e| SchemaError::Parse {
        path: path.to_path_buf(),
        line: None,
        message: e.to_string(),
    })
}

impl MetricsFile {
    /// Reads and checks a `metrics.json`.
    ///
    /// # Errors
    /// [`SchemaError::Io`], [`SchemaError::Parse`], [`SchemaError::SchemaVersion`] for a
    /// different `schema_version`, [`SchemaError::Invalid`] when a per-layer array does
    /// not have `n_layers + 1` entries.
    pub fn load(path: &Path) -> Result<Self, SchemaError> {
        Ok(Self::load_parts(path)?.0)
    }

    /// As [`MetricsFile::load`], also returning the raw `summary` (whose shape depends on
    /// the kind of run).
    fn load_parts(path: &Path) -> Result<(Self, Value), SchemaError> {
        let value = read_versioned(path)?;
        let summary = value.get("summary").cloned().unwrap_or(Value::Null);
        let m: Self = from_value(path, value)?;
        m.validate(path)?;
        Ok((m, summary))
    }

    fn validate(&self, path: &Path) -> Result<(), SchemaError> {
        let want = self.n_layers + 1;
        let invalid = |message: String| SchemaError::Invalid { path: path.to_path_buf(), message };
        if self.n_layers == 0 {
            return Err(invalid("n_layers is 0".into()));
        }
        for (name, s) in &self.metrics {
            for (stat, c) in [("mean", &s.mean), ("std", &s.std), ("min", &s.min), ("max", &s.max)] {
                if !c.is_empty() && c.len() != want {
                    return Err(invalid(format!(
                        "metrics.{name}.{stat} has {} entries, expected n_layers + 1 = {want}",
                        c.len()
                    )));
                }
            }
        }
        let h = &self.heads;
        if !h.bos_attention.is_empty() && h.bos_attention.len() != want {
            return Err(invalid(format!(
                "heads.bos_attention has {} entries, expected n_layers + 1 = {want}",
                h.bos_attention.len()
            )));
        }
        if !self.top_activations.is_empty() && self.top_activations.len() != want {
            return Err(invalid(format!(
                "top_activations has {} entries, expected n_layers + 1 = {want}",
                self.top_activations.len()
            )));
        }
        Ok(())
    }

    /// The summary of metric `name`, if present.
    pub fn metric(&self, name: &str) -> Option<&MetricSummary> {
        self.metrics.get(name)
    }

    /// Mean of metric `name` at layer `l`.
    pub fn mean_at(&self, name: &str, l: usize) -> Option<f64> {
        self.metric(name).and_then(|s| s.mean_at(l))
    }

    /// Number of heads: `n_heads`, else the widest row of `heads.bos_attention`.
    pub fn head_count(&self) -> usize {
        self.n_heads
            .unwrap_or_else(|| self.heads.bos_attention.iter().flatten().map(Vec::len).max().unwrap_or(0))
    }
}

impl Manifest {
    /// Reads and checks a `manifest.json`.
    ///
    /// # Errors
    /// [`SchemaError::Io`], [`SchemaError::Parse`], [`SchemaError::SchemaVersion`].
    pub fn load(path: &Path) -> Result<Self, SchemaError> {
        parse_versioned(path)
    }

    /// A short name for the model: the model file or folder name without `.gguf`.
    pub fn model_name(&self) -> Option<String> {
        let path = self.model.as_ref()?.path.as_ref()?;
        let name = Path::new(path.trim_end_matches('/')).file_name()?.to_string_lossy().into_owned();
        Some(name.strip_suffix(".gguf").map(str::to_string).unwrap_or(name))
    }
}

/// A run folder in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The folder.
    pub dir: PathBuf,
    /// `manifest.json`.
    pub manifest: Manifest,
    /// `metrics.json`.
    pub metrics: MetricsFile,
    /// `prompts.jsonl` (empty when the file is absent).
    pub prompts: Vec<PromptLine>,
    /// Whether `prompts.jsonl` was present.
    pub prompts_present: bool,
    /// The kind of run (see [`Run::load`]).
    pub kind: RunKind,
    /// The lens summary (lens runs only).
    pub lens: Option<LensSummary>,
    /// The probe summary (probe runs only).
    pub probe: Option<ProbeSummary>,
    /// The multiple-choice summary (`mc` runs only).
    pub mc: Option<McSummary>,
}

/// A `summary` that is `null` or absent reads as an empty object.
fn summary_object(v: Value) -> Value {
    if v.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        v
    }
}

/// The kind of a run: `manifest.kind`, else `metrics.kind`, else `profile`.
fn resolve_kind(
    manifest_path: &Path,
    metrics_path: &Path,
    manifest: &Manifest,
    metrics: &MetricsFile,
) -> Result<RunKind, SchemaError> {
    let parse = |path: &Path, k: &str| {
        RunKind::parse(k)
            .ok_or_else(|| SchemaError::UnknownKind { path: path.to_path_buf(), kind: k.to_string() })
    };
    let a = manifest.kind.as_deref().map(|k| parse(manifest_path, k)).transpose()?;
    let b = metrics.kind.as_deref().map(|k| parse(metrics_path, k)).transpose()?;
    match (a, b) {
        (Some(a), Some(b)) if a != b => Err(SchemaError::Invalid {
            path: metrics_path.to_path_buf(),
            message: format!("kind is \"{b}\" but manifest.json says \"{a}\""),
        }),
        (a, b) => Ok(a.or(b).unwrap_or(RunKind::Profile)),
    }
}

impl Run {
    /// Reads `dir/manifest.json`, `dir/metrics.json` and (if present) `dir/prompts.jsonl`.
    ///
    /// # Errors
    /// As [`Manifest::load`], [`MetricsFile::load`] and [`PromptLine::load_all`].
    ///
    /// The kind is `manifest.kind`, else `metrics.kind`, else `profile`; when both files
    /// name one they must agree. A lens or probe run's `summary` is read into
    /// [`Run::lens`] / [`Run::probe`].
    ///
    /// # Errors
    /// Also [`SchemaError::UnknownKind`] for a kind this crate does not know, and
    /// [`SchemaError::Invalid`] when the two files disagree on the kind or a lens curve does
    /// not have `n_layers + 1` entries.
    pub fn load(dir: &Path) -> Result<Self, SchemaError> {
        Self::load_inner(dir, true)
    }

    /// Reads a profile-style sub-run of an `ablate` folder: as [`Run::load`], but
    /// `manifest.json` may be absent (an empty manifest is used then) and the run is read as
    /// a profile whatever kind its files name.
    ///
    /// # Errors
    /// As [`Run::load`], except for the kind.
    pub fn load_profile_style(dir: &Path) -> Result<Self, SchemaError> {
        Self::load_inner(dir, false)
    }

    fn load_inner(dir: &Path, need_manifest: bool) -> Result<Self, SchemaError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = if need_manifest || manifest_path.exists() {
            Manifest::load(&manifest_path)?
        } else {
            Manifest { schema_version: SCHEMA_VERSION, ..Manifest::default() }
        };
        let metrics_path = dir.join(METRICS_FILE);
        let (metrics, summary) = MetricsFile::load_parts(&metrics_path)?;
        let kind = if need_manifest {
            resolve_kind(&manifest_path, &metrics_path, &manifest, &metrics)?
        } else {
            RunKind::Profile
        };
        let want = metrics.n_layers + 1;
        let lens = match kind {
            RunKind::Lens => {
                let s: LensSummary = from_value(&metrics_path, summary_object(summary.clone()))?;
                for (name, c) in [
                    ("token_weighted_nll", &s.token_weighted_nll),
                    ("token_weighted_ppl", &s.token_weighted_ppl),
                    ("token_weighted_top1", &s.token_weighted_top1),
                ] {
                    if !c.is_empty() && c.len() != want {
                        return Err(SchemaError::Invalid {
                            path: metrics_path.clone(),
                            message: format!(
                                "summary.{name} has {} entries, expected n_layers + 1 = {want}",
                                c.len()
                            ),
                        });
                    }
                }
                Some(s)
            }
            _ => None,
        };
        let probe = match kind {
            RunKind::Probe => {
                let s: ProbeSummary = from_value(&metrics_path, summary_object(summary.clone()))?;
                if let Some(p) = s.per_layer.iter().find(|p| p.layer >= want) {
                    return Err(SchemaError::Invalid {
                        path: metrics_path.clone(),
                        message: format!(
                            "summary.per_layer names layer {}, beyond n_layers = {}",
                            p.layer, metrics.n_layers
                        ),
                    });
                }
                Some(s)
            }
            _ => None,
        };
        let mc = match kind {
            RunKind::Mc => Some(from_value::<McSummary>(&metrics_path, summary_object(summary.clone()))?),
            _ => None,
        };
        let prompts_path = dir.join(PROMPTS_FILE);
        let prompts_present = prompts_path.is_file();
        let prompts = if prompts_present { PromptLine::load_all(&prompts_path, kind)? } else { Vec::new() };
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            metrics,
            prompts,
            prompts_present,
            kind,
            lens,
            probe,
            mc,
        })
    }

    /// Number of blocks `L`.
    pub fn n_layers(&self) -> usize {
        self.metrics.n_layers
    }

    /// Depth fraction `l / L`.
    pub fn depth(&self, l: usize) -> f64 {
        l as f64 / self.n_layers().max(1) as f64
    }

    /// Number of prompts: `metrics.n_prompts`, else the manifest's, else the lines read.
    pub fn n_prompts(&self) -> usize {
        self.metrics.n_prompts.or(self.manifest.n_prompts).unwrap_or(self.prompts.len())
    }

    /// The model's identity for grouping runs: its `sha256`, else its path, else `None`.
    pub fn model_key(&self) -> Option<String> {
        let m = self.manifest.model.as_ref()?;
        m.sha256.clone().filter(|s| !s.is_empty()).or_else(|| m.path.clone())
    }

    /// A display label: the model name, else the folder name.
    pub fn label(&self) -> String {
        self.manifest.model_name().unwrap_or_else(|| {
            self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into())
        })
    }
}

// ---------------------------------------------------------------------------------------
// Lens and probe curves of a run
// ---------------------------------------------------------------------------------------

/// `(mean, std)` of one point of a per-layer curve.
pub type MeanStd = (Option<f64>, Option<f64>);

/// A curve's finite value at layer `l`.
pub fn at(c: &Curve, l: usize) -> Option<f64> {
    c.get(l).copied().flatten().filter(|v| v.is_finite())
}

impl Run {
    /// Per-layer `(mean, std)` over prompts of metric `name` (`L + 1` entries).
    pub fn mean_std(&self, name: &str) -> Vec<MeanStd> {
        let m = self.metrics.metric(name);
        (0..=self.n_layers()).map(|l| (m.and_then(|m| m.mean_at(l)), m.and_then(|m| m.std_at(l)))).collect()
    }

    /// Lens runs: the token-weighted LogitLens perplexity per layer (`summary.token_weighted_ppl`,
    /// else `exp(token_weighted_nll)`); empty for other runs.
    pub fn lens_ppl(&self) -> Vec<Option<f64>> {
        let Some(s) = &self.lens else { return Vec::new() };
        (0..=self.n_layers())
            .map(|l| at(&s.token_weighted_ppl, l).or_else(|| at(&s.token_weighted_nll, l).map(f64::exp)))
            .collect()
    }

    /// Lens runs: the token-weighted NLL per layer (`summary.token_weighted_nll`, else
    /// `ln token_weighted_ppl`); empty for other runs.
    pub fn lens_nll(&self) -> Vec<Option<f64>> {
        let Some(s) = &self.lens else { return Vec::new() };
        (0..=self.n_layers())
            .map(|l| {
                at(&s.token_weighted_nll, l)
                    .or_else(|| at(&s.token_weighted_ppl, l).filter(|p| *p > 0.0).map(f64::ln))
            })
            .collect()
    }

    /// Lens runs: the token-weighted top-1 accuracy per layer; empty for other runs.
    pub fn lens_top1(&self) -> Vec<Option<f64>> {
        let Some(s) = &self.lens else { return Vec::new() };
        (0..=self.n_layers()).map(|l| at(&s.token_weighted_top1, l)).collect()
    }

    /// Lens runs: the token-weighted perplexity at the last layer `L`.
    pub fn lens_final_ppl(&self) -> Option<f64> {
        self.lens_ppl().last().copied().flatten()
    }

    /// Lens runs: the layer with the lowest token-weighted NLL (`summary.best_layer`, else
    /// computed) and its perplexity.
    pub fn lens_best(&self) -> Option<(usize, Option<f64>)> {
        let s = self.lens.as_ref()?;
        let ppl = self.lens_ppl();
        let best = s.best_layer.filter(|&l| l <= self.n_layers()).or_else(|| {
            self.lens_nll()
                .iter()
                .enumerate()
                .filter_map(|(l, v)| v.map(|v| (l, v)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(l, _)| l)
        })?;
        Some((best, ppl.get(best).copied().flatten()))
    }

    /// Probe runs: CV accuracy `(mean, std over folds)` per layer (`metrics.probe_accuracy`,
    /// else `summary.per_layer`); empty for other runs.
    pub fn probe_accuracy(&self) -> Vec<MeanStd> {
        let Some(s) = &self.probe else { return Vec::new() };
        let m = self.metrics.metric(TaskMetric::ProbeAccuracy.name());
        (0..=self.n_layers())
            .map(|l| {
                let pl = s.layer(l);
                let mean = m.and_then(|m| m.mean_at(l)).or_else(|| pl.and_then(|p| p.accuracy));
                let std = m.and_then(|m| m.std_at(l)).or_else(|| pl.and_then(|p| p.accuracy_std));
                (mean, std)
            })
            .collect()
    }

    /// Probe runs: the majority-class baseline accuracy (`summary.baseline_accuracy`, else
    /// the first per-layer one).
    pub fn probe_baseline(&self) -> Option<f64> {
        let s = self.probe.as_ref()?;
        s.baseline_accuracy.or_else(|| s.per_layer.iter().find_map(|p| p.baseline_accuracy))
    }

    /// Probe runs: the best layer and its accuracy (`summary.best_layer` / `best_accuracy`,
    /// else the arg-max of the CV accuracy).
    pub fn probe_best(&self) -> Option<(usize, f64)> {
        let s = self.probe.as_ref()?;
        let acc = self.probe_accuracy();
        if let Some(l) = s.best_layer.filter(|&l| l <= self.n_layers()) {
            if let Some(a) = s.best_accuracy.or_else(|| acc.get(l).and_then(|p| p.0)) {
                return Some((l, a));
            }
        }
        acc.iter().enumerate().filter_map(|(l, p)| p.0.map(|a| (l, a))).fold(
            None,
            |best: Option<(usize, f64)>, (l, a)| match best {
                Some((_, b)) if b >= a => best,
                _ => Some((l, a)),
            },
        )
    }

    /// Probe runs: the layers where the solver did not converge in some fold.
    pub fn probe_not_converged(&self) -> Vec<usize> {
        self.probe
            .as_ref()
            .map(|s| s.per_layer.iter().filter(|p| p.converged == Some(false)).map(|p| p.layer).collect())
            .unwrap_or_default()
    }
}
