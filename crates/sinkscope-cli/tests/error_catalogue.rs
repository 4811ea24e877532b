//! The error catalogue: the real `sinkscope` binary on malformed inputs that each test generates
//! from the fixtures (in a temporary folder). Every case asserts the exact exit code of the README
//! table, that stderr names the file and the field / tensor / line / hook site at fault, and that
//! nothing panics (no "panicked at", never exit code 101).
//!
//! RELIABILITY.md lists the same cases (input -> exit code -> message shape).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sinkscope_io::gguf::{GgufFile, GgufValue};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

// ------------------------------------------------------------------------------------------------
// Harness

const OK: i32 = 0;
const USAGE: i32 = 2;
const INPUT: i32 = 3;
const MODEL: i32 = 4;
const NUMERICAL: i32 = 5;
const MEMORY: i32 = 6;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn llama_gguf() -> PathBuf {
    fixtures().join("gguf/llama/llama-f32.gguf")
}

fn llama_hf() -> PathBuf {
    fixtures().join("models/llama")
}

/// A fresh, empty folder for one case.
fn case_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("error_catalogue").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A prompt file with one short prompt.
fn good_prompts(dir: &Path) -> PathBuf {
    let p = dir.join("prompts.jsonl");
    std::fs::write(&p, "{\"id\": \"river\", \"text\": \"The quiet river carried small boats.\"}\n").unwrap();
    p
}

struct Outcome {
    code: i32,
    stderr: String,
    stdout: String,
}

