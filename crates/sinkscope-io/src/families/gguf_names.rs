//! The one GGUF tensor-name table. llama.cpp names tensors by role, the same across
//! architectures (`llama-arch.cpp`, `LLM_TENSOR_NAMES`), so every family reads its GGUF files
//! through this table; a family lists only the few names whose meaning differs for it (its
//! `gguf_overrides`, e.g. llama's permuted Q/K rows or Phi-3's fused `[gate | up]`).

use crate::weights::{QkvLayout, TensorEntry, TensorRole as R, Transform as T};

const fn e(name: &'static str, roles: &'static [R]) -> TensorEntry {
    TensorEntry { name, transforms: &[], roles }
}

/// llama.cpp's names and the roles they hold in most architectures.
pub const GGUF_NAMES: &[TensorEntry] = &[
    e("token_embd.weight", &[R::TokEmbed]),
    e("token_embd_norm.weight", &[R::EmbedNormW]),
    e("token_embd_norm.bias", &[R::EmbedNormB]),
    e("position_embd.weight", &[R::PosEmbed]),
    e("output_norm.weight", &[R::FinalNormW]),
    e("output_norm.bias", &[R::FinalNormB]),
    e("output.weight", &[R::Unembed]),
    e("blk.{i}.attn_norm.weight", &[R::AttnNormW]),
    e("blk.{i}.attn_norm.bias", &[R::AttnNormB]),
    e("blk.{i}.attn_q.weight", &[R::Q]),
    e("blk.{i}.attn_k.weight", &[R::K]),
    e("blk.{i}.attn_v.weight", &[R::V]),
    e("blk.{i}.attn_q.bias", &[R::QBias]),
    e("blk.{i}.attn_k.bias", &[R::KBias]),
    e("blk.{i}.attn_v.bias", &[R::VBias]),
    // Fused QKV: llama.cpp's converters write `[q | k | v]` row blocks (GPT-NeoX and BLOOM's
    // per-head rows are reordered on conversion).
    TensorEntry {
        name: "blk.{i}.attn_qkv.weight",
        transforms: &[T::SplitQkv(QkvLayout::Blocks)],
        roles: QKV,
    },
    TensorEntry {
        name: "blk.{i}.attn_qkv.bias",
        transforms: &[T::SplitQkv(QkvLayout::Blocks)],
        roles: QKV_BIAS,
    },
    e("blk.{i}.attn_q_norm.weight", &[R::QNormW]),
    e("blk.{i}.attn_k_norm.weight", &[R::KNormW]),
    e("blk.{i}.attn_output.weight", &[R::O]),
    e("blk.{i}.attn_output.bias", &[R::OBias]),
    e("blk.{i}.attn_sinks.weight", &[R::AttnSinks]),
    e("blk.{i}.post_attention_norm.weight", &[R::PostAttnNormW]),
    e("blk.{i}.ffn_norm.weight", &[R::MlpNormW]),
    e("blk.{i}.ffn_norm.bias", &[R::MlpNormB]),
    e("blk.{i}.ffn_gate.weight", &[R::Gate]),
    e("blk.{i}.ffn_up.weight", &[R::Up]),
    e("blk.{i}.ffn_down.weight", &[R::Down]),
    e("blk.{i}.ffn_gate.bias", &[R::GateBias]),
    e("blk.{i}.ffn_up.bias", &[R::UpBias]),
    e("blk.{i}.ffn_down.bias", &[R::DownBias]),
    e("blk.{i}.post_ffw_norm.weight", &[R::PostMlpNormW]),
    e("blk.{i}.ffn_gate_inp.weight", &[R::RouterW]),
    e("blk.{i}.ffn_gate_inp.bias", &[R::RouterB]),
    e("blk.{i}.ffn_gate_exps.weight", &[R::ExpertGate]),
    e("blk.{i}.ffn_gate_exps.bias", &[R::ExpertGateBias]),
    e("blk.{i}.ffn_up_exps.weight", &[R::ExpertUp]),
    e("blk.{i}.ffn_up_exps.bias", &[R::ExpertUpBias]),
    e("blk.{i}.ffn_down_exps.weight", &[R::ExpertDown]),
    e("blk.{i}.ffn_down_exps.bias", &[R::ExpertDownBias]),
];

const QKV: &[R] = &[R::Q, R::K, R::V];
const QKV_BIAS: &[R] = &[R::QBias, R::KBias, R::VBias];
