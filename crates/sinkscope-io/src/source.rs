//! Tensor sources: a uniform, read-only view of the tensors of one checkpoint, whatever the
//! file format. Values come out as row-major f32 (GGUF quantised types dequantised exactly).

use crate::error::IoError;
use crate::gguf::{GgmlType, GgufFile};
use crate::stored::{SharedBytes, StoredMatrix};
use memmap2::Mmap;
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Shape and storage type of one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMeta {
    /// Row-major shape (GGUF's `ne` reversed).
    pub shape: Vec<usize>,
    /// Storage type as the file names it (`F32`, `BF16`, `Q4_1`, ...).
    pub dtype: String,
    /// Bytes the tensor takes in the file.
    pub bytes: u64,
}

/// Read-only access to the tensors of a checkpoint, shareable between threads (runs read it
/// from worker threads and from Python with the GIL released).
pub trait TensorSource: Send + Sync {
    /// The file (or folder) the tensors come from, for error messages.
    fn path(&self) -> &Path;
    /// Every tensor in the checkpoint with its metadata.
    fn tensors(&self) -> &BTreeMap<String, TensorMeta>;
    /// The tensor's values as row-major f32.
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, IoError>;
    /// The tensor kept in its stored format, viewed as rows of its last axis, when that format
    /// is one the matmul kernel dequantises on the fly (GGUF quantisations, F16, BF16);
    /// `None` for F32 (packed once at load instead) and for sources that cannot share bytes.
    /// Its values are exactly [`read_f32`](Self::read_f32)'s.
    fn read_stored(&self, name: &str) -> Result<Option<StoredMatrix>, IoError> {
        let _ = name;
        Ok(None)
    }

    /// An F32 tensor as rows left in the file's memory map (no copy), for layer streaming,
    /// where a block's matrices must be releasable whatever their format. `None` for other
    /// types and for sources that are not memory-mapped.
    fn read_mapped_f32(&self, name: &str) -> Result<Option<StoredMatrix>, IoError> {
        let _ = name;
        Ok(None)
    }
}

/// The bytes of one safetensors file: memory-mapped, or owned (tests, fuzzing).
enum Bytes {
    Mmap(Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Mmap(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self.get()
    }
}

/// Where one tensor lives in a shard, as validated by [`parse_header`].
#[derive(Debug, Clone)]
struct Entry {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: usize,
    end: usize,
}

/// One safetensors file.
struct Shard {
    path: PathBuf,
    bytes: std::sync::Arc<Bytes>,
    entries: BTreeMap<String, Entry>,
}

/// A Hugging Face safetensors checkpoint: `model.safetensors` or a sharded
/// `model.safetensors.index.json`, memory-mapped.
pub struct SafetensorsSource {
    root: PathBuf,
    shards: Vec<Shard>,
    index: BTreeMap<String, TensorMeta>,
    /// name -> shard index
    shard_of: BTreeMap<String, usize>,
}

fn os(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
    move |source| IoError::Os { path: path.to_path_buf(), source }
}

fn map_file(path: &Path) -> Result<Bytes, IoError> {
    let f = File::open(path).map_err(os(path))?;
    if f.metadata().map_err(os(path))?.len() == 0 {
        return Ok(Bytes::Owned(Vec::new()));
    }
    // SAFETY: the map is read-only; a concurrent writer truncating the file is outside our
    // control (as for every mmap-based loader); we never hand out references beyond its life.
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(&f) }.map_err(os(path))?;
    Ok(Bytes::Mmap(map))
}

