//! The declarative model description: one struct of axis enums that every family resolves to.
//!
//! Shared code never asks "which family is this?": every architectural difference arrives as a
//! field of [`ModelConfig`]. A new *parameter* is a field on an existing axis; a new *dataflow*
//! is a new enum variant, implemented once in the model crate.

use serde::{Deserialize, Serialize};

/// Model family, detected from `config.json`'s `model_type` or GGUF's `general.architecture`.
///
/// The family only selects a declaration (config parser, tensor-name table, load transforms);
/// the forward pass never branches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Llama 1/2/3, SmolLM2, Mistral-style dense models.
    Llama,
    /// Qwen2 / Qwen2.5 (q/k/v bias, often tied embeddings).
    Qwen2,
    /// GPT-NeoX / Pythia (parallel residual, partial rotary, fused per-head QKV).
    GptNeox,
    /// GPT-2 (learned positions, Conv1D weights).
    Gpt2,
}

impl Family {
    /// Every supported family, in a fixed order.
    pub const ALL: [Family; 4] = [Family::Llama, Family::Qwen2, Family::GptNeox, Family::Gpt2];

    /// The family's id as used in reports and in `config.json`'s `model_type`.
    pub fn id(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::GptNeox => "gpt_neox",
            Family::Gpt2 => "gpt2",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// Normalisation layer kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NormKind {
    /// `(x - mean) / sqrt(var + eps) * w (+ b)`.
    LayerNorm {
        /// Variance epsilon.
        eps: f64,
        /// Whether the norm has an additive bias.
        bias: bool,
    },
    /// `x * rsqrt(mean(x^2) + eps) * (w + weight_offset)` (Gemma: offset 1.0).
    RmsNorm {
        /// Epsilon inside the square root.
        eps: f64,
        /// Added to the stored gain before use.
        weight_offset: f32,
    },
}

/// Where a block's norms sit relative to its sublayers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormPlacement {
    /// Norm on the sublayer input (Llama, GPT-2, ...).
    Pre,
}

/// How attention and MLP combine with the residual stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockLayout {
    /// `mid = x + attn(ln1(x)); out = mid + mlp(ln2(mid))`.
    Sequential,
    /// `out = x + attn(ln1(x)) + mlp(ln2(x))` (GPT-NeoX, GPT-J).
    Parallel,
}

/// Element-wise activation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x * sigmoid(x)`.
    Silu,
    /// Exact GELU `x/2 * (1 + erf(x/sqrt 2))`.
    GeluErf,
    /// tanh-approximated GELU (GPT-2 `gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// `max(x, 0)`.
    Relu,
}

/// MLP dataflow.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MlpKind {
    /// `down(act(up(x)))`.
    Plain {
        /// Activation between the projections.
        act: Activation,
        /// Whether both projections have biases.
        bias: bool,
    },
    /// `down(act(gate(x)) * up(x))` (SwiGLU, GeGLU).
    Gated {
        /// Activation applied to the gate.
        act: Activation,
        /// Whether the projections have biases.
        bias: bool,
    },
}

/// Rotary-embedding frequency scaling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Position interpolation: frequencies divided by `factor`.
    Linear {
        /// Scaling factor.
        factor: f64,
    },
    /// Llama 3 wavelength-dependent scaling.
    Llama3 {
        /// Scaling factor for long wavelengths.
        factor: f64,
        /// Wavelengths above `original / low_freq_factor` are fully scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original / high_freq_factor` are untouched.
        high_freq_factor: f64,
        /// The pre-training context length.
        original_max_position: f64,
    },
}

/// Rotary positional embedding parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RopeSpec {
    /// Base frequency θ.
    pub theta: f64,
    /// Number of leading dimensions of each head that are rotated (GPT-NeoX: a fraction of d_head).
    pub rotary_dim: usize,
    /// Frequency scaling.
    pub scaling: RopeScaling,
}

/// Positional scheme.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Positional {
    /// Learned absolute position embeddings added to the token embeddings (GPT-2).
    Learned,
    /// Rotary embeddings applied to q and k in HF's rotate-half layout
    /// (dims i and i + rotary_dim/2 of a head form a pair).
    Rotary(RopeSpec),
}

/// Attention parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AttnSpec {
    /// q, k and v projections have biases.
    pub qkv_bias: bool,
    /// The output projection has a bias.
    pub o_bias: bool,
    /// Multiplier of `q·k` before the softmax (usually `d_head^-0.5`).
    pub scale: f64,
}

/// Per-layer attention settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LayerSpec {
    /// Sliding-window size (a query sees at most this many keys, itself included); None = full.
    pub sliding_window: Option<usize>,
}

