//! Streaming aggregation of [`PromptRecord`]s into `metrics.json`.
//!
//! The [`Aggregator`] keeps, per metric and layer, a running count / mean / sum of squared
//! deviations (Welford) / min / max, per head running means, and for the top activations one
//! entry per `(token position, dimension)` pair ever seen in a prompt's top k. None of this
//! grows with the number of prompts: the first two are fixed by the model's shape, the last
//! is bounded by `context × d` per layer and in practice holds a handful of pairs (the
//! massive activations sit in a few fixed dimensions). [`Aggregator::footprint`] reports
//! the state's size so tests can check it.
//!
//! Intervals: every curve, correlation and phase boundary gets a 95 % bootstrap interval
//! over prompts from a Poisson bootstrap ([`sinkscope_metrics::bootstrap`]): per curve and
//! layer `B` running weighted sums, and the same for a few per-prompt scalars (phase
//! boundaries and per-prompt r) — again independent of the number of prompts.
//!
//! The aggregator reads records, not activations, so a `prompts.jsonl` can be aggregated
//! again later ([`aggregate_file`]) with the same result.

use crate::error::{AnalysisError, Result};
use crate::profile::{ProfileOptions, PromptRecord, SCHEMA_VERSION};
use serde_json::Value;
use sinkscope_metrics::aggregate::corr_bos_lagged;
use sinkscope_metrics::bootstrap::{PoissonBootstrap, LEVEL};
use sinkscope_metrics::massive_layers::detect_massive_layers;
use sinkscope_metrics::phases::{phases, PhaseCurves, PhaseParams, Phases};
use sinkscope_metrics::{AttentionParams, HeadClass, MetricsError};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

/// Running count, mean, sum of squared deviations, min and max (Welford's algorithm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Running {
    n: usize,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for Running {
    fn default() -> Self {
        Running { n: 0, mean: 0.0, m2: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY }
    }
}

impl Running {
    /// Adds a value.
    pub fn push(&mut self, v: f64) {
        self.n += 1;
        let d = v - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (v - self.mean);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Number of values.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The mean, `None` with no values.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then_some(self.mean)
    }

    /// Sample standard deviation (divisor `n − 1`; 0 for one value), `None` with no values.
    pub fn std(&self) -> Option<f64> {
        match self.n {
            0 => None,
            1 => Some(0.0),
            n => Some((self.m2.max(0.0) / (n - 1) as f64).sqrt()),
        }
    }

    /// Minimum, `None` with no values.
    pub fn min(&self) -> Option<f64> {
        (self.n > 0).then_some(self.min)
    }

    /// Maximum, `None` with no values.
    pub fn max(&self) -> Option<f64> {
        (self.n > 0).then_some(self.max)
    }
}

/// Running means of one head's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct HeadRunning {
    bos_attention: Running,
    bos_attention_excl: Running,
    attn_entropy: Running,
    identity_score: Running,
    prev_token_score: Running,
}

/// The aggregated `metrics.json` document: the schema crate's type, which the readers parse.
pub use sinkscope_schema::MetricsFile;
use sinkscope_schema::{
    BootstrapInfo, BoundaryEstimate, CorrelationLags, Correlations, Heads, Interval, LaggedCorrelation,
    LayerValue, MassiveLayer, MeanCurveBoundaries, Metric, MetricSummary, PerPromptBoundaries,
    PerPromptBoundary, PerPromptStat, PhaseBoundaries, RunSummary,
};

/// Folds prompt records into per-layer summaries (see the module docs).
pub struct Aggregator {
    n_layers: usize,
    n_heads: usize,
    opts: ProfileOptions,
    n_prompts: usize,
    n_tokens: usize,
    n_truncated: usize,
    bound_violations: usize,
    curves: BTreeMap<String, Vec<Running>>,
    heads: Vec<Vec<HeadRunning>>,
    top: Vec<BTreeMap<(usize, usize), (f64, usize)>>,
    massive_counts: BTreeMap<usize, usize>,
    first: Option<crate::profile::FirstToken>,
    first_same: bool,
    /// Token-weighted model NLL: (sum, positions), when the records carry it.
    nll: Option<(f64, usize)>,
    /// Poisson-bootstrap sums of every curve (`L + 1` statistics each).
    boot: BTreeMap<String, PoissonBootstrap>,
    /// Per-prompt scalars ([`PROMPT_SCALARS`]): running summaries and bootstrap sums.
    scalars: Vec<Running>,
    scalar_boot: PoissonBootstrap,
    /// Poisson-bootstrap sums of every head's `bos_attention` (statistic `(l − 1) · H + h`).
    head_boot: PoissonBootstrap,
    /// Prompts whose own curves give no phases.
    n_without_phases: usize,
}