/// The safetensors crate's header-size limit (`MAX_HEADER_SIZE`).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The JSON header as written, in file order, duplicates kept (serde_json's own maps would keep
/// only the last of two equal keys, silently).
struct RawHeader(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for RawHeader {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawHeader;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object mapping tensor names to {dtype, shape, data_offsets}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<RawHeader, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = m.next_entry::<String, serde_json::Value>()? {
                    out.push(kv);
                }
                Ok(RawHeader(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// One tensor entry of the header as written.
#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// Parses and validates a whole safetensors header: the length prefix, the JSON, every entry
/// (known dtype, shape, byte length = elements x dtype size, offsets inside the data), unique
/// names, and data ranges that tile the data section exactly. Every error names the file and,
/// where one entry is at fault, the tensor.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, Entry>, IoError> {
    let bad = |reason: String| IoError::BadHeader { path: path.to_path_buf(), reason };
    let size = bytes.len() as u64;
    let Some(prefix) = bytes.get(..8) else {
        return Err(bad(format!("the file has {size} bytes, fewer than the 8-byte header length")));
    };
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(prefix);
    let n = u64::from_le_bytes(len8);
    if n > size - 8 {
        return Err(bad(format!(
            "header length {n} runs past the end of the file ({size} bytes; at most {} fit)",
            size - 8
        )));
    }
    if n > MAX_HEADER_BYTES {
        return Err(bad(format!("header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes")));
    }
    // n <= size - 8 <= usize::MAX, so these conversions are lossless.
    let header_end = 8 + n as usize;
    let text = bytes.get(8..header_end).unwrap_or_default();
    let text = std::str::from_utf8(text)
        .map_err(|e| bad(format!("not valid UTF-8 at header byte {}", e.valid_up_to())))?;
    let raw: RawHeader = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let data_len = (size - 8 - n) as usize;
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut seen_metadata = false;
    for (name, value) in raw.0 {
        if name == "__metadata__" {
            if std::mem::replace(&mut seen_metadata, true) {
                return Err(bad("'__metadata__' appears twice".into()));
            }
            let ok = value.as_object().is_some_and(|m| m.values().all(|v| v.is_string()));
            if !ok {
                return Err(bad("'__metadata__' must map strings to strings".into()));
            }
            continue;
        }
        let tensor = |reason: String| bad(format!("tensor '{name}': {reason}"));
        if entries.contains_key(&name) {
            return Err(tensor("the name appears twice in the header".into()));
        }
        let e: RawEntry = serde_json::from_value(value).map_err(|e| tensor(e.to_string()))?;
        let dtype: safetensors::Dtype = serde_json::from_value(serde_json::Value::String(e.dtype.clone()))
            .map_err(|_| tensor(format!("unknown dtype '{}'", e.dtype)))?;
        let (s, t) = e.data_offsets;
        if t < s {
            return Err(tensor(format!("data_offsets [{s}, {t}] end before they start")));
        }
        let bits = e
            .shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.bitsize() as u64))
            .ok_or_else(|| tensor(format!("shape {:?} overflows", e.shape)))?;
        if bits % 8 != 0 {
            return Err(tensor(format!("shape {:?} of {} is not a whole number of bytes", e.shape, e.dtype)));
        }
        if bits / 8 != t - s {
            return Err(tensor(format!(
                "shape {:?} of {} needs {} bytes but data_offsets [{s}, {t}] hold {} bytes",
                e.shape,
                e.dtype,
                bits / 8,
                t - s
            )));
        }
        if t > data_len as u64 {
            return Err(tensor(format!(
                "data_offsets [{s}, {t}] run past the end of the data ({data_len} bytes after the header)"
            )));
        }
        let shape = e
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| tensor(format!("shape {:?} does not fit in memory", e.shape)))?;
        // t <= data_len, so both fit in usize.
        let entry = Entry { dtype, shape, start: header_end + s as usize, end: header_end + t as usize };
        entries.insert(name, entry);
    }
    // The data ranges must tile the data section: no gap, no overlap, nothing left over.
    let mut spans: Vec<(&String, &Entry)> = entries.iter().collect();
    spans.sort_by_key(|(_, e)| (e.start, e.end));
    let mut pos = header_end;
    let mut prev: Option<&String> = None;
    for (name, e) in spans {
        if e.start != pos {
            let what = if e.start > pos { "a gap" } else { "an overlap" };
            let after = prev.map(|p| format!(" after tensor '{p}'")).unwrap_or_default();
            return Err(bad(format!(
                "tensor '{name}': data starts at data offset {} but the previous data ends at {}{after} ({what})",
                e.start - header_end,
                pos - header_end,
            )));
        }
        pos = e.end;
        prev = Some(name);
    }
    if pos != bytes.len() {
        return Err(bad(format!(
            "{} bytes after the last tensor's data belong to no tensor",
            bytes.len() - pos
        )));
    }
    Ok(entries)
}

