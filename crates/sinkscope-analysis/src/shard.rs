//! Sharded runs and their exact merge (`--shard I/N`, `sinkscope merge`).
//!
//! A shard is a contiguous slice of the run's prompt list (after `--limit`, and for `probe`
//! after its seeded shuffle): shard `I` of `N` over `n` prompts holds prompts
//! `[I·n/N, (I+1)·n/N)` (integer division), so the shards in index order are the prompt list
//! in order. Each shard is an ordinary run folder whose manifest carries a `shard` block
//! ([`Shard::to_json`]), part of the run's identity (a `--resume` of another shard is refused).
//!
//! [`merge_runs`] checks that the folders belong together (same kind, model hash, tokenizer,
//! data and options; one shard count and prompt count; every shard present once; every shard
//! complete) and writes the unsharded run: the shards' `prompts.jsonl` lines concatenated in
//! shard order (each line is the one the unsharded run writes for that prompt), aggregated by
//! the same aggregator in the same order (so every floating-point sum is the same sum), and
//! for `probe` the feature rows concatenated before the one cross-validation. `metrics.json`
//! and `prompts.jsonl` are therefore byte-identical to the unsharded run's; `manifest.json`
//! has the same identity ([`crate::resume::identity`]) and counts, and records the shards it
//! was merged from instead of timings.

