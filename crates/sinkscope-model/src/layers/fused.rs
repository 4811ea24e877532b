//! Fused CPU kernels with an AVX2 `exp` (x86-64 with AVX2 + FMA, f32; elsewhere the model
//! uses candle's ops): `silu(gate) · up`, the gated MLP's activation, and the `exp` of the
//! attention softmax ([`super::scores`]).
//!
//! candle evaluates `silu` with the scalar libm `expf` and then multiplies in a second pass;
//! on a profile that is ~3 % of the time. Here `exp` is the Cephes single-precision
//! polynomial (as in `avx_mathfun`; within 2 ulp of libm's on the range that matters), then
//! `g / (1 + exp(-g)) · u` in that order, as candle does. NaN and ±inf behave as with libm;
//! `exp` overflows to +inf from 88.38 instead of libm's 88.72, which changes `silu(g)` only
//! for `g` in [-88.72, -88.38], from about -1e-37 to -0.
//!
//! Every element goes through the same vector code (a row's tail is padded to a full
//! vector), so an element's value depends only on its inputs: packing prompts stays
//! bit-identical.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape};

/// Whether the fused kernel runs on this machine: x86-64 with AVX2 and FMA, and the packed
/// matmul not turned off.
pub fn available() -> bool {
    super::gemm::available() && super::gemm::KernelPath::Avx2.supported()
}

/// `out[i] = silu(g[i]) · u[i]`.
///
/// # Errors
/// A message when the lengths differ or the machine lacks AVX2 + FMA.
pub fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) -> Result<(), String> {
    if g.len() != u.len() || g.len() != out.len() {
        return Err(format!("silu_mul: lengths {} / {} / {}", g.len(), u.len(), out.len()));
    }
    if !available() {
        return Err("silu_mul: needs AVX2 + FMA".into());
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX2 and FMA checked just above; lengths checked equal.
    #[allow(unsafe_code)]
    unsafe {
        avx2::silu_mul(g, u, out);
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::excessive_precision)]
mod avx2 {
    use std::arch::x86_64::*;

    /// Cephes `expf`: `e^x = 2^n · e^r`, `|r| ≤ ln 2 / 2`, degree-5 polynomial for `e^r`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn exp(x: __m256) -> __m256 {
        let x0 = x;
        // min/max take the second operand when the first is NaN: keep x second.
        let x = _mm256_min_ps(_mm256_set1_ps(88.376_262_664_794_9), x);
        let x = _mm256_max_ps(_mm256_set1_ps(-88.376_262_664_794_9), x);
        let fx = _mm256_floor_ps(_mm256_fmadd_ps(
            x,
            _mm256_set1_ps(std::f32::consts::LOG2_E),
            _mm256_set1_ps(0.5),
        ));
        let x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693_359_375), x);
        let x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.121_944_4e-4), x);
        let z = _mm256_mul_ps(x, x);
        let mut y = _mm256_set1_ps(1.987_569_150_0e-4);
        for c in [
            1.398_199_950_7e-3,
            8.333_451_907_3e-3,
            4.166_579_589_4e-2,
            1.666_666_545_9e-1,
            5.000_000_120_1e-1,
        ] {
            y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(c));
        }
        let y = _mm256_add_ps(_mm256_fmadd_ps(y, z, x), _mm256_set1_ps(1.0));
        // 2^n through the exponent bits (n = 128 gives +inf, n = -127 gives 0).
        let n = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
        let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(n));
        let e = _mm256_mul_ps(y, pow2n);
        // Above the clamp the result is +inf (libm overflows from 88.72; in between it gives
        // finite values near FLT_MAX, where silu is below 1e-34 in magnitude).
        let over = _mm256_cmp_ps::<_CMP_GT_OQ>(x0, _mm256_set1_ps(88.376_262_664_794_9));
        _mm256_blendv_ps(e, _mm256_set1_ps(f32::INFINITY), over)
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn silu_mul8(g: __m256, u: __m256) -> __m256 {
        let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0), e)), u)
    }

    /// `xs[i] = exp(xs[i] - shift)`; every element through the same vector code.
    ///
    /// # Safety
    /// AVX2 and FMA present.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_shifted(xs: &mut [f32], shift: f32) {
        let full = xs.len() / 8 * 8;
        let sv = _mm256_set1_ps(shift);
        for i in (0..full).step_by(8) {
            let p = xs.as_mut_ptr().add(i);
            _mm256_storeu_ps(p, exp(_mm256_sub_ps(_mm256_loadu_ps(p), sv)));
        }
        if full < xs.len() {
            let rest = xs.len() - full;
            let mut t = [0f32; 8];
            t[..rest].copy_from_slice(&xs[full..]);
            _mm256_storeu_ps(t.as_mut_ptr(), exp(_mm256_sub_ps(_mm256_loadu_ps(t.as_ptr()), sv)));
            xs[full..].copy_from_slice(&t[..rest]);
        }
    }

    /// # Safety
    /// AVX2 and FMA present; the three slices have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
        let full = g.len() / 8 * 8;
        for i in (0..full).step_by(8) {
            let r = silu_mul8(_mm256_loadu_ps(g.as_ptr().add(i)), _mm256_loadu_ps(u.as_ptr().add(i)));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), r);
        }
        if full < g.len() {
            let rest = g.len() - full;
            let (mut gt, mut ut, mut ot) = ([0f32; 8], [0f32; 8], [0f32; 8]);
            gt[..rest].copy_from_slice(&g[full..]);
            ut[..rest].copy_from_slice(&u[full..]);
            _mm256_storeu_ps(
                ot.as_mut_ptr(),
                silu_mul8(_mm256_loadu_ps(gt.as_ptr()), _mm256_loadu_ps(ut.as_ptr())),
            );
            out[full..].copy_from_slice(&ot[..rest]);
        }
    }
}

