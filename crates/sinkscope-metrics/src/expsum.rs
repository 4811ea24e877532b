//! `Σ_j exp(z_j − m)` in `f64` for a row of `f32` logits with `m ≥ max_j z_j`: the
//! denominator of the log-softmax, written out in AVX-512 and AVX2 (the same arithmetic
//! lane for lane as the portable loop, so the same bits on every CPU).
//!
//! # Numerics
//! Each term is `exp(x)`, `x = z − m ≤ 0`, computed as `2ᵏ · 2^(j/8) · (1 + q(r))`:
//! `n = round(8x / ln 2) = 8k + j` (`0 ≤ j < 8`; round-half-even by the `1.5·2⁵²` trick),
//! `r = x − n·(ln2_hi/8) − n·(ln2_lo/8)` with Cody–Waite's split of `ln 2` (`n·ln2_hi/8` is
//! exact), so `|r| ≤ ln 2 / 16`; `q(r) = Σ_{i=1..8} rⁱ/i!` in Horner form (truncation
//! `≤ (ln 2/16)⁹/9! < 2e-18`, far below half an ulp); `2^(j/8)` comes from a table of the
//! eight correctly rounded values and is applied as `T + T·q` (one rounding), then `2ᵏ` is
//! built in the exponent field. Every term is within about 1 ulp of the exact `exp(x)` (a
//! test checks 2 ulps against the C library's `exp` over the range). Arguments below `−708`
//! are raised to `−708`: `exp(−708) < 3.4e-308`, and the sum always holds the maximum's term
//! `exp(0) = 1`, so each such term changes the sum by less than `2⁻¹⁰⁰⁰` of an ulp — it
//! rounds away exactly as the true, smaller term would.
//!
//! Every multiply-add is fused (`f64::mul_add`: the FMA instruction on the AVX paths,
//! the C library's correctly rounded `fma` elsewhere), so each step rounds once, the same
//! on every path. The terms go to sixteen partial sums (term `i` to sum `i mod 16`), added
//! at the end in a fixed tree: the AVX-512 loop holds them in two registers of eight lanes,
//! the AVX2 loop in four of four, the portable loop in an array.

/// Partial sums (term `i` goes to sum `i mod LANES`).
const LANES: usize = 16;
/// `1.5·2⁵²`: adding it rounds a float of magnitude `< 2⁵¹` to an integer.
const ROUND: f64 = 6_755_399_441_055_744.0;
/// `8 / ln 2`.
const EIGHT_LOG2E: f64 = 8.0 * std::f64::consts::LOG2_E;
/// `ln 2 / 8` split (fdlibm's `ln 2` split, divided by 8 exactly): `LN2_8_HI` has 32
/// trailing zero bits, so `n·LN2_8_HI` is exact for `|n| < 2²⁰`.
const LN2_8_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000) / 8.0;
const LN2_8_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76) / 8.0;
/// Below this, terms are raised to it (see the module docs).
const MIN_ARG: f64 = -708.0;
/// `2^(j/8)`, `j = 0..8`, correctly rounded (Python's `decimal` at 60 digits, then
/// `float()`, which rounds correctly).
const EXP2_EIGHTHS: [f64; 8] = [
    f64::from_bits(0x3FF0_0000_0000_0000),
    f64::from_bits(0x3FF1_72B8_3C7D_517B),
    f64::from_bits(0x3FF3_06FE_0A31_B715),
    f64::from_bits(0x3FF4_BFDA_D536_2A27),
    f64::from_bits(0x3FF6_A09E_667F_3BCD),
    f64::from_bits(0x3FF8_ACE5_422A_A0DB),
    f64::from_bits(0x3FFA_E89F_995A_D3AD),
    f64::from_bits(0x3FFD_5818_DCFB_A487),
];
/// `1/i!` for `i = 0..=8`.
const INV_FACT: [f64; 9] = {
    let mut c = [1.0f64; 9];
    let mut k = 1;
    while k < 9 {
        c[k] = c[k - 1] / k as f64;
        k += 1;
    }
    c
};

