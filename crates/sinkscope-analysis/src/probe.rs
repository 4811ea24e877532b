//! `probe`: how good each layer's representation is for an embedding task — layer-wise
//! linear probes (metrics.md `probe_accuracy`).
//!
//! Features are extracted in one forward pass per sentence: at every residual site `X(l)` the
//! sentence vector is pooled on the spot ([`sinkscope_metrics::probe::pool_sentence`]: mean
//! over positions ≥ 1 by default, or the last token) and appended to a feature file on disk
//! (`features.f32`, layout `[sentence][layer][d]`, little-endian f32), so memory does not grow
//! with the number of sentences or layers. Then, layer by layer, the vectors are read back,
//! standardised and cross-validated with the L2 logistic regression of
//! [`sinkscope_metrics::probe::cross_validate`] (fixed seed, stratified folds, majority
//! baseline, per-fold convergence).

use crate::datasets::Example;
use crate::error::{AnalysisError, Result};
use crate::profile::{
    first_token, write_json, ManifestHeader, Prepared, ProfileInput, ProfileOptions, Progress,
};
use candle_core::Tensor;
use serde_json::json;
use sinkscope_metrics::probe::{cross_validate, pool_sentence, Features, Pool, ProbeParams, ProbeReport};
use sinkscope_metrics::Matrix;
use sinkscope_model::{ForwardCtx, Hook, Model};
use sinkscope_spec::HookSite;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Options of a probe run (recorded in the manifest).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOptions {
    /// Tokenisation and length rules (BOS policy, `--max-tokens`, `--truncate`).
    pub prompt: ProfileOptions,
    /// Sentence pooling.
    pub pool: Pool,
    /// Folds, seed, regularisation.
    pub params: ProbeParams,
    /// Keep `features.f32` after the run.
    pub keep_features: bool,
}

/// Pools every `X(l)` of one sentence as the layer runs.
struct PoolCollector {
    pool: Pool,
    layers: Vec<Option<Vec<f64>>>,
    error: Option<(HookSite, String)>,
}

impl Hook for PoolCollector {
    fn wants(&self, site: HookSite) -> bool {
        site.metric_layer().is_some()
    }

