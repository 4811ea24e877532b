//! `Σ_j exp(z_j − m)` in `f64` for a row of `f32` logits with `m ≥ max_j z_j`: the
//! denominator of the log-softmax, written so that the compiler vectorises it.
//!
//! # Numerics
//! Each term is `exp(x)`, `x = z − m ≤ 0`, computed as `2ⁿ · p(r)`: `n = round(x / ln 2)`
//! (round-half-even by the `1.5·2⁵²` trick), `r = x − n·ln2_hi − n·ln2_lo` with Cody–Waite's
//! split of `ln 2` (`n·ln2_hi` is exact), `|r| ≤ ln 2 / 2`, and `p` the Taylor polynomial of
//! degree 13 in Horner form (truncation `≤ (ln 2 / 2)¹⁴ / 14! < 5e-18`, below half an ulp),
//! so every term is within about 1 ulp of the exact `exp(x)` (a test checks 2 ulps against
//! the C library's `exp` over the range). Arguments below `−708` are raised to `−708`:
//! `exp(−708) < 3.4e-308`, and the sum always holds the maximum's term `exp(0) = 1`, so
//! each such term changes the sum by less than `2⁻¹⁰⁰⁰` of an ulp — it rounds away exactly as
//! the true, smaller term would.
//!
//! The terms go to eight partial sums (term `j` to sum `j mod 8`), added at the end in a fixed
//! tree. Plain multiplies and adds only (Rust never fuses them), so the result is the same
//! bits on every CPU and instruction set: the AVX-512 and AVX2 builds of the loop below are
//! the same arithmetic, lane for lane.

const LANES: usize = 8;
/// `1.5·2⁵²`: adding it rounds a float of magnitude `< 2⁵¹` to an integer.
const ROUND: f64 = 6_755_399_441_055_744.0;
const LOG2E: f64 = std::f64::consts::LOG2_E;
/// `ln 2` split (fdlibm): `LN2_HI` has 32 trailing zero bits, so `n·LN2_HI` is exact.
const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
/// Below this, terms are raised to it (see the module docs).
const MIN_ARG: f64 = -708.0;
/// `1/k!` for `k = 0..=13`.
const INV_FACT: [f64; 14] = {
    let mut c = [1.0f64; 14];
    let mut k = 1;
    while k < 14 {
        c[k] = c[k - 1] / k as f64;
        k += 1;
    }
    c
};

/// `exp(x)` for `MIN_ARG ≤ x ≤ 0` (see the module docs).
#[inline(always)]
fn exp_nonpositive(x: f64) -> f64 {
    let x = x.max(MIN_ARG);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = INV_FACT[13];
    for k in (0..13).rev() {
        p = p * r + INV_FACT[k];
    }
    // n in [-1022, 0]: the low bits of `t` hold n; 2ⁿ is built in the exponent field.
    let n_int = (t.to_bits() as i64).wrapping_sub(ROUND.to_bits() as i64);
    let scale = f64::from_bits(((n_int + 1023) as u64) << 52);
    p * scale
}

#[inline(always)]
fn sum_lanes(row: &[f32], m: f64) -> f64 {
    let mut acc = [0f64; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &z) in acc.iter_mut().zip(c) {
            *a += exp_nonpositive(f64::from(z) - m);
        }
    }
    for (a, &z) in acc.iter_mut().zip(chunks.remainder()) {
        *a += exp_nonpositive(f64::from(z) - m);
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)]
unsafe fn sum_avx512(row: &[f32], m: f64) -> f64 {
    sum_lanes(row, m)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
unsafe fn sum_avx2(row: &[f32], m: f64) -> f64 {
    sum_lanes(row, m)
}

/// `Σ_j exp(row[j] − m)` for `m ≥ max(row)` (finite), as the [module docs](self) describe.
pub fn sum_exp_shifted(row: &[f32], m: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            #[allow(unsafe_code)]
            return unsafe { sum_avx512(row, m) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            #[allow(unsafe_code)]
            return unsafe { sum_avx2(row, m) };
        }
    }
    sum_lanes(row, m)
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

    /// Far-below terms: the sum of `1` and many terms under `e⁻⁷⁰⁸` is exactly `1`, as with
    /// libm (whose terms are smaller or zero).
    #[test]
    fn negligible_terms_round_away() {
        let mut row = vec![-1.0e4f32; 1000];
        row[3] = 0.0;
        assert_eq!(sum_exp_shifted(&row, 0.0), 1.0);
    }

    /// The dispatched sum equals the portable one bit for bit, and a compensated sum of libm's
    /// terms to 1e-14 (eight running sums of ~6k terms each round to about 5e-15).
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
        assert_eq!(fast.to_bits(), sum_lanes(&row, m).to_bits());
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            #[allow(unsafe_code)]
            let avx2 = unsafe { sum_avx2(&row, m) };
            assert_eq!(fast.to_bits(), avx2.to_bits());
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
