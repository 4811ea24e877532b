//! GPT-2: learned absolute positions, pre-LayerNorm, Conv1D (`[in, out]`) weights, tied LM head.

use super::{checked, full_layers, hf_activation, FamilyDecl};
use crate::error::IoError;
use crate::gguf_meta::GgufMeta;
use crate::hf_config::HfConfig;
use crate::weights::{QkvLayout, TensorEntry, TensorRole as R, Transform as T};
use sinkscope_spec::*;

/// GPT-2.
pub const GPT2: FamilyDecl = FamilyDecl {
    family: Family::Gpt2,
    hf_model_types: &["gpt2"],
    gguf_archs: &["gpt2"],
    from_hf,
    from_gguf,
    hf_base: HF,
    hf_overrides: &[],
    gguf_overrides: &[],
    // Cached causal masks of old checkpoints, and the tied head some exports write anyway.
    hf_ignored: &["attn.bias", "attn.masked_bias", "lm_head.weight"],
};

const fn e(name: &'static str, roles: &'static [R]) -> TensorEntry {
    TensorEntry { name, transforms: &[], roles }
}

const fn conv(name: &'static str, roles: &'static [R]) -> TensorEntry {
    TensorEntry { name, transforms: &[T::Transpose], roles }
}

const QKV: &[R] = &[R::Q, R::K, R::V];
const QKV_BIAS: &[R] = &[R::QBias, R::KBias, R::VBias];

const HF: &[TensorEntry] = &[
    e("transformer.wte.weight", &[R::TokEmbed]),
    e("transformer.wpe.weight", &[R::PosEmbed]),
    e("transformer.ln_f.weight", &[R::FinalNormW]),
    e("transformer.ln_f.bias", &[R::FinalNormB]),
    e("transformer.h.{i}.ln_1.weight", &[R::AttnNormW]),
    e("transformer.h.{i}.ln_1.bias", &[R::AttnNormB]),
    e("transformer.h.{i}.ln_2.weight", &[R::MlpNormW]),
    e("transformer.h.{i}.ln_2.bias", &[R::MlpNormB]),
    TensorEntry {
        name: "transformer.h.{i}.attn.c_attn.weight",
        transforms: &[T::Transpose, T::SplitQkv(QkvLayout::Blocks)],
        roles: QKV,
    },
    TensorEntry {
        name: "transformer.h.{i}.attn.c_attn.bias",
        transforms: &[T::SplitQkv(QkvLayout::Blocks)],
        roles: QKV_BIAS,
    },
    conv("transformer.h.{i}.attn.c_proj.weight", &[R::O]),
    e("transformer.h.{i}.attn.c_proj.bias", &[R::OBias]),
    conv("transformer.h.{i}.mlp.c_fc.weight", &[R::Up]),
    e("transformer.h.{i}.mlp.c_fc.bias", &[R::UpBias]),
    conv("transformer.h.{i}.mlp.c_proj.weight", &[R::Down]),
    e("transformer.h.{i}.mlp.c_proj.bias", &[R::DownBias]),
];

/// The GPT-2 config for these dimensions; `d_mlp`, `d_vocab`, `context_length` are set by
/// the callers.
fn base(d_model: usize, n_heads: usize, n_layers: usize, eps: f64, act: Activation) -> ModelConfig {
    let d_head = d_model / n_heads.max(1);
    ModelConfig {
        family: Family::Gpt2,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: n_heads,
        d_head,
        // Saturating: an absurd width from a file must reach validate(), not overflow here.
        d_mlp: d_model.saturating_mul(4),
        d_vocab: 0,
        context_length: 0,
        norm: NormKind::LayerNorm { eps, bias: true },
        norm_placement: NormPlacement::Pre,
        block_layout: BlockLayout::Sequential,
        positional: Positional::Learned,
        mlp: MlpKind::Plain { act, bias: true },
        attn: AttnSpec {
            qkv_bias: true,
            o_bias: true,
            scale: 1.0 / (d_head as f64).sqrt(),
            qk_norm: QkNorm::None,
            softcap: None,
            sinks: false,
        },
        layers: full_layers(n_layers),
        embed_scale: None,
        embed_norm: false,
        final_logit_softcap: None,
        tied_unembed: true,
    }
}

fn from_hf(c: &HfConfig) -> Result<ModelConfig, IoError> {
    if c.scale_attn_by_inverse_layer_idx == Some(true) {
        return Err(c.err("scale_attn_by_inverse_layer_idx", "not supported"));
    }
    if c.scale_attn_weights == Some(false) {
        return Err(c.err("scale_attn_weights", "unscaled attention is not supported"));
    }
    let d = c.req("n_embd", c.n_embd.or(c.hidden_size))?;
    let n_heads = c.req("n_head", c.n_head.or(c.num_attention_heads))?;
    if n_heads == 0 {
        return Err(c.err("n_head", "must be positive"));
    }
    let act =
        hf_activation(c, "activation_function", c.activation_function.as_deref().unwrap_or("gelu_new"))?;
    let mut cfg = base(
        d,
        n_heads,
        c.req("n_layer", c.n_layer.or(c.num_hidden_layers))?,
        c.layer_norm_epsilon.unwrap_or(1e-5),
        act,
    );
    cfg.d_mlp = c.n_inner.unwrap_or(d.saturating_mul(4));
    cfg.d_vocab = c.req("vocab_size", c.vocab_size)?;
    cfg.context_length = c.req("n_positions", c.n_positions.or(c.max_position_embeddings))?;
    checked(cfg, &c.path)
}

fn from_gguf(m: &GgufMeta) -> Result<ModelConfig, IoError> {
    let n_heads = m.usize("attention.head_count")?;
    if n_heads == 0 {
        return Err(m.err("gpt2.attention.head_count", "must be positive"));
    }
    // GPT-2's `gelu_new` (tanh approximation); GGUF does not record it.
    let mut cfg = base(
        m.usize("embedding_length")?,
        n_heads,
        m.usize("block_count")?,
        m.f64("attention.layer_norm_epsilon")?,
        Activation::GeluTanh,
    );
    cfg.d_mlp = m.usize("feed_forward_length")?;
    cfg.d_vocab = m.vocab_size()?;
    cfg.context_length = m.usize("context_length")?;
    cfg.tied_unembed = !m.has_tensor("output.weight");
    checked(cfg, &m.path)
}
