//! Matrices kept in their file's storage format (GGUF quantisations, F16, BF16): the bytes stay
//! in the memory map (or the owned buffer) they were read from, and rows are dequantised on
//! demand — by the matmul kernel, panel by panel, or row by row for an embedding lookup —
//! to exactly the values [`crate::gguf::dequantize`] gives for the whole tensor.
//!
//! Load-time transforms that only move rows (llama.cpp's Q/K permutation, fused QKV and
//! gate/up splits, per-expert slices) become a row map: output row `r` is stored row
//! `rows[r]`. Nothing is copied.

use crate::gguf::{byte_size, dequantize_into, finite_by_scales, DequantError, GgmlType};
use std::ops::Range;
use std::sync::Arc;

/// Bytes shared with whatever owns them (a memory-mapped file, or an owned buffer), viewed
/// through a range that was checked when the view was made.
#[derive(Clone)]
pub struct SharedBytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    range: Range<usize>,
    /// Whether the owner is a read-only file mapping (only then may its pages be dropped:
    /// [`SharedBytes::advise`]).
    mapped: bool,
}

/// What to tell the kernel about a range of a file mapping ([`SharedBytes::advise`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAdvice {
    /// The pages will be needed soon: start reading them (`MADV_WILLNEED`).
    WillNeed,
    /// The pages are not needed any more: drop them from this process (`MADV_DONTNEED`); they
    /// are read again from the file (or the page cache) if touched.
    DontNeed,
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBytes[{}..{}]", self.range.start, self.range.end)
    }
}

impl SharedBytes {
    /// A view of `owner`'s bytes `range`; `None` when the range lies outside them.
    pub fn new(owner: Arc<dyn AsRef<[u8]> + Send + Sync>, range: Range<usize>) -> Option<Self> {
        let len = owner.as_ref().as_ref().len();
        (range.start <= range.end && range.end <= len).then_some(SharedBytes { owner, range, mapped: false })
    }

    /// [`new`](Self::new) for an owner that is a read-only memory map of a file, whose pages
    /// [`advise`](Self::advise) may drop and prefetch.
    pub fn mapped(owner: Arc<dyn AsRef<[u8]> + Send + Sync>, range: Range<usize>) -> Option<Self> {
        Self::new(owner, range).map(|b| SharedBytes { mapped: true, ..b })
    }

    /// Advises the kernel about the pages of this range (widened to whole pages). Best effort:
    /// does nothing for bytes that are not a file mapping (dropping the pages of an owned
    /// buffer would zero it) or where `madvise` is not available.
    pub fn advise(&self, advice: PageAdvice) {
        self.advise_part(0..self.range.len(), advice);
    }

    /// [`advise`](Self::advise) for bytes `part` of this view only (clamped to it).
    pub fn advise_part(&self, part: Range<usize>, advice: PageAdvice) {
        if !self.mapped {
            return;
        }
        let bytes = self.bytes();
        let end = part.end.min(bytes.len());
        if let Some(b) = bytes.get(part.start.min(end)..end) {
            advise_pages(b, advice);
        }
    }
}

/// `madvise` over the whole pages that hold `bytes` (part of a read-only file mapping).
#[cfg(unix)]
fn advise_pages(bytes: &[u8], advice: PageAdvice) {
    if bytes.is_empty() {
        return;
    }
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => return,
    };
    let start = bytes.as_ptr() as usize;
    let (lo, hi) = (start / page * page, (start + bytes.len()).div_ceil(page) * page);
    let flag = match advice {
        PageAdvice::WillNeed => libc::MADV_WILLNEED,
        PageAdvice::DontNeed => libc::MADV_DONTNEED,
    };
    // SAFETY: `bytes` lies in a read-only file mapping, which starts on a page boundary and
    // whose last page the kernel maps whole, so [lo, hi) stays inside it. MADV_DONTNEED on a
    // file mapping only drops this process's copy of the pages: the next access reads the
    // same bytes again from the file, so no reference into the map observes a change (the
    // same reasoning as `GgufFile::release_pages`). MADV_WILLNEED only starts reads.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, flag) };
}

#[cfg(not(unix))]
fn advise_pages(_: &[u8], _: PageAdvice) {}

impl SharedBytes {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        // The range was checked against the owner's length in `new`, and owners never shrink.
        self.owner.as_ref().as_ref().get(self.range.clone()).unwrap_or_default()
    }
}

