//! Exact dequantisation of ggml tensor data, transliterated from ggml's reference `dequantize_row_*`
//! functions (ggml/src/ggml-quants.c) and block layouts (ggml/src/ggml-common.h).
//!
//! Every value is computed in f32 with the same operations, operands and evaluation order as the C reference
//! (integer quants converted to f32, then `q*d`, `q*d + m`, `dl*q - ml`, `(d*sc)*q`, ...), so the results are
//! bitwise equal to ggml's scalar reference code compiled without floating-point contraction (no FMA fusion).
//! f16 scales are widened exactly (the `half` crate), bf16 by shifting the bits, as `GGML_BF16_TO_FP32` does.
//!
//! Types: F32, F16, BF16; Q4_0, Q4_1, Q5_0, Q5_1, Q8_0; Q2_K..Q6_K; the i-quants IQ4_NL, IQ4_XS, IQ2_XXS, IQ2_XS,
//! IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M (grids and sign tables in `iq_tables.rs`, generated from gguf-py); MXFP4;
//! the ternary TQ1_0 and TQ2_0. Every type but F32 is checked bit for bit against gguf-py 0.19.0's
//! `gguf.quants.dequantize` on committed vectors (tests/dequant_vectors.rs, tests/data/dequant/).
//!
//! Data is treated as one long run of blocks: ggml rows always hold whole blocks, so dequantising a tensor
//! block by block gives the row-major (ggml `ne[0]` fastest) element order directly.
//!
//! All block functions take fixed-size arrays and index them only with loop counters whose bounds are
//! constants below the array lengths, and look tables up only with indices masked below the table lengths, so
//! no input can make them index out of range.

use half::f16;

use super::iq_tables::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS, KVALUES_IQ4NL,
    KVALUES_MXFP4,
};
use super::types::GgmlType;

/// Elements per block of the legacy quants (`QK4_0`, `QK4_1`, `QK5_0`, `QK5_1`, `QK8_0`).
pub const QK: usize = 32;
/// Elements per k-quant super-block (`QK_K`).
pub const QK_K: usize = 256;

/// Errors of [`dequantize`] / [`dequantize_into`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DequantError {
    /// The type has no dequantiser here.
    #[error("dequantisation of ggml type {0} is not supported")]
    Unsupported(GgmlType),
    /// The element count is not a whole number of blocks.
    #[error("{n_elements} elements of {ggml_type} are not a multiple of the block size {block_size}")]
    NotBlockMultiple {
        /// The type.
        ggml_type: GgmlType,
        /// Elements asked for.
        n_elements: u64,
        /// Elements per block.
        block_size: u64,
    },
    /// The byte buffer does not have the size implied by the element count.
    #[error("{n_elements} elements of {ggml_type} need {expected} bytes but {actual} were given")]
    SizeMismatch {
        /// The type.
        ggml_type: GgmlType,
        /// Elements asked for.
        n_elements: u64,
        /// Bytes needed.
        expected: u64,
        /// Bytes given.
        actual: u64,
    },
}

/// Dequantise `n_elements` values of type `ty` stored in `data` (which must hold exactly that many elements)
/// into a new `Vec<f32>`, in storage order.
pub fn dequantize(ty: GgmlType, data: &[u8], n_elements: usize) -> Result<Vec<f32>, DequantError> {
    check_sizes(ty, data.len(), n_elements)?;
    let mut out = vec![0.0f32; n_elements];
    dequantize_into(ty, data, &mut out)?;
    Ok(out)
}

/// Applies a block function to every `TS`-byte block of `data` and `QB`-element chunk of `out`
/// (sizes were checked by `check_sizes`, so both iterators have the same length and no
/// remainder). A macro, so that each block function is called directly and inlined into the
/// instruction set's build of [`dequantize_sized`] (through a closure parameter it stayed a
/// separate call compiled for the baseline).
macro_rules! run {
    ($data:expr, $out:expr, $ts:literal, $qb:expr, $f:path) => {
        for (b, y) in $data.chunks_exact($ts).zip($out.chunks_exact_mut($qb)) {
            if let (Ok(b), Ok(y)) = (<&[u8; $ts]>::try_from(b), <&mut [f32; $qb]>::try_from(y)) {
                $f(b, y);
            }
        }
    };
}

/// Dequantise `data` (values of type `ty`) into `out`; `data` must hold exactly `out.len()` elements.
///
/// The block functions are compiled once more for AVX-512 and for AVX2 and picked at run
/// time: the same scalar arithmetic (Rust never fuses a multiply and an add), vectorised
/// wider, so the same bits on every path (a test compares them).
pub fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), DequantError> {
    check_sizes(ty, data.len(), out.len())?;
    #[cfg(target_arch = "x86_64")]
    {
        match sinkscope_cpu::path() {
            // SAFETY: the process's path is one the CPU supports, and each path includes the
            // features the function enables (AVX-512 F, BW, VL and F16C; AVX2 and F16C).
            #[allow(unsafe_code)]
            sinkscope_cpu::Path::Avx512 => return unsafe { wide::dequantize_avx512(ty, data, out) },
            // SAFETY: as above.
            #[allow(unsafe_code)]
            sinkscope_cpu::Path::Avx2 => return unsafe { wide::dequantize_avx2(ty, data, out) },
            sinkscope_cpu::Path::Portable => {}
        }
    }
    dequantize_sized(ty, data, out)
}

