//! The MLP sublayer: plain `down(act(up x))` or gated `down(act(gate x) * up x)`.

use super::activate;
use super::linear::Linear;
use candle_core::Tensor;
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
            Some(g) => (activate(&g.forward(x)?, self.act)? * self.up.forward(x)?)?, // [T, d_mlp]
            None => activate(&self.up.forward(x)?, self.act)?,
        };
        self.down.forward(&h)
    }
}
