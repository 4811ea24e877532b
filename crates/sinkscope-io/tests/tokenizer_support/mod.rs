//! Shared helpers of the tokenizer integration tests: fixture paths, the `tokenizer_cases.json`
//! format, and a minimal test-only GGUF metadata reader that fills a [`GgufVocab`] (kept separate
//! from the crate's own GGUF parser on purpose, so the tokenizer is checked independently).

#![allow(dead_code)]

use std::collections::HashMap;
use std::error::Error;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sinkscope_io::tokenizer::GgufVocab;

pub type TestResult<T = ()> = Result<T, Box<dyn Error>>;

/// `<workspace>/tests/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// `<workspace>`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One entry of `tokenizer_cases.json`.
#[derive(Debug, Deserialize)]
pub struct Case {
    pub text: String,
    pub ids: Vec<u32>,
    pub ids_with_special_tokens: Vec<u32>,
    pub tokens: Vec<String>,
    pub decoded: String,
    #[serde(default)]
    pub llamacpp_ids: Option<Vec<u32>>,
    #[serde(default)]
    pub llamacpp_agrees: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct CaseFile {
    cases: Vec<Case>,
}

/// The cases of `tests/fixtures/<folder>/tokenizer_cases.json`.
pub fn load_cases(folder: &str) -> TestResult<Vec<Case>> {
    let path = fixtures().join(folder).join("tokenizer_cases.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: CaseFile = serde_json::from_str(&text)?;
    Ok(file.cases)
}

/// A GGUF metadata value (only what tokenizer metadata needs is kept precisely).
#[derive(Debug, Clone)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

fn read_exact<const N: usize>(r: &mut impl Read) -> TestResult<[u8; N]> {
    let mut buf = [0u8; N];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

fn read_u32(r: &mut impl Read) -> TestResult<u32> {
    Ok(u32::from_le_bytes(read_exact::<4>(r)?))
}

fn read_u64(r: &mut impl Read) -> TestResult<u64> {
    Ok(u64::from_le_bytes(read_exact::<8>(r)?))
}

fn read_string(r: &mut impl Read) -> TestResult<String> {
    let len = usize::try_from(read_u64(r)?)?;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(String::from_utf8(buf)?)
}

fn read_value(r: &mut impl Read, ty: u32) -> TestResult<Value> {
    Ok(match ty {
        0 => Value::Int(i64::from(read_exact::<1>(r)?[0])),
        1 => Value::Int(i64::from(i8::from_le_bytes(read_exact::<1>(r)?))),
        2 => Value::Int(i64::from(u16::from_le_bytes(read_exact::<2>(r)?))),
        3 => Value::Int(i64::from(i16::from_le_bytes(read_exact::<2>(r)?))),
        4 => Value::Int(i64::from(read_u32(r)?)),
        5 => Value::Int(i64::from(i32::from_le_bytes(read_exact::<4>(r)?))),
        6 => Value::Float(f64::from(f32::from_le_bytes(read_exact::<4>(r)?))),
        7 => Value::Bool(read_exact::<1>(r)?[0] != 0),
        8 => Value::Str(read_string(r)?),
        9 => {
            let item_ty = read_u32(r)?;
            let n = usize::try_from(read_u64(r)?)?;
            let mut items = Vec::with_capacity(n.min(1 << 20));
            for _ in 0..n {
                items.push(read_value(r, item_ty)?);
            }
            Value::Array(items)
        }
        10 => Value::Int(i64::try_from(read_u64(r)?)?),
        11 => Value::Int(i64::from_le_bytes(read_exact::<8>(r)?)),
        12 => Value::Float(f64::from_le_bytes(read_exact::<8>(r)?)),
        other => return Err(format!("unknown GGUF value type {other}").into()),
    })
}

/// All metadata key/values of a GGUF file (v2/v3, little-endian); tensor data is not read.
pub fn read_gguf_metadata(path: &Path) -> TestResult<HashMap<String, Value>> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut r = BufReader::new(file);
    if &read_exact::<4>(&mut r)? != b"GGUF" {
        return Err(format!("{}: not a GGUF file", path.display()).into());
    }
    let version = read_u32(&mut r)?;
    if !(2..=3).contains(&version) {
        return Err(format!("{}: GGUF version {version}", path.display()).into());
    }
    let _n_tensors = read_u64(&mut r)?;
    let n_kv = read_u64(&mut r)?;
    let mut kv = HashMap::new();
    for _ in 0..n_kv {
        let key = read_string(&mut r)?;
        let ty = read_u32(&mut r)?;
        let value = read_value(&mut r, ty)?;
        kv.insert(key, value);
    }
    Ok(kv)
}

fn strings(kv: &HashMap<String, Value>, key: &str) -> TestResult<Vec<String>> {
    let Some(v) = kv.get(key) else {
        return Ok(Vec::new());
    };
    let items = v.as_array().ok_or_else(|| format!("{key}: not an array"))?;
    items
        .iter()
        .map(|i| i.as_str().map(str::to_string).ok_or_else(|| format!("{key}: not a string array").into()))
        .collect()
}

/// Builds the [`GgufVocab`] of a GGUF file with the test-only reader.
pub fn gguf_vocab_from_file(path: &Path) -> TestResult<GgufVocab> {
    let kv = read_gguf_metadata(path)?;
    let id = |key: &str| -> TestResult<Option<u32>> {
        match kv.get(key) {
            None => Ok(None),
            Some(v) => {
                let i = v.as_int().ok_or_else(|| format!("{key}: not an integer"))?;
                Ok(Some(u32::try_from(i)?))
            }
        }
    };
    let flag = |key: &str| kv.get(key).and_then(Value::as_bool);
    let token_types = match kv.get("tokenizer.ggml.token_type") {
        None => Vec::new(),
        Some(v) => v
            .as_array()
            .ok_or("tokenizer.ggml.token_type: not an array")?
            .iter()
            .map(|t| -> TestResult<i32> { Ok(i32::try_from(t.as_int().ok_or("token_type: not an int")?)?) })
            .collect::<TestResult<Vec<i32>>>()?,
    };
    Ok(GgufVocab {
        model: kv
            .get("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .ok_or("tokenizer.ggml.model missing")?
            .to_string(),
        pre: kv.get("tokenizer.ggml.pre").and_then(Value::as_str).map(str::to_string),
        tokens: strings(&kv, "tokenizer.ggml.tokens")?,
        merges: strings(&kv, "tokenizer.ggml.merges")?,
        token_types,
        bos_id: id("tokenizer.ggml.bos_token_id")?,
        eos_id: id("tokenizer.ggml.eos_token_id")?,
        unk_id: id("tokenizer.ggml.unknown_token_id")?,
        pad_id: id("tokenizer.ggml.padding_token_id")?,
        add_bos: flag("tokenizer.ggml.add_bos_token"),
        add_eos: flag("tokenizer.ggml.add_eos_token"),
    })
}
