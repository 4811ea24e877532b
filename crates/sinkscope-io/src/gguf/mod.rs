//! GGUF reader: memory-mapped parsing of GGUF v2/v3 files (metadata, tensor infos) and exact dequantisation
//! of tensor data to f32.
//!
//! ```no_run
//! # fn main() -> Result<(), sinkscope_io::gguf::GgufError> {
//! use sinkscope_io::gguf::GgufFile;
//! let f = GgufFile::open(std::path::Path::new("model.gguf"))?;
//! let arch = f.architecture()?;
//! let n_layers = f.get_u64(&format!("{arch}.block_count"))?;
//! let emb = f.tensor_info("token_embd.weight")?; // emb.shape == [vocab, d_model] (row-major)
//! let values = f.dequantize("token_embd.weight")?; // row-major f32, emb.shape.iter().product() values
//! # let _ = (n_layers, values); Ok(()) }
//! ```
//!
//! # Shapes
//!
//! ggml lists dimensions fastest-varying first (`ne[0]` is the row length). [`GgufTensorInfo::ne`] keeps that
//! order; [`GgufTensorInfo::shape`] is the reversed, row-major (numpy / PyTorch) order, so a GGUF
//! `token_embd.weight` with `ne = [64, 512]` has `shape = [512, 64]`, matching HF's `[vocab, d_model]`.
//! [`GgufFile::dequantize`] returns values in that row-major order.
//!
//! # Validation
//!
//! [`GgufFile::open`] checks the whole header before returning: magic, version (2 or 3), every count against
//! the bytes left, UTF-8 of every string, metadata value types, array nesting depth (at most
//! [`MAX_ARRAY_DEPTH`]), duplicate keys and tensor names, `general.alignment` (a power of two, default 32),
//! tensor dims (at most 4, non-negative, element count within `i64`), ggml type ids, `ne[0]` being a whole number
//! of blocks, tensor offsets being aligned, every tensor's data lying inside the file, and tensors not
//! overlapping. No input makes it panic.

mod dequant;
mod error;
mod iq_tables;
mod reader;
mod types;
mod value;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use dequant::{byte_size, dequantize, dequantize_into, finite_by_scales, DequantError, QK, QK_K};
pub use error::GgufError;
pub use reader::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
pub use types::GgmlType;
pub use value::{GgufArray, GgufValue, GgufValueType};

/// Description of one tensor stored in a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: fastest-varying first (`ne[0]` = row length). Empty for a 0-d tensor.
    pub ne: Vec<u64>,
    /// Dimensions in row-major order (numpy/PyTorch): `ne` reversed. `shape.last()` is the row length.
    pub shape: Vec<usize>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Data offset relative to the start of the data section, as stored in the file.
    pub offset: u64,
    /// Absolute data offset in the file (`data_offset + offset`).
    pub file_offset: u64,
    /// Size of the data in bytes (`ggml_nbytes`).
    pub n_bytes: u64,
    /// Number of elements (product of `ne`; 1 for a 0-d tensor).
    pub n_elements: u64,
}

impl GgufTensorInfo {
    /// Row length `ne[0]` (1 for a 0-d tensor).
    pub fn row_len(&self) -> u64 {
        self.ne.first().copied().unwrap_or(1)
    }

    /// Number of rows: elements / row length (0 if the tensor is empty).
    pub fn n_rows(&self) -> u64 {
        match self.row_len() {
            0 => 0,
            r => self.n_elements / r,
        }
    }

    /// Absolute byte range of the data in the file.
    pub fn file_range(&self) -> Range<u64> {
        self.file_offset..self.file_offset.saturating_add(self.n_bytes)
    }
}

enum Storage {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Storage {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

/// An open, fully validated GGUF file.
///
/// The file stays memory-mapped for the lifetime of the value; [`raw_bytes`](Self::raw_bytes) borrows from
/// the map. Like every mmap-based loader, this assumes the file is not modified while it is open.
pub struct GgufFile {
    path: PathBuf,
    data: std::sync::Arc<Storage>,
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    key_order: Vec<String>,
    tensors: Vec<GgufTensorInfo>,
    index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("size", &self.file_size())
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Memory-map and parse the GGUF file at `path`, validating the whole header (see the module docs).
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let io = |source| GgufError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let data = if len == 0 {
            Storage::Owned(Vec::new())
        } else {
            // SAFETY: the mapping is read-only and private to this value. Memory-mapping is only unsound if
            // another process truncates or rewrites the file while it is mapped; as for every mmap-based model
            // loader, that is a documented precondition of `GgufFile`.
            Storage::Mmap(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?)
        };
        Self::from_storage(path.to_path_buf(), data)
    }

