//! The numbers behind the paper's Figs. 6 and 7 (multiple choice), on the fixture Llama
//! (HF folder, 3 blocks, 4 query heads sharing 2 kv heads):
//!
//! - the profile's sink-value curves equal an independent computation from the captured
//!   `attn.hook_v` and `attn.hook_pattern` (plain f64 loops, grouped-query mapping written
//!   out), to 1e-12;
//! - the head-class fractions sum to 1 and `head_frac_sink` is `sink_rate`, bit for bit;
//! - a choice's LogitLens log-likelihood (only the choice's rows unembedded) equals the sum
//!   of the full LogitLens per-position NLLs over the same positions, to 1e-9.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sinkscope_analysis::profile::{profile_tokens, ProfileOptions};
use sinkscope_io::tokenizer::BosPolicy;
use sinkscope_model::{ActivationCache, ForwardCtx};
use sinkscope_spec::{HookSite, SiteKind};
use std::path::PathBuf;

fn fixture() -> (sinkscope_io::ModelFiles, sinkscope_model::Model) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama");
    sinkscope_model::load(&root, &candle_core::Device::Cpu).unwrap()
}

fn host(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn sink_values_match_an_independent_computation() {
    let (files, model) = fixture();
    let ids = files
        .tokenizer
        .encode("The quiet river carried small boats past the old mill.", BosPolicy::Always)
        .unwrap()
        .ids;
    let opts = ProfileOptions::default();
    let prof = profile_tokens(&model, "p", &ids, &opts).unwrap();
    let curves: std::collections::BTreeMap<_, _> =
        prof.curves(opts.attention.sink_epsilon).into_iter().collect();

    let cfg = &model.config;
    let (h, kvh, dh, t) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head, ids.len());
    assert!(h > kvh, "the fixture must exercise grouped-query attention");
    let sites: Vec<HookSite> = (0..cfg.n_layers)
        .flat_map(|b| [HookSite::block(b, SiteKind::AttnV), HookSite::block(b, SiteKind::AttnPattern)])
        .collect();
    let mut cache = ActivationCache::new(sites);
    model.forward(&ids, &mut ForwardCtx::new().with(&mut cache)).unwrap();

    for b in 0..cfg.n_layers {
        let v = host(cache.get(HookSite::block(b, SiteKind::AttnV)).unwrap()); // [T, KVH, dh]
        let a = host(cache.get(HookSite::block(b, SiteKind::AttnPattern)).unwrap()); // [H, T, T]
        let (mut norm0, mut ratio, mut share) = (0.0, 0.0, 0.0);
        for head in 0..h {
            let g = head * kvh / h;
            let vn = |j: usize| -> f64 {
                (0..dh).map(|k| f64::from(v[(j * kvh + g) * dh + k]).powi(2)).sum::<f64>().sqrt()
            };
            let a_at = |q: usize, k: usize| f64::from(a[(head * t + q) * t + k]);
            norm0 += vn(0);
            ratio += vn(0) / ((1..t).map(vn).sum::<f64>() / (t - 1) as f64);
            share += (1..t)
                .map(|q| a_at(q, 0) * vn(0) / (0..t).map(|k| a_at(q, k) * vn(k)).sum::<f64>())
                .sum::<f64>()
                / (t - 1) as f64;
        }
        let l = b + 1;
        for (name, want) in [
            ("sink_value_norm", norm0 / h as f64),
            ("sink_value_ratio", ratio / h as f64),
            ("sink_output_share", share / h as f64),
        ] {
            let got = curves[name][l].unwrap();
            assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{name} layer {l}: {got} vs {want}");
        }
        let fracs: f64 = [
            "head_frac_sink",
            "head_frac_identity",
            "head_frac_previous_token",
            "head_frac_mixing",
            "head_frac_other",
        ]
        .iter()
        .map(|n| curves[*n][l].unwrap())
        .sum();
        assert!((fracs - 1.0).abs() < 1e-15, "layer {l}: class fractions sum to {fracs}");
        assert_eq!(curves["head_frac_sink"][l], curves["sink_rate"][l]);
    }
    assert_eq!(curves["sink_output_share"][0], None);
}

#[test]
fn choice_loglik_is_the_lens_nll_over_the_choice() {
    let (files, model) = fixture();
    let ctx = files.tokenizer.encode("Plants need", BosPolicy::Always).unwrap().ids;
    let cont = files.tokenizer.encode(" sunlight and water", BosPolicy::Never).unwrap().ids;
    let mut ids = ctx.clone();
    ids.extend_from_slice(&cont);
    let got = sinkscope_analysis::mc::choice_loglik(&model, "q", &ids, ctx.len()).unwrap();
    let full = sinkscope_analysis::lens::lens_tokens(&model, "q", &ids).unwrap();
    assert_eq!(got.len(), model.config.n_layers + 1);
    for (l, s) in full.layers.iter().enumerate() {
        // per_position[i] scores token i + 1: the choice's tokens are ctx.len()..T.
        let want: f64 = -s.per_position[ctx.len() - 1..].iter().sum::<f64>();
        assert!((got[l] - want).abs() <= 1e-9 * want.abs().max(1.0), "layer {l}: {} vs {want}", got[l]);
    }
    assert!(sinkscope_analysis::mc::choice_loglik(&model, "q", &ids, 0).is_err());
    assert!(sinkscope_analysis::mc::choice_loglik(&model, "q", &ids, ids.len()).is_err());
}