fn sinkscope<I, S>(args: I, env: &[(&str, &str)]) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sinkscope"));
    cmd.args(args.into_iter().map(Into::into));
    cmd.env_remove("SINKSCOPE_AVAILABLE_MEMORY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// `sinkscope run MODEL --prompts PROMPTS --out DIR/out [extra...]`.
fn run_model(model: &Path, prompts: &Path, dir: &Path, extra: &[&str]) -> Outcome {
    let mut args: Vec<OsString> = vec!["run".into(), model.into(), "--prompts".into(), prompts.into()];
    args.push("--out".into());
    args.push(dir.join("out").into());
    args.extend(extra.iter().map(OsString::from));
    sinkscope(args, &[])
}

/// The catalogue's assertion: exact exit code, no panic, and every needle in stderr.
#[track_caller]
fn expect(o: &Outcome, code: i32, needles: &[&str]) {
    // Shown with --nocapture: the catalogue as it is (RELIABILITY.md quotes it).
    let case = std::thread::current().name().unwrap_or("?").to_string();
    eprintln!("[catalogue] {case} -> exit {}: {}", o.code, o.stderr.trim().replace('\n', " | "));
    assert!(
        !o.stderr.contains("panicked at") && o.code != 101,
        "the binary panicked (exit {}):\n{}",
        o.code,
        o.stderr
    );
    assert_eq!(o.code, code, "exit code; stderr:\n{}\nstdout:\n{}", o.stderr, o.stdout);
    for n in needles {
        assert!(o.stderr.contains(n), "stderr lacks {n:?}:\n{}", o.stderr);
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

// ------------------------------------------------------------------------------------------------
// A GGUF rewriter: the fixture is parsed by the library, then written back with changes.

/// One metadata entry: raw key bytes, value type id and the encoded payload.
struct Kv {
    key: Vec<u8>,
    ty: u32,
    payload: Vec<u8>,
}

/// One tensor info plus its data.
struct Tensor {
    name: Vec<u8>,
    ne: Vec<i64>,
    ty: u32,
    data: Vec<u8>,
    /// Offset relative to the data section; None = laid out in order.
    offset: Option<u64>,
}

struct Gguf {
    version: u32,
    n_tensors: Option<u64>,
    n_kv: Option<u64>,
    kv: Vec<Kv>,
    tensors: Vec<Tensor>,
}

fn enc_payload(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(u8::from(*x)),
        GgufValue::String(s) => enc_str(out, s.as_bytes()),
        GgufValue::Array(a) => {
            out.extend_from_slice(&a.elem_type.id().to_le_bytes());
            out.extend_from_slice(&(a.values.len() as u64).to_le_bytes());
            for e in &a.values {
                enc_payload(out, e);
            }
        }
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn enc_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

fn string_kv(key: &str, value: &[u8]) -> Kv {
    let mut payload = Vec::new();
    enc_str(&mut payload, value);
    Kv { key: key.as_bytes().to_vec(), ty: 8, payload }
}

const ALIGN: u64 = 32;

impl Gguf {
    fn load(path: &Path) -> Gguf {
        let f = GgufFile::open(path).unwrap();
        let kv = f
            .metadata_keys()
            .iter()
            .map(|k| {
                let v = f.get(k).unwrap();
                let mut payload = Vec::new();
                enc_payload(&mut payload, v);
                Kv { key: k.as_bytes().to_vec(), ty: v.value_type().id(), payload }
            })
            .collect();
        let tensors = f
            .tensors()
            .iter()
            .map(|t| Tensor {
                name: t.name.as_bytes().to_vec(),
                ne: t.ne.iter().map(|&x| x as i64).collect(),
                ty: ggml_type_id(&format!("{:?}", t.ggml_type)),
                data: f.raw_bytes(&t.name).unwrap().to_vec(),
                offset: None,
            })
            .collect();
        Gguf { version: f.version(), n_tensors: None, n_kv: None, kv, tensors }
    }

    fn kv_mut(&mut self, key: &str) -> &mut Kv {
        self.kv.iter_mut().find(|k| k.key == key.as_bytes()).unwrap()
    }

    fn remove_kv(&mut self, key: &str) {
        let n = self.kv.len();
        self.kv.retain(|k| k.key != key.as_bytes());
        assert_eq!(self.kv.len(), n - 1, "{key}");
    }

    fn tensor_mut(&mut self, name: &str) -> &mut Tensor {
        self.tensors.iter_mut().find(|t| t.name == name.as_bytes()).unwrap()
    }

    /// The header bytes (up to, not including, the alignment padding) and the tensor offsets.
    fn header(&self) -> (Vec<u8>, Vec<u64>) {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.n_tensors.unwrap_or(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.n_kv.unwrap_or(self.kv.len() as u64).to_le_bytes());
        for kv in &self.kv {
            enc_str(&mut out, &kv.key);
            out.extend_from_slice(&kv.ty.to_le_bytes());
            out.extend_from_slice(&kv.payload);
        }
        let mut offsets = Vec::new();
        let mut next = 0u64;
        for t in &self.tensors {
            // An explicit offset neither moves the layout nor gets the tensor's data written.
            let off = t.offset.unwrap_or(next);
            offsets.push(off);
            if t.offset.is_none() {
                next = (off + t.data.len() as u64).next_multiple_of(ALIGN);
            }
            enc_str(&mut out, &t.name);
            out.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.to_le_bytes());
            out.extend_from_slice(&off.to_le_bytes());
        }
        (out, offsets)
    }

    fn bytes(&self) -> Vec<u8> {
        let (mut out, offsets) = self.header();
        let data_start = (out.len() as u64).next_multiple_of(ALIGN) as usize;
        out.resize(data_start, 0);
        for (t, off) in self.tensors.iter().zip(offsets) {
            if t.offset.is_some() {
                continue;
            }
            let start = data_start + off as usize;
            if out.len() < start + t.data.len() {
                out.resize(start + t.data.len(), 0);
            }
            out[start..start + t.data.len()].copy_from_slice(&t.data);
        }
        let end = out.len().next_multiple_of(ALIGN as usize);
        out.resize(end, 0);
        out
    }

    fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join("model.gguf");
        std::fs::write(&p, self.bytes()).unwrap();
        p
    }
}

fn ggml_type_id(name: &str) -> u32 {
    match name {
        "F32" => 0,
        "F16" => 1,
        "Q4_0" => 2,
        "Q4_1" => 3,
        "Q8_0" => 8,
        other => panic!("fixture tensor type {other} not handled by the rewriter"),
    }
}

fn set_f32(data: &mut [u8], index: usize, v: f32) {
    data[index * 4..index * 4 + 4].copy_from_slice(&v.to_le_bytes());
}

/// Runs the rewritten GGUF and returns the outcome (with the model path).
fn run_gguf(name: &str, g: &Gguf) -> (Outcome, PathBuf) {
    let dir = case_dir(name);
    let model = g.write(&dir);
    let prompts = good_prompts(&dir);
    (run_model(&model, &prompts, &dir, &[]), model)
}

/// Writes raw bytes as a GGUF file and runs `run` on it.
fn run_gguf_bytes(name: &str, bytes: &[u8]) -> (Outcome, PathBuf) {
    let dir = case_dir(name);
    let model = dir.join("model.gguf");
    std::fs::write(&model, bytes).unwrap();
    let prompts = good_prompts(&dir);
    (run_model(&model, &prompts, &dir, &[]), model)
}

// ------------------------------------------------------------------------------------------------
// Sanity: the unmodified inputs and the rewriter work.

/// The rewriter reproduces a loadable file, and the fixtures run (exit 0).
#[test]
fn baseline_inputs_succeed() {
    let (o, _) = run_gguf("baseline_gguf", &Gguf::load(&llama_gguf()));
    expect(&o, OK, &["wrote"]);
    let dir = case_dir("baseline_hf");
    let o = run_model(&llama_hf(), &good_prompts(&dir), &dir, &[]);
    expect(&o, OK, &["wrote"]);
}

// ------------------------------------------------------------------------------------------------
// GGUF: container

/// Bad magic: exit 4, names the file and the magic bytes.
#[test]
fn gguf_bad_magic() {
    let mut b = Gguf::load(&llama_gguf()).bytes();
    b[..4].copy_from_slice(b"GGUX");
    let (o, m) = run_gguf_bytes("gguf_bad_magic", &b);
    expect(&o, MODEL, &[&s(&m), "bad magic", "not a GGUF file"]);
}

/// An empty file: exit 4, truncated at the magic.
#[test]
fn gguf_empty_file() {
    let (o, m) = run_gguf_bytes("gguf_empty_file", b"");
    expect(&o, MODEL, &[&s(&m), "truncated", "magic"]);
}

/// Version 4 (and v1): exit 4, names the version.
#[test]
fn gguf_unsupported_version() {
    let mut g = Gguf::load(&llama_gguf());
    g.version = 4;
    let (o, m) = run_gguf("gguf_unsupported_version", &g);
    expect(&o, MODEL, &[&s(&m), "unsupported GGUF version 4"]);
    g.version = 1;
    let (o, _) = run_gguf("gguf_unsupported_version_1", &g);
    expect(&o, MODEL, &["unsupported GGUF version 1", "obsolete"]);
}

/// A header cut inside the fixed part: exit 4, names the field (tensor count) and the offset.
#[test]
fn gguf_truncated_header() {
    let b = Gguf::load(&llama_gguf()).bytes();
    let (o, m) = run_gguf_bytes("gguf_truncated_header", &b[..12]);
    expect(&o, MODEL, &[&s(&m), "truncated", "tensor count", "offset 8"]);
}

/// A file cut inside the metadata: exit 4, names the metadata key (and element) being read.
#[test]
fn gguf_truncated_metadata() {
    let g = Gguf::load(&llama_gguf());
    let b = g.bytes();
    // Cut just before the end of the token list, past its count check.
    let mut end = 24;
    for kv in &g.kv {
        end += 8 + kv.key.len() + 4 + kv.payload.len();
        if kv.key == b"tokenizer.ggml.tokens" {
            break;
        }
    }
    let (o, m) = run_gguf_bytes("gguf_truncated_metadata", &b[..end - 3]);
    expect(&o, MODEL, &[&s(&m), "truncated", "metadata 'tokenizer.ggml.tokens' value[511]"]);
    // Cut so early that the metadata count itself cannot fit: said so.
    let (o, m) = run_gguf_bytes("gguf_truncated_metadata_early", &b[..200]);
    expect(&o, MODEL, &[&s(&m), "metadata kv count", "truncated file"]);
}

/// A file cut inside the tensor infos: exit 4, names the tensor.
#[test]
fn gguf_truncated_tensor_infos() {
    let g = Gguf::load(&llama_gguf());
    let (h, _) = g.header();
    let (o, m) = run_gguf_bytes("gguf_truncated_tensor_infos", &g.bytes()[..h.len() - 10]);
    expect(&o, MODEL, &[&s(&m), "truncated", "tensor #"]);
}

/// A file cut inside the tensor data: exit 4, names the last tensor and the file size.
#[test]
fn gguf_truncated_tensor_data() {
    let g = Gguf::load(&llama_gguf());
    let b = g.bytes();
    let last = String::from_utf8(g.tensors.last().unwrap().name.clone()).unwrap();
    let (o, m) = run_gguf_bytes("gguf_truncated_tensor_data", &b[..b.len() - 100]);
    expect(&o, MODEL, &[&s(&m), &format!("tensor '{last}'"), "runs past end of file"]);
}

/// A tensor offset far past the end: exit 4, names the tensor.
#[test]
fn gguf_offset_past_end() {
    let mut g = Gguf::load(&llama_gguf());
    g.tensor_mut("blk.1.attn_k.weight").offset = Some(1 << 40);
    let (o, m) = run_gguf("gguf_offset_past_end", &g);
    expect(&o, MODEL, &[&s(&m), "tensor 'blk.1.attn_k.weight'", "runs past end of file"]);
}

/// An offset whose end overflows u64: exit 4, names the tensor.
#[test]
fn gguf_offset_overflow() {
    let mut g = Gguf::load(&llama_gguf());
    g.tensor_mut("blk.0.attn_q.weight").offset = Some(u64::MAX - 31);
    let (o, m) = run_gguf("gguf_offset_overflow", &g);
    expect(&o, MODEL, &[&s(&m), "tensor 'blk.0.attn_q.weight'", "runs past end of file"]);
}

/// Two tensors sharing bytes: exit 4, names both.
#[test]
fn gguf_overlapping_tensors() {
    let mut g = Gguf::load(&llama_gguf());
    let (_, offsets) = g.header();
    let first = offsets[0];
    let name0 = String::from_utf8(g.tensors[0].name.clone()).unwrap();
    let name1 = String::from_utf8(g.tensors[1].name.clone()).unwrap();
    g.tensors[1].offset = Some(first);
    let (o, m) = run_gguf("gguf_overlapping_tensors", &g);
    expect(&o, MODEL, &[&s(&m), &name0, &name1, "overlap"]);
}

/// A misaligned tensor offset: exit 4, names the tensor and the alignment.
#[test]
fn gguf_misaligned_offset() {
    let mut g = Gguf::load(&llama_gguf());
    g.tensors[2].offset = Some(8);
    let name = String::from_utf8(g.tensors[2].name.clone()).unwrap();
    let (o, m) = run_gguf("gguf_misaligned_offset", &g);
    expect(&o, MODEL, &[&s(&m), &name, "not a multiple of the alignment 32"]);
}

/// `general.alignment` that is not a power of two: exit 4, names the key.
#[test]
fn gguf_bad_alignment() {
    let mut g = Gguf::load(&llama_gguf());
    g.kv.push(Kv { key: b"general.alignment".to_vec(), ty: 4, payload: 3u32.to_le_bytes().to_vec() });
    let (o, m) = run_gguf("gguf_bad_alignment", &g);
    expect(&o, MODEL, &[&s(&m), "general.alignment", "power of two"]);
}

/// A tensor count of u64::MAX: exit 4, says the count is absurd.
#[test]
fn gguf_absurd_tensor_count() {
    let mut g = Gguf::load(&llama_gguf());
    g.n_tensors = Some(u64::MAX);
    let (o, m) = run_gguf("gguf_absurd_tensor_count", &g);
    expect(&o, MODEL, &[&s(&m), "tensor count", "absurd"]);
}

/// A metadata count of 2^62: exit 4.
#[test]
fn gguf_absurd_metadata_count() {
    let mut g = Gguf::load(&llama_gguf());
    g.n_kv = Some(1 << 62);
    let (o, m) = run_gguf("gguf_absurd_metadata_count", &g);
    expect(&o, MODEL, &[&s(&m), "metadata kv count", "absurd"]);
}

/// An array claiming 2^60 strings: exit 4, names the key.
#[test]
fn gguf_absurd_array_length() {
    let mut g = Gguf::load(&llama_gguf());
    let kv = g.kv_mut("tokenizer.ggml.tokens");
    kv.payload[4..12].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let (o, m) = run_gguf("gguf_absurd_array_length", &g);
    expect(&o, MODEL, &[&s(&m), "tokenizer.ggml.tokens", "absurd"]);
}

/// A string length of u64::MAX: exit 4, names the key.
#[test]
fn gguf_absurd_string_length() {
    let mut g = Gguf::load(&llama_gguf());
    let kv = g.kv_mut("general.architecture");
    kv.payload[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let (o, m) = run_gguf("gguf_absurd_string_length", &g);
    expect(&o, MODEL, &[&s(&m), "general.architecture", "truncated"]);
}

/// Dimensions whose product overflows: exit 4, names the tensor.
#[test]
fn gguf_dimension_overflow() {
    let mut g = Gguf::load(&llama_gguf());
    g.tensor_mut("blk.0.ffn_up.weight").ne = vec![1 << 40, 1 << 40];
    let (o, m) = run_gguf("gguf_dimension_overflow", &g);
    expect(&o, MODEL, &[&s(&m), "tensor 'blk.0.ffn_up.weight'", "overflows"]);
}

/// A negative dimension: exit 4, names the tensor and the dimension.
#[test]
fn gguf_negative_dimension() {
    let mut g = Gguf::load(&llama_gguf());
    g.tensor_mut("blk.0.ffn_up.weight").ne[1] = -128;
    let (o, m) = run_gguf("gguf_negative_dimension", &g);
    expect(&o, MODEL, &[&s(&m), "tensor 'blk.0.ffn_up.weight'", "ne[1] = -128 is negative"]);
}

/// More than 4 dimensions: exit 4.
#[test]
fn gguf_too_many_dimensions() {
    let mut g = Gguf::load(&llama_gguf());
    g.tensor_mut("output_norm.weight").ne = vec![64, 1, 1, 1, 1];
    let (o, m) = run_gguf("gguf_too_many_dimensions", &g);
    expect(&o, MODEL, &[&s(&m), "tensor 'output_norm.weight'", "n_dims = 5"]);
}

/// A tensor type id no ggml version ever had: exit 4, names the tensor and the id.
#[test]
fn gguf_unknown_dtype() {
    let mut g = Gguf::load(&llama_gguf());
    g.tensor_mut("blk.2.attn_v.weight").ty = 200;
    let (o, m) = run_gguf("gguf_unknown_dtype", &g);
    expect(&o, MODEL, &[&s(&m), "tensor 'blk.2.attn_v.weight'", "unknown ggml type id 200"]);
}

/// A real ggml type that cannot be dequantised (I32 has F32's size): exit 4 at load time.
#[test]
fn gguf_unsupported_dtype() {
    let mut g = Gguf::load(&llama_gguf());
    g.tensor_mut("blk.2.attn_v.weight").ty = 26; // GGML_TYPE_I32
    let (o, m) = run_gguf("gguf_unsupported_dtype", &g);
    expect(&o, MODEL, &[&s(&m), "tensor 'blk.2.attn_v.weight'", "I32"]);
}

/// A metadata key that is not UTF-8: exit 4, names the key index.
#[test]
fn gguf_invalid_utf8_key() {
    let mut g = Gguf::load(&llama_gguf());
    g.kv[3].key = b"general.\xff\xfename".to_vec();
    let (o, m) = run_gguf("gguf_invalid_utf8_key", &g);
    expect(&o, MODEL, &[&s(&m), "metadata key #3", "not valid UTF-8"]);
}

/// A string value that is not UTF-8: exit 4, names the key.
#[test]
fn gguf_invalid_utf8_value() {
    let mut g = Gguf::load(&llama_gguf());
    *g.kv_mut("general.name") = string_kv("general.name", b"tiny\xc3\x28llama");
    let (o, m) = run_gguf("gguf_invalid_utf8_value", &g);
    expect(&o, MODEL, &[&s(&m), "'general.name'", "not valid UTF-8"]);
}

/// A tensor name that is not UTF-8: exit 4, names the tensor index.
#[test]
fn gguf_invalid_utf8_tensor_name() {
    let mut g = Gguf::load(&llama_gguf());
    g.tensors[4].name = b"blk.\x80.attn_q.weight".to_vec();
    let (o, m) = run_gguf("gguf_invalid_utf8_tensor_name", &g);
    expect(&o, MODEL, &[&s(&m), "tensor #4 name", "not valid UTF-8"]);
}

/// An unknown metadata value type id: exit 4, names the key.
#[test]
fn gguf_unknown_value_type() {
    let mut g = Gguf::load(&llama_gguf());
    g.kv_mut("general.name").ty = 77;
    let (o, m) = run_gguf("gguf_unknown_value_type", &g);
    expect(&o, MODEL, &[&s(&m), "general.name", "unknown metadata value type id 77"]);
}

/// A bool byte that is neither 0 nor 1: exit 4, names the key.
#[test]
fn gguf_bad_bool() {
    let mut g = Gguf::load(&llama_gguf());
    g.kv.push(Kv { key: b"tokenizer.ggml.add_eos_token".to_vec(), ty: 7, payload: vec![7] });
    g.remove_kv_if_dup("tokenizer.ggml.add_eos_token");
    let (o, m) = run_gguf("gguf_bad_bool", &g);
    expect(&o, MODEL, &[&s(&m), "tokenizer.ggml.add_eos_token", "neither 0 nor 1"]);
}

impl Gguf {
    /// Keeps only the last entry of `key` (so a pushed replacement wins).
    fn remove_kv_if_dup(&mut self, key: &str) {
        let n = self.kv.iter().filter(|k| k.key == key.as_bytes()).count();
        if n > 1 {
            let first = self.kv.iter().position(|k| k.key == key.as_bytes()).unwrap();
            self.kv.remove(first);
        }
    }
}

/// The same key twice: exit 4, names the key.
#[test]
fn gguf_duplicate_key() {
    let mut g = Gguf::load(&llama_gguf());
    g.kv.push(string_kv("general.name", b"again"));
    let (o, m) = run_gguf("gguf_duplicate_key", &g);
    expect(&o, MODEL, &[&s(&m), "duplicate metadata key 'general.name'"]);
}

/// The same tensor name twice: exit 4, names the tensor.
#[test]
fn gguf_duplicate_tensor() {
    let mut g = Gguf::load(&llama_gguf());
    g.tensors[5].name = g.tensors[4].name.clone();
    let name = String::from_utf8(g.tensors[4].name.clone()).unwrap();
    let (o, m) = run_gguf("gguf_duplicate_tensor", &g);
    expect(&o, MODEL, &[&s(&m), &format!("duplicate tensor name '{name}'")]);
}

// ------------------------------------------------------------------------------------------------
// GGUF: model metadata

/// An architecture no declaration covers: exit 4, names it and the supported ones.
#[test]
fn gguf_unknown_architecture() {
    let mut g = Gguf::load(&llama_gguf());
    *g.kv_mut("general.architecture") = string_kv("general.architecture", b"mamba9");
    let (o, m) = run_gguf("gguf_unknown_architecture", &g);
    expect(&o, MODEL, &[&s(&m), "unknown architecture 'mamba9'", "supported: llama"]);
}

/// No `general.architecture`: exit 4, names the key.
#[test]
fn gguf_missing_architecture() {
    let mut g = Gguf::load(&llama_gguf());
    g.remove_kv("general.architecture");
    let (o, m) = run_gguf("gguf_missing_architecture", &g);
    expect(&o, MODEL, &[&s(&m), "missing metadata key 'general.architecture'"]);
}

/// No `llama.block_count`: exit 4, names the key.
#[test]
fn gguf_missing_block_count() {
    let mut g = Gguf::load(&llama_gguf());
    g.remove_kv("llama.block_count");
    let (o, m) = run_gguf("gguf_missing_block_count", &g);
    expect(&o, MODEL, &[&s(&m), "'llama.block_count'"]);
}

/// `llama.embedding_length` stored as a string: exit 4, names the key and both types.
#[test]
fn gguf_wrong_metadata_type() {
    let mut g = Gguf::load(&llama_gguf());
    *g.kv_mut("llama.embedding_length") = string_kv("llama.embedding_length", b"64");
    let (o, m) = run_gguf("gguf_wrong_metadata_type", &g);
    expect(&o, MODEL, &[&s(&m), "'llama.embedding_length'", "wrong type", "string"]);
}

/// Dimensions that do not add up (head count not dividing the width): exit 4, names the key.
#[test]
fn gguf_inconsistent_dimensions() {
    let mut g = Gguf::load(&llama_gguf());
    let kv = g.kv_mut("llama.attention.head_count");
    let ty = kv.ty;
    kv.payload = match ty {
        4 => 5u32.to_le_bytes().to_vec(),
        10 => 5u64.to_le_bytes().to_vec(),
        other => panic!("head_count type {other}"),
    };
    let (o, m) = run_gguf("gguf_inconsistent_dimensions", &g);
    expect(&o, MODEL, &[&s(&m), "head"]);
}

/// A block count of 2^32 - 1: exit 4 before anything per block is allocated (found by fuzzing).
#[test]
fn gguf_absurd_block_count() {
    let mut g = Gguf::load(&llama_gguf());
    let kv = g.kv_mut("llama.block_count");
    assert_eq!(kv.ty, 4, "u32 in the fixture");
    kv.payload = u32::MAX.to_le_bytes().to_vec();
    let (o, m) = run_gguf("gguf_absurd_block_count", &g);
    expect(&o, MODEL, &[&s(&m), "n_layers = 4294967295 is implausibly large"]);
}

/// No tokenizer vocabulary: exit 4, names the key.
#[test]
fn gguf_missing_tokenizer() {
    let mut g = Gguf::load(&llama_gguf());
    g.remove_kv("tokenizer.ggml.tokens");
    let (o, m) = run_gguf("gguf_missing_tokenizer", &g);
    expect(&o, MODEL, &[&s(&m), "tokenizer.ggml.tokens"]);
}

// ------------------------------------------------------------------------------------------------
// GGUF: strict loading

/// A tensor the model needs is absent: exit 4, names it, its expected shape and near names.
#[test]
fn gguf_missing_tensor() {
    let mut g = Gguf::load(&llama_gguf());
    g.tensors.retain(|t| t.name != b"blk.1.attn_v.weight");
    let (o, m) = run_gguf("gguf_missing_tensor", &g);
    expect(&o, MODEL, &[&s(&m), "missing tensor 'blk.1.attn_v.weight'", "[32, 64]", "closest names"]);
}

/// A tensor of the wrong shape (same byte count): exit 4, names it and both shapes.
#[test]
fn gguf_wrong_shape() {
    let mut g = Gguf::load(&llama_gguf());
    let t = g.tensor_mut("blk.0.ffn_up.weight");
    t.ne = vec![t.ne[1], t.ne[0]];
    let (o, m) = run_gguf("gguf_wrong_shape", &g);
    expect(&o, MODEL, &[&s(&m), "tensor 'blk.0.ffn_up.weight'", "[64, 128]", "expected [128, 64]"]);
}

/// A tensor nothing uses: exit 4, names it and its shape.
#[test]
fn gguf_unused_tensor() {
    let mut g = Gguf::load(&llama_gguf());
    g.tensors.push(Tensor {
        name: b"blk.0.mystery.weight".to_vec(),
        ne: vec![8, 2],
        ty: 0,
        data: vec![0; 64],
        offset: None,
    });
    let (o, m) = run_gguf("gguf_unused_tensor", &g);
    expect(&o, MODEL, &[&s(&m), "unused tensor", "blk.0.mystery.weight", "[2, 8]"]);
}

// ------------------------------------------------------------------------------------------------
// Non-finite weights: caught at the first non-finite activation (exit 5), naming the hook site
// and the tensors that hold non-finite values.

/// A NaN in block 1's down projection: exit 5 at blocks.1.hook_mlp_out.
#[test]
fn gguf_nan_weight() {
    let mut g = Gguf::load(&llama_gguf());
    set_f32(&mut g.tensor_mut("blk.1.ffn_down.weight").data, 100, f32::NAN);
    let (o, m) = run_gguf("gguf_nan_weight", &g);
    expect(&o, NUMERICAL, &[&s(&m), "blocks.1.hook_mlp_out", "block 1", "blk.1.ffn_down.weight", "1 NaN"]);
}

/// A NaN scale in a Q8_0 block of block 1's down projection (kept in its stored format; the
/// load decides finiteness from the scales and scans the values only then): all 32 values of
/// the block are NaN, exit 5 at blocks.1.hook_mlp_out citing the tensor and the count.
#[test]
fn gguf_nan_quant_scale() {
    let mut g = Gguf::load(&fixtures().join("gguf/llama/llama-q8_0.gguf"));
    let t = g.tensor_mut("blk.1.ffn_down.weight");
    assert_eq!(t.ty, ggml_type_id("Q8_0"), "the fixture's down projection is Q8_0");
    // Block 3 (34 bytes each: the f16 scale, then 32 int8 values).
    t.data[3 * 34..3 * 34 + 2].copy_from_slice(&0x7E00u16.to_le_bytes());
    let (o, m) = run_gguf("gguf_nan_quant_scale", &g);
    expect(
        &o,
        NUMERICAL,
        &[&s(&m), "blocks.1.hook_mlp_out", "blk.1.ffn_down.weight", "32 NaN", "first at flat index 96"],
    );
}

/// An infinite embedding table: exit 5 at hook_embed.
#[test]
fn gguf_inf_embedding() {
    let mut g = Gguf::load(&llama_gguf());
    let t = g.tensor_mut("token_embd.weight");
    let n = t.data.len() / 4;
    for i in 0..n {
        set_f32(&mut t.data, i, f32::INFINITY);
    }
    let (o, m) = run_gguf("gguf_inf_embedding", &g);
    expect(&o, NUMERICAL, &[&s(&m), "hook_embed", "token_embd.weight"]);
}

/// A NaN in the unembedding only shows in the logits: exit 5 at `logits` when they are captured.
#[test]
fn gguf_nan_unembedding() {
    let mut g = Gguf::load(&llama_gguf());
    set_f32(&mut g.tensor_mut("output.weight").data, 0, f32::NAN);
    let dir = case_dir("gguf_nan_unembedding");
    let model = g.write(&dir);
    let o = run_model(&model, &good_prompts(&dir), &dir, &["--capture", "logits"]);
    expect(&o, NUMERICAL, &[&s(&model), "logits", "output.weight"]);
}

// ------------------------------------------------------------------------------------------------
// safetensors folders

/// Copies the llama HF fixture folder (only the files a model needs).
fn hf_copy(name: &str) -> PathBuf {
    let dir = case_dir(name);
    let m = dir.join("model");
    std::fs::create_dir_all(&m).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(llama_hf().join(f), m.join(f)).unwrap();
    }
    m
}

fn run_hf(m: &Path) -> Outcome {
    let dir = m.parent().unwrap();
    run_model(m, &good_prompts(dir), dir, &[])
}

/// Splits a safetensors file into (header JSON, data).
fn st_split(b: &[u8]) -> (serde_json::Map<String, serde_json::Value>, Vec<u8>) {
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    (header.as_object().unwrap().clone(), b[8 + n..].to_vec())
}

fn st_join(header_text: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header_text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header_text.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Rewrites model.safetensors through the `safetensors` crate with `f` editing the tensor list.
fn st_rewrite(m: &Path, f: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) {
    let p = m.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut ts: Vec<(String, Vec<usize>, Vec<u8>)> =
        st.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec())).collect();
    ts.sort_by(|a, b| a.0.cmp(&b.0));
    f(&mut ts);
    let views: Vec<(String, safetensors::tensor::TensorView)> = ts
        .iter()
        .map(|(n, s, d)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap())
        })
        .collect();
    std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// A header length pointing past the end of the file: exit 4, names the file and the length.