/// The per-prompt scalars summarised over prompts: the phase boundaries of each prompt's
/// own curves, and its lag-0 / lag-1 correlations of `Δ log bos_norm` with `Δ entropy` and
/// `Δ sink_rate`.
pub const PROMPT_SCALARS: [&str; 6] = [
    "compress_start",
    "refine_start",
    "bos_entropy_lag0",
    "bos_entropy_lag1",
    "bos_sink_lag0",
    "bos_sink_lag1",
];

/// The curves the phase rule reads, in [`PhaseCurves`] order.
pub const PHASE_CURVES: [&str; 5] = [
    Metric::BosNorm.name(),
    Metric::BosRatio.name(),
    Metric::EntropyNorm.name(),
    Metric::SinkRate.name(),
    Metric::MixingScore.name(),
];

/// The Mix–Compress–Refine phases of a set of curves looked up by name (`get` returns `L + 1`
/// values; a curve it does not have counts as all missing).
///
/// # Errors
/// As [`phases`].
pub fn curve_phases(
    get: &dyn Fn(&str) -> Option<Vec<Option<f64>>>,
    n_layers: usize,
    params: &PhaseParams,
) -> std::result::Result<Option<Phases>, MetricsError> {
    let c: Vec<Vec<Option<f64>>> =
        PHASE_CURVES.iter().map(|n| get(n).unwrap_or_else(|| vec![None; n_layers + 1])).collect();
    let [bos_norm, bos_ratio, entropy_norm, sink_rate, mixing_score] = c.as_slice() else {
        return Ok(None);
    };
    phases(&PhaseCurves { bos_norm, bos_ratio, entropy_norm, sink_rate, mixing_score }, params)
}

/// The per-prompt scalars of [`PROMPT_SCALARS`] from one prompt's curves.
///
/// # Errors
/// As [`phases`] and [`corr_bos_lagged`].
pub fn prompt_scalars(
    metrics: &BTreeMap<String, Vec<Option<f64>>>,
    n_layers: usize,
    params: &PhaseParams,
) -> std::result::Result<(Option<Phases>, [Option<f64>; 6]), MetricsError> {
    let p = curve_phases(&|n| metrics.get(n).cloned(), n_layers, params)?;
    let empty = vec![None; n_layers + 1];
    let get = |n: &str| metrics.get(n).unwrap_or(&empty);
    let bos = get(Metric::BosNorm.name());
    let r = |y: &str, lag| -> std::result::Result<Option<f64>, MetricsError> {
        if get(y).len() != bos.len() {
            return Ok(None);
        }
        corr_bos_lagged(bos, get(y), lag)
    };
    Ok((
        p,
        [
            p.map(|p| p.compress_start() as f64),
            p.and_then(|p| p.refine_start()).map(|l| l as f64),
            r(Metric::Entropy.name(), 0)?,
            r(Metric::Entropy.name(), 1)?,
            r(Metric::SinkRate.name(), 0)?,
            r(Metric::SinkRate.name(), 1)?,
        ],
    ))
}

/// An interval of the schema (`{"low": …, "high": …}`, `null` when there is none).
fn interval(iv: Option<(f64, f64)>) -> Option<Interval> {
    iv.map(|(low, high)| Interval { low, high })
}

/// The schema's layer range of a metrics-crate one.
fn layer_range(r: sinkscope_metrics::phases::LayerRange) -> sinkscope_schema::LayerRange {
    sinkscope_schema::LayerRange {
        first: r.first,
        last: r.last,
        first_depth: Some(r.first_depth),
        last_depth: Some(r.last_depth),
    }
}