/// The x86-64 builds of [`dequantize_sized`].
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{dequantize_sized, DequantError, GgmlType};

    /// # Safety
    /// The CPU has AVX-512 F, BW, VL and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
    pub(super) unsafe fn dequantize_avx512(
        ty: GgmlType,
        data: &[u8],
        out: &mut [f32],
    ) -> Result<(), DequantError> {
        dequantize_sized(ty, data, out)
    }

    /// # Safety
    /// The CPU has AVX2 and F16C.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn dequantize_avx2(
        ty: GgmlType,
        data: &[u8],
        out: &mut [f32],
    ) -> Result<(), DequantError> {
        dequantize_sized(ty, data, out)
    }
}

/// [`dequantize_into`] after its size check, on whatever instruction set it is compiled for.
#[inline(always)]
fn dequantize_sized(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), DequantError> {
    match ty {
        GgmlType::F32 => run!(data, out, 4, 1, value_f32),
        GgmlType::F16 => run!(data, out, 2, 1, value_f16),
        GgmlType::BF16 => run!(data, out, 2, 1, value_bf16),
        GgmlType::Q4_0 => run!(data, out, 18, QK, block_q4_0),
        GgmlType::Q4_1 => run!(data, out, 20, QK, block_q4_1),
        GgmlType::Q5_0 => run!(data, out, 22, QK, block_q5_0),
        GgmlType::Q5_1 => run!(data, out, 24, QK, block_q5_1),
        GgmlType::Q8_0 => run!(data, out, 34, QK, block_q8_0),
        GgmlType::Q2_K => run!(data, out, 84, QK_K, block_q2_k),
        GgmlType::Q3_K => run!(data, out, 110, QK_K, block_q3_k),
        GgmlType::Q4_K => run!(data, out, 144, QK_K, block_q4_k),
        GgmlType::Q5_K => run!(data, out, 176, QK_K, block_q5_k),
        GgmlType::Q6_K => run!(data, out, 210, QK_K, block_q6_k),
        GgmlType::IQ4_NL => run!(data, out, 18, QK, block_iq4_nl),
        GgmlType::IQ4_XS => run!(data, out, 136, QK_K, block_iq4_xs),
        GgmlType::IQ2_XXS => run!(data, out, 66, QK_K, block_iq2_xxs),
        GgmlType::IQ2_XS => run!(data, out, 74, QK_K, block_iq2_xs),
        GgmlType::IQ2_S => run!(data, out, 82, QK_K, block_iq2_s),
        GgmlType::IQ3_XXS => run!(data, out, 98, QK_K, block_iq3_xxs),
        GgmlType::IQ3_S => run!(data, out, 110, QK_K, block_iq3_s),
        GgmlType::IQ1_S => run!(data, out, 50, QK_K, block_iq1_s),
        GgmlType::IQ1_M => run!(data, out, 56, QK_K, block_iq1_m),
        GgmlType::MXFP4 => run!(data, out, 17, QK, block_mxfp4),
        GgmlType::TQ1_0 => run!(data, out, 54, QK_K, block_tq1_0),
        GgmlType::TQ2_0 => run!(data, out, 66, QK_K, block_tq2_0),
        other => return Err(DequantError::Unsupported(other)),
    }
    Ok(())
}

/// Byte offsets of the f16 scales in one block of `ty`, for the types whose values are each a
/// product of those scales and bounded integers (at most 65504 · 2^16 in magnitude: no
/// overflow), so that every value is finite exactly when every scale is. `None` for the types
/// where a finite block can still give a non-finite value or whose scale is not a plain f16
/// field (F32, F16, BF16 hold values directly; MXFP4's scale times 12 overflows at the largest
/// exponent; IQ1_M assembles its scale from nibbles).
fn f16_scale_offsets(ty: GgmlType) -> Option<&'static [usize]> {
    Some(match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::IQ4_NL => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        GgmlType::IQ4_XS
        | GgmlType::IQ2_XXS
        | GgmlType::IQ2_XS
        | GgmlType::IQ2_S
        | GgmlType::IQ3_XXS
        | GgmlType::IQ3_S
        | GgmlType::IQ1_S => &[0],
        GgmlType::TQ1_0 => &[52],
        GgmlType::TQ2_0 => &[64],
        _ => return None,
    })
}

