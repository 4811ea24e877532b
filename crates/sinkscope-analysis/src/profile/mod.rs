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
use serde::Serialize;
use serde_json::{json, Value};
use sinkscope_io::tokenizer::BosPolicy;
use sinkscope_io::ModelFiles;
use sinkscope_metrics::massive_layers::{detect_massive_layers, MassiveLayerParams, MlpOutNorms};
use sinkscope_metrics::values::SinkValueStats;
use sinkscope_metrics::{AttentionParams, HeadClass, LayerAttention, LayerMetrics, MetricsError};
use sinkscope_model::{ForwardCtx, Model};
use sinkscope_schema::{Manifest, Metric};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Schema version of `manifest.json`, `metrics.json` and `prompts.jsonl` (the one of
/// `sinkscope-schema`, which the readers share).
pub use sinkscope_schema::SCHEMA_VERSION;

mod manifest;
mod options;
mod record;

pub use manifest::{conventions, peak_rss_mib, process_cpu_s, DataSource, FileSource, ManifestHeader};
pub(crate) use manifest::{data_block, manifest_base, object, profile_manifest, write_json};
pub use options::{FirstTokenSpec, ProfileOptions};
pub use record::{first_token, prompt_record, FirstToken, HeadRecord, PromptPhases, PromptRecord};

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

/// Tokenises, runs and records one prompt.
///
/// # Errors
/// As [`prepare`], [`profile_tokens`] and [`prompt_record`].
pub fn profile_example(
    model: &Model,
    files: &ModelFiles,
    example: &Example,
    opts: &ProfileOptions,
) -> Result<PromptRecord> {
    let prepared = prepare(files, &example.id, &example.text, opts)?;
    let profile = profile_tokens(model, &example.id, &prepared.ids, opts)?;
    let first = first_token(files, &prepared.ids, prepared.bos_prepended);
    prompt_record(&example.id, &prepared, first, example.label, &profile, opts)
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
            .map(|(j, p)| prompt_record(&j.id, &j.prepared, j.first, j.label, &p?, opts))
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
        // A worker the system refuses (its stack does not fit the process's limits) is left
        // out: each job's result does not depend on which worker runs it or on how many run.
        // Only when none starts is it an error.
        let mut started = 0usize;
        let mut refused = None;
        for _ in 0..workers {
            let res_tx = res_tx.clone();
            let (job_rx, stop) = (&job_rx, &stop);
            let spawned = std::thread::Builder::new().spawn_scoped(scope, move || loop {
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
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        if let (0, Some(e)) = (started, refused) {
            return Err(AnalysisError::Internal(format!(
                "starting a prompt worker thread failed: {e} (the limits of this process: ulimit -v, \
                 ulimit -u or its cgroup)"
            )));
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
    let expected = profile_manifest(opts, header, source, limit, (1, DEFAULT_PACK_TOKENS), "complete")?;
    if !crate::resume::check_manifest(&manifest_path, &serde_json::to_value(&expected)?)? {
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
    let running = base("running")?;
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
    write_json(&out.join("metrics.json"), &metrics)?;
    let aggregate_s = t1.elapsed().as_secs_f64();
    let tokens_per_s = n_tokens as f64 / run_s.max(1e-9);
    let peak = peak_rss_mib();
    let cpu_s = process_cpu_s().zip(cpu0).map(|(b, a)| b - a);
    let manifest = Manifest {
        first_token: agg.first_token(),
        n_prompts: Some(n_prompts),
        n_tokens: Some(n_tokens),
        n_truncated: Some(agg.n_truncated()),
        timings: object(&json!({
                "load_s": header.load_s,
                "run_s": run_s,
                "aggregate_s": aggregate_s,
                "tokens_per_s": tokens_per_s,
                "peak_rss_mib": peak,
                "peak_rss_source": "VmHWM of /proc/self/status at the end of the run (whole process, model included)",
                "cpu_s": cpu_s,
                "tokens_per_cpu_s": cpu_s.filter(|&c| c > 0.0).map(|c| n_tokens as f64 / c),
                "cpu_source": "user + system time of all threads during the prompts and aggregation (/proc/self/stat); unlike tokens_per_s it does not depend on other load on the machine",
        })),
        ..base("complete")?
    };
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
