//! `y = x Wᵀ + b` with W stored `[out, in]` as in `nn.Linear`.

use super::gemm::{PackedMatmul, PackedWeight};
use candle_core::{Device, Tensor};
use sinkscope_io::weights::MatrixWeight;
use std::sync::Arc;

/// How a linear map holds its weight.
#[derive(Debug, Clone)]
pub enum Weight {
    /// A `[out, in]` tensor multiplied with candle's matmul (any device, any machine).
    Dense(Tensor),
    /// Packed once for the CPU kernel of [`super::gemm`] (f32 on x86-64 with AVX2 + FMA).
    Packed(Arc<PackedWeight>),
}

/// Environment variable that, set to `1`, dequantises every stored-format matrix to f32 at
/// load time (the layout before weights stayed in their file's format): for A/B benchmarks.
/// The results are the same bits either way.
pub const F32_WEIGHTS_ENV: &str = "SINKSCOPE_F32_WEIGHTS";

/// Whether stored-format matrices stay in their format here: the packed kernel runs and
/// [`F32_WEIGHTS_ENV`] does not ask for f32.
pub fn keep_stored() -> bool {
    super::gemm::available() && std::env::var(F32_WEIGHTS_ENV).map_or(true, |v| v != "1")
}

impl Weight {
    /// The weight of a `[out, in]` matrix as loaded (see [`Linear::from_matrix`]).
    pub fn from_matrix(w: MatrixWeight, device: &Device) -> crate::error::Result<Self> {
        let shape = w.shape().to_vec();
        let [out, inp] = shape[..] else {
            return Err(crate::error::ModelError::Input(format!(
                "a matrix of shape {shape:?}, expected [out, in]"
            )));
        };
        Ok(match w {
            MatrixWeight::Stored(s) if device.is_cpu() && keep_stored() => {
                match PackedWeight::from_stored(s.matrix.clone()) {
                    Some(p) => Weight::Packed(Arc::new(p)),
                    None => Weight::Dense(Tensor::from_vec(to_f32(&s.matrix)?, (out, inp), device)?),
                }
            }
            MatrixWeight::Stored(s) => {
                Weight::Dense(Tensor::from_vec(to_f32(&s.matrix)?, (out, inp), device)?)
            }
            MatrixWeight::F32(w) => {
                match device.is_cpu().then(|| PackedWeight::pack(&w.data, out, inp)).flatten() {
                    Some(p) => Weight::Packed(Arc::new(p)),
                    None => Weight::Dense(Tensor::from_vec(w.data, (out, inp), device)?),
                }
            }
        })
    }

    /// For a weight kept in a stored format, the same weight packed in f32 (for a matrix
    /// multiplied many times per prompt, such as the LogitLens head); `None` otherwise.
    pub fn densified(&self) -> Option<Result<Weight, String>> {
        match self {
            Weight::Packed(p) => p.densified().map(|r| r.map(|d| Weight::Packed(Arc::new(d)))),
            Weight::Dense(_) => None,
        }
    }

    /// Advises the kernel about the pages of a weight left in a file's memory map (layer
    /// streaming: prefetch before a block runs, drop after); nothing for other weights.
    pub fn advise(&self, advice: sinkscope_io::stored::PageAdvice) {
        if let Weight::Packed(p) = self {
            if let Some(m) = p.stored() {
                m.advise(advice);
            }
        }
    }

    /// Rows `ids` of the weight, `[ids.len(), in]` (an embedding lookup), with exactly the
    /// values the matmul multiplies by.
    pub fn rows(&self, ids: &[u32], device: &Device) -> crate::error::Result<Tensor> {
        match self {
            Weight::Dense(w) => {
                let ids = Tensor::from_vec(ids.to_vec(), ids.len(), device)?;
                Ok(w.index_select(&ids, 0)?)
            }
            Weight::Packed(p) => {
                let k = p.k();
                let mut out = vec![0f32; ids.len() * k];
                for (&id, row) in ids.iter().zip(out.chunks_exact_mut(k.max(1))) {
                    p.row_into(id as usize, row).map_err(crate::error::ModelError::Input)?;
                }
                Ok(Tensor::from_vec(out, (ids.len(), k), device)?)
            }
        }
    }
}

fn to_f32(m: &sinkscope_io::stored::StoredMatrix) -> crate::error::Result<Vec<f32>> {
    m.to_f32().map_err(|e| crate::error::ModelError::Input(format!("dequantising {m:?}: {e}")))
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

    /// Builds the map from a weight as loaded: a stored-format matrix stays in its format
    /// when the packed kernel runs here (it dequantises panel slices on the fly, to the same
    /// values), and is dequantised to f32 otherwise.
    pub fn from_matrix(w: MatrixWeight, bias: Option<Tensor>, device: &Device) -> crate::error::Result<Self> {
        let weight = Weight::from_matrix(w, device)?;
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
