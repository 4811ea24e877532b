//! Random-weight Llama-shaped checkpoints with a planted massive activation, written as a
//! K-quant GGUF or as bf16 sharded safetensors, streaming: one row in memory at a time.

pub mod gguf_writer;
pub mod kquant;
pub mod model;
pub mod rng;
pub mod vocab;

use gguf_writer::{TensorInfo, Value};
use kquant::Quant;
use model::{fill_row, hf_row_of_gguf, plant_direction, tensors, Kind, Shape, Tensor};
use serde_json::json;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The GGUF quantisation mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufMix {
    /// llama.cpp's Q4_K_M: Q4_K, with Q6_K for the output matrix and for `attn_v` and
    /// `ffn_down` in the layers `use_more_bits` picks.
    Q4KM,
    /// A Q2_K mix close to llama.cpp's: Q2_K, with Q4_K for `attn_v` (as llama.cpp for GQA
    /// models) and for `ffn_down` (llama.cpp: Q3_K), Q6_K for the output matrix.
    Q2K,
}

impl GgufMix {
    /// `general.file_type` (llama_ftype).
    fn file_type(self) -> u32 {
        match self {
            GgufMix::Q4KM => 15,
            GgufMix::Q2K => 10,
        }
    }
}

/// llama.cpp's `use_more_bits(i_layer, n_layers)`.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The stored type of tensor `t` in mix `mix`.
pub fn quant_of(s: &Shape, t: &Tensor, mix: GgufMix) -> Quant {
    if t.is_norm() {
        return Quant::F32;
    }
    match (mix, t.kind) {
        (_, Kind::Output) => Quant::Q6K,
        (GgufMix::Q4KM, Kind::V | Kind::Down) if use_more_bits(t.layer, s.n_layers) => Quant::Q6K,
        (GgufMix::Q4KM, _) => Quant::Q4K,
        (GgufMix::Q2K, Kind::V | Kind::Down) => Quant::Q4K,
        (GgufMix::Q2K, _) => Quant::Q2K,
    }
}

/// What the plant is, in words and as JSON (also stored in the files).
pub fn plant_json(s: &Shape, seed: u64) -> serde_json::Value {
    json!({
        "shape": s.name,
        "seed": seed,
        "bos_id": s.bos_id(),
        "planted_block_0_based": s.plant.block,
        "reported_block": s.plant.block + 1,
        "massive_dim": s.plant.dim,
        "mlp_unit": s.plant.unit,
    })
}

/// Bytes of tensor `t` in the GGUF.
fn gguf_bytes(s: &Shape, t: &Tensor, mix: GgufMix) -> u64 {
    (t.rows * quant_of(s, t, mix).row_bytes(t.cols)) as u64
}

/// The file size a GGUF of this shape and mix will have, header excluded.
pub fn gguf_data_size(s: &Shape, mix: GgufMix) -> u64 {
    tensors(s).iter().map(|t| gguf_writer::aligned(gguf_bytes(s, t, mix))).sum()
}

/// Writes the GGUF; `progress` is called after each tensor with (bytes written, total).
pub fn write_gguf(
    s: &Shape,
    seed: u64,
    mix: GgufMix,
    path: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> io::Result<()> {
    let (toks, types) = vocab::tokens(s);
    let a = |k: &str| format!("llama.{k}");
    let kv: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::Str("llama".into())),
        ("general.name".into(), Value::Str(format!("sinkscope random {}", s.name))),
        (
            "general.description".into(),
            Value::Str(format!("random weights, planted massive activation: {}", plant_json(s, seed))),
        ),
        ("general.file_type".into(), Value::U32(mix.file_type())),
        (a("context_length"), Value::U32(s.context as u32)),
        (a("embedding_length"), Value::U32(s.d_model as u32)),
        (a("block_count"), Value::U32(s.n_layers as u32)),
        (a("feed_forward_length"), Value::U32(s.d_mlp as u32)),
        (a("attention.head_count"), Value::U32(s.n_heads as u32)),
        (a("attention.head_count_kv"), Value::U32(s.n_kv_heads as u32)),
        (a("rope.freq_base"), Value::F32(s.rope_theta as f32)),
        (a("rope.dimension_count"), Value::U32(s.d_head() as u32)),
        (a("attention.layer_norm_rms_epsilon"), Value::F32(s.eps as f32)),
        (a("vocab_size"), Value::U32(s.vocab as u32)),
        ("tokenizer.ggml.model".into(), Value::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::Str("llama-bpe".into())),
        ("tokenizer.ggml.tokens".into(), Value::StrArray(toks)),
        ("tokenizer.ggml.token_type".into(), Value::I32Array(types)),
        ("tokenizer.ggml.merges".into(), Value::StrArray(vocab::merges())),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(s.bos_id() as u32)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(s.eos_id() as u32)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)),
    ];
    let ts = tensors(s);
    let infos: Vec<TensorInfo> = ts
        .iter()
        .map(|t| TensorInfo {
            name: t.gguf_name(),
            ne: if t.is_norm() { vec![t.cols as u64] } else { vec![t.cols as u64, t.rows as u64] },
            ggml_type: quant_of(s, t, mix).ggml_id(),
            n_bytes: gguf_bytes(s, t, mix),
        })
        .collect();
    let mut w = BufWriter::with_capacity(8 << 20, File::create(path)?);
    gguf_writer::write_header(&mut w, &kv, &infos)?;
    let u = plant_direction(s, seed);
    let total = gguf_data_size(s, mix);
    let (mut done, mut row, mut enc) = (0u64, Vec::new(), Vec::new());
    for (t, info) in ts.iter().zip(&infos) {
        let q = quant_of(s, t, mix);
        row.resize(t.cols, 0.0);
        let heads = match t.kind {
            Kind::Q => Some(s.n_heads),
            Kind::K => Some(s.n_kv_heads),
            _ => None,
        };
        for r in 0..t.rows {
            let hf_row = heads.map_or(r, |n| hf_row_of_gguf(r, n, t.rows));
            fill_row(s, seed, &u, t, hf_row, &mut row);
            enc.clear();
            q.encode_row(&row, &mut enc);
            w.write_all(&enc)?;
        }
        gguf_writer::pad(&mut w, info.n_bytes)?;
        done += gguf_writer::aligned(info.n_bytes);
        progress(done, total);
    }
    w.flush()
}

