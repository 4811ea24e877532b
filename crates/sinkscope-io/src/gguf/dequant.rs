//! Exact dequantisation of ggml tensor data, transliterated from ggml's reference `dequantize_row_*`
//! functions (ggml/src/ggml-quants.c) and block layouts (ggml/src/ggml-common.h).
//!
//! Every value is computed in f32 with the same operations, operands and evaluation order as the C reference
//! (integer quants converted to f32, then `q*d`, `q*d + m`, `dl*q - ml`, `(d*sc)*q`, ...), so the results are
//! bitwise equal to ggml's scalar reference code compiled without floating-point contraction (no FMA fusion).
//! f16 scales are widened exactly (the `half` crate), bf16 by shifting the bits, as `GGML_BF16_TO_FP32` does.
//!
//! Data is treated as one long run of blocks: ggml rows always hold whole blocks, so dequantising a tensor
//! block by block gives the row-major (ggml `ne[0]` fastest) element order directly.
//!
//! All block functions take fixed-size arrays and index them only with loop counters whose bounds are
//! constants below the array lengths, so no input can make them index out of range.

use half::f16;

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

/// Dequantise `data` (values of type `ty`) into `out`; `data` must hold exactly `out.len()` elements.
pub fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), DequantError> {
    check_sizes(ty, data.len(), out.len())?;
    match ty {
        GgmlType::F32 => run::<4, 1>(data, out, |b, y| y[0] = f32::from_le_bytes(*b)),
        GgmlType::F16 => run::<2, 1>(data, out, |b, y| y[0] = f16::from_le_bytes(*b).to_f32()),
        GgmlType::BF16 => run::<2, 1>(data, out, |b, y| y[0] = bf16_to_f32(*b)),
        GgmlType::Q4_0 => run::<18, QK>(data, out, block_q4_0),
        GgmlType::Q4_1 => run::<20, QK>(data, out, block_q4_1),
        GgmlType::Q5_0 => run::<22, QK>(data, out, block_q5_0),
        GgmlType::Q5_1 => run::<24, QK>(data, out, block_q5_1),
        GgmlType::Q8_0 => run::<34, QK>(data, out, block_q8_0),
        GgmlType::Q2_K => run::<84, QK_K>(data, out, block_q2_k),
        GgmlType::Q3_K => run::<110, QK_K>(data, out, block_q3_k),
        GgmlType::Q4_K => run::<144, QK_K>(data, out, block_q4_k),
        GgmlType::Q5_K => run::<176, QK_K>(data, out, block_q5_k),
        GgmlType::Q6_K => run::<210, QK_K>(data, out, block_q6_k),
        other => return Err(DequantError::Unsupported(other)),
    }
    Ok(())
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

/// Apply a block function to every `TS`-byte block of `data` and `QB`-element chunk of `out`.
/// (Sizes were checked by `check_sizes`, so both iterators have the same length and no remainder.)
fn run<const TS: usize, const QB: usize>(
    data: &[u8],
    out: &mut [f32],
    f: impl Fn(&[u8; TS], &mut [f32; QB]),
) {
    for (b, y) in data.chunks_exact(TS).zip(out.chunks_exact_mut(QB)) {
        if let (Ok(b), Ok(y)) = (<&[u8; TS]>::try_from(b), <&mut [f32; QB]>::try_from(y)) {
            f(b, y);
        }
    }
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
