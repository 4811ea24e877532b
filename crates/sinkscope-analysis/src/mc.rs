//! Multiple-choice LogitLens accuracy per layer (the multiple-choice half of the paper's
//! Fig. 7; metrics.md, "Task probes": `mc_accuracy`).
//!
//! Each item's choices are scored by their LogitLens log-likelihood at every layer: the
//! context (tokenised like any prompt, BOS policy included) followed by the choice's tokens
//! (`" " + choice`, no BOS) is run once per choice, and only the rows that predict the
//! choice's tokens go through the final norm and the unembedding
//! ([`sinkscope_metrics::mc`]). A layer answers the item correctly when the gold choice
//! has the largest summed log-likelihood (`mc_accuracy`) or the largest per byte
//! (`mc_accuracy_norm`). Accuracy per layer is the mean over items, with a 95 % Poisson
//! bootstrap interval over items (metrics.md, "Intervals"); `chance` is the mean of
//! `1 / n_choices`.

use crate::aggregate::Running;
use crate::datasets::{Example, McItem};
use crate::error::{AnalysisError, Result};
use candle_core::Tensor;
use serde_json::json;
use sinkscope_io::tokenizer::BosPolicy;
use sinkscope_metrics::bootstrap::PoissonBootstrap;
use sinkscope_metrics::mc::{item_correct, ChoiceScores};
use sinkscope_model::{ForwardCtx, Hook, Model};
use sinkscope_spec::HookSite;
use std::collections::BTreeMap;

/// Names of the per-layer multiple-choice metrics, as in metrics.md.
pub const MC_METRICS: [&str; 2] = crate::lens::task_names(sinkscope_schema::TaskMetric::MC);

/// Reduces each `X(l)` to the NLL of the choice's tokens (rows `start − 1 .. T − 1` only).
struct ChoiceCollector<'m> {
    model: &'m Model,
    tokens: Vec<u32>,
    /// First token position of the choice.
    start: usize,
    loglik: Vec<Option<f64>>,
    error: Option<(HookSite, String)>,
}