use crate::error::{AnalysisError, Result};
use crate::profile::{write_json, ProfileOptions};
use serde_json::{json, Value};
use sinkscope_schema::Manifest;
pub use sinkscope_schema::ShardInfo;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Shard `index` of `count` (0-based: `0/4` … `3/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// Number of shards, at least 1.
    pub count: usize,
}

impl Shard {
    /// Parses `I/N` (`0 <= I < N`).
    ///
    /// # Errors
    /// [`AnalysisError::Options`] naming the bad value.
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = |why: &str| {
            AnalysisError::Options(format!("--shard '{s}': {why} (expected I/N with 0 <= I < N, e.g. 0/4)"))
        };
        let (i, n) = s.split_once('/').ok_or_else(|| bad("no '/'"))?;
        let index: usize = i.trim().parse().map_err(|_| bad("I is not a number"))?;
        let count: usize = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        if count == 0 {
            return Err(bad("N must be at least 1"));
        }
        if index >= count {
            return Err(bad("I must be below N (shards are numbered from 0)"));
        }
        Ok(Shard { index, count })
    }

    /// The prompts `[first, end)` of this shard among `n`.
    pub fn range(&self, n: usize) -> std::ops::Range<usize> {
        (self.index * n / self.count)..((self.index + 1) * n / self.count)
    }

    /// Keeps this shard's prompts of `items` (the whole list, in order).
    ///
    /// # Errors
    /// [`AnalysisError::Options`] when the shard is empty (more shards than prompts).
    pub fn select<T>(&self, items: &mut Vec<T>) -> Result<ShardInfo> {
        let n = items.len();
        let r = self.range(n);
        if r.is_empty() {
            return Err(AnalysisError::Options(format!(
                "--shard {}/{}: no prompt falls in this shard ({n} prompts over {} shards); use fewer shards",
                self.index, self.count, self.count
            )));
        }
        let block = self.info(n);
        items.truncate(r.end);
        items.drain(..r.start);
        Ok(block)
    }

    /// The manifest's `shard` block for a run over `n_total` prompts.
    pub fn info(&self, n_total: usize) -> ShardInfo {
        let r = self.range(n_total);
        ShardInfo {
            index: self.index,
            count: self.count,
            n_total,
            first: r.start,
            end: r.end,
            rule: "contiguous: shard I of N holds prompts [I*n/N, (I+1)*n/N) of the selected prompt list"
                .into(),
        }
    }
}

/// The manifest key of the shard block.
pub const SHARD_KEY: &str = "shard";

/// Whether a manifest header's extra blocks mark a shard run.
pub fn is_shard(header: &crate::profile::ManifestHeader) -> bool {
    header.extra.contains_key(SHARD_KEY)
}

/// What [`merge_runs`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// Run kind (`profile`, `lens`, `probe`).
    pub kind: String,
    /// Shards merged.
    pub n_shards: usize,
    /// Prompts in the merged run.
    pub n_prompts: usize,
}

/// How to merge.
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    /// The `tool` block of the merged manifest (the merge command's).
    pub tool: Value,
    /// `probe`: keep the merged `features.f32`.
    pub keep_features: bool,
}

struct ShardRun {
    dir: PathBuf,
    manifest: Value,
    index: usize,
    count: usize,
    n_total: usize,
    first: usize,
    end: usize,
}

fn bad(path: &Path, reason: String) -> AnalysisError {
    AnalysisError::ResultFile { path: path.to_path_buf(), reason }
}

fn read_manifest(dir: &Path) -> Result<Value> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| bad(&path, format!("cannot read the shard's manifest: {e}")))?;
    serde_json::from_str(&text).map_err(|e| bad(&path, format!("not a valid manifest: {e}")))
}

fn open_shard(dir: &Path) -> Result<ShardRun> {
    let manifest = read_manifest(dir)?;
    let path = dir.join("manifest.json");
    if manifest["status"].as_str() != Some("complete") {
        return Err(bad(
            &path,
            format!(
                "shard is not complete (status {}); finish it first (the same command with --resume)",
                manifest["status"]
            ),
        ));
    }
    let s = &manifest[SHARD_KEY];
    let num = |k: &str| {
        s[k].as_u64().map(|v| v as usize).ok_or_else(|| {
            bad(&path, format!("not a shard run: no '{SHARD_KEY}.{k}' (run it with --shard I/N)"))
        })
    };
    Ok(ShardRun {
        index: num("index")?,
        count: num("count")?,
        n_total: num("n_total")?,
        first: num("first")?,
        end: num("end")?,
        dir: dir.to_path_buf(),
        manifest,
    })
}

/// The first field (one level down) where two identities differ, as `field` or `field.sub`.
fn first_difference(a: &Value, b: &Value) -> Option<String> {
    let (ao, bo) = (a.as_object()?, b.as_object()?);
    let key = ao.keys().chain(bo.keys()).find(|k| a.get(k.as_str()) != b.get(k.as_str()))?.clone();
    let (x, y) = (&a[&key], &b[&key]);
    if let (Some(xo), Some(yo)) = (x.as_object(), y.as_object()) {
        if let Some(sub) = xo.keys().chain(yo.keys()).find(|k| x.get(k.as_str()) != y.get(k.as_str())) {
            return Some(format!("{key}.{sub}"));
        }
    }
    Some(key)
}

/// Checks that `runs` are the complete, disjoint shards of one run; returns them in shard
/// order.
fn check_shards(runs: &[PathBuf]) -> Result<Vec<ShardRun>> {
    let first_dir =
        runs.first().ok_or_else(|| AnalysisError::Options("merge needs at least one shard folder".into()))?;
    let mut shards: Vec<ShardRun> = runs.iter().map(|d| open_shard(d)).collect::<Result<_>>()?;
    let without_shard = |m: &Value| {
        let mut id = crate::resume::identity(m);
        if let Some(o) = id.as_object_mut() {
            o.remove(SHARD_KEY);
        }
        id
    };
    let reference = without_shard(&shards[0].manifest);
    for s in &shards[1..] {
        let id = without_shard(&s.manifest);
        if id != reference {
            let field = first_difference(&reference, &id).unwrap_or_default();
            return Err(bad(
                &s.dir.join("manifest.json"),
                format!(
                    "not a shard of the same run as {}: field '{field}' differs (model, tokenizer, data and options must be equal)",
                    first_dir.display()
                ),
            ));
        }
        if (s.count, s.n_total) != (shards[0].count, shards[0].n_total) {
            return Err(bad(
                &s.dir.join("manifest.json"),
                format!(
                    "shard {}/{} of {} prompts does not belong with shard {}/{} of {} prompts in {}",
                    s.index,
                    s.count,
                    s.n_total,
                    shards[0].index,
                    shards[0].count,
                    shards[0].n_total,
                    first_dir.display()
                ),
            ));
        }
    }
    shards.sort_by_key(|s| s.index);
    for w in shards.windows(2) {
        if w[0].index == w[1].index {
            return Err(bad(
                &w[1].dir.join("manifest.json"),
                format!(
                    "shard {}/{} is given twice ({} and {})",
                    w[1].index,
                    w[1].count,
                    w[0].dir.display(),
                    w[1].dir.display()
                ),
            ));
        }
    }
    let count = shards[0].count;
    let missing: Vec<String> = (0..count)
        .filter(|i| !shards.iter().any(|s| s.index == *i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(AnalysisError::ResultFile {
            path: first_dir.clone(),
            reason: format!("missing shard(s) {} of this run: merge needs all {count}", missing.join(", ")),
        });
    }
    for s in &shards {
        let expect = Shard { index: s.index, count }.range(s.n_total);
        if (s.first, s.end) != (expect.start, expect.end) {
            return Err(bad(
                &s.dir.join("manifest.json"),
                format!(
                    "shard {}/{count} records prompts [{}, {}), expected [{}, {})",
                    s.index, s.first, s.end, expect.start, expect.end
                ),
            ));
        }
    }
    Ok(shards)
}

/// The shard's complete `prompts.jsonl` lines (exactly its number of prompts).
fn shard_lines(s: &ShardRun) -> Result<Vec<u8>> {
    let path = s.dir.join("prompts.jsonl");
    let bytes = std::fs::read(&path).map_err(|e| bad(&path, e.to_string()))?;
    let n = bytes.iter().filter(|&&b| b == b'\n').count();
    if n != s.end - s.first || bytes.last().is_some_and(|&b| b != b'\n') {
        return Err(bad(
            &path,
            format!("holds {n} complete line(s), the shard has {} prompts", s.end - s.first),
        ));
    }
    Ok(bytes)
}

/// Rebuilds the profile options recorded in a manifest's `options` block; refuses a block
/// that does not round-trip exactly (an option this version does not know).
///
/// # Errors
/// [`AnalysisError::ResultFile`] naming the manifest.
pub fn profile_options_from_manifest(path: &Path, options: &Value) -> Result<ProfileOptions> {
    let f = |k: &str| {
        options[k].as_f64().ok_or_else(|| bad(path, format!("options.{k}: missing or not a number")))
    };
    let opts = ProfileOptions {
        attention: sinkscope_metrics::AttentionParams {
            sink_epsilon: f("epsilon")?,
            class_tau: f("tau")?,
            mixing_threshold: f("mixing_threshold")?,
        },
        massive: sinkscope_metrics::massive_layers::MassiveLayerParams {
            mlp_factor: f("massive_mlp_factor")?,
            ratio_factor: f("massive_ratio_factor")?,
        },
        top_k: options["top_k"].as_u64().ok_or_else(|| bad(path, "options.top_k: missing".into()))? as usize,
        bos: options["bos"]
            .as_str()
            .and_then(|b| b.parse().ok())
            .ok_or_else(|| bad(path, "options.bos: missing or unknown".into()))?,
        max_tokens: options["max_tokens"].as_u64().map(|v| v as usize),
        truncate: options["truncate"].as_bool().unwrap_or(false),
        edits: serde_json::from_value(options["edits"].clone())
            .map_err(|e| bad(path, format!("options.edits: {e}")))?,
        nll: options["nll"].as_bool().unwrap_or(false),
        resume: false,
        first_token: match &options["first_token"] {
            Value::Null => None,
            v => Some(match (v["id"].as_u64(), v["text"].as_str()) {
                (Some(id), None) => crate::profile::FirstTokenSpec::Id(
                    u32::try_from(id)
                        .map_err(|_| bad(path, format!("options.first_token.id: {id} is not a token id")))?,
                ),
                (None, Some(t)) => crate::profile::FirstTokenSpec::Text(t.to_string()),
                _ => return Err(bad(path, "options.first_token: neither {\"id\"} nor {\"text\"}".into())),
            }),
        },
        phases: serde_json::from_value(options["phases"].clone())
            .map_err(|e| bad(path, format!("options.phases: {e}")))?,
        bootstrap: sinkscope_metrics::bootstrap::BootstrapParams {
            replicates: options["bootstrap"]["replicates"]
                .as_u64()
                .ok_or_else(|| bad(path, "options.bootstrap.replicates: missing".into()))?
                as usize,
            seed: options["bootstrap"]["seed"]
                .as_u64()
                .ok_or_else(|| bad(path, "options.bootstrap.seed: missing".into()))?,
        },
    };
    if opts.to_json() != *options {
        return Err(bad(path, "options: not the options this version of sinkscope writes; merge with the version that ran the shards".into()));
    }
    Ok(opts)
}

fn config_dim(path: &Path, manifest: &Value, key: &str) -> Result<usize> {
    manifest["model"]["config"][key]
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| bad(path, format!("model.config.{key}: missing")))
}

/// Merges the shard folders `runs` into `out` (already claimed by the caller) as described in
/// the module doc.
///
/// # Errors
/// [`AnalysisError::ResultFile`] naming the folder and what differs or is missing, or any
/// aggregation or output error.
pub fn merge_runs(runs: &[PathBuf], out: &Path, opts: &MergeOptions) -> Result<Merged> {
    let t0 = std::time::Instant::now();
    let shards = check_shards(runs)?;
    let first = &shards[0];
    let mpath = first.dir.join("manifest.json");
    let kind = first.manifest["kind"].as_str().unwrap_or_default().to_string();
    let n_layers = config_dim(&mpath, &first.manifest, "n_layers")?;
    std::fs::create_dir_all(out)
        .map_err(|source| AnalysisError::Output { path: out.to_path_buf(), source })?;

    // prompts.jsonl: the lines in shard order.
    let lines_path = out.join("prompts.jsonl");
    let mut file = std::io::BufWriter::new(sinkscope_output::create_fresh(&lines_path)?);
    let mut all = Vec::new();
    for s in &shards {
        let bytes = shard_lines(s)?;
        file.write_all(&bytes)
            .map_err(|source| AnalysisError::Output { path: lines_path.clone(), source })?;
        all.push(bytes);
    }
    file.flush().map_err(|source| AnalysisError::Output { path: lines_path.clone(), source })?;
    drop(file);
    let records = all.iter().flat_map(|b| b.split(|&c| c == b'\n').filter(|l| !l.is_empty()));

    let mut manifest = first.manifest.clone();
    let (n_prompts, n_tokens);
    match kind.as_str() {
        "profile" => {
            let popts = profile_options_from_manifest(&mpath, &first.manifest["options"])?;
            let n_heads = config_dim(&mpath, &first.manifest, "n_heads")?;
            let mut agg = crate::aggregate::Aggregator::new(n_layers, n_heads, popts);
            let mut tokens = 0usize;
            for line in records {
                let r: crate::profile::PromptRecord = serde_json::from_slice(line)?;
                tokens += r.token_ids.len();
                agg.add(&r)?;
            }
            let metrics = agg.finish()?;
            write_json(&out.join("metrics.json"), &metrics)?;
            n_prompts = agg.n_prompts();
            n_tokens = tokens;
            manifest["first_token"] = agg.first_token_json();
            manifest["n_truncated"] = json!(agg.n_truncated());
        }
        "lens" => {
            let mut agg = crate::lens::LensAggregator::new(n_layers);
            let mut tokens = 0usize;
            for line in records {
                let r: crate::lens::LensRecord = serde_json::from_slice(line)?;
                tokens += crate::runner::PromptLine::token_ids(&r).len();
                agg.add(&r)?;
            }
            write_json(&out.join("metrics.json"), &agg.finish())?;
            n_prompts = agg.n_prompts();
            n_tokens = tokens;
        }
        "probe" => {
            let d = config_dim(&mpath, &first.manifest, "d_model")?;
            let mut labels = Vec::new();
            let mut tokens = 0usize;
            for line in records {
                let r: crate::probe::ProbeLine = serde_json::from_slice(line)?;
                tokens += r.token_ids.len();
                labels.push(usize::from(r.label));
            }
            let feat = crate::probe::features_path(out);
            let row_bytes = (n_layers as u64 + 1) * d as u64 * 4;
            let mut f = std::io::BufWriter::new(sinkscope_output::create_fresh(&feat)?);
            for s in &shards {
                let p = crate::probe::features_path(&s.dir);
                let bytes = std::fs::read(&p)
                    .map_err(|e| bad(&p, format!("cannot read the shard's features: {e}")))?;
                if bytes.len() as u64 != row_bytes * (s.end - s.first) as u64 {
                    return Err(bad(
                        &p,
                        format!(
                            "holds {} bytes, expected {} rows of {row_bytes}",
                            bytes.len(),
                            s.end - s.first
                        ),
                    ));
                }
                f.write_all(&bytes).map_err(|source| AnalysisError::Output { path: feat.clone(), source })?;
            }
            f.flush().map_err(|source| AnalysisError::Output { path: feat.clone(), source })?;
            drop(f);
            let popts = crate::probe::options_from_manifest(&mpath, &first.manifest["options"])?;
            let layers = crate::probe::fit_features(&feat, &labels, n_layers, d, &popts.params)?;
            write_json(&out.join("metrics.json"), &crate::probe::metrics_json(n_layers, &layers, &popts))?;
            if !opts.keep_features {
                let _ = std::fs::remove_file(&feat);
            }
            n_prompts = labels.len();
            n_tokens = tokens;
            if let Some(m) = manifest.as_object_mut() {
                m.remove("features");
                if opts.keep_features {
                    m.insert(
                        "features".into(),
                        json!({"file": crate::probe::FEATURES_FILE, "layout": "[sentence][layer][d] f32 LE"}),
                    );
                }
            }
        }
        other => {
            return Err(bad(
                &mpath,
                format!("cannot merge runs of kind '{other}' (profile, lens and probe merge)"),
            ));
        }
    }
    let merged_from: Vec<Value> = shards
        .iter()
        .map(|s| {
            json!({"path": s.dir, "shard": s.manifest[SHARD_KEY], "timings": s.manifest["timings"],
                   "memory": s.manifest["memory"], "command_line": s.manifest["tool"]["command_line"]})
        })
        .collect();
    let mut manifest: Manifest = serde_json::from_value(manifest)?;
    manifest.shard = None;
    manifest.extra.remove("memory");
    manifest.status = Some("complete".into());
    manifest.tool = serde_json::from_value(opts.tool.clone())?;
    manifest.n_prompts = Some(n_prompts);
    manifest.n_tokens = Some(n_tokens);
    manifest.extra.insert("merged_from".into(), Value::Array(merged_from));
    manifest.timings = crate::profile::object(&json!({"merge_s": t0.elapsed().as_secs_f64()}));
    write_json(&out.join("manifest.json"), &manifest)?;
    Ok(Merged { kind, n_shards: shards.len(), n_prompts })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The shards of any prompt count are contiguous, disjoint and cover every prompt in order.
    #[test]
    fn shards_partition_the_prompts_in_order() {
        for n in 1..40 {
            for count in 1..=n.min(9) {
                let mut next = 0;
                for index in 0..count {
                    let r = Shard { index, count }.range(n);
                    assert_eq!(r.start, next);
                    assert!(!r.is_empty());
                    next = r.end;
                }
                assert_eq!(next, n);
            }
        }
        let mut v: Vec<usize> = (0..10).collect();
        Shard::parse("1/3").unwrap().select(&mut v).unwrap();
        assert_eq!(v, vec![3, 4, 5]);
        assert!(Shard { index: 3, count: 5 }.select(&mut vec![1, 2]).is_err());
    }

    #[test]
    fn parse_refuses_bad_specs() {
        assert_eq!(Shard::parse("0/4").unwrap(), Shard { index: 0, count: 4 });
        for s in ["4/4", "1", "a/2", "0/0", "-1/2"] {
            let e = Shard::parse(s).unwrap_err().to_string();
            assert!(e.contains("--shard"), "{e}");
        }
    }
}
