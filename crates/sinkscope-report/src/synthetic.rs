//! A made-up run folder with the shape the paper describes (a massive activation in the
//! middle layers, a compression valley, sinks), for examples, tests and demos of the
//! report without running a model. The numbers are invented, not measured; the manifest
//! says so.

use std::path::Path;

use serde_json::{json, Value};

use crate::schema::{MANIFEST_FILE, METRICS_FILE, PROMPTS_FILE, SCHEMA_VERSION};
use crate::ReportError;

/// Per-layer curves by metric name.
type NamedCurves = Vec<(&'static str, Vec<Option<f64>>)>;

/// Parameters of a synthetic run.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticRun {
    /// Number of blocks L.
    pub n_layers: usize,
    /// Heads per layer.
    pub n_heads: usize,
    /// Number of prompts.
    pub n_prompts: usize,
    /// Model path recorded in the manifest (its file name is the run's label).
    pub model_path: String,
    /// Whether position 0 is a BOS token.
    pub bos: bool,
    /// Strength of the massive activation, 1 = as made up, 0 = removed: the sub-runs of a
    /// synthetic ablation scale it by λ (the compression valley fades with it).
    pub massive_scale: f64,
    /// The prompt set's name (`data.dataset.name` in the manifest); `None`: synthetic data.
    pub dataset: Option<String>,
    /// Head 0 of every compressed layer attends elsewhere (`bos_attention` 0.05 instead of
    /// ≥ 0.8): on this prompt set it is active, not dormant (Fig. 5's input-adaptive heads).
    pub head0_active: bool,
}

impl Default for SyntheticRun {
    fn default() -> Self {
        Self {
            n_layers: 12,
            n_heads: 4,
            n_prompts: 3,
            model_path: "models/synthetic-model.gguf".into(),
            bos: false,
            massive_scale: 1.0,
            dataset: None,
            head0_active: false,
        }
    }
}

fn write_json(path: &Path, v: &Value) -> Result<(), ReportError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| {
        ReportError::Schema(sinkscope_schema::SchemaError::Parse {
            path: path.to_path_buf(),
            line: None,
            message: e.to_string(),
        })
    })?;
    std::fs::write(path, text).map_err(ReportError::io(path))
}

/// Sample mean and standard deviation.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let s =
        if v.len() > 1 { (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, s)
}

impl SyntheticRun {
    /// The layer where the massive activation forms (≈ 35 % of depth, at least 1).
    pub fn massive_layer(&self) -> usize {
        ((self.n_layers as f64 * 0.35).round() as usize).clamp(1, self.n_layers)
    }

    /// The last compressed layer (≈ 85 % of depth).
    pub fn compress_last(&self) -> usize {
        ((self.n_layers as f64 * 0.85).round() as usize).clamp(self.massive_layer(), self.n_layers)
    }