/// Bytes of a stored tensor scanned between two page advices at load (see
/// [`StoredMatrix::finite_by_scales_then`]).
const SCAN_CHUNK_BYTES: usize = 64 << 20;

/// A `[n, k]` matrix whose rows stay in their stored format. Row `r` of the matrix is row
/// `rows[r]` of the stored tensor (viewed as `[stored_rows, k]`).
#[derive(Clone)]
pub struct StoredMatrix {
    bytes: SharedBytes,
    ty: GgmlType,
    k: usize,
    row_bytes: usize,
    stored_rows: usize,
    rows: Arc<[u32]>,
}

impl std::fmt::Debug for StoredMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredMatrix[{} x {} {}]", self.rows.len(), self.k, self.ty.name())
    }
}

/// Why a stored matrix could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredError {
    /// The bytes do not hold `stored_rows` rows of `k` values of the type.
    #[error("{what}")]
    Layout {
        /// What is wrong.
        what: String,
    },
    /// Dequantisation failed (a range that is not whole blocks).
    #[error(transparent)]
    Dequant(#[from] DequantError),
}

impl StoredMatrix {
    /// Views `bytes` as `[stored_rows, k]` values of type `ty` (every row whole blocks), in
    /// stored row order.
    ///
    /// # Errors
    /// When the type has no dequantiser, `k` is not whole blocks, or the byte count is not
    /// `stored_rows` rows.
    pub fn new(bytes: SharedBytes, ty: GgmlType, stored_rows: usize, k: usize) -> Result<Self, StoredError> {
        if !ty.can_dequantize() {
            return Err(DequantError::Unsupported(ty).into());
        }
        let row_bytes = usize::try_from(byte_size(ty, k as u64)?)
            .map_err(|_| StoredError::Layout { what: format!("a row of {k} values is too large") })?;
        let total = stored_rows.checked_mul(row_bytes);
        if total != Some(bytes.bytes().len()) {
            return Err(StoredError::Layout {
                what: format!(
                    "{} bytes do not hold {stored_rows} rows of {k} {} values ({row_bytes} bytes each)",
                    bytes.bytes().len(),
                    ty.name()
                ),
            });
        }
        let rows = (0..stored_rows)
            .map(|r| {
                u32::try_from(r).map_err(|_| StoredError::Layout { what: format!("{stored_rows} rows") })
            })
            .collect::<Result<Arc<[u32]>, _>>()?;
        Ok(StoredMatrix { bytes, ty, k, row_bytes, stored_rows, rows })
    }

    /// Rows `n`.
    pub fn n(&self) -> usize {
        self.rows.len()
    }

    /// Row length `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The storage type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    /// Values per quantisation block (a range to dequantise starts and ends on a multiple).
    pub fn block_len(&self) -> usize {
        self.ty.block_size() as usize
    }

    /// Bytes of the rows this matrix uses (each stored row counted once per use).
    pub fn bytes_used(&self) -> usize {
        self.rows.len() * self.row_bytes
    }

    /// The matrix whose row `r` is this one's row `map[r]`.
    ///
    /// # Errors
    /// When an index is out of range.
    pub fn select_rows(&self, map: &[usize]) -> Result<Self, StoredError> {
        let rows = map
            .iter()
            .map(|&r| {
                self.rows.get(r).copied().ok_or_else(|| StoredError::Layout {
                    what: format!("row {r} of a matrix of {} rows", self.rows.len()),
                })
            })
            .collect::<Result<Arc<[u32]>, _>>()?;
        Ok(StoredMatrix { rows, ..self.clone() })
    }

    /// Dequantises values `k0 .. k0 + out.len()` of row `row` into `out`; `k0` and the length
    /// are whole blocks (or the length reaches the end of the row).
    ///
    /// # Errors
    /// When the row or the range is out of bounds or not whole blocks.
    pub fn dequant_range(&self, row: usize, k0: usize, out: &mut [f32]) -> Result<(), StoredError> {
        let bl = self.block_len();
        let bad = || StoredError::Layout {
            what: format!("values {k0}..{} of row {row} ({} x {})", k0 + out.len(), self.n(), self.k),
        };
        let stored = *self.rows.get(row).ok_or_else(bad)? as usize;
        if !k0.is_multiple_of(bl) || k0 + out.len() > self.k {
            return Err(bad());
        }
        let per_block = self.row_bytes / (self.k / bl).max(1);
        let start = stored * self.row_bytes + k0 / bl * per_block;
        let end = start + out.len().div_ceil(bl) * per_block;
        let bytes = self.bytes.bytes().get(start..end).ok_or_else(bad)?;
        dequantize_into(self.ty, bytes, out)?;
        Ok(())
    }

