//! GPT-OSS: Llama-style attention with q/k/v/o biases and a learned sink logit per head, YaRN
//! RoPE, alternating sliding-window and full layers, and a mixture-of-experts MLP (top-k
//! routing, clamped GLU experts).

use super::{checked, gguf_rope_scaling, hf_rope, layers_from, FamilyDecl};
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

struct Dims {
    d_model: usize,
    n_layers: usize,
    n_heads: usize,
    n_kv_heads: usize,
    d_head: usize,
    d_mlp: usize,
    d_vocab: usize,
    context_length: usize,
    eps: f64,
    n_experts: usize,
    top_k: usize,
}

fn config(
    d: Dims,
    rope: RopeSpec,
    sliding: &[bool],
    window: Option<usize>,
    alpha: f64,
    limit: f64,
) -> ModelConfig {
    ModelConfig {
        family: Family::GptOss,
        d_model: d.d_model,
        n_layers: d.n_layers,
        n_heads: d.n_heads,
        n_kv_heads: d.n_kv_heads,
        d_head: d.d_head,
        d_mlp: d.d_mlp,
        d_vocab: d.d_vocab,
        context_length: d.context_length,
        norm: NormKind::RmsNorm { eps: d.eps, weight_offset: 0.0 },
        norm_placement: NormPlacement::Pre,
        block_layout: BlockLayout::Sequential,
        positional: Positional::Rotary(rope),
        mlp: MlpKind::Moe { n_experts: d.n_experts, top_k: d.top_k, alpha, limit },
        attn: AttnSpec {
            qkv_bias: true,
            o_bias: true,
            scale: 1.0 / (d.d_head as f64).sqrt(),
            qk_norm: QkNorm::None,
            softcap: None,
            sinks: true,
        },
        layers: layers_from(sliding, window, None),
        embed_scale: None,
        embed_norm: false,
        final_logit_softcap: None,
        tied_unembed: false,
    }
}

fn from_hf(c: &HfConfig) -> Result<ModelConfig, IoError> {
    let d_model = c.req("hidden_size", c.hidden_size)?;
    let n_heads = c.req("num_attention_heads", c.num_attention_heads)?;
    if n_heads == 0 {
        return Err(c.err("num_attention_heads", "must be positive"));
    }
    if c.attention_bias == Some(false) {
        return Err(c.err("attention_bias", "GPT-OSS without attention biases is not supported"));
    }
    let d_head = c.head_dim.unwrap_or(d_model / n_heads);
    let n_layers = c.req("num_hidden_layers", c.num_hidden_layers)?;
    let dims = Dims {
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: c.num_key_value_heads.unwrap_or(n_heads),
        d_head,
        d_mlp: c.req("intermediate_size", c.intermediate_size)?,
        d_vocab: c.req("vocab_size", c.vocab_size)?,
        context_length: c.req("max_position_embeddings", c.max_position_embeddings)?,
        eps: c.rms_norm_eps.unwrap_or(1e-5),
        n_experts: c.req("num_local_experts", c.num_local_experts)?,
        top_k: c.req("num_experts_per_tok", c.num_experts_per_tok)?,
    };
    let sliding = c.layer_types(n_layers, Some(2))?;
    let cfg = config(
        dims,
        hf_rope(c, d_head, 150000.0)?,
        &sliding,
        c.sliding_window,
        c.swiglu_alpha.unwrap_or(ALPHA),
        c.swiglu_limit.unwrap_or(LIMIT),
    );
    if c.tie_word_embeddings == Some(true) {
        return Err(c.err("tie_word_embeddings", "tied GPT-OSS embeddings are not supported"));
    }
    checked(cfg, &c.path)
}

fn from_gguf(m: &GgufMeta) -> Result<ModelConfig, IoError> {
    let d_model = m.usize("embedding_length")?;
    let n_heads = m.usize("attention.head_count")?;
    if n_heads == 0 {
        return Err(m.err("gpt-oss.attention.head_count", "must be positive"));
    }
    let d_head = m.opt_usize("attention.key_length")?.unwrap_or(d_model / n_heads);
    let n_layers = m.usize("block_count")?;
    let dims = Dims {
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: m.opt_usize("attention.head_count_kv")?.unwrap_or(n_heads),
        d_head,
        d_mlp: m
            .opt_usize("expert_feed_forward_length")?
            .map_or_else(|| m.usize("feed_forward_length"), Ok)?,
        d_vocab: m.vocab_size()?,
        context_length: m.usize("context_length")?,
        eps: m.f64("attention.layer_norm_rms_epsilon")?,
        n_experts: m.usize("expert_count")?,
        top_k: m.usize("expert_used_count")?,
    };
    // llama.cpp: every other layer slides, starting with layer 0 (swa pattern 2).
    let sliding: Vec<bool> = (0..n_layers.min(MAX_LAYERS + 1)).map(|i| i % 2 == 0).collect();
    let window = m.opt_usize("attention.sliding_window")?.filter(|&w| w > 0);
    // YaRN's `truncate` is not in the file; GPT-OSS's own config sets it to false, which is
    // what transformers runs (llama.cpp always truncates: see the fixtures README).
    let rope = RopeSpec {
        theta: m.opt_f64("rope.freq_base")?.unwrap_or(150000.0),
        rotary_dim: m.opt_usize("rope.dimension_count")?.unwrap_or(d_head),
        scaling: gguf_rope_scaling(m, false)?,
    };
    let cfg = config(dims, rope, &sliding, window, ALPHA, LIMIT);
    checked(cfg, &m.path)
}
