//! GPT-NeoX / Pythia: parallel residual, partial rotary, LayerNorm, fused per-head QKV.

use super::{checked, full_layers, hf_activation, hf_rope, FamilyDecl};
use crate::error::IoError;
use crate::gguf_meta::GgufMeta;
use crate::hf_config::HfConfig;
use crate::weights::{QkvLayout, TensorEntry, TensorRole as R, Transform as T};
use sinkscope_spec::*;

/// GPT-NeoX.
pub const GPT_NEOX: FamilyDecl = FamilyDecl {
    family: Family::GptNeox,
    hf_model_types: &["gpt_neox"],
    gguf_archs: &["gptneox"],
    from_hf,
    from_gguf,
    hf_base: HF,
    hf_overrides: &[],
    gguf_overrides: &[],
    hf_ignored: &["attention.bias", "attention.masked_bias", "rotary_emb.inv_freq"],
};

const fn e(name: &'static str, roles: &'static [R]) -> TensorEntry {
    TensorEntry { name, transforms: &[], roles }
}

const HF_QKV: &[R] = &[R::Q, R::K, R::V];
const HF_QKV_BIAS: &[R] = &[R::QBias, R::KBias, R::VBias];

const HF: &[TensorEntry] = &[
    e("gpt_neox.embed_in.weight", &[R::TokEmbed]),
    e("gpt_neox.final_layer_norm.weight", &[R::FinalNormW]),
    e("gpt_neox.final_layer_norm.bias", &[R::FinalNormB]),
    e("embed_out.weight", &[R::Unembed]),
    e("gpt_neox.layers.{i}.input_layernorm.weight", &[R::AttnNormW]),
    e("gpt_neox.layers.{i}.input_layernorm.bias", &[R::AttnNormB]),
    e("gpt_neox.layers.{i}.post_attention_layernorm.weight", &[R::MlpNormW]),
    e("gpt_neox.layers.{i}.post_attention_layernorm.bias", &[R::MlpNormB]),
    // HF stores fused rows per head: [H, 3, dh].
    TensorEntry {
        name: "gpt_neox.layers.{i}.attention.query_key_value.weight",
        transforms: &[T::SplitQkv(QkvLayout::PerHead)],
        roles: HF_QKV,
    },
    TensorEntry {
        name: "gpt_neox.layers.{i}.attention.query_key_value.bias",
        transforms: &[T::SplitQkv(QkvLayout::PerHead)],
        roles: HF_QKV_BIAS,
    },
    e("gpt_neox.layers.{i}.attention.dense.weight", &[R::O]),
    e("gpt_neox.layers.{i}.attention.dense.bias", &[R::OBias]),
    e("gpt_neox.layers.{i}.mlp.dense_h_to_4h.weight", &[R::Up]),
    e("gpt_neox.layers.{i}.mlp.dense_h_to_4h.bias", &[R::UpBias]),
    e("gpt_neox.layers.{i}.mlp.dense_4h_to_h.weight", &[R::Down]),
    e("gpt_neox.layers.{i}.mlp.dense_4h_to_h.bias", &[R::DownBias]),
];

fn from_hf(c: &HfConfig) -> Result<ModelConfig, IoError> {
    let d_model = c.req("hidden_size", c.hidden_size)?;
    let n_heads = c.req("num_attention_heads", c.num_attention_heads)?;
    if n_heads == 0 {
        return Err(c.err("num_attention_heads", "must be positive"));
    }
    let d_head = d_model / n_heads;
    let n_layers = c.req("num_hidden_layers", c.num_hidden_layers)?;
    let bias = c.attention_bias.unwrap_or(true);
    let cfg = ModelConfig {
        family: Family::GptNeox,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: n_heads,
        d_head,
        d_mlp: c.req("intermediate_size", c.intermediate_size)?,
        d_vocab: c.req("vocab_size", c.vocab_size)?,
        context_length: c.req("max_position_embeddings", c.max_position_embeddings)?,
        norm: NormKind::LayerNorm { eps: c.layer_norm_eps.unwrap_or(1e-5), bias: true },
        norm_placement: NormPlacement::Pre,
        block_layout: if c.use_parallel_residual.unwrap_or(true) {
            BlockLayout::Parallel
        } else {
            BlockLayout::Sequential
        },
        positional: Positional::Rotary(hf_rope(c, d_head, 10000.0)?),
        mlp: MlpKind::Plain {
            act: hf_activation(c, "hidden_act", c.hidden_act.as_deref().unwrap_or("gelu"))?,
            bias: true,
        },
        attn: AttnSpec {
            qkv_bias: bias,
            o_bias: bias,
            scale: 1.0 / (d_head as f64).sqrt(),
            qk_norm: QkNorm::None,
            softcap: None,
            sinks: false,
        },
        layers: full_layers(n_layers),
        embed_scale: None,
        embed_norm: false,
        final_logit_softcap: None,
        tied_unembed: c.tie_word_embeddings.unwrap_or(false),
    };
    checked(cfg, &c.path)
}

fn from_gguf(m: &GgufMeta) -> Result<ModelConfig, IoError> {
    let d_model = m.usize("embedding_length")?;
    let n_heads = m.usize("attention.head_count")?;
    if n_heads == 0 {
        return Err(m.err("gptneox.attention.head_count", "must be positive"));
    }
    let d_head = d_model / n_heads;
    let n_layers = m.usize("block_count")?;
    let cfg = ModelConfig {
        family: Family::GptNeox,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: n_heads,
        d_head,
        d_mlp: m.usize("feed_forward_length")?,
        d_vocab: m.vocab_size()?,
        context_length: m.usize("context_length")?,
        norm: NormKind::LayerNorm { eps: m.f64("attention.layer_norm_epsilon")?, bias: true },
        norm_placement: NormPlacement::Pre,
        block_layout: if m.opt_bool("use_parallel_residual")?.unwrap_or(true) {
            BlockLayout::Parallel
        } else {
            BlockLayout::Sequential
        },
        positional: Positional::Rotary(RopeSpec {
            theta: m.opt_f64("rope.freq_base")?.unwrap_or(10000.0),
            rotary_dim: m.opt_usize("rope.dimension_count")?.unwrap_or(d_head),
            scaling: RopeScaling::None,
        }),
        // GGUF does not record the activation; GPT-NeoX's HF default is the exact (erf) GELU.
        mlp: MlpKind::Plain { act: Activation::GeluErf, bias: true },
        attn: AttnSpec {
            qkv_bias: m.has_tensor("blk.0.attn_qkv.bias"),
            o_bias: m.has_tensor("blk.0.attn_output.bias"),
            scale: 1.0 / (d_head as f64).sqrt(),
            qk_norm: QkNorm::None,
            softcap: None,
            sinks: false,
        },
        layers: full_layers(n_layers),
        embed_scale: None,
        embed_norm: false,
        final_logit_softcap: None,
        tied_unembed: !m.has_tensor("output.weight"),
    };
    checked(cfg, &m.path)
}