impl SafetensorsSource {
    /// Opens `dir/model.safetensors`, or the shards listed by `dir/model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self, IoError> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(os(&index_path))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| IoError::Config {
                path: index_path.clone(),
                field: "(json)".into(),
                reason: e.to_string(),
            })?;
            let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| IoError::Config {
                path: index_path.clone(),
                field: "weight_map".into(),
                reason: "missing or not an object".into(),
            })?;
            let mut files: Vec<PathBuf> = Vec::new();
            for (name, f) in map {
                let f = f.as_str().ok_or_else(|| IoError::Config {
                    path: index_path.clone(),
                    field: format!("weight_map.{name}"),
                    reason: "not a string".into(),
                })?;
                if f.contains('/') || f.contains("..") {
                    return Err(IoError::Config {
                        path: index_path.clone(),
                        field: format!("weight_map.{name}"),
                        reason: format!("shard '{f}' is not a plain file name"),
                    });
                }
                let p = dir.join(f);
                if !files.contains(&p) {
                    files.push(p);
                }
            }
            files
        } else if single.exists() {
            vec![single]
        } else {
            return Err(IoError::NotAModel {
                path: dir.to_path_buf(),
                reason: "no model.safetensors or model.safetensors.index.json (no weights)".into(),
            });
        };
        let mut shards = Vec::new();
        for path in files {
            let bytes = map_file(&path)?;
            shards.push((path, bytes));
        }
        Self::from_shards(dir, shards)
    }

    /// One safetensors image held in memory (tests, fuzzing). `path` is only used in messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, IoError> {
        Self::from_shards(path, vec![(path.to_path_buf(), Bytes::Owned(bytes))])
    }

    fn from_shards(root: &Path, files: Vec<(PathBuf, Bytes)>) -> Result<Self, IoError> {
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        let mut shard_of = BTreeMap::new();
        for (si, (path, bytes)) in files.into_iter().enumerate() {
            let entries = parse_header(&path, bytes.get())?;
            // Belt and braces: the reference parser must agree with ours.
            SafeTensors::deserialize(bytes.get())
                .map_err(|e| IoError::BadHeader { path: path.clone(), reason: e.to_string() })?;
            for (name, e) in &entries {
                let meta = TensorMeta {
                    shape: e.shape.clone(),
                    dtype: format!("{:?}", e.dtype),
                    bytes: (e.end - e.start) as u64,
                };
                if index.insert(name.clone(), meta).is_some() {
                    return Err(IoError::BadTensor {
                        path: path.clone(),
                        name: name.clone(),
                        reason: "tensor appears in more than one shard".into(),
                    });
                }
                shard_of.insert(name.clone(), si);
            }
            shards.push(Shard { path, bytes: std::sync::Arc::new(bytes), entries });
        }
        Ok(SafetensorsSource { root: root.to_path_buf(), shards, index, shard_of })
    }
}

impl SafetensorsSource {
    /// The shard, header entry and bytes of tensor `name`.
    fn locate(&self, name: &str) -> Result<(&Shard, &Entry, &[u8]), IoError> {
        let found = self
            .shard_of
            .get(name)
            .and_then(|i| self.shards.get(*i))
            .and_then(|s| s.entries.get(name).map(|e| (s, e)));
        let Some((shard, entry)) = found else {
            return Err(IoError::BadTensor {
                path: self.root.clone(),
                name: name.into(),
                reason: "not in checkpoint".into(),
            });
        };
        let bytes = shard.bytes.get().get(entry.start..entry.end).ok_or_else(|| IoError::BadTensor {
            path: shard.path.clone(),
            name: name.into(),
            reason: format!("data [{}..{}] outside the file", entry.start, entry.end),
        })?;
        Ok((shard, entry, bytes))
    }
}

impl TensorSource for SafetensorsSource {
    fn path(&self) -> &Path {
        &self.root
    }

    fn tensors(&self) -> &BTreeMap<String, TensorMeta> {
        &self.index
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, IoError> {
        let (shard, entry, bytes) = self.locate(name)?;
        let bad = |reason: String| IoError::BadTensor { path: shard.path.clone(), name: name.into(), reason };
        use safetensors::Dtype;
        let out: Vec<f32> = match entry.dtype {
            Dtype::F32 => {
                bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            }
            Dtype::F16 => {
                bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            Dtype::BF16 => {
                bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            other => return Err(bad(format!("unsupported dtype {other:?} (expected F32, F16 or BF16)"))),
        };
        let n: usize = entry.shape.iter().product();
        if out.len() != n {
            return Err(bad(format!("{} values for shape {:?}", out.len(), entry.shape)));
        }
        Ok(out)
    }

    fn read_stored(&self, name: &str) -> Result<Option<StoredMatrix>, IoError> {
        self.stored_as(name, false)
    }

    fn read_mapped_f32(&self, name: &str) -> Result<Option<StoredMatrix>, IoError> {
        self.stored_as(name, true)
    }
}

impl SafetensorsSource {
    /// A tensor left in the file: F16/BF16 (`f32`: false) or memory-mapped F32 (`f32`: true).
    fn stored_as(&self, name: &str, f32: bool) -> Result<Option<StoredMatrix>, IoError> {
        let (shard, entry, _) = self.locate(name)?;
        let ty = match (entry.dtype, f32) {
            (safetensors::Dtype::F16, false) => GgmlType::F16,
            (safetensors::Dtype::BF16, false) => GgmlType::BF16,
            (safetensors::Dtype::F32, true) if matches!(shard.bytes.as_ref(), Bytes::Mmap(_)) => {
                GgmlType::F32
            }
            _ => return Ok(None),
        };
        let k = entry.shape.last().copied().unwrap_or(1);
        let rows = entry.shape.iter().rev().skip(1).product();
        let bad = |reason: String| IoError::BadTensor { path: shard.path.clone(), name: name.into(), reason };
        let mapped = matches!(shard.bytes.as_ref(), Bytes::Mmap(_));
        let owner: std::sync::Arc<dyn AsRef<[u8]> + Send + Sync> = shard.bytes.clone();
        let bytes = match mapped {
            true => SharedBytes::mapped(owner, entry.start..entry.end),
            false => SharedBytes::new(owner, entry.start..entry.end),
        }
        .ok_or_else(|| bad(format!("data [{}..{}] outside the file", entry.start, entry.end)))?;
        StoredMatrix::new(bytes, ty, rows, k).map(Some).map_err(|e| bad(e.to_string()))
    }
}

/// A GGUF file seen as a tensor source.
pub struct GgufSource {
    file: GgufFile,
    path: PathBuf,
    index: BTreeMap<String, TensorMeta>,
}

impl GgufSource {
    /// Wraps a parsed GGUF file.
    pub fn new(file: GgufFile, path: &Path) -> Self {
        let index = file
            .tensors()
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    TensorMeta {
                        shape: t.shape.clone(),
                        dtype: format!("{:?}", t.ggml_type),
                        bytes: t.n_bytes,
                    },
                )
            })
            .collect();
        GgufSource { file, path: path.to_path_buf(), index }
    }