    /// Dequantises row `row` into `out` (`k` values).
    ///
    /// # Errors
    /// As [`dequant_range`](Self::dequant_range).
    pub fn dequant_row(&self, row: usize, out: &mut [f32]) -> Result<(), StoredError> {
        self.dequant_range(row, 0, out)
    }

    /// Advises the kernel about every page of the stored tensor this matrix views (a row map
    /// may use only some of its rows: the whole tensor is advised). See [`SharedBytes::advise`].
    pub fn advise(&self, advice: PageAdvice) {
        self.bytes.advise(advice);
    }

    /// Bytes of the stored tensor this matrix views (all of its rows).
    pub fn stored_bytes(&self) -> usize {
        self.bytes.bytes().len()
    }

    /// Every value, row-major `[n, k]` (what loading the tensor as f32 and applying the row
    /// map gives).
    ///
    /// # Errors
    /// As [`dequant_range`](Self::dequant_range).
    pub fn to_f32(&self) -> Result<Vec<f32>, StoredError> {
        let mut out = vec![0f32; self.n() * self.k];
        for (r, chunk) in out.chunks_exact_mut(self.k.max(1)).enumerate() {
            self.dequant_row(r, chunk)?;
        }
        Ok(out)
    }

    /// Whether every value of the stored tensor (all of its rows) is finite, decided from the
    /// blocks' f16 scales without dequantising (see [`finite_by_scales`]); `None` for the
    /// types whose scales do not decide it.
    pub fn finite_by_scales(&self) -> Option<bool> {
        self.finite_by_scales_then(None)
    }

    /// [`finite_by_scales`](Self::finite_by_scales) read in chunks of about 64 MiB, advising
    /// each chunk's pages with `after` once it is checked: with `DontNeed` a tensor larger
    /// than memory (a 70B model's head) holds one chunk of pages at a time while it is scanned.
    pub fn finite_by_scales_then(&self, after: Option<PageAdvice>) -> Option<bool> {
        self.finite_by_scales_in(after, SCAN_CHUNK_BYTES)
    }

    fn finite_by_scales_in(&self, after: Option<PageAdvice>, chunk_bytes: usize) -> Option<bool> {
        let bytes = self.bytes.bytes();
        let ts = usize::try_from(self.ty.type_size()).ok().filter(|&t| t > 0)?;
        let chunk = (chunk_bytes / ts).max(1) * ts;
        let mut all = true;
        for start in (0..bytes.len()).step_by(chunk) {
            let end = (start + chunk).min(bytes.len());
            all &= finite_by_scales(self.ty, bytes.get(start..end)?)?;
            if let Some(advice) = after {
                self.bytes.advise_part(start..end, advice);
            }
        }
        Some(all)
    }

    /// Calls `f(flat_index_of_row_start, values)` for each stored row in stored order (not
    /// through the row map), dequantising one row at a time: scans a tensor without holding
    /// it in f32.
    ///
    /// # Errors
    /// As [`dequant_range`](Self::dequant_range).
    pub fn for_each_stored_row(&self, f: impl FnMut(usize, &[f32])) -> Result<(), StoredError> {
        self.for_each_stored_row_then(None, f)
    }

    /// [`for_each_stored_row`](Self::for_each_stored_row), advising the pages of every ~64 MiB
    /// of rows with `after` once they are read (see
    /// [`finite_by_scales_then`](Self::finite_by_scales_then)).
    ///
    /// # Errors
    /// As [`dequant_range`](Self::dequant_range).
    pub fn for_each_stored_row_then(
        &self,
        after: Option<PageAdvice>,
        f: impl FnMut(usize, &[f32]),
    ) -> Result<(), StoredError> {
        self.for_each_stored_row_in(after, SCAN_CHUNK_BYTES, f)
    }

