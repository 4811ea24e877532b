//! `y = x Wᵀ` in single precision against a weight packed once, at load time, into the
//! layout the kernel streams (x86-64 with AVX2 and FMA; other machines keep candle's matmul).
//!
//! Why our own kernel: the projections of a decoder are products of a short activation
//! (T ≈ 20–100 rows) with a fixed weight. A general GEMM packs the weight again on every
//! call, which at these shapes costs as much as the arithmetic; packing it once removes that
//! work. The kernel is the classic BLIS register block: a few rows of `x` times a panel of 16
//! output columns held in registers (AVX2: 6 rows, 12 accumulators; AVX-512: 12 rows times two
//! adjacent panels, 24 accumulators, so that each broadcast of an `x` element feeds two fused
//! multiply-adds), the panels' `KC × 16` slices kept in L1 while the rows stream from L2.
//! Threads split a weight wider than the rows are many by panels (each thread streams its
//! share of the weight, as for a vocabulary head), otherwise by rows.
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
/// Rows per thread are a multiple of this (the register-block rows of every path divide it).
const MR: usize = 12;
/// Panel rows (cache lines) the first register block prefetches ahead of its loads.
const PREFETCH: usize = 128;
/// Depth of one pass over a panel (a `KC × NR` slice is 16 KiB: it stays in L1).
const KC: usize = 256;
/// Depth of the chunk of a stored weight's panel group dequantised at once (two panels of
/// 4096 × 16 floats are 512 KiB: they stay in L2 while every row block uses them).
const KS: usize = 4096;
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

/// Whether the packed kernel runs in this process: on every CPU (the widest of its
/// [`KernelPath`]s) unless [`DISABLE_ENV`]` = 0`, which makes candle's matmul run everywhere.
pub fn available() -> bool {
    kernel_path().is_some()
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

    /// For a stored-format weight, the same weight dequantised and packed in f32 (identical
    /// products, no per-call dequantisation); `None` for a weight already in f32.
    pub fn densified(&self) -> Option<Result<PackedWeight, String>> {
        let Panels::Stored(m) = &self.panels else { return None };
        Some(m.to_f32().map_err(|e| e.to_string()).and_then(|v| {
            PackedWeight::pack(&v, self.n, self.k).ok_or_else(|| "the packed kernel is off".to_string())
        }))
    }

    /// The stored-format rows the weight reads, `None` when packed in f32.
    pub fn stored(&self) -> Option<&StoredMatrix> {
        match &self.panels {
            Panels::Stored(m) => Some(m),
            Panels::F32(_) => None,
        }
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
        if threads <= 1 || m * n * k < (1 << 21) {
            return self.rows_block(x, m, out);
        }
        use rayon::prelude::*;
        // A weight wider than the rows are many (a vocabulary head, most projections of a
        // short pack): split it by panels, so that each thread streams only its share of the
        // weight from memory; otherwise split the rows. Each output is the same in-order chain
        // wherever it is computed.
        let panels = n.div_ceil(NR);
        if n > m && panels >= 4 * threads {
            let path = kernel_path().ok_or("packed matmul: the kernel is turned off")?;
            // Four tasks per thread (a thread slowed down by the machine does not hold up the
            // others), each whole pairs of panels (the AVX-512 block spans two).
            let per = panels.div_ceil(4 * threads).div_ceil(2) * 2;
            let op = SharedOut(out.as_mut_ptr() as *mut f32);
            return (0..panels).into_par_iter().step_by(per).try_for_each(|p| {
                // SAFETY: lengths checked above; each task writes only the columns of its
                // own panels, which no other task touches.
                #[allow(unsafe_code)]
                unsafe {
                    self.panels_on(path, x, m, op.get(), p..(p + per).min(panels))
                }
            });
        }
        // Enough rows per thread to keep whole register blocks and amortise the hand-off.
        let per = m.div_ceil(threads).div_ceil(MR) * MR;
        if per >= m {
            return self.rows_block(x, m, out);
        }
        x.par_chunks(per * k)
            .zip(out.par_chunks_mut(per * n))
            .map(|(xs, os)| self.rows_block(xs, xs.len() / k, os))
            .collect()
    }

    /// [`matmul`](Self::matmul) on a given kernel path (one thread): every path gives the
    /// same bits, which the tests check on every path the CPU runs.
    ///
    /// # Errors
    /// A message when the CPU lacks the path or the lengths do not match the shapes.
    pub fn matmul_on(&self, path: KernelPath, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), String> {
        if !path.supported() {
            return Err(format!("this CPU cannot run the {} kernel", path.name()));
        }
        if x.len() != m * self.k || out.len() != m * self.n {
            return Err(format!("packed matmul: {} / {} values for {m} rows", x.len(), out.len()));
        }
        // SAFETY: MaybeUninit<f32> has f32's layout, and the kernel stores only valid f32s.
        #[allow(unsafe_code)]
        let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
        self.rows_on(path, x, m, out)
    }

    /// Single-threaded product of `m` rows (lengths checked by the caller), on the kernel
    /// path chosen for this process ([`kernel_path`]).
    fn rows_block(&self, x: &[f32], m: usize, out: &mut [MaybeUninit<f32>]) -> Result<(), String> {
        let path = kernel_path().ok_or("packed matmul: the kernel is turned off")?;
        self.rows_on(path, x, m, out)
    }

    fn rows_on(
        &self,
        path: KernelPath,
        x: &[f32],
        m: usize,
        out: &mut [MaybeUninit<f32>],
    ) -> Result<(), String> {
        let op = out.as_mut_ptr() as *mut f32;
        // SAFETY: the callers checked x.len() == m * K and out.len() == m * N.
        #[allow(unsafe_code)]
        unsafe {
            self.panels_on(path, x, m, op, 0..self.n.div_ceil(NR))
        }
    }

    /// Output columns `16·panels.start .. min(16·panels.end, N)` of all `m` rows, one thread.
    ///
    /// # Safety
    /// `x.len() == m * K`; `op` valid for writes of the `m × N` output's columns in `panels`
    /// (no other thread writes them meanwhile); `path` one this CPU runs.
    #[allow(unsafe_code)]
    unsafe fn panels_on(
        &self,
        path: KernelPath,
        x: &[f32],
        m: usize,
        op: *mut f32,
        panels: std::ops::Range<usize>,
    ) -> Result<(), String> {
        let src = match &self.panels {
            Panels::F32(rows) => kernels::Src::Packed(rows.as_ptr() as *const f32),
            Panels::Stored(st) => kernels::Src::Stored(st),
        };
        // SAFETY: as this function's contract; `src` is this weight's N x K panels; `path`
        // is one whose instructions this CPU has (`kernel_path` and `matmul_on` check).
        match path {
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => kernels::avx512::rows(self.n, self.k, src, x, m, op, panels),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => kernels::avx2::rows(self.n, self.k, src, x, m, op, panels),
            _ => kernels::portable::rows(self.n, self.k, src, x, m, op, panels),
        }
    }
}