    /// Per-prompt curves: `(name, [L+1 values])` for prompt `p`.
    fn prompt_curves(&self, p: usize) -> NamedCurves {
        let l_max = self.n_layers;
        let k = self.massive_scale.clamp(0.0, 1.0);
        let (m, c) = (self.massive_layer(), self.compress_last());
        let jitter = 1.0 + 0.08 * (p as f64 - (self.n_prompts as f64 - 1.0) / 2.0);
        let t = 20.0 + 5.0 * p as f64;
        let mut cols: Vec<(&'static str, Vec<Option<f64>>)> = Vec::new();
        let (mut bos_norm, mut tok, mut ent_n, mut sink, mut aniso) =
            (vec![], vec![], vec![], vec![], vec![]);
        for l in 0..=l_max {
            let tk = (2.0 + l as f64 * 0.5) * jitter;
            let b = if l < m {
                tk * 1.2
            } else if l <= c {
                tk * (1.0 + 149.0 * k) * (1.0 + 0.1 * (l - m) as f64 / (c - m + 1) as f64)
            } else {
                tk * (1.0 + 149.0 * k) / (1.0 + 6.0 * (l - c) as f64)
            };
            let e = if l < m {
                0.6 - 0.2 * l as f64 / m as f64
            } else if l <= c {
                (0.02 + 0.01 * ((l - m) % 3) as f64) * k + 0.45 * (1.0 - k)
            } else {
                0.02 + 0.45 * (l - c) as f64 / (l_max - c).max(1) as f64
            } * jitter.min(1.05);
            let s = if l == 0 {
                None
            } else if l < m {
                Some(0.25)
            } else if l <= c {
                Some(0.25 + (1.0_f64.min(0.75 + 0.05 * p as f64) - 0.25) * k)
            } else {
                Some(0.5)
            };
            let a = if l < m {
                0.15 + 0.05 * l as f64 / m as f64
            } else if l <= c {
                0.2 + 0.77 * k
            } else {
                0.5
            };
            bos_norm.push(b);
            tok.push(tk);
            ent_n.push(e);
            sink.push(s);
            aniso.push(a);
        }
        let ln_r = t.ln();
        let entropy: Vec<f64> = ent_n.iter().map(|e| e * ln_r).collect();
        let ratio: Vec<f64> = bos_norm.iter().zip(&tok).map(|(b, t)| b / t).collect();
        let mm: Vec<f64> = bos_norm.iter().map(|b| b * b).collect();
        let rr: Vec<f64> = tok.iter().map(|t| t * t * (self.n_layers as f64)).collect();
        let sigma: Vec<f64> = mm.iter().zip(&rr).map(|(m, r)| m + 0.3 * r).collect();
        let sigma_b: Vec<f64> = mm.iter().zip(&rr).map(|(m, r)| m + 0.2 * r).collect();
        let aniso_b: Vec<f64> = aniso.iter().map(|a| a * 0.95).collect();
        let ent_b: Vec<f64> = entropy.iter().map(|e| e * 1.1 + 0.05).collect();
        let some = |v: &[f64]| v.iter().map(|x| Some(*x)).collect::<Vec<_>>();
        cols.push(("bos_norm", some(&bos_norm)));
        cols.push(("token_norm_mean", some(&tok)));
        cols.push(("bos_ratio", some(&ratio)));
        cols.push(("entropy", some(&entropy)));
        cols.push(("entropy_norm", some(&ent_n)));
        cols.push(("anisotropy", some(&aniso)));
        cols.push(("sigma1_sq", some(&sigma)));
        cols.push(("sigma1_sq_bound", some(&sigma_b)));
        cols.push(("anisotropy_bound", some(&aniso_b)));
        cols.push(("entropy_bound", some(&ent_b)));
        let massive = |l: usize| l >= m && l <= c && k >= 0.5;
        cols.push(("massive", (0..=l_max).map(|l| Some(if massive(l) { 1.0 } else { 0.0 })).collect()));
        // Fig. 6: c = M/R, α, head classes (sink or mixing), and the sink's value: as large as
        // the others before the massive activation, 20x smaller inside the valley.
        cols.push(("c", mm.iter().zip(&rr).map(|(m, r)| Some(m / r)).collect()));
        cols.push(("alpha", (0..=l_max).map(|l| Some(if l >= m && l <= c { 0.3 } else { 0.1 })).collect()));
        cols.push(("bos_attention_excl", sink.clone()));
        cols.push(("head_frac_sink", sink.clone()));
        cols.push(("head_frac_mixing", sink.iter().map(|s| s.map(|s| 1.0 - s)).collect()));
        for name in ["head_frac_identity", "head_frac_previous_token", "head_frac_other"] {
            cols.push((name, (0..=l_max).map(|l| (l > 0).then_some(0.0)).collect()));
        }
        let ratio_v = |l: usize| if l >= m && l <= c { 1.0 - 0.95 * k } else { 1.0 };
        cols.push(("sink_value_ratio", (0..=l_max).map(|l| (l > 0).then(|| ratio_v(l))).collect()));
        let share: Vec<Option<f64>> = sink
            .iter()
            .enumerate()
            .map(|(l, s)| s.map(|s| s * ratio_v(l) / (s * ratio_v(l) + 1.0 - s)))
            .collect();
        cols.push(("sink_output_share", share.clone()));
        cols.push(("sink_output_share_sink_heads", share));
        cols.push(("sink_rate", sink));
        cols.push((
            "mixing_score",
            (0..=l_max).map(|l| (l > 0).then_some(if l < m { 0.8 } else { 0.2 })).collect(),
        ));
        cols
    }

    /// Writes `manifest.json`, `metrics.json` and `prompts.jsonl` into `dir` (created).
    ///
    /// # Errors
    /// [`SchemaError::Io`](sinkscope_schema::SchemaError::Io) when the folder or a file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        self.write_metrics(dir).map(|_| ())
    }

