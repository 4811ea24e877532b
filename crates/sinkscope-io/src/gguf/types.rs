//! ggml tensor element types (`enum ggml_type` in ggml.h) with their block geometry.

use std::fmt;

/// A ggml tensor type, as stored in a GGUF tensor info (`enum ggml_type`, ggml.h).
///
/// Every type that ggml can store in a GGUF file is listed, so that files holding types this crate cannot
/// dequantise still parse (their raw bytes stay reachable through
/// [`GgufFile::raw_bytes`](super::GgufFile::raw_bytes)). Removed ids (4, 5, 31–33, 36–38) and ids past
/// `MXFP4` (39) are rejected as unknown.
///
/// [`block_size`](Self::block_size) and [`type_size`](Self::type_size) are ggml's `ggml_blck_size` and
/// `ggml_type_size` (elements per block, bytes per block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types)]
#[non_exhaustive]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE half float.
    F16,
    /// 4-bit, 32-element blocks: f16 scale `d`, values `(q - 8)·d`.
    Q4_0,
    /// 4-bit, 32-element blocks: f16 scale `d` and min `m`, values `q·d + m`.
    Q4_1,
    /// 5-bit, 32-element blocks: f16 scale, values `(q - 16)·d`.
    Q5_0,
    /// 5-bit, 32-element blocks: f16 scale and min, values `q·d + m`.
    Q5_1,
    /// 8-bit, 32-element blocks: f16 scale, values `q·d`.
    Q8_0,
    /// 8-bit, 32-element blocks with a stored sum (activation quantisation; not a storage type in practice).
    Q8_1,
    /// k-quant, 2-bit, 256-element super-blocks.
    Q2_K,
    /// k-quant, 3-bit, 256-element super-blocks.
    Q3_K,
    /// k-quant, 4-bit, 256-element super-blocks.
    Q4_K,
    /// k-quant, 5-bit, 256-element super-blocks.
    Q5_K,
    /// k-quant, 6-bit, 256-element super-blocks.
    Q6_K,
    /// k-quant, 8-bit (intermediate type, f32 scale).
    Q8_K,
    /// i-quant 2-bit (xxs).
    IQ2_XXS,
    /// i-quant 2-bit (xs).
    IQ2_XS,
    /// i-quant 3-bit (xxs).
    IQ3_XXS,
    /// i-quant 1-bit (s).
    IQ1_S,
    /// i-quant 4-bit non-linear, 32-element blocks.
    IQ4_NL,
    /// i-quant 3-bit (s).
    IQ3_S,
    /// i-quant 2-bit (s).
    IQ2_S,
    /// i-quant 4-bit (xs).
    IQ4_XS,
    /// 8-bit signed integer.
    I8,
    /// 16-bit signed integer.
    I16,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// 64-bit IEEE float.
    F64,
    /// i-quant 1-bit (m).
    IQ1_M,
    /// bfloat16.
    BF16,
    /// ternary, 1.69 bits per weight.
    TQ1_0,
    /// ternary, 2.06 bits per weight.
    TQ2_0,
    /// OCP microscaling FP4, 32-element blocks with an E8M0 scale.
    MXFP4,
}

