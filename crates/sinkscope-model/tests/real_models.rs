//! The two real models (SmolLM2-135M-Instruct GGUF Q4_1; Gemma-3 270M GGUF Q4_K_M) against the
//! independent Hugging Face references in tests/fixtures/reference/{smollm2,gemma3}: token ids
//! (SmolLM2 adds no BOS, Gemma-3 adds one), `bos_norm` and `token_norm_mean` at every layer
//! l = 0..L (X(0) = hook_embed, X(l) = blocks.{l-1}.hook_resid_post, before the final norm)
//! within 1e-3 relative, and the last position's argmax.
//!
//! The models come from `sinkscope fetch smollm2|gemma3` (scripts/test.sh runs both first).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sinkscope_io::tokenizer::BosPolicy;
use sinkscope_model::{ActivationCache, ForwardCtx};
use sinkscope_spec::{HookSite, SiteKind};

fn model_path(file: &str, name: &str) -> std::path::PathBuf {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models").join(file);
    assert!(
        p.exists(),
        "{} is missing: run `cargo run -p sinkscope-cli -- fetch {name}` (scripts/test.sh does) first",
        p.display()
    );
    p
}

fn row_norms(x: &[f32], d: usize) -> Vec<f64> {
    x.chunks_exact(d).map(|r| r.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt()).collect()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// Token ids, per-layer norms and the final argmax match the HF reference for all 8 prompts.
#[test]
fn smollm2_reference_norms_and_argmax() {
    check_reference(&model_path("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2"), "smollm2", false);
}

/// The same for Gemma-3 270M (sandwich norms, QK-norm, local/global RoPE bases, a BOS).
#[test]
fn gemma3_reference_norms_and_argmax() {
    check_reference(&model_path("gemma-3-270m-q4_k_m.gguf", "gemma3"), "gemma3", true);
}

fn check_reference(path: &std::path::Path, name: &str, bos: bool) {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(format!("reference/{name}/prompts_a.reference.json")))
            .unwrap(),
    )
    .unwrap();
    let (files, model) = load(path);
    let n_layers = files.config.n_layers;
    assert_eq!(reference["n_layers"].as_u64().unwrap() as usize, n_layers);
    let d = files.config.d_model;
    let mut sites = vec![HookSite::global(SiteKind::Embed)];
    sites.extend((0..n_layers).map(|b| HookSite::block(b, SiteKind::ResidPost)));
    let prompts = reference["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 8);
    let mut worst = 0.0f64;
    for p in prompts {
        let id = p["id"].as_str().unwrap();
        let enc = files.tokenizer.encode(p["text"].as_str().unwrap(), BosPolicy::Auto).unwrap();
        let want: Vec<u32> =
            p["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(enc.ids, want, "{id}: token ids");
        assert_eq!(enc.bos_prepended, bos, "{name}: BOS added by its GGUF's default");
        let mut cache = ActivationCache::new(sites.iter().copied());
        let mut ctx = ForwardCtx::new().with(&mut cache).with_logits();
        let logits = model.forward(&enc.ids, &mut ctx).unwrap().unwrap();
        drop(ctx);
        for (l, site) in sites.iter().enumerate() {
            assert_eq!(site.metric_layer(), Some(l));
            let x: Vec<f32> = cache.get(*site).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let norms = row_norms(&x, d);
            let bos = norms[0];
            let others = norms[1..].iter().sum::<f64>() / (norms.len() - 1) as f64;
            let rb = p["metrics"]["bos_norm"][l].as_f64().unwrap();
            let rt = p["metrics"]["token_norm_mean"][l].as_f64().unwrap();
            worst = worst.max(rel(bos, rb)).max(rel(others, rt));
            assert!(rel(bos, rb) < 1e-3, "{id} layer {l}: bos_norm {bos} vs {rb}");
            assert!(rel(others, rt) < 1e-3, "{id} layer {l}: token_norm_mean {others} vs {rt}");
        }
        let t = enc.ids.len();
        let last: Vec<f32> = logits.get(t - 1).unwrap().to_vec1().unwrap();
        let argmax =
            last.iter().enumerate().fold((0, f32::MIN), |m, (i, &v)| if v > m.1 { (i, v) } else { m }).0;
        assert_eq!(
            argmax as u64,
            p["final"]["last_position_argmax"].as_u64().unwrap(),
            "{id}: last-position argmax"
        );
    }
    eprintln!("worst relative difference over all prompts and layers: {worst:e}");
}
