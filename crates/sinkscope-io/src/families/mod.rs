//! One declaration per family: how to read its config (HF and GGUF), its tensor-name tables
//! and load-time transforms. No family has a forward pass of its own.

mod gpt2;
mod gpt_neox;
mod llama;

use crate::error::IoError;
use crate::gguf_meta::GgufMeta;
use crate::hf_config::{HfConfig, HfRope};
use crate::weights::TensorEntry;
use sinkscope_spec::{Activation, Family, LayerSpec, ModelConfig, RopeScaling, RopeSpec};

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
    /// Tensor-name table for safetensors checkpoints.
    pub hf_tensors: &'static [TensorEntry],
    /// Tensor-name table for GGUF files.
    pub gguf_tensors: &'static [TensorEntry],
    /// Suffixes of HF tensors known to be redundant (cached masks, rotary frequencies).
    pub hf_ignored: &'static [&'static str],
}

/// Every declaration.
pub const DECLS: &[FamilyDecl] = &[llama::LLAMA, llama::QWEN2, gpt_neox::GPT_NEOX, gpt2::GPT2];

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
    let r: HfRope = cfg.rope();
    let frac = r.partial_rotary_factor.unwrap_or(1.0);
    if !(frac > 0.0 && frac <= 1.0) {
        return Err(cfg.err("partial_rotary_factor", &format!("{frac} is not in (0, 1]")));
    }
    let rotary_dim = (d_head as f64 * frac) as usize;
    let scaling = match r.rope_type.as_deref() {
        None | Some("default") => RopeScaling::None,
        Some("linear") => RopeScaling::Linear { factor: cfg.req("rope_parameters.factor", r.factor)? },
        Some("llama3") => RopeScaling::Llama3 {
            factor: cfg.req("rope_parameters.factor", r.factor)?,
            low_freq_factor: cfg.req("rope_parameters.low_freq_factor", r.low_freq_factor)?,
            high_freq_factor: cfg.req("rope_parameters.high_freq_factor", r.high_freq_factor)?,
            original_max_position: cfg.req(
                "rope_parameters.original_max_position_embeddings",
                r.original_max_position_embeddings,
            )?,
        },
        Some(other) => {
            return Err(cfg.err("rope_parameters.rope_type", &format!("unsupported rope type '{other}'")))
        }
    };
    Ok(RopeSpec { theta: r.rope_theta.unwrap_or(default_theta), rotary_dim, scaling })
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
