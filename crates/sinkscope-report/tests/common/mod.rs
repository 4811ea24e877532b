//! Shared test helpers: a hand-written run folder in the format of docs/results-schema.md
//! (independent of the crate's own serialisation), an XML well-formedness check and a PNG
//! decoder.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// A fresh, empty folder under the target dir's test tmp.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sinkscope-report").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// L = 6 blocks, 3 heads, 2 prompts: a valley at layers 2..4 (massive activation written by
/// block 2), attention metrics null at layer 0, an unknown field here and there.
pub const L: usize = 6;
pub const H: usize = 3;

pub fn metrics_json() -> Value {
    json!({
        "schema_version": 1,
        "n_layers": 6,
        "n_heads": 3,
        "n_prompts": 2,
        "written_by_a_future_version": {"ignored": true},
        "metrics": {
            "bos_norm": {"mean": [3.0, 4.0, 400.0, 420.0, 430.0, 60.0, 20.0],
                         "std":  [0.1, 0.2, 10.0, 12.0, 11.0, 5.0, 2.0],
                         "min":  [2.9, 3.8, 390.0, 408.0, 419.0, 55.0, 18.0],
                         "max":  [3.1, 4.2, 410.0, 432.0, 441.0, 65.0, 22.0]},
            "token_norm_mean": {"mean": [2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0], "std": [0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.3],
                                "min": [2.4, 2.9, 3.4, 3.8, 4.3, 4.8, 5.7], "max": [2.6, 3.1, 3.6, 4.2, 4.7, 5.2, 6.3]},
            "bos_ratio": {"mean": [1.2, 1.33, 114.0, 105.0, 95.5, 12.0, 3.3], "std": [0.0, 0.1, 5.0, 4.0, 3.0, 1.0, 0.5],
                          "min": [1.2, 1.2, 109.0, 101.0, 92.5, 11.0, 2.8], "max": [1.2, 1.4, 119.0, 109.0, 98.5, 13.0, 3.8]},
            "entropy": {"mean": [1.9, 1.7, 0.05, 0.04, 0.06, 0.9, 1.5], "std": [0.1, 0.1, 0.01, 0.01, 0.01, 0.1, 0.1],
                        "min": [1.8, 1.6, 0.04, 0.03, 0.05, 0.8, 1.4], "max": [2.0, 1.8, 0.06, 0.05, 0.07, 1.0, 1.6]},
            "entropy_norm": {"mean": [0.6, 0.55, 0.016, 0.013, 0.019, 0.29, 0.48], "std": [0.03, 0.03, 0.003, 0.003, 0.003, 0.03, 0.03],
                             "min": [0.57, 0.52, 0.013, 0.01, 0.016, 0.26, 0.45], "max": [0.63, 0.58, 0.019, 0.016, 0.022, 0.32, 0.51]},
            "anisotropy": {"mean": [0.2, 0.25, 0.99, 0.99, 0.985, 0.6, 0.4], "std": [0.02, 0.02, 0.001, 0.001, 0.002, 0.05, 0.04],
                           "min": [0.18, 0.23, 0.989, 0.989, 0.983, 0.55, 0.36], "max": [0.22, 0.27, 0.991, 0.991, 0.987, 0.65, 0.44]},
            "anisotropy_bound": {"mean": [0.15, 0.2, 0.985, 0.985, 0.98, 0.55, 0.3], "std": [0.02, 0.02, 0.001, 0.001, 0.002, 0.05, 0.04],
                                 "min": [0.13, 0.18, 0.984, 0.984, 0.978, 0.5, 0.26], "max": [0.17, 0.22, 0.986, 0.986, 0.982, 0.6, 0.34]},
            "sigma1_sq": {"mean": [40.0, 60.0, 160500.0, 176900.0, 185400.0, 3700.0, 450.0], "std": [2.0, 3.0, 8000.0, 9000.0, 9000.0, 300.0, 40.0],
                          "min": [38.0, 57.0, 152500.0, 167900.0, 176400.0, 3400.0, 410.0], "max": [42.0, 63.0, 168500.0, 185900.0, 194400.0, 4000.0, 490.0]},
            "sigma1_sq_bound": {"mean": [30.0, 50.0, 160200.0, 176600.0, 185100.0, 3650.0, 420.0], "std": [2.0, 3.0, 8000.0, 9000.0, 9000.0, 300.0, 40.0],
                                "min": [28.0, 47.0, 152200.0, 167600.0, 176100.0, 3350.0, 380.0], "max": [32.0, 53.0, 168200.0, 185600.0, 194100.0, 3950.0, 460.0]},
            "entropy_bound": {"mean": [2.2, 2.0, 0.09, 0.08, 0.1, 1.2, 1.9], "std": [0.1, 0.1, 0.01, 0.01, 0.01, 0.1, 0.1],
                              "min": [2.1, 1.9, 0.08, 0.07, 0.09, 1.1, 1.8], "max": [2.3, 2.1, 0.1, 0.09, 0.11, 1.3, 2.0]},
            "massive": {"mean": [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0], "std": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                        "min": [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0], "max": [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]},
            "sink_rate": {"mean": [null, 0.0, 0.667, 1.0, 1.0, 0.333, 0.333], "std": [null, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                          "min": [null, 0.0, 0.667, 1.0, 1.0, 0.333, 0.333], "max": [null, 0.0, 0.667, 1.0, 1.0, 0.333, 0.333]},
            "mixing_score": {"mean": [null, 0.85, 0.3, 0.2, 0.2, 0.5, 0.6], "std": [null, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02],
                             "min": [null, 0.83, 0.28, 0.18, 0.18, 0.48, 0.58], "max": [null, 0.87, 0.32, 0.22, 0.22, 0.52, 0.62]},
            "custom_extra_metric": {"mean": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], "std": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                                    "min": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], "max": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]}
        },
        "heads": {
            "bos_attention": [null, [0.1, 0.2, 0.05], [0.9, 0.2, 0.8], [0.95, 0.97, 0.9], [0.99, 0.9, 0.92], [0.5, 0.1, 0.2], [0.4, 0.2, 0.1]],
            "head_class_counts": [null,
                {"sink": 0, "identity": 0, "previous-token": 1, "mixing": 2, "other": 0},
                {"sink": 2, "identity": 0, "previous-token": 0, "mixing": 1, "other": 0},
                {"sink": 3, "identity": 0, "previous-token": 0, "mixing": 0, "other": 0},
                {"sink": 3, "identity": 0, "previous-token": 0, "mixing": 0, "other": 0},
                {"sink": 1, "identity": 1, "previous-token": 0, "mixing": 1, "other": 0},
                {"sink": 1, "identity": 1, "previous-token": 1, "mixing": 0, "other": 0}]
        },
        "top_activations": [
            [{"dim": 3, "token": 1, "value": 1.5, "n_prompts": 2}, {"dim": 7, "token": 0, "value": -1.1, "n_prompts": 1}],
            [{"dim": 3, "token": 1, "value": 2.0, "n_prompts": 2}],
            [{"dim": 17, "token": 0, "value": 380.0, "n_prompts": 2}, {"dim": 42, "token": 0, "value": -120.0, "n_prompts": 2}],
            [{"dim": 17, "token": 0, "value": 400.0, "n_prompts": 2}, {"dim": 42, "token": 0, "value": -125.0, "n_prompts": 2}],
            [{"dim": 17, "token": 0, "value": 410.0, "n_prompts": 2}],
            [{"dim": 17, "token": 0, "value": 50.0, "n_prompts": 2}],
            [{"dim": 9, "token": 4, "value": 12.0, "n_prompts": 1}]
        ],
        "summary": {
            "massive_layers": [{"block": 2, "layer": 2, "mlp_ratio": 52.0, "bos_ratio_gain": 85.7}],
            "phases": {"mix": {"first": 0, "last": 1, "first_depth": 0.0, "last_depth": 0.1667},
                       "compress": {"first": 2, "last": 4, "first_depth": 0.3333, "last_depth": 0.6667},
                       "refine": {"first": 5, "last": 6, "first_depth": 0.8333, "last_depth": 1.0},
                       "entropy_norm_midpoint": 0.3065},
            "corr_bos_entropy": -0.93,
            "corr_bos_sink": 0.55,
            "bound_violations": 0,
            "peak_bos_ratio": {"layer": 2, "value": 114.0},
            "min_entropy_norm": {"layer": 3, "value": 0.013}
        }
    })
}