#[test]
fn st_header_length_past_end() {
    let m = hf_copy("st_header_length_past_end");
    let p = m.join("model.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&p), "header length"]);
}

/// A file shorter than the 8-byte length prefix: exit 4.
#[test]
fn st_too_short() {
    let m = hf_copy("st_too_short");
    let p = m.join("model.safetensors");
    std::fs::write(&p, b"\x05\x00").unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&p), "header"]);
}

/// A header that is not JSON: exit 4, names the file and the parse position.
#[test]
fn st_invalid_json() {
    let m = hf_copy("st_invalid_json");
    let p = m.join("model.safetensors");
    let b = std::fs::read(&p).unwrap();
    let (h, data) = st_split(&b);
    let text = serde_json::to_string(&h).unwrap().replacen("\"dtype\"", "dtype", 1);
    std::fs::write(&p, st_join(&text, &data)).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&p), "header", "JSON", "column"]);
}

/// A shape whose byte length disagrees with the data offsets: exit 4, names the tensor.
#[test]
fn st_shape_byte_length_mismatch() {
    let m = hf_copy("st_shape_byte_length_mismatch");
    let p = m.join("model.safetensors");
    let b = std::fs::read(&p).unwrap();
    let (mut h, data) = st_split(&b);
    h["model.layers.0.mlp.up_proj.weight"]["shape"] = serde_json::json!([128, 65]);
    std::fs::write(&p, st_join(&serde_json::to_string(&h).unwrap(), &data)).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&p), "model.layers.0.mlp.up_proj.weight", "[128, 65]", "bytes"]);
}