    /// The made-up token-weighted NLL of the prompts: 2.9 at full strength, rising as the
    /// massive activation is removed.
    pub fn nll(&self) -> f64 {
        2.9 + 1.6 * (1.0 - self.massive_scale.clamp(0.0, 1.0)).powi(2)
    }

    /// As [`SyntheticRun::write`], returning the `metrics.json` written.
    fn write_metrics(&self, dir: &Path) -> Result<Value, ReportError> {
        std::fs::create_dir_all(dir).map_err(ReportError::io(dir))?;
        let valley = self.massive_scale >= 0.5;
        let l_max = self.n_layers;
        let (m, c) = (self.massive_layer(), self.compress_last());
        let depth = |l: usize| l as f64 / l_max as f64;
        let first = if self.bos {
            json!({"id": 1, "token": "<s>", "is_bos": true})
        } else {
            json!({"id": 49, "token": "A", "is_bos": false})
        };

        // prompts.jsonl
        let per_prompt: Vec<NamedCurves> = (0..self.n_prompts).map(|p| self.prompt_curves(p)).collect();
        let mut lines = String::new();
        for (p, curves) in per_prompt.iter().enumerate() {
            let n_tokens = 20 + 5 * p;
            let metrics: serde_json::Map<String, Value> =
                curves.iter().map(|(k, v)| ((*k).to_string(), json!(v))).collect();
            let rec = json!({
                "id": format!("synthetic_{p}"),
                "n_tokens": n_tokens,
                "token_ids": (0..n_tokens).map(|i| if i == 0 { first["id"].clone() } else { json!(100 + i) }).collect::<Vec<_>>(),
                "first_token": first,
                "metrics": metrics,
            });
            lines.push_str(&rec.to_string());
            lines.push('\n');
        }
        let pp = dir.join(PROMPTS_FILE);
        std::fs::write(&pp, lines).map_err(ReportError::io(&pp))?;

        // metrics.json: summaries over prompts.
        let mut metrics = serde_json::Map::new();
        let mut means: std::collections::BTreeMap<&str, Vec<Option<f64>>> = Default::default();
        if let Some(first_curves) = per_prompt.first() {
            for (k, (name, _)) in first_curves.iter().enumerate() {
                let (mut mean, mut std, mut min, mut max) = (vec![], vec![], vec![], vec![]);
                for l in 0..=l_max {
                    let vals: Vec<f64> = per_prompt.iter().filter_map(|c| c[k].1[l]).collect();
                    if vals.is_empty() {
                        for v in [&mut mean, &mut std, &mut min, &mut max] {
                            v.push(None);
                        }
                    } else {
                        let (mu, sd) = mean_std(&vals);
                        mean.push(Some(mu));
                        std.push(Some(sd));
                        min.push(vals.iter().copied().reduce(f64::min));
                        max.push(vals.iter().copied().reduce(f64::max));
                    }
                }
                means.insert(name, mean.clone());
                metrics
                    .insert((*name).to_string(), json!({"mean": mean, "std": std, "min": min, "max": max}));
            }
        }
        let head_score = |l: usize, h: usize, base: f64| {
            if self.head0_active && h == 0 && l >= m && l <= c {
                0.05
            } else {
                (base + 0.1 * ((h * 7 + l) % 5) as f64 / 4.0 - 0.05).clamp(0.0, 1.0)
            }
        };
        let bos_attention: Vec<Value> = (0..=l_max)
            .map(|l| {
                if l == 0 {
                    Value::Null
                } else {
                    let base = if l < m {
                        0.15
                    } else if l <= c {
                        0.15 + 0.7 * self.massive_scale.clamp(0.0, 1.0)
                    } else {
                        0.45
                    };
                    json!((0..self.n_heads).map(|h| head_score(l, h, base)).collect::<Vec<_>>())
                }
            })
            .collect();
        let head_ci = |delta: f64| -> Vec<Value> {
            bos_attention
                .iter()
                .map(|row| match row.as_array() {
                    Some(v) => json!(v.iter().map(|x| x.as_f64().map(|x| x + delta)).collect::<Vec<_>>()),
                    None => Value::Null,
                })
                .collect()
        };
        let top: Vec<Value> = (0..=l_max)
            .map(|l| {
                let b = means.get("bos_norm").and_then(|v| v[l]).unwrap_or(1.0);
                let big = if l >= m && l <= c { b * 0.9 } else { b * 0.5 };
                let mut list = vec![
                    (if l >= m { 17 } else { 3 }, 0, big, self.n_prompts),
                    (42, 0, -big * 0.4, self.n_prompts),
                    (5, 3, 2.0 + l as f64 * 0.1, 1),
                ];
                list.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
                json!(list
                    .into_iter()
                    .map(|(dim, token, value, n)| json!({"dim": dim, "token": token, "value": value, "n_prompts": n}))
                    .collect::<Vec<_>>())
            })
            .collect();
        let peak = (0..=l_max)
            .filter_map(|l| means.get("bos_ratio").and_then(|v| v[l]).map(|v| (l, v)))
            .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
        let min_e = (0..=l_max)
            .filter_map(|l| means.get("entropy_norm").and_then(|v| v[l]).map(|v| (l, v)))
            .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        let range = |a: usize, b: usize| json!({"first": a, "last": b, "first_depth": depth(a), "last_depth": depth(b)});
        let metrics_json = json!({
            "schema_version": SCHEMA_VERSION,
            "n_layers": l_max,
            "n_heads": self.n_heads,
            "n_prompts": self.n_prompts,
            "metrics": metrics,
            "heads": {
                "bos_attention_ci_low": head_ci(-0.03),
                "bos_attention_ci_high": head_ci(0.03),
                "bos_attention": bos_attention,
                "head_class_counts": (0..=l_max).map(|l| if l == 0 { Value::Null } else {
                    json!({"sink": if l >= m && l <= c { self.n_heads } else { 0 }, "identity": 0, "previous-token": 0,
                           "mixing": if l < m { self.n_heads } else { 0 }, "other": 0})
                }).collect::<Vec<_>>(),
            },
            "top_activations": top,
            "summary": {
                "massive_layers": if valley {
                    json!([{"block": m, "layer": m, "mlp_ratio": 52.0, "bos_ratio_gain": 40.0}])
                } else {
                    json!([])
                },
                "phases": if valley { json!({
                    "mix": range(0, m - 1),
                    "compress": range(m, c),
                    "refine": if c < l_max { range(c + 1, l_max) } else { Value::Null },
                    "entropy_norm_midpoint": 0.3,
                }) } else { Value::Null },
                "nll": self.nll(),
                "corr_bos_entropy": -0.9,
                "corr_bos_sink": 0.6,
                "bound_violations": 0,
                "peak_bos_ratio": {"layer": peak.0, "value": peak.1},
                "min_entropy_norm": {"layer": min_e.0, "value": min_e.1},
            },
        });
        write_json(&dir.join(METRICS_FILE), &metrics_json)?;
        write_json(&dir.join(MANIFEST_FILE), &self.manifest("profile"))?;
        Ok(metrics_json)
    }

