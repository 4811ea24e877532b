//! Round-to-nearest K-quant quantisers (Q2_K, Q4_K, Q6_K), one 256-value super-block at a
//! time, writing llama.cpp's block layouts (`ggml-common.h`). Not llama.cpp's search for the
//! best scales (`make_qkx2_quants`): each sub-block's step is its range over the number of
//! levels, rounded *up* to the 6/4/8-bit scale grid so that no value is clipped, and every
//! value is rounded to the nearest level. Errors (checked in tests against sinkscope-io's
//! dequantisers): at most half a step, plus at most one `dmin` for the types with a minimum.

use half::f16;

/// Values per super-block.
pub const QK_K: usize = 256;

/// The stored types the generator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    F32,
    Q2K,
    Q4K,
    Q6K,
}

impl Quant {
    /// ggml's type id.
    pub fn ggml_id(self) -> u32 {
        match self {
            Quant::F32 => 0,
            Quant::Q2K => 10,
            Quant::Q4K => 12,
            Quant::Q6K => 14,
        }
    }

    /// Bytes of a row of `n` values (`n` a multiple of 256 for the K-quants).
    pub fn row_bytes(self, n: usize) -> usize {
        match self {
            Quant::F32 => 4 * n,
            Quant::Q2K => n / QK_K * 84,
            Quant::Q4K => n / QK_K * 144,
            Quant::Q6K => n / QK_K * 210,
        }
    }

    /// Appends the encoding of `x` (a whole row) to `out`.
    pub fn encode_row(self, x: &[f32], out: &mut Vec<u8>) {
        match self {
            Quant::F32 => x.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Quant::Q2K => x.chunks_exact(QK_K).for_each(|b| out.extend_from_slice(&q2_k(b))),
            Quant::Q4K => x.chunks_exact(QK_K).for_each(|b| out.extend_from_slice(&q4_k(b))),
            Quant::Q6K => x.chunks_exact(QK_K).for_each(|b| out.extend_from_slice(&q6_k(b))),
        }
    }
}

/// Per sub-block of `n` values: (step before the scale grid, minimum offset ≥ 0).
fn steps_and_mins(x: &[f32], n: usize, levels: f32) -> Vec<(f32, f32)> {
    x.chunks_exact(n)
        .map(|c| {
            let lo = c.iter().copied().fold(0.0f32, f32::min);
            let hi = c.iter().copied().fold(0.0f32, f32::max);
            ((hi - lo) / levels, -lo)
        })
        .collect()
}

/// A super-scale such that `ceil(v / d)` ≤ `max_q` for every `v ≤ vmax`: `vmax / (max_q − ½)`
/// rounded *up* to an f16 (down would clip where f16 is coarse: its subnormals, below 6.1e-5).
fn super_scale(vmax: f32, max_q: f32) -> (f32, [u8; 2]) {
    let target = vmax / (max_q - 0.5);
    let mut x = f16::from_f32(target);
    if x.to_f32() < target {
        x = f16::from_bits(x.to_bits() + 1);
    }
    (x.to_f32(), x.to_le_bytes())
}

/// `ceil(v / d)` clamped to `0..=max_q` (0 where `d` is 0).
fn grid_up(v: f32, d: f32, max_q: u8) -> u8 {
    if d > 0.0 {
        (v / d).ceil().clamp(0.0, f32::from(max_q)) as u8
    } else {
        0
    }
}

/// Nearest level of `(x + m) / step`, clamped to `0..=max_q`.
fn level(x: f32, m: f32, step: f32, max_q: u8) -> u8 {
    if step > 0.0 {
        ((x + m) / step).round().clamp(0.0, f32::from(max_q)) as u8
    } else {
        0
    }
}