/// Whether every value that `data` (whole blocks of `ty`) dequantises to is finite, decided
/// from the blocks' f16 scales alone (no dequantisation): `Some(true)` when every scale is
/// finite, `Some(false)` when one is not (then some values are NaN or infinite), `None` for
/// the types whose values' finiteness the scales do not decide (see the caller's full scan).
pub fn finite_by_scales(ty: GgmlType, data: &[u8]) -> Option<bool> {
    let offsets = f16_scale_offsets(ty)?;
    let ts = usize::try_from(ty.type_size()).ok()?;
    if ts == 0 || !data.len().is_multiple_of(ts) {
        return None;
    }
    // An f16 is NaN or infinite when its five exponent bits are all set.
    let finite = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) & 0x7C00 != 0x7C00;
    Some(data.chunks_exact(ts).all(|b| offsets.iter().all(|&o| finite(b, o))))
}

/// Bytes needed for `n_elements` of `ty`, if `n_elements` is a whole number of blocks.
pub fn byte_size(ty: GgmlType, n_elements: u64) -> Result<u64, DequantError> {
    let block = ty.block_size();
    if n_elements.checked_rem(block) != Some(0) {
        return Err(DequantError::NotBlockMultiple { ggml_type: ty, n_elements, block_size: block });
    }
    // n_elements / block * type_size <= n_elements * 4 for every type except the 1-element F64/I64 (8×),
    // so this cannot overflow for any n_elements that fits in memory; still, saturate rather than wrap.
    Ok((n_elements / block).saturating_mul(ty.type_size()))
}

fn check_sizes(ty: GgmlType, n_bytes: usize, n_elements: usize) -> Result<(), DequantError> {
    if !ty.can_dequantize() {
        return Err(DequantError::Unsupported(ty));
    }
    let n_elements = n_elements as u64;
    let expected = byte_size(ty, n_elements)?;
    if expected != n_bytes as u64 {
        return Err(DequantError::SizeMismatch {
            ggml_type: ty,
            n_elements,
            expected,
            actual: n_bytes as u64,
        });
    }
    Ok(())
}

/// F32 values as stored.
#[inline(always)]
fn value_f32(b: &[u8; 4], y: &mut [f32; 1]) {
    y[0] = f32::from_le_bytes(*b);
}

/// F16 values.
#[inline(always)]
fn value_f16(b: &[u8; 2], y: &mut [f32; 1]) {
    y[0] = f16::from_le_bytes(*b).to_f32();
}

/// BF16 values.
#[inline(always)]
fn value_bf16(b: &[u8; 2], y: &mut [f32; 1]) {
    y[0] = bf16_to_f32(*b);
}

/// `GGML_FP16_TO_FP32` of the little-endian f16 at bytes `lo`, `hi`.
#[inline]
fn f16_le(lo: u8, hi: u8) -> f32 {
    f16::from_le_bytes([lo, hi]).to_f32()
}

/// `GGML_BF16_TO_FP32`: the bf16 bits are the high half of the f32 bits.
#[inline]
fn bf16_to_f32(b: [u8; 2]) -> f32 {
    f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)
}

/// Integer → f32 conversion as C's usual arithmetic conversions do it (exact for |v| < 2^24).
#[inline]
fn fl(v: i32) -> f32 {
    v as f32
}

// ---------------------------------------------------------------------------------------------------------
// Legacy 32-element blocks.

/// `block_q4_0 { ggml_half d; uint8_t qs[16]; }` → `dequantize_row_q4_0`.
#[inline(always)]
fn block_q4_0(b: &[u8; 18], y: &mut [f32; QK]) {
    let d = f16_le(b[0], b[1]);
    for j in 0..QK / 2 {
        let q = b[2 + j];
        let x0 = i32::from(q & 0x0F) - 8;
        let x1 = i32::from(q >> 4) - 8;
        y[j] = fl(x0) * d;
        y[j + QK / 2] = fl(x1) * d;
    }
}

/// `block_q4_1 { ggml_half d; ggml_half m; uint8_t qs[16]; }` → `dequantize_row_q4_1`.
#[inline(always)]
fn block_q4_1(b: &[u8; 20], y: &mut [f32; QK]) {
    let d = f16_le(b[0], b[1]);
    let m = f16_le(b[2], b[3]);
    for j in 0..QK / 2 {
        let q = b[4 + j];
        let x0 = i32::from(q & 0x0F);
        let x1 = i32::from(q >> 4);
        y[j] = fl(x0) * d + m;
        y[j + QK / 2] = fl(x1) * d + m;
    }
}

/// `block_q5_0 { ggml_half d; uint8_t qh[4]; uint8_t qs[16]; }` → `dequantize_row_q5_0`.
#[inline(always)]
fn block_q5_0(b: &[u8; 22], y: &mut [f32; QK]) {
    let d = f16_le(b[0], b[1]);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..QK / 2 {
        let xh_0 = ((qh >> j) << 4) & 0x10;
        let xh_1 = (qh >> (j + 12)) & 0x10;
        let q = u32::from(b[6 + j]);
        let x0 = ((q & 0x0F) | xh_0) as i32 - 16;
        let x1 = ((q >> 4) | xh_1) as i32 - 16;
        y[j] = fl(x0) * d;
        y[j + QK / 2] = fl(x1) * d;
    }
}

