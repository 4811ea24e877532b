//! LogitLens and probe runs.
//!
//! - SmolLM2 and Gemma-3 270M (the real models, fetched by scripts/test.sh) on the 8 reference prompts:
//!   `logit_lens_nll` at every layer within 1e-3 relative of the independent Hugging Face
//!   reference, and the lens at L (which the run reports as the model's own statistics)
//!   bit for bit those of the logits an ordinary forward pass returns (the same products:
//!   the lens at L *is* the LM head).
//! - A probe run on the tiny llama fixture with a synthetic labelled set: the output has one
//!   accuracy per layer, accuracies are fractions, the baseline is the majority share, and
//!   convergence is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use sinkscope_analysis::datasets::Example;
use sinkscope_analysis::lens::lens_tokens;
use sinkscope_analysis::probe::{run_probe, ProbeOptions};
use sinkscope_analysis::profile::{DataSource, ManifestHeader, NoProgress, ProfileInput, ProfileOptions};
use sinkscope_io::tokenizer::BosPolicy;
use sinkscope_metrics::lens::next_token_nll;
use sinkscope_metrics::probe::{Pool, ProbeParams};
use sinkscope_metrics::Matrix;
use sinkscope_model::ForwardCtx;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// LogitLens NLL of SmolLM2 matches the reference at every layer of every prompt.
#[test]
fn smollm2_logit_lens_matches_reference() {
    check_lens("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2", 8);
}

/// The same for Gemma-3 270M, on its first 4 prompts (a vocabulary of 262,144 makes every
/// layer's unembedding 8x SmolLM2's; the 8-prompt run took 110 s in a release build).
#[test]
fn gemma3_logit_lens_matches_reference() {
    check_lens("gemma-3-270m-q4_k_m.gguf", "gemma3", 4);
}

fn check_lens(file: &str, name: &str, n_prompts: usize) {
    let model_path = root().join("models").join(file);
    assert!(
        model_path.exists(),
        "{} missing: run scripts/test.sh (it fetches the real models)",
        model_path.display()
    );
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(
            root().join(format!("tests/fixtures/reference/{name}/prompts_a.reference.json")),
        )
        .unwrap(),
    )
    .unwrap();
    let (files, model) = sinkscope_model::load(&model_path, &candle_core::Device::Cpu).unwrap();
    for p in reference["prompts"].as_array().unwrap().iter().take(n_prompts) {
        let id = p["id"].as_str().unwrap();
        let ids = files.tokenizer.encode(p["text"].as_str().unwrap(), BosPolicy::Auto).unwrap().ids;
        let lens = lens_tokens(&model, id, &ids).unwrap();
        let want = p["metrics"]["logit_lens_nll"].as_array().unwrap();
        assert_eq!(want.len(), lens.layers.len());
        for (l, (got, want)) in lens.layers.iter().zip(want).enumerate() {
            let (g, w) = (got.nll.unwrap(), want.as_f64().unwrap());
            assert!((g - w).abs() <= 1e-3 * w.abs(), "{id} layer {l}: logit_lens_nll {g} vs reference {w}");
        }
        let last = lens.layers.last().unwrap();
        assert_eq!(&lens.model, last);
        let logits = model.forward(&ids, &mut ForwardCtx::new().with_logits()).unwrap().unwrap();
        let (t, v) = logits.dims2().unwrap();
        let data: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        let forward = next_token_nll(&Matrix::new(&data, t, v).unwrap(), &ids, None).unwrap();
        assert_eq!(
            forward.nll_sum.to_bits(),
            last.nll_sum.to_bits(),
            "{id}: lens at L vs the forward's logits"
        );
        assert_eq!((forward.n_tokens, forward.n_correct), (last.n_tokens, last.n_correct), "{id}");
        let own = lens.model.nll.unwrap();
        let ref_final = p["final"]["nll_mean"].as_f64().unwrap();
        assert!(
            (own - ref_final).abs() <= 1e-3 * ref_final,
            "{id}: model NLL {own} vs reference {ref_final}"
        );
    }
}

/// A probe run writes one cross-validated accuracy per layer with its baseline and
/// convergence, and separates a trivially separable labelled set at some layer.
#[test]
fn probe_run_on_fixture_model() {
    let model_path = root().join("tests/fixtures/models/llama");
    let (files, model) = sinkscope_model::load(&model_path, &candle_core::Device::Cpu).unwrap();
    let words_pos = ["river", "boats", "quiet", "mill", "small"];
    let words_neg = ["def", "return", "sum", "add", "1234"];
    let mut examples = Vec::new();
    for i in 0..40 {
        let pos = i % 2 == 0;
        let w = if pos { words_pos[i % 5] } else { words_neg[i % 5] };
        let text = format!("{w} {w} {w} the {w}");
        examples.push(Example { id: format!("s{i}"), text, label: Some(pos) });
    }
    let out = std::env::temp_dir().join(format!("sinkscope-probe-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let opts = ProbeOptions {
        prompt: ProfileOptions::default(),
        pool: Pool::Mean,
        params: ProbeParams { folds: 4, ..ProbeParams::default() },
        keep_features: false,
    };
    let header = ManifestHeader {
        tool: json!({"name": "test"}),
        model: json!({}),
        tokenizer: json!({}),
        load_s: 0.0,
        extra: Default::default(),
    };
    let mut iter = examples.into_iter();
    let input = ProfileInput {
        source: DataSource::File(PathBuf::from("synthetic").into()),
        limit: None,
        prompts: &mut iter,
        total: Some(40),
        workers: 1,
        pack_tokens: 0,
    };
    let s = run_probe(&model, &files, &opts, &header, input, &out, &mut NoProgress).unwrap();
    assert_eq!(s.layers.len(), files.config.n_layers + 1);
    let m: Value = serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let acc = m["metrics"]["probe_accuracy"]["mean"].as_array().unwrap();
    assert_eq!(acc.len(), files.config.n_layers + 1);
    assert!(acc.iter().all(|a| (0.0..=1.0).contains(&a.as_f64().unwrap())));
    assert!((m["summary"]["baseline_accuracy"].as_f64().unwrap() - 0.5).abs() < 0.2);
    assert!(m["summary"]["best_accuracy"].as_f64().unwrap() > 0.9, "{}", m["summary"]);
    assert!(m["summary"]["per_layer"][0]["max_iterations"].as_u64().is_some());
    assert!(!out.join("features.f32").exists(), "features are removed unless kept");
    let lines = std::fs::read_to_string(out.join("prompts.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 40);
    let _ = std::fs::remove_dir_all(&out);
}
