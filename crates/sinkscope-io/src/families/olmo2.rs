//! OLMo 2: no pre-norms; each sublayer reads the raw residual and its output is RMS-normalised
//! before the add (`post_attention_layernorm`, `post_feedforward_layernorm`); QK-norm over the
//! whole projected q and k, before the heads are split and rotated.

use super::{checked, full_layers, gguf_rope_scaling, hf_activation, hf_rope, FamilyDecl};
use crate::error::IoError;
use crate::gguf_meta::GgufMeta;
use crate::hf_config::HfConfig;
use crate::weights::{TensorEntry, TensorRole as R};
use sinkscope_spec::*;

/// OLMo 2.
pub const OLMO2: FamilyDecl = FamilyDecl {
    family: Family::Olmo2,
    hf_model_types: &["olmo2"],
    gguf_archs: &["olmo2"],
    from_hf,
    from_gguf,
    hf_base: super::llama::HF,
    hf_overrides: HF_POST_NORMS,
    gguf_overrides: &[],
    hf_ignored: &["rotary_emb.inv_freq"],
};

const fn e(name: &'static str, roles: &'static [R]) -> TensorEntry {
    TensorEntry { name, transforms: &[], roles }
}

/// OLMo 2's post-norms on top of the Llama-style table (`post_attention_layernorm` normalises
/// the attention output; there are no pre-norms).
const HF_POST_NORMS: &[TensorEntry] = &[
    e("model.layers.{i}.post_attention_layernorm.weight", &[R::PostAttnNormW]),
    e("model.layers.{i}.post_feedforward_layernorm.weight", &[R::PostMlpNormW]),
];

#[allow(clippy::too_many_arguments)]
fn config(
    d_model: usize,
    n_layers: usize,
    n_heads: usize,
    n_kv_heads: usize,
    d_mlp: usize,
    d_vocab: usize,
    context_length: usize,
    eps: f64,
    rope: RopeSpec,
    attn_bias: bool,
    tied_unembed: bool,
) -> ModelConfig {
    let d_head = d_model / n_heads.max(1);
    ModelConfig {
        family: Family::Olmo2,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads,
        d_head,
        d_mlp,
        d_vocab,
        context_length,
        norm: NormKind::RmsNorm { eps, weight_offset: 0.0 },
        norm_placement: NormPlacement::Post,
        block_layout: BlockLayout::Sequential,
        positional: Positional::Rotary(rope),
        mlp: MlpKind::Gated { act: Activation::Silu, bias: false },
        attn: AttnSpec {
            qkv_bias: attn_bias,
            o_bias: attn_bias,
            scale: 1.0 / (d_head as f64).sqrt(),
            qk_norm: QkNorm::Whole,
            softcap: None,
            sinks: false,
        },
        layers: full_layers(n_layers),
        embed_scale: None,
        embed_norm: false,
        final_logit_softcap: None,
        tied_unembed,
    }
}

fn from_hf(c: &HfConfig) -> Result<ModelConfig, IoError> {
    let d_model = c.req("hidden_size", c.hidden_size)?;
    let n_heads = c.req("num_attention_heads", c.num_attention_heads)?;
    if n_heads == 0 {
        return Err(c.err("num_attention_heads", "must be positive"));
    }
    if hf_activation(c, "hidden_act", c.hidden_act.as_deref().unwrap_or("silu"))? != Activation::Silu {
        return Err(c.err("hidden_act", "OLMo 2 with a non-SiLU activation is not supported"));
    }
    let cfg = config(
        d_model,
        c.req("num_hidden_layers", c.num_hidden_layers)?,
        n_heads,
        c.num_key_value_heads.unwrap_or(n_heads),
        c.req("intermediate_size", c.intermediate_size)?,
        c.req("vocab_size", c.vocab_size)?,
        c.req("max_position_embeddings", c.max_position_embeddings)?,
        c.rms_norm_eps.unwrap_or(1e-6),
        hf_rope(c, d_model / n_heads, 10000.0)?,
        c.attention_bias.unwrap_or(false),
        c.tie_word_embeddings.unwrap_or(false),
    );
    checked(cfg, &c.path)
}

fn from_gguf(m: &GgufMeta) -> Result<ModelConfig, IoError> {
    let d_model = m.usize("embedding_length")?;
    let n_heads = m.usize("attention.head_count")?;
    if n_heads == 0 {
        return Err(m.err("olmo2.attention.head_count", "must be positive"));
    }
    let d_head = d_model / n_heads;
    let cfg = config(
        d_model,
        m.usize("block_count")?,
        n_heads,
        m.opt_usize("attention.head_count_kv")?.unwrap_or(n_heads),
        m.usize("feed_forward_length")?,
        m.vocab_size()?,
        m.usize("context_length")?,
        m.f64("attention.layer_norm_rms_epsilon")?,
        RopeSpec {
            theta: m.opt_f64("rope.freq_base")?.unwrap_or(10000.0),
            rotary_dim: m.opt_usize("rope.dimension_count")?.unwrap_or(d_head),
            scaling: gguf_rope_scaling(m, true)?,
        },
        m.has_tensor("blk.0.attn_q.bias"),
        !m.has_tensor("output.weight"),
    );
    checked(cfg, &m.path)
}
