//! The Llama dataflow (pre-RMSNorm, gated MLP, rotary) and the families that only add a
//! parameter to it: Llama 1–3 / SmolLM2, Qwen2 (q/k/v biases), Mistral (a sliding window),
//! Qwen3 (per-head QK-norm) and Phi-3 (fused QKV and gate/up projections).

use super::{checked, hf_activation, hf_rope, refuse_unless, Dims, FamilyDecl};
use crate::error::IoError;
use crate::gguf_meta::GgufMeta;
use crate::hf_config::HfConfig;
use crate::weights::{QkvLayout, TensorEntry, TensorRole as R, Transform as T};
use sinkscope_spec::*;

/// Llama.
pub const LLAMA: FamilyDecl = FamilyDecl {
    family: Family::Llama,
    hf_model_types: &["llama"],
    gguf_archs: &["llama"],
    from_hf: |c| from_hf(c, Family::Llama),
    from_gguf: |m| from_gguf(m, Family::Llama),
    hf_base: HF,
    hf_overrides: &[],
    gguf_overrides: GGUF_PERMUTED_QK,
    hf_ignored: &["rotary_emb.inv_freq"],
};

/// Qwen2.
pub const QWEN2: FamilyDecl = FamilyDecl {
    family: Family::Qwen2,
    hf_model_types: &["qwen2"],
    gguf_archs: &["qwen2"],
    from_hf: |c| from_hf(c, Family::Qwen2),
    from_gguf: |m| from_gguf(m, Family::Qwen2),
    hf_base: HF,
    hf_overrides: &[],
    gguf_overrides: &[],
    hf_ignored: &["rotary_emb.inv_freq"],
};

/// Mistral: the Llama dataflow with a sliding window on every layer (llama.cpp stores Mistral
/// GGUFs under the `llama` architecture, whose declaration reads the window when present).
pub const MISTRAL: FamilyDecl = FamilyDecl {
    family: Family::Mistral,
    hf_model_types: &["mistral"],
    gguf_archs: &[],
    from_hf: |c| from_hf(c, Family::Mistral),
    from_gguf: |m| from_gguf(m, Family::Mistral),
    hf_base: HF,
    hf_overrides: &[],
    gguf_overrides: GGUF_PERMUTED_QK,
    hf_ignored: &["rotary_emb.inv_freq"],
};

/// Qwen3.
pub const QWEN3: FamilyDecl = FamilyDecl {
    family: Family::Qwen3,
    hf_model_types: &["qwen3"],
    gguf_archs: &["qwen3"],
    from_hf: |c| from_hf(c, Family::Qwen3),
    from_gguf: |m| from_gguf(m, Family::Qwen3),
    hf_base: HF,
    hf_overrides: &[],
    gguf_overrides: &[],
    hf_ignored: &["rotary_emb.inv_freq"],
};

/// Phi-3.
pub const PHI3: FamilyDecl = FamilyDecl {
    family: Family::Phi3,
    hf_model_types: &["phi3"],
    gguf_archs: &["phi3"],
    from_hf: |c| from_hf(c, Family::Phi3),
    from_gguf: |m| from_gguf(m, Family::Phi3),
    hf_base: HF,
    hf_overrides: &[],
    gguf_overrides: GGUF_PHI3,
    hf_ignored: &["rotary_emb.inv_freq"],
};

const fn e(name: &'static str, roles: &'static [R]) -> TensorEntry {
    TensorEntry { name, transforms: &[], roles }
}

/// transformers' Llama-style names (Llama, Qwen2/3, Mistral, Phi-3, GPT-OSS's attention).
pub(super) const HF: &[TensorEntry] = &[
    e("model.embed_tokens.weight", &[R::TokEmbed]),
    e("model.norm.weight", &[R::FinalNormW]),
    e("lm_head.weight", &[R::Unembed]),
    e("model.layers.{i}.input_layernorm.weight", &[R::AttnNormW]),
    e("model.layers.{i}.post_attention_layernorm.weight", &[R::MlpNormW]),
    e("model.layers.{i}.self_attn.q_proj.weight", &[R::Q]),
    e("model.layers.{i}.self_attn.k_proj.weight", &[R::K]),
    e("model.layers.{i}.self_attn.v_proj.weight", &[R::V]),
    e("model.layers.{i}.self_attn.o_proj.weight", &[R::O]),
    e("model.layers.{i}.self_attn.q_proj.bias", &[R::QBias]),
    e("model.layers.{i}.self_attn.k_proj.bias", &[R::KBias]),
    e("model.layers.{i}.self_attn.v_proj.bias", &[R::VBias]),
    e("model.layers.{i}.self_attn.o_proj.bias", &[R::OBias]),
    e("model.layers.{i}.self_attn.q_norm.weight", &[R::QNormW]),
    e("model.layers.{i}.self_attn.k_norm.weight", &[R::KNormW]),
    // Phi-3: rows [q | k | v].
    TensorEntry {
        name: "model.layers.{i}.self_attn.qkv_proj.weight",
        transforms: &[T::SplitQkv(QkvLayout::Blocks)],
        roles: &[R::Q, R::K, R::V],
    },
    e("model.layers.{i}.mlp.gate_proj.weight", &[R::Gate]),
    e("model.layers.{i}.mlp.up_proj.weight", &[R::Up]),
    e("model.layers.{i}.mlp.down_proj.weight", &[R::Down]),
    e("model.layers.{i}.mlp.gate_proj.bias", &[R::GateBias]),
    e("model.layers.{i}.mlp.up_proj.bias", &[R::UpBias]),
    e("model.layers.{i}.mlp.down_proj.bias", &[R::DownBias]),
    // Phi-3: rows [gate | up].
    TensorEntry {
        name: "model.layers.{i}.mlp.gate_up_proj.weight",
        transforms: &[T::SplitHalves],
        roles: &[R::Gate, R::Up],
    },
];