    /// The `manifest.json` of a run of this made-up model, of `kind`.
    fn manifest(&self, kind: &str) -> Value {
        let l_max = self.n_layers;
        let first = if self.bos {
            json!({"id": 1, "token": "<s>", "is_bos": true})
        } else {
            json!({"id": 49, "token": "A", "is_bos": false})
        };

        json!({
            "schema_version": SCHEMA_VERSION,
            "kind": kind,
            "tool": {"name": "sinkscope", "version": env!("CARGO_PKG_VERSION"), "command_line": ["synthetic"],
                     "engine": "none: synthetic numbers (sinkscope_report::synthetic), not measured"},
            "model": {"path": self.model_path, "format": "gguf", "sha256": fake_sha256(&self.model_path), "family": "llama",
                      "config": {"n_layers": l_max, "n_heads": self.n_heads, "d_model": 64},
                      "dtype_mix": {"F32": 10}},
            "tokenizer": {"source": "synthetic", "vocab_size": 1000, "bos_policy": "auto",
                          "bos_token": "<s>", "bos_id": 1, "model_adds_bos": self.bos, "method": "synthetic"},
            "first_token": {"id": first["id"], "token": first["token"], "is_bos": self.bos, "same_for_all_prompts": true},
            "data": match &self.dataset {
                Some(name) => json!({"source": "dataset", "dataset": {"name": name}, "limit": self.n_prompts}),
                None => json!({"source": "synthetic", "limit": self.n_prompts}),
            },
            "options": {"epsilon": 0.3, "tau": 0.5, "mixing_threshold": 0.7, "top_k": 3},
            "conventions": {
                "layer_index": "l = 0..L, X(0) = embedding output, X(l) = after block l, before the final norm",
                "entropy_norm": "H / ln min(T, d)",
                "std": "sample (n-1)",
            },
            "n_prompts": self.n_prompts,
            "n_tokens": (0..self.n_prompts).map(|p| 20 + 5 * p).sum::<usize>(),
            "timings": {"load_s": 0.0, "run_s": 0.0},
        })
    }
}

