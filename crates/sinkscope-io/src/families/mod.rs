//! One declaration per family: how to read its config (HF and GGUF), its tensor-name tables
//! and load-time transforms. No family has a forward pass of its own.

mod bloom;
mod gemma;
mod gguf_names;
mod gpt2;
mod gpt_neox;
mod gpt_oss;
mod llama;
mod olmo2;

use crate::error::IoError;
use crate::gguf_meta::GgufMeta;
use crate::hf_config::{HfConfig, HfRope};
use crate::weights::TensorEntry;
use sinkscope_spec::{
    Activation, AttnSpec, BlockLayout, Family, LayerSpec, MlpKind, ModelConfig, NormKind, NormPlacement,
    Positional, QkNorm, RopeScaling, RopeSpec,
};

pub use gguf_names::GGUF_NAMES;

/// A family declaration.
pub struct FamilyDecl {
    /// The family.
    pub family: Family,
    /// `config.json` `model_type` values handled.
    pub hf_model_types: &'static [&'static str],
    /// GGUF `general.architecture` values handled.
    pub gguf_archs: &'static [&'static str],
    /// Resolves a raw HF config.
    pub from_hf: fn(&HfConfig) -> Result<ModelConfig, IoError>,
    /// Resolves GGUF metadata.
    pub from_gguf: fn(&GgufMeta) -> Result<ModelConfig, IoError>,
    /// Tensor-name table for safetensors checkpoints (shared by the families that use
    /// transformers' names for it, e.g. the Llama-style table).
    pub hf_base: &'static [TensorEntry],
    /// Entries of `hf_base` whose meaning differs for this family, and names only it uses.
    pub hf_overrides: &'static [TensorEntry],
    /// Entries of [`GGUF_NAMES`] whose meaning differs for this family (same name, other
    /// role or transform), and names only it uses.
    pub gguf_overrides: &'static [TensorEntry],
    /// Suffixes of HF tensors known to be redundant (cached masks, rotary frequencies).
    pub hf_ignored: &'static [&'static str],
}

impl FamilyDecl {
    /// The safetensors tensor-name table: the family's overrides, then its base table.
    pub fn hf_tensors(&self) -> Vec<TensorEntry> {
        merged(self.hf_base, self.hf_overrides)
    }

    /// The GGUF tensor-name table: the family's overrides, then the shared names.
    pub fn gguf_tensors(&self) -> Vec<TensorEntry> {
        merged(GGUF_NAMES, self.gguf_overrides)
    }
}

/// A name table: `overrides` first, then every entry of `base` whose name they do not redefine.
fn merged(base: &[TensorEntry], overrides: &[TensorEntry]) -> Vec<TensorEntry> {
    overrides
        .iter()
        .chain(base.iter().filter(|b| !overrides.iter().any(|o| o.name == b.name)))
        .copied()
        .collect()
}

/// Every declaration.
pub const DECLS: &[FamilyDecl] = &[
    llama::LLAMA,
    llama::QWEN2,
    gpt_neox::GPT_NEOX,
    gpt2::GPT2,
    llama::MISTRAL,
    llama::QWEN3,
    llama::PHI3,
    gemma::GEMMA,
    gemma::GEMMA2,
    gemma::GEMMA3,
    olmo2::OLMO2,
    bloom::BLOOM,
    gpt_oss::GPT_OSS,
];

/// A multimodal checkpoint whose text tower is a supported family: its outer `model_type`,
/// where the text model's tensors live, and the towers that are not run.
pub struct MultimodalWrapper {
    /// The checkpoint's own `model_type` (its `text_config` holds the text model's config).
    pub model_type: &'static str,
    /// `model_type` of the text config when it does not say.
    pub text_model_type: &'static str,
    /// `(prefix in the file, prefix of the text-only names)`, first match wins.
    pub rewrites: &'static [(&'static str, &'static str)],
    /// Prefixes of the tensors of the other towers (not loaded).
    pub skipped: &'static [&'static str],
}