    /// The parsed file (metadata access).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }
}

impl TensorSource for GgufSource {
    fn path(&self) -> &Path {
        &self.path
    }

    fn tensors(&self) -> &BTreeMap<String, TensorMeta> {
        &self.index
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, IoError> {
        let values = self.file.dequantize(name)?;
        self.file.release_pages(name);
        Ok(values)
    }

    fn read_stored(&self, name: &str) -> Result<Option<StoredMatrix>, IoError> {
        if self.file.tensor_info(name)?.ggml_type == GgmlType::F32 {
            return Ok(None);
        }
        Ok(Some(self.file.stored_matrix(name)?))
    }

    fn read_mapped_f32(&self, name: &str) -> Result<Option<StoredMatrix>, IoError> {
        if self.file.tensor_info(name)?.ggml_type != GgmlType::F32 || !self.file.is_mapped() {
            return Ok(None);
        }
        Ok(Some(self.file.stored_matrix(name)?))
    }
}

/// A checkpoint seen through a tensor-name rewrite: multimodal checkpoints nest the text
/// model under a prefix (`model.language_model.`, `language_model.model.`) beside towers this
/// tool does not run (vision encoder, projector). The text model's tensors appear under their
/// text-only names; the skipped towers are not visible at all (so strict loading neither uses
/// nor reports them), everything else keeps its name and stays subject to strict loading.
pub struct RenamedSource {
    inner: Box<dyn TensorSource>,
    /// Our name -> the name in the file.
    file_names: BTreeMap<String, String>,
    tensors: BTreeMap<String, TensorMeta>,
}

impl RenamedSource {
    /// Applies the first matching `(file prefix, our prefix)` rewrite to every tensor name and
    /// hides the tensors under the `skipped` prefixes.
    pub fn new(inner: Box<dyn TensorSource>, rewrites: &[(&str, &str)], skipped: &[&str]) -> Self {
        let mut file_names = BTreeMap::new();
        let mut tensors = BTreeMap::new();
        for (name, meta) in inner.tensors() {
            if skipped.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let ours = rewrites
                .iter()
                .find_map(|(from, to)| name.strip_prefix(from).map(|rest| format!("{to}{rest}")))
                .unwrap_or_else(|| name.clone());
            file_names.insert(ours.clone(), name.clone());
            tensors.insert(ours, meta.clone());
        }
        RenamedSource { inner, file_names, tensors }
    }

    /// The name of one of our tensors in the file.
    pub fn file_name<'a>(&'a self, ours: &'a str) -> &'a str {
        self.file_names.get(ours).map_or(ours, String::as_str)
    }
}

impl TensorSource for RenamedSource {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn tensors(&self) -> &BTreeMap<String, TensorMeta> {
        &self.tensors
    }
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, IoError> {
        self.inner.read_f32(self.file_name(name))
    }
    fn read_stored(&self, name: &str) -> Result<Option<StoredMatrix>, IoError> {
        self.inner.read_stored(self.file_name(name))
    }

    fn read_mapped_f32(&self, name: &str) -> Result<Option<StoredMatrix>, IoError> {
        self.inner.read_mapped_f32(self.file_name(name))
    }
}
