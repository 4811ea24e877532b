//! Known answers on the independent SmolLM2 reference
//! (`tests/fixtures/reference/smollm2/prompts_a.reference.json`: Hugging Face transformers,
//! f32, 8 prompts): the lag-0 and lag-1 correlations of the prompt-mean curves, the
//! per-prompt r as mean ± sd, and the phases of the prompt means. The expected numbers were
//! computed from the same JSON with a separate pure-Python script (Pearson r of first
//! differences; `statistics.stdev`), not with this crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use sinkscope_metrics::aggregate::{corr_bos_lagged, mean_curve, summarize};
use sinkscope_metrics::phases::{phases, PhaseCurves, PhaseParams};

fn reference() -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/reference/smollm2/prompts_a.reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn curves(r: &Value, name: &str) -> Vec<Vec<Option<f64>>> {
    r["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metrics"][name].as_array().unwrap().iter().map(Value::as_f64).collect())
        .collect()
}

/// Known answer: Δ log first-token norm vs Δ sink rate of the prompt means is r = 0.0410 at
/// lag 0 and 0.7222 at lag 1 (block l+1's sinks against block l's spike); vs Δ entropy
/// −0.8488 at lag 0 and −0.2491 at lag 1. Tolerance 1e-9 (both sides are f64 Pearson r).
#[test]
fn smollm2_lagged_correlations_of_prompt_means() {
    let r = reference();
    let bos = mean_curve(&curves(&r, "bos_norm")).unwrap();
    let sink = mean_curve(&curves(&r, "sink_rate")).unwrap();
    let ent = mean_curve(&curves(&r, "entropy")).unwrap();
    let cases = [
        (&sink, 0, 0.040_963_211_327_671_695),
        (&sink, 1, 0.722_205_140_109_637_9),
        (&ent, 0, -0.848_840_736_803_560_5),
        (&ent, 1, -0.249_080_567_494_974_06),
    ];
    for (y, lag, want) in cases {
        let got = corr_bos_lagged(&bos, y, lag).unwrap().unwrap();
        assert!((got - want).abs() < 1e-9, "lag {lag}: {got} vs {want}");
    }
}

/// Known answer: per-prompt r (one r per prompt, then mean ± sample sd over the 8 prompts)
/// of Δ log bos_norm vs Δ sink_rate: 0.03996 ± 0.03972 at lag 0, 0.67642 ± 0.04723 at lag 1.
/// Tolerance 1e-9.
#[test]
fn smollm2_per_prompt_r_mean_sd() {
    let r = reference();
    let bos = curves(&r, "bos_norm");
    let sink = curves(&r, "sink_rate");
    for (lag, want_mean, want_sd) in [
        (0, 0.039_957_112_728_016_47, 0.039_718_766_218_026_64),
        (1, 0.676_417_666_600_196_2, 0.047_229_731_188_256_83),
    ] {
        let rs = bos.iter().zip(&sink).map(|(b, s)| corr_bos_lagged(b, s, lag).unwrap());
        let s = summarize(rs).unwrap().unwrap();
        assert_eq!(s.n, 8);
        assert!((s.mean - want_mean).abs() < 1e-9 && (s.std - want_sd).abs() < 1e-9, "lag {lag}: {s:?}");
    }
}

/// Expectation from the curves (module docs of `phases`; the reference has no
/// `mixing_score`, so compression needs sinks and the valley together): the first massive
/// stage (block 2–3, ratio ≈ 9, sinks ≈ 0.8 from layer 4) starts Compress at layer 4; the
/// sink-free gap at layers 10–12 between the two stages stays inside it; Refine is found at
/// layers 29–30 (entropy_norm 0.06 → 0.25 → 0.43, first-token norm 23,000 → 9,000 → 5,300).
#[test]
fn smollm2_phases_of_prompt_means_find_refine() {
    let r = reference();
    let m = |name: &str| mean_curve(&curves(&r, name)).unwrap();
    let (bos_norm, bos_ratio, ent, sink) = (m("bos_norm"), m("bos_ratio"), m("entropy_norm"), m("sink_rate"));
    let none = vec![None; bos_norm.len()];
    let c = PhaseCurves {
        bos_norm: &bos_norm,
        bos_ratio: &bos_ratio,
        entropy_norm: &ent,
        sink_rate: &sink,
        mixing_score: &none,
    };
    let p = phases(&c, &PhaseParams::default()).unwrap().unwrap();
    assert_eq!(p.mix.map(|r| (r.first, r.last)), Some((0, 3)));
    assert_eq!((p.compress.first, p.compress.last), (4, 28));
    assert_eq!(p.refine.map(|r| (r.first, r.last)), Some((29, 30)));
}
