//! GPT-OSS: Llama-style attention with q/k/v/o biases and a learned sink logit per head, YaRN
//! RoPE, alternating sliding-window and full layers, and a mixture-of-experts MLP (top-k
//! routing, clamped GLU experts).

use super::{checked, hf_rope, layers_from, Dims, FamilyDecl};
use crate::error::IoError;
use crate::gguf_meta::GgufMeta;
use crate::hf_config::HfConfig;
use crate::weights::{TensorEntry, TensorRole as R, Transform as T};
use sinkscope_spec::*;

/// GPT-OSS.
pub const GPT_OSS: FamilyDecl = FamilyDecl {
    family: Family::GptOss,
    hf_model_types: &["gpt_oss"],
    gguf_archs: &["gpt-oss"],
    from_hf,
    from_gguf,
    hf_base: super::llama::HF,
    hf_overrides: HF_EXTRAS,
    gguf_overrides: GGUF,
    hf_ignored: &["rotary_emb.inv_freq"],
};

/// The expert GLU's constants when the config does not give them (transformers' GptOssExperts).
const ALPHA: f64 = 1.702;
const LIMIT: f64 = 7.0;

const fn e(name: &'static str, roles: &'static [R]) -> TensorEntry {
    TensorEntry { name, transforms: &[], roles }
}

/// GPT-OSS's names beyond the Llama-style table. transformers stores the experts as `x @ W`
/// matrices (`[E, in, out]`) with gate and up interleaved in the last axis of `gate_up_proj`
/// (gate = `[..., ::2]`, up = `[..., 1::2]`).
const HF_EXTRAS: &[TensorEntry] = &[
    e("model.layers.{i}.self_attn.sinks", &[R::AttnSinks]),
    e("model.layers.{i}.mlp.router.weight", &[R::RouterW]),
    e("model.layers.{i}.mlp.router.bias", &[R::RouterB]),
    TensorEntry {
        name: "model.layers.{i}.mlp.experts.gate_up_proj",
        transforms: &[T::Deinterleave, T::TransposeLast2],
        roles: &[R::ExpertGate, R::ExpertUp],
    },
    TensorEntry {
        name: "model.layers.{i}.mlp.experts.gate_up_proj_bias",
        transforms: &[T::Deinterleave],
        roles: &[R::ExpertGateBias, R::ExpertUpBias],
    },
    TensorEntry {
        name: "model.layers.{i}.mlp.experts.down_proj",
        transforms: &[T::TransposeLast2],
        roles: &[R::ExpertDown],
    },
    e("model.layers.{i}.mlp.experts.down_proj_bias", &[R::ExpertDownBias]),
];

/// In GPT-OSS GGUFs `post_attention_norm` is the MLP's pre-norm (Llama's meaning).
const GGUF: &[TensorEntry] = &[e("blk.{i}.post_attention_norm.weight", &[R::MlpNormW])];

/// GPT-OSS on top of the shared rotary config: q/k/v/o biases, learned sinks, the mixture of
/// experts and the local/global layer pattern.
fn config(d: Dims, rope: RopeSpec, moe: MlpKind, sliding: &[bool], window: Option<usize>) -> ModelConfig {
    let mut cfg = d.rotary_config(Family::GptOss, rope, moe);
    cfg.attn.qkv_bias = true;
    cfg.attn.o_bias = true;
    cfg.attn.sinks = true;
    cfg.layers = layers_from(sliding, window, None);
    cfg
}

fn from_hf(c: &HfConfig) -> Result<ModelConfig, IoError> {
    if c.attention_bias == Some(false) {
        return Err(c.err("attention_bias", "GPT-OSS without attention biases is not supported"));
    }
    if c.tie_word_embeddings == Some(true) {
        return Err(c.err("tie_word_embeddings", "tied GPT-OSS embeddings are not supported"));
    }
    let dims = Dims::from_hf(c, 1e-5)?;
    let moe = MlpKind::Moe {
        n_experts: c.req("num_local_experts", c.num_local_experts)?,
        top_k: c.req("num_experts_per_tok", c.num_experts_per_tok)?,
        alpha: c.swiglu_alpha.unwrap_or(ALPHA),
        limit: c.swiglu_limit.unwrap_or(LIMIT),
    };
    let sliding = c.layer_types(dims.n_layers, Some(2))?;
    let cfg = config(dims, hf_rope(c, dims.d_head, 150000.0)?, moe, &sliding, c.sliding_window);
    checked(cfg, &c.path)
}

fn from_gguf(m: &GgufMeta) -> Result<ModelConfig, IoError> {
    let mut dims = Dims::from_gguf(m)?;
    if let Some(e) = m.opt_usize("expert_feed_forward_length")? {
        dims.d_mlp = e;
    }
    let moe = MlpKind::Moe {
        n_experts: m.usize("expert_count")?,
        top_k: m.usize("expert_used_count")?,
        alpha: ALPHA,
        limit: LIMIT,
    };
    // llama.cpp: every other layer slides, starting with layer 0 (swa pattern 2).
    let sliding: Vec<bool> = (0..dims.n_layers.min(MAX_LAYERS + 1)).map(|i| i % 2 == 0).collect();
    let window = m.opt_usize("attention.sliding_window")?.filter(|&w| w > 0);
    // YaRN's `truncate` is not in the file; GPT-OSS's own config sets it to false, which is
    // what transformers runs (llama.cpp always truncates: see the fixtures README).
    let rope = dims.gguf_rope(m, 150000.0, false)?;
    checked(config(dims, rope, moe, &sliding, window), &m.path)
}
