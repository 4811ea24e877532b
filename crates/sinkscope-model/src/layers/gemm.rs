//! `y = x Wᵀ` in single precision against a weight packed once, at load time, into the
//! layout the kernel streams (x86-64 with AVX2 and FMA; other machines keep candle's matmul).
//!
//! Why our own kernel: the projections of a decoder are products of a short activation
//! (T ≈ 20–100 rows) with a fixed weight. A general GEMM packs the weight again on every
//! call, which at these shapes costs as much as the arithmetic; packing it once removes that
//! work. The kernel is the classic BLIS register block: 6 rows of `x` times a panel of 16
//! output columns held in 12 AVX2 accumulators, the panel's `KC × 16` slice kept in L1 while
//! the rows stream from L2.
//!
//! Numerics (a documented choice): every output element is one fused multiply-add chain over
//! `k = 0, 1, …, K-1` in order, starting from 0. So a row of `y` depends only on the same row
//! of `x` — never on the other rows, on how many rows there are, on the blocking or on the
//! thread count — and results are bit-identical across runs, batch compositions and
//! `--threads`. Against candle's (or PyTorch's) GEMM the sums differ only in rounding order
//! (relative differences of order 1e-7 for these widths).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use sinkscope_io::stored::StoredMatrix;
use std::mem::MaybeUninit;

/// Output columns per panel (two AVX2 registers of f32).
const NR: usize = 16;
/// Rows of `x` per register block.
const MR: usize = 6;
/// Panel rows (cache lines) the first register block prefetches ahead of its loads.
const PREFETCH: usize = 128;
/// Depth of one pass over a panel (a `KC × NR` slice is 16 KiB: it stays in L1).
const KC: usize = 256;
/// At most this many rows of `x` per row block.
const MC: usize = 144;
/// A row block's slice of `x` (`rows × K` floats) is kept under 384 KiB, to stay in L2.
const X_BLOCK_FLOATS: usize = 96 * 1024;

/// One `k` row of a panel: 16 consecutive output columns, 64-byte aligned so that the
/// kernel's two loads never straddle a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct PanelRow([f32; NR]);

/// A weight `W: [N, K]` (`nn.Linear`'s `[out, in]`) ready for [`PackedWeight::matmul`]:
/// `ceil(N / 16)` panels of 16 output columns, either packed once in f32 or dequantised from
/// the stored format panel slice by panel slice as the kernel reaches it.
#[derive(Clone)]
pub struct PackedWeight {
    n: usize,
    k: usize,
    panels: Panels,
}

#[derive(Clone)]
enum Panels {
    /// Panel `p` holds `W[16p + c, k]` at row `k`, column `c` (zero beyond `N`): the same
    /// memory as the dense weight (plus the padding of the last panel).
    F32(Vec<PanelRow>),
    /// The rows in their file's format; each `KC × 16` panel slice is dequantised into an
    /// L1-resident scratch panel (exactly the values of loading the tensor as f32) right
    /// before the register blocks use it.
    Stored(StoredMatrix),
}

impl std::fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedWeight[{} x {}]", self.n, self.k)
    }
}

/// Environment variable that turns the packed kernel off when set to `0` (candle's matmul is
/// then used everywhere): for A/B benchmarks and as an escape hatch.
pub const DISABLE_ENV: &str = "SINKSCOPE_PACKED_MATMUL";

