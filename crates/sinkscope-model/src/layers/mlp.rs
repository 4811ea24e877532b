//! The MLP sublayer: plain `down(act(up x))`, gated `down(act(gate x) * up x)`, or a mixture
//! of experts with top-k routing (GPT-OSS).

use super::activate;
use super::fused;
use super::linear::Linear;
use crate::error::Result;
use crate::pack::Pack;
use candle_core::{DType, Tensor};
use sinkscope_spec::{Activation, HookSite, SiteKind};

/// A dense MLP.
#[derive(Debug, Clone)]
pub struct Dense {
    /// Gate projection (gated MLPs only).
    pub gate: Option<Linear>,
    /// Up projection.
    pub up: Linear,
    /// Down projection.
    pub down: Linear,
    /// Activation.
    pub act: Activation,
}

/// One expert of a [`Moe`]: `down((clamp(up, ±limit) + 1) · g·σ(alpha·g))`, `g = min(gate, limit)`.
#[derive(Debug, Clone)]
pub struct Expert {
    /// Gate projection (with bias).
    pub gate: Linear,
    /// Up projection (with bias).
    pub up: Linear,
    /// Down projection (with bias).
    pub down: Linear,
}

/// A mixture of experts with top-k routing (transformers' `GptOssMLP`).
#[derive(Debug, Clone)]
pub struct Moe {
    /// Router `x Wᵀ + b`: `[n_experts]` logits per token.
    pub router: Linear,
    /// The experts.
    pub experts: Vec<Expert>,
    /// Experts per token.
    pub top_k: usize,
    /// The GLU's sigmoid sharpness.
    pub alpha: f32,
    /// The clamp on gate and up.
    pub limit: f32,
}

/// An MLP sublayer.
#[derive(Debug, Clone)]
pub enum Mlp {
    /// Plain or gated.
    Dense(Dense),
    /// Mixture of experts.
    Moe(Moe),
}

impl Mlp {
    /// `x: [rows, d]` (the pack's MLP inputs) -> `[rows, d]`. A mixture of experts shows its
    /// router logits and choices to the hooks of `block`.
    pub fn forward(&self, x: &Tensor, block: usize, pack: &mut Pack) -> Result<Tensor> {
        match self {
            Mlp::Dense(m) => Ok(m.forward(x)?),
            Mlp::Moe(m) => m.forward(x, block, pack),
        }
    }
}

impl Dense {
    /// `x: [T, d]` -> `[T, d]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = match &self.gate {
            Some(g) => {
                let (gate, up) = (g.forward(x)?.contiguous()?, self.up.forward(x)?.contiguous()?); // [T, d_mlp]
                if self.act == Activation::Silu
                    && fused::available()
                    && gate.device().is_cpu()
                    && gate.dtype() == DType::F32
                {
                    gate.apply_op2_no_bwd(&up, &fused::SiluMul)?
                } else {
                    (activate(&gate, self.act)? * up)?
                }
            }
            None => activate(&self.up.forward(x)?, self.act)?,
        };
        self.down.forward(&h)
    }
}

/// The `k` largest logits of a row, best first (ties: lower expert id first), and their
/// softmax (transformers: `topk`, then `softmax` over the selected values).
fn route(logits: &[f32], k: usize) -> (Vec<usize>, Vec<f32>) {
    let mut ids: Vec<usize> = (0..logits.len()).collect();
    ids.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    ids.truncate(k);
    let max = ids.first().map_or(0.0, |&i| logits[i]);
    let e: Vec<f32> = ids.iter().map(|&i| (logits[i] - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    (ids, e.iter().map(|x| x / sum).collect())
}

impl Moe {
    fn forward(&self, x: &Tensor, block: usize, pack: &mut Pack) -> Result<Tensor> {
        let (rows, d) = x.dims2()?;
        let n_experts = self.experts.len();
        let logits = self.router.forward(x)?; // [rows, E]
        let logits = pack.apply(HookSite::block(block, SiteKind::RouterLogits), logits)?;
        let flat: Vec<f32> = logits.flatten_all()?.to_vec1()?;
        let mut chosen = Vec::with_capacity(rows * self.top_k); // [rows, k] ids as f32
        let mut routed: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n_experts]; // per expert: (row, weight)
        for r in 0..rows {
            let (ids, weights) = route(&flat[r * n_experts..(r + 1) * n_experts], self.top_k);
            for (&e, &w) in ids.iter().zip(&weights) {
                routed[e].push((r, w));
                chosen.push(e as f32);
            }
        }
        let chosen = Tensor::from_vec(chosen, (rows, self.top_k), x.device())?;
        pack.apply(HookSite::block(block, SiteKind::RouterIndices), chosen)?;
        // Each token's output is the weighted sum of its experts, experts in ascending order
        // (transformers' `index_add_` loop), so a row never depends on the other rows.
        let mut out = vec![0f32; rows * d];
        for (expert, assigned) in self.experts.iter().zip(&routed) {
            if assigned.is_empty() {
                continue;
            }
            let idx: Vec<u32> = assigned.iter().map(|&(r, _)| r as u32).collect();
            let idx = Tensor::from_vec(idx, assigned.len(), x.device())?;
            let xs = x.index_select(&idx, 0)?; // [n, d]
            let y = expert.forward(&xs, self.alpha, self.limit)?; // [n, d]
            let y: Vec<f32> = y.flatten_all()?.to_vec1()?;
            for (i, &(r, w)) in assigned.iter().enumerate() {
                for (o, v) in out[r * d..(r + 1) * d].iter_mut().zip(&y[i * d..(i + 1) * d]) {
                    *o += v * w;
                }
            }
        }
        Ok(Tensor::from_vec(out, (rows, d), x.device())?)
    }
}

impl Expert {
    fn forward(&self, x: &Tensor, alpha: f32, limit: f32) -> Result<Tensor> {
        let gate: Vec<f32> = self.gate.forward(x)?.flatten_all()?.to_vec1()?;
        let up: Vec<f32> = self.up.forward(x)?.flatten_all()?.to_vec1()?;
        let h: Vec<f32> = gate
            .iter()
            .zip(&up)
            .map(|(&g, &u)| {
                let g = g.min(limit);
                let u = u.clamp(-limit, limit);
                let glu = g * (1.0 / (1.0 + (-(g * alpha)).exp()));
                (u + 1.0) * glu
            })
            .collect();
        let rows = x.dim(0)?;
        let h = Tensor::from_vec(h, (rows, gate.len() / rows.max(1)), x.device())?;
        Ok(self.down.forward(&h)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::route;

    /// Top-k by value (ties to the lower id), softmax over the chosen logits.
    #[test]
    fn routing_picks_the_largest_and_normalises_them() {
        let (ids, w) = route(&[0.5, 2.0, -1.0, 2.0], 2);
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(w, vec![0.5, 0.5]);
        let (ids, w) = route(&[0.0, 1.0, 3.0, 2.0], 2);
        assert_eq!(ids, vec![2, 3]);
        let e = (-1f32).exp();
        assert!((w[0] - 1.0 / (1.0 + e)).abs() < 1e-7 && (w[1] - e / (1.0 + e)).abs() < 1e-7);
    }
}
