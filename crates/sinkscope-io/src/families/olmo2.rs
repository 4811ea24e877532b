//! OLMo 2: no pre-norms; each sublayer reads the raw residual and its output is RMS-normalised
//! before the add (`post_attention_layernorm`, `post_feedforward_layernorm`); QK-norm over the
//! whole projected q and k, before the heads are split and rotated.

use super::{checked, hf_activation, hf_rope, Dims, FamilyDecl};
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

/// OLMo 2 on top of the shared rotary config: post-only norms, whole-projection QK-norm.
fn config(d: Dims, rope: RopeSpec, attn_bias: bool, tied_unembed: bool) -> ModelConfig {
    let mut cfg = d.rotary_config(Family::Olmo2, rope, MlpKind::Gated { act: Activation::Silu, bias: false });
    cfg.norm_placement = NormPlacement::Post;
    cfg.attn.qk_norm = QkNorm::Whole;
    cfg.attn.qkv_bias = attn_bias;
    cfg.attn.o_bias = attn_bias;
    cfg.tied_unembed = tied_unembed;
    cfg
}

fn from_hf(c: &HfConfig) -> Result<ModelConfig, IoError> {
    if hf_activation(c, "hidden_act", c.hidden_act.as_deref().unwrap_or("silu"))? != Activation::Silu {
        return Err(c.err("hidden_act", "OLMo 2 with a non-SiLU activation is not supported"));
    }
    let dims = Dims::from_hf(c, 1e-6)?;
    let rope = hf_rope(c, dims.d_head, 10000.0)?;
    let cfg = config(dims, rope, c.attention_bias.unwrap_or(false), c.tie_word_embeddings.unwrap_or(false));
    checked(cfg, &c.path)
}

fn from_gguf(m: &GgufMeta) -> Result<ModelConfig, IoError> {
    let dims = Dims::from_gguf(m)?;
    let rope = dims.gguf_rope(m, 10000.0, true)?;
    let cfg = config(dims, rope, m.has_tensor("blk.0.attn_q.bias"), !m.has_tensor("output.weight"));
    checked(cfg, &m.path)
}