/// Whether this machine runs the packed kernel (x86-64 with AVX2 and FMA, and not disabled by
/// [`DISABLE_ENV`]` = 0`).
/// Decided once per process (the fused ops ask on every forward pass).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            std::env::var(DISABLE_ENV).map_or(true, |v| v != "0")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl PackedWeight {
    /// Packs `w`, row-major `[n, k]`. `None` when the machine lacks the kernel
    /// ([`available`]) or `w.len() != n * k`.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Option<Self> {
        if !available() || n == 0 || k == 0 || w.len() != n.checked_mul(k)? {
            return None;
        }
        let panels = n.div_ceil(NR);
        let mut rows = vec![PanelRow([0.0; NR]); panels * k];
        for (p, panel) in rows.chunks_exact_mut(k).enumerate() {
            for c in 0..NR.min(n - p * NR) {
                let src = &w[(p * NR + c) * k..(p * NR + c + 1) * k];
                for (row, &v) in panel.iter_mut().zip(src) {
                    row.0[c] = v;
                }
            }
        }
        Some(PackedWeight { n, k, panels: Panels::F32(rows) })
    }

    /// Wraps a matrix kept in its stored format (no copy: the kernel dequantises panel slices
    /// on the fly). `None` when the machine lacks the kernel ([`available`]) or the matrix is
    /// empty.
    pub fn from_stored(m: StoredMatrix) -> Option<Self> {
        if !available() || m.n() == 0 || m.k() == 0 {
            return None;
        }
        Some(PackedWeight { n: m.n(), k: m.k(), panels: Panels::Stored(m) })
    }

    /// Bytes the weight holds (f32 panels, or the stored rows it uses).
    pub fn bytes(&self) -> usize {
        match &self.panels {
            Panels::F32(rows) => rows.len() * std::mem::size_of::<PanelRow>(),
            Panels::Stored(m) => m.bytes_used(),
        }
    }

    /// Row `j` of `W` (`K` values) into `out`: an embedding lookup on the weight, exactly the
    /// values the matmul multiplies by.
    ///
    /// # Errors
    /// A message when `j` or `out`'s length is out of range.
    pub fn row_into(&self, j: usize, out: &mut [f32]) -> Result<(), String> {
        if j >= self.n || out.len() != self.k {
            return Err(format!("row {j} of a {} x {} weight into {} values", self.n, self.k, out.len()));
        }
        match &self.panels {
            Panels::F32(rows) => {
                let panel = &rows[j / NR * self.k..(j / NR + 1) * self.k];
                for (o, r) in out.iter_mut().zip(panel) {
                    *o = r.0[j % NR];
                }
                Ok(())
            }
            Panels::Stored(m) => m.dequant_row(j, out).map_err(|e| e.to_string()),
        }
    }

    /// Output width `N`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input width `K`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// `out[m, N] = x[m, K] · Wᵀ`, using up to `threads` threads (split by rows, so the
    /// result does not depend on `threads`).
    ///
    /// # Errors
    /// A message when the slices' lengths do not match the shapes.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32], threads: usize) -> Result<(), String> {
        // SAFETY: MaybeUninit<f32> has f32's layout, and the kernel stores only valid f32s.
        #[allow(unsafe_code)]
        let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
        self.matmul_uninit(x, m, out, threads)
    }

    /// [`matmul`](Self::matmul) into memory that need not be initialised: the kernel writes
    /// every element before it reads any, so after `Ok` all of `out` is initialised (this
    /// saves zeroing the output, ~1.5 % of a profile).
    ///
    /// # Errors
    /// A message when the slices' lengths do not match the shapes.
    pub fn matmul_uninit(
        &self,
        x: &[f32],
        m: usize,
        out: &mut [MaybeUninit<f32>],
        threads: usize,
    ) -> Result<(), String> {
        let (n, k) = (self.n, self.k);
        if x.len() != m * k || out.len() != m * n {
            return Err(format!(
                "packed matmul: x has {} values for {m} x {k}, out has {} for {m} x {n}",
                x.len(),
                out.len()
            ));
        }
        if m == 0 {
            return Ok(());
        }
        // Enough rows per thread to keep whole register blocks and amortise the hand-off.
        let per = m.div_ceil(threads.max(1)).div_ceil(MR) * MR;
        if threads <= 1 || per >= m || m * n * k < (1 << 21) {
            return self.rows_block(x, m, out);
        }
        use rayon::prelude::*;
        x.par_chunks(per * k)
            .zip(out.par_chunks_mut(per * n))
            .map(|(xs, os)| self.rows_block(xs, xs.len() / k, os))
            .collect()
    }

    /// Single-threaded product of `m` rows (lengths checked by the caller).
    fn rows_block(&self, x: &[f32], m: usize, out: &mut [MaybeUninit<f32>]) -> Result<(), String> {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `pack` and `from_stored` only build a PackedWeight when AVX2 and FMA are
        // present; the caller checked x.len() == m * K and out.len() == m * N.
        #[allow(unsafe_code)]
        unsafe {
            match &self.panels {
                Panels::F32(rows) => {
                    avx2::rows_block(
                        self.n,
                        self.k,
                        rows.as_ptr() as *const f32,
                        x,
                        m,
                        out.as_mut_ptr() as *mut f32,
                    );
                    Ok(())
                }
                Panels::Stored(st) => {
                    avx2::stored_rows_block(self.n, self.k, st, x, m, out.as_mut_ptr() as *mut f32)
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            // Unreachable: `pack` and `from_stored` return None on other architectures.
            let _ = (x, m, out);
            Err("packed matmul: no kernel on this architecture".into())
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use super::{PanelRow, StoredMatrix, KC, MC, MR, NR, PREFETCH, X_BLOCK_FLOATS};
    use std::arch::x86_64::*;

    /// Writes every element of `out` (in the first K block, without reading it) before
    /// reading any (to continue the sums in the later K blocks).
    ///
    /// # Safety
    /// AVX2 and FMA present; `bp` the `ceil(n/16) × k × 16` packed panels; `x.len() == m * k`;
    /// `op` valid for `m * n` writes.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_block(n: usize, k: usize, bp: *const f32, x: &[f32], m: usize, op: *mut f32) {
        let panels = n.div_ceil(NR);
        let xp = x.as_ptr();
        // K in equal blocks of at most KC; rows in blocks whose `rows × K` slice of x stays
        // in L2 while every panel passes over it; a panel's `rows × 16` block of the output
        // stays in L1 across the K blocks.
        let k_blocks = k.div_ceil(KC);
        let kc_len = k.div_ceil(k_blocks);
        let mc_len = (X_BLOCK_FLOATS / k / MR * MR).clamp(MR, MC);
        for i0 in (0..m).step_by(mc_len) {
            let mc = mc_len.min(m - i0);
            for p in 0..panels {
                let cols = NR.min(n - p * NR);
                for k0 in (0..k).step_by(kc_len) {
                    let kc = kc_len.min(k - k0);
                    let b = bp.add((p * k + k0) * NR);
                    let mut i = i0;
                    while i < i0 + mc {
                        let r = MR.min(i0 + mc - i);
                        let a = xp.add(i * k + k0);
                        let c = op.add(i * n + p * NR);
                        let acc = k0 > 0;
                        // The first register block brings the panel slice in from memory:
                        // it prefetches ahead of its loads.
                        macro_rules! run {
                            ($r:literal) => {
                                match i == i0 {
                                    true => block::<$r, true>(kc, a, k, b, c, n, cols, acc),
                                    false => block::<$r, false>(kc, a, k, b, c, n, cols, acc),
                                }
                            };
                        }
                        match r {
                            6 => run!(6),
                            5 => run!(5),
                            4 => run!(4),
                            3 => run!(3),
                            2 => run!(2),
                            _ => run!(1),
                        }
                        i += r;
                    }
                }
            }
        }
    }

    /// [`rows_block`] on a stored-format weight: the same loops and register blocks, the
    /// same in-order FMA chain per output (so the same bits as dequantising the whole weight
    /// and packing it), with each `kc × 16` panel slice dequantised into a scratch panel just
    /// before the row block's register blocks use it. `kc` is a whole number of quantisation
    /// blocks, which changes only where the chain is stored and reloaded, never its order.
    ///
    /// # Safety
    /// AVX2 and FMA present; `w` is `n × k`; `x.len() == m * k`; `op` valid for `m * n` writes.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn stored_rows_block(
        n: usize,
        k: usize,
        w: &StoredMatrix,
        x: &[f32],
        m: usize,
        op: *mut f32,
    ) -> Result<(), String> {
        let panels = n.div_ceil(NR);
        let xp = x.as_ptr();
        let bl = w.block_len().max(1);
        let kc_len = (KC / bl).max(1) * bl;
        let mc_len = (X_BLOCK_FLOATS / k / MR * MR).clamp(MR, MC);
        let mut panel = vec![PanelRow([0.0; NR]); kc_len];
        let mut row = vec![0f32; kc_len];
        for i0 in (0..m).step_by(mc_len) {
            let mc = mc_len.min(m - i0);
            for p in 0..panels {
                let cols = NR.min(n - p * NR);
                for k0 in (0..k).step_by(kc_len) {
                    let kc = kc_len.min(k - k0);
                    for c in 0..NR {
                        if c < cols {
                            w.dequant_range(p * NR + c, k0, &mut row[..kc]).map_err(|e| e.to_string())?;
                            for (pr, &v) in panel.iter_mut().zip(&row[..kc]) {
                                pr.0[c] = v;
                            }
                        } else {
                            for pr in panel.iter_mut().take(kc) {
                                pr.0[c] = 0.0;
                            }
                        }
                    }
                    let b = panel.as_ptr() as *const f32;
                    let mut i = i0;
                    while i < i0 + mc {
                        let r = MR.min(i0 + mc - i);
                        let a = xp.add(i * k + k0);
                        let c = op.add(i * n + p * NR);
                        let acc = k0 > 0;
                        match r {
                            6 => block::<6, false>(kc, a, k, b, c, n, cols, acc),
                            5 => block::<5, false>(kc, a, k, b, c, n, cols, acc),
                            4 => block::<4, false>(kc, a, k, b, c, n, cols, acc),
                            3 => block::<3, false>(kc, a, k, b, c, n, cols, acc),
                            2 => block::<2, false>(kc, a, k, b, c, n, cols, acc),
                            _ => block::<1, false>(kc, a, k, b, c, n, cols, acc),
                        }
                        i += r;
                    }
                }
            }
        }
        Ok(())
    }

    /// `C[R, cols] (+)= A[R, kc] · B[kc, 16]`: A rows `lda` apart, B a packed panel slice,
    /// C rows `ldc` apart. When `accumulate`, the chain continues from C's values. `PF`: prefetch
    /// ahead (the first register block of a panel slice).
    ///
    /// # Safety
    /// AVX2 and FMA present; every pointer valid for the extents given.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn block<const R: usize, const PF: bool>(
        kc: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
    ) {
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        // Partial panels go through a full-width scratch block.
        let mut scratch = [0f32; MR * NR];
        if accumulate {
            for r in 0..R {
                let row = c.add(r * ldc);
                if cols == NR {
                    lo[r] = _mm256_loadu_ps(row);
                    hi[r] = _mm256_loadu_ps(row.add(8));
                } else {
                    let s = scratch.as_mut_ptr().add(r * NR);
                    std::ptr::copy_nonoverlapping(row, s, cols);
                    lo[r] = _mm256_loadu_ps(s);
                    hi[r] = _mm256_loadu_ps(s.add(8));
                }
            }
        }
        for kk in 0..kc {
            if PF {
                // One panel row is one cache line; the weight is laid out in the order the
                // loops read it, so PREFETCH rows ahead may run into the next K block or
                // panel (never past the allocation: prefetches do not fault anyway) ...
                _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add((kk + PREFETCH) * NR) as *const i8);
                // ... and the next slice (the next K block or panel) into L2, so that the
                // following register blocks' loads (and the next first block's) find it.
                _mm_prefetch::<_MM_HINT_T1>(b.wrapping_add((kk + kc) * NR) as *const i8);
            }
            let b0 = _mm256_load_ps(b.add(kk * NR));
            let b1 = _mm256_load_ps(b.add(kk * NR + 8));
            for r in 0..R {
                let av = _mm256_broadcast_ss(&*a.add(r * lda + kk));
                lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
            }
        }
        for r in 0..R {
            let row = c.add(r * ldc);
            if cols == NR {
                _mm256_storeu_ps(row, lo[r]);
                _mm256_storeu_ps(row.add(8), hi[r]);
            } else {
                let s = scratch.as_mut_ptr().add(r * NR);
                _mm256_storeu_ps(s, lo[r]);
                _mm256_storeu_ps(s.add(8), hi[r]);
                std::ptr::copy_nonoverlapping(s, row, cols);
            }
        }
    }
}