impl GgmlType {
    /// Every known type, in id order.
    pub const ALL: [GgmlType; 32] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
    ];

    /// The type for a ggml type id, or `None` for removed/unknown ids.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.iter().copied().find(|t| t.id() == id)
    }

    /// The numeric ggml type id (`enum ggml_type`).
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q8_1 => 9,
            GgmlType::Q2_K => 10,
            GgmlType::Q3_K => 11,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::Q8_K => 15,
            GgmlType::IQ2_XXS => 16,
            GgmlType::IQ2_XS => 17,
            GgmlType::IQ3_XXS => 18,
            GgmlType::IQ1_S => 19,
            GgmlType::IQ4_NL => 20,
            GgmlType::IQ3_S => 21,
            GgmlType::IQ2_S => 22,
            GgmlType::IQ4_XS => 23,
            GgmlType::I8 => 24,
            GgmlType::I16 => 25,
            GgmlType::I32 => 26,
            GgmlType::I64 => 27,
            GgmlType::F64 => 28,
            GgmlType::IQ1_M => 29,
            GgmlType::BF16 => 30,
            GgmlType::TQ1_0 => 34,
            GgmlType::TQ2_0 => 35,
            GgmlType::MXFP4 => 39,
        }
    }

    /// The name used by gguf-py (`GGMLQuantizationType`), e.g. `"Q4_0"`, `"Q6_K"`, `"BF16"`.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q8_1 => "Q8_1",
            GgmlType::Q2_K => "Q2_K",
            GgmlType::Q3_K => "Q3_K",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q5_K => "Q5_K",
            GgmlType::Q6_K => "Q6_K",
            GgmlType::Q8_K => "Q8_K",
            GgmlType::IQ2_XXS => "IQ2_XXS",
            GgmlType::IQ2_XS => "IQ2_XS",
            GgmlType::IQ3_XXS => "IQ3_XXS",
            GgmlType::IQ1_S => "IQ1_S",
            GgmlType::IQ4_NL => "IQ4_NL",
            GgmlType::IQ3_S => "IQ3_S",
            GgmlType::IQ2_S => "IQ2_S",
            GgmlType::IQ4_XS => "IQ4_XS",
            GgmlType::I8 => "I8",
            GgmlType::I16 => "I16",
            GgmlType::I32 => "I32",
            GgmlType::I64 => "I64",
            GgmlType::F64 => "F64",
            GgmlType::IQ1_M => "IQ1_M",
            GgmlType::BF16 => "BF16",
            GgmlType::TQ1_0 => "TQ1_0",
            GgmlType::TQ2_0 => "TQ2_0",
            GgmlType::MXFP4 => "MXFP4",
        }
    }

    /// Elements per block (`ggml_blck_size`): 1 for plain types, 32 for legacy quants, 256 for k/i-quants.
    pub fn block_size(self) -> u64 {
        match self {
            GgmlType::F32
            | GgmlType::F16
            | GgmlType::BF16
            | GgmlType::F64
            | GgmlType::I8
            | GgmlType::I16
            | GgmlType::I32
            | GgmlType::I64 => 1,
            GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::Q8_1
            | GgmlType::IQ4_NL
            | GgmlType::MXFP4 => 32,
            GgmlType::Q2_K
            | GgmlType::Q3_K
            | GgmlType::Q4_K
            | GgmlType::Q5_K
            | GgmlType::Q6_K
            | GgmlType::Q8_K
            | GgmlType::IQ2_XXS
            | GgmlType::IQ2_XS
            | GgmlType::IQ3_XXS
            | GgmlType::IQ1_S
            | GgmlType::IQ3_S
            | GgmlType::IQ2_S
            | GgmlType::IQ4_XS
            | GgmlType::IQ1_M
            | GgmlType::TQ1_0
            | GgmlType::TQ2_0 => 256,
        }
    }

    /// Bytes per block (`ggml_type_size`), from the `block_*` structs of ggml-common.h.
    pub fn type_size(self) -> u64 {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 => 2,
            GgmlType::BF16 => 2,
            GgmlType::F64 => 8,
            GgmlType::I8 => 1,
            GgmlType::I16 => 2,
            GgmlType::I32 => 4,
            GgmlType::I64 => 8,
            GgmlType::Q4_0 => 18,    // d:f16, qs[16]
            GgmlType::Q4_1 => 20,    // d:f16, m:f16, qs[16]
            GgmlType::Q5_0 => 22,    // d:f16, qh[4], qs[16]
            GgmlType::Q5_1 => 24,    // d:f16, m:f16, qh[4], qs[16]
            GgmlType::Q8_0 => 34,    // d:f16, qs[32]
            GgmlType::Q8_1 => 36,    // d:f16, s:f16, qs[32]
            GgmlType::Q2_K => 84,    // scales[16], qs[64], d, dmin
            GgmlType::Q3_K => 110,   // hmask[32], qs[64], scales[12], d
            GgmlType::Q4_K => 144,   // d, dmin, scales[12], qs[128]
            GgmlType::Q5_K => 176,   // d, dmin, scales[12], qh[32], qs[128]
            GgmlType::Q6_K => 210,   // ql[128], qh[64], scales[16], d
            GgmlType::Q8_K => 292,   // d:f32, qs[256], bsums[16]:i16
            GgmlType::IQ2_XXS => 66, // d, qs[32]:u16
            GgmlType::IQ2_XS => 74,  // d, qs[32]:u16, scales[8]
            GgmlType::IQ3_XXS => 98, // d, qs[96]
            GgmlType::IQ1_S => 50,   // d, qs[32], qh[8]:u16
            GgmlType::IQ4_NL => 18,  // d, qs[16]
            GgmlType::IQ3_S => 110,  // d, qs[64], qh[8], signs[32], scales[4]
            GgmlType::IQ2_S => 82,   // d, qs[64], qh[8], scales[8]
            GgmlType::IQ4_XS => 136, // d, scales_h:u16, scales_l[4], qs[128]
            GgmlType::IQ1_M => 56,   // qs[32], qh[16], scales[8]
            GgmlType::TQ1_0 => 54,   // qs[48], qh[4], d
            GgmlType::TQ2_0 => 66,   // qs[64], d
            GgmlType::MXFP4 => 17,   // e:u8, qs[16]
        }
    }

    /// Whether [`dequantize`](super::dequantize) supports this type.
    pub fn can_dequantize(self) -> bool {
        matches!(
            self,
            GgmlType::F32
                | GgmlType::F16
                | GgmlType::BF16
                | GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q5_0
                | GgmlType::Q5_1
                | GgmlType::Q8_0
                | GgmlType::Q2_K
                | GgmlType::Q3_K
                | GgmlType::Q4_K
                | GgmlType::Q5_K
                | GgmlType::Q6_K
                | GgmlType::IQ4_NL
                | GgmlType::IQ4_XS
                | GgmlType::IQ2_XXS
                | GgmlType::IQ2_XS
                | GgmlType::IQ2_S
                | GgmlType::IQ3_XXS
                | GgmlType::IQ3_S
                | GgmlType::IQ1_S
                | GgmlType::IQ1_M
                | GgmlType::MXFP4
                | GgmlType::TQ1_0
                | GgmlType::TQ2_0
        )
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