/// llama.cpp permutes llama's Q/K rows for its interleaved RoPE; undone here so that GGUF and
/// safetensors copies give the same activations (see convert_hf_to_gguf.py `LlamaModel.permute`).
const GGUF_PERMUTED_QK: &[TensorEntry] = &[
    TensorEntry { name: "blk.{i}.attn_q.weight", transforms: &[T::UnpermuteQ], roles: &[R::Q] },
    TensorEntry { name: "blk.{i}.attn_k.weight", transforms: &[T::UnpermuteK], roles: &[R::K] },
    TensorEntry { name: "blk.{i}.attn_q.bias", transforms: &[T::UnpermuteQ], roles: &[R::QBias] },
    TensorEntry { name: "blk.{i}.attn_k.bias", transforms: &[T::UnpermuteK], roles: &[R::KBias] },
];

/// Phi-3's `ffn_up` holds `[gate | up]` (copied unchanged by the converter).
const GGUF_PHI3: &[TensorEntry] =
    &[TensorEntry { name: "blk.{i}.ffn_up.weight", transforms: &[T::SplitHalves], roles: &[R::Gate, R::Up] }];

fn from_hf(c: &HfConfig, family: Family) -> Result<ModelConfig, IoError> {
    let dims = Dims::from_hf(c, 1e-6)?;
    // Qwen2/3 only slide when use_sliding_window is set (and then only above max_window_layers).
    let window = match family {
        Family::Qwen2 | Family::Qwen3 => {
            refuse_unless(c, "use_sliding_window", c.use_sliding_window, false)?;
            None
        }
        _ => c.sliding_window,
    };
    if family == Family::Llama && c.sliding_window.is_some() {
        return Err(c.err(
            "sliding_window",
            "a sliding window on a llama config is not supported (use model_type mistral)",
        ));
    }
    // Phi-3's LongRoPE (`longrope` / `su`) is refused by name there.
    let rope = hf_rope(c, dims.d_head, 10000.0)?;
    let act = hf_activation(c, "hidden_act", c.hidden_act.as_deref().unwrap_or("silu"))?;
    let mut cfg = dims.rotary_config(family, rope, MlpKind::Gated { act, bias: c.mlp_bias.unwrap_or(false) });
    let attn_bias = c.attention_bias.unwrap_or(false);
    let qwen2 = family == Family::Qwen2;
    cfg.attn.qkv_bias = qwen2 || attn_bias;
    cfg.attn.o_bias = !qwen2 && attn_bias;
    if family == Family::Qwen3 {
        cfg.attn.qk_norm = QkNorm::PerHead;
    }
    for l in &mut cfg.layers {
        l.sliding_window = window;
    }
    cfg.tied_unembed = c.tie_word_embeddings.unwrap_or(false);
    checked(cfg, &c.path)
}

fn from_gguf(m: &GgufMeta, family: Family) -> Result<ModelConfig, IoError> {
    if m.has_tensor("rope_factors_long.weight") {
        return Err(m.err("rope_factors_long.weight", "LongRoPE (su) scaling is not supported yet"));
    }
    let dims = Dims::from_gguf(m)?;
    let mlp = MlpKind::Gated { act: Activation::Silu, bias: m.has_tensor("blk.0.ffn_up.bias") };
    // Mistral-style GGUFs (architecture `llama`) record their window; 0 means none (Phi-3).
    let window = m.opt_usize("attention.sliding_window")?.filter(|&w| w > 0);
    let family = if family == Family::Llama && window.is_some() { Family::Mistral } else { family };
    let mut cfg = dims.rotary_config(family, dims.gguf_rope(m, 10000.0, true)?, mlp);
    cfg.attn.qkv_bias = m.has_tensor("blk.0.attn_q.bias") || m.has_tensor("blk.0.attn_qkv.bias");
    cfg.attn.o_bias = family != Family::Qwen2 && m.has_tensor("blk.0.attn_output.bias");
    if family == Family::Qwen3 {
        cfg.attn.qk_norm = QkNorm::PerHead;
    }
    for l in &mut cfg.layers {
        l.sliding_window = window;
    }
    cfg.tied_unembed = !m.has_tensor("output.weight");
    checked(cfg, &m.path)
}
