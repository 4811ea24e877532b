//! Tensor sources: a uniform, read-only view of the tensors of one checkpoint, whatever the
//! file format. Values come out as row-major f32 (GGUF quantised types dequantised exactly).

use crate::error::IoError;
use crate::gguf::GgufFile;
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
}

/// Read-only access to the tensors of a checkpoint.
pub trait TensorSource {
    /// The file (or folder) the tensors come from, for error messages.
    fn path(&self) -> &Path;
    /// Every tensor in the checkpoint with its metadata.
    fn tensors(&self) -> &BTreeMap<String, TensorMeta>;
    /// The tensor's values as row-major f32.
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, IoError>;
}

/// One memory-mapped safetensors file.
struct Shard {
    path: PathBuf,
    mmap: Mmap,
}

/// A Hugging Face safetensors checkpoint: `model.safetensors` or a sharded
/// `model.safetensors.index.json`, memory-mapped.
pub struct SafetensorsSource {
    root: PathBuf,
    shards: Vec<Shard>,
    /// name -> (shard index, metadata)
    index: BTreeMap<String, TensorMeta>,
    shard_of: BTreeMap<String, usize>,
}

fn os(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
    move |source| IoError::Os { path: path.to_path_buf(), source }
}

fn map_file(path: &Path) -> Result<Mmap, IoError> {
    let f = File::open(path).map_err(os(path))?;
    // SAFETY: the map is read-only; a concurrent writer truncating the file is outside our
    // control (as for every mmap-based loader); we never hand out references beyond its life.
    #[allow(unsafe_code)]
    unsafe { Mmap::map(&f) }.map_err(os(path))
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
        let mut index = BTreeMap::new();
        let mut shard_of = BTreeMap::new();
        for (si, path) in files.into_iter().enumerate() {
            let mmap = map_file(&path)?;
            let st = SafeTensors::deserialize(&mmap).map_err(|e| IoError::BadTensor {
                path: path.clone(),
                name: "(header)".into(),
                reason: e.to_string(),
            })?;
            for (name, view) in st.tensors() {
                let meta = TensorMeta { shape: view.shape().to_vec(), dtype: format!("{:?}", view.dtype()) };
                if index.insert(name.clone(), meta).is_some() {
                    return Err(IoError::BadTensor {
                        path: path.clone(),
                        name,
                        reason: "tensor appears in more than one shard".into(),
                    });
                }
                shard_of.insert(name, si);
            }
            shards.push(Shard { path, mmap });
        }
        Ok(SafetensorsSource { root: dir.to_path_buf(), shards, index, shard_of })
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
        let shard =
            self.shard_of.get(name).and_then(|i| self.shards.get(*i)).ok_or_else(|| IoError::BadTensor {
                path: self.root.clone(),
                name: name.into(),
                reason: "not in checkpoint".into(),
            })?;
        let bad = |reason: String| IoError::BadTensor { path: shard.path.clone(), name: name.into(), reason };
        let st = SafeTensors::deserialize(&shard.mmap).map_err(|e| bad(e.to_string()))?;
        let view = st.tensor(name).map_err(|e| bad(e.to_string()))?;
        let bytes = view.data();
        use safetensors::Dtype;
        let out: Vec<f32> = match view.dtype() {
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
        let n: usize = view.shape().iter().product();
        if out.len() != n {
            return Err(bad(format!("{} values for shape {:?}", out.len(), view.shape())));
        }
        Ok(out)
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
                (t.name.clone(), TensorMeta { shape: t.shape.clone(), dtype: format!("{:?}", t.ggml_type) })
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
        Ok(self.file.dequantize(name)?)
    }
}