/// `exp(x)` for `x ≤ 0` (see the module docs): the reference every path follows step by step.
#[inline(always)]
fn exp_nonpositive(x: f64) -> f64 {
    let x = x.max(MIN_ARG);
    let t = x.mul_add(EIGHT_LOG2E, ROUND);
    let n = t - ROUND;
    let r = (-n).mul_add(LN2_8_LO, (-n).mul_add(LN2_8_HI, x));
    let mut q = INV_FACT[8];
    for c in INV_FACT[1..8].iter().rev() {
        q = q.mul_add(r, *c);
    }
    let q = q * r;
    // n in [-8172, 0]: the low bits of `t` hold n = 8k + j.
    let n_int = (t.to_bits() as i64).wrapping_sub(ROUND.to_bits() as i64);
    let table = EXP2_EIGHTHS[(n_int & 7) as usize];
    let scale = f64::from_bits((((n_int >> 3) + 1023) as u64) << 52);
    table.mul_add(q, table) * scale
}

/// The sixteen partial sums added in the fixed tree.
#[inline(always)]
fn tree(a: &[f64; LANES]) -> f64 {
    let s8: [f64; 8] = std::array::from_fn(|i| a[i] + a[i + 8]);
    let s4: [f64; 4] = std::array::from_fn(|i| s8[i] + s8[i + 4]);
    (s4[0] + s4[2]) + (s4[1] + s4[3])
}

/// The portable loop (the reference of the vector paths).
fn sum_portable(row: &[f32], m: f64) -> f64 {
    let mut acc = [0f64; LANES];
    add_terms(&mut acc, row, m);
    tree(&acc)
}