/// `block_q4_K { half d; half dmin; u8 scales[12]; u8 qs[128]; }`: 8 sub-blocks of 32,
/// `x = d·sc·q − dmin·m` with 6-bit `sc`, `m` and 4-bit `q`.
pub fn q4_k(x: &[f32]) -> [u8; 144] {
    let sm = steps_and_mins(x, 32, 15.0);
    let (d, db) = super_scale(sm.iter().map(|p| p.0).fold(0.0, f32::max), 63.0);
    let (dmin, mb) = super_scale(sm.iter().map(|p| p.1).fold(0.0, f32::max), 63.0);
    let sc: Vec<u8> = sm.iter().map(|p| grid_up(p.0, d, 63)).collect();
    let m: Vec<u8> = sm.iter().map(|p| grid_up(p.1, dmin, 63)).collect();
    let mut b = [0u8; 144];
    b[0..2].copy_from_slice(&db);
    b[2..4].copy_from_slice(&mb);
    // get_scale_min_k4's packing.
    for j in 0..8 {
        if j < 4 {
            b[4 + j] = sc[j];
            b[4 + j + 4] = m[j];
        } else {
            b[4 + j + 4] = (sc[j] & 0xF) | ((m[j] & 0xF) << 4);
            b[4 + j - 4] |= (sc[j] >> 4) << 6;
            b[4 + j] |= (m[j] >> 4) << 6;
        }
    }
    for n in 0..4 {
        for half in 0..2 {
            let j = 2 * n + half;
            let (step, off) = (d * f32::from(sc[j]), dmin * f32::from(m[j]));
            for l in 0..32 {
                let q = level(x[32 * j + l], off, step, 15);
                b[16 + 32 * n + l] |= q << (4 * half);
            }
        }
    }
    b
}

/// `block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d; }`: 16 sub-blocks of 16,
/// `x = d·sc·(q − 32)` with 8-bit signed `sc` and 6-bit `q`.
pub fn q6_k(x: &[f32]) -> [u8; 210] {
    let steps: Vec<f32> =
        x.chunks_exact(16).map(|c| c.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 31.0).collect();
    let (d, db) = super_scale(steps.iter().copied().fold(0.0, f32::max), 127.0);
    let sc: Vec<u8> = steps.iter().map(|s| grid_up(*s, d, 127)).collect();
    let mut b = [0u8; 210];
    let mut q = [0u8; QK_K];
    for (i, v) in x.iter().enumerate() {
        let step = d * f32::from(sc[i / 16]);
        q[i] = if step > 0.0 { ((v / step).round().clamp(-32.0, 31.0) + 32.0) as u8 } else { 32 };
    }
    for n in 0..2 {
        let (ql, qh, yo) = (64 * n, 128 + 32 * n, 128 * n);
        for l in 0..32 {
            let (q1, q2, q3, q4) = (q[yo + l], q[yo + l + 32], q[yo + l + 64], q[yo + l + 96]);
            b[ql + l] = (q1 & 0xF) | ((q3 & 0xF) << 4);
            b[ql + l + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4);
            b[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
        }
    }
    for (k, s) in sc.iter().enumerate() {
        b[192 + k] = *s; // ≤ 127: the same byte as an i8
    }
    b[208..210].copy_from_slice(&db);
    b
}

/// `block_q2_K { u8 scales[16]; u8 qs[64]; half d; half dmin; }`: 16 sub-blocks of 16,
/// `x = d·(sc & 15)·q − dmin·(sc >> 4)` with 2-bit `q`.
pub fn q2_k(x: &[f32]) -> [u8; 84] {
    let sm = steps_and_mins(x, 16, 3.0);
    let (d, db) = super_scale(sm.iter().map(|p| p.0).fold(0.0, f32::max), 15.0);
    let (dmin, mb) = super_scale(sm.iter().map(|p| p.1).fold(0.0, f32::max), 15.0);
    let sc: Vec<u8> = sm.iter().map(|p| grid_up(p.0, d, 15)).collect();
    let m: Vec<u8> = sm.iter().map(|p| grid_up(p.1, dmin, 15)).collect();
    let mut b = [0u8; 84];
    for j in 0..16 {
        b[j] = sc[j] | (m[j] << 4);
    }
    // dequantize_row_q2_K: half n (128 values), shift s (0, 2, 4, 6), then two groups of 16
    // reading qs[32n + l] and qs[32n + 16 + l]; sub-block index is = 8n + 2s' + g.
    for n in 0..2 {
        for s in 0..4 {
            for g in 0..2 {
                let j = 8 * n + 2 * s + g;
                let (step, off) = (d * f32::from(sc[j]), dmin * f32::from(m[j]));
                for l in 0..16 {
                    let q = level(x[16 * j + l], off, step, 3);
                    b[16 + 32 * n + 16 * g + l] |= q << (2 * s);
                }
            }
        }
    }
    b[80..82].copy_from_slice(&db);
    b[82..84].copy_from_slice(&mb);
    b
}
