//! Hugging Face `config.json`, read with HF's own field names (the raw struct), before a family
//! declaration resolves it into a [`sinkscope_spec::ModelConfig`].

use crate::error::IoError;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// RoPE parameters as HF writes them (`rope_parameters` in transformers >= 5, `rope_scaling`
/// before).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct HfRope {
    /// Base frequency.
    pub rope_theta: Option<f64>,
    /// `default`, `linear`, `llama3`, ...
    #[serde(alias = "type")]
    pub rope_type: Option<String>,
    /// Scaling factor.
    pub factor: Option<f64>,
    /// Llama 3.
    pub low_freq_factor: Option<f64>,
    /// Llama 3.
    pub high_freq_factor: Option<f64>,
    /// Llama 3.
    pub original_max_position_embeddings: Option<f64>,
    /// Fraction of each head that is rotated.
    pub partial_rotary_factor: Option<f64>,
}

/// The union of the `config.json` fields the supported families use, with HF's names.
#[derive(Debug, Clone, Deserialize, Default)]
#[allow(missing_docs)]
pub struct HfConfig {
    pub model_type: Option<String>,
    pub architectures: Option<Vec<String>>,
    pub hidden_size: Option<usize>,
    pub n_embd: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub n_layer: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub n_head: Option<usize>,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub n_inner: Option<usize>,
    pub vocab_size: Option<usize>,
    pub max_position_embeddings: Option<usize>,
    pub n_positions: Option<usize>,
    pub rms_norm_eps: Option<f64>,
    pub layer_norm_eps: Option<f64>,
    pub layer_norm_epsilon: Option<f64>,
    pub hidden_act: Option<String>,
    pub activation_function: Option<String>,
    pub rope_theta: Option<f64>,
    pub rotary_emb_base: Option<f64>,
    pub rope_parameters: Option<HfRope>,
    pub rope_scaling: Option<HfRope>,
    pub rotary_pct: Option<f64>,
    pub partial_rotary_factor: Option<f64>,
    pub attention_bias: Option<bool>,
    pub mlp_bias: Option<bool>,
    pub tie_word_embeddings: Option<bool>,
    pub use_parallel_residual: Option<bool>,
    pub use_sliding_window: Option<bool>,
    pub sliding_window: Option<usize>,
    pub scale_attn_weights: Option<bool>,
    pub scale_attn_by_inverse_layer_idx: Option<bool>,
    pub reorder_and_upcast_attn: Option<bool>,
    #[serde(skip)]
    pub path: PathBuf,
}

impl HfConfig {
    /// Reads and parses `dir/config.json`; a wrong field type names the field.
    pub fn read(dir: &Path) -> Result<HfConfig, IoError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                IoError::NotAModel { path: dir.to_path_buf(), reason: "no config.json in the folder".into() }
            } else {
                IoError::Os { path: path.clone(), source }
            }
        })?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let mut cfg: HfConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            // serde_path_to_error says "?" or "." when the text is not JSON at all.
            let field = match e.path().to_string() {
                p if p == "?" || p == "." || p.is_empty() => "(JSON syntax)".to_string(),
                p => p,
            };
            IoError::Config { path: path.clone(), field, reason: e.inner().to_string() }
        })?;
        cfg.path = path;
        Ok(cfg)
    }

    /// A required field, or an error naming it.
    pub fn req<T: Copy>(&self, name: &str, v: Option<T>) -> Result<T, IoError> {
        v.ok_or_else(|| self.err(name, "missing required field"))
    }

    /// An error about a field of this config.
    pub fn err(&self, field: &str, reason: &str) -> IoError {
        IoError::Config { path: self.path.clone(), field: field.into(), reason: reason.into() }
    }

    /// The RoPE parameters, from `rope_parameters` or the older `rope_scaling` + `rope_theta`.
    pub fn rope(&self) -> HfRope {
        let mut r = self.rope_parameters.clone().or_else(|| self.rope_scaling.clone()).unwrap_or_default();
        if r.rope_theta.is_none() {
            r.rope_theta = self.rope_theta.or(self.rotary_emb_base);
        }
        if r.partial_rotary_factor.is_none() {
            r.partial_rotary_factor = self.partial_rotary_factor.or(self.rotary_pct);
        }
        r
    }
}
