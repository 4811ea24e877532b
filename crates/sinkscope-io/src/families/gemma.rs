//! Gemma 1, 2 and 3 (text): `(1 + w)` RMSNorm, GeGLU (tanh), embeddings scaled by √d; Gemma 2
//! adds sandwich norms, attention-logit and final-logit soft-capping and alternating
//! local/global layers; Gemma 3 drops the soft-capping, adds per-head QK-norm and gives local
//! layers their own RoPE base.
//!
//! GGUF stores every Gemma norm gain as `w + 1` already (convert_hf_to_gguf.py adds the one),
//! so the weight offset is 1 for safetensors and 0 for GGUF. Neither the Gemma 3 layer pattern
//! nor its local RoPE base is always in the file: we follow llama.cpp and transformers
//! (every 6th layer global, local base 10,000) and record the resolved per-layer spec in the
//! config, hence in every manifest.

use super::{checked, hf_activation, layers_from, refuse_unless, rope_from, Dims, FamilyDecl};
use crate::error::IoError;
use crate::gguf_meta::GgufMeta;
use crate::hf_config::HfConfig;
use crate::weights::{TensorEntry, TensorRole as R};
use sinkscope_spec::*;

/// Gemma (1).
pub const GEMMA: FamilyDecl = FamilyDecl {
    family: Family::Gemma,
    hf_model_types: &["gemma"],
    gguf_archs: &["gemma"],
    from_hf: |c| from_hf(c, Family::Gemma),
    from_gguf: |m| from_gguf(m, Family::Gemma),
    hf_base: super::llama::HF,
    hf_overrides: &[],
    gguf_overrides: &[],
    hf_ignored: &["rotary_emb.inv_freq"],
};

/// Gemma 2.
pub const GEMMA2: FamilyDecl = FamilyDecl {
    family: Family::Gemma2,
    hf_model_types: &["gemma2"],
    gguf_archs: &["gemma2"],
    from_hf: |c| from_hf(c, Family::Gemma2),
    from_gguf: |m| from_gguf(m, Family::Gemma2),
    hf_base: super::llama::HF,
    hf_overrides: HF_SANDWICH,
    gguf_overrides: &[],
    hf_ignored: &["rotary_emb.inv_freq"],
};

/// Gemma 3 (text tower; `Gemma3ForCausalLM` / `gemma3_text`).
pub const GEMMA3: FamilyDecl = FamilyDecl {
    family: Family::Gemma3,
    hf_model_types: &["gemma3_text"],
    gguf_archs: &["gemma3"],
    from_hf: |c| from_hf(c, Family::Gemma3),
    from_gguf: |m| from_gguf(m, Family::Gemma3),
    hf_base: super::llama::HF,
    hf_overrides: HF_SANDWICH,
    gguf_overrides: &[],
    hf_ignored: &["rotary_emb.inv_freq", "rotary_emb_local.inv_freq"],
};

const fn e(name: &'static str, roles: &'static [R]) -> TensorEntry {
    TensorEntry { name, transforms: &[], roles }
}

/// transformers' Gemma 2/3 names on top of the Llama-style table: `post_attention_layernorm`
/// is the norm on the attention output, not the MLP's pre-norm as in Llama (that is
/// `pre_feedforward_layernorm`). Gemma 1 uses the Llama table as it is.
const HF_SANDWICH: &[TensorEntry] = &[
    e("model.layers.{i}.post_attention_layernorm.weight", &[R::PostAttnNormW]),
    e("model.layers.{i}.pre_feedforward_layernorm.weight", &[R::MlpNormW]),
    e("model.layers.{i}.post_feedforward_layernorm.weight", &[R::PostMlpNormW]),
];

/// The Gemma axes on top of the shared rotary config: `(1 + w)` norms (`weight_offset`),
/// GeGLU, embeddings × √d, tied head, sandwich norms (Gemma 2/3), per-head QK-norm (Gemma 3).
fn base(family: Family, d: Dims, weight_offset: f32, act: Activation, rope: RopeSpec) -> ModelConfig {
    let mut cfg = d.rotary_config(family, rope, MlpKind::Gated { act, bias: false });
    cfg.norm = NormKind::RmsNorm { eps: d.eps, weight_offset };
    if family != Family::Gemma {
        cfg.norm_placement = NormPlacement::Sandwich;
    }
    if family == Family::Gemma3 {
        cfg.attn.qk_norm = QkNorm::PerHead;
    }
    // transformers: `hidden_size ** 0.5` as a tensor of the activations' dtype (f32).
    cfg.embed_scale = Some((d.d_model as f32).sqrt());
    cfg.tied_unembed = true;
    cfg
}

