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
    /// YaRN.
    pub beta_fast: Option<f64>,
    /// YaRN.
    pub beta_slow: Option<f64>,
    /// YaRN: floor/ceil the correction range (transformers' default true).
    pub truncate: Option<bool>,
    /// YaRN / LongRoPE: multiplier of cos and sin.
    pub attention_factor: Option<f64>,
    /// YaRN (DeepSeek style).
    pub mscale: Option<f64>,
    /// YaRN (DeepSeek style).
    pub mscale_all_dim: Option<f64>,
    /// LongRoPE.
    pub short_factor: Option<Vec<f64>>,
    /// LongRoPE.
    pub long_factor: Option<Vec<f64>>,
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
    /// One set of parameters, or one per layer type (`{"full_attention": {..}, ..}`, Gemma 3).
    pub rope_parameters: Option<serde_json::Value>,
    pub rope_scaling: Option<serde_json::Value>,
    pub rope_local_base_freq: Option<f64>,
    pub query_pre_attn_scalar: Option<f64>,
    pub attn_logit_softcapping: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    pub hidden_activation: Option<String>,
    pub layer_types: Option<Vec<String>>,
    pub sliding_window_pattern: Option<usize>,
    #[serde(rename = "_sliding_window_pattern")]
    pub sliding_window_pattern_private: Option<usize>,
    pub max_window_layers: Option<usize>,
    pub use_bidirectional_attention: Option<bool>,
    pub num_local_experts: Option<usize>,
    pub num_experts_per_tok: Option<usize>,
    pub swiglu_limit: Option<f64>,
    pub swiglu_alpha: Option<f64>,
    pub apply_residual_connection_post_layernorm: Option<bool>,
    pub seq_length: Option<usize>,
    pub original_max_position_embeddings: Option<usize>,
    pub attention_dropout: Option<f64>,
    pub qk_layernorm: Option<bool>,
    /// Multimodal checkpoints (Gemma 3): the text tower's config.
    pub text_config: Option<Box<HfConfig>>,
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
    pub fn rope(&self) -> Result<HfRope, IoError> {
        self.rope_of(None)
    }

    /// The RoPE parameters of one layer type (`full_attention`, `sliding_attention`) when the
    /// config gives them per layer type (transformers >= 5 for Gemma 3), else the model's.
    pub fn rope_of(&self, layer_type: Option<&str>) -> Result<HfRope, IoError> {
        let (field, value) = match (&self.rope_parameters, &self.rope_scaling) {
            (Some(v), _) => ("rope_parameters", Some(v)),
            (None, Some(v)) => ("rope_scaling", Some(v)),
            (None, None) => ("rope_parameters", None),
        };
        let value = match (value, layer_type) {
            (Some(serde_json::Value::Object(m)), Some(t))
                if m.values().all(|v| v.is_object()) && !m.is_empty() =>
            {
                Some(m.get(t).ok_or_else(|| self.err(field, &format!("no entry for layer type '{t}'")))?)
            }
            (v, _) => v,
        };
        let mut r: HfRope = match value {
            None | Some(serde_json::Value::Null) => HfRope::default(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| self.err(field, &e.to_string()))?,
        };
        if r.rope_theta.is_none() {
            r.rope_theta = self.rope_theta.or(self.rotary_emb_base);
        }
        if r.partial_rotary_factor.is_none() {
            r.partial_rotary_factor = self.partial_rotary_factor.or(self.rotary_pct);
        }
        Ok(r)
    }

    /// The per-layer attention types (`sliding_attention` / `full_attention`): `layer_types`
    /// when given, else the pattern `sliding_window_pattern` (every n-th layer full), else
    /// `default_pattern`; `None` as pattern means every layer full.
    pub fn layer_types(&self, n_layers: usize, default_pattern: Option<usize>) -> Result<Vec<bool>, IoError> {
        if let Some(t) = &self.layer_types {
            if t.len() != n_layers {
                return Err(self.err("layer_types", &format!("{} entries for {n_layers} layers", t.len())));
            }
            return t
                .iter()
                .map(|x| match x.as_str() {
                    "sliding_attention" => Ok(true),
                    "full_attention" => Ok(false),
                    other => Err(self.err("layer_types", &format!("unsupported layer type '{other}'"))),
                })
                .collect();
        }
        let pattern = self.sliding_window_pattern.or(self.sliding_window_pattern_private).or(default_pattern);
        Ok((0..n_layers.min(sinkscope_spec::MAX_LAYERS + 1))
            .map(|i| pattern.is_some_and(|p| p > 0 && (i + 1) % p != 0))
            .collect())
    }
}