    fn on(&mut self, site: HookSite, act: &Tensor) -> sinkscope_model::Result<Option<Tensor>> {
        let Some(l) = site.metric_layer() else { return Ok(None) };
        let (t, d) = act.dims2()?;
        let data: Vec<f32> = act.flatten_all()?.to_vec1()?;
        match Matrix::new(&data, t, d)
            .map_err(|e| e.to_string())
            .and_then(|m| pool_sentence(&m, self.pool).map_err(|e| e.to_string()))
        {
            Ok(v) => {
                if let Some(slot) = self.layers.get_mut(l) {
                    *slot = Some(v);
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

/// One line of a probe run's `prompts.jsonl` (the schema's [`ProbeRecord`]).
pub use sinkscope_schema::ProbeRecord as ProbeLine;
pub use sinkscope_schema::ProbeRecord;

impl crate::runner::PromptLine for ProbeLine {
    fn id(&self) -> &str {
        &self.id
    }

    fn token_ids(&self) -> &[u32] {
        &self.token_ids
    }

    fn is_of(&self, ex: &Example, ids: &[u32]) -> bool {
        self.id == ex.id && self.token_ids == ids && ex.label == Some(self.label)
    }
}

impl crate::pack::HookSet for PoolCollector {
    /// The pooled sentence vector of every layer l = 0..L.
    type Output = Vec<Vec<f64>>;

    fn ctx(&mut self) -> ForwardCtx<'_> {
        ForwardCtx::new().with(self)
    }

    fn finish(
        self,
        id: &str,
        _ids: &[u32],
        forward: std::result::Result<Option<Tensor>, sinkscope_model::ModelError>,
    ) -> Result<Vec<Vec<f64>>> {
        forward.map_err(|source| AnalysisError::Forward { id: id.to_string(), source })?;
        if let Some((site, e)) = self.error {
            return Err(AnalysisError::Options(format!("prompt '{id}': pooling at {site}: {e}")));
        }
        self.layers
            .into_iter()
            .enumerate()
            .map(|(l, v)| {
                v.ok_or_else(|| AnalysisError::Options(format!("prompt '{id}': layer {l} was not reached")))
            })
            .collect()
    }
}

/// Streams each sentence's features to the feature file (one row of `L + 1` vectors per
/// sentence, flushed before the sentence's line is written, so the file always holds at
/// least the rows of the finished lines) and collects the labels.
struct FeatureSink {
    path: PathBuf,
    /// Bytes of one sentence's row.
    row_bytes: u64,
    file: Option<std::io::BufWriter<std::fs::File>>,
    labels: Vec<usize>,
}

impl crate::runner::PromptSink<(ProbeLine, Vec<Vec<f64>>), ProbeLine> for FeatureSink {
    /// A fresh run truncates the feature file; a resumed one keeps the rows of the finished
    /// sentences and cuts any row beyond them (a sentence whose line was never written). A
    /// file with fewer rows (e.g. removed at the end of a run without `--keep-features`)
    /// keeps as many sentences as it holds rows; the others are redone.
    fn start(&mut self, resume_from: Option<usize>) -> Result<usize> {
        let io = |source| AnalysisError::Output { path: self.path.clone(), source };
        let (file, keep) = match resume_from {
            None => (sinkscope_output::create_fresh(&self.path)?, 0),
            Some(finished) => {
                let mut f = sinkscope_output::open_existing(&self.path)?;
                let rows = f.metadata().map_err(io)?.len() / self.row_bytes.max(1);
                let keep = finished.min(usize::try_from(rows).unwrap_or(usize::MAX));
                f.set_len(keep as u64 * self.row_bytes).map_err(io)?;
                f.seek(SeekFrom::End(0)).map_err(io)?;
                (f, keep)
            }
        };
        self.file = Some(std::io::BufWriter::new(file));
        Ok(keep)
    }

    fn persist(&mut self, (line, rows): (ProbeLine, Vec<Vec<f64>>)) -> Result<ProbeLine> {
        let io = |source| AnalysisError::Output { path: self.path.clone(), source };
        let file =
            self.file.as_mut().ok_or_else(|| AnalysisError::Internal("feature file not open".into()))?;
        let bytes: Vec<u8> = rows.iter().flatten().flat_map(|x| (*x as f32).to_le_bytes()).collect();
        if bytes.len() as u64 != self.row_bytes {
            return Err(AnalysisError::Internal(format!(
                "prompt '{}': {} feature bytes, expected {}",
                line.id,
                bytes.len(),
                self.row_bytes
            )));
        }
        file.write_all(&bytes).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(line)
    }

    fn add(&mut self, record: &ProbeLine) -> Result<()> {
        self.labels.push(usize::from(record.label));
        Ok(())
    }
}

/// Per-layer probe results.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSummary {
    /// Sentences used.
    pub n_samples: usize,
    /// One report per layer l = 0..L.
    pub layers: Vec<ProbeReport>,
    /// Seconds spent extracting features and fitting.
    pub extract_s: f64,
    /// Seconds spent cross-validating.
    pub fit_s: f64,
}

/// Extracts features for labelled sentences and cross-validates a probe per layer, writing
/// `manifest.json`, `prompts.jsonl` (id, tokens, label per sentence) and `metrics.json`.
/// With `opts.prompt.resume`, an interrupted run in `out` is continued
/// ([`crate::runner::run_prompts`]; the feature file is cut to the finished sentences' rows).
///
/// # Errors
/// An unlabelled example, tokenisation/forward/output errors, or a probe that cannot be fit
/// (e.g. a class with fewer examples than folds), each naming the prompt, layer or file.
pub fn run_probe(
    model: &Model,
    files: &sinkscope_io::ModelFiles,
    opts: &ProbeOptions,
    header: &ManifestHeader,
    input: ProfileInput<'_>,
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<ProbeSummary> {
    opts.prompt.validate()?;
    let output = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AnalysisError::Output { path: path.clone(), source }
    };
    std::fs::create_dir_all(out).map_err(output(out))?;
    let n_layers = model.config.n_layers;
    let d = model.config.d_model;
    let data = crate::profile::data_block(&input.source, input.limit, &opts.prompt);
    let options = options_json(opts);
    let conventions = json!({
        "layer_index": "l = 0..L; l = 0 is X(0) = hook_embed, l >= 1 is X(l) = blocks.{l-1}.hook_resid_post, before the final norm",
        "probe_accuracy": "k-fold stratified cross-validated accuracy of an L2 logistic regression on standardised sentence vectors (metrics.md)",
        "pool": "mean = mean of X(l) over positions >= 1 (the first token excluded); last = the last token's row",
        "std": "standard deviation of the fold accuracies",
    });
    let base =
        |status: &str| crate::profile::manifest_base("probe", status, header, &data, &options, &conventions);
    let manifest_path = out.join("manifest.json");

    // 1. Features, one forward pass per sentence, streamed to disk.
    let feat_path = out.join(FEATURES_FILE);
    let lines_path = out.join("prompts.jsonl");
    let running = base("running")?;
    let (workers, pack_tokens) = crate::pack::schedule(model, input.workers.max(1), input.pack_tokens);
    let run = crate::runner::PromptRun {
        files,
        opts: &opts.prompt,
        manifest_path: &manifest_path,
        manifest: &running,
        lines_path: &lines_path,
        workers,
        pack_tokens,
    };
    let mut sink = FeatureSink {
        path: feat_path.clone(),
        row_bytes: (n_layers as u64 + 1) * d as u64 * 4,
        file: None,
        labels: Vec::new(),
    };
    let ran = crate::runner::run_prompts(
        &run,
        input.prompts,
        &|ex: Example, prepared: Prepared| {
            let label = ex.label.ok_or_else(|| {
                AnalysisError::Options(format!(
                    "prompt '{}' has no label: probe needs a labelled dataset (e.g. sst2-like)",
                    ex.id
                ))
            })?;
            let first = first_token(files, &prepared.ids, prepared.bos_prepended);
            Ok(ProbeLine {
                id: ex.id,
                n_tokens: prepared.ids.len(),
                token_ids: prepared.ids,
                label,
                first_token: first,
            })
        },
        // Sentences run in packs (bit-identical to one pass each).
        &|lines: Vec<ProbeLine>| {
            let prompts: Vec<(&str, &[u32])> =
                lines.iter().map(|l| (l.id.as_str(), l.token_ids.as_slice())).collect();
            let make =
                |_: &[u32]| PoolCollector { pool: opts.pool, layers: vec![None; n_layers + 1], error: None };
            let rows = crate::pack::run_pack(model, &prompts, &make);
            lines.into_iter().zip(rows).map(|(line, rows)| rows.map(|r| (line, r))).collect()
        },
        &mut sink,
        progress,
    )?;
    drop(sink.file.take());
    let labels = sink.labels;
    let n = labels.len();
    if n == 0 {
        return Err(AnalysisError::NoPrompts);
    }
    let n_tokens = ran.n_tokens;
    let extract_s = ran.elapsed.as_secs_f64();

    // A shard (`--shard`) keeps its features for `sinkscope merge`, which cross-validates
    // once over all shards' rows: a fit on a shard's subset would be thrown away (and may not
    // even have enough sentences per fold).
    if crate::shard::is_shard(header) {
        let mut manifest = sinkscope_schema::Manifest {
            n_prompts: Some(n),
            n_tokens: Some(n_tokens),
            timings: crate::profile::object(&json!({"load_s": header.load_s, "extract_s": extract_s,
                   "tokens_per_s": n_tokens as f64 / extract_s.max(1e-9),
                   "peak_rss_mib": crate::profile::peak_rss_mib()})),
            ..base("complete")?
        };
        manifest.extra.insert(
            "features".into(),
            json!({"file": FEATURES_FILE, "layout": "[sentence][layer][d] f32 LE",
                   "note": "a shard: the probes are fit by `sinkscope merge` over all shards"}),
        );
        write_json(&manifest_path, &manifest)?;
        return Ok(ProbeSummary { n_samples: n, layers: Vec::new(), extract_s, fit_s: 0.0 });
    }

    // 2. One cross-validated probe per layer, reading that layer's rows back.
    let t1 = std::time::Instant::now();
    let layers = fit_features(&feat_path, &labels, n_layers, d, &opts.params)?;
    let fit_s = t1.elapsed().as_secs_f64();
    if !opts.keep_features {
        let _ = std::fs::remove_file(&feat_path);
    }
    write_json(&out.join("metrics.json"), &metrics_json(n_layers, &layers, opts))?;
    let mut manifest = sinkscope_schema::Manifest {
        n_prompts: Some(n),
        n_tokens: Some(n_tokens),
        timings: crate::profile::object(
            &json!({"load_s": header.load_s, "extract_s": extract_s, "fit_s": fit_s,
               "tokens_per_s": n_tokens as f64 / extract_s.max(1e-9),
               "peak_rss_mib": crate::profile::peak_rss_mib()}),
        ),
        ..base("complete")?
    };
    if opts.keep_features {
        manifest.extra.insert(
            "features".into(),
            json!({"file": FEATURES_FILE, "layout": "[sentence][layer][d] f32 LE"}),
        );
    }
    write_json(&manifest_path, &manifest)?;
    Ok(ProbeSummary { n_samples: n, layers, extract_s, fit_s })
}

/// One cross-validated probe per layer `l = 0..=n_layers` over the rows of a feature file
/// (`[sentence][layer][d]` f32 LE, one sentence per label), reading one layer at a time.
///
/// # Errors
/// An unreadable feature file, or a probe that cannot be fit (naming the layer).
pub(crate) fn fit_features(
    feat_path: &Path,
    labels: &[usize],
    n_layers: usize,
    d: usize,
    params: &ProbeParams,
) -> Result<Vec<ProbeReport>> {
    let output = |source| AnalysisError::Output { path: feat_path.to_path_buf(), source };
    let n = labels.len();
    let mut file = std::fs::File::open(feat_path).map_err(output)?;
    let mut layers = Vec::with_capacity(n_layers + 1);
    let mut row = vec![0u8; d * 4];
    for l in 0..=n_layers {
        let mut x = Vec::with_capacity(n * d);
        for i in 0..n {
            let off = ((i * (n_layers + 1) + l) * d * 4) as u64;
            file.seek(SeekFrom::Start(off)).map_err(output)?;
            file.read_exact(&mut row).map_err(output)?;
            x.extend(row.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))));
        }
        let report = Features::new(&x, n, d)
            .and_then(|f| cross_validate(&f, labels, params))
            .map_err(|e| AnalysisError::Options(format!("probe at layer {l}: {e}")))?;
        layers.push(report);
    }
    Ok(layers)
}

