//! Llama (Llama 1-3, SmolLM2) and Qwen2: pre-RMSNorm, SwiGLU, rotary; Qwen2 adds q/k/v biases.

use super::{checked, full_layers, hf_activation, hf_rope, FamilyDecl};
use crate::error::IoError;
use crate::gguf_meta::GgufMeta;
use crate::hf_config::HfConfig;
use crate::weights::{TensorEntry, TensorRole as R, Transform as T};
use sinkscope_spec::*;

/// Llama.
pub const LLAMA: FamilyDecl = FamilyDecl {
    family: Family::Llama,
    hf_model_types: &["llama"],
    gguf_archs: &["llama"],
    from_hf: |c| from_hf(c, Family::Llama),
    from_gguf: |m| from_gguf(m, Family::Llama),
    hf_tensors: HF,
    gguf_tensors: GGUF_LLAMA,
    hf_ignored: &["rotary_emb.inv_freq"],
};

/// Qwen2.
pub const QWEN2: FamilyDecl = FamilyDecl {
    family: Family::Qwen2,
    hf_model_types: &["qwen2"],
    gguf_archs: &["qwen2"],
    from_hf: |c| from_hf(c, Family::Qwen2),
    from_gguf: |m| from_gguf(m, Family::Qwen2),
    hf_tensors: HF,
    gguf_tensors: GGUF_QWEN2,
    hf_ignored: &["rotary_emb.inv_freq"],
};

const fn e(name: &'static str, roles: &'static [R]) -> TensorEntry {
    TensorEntry { name, transforms: &[], roles }
}

const HF: &[TensorEntry] = &[
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
    e("model.layers.{i}.mlp.gate_proj.weight", &[R::Gate]),
    e("model.layers.{i}.mlp.up_proj.weight", &[R::Up]),
    e("model.layers.{i}.mlp.down_proj.weight", &[R::Down]),
    e("model.layers.{i}.mlp.gate_proj.bias", &[R::GateBias]),
    e("model.layers.{i}.mlp.up_proj.bias", &[R::UpBias]),
    e("model.layers.{i}.mlp.down_proj.bias", &[R::DownBias]),
];

/// Entries shared by both GGUF tables (everything but q/k, whose permutation differs).
macro_rules! gguf_common {
    ($($extra:expr),* $(,)?) => {
        &[
            e("token_embd.weight", &[R::TokEmbed]),
            e("output_norm.weight", &[R::FinalNormW]),
            e("output.weight", &[R::Unembed]),
            e("blk.{i}.attn_norm.weight", &[R::AttnNormW]),
            e("blk.{i}.ffn_norm.weight", &[R::MlpNormW]),
            e("blk.{i}.attn_v.weight", &[R::V]),
            e("blk.{i}.attn_output.weight", &[R::O]),
            e("blk.{i}.attn_v.bias", &[R::VBias]),
            e("blk.{i}.attn_output.bias", &[R::OBias]),
            e("blk.{i}.ffn_gate.weight", &[R::Gate]),
            e("blk.{i}.ffn_up.weight", &[R::Up]),
            e("blk.{i}.ffn_down.weight", &[R::Down]),
            $($extra),*
        ]
    };
}

/// llama.cpp permutes llama's Q/K rows for its interleaved RoPE; undone here so that GGUF and
/// safetensors copies give the same activations (see convert_hf_to_gguf.py `LlamaModel.permute`).
const GGUF_LLAMA: &[TensorEntry] = gguf_common!(
    TensorEntry { name: "blk.{i}.attn_q.weight", transforms: &[T::UnpermuteQ], roles: &[R::Q] },
    TensorEntry { name: "blk.{i}.attn_k.weight", transforms: &[T::UnpermuteK], roles: &[R::K] },
    TensorEntry { name: "blk.{i}.attn_q.bias", transforms: &[T::UnpermuteQ], roles: &[R::QBias] },
    TensorEntry { name: "blk.{i}.attn_k.bias", transforms: &[T::UnpermuteK], roles: &[R::KBias] },
);

const GGUF_QWEN2: &[TensorEntry] = gguf_common!(
    e("blk.{i}.attn_q.weight", &[R::Q]),
    e("blk.{i}.attn_k.weight", &[R::K]),
    e("blk.{i}.attn_q.bias", &[R::QBias]),
    e("blk.{i}.attn_k.bias", &[R::KBias]),
);