fn from_hf(c: &HfConfig, family: Family) -> Result<ModelConfig, IoError> {
    refuse_unless(c, "use_bidirectional_attention", c.use_bidirectional_attention, false)?;
    refuse_unless(c, "attention_bias", c.attention_bias, false)?;
    let dims = Dims::from_hf(c, 1e-6)?;
    let (d_head, n_layers) = (dims.d_head, dims.n_layers);
    // transformers: Gemma 1 reads `hidden_act` and maps the legacy "gelu" of the official
    // releases to the tanh approximation (GemmaConfig.__post_init__); Gemma 2/3 read
    // `hidden_activation`.
    let act = match family {
        Family::Gemma => match c.hidden_act.as_deref().unwrap_or("gelu_pytorch_tanh") {
            "gelu" => Activation::GeluTanh,
            other => hf_activation(c, "hidden_act", other)?,
        },
        _ => hf_activation(
            c,
            "hidden_activation",
            c.hidden_activation.as_deref().unwrap_or("gelu_pytorch_tanh"),
        )?,
    };
    let (global_rope, local_rope) = match family {
        Family::Gemma3 => {
            let per_type = c.rope_parameters.as_ref().is_some_and(|v| v.get("full_attention").is_some());
            let global = rope_from(c, &c.rope_of(Some("full_attention"))?, d_head, 10000.0)?;
            let local = if per_type {
                rope_from(c, &c.rope_of(Some("sliding_attention"))?, d_head, 10000.0)?
            } else {
                // Older configs: rope_theta + rope_scaling for the global layers,
                // rope_local_base_freq (default 10,000) and no scaling for the local ones.
                RopeSpec {
                    theta: c.rope_local_base_freq.unwrap_or(10000.0),
                    rotary_dim: global.rotary_dim,
                    scaling: RopeScaling::None,
                }
            };
            (global, Some(local))
        }
        _ => (rope_from(c, &c.rope()?, d_head, 10000.0)?, None),
    };
    let mut cfg = base(family, dims, 1.0, act, global_rope);
    cfg.tied_unembed = c.tie_word_embeddings.unwrap_or(true);
    if family != Family::Gemma {
        cfg.attn.scale = 1.0 / c.req("query_pre_attn_scalar", c.query_pre_attn_scalar)?.sqrt();
        let default_pattern = if family == Family::Gemma2 { 2 } else { 6 };
        let sliding = c.layer_types(n_layers, Some(default_pattern))?;
        let window = c.req("sliding_window", c.sliding_window)?;
        cfg.layers = layers_from(&sliding, Some(window), local_rope);
    }
    if family == Family::Gemma2 {
        cfg.attn.softcap = c.attn_logit_softcapping;
        cfg.final_logit_softcap = c.final_logit_softcapping;
    } else {
        refuse_unless(c, "attn_logit_softcapping", c.attn_logit_softcapping, 0.0)?;
        refuse_unless(c, "final_logit_softcapping", c.final_logit_softcapping, 0.0)?;
    }
    checked(cfg, &c.path)
}

fn from_gguf(m: &GgufMeta, family: Family) -> Result<ModelConfig, IoError> {
    let dims = Dims::from_gguf(m)?;
    let (d_model, n_heads, n_layers) = (dims.d_model, dims.n_heads, dims.n_layers);
    let rope = dims.gguf_rope(m, 10000.0, true)?;
    // GGUF norms hold `w + 1` already: no offset. GELU (tanh) is not recorded; it is Gemma's.
    let mut cfg = base(family, dims, 0.0, Activation::GeluTanh, rope);
    cfg.tied_unembed = !m.has_tensor("output.weight");
    if family == Family::Gemma {
        return checked(cfg, &m.path);
    }
    // llama.cpp (llama-model.cpp, LLM_ARCH_GEMMA2/3): 1/√d_head, except the 27B models
    // (46 / 62 blocks), which use 1/√(d_model / n_heads) as their query_pre_attn_scalar says.
    let is_27b = (family == Family::Gemma2 && n_layers == 46) || (family == Family::Gemma3 && n_layers == 62);
    if is_27b {
        cfg.attn.scale = 1.0 / ((d_model / n_heads) as f64).sqrt();
    }
    let window = m.usize("attention.sliding_window")?;
    let (pattern, local_rope) = match family {
        Family::Gemma2 => (2, None),
        _ => {
            let local = RopeSpec {
                theta: m.opt_f64("rope.freq_base_swa")?.unwrap_or(10000.0),
                rotary_dim: rope.rotary_dim,
                scaling: RopeScaling::None,
            };
            (6, Some(local))
        }
    };
    // An explicit per-layer pattern (`<arch>.attention.sliding_window_pattern`, bools, as
    // llama.cpp reads it) wins over the convention.
    let key = format!("{}.attention.sliding_window_pattern", m.arch);
    let sliding: Vec<bool> = match m.file.metadata().get(&key) {
        Some(_) => {
            let flags = m.file.get_bool_array(&key)?;
            if flags.len() != n_layers {
                return Err(m.err(&key, &format!("{} entries for {n_layers} blocks", flags.len())));
            }
            flags
        }
        None => (0..n_layers.min(MAX_LAYERS + 1)).map(|i| (i + 1) % pattern != 0).collect(),
    };
    cfg.layers = layers_from(&sliding, Some(window), local_rope);
    if family == Family::Gemma2 {
        cfg.attn.softcap = m.opt_f64("attn_logit_softcapping")?;
        cfg.final_logit_softcap = m.opt_f64("final_logit_softcapping")?;
    }
    checked(cfg, &m.path)
}