/// Adds the terms of `row` (at most one chunk's worth on the vector paths' tails) to `acc`,
/// term `i` to `acc[i mod LANES]`.
#[inline(always)]
fn add_terms(acc: &mut [f64; LANES], row: &[f32], m: f64) {
    for chunk in row.chunks(LANES) {
        for (a, &z) in acc.iter_mut().zip(chunk) {
            *a += exp_nonpositive(f64::from(z) - m);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{
        add_terms, tree, EIGHT_LOG2E, EXP2_EIGHTHS, INV_FACT, LANES, LN2_8_HI, LN2_8_LO, MIN_ARG, ROUND,
    };
    #[allow(clippy::wildcard_imports)]
    use std::arch::x86_64::*;

    /// Eight terms of [`super::exp_nonpositive`], lane for lane.
    #[target_feature(enable = "avx512f,fma")]
    fn exp8(z: __m256, m: __m512d) -> __m512d {
        let x = _mm512_max_pd(_mm512_sub_pd(_mm512_cvtps_pd(z), m), _mm512_set1_pd(MIN_ARG));
        let round = _mm512_set1_pd(ROUND);
        let t = _mm512_fmadd_pd(x, _mm512_set1_pd(EIGHT_LOG2E), round);
        let n = _mm512_sub_pd(t, round);
        let r = _mm512_fnmadd_pd(n, _mm512_set1_pd(LN2_8_HI), x);
        let r = _mm512_fnmadd_pd(n, _mm512_set1_pd(LN2_8_LO), r);
        let mut q = _mm512_set1_pd(INV_FACT[8]);
        for c in INV_FACT[1..8].iter().rev() {
            q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(*c));
        }
        let q = _mm512_mul_pd(q, r);
        let n_int = _mm512_sub_epi64(_mm512_castpd_si512(t), _mm512_castpd_si512(round));
        // SAFETY: an unaligned load of the eight table entries.
        #[allow(unsafe_code)]
        let table = unsafe { _mm512_loadu_pd(EXP2_EIGHTHS.as_ptr()) };
        // `permutexvar` uses the low three bits of each index: j = n mod 8.
        let table = _mm512_permutexvar_pd(n_int, table);
        let k = _mm512_add_epi64(_mm512_srai_epi64::<3>(n_int), _mm512_set1_epi64(1023));
        let scale = _mm512_castsi512_pd(_mm512_slli_epi64::<52>(k));
        _mm512_mul_pd(_mm512_fmadd_pd(table, q, table), scale)
    }

    /// [`super::sum_portable`] with the partial sums in two registers.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) fn sum_avx512(row: &[f32], m: f64) -> f64 {
        let mv = _mm512_set1_pd(m);
        let (mut lo, mut hi) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            // SAFETY: `c` holds 16 floats; two unaligned loads of eight.
            #[allow(unsafe_code)]
            let (a, b) = unsafe { (_mm256_loadu_ps(c.as_ptr()), _mm256_loadu_ps(c.as_ptr().add(8))) };
            lo = _mm512_add_pd(lo, exp8(a, mv));
            hi = _mm512_add_pd(hi, exp8(b, mv));
        }
        let mut acc = [0f64; LANES];
        // SAFETY: `acc` holds 16 doubles; two unaligned stores of eight.
        #[allow(unsafe_code)]
        unsafe {
            _mm512_storeu_pd(acc.as_mut_ptr(), lo);
            _mm512_storeu_pd(acc.as_mut_ptr().add(8), hi);
        }
        add_terms(&mut acc, chunks.remainder(), m);
        tree(&acc)
    }

    /// Four terms of [`super::exp_nonpositive`], lane for lane.
    #[target_feature(enable = "avx2,fma")]
    fn exp4(z: __m128, m: __m256d) -> __m256d {
        let x = _mm256_max_pd(_mm256_sub_pd(_mm256_cvtps_pd(z), m), _mm256_set1_pd(MIN_ARG));
        let round = _mm256_set1_pd(ROUND);
        let t = _mm256_fmadd_pd(x, _mm256_set1_pd(EIGHT_LOG2E), round);
        let n = _mm256_sub_pd(t, round);
        let r = _mm256_fnmadd_pd(n, _mm256_set1_pd(LN2_8_HI), x);
        let r = _mm256_fnmadd_pd(n, _mm256_set1_pd(LN2_8_LO), r);
        let mut q = _mm256_set1_pd(INV_FACT[8]);
        for c in INV_FACT[1..8].iter().rev() {
            q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(*c));
        }
        let q = _mm256_mul_pd(q, r);
        let n_int = _mm256_sub_epi64(_mm256_castpd_si256(t), _mm256_castpd_si256(round));
        let j = _mm256_and_si256(n_int, _mm256_set1_epi64x(7));
        // SAFETY: every index is in 0..8, inside the table.
        #[allow(unsafe_code)]
        let table = unsafe { _mm256_i64gather_pd::<8>(EXP2_EIGHTHS.as_ptr(), j) };
        // k = n >> 3 (arithmetic): AVX2 has no 64-bit arithmetic shift, but n ≤ 0 fits in
        // 32 bits, so k is the logical shift of n + 8·1024 less 1024 (n + 8192 ≥ 0).
        let biased = _mm256_add_epi64(n_int, _mm256_set1_epi64x(8 * 1024));
        let k = _mm256_add_epi64(_mm256_srli_epi64::<3>(biased), _mm256_set1_epi64x(1023 - 1024));
        let scale = _mm256_castsi256_pd(_mm256_slli_epi64::<52>(k));
        _mm256_mul_pd(_mm256_fmadd_pd(table, q, table), scale)
    }

    /// [`super::sum_portable`] with the partial sums in four registers.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn sum_avx2(row: &[f32], m: f64) -> f64 {
        let mv = _mm256_set1_pd(m);
        let mut s = [_mm256_setzero_pd(); 4];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for (i, s) in s.iter_mut().enumerate() {
                // SAFETY: `c` holds 16 floats; an unaligned load of four at 4i.
                #[allow(unsafe_code)]
                let z = unsafe { _mm_loadu_ps(c.as_ptr().add(4 * i)) };
                *s = _mm256_add_pd(*s, exp4(z, mv));
            }
        }
        let mut acc = [0f64; LANES];
        for (i, s) in s.iter().enumerate() {
            // SAFETY: `acc` holds 16 doubles; an unaligned store of four at 4i.
            #[allow(unsafe_code)]
            unsafe {
                _mm256_storeu_pd(acc.as_mut_ptr().add(4 * i), *s)
            };
        }
        add_terms(&mut acc, chunks.remainder(), m);
        tree(&acc)
    }
}

