//! Parsing and validation of the GGUF header (magic, version, metadata, tensor infos) from a byte slice.
//!
//! Layout (GGUF v2/v3, little-endian; v1 used 32-bit counts and is rejected):
//!
//! ```text
//! u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//! n_kv ×      { string key | u32 value_type | value }
//! n_tensors × { string name | u32 n_dims | n_dims × i64 ne | u32 ggml_type | u64 offset }
//! padding to `general.alignment` (default 32) | tensor data
//! string = u64 length + UTF-8 bytes; array = u32 elem_type + u64 count + elements
//! ```
//!
//! Nothing here panics or allocates according to an unchecked count: every count is first compared with the
//! bytes left in the file, and capacities are capped.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::error::GgufError;
use super::types::GgmlType;
use super::value::{GgufArray, GgufValue, GgufValueType};
use super::GgufTensorInfo;

/// `"GGUF"` as it appears in the first four bytes.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment used when `general.alignment` is absent (`GGUF_DEFAULT_ALIGNMENT`).
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest array nesting accepted (an array of arrays has depth 2).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Most dimensions a ggml tensor can have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// Upper bound for any up-front `Vec` capacity, whatever the counts say (vectors still grow as needed).
const MAX_PREALLOC: usize = 1 << 16;

/// Smallest encoded metadata kv: empty key (8) + type (4) + 1-byte value.
const MIN_KV_SIZE: u64 = 8 + 4 + 1;
/// Smallest encoded tensor info: empty name (8) + n_dims (4) + type (4) + offset (8).
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 4 + 8;

/// The parsed header.
#[derive(Debug)]
pub(crate) struct Header {
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub key_order: Vec<String>,
    pub tensors: Vec<GgufTensorInfo>,
    pub index: HashMap<String, usize>,
    pub alignment: u64,
    pub data_offset: u64,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn remaining(&self) -> u64 {
        self.data.len().saturating_sub(self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let end = usize::try_from(n).ok().and_then(|n| self.pos.checked_add(n));
        match end.and_then(|end| self.data.get(self.pos..end).map(|s| (s, end))) {
            Some((s, end)) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(GgufError::Truncated {
                path: self.path.to_path_buf(),
                what: what(),
                offset: self.pos as u64,
                needed: n,
                size: self.size(),
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8, GgufError> {
        Ok(u8::from_le_bytes(self.array::<1>(what)?))
    }
    fn u16(&mut self, what: &dyn Fn() -> String) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.array::<2>(what)?))
    }
    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array::<4>(what)?))
    }
    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array::<8>(what)?))
    }

    /// A GGUF string: u64 length + UTF-8 bytes.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(&|| format!("{} (length)", what()))?;
        let start = self.pos as u64;
        let bytes = self.take(len, &|| format!("{} ({len} bytes)", what()))?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => {
                Err(GgufError::InvalidUtf8 { path: self.path.to_path_buf(), what: what(), offset: start })
            }
        }
    }

    /// Reject `count` items of at least `min_size` bytes each if they cannot fit in the rest of the file.
    fn check_count(&self, count: u64, min_size: u64, what: &dyn Fn() -> String) -> Result<(), GgufError> {
        let remaining = self.remaining();
        let max = remaining / min_size.max(1);
        if count > max {
            return Err(GgufError::AbsurdCount {
                path: self.path.to_path_buf(),
                what: what(),
                count,
                max,
                remaining,
            });
        }
        Ok(())
    }
}

fn capacity(count: u64) -> usize {
    usize::try_from(count).unwrap_or(MAX_PREALLOC).min(MAX_PREALLOC)
}