/// The manifest's `options` block of a probe run.
pub fn options_json(opts: &ProbeOptions) -> serde_json::Value {
    json!({
        "prompt": opts.prompt.to_json(),
        "pool": opts.pool,
        "folds": opts.params.folds,
        "seed": opts.params.seed,
        "c": opts.params.logistic.c,
        "max_iter": opts.params.logistic.max_iter,
        "grad_tol": opts.params.logistic.grad_tol,
        "solver": SOLVER,
        "standardisation": "per fold: mean and population std of the training rows; zero-variance features keep std 1",
    })
}

/// Rebuilds the probe options recorded in a manifest's `options` block (for `merge`); refuses
/// a block that does not round-trip exactly.
///
/// # Errors
/// [`AnalysisError::ResultFile`] naming the manifest and the field.
pub fn options_from_manifest(path: &Path, options: &serde_json::Value) -> Result<ProbeOptions> {
    let bad = |reason: String| AnalysisError::ResultFile { path: path.to_path_buf(), reason };
    let num =
        |k: &str| options[k].as_f64().ok_or_else(|| bad(format!("options.{k}: missing or not a number")));
    let int =
        |k: &str| options[k].as_u64().ok_or_else(|| bad(format!("options.{k}: missing or not an integer")));
    let opts = ProbeOptions {
        prompt: crate::shard::profile_options_from_manifest(path, &options["prompt"])?,
        pool: serde_json::from_value(options["pool"].clone())
            .map_err(|e| bad(format!("options.pool: {e}")))?,
        params: ProbeParams {
            folds: int("folds")? as usize,
            seed: int("seed")?,
            logistic: sinkscope_metrics::probe::LogisticParams {
                c: num("c")?,
                max_iter: int("max_iter")? as usize,
                grad_tol: num("grad_tol")?,
            },
        },
        keep_features: false,
    };
    if options_json(&opts) != *options {
        return Err(bad("options: not the options this version of sinkscope writes".into()));
    }
    Ok(opts)
}

