//! Shared test helpers: a tiny deterministic RNG and matrix generators.
#![allow(dead_code)]

/// SplitMix64: tiny, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [lo, hi].
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as usize
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// `rows x cols` standard normal matrix, row-major f32.
    pub fn gaussian(&mut self, rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols).map(|_| self.normal() as f32).collect()
    }

    /// Random `n x n` orthogonal matrix (Gram–Schmidt on a Gaussian matrix), row-major f64.
    pub fn orthogonal(&mut self, n: usize) -> Vec<f64> {
        let mut q: Vec<Vec<f64>> = Vec::with_capacity(n);
        while q.len() < n {
            let mut v: Vec<f64> = (0..n).map(|_| self.normal()).collect();
            for _ in 0..2 {
                for u in &q {
                    let d: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                    for (vi, ui) in v.iter_mut().zip(u) {
                        *vi -= d * ui;
                    }
                }
            }
            let nrm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            if nrm > 1e-8 {
                q.push(v.into_iter().map(|a| a / nrm).collect());
            }
        }
        q.into_iter().flatten().collect()
    }
}

/// `a (rows x k) * b (k x cols)` in f64, returned as f32.
pub fn matmul_f32(a: &[f64], b: &[f64], rows: usize, k: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0_f32; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            let mut s = 0.0;
            for l in 0..k {
                s += a[i * k + l] * b[l * cols + j];
            }
            out[i * cols + j] = s as f32;
        }
    }
    out
}

/// Asserts `|a - b| <= tol`, with a message.
#[track_caller]
pub fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b} (|diff| = {} > {tol})", (a - b).abs());
}