/// The per-layer summary of a metric from its running summaries: mean, std, min and max
/// (`metrics.json`, `metrics.<name>` of lens and probe runs).
pub(crate) fn metric_summary(runs: &[Running]) -> MetricSummary {
    MetricSummary {
        mean: runs.iter().map(Running::mean).collect(),
        std: runs.iter().map(Running::std).collect(),
        min: runs.iter().map(Running::min).collect(),
        max: runs.iter().map(Running::max).collect(),
        ..MetricSummary::default()
    }
}

/// As [`metric_summary`], with the counts and the bootstrap interval of the mean at every
/// layer (profile and mc runs).
pub(crate) fn metric_summary_ci(runs: &[Running], ci: &[Option<(f64, f64)>]) -> MetricSummary {
    MetricSummary {
        n: runs.iter().map(Running::n).collect(),
        ci_low: ci.iter().map(|iv| iv.map(|x| x.0)).collect(),
        ci_high: ci.iter().map(|iv| iv.map(|x| x.1)).collect(),
        ..metric_summary(runs)
    }
}

fn check(what: &'static str, index: usize, v: f64) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(AnalysisError::Aggregate { what, source: MetricsError::NonFiniteValue { what, index, value: v } })
    }
}

fn mismatch(what: &'static str, left: usize, right: usize) -> AnalysisError {
    AnalysisError::Aggregate { what, source: MetricsError::LengthMismatch { what, left, right } }
}