/// A dtype whose size disagrees with the byte length (F64 for F32 data): exit 4, names the tensor.
#[test]
fn st_dtype_mismatch() {
    let m = hf_copy("st_dtype_mismatch");
    let p = m.join("model.safetensors");
    let b = std::fs::read(&p).unwrap();
    let (mut h, data) = st_split(&b);
    h["model.norm.weight"]["dtype"] = serde_json::json!("F64");
    std::fs::write(&p, st_join(&serde_json::to_string(&h).unwrap(), &data)).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&p), "model.norm.weight", "F64", "bytes"]);
}

/// An unknown dtype name: exit 4, names the tensor and the dtype.
#[test]
fn st_unknown_dtype() {
    let m = hf_copy("st_unknown_dtype");
    let p = m.join("model.safetensors");
    let b = std::fs::read(&p).unwrap();
    let (mut h, data) = st_split(&b);
    h["model.norm.weight"]["dtype"] = serde_json::json!("F33");
    std::fs::write(&p, st_join(&serde_json::to_string(&h).unwrap(), &data)).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&p), "model.norm.weight", "F33"]);
}

/// A supported container dtype the loader cannot convert (I32): exit 4, names the tensor.
#[test]
fn st_unsupported_dtype() {
    let m = hf_copy("st_unsupported_dtype");
    let p = m.join("model.safetensors");
    let b = std::fs::read(&p).unwrap();
    let (mut h, data) = st_split(&b);
    h["model.norm.weight"]["dtype"] = serde_json::json!("I32");
    std::fs::write(&p, st_join(&serde_json::to_string(&h).unwrap(), &data)).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&p), "model.norm.weight", "I32"]);
}

/// Data offsets past the end of the file: exit 4, names the tensor.
#[test]
fn st_truncated_data() {
    let m = hf_copy("st_truncated_data");
    let p = m.join("model.safetensors");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 1000]).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&p), "past the end"]);
}

/// The same tensor name twice in the header: exit 4, names it.
#[test]
fn st_duplicate_names() {
    let m = hf_copy("st_duplicate_names");
    let p = m.join("model.safetensors");
    let b = std::fs::read(&p).unwrap();
    let (h, data) = st_split(&b);
    let text = serde_json::to_string(&h).unwrap();
    // Repeat the first entry verbatim: `{"a": X, ...}` -> `{"a": X, "a": X, ...}`.
    let first_key = h.keys().find(|k| *k != "__metadata__").unwrap().clone();
    let entry = format!("\"{first_key}\":{}", serde_json::to_string(&h[&first_key]).unwrap());
    let text = text.replacen(&entry, &format!("{entry},{entry}"), 1);
    assert!(text.matches(&format!("\"{first_key}\"")).count() == 2);
    std::fs::write(&p, st_join(&text, &data)).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&p), &first_key, "twice"]);
}

/// A needed tensor removed: exit 4, names it and its expected shape.
#[test]
fn st_missing_tensor() {
    let m = hf_copy("st_missing_tensor");
    st_rewrite(&m, |ts| ts.retain(|t| t.0 != "model.layers.2.self_attn.o_proj.weight"));
    expect(
        &run_hf(&m),
        MODEL,
        &[&s(&m), "missing tensor 'model.layers.2.self_attn.o_proj.weight'", "[64, 64]"],
    );
}

/// A tensor reshaped (same bytes): exit 4, names it and both shapes.
#[test]
fn st_wrong_shape() {
    let m = hf_copy("st_wrong_shape");
    st_rewrite(&m, |ts| {
        let t = ts.iter_mut().find(|t| t.0 == "model.layers.1.self_attn.q_proj.weight").unwrap();
        t.1 = vec![32, 128];
    });
    expect(
        &run_hf(&m),
        MODEL,
        &[&s(&m), "model.layers.1.self_attn.q_proj.weight", "[32, 128]", "expected [64, 64]"],
    );
}