    /// Parse a GGUF image held in memory. `path` is only used in error messages.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::from_storage(path.into(), Storage::Owned(bytes))
    }

    fn from_storage(path: PathBuf, data: Storage) -> Result<GgufFile, GgufError> {
        let h = reader::parse(&path, data.bytes())?;
        Ok(GgufFile {
            path,
            data: std::sync::Arc::new(data),
            version: h.version,
            metadata: h.metadata,
            key_order: h.key_order,
            tensors: h.tensors,
            index: h.index,
            alignment: h.alignment,
            data_offset: h.data_offset,
        })
    }

    /// The path given to [`open`](Self::open) / [`from_bytes`](Self::from_bytes).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// File size in bytes.
    pub fn file_size(&self) -> u64 {
        self.data.bytes().len() as u64
    }

    /// Alignment of the data section and tensor offsets (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section (end of the header, padded to the alignment).
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    // ----------------------------------------------------------------------------------------------------
    // Metadata

    /// All metadata, sorted by key.
    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    /// Metadata keys in file order.
    pub fn metadata_keys(&self) -> &[String] {
        &self.key_order
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.metadata.contains_key(key)
    }

    /// The value of `key`, or [`GgufError::MissingKey`].
    pub fn value(&self, key: &str) -> Result<&GgufValue, GgufError> {
        self.metadata
            .get(key)
            .ok_or_else(|| GgufError::MissingKey { path: self.path.clone(), key: key.to_owned() })
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &GgufValue) -> GgufError {
        GgufError::WrongType {
            path: self.path.clone(),
            key: key.to_owned(),
            expected: expected.to_owned(),
            actual: found.type_description(),
        }
    }

    fn out_of_range(&self, key: &str, value: impl fmt::Display, target: &str) -> GgufError {
        GgufError::OutOfRange {
            path: self.path.clone(),
            key: key.to_owned(),
            value: value.to_string(),
            target: target.to_owned(),
        }
    }

    fn integer<T: TryFrom<i128>>(&self, key: &str, v: &GgufValue, target: &str) -> Result<T, GgufError> {
        let i = v.as_integer().ok_or_else(|| self.wrong_type(key, "an integer", v))?;
        T::try_from(i).map_err(|_| self.out_of_range(key, i, target))
    }

