//! A small deterministic generator (wyrand), seeded per (tensor, row) so that rows can be
//! produced independently and in any order.

/// SplitMix64's finaliser: a well-mixed 64-bit function of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A seed for the tensor called `name` (FNV-1a of the name, mixed with `seed`).
pub fn tensor_seed(seed: u64, name: &str) -> u64 {
    let h =
        name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3));
    mix(seed ^ h)
}

/// The generator of one row of a tensor.
pub fn row_rng(tensor_seed: u64, row: u64) -> Rng {
    Rng(mix(tensor_seed ^ mix(row)))
}

/// wyrand.
pub struct Rng(u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xA076_1D64_78BD_642F);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xE703_7ED1_A0B4_28DB);
        ((t >> 64) ^ t) as u64
    }

    /// ≈ N(0, 1): the sum of four 16-bit uniforms (Irwin–Hall, n = 4), standardised. Its
    /// tails stop at ±3.46, which random weights do not miss.
    pub fn normal(&mut self) -> f32 {
        let r = self.next_u64();
        let s = (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48);
        // mean 4·65535/2, variance 4·(65536² − 1)/12
        (s as f32 - 131_070.0) * (1.0 / 37_837.2)
    }
}
