//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong when computing metrics: shape mismatches, empty or
/// non-finite input, mismatched curve lengths, and (in principle) a non-converging
/// eigensolver.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MetricsError {
    /// `data.len()` is not `rows * cols`.
    #[error("matrix data has {len} elements but the shape {rows} x {cols} needs {expected}")]
    ShapeMismatch {
        /// Number of elements supplied.
        len: usize,
        /// Declared number of rows.
        rows: usize,
        /// Declared number of columns.
        cols: usize,
        /// `rows * cols` (saturating).
        expected: usize,
    },
    /// A matrix with zero rows or zero columns.
    #[error("matrix of shape {rows} x {cols} is empty")]
    Empty {
        /// Declared number of rows.
        rows: usize,
        /// Declared number of columns.
        cols: usize,
    },
    /// An activation or attention value is NaN or infinite.
    #[error("non-finite value {value} at row {row}, column {col}")]
    NonFinite {
        /// Row of the first offending element.
        row: usize,
        /// Column of the first offending element.
        col: usize,
        /// The offending value.
        value: f32,
    },
    /// An attention pattern must be square (T x T).
    #[error("attention pattern must be square, got {rows} x {cols}")]
    NotSquare {
        /// Number of rows.
        rows: usize,
        /// Number of columns.
        cols: usize,
    },
    /// Two inputs that must have the same length do not.
    #[error("{what}: lengths differ ({left} vs {right})")]
    LengthMismatch {
        /// Which inputs disagree.
        what: &'static str,
        /// Length of the first input.
        left: usize,
        /// Length of the second input.
        right: usize,
    },
    /// A per-layer curve is too short (it needs L + 1 >= 2 entries).
    #[error("{what}: need at least {min} entries, got {len}")]
    TooShort {
        /// Which input is too short.
        what: &'static str,
        /// Minimum length.
        min: usize,
        /// Actual length.
        len: usize,
    },
    /// A value fed to an aggregate (mean, Pearson r, ...) is NaN or infinite.
    #[error("{what}: non-finite value {value} at index {index}")]
    NonFiniteValue {
        /// Which input.
        what: &'static str,
        /// Index of the first offending value.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A number of heads or a sequence length that does not divide the data.
    #[error("attention data has {len} elements, expected n_heads {n_heads} x T {t} x T {t}")]
    HeadShape {
        /// Elements supplied.
        len: usize,
        /// Declared number of heads.
        n_heads: usize,
        /// Declared sequence length.
        t: usize,
    },
    /// faer's self-adjoint eigensolver did not converge.
    #[error("self-adjoint eigensolver did not converge on a {n} x {n} Gram matrix")]
    EigenNoConvergence {
        /// Order of the Gram matrix.
        n: usize,
    },
}