    /// An integer of any stored width/signedness that fits in `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.integer(key, self.value(key)?, "u64")
    }

    /// An integer of any stored width/signedness that fits in `i64`.
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.integer(key, self.value(key)?, "i64")
    }

    /// An integer of any stored width/signedness that fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.integer(key, self.value(key)?, "u32")
    }

    /// An integer of any stored width/signedness that fits in `i32`.
    pub fn get_i32(&self, key: &str) -> Result<i32, GgufError> {
        self.integer(key, self.value(key)?, "i32")
    }

    /// An integer of any stored width/signedness that fits in `usize`.
    pub fn get_usize(&self, key: &str) -> Result<usize, GgufError> {
        self.integer(key, self.value(key)?, "usize")
    }

    /// An `f32` value (an `f64` value is rounded to `f32`).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match *self.value(key)? {
            GgufValue::F32(v) => Ok(v),
            GgufValue::F64(v) => Ok(v as f32),
            ref other => Err(self.wrong_type(key, "f32 or f64", other)),
        }
    }

    /// An `f32` or `f64` value as `f64` (f32 widens exactly).
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        match *self.value(key)? {
            GgufValue::F32(v) => Ok(f64::from(v)),
            GgufValue::F64(v) => Ok(v),
            ref other => Err(self.wrong_type(key, "f32 or f64", other)),
        }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.value(key)?;
        v.as_str().ok_or_else(|| self.wrong_type(key, "string", v))
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match *self.value(key)? {
            GgufValue::Bool(b) => Ok(b),
            ref other => Err(self.wrong_type(key, "bool", other)),
        }
    }

    /// An array value of any element type.
    pub fn get_array(&self, key: &str) -> Result<&GgufArray, GgufError> {
        let v = self.value(key)?;
        v.as_array().ok_or_else(|| self.wrong_type(key, "array", v))
    }

    fn typed_array<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        mut f: impl FnMut(&'a GgufValue) -> Option<Result<T, GgufError>>,
    ) -> Result<Vec<T>, GgufError> {
        let v = self.value(key)?;
        let arr = v.as_array().ok_or_else(|| self.wrong_type(key, expected, v))?;
        let mut out = Vec::with_capacity(arr.values.len());
        for e in &arr.values {
            match f(e) {
                Some(r) => out.push(r?),
                None => return Err(self.wrong_type(key, expected, v)),
            }
        }
        Ok(out)
    }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        self.typed_array(key, "array<string>", |e| e.as_str().map(Ok))
    }

    /// An array of integers of any width whose elements all fit in `i32` (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        self.typed_array(key, "array of integers", |e| {
            e.as_integer()
                .map(|i| i32::try_from(i).map_err(|_| self.out_of_range(key, i, "i32 (array element)")))
        })
    }

    /// An array of integers of any width whose elements all fit in `u32`.
    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>, GgufError> {
        self.typed_array(key, "array of integers", |e| {
            e.as_integer()
                .map(|i| u32::try_from(i).map_err(|_| self.out_of_range(key, i, "u32 (array element)")))
        })
    }

    /// An array of `f32` (e.g. `tokenizer.ggml.scores`); `f64` elements are rounded to `f32`.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        self.typed_array(key, "array<f32>", |e| match *e {
            GgufValue::F32(x) => Some(Ok(x)),
            GgufValue::F64(x) => Some(Ok(x as f32)),
            _ => None,
        })
    }

    /// An array of bools (e.g. a sliding-window layer pattern).
    pub fn get_bool_array(&self, key: &str) -> Result<Vec<bool>, GgufError> {
        self.typed_array(key, "array<bool>", |e| match *e {
            GgufValue::Bool(b) => Some(Ok(b)),
            _ => None,
        })
    }

    /// `general.architecture` (e.g. `"llama"`, `"qwen2"`, `"gpt2"`).
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    // ----------------------------------------------------------------------------------------------------
    // Tensors

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// Whether a tensor of that name exists.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The info of tensor `name`, or [`GgufError::TensorNotFound`].
    pub fn tensor_info(&self, name: &str) -> Result<&GgufTensorInfo, GgufError> {
        self.index
            .get(name)
            .and_then(|&i| self.tensors.get(i))
            .ok_or_else(|| GgufError::TensorNotFound { path: self.path.clone(), tensor: name.to_owned() })
    }

    fn bytes_of(&self, t: &GgufTensorInfo) -> Result<&[u8], GgufError> {
        let range = usize::try_from(t.file_offset)
            .ok()
            .and_then(|s| usize::try_from(t.n_bytes).ok().and_then(|n| s.checked_add(n)).map(|e| s..e));
        range.and_then(|r| self.data.bytes().get(r)).ok_or_else(|| GgufError::TensorOutOfBounds {
            path: self.path.clone(),
            tensor: t.name.clone(),
            start: t.file_offset,
            end: t.file_offset.saturating_add(t.n_bytes),
            size: self.file_size(),
        })
    }

    /// Tells the kernel that a tensor's mapped pages are no longer needed (best effort), so
    /// that a loader that has dequantised it does not keep both copies resident: the pages
    /// stay valid and are read again from the file if touched.
    pub fn release_pages(&self, name: &str) {
        let (Storage::Mmap(m), Ok(t)) = (self.data.as_ref(), self.tensor_info(name)) else { return };
        let (Ok(off), Ok(len)) = (usize::try_from(t.file_offset), usize::try_from(t.n_bytes)) else { return };
        // SAFETY: the map is a private read-only file mapping; MADV_DONTNEED only drops our
        // copy of its pages, which the kernel re-reads from the file on the next access, so no
        // reference into the map can observe different bytes.
        #[allow(unsafe_code)]
        let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, off, len) };
    }

    /// Whether the file is memory-mapped (not read into an owned buffer).
    pub fn is_mapped(&self) -> bool {
        matches!(self.data.as_ref(), Storage::Mmap(_))
    }

    /// The stored bytes of tensor `name` (borrowed from the memory map).
    pub fn raw_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        self.bytes_of(self.tensor_info(name)?)
    }

    /// Tensor `name` kept in its stored format, rows `[n_rows, ne[0]]`, sharing the file's
    /// memory map (no copy): the matmul kernel dequantises it panel by panel.
    pub fn stored_matrix(&self, name: &str) -> Result<crate::stored::StoredMatrix, GgufError> {
        let t = self.tensor_info(name)?;
        self.bytes_of(t)?; // range checked, with the error the other readers give
        let start = t.file_offset as usize;
        let range = start..start + t.n_bytes as usize;
        let out_of_bounds = || GgufError::TensorOutOfBounds {
            path: self.path.clone(),
            tensor: t.name.clone(),
            start: t.file_offset,
            end: t.file_offset.saturating_add(t.n_bytes),
            size: self.file_size(),
        };
        let mapped = matches!(self.data.as_ref(), Storage::Mmap(_));
        let owner: std::sync::Arc<dyn AsRef<[u8]> + Send + Sync> = self.data.clone();
        let bytes = match mapped {
            true => crate::stored::SharedBytes::mapped(owner, range),
            false => crate::stored::SharedBytes::new(owner, range),
        }
        .ok_or_else(out_of_bounds)?;
        crate::stored::StoredMatrix::new(bytes, t.ggml_type, t.n_rows() as usize, t.row_len() as usize)
            .map_err(|e| match e {
                crate::stored::StoredError::Dequant(source) => {
                    GgufError::Dequant { path: self.path.clone(), tensor: t.name.clone(), source }
                }
                // `open` checked that the rows fill the tensor's bytes exactly.
                crate::stored::StoredError::Layout { .. } => out_of_bounds(),
            })
    }

    /// All values of tensor `name` as f32, row-major (the order of [`GgufTensorInfo::shape`]), dequantised
    /// bit-exactly as ggml's reference `dequantize_row_*` does. Supported types: see
    /// [`GgmlType::can_dequantize`].
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let t = self.tensor_info(name)?;
        self.dequantize_rows(name, 0..t.n_rows())
    }

    /// Rows `rows` of tensor `name` (viewed as `[n_rows, ne[0]]`), dequantised to f32 in row-major order.
    /// Useful to read a few embedding rows without dequantising the whole matrix.
    pub fn dequantize_rows(&self, name: &str, rows: Range<u64>) -> Result<Vec<f32>, GgufError> {
        let t = self.tensor_info(name)?;
        let n_rows = t.n_rows();
        if rows.start > rows.end || rows.end > n_rows {
            return Err(GgufError::RowRangeOutOfBounds {
                path: self.path.clone(),
                tensor: t.name.clone(),
                start: rows.start,
                end: rows.end,
                n_rows,
            });
        }
        let deq_err = |source| GgufError::Dequant { path: self.path.clone(), tensor: t.name.clone(), source };
        if !t.ggml_type.can_dequantize() {
            return Err(deq_err(DequantError::Unsupported(t.ggml_type)));
        }
        let row_len = t.row_len();
        // Validated at open: row_len is a whole number of blocks and n_rows * row_bytes = n_bytes.
        let row_bytes = byte_size(t.ggml_type, row_len).map_err(deq_err)?;
        let all = self.bytes_of(t)?;
        let n = rows.end - rows.start;
        let byte_range = rows
            .start
            .checked_mul(row_bytes)
            .zip(rows.end.checked_mul(row_bytes))
            .and_then(|(s, e)| Some(usize::try_from(s).ok()?..usize::try_from(e).ok()?));
        let n_elements = n.checked_mul(row_len).and_then(|x| usize::try_from(x).ok());
        let (Some(bytes), Some(n_elements)) = (byte_range.and_then(|r| all.get(r)), n_elements) else {
            return Err(GgufError::TensorOutOfBounds {
                path: self.path.clone(),
                tensor: t.name.clone(),
                start: t.file_offset,
                end: t.file_offset.saturating_add(t.n_bytes),
                size: self.file_size(),
            });
        };
        dequantize(t.ggml_type, bytes, n_elements).map_err(deq_err)
    }
}