/// `Σ_j exp(row[j] − m)` for `m ≥ max(row)` (finite), as the [module docs](self) describe.
pub fn sum_exp_shifted(row: &[f32], m: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        match sinkscope_cpu::path() {
            // SAFETY: the process's path is one the CPU supports, and each path includes the
            // features the function enables (AVX-512F and FMA; AVX2 and FMA).
            #[allow(unsafe_code)]
            sinkscope_cpu::Path::Avx512 => return unsafe { x86::sum_avx512(row, m) },
            // SAFETY: as above.
            #[allow(unsafe_code)]
            sinkscope_cpu::Path::Avx2 => return unsafe { x86::sum_avx2(row, m) },
            sinkscope_cpu::Path::Portable => {}
        }
    }
    sum_portable(row, m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    /// Every term within 2 ulps of the C library's `exp` on a dense grid of `[−708, 0]` plus
    /// the edges (libm's own error is under 1 ulp, so this bounds ours near 1).
    #[test]
    fn terms_match_libm_to_two_ulps() {
        let mut worst = 0;
        let mut x = 0.0f64;
        while x >= MIN_ARG {
            worst = worst.max(ulps(exp_nonpositive(x), x.exp()));
            x -= 0.000_731_7;
        }
        for x in [0.0, -0.0, -1e-300, -f64::EPSILON, -0.5 * std::f64::consts::LN_2, -708.0, -707.9999] {
            worst = worst.max(ulps(exp_nonpositive(x), x.exp()));
        }
        assert!(worst <= 2, "worst {worst} ulps");
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    /// The table is `2^(j/8)` to half an ulp of libm's `exp2` (itself under 1 ulp; the
    /// constants were rounded from 60 digits), and each entry's eighth power is `2^j` to 8 ulps.
    #[test]
    fn table_holds_eighths_of_powers_of_two() {
        for (j, &t) in EXP2_EIGHTHS.iter().enumerate() {
            assert!(ulps(t, (j as f64 / 8.0).exp2()) <= 1, "j = {j}");
            let p = (0..8).fold(1.0f64, |a, _| a * t);
            assert!(ulps(p, f64::from(1u32 << j)) <= 8, "j = {j}: {p}");
        }
    }

    /// Far-below terms: the sum of `1` and many terms under `e⁻⁷⁰⁸` is exactly `1`, as with
    /// libm (whose terms are smaller or zero).
    #[test]
    fn negligible_terms_round_away() {
        let mut row = vec![-1.0e4f32; 1000];
        row[3] = 0.0;
        assert_eq!(sum_exp_shifted(&row, 0.0), 1.0);
    }

    /// Every path's sum equals the portable one bit for bit (whatever the length), and a
    /// compensated sum of libm's terms to 1e-14 (sixteen running sums of ~3k terms each round
    /// to about 3e-15).
    #[test]
    fn paths_agree_bit_for_bit() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let row: Vec<f32> = (0..49_157)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 * 40.0 - 30.0
            })
            .collect();
        let m = f64::from(row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        let fast = sum_exp_shifted(&row, m);
        // Every length up to two chunks and a few more: the vector paths' tails.
        for len in (0..40).chain([49_152, 49_157]) {
            let part = &row[..len];
            let want = sum_portable(part, m).to_bits();
            assert_eq!(sum_exp_shifted(part, m).to_bits(), want, "len {len}");
            #[cfg(target_arch = "x86_64")]
            {
                use sinkscope_cpu::Path;
                if Path::Avx512.supported() {
                    #[allow(unsafe_code)]
                    let got = unsafe { x86::sum_avx512(part, m) };
                    assert_eq!(got.to_bits(), want, "avx512, len {len}");
                }
                if Path::Avx2.supported() {
                    #[allow(unsafe_code)]
                    let got = unsafe { x86::sum_avx2(part, m) };
                    assert_eq!(got.to_bits(), want, "avx2, len {len}");
                }
            }
        }
        // Reference: libm's terms, Neumaier-compensated (a plain running sum of 49k terms is
        // itself off by ~1e-14).
        let (mut sum, mut comp) = (0f64, 0f64);
        for &z in &row {
            let t = (f64::from(z) - m).exp();
            let u = sum + t;
            comp += if sum.abs() >= t.abs() { (sum - u) + t } else { (t - u) + sum };
            sum = u;
        }
        let libm = sum + comp;
        assert!(((fast - libm) / libm).abs() < 1e-14, "{fast} vs {libm}");
    }
}
