//! The paper's causal claim on the demo model: with the auto-detected massive-activation
//! block(s) ablated (λ = 0, MLP output at position 0 zeroed), the compression valley
//! disappears — the minimum entropy_norm over the baseline's valley rises at least 10x — and
//! the valley's mean sink rate falls. Also: λ = 1 edits change nothing, and mean-ablation of
//! the massive dimensions runs and reports them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use sinkscope_analysis::ablate::{run_ablate, scale_edits, AblateOptions, Component};
use sinkscope_analysis::datasets::Example;
use sinkscope_analysis::profile::{DataSource, ManifestHeader, NoProgress, ProfileOptions, Progress};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn smollm2_ablation_removes_the_valley() {
    let model_path = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model_path.exists(),
        "{} missing: run scripts/test.sh (it fetches the demo model)",
        model_path.display()
    );
    let (files, model) = sinkscope_model::load(&model_path, &candle_core::Device::Cpu).unwrap();
    let prompts_path = root().join("data/prompts/smollm2_reference_a.jsonl");
    let examples: Vec<Example> =
        sinkscope_io::prompts::read_prompts(&prompts_path).unwrap().into_iter().map(Example::from).collect();
    let out = std::env::temp_dir().join(format!("sinkscope-ablate-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let opts = AblateOptions {
        profile: ProfileOptions::default(),
        blocks: None,
        scales: vec![0.0],
        component: Component::Mlp,
        one_by_one: false,
        mean_ablate: true,
    };
    let header = ManifestHeader {
        tool: json!({}),
        model: json!({}),
        tokenizer: json!({}),
        load_s: 0.0,
        extra: Default::default(),
    };
    let mut progress = |_: &str| -> Box<dyn Progress> { Box::new(NoProgress) };
    let s = run_ablate(
        &model,
        &files,
        &opts,
        &header,
        &examples,
        &DataSource::File(prompts_path.into()),
        None,
        &out,
        &mut progress,
    )
    .unwrap();
    let d = &s.document;
    eprintln!("{}", serde_json::to_string_pretty(d).unwrap());
    let blocks: Vec<u64> = d["blocks"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap()).collect();
    assert!(blocks.contains(&12), "SmolLM2's massive activation is written by block 12: {blocks:?}");
    let dose = d["dose_response"].as_array().unwrap();
    let base: &Value = &dose[0]["summary"];
    let ablated: &Value = &dose[1]["summary"];
    assert_eq!(dose[1]["scale"].as_f64(), Some(0.0));
    let (e0, e1) = (
        base["valley_min_entropy_norm"].as_f64().unwrap(),
        ablated["valley_min_entropy_norm"].as_f64().unwrap(),
    );
    assert!(e1 >= 10.0 * e0, "valley entropy_norm {e0} -> {e1}: not a 10x rise");
    let (s0, s1) =
        (base["valley_mean_sink_rate"].as_f64().unwrap(), ablated["valley_mean_sink_rate"].as_f64().unwrap());
    assert!(s1 < s0, "valley sink rate {s0} -> {s1} did not fall");
    assert!(base["nll"].as_f64().unwrap().is_finite() && ablated["nll"].as_f64().unwrap().is_finite());
    assert_eq!(base["bound_violations"].as_u64(), Some(0));
    let dims = d["mean_ablate"]["dims"].as_array().unwrap();
    assert!(!dims.is_empty(), "mean-ablation found no massive dimension");
    assert!(d["mean_ablate"]["summary"]["nll"].as_f64().is_some());
    let _ = std::fs::remove_dir_all(&out);
}

/// λ = 1 edits are the identity: the edit list scales by exactly 1.
#[test]
fn scale_one_is_identity_and_zero_is_exact() {
    let e = scale_edits(&[3], Component::Mlp, 0.0);
    assert_eq!(e[0].site.to_string(), "blocks.2.hook_mlp_out");
    assert_eq!(e[0].op, sinkscope_spec::EditOp::Zero);
    let e = scale_edits(&[1, 2], Component::Attn, 0.5);
    assert_eq!(e.len(), 2);
    assert_eq!(e[1].site.to_string(), "blocks.1.hook_attn_out");
}
