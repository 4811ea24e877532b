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
}

impl Default for SyntheticRun {
    fn default() -> Self {
        Self {
            n_layers: 12,
            n_heads: 4,
            n_prompts: 3,
            model_path: "models/synthetic-model.gguf".into(),
            bos: false,
        }
    }
}

fn write_json(path: &Path, v: &Value) -> Result<(), ReportError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| ReportError::Parse {
        path: path.to_path_buf(),
        line: None,
        message: e.to_string(),
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
                tk * 150.0 * (1.0 + 0.1 * (l - m) as f64 / (c - m + 1) as f64)
            } else {
                tk * 150.0 / (1.0 + 6.0 * (l - c) as f64)
            };
            let e = if l < m {
                0.6 - 0.2 * l as f64 / m as f64
            } else if l <= c {
                0.02 + 0.01 * ((l - m) % 3) as f64
            } else {
                0.02 + 0.45 * (l - c) as f64 / (l_max - c).max(1) as f64
            } * jitter.min(1.05);
            let s = if l == 0 {
                None
            } else if l < m {
                Some(0.25)
            } else if l <= c {
                Some(1.0_f64.min(0.75 + 0.05 * p as f64))
            } else {
                Some(0.5)
            };
            let a = if l < m {
                0.15 + 0.05 * l as f64 / m as f64
            } else if l <= c {
                0.97
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
        cols.push(("massive", (0..=l_max).map(|l| Some(if l >= m && l <= c { 1.0 } else { 0.0 })).collect()));
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
    /// [`ReportError::Io`] when the folder or a file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        std::fs::create_dir_all(dir).map_err(ReportError::io(dir))?;
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
        let bos_attention: Vec<Value> = (0..=l_max)
            .map(|l| {
                if l == 0 {
                    Value::Null
                } else {
                    let base = if l < m {
                        0.15
                    } else if l <= c {
                        0.85
                    } else {
                        0.45
                    };
                    json!((0..self.n_heads)
                        .map(|h| (base + 0.1 * ((h * 7 + l) % 5) as f64 / 4.0 - 0.05).clamp(0.0, 1.0))
                        .collect::<Vec<_>>())
                }
            })
            .collect();
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
                "bos_attention": bos_attention,
                "head_class_counts": (0..=l_max).map(|l| if l == 0 { Value::Null } else {
                    json!({"sink": if l >= m && l <= c { self.n_heads } else { 0 }, "identity": 0, "previous-token": 0,
                           "mixing": if l < m { self.n_heads } else { 0 }, "other": 0})
                }).collect::<Vec<_>>(),
            },
            "top_activations": top,
            "summary": {
                "massive_layers": [{"block": m, "layer": m, "mlp_ratio": 52.0, "bos_ratio_gain": 40.0}],
                "phases": {
                    "mix": range(0, m - 1),
                    "compress": range(m, c),
                    "refine": if c < l_max { range(c + 1, l_max) } else { Value::Null },
                    "entropy_norm_midpoint": 0.3,
                },
                "corr_bos_entropy": -0.9,
                "corr_bos_sink": 0.6,
                "bound_violations": 0,
                "peak_bos_ratio": {"layer": peak.0, "value": peak.1},
                "min_entropy_norm": {"layer": min_e.0, "value": min_e.1},
            },
        });
        write_json(&dir.join(METRICS_FILE), &metrics_json)?;

        let manifest = json!({
            "schema_version": SCHEMA_VERSION,
            "kind": "profile",
            "tool": {"name": "sinkscope", "version": env!("CARGO_PKG_VERSION"), "command_line": ["synthetic"],
                     "engine": "none: synthetic numbers (sinkscope_report::synthetic), not measured"},
            "model": {"path": self.model_path, "format": "gguf", "sha256": "0".repeat(64), "family": "llama",
                      "config": {"n_layers": l_max, "n_heads": self.n_heads, "d_model": 64},
                      "dtype_mix": {"F32": 10}},
            "tokenizer": {"source": "synthetic", "vocab_size": 1000, "bos_policy": "auto",
                          "bos_token": "<s>", "bos_id": 1, "model_adds_bos": self.bos, "method": "synthetic"},
            "first_token": {"id": first["id"], "token": first["token"], "is_bos": self.bos, "same_for_all_prompts": true},
            "data": {"source": "synthetic", "limit": self.n_prompts},
            "options": {"epsilon": 0.3, "tau": 0.5, "mixing_threshold": 0.7, "top_k": 3},
            "conventions": {
                "layer_index": "l = 0..L, X(0) = embedding output, X(l) = after block l, before the final norm",
                "entropy_norm": "H / ln min(T, d)",
                "std": "sample (n-1)",
            },
            "n_prompts": self.n_prompts,
            "n_tokens": (0..self.n_prompts).map(|p| 20 + 5 * p).sum::<usize>(),
            "timings": {"load_s": 0.0, "run_s": 0.0},
        });
        write_json(&dir.join(MANIFEST_FILE), &manifest)
    }
}