/// Gemma 3's multimodal checkpoints (`Gemma3ForConditionalGeneration`): transformers >= 5
/// names the text model `model.language_model.*`, earlier versions `language_model.model.*`.
pub const MULTIMODAL: &[MultimodalWrapper] = &[MultimodalWrapper {
    model_type: "gemma3",
    text_model_type: "gemma3_text",
    rewrites: &[
        ("model.language_model.", "model."),
        ("language_model.model.", "model."),
        ("language_model.lm_head.", "lm_head."),
    ],
    skipped: &[
        "model.vision_tower.",
        "model.multi_modal_projector.",
        "vision_tower.",
        "multi_modal_projector.",
    ],
}];

/// The declaration handling an HF `model_type`.
pub fn by_hf_model_type(t: &str) -> Option<&'static FamilyDecl> {
    DECLS.iter().find(|d| d.hf_model_types.contains(&t))
}

/// The declaration handling a GGUF architecture.
pub fn by_gguf_arch(a: &str) -> Option<&'static FamilyDecl> {
    DECLS.iter().find(|d| d.gguf_archs.contains(&a))
}

/// The declaration of a family.
pub fn by_family(f: Family) -> Option<&'static FamilyDecl> {
    DECLS.iter().find(|d| d.family == f)
}

/// Comma list of supported names, for errors.
pub fn supported(hf: bool) -> String {
    DECLS
        .iter()
        .flat_map(|d| if hf { d.hf_model_types.iter() } else { d.gguf_archs.iter() })
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

/// An HF activation name as an [`Activation`].
pub(crate) fn hf_activation(cfg: &HfConfig, field: &str, name: &str) -> Result<Activation, IoError> {
    Ok(match name {
        "silu" | "swish" => Activation::Silu,
        "gelu" => Activation::GeluErf,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "relu" => Activation::Relu,
        other => return Err(cfg.err(field, &format!("unsupported activation '{other}'"))),
    })
}

/// Resolves HF rope parameters for a head width: theta, partial rotary, scaling.
pub(crate) fn hf_rope(cfg: &HfConfig, d_head: usize, default_theta: f64) -> Result<RopeSpec, IoError> {
    rope_from(cfg, &cfg.rope()?, d_head, default_theta)
}

/// Resolves one set of HF rope parameters (see [`HfConfig::rope_of`]).
pub(crate) fn rope_from(
    cfg: &HfConfig,
    r: &HfRope,
    d_head: usize,
    default_theta: f64,
) -> Result<RopeSpec, IoError> {
    let frac = r.partial_rotary_factor.unwrap_or(1.0);
    if !(frac > 0.0 && frac <= 1.0) {
        return Err(cfg.err("partial_rotary_factor", &format!("{frac} is not in (0, 1]")));
    }
    let rotary_dim = (d_head as f64 * frac) as usize;
    let factor = || cfg.req("rope_parameters.factor", r.factor);
    let scaling = match r.rope_type.as_deref() {
        None | Some("default") => RopeScaling::None,
        Some("linear") => RopeScaling::Linear { factor: factor()? },
        Some("llama3") => RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: cfg.req("rope_parameters.low_freq_factor", r.low_freq_factor)?,
            high_freq_factor: cfg.req("rope_parameters.high_freq_factor", r.high_freq_factor)?,
            original_max_position: cfg.req(
                "rope_parameters.original_max_position_embeddings",
                r.original_max_position_embeddings,
            )?,
        },
        Some("yarn") => {
            // transformers' `_compute_yarn_parameters`: with an original context length in the
            // rope parameters, the factor is max_position_embeddings / original (DeepSeek-V3
            // and GPT-OSS rely on it); without one, the original is max_position_embeddings.
            let max_pos = cfg.req("max_position_embeddings", cfg.max_position_embeddings)? as f64;
            let (factor, original) = match r.original_max_position_embeddings {
                Some(orig) if orig > 0.0 => (max_pos / orig, orig),
                _ => (factor()?, max_pos),
            };
            // transformers: attention_factor, else the mscale ratio, else 0.1 ln(factor) + 1.
            let mscale = |scale: f64, m: f64| if scale <= 1.0 { 1.0 } else { 0.1 * m * scale.ln() + 1.0 };
            let attention_factor = match (r.attention_factor, r.mscale, r.mscale_all_dim) {
                (Some(a), _, _) => a,
                (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                    mscale(factor, m) / mscale(factor, all)
                }
                _ => mscale(factor, 1.0),
            };
            yarn(
                factor,
                original,
                r.beta_fast.unwrap_or(32.0),
                r.beta_slow.unwrap_or(1.0),
                r.truncate.unwrap_or(true),
                attention_factor,
            )
        }
        Some(other) => {
            return Err(cfg.err(
                "rope_parameters.rope_type",
                &format!("unsupported rope type '{other}' (supported: default, linear, llama3, yarn)"),
            ))
        }
    };
    Ok(RopeSpec { theta: r.rope_theta.unwrap_or(default_theta), rotary_dim, scaling })
}

