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
    /// Mistral: the Llama dataflow with a sliding window on every layer.
    Mistral,
    /// Qwen3: Llama dataflow plus per-head QK-norm.
    Qwen3,
    /// Phi-3: Llama dataflow with fused QKV and gate/up projections.
    Phi3,
    /// Gemma (1): `(1 + w)` RMSNorm, GeGLU, embeddings scaled by √d.
    Gemma,
    /// Gemma 2: Gemma plus sandwich norms, attention/final soft-capping, local/global layers.
    Gemma2,
    /// Gemma 3 (text): Gemma 2 without soft-capping, with per-head QK-norm and per-layer RoPE bases.
    Gemma3,
    /// OLMo 2: post-only RMSNorm on each sublayer's output, QK-norm over the whole projection.
    Olmo2,
    /// BLOOM: ALiBi, LayerNorm on the embeddings, fused per-head QKV.
    Bloom,
    /// GPT-OSS: learned attention sinks, YaRN RoPE, alternating sliding windows, mixture of experts.
    GptOss,
}

impl Family {
    /// Every supported family, in a fixed order.
    pub const ALL: [Family; 13] = [
        Family::Llama,
        Family::Qwen2,
        Family::GptNeox,
        Family::Gpt2,
        Family::Mistral,
        Family::Qwen3,
        Family::Phi3,
        Family::Gemma,
        Family::Gemma2,
        Family::Gemma3,
        Family::Olmo2,
        Family::Bloom,
        Family::GptOss,
    ];

    /// The family's id as used in reports and in `config.json`'s `model_type`.
    pub fn id(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::GptNeox => "gpt_neox",
            Family::Gpt2 => "gpt2",
            Family::Mistral => "mistral",
            Family::Qwen3 => "qwen3",
            Family::Phi3 => "phi3",
            Family::Gemma => "gemma",
            Family::Gemma2 => "gemma2",
            Family::Gemma3 => "gemma3",
            Family::Olmo2 => "olmo2",
            Family::Bloom => "bloom",
            Family::GptOss => "gpt_oss",
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
    /// Norms on the sublayer input and on its output before the residual add (Gemma 2/3:
    /// "sandwich" norms).
    Sandwich,
    /// Only on the sublayer output before the residual add; the sublayer reads the raw
    /// residual (OLMo 2).
    Post,
}

impl NormPlacement {
    /// Whether each sublayer reads a normalised input.
    pub fn has_pre(self) -> bool {
        matches!(self, NormPlacement::Pre | NormPlacement::Sandwich)
    }

