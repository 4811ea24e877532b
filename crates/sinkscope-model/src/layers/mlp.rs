//! The MLP sublayer: plain `down(act(up x))` or gated `down(act(gate x) * up x)`.

use super::activate;
use super::fused;
use super::linear::Linear;
use candle_core::{DType, Tensor};
use sinkscope_spec::Activation;

/// An MLP.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// Gate projection (gated MLPs only).
    pub gate: Option<Linear>,
    /// Up projection.
    pub up: Linear,
    /// Down projection.
    pub down: Linear,
    /// Activation.
    pub act: Activation,
}

impl Mlp {
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