/// `block_q5_1 { ggml_half d; ggml_half m; uint8_t qh[4]; uint8_t qs[16]; }` → `dequantize_row_q5_1`.
#[inline(always)]
fn block_q5_1(b: &[u8; 24], y: &mut [f32; QK]) {
    let d = f16_le(b[0], b[1]);
    let m = f16_le(b[2], b[3]);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..QK / 2 {
        let xh_0 = ((qh >> j) << 4) & 0x10;
        let xh_1 = (qh >> (j + 12)) & 0x10;
        let q = u32::from(b[8 + j]);
        let x0 = ((q & 0x0F) | xh_0) as i32;
        let x1 = ((q >> 4) | xh_1) as i32;
        y[j] = fl(x0) * d + m;
        y[j + QK / 2] = fl(x1) * d + m;
    }
}

/// `block_q8_0 { ggml_half d; int8_t qs[32]; }` → `dequantize_row_q8_0`.
#[inline(always)]
fn block_q8_0(b: &[u8; 34], y: &mut [f32; QK]) {
    let d = f16_le(b[0], b[1]);
    for j in 0..QK {
        y[j] = fl(i32::from(b[2 + j] as i8)) * d;
    }
}

// ---------------------------------------------------------------------------------------------------------
// k-quants, 256-element super-blocks.

/// `get_scale_min_k4`: 6-bit scale and min number `j` (0..8) from the 12 packed bytes.
#[inline]
fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// `block_q2_K { uint8_t scales[16]; uint8_t qs[64]; ggml_half d; ggml_half dmin; }` → `dequantize_row_q2_K`.
#[inline(always)]
fn block_q2_k(b: &[u8; 84], y: &mut [f32; QK_K]) {
    let d = f16_le(b[80], b[81]);
    let min = f16_le(b[82], b[83]);
    let scales = &b[0..16];
    let mut yi = 0usize;
    let mut is = 0usize;
    for n in 0..2 {
        let q = 16 + 32 * n; // byte offset of this 128-element half's 32 quant bytes
        let mut shift = 0u32;
        for _j in 0..4 {
            let sc = scales[is];
            is += 1;
            let dl = d * fl(i32::from(sc & 0xF));
            let ml = min * fl(i32::from(sc >> 4));
            for l in 0..16 {
                y[yi] = dl * fl(i32::from((b[q + l] >> shift) & 3)) - ml;
                yi += 1;
            }
            let sc = scales[is];
            is += 1;
            let dl = d * fl(i32::from(sc & 0xF));
            let ml = min * fl(i32::from(sc >> 4));
            for l in 0..16 {
                y[yi] = dl * fl(i32::from((b[q + l + 16] >> shift) & 3)) - ml;
                yi += 1;
            }
            shift += 2;
        }
    }
}

/// `block_q3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; ggml_half d; }` →
/// `dequantize_row_q3_K` (including its `kmask1`/`kmask2` unpacking of the 16 6-bit scales).
#[inline(always)]
fn block_q3_k(b: &[u8; 110], y: &mut [f32; QK_K]) {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let d_all = f16_le(b[108], b[109]);
    let hm = &b[0..32];

    let mut aux = [
        u32::from_le_bytes([b[96], b[97], b[98], b[99]]),
        u32::from_le_bytes([b[100], b[101], b[102], b[103]]),
        u32::from_le_bytes([b[104], b[105], b[106], b[107]]),
        0u32,
    ];
    let tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4);
    aux[3] = ((aux[1] >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4);
    aux[0] = (aux[0] & KMASK2) | ((tmp & KMASK1) << 4);
    aux[1] = (aux[1] & KMASK2) | (((tmp >> 2) & KMASK1) << 4);
    // `const int8_t * scales = (const int8_t*)aux;` on a little-endian machine.
    let mut scales = [0i8; 16];
    for (k, w) in aux.iter().enumerate() {
        for (t, byte) in w.to_le_bytes().iter().enumerate() {
            scales[4 * k + t] = *byte as i8;
        }
    }

    let mut yi = 0usize;
    let mut is = 0usize;
    let mut m: u8 = 1;
    for n in 0..2 {
        let q = 32 + 32 * n; // byte offset of this half's quant bytes
        let mut shift = 0u32;
        for _j in 0..4 {
            let dl = d_all * fl(i32::from(scales[is]) - 32);
            is += 1;
            for l in 0..16 {
                let lo = i32::from((b[q + l] >> shift) & 3);
                let hi = if hm[l] & m != 0 { 0 } else { 4 };
                y[yi] = dl * fl(lo - hi);
                yi += 1;
            }
            let dl = d_all * fl(i32::from(scales[is]) - 32);
            is += 1;
            for l in 0..16 {
                let lo = i32::from((b[q + l + 16] >> shift) & 3);
                let hi = if hm[l + 16] & m != 0 { 0 } else { 4 };
                y[yi] = dl * fl(lo - hi);
                yi += 1;
            }
            shift += 2;
            m = m.wrapping_shl(1);
        }
    }
}