/// `xs[i] = exp(xs[i] - shift)`: the AVX2 polynomial where the machine has it ([`available`]),
/// libm's `expf` elsewhere. Every element goes through the same code, so a value depends only
/// on its input and the shift.
pub fn exp_shifted(xs: &mut [f32], shift: f32) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX2 and FMA checked just above.
        #[allow(unsafe_code)]
        unsafe {
            avx2::exp_shifted(xs, shift);
        }
        return;
    }
    for x in xs.iter_mut() {
        *x = (*x - shift).exp();
    }
}

/// `f` applied to the values of an f32 CPU tensor, in row-major order: read in place when the
/// tensor is contiguous, else from a copy.
///
/// # Errors
/// candle's error when the tensor is not f32 on the CPU.
pub fn with_f32<R>(t: &candle_core::Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let candle_core::Storage::Cpu(cpu) = &*storage {
            if let Ok(v) = f32_slice(cpu, layout) {
                return Ok(f(v));
            }
        }
    }
    let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
    Ok(f(&v))
}

/// The contiguous f32 values of a CPU tensor.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        (CpuStorage::F32(_), None) => candle_core::bail!("fused op: non-contiguous input"),
        _ => candle_core::bail!("fused op: input is not f32"),
    }
}

/// The candle operation `(gate, up) -> silu(gate) · up` (same shapes, CPU, f32), applied row by
/// row so that every row is computed the same way wherever it sits.
pub struct SiluMul;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("silu-mul: shapes {:?} and {:?}", l1.shape(), l2.shape());
        }
        let (g, u) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?);
        let row = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; g.len()];
        for ((g, u), o) in g.chunks(row).zip(u.chunks(row)).zip(out.chunks_mut(row)) {
            silu_mul(g, u, o).map_err(candle_core::Error::msg)?;
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn reference(g: f32, u: f32) -> f32 {
        g / (1.0 + (-g).exp()) * u
    }

    #[test]
    fn matches_libm_silu_within_a_few_ulp() {
        if !available() {
            eprintln!("SKIPPED: no AVX2+FMA");
            return;
        }
        let g: Vec<f32> = (0..20001).map(|i| -100.0 + i as f32 * 0.01).collect();
        let u: Vec<f32> = g.iter().map(|x| 1.0 + x.abs() * 0.5).collect();
        let mut out = vec![0f32; g.len()];
        silu_mul(&g, &u, &mut out).unwrap();
        for i in 0..g.len() {
            let r = reference(g[i], u[i]);
            // A few ulp; below 1e-34 (silu of g < -88.4, where libm's exp overflows a little
            // later than ours) any tiny value or zero.
            let tol = 4.0 * f32::EPSILON * r.abs() + 1e-34;
            assert!((out[i] - r).abs() <= tol, "g = {}: {} vs {}", g[i], out[i], r);
        }
    }

    #[test]
    fn special_values_behave_like_libm() {
        if !available() {
            return;
        }
        let g = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 89.0, -89.0, -1000.0, 1000.0];
        let u = [1.0; 9];
        let mut out = [0f32; 9];
        silu_mul(&g, &u, &mut out).unwrap();
        for i in 0..g.len() {
            let r = reference(g[i], u[i]);
            assert!((out[i].is_nan() && r.is_nan()) || out[i] == r, "g = {}: {} vs libm {}", g[i], out[i], r);
        }
    }

    #[test]
    fn tails_are_computed_like_full_vectors() {
        if !available() {
            return;
        }
        let g: Vec<f32> = (0..13).map(|i| i as f32 * 0.37 - 2.0).collect();
        let u = vec![1.5f32; 13];
        let mut whole = vec![0f32; 13];
        silu_mul(&g, &u, &mut whole).unwrap();
        for start in 0..13 {
            let mut part = vec![0f32; 13 - start];
            silu_mul(&g[start..], &u[start..], &mut part).unwrap();
            assert_eq!(part[..], whole[start..], "offset {start}");
        }
        assert!(silu_mul(&g, &u[..12], &mut whole).is_err());
    }
}