/// An extra tensor: exit 4, names it and its shape.
#[test]
fn st_unused_tensor() {
    let m = hf_copy("st_unused_tensor");
    st_rewrite(&m, |ts| ts.push(("model.layers.0.self_attn.extra.weight".into(), vec![3, 2], vec![0; 24])));
    expect(&run_hf(&m), MODEL, &[&s(&m), "unused tensor", "model.layers.0.self_attn.extra.weight", "[3, 2]"]);
}

/// An infinity in a layer-2 query projection: exit 5 at that block's attention output.
#[test]
fn st_inf_weight() {
    let m = hf_copy("st_inf_weight");
    st_rewrite(&m, |ts| {
        let t = ts.iter_mut().find(|t| t.0 == "model.layers.2.self_attn.q_proj.weight").unwrap();
        for i in 0..t.2.len() / 4 {
            set_f32(&mut t.2, i, f32::INFINITY);
        }
    });
    expect(
        &run_hf(&m),
        NUMERICAL,
        &["blocks.2.hook_attn_out", "block 2", "model.layers.2.self_attn.q_proj.weight"],
    );
}

// ------------------------------------------------------------------------------------------------
// Hugging Face folders

/// No config.json: exit 4, names the folder.
#[test]
fn hf_no_config() {
    let m = hf_copy("hf_no_config");
    std::fs::remove_file(m.join("config.json")).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&m), "no config.json"]);
}

/// config.json that is not JSON: exit 4, names the file, line and column.
#[test]
fn hf_config_invalid_json() {
    let m = hf_copy("hf_config_invalid_json");
    std::fs::write(m.join("config.json"), "{\n  \"model_type\": \"llama\",\n  oops\n}\n").unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&m.join("config.json")), "JSON syntax", "line 3 column 3"]);
}

/// `"hidden_size": "64"`: exit 4, names the file and the field.
#[test]
fn hf_wrong_field_type() {
    let m = hf_copy("hf_wrong_field_type");
    let p = m.join("config.json");
    let text = std::fs::read_to_string(&p).unwrap().replace("\"hidden_size\": 64", "\"hidden_size\": \"64\"");
    std::fs::write(&p, text).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&p), "field 'hidden_size'", "invalid type"]);
}

/// A required field missing: exit 4, names it.
#[test]
fn hf_missing_field() {
    let m = hf_copy("hf_missing_field");
    let p = m.join("config.json");
    let text = std::fs::read_to_string(&p).unwrap().replace("\"num_hidden_layers\": 3,", "");
    std::fs::write(&p, text).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&p), "num_hidden_layers", "missing"]);
}

/// A width of 2^62 (GPT-2's d_mlp = 4 d used to overflow, found by the mutation test): exit 4.
#[test]
fn hf_absurd_dimension() {
    let dir = case_dir("hf_absurd_dimension");
    let m = dir.join("model");
    std::fs::create_dir_all(&m).unwrap();
    let src = fixtures().join("models/gpt2");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(src.join(f), m.join(f)).unwrap();
    }
    let p = m.join("config.json");
    let text =
        std::fs::read_to_string(&p).unwrap().replace("\"n_embd\": 64", "\"n_embd\": 4611686018427387904");
    std::fs::write(&p, text).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&p), "d_model = 4611686018427387904 is implausibly large"]);
}

/// Huge but individually plausible dimensions: no overflow anywhere (parameter count, memory
/// estimate); the memory guard refuses, and past it the loader says what disagrees.
#[test]
fn hf_config_disagrees_with_weights() {
    let m = hf_copy("hf_config_disagrees_with_weights");
    let p = m.join("config.json");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"hidden_size\": 64", "\"hidden_size\": 16777216")
        .replace("\"intermediate_size\": 128", "\"intermediate_size\": 16777216")
        .replace("\"num_hidden_layers\": 3", "\"num_hidden_layers\": 65536")
        .replace("\"head_dim\": 16,", "");
    std::fs::write(&p, text).unwrap();
    let o = sinkscope([OsString::from("inspect"), m.clone().into()], &[]);
    expect(&o, OK, &[]);
    // The memory guard sees 65536 layers of 16M-wide activations first...
    expect(&run_hf(&m), MEMORY, &[&s(&m), "not enough memory", "--force"]);
    // ... and with --force the loader finds that the file cannot back 65536 blocks (found by
    // fuzzing: building the per-block tables first took seconds).
    let dir = m.parent().unwrap();
    let o = run_model(&m, &good_prompts(dir), dir, &["--force"]);
    expect(&o, MODEL, &[&s(&m), "(n_layers)", "65536 blocks", "only 30 tensors"]);
    // With 3 blocks the strict loader names the first tensor that disagrees.
    let p = m.join("config.json");
    let text = std::fs::read_to_string(&p).unwrap().replace("65536", "3");
    std::fs::write(&p, text).unwrap();
    let o = run_model(&m, &good_prompts(dir), dir, &["--force"]);
    expect(&o, MODEL, &[&s(&m), "model.embed_tokens.weight", "expected [512, 16777216]"]);
}

/// An unknown model_type: exit 4, names it and the supported ones.
#[test]
fn hf_unknown_model_type() {
    let m = hf_copy("hf_unknown_model_type");
    let p = m.join("config.json");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"model_type\": \"llama\"", "\"model_type\": \"rwkv9\"");
    std::fs::write(&p, text).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&p), "unknown architecture 'rwkv9'"]);
}

/// No weights: exit 4, names the folder.
#[test]
fn hf_no_weights() {
    let m = hf_copy("hf_no_weights");
    std::fs::remove_file(m.join("model.safetensors")).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&m), "no model.safetensors"]);
}

