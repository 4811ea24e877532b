//! Errors of the GGUF reader. Every message starts with the file path and names the field, key or tensor.

use std::path::PathBuf;

use super::dequant::DequantError;
use super::types::GgmlType;

/// Everything that can go wrong while reading a GGUF file or querying it.
///
/// Each variant carries the path of the file (as given to [`GgufFile::open`](super::GgufFile::open) or
/// [`GgufFile::from_bytes`](super::GgufFile::from_bytes)) and the message names the offending field, metadata
/// key or tensor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened, inspected or memory-mapped.
    #[error("{}: {source}", path.display())]
    Io {
        /// File path.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The first four bytes are not `GGUF`.
    #[error("{}: bad magic {found:02x?} (expected \"GGUF\" = [47, 47, 55, 46]); not a GGUF file", path.display())]
    BadMagic {
        /// File path.
        path: PathBuf,
        /// The four bytes found.
        found: [u8; 4],
    },

    /// The version field is not 2 or 3.
    #[error("{}: unsupported GGUF version {version}{hint} (supported: 2, 3)", path.display())]
    UnsupportedVersion {
        /// File path.
        path: PathBuf,
        /// The version read (little-endian).
        version: u32,
        /// Extra explanation (e.g. that the file looks big-endian), possibly empty.
        hint: String,
    },

    /// The file ends before a field is complete.
    #[error("{}: truncated: {what} at offset {offset} needs {needed} bytes but the file has {size}", path.display())]
    Truncated {
        /// File path.
        path: PathBuf,
        /// The field being read.
        what: String,
        /// Byte offset of the field.
        offset: u64,
        /// Bytes the field needs.
        needed: u64,
        /// File size.
        size: u64,
    },

    /// A string (key, value or tensor name) is not valid UTF-8.
    #[error("{}: {what} at offset {offset} is not valid UTF-8", path.display())]
    InvalidUtf8 {
        /// File path.
        path: PathBuf,
        /// The field being read.
        what: String,
        /// Byte offset of the string bytes.
        offset: u64,
    },

    /// A count (metadata kv count, tensor count, array length) cannot possibly fit in the rest of the file.
    #[error(
        "{}: {what}: count {count} is absurd (at most {max} fit in the remaining {remaining} bytes: a corrupt count or a truncated file)",
        path.display()
    )]
    AbsurdCount {
        /// File path.
        path: PathBuf,
        /// The count field.
        what: String,
        /// The count read.
        count: u64,
        /// Upper bound implied by the remaining bytes.
        max: u64,
        /// Bytes left after the count field.
        remaining: u64,
    },

    /// A metadata value type id is not a known `gguf_type`.
    #[error("{}: {what}: unknown metadata value type id {type_id}", path.display())]
    UnknownValueType {
        /// File path.
        path: PathBuf,
        /// The value being read.
        what: String,
        /// The id read.
        type_id: u32,
    },

    /// A metadata value is malformed in some other way (e.g. a bool byte that is not 0 or 1).
    #[error("{}: {what}: {detail}", path.display())]
    InvalidValue {
        /// File path.
        path: PathBuf,
        /// The value being read.
        what: String,
        /// What is wrong.
        detail: String,
    },

    /// Arrays nested deeper than the reader allows.
    #[error("{}: {what}: arrays nested deeper than {max_depth} levels", path.display())]
    NestingTooDeep {
        /// File path.
        path: PathBuf,
        /// The value being read.
        what: String,
        /// The nesting limit.
        max_depth: usize,
    },

    /// The same metadata key appears twice.
    #[error("{}: duplicate metadata key '{key}'", path.display())]
    DuplicateKey {
        /// File path.
        path: PathBuf,
        /// The key.
        key: String,
    },

    /// The same tensor name appears twice.
    #[error("{}: duplicate tensor name '{tensor}'", path.display())]
    DuplicateTensor {
        /// File path.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
    },

    /// A tensor's ggml type id is unknown (or a removed type).
    #[error("{}: tensor '{tensor}': unknown ggml type id {type_id}", path.display())]
    UnknownGgmlType {
        /// File path.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The id read.
        type_id: u32,
    },

    /// A tensor's dimensions are invalid (too many, negative, overflowing).
    #[error("{}: tensor '{tensor}': invalid shape: {detail}", path.display())]
    InvalidShape {
        /// File path.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// What is wrong.
        detail: String,
    },

    /// A tensor's row length (`ne[0]`) is not a multiple of its type's block size.
    #[error(
        "{}: tensor '{tensor}': row length ne[0] = {row_len} is not a multiple of the {ggml_type} block size {block_size}",
        path.display()
    )]
    RowNotBlockMultiple {
        /// File path.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The tensor type.
        ggml_type: GgmlType,
        /// `ne[0]`.
        row_len: u64,
        /// Elements per block.
        block_size: u64,
    },

    /// `general.alignment` is not a usable alignment.
    #[error("{}: metadata key 'general.alignment': {detail}", path.display())]
    BadAlignment {
        /// File path.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// A tensor's data offset is not a multiple of the alignment.
    #[error(
        "{}: tensor '{tensor}': data offset {offset} is not a multiple of the alignment {alignment}",
        path.display()
    )]
    MisalignedOffset {
        /// File path.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// Offset relative to the data section.
        offset: u64,
        /// Alignment in effect.
        alignment: u64,
    },

    /// A tensor's data does not lie inside the file.
    #[error("{}: tensor '{tensor}': data [{start}..{end}] runs past end of file (size {size})", path.display())]
    TensorOutOfBounds {
        /// File path.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// Absolute start offset (saturated at `u64::MAX` on overflow).
        start: u64,
        /// Absolute end offset, exclusive (saturated at `u64::MAX` on overflow).
        end: u64,
        /// File size.
        size: u64,
    },

    /// Two tensors' data ranges overlap.
    #[error(
        "{}: tensors '{first}' [{first_start}..{first_end}] and '{second}' [{second_start}..{second_end}] overlap",
        path.display()
    )]
    OverlappingTensors {
        /// File path.
        path: PathBuf,
        /// The tensor that starts first.
        first: String,
        /// Its absolute start.
        first_start: u64,
        /// Its absolute end (exclusive).
        first_end: u64,
        /// The tensor starting inside the first one.
        second: String,
        /// Its absolute start.
        second_start: u64,
        /// Its absolute end (exclusive).
        second_end: u64,
    },

    /// A metadata key that was asked for is absent.
    #[error("{}: missing metadata key '{key}'", path.display())]
    MissingKey {
        /// File path.
        path: PathBuf,
        /// The key.
        key: String,
    },

    /// A metadata key exists but has another type than the one asked for.
    #[error("{}: metadata key '{key}' has the wrong type: expected {expected}, found {actual}", path.display())]
    WrongType {
        /// File path.
        path: PathBuf,
        /// The key.
        key: String,
        /// What the getter accepts.
        expected: String,
        /// The stored type.
        actual: String,
    },

    /// A metadata integer does not fit the requested integer type.
    #[error("{}: metadata key '{key}': value {value} does not fit in {target}", path.display())]
    OutOfRange {
        /// File path.
        path: PathBuf,
        /// The key.
        key: String,
        /// The stored value (as text).
        value: String,
        /// The requested type.
        target: String,
    },

    /// No tensor has that name.
    #[error("{}: no tensor named '{tensor}'", path.display())]
    TensorNotFound {
        /// File path.
        path: PathBuf,
        /// The name asked for.
        tensor: String,
    },

    /// A row range outside the tensor was asked for.
    #[error("{}: tensor '{tensor}': rows {start}..{end} out of range (tensor has {n_rows} rows)", path.display())]
    RowRangeOutOfBounds {
        /// File path.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// Requested start row.
        start: u64,
        /// Requested end row (exclusive).
        end: u64,
        /// Rows in the tensor.
        n_rows: u64,
    },

    /// Dequantisation of a tensor failed (unsupported type, inconsistent size).
    #[error("{}: tensor '{tensor}': {source}", path.display())]
    Dequant {
        /// File path.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// What failed.
        #[source]
        source: DequantError,
    },
}

impl GgufError {
    /// True for [`GgufError::MissingKey`] (handy to treat a key as optional).
    pub fn is_missing_key(&self) -> bool {
        matches!(self, GgufError::MissingKey { .. })
    }
}