/// The sentences a probe uses: a seeded random sample (`seed`) of `examples`, the first
/// `limit` of the shuffled order (labelled files are often sorted by label, so a limit must
/// not follow the file order), each with a label, and enough of each class for `folds`
/// stratified folds. Checked before any feature is extracted.
///
/// # Errors
/// [`AnalysisError::Options`] for an unlabelled sentence or too few of a class.
pub fn sample_examples(
    examples: &mut Vec<Example>,
    seed: u64,
    limit: Option<usize>,
    folds: usize,
) -> Result<()> {
    sinkscope_metrics::probe::SplitMix64::new(seed).shuffle(examples);
    if let Some(n) = limit {
        examples.truncate(n);
    }
    let mut labels = Vec::with_capacity(examples.len());
    for ex in examples.iter() {
        let label = ex.label.ok_or_else(|| {
            AnalysisError::Options(format!(
                "prompt '{}' has no label: probe needs a labelled dataset (e.g. sst2-like)",
                ex.id
            ))
        })?;
        labels.push(usize::from(label));
    }
    sinkscope_metrics::probe::stratified_folds(&labels, folds, seed)
        .map_err(|e| AnalysisError::Options(format!("--folds {folds}: {e}")))?;
    Ok(())
}

/// `--pool`: `mean` (over positions >= 1) or `last`.
///
/// # Errors
/// [`AnalysisError::Options`] for any other name.
pub fn parse_pool(s: &str) -> Result<Pool> {
    match s {
        "mean" => Ok(Pool::Mean),
        "last" => Ok(Pool::Last),
        other => Err(AnalysisError::Options(format!("unknown pooling '{other}' (mean or last)"))),
    }
}

