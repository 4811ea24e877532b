//! The generated model: shapes, the tensor list, and the values of every row (random, with a
//! planted massive activation), defined once for both output formats.
//!
//! Every row is a pure function of (seed, tensor, HF row index), so the GGUF and the
//! safetensors written with one seed are the same model up to quantisation / bf16 rounding,
//! and rows can be produced in any order without holding a tensor in memory.
//!
//! The plant (see [`Plant`]): the BOS embedding row is `4·√d·u` for a random unit vector `u`
//! (other rows: i.i.d. ≈ N(0, 1) entries, nearly orthogonal to `u`); in block `plant.block`
//! (0-based) MLP hidden unit `plant.unit` has gate and up rows `α·u` with `α = 8/√d`, and the
//! down projection writes `w = 100·√d / 64` from that unit into residual dimension
//! `plant.dim`. After the block's RMSNorm the BOS position is ≈ `√d·u`, so its gate and up
//! pre-activations are ≈ 8 and the unit's output is ≈ silu(8)·8 ≈ 64; the BOS residual gains
//! ≈ `100·√d` in `plant.dim`, about 100 times the other positions' norm (≈ √d). Other positions
//! have `u·x ~ N(0, 1)`, so their pre-activations are ≈ `8/√d·N(0, 1)` and the unit stays quiet.

use super::rng::{row_rng, tensor_seed};

/// A model shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub name: &'static str,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_mlp: usize,
    pub vocab: usize,
    pub rope_theta: f64,
    pub context: usize,
    pub eps: f64,
    pub plant: Plant,
}

/// Where the massive activation is planted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plant {
    /// 0-based block whose MLP writes it (reported by `profile` as block/layer `block + 1`).
    pub block: usize,
    /// The MLP hidden unit.
    pub unit: usize,
    /// The residual dimension.
    pub dim: usize,
}

impl Shape {
    pub fn d_head(&self) -> usize {
        self.d_model / self.n_heads
    }
    /// BOS id (Llama 3: 128000 = vocab − 256); EOS is the next id.
    pub fn bos_id(&self) -> usize {
        self.vocab - 256
    }
    pub fn eos_id(&self) -> usize {
        self.bos_id() + 1
    }
    /// The weight-parameter count.
    pub fn n_params(&self) -> u64 {
        tensors(self).iter().map(|t| (t.rows * t.cols) as u64).sum()
    }
}

/// The shapes known to the generator.
pub const SHAPES: [Shape; 3] = [
    Shape {
        name: "tiny",
        n_layers: 4,
        d_model: 256,
        n_heads: 4,
        n_kv_heads: 2,
        d_mlp: 512,
        vocab: 1024,
        rope_theta: 10000.0,
        context: 256,
        eps: 1e-5,
        plant: Plant { block: 1, unit: 100, dim: 17 },
    },
    Shape {
        name: "llama3-8b",
        n_layers: 32,
        d_model: 4096,
        n_heads: 32,
        n_kv_heads: 8,
        d_mlp: 14336,
        vocab: 128256,
        rope_theta: 500000.0,
        context: 8192,
        eps: 1e-5,
        plant: Plant { block: 1, unit: 7890, dim: 788 },
    },
    Shape {
        name: "llama3-70b",
        n_layers: 80,
        d_model: 8192,
        n_heads: 64,
        n_kv_heads: 8,
        d_mlp: 28672,
        vocab: 128256,
        rope_theta: 500000.0,
        context: 8192,
        eps: 1e-5,
        plant: Plant { block: 1, unit: 7890, dim: 1512 },
    },
];

/// The shape called `name`.
pub fn shape(name: &str) -> Option<Shape> {
    SHAPES.iter().copied().find(|s| s.name == name)
}

/// What a tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Embed,
    AttnNorm,
    Q,
    K,
    V,
    O,
    FfnNorm,
    Gate,
    Up,
    Down,
    FinalNorm,
    Output,
}