fn from_hf(c: &HfConfig, family: Family) -> Result<ModelConfig, IoError> {
    let d_model = c.req("hidden_size", c.hidden_size)?;
    let n_heads = c.req("num_attention_heads", c.num_attention_heads)?;
    if n_heads == 0 {
        return Err(c.err("num_attention_heads", "must be positive"));
    }
    let d_head = c.head_dim.unwrap_or(d_model / n_heads);
    let n_layers = c.req("num_hidden_layers", c.num_hidden_layers)?;
    if c.use_sliding_window == Some(true) {
        return Err(c.err("use_sliding_window", "sliding-window Qwen2 models are not supported yet"));
    }
    let qwen = family == Family::Qwen2;
    let act = hf_activation(c, "hidden_act", c.hidden_act.as_deref().unwrap_or("silu"))?;
    let attn_bias = c.attention_bias.unwrap_or(false);
    let cfg = ModelConfig {
        family,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: c.num_key_value_heads.unwrap_or(n_heads),
        d_head,
        d_mlp: c.req("intermediate_size", c.intermediate_size)?,
        d_vocab: c.req("vocab_size", c.vocab_size)?,
        context_length: c.req("max_position_embeddings", c.max_position_embeddings)?,
        norm: NormKind::RmsNorm { eps: c.rms_norm_eps.unwrap_or(1e-6), weight_offset: 0.0 },
        norm_placement: NormPlacement::Pre,
        block_layout: BlockLayout::Sequential,
        positional: Positional::Rotary(hf_rope(c, d_head, 10000.0)?),
        mlp: MlpKind::Gated { act, bias: c.mlp_bias.unwrap_or(false) },
        attn: AttnSpec {
            qkv_bias: qwen || attn_bias,
            o_bias: !qwen && attn_bias,
            scale: 1.0 / (d_head as f64).sqrt(),
        },
        layers: full_layers(n_layers),
        embed_scale: None,
        tied_unembed: c.tie_word_embeddings.unwrap_or(false),
    };
    checked(cfg, &c.path)
}

fn from_gguf(m: &GgufMeta, family: Family) -> Result<ModelConfig, IoError> {
    let d_model = m.usize("embedding_length")?;
    let n_heads = m.usize("attention.head_count")?;
    if n_heads == 0 {
        return Err(m.err(&format!("{}.attention.head_count", m.arch), "must be positive"));
    }
    let d_head = m.opt_usize("attention.key_length")?.unwrap_or(d_model / n_heads);
    let n_layers = m.usize("block_count")?;
    let rotary_dim = m.opt_usize("rope.dimension_count")?.unwrap_or(d_head);
    let scaling = match m.file.get_str(&format!("{}.rope.scaling.type", m.arch)).ok() {
        None | Some("none") => RopeScaling::None,
        Some("linear") => RopeScaling::Linear { factor: m.f64("rope.scaling.factor")? },
        Some(other) => {
            return Err(m.err(&format!("{}.rope.scaling.type", m.arch), &format!("unsupported '{other}'")))
        }
    };
    let qwen = family == Family::Qwen2;
    let bias = m.has_tensor("blk.0.attn_q.bias");
    let cfg = ModelConfig {
        family,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: m.opt_usize("attention.head_count_kv")?.unwrap_or(n_heads),
        d_head,
        d_mlp: m.usize("feed_forward_length")?,
        d_vocab: m.vocab_size()?,
        context_length: m.usize("context_length")?,
        norm: NormKind::RmsNorm { eps: m.f64("attention.layer_norm_rms_epsilon")?, weight_offset: 0.0 },
        norm_placement: NormPlacement::Pre,
        block_layout: BlockLayout::Sequential,
        positional: Positional::Rotary(RopeSpec {
            theta: m.opt_f64("rope.freq_base")?.unwrap_or(10000.0),
            rotary_dim,
            scaling,
        }),
        mlp: MlpKind::Gated { act: Activation::Silu, bias: m.has_tensor("blk.0.ffn_up.bias") },
        attn: AttnSpec {
            qkv_bias: bias,
            o_bias: !qwen && m.has_tensor("blk.0.attn_output.bias"),
            scale: 1.0 / (d_head as f64).sqrt(),
        },
        layers: full_layers(n_layers),
        embed_scale: None,
        tied_unembed: !m.has_tensor("output.weight"),
    };
    checked(cfg, &m.path)
}