/// `block_q4_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qs[128]; }` → `dequantize_row_q4_K`.
#[inline(always)]
fn block_q4_k(b: &[u8; 144], y: &mut [f32; QK_K]) {
    let d = f16_le(b[0], b[1]);
    let min = f16_le(b[2], b[3]);
    let mut scales = [0u8; 12];
    scales.copy_from_slice(&b[4..16]);
    let mut yi = 0usize;
    let mut is = 0usize;
    for n in 0..4 {
        let q = 16 + 32 * n;
        let (sc, m) = get_scale_min_k4(is, &scales);
        let d1 = d * fl(i32::from(sc));
        let m1 = min * fl(i32::from(m));
        let (sc, m) = get_scale_min_k4(is + 1, &scales);
        let d2 = d * fl(i32::from(sc));
        let m2 = min * fl(i32::from(m));
        for l in 0..32 {
            y[yi] = d1 * fl(i32::from(b[q + l] & 0xF)) - m1;
            yi += 1;
        }
        for l in 0..32 {
            y[yi] = d2 * fl(i32::from(b[q + l] >> 4)) - m2;
            yi += 1;
        }
        is += 2;
    }
}

/// `block_q5_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; }` →
/// `dequantize_row_q5_K`.
#[inline(always)]
fn block_q5_k(b: &[u8; 176], y: &mut [f32; QK_K]) {
    let d = f16_le(b[0], b[1]);
    let min = f16_le(b[2], b[3]);
    let mut scales = [0u8; 12];
    scales.copy_from_slice(&b[4..16]);
    let qh = &b[16..48];
    let mut yi = 0usize;
    let mut is = 0usize;
    let mut u1: u8 = 1;
    let mut u2: u8 = 2;
    for n in 0..4 {
        let ql = 48 + 32 * n;
        let (sc, m) = get_scale_min_k4(is, &scales);
        let d1 = d * fl(i32::from(sc));
        let m1 = min * fl(i32::from(m));
        let (sc, m) = get_scale_min_k4(is + 1, &scales);
        let d2 = d * fl(i32::from(sc));
        let m2 = min * fl(i32::from(m));
        for l in 0..32 {
            let hi = if qh[l] & u1 != 0 { 16 } else { 0 };
            y[yi] = d1 * fl(i32::from(b[ql + l] & 0xF) + hi) - m1;
            yi += 1;
        }
        for l in 0..32 {
            let hi = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[yi] = d2 * fl(i32::from(b[ql + l] >> 4) + hi) - m2;
            yi += 1;
        }
        is += 2;
        u1 = u1.wrapping_shl(2);
        u2 = u2.wrapping_shl(2);
    }
}

