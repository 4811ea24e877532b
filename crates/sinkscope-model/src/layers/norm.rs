//! LayerNorm and RMSNorm, computed in f32 as Hugging Face does.

use candle_core::{Tensor, D};
use sinkscope_spec::NormKind;

/// A norm layer with its (offset-applied) gain and optional bias.
#[derive(Debug, Clone)]
pub struct Norm {
    /// The norm kind and epsilon.
    pub kind: NormKind,
    /// Effective gain `[d]` (for RMSNorm with a weight offset, the offset is already added).
    pub weight: Tensor,
    /// Bias `[d]` (LayerNorm only).
    pub bias: Option<Tensor>,
}

impl Norm {
    /// Normalises each row of `x: [T, d]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.kind {
            NormKind::RmsNorm { eps, .. } => {
                // HF: x * rsqrt(mean(x²) + eps), then weight * x
                let var = x.sqr()?.mean_keepdim(D::Minus1)?; // [T, 1]
                let inv = (var + eps)?.sqrt()?.recip()?;
                x.broadcast_mul(&inv)?.broadcast_mul(&self.weight)
            }
            NormKind::LayerNorm { eps, .. } => {
                let mean = x.mean_keepdim(D::Minus1)?; // [T, 1]
                let xc = x.broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
                let y = xc.broadcast_div(&(var + eps)?.sqrt()?)?.broadcast_mul(&self.weight)?;
                match &self.bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }
}