/// A stand-in for a model's sha256, derived from its path (64 hex digits; not a real hash
/// of anything): runs of the same made-up model share it, different models differ.
pub fn fake_sha256(model_path: &str) -> String {
    let mut out = String::with_capacity(64);
    for seed in 0..4_u64 {
        // FNV-1a, seeded.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in model_path.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

/// Mean, sample std, min and max over prompts of per-prompt curves, as the
/// `{"mean", "std", "min", "max"}` object of `metrics.json`.
fn summarise(curves: &[Vec<f64>], n: usize) -> Value {
    let (mut mean, mut std, mut min, mut max) = (vec![], vec![], vec![], vec![]);
    for l in 0..n {
        let vals: Vec<f64> = curves.iter().filter_map(|c| c.get(l).copied()).collect();
        let (mu, sd) = mean_std(&vals);
        mean.push(mu);
        std.push(sd);
        min.push(vals.iter().copied().fold(f64::INFINITY, f64::min));
        max.push(vals.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    }
    json!({"mean": mean, "std": std, "min": min, "max": max})
}

/// A made-up `lens` run folder (`docs/results-schema.md`, "`lens` runs"): LogitLens NLL
/// falling slowly through the network and sharply in its last blocks, equal to the
/// model's own NLL at `l = L`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticLens {
    /// The model (its `n_layers`, `model_path`, `bos`); its `n_prompts` is the number of
    /// prompts scored.
    pub model: SyntheticRun,
}

impl SyntheticLens {
    /// The model's own token-weighted NLL.
    pub const MODEL_NLL: f64 = 2.9;

    /// Token-weighted NLL at layer `l` with per-prompt offset `p`.
    fn nll(&self, l: usize, p: usize) -> f64 {
        let d = l as f64 / self.model.n_layers.max(1) as f64;
        let jitter = 0.15 * (p as f64 - (self.model.n_prompts as f64 - 1.0) / 2.0);
        Self::MODEL_NLL + (6.5 + jitter) * (1.0 - d.powi(3))
    }

    /// Writes `manifest.json`, `metrics.json` and `prompts.jsonl` into `dir` (created).
    ///
    /// # Errors
    /// [`SchemaError::Io`](sinkscope_schema::SchemaError::Io) when the folder or a file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        std::fs::create_dir_all(dir).map_err(ReportError::io(dir))?;
        let n = self.model.n_layers + 1;
        let l_max = self.model.n_layers;
        let mut lines = String::new();
        let (mut nlls, mut ppls, mut top1s) = (vec![], vec![], vec![]);
        let mut tokens = 0_usize;
        let (mut tw_nll, mut tw_top1) = (vec![0.0; n], vec![0.0; n]);
        for p in 0..self.model.n_prompts {
            let t = 40 + 10 * p;
            tokens += t - 1;
            let nll: Vec<f64> = (0..n)
                .map(|l| if l == l_max { Self::MODEL_NLL + 0.1 * p as f64 } else { self.nll(l, p) })
                .collect();
            let ppl: Vec<f64> = nll.iter().map(|x| x.exp()).collect();
            let top1: Vec<f64> = (0..n)
                .map(|l| 0.02 + 0.4 * (l as f64 / l_max.max(1) as f64).powi(3) - 0.01 * p as f64)
                .collect();
            for l in 0..n {
                tw_nll[l] += nll[l] * (t - 1) as f64;
                tw_top1[l] += top1[l] * (t - 1) as f64;
            }
            let rec = json!({
                "id": format!("lens_{p}"),
                "n_tokens": t,
                "token_ids": (0..t).map(|i| 100 + i).collect::<Vec<_>>(),
                "first_token": {"id": 100, "token": "The", "is_bos": false},
                "metrics": {"logit_lens_nll": nll, "logit_lens_ppl": ppl, "logit_lens_top1": top1},
                "model_nll": nll[l_max],
            });
            lines.push_str(&rec.to_string());
            lines.push('\n');
            nlls.push(nll);
            ppls.push(ppl);
            top1s.push(top1);
        }
        let pp = dir.join(PROMPTS_FILE);
        std::fs::write(&pp, lines).map_err(ReportError::io(&pp))?;
        let w = tokens.max(1) as f64;
        let tw_nll: Vec<f64> = tw_nll.iter().map(|x| x / w).collect();
        let tw_top1: Vec<f64> = tw_top1.iter().map(|x| x / w).collect();
        let model_nll = tw_nll[l_max];
        let best =
            tw_nll.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map(|(l, _)| l).unwrap_or(l_max);
        let metrics = json!({
            "schema_version": SCHEMA_VERSION,
            "kind": "lens",
            "n_layers": l_max,
            "n_prompts": self.model.n_prompts,
            "metrics": {
                "logit_lens_nll": summarise(&nlls, n),
                "logit_lens_ppl": summarise(&ppls, n),
                "logit_lens_top1": summarise(&top1s, n),
            },
            "summary": {
                "n_predicted_tokens": tokens,
                "token_weighted_nll": tw_nll,
                "token_weighted_ppl": tw_nll.iter().map(|x| x.exp()).collect::<Vec<_>>(),
                "token_weighted_top1": tw_top1,
                "model_nll": model_nll,
                "model_ppl": model_nll.exp(),
                "lens_at_L_minus_model_nll": 0.0,
                "best_layer": best,
            },
        });
        write_json(&dir.join(METRICS_FILE), &metrics)?;
        write_json(&dir.join(MANIFEST_FILE), &self.model.manifest("lens"))
    }
}

/// A made-up `probe` run folder (`docs/results-schema.md`, "`probe` runs"): accuracy
/// peaking in the middle of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticProbe {
    /// The model (its `n_layers`, `model_path`).
    pub model: SyntheticRun,
    /// Number of labelled sentences.
    pub n_samples: usize,
    /// Layers where the solver is recorded as not converged.
    pub not_converged: Vec<usize>,
}

