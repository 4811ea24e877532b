//! A synthetic training-checkpoint series for the sweep and trajectory tests: copies of the
//! tiny llama fixture (`tests/fixtures/models/llama`, whose BOS-only massive activation is
//! planted by layer 1's MLP: neurons 126 and 127 write 1.5·e₁₇, see the fixtures' README)
//! with that write scaled by a factor per step, so the planted massive activation grows with
//! the step. Written with the `safetensors` crate; every other tensor is copied unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};

/// The fixture the series is made from.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama")
}

/// The steps of the series and the factor applied to the planted write at each.
pub const SERIES: [(u64, f32); 3] = [(10, 0.0), (100, 0.1), (1000, 1.0)];

/// Writes `root/step<N>/` for every step of [`SERIES`]; returns the folders in step order.
pub fn write_series(root: &Path) -> Vec<PathBuf> {
    SERIES.iter().map(|&(step, f)| write_checkpoint(&root.join(format!("step{step}")), f)).collect()
}

/// One checkpoint: the fixture with the planted write (`model.layers.1.mlp.down_proj.weight`
/// row 17, columns 126 and 127) multiplied by `factor`.
pub fn write_checkpoint(dir: &Path, factor: f32) -> PathBuf {
    let src = fixture_dir();
    std::fs::create_dir_all(dir).unwrap();
    for f in [
        "config.json",
        "generation_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let mut data = view.data().to_vec();
        if name == "model.layers.1.mlp.down_proj.weight" {
            assert_eq!(view.dtype(), safetensors::Dtype::F32);
            let cols = view.shape()[1];
            for c in [126usize, 127] {
                let off = (17 * cols + c) * 4;
                let v = f32::from_le_bytes(data[off..off + 4].try_into().unwrap());
                assert!((v - 1.5).abs() < 1e-6, "the planted write is not where the fixture README says");
                data[off..off + 4].copy_from_slice(&(v * factor).to_le_bytes());
            }
        }
        owned.push((name, view.dtype(), view.shape().to_vec(), data));
    }
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), out).unwrap();
    dir.to_path_buf()
}