/// YaRN scaling from its parameters.
pub(crate) fn yarn(
    factor: f64,
    original_max_position: f64,
    beta_fast: f64,
    beta_slow: f64,
    truncate: bool,
    attention_factor: f64,
) -> RopeScaling {
    RopeScaling::Yarn { factor, original_max_position, beta_fast, beta_slow, truncate, attention_factor }
}

/// GGUF rope scaling (`<arch>.rope.scaling.*`); YaRN's `truncate` is not stored (llama.cpp
/// always truncates), so the caller says which convention the family's own config uses.
pub(crate) fn gguf_rope_scaling(m: &GgufMeta, yarn_truncate: bool) -> Result<RopeScaling, IoError> {
    let key = format!("{}.rope.scaling.type", m.arch);
    Ok(match m.file.get_str(&key).ok() {
        None | Some("none") => RopeScaling::None,
        Some("linear") => RopeScaling::Linear { factor: m.f64("rope.scaling.factor")? },
        Some("yarn") => {
            let factor = m.f64("rope.scaling.factor")?;
            let attention_factor = match m.opt_f64("rope.scaling.attn_factor")? {
                Some(a) => a,
                None if factor <= 1.0 => 1.0,
                None => 0.1 * factor.ln() + 1.0,
            };
            yarn(
                factor,
                m.usize("rope.scaling.original_context_length")? as f64,
                m.opt_f64("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0),
                m.opt_f64("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0),
                yarn_truncate,
                attention_factor,
            )
        }
        Some(other) => {
            return Err(m.err(&key, &format!("unsupported '{other}' (supported: none, linear, yarn)")))
        }
    })
}

/// Refuses a config field whose value changes the dataflow in a way sinkscope does not
/// implement: `field` is set and differs from `supported`.
pub(crate) fn refuse_unless<T: PartialEq + std::fmt::Debug>(
    cfg: &HfConfig,
    field: &str,
    value: Option<T>,
    supported: T,
) -> Result<(), IoError> {
    match value {
        Some(v) if v != supported => {
            Err(cfg.err(field, &format!("{v:?} is not supported (only {supported:?})")))
        }
        _ => Ok(()),
    }
}

/// Per-layer specs from the sliding flags: sliding layers get `window` and `local_rope`.
pub(crate) fn layers_from(
    sliding: &[bool],
    window: Option<usize>,
    local_rope: Option<RopeSpec>,
) -> Vec<LayerSpec> {
    sliding
        .iter()
        .map(|&s| match s {
            true => LayerSpec { sliding_window: window, rope: local_rope },
            false => LayerSpec::default(),
        })
        .collect()
}

/// The dimensions the RMSNorm / rotary families read under the same names: from
/// `config.json` (`hidden_size`, `num_attention_heads`, `head_dim`, ...) or from GGUF
/// (`<arch>.embedding_length`, `<arch>.attention.head_count`, `<arch>.attention.key_length`, ...).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_head: usize,
    pub d_mlp: usize,
    pub d_vocab: usize,
    pub context_length: usize,
    /// The RMSNorm epsilon.
    pub eps: f64,
}

impl Dims {
    /// From an HF config (`rms_norm_eps` defaulting to `default_eps`).
    pub(crate) fn from_hf(c: &HfConfig, default_eps: f64) -> Result<Self, IoError> {
        let d_model = c.req("hidden_size", c.hidden_size)?;
        let n_heads = c.req("num_attention_heads", c.num_attention_heads)?;
        if n_heads == 0 {
            return Err(c.err("num_attention_heads", "must be positive"));
        }
        Ok(Dims {
            d_model,
            n_layers: c.req("num_hidden_layers", c.num_hidden_layers)?,
            n_heads,
            n_kv_heads: c.num_key_value_heads.unwrap_or(n_heads),
            d_head: c.head_dim.unwrap_or(d_model / n_heads),
            d_mlp: c.req("intermediate_size", c.intermediate_size)?,
            d_vocab: c.req("vocab_size", c.vocab_size)?,
            context_length: c.req("max_position_embeddings", c.max_position_embeddings)?,
            eps: c.rms_norm_eps.unwrap_or(default_eps),
        })
    }

    /// From GGUF metadata.
    pub(crate) fn from_gguf(m: &GgufMeta) -> Result<Self, IoError> {
        let d_model = m.usize("embedding_length")?;
        let n_heads = m.usize("attention.head_count")?;
        if n_heads == 0 {
            return Err(m.err(&format!("{}.attention.head_count", m.arch), "must be positive"));
        }
        Ok(Dims {
            d_model,
            n_layers: m.usize("block_count")?,
            n_heads,
            n_kv_heads: m.opt_usize("attention.head_count_kv")?.unwrap_or(n_heads),
            d_head: m.opt_usize("attention.key_length")?.unwrap_or(d_model / n_heads),
            d_mlp: m.usize("feed_forward_length")?,
            d_vocab: m.vocab_size()?,
            context_length: m.usize("context_length")?,
            eps: m.f64("attention.layer_norm_rms_epsilon")?,
        })
    }

    /// The GGUF RoPE (`<arch>.rope.freq_base`, `.dimension_count`, `.scaling.*`).
    pub(crate) fn gguf_rope(
        &self,
        m: &GgufMeta,
        default_theta: f64,
        yarn_truncate: bool,
    ) -> Result<RopeSpec, IoError> {
        Ok(RopeSpec {
            theta: m.opt_f64("rope.freq_base")?.unwrap_or(default_theta),
            rotary_dim: m.opt_usize("rope.dimension_count")?.unwrap_or(self.d_head),
            scaling: gguf_rope_scaling(m, yarn_truncate)?,
        })
    }

    /// A pre-RMSNorm (offset 0), sequential, rotary decoder of these dimensions without
    /// biases, extras or windows, and with an untied head: the families set what differs.
    pub(crate) fn rotary_config(&self, family: Family, rope: RopeSpec, mlp: MlpKind) -> ModelConfig {
        ModelConfig {
            family,
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            d_head: self.d_head,
            d_mlp: self.d_mlp,
            d_vocab: self.d_vocab,
            context_length: self.context_length,
            norm: NormKind::RmsNorm { eps: self.eps, weight_offset: 0.0 },
            norm_placement: NormPlacement::Pre,
            block_layout: BlockLayout::Sequential,
            positional: Positional::Rotary(rope),
            mlp,
            attn: AttnSpec {
                qkv_bias: false,
                o_bias: false,
                scale: 1.0 / (self.d_head as f64).sqrt(),
                qk_norm: QkNorm::None,
                softcap: None,
                sinks: false,
            },
            layers: full_layers(self.n_layers),
            embed_scale: None,
            embed_norm: false,
            final_logit_softcap: None,
            tied_unembed: false,
        }
    }
}

/// Full-attention layer specs. Capped just past [`sinkscope_spec::MAX_LAYERS`] so that an
/// absurd block count read from a file is rejected by `ModelConfig::validate` instead of
/// allocating first (found by fuzzing: `block_count = 2^40` aborted on a 16 TB allocation).
pub(crate) fn full_layers(n: usize) -> Vec<LayerSpec> {
    vec![LayerSpec::default(); n.min(sinkscope_spec::MAX_LAYERS + 1)]
}

/// Validates a resolved config and attributes a failure to the file.
pub(crate) fn checked(cfg: ModelConfig, path: &std::path::Path) -> Result<ModelConfig, IoError> {
    cfg.validate().map_err(|reason| IoError::Config {
        path: path.to_path_buf(),
        field: "(dimensions)".into(),
        reason,
    })?;
    Ok(cfg)
}
