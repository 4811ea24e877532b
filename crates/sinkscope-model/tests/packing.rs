//! Packing several prompts into one forward pass changes nothing a prompt sees: every hook
//! site and the logits are bit-identical to a pass per prompt (no tolerance: the packed
//! matmul computes each row on its own, attention and hooks run per prompt), also when only
//! some prompts of the pack carry edits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sinkscope_model::{ActivationCache, EditHook, ForwardCtx, Model};
use sinkscope_spec::{Edit, HookSite};
use std::collections::BTreeMap;

type Captured = BTreeMap<HookSite, Vec<f32>>;

fn flatten(cache: ActivationCache, logits: Option<candle_core::Tensor>) -> (Captured, Vec<f32>) {
    let sites = cache
        .store
        .into_iter()
        .map(|(s, t)| (s, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    (sites, logits.unwrap().flatten_all().unwrap().to_vec1().unwrap())
}

fn single(model: &Model, tokens: &[u32], edits: &[Edit]) -> (Captured, Vec<f32>) {
    let mut cache = ActivationCache::new(HookSite::all_for(&model.config));
    let mut editor = EditHook::new(edits.to_vec());
    let mut ctx = ForwardCtx::new().with(&mut editor).with(&mut cache).with_logits();
    let logits = model.forward(tokens, &mut ctx).unwrap();
    drop(ctx);
    flatten(cache, logits)
}

fn packed(model: &Model, prompts: &[Vec<u32>], edits: &[Vec<Edit>]) -> Vec<(Captured, Vec<f32>)> {
    let mut caches: Vec<ActivationCache> =
        prompts.iter().map(|_| ActivationCache::new(HookSite::all_for(&model.config))).collect();
    let mut editors: Vec<EditHook> = edits.iter().map(|e| EditHook::new(e.clone())).collect();
    let mut ctxs: Vec<ForwardCtx> = caches
        .iter_mut()
        .zip(editors.iter_mut())
        .map(|(c, e)| ForwardCtx::new().with(e).with(c).with_logits())
        .collect();
    let refs: Vec<&[u32]> = prompts.iter().map(|p| p.as_slice()).collect();
    let logits = model.forward_packed(&refs, &mut ctxs).unwrap();
    drop(ctxs);
    caches.into_iter().zip(logits).map(|(c, l)| flatten(c, l)).collect()
}

#[test]
fn packed_pass_is_bit_identical_to_one_pass_per_prompt() {
    // Every family: sliding windows (longest prompt 23 > window 8), per-layer RoPE, ALiBi,
    // learned sinks, QK-norm, post-norms and the mixture of experts' routing included.
    for fam in [
        "llama", "qwen2", "gpt_neox", "gpt2", "qwen3", "phi3", "gemma", "gemma2", "gemma3", "olmo2", "bloom",
        "gpt_oss", "mistral",
    ] {
        let (_, model) = load(&fixtures().join("models").join(fam));
        let vocab = model.config.d_vocab as u32;
        // Different lengths, including a one-token prompt and the longest first.
        let prompts: Vec<Vec<u32>> = [23usize, 1, 7, 16, 5]
            .iter()
            .enumerate()
            .map(|(p, &len)| (0..len).map(|i| ((i * 31 + p * 7 + 3) as u32) % vocab).collect())
            .collect();
        // Prompt 2 alone carries edits (a massive-activation style ablation at position 0 and
        // a head edit): they must act on it only.
        let mut edits = vec![Vec::new(); prompts.len()];
        edits[2] = vec![
            "blocks.0.hook_mlp_out:pos=0:scale=0.25".parse::<Edit>().unwrap(),
            "blocks.1.attn.hook_z:head=0:zero".parse::<Edit>().unwrap(),
        ];
        let together = packed(&model, &prompts, &edits);
        for (i, p) in prompts.iter().enumerate() {
            let (sites, logits) = single(&model, p, &edits[i]);
            let (psites, plogits) = &together[i];
            assert_eq!(
                sites.keys().collect::<Vec<_>>(),
                psites.keys().collect::<Vec<_>>(),
                "{fam} prompt {i}"
            );
            for (site, v) in &sites {
                assert!(v == &psites[site], "{fam} prompt {i}: {site} differs when packed");
            }
            assert!(&logits == plogits, "{fam} prompt {i}: logits differ when packed");
        }
        // And the edits did change prompt 2 (the comparison above is not vacuous).
        let (unedited, _) = single(&model, &prompts[2], &[]);
        assert!(unedited != together[2].0, "{fam}: the edits had no effect");
    }
}

#[test]
fn mismatched_contexts_are_an_error() {
    let (_, model) = load(&fixtures().join("models").join("llama"));
    let mut ctxs = vec![ForwardCtx::new()];
    let err = model.forward_packed(&[&[1, 2], &[3]], &mut ctxs).unwrap_err();
    assert!(err.to_string().contains("one context per prompt"), "{err}");
    let err = model.forward_packed(&[&[1, 2], &[]], &mut [ForwardCtx::new(), ForwardCtx::new()]).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}