pub fn manifest_json() -> Value {
    json!({
        "schema_version": 1,
        "kind": "profile",
        "tool": {"name": "sinkscope", "version": "0.1.0", "command_line": ["sinkscope", "profile", "m.gguf"], "engine": "test"},
        "model": {"path": "models/Tiny-Valley-6L.Q8_0.gguf", "format": "gguf", "sha256": "ab12", "family": "llama",
                  "config": {"d_model": 32, "n_layers": 6, "n_heads": 3}, "dtype_mix": {"Q8_0": 20, "F32": 13}},
        "tokenizer": {"source": "gguf", "vocab_size": 100, "bos_policy": "auto", "bos_token": "<|endoftext|>", "bos_id": 0,
                      "model_adds_bos": false, "method": "encode"},
        "first_token": {"id": 49, "token": "A", "is_bos": false, "same_for_all_prompts": true},
        "data": {"source": "file", "path": "prompts.jsonl", "limit": null, "max_tokens": null, "truncate": false},
        "options": {"epsilon": 0.3, "tau": 0.5, "mixing_threshold": 0.7, "top_k": 2},
        "conventions": {"layer_index": "l = 0..L; X(0) = embeddings", "entropy_norm": "H / ln min(T, d)", "std": "sample (n-1)"},
        "n_prompts": 2,
        "n_tokens": 17,
        "timings": {"load_s": 0.1, "run_s": 0.2, "tokens_per_s": 85.0, "peak_rss_mib": 12.0},
        "something_new": [1, 2, 3]
    })
}