/// A shard index naming a shard that is not there: exit 4, names the shard.
#[test]
fn hf_missing_shard() {
    let m = hf_copy("hf_missing_shard");
    std::fs::remove_file(m.join("model.safetensors")).unwrap();
    std::fs::write(
        m.join("model.safetensors.index.json"),
        r#"{"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&m.join("model-00001-of-00002.safetensors"))]);
}

/// No tokenizer.json: exit 4, names the file.
#[test]
fn hf_no_tokenizer() {
    let m = hf_copy("hf_no_tokenizer");
    std::fs::remove_file(m.join("tokenizer.json")).unwrap();
    expect(&run_hf(&m), MODEL, &[&s(&m.join("tokenizer.json")), "not found"]);
}

/// A model path that does not exist: exit 4, names it.
#[test]
fn model_path_missing() {
    let dir = case_dir("model_path_missing");
    let m = dir.join("nope.gguf");
    let o = run_model(&m, &good_prompts(&dir), &dir, &[]);
    expect(&o, MODEL, &[&s(&m), "No such file"]);
}

// ------------------------------------------------------------------------------------------------
// Prompt files

fn run_prompts(name: &str, content: &[u8], extra: &[&str]) -> (Outcome, PathBuf) {
    let dir = case_dir(name);
    let p = dir.join("prompts.jsonl");
    std::fs::write(&p, content).unwrap();
    (run_model(&llama_gguf(), &p, &dir, extra), p)
}

/// An empty prompt file: exit 3, names the file.
#[test]
fn prompts_empty_file() {
    let (o, p) = run_prompts("prompts_empty_file", b"\n\n", &[]);
    expect(&o, INPUT, &[&s(&p), "no prompts"]);
}

/// A broken JSON line: exit 3, names the file and the line.
#[test]
fn prompts_invalid_json_line() {
    let (o, p) = run_prompts("prompts_invalid_json_line", b"{\"text\": \"a b\"}\n{\"text\": \"c\n", &[]);
    expect(&o, INPUT, &[&s(&p), "line 2", "invalid JSON"]);
}

/// Invalid UTF-8: exit 3, names the file and the line.
#[test]
fn prompts_invalid_utf8() {
    let (o, p) = run_prompts("prompts_invalid_utf8", b"hello there\nbad \xff\xfe bytes\n", &[]);
    expect(&o, INPUT, &[&s(&p), "line 2", "UTF-8"]);
}

/// An empty prompt text: exit 3, names the line.
#[test]
fn prompts_empty_prompt() {
    let (o, p) =
        run_prompts("prompts_empty_prompt", b"{\"text\": \"ok\"}\n{\"id\": \"e\", \"text\": \"   \"}\n", &[]);
    expect(&o, INPUT, &[&s(&p), "line 2", "empty prompt"]);
}

/// A JSONL line without `text`: exit 3, names the line and the field.
#[test]
fn prompts_missing_text() {
    let (o, p) = run_prompts("prompts_missing_text", b"{\"id\": \"a\", \"txt\": \"x\"}\n", &[]);
    expect(&o, INPUT, &[&s(&p), "line 1", "'text'"]);
}

/// The same id twice: exit 3, names the line and the id.
#[test]
fn prompts_duplicate_id() {
    let (o, p) = run_prompts(
        "prompts_duplicate_id",
        b"{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": \"a\", \"text\": \"y\"}\n",
        &[],
    );
    expect(&o, INPUT, &[&s(&p), "line 2", "'a'", "used twice"]);
}

/// A prompt file that does not exist: exit 3, names it.
#[test]
fn prompts_missing_file() {
    let dir = case_dir("prompts_missing_file");
    let p = dir.join("nope.jsonl");
    let o = run_model(&llama_gguf(), &p, &dir, &[]);
    expect(&o, INPUT, &[&s(&p), "No such file"]);
}

/// A prompt longer than the context (128 tokens) without --truncate: exit 3, names the file, the
/// prompt and the lengths; with --truncate it runs.
#[test]
fn prompts_too_long() {
    let text = "river ".repeat(300);
    let content = format!("{{\"id\": \"long\", \"text\": \"{text}\"}}\n");
    let (o, p) = run_prompts("prompts_too_long", content.as_bytes(), &[]);
    expect(&o, INPUT, &[&s(&p), "prompt 'long'", "context length 128", "--truncate"]);
    let (o, _) = run_prompts("prompts_too_long_truncate", content.as_bytes(), &["--truncate"]);
    expect(&o, OK, &["wrote"]);
}

/// A one-token prompt is fine for `run` (no statistic over positions is computed).
#[test]
fn prompts_single_token_ok_for_run() {
    let (o, _) = run_prompts("prompts_single_token", b"{\"text\": \"a\"}\n", &["--bos", "never"]);
    expect(&o, OK, &["1 tokens"]);
}

/// For `profile` a prompt of fewer than 2 tokens is an error (its metrics need T >= 2): exit 3,
/// naming the file and the prompt, before the weights load.
#[test]
fn profile_single_token_prompt() {
    let dir = case_dir("profile_single_token_prompt");
    let p = dir.join("prompts.jsonl");
    std::fs::write(
        &p,
        "{\"id\": \"ok\", \"text\": \"The quiet river\"}\n{\"id\": \"tiny\", \"text\": \"a\"}\n",
    )
    .unwrap();
    let o = sinkscope(
        [
            OsString::from("profile"),
            llama_gguf().into(),
            "--prompts".into(),
            p.clone().into(),
            "--bos".into(),
            "never".into(),
            "--no-report".into(),
            "--quiet".into(),
            "--out".into(),
            dir.join("out").into(),
        ],
        &[],
    );
    expect(&o, INPUT, &[&s(&p), "prompt 'tiny'", "1 token(s)", "at least 2"]);
}

// ------------------------------------------------------------------------------------------------
// Output and command line

/// `--out` under a regular file: exit 3, names the path.
#[test]
fn output_not_writable() {
    let dir = case_dir("output_not_writable");
    let blocker = dir.join("file");
    std::fs::write(&blocker, "x").unwrap();
    let out = blocker.join("out");
    let o = sinkscope(
        [
            OsString::from("run"),
            llama_gguf().into(),
            "--prompts".into(),
            good_prompts(&dir).into(),
            "--out".into(),
            out.clone().into(),
        ],
        &[],
    );
    expect(&o, INPUT, &[&s(&out), "cannot write"]);
}

/// An unknown hook name: exit 2, names it and suggests near names.
#[test]
fn usage_unknown_hook() {
    let dir = case_dir("usage_unknown_hook");
    let o = run_model(&llama_gguf(), &good_prompts(&dir), &dir, &["--capture", "blocks.0.hook_resid_pots"]);
    expect(&o, USAGE, &["hook_resid_pots", "hook_resid_post"]);
}

/// `tasks` without a lens, probe or `lens --mc` run: exit 2, names the three options, writes
/// nothing.
#[test]
fn usage_tasks_without_task_runs() {
    let dir = case_dir("usage_tasks_without_task_runs");
    let out = dir.join("tasks");
    let o = sinkscope(["tasks".to_string(), "--out".into(), s(&out)], &[]);
    expect(&o, USAGE, &["--lens", "--probe", "--mc"]);
    assert!(!out.join("tasks.html").exists() && !out.join("tasks.csv").exists());
}

/// A hook past the last block: exit 2, names it.
#[test]
fn usage_block_out_of_range() {
    let dir = case_dir("usage_block_out_of_range");
    let o = run_model(&llama_gguf(), &good_prompts(&dir), &dir, &["--capture", "blocks.7.hook_resid_post"]);
    expect(&o, USAGE, &["blocks.7"]);
}

/// A malformed edit: exit 2, names it.
#[test]
fn usage_bad_edit() {
    let dir = case_dir("usage_bad_edit");
    let o =
        run_model(&llama_gguf(), &good_prompts(&dir), &dir, &["--edit", "blocks.0.hook_mlp_out:pos=x:zero"]);
    expect(&o, USAGE, &["pos=x"]);
}

// ------------------------------------------------------------------------------------------------
// Memory guard

/// An injected small "available memory" refuses the run before loading (exit 6) with the
/// estimate and the available amount; `--force` runs anyway.
#[test]
fn memory_guard_refuses_and_force_overrides() {
    let dir = case_dir("memory_guard");
    let prompts = good_prompts(&dir);
    let args = |force: bool| {
        let mut a: Vec<OsString> = vec![
            "run".into(),
            llama_gguf().into(),
            "--prompts".into(),
            prompts.clone().into(),
            "--out".into(),
            dir.join("out").into(),
        ];
        if force {
            a.push("--force".into());
        }
        a
    };
    let o = sinkscope(args(false), &[("SINKSCOPE_AVAILABLE_MEMORY", "100000")]);
    expect(
        &o,
        MEMORY,
        &[&s(&llama_gguf()), "needs about", "available", "SINKSCOPE_AVAILABLE_MEMORY", "--force"],
    );
    assert!(!dir.join("out/manifest.json").exists());
    let o = sinkscope(args(true), &[("SINKSCOPE_AVAILABLE_MEMORY", "100000")]);
    expect(&o, OK, &["wrote"]);
}

/// A malformed override value is a usage error naming the variable.
#[test]
fn memory_guard_bad_override() {
    let dir = case_dir("memory_guard_bad_override");
    let o = sinkscope(
        [
            OsString::from("run"),
            llama_gguf().into(),
            "--prompts".into(),
            good_prompts(&dir).into(),
            "--out".into(),
            dir.join("out").into(),
        ],
        &[("SINKSCOPE_AVAILABLE_MEMORY", "lots")],
    );
    expect(&o, USAGE, &["SINKSCOPE_AVAILABLE_MEMORY", "lots"]);
}

// ------------------------------------------------------------------------------------------------
// Hardening (issue 11): pipes and terminals, output safety, input bounds, options, messages.

/// `sinkscope ARGS` with stdout and stderr as given; the exit code and what stderr held (when
/// captured).
fn sinkscope_io(args: &[OsString], stdout: std::process::Stdio, stderr: std::process::Stdio) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sinkscope"));
    cmd.args(args).env_remove("SINKSCOPE_AVAILABLE_MEMORY").stdout(stdout).stderr(stderr);
    let out = cmd.output().unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// The write end of a pipe whose read end is already closed: the first write to it fails with
/// EPIPE, whatever the timing (both ends close-on-exec, so no other child keeps a reader).
fn closed_pipe() -> std::process::Stdio {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fresh descriptors; each is owned once below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fds[0] is ours and closed once.
    unsafe { libc::close(fds[0]) };
    // SAFETY: fds[1] is ours; the File owns it from here.
    std::process::Stdio::from(unsafe { std::fs::File::from_raw_fd(fds[1]) })
}

fn dev_full() -> std::process::Stdio {
    std::process::Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// A finished profile run of the fixture in `out` (no report unless `report`).
fn profile_args(prompts: &Path, out: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut a = vec![
        OsString::from("profile"),
        llama_gguf().into(),
        "--prompts".into(),
        prompts.into(),
        "--quiet".into(),
        "--out".into(),
        out.into(),
    ];
    a.extend(extra.iter().map(OsString::from));
    a
}

/// Every command that prints to stdout: a closed pipe (`| head -c1`) ends it quietly with exit
/// 0; a full device (`> /dev/full`) is exit 3 naming stdout; never a panic.
#[test]
fn stdout_closed_pipe_and_full_device() {
    let dir = case_dir("stdout_closed_pipe_and_full_device");
    let prompts = good_prompts(&dir);
    let m = s(&llama_gguf());
    let p = s(&prompts);
    let runs = s(&dir.join("runs"));
    let commands: Vec<Vec<String>> = vec![
        vec!["inspect".into(), m.clone()],
        vec!["inspect".into(), m.clone(), "--json".into()],
        vec!["tokenize".into(), m.clone(), "--text".into(), "Hello there".into()],
        vec!["tokenize".into(), m.clone(), "--text".into(), "Hello there".into(), "--json".into()],
        vec!["data".into(), "list".into(), "--data-dir".into(), s(&dir)],
        vec!["data".into(), "list".into(), "--json".into(), "--data-dir".into(), s(&dir)],
        vec![
            "profile".into(),
            m.clone(),
            "--prompts".into(),
            p.clone(),
            "--quiet".into(),
            "--force".into(),
            "--out".into(),
            runs.clone(),
        ],
        vec![
            "lens".into(),
            m.clone(),
            "--prompts".into(),
            p.clone(),
            "--quiet".into(),
            "--force".into(),
            "--no-report".into(),
            "--out".into(),
            s(&dir.join("lens")),
        ],
        vec![
            "ablate".into(),
            m.clone(),
            "--prompts".into(),
            p.clone(),
            "--layers".into(),
            "1".into(),
            "--scales".into(),
            "1,0".into(),
            "--quiet".into(),
            "--force".into(),
            "--no-report".into(),
            "--out".into(),
            s(&dir.join("ablate")),
        ],
        vec!["compare".into(), runs.clone(), "--force".into(), "--out".into(), s(&dir.join("cmp"))],
        vec![
            "tasks".into(),
            "--profile".into(),
            runs.clone(),
            "--lens".into(),
            s(&dir.join("lens")),
            "--force".into(),
            "--out".into(),
            s(&dir.join("tasks")),
        ],
    ];
    for args in &commands {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let o = sinkscope_io(&args, closed_pipe(), std::process::Stdio::piped());
        eprintln!("[catalogue] closed pipe {args:?} -> exit {}: {}", o.code, o.stderr.trim());
        assert_eq!(o.code, OK, "{args:?} on a closed pipe: {}", o.stderr);
        assert!(o.stderr.is_empty() || !o.stderr.contains("error"), "{args:?}: {}", o.stderr);
        let o = sinkscope_io(&args, dev_full(), std::process::Stdio::piped());
        expect(&o, INPUT, &["stdout: cannot write", "No space left"]);
    }
}

/// stderr unwritable (closed pipe or full device): the error still sets its exit code, and
/// progress, notes and warnings never panic.
#[test]
fn stderr_unwritable() {
    let dir = case_dir("stderr_unwritable");
    let missing = dir.join("missing.gguf");
    for stderr in [closed_pipe(), dev_full()] {
        let o = sinkscope_io(&os(&["inspect", &s(&missing)]), std::process::Stdio::piped(), stderr);
        assert_eq!(o.code, MODEL);
    }
    let prompts = good_prompts(&dir);
    let args = profile_args(&prompts, &dir.join("out"), &["--no-report", "--force", "--threads", "100000"]);
    let args: Vec<OsString> = args.into_iter().filter(|a| a != "--quiet").collect();
    let o = sinkscope_io(&args, std::process::Stdio::piped(), dev_full());
    assert_eq!(o.code, OK, "{}", o.stdout);
}

/// `profile --prompts D/prompts.jsonl --out D` would overwrite its input: refused before any
/// work (exit 3, naming both), the input intact.
#[test]
fn output_would_overwrite_input() {
    let dir = case_dir("output_would_overwrite_input");
    let prompts = good_prompts(&dir);
    let before = std::fs::read(&prompts).unwrap();
    let o = sinkscope(profile_args(&prompts, &dir, &[]), &[]);
    expect(&o, INPUT, &[&s(&prompts), "would be overwritten", "--out"]);
    assert_eq!(std::fs::read(&prompts).unwrap(), before);
    // Spelled differently (through `..`), same refusal.
    let odd = dir.join("x/../prompts.jsonl");
    std::fs::create_dir_all(dir.join("x")).unwrap();
    let o = sinkscope(profile_args(&odd, &dir, &["--force"]), &[]);
    expect(&o, INPUT, &["would be overwritten"]);
    assert_eq!(std::fs::read(&prompts).unwrap(), before);
}

/// A finished run is not replaced without --force (exit 3 naming the folder and both ways
/// out); --force replaces it and removes its stale outputs (the old report with --no-report).
#[test]
fn earlier_run_needs_force_and_leaves_nothing_stale() {
    let dir = case_dir("earlier_run_needs_force");
    let prompts = good_prompts(&dir);
    let out = dir.join("out");
    assert_eq!(sinkscope(profile_args(&prompts, &out, &[]), &[]).code, OK);
    assert!(out.join("report.html").exists());
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let o = sinkscope(profile_args(&prompts, &out, &["--no-report", "--epsilon", "0.5"]), &[]);
    expect(&o, INPUT, &[&s(&out), "earlier sinkscope profile run", "--force", "--resume"]);
    assert!(out.join("report.html").exists());
    let o = sinkscope(profile_args(&prompts, &out, &["--no-report", "--epsilon", "0.5", "--force"]), &[]);
    expect(&o, OK, &[]);
    assert!(!out.join("report.html").exists() && !out.join("plots").exists(), "stale report left");
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
    // `run` into the same folder would mix kinds: refused; with --force the profile goes.
    let o = run_model(&llama_gguf(), &prompts, &dir, &[]);
    expect(&o, INPUT, &["earlier sinkscope profile run"]);
    let o = run_model(&llama_gguf(), &prompts, &dir, &["--force"]);
    expect(&o, OK, &["wrote"]);
    assert!(!out.join("metrics.json").exists() && !out.join("prompts.jsonl").exists());
}

/// `run` never overwrites a manifest.json (or anything else) it did not write, even with
/// --force.
#[test]
fn foreign_file_is_never_overwritten() {
    let dir = case_dir("foreign_file_is_never_overwritten");
    let prompts = good_prompts(&dir);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("manifest.json"), "{\"my\": \"data\"}").unwrap();
    for extra in [&[][..], &["--force"][..]] {
        let o = run_model(&llama_gguf(), &prompts, &dir, extra);
        expect(&o, INPUT, &[&s(&out.join("manifest.json")), "not written by sinkscope", "never overwritten"]);
    }
    assert_eq!(std::fs::read_to_string(out.join("manifest.json")).unwrap(), "{\"my\": \"data\"}");
}

/// Symbolic links planted inside --out are never followed: not as a file the run writes
/// (refused as not ours, target intact), not as a folder of a resumed run, and --force
/// removes the link, never its target.
#[test]
fn planted_symlinks_are_not_followed() {
    let dir = case_dir("planted_symlinks");
    let prompts = good_prompts(&dir);
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("prompts.jsonl")).unwrap();
    let o = sinkscope(profile_args(&prompts, &out, &["--force"]), &[]);
    expect(&o, INPUT, &[&s(&out.join("prompts.jsonl")), "not written by sinkscope"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    // An earlier run whose activation folder was replaced by a link to elsewhere.
    let o = run_model(&llama_gguf(), &prompts, &dir, &["--force"]);
    expect(&o, OK, &[]);
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("river.safetensors"), "precious").unwrap();
    std::fs::remove_file(out.join("prompts.jsonl")).ok();
    std::fs::remove_dir_all(out.join("activations")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("activations")).unwrap();
    let o = run_model(&llama_gguf(), &prompts, &dir, &["--force"]);
    expect(&o, OK, &[]);
    assert_eq!(std::fs::read_to_string(elsewhere.join("river.safetensors")).unwrap(), "precious");
    assert!(!std::fs::symlink_metadata(out.join("activations")).unwrap().file_type().is_symlink());

    // A resumed profile whose prompts.jsonl became a link: refused.
    let pout = dir.join("pout");
    assert_eq!(sinkscope(profile_args(&prompts, &pout, &["--no-report"]), &[]).code, OK);
    std::fs::remove_file(pout.join("prompts.jsonl")).unwrap();
    std::os::unix::fs::symlink(&victim, pout.join("prompts.jsonl")).unwrap();
    let o = sinkscope(profile_args(&prompts, &pout, &["--no-report", "--resume"]), &[]);
    expect(&o, INPUT, &[&s(&pout.join("prompts.jsonl")), "symbolic link"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

/// A folder in use by a live run is refused, naming the holder; a lock left by a process
/// that is gone is taken over.
#[test]
fn concurrent_run_is_refused() {
    let dir = case_dir("concurrent_run_is_refused");
    let prompts = good_prompts(&dir);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // This test process is alive: its identity in the lock stands for a running sinkscope.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let start = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(19).unwrap().to_string();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let lock = out.join(".sinkscope.lock");
    let pid = std::process::id();
    std::fs::write(&lock, format!("pid {pid} start {start} host {host}\nsinkscope profile ...\n")).unwrap();
    let o = sinkscope(profile_args(&prompts, &out, &["--no-report"]), &[]);
    expect(&o, INPUT, &[&s(&lock), "in use by another sinkscope run", &format!("pid {pid}")]);
    assert!(lock.exists());
    std::fs::write(&lock, format!("pid {pid} start 1 host {host}\nsinkscope profile ...\n")).unwrap();
    let o = sinkscope(profile_args(&prompts, &out, &["--no-report"]), &[]);
    expect(&o, OK, &[]);
    assert!(!lock.exists(), "the lock is released at the end");
}

/// Two runs started together on one folder: exactly one of them gets it.
#[test]
fn two_runs_at_once_one_wins() {
    let dir = case_dir("two_runs_at_once");
    let lines: String = (0..300)
        .map(|i| format!("{{\"id\": \"p{i}\", \"text\": \"The quiet river number {i}.\"}}\n"))
        .collect();
    let prompts = dir.join("many.jsonl");
    std::fs::write(&prompts, lines).unwrap();
    let out = dir.join("out");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_sinkscope"))
            .args(profile_args(&prompts, &out, &["--no-report", "--threads", "1"]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut codes = [a.status.code().unwrap(), b.status.code().unwrap()];
    codes.sort();
    let errs = format!("{}{}", String::from_utf8_lossy(&a.stderr), String::from_utf8_lossy(&b.stderr));
    assert_eq!(codes, [OK, INPUT], "{errs}");
    assert!(errs.contains("in use by another sinkscope run") || errs.contains("earlier sinkscope"), "{errs}");
    let n = std::fs::read_to_string(out.join("prompts.jsonl")).unwrap().lines().count();
    assert_eq!(n, 300, "interleaved or lost lines");
}

/// A UTF-8 byte-order mark is skipped: the file is still JSONL (ids from the JSON), and the
/// manifest records it.
#[test]
fn prompts_with_byte_order_mark() {
    let dir = case_dir("prompts_with_byte_order_mark");
    let p = dir.join("bom.jsonl");
    std::fs::write(&p, b"\xEF\xBB\xBF{\"id\": \"river\", \"text\": \"The quiet river carried boats.\"}\n")
        .unwrap();
    let out = dir.join("out");
    let o = sinkscope(profile_args(&p, &out, &["--no-report"]), &[]);
    expect(&o, OK, &["byte-order mark"]);
    let line = std::fs::read_to_string(out.join("prompts.jsonl")).unwrap();
    assert!(line.starts_with("{\"id\":\"river\""), "{line}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["data"]["utf8_bom_skipped"], true);
    let (o, p) = run_prompts("prompts_utf16", b"\xFF\xFEh\x00i\x00\n\x00", &[]);
    expect(&o, INPUT, &[&s(&p), "UTF-16"]);
}

/// `--prompts /dev/zero` ends at the line cap (exit 3) instead of growing until allocation
/// fails; `--limit` stops the parse, so a broken line after it is never read as a prompt.
#[test]
fn prompt_reader_bounds() {
    let dir = case_dir("prompt_reader_bounds");
    let o = run_model(&llama_gguf(), Path::new("/dev/zero"), &dir, &[]);
    expect(&o, INPUT, &["/dev/zero", "line 1", "longer than 4194304 bytes"]);
    let p = dir.join("p.jsonl");
    std::fs::write(&p, "{\"id\": \"a\", \"text\": \"The quiet river.\"}\n{broken\n").unwrap();
    let o = sinkscope(profile_args(&p, &dir.join("out"), &["--no-report", "--limit", "1"]), &[]);
    expect(&o, OK, &[]);
    let o = sinkscope(profile_args(&p, &dir.join("out2"), &["--no-report"]), &[]);
    expect(&o, INPUT, &[&s(&p), "line 2", "invalid JSON"]);
}

/// Strings from a model file reach the terminal escaped: an escape sequence in the
/// architecture (an error message) and in the BOS token (`inspect`) appears as `\u{1b}`.
#[test]
fn model_strings_are_escaped() {
    let mut g = Gguf::load(&llama_gguf());
    *g.kv_mut("general.architecture") = string_kv("general.architecture", b"evil\x1b[31m\x07");
    let (o, _) = run_gguf("escaped_architecture", &g);
    expect(&o, MODEL, &["unknown architecture 'evil\\u{1b}[31m\\u{7}'"]);
    assert!(!o.stderr.contains('\u{1b}') && !o.stderr.contains('\u{7}'), "{:?}", o.stderr);

    let f = GgufFile::open(&llama_gguf()).unwrap();
    let bos = match f.get("tokenizer.ggml.bos_token_id") {
        Some(GgufValue::U32(x)) => *x as usize,
        _ => 1,
    };
    let mut tokens = f.get("tokenizer.ggml.tokens").unwrap().clone();
    if let GgufValue::Array(a) = &mut tokens {
        a.values[bos] = GgufValue::String("<s>\u{1b}]0;owned\u{7}\u{9b}2J".into());
    }
    let mut g = Gguf::load(&llama_gguf());
    let kv = g.kv_mut("tokenizer.ggml.tokens");
    kv.payload.clear();
    enc_payload(&mut kv.payload, &tokens);
    let dir = case_dir("escaped_bos_token");
    let m = g.write(&dir);
    let o = sinkscope(os(&["inspect", &s(&m)]), &[]);
    expect(&o, OK, &[]);
    assert!(o.stdout.contains("<s>\\u{1b}]0;owned\\u{7}\\u{9b}2J"), "{}", o.stdout);
    assert!(!o.stdout.chars().any(|c| c.is_control() && c != '\n'), "{:?}", o.stdout);
}

/// An id too long for a file name (or with a slash) gets a bounded, collision-free file name
/// recorded in the manifest; the run completes.
#[test]
fn long_and_odd_ids_get_safe_file_names() {
    let long = "x".repeat(400);
    let content = format!(
        "{{\"id\": \"{long}\", \"text\": \"The quiet river.\"}}\n{{\"id\": \"a/b\", \"text\": \"A boat.\"}}\n{{\"id\": \"a_b\", \"text\": \"A mill.\"}}\n"
    );
    let (o, p) = run_prompts("long_and_odd_ids", content.as_bytes(), &[]);
    expect(&o, OK, &["wrote"]);
    let out = p.parent().unwrap().join("out");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let files: Vec<&str> =
        m["prompts"].as_array().unwrap().iter().map(|r| r["file"].as_str().unwrap()).collect();
    assert_eq!(files.len(), 3);
    for f in &files {
        assert!(out.join(f).is_file() && f.len() < 130, "{f}");
    }
    assert_eq!(files[2], "activations/a_b.safetensors");
    assert_ne!(files[1], files[2]);
}

/// `--resume` does not care how the prompt file's path is spelled.
#[test]
fn resume_ignores_path_spelling() {
    let dir = case_dir("resume_ignores_path_spelling");
    good_prompts(&dir);
    let run = |spelling: &str, extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sinkscope"));
        cmd.current_dir(&dir).args([
            "profile",
            &s(&llama_gguf()),
            "--prompts",
            spelling,
            "--quiet",
            "--no-report",
        ]);
        cmd.args(["--out", "out"]).args(extra);
        let o = cmd.output().unwrap();
        (o.status.code().unwrap(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    assert_eq!(run("prompts.jsonl", &[]).0, OK);
    let (code, err) = run("./prompts.jsonl", &["--resume"]);
    assert_eq!(code, OK, "{err}");
    let (code, err) = run(&s(&dir.join("prompts.jsonl")), &["--resume"]);
    assert_eq!(code, OK, "{err}");
}

/// Options are checked before any model work, with their documented ranges (exit 2); a huge
/// --threads is capped with a note, never a hang.
#[test]
fn options_checked_up_front() {
    let dir = case_dir("options_checked_up_front");
    let prompts = good_prompts(&dir);
    let out = dir.join("out");
    // A model path that does not exist: an option error must come first.
    let missing = dir.join("missing.gguf");
    let with = |args: &[&str]| {
        let mut a = os(args);
        a.extend([OsString::from("--prompts"), prompts.clone().into(), "--out".into(), out.clone().into()]);
        sinkscope(a, &[])
    };
    let cases: [(&[&str], &str); 6] = [
        (&["profile", &s(&missing), "--epsilon", "1.5"], "--epsilon must be in (0, 1)"),
        (&["profile", &s(&missing), "--epsilon", "0"], "--epsilon must be in (0, 1)"),
        (&["profile", &s(&missing), "--pack-tokens", "0"], "--pack-tokens must be at least 1"),
        (
            &["ablate", &s(&missing), "--scales", "1,1e38"],
            "--scales: 100000000000000000000000000000000000000 is out of range",
        ),
        (&["ablate", &s(&missing), "--epsilon", "2"], "--epsilon must be in (0, 1)"),
        (&["probe", &s(&missing)], "has no label"),
    ];
    for (args, needle) in cases {
        expect(&with(args), USAGE, &[needle]);
    }
    assert!(!out.exists(), "nothing written for a bad option");
    let o = with(&["profile", &s(&llama_gguf()), "--threads", "1000000", "--no-report"]);
    expect(&o, OK, &["--threads 1000000 capped to"]);
}

/// The memory guard honours the address-space limit (`ulimit -v`): the demo model under a
/// 250 MiB RLIMIT_AS is refused before loading (exit 6, naming RLIMIT_AS); forced under
/// 190 MiB, the allocation or thread start that fails is reported with exit 6 and a message,
/// never an abort (exit 134) or a panic (exit 101).
#[test]
fn memory_guard_address_space_limit() {
    use std::os::unix::process::CommandExt;
    let model = fixtures().join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(model.exists(), "{} is missing: scripts/test.sh fetches it", model.display());
    let dir = case_dir("memory_guard_address_space_limit");
    let prompts = good_prompts(&dir);
    let run = |mib: u64, extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sinkscope"));
        cmd.args([
            "profile",
            &s(&model),
            "--prompts",
            &s(&prompts),
            "--quiet",
            "--no-report",
            "--threads",
            "1",
        ]);
        cmd.arg("--out").arg(dir.join("out")).args(extra).env_remove("SINKSCOPE_AVAILABLE_MEMORY");
        let limit = libc::rlimit { rlim_cur: mib << 20, rlim_max: mib << 20 };
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || match libc::setrlimit(libc::RLIMIT_AS, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            });
        }
        let out = cmd.output().unwrap();
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        }
    };
    // 250 MiB: the guard's estimate (about 157 MiB on top of what the process maps before it
    // decides) does not fit.
    expect(&run(250, &[]), MEMORY, &["not enough memory", "RLIMIT_AS", "--force"]);
    // Forced, the run needs about 215-250 MiB of address space, depending on the machine
    // (SmolLM2's weights stay in their 98 MB Q4_1 form): 190 MiB fails on every machine, at an
    // allocation or at the start of the threads, with exit 6 and a message, never an abort.
    expect(&run(190, &["--force"]), MEMORY, &["not enough memory"]);
}

#[test]
fn threads_that_cannot_start() {
    // Thread stacks of 2^62 bytes exceed any address space: rayon's pool cannot start. Before,
    // rayon panicked at the first parallel loop (exit 101).
    let model = fixtures().join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(model.exists(), "{} is missing: scripts/test.sh fetches it", model.display());
    let dir = case_dir("threads_that_cannot_start");
    let prompts = good_prompts(&dir);
    let args = ["profile", &s(&model), "--prompts", &s(&prompts), "--quiet", "--no-report", "--out"];
    let mut args: Vec<OsString> = args.iter().map(OsString::from).collect();
    args.push(dir.join("out").into());
    let o = sinkscope(args, &[("RUST_MIN_STACK", "4611686018427387904")]);
    expect(&o, MEMORY, &["not enough memory: starting", "worker threads failed", "ulimit -v"]);
}