/// `block_q6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ggml_half d; }` → `dequantize_row_q6_K`.
#[inline(always)]
fn block_q6_k(b: &[u8; 210], y: &mut [f32; QK_K]) {
    let d = f16_le(b[208], b[209]);
    for n in 0..2 {
        let ql = 64 * n; // ql += 64 per 128 outputs
        let qh = 128 + 32 * n; // qh += 32
        let sc = 192 + 8 * n; // sc += 8
        let yo = 128 * n;
        for l in 0..32 {
            let is = l / 16;
            let h = b[qh + l];
            let q1 = i32::from((b[ql + l] & 0xF) | ((h & 3) << 4)) - 32;
            let q2 = i32::from((b[ql + l + 32] & 0xF) | (((h >> 2) & 3) << 4)) - 32;
            let q3 = i32::from((b[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
            let q4 = i32::from((b[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
            let s = |k: usize| fl(i32::from(b[sc + is + k] as i8));
            // C: `d * sc[is] * q1` evaluates left to right: (d * sc) * q.
            y[yo + l] = d * s(0) * fl(q1);
            y[yo + l + 32] = d * s(2) * fl(q2);
            y[yo + l + 64] = d * s(4) * fl(q3);
            y[yo + l + 96] = d * s(6) * fl(q4);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// i-quants (lookup tables in `iq_tables`), MXFP4 and the ternary quants.
//
// ggml reads grid rows through `(const uint8_t *)(grid + index)` (int8 for iq1s), i.e. byte j of the
// little-endian table word is element j; `to_le_bytes` does the same on any host.

/// `kmask_iq2xs[j]` applied to a sign byte: `-1.f` when bit `j` is set, else `1.f`.
#[inline]
fn sign(signs: u8, j: usize) -> f32 {
    if signs & (1u8 << j) != 0 {
        -1.0
    } else {
        1.0
    }
}

/// `block_iq4_nl { ggml_half d; uint8_t qs[16]; }` → `dequantize_row_iq4_nl`.
#[inline(always)]
fn block_iq4_nl(b: &[u8; 18], y: &mut [f32; QK]) {
    let d = f16_le(b[0], b[1]);
    for j in 0..QK / 2 {
        let q = b[2 + j];
        y[j] = d * fl(i32::from(KVALUES_IQ4NL[usize::from(q & 0xF)]));
        y[j + QK / 2] = d * fl(i32::from(KVALUES_IQ4NL[usize::from(q >> 4)]));
    }
}

/// `block_iq4_xs { ggml_half d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[128]; }` →
/// `dequantize_row_iq4_xs`.
#[inline(always)]
fn block_iq4_xs(b: &[u8; 136], y: &mut [f32; QK_K]) {
    let d = f16_le(b[0], b[1]);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    for ib in 0..QK_K / 32 {
        let ls =
            i32::from((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (i32::from((scales_h >> (2 * ib)) & 3) << 4);
        let dl = d * fl(ls - 32);
        let qs = 8 + 16 * ib;
        for j in 0..16 {
            let q = b[qs + j];
            y[32 * ib + j] = dl * fl(i32::from(KVALUES_IQ4NL[usize::from(q & 0xF)]));
            y[32 * ib + j + 16] = dl * fl(i32::from(KVALUES_IQ4NL[usize::from(q >> 4)]));
        }
    }
}

/// `block_iq2_xxs { ggml_half d; uint16_t qs[32]; }` → `dequantize_row_iq2_xxs`: per 32 values, four grid
/// bytes and a `u32` of four 7-bit sign indices and a 4-bit scale.
#[inline(always)]
fn block_iq2_xxs(b: &[u8; 66], y: &mut [f32; QK_K]) {
    let d = f16_le(b[0], b[1]);
    for ib32 in 0..QK_K / 32 {
        let o = 2 + 8 * ib32;
        let aux1 = u32::from_le_bytes([b[o + 4], b[o + 5], b[o + 6], b[o + 7]]);
        let db = d * (0.5 + fl((aux1 >> 28) as i32)) * 0.25;
        for l in 0..4 {
            let grid = IQ2XXS_GRID[usize::from(b[o + l])].to_le_bytes();
            let signs = KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
            for j in 0..8 {
                y[32 * ib32 + 8 * l + j] = db * fl(i32::from(grid[j])) * sign(signs, j);
            }
        }
    }
}

/// `block_iq2_xs { ggml_half d; uint16_t qs[32]; uint8_t scales[8]; }` → `dequantize_row_iq2_xs`: each `qs`
/// is a 9-bit grid index and a 7-bit sign index.
#[inline(always)]
fn block_iq2_xs(b: &[u8; 74], y: &mut [f32; QK_K]) {
    let d = f16_le(b[0], b[1]);
    for ib32 in 0..QK_K / 32 {
        let sc = b[66 + ib32];
        let db = [d * (0.5 + fl(i32::from(sc & 0xF))) * 0.25, d * (0.5 + fl(i32::from(sc >> 4))) * 0.25];
        for l in 0..4 {
            let o = 2 + 2 * (4 * ib32 + l);
            let qs = u16::from_le_bytes([b[o], b[o + 1]]);
            let grid = IQ2XS_GRID[usize::from(qs & 511)].to_le_bytes();
            let signs = KSIGNS_IQ2XS[usize::from(qs >> 9)];
            for j in 0..8 {
                y[32 * ib32 + 8 * l + j] = db[l / 2] * fl(i32::from(grid[j])) * sign(signs, j);
            }
        }
    }
}

/// `block_iq2_s { ggml_half d; uint8_t qs[64]; uint8_t qh[8]; uint8_t scales[8]; }` → `dequantize_row_iq2_s`:
/// `qs[0..32]` are the low 8 bits of the 10-bit grid indices, `qs[32..64]` the sign bytes.
#[inline(always)]
fn block_iq2_s(b: &[u8; 82], y: &mut [f32; QK_K]) {
    let d = f16_le(b[0], b[1]);
    for ib32 in 0..QK_K / 32 {
        let sc = b[74 + ib32];
        let db = [d * (0.5 + fl(i32::from(sc & 0xF))) * 0.25, d * (0.5 + fl(i32::from(sc >> 4))) * 0.25];
        let qh = usize::from(b[66 + ib32]);
        for l in 0..4 {
            let dl = db[l / 2];
            let idx = usize::from(b[2 + 4 * ib32 + l]) | ((qh << (8 - 2 * l)) & 0x300);
            let grid = IQ2S_GRID[idx].to_le_bytes();
            let signs = b[34 + 4 * ib32 + l];
            for j in 0..8 {
                y[32 * ib32 + 8 * l + j] = dl * fl(i32::from(grid[j])) * sign(signs, j);
            }
        }
    }
}

/// `block_iq3_xxs { ggml_half d; uint8_t qs[96]; }` → `dequantize_row_iq3_xxs`: 64 grid bytes, then per 32
/// values a `u32` of four 7-bit sign indices and a 4-bit scale.
#[inline(always)]
fn block_iq3_xxs(b: &[u8; 98], y: &mut [f32; QK_K]) {
    let d = f16_le(b[0], b[1]);
    for ib32 in 0..QK_K / 32 {
        let o = 66 + 4 * ib32;
        let aux32 = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let db = d * (0.5 + fl((aux32 >> 28) as i32)) * 0.5;
        for l in 0..4 {
            let signs = KSIGNS_IQ2XS[((aux32 >> (7 * l)) & 127) as usize];
            let qs = 2 + 8 * ib32 + 2 * l;
            let grid1 = IQ3XXS_GRID[usize::from(b[qs])].to_le_bytes();
            let grid2 = IQ3XXS_GRID[usize::from(b[qs + 1])].to_le_bytes();
            let yo = 32 * ib32 + 8 * l;
            for j in 0..4 {
                y[yo + j] = db * fl(i32::from(grid1[j])) * sign(signs, j);
                y[yo + j + 4] = db * fl(i32::from(grid2[j])) * sign(signs, j + 4);
            }
        }
    }
}

/// `block_iq3_s { ggml_half d; uint8_t qs[64]; uint8_t qh[8]; uint8_t signs[32]; uint8_t scales[4]; }` →
/// `dequantize_row_iq3_s`: 9-bit grid indices (bit 8 of index `8k + i` is bit `i` of `qh[k]`).
#[inline(always)]
fn block_iq3_s(b: &[u8; 110], y: &mut [f32; QK_K]) {
    let d = f16_le(b[0], b[1]);
    for ib32 in 0..QK_K / 32 {
        let sc = b[106 + ib32 / 2];
        let db = d * fl(1 + 2 * i32::from(if ib32 % 2 == 0 { sc & 0xF } else { sc >> 4 }));
        let qh = usize::from(b[66 + ib32]);
        for l in 0..4 {
            let qs = 2 + 8 * ib32 + 2 * l;
            let grid1 = IQ3S_GRID[usize::from(b[qs]) | ((qh << (8 - 2 * l)) & 256)].to_le_bytes();
            let grid2 = IQ3S_GRID[usize::from(b[qs + 1]) | ((qh << (7 - 2 * l)) & 256)].to_le_bytes();
            let signs = b[74 + 4 * ib32 + l];
            let yo = 32 * ib32 + 8 * l;
            for j in 0..4 {
                y[yo + j] = db * fl(i32::from(grid1[j])) * sign(signs, j);
                y[yo + j + 4] = db * fl(i32::from(grid2[j])) * sign(signs, j + 4);
            }
        }
    }
}

/// `IQ1S_DELTA`.
const IQ1S_DELTA: f32 = 0.125;

/// `block_iq1_s { ggml_half d; uint8_t qs[32]; uint16_t qh[8]; }` → `dequantize_row_iq1_s`: 11-bit indices
/// into the ternary grid, a 3-bit scale and a shift sign per 32 values.
#[inline(always)]
fn block_iq1_s(b: &[u8; 50], y: &mut [f32; QK_K]) {
    let d = f16_le(b[0], b[1]);
    for ib in 0..QK_K / 32 {
        let qh = u16::from_le_bytes([b[34 + 2 * ib], b[35 + 2 * ib]]);
        let dl = d * fl(2 * i32::from((qh >> 12) & 7) + 1);
        let delta = if qh & 0x8000 != 0 { -IQ1S_DELTA } else { IQ1S_DELTA };
        for l in 0..4 {
            let idx = usize::from(b[2 + 4 * ib + l]) | (usize::from((qh >> (3 * l)) & 7) << 8);
            let grid = IQ1S_GRID[idx].to_le_bytes();
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = dl * (fl(i32::from(grid[j] as i8)) + delta);
            }
        }
    }
}

/// `block_iq1_m { uint8_t qs[32]; uint8_t qh[16]; uint8_t scales[8]; }` → `dequantize_row_iq1_m`: the f16
/// super-block scale is spread over the top nibbles of the four `u16` scale words.
#[inline(always)]
fn block_iq1_m(b: &[u8; 56], y: &mut [f32; QK_K]) {
    let sc = [
        u16::from_le_bytes([b[48], b[49]]),
        u16::from_le_bytes([b[50], b[51]]),
        u16::from_le_bytes([b[52], b[53]]),
        u16::from_le_bytes([b[54], b[55]]),
    ];
    let scale = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
    let d = f16::from_bits(scale).to_f32();
    for ib in 0..QK_K / 32 {
        let s = sc[ib / 2];
        let dl1 = d * fl(2 * i32::from((s >> (6 * (ib % 2))) & 0x7) + 1);
        let dl2 = d * fl(2 * i32::from((s >> (6 * (ib % 2) + 3)) & 0x7) + 1);
        let qh = [u16::from(b[32 + 2 * ib]), u16::from(b[33 + 2 * ib])];
        let qs = 4 * ib;
        let idx = [
            usize::from(b[qs]) | usize::from((qh[0] << 8) & 0x700),
            usize::from(b[qs + 1]) | usize::from((qh[0] << 4) & 0x700),
            usize::from(b[qs + 2]) | usize::from((qh[1] << 8) & 0x700),
            usize::from(b[qs + 3]) | usize::from((qh[1] << 4) & 0x700),
        ];
        let delta = |h: u16, bit: u16| if h & bit != 0 { -IQ1S_DELTA } else { IQ1S_DELTA };
        let deltas = [delta(qh[0], 0x08), delta(qh[0], 0x80), delta(qh[1], 0x08), delta(qh[1], 0x80)];
        for l in 0..4 {
            let dl = if l < 2 { dl1 } else { dl2 };
            let grid = IQ1S_GRID[idx[l]].to_le_bytes();
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = dl * (fl(i32::from(grid[j] as i8)) + deltas[l]);
            }
        }
    }
}

/// `GGML_E8M0_TO_FP32_HALF`: half of the E8M0 scale `2^(x - 127)`, built from its bits (`x < 2` gives a
/// subnormal). Finite for every `x`.
#[inline]
fn e8m0_to_fp32_half(x: u8) -> f32 {
    let bits = if x < 2 { 0x0020_0000u32 << x } else { (u32::from(x) - 1) << 23 };
    f32::from_bits(bits)
}

/// `block_mxfp4 { uint8_t e; uint8_t qs[16]; }` → `dequantize_row_mxfp4`.
#[inline(always)]
fn block_mxfp4(b: &[u8; 17], y: &mut [f32; QK]) {
    let d = e8m0_to_fp32_half(b[0]);
    for j in 0..QK / 2 {
        let q = b[1 + j];
        y[j] = fl(i32::from(KVALUES_MXFP4[usize::from(q & 0x0F)])) * d;
        y[j + QK / 2] = fl(i32::from(KVALUES_MXFP4[usize::from(q >> 4)])) * d;
    }
}

/// One base-3 digit of a TQ1_0 byte: `((uint16_t)(uint8_t)(q * pow3[n]) * 3) >> 8`, minus 1.
#[inline]
fn tq1_digit(q: u8, pow3: u8) -> i32 {
    let q = q.wrapping_mul(pow3);
    i32::from((u16::from(q) * 3) >> 8) - 1
}

/// `block_tq1_0 { uint8_t qs[48]; uint8_t qh[4]; ggml_half d; }` → `dequantize_row_tq1_0`: five base-3
/// digits per `qs` byte, four per `qh` byte.
#[inline(always)]
fn block_tq1_0(b: &[u8; 54], y: &mut [f32; QK_K]) {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let d = f16_le(b[52], b[53]);
    // qs[0..32]: 5 × 32 values; qs[32..48]: 5 × 16 values; qh = bytes 48..52: 4 × 4 values.
    let (qs0, rest) = b.split_at(32);
    let (qs1, rest) = rest.split_at(16);
    let qh = &rest[..4];
    let digits = POW3
        .iter()
        .flat_map(|&p| qs0.iter().map(move |&q| (q, p)))
        .chain(POW3.iter().flat_map(|&p| qs1.iter().map(move |&q| (q, p))))
        .chain(POW3[..4].iter().flat_map(|&p| qh.iter().map(move |&q| (q, p))));
    for (yi, (q, p)) in y.iter_mut().zip(digits) {
        *yi = fl(tq1_digit(q, p)) * d;
    }
}

/// `block_tq2_0 { uint8_t qs[64]; ggml_half d; }` → `dequantize_row_tq2_0`.
#[inline(always)]
fn block_tq2_0(b: &[u8; 66], y: &mut [f32; QK_K]) {
    let d = f16_le(b[64], b[65]);
    let mut yi = 0usize;
    for j in (0..64).step_by(32) {
        for l in 0..4 {
            for m in 0..32 {
                let q = (b[j + m] >> (2 * l)) & 3;
                y[yi] = fl(i32::from(q) - 1) * d;
                yi += 1;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod wide_tests {
    use super::*;

    /// Every type's blocks give the same values on every instruction path this CPU runs as in
    /// the portable build (random bytes, so every scale and code; NaN counts as equal to NaN,
    /// the only case where bits could legitimately differ, in the payload).
    #[test]
    fn every_path_gives_the_portable_values() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut compared = 0;
        for ty in GgmlType::ALL {
            let (bs, ts) = (ty.block_size() as usize, ty.type_size() as usize);
            let blocks = 37;
            let data: Vec<u8> = (0..blocks * ts)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    s as u8
                })
                .collect();
            let mut want = vec![0f32; blocks * bs];
            if dequantize_sized(ty, &data, &mut want).is_err() {
                continue; // a type without a dequantiser (nothing to compare)
            }
            let same = |got: &[f32], path: &str| {
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                        "{ty:?} {path} value {i}: {g} vs {w}"
                    );
                }
            };
            let mut got = vec![0f32; blocks * bs];
            dequantize_into(ty, &data, &mut got).unwrap();
            same(&got, "dispatched");
            #[cfg(target_arch = "x86_64")]
            {
                if sinkscope_cpu::Path::Avx2.supported() {
                    #[allow(unsafe_code)]
                    unsafe { wide::dequantize_avx2(ty, &data, &mut got) }.unwrap();
                    same(&got, "avx2");
                }
                if sinkscope_cpu::Path::Avx512.supported() {
                    #[allow(unsafe_code)]
                    unsafe { wide::dequantize_avx512(ty, &data, &mut got) }.unwrap();
                    same(&got, "avx512");
                }
            }
            compared += 1;
        }
        assert!(compared >= 24, "only {compared} types compared");
    }
}