impl Hook for ChoiceCollector<'_> {
    fn wants(&self, site: HookSite) -> bool {
        site.metric_layer().is_some()
    }

    fn on(&mut self, site: HookSite, act: &Tensor) -> sinkscope_model::Result<Option<Tensor>> {
        let Some(l) = site.metric_layer() else { return Ok(None) };
        let t = self.tokens.len();
        let first = self.start.saturating_sub(1);
        // Rows first..T-2 predict the choice's tokens first+1..T-1 (the norm and the head are
        // row-wise, so the other rows need not be unembedded); row T-1 rides along unscored, as
        // in `next_token_nll`'s convention of one token per row.
        let rows = act.narrow(0, first, t - first)?; // [T - first, d]
        let targets = self.tokens.get(first..).unwrap_or(&[]);
        let got = crate::lens::logits_stats(&self.model.unembed(&rows)?, targets); // [T - first, V]
        match got {
            Ok(s) => {
                if let Some(slot) = self.loglik.get_mut(l) {
                    *slot = Some(-s.nll_sum);
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

/// The LogitLens log-likelihood of the tokens `ids[start..]` at every layer `l = 0..L`.
///
/// # Errors
/// [`AnalysisError::Forward`] for model failures, [`AnalysisError::Options`] when
/// `start` is not inside `1..T` or a layer's scores cannot be computed.
pub fn choice_loglik(model: &Model, id: &str, ids: &[u32], start: usize) -> Result<Vec<f64>> {
    if start == 0 || start >= ids.len() {
        return Err(AnalysisError::Options(format!(
            "item '{id}': the choice must start inside the sequence (start {start}, {} tokens)",
            ids.len()
        )));
    }
    let n = model.config.n_layers + 1;
    let mut c = ChoiceCollector { model, tokens: ids.to_vec(), start, loglik: vec![None; n], error: None };
    {
        let mut ctx = ForwardCtx::new().with(&mut c);
        model
            .forward(ids, &mut ctx)
            .map_err(|source| AnalysisError::Forward { id: id.to_string(), source })?;
    }
    if let Some((site, e)) = c.error {
        return Err(AnalysisError::Options(format!("item '{id}': LogitLens at {site}: {e}")));
    }
    c.loglik
        .into_iter()
        .enumerate()
        .map(|(l, v)| v.ok_or_else(|| AnalysisError::Options(format!("item '{id}': layer {l} not seen"))))
        .collect()
}

pub use sinkscope_schema::McRecord;

impl crate::runner::PromptLine for McRecord {
    fn id(&self) -> &str {
        &self.id
    }

    fn token_ids(&self) -> &[u32] {
        &self.token_ids
    }
}

/// The token ids of every choice of `item` as it continues a context: `encode(" " + choice)`
/// without BOS.
///
/// # Errors
/// [`AnalysisError::Tokenize`] naming the item.
pub fn choice_ids(files: &sinkscope_io::ModelFiles, item: &McItem) -> Result<Vec<Vec<u32>>> {
    item.choices
        .iter()
        .map(|c| {
            files
                .tokenizer
                .encode(&format!(" {c}"), BosPolicy::Never)
                .map(|e| e.ids)
                .map_err(|source| AnalysisError::Tokenize { id: item.id.clone(), source })
        })
        .collect()
}

/// Scores one item: every choice (`conts[k]`, see [`choice_ids`]) appended to the context
/// `ctx_ids`.
///
/// # Errors
/// As [`choice_loglik`]; [`AnalysisError::Options`] when `conts` does not have one entry
/// per choice.
pub fn score_item(
    model: &Model,
    item: &McItem,
    ctx_ids: &[u32],
    conts: &[Vec<u32>],
    first_token: crate::profile::FirstToken,
) -> Result<McRecord> {
    if conts.len() != item.choices.len() {
        return Err(AnalysisError::Options(format!(
            "item '{}': {} choices, {} tokenised",
            item.id,
            item.choices.len(),
            conts.len()
        )));
    }
    let mut choices = Vec::with_capacity(item.choices.len());
    for (c, cont) in item.choices.iter().zip(conts) {
        let mut ids = ctx_ids.to_vec();
        ids.extend_from_slice(cont);
        let loglik = choice_loglik(model, &item.id, &ids, ctx_ids.len())?;
        choices.push(ChoiceScores { loglik, bytes: c.len() });
    }
    let per_layer = item_correct(&choices, item.gold, model.config.n_layers);
    Ok(McRecord {
        id: item.id.clone(),
        n_tokens: ctx_ids.len(),
        token_ids: ctx_ids.to_vec(),
        first_token,
        gold: item.gold,
        correct: per_layer.iter().map(|c| c.0).collect(),
        correct_norm: per_layer.iter().map(|c| c.1).collect(),
        choices,
    })
}

/// Streaming aggregate of an `mc` run: per-layer accuracy with bootstrap sums.
#[derive(Debug, Clone)]
pub struct McAggregator {
    n_layers: usize,
    acc: [Vec<Running>; 2],
    boot: [PoissonBootstrap; 2],
    chance: Running,
    n_items: usize,
}

impl crate::runner::Aggregate<McRecord> for McAggregator {
    fn add(&mut self, record: &McRecord) -> Result<()> {
        McAggregator::add(self, record)
    }
}

impl McAggregator {
    /// An empty aggregate for `n_layers` blocks.
    pub fn new(n_layers: usize, bootstrap: sinkscope_metrics::bootstrap::BootstrapParams) -> Self {
        let n = n_layers + 1;
        McAggregator {
            n_layers,
            acc: [vec![Running::default(); n], vec![Running::default(); n]],
            boot: [PoissonBootstrap::new(n, bootstrap), PoissonBootstrap::new(n, bootstrap)],
            chance: Running::default(),
            n_items: 0,
        }
    }

    /// Adds one item (from its record alone).
    ///
    /// # Errors
    /// [`AnalysisError::Internal`] for a record without one entry per layer.
    pub fn add(&mut self, r: &McRecord) -> Result<()> {
        let n = self.n_layers + 1;
        if r.correct.len() != n || r.correct_norm.len() != n || r.choices.is_empty() {
            return Err(AnalysisError::Internal(format!(
                "item '{}': mc record has {} layers and {} choices, expected {n} layers",
                r.id,
                r.correct.len(),
                r.choices.len()
            )));
        }
        for (k, flags) in [&r.correct, &r.correct_norm].into_iter().enumerate() {
            let v: Vec<Option<f64>> = flags.iter().map(|&c| Some(if c { 1.0 } else { 0.0 })).collect();
            for (run, x) in self.acc[k].iter_mut().zip(&v) {
                run.push(x.unwrap_or(0.0));
            }
            self.boot[k].add(self.n_items as u64, &v);
        }
        self.chance.push(1.0 / r.choices.len() as f64);
        self.n_items += 1;
        Ok(())
    }

    /// Items added.
    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// The `metrics.json` document (docs/results-schema.md, "mc runs").
    pub fn finish(&self) -> sinkscope_schema::MetricsFile<sinkscope_schema::McSummary> {
        let metrics = MC_METRICS
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let ci: Vec<Option<(f64, f64)>> =
                    (0..=self.n_layers).map(|l| self.boot[k].interval(l)).collect();
                ((*name).to_string(), crate::aggregate::metric_summary_ci(&self.acc[k], &ci))
            })
            .collect();
        let mean = |k: usize| self.acc[k].iter().map(Running::mean).collect::<Vec<_>>();
        let best = |k: usize| {
            mean(k)
                .iter()
                .enumerate()
                .filter_map(|(l, v)| v.map(|v| (l, v)))
                .fold(None, |b: Option<(usize, f64)>, x| match b {
                    Some(b) if b.1 >= x.1 => Some(b),
                    _ => Some(x),
                })
                .map(|(layer, value)| sinkscope_schema::LayerValue { layer, value })
        };
        sinkscope_schema::MetricsFile {
            schema_version: crate::profile::SCHEMA_VERSION,
            kind: Some(sinkscope_schema::RunKind::Mc.as_str().into()),
            n_layers: self.n_layers,
            n_prompts: Some(self.n_items),
            metrics,
            summary: sinkscope_schema::McSummary {
                n_items: Some(self.n_items),
                chance: self.chance.mean(),
                best_layer: best(0),
                best_layer_norm: best(1),
                accuracy_at_l: mean(0).get(self.n_layers).copied().flatten(),
                bootstrap: Some(sinkscope_schema::BootstrapInfo {
                    method: Some("poisson".into()),
                    replicates: Some(self.boot[0].params().replicates),
                    seed: Some(self.boot[0].params().seed),
                    level: Some(0.95),
                }),
            },
            ..Default::default()
        }
    }
}

/// What a finished `mc` run reports back.
#[derive(Debug, Clone, PartialEq)]
pub struct McSummary {
    /// Items run.
    pub n_items: usize,
    /// Seconds spent on the items.
    pub run_s: f64,
    /// Accuracy at the last layer (summed log-likelihood).
    pub accuracy_at_l: Option<f64>,
    /// Mean chance accuracy.
    pub chance: Option<f64>,
}

/// The items of an `mc` run and where they came from.
pub struct McInput<'a> {
    /// The dataset (for the manifest).
    pub source: crate::profile::DataSource,
    /// The `--limit` asked for (already applied to `items`), for the record.
    pub limit: Option<usize>,
    /// The items, in order.
    pub items: &'a [McItem],
}

/// Runs the multiple-choice LogitLens over `input.items` (in order), writing `manifest.json`,
/// `prompts.jsonl` (one line per item, flushed) and `metrics.json` into `out`; `--resume`
/// continues an interrupted run ([`crate::runner::run_prompts`]).
///
/// # Errors
/// Any tokenisation, forward or output error, naming the item or the file.
pub fn run_mc(
    model: &Model,
    files: &sinkscope_io::ModelFiles,
    opts: &crate::profile::ProfileOptions,
    header: &crate::profile::ManifestHeader,
    input: McInput<'_>,
    out: &std::path::Path,
    progress: &mut dyn crate::profile::Progress,
) -> Result<McSummary> {
    opts.validate()?;
    std::fs::create_dir_all(out)
        .map_err(|source| AnalysisError::Output { path: out.to_path_buf(), source })?;
    let manifest_path = out.join("manifest.json");
    let McInput { source, limit, items } = input;
    let data = crate::profile::data_block(&source, limit, opts);
    let options = opts.to_json();
    let conventions = json!({
        "layer_index": "l = 0..L; l = 0 is X(0) = hook_embed, l >= 1 is X(l) = blocks.{l-1}.hook_resid_post, before the final norm",
        "mc_loglik": "the context (tokenised like a prompt, BOS policy applied) followed by encode(' ' + choice) without BOS is run once per choice; loglik(l, choice) = -Σ over the choice's tokens of the next-token NLL of lm_head(final_norm(X(l))) (float64 log-softmax)",
        "mc_accuracy": "fraction of items whose gold choice has the largest loglik at layer l (ties: the lowest choice index)",
        "mc_accuracy_norm": "as mc_accuracy with loglik divided by the choice's length in UTF-8 bytes (lm-evaluation-harness acc_norm)",
        "chance": "mean over items of 1 / n_choices",
        "bootstrap": "Poisson bootstrap over items (metrics.md, Intervals)",
    });
    let base =
        |status: &str| crate::profile::manifest_base("mc", status, header, &data, &options, &conventions);
    let lines_path = out.join("prompts.jsonl");
    let running = base("running")?;
    let run = crate::runner::PromptRun {
        files,
        opts,
        manifest_path: &manifest_path,
        manifest: &running,
        lines_path: &lines_path,
        workers: 1,
        pack_tokens: 0,
    };
    let by_id: BTreeMap<&str, &McItem> = items.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut prompts =
        items.iter().map(|i| Example { id: i.id.clone(), text: i.context.clone(), label: None });
    let mut sink = crate::runner::Aggregating(McAggregator::new(model.config.n_layers, opts.bootstrap));
    type Job = (McItem, Vec<u32>, Vec<Vec<u32>>, crate::profile::FirstToken);
    let ran = crate::runner::run_prompts(
        &run,
        &mut prompts,
        &|ex: Example, prepared: crate::profile::Prepared| -> Result<Job> {
            let first = crate::profile::first_token(files, &prepared.ids, prepared.bos_prepended);
            let item = by_id
                .get(ex.id.as_str())
                .ok_or_else(|| AnalysisError::Internal(format!("item '{}' lost", ex.id)))?;
            let conts = choice_ids(files, item)?;
            Ok(((*item).clone(), prepared.ids, conts, first))
        },
        &crate::runner::one_by_one(|(item, ids, conts, first): Job| {
            score_item(model, &item, &ids, &conts, first)
        }),
        &mut sink,
        progress,
    )?;
    let agg = sink.0;
    if agg.n_items() == 0 {
        return Err(AnalysisError::NoPrompts);
    }
    let run_s = ran.elapsed.as_secs_f64();
    let metrics = agg.finish();
    crate::profile::write_json(&out.join("metrics.json"), &metrics)?;
    let manifest = sinkscope_schema::Manifest {
        n_prompts: Some(agg.n_items()),
        n_tokens: Some(ran.n_tokens),
        timings: crate::profile::object(
            &json!({"load_s": header.load_s, "run_s": run_s, "peak_rss_mib": crate::profile::peak_rss_mib()}),
        ),
        ..base("complete")?
    };
    crate::profile::write_json(&manifest_path, &manifest)?;
    Ok(McSummary {
        n_items: agg.n_items(),
        run_s,
        accuracy_at_l: metrics.summary.accuracy_at_l,
        chance: metrics.summary.chance,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use sinkscope_metrics::bootstrap::BootstrapParams;

    fn record(id: &str, correct: Vec<bool>, n_choices: usize) -> McRecord {
        McRecord {
            id: id.into(),
            n_tokens: 3,
            token_ids: vec![1, 2, 3],
            first_token: crate::profile::FirstToken {
                id: Some(1),
                token: None,
                is_bos: Some(false),
                bos_prepended: Some(false),
                same_for_all_prompts: None,
            },
            gold: 0,
            choices: (0..n_choices)
                .map(|_| ChoiceScores { loglik: vec![0.0; correct.len()], bytes: 1 })
                .collect(),
            correct_norm: correct.clone(),
            correct,
        }
    }

    /// Known answer: 4 items on a 2-block model; layer 0 answers 1 of 4, layer 1 2 of 4, layer
    /// 2 all 4: accuracy 0.25, 0.5, 1.0; chance = mean(1/4, 1/4, 1/2, 1/2) = 0.375; the best
    /// layer is 2; the all-correct layer's interval is [1, 1].
    #[test]
    fn accuracy_per_layer_known_answer() {
        let mut agg = McAggregator::new(2, BootstrapParams::default());
        agg.add(&record("a", vec![true, true, true], 4)).unwrap();
        agg.add(&record("b", vec![false, true, true], 4)).unwrap();
        agg.add(&record("c", vec![false, false, true], 2)).unwrap();
        agg.add(&record("d", vec![false, false, true], 2)).unwrap();
        let m = serde_json::to_value(agg.finish()).unwrap();
        let mean: Vec<f64> = m["metrics"]["mc_accuracy"]["mean"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(mean, [0.25, 0.5, 1.0]);
        assert_eq!(m["summary"]["chance"].as_f64(), Some(0.375));
        assert_eq!(m["summary"]["best_layer"]["layer"].as_u64(), Some(2));
        assert_eq!(m["metrics"]["mc_accuracy"]["ci_low"][2].as_f64(), Some(1.0));
        let lo = m["metrics"]["mc_accuracy"]["ci_low"][1].as_f64().unwrap();
        let hi = m["metrics"]["mc_accuracy"]["ci_high"][1].as_f64().unwrap();
        assert!(lo < 0.5 && hi > 0.5 && lo >= 0.0 && hi <= 1.0, "[{lo}, {hi}]");
        assert!(agg.add(&record("e", vec![true], 4)).is_err());
    }
}