/// Tensor shape in safetensors (norms are vectors).
fn st_shape(t: &Tensor) -> Vec<usize> {
    if t.is_norm() {
        vec![t.cols]
    } else {
        vec![t.rows, t.cols]
    }
}

/// Splits the tensors into shards of at most `max_shard_bytes` (a tensor larger than that
/// gets a shard of its own), in order.
pub fn shard_plan(s: &Shape, max_shard_bytes: u64) -> Vec<Vec<Tensor>> {
    let mut shards: Vec<Vec<Tensor>> = vec![Vec::new()];
    let mut size = 0u64;
    for t in tensors(s) {
        let n = (t.rows * t.cols * 2) as u64;
        if size + n > max_shard_bytes && shards.last().is_some_and(|v| !v.is_empty()) {
            shards.push(Vec::new());
            size = 0;
        }
        size += n;
        if let Some(last) = shards.last_mut() {
            last.push(t);
        }
    }
    shards
}

/// Writes `dir/model-0000X-of-0000N.safetensors`, the index, `config.json` and the tokenizer
/// files; returns the shard paths.
pub fn write_safetensors(
    s: &Shape,
    seed: u64,
    dir: &Path,
    max_shard_bytes: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let plan = shard_plan(s, max_shard_bytes);
    let n = plan.len();
    let total: u64 = plan.iter().flatten().map(|t| (t.rows * t.cols * 2) as u64).sum();
    let u = plant_direction(s, seed);
    let mut weight_map = serde_json::Map::new();
    let mut paths = Vec::new();
    let (mut done, mut row, mut enc) = (0u64, Vec::new(), Vec::<u8>::new());
    for (i, shard) in plan.iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), json!({"format": "pt"}));
        let mut off = 0usize;
        for t in shard {
            let len = t.rows * t.cols * 2;
            header.insert(
                t.hf_name(),
                json!({"dtype": "BF16", "shape": st_shape(t), "data_offsets": [off, off + len]}),
            );
            weight_map.insert(t.hf_name(), json!(file));
            off += len;
        }
        let mut hb = serde_json::to_vec(&header).map_err(io::Error::other)?;
        hb.resize(hb.len().div_ceil(8) * 8, b' ');
        let path = dir.join(&file);
        let mut w = BufWriter::with_capacity(8 << 20, File::create(&path)?);
        w.write_all(&(hb.len() as u64).to_le_bytes())?;
        w.write_all(&hb)?;
        for t in shard {
            row.resize(t.cols, 0.0);
            for r in 0..t.rows {
                fill_row(s, seed, &u, t, r, &mut row);
                enc.clear();
                row.iter().for_each(|v| enc.extend_from_slice(&half::bf16::from_f32(*v).to_le_bytes()));
                w.write_all(&enc)?;
            }
            done += (t.rows * t.cols * 2) as u64;
            progress(done, total);
        }
        w.flush()?;
        paths.push(path);
    }
    let write_json = |name: &str, v: &serde_json::Value| -> io::Result<()> {
        std::fs::write(dir.join(name), serde_json::to_vec_pretty(v).map_err(io::Error::other)?)
    };
    write_json(
        "model.safetensors.index.json",
        &json!({"metadata": {"total_size": total}, "weight_map": weight_map}),
    )?;
    write_json("config.json", &hf_config(s))?;
    write_json("tokenizer.json", &vocab::tokenizer_json(s))?;
    write_json("tokenizer_config.json", &vocab::tokenizer_config(s))?;
    write_json("plant.json", &plant_json(s, seed))?;
    Ok(paths)
}

/// `config.json` of a `LlamaForCausalLM`.
pub fn hf_config(s: &Shape) -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": false,
        "mlp_bias": false,
        "hidden_act": "silu",
        "hidden_size": s.d_model,
        "intermediate_size": s.d_mlp,
        "num_attention_heads": s.n_heads,
        "num_key_value_heads": s.n_kv_heads,
        "head_dim": s.d_head(),
        "num_hidden_layers": s.n_layers,
        "vocab_size": s.vocab,
        "max_position_embeddings": s.context,
        "rms_norm_eps": s.eps,
        "rope_theta": s.rope_theta,
        "bos_token_id": s.bos_id(),
        "eos_token_id": s.eos_id(),
        "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
    })
}