/// The head-class rule of `sinkscope_metrics::attention` (module docs there), applied to
/// prompt-mean statistics. A unit test checks it against `HeadStats::from_pattern`.
pub fn classify_head(
    bos_attention: f64,
    identity_score: f64,
    prev_token_score: Option<f64>,
    attn_entropy: Option<f64>,
    params: &AttentionParams,
) -> HeadClass {
    if bos_attention > params.sink_epsilon {
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

impl Aggregator {
    /// An empty aggregator for a model with `n_layers` blocks of `n_heads` heads.
    pub fn new(n_layers: usize, n_heads: usize, opts: ProfileOptions) -> Self {
        let bootstrap = opts.bootstrap;
        Aggregator {
            n_layers,
            n_heads,
            opts,
            n_prompts: 0,
            n_tokens: 0,
            n_truncated: 0,
            bound_violations: 0,
            curves: BTreeMap::new(),
            heads: vec![vec![HeadRunning::default(); n_heads]; n_layers],
            top: vec![BTreeMap::new(); n_layers + 1],
            massive_counts: BTreeMap::new(),
            first: None,
            first_same: true,
            nll: None,
            boot: BTreeMap::new(),
            scalars: vec![Running::default(); PROMPT_SCALARS.len()],
            scalar_boot: PoissonBootstrap::new(PROMPT_SCALARS.len(), bootstrap),
            head_boot: PoissonBootstrap::new(n_layers * n_heads, bootstrap),
            n_without_phases: 0,
        }
    }

    /// Folds in one prompt.
    ///
    /// # Errors
    /// [`AnalysisError::Aggregate`] for a record whose arrays do not have `L + 1` entries
    /// (or `H` heads), or with a non-finite value.
    pub fn add(&mut self, r: &PromptRecord) -> Result<()> {
        if let Some((sum, count)) = r.nll {
            let acc = self.nll.get_or_insert((0.0, 0));
            acc.0 += check("model NLL", 0, sum)?;
            acc.1 += count;
        }
        let n = self.n_layers + 1;
        for (name, curve) in &r.metrics {
            if curve.len() != n {
                return Err(mismatch("per-layer metric vs L + 1", curve.len(), n));
            }
            let acc = self.curves.entry(name.clone()).or_insert_with(|| vec![Running::default(); n]);
            for (l, (v, a)) in curve.iter().zip(acc.iter_mut()).enumerate() {
                if let Some(v) = v {
                    a.push(check("per-layer metric", l, *v)?);
                }
            }
        }
        let ordinal = self.n_prompts as u64;
        for (name, curve) in &r.metrics {
            let params = self.opts.bootstrap;
            self.boot
                .entry(name.clone())
                .or_insert_with(|| PoissonBootstrap::new(n, params))
                .add(ordinal, curve);
        }
        let (p, scalars) =
            prompt_scalars(&r.metrics, self.n_layers, &self.opts.phases).map_err(|source| {
                AnalysisError::Aggregate { what: "per-prompt phases and correlations", source }
            })?;
        self.n_without_phases += usize::from(p.is_none());
        for (v, acc) in scalars.iter().zip(self.scalars.iter_mut()) {
            if let Some(v) = v {
                acc.push(*v);
            }
        }
        self.scalar_boot.add(ordinal, &scalars);
        let h = &r.heads;
        if h.bos_attention.len() != n {
            return Err(mismatch("per-head arrays vs L + 1", h.bos_attention.len(), n));
        }
        for (b, acc) in self.heads.iter_mut().enumerate() {
            let l = b + 1;
            let Some(Some(bos)) = h.bos_attention.get(l) else { continue };
            if bos.len() != acc.len() {
                return Err(mismatch("heads per layer", bos.len(), acc.len()));
            }
            let opt_at = |v: &Vec<Option<Vec<Option<f64>>>>, i: usize| -> Option<f64> {
                v.get(l).and_then(|x| x.as_ref()).and_then(|x| x.get(i).copied().flatten())
            };
            let at = |v: &Vec<Option<Vec<f64>>>, i: usize| -> Option<f64> {
                v.get(l).and_then(|x| x.as_ref()).and_then(|x| x.get(i).copied())
            };
            for (i, a) in acc.iter_mut().enumerate() {
                if let Some(v) = at(&h.bos_attention, i) {
                    a.bos_attention.push(check("bos_attention", l, v)?);
                }
                if let Some(v) = opt_at(&h.bos_attention_excl, i) {
                    a.bos_attention_excl.push(check("bos_attention_excl", l, v)?);
                }
                if let Some(v) = opt_at(&h.attn_entropy, i) {
                    a.attn_entropy.push(check("attn_entropy", l, v)?);
                }
                if let Some(v) = at(&h.identity_score, i) {
                    a.identity_score.push(check("identity_score", l, v)?);
                }
                if let Some(v) = opt_at(&h.prev_token_score, i) {
                    a.prev_token_score.push(check("prev_token_score", l, v)?);
                }
            }
        }
        let flat: Vec<Option<f64>> = (1..n)
            .flat_map(|l| {
                let row = h.bos_attention.get(l).and_then(Option::as_ref);
                (0..self.n_heads).map(move |i| row.and_then(|r| r.get(i).copied()))
            })
            .collect();
        self.head_boot.add(ordinal, &flat);
        for (l, (tops, acc)) in r.top_activations.iter().zip(self.top.iter_mut()).enumerate() {
            for t in tops {
                let v = check("top_activations", l, t.value)?;
                let e = acc.entry((t.token, t.dim)).or_insert((v, 0));
                if v.abs() > e.0.abs() {
                    e.0 = v;
                }
                e.1 += 1;
            }
        }
        for &l in &r.massive_layers {
            *self.massive_counts.entry(l).or_insert(0) += 1;
        }
        match &self.first {
            None => self.first = Some(r.first_token.clone()),
            Some(f) => {
                if f.id != r.first_token.id {
                    self.first_same = false;
                }
            }
        }
        self.n_prompts += 1;
        self.n_tokens += r.n_tokens;
        self.n_truncated += usize::from(r.truncated);
        self.bound_violations += r.bound_violations;
        Ok(())
    }

    /// Prompts folded in.
    pub fn n_prompts(&self) -> usize {
        self.n_prompts
    }

    /// Prompts that were cut.
    pub fn n_truncated(&self) -> usize {
        self.n_truncated
    }

    /// Theorem-1 violations so far.
    pub fn bound_violations(&self) -> usize {
        self.bound_violations
    }

    /// The number of values held (running summaries, head summaries, top-activation
    /// groups, massive-layer counters): independent of the number of prompts.
    pub fn footprint(&self) -> usize {
        self.curves.values().map(Vec::len).sum::<usize>()
            + self.heads.iter().map(Vec::len).sum::<usize>()
            + self.top.iter().map(BTreeMap::len).sum::<usize>()
            + self.massive_counts.len()
            + self.boot.values().map(PoissonBootstrap::footprint).sum::<usize>()
            + self.scalars.len()
            + self.scalar_boot.footprint()
            + self.head_boot.footprint()
    }

    /// The manifest's `first_token` block: the first prompt's token at position 0 and
    /// whether every prompt starts with the same token (`None` before any prompt).
    pub fn first_token(&self) -> Option<sinkscope_schema::FirstToken> {
        self.first.as_ref().map(|f| sinkscope_schema::FirstToken {
            same_for_all_prompts: Some(self.first_same),
            ..f.clone()
        })
    }

    /// [`Aggregator::first_token`] as JSON (`null` before any prompt).
    pub fn first_token_json(&self) -> Value {
        serde_json::to_value(self.first_token()).unwrap_or(Value::Null)
    }

    /// The prompt-mean curve of a metric (`L + 1` entries, `None` where no prompt has a
    /// value; all `None` for an unknown name).
    pub fn mean_curve(&self, name: &str) -> Vec<Option<f64>> {
        match self.curves.get(name) {
            Some(c) => c.iter().map(Running::mean).collect(),
            None => vec![None; self.n_layers + 1],
        }
    }

    /// The bootstrap interval of the mean of curve `name` at every layer (`L + 1` entries).
    fn curve_interval(&self, name: &str) -> Vec<Option<(f64, f64)>> {
        match self.boot.get(name) {
            Some(b) => (0..=self.n_layers).map(|l| b.interval(l)).collect(),
            None => vec![None; self.n_layers + 1],
        }
    }

    /// Replicate `b`'s weighted mean curve of `name` (`None` when the run has no such curve).
    fn replicate_curve(&self, name: &str, b: usize) -> Option<Vec<Option<f64>>> {
        self.boot.get(name).map(|bs| bs.means(b, 0..self.n_layers + 1))
    }

    fn replicates(&self) -> usize {
        self.opts.bootstrap.replicates
    }

    /// `summary.phase_boundaries`: the boundaries of the prompt-mean curves with their
    /// bootstrap interval (the rule rerun on every replicate's mean curves), and the
    /// per-prompt boundaries as mean ± sd with the interval of their mean.
    fn phase_boundaries(&self, mean_phases: Option<&Phases>) -> Result<PhaseBoundaries> {
        let agg = |source| AnalysisError::Aggregate { what: "phases of a bootstrap replicate", source };
        let mut starts: Vec<Option<(usize, Option<usize>)>> = Vec::with_capacity(self.replicates());
        for b in 0..self.replicates() {
            let p = curve_phases(&|n| self.replicate_curve(n, b), self.n_layers, &self.opts.phases)
                .map_err(agg)?;
            starts.push(p.map(|p| (p.compress_start(), p.refine_start())));
        }
        let with_phases = starts.iter().flatten().count();
        let with_refine = starts.iter().flatten().filter(|(_, r)| r.is_some()).count();
        type Starts = (usize, Option<usize>);
        let iv = |f: &dyn Fn(&Starts) -> Option<usize>| {
            let mut v: Vec<f64> = starts.iter().flatten().filter_map(f).map(|x| x as f64).collect();
            sinkscope_metrics::bootstrap::percentile_interval(&mut v)
        };
        let l = self.n_layers.max(1) as f64;
        let per_prompt = |k: usize| {
            let r = self.scalars.get(k).copied().unwrap_or_default();
            PerPromptBoundary {
                mean: r.mean(),
                sd: r.std(),
                n: r.n(),
                mean_depth: r.mean().map(|m| m / l),
                ci: interval(self.scalar_boot.interval(k)),
            }
        };
        Ok(PhaseBoundaries {
            mean_curves: Some(MeanCurveBoundaries {
                compress_start: Some(BoundaryEstimate {
                    layer: mean_phases.map(Phases::compress_start),
                    ci: interval(iv(&|s| Some(s.0))),
                    replicates_with_phases: Some(with_phases),
                    replicates_with_refine: None,
                }),
                refine_start: Some(BoundaryEstimate {
                    layer: mean_phases.and_then(Phases::refine_start),
                    ci: interval(iv(&|s| s.1)),
                    replicates_with_phases: None,
                    replicates_with_refine: Some(with_refine),
                }),
                replicates: Some(self.replicates()),
            }),
            per_prompt: Some(PerPromptBoundaries {
                compress_start: Some(per_prompt(0)),
                refine_start: Some(per_prompt(1)),
                n_prompts_without_phases: Some(self.n_without_phases),
            }),
        })
    }

    /// `summary.correlations`: for `Δ log bos_norm` against `Δ entropy` (`bos_entropy`) and
    /// `Δ sink_rate` (`bos_sink`), at lag 0 and lag 1: r of the prompt-mean curves with its
    /// bootstrap interval, and the per-prompt r as mean ± sd with the interval of its mean.
    fn correlations(&self) -> Result<Correlations> {
        let agg = |source| AnalysisError::Aggregate { what: "correlations", source };
        let lagged = |y: &str, k0: usize, lag: usize| -> Result<LaggedCorrelation> {
            let bos = self.mean_curve(Metric::BosNorm.name());
            let r = corr_bos_lagged(&bos, &self.mean_curve(y), lag).map_err(agg)?;
            let mut reps: Vec<f64> = Vec::with_capacity(self.replicates());
            for b in 0..self.replicates() {
                if let (Some(x), Some(yy)) =
                    (self.replicate_curve(Metric::BosNorm.name(), b), self.replicate_curve(y, b))
                {
                    if let Some(v) = corr_bos_lagged(&x, &yy, lag).map_err(agg)? {
                        reps.push(v);
                    }
                }
            }
            let ci = sinkscope_metrics::bootstrap::percentile_interval(&mut reps);
            let pp = self.scalars.get(k0 + lag).copied().unwrap_or_default();
            Ok(LaggedCorrelation {
                r,
                ci: interval(ci),
                per_prompt: Some(PerPromptStat {
                    mean: pp.mean(),
                    sd: pp.std(),
                    n: pp.n(),
                    ci: interval(self.scalar_boot.interval(k0 + lag)),
                }),
            })
        };
        let lags = |y: &str, k0: usize| -> Result<CorrelationLags> {
            Ok(CorrelationLags { lag0: Some(lagged(y, k0, 0)?), lag1: Some(lagged(y, k0, 1)?) })
        };
        Ok(Correlations {
            bos_entropy: Some(lags(Metric::Entropy.name(), 2)?),
            bos_sink: Some(lags(Metric::SinkRate.name(), 4)?),
        })
    }

    /// Builds `metrics.json` (schema in `docs/results-schema.md`).
    ///
    /// # Errors
    /// [`AnalysisError::Aggregate`] if a summary cannot be computed (not expected for
    /// records made by this crate).
    pub fn finish(&self) -> Result<MetricsFile> {
        let agg = |what: &'static str| move |source| AnalysisError::Aggregate { what, source };
        let metrics: BTreeMap<String, MetricSummary> = self
            .curves
            .iter()
            .map(|(name, c)| (name.clone(), metric_summary_ci(c, &self.curve_interval(name))))
            .collect();
        let params = &self.opts.attention;
        let per_head = |f: &dyn Fn(&HeadRunning) -> Option<f64>| -> sinkscope_schema::HeadTable {
            std::iter::once(None)
                .chain(self.heads.iter().map(|hs| Some(hs.iter().map(f).collect())))
                .collect()
        };
        let classes: Vec<Vec<HeadClass>> = self
            .heads
            .iter()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        classify_head(
                            h.bos_attention.mean().unwrap_or(0.0),
                            h.identity_score.mean().unwrap_or(0.0),
                            h.prev_token_score.mean(),
                            h.attn_entropy.mean(),
                            params,
                        )
                    })
                    .collect()
            })
            .collect();
        let head_class_counts = std::iter::once(None)
            .chain(classes.iter().map(|cs| {
                Some(
                    HeadClass::ALL
                        .iter()
                        .map(|&c| (c.as_str().to_string(), cs.iter().filter(|x| **x == c).count() as u64))
                        .collect(),
                )
            }))
            .collect();
        let head_class = std::iter::once(None)
            .chain(classes.iter().map(|cs| Some(cs.iter().map(|c| c.as_str().to_string()).collect())))
            .collect();
        let head_ci = |pick: fn((f64, f64)) -> f64| -> sinkscope_schema::HeadTable {
            std::iter::once(None)
                .chain((0..self.n_layers).map(|b| {
                    Some(
                        (0..self.n_heads)
                            .map(|i| self.head_boot.interval(b * self.n_heads + i).map(pick))
                            .collect(),
                    )
                }))
                .collect()
        };
        let heads = Heads {
            bos_attention: per_head(&|h| h.bos_attention.mean()),
            bos_attention_ci_low: head_ci(|iv| iv.0),
            bos_attention_ci_high: head_ci(|iv| iv.1),
            bos_attention_excl: per_head(&|h| h.bos_attention_excl.mean()),
            attn_entropy: per_head(&|h| h.attn_entropy.mean()),
            identity_score: per_head(&|h| h.identity_score.mean()),
            prev_token_score: per_head(&|h| h.prev_token_score.mean()),
            head_class,
            head_class_counts,
        };
        let k = self.opts.top_k;
        let top: Vec<Vec<sinkscope_schema::TopActivation>> = self
            .top
            .iter()
            .map(|groups| {
                let mut v: Vec<_> = groups.iter().collect();
                v.sort_by(|a: &(&(usize, usize), &(f64, usize)), b| {
                    b.1 .0.abs().total_cmp(&a.1 .0.abs()).then(a.0.cmp(b.0))
                });
                v.into_iter()
                    .take(k)
                    .map(|(&(token, dim), &(value, n))| sinkscope_schema::TopActivation {
                        dim,
                        token,
                        value,
                        n_prompts: Some(n),
                    })
                    .collect()
            })
            .collect();

        let bos_ratio = self.mean_curve(Metric::BosRatio.name());
        let entropy_norm = self.mean_curve(Metric::EntropyNorm.name());
        let massive = detect_massive_layers(
            &self.mean_curve(Metric::MlpBosNorm.name()),
            &self.mean_curve(Metric::MlpOtherMedian.name()),
            &bos_ratio,
            &self.opts.massive,
        )
        .map_err(agg("massive layers"))?;
        let massive: Vec<MassiveLayer> = massive
            .iter()
            .map(|m| MassiveLayer {
                block: Some(m.layer),
                layer: Some(m.layer),
                hook: Some(format!("blocks.{}.hook_mlp_out", m.layer.saturating_sub(1))),
                mlp_ratio: m.mlp_ratio(),
                bos_ratio_gain: m.bos_ratio_gain(),
                mlp_out_bos_norm: Some(m.mlp_out_bos_norm),
                mlp_out_other_median: Some(m.mlp_out_other_median),
                bos_ratio_before: Some(m.bos_ratio_before),
                bos_ratio_after: Some(m.bos_ratio_after),
                n_prompts: Some(self.massive_counts.get(&m.layer).copied().unwrap_or(0)),
            })
            .collect();
        let phase_params = self.opts.phases;
        let phases = curve_phases(
            &|n| self.curves.contains_key(n).then(|| self.mean_curve(n)),
            self.n_layers,
            &phase_params,
        )
        .map_err(agg("phases"))?;
        let phases_typed = phases.map(|p| sinkscope_schema::Phases {
            mix: p.mix.map(layer_range),
            compress: Some(layer_range(p.compress)),
            refine: p.refine.map(layer_range),
            entropy_norm_midpoint: Some(p.entropy_norm_midpoint),
            valley_floor: Some(p.valley_floor),
            valley_layer: Some(p.valley_layer),
        });
        let phase_boundaries = self.phase_boundaries(phases.as_ref())?;
        let correlations = self.correlations()?;
        let corr_at = |c: Option<CorrelationLags>, lag1: bool| {
            c.and_then(|c| if lag1 { c.lag1 } else { c.lag0 }).and_then(|l| l.r)
        };
        let extreme = |curve: &[Option<f64>], largest: bool| -> Option<LayerValue> {
            let best = curve.iter().enumerate().filter_map(|(l, v)| v.map(|v| (l, v))).reduce(|a, b| {
                let better = if largest { b.1 > a.1 } else { b.1 < a.1 };
                if better {
                    b
                } else {
                    a
                }
            });
            best.map(|(layer, value)| LayerValue { layer, value })
        };
        Ok(MetricsFile {
            schema_version: SCHEMA_VERSION,
            kind: None,
            n_layers: self.n_layers,
            n_heads: Some(self.n_heads),
            n_prompts: Some(self.n_prompts),
            n_tokens: Some(self.n_tokens),
            n_samples: None,
            n_classes: None,
            metrics,
            heads,
            top_activations: top,
            summary: RunSummary {
                massive_layers: massive,
                phases: phases_typed,
                phase_boundaries: Some(phase_boundaries),
                corr_bos_entropy: corr_at(correlations.bos_entropy, false),
                corr_bos_sink: corr_at(correlations.bos_sink, false),
                corr_bos_entropy_lag1: corr_at(correlations.bos_entropy, true),
                corr_bos_sink_lag1: corr_at(correlations.bos_sink, true),
                correlations: Some(correlations),
                bootstrap: Some(BootstrapInfo {
                    method: Some("poisson".into()),
                    replicates: Some(self.opts.bootstrap.replicates),
                    seed: Some(self.opts.bootstrap.seed),
                    level: Some(LEVEL),
                }),
                bound_violations: Some(self.bound_violations as u64),
                peak_bos_ratio: extreme(&bos_ratio, true),
                min_entropy_norm: extreme(&entropy_norm, false),
                nll: self.nll.and_then(|(sum, n)| (n > 0).then(|| sum / n as f64)),
                nll_tokens: self.nll.map(|(_, n)| n as u64),
            },
        })
    }
}