/// One tensor, in Hugging Face orientation (`rows` = output features, `cols` = input
/// features; norms are one row).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub kind: Kind,
    /// Block index (0 for the non-block tensors).
    pub layer: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Tensor {
    pub fn is_norm(&self) -> bool {
        matches!(self.kind, Kind::AttnNorm | Kind::FfnNorm | Kind::FinalNorm)
    }

    /// The Hugging Face name.
    pub fn hf_name(&self) -> String {
        let l = self.layer;
        match self.kind {
            Kind::Embed => "model.embed_tokens.weight".into(),
            Kind::AttnNorm => format!("model.layers.{l}.input_layernorm.weight"),
            Kind::Q => format!("model.layers.{l}.self_attn.q_proj.weight"),
            Kind::K => format!("model.layers.{l}.self_attn.k_proj.weight"),
            Kind::V => format!("model.layers.{l}.self_attn.v_proj.weight"),
            Kind::O => format!("model.layers.{l}.self_attn.o_proj.weight"),
            Kind::FfnNorm => format!("model.layers.{l}.post_attention_layernorm.weight"),
            Kind::Gate => format!("model.layers.{l}.mlp.gate_proj.weight"),
            Kind::Up => format!("model.layers.{l}.mlp.up_proj.weight"),
            Kind::Down => format!("model.layers.{l}.mlp.down_proj.weight"),
            Kind::FinalNorm => "model.norm.weight".into(),
            Kind::Output => "lm_head.weight".into(),
        }
    }

    /// The GGUF (llama.cpp) name.
    pub fn gguf_name(&self) -> String {
        let l = self.layer;
        match self.kind {
            Kind::Embed => "token_embd.weight".into(),
            Kind::AttnNorm => format!("blk.{l}.attn_norm.weight"),
            Kind::Q => format!("blk.{l}.attn_q.weight"),
            Kind::K => format!("blk.{l}.attn_k.weight"),
            Kind::V => format!("blk.{l}.attn_v.weight"),
            Kind::O => format!("blk.{l}.attn_output.weight"),
            Kind::FfnNorm => format!("blk.{l}.ffn_norm.weight"),
            Kind::Gate => format!("blk.{l}.ffn_gate.weight"),
            Kind::Up => format!("blk.{l}.ffn_up.weight"),
            Kind::Down => format!("blk.{l}.ffn_down.weight"),
            Kind::FinalNorm => "output_norm.weight".into(),
            Kind::Output => "output.weight".into(),
        }
    }
}

/// Every tensor of the model, in llama.cpp's file order.
pub fn tensors(s: &Shape) -> Vec<Tensor> {
    let d = s.d_model;
    let kv = s.n_kv_heads * s.d_head();
    let t = |kind, layer, rows, cols| Tensor { kind, layer, rows, cols };
    let mut v = vec![t(Kind::Embed, 0, s.vocab, d)];
    for l in 0..s.n_layers {
        v.extend([
            t(Kind::AttnNorm, l, 1, d),
            t(Kind::Q, l, d, d),
            t(Kind::K, l, kv, d),
            t(Kind::V, l, kv, d),
            t(Kind::O, l, d, d),
            t(Kind::FfnNorm, l, 1, d),
            t(Kind::Gate, l, s.d_mlp, d),
            t(Kind::Up, l, s.d_mlp, d),
            t(Kind::Down, l, d, s.d_mlp),
        ]);
    }
    v.push(t(Kind::FinalNorm, 0, 1, d));
    v.push(t(Kind::Output, 0, s.vocab, d));
    v
}

/// The planted direction `u` (unit norm, length `d_model`).
pub fn plant_direction(s: &Shape, seed: u64) -> Vec<f32> {
    let mut rng = row_rng(tensor_seed(seed, "plant.u"), 0);
    let mut u: Vec<f32> = (0..s.d_model).map(|_| rng.normal()).collect();
    let norm = u.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt() as f32;
    u.iter_mut().for_each(|x| *x /= norm);
    u
}

/// Fills `out` (length `t.cols`) with row `row` (Hugging Face row order) of tensor `t`.
/// `u` is [`plant_direction`].
pub fn fill_row(s: &Shape, seed: u64, u: &[f32], t: &Tensor, row: usize, out: &mut [f32]) {
    if t.is_norm() {
        out.fill(1.0);
        return;
    }
    let sd = (s.d_model as f32).sqrt();
    let p = s.plant;
    let planted_block = t.layer == p.block;
    match t.kind {
        Kind::Embed if row == s.bos_id() => {
            out.iter_mut().zip(u).for_each(|(o, ui)| *o = 4.0 * sd * ui);
            return;
        }
        Kind::Gate | Kind::Up if planted_block && row == p.unit => {
            let alpha = 8.0 / sd;
            out.iter_mut().zip(u).for_each(|(o, ui)| *o = alpha * ui);
            return;
        }
        _ => {}
    }
    // Entries ≈ N(0, std²): unit variance for the embedding; 1/√fan_in for the projections
    // (half that for the two that write into the residual stream, so it grows slowly).
    let std = match t.kind {
        Kind::Embed => 1.0,
        Kind::O | Kind::Down => 0.5 / (t.cols as f32).sqrt(),
        _ => 1.0 / (t.cols as f32).sqrt(),
    };
    let mut rng = row_rng(tensor_seed(seed, &t.hf_name()), row as u64);
    out.iter_mut().for_each(|o| *o = std * rng.normal());
    if t.kind == Kind::Down && planted_block && row == p.dim {
        out[p.unit] = 100.0 * sd / 64.0;
    }
}

/// llama.cpp's converter permutes Q/K rows for its interleaved RoPE: GGUF row `r` of a Q (K)
/// matrix with `n_head` heads holds Hugging Face row `hf_row_of_gguf(r)`.
pub fn hf_row_of_gguf(r: usize, n_head: usize, rows: usize) -> usize {
    let hd = rows / n_head;
    let (h, within) = (r / hd, r % hd);
    let (i, j) = (within / 2, within % 2);
    h * hd + j * (hd / 2) + i
}