impl SyntheticProbe {
    /// The majority-class baseline accuracy.
    pub const BASELINE: f64 = 0.55;

    /// CV accuracy at layer `l`.
    pub fn accuracy(&self, l: usize) -> f64 {
        let d = l as f64 / self.model.n_layers.max(1) as f64;
        Self::BASELINE + 0.3 * (-((d - 0.45) / 0.25).powi(2)).exp()
    }

    /// The layer with the highest accuracy.
    pub fn best_layer(&self) -> usize {
        (0..=self.model.n_layers).max_by(|&a, &b| self.accuracy(a).total_cmp(&self.accuracy(b))).unwrap_or(0)
    }

    /// Writes `manifest.json`, `metrics.json` and `prompts.jsonl` into `dir` (created).
    ///
    /// # Errors
    /// [`SchemaError::Io`](sinkscope_schema::SchemaError::Io) when the folder or a file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        std::fs::create_dir_all(dir).map_err(ReportError::io(dir))?;
        let l_max = self.model.n_layers;
        let mut lines = String::new();
        for i in 0..self.n_samples {
            // 55 % positive, as the baseline says.
            let label = (i * 100 / self.n_samples.max(1)) < 55;
            lines
                .push_str(&json!({"id": format!("s{i}"), "n_tokens": 8 + i % 7, "label": label}).to_string());
            lines.push('\n');
        }
        let pp = dir.join(PROMPTS_FILE);
        std::fs::write(&pp, lines).map_err(ReportError::io(&pp))?;
        let acc: Vec<f64> = (0..=l_max).map(|l| self.accuracy(l)).collect();
        let std: Vec<f64> = (0..=l_max).map(|l| 0.01 + 0.002 * (l % 5) as f64).collect();
        let best = self.best_layer();
        let per_layer: Vec<Value> = (0..=l_max)
            .map(|l| {
                let ok = !self.not_converged.contains(&l);
                json!({"layer": l, "accuracy": acc[l], "accuracy_std": std[l], "pooled_accuracy": acc[l] - 0.001,
                       "baseline_accuracy": Self::BASELINE, "converged": ok,
                       "max_iterations": if ok { 8 + l % 4 } else { 100 },
                       "max_grad_norm": if ok { 1e-12 * (1 + l) as f64 } else { 3e-4 }})
            })
            .collect();
        let metrics = json!({
            "schema_version": SCHEMA_VERSION,
            "kind": "probe",
            "n_layers": l_max,
            "n_samples": self.n_samples,
            "n_classes": 2,
            "metrics": {"probe_accuracy": {
                "mean": acc,
                "std": std,
                "min": acc.iter().zip(&std).map(|(a, s)| a - 1.5 * s).collect::<Vec<_>>(),
                "max": acc.iter().zip(&std).map(|(a, s)| a + 1.5 * s).collect::<Vec<_>>(),
            }},
            "summary": {
                "baseline_accuracy": Self::BASELINE, "best_layer": best, "best_accuracy": acc[best],
                "pool": "mean", "folds": 5, "seed": 42, "c": 1.0,
                "solver": "damped Newton, faer Cholesky (synthetic)",
                "all_converged": self.not_converged.is_empty(),
                "per_layer": per_layer,
            },
        });
        write_json(&dir.join(METRICS_FILE), &metrics)?;
        let mut manifest = self.model.manifest("probe");
        manifest["options"] =
            json!({"pool": "mean", "folds": 5, "seed": 42, "c": 1.0, "solver": "synthetic"});
        write_json(&dir.join(MANIFEST_FILE), &manifest)
    }
}