/// Aggregates an existing `prompts.jsonl` (streamed line by line).
///
/// # Errors
/// [`AnalysisError::ResultFile`] for an unreadable file or a malformed line (naming it),
/// and as [`Aggregator::add`] / [`Aggregator::finish`].
pub fn aggregate_file(
    path: &Path,
    n_layers: usize,
    n_heads: usize,
    opts: ProfileOptions,
) -> Result<(Aggregator, MetricsFile)> {
    let bad = |reason: String| AnalysisError::ResultFile { path: path.to_path_buf(), reason };
    let f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut agg = Aggregator::new(n_layers, n_heads, opts);
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| bad(format!("line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: PromptRecord = serde_json::from_str(&line).map_err(|e| bad(format!("line {}: {e}", i + 1)))?;
        agg.add(&r)?;
    }
    let m = agg.finish()?;
    Ok((agg, m))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use sinkscope_metrics::aggregate::summarize;
    use sinkscope_metrics::{HeadStats, Matrix};

    /// Invariant: the streaming summary equals the two-pass `summarize` of the metrics
    /// crate (mean, sample std, min, max) within 1e-12 relative.
    #[test]
    fn running_matches_summarize() {
        let vals = [3.5, -1.25, 1e4, 7.0, 0.001, 42.0, -9.5];
        let mut r = Running::default();
        for v in vals {
            r.push(v);
        }
        let s = summarize(vals.iter().map(|&v| Some(v))).unwrap().unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
        assert!(close(r.mean().unwrap(), s.mean));
        assert!(close(r.std().unwrap(), s.std));
        assert_eq!((r.min().unwrap(), r.max().unwrap(), r.n()), (s.min, s.max, s.n));
        let mut one = Running::default();
        one.push(2.0);
        assert_eq!(one.std(), Some(0.0));
        assert_eq!(Running::default().mean(), None);
    }

    /// Invariant: `classify_head` is the metrics crate's rule: on hand-made patterns it
    /// gives the same class as `HeadStats::from_pattern`.
    #[test]
    fn classify_matches_metrics_rule() {
        let p = AttentionParams::default();
        let patterns: Vec<Vec<f32>> = vec![
            vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0],   // sink
            vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],   // identity (and sink by q0? no: 1/3)
            vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0],   // prev-token with bos 2/3 -> sink
            vec![1.0, 0.0, 0.0, 0.1, 0.9, 0.0, 0.05, 0.9, 0.05], // prev-token-ish
            vec![1.0, 0.0, 0.0, 0.2, 0.8, 0.0, 0.2, 0.4, 0.4],   // mixed
            vec![1.0, 0.0, 0.0, 0.25, 0.75, 0.0, 0.25, 0.375, 0.375], // mixing?
        ];
        for (i, a) in patterns.iter().enumerate() {
            let h = HeadStats::from_pattern(&Matrix::new(a, 3, 3).unwrap(), &p).unwrap();
            let c = classify_head(h.bos_attention, h.identity_score, h.prev_token_score, h.attn_entropy, &p);
            assert_eq!(c, h.head_class, "pattern {i}: {h:?}");
        }
    }
}
