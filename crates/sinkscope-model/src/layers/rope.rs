//! Rotary position embeddings in Hugging Face's rotate-half layout, with the cos/sin tables
//! computed in f32 the way transformers computes them.

use candle_core::{Device, Tensor, D};
use sinkscope_spec::{RopeScaling, RopeSpec};

/// cos/sin tables for T positions: `[T, rotary_dim]` each.
pub struct RopeTables {
    cos: Tensor,
    sin: Tensor,
    rotary_dim: usize,
}

/// The inverse frequencies `1 / θ^(2i/dim)`, scaled as the spec asks
/// (transformers' `_compute_default_rope_parameters` and `_compute_llama3_parameters`).
pub fn inv_freq(spec: &RopeSpec) -> Vec<f32> {
    let dim = spec.rotary_dim;
    let base = spec.theta as f32;
    let raw: Vec<f32> = (0..dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / dim as f32)).collect();
    match spec.scaling {
        RopeScaling::None => raw,
        RopeScaling::Linear { factor } => raw.iter().map(|f| f / factor as f32).collect(),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position } => {
            let (factor, lo, hi, old) = (
                factor as f32,
                low_freq_factor as f32,
                high_freq_factor as f32,
                original_max_position as f32,
            );
            let low_wavelen = old / lo;
            let high_wavelen = old / hi;
            raw.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    let scaled = if wavelen > low_wavelen { f / factor } else { f };
                    if wavelen < high_wavelen || wavelen > low_wavelen {
                        scaled
                    } else {
                        let smooth = (old / wavelen - lo) / (hi - lo);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    }
                })
                .collect()
        }
        RopeScaling::Yarn { factor, original_max_position, beta_fast, beta_slow, truncate, .. } => {
            // transformers' `_compute_yarn_parameters` (f64 for the correction range, f32 for
            // the frequencies, as there).
            let d = dim as f64;
            let correction_dim = |rotations: f64| {
                d * (original_max_position / (rotations * 2.0 * std::f64::consts::PI)).ln()
                    / (2.0 * spec.theta.ln())
            };
            let (mut low, mut high) = (correction_dim(beta_fast), correction_dim(beta_slow));
            if truncate {
                (low, high) = (low.floor(), high.ceil());
            }
            let (low, mut high) = (low.max(0.0) as f32, high.min(d - 1.0) as f32);
            if low == high {
                high += 0.001;
            }
            let factor = factor as f32;
            (0..dim)
                .step_by(2)
                .enumerate()
                .map(|(j, i)| {
                    let pos_freq = base.powf(i as f32 / dim as f32);
                    let extrapolation = 1.0 / pos_freq;
                    let interpolation = 1.0 / (factor * pos_freq);
                    let ramp = ((j as f32 - low) / (high - low)).clamp(0.0, 1.0);
                    let extrapolation_factor = 1.0 - ramp;
                    interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
                })
                .collect()
        }
    }
}

/// The multiplier of cos and sin (YaRN's attention factor; 1 otherwise).
fn attention_factor(spec: &RopeSpec) -> f32 {
    match spec.scaling {
        RopeScaling::Yarn { attention_factor, .. } => attention_factor as f32,
        _ => 1.0,
    }
}

impl RopeTables {
    /// Tables for positions `0..t`.
    pub fn new(spec: &RopeSpec, t: usize, device: &Device) -> candle_core::Result<Self> {
        let inv = inv_freq(spec);
        let scale = attention_factor(spec);
        let half = inv.len();
        let mut cos = Vec::with_capacity(t * 2 * half);
        let mut sin = Vec::with_capacity(t * 2 * half);
        for p in 0..t {
            // emb = cat(freqs, freqs); cos/sin times the attention factor (1 except YaRN).
            for _ in 0..2 {
                for f in &inv {
                    let a = p as f32 * f;
                    cos.push(if scale == 1.0 { a.cos() } else { a.cos() * scale });
                    sin.push(if scale == 1.0 { a.sin() } else { a.sin() * scale });
                }
            }
        }
        Ok(RopeTables {
            cos: Tensor::from_vec(cos, (t, 1, 2 * half), device)?, // [T, 1, rd]
            sin: Tensor::from_vec(sin, (t, 1, 2 * half), device)?, // [T, 1, rd]
            rotary_dim: 2 * half,
        })
    }

    /// Rotates the first `rotary_dim` dims of each head of `x: [T, H, dh]`, positions
    /// `0..T` (the tables may cover more positions).
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let t = x.dim(0)?;
        let (cos, sin) = match self.cos.dim(0)? == t {
            true => (self.cos.clone(), self.sin.clone()),
            false => (self.cos.narrow(0, 0, t)?, self.sin.narrow(0, 0, t)?),
        };
        let dh = x.dim(D::Minus1)?;
        let rd = self.rotary_dim;
        let (rot, pass) = if rd < dh {
            (x.narrow(D::Minus1, 0, rd)?, Some(x.narrow(D::Minus1, rd, dh - rd)?))
        } else {
            (x.clone(), None)
        };
        let x1 = rot.narrow(D::Minus1, 0, rd / 2)?;
        let x2 = rot.narrow(D::Minus1, rd / 2, rd / 2)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?; // rotate_half
        let out = (rot.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?;
        match pass {
            Some(p) => Tensor::cat(&[&out, &p], D::Minus1),
            None => Ok(out),
        }
    }
}