/// A made-up `ablate` folder (`docs/results-schema.md`, "`ablate` runs"): `baseline/`,
/// `scale_<λ>/` for every other λ, optionally `mean_ablate/` and `only_<block>/`, and
/// `ablate.json` with the values computed from those sub-runs, nested under `summary` as
/// `sinkscope ablate` writes them. The valley fades with λ:
/// at λ = 0 its minimum entropy_norm is about 20× the baseline's and its sink rate falls.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticAblate {
    /// The model (baseline at `massive_scale = 1`).
    pub model: SyntheticRun,
    /// The scales λ (1 = baseline; must contain 1).
    pub scales: Vec<f64>,
    /// Also write a mean-ablation sub-run (strength 0.3).
    pub mean_ablate: bool,
    /// Also write a one-by-one sub-run for the massive block.
    pub one_by_one: bool,
}

impl Default for SyntheticAblate {
    fn default() -> Self {
        Self {
            model: SyntheticRun::default(),
            scales: vec![1.0, 0.75, 0.5, 0.25, 0.0],
            mean_ablate: true,
            one_by_one: false,
        }
    }
}

impl SyntheticAblate {
    /// The four quantities of `ablate.json` from a sub-run's `metrics.json`.
    fn quantities(metrics: &Value, valley: (usize, usize)) -> Value {
        let mean = |name: &str, l: usize| metrics["metrics"][name]["mean"][l].as_f64();
        let ent: Vec<f64> = (valley.0..=valley.1).filter_map(|l| mean("entropy_norm", l)).collect();
        let sink: Vec<f64> = (valley.0..=valley.1).filter_map(|l| mean("sink_rate", l)).collect();
        let n = metrics["n_layers"].as_u64().unwrap_or(0) as usize;
        let bos = (0..=n).filter_map(|l| mean("bos_ratio", l)).fold(f64::NEG_INFINITY, f64::max);
        json!({
            "bound_violations": metrics["summary"]["bound_violations"],
            "valley_min_entropy_norm": ent.iter().copied().fold(f64::INFINITY, f64::min),
            "max_bos_ratio": bos,
            "valley_mean_sink_rate": sink.iter().sum::<f64>() / sink.len().max(1) as f64,
            "nll": metrics["summary"]["nll"],
        })
    }