    /// Whether each sublayer's output is normalised before the residual add.
    pub fn has_post(self) -> bool {
        matches!(self, NormPlacement::Sandwich | NormPlacement::Post)
    }
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
    /// Mixture of experts with top-k routing (GPT-OSS): router logits `x Wᵀ + b`, the `top_k`
    /// largest, softmax over those; each chosen expert computes
    /// `down((clamp(up, ±limit) + 1) · g·σ(alpha·g))` with `g = min(gate, limit)` (biases on
    /// every projection); the outputs are summed with the routing weights, experts in
    /// ascending order. `d_mlp` is one expert's hidden width.
    Moe {
        /// Number of experts.
        n_experts: usize,
        /// Experts per token.
        top_k: usize,
        /// The GLU's sigmoid sharpness (GPT-OSS: 1.702).
        alpha: f64,
        /// The clamp on gate and up (GPT-OSS: 7).
        limit: f64,
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
    /// YaRN (transformers' `_compute_yarn_parameters`): frequencies blended between
    /// interpolation and extrapolation over a correction range, cos/sin scaled by
    /// `attention_factor`.
    Yarn {
        /// Context extension factor.
        factor: f64,
        /// The pre-training context length.
        original_max_position: f64,
        /// Rotations at which extrapolation starts (β_fast).
        beta_fast: f64,
        /// Rotations at which interpolation is complete (β_slow).
        beta_slow: f64,
        /// Floor/ceil the correction range (transformers' `truncate`; llama.cpp always does).
        truncate: bool,
        /// Multiplier of cos and sin.
        attention_factor: f64,
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
    /// ALiBi (BLOOM): no position embedding; each head adds `slope_h · j` to its score for
    /// key j, with the geometric slopes of Press et al. (`build_alibi_tensor` in transformers).
    Alibi,
}

/// Normalisation of queries and keys before RoPE ("QK-norm"), with the model's norm kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QkNorm {
    /// None.
    None,
    /// Over each head's `d_head` values, one gain of `[d_head]` shared by the heads (Qwen3, Gemma 3).
    PerHead,
    /// Over the whole projected vector (`[H·dh]` for q, `[KVH·dh]` for k) before the heads are
    /// split (OLMo 2).
    Whole,
}

/// Attention parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AttnSpec {
    /// q, k and v projections have biases.
    pub qkv_bias: bool,
    /// The output projection has a bias.
    pub o_bias: bool,
    /// Multiplier of `q·k` before the softmax (usually `d_head^-0.5`; Gemma:
    /// `query_pre_attn_scalar^-0.5`).
    pub scale: f64,
    /// Normalisation of q and k before RoPE.
    pub qk_norm: QkNorm,
    /// Attention-logit soft-capping `c·tanh(s/c)` after scaling, before the mask (Gemma 2).
    pub softcap: Option<f64>,
    /// A learned per-head sink logit joins each softmax row as an extra column whose
    /// probability is dropped (GPT-OSS): rows of the pattern sum to `1 − sink mass`.
    pub sinks: bool,
}

/// Per-layer attention settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LayerSpec {
    /// Sliding-window size (a query sees at most this many keys, itself included); None = full.
    pub sliding_window: Option<usize>,
    /// This layer's RoPE when it differs from the model's (Gemma 3's local layers: base 10,000).
    pub rope: Option<RopeSpec>,
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
    /// A norm (of the model's kind) on the embeddings before block 0 (BLOOM).
    pub embed_norm: bool,
    /// Final-logit soft-capping `c·tanh(x/c)` (Gemma 2).
    pub final_logit_softcap: Option<f64>,
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
        let ropes = self.layers.iter().filter_map(|l| l.rope);
        for r in ropes.chain(self.rope()) {
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
        for (what, cap) in
            [("attention soft-cap", self.attn.softcap), ("final soft-cap", self.final_logit_softcap)]
        {
            if let Some(c) = cap {
                if !(c.is_finite() && c > 0.0) {
                    return Err(format!("{what} {c} must be positive"));
                }
            }
        }
        if self.layers.iter().any(|l| l.sliding_window == Some(0)) {
            return Err("a sliding window of 0 keys".into());
        }
        if let MlpKind::Moe { n_experts, top_k, .. } = self.mlp {
            if n_experts == 0 || top_k == 0 || top_k > n_experts || n_experts > 1 << 16 {
                return Err(format!("{top_k} of {n_experts} experts per token"));
            }
        }
        Ok(())
    }

    /// The model-wide RoPE, if the model uses rotary positions.
    pub fn rope(&self) -> Option<RopeSpec> {
        match self.positional {
            Positional::Rotary(r) => Some(r),
            _ => None,
        }
    }

    /// The RoPE of block `layer`: its own when it has one, else the model's.
    pub fn layer_rope(&self, layer: usize) -> Option<RopeSpec> {
        self.rope().map(|r| self.layers.get(layer).and_then(|l| l.rope).unwrap_or(r))
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
            MlpKind::Moe { n_experts, .. } => {
                let e = n_experts as u128;
                e * (3 * d * m + 2 * m + d) + e * d + e
            }
        };
        attn += match self.attn.qk_norm {
            QkNorm::None => 0,
            QkNorm::PerHead => 2 * self.d_head as u128,
            QkNorm::Whole => q + kv,
        };
        if self.attn.sinks {
            attn += self.n_heads as u128;
        }
        let norms_per_block = match self.norm_placement {
            NormPlacement::Pre | NormPlacement::Post => 2,
            NormPlacement::Sandwich => 4,
        };
        let block = attn + mlp + norms_per_block * norm_params;
        let emb = self.d_vocab as u128 * d;
        let pos = match self.positional {
            Positional::Learned => self.context_length as u128 * d,
            Positional::Rotary(_) | Positional::Alibi => 0,
        };
        let pos = pos + if self.embed_norm { norm_params } else { 0 };
        let unembed = if self.tied_unembed { 0 } else { emb };
        let total = (self.n_layers as u128).saturating_mul(block) + emb + pos + unembed + norm_params;
        u64::try_from(total).unwrap_or(u64::MAX)
    }
}
