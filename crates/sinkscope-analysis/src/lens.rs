//! `lens`: LogitLens — how good each layer's residual stream already is for generation.
//!
//! For every layer l = 0..L, the final norm and the unembedding (metrics.md: "apply the final
//! norm and the unembedding (and any final soft-capping) to X(l)") are applied to `X(l)` as
//! the layer runs, the next-token NLL over positions 1..T−1 is reduced on the spot
//! ([`sinkscope_metrics::lens::next_token_nll`], f64 log-softmax) and the `[T, V]` logits
//! are dropped, so no layer's logits outlive it. The model's own logits are the lens at
//! l = L (the final norm and the head applied to `X(L)`, the same products in the same
//! order), so the model's statistics are layer L's and the forward pass skips its LM head:
//! one unembedding per prompt fewer. A test checks them against an ordinary forward pass's
//! logits bit for bit.

use crate::aggregate::Running;
use crate::error::{AnalysisError, Result};
use candle_core::Tensor;
use serde_json::json;
use sinkscope_metrics::lens::{next_token_nll, LensAccumulator, LensStats};
use sinkscope_metrics::Matrix;
use sinkscope_model::{ForwardCtx, Hook, Model};
use sinkscope_spec::{HookSite, SiteKind};
use std::collections::BTreeMap;

/// Names of the per-layer lens metrics, as in metrics.md.
pub const LENS_METRICS: [&str; 3] = task_names(sinkscope_schema::TaskMetric::LENS);

/// The names of task curves, as the writers spell them.
pub(crate) const fn task_names<const N: usize>(ms: [sinkscope_schema::TaskMetric; N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = ms[i].name();
        i += 1;
    }
    out
}

/// Reduces `X(l)` to its LogitLens statistics as each residual site runs.
struct LensCollector<'m> {
    model: &'m Model,
    tokens: Vec<u32>,
    layers: Vec<Option<LensStats>>,
    error: Option<(HookSite, String)>,
}

/// The next-token statistics of logits `[T, V]` (row `t` scored against `tokens[t + 1]`), read
/// in place.
pub(crate) fn logits_stats(logits: &Tensor, tokens: &[u32]) -> std::result::Result<LensStats, String> {
    let (t, v) = logits.dims2().map_err(|e| e.to_string())?;
    sinkscope_model::layers::fused::with_f32(logits, |data| {
        Matrix::new(data, t, v)
            .map_err(|e| e.to_string())
            .and_then(|m| next_token_nll(&m, tokens, None).map_err(|e| e.to_string()))
    })
    .map_err(|e| e.to_string())?
}

impl Hook for LensCollector<'_> {
    fn wants(&self, site: HookSite) -> bool {
        site.metric_layer().is_some()
    }

    fn on(&mut self, site: HookSite, act: &Tensor) -> sinkscope_model::Result<Option<Tensor>> {
        let Some(l) = site.metric_layer() else { return Ok(None) };
        let stats = logits_stats(&self.model.unembed(act)?, &self.tokens); // [T, V]
        match stats {
            Ok(s) => {
                if let Some(slot) = self.layers.get_mut(l) {
                    *slot = Some(s);
                }
            }
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some((site, e));
                }
            }
        }
        Ok(None)
    }
}

/// LogitLens statistics of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptLens {
    /// `X(l)` for l = 0..L.
    pub layers: Vec<LensStats>,
    /// The model's own next-token statistics (its logits, after the final norm).
    pub model: LensStats,
}

/// Runs the model once on `ids`, reducing every layer's LogitLens logits as they appear.
///
/// # Errors
/// [`AnalysisError::Forward`] for model failures, [`AnalysisError::Options`] when a layer's
/// statistics cannot be computed (the message names the site).
pub fn lens_tokens(model: &Model, id: &str, ids: &[u32]) -> Result<PromptLens> {
    crate::pack::run_one(model, (id, ids), &|ids| LensCollector::new(model, ids))
}

/// [`lens_tokens`] for several prompts in one call ([`crate::pack::run_pack`]: the same
/// results; with a layer-streamed model, each block is read once for all of them).
pub fn lens_pack(model: &Model, prompts: &[(&str, &[u32])]) -> Vec<Result<PromptLens>> {
    crate::pack::run_pack(model, prompts, &|ids| LensCollector::new(model, ids))
}