    /// Writes the folder into `dir` (created).
    ///
    /// # Errors
    /// [`SchemaError::Io`](sinkscope_schema::SchemaError::Io) when a folder or a file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        std::fs::create_dir_all(dir).map_err(ReportError::io(dir))?;
        let m = self.model.massive_layer();
        let valley = (m, self.model.compress_last());
        let run = |scale: f64, folder: &str| -> Result<Value, ReportError> {
            let r = SyntheticRun { massive_scale: scale, ..self.model.clone() };
            let metrics = r.write_metrics(&dir.join(folder))?;
            Ok(Self::quantities(&metrics, valley))
        };
        let mut dose = Vec::new();
        for &s in &self.scales {
            let folder = if s == 1.0 { "baseline".to_string() } else { format!("scale_{s}") };
            let q = run(s, &folder)?;
            dose.push(json!({"scale": s, "run": folder, "summary": q}));
        }
        let mean_ablate = if self.mean_ablate {
            json!({"block": m, "dims": [17], "run": "mean_ablate", "summary": run(0.3, "mean_ablate")?,
                   "rule": "synthetic: the made-up massive dimension"})
        } else {
            Value::Null
        };
        let one_by_one = if self.one_by_one {
            let folder = format!("only_{m}");
            vec![json!({"block": m, "run": folder, "summary": run(0.0, &folder)?})]
        } else {
            Vec::new()
        };
        let ablate = json!({
            "schema_version": SCHEMA_VERSION,
            "kind": "ablate",
            "component": "mlp",
            "blocks": [m],
            "blocks_source": "detected on the baseline (metrics.md rule)",
            "evidence": [{"block": m, "layer": m, "mlp_ratio": 52.0, "bos_ratio_gain": 40.0,
                          "hook": format!("blocks.{}.hook_mlp_out", m - 1), "n_prompts": self.model.n_prompts}],
            "valley": {"first": valley.0, "last": valley.1, "rule": "the baseline's compress phase"},
            "scales": self.scales,
            "dose_response": dose,
            "one_by_one": one_by_one,
            "mean_ablate": mean_ablate,
        });
        write_json(&dir.join(crate::schema::ABLATE_FILE), &ablate)
    }
}