pub fn prompt_lines() -> Vec<Value> {
    (0..2)
        .map(|p| {
            let s = p as f64 * 0.1;
            json!({
                "id": format!("p{p}"),
                "n_tokens": 8 + p,
                "token_ids": (0..8 + p).map(|i| if i == 0 { 49 } else { 50 + i }).collect::<Vec<_>>(),
                "first_token": {"id": 49, "token": "A", "is_bos": false},
                "metrics": {
                    "bos_norm": [3.0 + s, 4.0, 400.0, 420.0, 430.0, 60.0, 20.0],
                    "bos_ratio": [1.2, 1.3 + s, 110.0 + 10.0 * s, 105.0, 95.0, 12.0, 3.0],
                    "entropy_norm": [0.6, 0.55, 0.016, 0.013 + s / 100.0, 0.02, 0.3, 0.5],
                    "sink_rate": [null, 0.0, 0.667, 1.0, 1.0, 0.333, 0.333]
                }
            })
        })
        .collect()
}

/// Writes the hand-written run folder into `dir`.
pub fn write_fixture(dir: &Path) {
    write_run(dir, &manifest_json(), &metrics_json(), &prompt_lines());
}

pub fn write_run(dir: &Path, manifest: &Value, metrics: &Value, prompts: &[Value]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("manifest.json"), serde_json::to_string_pretty(manifest).unwrap()).unwrap();
    std::fs::write(dir.join("metrics.json"), serde_json::to_string_pretty(metrics).unwrap()).unwrap();
    let lines: String = prompts.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(dir.join("prompts.jsonl"), lines).unwrap();
}

