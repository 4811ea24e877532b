//! `ablate`: the paper's causal test. The component (the MLP by default) that writes the
//! first token's massive activation is scaled at position 0 in the massive-activation blocks
//! (λ = 1 is the model, λ = 0 the paper's ablation) and a full profile is run per λ; the
//! compression valley should disappear. Also: each block alone (`one_by_one`), the attention
//! output instead of the MLP (a control), and three ablations of the massive dimensions of
//! `X(block)` at position 0 (`mean_ablate`): Sun et al.'s mean-ablation (`sun_mean/`: set
//! them to their mean at position 0 over the prompt set, from a first pass —
//! [`crate::mean_ref`]), zero-ablation of the same dimensions (`zero_dims/`, the contrast Sun
//! et al. found catastrophic), and the mean over the other positions of the same prompt
//! (`mean_ablate/`, `mean_others`; close to zero-ablation for a first-token activation).
//!
//! Blocks are numbered as in metrics.md ("block l" writes `X(l)`, hook `blocks.{l-1}`).

use crate::datasets::Example;
use crate::error::{AnalysisError, Result};
use crate::profile::{run_profile, DataSource, ManifestHeader, ProfileInput, ProfileOptions, Progress};
use serde_json::Value;
use sinkscope_io::ModelFiles;
use sinkscope_model::Model;
use sinkscope_schema::{AblateFile, Intervention, InterventionValues, Metric, MetricsFile, RunKind, Valley};
use sinkscope_spec::{Edit, EditOp, HookSite, Selection, SiteKind};
use std::path::{Path, PathBuf};

/// Which sublayer output is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// `blocks.{l-1}.hook_mlp_out` (the paper's ablation).
    Mlp,
    /// `blocks.{l-1}.hook_attn_out` (a control).
    Attn,
}

impl Component {
    fn kind(self) -> SiteKind {
        match self {
            Component::Mlp => SiteKind::MlpOut,
            Component::Attn => SiteKind::AttnOut,
        }
    }

    /// Name used in outputs.
    pub fn name(self) -> &'static str {
        match self {
            Component::Mlp => "mlp",
            Component::Attn => "attn",
        }
    }
}

/// Options of an ablation study.
#[derive(Debug, Clone, PartialEq)]
pub struct AblateOptions {
    /// Profile options of every run (thresholds, BOS policy, lengths).
    pub profile: ProfileOptions,
    /// Blocks to ablate (metrics.md numbering, 1..=L); `None` = detect them on the baseline.
    pub blocks: Option<Vec<usize>>,
    /// Scales λ (1 = unmodified; the baseline is always run).
    pub scales: Vec<f32>,
    /// Component scaled.
    pub component: Component,
    /// Also ablate (λ = 0) each block alone.
    pub one_by_one: bool,
    /// Also ablate the massive dimensions: Sun et al.'s mean (over the prompt set), zero, and
    /// the mean over the other positions of the same prompt.
    pub mean_ablate: bool,
    /// `--shard I/N`: the ablated runs cover only this shard's prompts. The study's choices
    /// (the baseline, hence the blocks, the valley and the massive dimensions, and Sun et al.'s
    /// reference means) are still made over all prompts, so every shard makes the same ones
    /// and [`merge_ablate`] rebuilds the unsharded study exactly.
    pub shard: Option<crate::shard::Shard>,
}

/// What an ablate folder holds besides its `scale_<λ>/` and `only_<block>/` sub-runs.
pub const ABLATE_ENTRIES: &[&str] = &[
    sinkscope_report::schema::ABLATE_FILE,
    sinkscope_report::LAYERS_CSV,
    sinkscope_report::DOSE_RESPONSE_CSV,
    sinkscope_report::PLOTS_DIR,
    sinkscope_report::REPORT_HTML,
    "baseline",
    "mean_ablate",
    "sun_mean",
    "zero_dims",
];

/// The prefixes of an ablate folder's `scale_<λ>/` and `only_<block>/` sub-runs.
pub const ABLATE_PREFIXES: &[&str] = &["scale_", "only_"];

/// The largest |λ| accepted: scaling a massive activation (values in the thousands) by more
/// overflows float32 activations, which would then be reported as a numerical failure.
pub const MAX_SCALE: f32 = 1000.0;