/// The output pointer shared by the tasks of a panel split, each writing its own columns.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

impl SharedOut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: the tasks that share it write disjoint columns (`matmul_uninit`).
#[allow(unsafe_code)]
unsafe impl Send for SharedOut {}
#[allow(unsafe_code)]
unsafe impl Sync for SharedOut {}

/// The instruction paths of the kernel, shared with the crate's other kernels and with GGUF
/// dequantisation and the metrics' exp-sums ([`sinkscope_cpu`]): AVX-512 keeps one 16-float
/// register per row of a panel in register blocks of 12 rows, AVX2 two 8-float registers per
/// row in blocks of 6, the portable loop plain `f32::mul_add` (slow without a hardware FMA).
/// Every path computes each output as the same in-order chain of fused multiply-adds over `k`
/// (single rounding each), so all paths give the same bits; they differ only in speed.
pub use sinkscope_cpu::Path as KernelPath;

/// Environment variable that picks a narrower path than the widest this CPU runs
/// ([`sinkscope_cpu::ENV`]; it narrows every kernel of the process).
pub use sinkscope_cpu::ENV as KERNEL_ENV;

static DISABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// The kernel path of this process ([`sinkscope_cpu::path`], decided once), or `None` when
/// [`DISABLE_ENV`]` = 0`.
pub fn kernel_path() -> Option<KernelPath> {
    let disabled = *DISABLED.get_or_init(|| std::env::var(DISABLE_ENV).is_ok_and(|v| v == "0"));
    (!disabled).then(sinkscope_cpu::path)
}

/// Why [`kernel_path`] is not what [`KERNEL_ENV`] asked for, if it is not.
pub fn kernel_path_note() -> Option<&'static str> {
    kernel_path().and(sinkscope_cpu::note())
}

#[allow(unsafe_code)]
mod kernels {
    //! The loops of the kernel, written once and instantiated per instruction path: row
    //! blocks that stay in L2, panels of 16 output columns, K blocks whose `kc × 16` panel
    //! slice stays in L1 (dequantised into a scratch panel first for stored weights), and
    //! register blocks of `MR` rows.

    use super::{PanelRow, StoredMatrix, KC, KS, MC, NR, PREFETCH, X_BLOCK_FLOATS};

