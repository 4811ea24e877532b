//! BLOOM: ALiBi instead of position embeddings, a LayerNorm on the embeddings, pre-LayerNorm,
//! fused per-head QKV (`[H, 3, dh]` rows in HF, `[q | k | v]` blocks in GGUF), GELU (tanh).

use super::{checked, full_layers, refuse_unless, FamilyDecl};
use crate::error::IoError;
use crate::gguf_meta::GgufMeta;
use crate::hf_config::HfConfig;
use crate::weights::{QkvLayout, TensorEntry, TensorRole as R, Transform as T};
use sinkscope_spec::*;

/// BLOOM.
pub const BLOOM: FamilyDecl = FamilyDecl {
    family: Family::Bloom,
    hf_model_types: &["bloom"],
    gguf_archs: &["bloom"],
    from_hf,
    from_gguf,
    hf_base: HF,
    hf_overrides: &[],
    gguf_overrides: &[],
    // Some exports write the tied head anyway.
    hf_ignored: &["lm_head.weight"],
};

/// ALiBi has no trained length limit; BLOOM was trained on 2,048-token sequences.
const DEFAULT_CONTEXT: usize = 2048;

const fn e(name: &'static str, roles: &'static [R]) -> TensorEntry {
    TensorEntry { name, transforms: &[], roles }
}

const HF: &[TensorEntry] = &[
    e("transformer.word_embeddings.weight", &[R::TokEmbed]),
    e("transformer.word_embeddings_layernorm.weight", &[R::EmbedNormW]),
    e("transformer.word_embeddings_layernorm.bias", &[R::EmbedNormB]),
    e("transformer.ln_f.weight", &[R::FinalNormW]),
    e("transformer.ln_f.bias", &[R::FinalNormB]),
    e("transformer.h.{i}.input_layernorm.weight", &[R::AttnNormW]),
    e("transformer.h.{i}.input_layernorm.bias", &[R::AttnNormB]),
    e("transformer.h.{i}.post_attention_layernorm.weight", &[R::MlpNormW]),
    e("transformer.h.{i}.post_attention_layernorm.bias", &[R::MlpNormB]),
    TensorEntry {
        name: "transformer.h.{i}.self_attention.query_key_value.weight",
        transforms: &[T::SplitQkv(QkvLayout::PerHead)],
        roles: &[R::Q, R::K, R::V],
    },
    TensorEntry {
        name: "transformer.h.{i}.self_attention.query_key_value.bias",
        transforms: &[T::SplitQkv(QkvLayout::PerHead)],
        roles: &[R::QBias, R::KBias, R::VBias],
    },
    e("transformer.h.{i}.self_attention.dense.weight", &[R::O]),
    e("transformer.h.{i}.self_attention.dense.bias", &[R::OBias]),
    e("transformer.h.{i}.mlp.dense_h_to_4h.weight", &[R::Up]),
    e("transformer.h.{i}.mlp.dense_h_to_4h.bias", &[R::UpBias]),
    e("transformer.h.{i}.mlp.dense_4h_to_h.weight", &[R::Down]),
    e("transformer.h.{i}.mlp.dense_4h_to_h.bias", &[R::DownBias]),
];

fn config(d_model: usize, n_heads: usize, n_layers: usize, eps: f64) -> ModelConfig {
    let d_head = d_model / n_heads.max(1);
    ModelConfig {
        family: Family::Bloom,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: n_heads,
        d_head,
        // BLOOM's MLP is always 4·d (modeling_bloom.py); saturating for absurd widths.
        d_mlp: d_model.saturating_mul(4),
        d_vocab: 0,
        context_length: DEFAULT_CONTEXT,
        norm: NormKind::LayerNorm { eps, bias: true },
        norm_placement: NormPlacement::Pre,
        block_layout: BlockLayout::Sequential,
        positional: Positional::Alibi,
        // bloom_gelu_forward: the tanh approximation.
        mlp: MlpKind::Plain { act: Activation::GeluTanh, bias: true },
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
        embed_norm: true,
        final_logit_softcap: None,
        tied_unembed: true,
    }
}

fn from_hf(c: &HfConfig) -> Result<ModelConfig, IoError> {
    refuse_unless(
        c,
        "apply_residual_connection_post_layernorm",
        c.apply_residual_connection_post_layernorm,
        false,
    )?;
    let d = c.req("hidden_size", c.hidden_size.or(c.n_embd))?;
    let n_heads = c.req("n_head", c.n_head.or(c.num_attention_heads))?;
    if n_heads == 0 {
        return Err(c.err("n_head", "must be positive"));
    }
    let mut cfg = config(
        d,
        n_heads,
        c.req("n_layer", c.n_layer.or(c.num_hidden_layers))?,
        c.layer_norm_epsilon.unwrap_or(1e-5),
    );
    cfg.d_vocab = c.req("vocab_size", c.vocab_size)?;
    cfg.context_length = c.seq_length.or(c.max_position_embeddings).unwrap_or(DEFAULT_CONTEXT);
    cfg.tied_unembed = c.tie_word_embeddings.unwrap_or(true);
    checked(cfg, &c.path)
}

fn from_gguf(m: &GgufMeta) -> Result<ModelConfig, IoError> {
    let n_heads = m.usize("attention.head_count")?;
    if n_heads == 0 {
        return Err(m.err("bloom.attention.head_count", "must be positive"));
    }
    let mut cfg = config(
        m.usize("embedding_length")?,
        n_heads,
        m.usize("block_count")?,
        m.f64("attention.layer_norm_epsilon")?,
    );
    cfg.d_mlp = m.usize("feed_forward_length")?;
    cfg.d_vocab = m.vocab_size()?;
    // The converter writes a context length; ALiBi itself has none.
    cfg.context_length = m.opt_usize("context_length")?.unwrap_or(DEFAULT_CONTEXT).max(DEFAULT_CONTEXT);
    cfg.tied_unembed = !m.has_tensor("output.weight");
    checked(cfg, &m.path)
}
