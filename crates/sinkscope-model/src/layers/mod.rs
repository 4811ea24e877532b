//! The building blocks of the generic decoder, each implemented once.

pub mod attention;
pub mod fused;
pub mod gemm;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod rope;
pub mod scores;

use candle_core::Tensor;
use sinkscope_spec::Activation;

/// Applies an activation function element-wise.
pub fn activate(x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
    match act {
        Activation::Silu => x.silu(),
        Activation::GeluErf => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
    }
}
