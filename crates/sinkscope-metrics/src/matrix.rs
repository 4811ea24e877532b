//! [`Matrix`]: a checked, borrowed, row-major `f32` matrix view.

use crate::MetricsError;

/// A borrowed row-major `f32` matrix of shape `rows x cols`.
///
/// This is the input type of every metric: an activation matrix `X` of shape `(T, d)`
/// (row `i` is token `i`), or one head's `T x T` attention pattern (row `t` is query `t`).
///
/// The constructor checks that the data length matches the shape, that neither dimension
/// is zero, and that every value is finite, so downstream numerics never see NaN or
/// infinity coming in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Matrix<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
}

/// From this many values on, [`Matrix::new`] scans for non-finite values on rayon's threads.
const PARALLEL_SCAN_MIN: usize = 1 << 20;

impl<'a> Matrix<'a> {
    /// Wraps `data` (row-major, `rows * cols` values) as a matrix.
    ///
    /// # Errors
    /// [`MetricsError::ShapeMismatch`] when `data.len() != rows * cols`,
    /// [`MetricsError::Empty`] when `rows == 0` or `cols == 0`, and
    /// [`MetricsError::NonFinite`] for the first NaN or infinite value.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, MetricsError> {
        let expected = rows.saturating_mul(cols);
        if rows == 0 || cols == 0 {
            return Err(MetricsError::Empty { rows, cols });
        }
        if data.len() != expected || rows.checked_mul(cols).is_none() {
            return Err(MetricsError::ShapeMismatch { len: data.len(), rows, cols, expected });
        }
        // Blocks without an early exit inside (vectorised), then the first bad value's place;
        // a large matrix (a LogitLens layer's `[T, V]` logits) is scanned on rayon's threads
        // (the first bad block is the same).
        let bad = |c: &[f32]| c.iter().fold(false, |acc, v| acc | !v.is_finite());
        let first_bad_block = if data.len() >= PARALLEL_SCAN_MIN {
            use rayon::prelude::*;
            data.par_chunks(4096).position_first(bad)
        } else {
            data.chunks(4096).position(bad)
        };
        if let Some(pos) = first_bad_block.and_then(|b| {
            let start = b * 4096;
            data.get(start..).and_then(|rest| rest.iter().position(|v| !v.is_finite())).map(|p| start + p)
        }) {
            return Err(MetricsError::NonFinite {
                row: pos / cols,
                col: pos % cols,
                value: data.get(pos).copied().unwrap_or(f32::NAN),
            });
        }
        Ok(Self { data, rows, cols })
    }

    /// Number of rows (`T` for activations).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (`d` for activations).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The underlying row-major data.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Row `i`, or `None` when `i >= rows`.
    pub fn row(&self, i: usize) -> Option<&'a [f32]> {
        if i >= self.rows {
            return None;
        }
        self.data.get(i * self.cols..(i + 1) * self.cols)
    }

    /// Element `(i, j)`, or `None` when out of range.
    pub fn get(&self, i: usize, j: usize) -> Option<f32> {
        if i >= self.rows || j >= self.cols {
            return None;
        }
        self.data.get(i * self.cols + j).copied()
    }

    /// Iterator over the rows, in order.
    pub fn iter_rows(&self) -> std::slice::ChunksExact<'a, f32> {
        self.data.chunks_exact(self.cols)
    }
}