fn read_value(
    cur: &mut Cursor<'_>,
    ty: GgufValueType,
    depth: usize,
    what: &dyn Fn() -> String,
) -> Result<GgufValue, GgufError> {
    Ok(match ty {
        GgufValueType::U8 => GgufValue::U8(cur.u8(what)?),
        GgufValueType::I8 => GgufValue::I8(i8::from_le_bytes(cur.array::<1>(what)?)),
        GgufValueType::U16 => GgufValue::U16(cur.u16(what)?),
        GgufValueType::I16 => GgufValue::I16(i16::from_le_bytes(cur.array::<2>(what)?)),
        GgufValueType::U32 => GgufValue::U32(cur.u32(what)?),
        GgufValueType::I32 => GgufValue::I32(i32::from_le_bytes(cur.array::<4>(what)?)),
        GgufValueType::F32 => GgufValue::F32(f32::from_le_bytes(cur.array::<4>(what)?)),
        GgufValueType::U64 => GgufValue::U64(cur.u64(what)?),
        GgufValueType::I64 => GgufValue::I64(i64::from_le_bytes(cur.array::<8>(what)?)),
        GgufValueType::F64 => GgufValue::F64(f64::from_le_bytes(cur.array::<8>(what)?)),
        GgufValueType::Bool => {
            let offset = cur.pos;
            match cur.u8(what)? {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                other => {
                    return Err(GgufError::InvalidValue {
                        path: cur.path.to_path_buf(),
                        what: what(),
                        detail: format!("bool byte {other} at offset {offset} is neither 0 nor 1"),
                    })
                }
            }
        }
        GgufValueType::String => GgufValue::String(cur.string(what)?),
        GgufValueType::Array => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(GgufError::NestingTooDeep {
                    path: cur.path.to_path_buf(),
                    what: what(),
                    max_depth: MAX_ARRAY_DEPTH,
                });
            }
            let type_id = cur.u32(&|| format!("{} (array element type)", what()))?;
            let elem_type = GgufValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
                path: cur.path.to_path_buf(),
                what: format!("{} (array element type)", what()),
                type_id,
            })?;
            let count = cur.u64(&|| format!("{} (array length)", what()))?;
            cur.check_count(count, elem_type.min_encoded_size(), &|| {
                format!("{} (array of {elem_type})", what())
            })?;
            let mut values = Vec::with_capacity(capacity(count));
            for i in 0..count {
                values.push(read_value(cur, elem_type, depth + 1, &|| format!("{}[{i}]", what()))?);
            }
            GgufValue::Array(GgufArray { elem_type, values })
        }
    })
}

fn read_value_type(cur: &mut Cursor<'_>, what: &dyn Fn() -> String) -> Result<GgufValueType, GgufError> {
    let type_id = cur.u32(&|| format!("{} (value type)", what()))?;
    GgufValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
        path: cur.path.to_path_buf(),
        what: what(),
        type_id,
    })
}

fn alignment_from(path: &Path, metadata: &BTreeMap<String, GgufValue>) -> Result<u64, GgufError> {
    let Some(v) = metadata.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let bad = |detail: String| GgufError::BadAlignment { path: path.to_path_buf(), detail };
    let Some(a) = v.as_integer() else {
        return Err(bad(format!("expected an unsigned integer (u32), found {}", v.type_description())));
    };
    if a <= 0 || a > i128::from(u32::MAX) || (a & (a - 1)) != 0 {
        return Err(bad(format!("{a} is not a power of two between 1 and 2^31")));
    }
    u64::try_from(a).map_err(|_| bad(format!("{a} out of range")))
}