/// `--scales`: finite, |λ| <= [`MAX_SCALE`], duplicates folded (first occurrence kept).
///
/// # Errors
/// [`AnalysisError::Options`] naming the first scale out of range.
pub fn check_scales(scales: &[f32]) -> Result<Vec<f32>> {
    let mut out: Vec<f32> = Vec::with_capacity(scales.len());
    for &s in scales {
        if !s.is_finite() || s.abs() > MAX_SCALE {
            return Err(AnalysisError::Options(format!(
                "--scales: {s} is out of range (a finite number with |λ| <= {MAX_SCALE})"
            )));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// `--layers`: `auto` (`None`: detect the massive-activation blocks on the baseline) or a
/// comma-separated list of block numbers (metrics.md numbering, 1..=L).
///
/// # Errors
/// [`AnalysisError::Options`] naming the entry that is not a number.
pub fn parse_layers(s: &str) -> Result<Option<Vec<usize>>> {
    if s == "auto" {
        return Ok(None);
    }
    s.split(',')
        .map(|x| {
            x.trim().parse::<usize>().map_err(|_| {
                AnalysisError::Options(format!("--layers: '{x}' is not a block number (or use auto)"))
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// `--component`: `mlp` (the paper) or `attn` (a control).
///
/// # Errors
/// [`AnalysisError::Options`] for any other name.
pub fn parse_component(s: &str) -> Result<Component> {
    match s {
        "mlp" => Ok(Component::Mlp),
        "attn" => Ok(Component::Attn),
        other => Err(AnalysisError::Options(format!("--component: '{other}' is not mlp or attn"))),
    }
}

/// The edits scaling `component` at position 0 in `blocks` by `scale` (exact zero at 0).
pub fn scale_edits(blocks: &[usize], component: Component, scale: f32) -> Vec<Edit> {
    let op = if scale == 0.0 { EditOp::Zero } else { EditOp::Scale { factor: scale } };
    blocks
        .iter()
        .map(|&b| Edit {
            site: HookSite::block(b.saturating_sub(1), component.kind()),
            positions: Selection::Only(vec![0]),
            heads: Selection::All,
            dims: Selection::All,
            op: op.clone(),
        })
        .collect()
}

/// Reads a sub-run's `metrics.json` (the schema's type, as the writer wrote it).
fn read_metrics(dir: &Path) -> Result<MetricsFile> {
    let path = dir.join("metrics.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|source| AnalysisError::Output { path: path.clone(), source })?;
    Ok(serde_json::from_str(&text)?)
}

/// One run of the study, summarised for the dose–response curves.
fn run_summary(dir: &Path, valley: (usize, usize)) -> Result<InterventionValues> {
    let m = read_metrics(dir)?;
    let mean = |name: Metric| -> Vec<Option<f64>> {
        m.metrics.get(name.name()).map(|s| s.mean.clone()).unwrap_or_default()
    };
    let in_valley = |v: &[Option<f64>]| -> Vec<f64> {
        v.iter()
            .enumerate()
            .filter(|(l, _)| *l >= valley.0 && *l <= valley.1)
            .filter_map(|(_, x)| *x)
            .collect()
    };
    let entropy = in_valley(&mean(Metric::EntropyNorm));
    let sinks = in_valley(&mean(Metric::SinkRate));
    let max_ratio = mean(Metric::BosRatio).into_iter().flatten().fold(f64::NEG_INFINITY, f64::max);
    Ok(InterventionValues {
        valley_min_entropy_norm: entropy.iter().copied().reduce(f64::min),
        valley_mean_sink_rate: (!sinks.is_empty()).then(|| sinks.iter().sum::<f64>() / sinks.len() as f64),
        max_bos_ratio: max_ratio.is_finite().then_some(max_ratio),
        nll: m.summary.nll,
        bound_violations: m.summary.bound_violations,
    })
}

/// A `{"run": NAME, "summary": …}` entry of `ablate.json`.
fn entry(run: &str, summary: InterventionValues) -> Intervention {
    Intervention { run: Some(run.to_string()), summary: Some(summary), ..Intervention::default() }
}

/// What a finished study reports back.
#[derive(Debug, Clone, PartialEq)]
pub struct AblateSummary {
    /// The `ablate.json` document.
    pub document: Value,
}

/// Runs the study into `out`: `baseline/`, `scale_<λ>/`, `only_<block>/`, `sun_mean/`,
/// `zero_dims/`, `mean_ablate/`
/// (each a profile run folder) and `ablate.json` (docs/results-schema.md). With
/// `opts.profile.resume`, sub-runs that completed are skipped (after checking that they are
/// runs of these options and prompts), an interrupted one is resumed, and `ablate.json` is
/// derived again from the sub-runs' `metrics.json`.
///
/// # Errors
/// No massive-activation block found (with `blocks = None`), or any profile error.
#[allow(clippy::too_many_arguments)]
pub fn run_ablate(
    model: &Model,
    files: &ModelFiles,
    opts: &AblateOptions,
    header: &ManifestHeader,
    examples: &[Example],
    source: &DataSource,
    limit: Option<usize>,
    out: &Path,
    progress: &mut dyn FnMut(&str) -> Box<dyn Progress>,
) -> Result<AblateSummary> {
    let n_layers = model.config.n_layers;
    // The ablated runs' prompts and header: this shard's, marked as a shard run.
    let (shard_examples, shard_header, shard_block) = match opts.shard {
        None => (examples.to_vec(), header.clone(), None),
        Some(s) => {
            let mut mine = examples.to_vec();
            let block = s.select(&mut mine)?;
            let mut h = header.clone();
            h.extra.insert(crate::shard::SHARD_KEY.into(), serde_json::to_value(&block)?);
            (mine, h, Some(block))
        }
    };
    let run = |name: &str, edits: Vec<Edit>, progress: &mut dyn Progress| -> Result<PathBuf> {
        // The baseline covers every prompt (the study's choices are made on it).
        let (examples, header) =
            if name == BASELINE { (examples, header) } else { (shard_examples.as_slice(), &shard_header) };
        let dir = out.join(name);
        // A sub-run folder is ours: a symbolic link planted there is refused, not followed.
        sinkscope_output::create_dir(&dir)?;
        let popts = ProfileOptions { edits, nll: true, ..opts.profile.clone() };
        // --resume: a sub-run that finished is kept as it is; the interrupted one continues
        // (run_profile's own resume), the others start.
        if popts.resume
            && crate::profile::is_complete_run(files, &popts, header, source, limit, examples, &dir)?
        {
            return Ok(dir);
        }
        let mut iter = examples.iter().cloned();
        let input = ProfileInput {
            source: source.clone(),
            limit,
            prompts: &mut iter,
            total: Some(examples.len()),
            workers: 1,
            pack_tokens: crate::profile::DEFAULT_PACK_TOKENS,
        };
        run_profile(model, files, &popts, header, input, &dir, progress)?;
        Ok(dir)
    };
    let baseline = run(BASELINE, Vec::new(), progress(BASELINE).as_mut())?;
    let base = read_metrics(&baseline)?;
    let evidence = base.summary.massive_layers.clone();
    let blocks: Vec<usize> = match &opts.blocks {
        Some(b) => b.clone(),
        None => evidence.iter().filter_map(|e| e.block).collect(),
    };
    if blocks.is_empty() {
        return Err(AnalysisError::Options(
            "no massive-activation block was detected on the baseline (metrics.md rule: MLP output at position 0 >= 10x the other positions' median and bos_ratio >= 3x the previous layer); pass --layers".into(),
        ));
    }
    if let Some(bad) = blocks.iter().find(|&&b| b == 0 || b > n_layers) {
        return Err(AnalysisError::Options(format!("block {bad} is out of range 1..={n_layers}")));
    }
    // The valley: the baseline's compress phase; without one, from the first ablated block to L.
    let compress = base.summary.phases.and_then(|p| p.compress);
    let (valley, valley_rule) = match compress {
        Some(c) => ((c.first, c.last), "the baseline's compress phase"),
        None => {
            let first = blocks.iter().copied().min().unwrap_or(1);
            ((first, n_layers), "no compress phase on the baseline: layers from the first ablated block to L")
        }
    };
    let mut dose =
        vec![Intervention { scale: Some(1.0), ..entry(BASELINE, run_summary(&baseline, valley)?) }];
    for &s in opts.scales.iter().filter(|s| **s != 1.0) {
        let name = format!("scale_{s}");
        let dir = run(&name, scale_edits(&blocks, opts.component, s), progress(&name).as_mut())?;
        dose.push(Intervention { scale: Some(f64::from(s)), ..entry(&name, run_summary(&dir, valley)?) });
    }
    let mut one_by_one = Vec::new();
    if opts.one_by_one {
        for &b in &blocks {
            let name = format!("only_{b}");
            let dir = run(&name, scale_edits(&[b], opts.component, 0.0), progress(&name).as_mut())?;
            one_by_one.push(Intervention { block: Some(b), ..entry(&name, run_summary(&dir, valley)?) });
        }
    }
    let mut mean_ablate = None;
    let mut sun_mean = None;
    let mut zero_dims = None;
    if opts.mean_ablate {
        // The stage with the largest first-token activation: ablating an early, smaller stage
        // leaves the later block to write the massive activation anyway (SmolLM2 on the
        // reference prompts: blocks 3 and 12, |X(3)[0, 507]| ≈ 200 vs |X(12)[0, 507]| ≈ 24,000).
        let block = blocks
            .iter()
            .copied()
            .max_by(|&a, &b| top_at_token0(&base, a).total_cmp(&top_at_token0(&base, b)).then(b.cmp(&a)))
            .unwrap_or(1);
        let dims = massive_dims(&base, block);
        let site = HookSite::block(block - 1, SiteKind::ResidPost);
        let dims_edit = |op: EditOp| Edit {
            site,
            positions: Selection::Only(vec![0]),
            heads: Selection::All,
            dims: Selection::Only(dims.clone()),
            op,
        };
        let rule = "block: the ablated block whose X(block) has the largest top activation at token 0; dimensions: the baseline's top activations at token 0 of X(block) with |value| > 100 (Sun et al.'s absolute threshold), the largest one if none passes";
        // Sun et al.: the reference means, at position 0 over the prompt set (unedited model).
        let prepared: Vec<(String, Vec<u32>)> = examples
            .iter()
            .map(|ex| {
                crate::profile::prepare(files, &ex.id, &ex.text, &opts.profile)
                    .map(|p| (ex.id.clone(), p.ids))
            })
            .collect::<Result<_>>()?;
        let refs: Vec<(&str, &[u32])> =
            prepared.iter().map(|(i, ids)| (i.as_str(), ids.as_slice())).collect();
        let (sun_edits, means) =
            crate::mean_ref::resolve_mean_prompts(model, &refs, &[dims_edit(EditOp::MeanPrompts)])?;
        // The entries of the three dimension ablations differ in their variant, description
        // and (Sun et al.'s) reference means.
        let dims_entry = |name: &str, variant: &str, description: &str, summary| Intervention {
            block: Some(block),
            dims: Some(dims.clone()),
            site: Some(site.to_string()),
            rule: Some(rule.to_string()),
            variant: Some(variant.to_string()),
            description: Some(description.to_string()),
            ..entry(name, summary)
        };
        let dir = run("sun_mean", sun_edits, progress("sun_mean").as_mut())?;
        sun_mean = Some(Intervention {
            reference_means: Some(means.first().and_then(|m| m.means.first()).cloned().unwrap_or_default()),
            reference_prompts: Some(means.first().and_then(|m| m.n_prompts.first()).copied().unwrap_or(0)),
            ..dims_entry(
                "sun_mean",
                "mean_prompts",
                "Sun et al.'s mean-ablation: each massive dimension at position 0 set to its mean at position 0 over the prompt set (a first pass over the same prompts, unedited model)",
                run_summary(&dir, valley)?,
            )
        });
        let dir = run("zero_dims", vec![dims_edit(EditOp::Zero)], progress("zero_dims").as_mut())?;
        zero_dims = Some(dims_entry(
            "zero_dims",
            "zero",
            "zero-ablation of the same dimensions at position 0 (Sun et al.'s contrast)",
            run_summary(&dir, valley)?,
        ));
        let dir = run("mean_ablate", vec![dims_edit(EditOp::MeanOthers)], progress("mean_ablate").as_mut())?;
        mean_ablate = Some(dims_entry(
            "mean_ablate",
            "mean_others",
            "the same dimensions at position 0 set to their mean over the other positions of the same prompt (not Sun et al.'s mean-ablation)",
            run_summary(&dir, valley)?,
        ));
    }
    let document = AblateFile {
        schema_version: crate::profile::SCHEMA_VERSION,
        kind: Some(RunKind::Ablate.as_str().to_string()),
        component: Some(opts.component.name().to_string()),
        blocks,
        blocks_source: Some(
            if opts.blocks.is_some() {
                "given (--layers)"
            } else {
                "detected on the baseline (metrics.md rule)"
            }
            .to_string(),
        ),
        evidence,
        valley: Some(Valley { first: valley.0, last: valley.1, rule: Some(valley_rule.to_string()) }),
        scales: std::iter::once(1.0f32)
            .chain(opts.scales.iter().copied().filter(|s| *s != 1.0))
            .map(f64::from)
            .collect(),
        dose_response: dose,
        one_by_one,
        mean_ablate,
        sun_mean_ablate: sun_mean,
        zero_dims,
        shard: shard_block,
    };
    crate::profile::write_json(&out.join(ABLATE_JSON), &document)?;
    Ok(AblateSummary { document: serde_json::to_value(&document)? })
}

/// The sub-run over all prompts on which the study's choices are made.
const BASELINE: &str = "baseline";
/// The study's document.
const ABLATE_JSON: &str = "ablate.json";

/// Every `{"run": NAME, "summary": …}` entry of an `ablate.json` document, in the order of
/// the file's keys (`dose_response`, `mean_ablate`, `one_by_one`, `sun_mean_ablate`,
/// `zero_dims`).
fn run_entries(document: &mut AblateFile) -> Vec<&mut Intervention> {
    let AblateFile { dose_response, mean_ablate, one_by_one, sun_mean_ablate, zero_dims, .. } = document;
    dose_response
        .iter_mut()
        .chain(mean_ablate.as_mut())
        .chain(one_by_one.iter_mut())
        .chain(sun_mean_ablate.as_mut())
        .chain(zero_dims.as_mut())
        .collect()
}

/// A shard's `ablate.json`, as written (the nested summaries are not copied to the flat
/// fields, unlike [`AblateFile::load`]).
fn read_document(dir: &Path) -> Result<AblateFile> {
    let path = dir.join(ABLATE_JSON);
    let text = std::fs::read_to_string(&path).map_err(|e| AnalysisError::ResultFile {
        path: path.clone(),
        reason: format!("cannot read the shard's study: {e}"),
    })?;
    serde_json::from_str(&text)
        .map_err(|e| AnalysisError::ResultFile { path, reason: format!("not a valid ablate.json: {e}") })
}

/// The document without what depends on the shard's prompts (the shard block and the runs'
/// summaries): equal for every shard of one study.
fn shard_independent(document: &AblateFile) -> AblateFile {
    let mut d = AblateFile { shard: None, ..document.clone() };
    for e in run_entries(&mut d) {
        e.summary = None;
    }
    d
}

/// Merges the folders of an `ablate --shard I/N` study into `out` (claimed by the caller):
/// the shards must have made the same choices (blocks, valley, dimensions, reference means;
/// their baselines, over all prompts, byte-identical); every ablated sub-run is merged as a
/// profile run ([`crate::shard::merge_runs`]), the baseline copied, and the summaries of
/// `ablate.json` derived again from the merged runs — the unsharded study's bytes.
///
/// # Errors
/// [`AnalysisError::ResultFile`] naming the shard folder and what differs, or any merge error.
pub fn merge_ablate(
    runs: &[PathBuf],
    out: &Path,
    opts: &crate::shard::MergeOptions,
) -> Result<crate::shard::Merged> {
    let first =
        runs.first().ok_or_else(|| AnalysisError::Options("merge needs at least one shard folder".into()))?;
    let documents: Vec<AblateFile> = runs.iter().map(|d| read_document(d)).collect::<Result<_>>()?;
    for (dir, d) in runs.iter().zip(&documents) {
        if d.shard.is_none() {
            return Err(AnalysisError::ResultFile {
                path: dir.join(ABLATE_JSON),
                reason: "not a shard of a study: no 'shard' block (run ablate with --shard I/N)".into(),
            });
        }
    }
    let reference = shard_independent(&documents[0]);
    for (dir, d) in runs.iter().zip(&documents).skip(1) {
        if shard_independent(d) != reference {
            return Err(AnalysisError::ResultFile {
                path: dir.join(ABLATE_JSON),
                reason: format!(
                    "not a shard of the same study as {}: the blocks, valley, dimensions or runs differ",
                    first.display()
                ),
            });
        }
    }
    // The baselines are runs over all prompts: the same bytes in every shard.
    let base_files = ["manifest.json", "prompts.jsonl", "metrics.json"];
    for dir in &runs[1..] {
        for f in &base_files[1..] {
            let (a, b) = (first.join(BASELINE).join(f), dir.join(BASELINE).join(f));
            let read = |p: &Path| {
                std::fs::read(p).map_err(|e| AnalysisError::ResultFile {
                    path: p.to_path_buf(),
                    reason: format!("cannot read the baseline: {e}"),
                })
            };
            if read(&a)? != read(&b)? {
                return Err(AnalysisError::ResultFile {
                    path: b,
                    reason: format!(
                        "differs from {}: the shards' baselines are not the same run",
                        a.display()
                    ),
                });
            }
        }
    }
    let base_out = out.join(BASELINE);
    sinkscope_output::create_dir(&base_out)?;
    for f in base_files {
        let src = first.join(BASELINE).join(f);
        let bytes = std::fs::read(&src).map_err(|e| AnalysisError::ResultFile {
            path: src.clone(),
            reason: format!("cannot read: {e}"),
        })?;
        let dst = base_out.join(f);
        let mut w = sinkscope_output::create_fresh(&dst)?;
        std::io::Write::write_all(&mut w, &bytes)
            .map_err(|source| AnalysisError::Output { path: dst.clone(), source })?;
    }
    let mut document = reference;
    let field = |why: &str| AnalysisError::ResultFile { path: first.join(ABLATE_JSON), reason: why.into() };
    let valley =
        document.valley.as_ref().map(|v| (v.first, v.last)).ok_or_else(|| field("valley: missing"))?;
    let mut merged = None;
    for entry in run_entries(&mut document) {
        let name = entry.run.clone().ok_or_else(|| field("a run entry without 'run'"))?;
        let dir = out.join(&name);
        if name != BASELINE {
            let parts: Vec<PathBuf> = runs.iter().map(|r| r.join(&name)).collect();
            sinkscope_output::create_dir(&dir)?;
            merged = Some(crate::shard::merge_runs(&parts, &dir, opts)?);
        }
        entry.summary = Some(run_summary(&dir, valley)?);
    }
    let merged = merged.ok_or_else(|| field("the study has no ablated run to merge"))?;
    crate::profile::write_json(&out.join(ABLATE_JSON), &document)?;
    Ok(crate::shard::Merged { kind: "ablate".into(), ..merged })
}

/// The largest |value| at token 0 among the baseline's top activations of `X(block)`.
fn top_at_token0(base: &MetricsFile, block: usize) -> f64 {
    base.top_activations
        .get(block)
        .map(|top| top.iter().filter(|e| e.token == 0).map(|e| e.value.abs()).fold(0.0, f64::max))
        .unwrap_or(0.0)
}

/// The residual dimensions carrying the massive activation at position 0 of `X(block)`,
/// from the baseline's aggregated top activations (never hard-coded).
fn massive_dims(base: &MetricsFile, block: usize) -> Vec<usize> {
    let at0: Vec<(usize, f64)> = base
        .top_activations
        .get(block)
        .into_iter()
        .flatten()
        .filter(|e| e.token == 0)
        .map(|e| (e.dim, e.value.abs()))
        .collect();
    let mut dims: Vec<usize> = at0
        .iter()
        .filter(|(_, v)| *v > sinkscope_metrics::norms::MASSIVE_ABS_THRESHOLD)
        .map(|(d, _)| *d)
        .collect();
    if dims.is_empty() {
        dims.extend(at0.iter().max_by(|a, b| a.1.total_cmp(&b.1)).map(|(d, _)| *d));
    }
    dims.sort_unstable();
    dims.dedup();
    dims
}
