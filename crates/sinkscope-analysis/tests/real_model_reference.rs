//! The profile's per-prompt metrics for the two real models (SmolLM2-135M-Instruct GGUF Q4_1;
//! Gemma-3 270M GGUF Q4_K_M) against the independent Hugging Face references
//! (tests/fixtures/reference/{smollm2,gemma3}/prompts_a.reference.json, float32 eager
//! attention, metrics in float64):
//!
//! - `bos_norm`, `token_norm_mean`, `bos_ratio`, `entropy`, `entropy_norm`, `anisotropy`
//!   within 1e-3 relative at every layer l = 0..L of every prompt;
//! - `sink_rate` and `sink_rate_excl_q0` exactly (fractions of the heads) at every block;
//! - `bos_attention` (head mean), `bos_attention_excl` (head mean) and the per-head
//!   `bos_attention` within 1e-3 absolute (they are probabilities in [0, 1]);
//! - token ids identical; Theorem-1 bound violations 0.
//!
//! The models come from `sinkscope fetch smollm2|gemma3` (scripts/test.sh runs both first).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sinkscope_analysis::datasets::Example;
use sinkscope_analysis::profile::{profile_example, ProfileOptions};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_path(file: &str, name: &str) -> PathBuf {
    let p = root().join("models").join(file);
    assert!(
        p.exists(),
        "{} is missing: run `cargo run -p sinkscope-cli -- fetch {name}` (scripts/test.sh does) first",
        p.display()
    );
    p
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

fn floats(v: &serde_json::Value) -> Vec<Option<f64>> {
    v.as_array().unwrap().iter().map(|x| x.as_f64()).collect()
}

/// Every listed metric matches the HF reference at every layer of all 8 prompts.
#[test]
fn smollm2_profile_matches_reference() {
    check_profile(&model_path("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2"), "smollm2");
}

/// The same for Gemma-3 270M.
#[test]
fn gemma3_profile_matches_reference() {
    check_profile(&model_path("gemma-3-270m-q4_k_m.gguf", "gemma3"), "gemma3");
}

fn check_profile(path: &std::path::Path, name: &str) {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            root().join(format!("tests/fixtures/reference/{name}/prompts_a.reference.json")),
        )
        .unwrap(),
    )
    .unwrap();
    let (files, model) = sinkscope_model::load(path, &candle_core::Device::Cpu).unwrap();
    let heads = files.config.n_heads as f64;
    let n_layers = files.config.n_layers;
    let opts = ProfileOptions::default();
    let prompts = reference["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 8);
    let mut worst: std::collections::BTreeMap<&str, f64> = Default::default();
    for p in prompts {
        let id = p["id"].as_str().unwrap();
        let ex = Example { id: id.into(), text: p["text"].as_str().unwrap().into(), label: None };
        let rec = profile_example(&model, &files, &ex, &opts).unwrap();
        let want_ids: Vec<u32> =
            p["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(rec.token_ids, want_ids, "{id}: token ids");
        assert_eq!(rec.bound_violations, 0, "{id}: Theorem-1 violations");
        let m = &p["metrics"];
        for name in ["bos_norm", "token_norm_mean", "bos_ratio", "entropy", "entropy_norm", "anisotropy"] {
            let want = floats(&m[name]);
            let got = &rec.metrics[name];
            assert_eq!(got.len(), n_layers + 1, "{id} {name}: L + 1 entries");
            assert_eq!(want.len(), n_layers + 1);
            for l in 0..=n_layers {
                let (g, w) = (got[l].unwrap(), want[l].unwrap());
                let e = rel(g, w);
                let slot = worst.entry(name).or_default();
                *slot = slot.max(e);
                assert!(e < 1e-3, "{id} layer {l}: {name} {g} vs reference {w} (rel {e:e})");
            }
        }
        for (ours, theirs) in [("sink_rate", "sink_rate"), ("sink_rate_excl_q0", "sink_rate_excl_q0")] {
            let want = floats(&m[theirs]);
            let got = &rec.metrics[ours];
            assert_eq!(got[0], None, "{id} {ours}: entry 0 is null");
            assert_eq!(want[0], None);
            for l in 1..=n_layers {
                // Fractions k/H computed the same way: equal up to the last bit of k/H.
                let (g, w) = (got[l].unwrap(), want[l].unwrap());
                assert!((g * heads - w * heads).abs() < 1e-9, "{id} block {l}: {ours} {g} vs reference {w}");
            }
        }
        for (ours, theirs) in [
            ("bos_attention", "bos_attention_head_mean"),
            ("bos_attention_excl", "bos_attention_excl_head_mean"),
        ] {
            let want = floats(&m[theirs]);
            let got = &rec.metrics[ours];
            for l in 1..=n_layers {
                let (g, w) = (got[l].unwrap(), want[l].unwrap());
                assert!((g - w).abs() < 1e-3, "{id} block {l}: {ours} {g} vs reference {w}");
            }
        }
        let per_head = m["bos_attention_per_head"].as_array().unwrap();
        assert!(per_head[0].is_null() && rec.heads.bos_attention[0].is_none());
        for (l, want) in per_head.iter().enumerate().skip(1) {
            let want = floats(want);
            let got = rec.heads.bos_attention[l].as_ref().unwrap();
            assert_eq!(got.len(), want.len());
            for (h, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w.unwrap()).abs() < 1e-3, "{id} block {l} head {h}: bos_attention {g} vs {w:?}");
            }
        }
    }
    eprintln!("worst relative differences: {worst:?}");
}