    fn for_each_stored_row_in(
        &self,
        after: Option<PageAdvice>,
        chunk_bytes: usize,
        mut f: impl FnMut(usize, &[f32]),
    ) -> Result<(), StoredError> {
        let whole = StoredMatrix { rows: (0..self.stored_rows as u32).collect(), ..self.clone() };
        let mut buf = vec![0f32; self.k];
        let per = (chunk_bytes / self.row_bytes.max(1)).max(1);
        for r in 0..self.stored_rows {
            whole.dequant_row(r, &mut buf)?;
            f(r * self.k, &buf);
            if let Some(advice) = after.filter(|_| (r + 1) % per == 0 || r + 1 == self.stored_rows) {
                let first = r / per * per;
                self.bytes.advise_part(first * self.row_bytes..(r + 1) * self.row_bytes, advice);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The load-time scans over a file mapping, chunk by chunk with the pages of each chunk
    /// dropped once read: the same values and the same answer as over an owned buffer (the
    /// dropped pages are read again from the file when touched).
    #[test]
    fn chunked_scans_that_drop_pages_read_the_same_values() {
        let (bytes, values) = q8_rows(12, 256);
        let path = std::env::temp_dir().join(format!("sinkscope-stored-scan-{}.bin", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: the test's own file, not modified while mapped.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let len = bytes.len();
        let mapped =
            StoredMatrix::new(SharedBytes::mapped(Arc::new(map), 0..len).unwrap(), GgmlType::Q8_0, 12, 256)
                .unwrap();
        let owned =
            StoredMatrix::new(SharedBytes::new(Arc::new(bytes), 0..len).unwrap(), GgmlType::Q8_0, 12, 256)
                .unwrap();
        // Chunks of 3 rows (816 bytes, not whole pages) and of 5 (the last one partial).
        for chunk in [3 * 272, 5 * 272] {
            for m in [&mapped, &owned] {
                assert_eq!(m.finite_by_scales_in(Some(PageAdvice::DontNeed), chunk), Some(true));
                let mut seen = Vec::new();
                m.for_each_stored_row_in(Some(PageAdvice::DontNeed), chunk, |at, row| {
                    assert_eq!(at, seen.len());
                    seen.extend_from_slice(row);
                })
                .unwrap();
                assert_eq!(seen, values);
            }
        }
        std::fs::remove_file(&path).unwrap();
    }

    fn q8_rows(rows: usize, k: usize) -> (Vec<u8>, Vec<f32>) {
        // Q8_0: f16 scale then 32 i8 values per block.
        let mut bytes = Vec::new();
        let mut values = Vec::new();
        for r in 0..rows {
            for b in 0..k / 32 {
                let d = half::f16::from_f32(0.5 + r as f32 * 0.25 + b as f32);
                bytes.extend_from_slice(&d.to_le_bytes());
                for j in 0..32 {
                    let q = ((r * 7 + b * 3 + j) % 255) as i32 - 127;
                    bytes.push(q as i8 as u8);
                    values.push(q as f32 * d.to_f32());
                }
            }
        }
        (bytes, values)
    }

    #[test]
    fn rows_ranges_and_maps_equal_the_whole_tensor_dequantised() {
        let (rows, k) = (5, 96);
        let (bytes, values) = q8_rows(rows, k);
        let whole = crate::gguf::dequantize(GgmlType::Q8_0, &bytes, rows * k).unwrap();
        assert_eq!(whole, values);
        let len = bytes.len();
        let m =
            StoredMatrix::new(SharedBytes::new(Arc::new(bytes), 0..len).unwrap(), GgmlType::Q8_0, rows, k)
                .unwrap();
        assert_eq!(m.to_f32().unwrap(), whole);
        let mut part = vec![0f32; 64];
        m.dequant_range(3, 32, &mut part).unwrap();
        assert_eq!(part[..], whole[3 * k + 32..3 * k + 96]);
        assert!(m.dequant_range(3, 16, &mut part[..32]).is_err(), "not a block boundary");
        assert!(m.dequant_range(3, 64, &mut part).is_err(), "past the row");
        let sel = m.select_rows(&[4, 0, 4]).unwrap();
        let got = sel.to_f32().unwrap();
        assert_eq!(got[..k], whole[4 * k..5 * k]);
        assert_eq!(got[k..2 * k], whole[..k]);
        assert!(m.select_rows(&[5]).is_err());
    }

    #[test]
    fn a_byte_count_that_is_not_the_rows_is_refused() {
        let (bytes, _) = q8_rows(2, 32);
        let len = bytes.len();
        let b = SharedBytes::new(Arc::new(bytes), 0..len - 1).unwrap();
        assert!(StoredMatrix::new(b, GgmlType::Q8_0, 2, 32).is_err());
    }
}
