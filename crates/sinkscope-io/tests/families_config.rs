//! Family declarations at the edges: a multimodal Gemma-3 checkpoint loads its text tower
//! (the same weights, bit for bit, as the text-only fixture), and config features that change
//! the dataflow without being implemented are refused by name, with what is supported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use sinkscope_io::weights::required_roles;
use sinkscope_io::ModelFiles;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models").join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("families_config").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A copy of a fixture folder (tokenizer and weights) with `edit` applied to its config.
fn with_config(family: &str, case: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = tmp(case);
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "model.safetensors"] {
        std::fs::copy(fixture(family).join(f), dir.join(f)).unwrap();
    }
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(family).join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    dir
}

fn refusal(dir: &Path) -> String {
    match ModelFiles::open(dir) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// `Gemma3ForConditionalGeneration`: the text config nested under `text_config`, the text
/// model's tensors under `model.language_model.`, a vision tower beside them. The text tower
/// loads with exactly the weights of the text-only checkpoint; the vision tower is not read.
#[test]
fn multimodal_gemma3_loads_its_text_tower() {
    let dir = tmp("gemma3_multimodal");
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
        std::fs::copy(fixture("gemma3").join(f), dir.join(f)).unwrap();
    }
    let text: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("gemma3").join("config.json")).unwrap())
            .unwrap();
    let outer = serde_json::json!({
        "model_type": "gemma3",
        "architectures": ["Gemma3ForConditionalGeneration"],
        "text_config": text,
        "vision_config": {"model_type": "siglip_vision_model"},
    });
    std::fs::write(dir.join("config.json"), outer.to_string()).unwrap();
    let bytes = std::fs::read(fixture("gemma3").join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut renamed: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (name.replacen("model.", "model.language_model.", 1), view))
        .collect();
    let vision = vec![0u8; 4 * 6];
    renamed.push((
        "model.vision_tower.patch_embedding.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3], &vision).unwrap(),
    ));
    std::fs::write(dir.join("model.safetensors"), safetensors::serialize(renamed, None).unwrap()).unwrap();

    let mm = ModelFiles::open(&dir).unwrap();
    let plain = ModelFiles::open(&fixture("gemma3")).unwrap();
    assert_eq!(mm.config, plain.config, "the text config, resolved the same way");
    let (mut a, mut b) = (mm.load_weights().unwrap(), plain.load_weights().unwrap());
    let roles = required_roles(&plain.config);
    assert_eq!(a.len(), roles.len());
    for key in roles.keys() {
        assert_eq!(a.take(key.role, key.block).unwrap(), b.take(key.role, key.block).unwrap(), "{key:?}");
    }
    // Without its text config the checkpoint is refused by name.
    std::fs::write(dir.join("config.json"), r#"{"model_type": "gemma3"}"#).unwrap();
    assert!(refusal(&dir).contains("text_config"));
}

/// An edit of a `config.json`.
type ConfigEdit = Box<dyn FnOnce(&mut Value)>;

/// Dataflow-changing config features that are not implemented name the field and what is
/// supported; an unknown architecture lists the supported ones.
#[test]
fn unsupported_features_are_refused_by_name() {
    let cases: Vec<(&str, &str, ConfigEdit, &[&str])> = vec![
        (
            "phi3",
            "phi3_longrope",
            Box::new(|c| {
                c["rope_parameters"] =
                    serde_json::json!({"rope_type": "longrope", "short_factor": [1.0], "long_factor": [2.0]})
            }),
            &["rope_type", "longrope", "supported: default, linear, llama3, yarn"],
        ),
        (
            "gemma3",
            "gemma3_bidirectional",
            Box::new(|c| c["use_bidirectional_attention"] = true.into()),
            &["use_bidirectional_attention", "not supported"],
        ),
        (
            "gemma3",
            "gemma3_softcap",
            Box::new(|c| c["attn_logit_softcapping"] = 50.0.into()),
            &["attn_logit_softcapping"],
        ),
        (
            "qwen3",
            "qwen3_window",
            Box::new(|c| c["use_sliding_window"] = true.into()),
            &["use_sliding_window"],
        ),
        (
            "bloom",
            "bloom_post_ln",
            Box::new(|c| c["apply_residual_connection_post_layernorm"] = true.into()),
            &["apply_residual_connection_post_layernorm"],
        ),
        (
            "gemma2",
            "gemma2_layer_types",
            Box::new(|c| {
                c["layer_types"] =
                    serde_json::json!(["chunked_attention", "full_attention", "full_attention"])
            }),
            &["layer_types", "chunked_attention"],
        ),
        (
            "gpt_oss",
            "gpt_oss_tied",
            Box::new(|c| c["tie_word_embeddings"] = true.into()),
            &["tie_word_embeddings"],
        ),
        (
            "llama",
            "mamba",
            Box::new(|c| c["model_type"] = "mamba".into()),
            &["unknown architecture 'mamba'", "gemma3_text", "gpt_oss", "olmo2", "bloom"],
        ),
    ];
    for (family, case, edit, needles) in cases {
        let dir = with_config(family, case, edit);
        let msg = refusal(&dir);
        assert!(
            msg.contains("config.json") || msg.contains(case),
            "{case}: the message names the file: {msg}"
        );
        for n in needles {
            assert!(msg.contains(n), "{case}: '{n}' missing from: {msg}");
        }
    }
    // The same features unset load fine (the refusals are not blanket).
    for family in ["phi3", "gemma3", "qwen3", "bloom", "gemma2", "gpt_oss"] {
        assert!(ModelFiles::open(&fixture(family)).is_ok(), "{family}");
    }
}