    /// [`Micro::transpose`] of panel rows `from..`, one panel row (a cache line) at a time.
    #[inline(always)]
    fn transpose_from(rows: &[f32], panel: &mut [PanelRow], from: usize) {
        let len = panel.len();
        for (kk, pr) in panel.iter_mut().enumerate().skip(from) {
            for (c, v) in pr.0.iter_mut().enumerate() {
                *v = rows[c * len + kk];
            }
        }
    }

    /// Where the panels come from.
    #[derive(Clone, Copy)]
    pub(super) enum Src<'a> {
        /// `ceil(n/16) × k × 16` packed f32 panels.
        Packed(*const f32),
        /// Stored-format rows.
        Stored(&'a StoredMatrix),
    }

    /// One instruction path's register block.
    pub(super) trait Micro {
        /// Rows per register block.
        const MR: usize;
        /// `C[r, cols] (+)= A[r, kc] · B[kc, 16]` for `r <= MR` rows: A rows `lda` apart, B a
        /// panel slice, C rows `ldc` apart; continues from C's values when `acc`; prefetches
        /// ahead when `pf` (the first register block of a packed panel slice).
        ///
        /// # Safety
        /// The path's instructions present; every pointer valid for the extents given.
        #[allow(clippy::too_many_arguments)]
        unsafe fn block(
            r: usize,
            pf: bool,
            kc: usize,
            a: *const f32,
            lda: usize,
            b: *const f32,
            c: *mut f32,
            ldc: usize,
            cols: usize,
            acc: bool,
        );

        /// Writes `panel[kk][c] = rows[c·len + kk]` for `c < 16`, `kk < len` (`len =
        /// panel.len()`, `rows.len() == 16·len`): the transposition of 16 dequantised weight
        /// rows into a panel. Data movement only, so every path gives the same panel.
        ///
        /// # Safety
        /// The path's instructions present.
        #[inline(always)]
        unsafe fn transpose(rows: &[f32], panel: &mut [PanelRow]) {
            transpose_from(rows, panel, 0);
        }

        /// Panels a register block spans: 1, or 2 where [`block2`](Self::block2) is
        /// implemented (each `A` element then feeds two fused multiply-adds per load).
        const PANELS: usize = 1;

        /// [`block`](Self::block) on two adjacent panels at once: the first full (16 columns,
        /// B slice `b0`, output columns `c..c+16`), the second `cols` wide (B slice `b1`,
        /// output columns `c+16..`). Every output is the same in-order chain as in `block`.
        ///
        /// # Safety
        /// As [`block`](Self::block), for both panels.
        #[allow(clippy::too_many_arguments)]
        unsafe fn block2(
            r: usize,
            pf: bool,
            kc: usize,
            a: *const f32,
            lda: usize,
            b: [*const f32; 2],
            c: *mut f32,
            ldc: usize,
            cols: usize,
            acc: bool,
        ) {
            Self::block(r, pf, kc, a, lda, b[0], c, ldc, NR, acc);
            Self::block(r, pf, kc, a, lda, b[1], c.add(NR), ldc, cols, acc);
        }
    }