/// The candle operation `x: [..., K] -> [..., N]` on a packed weight (CPU, f32).
pub struct PackedMatmul<'a>(pub &'a PackedWeight);

impl CustomOp1 for PackedMatmul<'_> {
    fn name(&self) -> &'static str {
        "packed-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = self.0;
        let dims = layout.shape().dims();
        let (&k, lead) = match dims.split_last() {
            Some(s) => s,
            None => candle_core::bail!("packed matmul: scalar input"),
        };
        if k != w.k {
            candle_core::bail!("packed matmul: input width {k}, weight expects {}", w.k);
        }
        let x = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((a, b))) => &v[a..b],
            (CpuStorage::F32(_), None) => candle_core::bail!("packed matmul: non-contiguous input"),
            _ => candle_core::bail!("packed matmul: input is not f32"),
        };
        let m: usize = lead.iter().product();
        let mut out: Vec<f32> = Vec::with_capacity(m * w.n);
        w.matmul_uninit(
            x,
            m,
            &mut out.spare_capacity_mut()[..m * w.n],
            candle_core::utils::get_num_threads(),
        )
        .map_err(candle_core::Error::msg)?;
        // SAFETY: matmul_uninit returned Ok, so it wrote all m * N elements.
        #[allow(unsafe_code)]
        unsafe {
            out.set_len(m * w.n)
        };
        let mut shape = lead.to_vec();
        shape.push(w.n);
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    /// f64 reference and the absolute bound on f32 rounding for each element:
    /// `K · ε · Σ|x_k w_k|` (the classic forward-error bound of a length-K dot product).
    fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
        let mut y = vec![0f64; m * n];
        let mut bound = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for kk in 0..k {
                    let p = f64::from(x[i * k + kk]) * f64::from(w[j * k + kk]);
                    y[i * n + j] += p;
                    bound[i * n + j] += p.abs();
                }
                bound[i * n + j] *= k as f64 * f64::from(f32::EPSILON);
            }
        }
        (y, bound)
    }

    #[test]
    fn matches_f64_reference_on_edge_shapes() {
        if !available() {
            eprintln!("SKIPPED: no AVX2+FMA on this machine; candle's matmul is used instead");
            return;
        }
        // Rows around the register block (6) and the row block (144); columns around the
        // panel width (16); depths around the K block (256).
        for &(m, n, k) in
            &[(1, 1, 1), (5, 17, 3), (7, 16, 256), (13, 33, 257), (150, 40, 600), (29, 576, 576)]
        {
            let x = values(m * k, 1 + m as u64);
            let w = values(n * k, 7 + n as u64);
            let packed = PackedWeight::pack(&w, n, k).unwrap();
            // NaN-filled: an element the kernel failed to write would stay NaN and fail.
            let mut y = vec![f32::NAN; m * n];
            packed.matmul(&x, m, &mut y, 1).unwrap();
            let (r, bound) = reference(&x, &w, m, n, k);
            for i in 0..m * n {
                let err = (f64::from(y[i]) - r[i]).abs();
                assert!(
                    err <= bound[i],
                    "({m},{n},{k}) element {i}: {} vs {} (bound {})",
                    y[i],
                    r[i],
                    bound[i]
                );
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_the_other_rows_or_threads() {
        if !available() {
            eprintln!("SKIPPED: no AVX2+FMA on this machine");
            return;
        }
        let (m, n, k) = (301, 48, 520);
        let x = values(m * k, 3);
        let w = values(n * k, 5);
        let packed = PackedWeight::pack(&w, n, k).unwrap();
        let mut all = vec![0f32; m * n];
        packed.matmul(&x, m, &mut all, 1).unwrap();
        let mut threaded = vec![0f32; m * n];
        packed.matmul(&x, m, &mut threaded, 3).unwrap();
        assert_eq!(all, threaded);
        for i in [0, 5, 6, 143, 144, 300] {
            let mut one = vec![0f32; n];
            packed.matmul(&x[i * k..(i + 1) * k], 1, &mut one, 1).unwrap();
            assert_eq!(one[..], all[i * n..(i + 1) * n], "row {i}");
        }
    }

    #[test]
    fn rejects_mismatched_lengths() {
        if !available() {
            return;
        }
        let packed = PackedWeight::pack(&[1.0; 6], 2, 3).unwrap();
        let mut out = vec![0f32; 4];
        assert!(packed.matmul(&[1.0; 5], 2, &mut out, 1).is_err());
        assert!(PackedWeight::pack(&[1.0; 5], 2, 3).is_none());
    }
}