/// Checks that `text` is well-formed XML as far as tags go: every start tag is closed in
/// order, attributes are quoted, no stray `<` or unescaped `&` in text. Returns the root
/// element's name.
pub fn check_xml(text: &str) -> Result<String, String> {
    let mut stack: Vec<String> = Vec::new();
    let mut root = None;
    let mut rest = text;
    while let Some(i) = rest.find(['<', '&']) {
        let (before, from) = rest.split_at(i);
        let _ = before;
        if from.starts_with('&') {
            let end = from.find(';').ok_or("unterminated entity")?;
            let ent = &from[1..end];
            let ok = matches!(ent, "amp" | "lt" | "gt" | "quot" | "apos") || ent.starts_with('#');
            if !ok || end > 10 {
                return Err(format!("bad entity &{ent};"));
            }
            rest = &from[end + 1..];
            continue;
        }
        if from.starts_with("<?") {
            rest = &from[from.find("?>").ok_or("unterminated <?")? + 2..];
            continue;
        }
        if from.starts_with("<!--") {
            rest = &from[from.find("-->").ok_or("unterminated comment")? + 3..];
            continue;
        }
        if from.starts_with("<!") {
            rest = &from[from.find('>').ok_or("unterminated <!")? + 1..];
            continue;
        }
        // Find the tag end, respecting quoted attribute values.
        let mut in_quote: Option<char> = None;
        let mut end = None;
        for (j, c) in from.char_indices().skip(1) {
            match (in_quote, c) {
                (Some(q), c) if c == q => in_quote = None,
                (None, '"' | '\'') => in_quote = Some(c),
                (None, '<') => return Err(format!("'<' inside tag near {:?}", &from[..j.min(60)])),
                (None, '>') => {
                    end = Some(j);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or("unterminated tag")?;
        let tag = &from[1..end];
        if let Some(name) = tag.strip_prefix('/') {
            let name = name.trim();
            match stack.pop() {
                Some(open) if open == name => {}
                other => return Err(format!("closing </{name}> but open is {other:?}")),
            }
        } else {
            let self_closing = tag.ends_with('/');
            let name: String = tag.trim_end_matches('/').split_whitespace().next().unwrap_or("").to_string();
            if name.is_empty() {
                return Err("empty tag name".into());
            }
            if root.is_none() {
                root = Some(name.clone());
            } else if stack.is_empty() {
                return Err(format!("second root element <{name}>"));
            }
            if !self_closing {
                stack.push(name);
            }
        }
        rest = &from[end + 1..];
    }
    if !stack.is_empty() {
        return Err(format!("unclosed elements {stack:?}"));
    }
    root.ok_or_else(|| "no element".into())
}

/// Decodes a PNG: (width, height, number of distinct RGB colours).
pub fn decode_png(path: &Path) -> (u32, u32, usize) {
    let file = std::fs::File::open(path).unwrap();
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    for px in bytes.chunks(channels) {
        colours.insert((px[0], px.get(1).copied().unwrap_or(px[0]), px.get(2).copied().unwrap_or(px[0])));
    }
    (info.width, info.height, colours.len())
}

/// Minimal CSV reader for files without quoted fields.
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    let rows = lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
    (header, rows)
}

/// True when the HTML would fetch anything from outside the file: an http(s) or
/// protocol-relative URL in src/href/url()/@import, a script, or any http(s):// at all.
pub fn external_references(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut found = Vec::new();
    for needle in [
        "http://",
        "https://",
        "src=\"//",
        "href=\"//",
        "url(",
        "@import",
        "<script",
        "<link",
        "<iframe",
        "<img",
    ] {
        if lower.contains(needle) {
            found.push(needle.to_string());
        }
    }
    found
}

// ---------------------------------------------------------------------------------------
// Hand-written lens, probe and ablate folders (docs/results-schema.md), L = 6, the same
// model as the profile fixture above (sha256 "ab12").
// ---------------------------------------------------------------------------------------

pub fn lens_manifest() -> Value {
    let mut m = manifest_json();
    m["kind"] = json!("lens");
    m["tool"]["command_line"] = json!(["sinkscope", "lens", "m.gguf"]);
    m
}

pub fn lens_metrics() -> Value {
    json!({
        "schema_version": 1, "kind": "lens", "n_layers": 6, "n_prompts": 2,
        "metrics": {
            "logit_lens_nll": {"mean": [9.0, 8.8, 8.0, 7.0, 5.5, 3.5, 2.5], "std": [0.2, 0.2, 0.3, 0.3, 0.2, 0.1, 0.1],
                               "min": [8.8, 8.6, 7.7, 6.7, 5.3, 3.4, 2.4], "max": [9.2, 9.0, 8.3, 7.3, 5.7, 3.6, 2.6]},
            "logit_lens_ppl": {"mean": [8100.0, 6600.0, 3000.0, 1100.0, 245.0, 33.0, 12.2], "std": [1600.0, 1300.0, 900.0, 330.0, 49.0, 3.3, 1.2],
                               "min": [6600.0, 5400.0, 2200.0, 810.0, 200.0, 30.0, 11.0], "max": [9800.0, 8100.0, 4000.0, 1500.0, 300.0, 37.0, 13.5]},
            "logit_lens_top1": {"mean": [0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.45], "std": [0.005, 0.01, 0.02, 0.02, 0.03, 0.03, 0.02],
                                "min": [0.005, 0.01, 0.03, 0.08, 0.17, 0.32, 0.43], "max": [0.015, 0.03, 0.07, 0.12, 0.23, 0.38, 0.47]}
        },
        "summary": {"n_predicted_tokens": 15,
                    "token_weighted_nll": [9.1, 8.9, 8.1, 7.1, 5.6, 3.6, 2.5],
                    "token_weighted_ppl": [8955.0, 7332.0, 3294.0, 1212.0, 270.4, 36.6, 12.18],
                    "token_weighted_top1": [0.0, 0.0667, 0.0667, 0.1333, 0.2, 0.3333, 0.4667],
                    "model_nll": 2.5, "model_ppl": 12.18, "lens_at_L_minus_model_nll": 0.0, "best_layer": 6,
                    "something_new": true}
    })
}

pub fn lens_prompts() -> Vec<Value> {
    (0..2)
        .map(|p| {
            let s = if p == 0 { -0.2 } else { 0.2 };
            let nll: Vec<f64> = [9.0, 8.8, 8.0, 7.0, 5.5, 3.5, 2.5].iter().map(|x| x + s).collect();
            json!({"id": format!("w{p}"), "n_tokens": 8 + p, "token_ids": (0..8 + p).collect::<Vec<_>>(),
                   "first_token": {"id": 0, "token": "The", "is_bos": false},
                   "metrics": {"logit_lens_nll": nll, "logit_lens_ppl": nll.iter().map(|x: &f64| x.exp()).collect::<Vec<_>>(),
                               "logit_lens_top1": [0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.45]},
                   "model_nll": 2.5 + s})
        })
        .collect()
}

pub fn write_lens(dir: &Path) {
    write_run(dir, &lens_manifest(), &lens_metrics(), &lens_prompts());
}

pub fn probe_manifest() -> Value {
    let mut m = manifest_json();
    m["kind"] = json!("probe");
    m["options"] = json!({"pool": "mean", "folds": 5, "seed": 42, "c": 1.0, "solver": "newton"});
    m
}

pub const PROBE_ACC: [f64; 7] = [0.6, 0.7, 0.78, 0.81, 0.79, 0.72, 0.68];

pub fn probe_metrics() -> Value {
    let per_layer: Vec<Value> = (0..7)
        .map(|l| {
            json!({"layer": l, "accuracy": PROBE_ACC[l], "accuracy_std": 0.02, "pooled_accuracy": PROBE_ACC[l] - 0.005,
                   "baseline_accuracy": 0.55, "converged": l != 5, "max_iterations": if l == 5 { 100 } else { 7 },
                   "max_grad_norm": if l == 5 { 2e-3 } else { 1e-12 }})
        })
        .collect();
    json!({
        "schema_version": 1, "kind": "probe", "n_layers": 6, "n_samples": 40, "n_classes": 2,
        "metrics": {"probe_accuracy": {"mean": PROBE_ACC, "std": vec![0.02; 7],
                                       "min": PROBE_ACC.iter().map(|a| a - 0.03).collect::<Vec<_>>(),
                                       "max": PROBE_ACC.iter().map(|a| a + 0.03).collect::<Vec<_>>()}},
        "summary": {"baseline_accuracy": 0.55, "best_layer": 3, "best_accuracy": 0.81, "pool": "mean", "folds": 5,
                    "seed": 42, "c": 1.0, "solver": "damped Newton", "all_converged": false, "per_layer": per_layer}
    })
}

pub fn probe_prompts() -> Vec<Value> {
    (0..40).map(|i| json!({"id": format!("s{i}"), "n_tokens": 5 + i % 4, "label": i % 20 < 11})).collect()
}

pub fn write_probe(dir: &Path) {
    write_run(dir, &probe_manifest(), &probe_metrics(), &probe_prompts());
}

/// A hand-written ablate folder on the L = 6 profile fixture: `baseline/` is the fixture,
/// `scale_0/` the fixture with the valley filled in, `scale_0.5/` half way; `ablate.json`
/// names no runs (default folder names) and no valley (the baseline's compress phase,
/// layers 2–4) and leaves `nll` and some quantities out (recomputed from the sub-runs).
pub fn write_ablate(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut base = metrics_json();
    base["summary"]["nll"] = json!(2.5);
    write_run(&dir.join("baseline"), &manifest_json(), &base, &prompt_lines());
    for (folder, f, nll) in [("scale_0", 1.0, 3.1), ("scale_0.5", 0.5, 2.7)] {
        let mut m = metrics_json();
        for l in 2..=4 {
            let e = m["metrics"]["entropy_norm"]["mean"][l].as_f64().unwrap();
            m["metrics"]["entropy_norm"]["mean"][l] = json!(e + f * (0.5 - e));
            let s = m["metrics"]["sink_rate"]["mean"][l].as_f64().unwrap();
            m["metrics"]["sink_rate"]["mean"][l] = json!(s * (1.0 - 0.8 * f));
        }
        m["summary"]["phases"] = Value::Null;
        m["summary"]["nll"] = json!(nll);
        m["summary"]["peak_bos_ratio"] = json!({"layer": 2, "value": 114.0 * (1.0 - 0.95 * f)});
        // Sub-runs without a manifest.
        std::fs::create_dir_all(dir.join(folder)).unwrap();
        std::fs::write(dir.join(folder).join("metrics.json"), m.to_string()).unwrap();
    }
    let ablate = json!({
        "schema_version": 1, "kind": "ablate", "component": "mlp", "blocks": [2],
        "evidence": [{"block": 2, "mlp_ratio": 52.0, "bos_ratio_gain": 85.7}],
        "scales": [1.0, 0.5, 0.0],
        "dose_response": [
            {"scale": 0.0, "valley_min_entropy_norm": null, "max_bos_ratio": 5.7},
            {"scale": 1.0, "valley_min_entropy_norm": 0.013, "max_bos_ratio": 114.0, "valley_mean_sink_rate": 0.889},
            {"scale": 0.5}
        ],
        "future_field": 1
    });
    std::fs::write(dir.join("ablate.json"), serde_json::to_string_pretty(&ablate).unwrap()).unwrap();
}

/// A test whose tool is missing: under `CI=true` (where `scripts/test.sh` installs every tool
/// the tests need) that is a failure, elsewhere the test is skipped, loudly.
pub fn missing_tool(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {what}: scripts/test.sh should have installed it");
    }
    eprintln!("SKIPPED: {what}");
}
