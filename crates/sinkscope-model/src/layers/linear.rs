//! `y = x Wᵀ + b` with W stored `[out, in]` as in `nn.Linear`.

use super::gemm::{PackedMatmul, PackedWeight};
use candle_core::{Device, Tensor};
use std::sync::Arc;

/// How a linear map holds its weight.
#[derive(Debug, Clone)]
pub enum Weight {
    /// A `[out, in]` tensor multiplied with candle's matmul (any device, any machine).
    Dense(Tensor),
    /// Packed once for the CPU kernel of [`super::gemm`] (f32 on x86-64 with AVX2 + FMA).
    Packed(Arc<PackedWeight>),
}

/// A linear map.
#[derive(Debug, Clone)]
pub struct Linear {
    /// The weight, `[out, in]`.
    pub weight: Weight,
    /// `[out]`.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Builds the map from a row-major `[out, in]` weight: packed for the CPU kernel when the
    /// device is the CPU and the machine has it ([`super::gemm::available`]), else a dense
    /// tensor on `device`.
    pub fn from_rows(
        data: Vec<f32>,
        out: usize,
        inp: usize,
        bias: Option<Tensor>,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let weight = match device.is_cpu().then(|| PackedWeight::pack(&data, out, inp)).flatten() {
            Some(p) => Weight::Packed(Arc::new(p)),
            None => Weight::Dense(Tensor::from_vec(data, (out, inp), device)?),
        };
        Ok(Linear { weight, bias })
    }

    /// Applies the map to `x: [T, in]`, giving `[T, out]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = match &self.weight {
            Weight::Dense(w) => x.matmul(&w.t()?)?, // [T, out]
            Weight::Packed(p) => x.contiguous()?.apply_op1_no_bwd(&PackedMatmul(p))?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}