/// The most blocks [`ModelConfig::validate`] accepts (real models have at most a few hundred);
/// a block count from a corrupt file must fail here, not allocate per-block tables first.
pub const MAX_LAYERS: usize = 1 << 16;

/// The resolved, family-independent description of a decoder-only model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The family whose declaration produced this config (informational only).
    pub family: Family,
    /// Residual width d.
    pub d_model: usize,
    /// Number of blocks L.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (GQA when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub d_head: usize,
    /// MLP hidden width.
    pub d_mlp: usize,
    /// Vocabulary size (rows of the embedding).
    pub d_vocab: usize,
    /// Maximum context length in tokens.
    pub context_length: usize,
    /// Norm kind used by every norm of the model.
    pub norm: NormKind,
    /// Norm placement inside blocks.
    pub norm_placement: NormPlacement,
    /// Sequential or parallel residual.
    pub block_layout: BlockLayout,
    /// Positional scheme.
    pub positional: Positional,
    /// MLP dataflow.
    pub mlp: MlpKind,
    /// Attention parameters.
    pub attn: AttnSpec,
    /// One entry per block.
    pub layers: Vec<LayerSpec>,
    /// Multiplier applied to the token embeddings (Gemma: sqrt(d)).
    pub embed_scale: Option<f32>,
    /// The unembedding reuses the token-embedding matrix.
    pub tied_unembed: bool,
}

impl ModelConfig {
    /// Number of query heads sharing one key/value head.
    pub fn gqa_group(&self) -> usize {
        self.n_heads / self.n_kv_heads.max(1)
    }

    /// Checks the internal consistency of the dimensions; `source` names the file for errors.
    pub fn validate(&self) -> Result<(), String> {
        let nz = [
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("d_head", self.d_head),
            ("d_mlp", self.d_mlp),
            ("d_vocab", self.d_vocab),
            ("context_length", self.context_length),
        ];
        for (name, v) in nz {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
            if v > 1 << 24 {
                return Err(format!("{name} = {v} is implausibly large"));
            }
        }
        if self.n_layers > MAX_LAYERS {
            return Err(format!("n_layers = {} is implausibly large (at most {MAX_LAYERS})", self.n_layers));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(format!(
                "n_heads ({}) is not a multiple of n_kv_heads ({})",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.layers.len() != self.n_layers {
            return Err(format!("{} per-layer entries for {} layers", self.layers.len(), self.n_layers));
        }
        if let Positional::Rotary(r) = self.positional {
            if r.rotary_dim == 0 || r.rotary_dim > self.d_head || !r.rotary_dim.is_multiple_of(2) {
                return Err(format!("rotary_dim {} must be even and in 1..={}", r.rotary_dim, self.d_head));
            }
            if !(r.theta.is_finite() && r.theta > 0.0) {
                return Err(format!("rope theta {} must be positive", r.theta));
            }
        }
        if !(self.attn.scale.is_finite() && self.attn.scale > 0.0) {
            return Err(format!("attention scale {} must be positive", self.attn.scale));
        }
        Ok(())
    }

    /// Total parameter count implied by the config (embeddings counted once when tied).
    /// Computed in u128 and saturated to u64: a validated config can still multiply past
    /// u64 (2^16 layers of 2^24 x 2^24 matrices), and a count must never panic.
    pub fn parameter_count(&self) -> u64 {
        let d = self.d_model as u128;
        let q = self.n_heads as u128 * self.d_head as u128;
        let kv = self.n_kv_heads as u128 * self.d_head as u128;
        let m = self.d_mlp as u128;
        let norm_params = match self.norm {
            NormKind::LayerNorm { bias: true, .. } => 2 * d,
            _ => d,
        };
        let mut attn = d * (q + 2 * kv) + q * d;
        if self.attn.qkv_bias {
            attn += q + 2 * kv;
        }
        if self.attn.o_bias {
            attn += d;
        }
        let mlp = match self.mlp {
            MlpKind::Plain { bias, .. } => 2 * d * m + if bias { m + d } else { 0 },
            MlpKind::Gated { bias, .. } => 3 * d * m + if bias { 2 * m + d } else { 0 },
        };
        let block = attn + mlp + 2 * norm_params;
        let emb = self.d_vocab as u128 * d;
        let pos = match self.positional {
            Positional::Learned => self.context_length as u128 * d,
            Positional::Rotary(_) => 0,
        };
        let unembed = if self.tied_unembed { 0 } else { emb };
        let total = (self.n_layers as u128).saturating_mul(block) + emb + pos + unembed + norm_params;
        u64::try_from(total).unwrap_or(u64::MAX)
    }
}