/// `--c`: the inverse L2 strength must be a positive number.
///
/// # Errors
/// [`AnalysisError::Options`] otherwise.
pub fn check_c(c: f64) -> Result<()> {
    if c.is_finite() && c > 0.0 {
        Ok(())
    } else {
        Err(AnalysisError::Options(format!("--c must be positive, got {c}")))
    }
}

/// The files a probe folder holds: a run's, and the kept features.
pub fn probe_entries() -> Vec<&'static str> {
    crate::setup::RUN_ENTRIES.iter().copied().chain([FEATURES_FILE]).collect()
}

/// The extracted features kept by `--keep-features` (and written by a shard).
pub const FEATURES_FILE: &str = "features.f32";

/// The solver, in words, for the manifest.
pub const SOLVER: &str = "sinkscope-metrics probe: damped Newton with the exact Hessian (faer Cholesky), Armijo backtracking; objective mean log-loss + (1/(2 C n)) ||w||^2, intercept unpenalised (sklearn's LogisticRegression(C))";

pub(crate) fn metrics_json(
    n_layers: usize,
    layers: &[ProbeReport],
    opts: &ProbeOptions,
) -> sinkscope_schema::MetricsFile<sinkscope_schema::ProbeSummary> {
    let fold_acc = |r: &ProbeReport| r.folds.iter().map(|f| f.accuracy).collect::<Vec<_>>();
    let min = |r: &ProbeReport| fold_acc(r).into_iter().fold(f64::INFINITY, f64::min);
    let max = |r: &ProbeReport| fold_acc(r).into_iter().fold(f64::NEG_INFINITY, f64::max);
    // A non-finite value is written as `null`, as JSON has no infinity.
    let finite = |v: f64| v.is_finite().then_some(v);
    let best = layers.iter().enumerate().max_by(|a, b| a.1.accuracy.total_cmp(&b.1.accuracy));
    let per_layer = layers
        .iter()
        .enumerate()
        .map(|(l, r)| sinkscope_schema::ProbeLayer {
            layer: l,
            accuracy: finite(r.accuracy),
            accuracy_std: finite(r.accuracy_std),
            pooled_accuracy: finite(r.pooled_accuracy),
            baseline_accuracy: finite(r.baseline_accuracy),
            converged: Some(r.all_converged),
            max_iterations: r.folds.iter().map(|f| f.convergence.iterations as u64).max(),
            max_grad_norm: finite(r.folds.iter().map(|f| f.convergence.grad_norm).fold(0.0, f64::max)),
        })
        .collect();
    let summary = sinkscope_schema::MetricSummary {
        mean: layers.iter().map(|r| finite(r.accuracy)).collect(),
        std: layers.iter().map(|r| finite(r.accuracy_std)).collect(),
        min: layers.iter().map(|r| finite(min(r))).collect(),
        max: layers.iter().map(|r| finite(max(r))).collect(),
        ..Default::default()
    };
    sinkscope_schema::MetricsFile {
        schema_version: crate::profile::SCHEMA_VERSION,
        kind: Some(sinkscope_schema::RunKind::Probe.as_str().into()),
        n_layers,
        n_samples: layers.first().map(|r| r.n_samples),
        n_classes: layers.first().map(|r| r.n_classes),
        metrics: [(sinkscope_schema::TaskMetric::ProbeAccuracy.name().to_string(), summary)].into(),
        summary: sinkscope_schema::ProbeSummary {
            baseline_accuracy: layers.first().and_then(|r| finite(r.baseline_accuracy)),
            best_layer: best.map(|b| b.0),
            best_accuracy: best.and_then(|b| finite(b.1.accuracy)),
            pool: Some(pool_name(opts.pool).to_string()),
            folds: Some(opts.params.folds),
            seed: Some(opts.params.seed),
            c: finite(opts.params.logistic.c),
            solver: Some(SOLVER.to_string()),
            all_converged: Some(layers.iter().all(|r| r.all_converged)),
            per_layer,
        },
        ..Default::default()
    }
}

/// The name of a pooling as the files spell it (its serde name).
fn pool_name(pool: Pool) -> &'static str {
    match pool {
        Pool::Mean => "mean",
        Pool::Last => "last",
    }
}

/// Path of the feature file of a probe run folder.
pub fn features_path(out: &Path) -> PathBuf {
    out.join(FEATURES_FILE)
}