impl<'m> LensCollector<'m> {
    fn new(model: &'m Model, ids: &[u32]) -> Self {
        let layers = vec![None; model.config.n_layers + 1];
        LensCollector { model, tokens: ids.to_vec(), layers, error: None }
    }
}

impl crate::pack::HookSet for LensCollector<'_> {
    type Output = PromptLens;

    fn ctx(&mut self) -> ForwardCtx<'_> {
        ForwardCtx::new().with(self)
    }

    fn finish(
        self,
        id: &str,
        _ids: &[u32],
        forward: std::result::Result<Option<Tensor>, sinkscope_model::ModelError>,
    ) -> Result<PromptLens> {
        forward.map_err(|source| AnalysisError::Forward { id: id.to_string(), source })?;
        if let Some((site, e)) = self.error {
            return Err(AnalysisError::Options(format!("prompt '{id}': LogitLens at {site}: {e}")));
        }
        let layers = self
            .layers
            .into_iter()
            .enumerate()
            .map(|(l, s)| {
                s.ok_or_else(|| AnalysisError::MissingSite {
                    id: id.to_string(),
                    site: if l == 0 {
                        HookSite::global(SiteKind::Embed)
                    } else {
                        HookSite::block(l - 1, SiteKind::ResidPost)
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // The model's logits are the lens at l = L (module docs).
        let own = layers
            .last()
            .cloned()
            .ok_or_else(|| AnalysisError::Options(format!("prompt '{id}': no layers")))?;
        Ok(PromptLens { layers, model: own })
    }
}

pub use sinkscope_schema::{LensRecord, LensTotals};

/// The statistics of `n` predictions with these sums (what a [`LensTotals`] adds up).
fn totals_stats(n: usize, nll_sum: f64, n_correct: usize) -> LensStats {
    let nll = (n > 0).then(|| nll_sum / n as f64);
    LensStats {
        nll,
        ppl: nll.map(f64::exp),
        top1_accuracy: (n > 0).then(|| n_correct as f64 / n as f64),
        per_position: Vec::new(),
        nll_sum,
        n_tokens: n,
        n_correct,
    }
}

/// Builds the lens record of one prompt.
pub fn lens_record(
    id: &str,
    ids: &[u32],
    first_token: crate::profile::FirstToken,
    lens: &PromptLens,
) -> LensRecord {
    let curve = |f: &dyn Fn(&LensStats) -> Option<f64>| lens.layers.iter().map(f).collect::<Vec<_>>();
    let mut metrics = BTreeMap::new();
    metrics.insert("logit_lens_nll".to_string(), curve(&|s| s.nll));
    metrics.insert("logit_lens_ppl".to_string(), curve(&|s| s.ppl));
    metrics.insert("logit_lens_top1".to_string(), curve(&|s| s.top1_accuracy));
    LensRecord {
        id: id.to_string(),
        n_tokens: ids.len(),
        token_ids: ids.to_vec(),
        first_token,
        metrics,
        model_nll: lens.model.nll,
        totals: LensTotals {
            n_predicted: lens.model.n_tokens,
            nll_sum: lens.layers.iter().map(|s| s.nll_sum).collect(),
            n_correct: lens.layers.iter().map(|s| s.n_correct).collect(),
            model_nll_sum: lens.model.nll_sum,
            model_n_correct: lens.model.n_correct,
        },
    }
}

impl crate::runner::PromptLine for LensRecord {
    fn id(&self) -> &str {
        &self.id
    }

    fn token_ids(&self) -> &[u32] {
        &self.token_ids
    }
}

/// Streaming aggregate of lens runs: per-layer prompt statistics and token-weighted totals.
#[derive(Debug, Clone)]
pub struct LensAggregator {
    n_layers: usize,
    per_prompt: BTreeMap<&'static str, Vec<Running>>,
    weighted: Vec<LensAccumulator>,
    model: LensAccumulator,
    n_prompts: usize,
}

impl crate::runner::Aggregate<LensRecord> for LensAggregator {
    fn add(&mut self, record: &LensRecord) -> Result<()> {
        LensAggregator::add(self, record)
    }
}

impl LensAggregator {
    /// An empty aggregate for a model of `n_layers` blocks.
    pub fn new(n_layers: usize) -> Self {
        LensAggregator {
            n_layers,
            per_prompt: LENS_METRICS.iter().map(|m| (*m, vec![Running::default(); n_layers + 1])).collect(),
            weighted: vec![LensAccumulator::new(); n_layers + 1],
            model: LensAccumulator::new(),
            n_prompts: 0,
        }
    }

    /// Adds one prompt (from its record alone).
    ///
    /// # Errors
    /// [`AnalysisError::Internal`] (naming the prompt) for a record whose totals do not have
    /// one entry per layer of this aggregate.
    pub fn add(&mut self, record: &LensRecord) -> Result<()> {
        let t = &record.totals;
        if t.nll_sum.len() != self.n_layers + 1 || t.n_correct.len() != self.n_layers + 1 {
            return Err(AnalysisError::Internal(format!(
                "prompt '{}': lens record has {} layers, expected {}",
                record.id,
                t.nll_sum.len(),
                self.n_layers + 1
            )));
        }
        for (name, runs) in self.per_prompt.iter_mut() {
            if let Some(curve) = record.metrics.get(*name) {
                for (r, v) in runs.iter_mut().zip(curve) {
                    if let Some(v) = v {
                        r.push(*v);
                    }
                }
            }
        }
        for ((acc, nll_sum), n_correct) in self.weighted.iter_mut().zip(&t.nll_sum).zip(&t.n_correct) {
            acc.add(&totals_stats(t.n_predicted, *nll_sum, *n_correct));
        }
        self.model.add(&totals_stats(t.n_predicted, t.model_nll_sum, t.model_n_correct));
        self.n_prompts += 1;
        Ok(())
    }

    /// Prompts added.
    pub fn n_prompts(&self) -> usize {
        self.n_prompts
    }

    /// The `metrics.json` document (docs/results-schema.md, "lens runs").
    pub fn finish(&self) -> sinkscope_schema::MetricsFile<sinkscope_schema::LensSummary> {
        let metrics = self
            .per_prompt
            .iter()
            .map(|(name, runs)| ((*name).to_string(), crate::aggregate::metric_summary(runs)))
            .collect();
        let nll: Vec<Option<f64>> = self.weighted.iter().map(LensAccumulator::nll).collect();
        let best_layer = nll
            .iter()
            .enumerate()
            .filter_map(|(l, v)| v.map(|v| (l, v)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(l, _)| l);
        let last = nll.get(self.n_layers).copied().flatten();
        sinkscope_schema::MetricsFile {
            schema_version: crate::profile::SCHEMA_VERSION,
            kind: Some(sinkscope_schema::RunKind::Lens.as_str().into()),
            n_layers: self.n_layers,
            n_prompts: Some(self.n_prompts),
            metrics,
            summary: sinkscope_schema::LensSummary {
                n_predicted_tokens: Some(self.model.n_tokens as u64),
                token_weighted_nll: nll,
                token_weighted_ppl: self.weighted.iter().map(LensAccumulator::ppl).collect(),
                token_weighted_top1: self.weighted.iter().map(LensAccumulator::top1_accuracy).collect(),
                model_nll: self.model.nll(),
                model_ppl: self.model.ppl(),
                lens_at_l_minus_model_nll: last.zip(self.model.nll()).map(|(a, b)| a - b),
                best_layer,
            },
            ..Default::default()
        }
    }
}

/// What a finished lens run reports back.
#[derive(Debug, Clone, PartialEq)]
pub struct LensSummary {
    /// Prompts run.
    pub n_prompts: usize,
    /// Tokens run.
    pub n_tokens: usize,
    /// Seconds spent on the prompts.
    pub run_s: f64,
    /// Token-weighted perplexity of the model itself.
    pub model_ppl: Option<f64>,
}

/// Runs LogitLens over a prompt set, writing `manifest.json`, `prompts.jsonl` (one line per
/// prompt, flushed as it completes) and `metrics.json` into `out`. With `opts.resume`, an
/// interrupted run in `out` is continued ([`crate::runner::run_prompts`]).
///
/// # Errors
/// Any tokenisation, forward or output error, naming the prompt or the file.
pub fn run_lens(
    model: &Model,
    files: &sinkscope_io::ModelFiles,
    opts: &crate::profile::ProfileOptions,
    header: &crate::profile::ManifestHeader,
    input: crate::profile::ProfileInput<'_>,
    out: &std::path::Path,
    progress: &mut dyn crate::profile::Progress,
) -> Result<LensSummary> {
    opts.validate()?;
    let output = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| AnalysisError::Output { path: path.clone(), source }
    };
    std::fs::create_dir_all(out).map_err(output(out))?;
    let manifest_path = out.join("manifest.json");
    let data = crate::profile::data_block(&input.source, input.limit, opts);
    let options = opts.to_json();
    let conventions = json!({
        "layer_index": "l = 0..L; l = 0 is X(0) = hook_embed, l >= 1 is X(l) = blocks.{l-1}.hook_resid_post, before the final norm",
        "logit_lens_nll": "mean next-token NLL over positions 1..T-1 of lm_head(final_norm(X(l))) (plus the model's final soft-cap, if any); log-softmax in float64",
        "logit_lens_ppl": "exp(logit_lens_nll) of the prompt",
        "logit_lens_top1": "fraction of positions 1..T-1 whose arg-max logit is the next token",
        "token_weighted": "summary.token_weighted_* pool every predicted token of every prompt",
    });
    let base =
        |status: &str| crate::profile::manifest_base("lens", status, header, &data, &options, &conventions);
    let lines_path = out.join("prompts.jsonl");
    let running = base("running")?;
    // One prompt per pass (the per-prompt work here is not the forward pass), or a chunk of
    // prompts per call when the model streams its layers.
    let (workers, pack_tokens) = crate::pack::schedule(model, input.workers.max(1), 0);
    let run = crate::runner::PromptRun {
        files,
        opts,
        manifest_path: &manifest_path,
        manifest: &running,
        lines_path: &lines_path,
        workers,
        pack_tokens,
    };
    let mut sink = crate::runner::Aggregating(LensAggregator::new(model.config.n_layers));
    let ran = crate::runner::run_prompts(
        &run,
        input.prompts,
        &|ex: crate::datasets::Example, prepared: crate::profile::Prepared| {
            let first = crate::profile::first_token(files, &prepared.ids, prepared.bos_prepended);
            Ok((ex.id, prepared.ids, first))
        },
        &|jobs: Vec<(String, Vec<u32>, crate::profile::FirstToken)>| {
            let prompts: Vec<(&str, &[u32])> =
                jobs.iter().map(|(id, ids, _)| (id.as_str(), ids.as_slice())).collect();
            let lens = lens_pack(model, &prompts);
            jobs.iter()
                .zip(lens)
                .map(|((id, ids, first), l)| Ok(lens_record(id, ids, first.clone(), &l?)))
                .collect()
        },
        &mut sink,
        progress,
    )?;
    let agg = sink.0;
    let n_tokens = ran.n_tokens;
    if agg.n_prompts() == 0 {
        return Err(AnalysisError::NoPrompts);
    }
    let run_s = ran.elapsed.as_secs_f64();
    let metrics = agg.finish();
    crate::profile::write_json(&out.join("metrics.json"), &metrics)?;
    let model_ppl = metrics.summary.model_ppl;
    let manifest = sinkscope_schema::Manifest {
        n_prompts: Some(agg.n_prompts()),
        n_tokens: Some(n_tokens),
        timings: crate::profile::object(&json!({
            "load_s": header.load_s,
            "run_s": run_s,
            "tokens_per_s": n_tokens as f64 / run_s.max(1e-9),
            "peak_rss_mib": crate::profile::peak_rss_mib(),
        })),
        ..base("complete")?
    };
    crate::profile::write_json(&manifest_path, &manifest)?;
    Ok(LensSummary { n_prompts: agg.n_prompts(), n_tokens, run_s, model_ppl })
}
