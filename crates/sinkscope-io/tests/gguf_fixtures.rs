//! GGUF reader against the committed fixtures (tests/fixtures/gguf/<family>/, converted by llama.cpp from
//! tests/fixtures/models/<family>/; see tests/fixtures/README.md and PROVENANCE.md).
//!
//! (a) every fixture parses and its metadata and tensor list equal reference.json;
//! (b) f32 tensors equal the HF safetensors tensors bit for bit (through the documented transforms);
//! (c) Q8_0 / Q4_0 / Q4_1 tensors are byte-identical to ggml's reference quantizers applied to the f32
//!     tensors (which pins the block layout), and dequantise to within the quantisation error;
//! (d) truncated / corrupted copies of a real file only ever produce errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::f16;
use serde_json::Value;
use sinkscope_io::gguf::{GgmlType, GgufError, GgufFile};

const FAMILIES: [&str; 4] = ["llama", "qwen2", "gpt_neox", "gpt2"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn reference(family: &str) -> Value {
    let p = fixtures().join("gguf").join(family).join("reference.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn open(family: &str, file: &str) -> GgufFile {
    GgufFile::open(&fixtures().join("gguf").join(family).join(file)).unwrap()
}

/// All `<family>/<file>.gguf` fixtures listed in the reference files.
fn all_files() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for fam in FAMILIES {
        let r = reference(fam);
        for name in r["files"].as_object().unwrap().keys() {
            out.push((fam, name.clone()));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// (a) structure

#[test]
fn every_fixture_matches_its_reference() {
    let files = all_files();
    assert_eq!(files.len(), 10, "{files:?}");
    for (fam, name) in files {
        let r = reference(fam);
        let entry = &r["files"][&name];
        let f = open(fam, &name);
        let ctx = format!("{fam}/{name}");
        assert_eq!(f.file_size(), entry["bytes"].as_u64().unwrap(), "{ctx}");
        assert!(f.version() == 2 || f.version() == 3, "{ctx}");
        assert_eq!(f.architecture().unwrap(), entry["metadata"]["general.architecture"].as_str().unwrap());

        // Metadata: every key and value of the reference (arrays are summarised as "[N entries]").
        let meta = entry["metadata"].as_object().unwrap();
        assert_eq!(f.metadata().len(), meta.len(), "{ctx}: metadata count");
        for (k, v) in meta {
            match v {
                Value::String(s) if s.starts_with('[') && s.ends_with(" entries]") => {
                    let n: usize = s[1..s.len() - " entries]".len()].parse().unwrap();
                    assert_eq!(f.get_array(k).unwrap().values.len(), n, "{ctx}: {k}");
                }
                Value::String(s) => assert_eq!(f.get_str(k).unwrap(), s, "{ctx}: {k}"),
                Value::Bool(b) => assert_eq!(f.get_bool(k).unwrap(), *b, "{ctx}: {k}"),
                Value::Number(n) if n.is_f64() => {
                    assert_eq!(f.get_f64(k).unwrap(), n.as_f64().unwrap(), "{ctx}: {k}")
                }
                Value::Number(n) => assert_eq!(
                    i128::from(f.get_i64(k).unwrap()),
                    i128::from(n.as_i64().unwrap()),
                    "{ctx}: {k}"
                ),
                other => panic!("{ctx}: unexpected reference value for {k}: {other}"),
            }
        }

        // Tensor list: names (in file order), types, ggml ne.
        let want: Vec<(String, String, Vec<u64>)> = entry["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_owned(),
                    t["type"].as_str().unwrap().to_owned(),
                    t["ggml_shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect(),
                )
            })
            .collect();
        let got: Vec<(String, String, Vec<u64>)> = f
            .tensors()
            .iter()
            .map(|t| (t.name.clone(), t.ggml_type.name().to_owned(), t.ne.clone()))
            .collect();
        assert_eq!(got, want, "{ctx}: tensor list");

        // Type counts, shapes, and that everything dequantises to finite values.
        let mut counts: HashMap<String, u64> = HashMap::new();
        for t in f.tensors() {
            *counts.entry(t.ggml_type.name().to_owned()).or_default() += 1;
            let rev: Vec<usize> = t.ne.iter().rev().map(|&d| d as usize).collect();
            assert_eq!(t.shape, rev);
            assert_eq!(t.file_offset % f.alignment(), 0);
            let v = f.dequantize(&t.name).unwrap();
            assert_eq!(v.len() as u64, t.n_elements, "{ctx}: {}", t.name);
            assert!(v.iter().all(|x| x.is_finite()), "{ctx}: {}", t.name);
            assert_eq!(f.raw_bytes(&t.name).unwrap().len() as u64, t.n_bytes);
        }
        let want_counts: HashMap<String, u64> = entry["tensor_type_counts"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        assert_eq!(counts, want_counts, "{ctx}");
    }
}

#[test]
fn tokenizer_metadata_is_readable() {
    for fam in FAMILIES {
        let f = open(fam, &format!("{fam}-f32.gguf"));
        let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
        assert_eq!(tokens.len(), 512);
        assert_eq!(tokens[0], "<|bos|>", "{fam}");
        assert_eq!(f.get_i32_array("tokenizer.ggml.token_type").unwrap().len(), 512);
        assert_eq!(f.get_str_array("tokenizer.ggml.merges").unwrap().len(), 253);
        assert_eq!(f.get_u64("tokenizer.ggml.bos_token_id").unwrap(), 0);
        let arch = f.architecture().unwrap().to_owned();
        assert_eq!(f.get_u64(&format!("{arch}.block_count")).unwrap(), 3);
        assert_eq!(f.get_u64(&format!("{arch}.embedding_length")).unwrap(), 64);
        // Wrong type vs missing key.
        assert!(f.get_str(&format!("{arch}.block_count")).unwrap_err().to_string().contains("wrong type"));
        assert!(f.get_u64("no.such.key").unwrap_err().is_missing_key());
    }
}

// ---------------------------------------------------------------------------------------------------------
// (b) f32 tensors vs HF safetensors

fn safetensors_f32(family: &str) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let p = fixtures().join("models").join(family).join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let v =
                view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            (name, (view.shape().to_vec(), v))
        })
        .collect()
}

fn param(transform: &str) -> usize {
    let inner = transform.split_once('=').unwrap().1.trim_end_matches(')');
    inner.parse().unwrap()
}

/// Apply reference.json's named transform to the HF tensor, giving the expected GGUF row-major values.
fn transform(t: &str, hf_shape: &[usize], hf: &[f32]) -> Vec<f32> {
    let rows = hf_shape.first().copied().unwrap_or(1);
    let cols: usize = hf_shape.iter().skip(1).product();
    if t == "identity" {
        return hf.to_vec();
    }
    if t == "transpose" {
        let mut out = vec![0.0; hf.len()];
        for r in 0..rows {
            for c in 0..cols {
                out[c * rows + r] = hf[r * cols + c];
            }
        }
        return out;
    }
    let mut out = vec![f32::NAN; hf.len()];
    let mut copy_row = |dst: usize, src: usize| {
        out[dst * cols..(dst + 1) * cols].copy_from_slice(&hf[src * cols..(src + 1) * cols])
    };
    if t.starts_with("llama_permute(") {
        // permute(w, n) = w.reshape(n, 2, rows/n/2, in).swapaxes(1, 2).reshape(rows, in)
        let n = param(t);
        let half = rows / n / 2;
        for h in 0..n {
            for i in 0..half {
                for s in 0..2 {
                    copy_row(h * 2 * half + i * 2 + s, h * 2 * half + s * half + i);
                }
            }
        }
    } else if t.starts_with("qkv_per_head_to_blocks(") {
        // HF rows [H, 3, dh] → GGUF rows [3, H, dh]
        let n = param(t);
        let dh = rows / n / 3;
        for s in 0..3 {
            for h in 0..n {
                for k in 0..dh {
                    copy_row((s * n + h) * dh + k, (h * 3 + s) * dh + k);
                }
            }
        }
    } else {
        panic!("unknown transform {t}");
    }
    out
}

#[test]
fn f32_tensors_equal_hf_safetensors_bitwise() {
    for fam in FAMILIES {
        let r = reference(fam);
        let f = open(fam, &format!("{fam}-f32.gguf"));
        let hf = safetensors_f32(fam);
        let mapping = r["tensor_mapping_f32"].as_array().unwrap();
        assert_eq!(mapping.len(), f.tensors().len(), "{fam}: every f32 tensor has a mapping");
        let mut n_identity = 0;
        for m in mapping {
            let g = m["gguf"].as_str().unwrap();
            let t = m["transform"].as_str().unwrap();
            let info = f.tensor_info(g).unwrap();
            assert_eq!(info.ggml_type, GgmlType::F32);
            let np_shape: Vec<usize> =
                m["numpy_shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            assert_eq!(info.shape, np_shape, "{fam}: {g}");
            let (hf_shape, hf_vals) = &hf[m["hf"].as_str().unwrap()];
            let want = transform(t, hf_shape, hf_vals);
            let got = f.dequantize(g).unwrap();
            assert_eq!(got.len(), want.len(), "{fam}: {g}");
            let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{fam}: {g} != {} under {t}", m["hf"]);
            if t == "identity" {
                n_identity += 1;
                assert_eq!(info.shape, *hf_shape);
            }
        }
        assert!(n_identity >= 10, "{fam}");
        // The embedding in particular.
        let emb = f.dequantize("token_embd.weight").unwrap();
        let key = match fam {
            "gpt2" => "transformer.wte.weight",
            "gpt_neox" => "gpt_neox.embed_in.weight",
            _ => "model.embed_tokens.weight",
        };
        assert_eq!(emb, hf[key].1, "{fam}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// (c) quantised tensors: byte-exact re-quantisation and dequantisation error bounds

fn f16_bytes(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_le_bytes()
}

/// ggml `quantize_row_q8_0_ref` (also what gguf-py's Q8_0 quantiser computes).
fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in x.chunks(32) {
        let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16_bytes(d));
        out.extend(b.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

/// ggml `quantize_row_q4_0_ref`.
fn quantize_q4_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in x.chunks(32) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in b {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16_bytes(d));
        for j in 0..16 {
            let xi0 = ((b[j] * id + 8.5) as i8).min(15) as u8;
            let xi1 = ((b[j + 16] * id + 8.5) as i8).min(15) as u8;
            out.push(xi0 | (xi1 << 4));
        }
    }
    out
}

/// ggml `quantize_row_q4_1_ref`.
fn quantize_q4_1(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in x.chunks(32) {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in b {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16_bytes(d));
        out.extend_from_slice(&f16_bytes(min));
        for j in 0..16 {
            let xi0 = (((b[j] - min) * id + 0.5) as i8).min(15) as u8;
            let xi1 = (((b[j + 16] - min) * id + 0.5) as i8).min(15) as u8;
            out.push(xi0 | (xi1 << 4));
        }
    }
    out
}

/// Largest |dequantised − original| the format allows for one block (scale rounded to f16 included).
fn block_tolerance(ty: GgmlType, blk: &[u8]) -> f32 {
    let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32().abs();
    let eps = 1.0 / 1024.0;
    match ty {
        GgmlType::Q8_0 => d * (0.5 + 128.0 * eps) + 1e-7,
        GgmlType::Q4_0 => d * (1.0 + 8.0 * eps) + 1e-7,
        GgmlType::Q4_1 => {
            let m = f16::from_le_bytes([blk[2], blk[3]]).to_f32().abs();
            d * (0.5 + 16.0 * eps) + m * eps + 1e-7
        }
        other => panic!("no bound for {other}"),
    }
}

#[test]
fn quantized_tensors_match_reference_quantizers_and_dequantize_within_bounds() {
    let mut checked: HashMap<GgmlType, usize> = HashMap::new();
    for (fam, name) in all_files() {
        if name.ends_with("-f32.gguf") {
            continue;
        }
        let q = open(fam, &name);
        let f = open(fam, &format!("{fam}-f32.gguf"));
        for t in q.tensors() {
            let orig = f.dequantize(&t.name).unwrap();
            let deq = q.dequantize(&t.name).unwrap();
            let raw = q.raw_bytes(&t.name).unwrap();
            let requant = match t.ggml_type {
                GgmlType::F32 => {
                    assert_eq!(deq, orig, "{name}: {}", t.name);
                    continue;
                }
                GgmlType::Q8_0 => quantize_q8_0(&orig),
                GgmlType::Q4_0 => quantize_q4_0(&orig),
                GgmlType::Q4_1 => quantize_q4_1(&orig),
                other => panic!("{name}: unexpected type {other}"),
            };
            assert!(
                requant == raw,
                "{name}: {} ({}) differs from ggml's reference quantizer",
                t.name,
                t.ggml_type
            );
            let bs = t.ggml_type.type_size() as usize;
            for ((blk, d), o) in raw.chunks(bs).zip(deq.chunks(32)).zip(orig.chunks(32)) {
                let tol = block_tolerance(t.ggml_type, blk);
                for (a, b) in d.iter().zip(o) {
                    assert!((a - b).abs() <= tol, "{name}: {}: {a} vs {b} (tol {tol})", t.name);
                }
            }
            *checked.entry(t.ggml_type).or_default() += 1;
        }
    }
    assert!(checked[&GgmlType::Q8_0] >= 40, "{checked:?}");
    assert_eq!(checked[&GgmlType::Q4_0], 22);
    assert_eq!(checked[&GgmlType::Q4_1], 22);
}

// ---------------------------------------------------------------------------------------------------------
// (d) malformed copies of a real file

#[test]
fn truncating_a_real_header_at_every_offset_only_errors() {
    let path = fixtures().join("gguf/llama/llama-q4_0.gguf");
    let raw = std::fs::read(&path).unwrap();
    let f = GgufFile::from_bytes(path.clone(), raw.clone()).unwrap();
    let header_end = f.data_offset() as usize;
    let data_end = f.tensors().iter().map(|t| t.file_range().end).max().unwrap() as usize;
    assert!(header_end > 10_000, "header is {header_end} bytes");
    for len in 0..header_end {
        assert!(GgufFile::from_bytes(path.clone(), raw[..len].to_vec()).is_err(), "truncated at {len}");
    }
    // Inside the data section: the last tensor no longer fits.
    for len in (header_end..data_end).step_by(97) {
        let e = GgufFile::from_bytes("cut.gguf", raw[..len].to_vec()).unwrap_err();
        assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{len}: {e}");
    }
}

#[test]
fn corrupting_a_real_header_never_panics() {
    let raw = std::fs::read(fixtures().join("gguf/gpt2/gpt2-q8_0.gguf")).unwrap();
    let header_end = GgufFile::from_bytes("x", raw.clone()).unwrap().data_offset() as usize;
    let mut state = 0x1234_5678_9ABC_DEF1u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..1500 {
        let mut m = raw[..].to_vec();
        for _ in 0..1 + next() % 3 {
            let i = (next() % header_end as u64) as usize;
            m[i] = match next() % 3 {
                0 => 0xFF,
                1 => m[i] ^ (1 << (next() % 8)),
                _ => next() as u8,
            };
        }
        if let Ok(f) = GgufFile::from_bytes("x", m) {
            for t in f.tensors() {
                let _ = f.dequantize(&t.name);
            }
        }
    }
}

#[test]
fn mutated_files_on_disk_give_the_right_errors() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf_mutated");
    std::fs::create_dir_all(&dir).unwrap();
    let raw = std::fs::read(fixtures().join("gguf/llama/llama-f32.gguf")).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };

    let mut m = raw.clone();
    m[0] = b'X';
    let p = write("magic.gguf", &m);
    let e = GgufFile::open(&p).unwrap_err();
    assert!(matches!(e, GgufError::BadMagic { .. }), "{e}");
    assert!(e.to_string().starts_with(&format!("{}: bad magic", p.display())), "{e}");

    let mut m = raw.clone();
    m[4..8].copy_from_slice(&7u32.to_le_bytes());
    let e = GgufFile::open(&write("version.gguf", &m)).unwrap_err();
    assert!(matches!(e, GgufError::UnsupportedVersion { version: 7, .. }), "{e}");

    let mut m = raw.clone();
    m[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = GgufFile::open(&write("n_tensors.gguf", &m)).unwrap_err();
    assert!(matches!(e, GgufError::AbsurdCount { .. }), "{e}");
    assert!(e.to_string().contains("tensor count"), "{e}");

    let mut m = raw.clone();
    m[16..24].copy_from_slice(&(1u64 << 50).to_le_bytes());
    let e = GgufFile::open(&write("n_kv.gguf", &m)).unwrap_err();
    assert!(matches!(e, GgufError::AbsurdCount { .. }), "{e}");

    let e = GgufFile::open(&write("short.gguf", &raw[..raw.len() - 4])).unwrap_err();
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
    assert!(e.to_string().contains("runs past end of file"), "{e}");

    let e = GgufFile::open(&write("empty.gguf", &[])).unwrap_err();
    assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("magic"), "{e}");

    // An intact copy opens.
    let f = GgufFile::open(&write("ok.gguf", &raw)).unwrap();
    assert_eq!(f.tensors().len(), 30);
}

// ---------------------------------------------------------------------------------------------------------
// The real SmolLM2 Q4_1 model, only if present (it is not part of the fixtures).

#[test]
fn real_model_if_present() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !p.exists() {
        eprintln!("skipping: {} not present", p.display());
        return;
    }
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.architecture().unwrap(), "llama");
    let mut n = 0;
    for t in f.tensors() {
        if t.ggml_type.can_dequantize() {
            let v = f.dequantize_rows(&t.name, 0..t.n_rows().min(4)).unwrap();
            assert!(v.iter().all(|x| x.is_finite()), "{}", t.name);
            n += 1;
        }
    }
    assert!(n > 0);
}