/// Parse and validate the whole header of a GGUF file held in `data`.
pub(crate) fn parse(path: &Path, data: &[u8]) -> Result<Header, GgufError> {
    let mut cur = Cursor { data, pos: 0, path };
    let p = || path.to_path_buf();

    // --- fixed header
    let magic = cur.array::<4>(&|| "magic".to_owned())?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { path: p(), found: magic });
    }
    let version = cur.u32(&|| "version".to_owned())?;
    if version != 2 && version != 3 {
        let hint = if matches!(version.swap_bytes(), 1..=3) {
            " (the file looks big-endian, which is not supported)".to_owned()
        } else if version == 1 {
            " (GGUF v1 used 32-bit counts and is obsolete)".to_owned()
        } else {
            String::new()
        };
        return Err(GgufError::UnsupportedVersion { path: p(), version, hint });
    }
    let n_tensors = cur.u64(&|| "tensor count".to_owned())?;
    let n_kv = cur.u64(&|| "metadata kv count".to_owned())?;
    cur.check_count(n_kv, MIN_KV_SIZE, &|| "metadata kv count".to_owned())?;
    // Loose early bound; checked again against the bytes left after the metadata.
    cur.check_count(n_tensors, MIN_TENSOR_INFO_SIZE, &|| "tensor count".to_owned())?;

    // --- metadata
    let mut metadata = BTreeMap::new();
    let mut key_order = Vec::with_capacity(capacity(n_kv));
    for i in 0..n_kv {
        let key = cur.string(&|| format!("metadata key #{i}"))?;
        let what = || format!("metadata key #{i} '{key}'");
        let ty = read_value_type(&mut cur, &what)?;
        let value = read_value(&mut cur, ty, 0, &|| format!("metadata '{key}' value"))?;
        if metadata.contains_key(&key) {
            return Err(GgufError::DuplicateKey { path: p(), key });
        }
        key_order.push(key.clone());
        metadata.insert(key, value);
    }
    let alignment = alignment_from(path, &metadata)?;

    // --- tensor infos
    cur.check_count(n_tensors, MIN_TENSOR_INFO_SIZE, &|| "tensor count".to_owned())?;
    let mut tensors: Vec<GgufTensorInfo> = Vec::with_capacity(capacity(n_tensors));
    let mut index = HashMap::with_capacity(capacity(n_tensors));
    for i in 0..n_tensors {
        let name = cur.string(&|| format!("tensor #{i} name"))?;
        let what = |field: &str| format!("tensor #{i} '{name}' {field}");
        let shape_err = |detail: String| GgufError::InvalidShape { path: p(), tensor: name.clone(), detail };

        let n_dims = cur.u32(&|| what("n_dims"))?;
        if n_dims > MAX_DIMS {
            return Err(shape_err(format!("n_dims = {n_dims} exceeds the ggml maximum of {MAX_DIMS}")));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            let v = i64::from_le_bytes(cur.array::<8>(&|| what(&format!("ne[{d}]")))?);
            let v = u64::try_from(v).map_err(|_| shape_err(format!("ne[{d}] = {v} is negative")))?;
            ne.push(v);
        }
        let type_id = cur.u32(&|| what("type"))?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownGgmlType {
            path: p(),
            tensor: name.clone(),
            type_id,
        })?;
        let offset = cur.u64(&|| what("offset"))?;

        // Element count must fit in i64 like ggml requires (INT64_MAX checks in gguf.cpp).
        let mut n_elements: u64 = 1;
        for &v in &ne {
            n_elements = n_elements
                .checked_mul(v)
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| shape_err(format!("ne = {ne:?}: element count overflows int64")))?;
        }
        let row_len = ne.first().copied().unwrap_or(1);
        let block_size = ggml_type.block_size();
        if row_len.checked_rem(block_size) != Some(0) {
            return Err(GgufError::RowNotBlockMultiple {
                path: p(),
                tensor: name.clone(),
                ggml_type,
                row_len,
                block_size,
            });
        }
        // ggml_nbytes: ne0/blck * type_size * ne1 * ne2 * ne3.
        let n_bytes = ne
            .iter()
            .skip(1)
            .try_fold((row_len / block_size).checked_mul(ggml_type.type_size()), |acc, &v| {
                Some(acc.and_then(|a| a.checked_mul(v)))
            })
            .flatten()
            .ok_or_else(|| shape_err(format!("ne = {ne:?}: byte size of {ggml_type} data overflows")))?;
        let shape = ne
            .iter()
            .rev()
            .map(|&v| usize::try_from(v))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| shape_err(format!("ne = {ne:?} does not fit in usize")))?;

        if index.contains_key(&name) {
            return Err(GgufError::DuplicateTensor { path: p(), tensor: name });
        }
        index.insert(name.clone(), tensors.len());
        tensors.push(GgufTensorInfo {
            name,
            ne,
            shape,
            ggml_type,
            offset,
            file_offset: 0, // set below, once the data section start is known
            n_bytes,
            n_elements,
        });
    }

    // --- data section
    let header_end = cur.pos as u64;
    let data_offset = header_end.checked_next_multiple_of(alignment).ok_or_else(|| {
        GgufError::BadAlignment { path: p(), detail: format!("{alignment} overflows the data offset") }
    })?;
    let size = data.len() as u64;
    for t in &mut tensors {
        if t.offset.checked_rem(alignment) != Some(0) {
            return Err(GgufError::MisalignedOffset {
                path: p(),
                tensor: t.name.clone(),
                offset: t.offset,
                alignment,
            });
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= size => t.file_offset = start,
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    path: p(),
                    tensor: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    size,
                })
            }
        }
    }

    // --- overlaps (empty tensors occupy nothing and never overlap)
    let mut order: Vec<usize> =
        (0..tensors.len()).filter(|&i| tensors.get(i).is_some_and(|t| t.n_bytes > 0)).collect();
    order.sort_by_key(|&i| tensors.get(i).map_or(0, |t| t.file_offset));
    let mut furthest: Option<&GgufTensorInfo> = None;
    for &i in &order {
        let Some(t) = tensors.get(i) else { continue };
        if let Some(prev) = furthest {
            let prev_end = prev.file_offset.saturating_add(prev.n_bytes);
            if t.file_offset < prev_end {
                return Err(GgufError::OverlappingTensors {
                    path: p(),
                    first: prev.name.clone(),
                    first_start: prev.file_offset,
                    first_end: prev_end,
                    second: t.name.clone(),
                    second_start: t.file_offset,
                    second_end: t.file_offset.saturating_add(t.n_bytes),
                });
            }
            if t.file_offset.saturating_add(t.n_bytes) > prev_end {
                furthest = Some(t);
            }
        } else {
            furthest = Some(t);
        }
    }

    Ok(Header { version, metadata, key_order, tensors, index, alignment, data_offset })
}
