//! Parity with Hugging Face transformers on the tiny fixture models: every stored hook site and
//! the logits, for the safetensors folders and the GGUF copies (see tests/fixtures/README.md).
//!
//! Tolerances (fixtures README, "Tolerance guidance"): hidden states and per-head tensors
//! `|a − b| ≤ 1e-5 + 1e-5·max|ref|` (BOS rows reach ~250 so the bound scales), attention
//! patterns `≤ 1e-5` absolute, logits `≤ 1e-4` absolute. These are float32 summation-order
//! differences; a convention error shows up as ≳ 1e-3.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sinkscope_model::{ActivationCache, EditHook, ForwardCtx};
use sinkscope_spec::{Edit, HookSite, SiteKind};
use std::collections::BTreeMap;

const FAMILIES: [&str; 4] = ["llama", "qwen2", "gpt_neox", "gpt2"];

fn tolerance(site: HookSite, reference: &[f32]) -> f32 {
    match site.kind {
        SiteKind::AttnPattern => 1e-5,
        SiteKind::Logits => 1e-4,
        _ => 1e-5 + 1e-5 * max_abs(reference),
    }
}

/// Runs prompt `p` of a family's reference through `model` and returns the captured sites.
fn run(
    model: &sinkscope_model::Model,
    tokens: &[u32],
    sites: &[HookSite],
    edits: Vec<Edit>,
) -> BTreeMap<HookSite, Vec<f32>> {
    let mut cache = ActivationCache::new(sites.iter().copied());
    let mut editor = EditHook::new(edits);
    let mut ctx = ForwardCtx::new().with(&mut editor).with(&mut cache);
    model.forward(tokens, &mut ctx).unwrap();
    drop(ctx);
    cache.store.into_iter().map(|(s, t)| (s, t.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect()
}

fn prompt_tokens(reference: &BTreeMap<String, RefTensor>, p: &str) -> Vec<u32> {
    reference[&format!("{p}.tokens")].ints.iter().map(|&i| i as u32).collect()
}

/// Every stored hook site of every prompt of the HF reference, from the safetensors folder.
#[test]
fn safetensors_every_hook_site_matches_hf() {
    for fam in FAMILIES {
        let dir = fixtures().join("models").join(fam);
        let reference = read_reference(&dir.join("reference.safetensors"));
        let (_, model) = load(&dir);
        let mut checked = 0;
        for p in ["p0", "p1", "p2"] {
            let tokens = prompt_tokens(&reference, p);
            let mut wanted = Vec::new();
            for key in reference.keys() {
                let Some(hook) = key.strip_prefix(&format!("{p}.")) else { continue };
                if let Ok(site) = hook.parse::<HookSite>() {
                    wanted.push((site, key.clone()));
                }
            }
            let sites: Vec<HookSite> = wanted.iter().map(|w| w.0).collect();
            let got = run(&model, &tokens, &sites, vec![]);
            for (site, key) in &wanted {
                let r = &reference[key];
                let g = got.get(site).unwrap_or_else(|| panic!("{fam} {key}: site not reached"));
                let diff = max_abs_diff(g, &r.data);
                let tol = tolerance(*site, &r.data);
                assert!(diff <= tol, "{fam} {key}: max |Δ| = {diff:e} > {tol:e}");
                checked += 1;
            }
        }
        eprintln!("{fam}: {checked} sites compared");
        assert!(checked > 40, "{fam}: only {checked} sites compared");
    }
}

/// The `ablate_mlp_bos_l1` intervention reference, reproduced with an edit.
#[test]
fn ablate_mlp_bos_l1_matches_hf() {
    for fam in FAMILIES {
        let dir = fixtures().join("models").join(fam);
        let reference = read_reference(&dir.join("reference.safetensors"));
        let (_, model) = load(&dir);
        let tokens = prompt_tokens(&reference, "p0");
        let edit: Edit = "blocks.1.hook_mlp_out:pos=0:zero".parse().unwrap();
        let mut sites: Vec<HookSite> = (0..3).map(|b| HookSite::block(b, SiteKind::ResidPost)).collect();
        sites.push(HookSite::global(SiteKind::Logits));
        let got = run(&model, &tokens, &sites, vec![edit]);
        for site in sites {
            let key = format!("p0.ablate_mlp_bos_l1.{site}");
            let r = &reference[&key];
            let diff = max_abs_diff(&got[&site], &r.data);
            let tol = tolerance(site, &r.data);
            assert!(diff <= tol, "{fam} {key}: max |Δ| = {diff:e} > {tol:e}");
        }
    }
}

/// GGUF copies: f32 files reproduce the HF reference; quantised files reproduce transformers
/// running on the same dequantised weights (`tf` / `tf_hfcfg` runners).
#[test]
fn gguf_files_match_their_references() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("llama", "llama-f32", None),
        ("llama", "llama-q8_0", Some("tf")),
        ("llama", "llama-q4_0", Some("tf")),
        ("llama", "llama-q4_1", Some("tf")),
        ("qwen2", "qwen2-f32", None),
        ("qwen2", "qwen2-q8_0", Some("tf")),
        ("gpt2", "gpt2-f32", None),
        ("gpt2", "gpt2-q8_0", Some("tf_hfcfg")),
        ("gpt_neox", "gpt_neox-f32", None),
    ];
    for &(fam, stem, runner) in cases {
        let hf_ref = read_reference(&fixtures().join("models").join(fam).join("reference.safetensors"));
        let gguf_dir = fixtures().join("gguf").join(fam);
        let gguf_ref = read_reference(&gguf_dir.join("reference.safetensors"));
        let (_, model) = load(&gguf_dir.join(format!("{stem}.gguf")));
        let tokens = prompt_tokens(&hf_ref, "p0");
        let mut sites: Vec<HookSite> = (0..3).map(|b| HookSite::block(b, SiteKind::ResidPost)).collect();
        sites.push(HookSite::global(SiteKind::Logits));
        let got = run(&model, &tokens, &sites, vec![]);
        for site in sites {
            let r = match runner {
                None => &hf_ref[&format!("p0.{site}")],
                Some(run) => &gguf_ref[&format!("{stem}.{run}.p0.{site}")],
            };
            let diff = max_abs_diff(&got[&site], &r.data);
            let tol = tolerance(site, &r.data);
            eprintln!("{stem} {site}: {diff:e} (tol {tol:e})");
            assert!(diff <= tol, "{stem} {site}: max |Δ| = {diff:e} > {tol:e}");
        }
    }
}
