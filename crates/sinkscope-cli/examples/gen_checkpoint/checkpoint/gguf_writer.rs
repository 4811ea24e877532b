//! A streaming GGUF v3 writer: the header (metadata and tensor infos, with offsets computed
//! from the tensors' sizes) first, then each tensor's bytes as the caller produces them.

use std::io::{self, Write};

/// Data alignment (llama.cpp's default, `general.alignment` absent).
pub const ALIGNMENT: u64 = 32;

/// A metadata value.
pub enum Value {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    I32Array(Vec<i32>),
}

/// A tensor's header entry.
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `ne[0]` = the row length.
    pub ne: Vec<u64>,
    pub ggml_type: u32,
    pub n_bytes: u64,
}

fn string(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn value(w: &mut impl Write, v: &Value) -> io::Result<()> {
    match v {
        Value::U32(x) => {
            w.write_all(&4u32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        Value::F32(x) => {
            w.write_all(&6u32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        Value::Bool(x) => {
            w.write_all(&7u32.to_le_bytes())?;
            w.write_all(&[u8::from(*x)])
        }
        Value::Str(s) => {
            w.write_all(&8u32.to_le_bytes())?;
            string(w, s)
        }
        Value::StrArray(a) => {
            w.write_all(&9u32.to_le_bytes())?;
            w.write_all(&8u32.to_le_bytes())?;
            w.write_all(&(a.len() as u64).to_le_bytes())?;
            a.iter().try_for_each(|s| string(w, s))
        }
        Value::I32Array(a) => {
            w.write_all(&9u32.to_le_bytes())?;
            w.write_all(&5u32.to_le_bytes())?;
            w.write_all(&(a.len() as u64).to_le_bytes())?;
            a.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
    }
}

/// `n` rounded up to the alignment.
pub fn aligned(n: u64) -> u64 {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// Writes the header and the padding up to the data section; returns the header's length.
/// The tensors must then be written in `tensors`' order, each followed by
/// [`pad`]`(n_bytes)`.
pub fn write_header(w: &mut impl Write, kv: &[(String, Value)], tensors: &[TensorInfo]) -> io::Result<u64> {
    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        string(&mut head, k)?;
        value(&mut head, v)?;
    }
    let mut offset = 0u64;
    for t in tensors {
        string(&mut head, &t.name)?;
        head.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
        t.ne.iter().for_each(|n| head.extend_from_slice(&n.to_le_bytes()));
        head.extend_from_slice(&t.ggml_type.to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        offset += aligned(t.n_bytes);
    }
    let len = aligned(head.len() as u64);
    head.resize(len as usize, 0);
    w.write_all(&head)?;
    Ok(len)
}

/// The zero padding after a tensor of `n_bytes`.
pub fn pad(w: &mut impl Write, n_bytes: u64) -> io::Result<()> {
    let n = aligned(n_bytes) - n_bytes;
    w.write_all(&vec![0u8; n as usize])
}
