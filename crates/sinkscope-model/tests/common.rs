//! Shared helpers for the parity tests: fixture paths and reference tensors.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use candle_core::Device;
use safetensors::SafeTensors;
use sinkscope_model::Model;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The repository's copy of the fixtures (see tests/fixtures/PROVENANCE.md).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A reference tensor: shape and f32 values (int64 tokens converted).
pub struct RefTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub ints: Vec<i64>,
}

pub fn read_reference(path: &std::path::Path) -> BTreeMap<String, RefTensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out = BTreeMap::new();
    for (name, v) in st.tensors() {
        let d = v.data();
        let (data, ints) = match v.dtype() {
            safetensors::Dtype::F32 => {
                (d.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), vec![])
            }
            safetensors::Dtype::I64 => {
                (vec![], d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect())
            }
            other => panic!("unexpected dtype {other:?} for {name}"),
        };
        out.insert(name, RefTensor { shape: v.shape().to_vec(), data, ints });
    }
    out
}

pub fn load(path: &std::path::Path) -> (sinkscope_io::ModelFiles, Model) {
    sinkscope_model::load(path, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Largest |a - b| and the tolerance `abs + rel * max|ref|` check.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}