    /// Writes every element of `out` (in the first K block, without reading it) before
    /// reading any (to continue the sums in the later K blocks). The chain of each output is
    /// in order over `k` whatever the blocking, so every path and every `kc` give the same bits.
    ///
    /// Packed weights: row blocks that stay in L2, then panel groups, then K blocks whose
    /// panel slices stay in L1. Stored weights: panel group by panel group, a K chunk of the
    /// group's rows is dequantised once into scratch panels (in L2) and then serves every row
    /// block, so each weight is dequantised once per call whatever the number of rows.
    ///
    /// # Safety
    /// As [`Micro::block`]; `x.len() == m * k`; `op` valid for `m * n` writes.
    #[inline(always)]
    pub(super) unsafe fn nest<M: Micro>(
        n: usize,
        k: usize,
        src: Src,
        x: &[f32],
        m: usize,
        op: *mut f32,
        panels: std::ops::Range<usize>,
    ) -> Result<(), String> {
        let group = M::PANELS;
        match src {
            Src::Packed(bp) => {
                let kc = k.div_ceil(k.div_ceil(KC));
                let mc_len = (X_BLOCK_FLOATS / k / M::MR * M::MR).clamp(M::MR, MC / M::MR * M::MR);
                for i0 in (0..m).step_by(mc_len) {
                    for p0 in panels.clone().step_by(group) {
                        let np = group.min(panels.end - p0);
                        let b = [bp.add(p0 * k * NR), bp.wrapping_add((p0 + 1) * k * NR)];
                        let rows = i0..(i0 + mc_len).min(m);
                        span::<M>(n, k, x, op, p0, np, b, 0..k, kc, rows);
                    }
                }
            }
            Src::Stored(st) => {
                let bl = st.block_len().max(1);
                let ks = (KS / bl).max(1) * bl;
                let mut scratch = vec![PanelRow([0.0; NR]); ks.min(k) * group];
                let mut rows_f32 = vec![0f32; ks.min(k) * NR];
                let mc_len = (X_BLOCK_FLOATS / ks / M::MR * M::MR).clamp(M::MR, MC / M::MR * M::MR);
                for p0 in panels.clone().step_by(group) {
                    let np = group.min(panels.end - p0);
                    for kb in (0..k).step_by(ks) {
                        let len = ks.min(k - kb);
                        for q in 0..np {
                            let slot = &mut scratch[q * len..(q + 1) * len];
                            fill_panel::<M>(st, (p0 + q) * NR, n, kb, &mut rows_f32[..len * NR], slot)?;
                        }
                        let sp = scratch.as_ptr() as *const f32;
                        // `span` reads panel q's row kk at b[q] + kk·NR for kk in kb..kb+len.
                        let b = [sp.wrapping_sub(kb * NR), sp.wrapping_add(len * NR).wrapping_sub(kb * NR)];
                        for i0 in (0..m).step_by(mc_len) {
                            let rows = i0..(i0 + mc_len).min(m);
                            span::<M>(n, k, x, op, p0, np, b, kb..kb + len, KC, rows);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Output rows `rows`, columns of panels `p0..p0+np`, summed over `ks` (continuing the
    /// sums of earlier K when `ks.start > 0`), in K blocks of `kc`: panel `q`'s row `kk` is
    /// read at `b[q] + kk·16`.
    ///
    /// # Safety
    /// As [`nest`]; `b[q] + kk·16` valid for `kk` in `ks` and `q < np`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn span<M: Micro>(
        n: usize,
        k: usize,
        x: &[f32],
        op: *mut f32,
        p0: usize,
        np: usize,
        b: [*const f32; 2],
        ks: std::ops::Range<usize>,
        kc: usize,
        rows: std::ops::Range<usize>,
    ) {
        let xp = x.as_ptr();
        // All but the last panel of the matrix are 16 columns wide.
        let cols = NR.min(n - (p0 + np - 1) * NR);
        for k0 in ks.clone().step_by(kc) {
            let kc = kc.min(ks.end - k0);
            let bk = [b[0].wrapping_add(k0 * NR), b[1].wrapping_add(k0 * NR)];
            let mut i = rows.start;
            while i < rows.end {
                let r = M::MR.min(rows.end - i);
                let a = xp.add(i * k + k0);
                let c = op.add(i * n + p0 * NR);
                let pf = i == rows.start;
                if np == 2 {
                    M::block2(r, pf, kc, a, k, bk, c, n, cols, k0 > 0);
                } else {
                    M::block(r, pf, kc, a, k, bk[0], c, n, cols, k0 > 0);
                }
                i += r;
            }
        }
    }

    /// Dequantises values `kb..kb + len` of the weight rows `j0..j0+16` (zeros beyond `n`)
    /// into `panel` (`len` rows of 16), through `rows` (`len × 16` floats). Inlined into each
    /// path's `rows`, so the transposition is compiled for that path's vector width.
    #[inline(always)]
    fn fill_panel<M: Micro>(
        st: &StoredMatrix,
        j0: usize,
        n: usize,
        kb: usize,
        rows: &mut [f32],
        panel: &mut [PanelRow],
    ) -> Result<(), String> {
        let len = panel.len();
        let width = NR.min(n - j0);
        for (c, row) in rows.chunks_exact_mut(len).enumerate().take(width) {
            st.dequant_range(j0 + c, kb, row).map_err(|e| e.to_string())?;
        }
        rows[width * len..].fill(0.0);
        // SAFETY: `fill_panel` runs inside `nest::<M>`, whose callers checked the path.
        #[allow(unsafe_code)]
        unsafe {
            M::transpose(rows, panel)
        };
        Ok(())
    }

    /// The prefetches of the first register block of a packed panel slice at step `kk`:
    /// one panel row is one cache line and the weight is laid out in the order the loops read
    /// it, so PREFETCH rows ahead may run into the next K block or panel (never past the
    /// allocation: prefetches do not fault anyway); the next slice goes to L2 so that the
    /// following register blocks' loads (and the next first block's) find it.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn prefetch(b: *const f32, kk: usize, kc: usize) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add((kk + PREFETCH) * NR) as *const i8);
        _mm_prefetch::<_MM_HINT_T1>(b.wrapping_add((kk + kc) * NR) as *const i8);
    }

    /// Copies a partial output row (fewer than 16 columns) through a full-width scratch row.
    #[inline(always)]
    unsafe fn load_partial(row: *const f32, cols: usize, s: &mut [f32; NR]) {
        std::ptr::copy_nonoverlapping(row, s.as_mut_ptr(), cols);
    }

    /// Dispatches a run-time row count to the const-generic register block.
    macro_rules! by_rows {
        ($r:expr, $f:ident, $args:tt; $($n:literal)*) => {
            match $r { $($n => $f::<$n> $args,)* _ => {} }
        };
    }

    #[cfg(target_arch = "x86_64")]
    pub(super) mod avx512 {
        use super::{load_partial, nest, prefetch, transpose_from, Micro, PanelRow, Src, NR};
        use std::arch::x86_64::*;

        pub(in super::super) struct K;

        /// A 16 × 16 tile in registers: `dst[kk·16 + c] = src[c·ld + kk]` (four rounds of
        /// shuffles, no scatter: the compiler's vectorisation of the scalar loop scattered).
        ///
        /// # Safety
        /// AVX-512F present; `src + c·ld + kk` readable and `dst + kk·16 + c` writable for
        /// `c, kk < 16`.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn transpose16(src: *const f32, ld: usize, dst: *mut f32) {
            let mut r = [_mm512_setzero_ps(); 16];
            for (c, rc) in r.iter_mut().enumerate() {
                *rc = _mm512_loadu_ps(src.add(c * ld));
            }
            // Interleave pairs of rows (32-bit), then pairs of pairs (64-bit): within each
            // 128-bit lane, t'[4i + j] holds rows 4i..4i+4 of column j of that lane.
            let mut t = [_mm512_setzero_ps(); 16];
            for i in 0..8 {
                t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
            for q in 0..4 {
                let (a0, a1, b0, b1) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
                let pd = _mm512_castps_pd;
                r[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(a0), pd(b0)));
                r[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(a0), pd(b0)));
                r[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(a1), pd(b1)));
                r[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(a1), pd(b1)));
            }
            // r[4q + j], 128-bit lane l: column kk = 4l + j of rows 4q..4q+4. Output row kk
            // is lane l of r[j], r[4 + j], r[8 + j], r[12 + j]: two rounds of lane shuffles
            // (0x88 takes lanes 0 and 2 of each source, 0xdd lanes 1 and 3).
            for j in 0..4 {
                t[j] = _mm512_shuffle_f32x4::<0x88>(r[j], r[4 + j]);
                t[4 + j] = _mm512_shuffle_f32x4::<0xdd>(r[j], r[4 + j]);
                t[8 + j] = _mm512_shuffle_f32x4::<0x88>(r[8 + j], r[12 + j]);
                t[12 + j] = _mm512_shuffle_f32x4::<0xdd>(r[8 + j], r[12 + j]);
            }
            for j in 0..4 {
                for h in 0..2 {
                    // lo: lane l = h of every r[4q + j], i.e. kk = 4h + j; hi: lane 2 + h.
                    let lo = _mm512_shuffle_f32x4::<0x88>(t[4 * h + j], t[8 + 4 * h + j]);
                    let hi = _mm512_shuffle_f32x4::<0xdd>(t[4 * h + j], t[8 + 4 * h + j]);
                    _mm512_storeu_ps(dst.add((4 * h + j) * 16), lo);
                    _mm512_storeu_ps(dst.add((8 + 4 * h + j) * 16), hi);
                }
            }
        }

        /// # Safety
        /// AVX-512F present; as [`nest`].
        #[target_feature(enable = "avx512f")]
        pub(in super::super) unsafe fn rows(
            n: usize,
            k: usize,
            src: Src,
            x: &[f32],
            m: usize,
            op: *mut f32,
            panels: std::ops::Range<usize>,
        ) -> Result<(), String> {
            nest::<K>(n, k, src, x, m, op, panels)
        }

        #[target_feature(enable = "avx512f")]
        #[inline]
        #[allow(clippy::too_many_arguments)]
        unsafe fn block<const R: usize>(
            pf: bool,
            kc: usize,
            a: *const f32,
            lda: usize,
            b: *const f32,
            c: *mut f32,
            ldc: usize,
            cols: usize,
            acc: bool,
        ) {
            let mut v = [_mm512_setzero_ps(); R];
            let mut s = [0f32; NR];
            if acc {
                for (r, vr) in v.iter_mut().enumerate() {
                    let row = c.add(r * ldc);
                    *vr = if cols == NR {
                        _mm512_loadu_ps(row)
                    } else {
                        load_partial(row, cols, &mut s);
                        _mm512_loadu_ps(s.as_ptr())
                    };
                }
            }
            for kk in 0..kc {
                if pf {
                    prefetch(b, kk, kc);
                }
                let bv = _mm512_load_ps(b.add(kk * NR));
                for (r, vr) in v.iter_mut().enumerate() {
                    *vr = _mm512_fmadd_ps(_mm512_set1_ps(*a.add(r * lda + kk)), bv, *vr);
                }
            }
            for (r, vr) in v.iter().enumerate() {
                let row = c.add(r * ldc);
                if cols == NR {
                    _mm512_storeu_ps(row, *vr);
                } else {
                    _mm512_storeu_ps(s.as_mut_ptr(), *vr);
                    std::ptr::copy_nonoverlapping(s.as_ptr(), row, cols);
                }
            }
        }

        /// Two panels per register block: 2R accumulators (24 of the 32 registers at R = 12),
        /// one broadcast of each A element feeding both panels' fused multiply-adds.
        #[target_feature(enable = "avx512f")]
        #[inline]
        #[allow(clippy::too_many_arguments)]
        unsafe fn block2<const R: usize>(
            pf: bool,
            kc: usize,
            a: *const f32,
            lda: usize,
            b: [*const f32; 2],
            c: *mut f32,
            ldc: usize,
            cols: usize,
            acc: bool,
        ) {
            let mut v0 = [_mm512_setzero_ps(); R];
            let mut v1 = [_mm512_setzero_ps(); R];
            let mut s = [0f32; NR];
            if acc {
                for r in 0..R {
                    let row = c.add(r * ldc);
                    v0[r] = _mm512_loadu_ps(row);
                    v1[r] = if cols == NR {
                        _mm512_loadu_ps(row.add(NR))
                    } else {
                        load_partial(row.add(NR), cols, &mut s);
                        _mm512_loadu_ps(s.as_ptr())
                    };
                }
            }
            let (b0, b1) = (b[0], b[1]);
            for kk in 0..kc {
                if pf {
                    prefetch(b0, kk, kc);
                    prefetch(b1, kk, kc);
                }
                let bv0 = _mm512_load_ps(b0.add(kk * NR));
                let bv1 = _mm512_load_ps(b1.add(kk * NR));
                for r in 0..R {
                    let av = _mm512_set1_ps(*a.add(r * lda + kk));
                    v0[r] = _mm512_fmadd_ps(av, bv0, v0[r]);
                    v1[r] = _mm512_fmadd_ps(av, bv1, v1[r]);
                }
            }
            for r in 0..R {
                let row = c.add(r * ldc);
                _mm512_storeu_ps(row, v0[r]);
                if cols == NR {
                    _mm512_storeu_ps(row.add(NR), v1[r]);
                } else {
                    _mm512_storeu_ps(s.as_mut_ptr(), v1[r]);
                    std::ptr::copy_nonoverlapping(s.as_ptr(), row.add(NR), cols);
                }
            }
        }

        impl Micro for K {
            const MR: usize = 12;
            const PANELS: usize = 2;

            #[inline(always)]
            unsafe fn transpose(rows: &[f32], panel: &mut [PanelRow]) {
                let len = panel.len();
                let tiles = if rows.len() == NR * len { len / NR } else { 0 };
                for t in 0..tiles {
                    // SAFETY: AVX-512F present (this function's contract); tile `t` reads
                    // rows[c·len + 16t .. +16] for c < 16 and writes panel rows 16t..16t+16,
                    // all in bounds (16t + 16 <= len, rows.len() = 16·len).
                    transpose16(rows.as_ptr().add(t * NR), len, panel.as_mut_ptr().add(t * NR) as *mut f32);
                }
                transpose_from(rows, panel, tiles * NR);
            }
            #[target_feature(enable = "avx512f")]
            unsafe fn block(
                r: usize,
                pf: bool,
                kc: usize,
                a: *const f32,
                lda: usize,
                b: *const f32,
                c: *mut f32,
                ldc: usize,
                cols: usize,
                acc: bool,
            ) {
                by_rows!(r, block, (pf, kc, a, lda, b, c, ldc, cols, acc); 12 11 10 9 8 7 6 5 4 3 2 1)
            }

            #[target_feature(enable = "avx512f")]
            unsafe fn block2(
                r: usize,
                pf: bool,
                kc: usize,
                a: *const f32,
                lda: usize,
                b: [*const f32; 2],
                c: *mut f32,
                ldc: usize,
                cols: usize,
                acc: bool,
            ) {
                by_rows!(r, block2, (pf, kc, a, lda, b, c, ldc, cols, acc); 12 11 10 9 8 7 6 5 4 3 2 1)
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    pub(super) mod avx2 {
        use super::{load_partial, nest, prefetch, transpose_from, Micro, PanelRow, Src, NR};
        use std::arch::x86_64::*;

        pub(in super::super) struct K;

        /// An 8 × 8 tile in registers: `dst[kk·16 + c] = src[c·ld + kk]` for `c, kk < 8`
        /// (`dst` rows are panel rows, 16 floats apart).
        ///
        /// # Safety
        /// AVX present; `src + c·ld + kk` readable and `dst + kk·16 + c` writable for
        /// `c, kk < 8`.
        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn transpose8(src: *const f32, ld: usize, dst: *mut f32) {
            let mut r = [_mm256_setzero_ps(); 8];
            for (c, rc) in r.iter_mut().enumerate() {
                *rc = _mm256_loadu_ps(src.add(c * ld));
            }
            // Pairs of rows interleaved, then pairs of pairs: tt[j] (lane 0 | lane 1) holds
            // column j | column j + 4 of rows 0..4 (j < 4), tt[4 + j] the same of rows 4..8.
            let mut t = [_mm256_setzero_ps(); 8];
            for i in 0..4 {
                t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
            let mut tt = [_mm256_setzero_ps(); 8];
            for h in 0..2 {
                let (a0, a1, b0, b1) = (t[4 * h], t[4 * h + 1], t[4 * h + 2], t[4 * h + 3]);
                tt[4 * h] = _mm256_shuffle_ps::<0x44>(a0, b0);
                tt[4 * h + 1] = _mm256_shuffle_ps::<0xEE>(a0, b0);
                tt[4 * h + 2] = _mm256_shuffle_ps::<0x44>(a1, b1);
                tt[4 * h + 3] = _mm256_shuffle_ps::<0xEE>(a1, b1);
            }
            for j in 0..4 {
                _mm256_storeu_ps(dst.add(j * NR), _mm256_permute2f128_ps::<0x20>(tt[j], tt[4 + j]));
                _mm256_storeu_ps(dst.add((4 + j) * NR), _mm256_permute2f128_ps::<0x31>(tt[j], tt[4 + j]));
            }
        }

        /// # Safety
        /// AVX2 and FMA present; as [`nest`].
        #[target_feature(enable = "avx2,fma")]
        pub(in super::super) unsafe fn rows(
            n: usize,
            k: usize,
            src: Src,
            x: &[f32],
            m: usize,
            op: *mut f32,
            panels: std::ops::Range<usize>,
        ) -> Result<(), String> {
            nest::<K>(n, k, src, x, m, op, panels)
        }

        #[target_feature(enable = "avx2,fma")]
        #[inline]
        #[allow(clippy::too_many_arguments)]
        unsafe fn block<const R: usize>(
            pf: bool,
            kc: usize,
            a: *const f32,
            lda: usize,
            b: *const f32,
            c: *mut f32,
            ldc: usize,
            cols: usize,
            acc: bool,
        ) {
            let mut lo = [_mm256_setzero_ps(); R];
            let mut hi = [_mm256_setzero_ps(); R];
            let mut s = [0f32; NR];
            if acc {
                for r in 0..R {
                    let row = c.add(r * ldc);
                    let src = if cols == NR {
                        row
                    } else {
                        load_partial(row, cols, &mut s);
                        s.as_ptr()
                    };
                    lo[r] = _mm256_loadu_ps(src);
                    hi[r] = _mm256_loadu_ps(src.add(8));
                }
            }
            for kk in 0..kc {
                if pf {
                    prefetch(b, kk, kc);
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
                    _mm256_storeu_ps(s.as_mut_ptr(), lo[r]);
                    _mm256_storeu_ps(s.as_mut_ptr().add(8), hi[r]);
                    std::ptr::copy_nonoverlapping(s.as_ptr(), row, cols);
                }
            }
        }

        impl Micro for K {
            const MR: usize = 6;

            #[inline(always)]
            unsafe fn transpose(rows: &[f32], panel: &mut [PanelRow]) {
                let len = panel.len();
                let tiles = if rows.len() == NR * len { len / 8 } else { 0 };
                for t in 0..tiles {
                    for h in 0..2 {
                        // SAFETY: AVX2 present (this function's contract); the tile reads
                        // rows[(8h + c)·len + 8t ..+8] and writes panel rows 8t..8t+8, columns
                        // 8h..8h+8, all in bounds (8t + 8 <= len, rows.len() = 16·len).
                        transpose8(
                            rows.as_ptr().add(8 * h * len + 8 * t),
                            len,
                            (panel.as_mut_ptr().add(8 * t) as *mut f32).add(8 * h),
                        );
                    }
                }
                transpose_from(rows, panel, tiles * 8);
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn block(
                r: usize,
                pf: bool,
                kc: usize,
                a: *const f32,
                lda: usize,
                b: *const f32,
                c: *mut f32,
                ldc: usize,
                cols: usize,
                acc: bool,
            ) {
                by_rows!(r, block, (pf, kc, a, lda, b, c, ldc, cols, acc); 6 5 4 3 2 1)
            }
        }
    }

    pub(super) mod portable {
        use super::{load_partial, nest, Micro, Src, NR};

        pub(in super::super) struct K;

        /// # Safety
        /// As [`nest`].
        pub(in super::super) unsafe fn rows(
            n: usize,
            k: usize,
            src: Src,
            x: &[f32],
            m: usize,
            op: *mut f32,
            panels: std::ops::Range<usize>,
        ) -> Result<(), String> {
            nest::<K>(n, k, src, x, m, op, panels)
        }

        impl Micro for K {
            const MR: usize = 4;
            unsafe fn block(
                r: usize,
                _pf: bool,
                kc: usize,
                a: *const f32,
                lda: usize,
                b: *const f32,
                c: *mut f32,
                ldc: usize,
                cols: usize,
                acc: bool,
            ) {
                let mut v = [[0f32; NR]; 4];
                let mut s = [0f32; NR];
                if acc {
                    for (i, vi) in v.iter_mut().enumerate().take(r) {
                        load_partial(c.add(i * ldc), cols, &mut s);
                        *vi = s;
                    }
                }
                for kk in 0..kc {
                    let bk = std::slice::from_raw_parts(b.add(kk * NR), NR);
                    for (i, vi) in v.iter_mut().enumerate().take(r) {
                        let av = *a.add(i * lda + kk);
                        for (o, &bv) in vi.iter_mut().zip(bk) {
                            *o = av.mul_add(bv, *o);
                        }
                    }
                }
                for (i, vi) in v.iter().enumerate().take(r) {
                    std::ptr::copy_nonoverlapping(vi.as_ptr(), c.add(i * ldc), cols);
                }
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

    /// Every path's transposition of 16 weight rows into a panel is the plain transposition,
    /// for lengths with and without whole 16 × 16 tiles (the AVX-512 one shuffles registers).
    #[test]
    fn panel_transposition_is_exact_on_every_path() {
        use kernels::Micro;
        for len in [1, 15, 16, 17, 32, 100, 256] {
            let rows = values(NR * len, len as u64);
            let want: Vec<f32> =
                (0..len).flat_map(|kk| (0..NR).map(|c| rows[c * len + kk]).collect::<Vec<_>>()).collect();
            let run = |f: unsafe fn(&[f32], &mut [PanelRow])| {
                let mut panel = vec![PanelRow([f32::NAN; NR]); len];
                // SAFETY: only paths this CPU runs are called below.
                #[allow(unsafe_code)]
                unsafe {
                    f(&rows, &mut panel)
                };
                panel.iter().flat_map(|p| p.0).map(f32::to_bits).collect::<Vec<_>>()
            };
            let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
            assert_eq!(run(<kernels::portable::K as Micro>::transpose), want, "portable, len {len}");
            #[cfg(target_arch = "x86_64")]
            {
                if KernelPath::Avx2.supported() {
                    assert_eq!(run(<kernels::avx2::K as Micro>::transpose), want, "avx2, len {len}");
                }
                if KernelPath::Avx512.supported() {
                    assert_eq!(run(<kernels::avx512::K as Micro>::transpose), want, "avx512, len {len}");
                }
            }
        }
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

    /// A weight much wider than the rows are many is split among the threads by panels
    /// (pairs of panels, a partial last pair): the same bits as one thread and as row by row.
    #[test]
    fn the_panel_split_gives_the_one_thread_bits() {
        if !available() {
            eprintln!("SKIPPED: no AVX2+FMA on this machine");
            return;
        }
        let (m, n, k) = (13, 16 * 41 + 5, 256);
        assert!(m * n * k >= 1 << 21 && n > m, "the shape must take the panel split");
        let x = values(m * k, 7);
        let w = values(n * k, 9);
        let packed = PackedWeight::pack(&w, n, k).unwrap();
        let mut one = vec![f32::NAN; m * n];
        packed.matmul(&x, m, &mut one, 1).unwrap();
        for threads in [2, 3, 8] {
            let mut split = vec![f32::NAN; m * n];
            packed.matmul(&x, m, &mut split, threads).unwrap();
            assert!(one.iter().zip(&split).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads");
        }
        for i in [0, 12] {
            let mut row = vec![f32::NAN; n];
            packed.matmul(&x[i * k..(i + 1) * k], 1, &mut row, 1).unwrap();
            assert_eq!(row[..], one[i * n..(i + 1) * n], "row {i}");
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
