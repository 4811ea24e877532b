//! Every dequantiser (i-quants, MXFP4, ternary, and the F16/BF16/legacy/k-quant ones) against gguf-py's
//! reference implementation, bit for bit.
//!
//! tests/data/dequant/<type>.bin are raw ggml blocks and <type>.f32 what `gguf.quants.dequantize` (gguf-py 0.19.0)
//! makes of them; both were generated once by tests/data/dequant/generate.py (see PROVENANCE.md there), so no
//! Python is needed here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use sinkscope_io::gguf::{byte_size, dequantize, dequantize_into, finite_by_scales, GgmlType};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dequant")
}

/// (raw blocks, gguf-py's f32 output) for `ty`.
fn vectors(ty: GgmlType) -> (Vec<u8>, Vec<f32>) {
    let stem = ty.name().to_lowercase();
    let read = |ext: &str| {
        let p = data_dir().join(format!("{stem}.{ext}"));
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let raw = read("bin");
    let f = read("f32");
    assert_eq!(f.len() % 4, 0);
    let want = f.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    (raw, want)
}

/// Dequantise the committed blocks of `ty` and compare with gguf-py bit for bit (whole buffer, then block by
/// block through `dequantize_into`); returns the number of values checked.
fn check(ty: GgmlType) -> usize {
    assert!(ty.can_dequantize(), "{ty}");
    let (raw, want) = vectors(ty);
    let n = want.len();
    let block = ty.block_size() as usize;
    let ts = ty.type_size() as usize;
    assert_eq!(n % block, 0, "{ty}");
    assert_eq!(raw.len(), n / block * ts, "{ty}: block geometry disagrees with gguf-py's GGML_QUANT_SIZES");
    assert_eq!(byte_size(ty, n as u64).unwrap(), raw.len() as u64);

    let got = dequantize(ty, &raw, n).unwrap();
    let mut mismatches = Vec::new();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if g.to_bits() != w.to_bits() {
            mismatches.push(format!(
                "[{i}] (block {}, elem {}): got {g:e}, want {w:e}",
                i / block,
                i % block
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{ty}: {} of {n} values differ from gguf-py:\n{}",
        mismatches.len(),
        mismatches.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );

    let mut one = vec![0f32; block];
    for (k, b) in raw.chunks_exact(ts).enumerate() {
        dequantize_into(ty, b, &mut one).unwrap();
        let w = &want[k * block..(k + 1) * block];
        assert!(one.iter().zip(w).all(|(g, w)| g.to_bits() == w.to_bits()), "{ty}: block {k} alone differs");
    }
    n
}

#[test]
fn iq4_nl_matches_gguf_py() {
    check(GgmlType::IQ4_NL);
}

#[test]
fn iq4_xs_matches_gguf_py() {
    check(GgmlType::IQ4_XS);
}

#[test]
fn iq2_xxs_matches_gguf_py() {
    check(GgmlType::IQ2_XXS);
}

#[test]
fn iq2_xs_matches_gguf_py() {
    check(GgmlType::IQ2_XS);
}

#[test]
fn iq2_s_matches_gguf_py() {
    check(GgmlType::IQ2_S);
}

#[test]
fn iq3_xxs_matches_gguf_py() {
    check(GgmlType::IQ3_XXS);
}

#[test]
fn iq3_s_matches_gguf_py() {
    check(GgmlType::IQ3_S);
}

#[test]
fn iq1_s_matches_gguf_py() {
    check(GgmlType::IQ1_S);
}

#[test]
fn iq1_m_matches_gguf_py() {
    check(GgmlType::IQ1_M);
}

#[test]
fn mxfp4_matches_gguf_py() {
    // All 256 E8M0 exponents (0 and 1 give subnormal half-scales, 255 overflows x12 to infinity).
    let n = check(GgmlType::MXFP4);
    assert_eq!(n, 256 * 32);
}

#[test]
fn tq1_0_matches_gguf_py() {
    check(GgmlType::TQ1_0);
}

#[test]
fn tq2_0_matches_gguf_py() {
    check(GgmlType::TQ2_0);
}

#[test]
fn f16_matches_gguf_py() {
    check(GgmlType::F16);
}

#[test]
fn bf16_matches_gguf_py() {
    check(GgmlType::BF16);
}

#[test]
fn legacy_quants_match_gguf_py() {
    for t in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0] {
        check(t);
    }
}

#[test]
fn k_quants_match_gguf_py() {
    for t in [GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
        check(t);
    }
}

/// Every type with vectors (every type the dequantiser supports except F32).
const VECTOR_TYPES: [GgmlType; 24] = [
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ2_S,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
    GgmlType::MXFP4,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// The vectors exist for exactly the types above, which are all the dequantisable types but F32, and respect
/// the size budget (PROVENANCE.md).
#[test]
fn vector_files_are_complete_and_small() {
    let mut total = 0;
    let mut stems = Vec::new();
    for e in std::fs::read_dir(data_dir()).unwrap() {
        let p = e.unwrap().path();
        if matches!(p.extension().and_then(|x| x.to_str()), Some("bin" | "f32")) {
            total += std::fs::metadata(&p).unwrap().len();
            stems.push(p.file_stem().unwrap().to_str().unwrap().to_string());
        }
    }
    stems.sort();
    stems.dedup();
    let mut want: Vec<String> = VECTOR_TYPES.iter().map(|t| t.name().to_lowercase()).collect();
    want.sort();
    assert_eq!(stems, want);
    let mut with_vectors: Vec<GgmlType> = VECTOR_TYPES.to_vec();
    with_vectors.push(GgmlType::F32);
    with_vectors.sort();
    let mut supported: Vec<GgmlType> = GgmlType::ALL.into_iter().filter(|t| t.can_dequantize()).collect();
    supported.sort();
    assert_eq!(with_vectors, supported);
    assert!(total < 1 << 20, "{total} bytes of vectors");
}

/// The load-time shortcut: where `finite_by_scales` answers, its answer is whether the block's
/// values are all finite. Checked on gguf-py's blocks (all finite) and on every variant with
/// an f16 NaN or infinity written at any even or odd byte position of a block, against what
/// the dequantiser (checked bit for bit above) gives. Answers at all are required for the
/// types whose values are scale × bounded integers.
#[test]
fn scales_decide_finiteness_exactly_where_they_answer() {
    let decided = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::IQ4_NL,
        GgmlType::IQ4_XS,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ2_S,
        GgmlType::IQ3_XXS,
        GgmlType::IQ3_S,
        GgmlType::IQ1_S,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
    ];
    let undecided = [GgmlType::F16, GgmlType::BF16, GgmlType::MXFP4, GgmlType::IQ1_M];
    for ty in decided.into_iter().chain(undecided) {
        let (raw, want) = vectors(ty);
        let (block, ts) = (ty.block_size() as usize, ty.type_size() as usize);
        let all_finite = want.iter().all(|v| v.is_finite());
        let expect = decided.contains(&ty).then_some(all_finite);
        assert_eq!(finite_by_scales(ty, &raw), expect, "{ty}");
        let first = &raw[..ts];
        let mut values = vec![0f32; block];
        let mut caught = 0;
        for bits in [0x7E00u16, 0x7C00, 0xFC00] {
            for o in 0..ts - 1 {
                let mut b = first.to_vec();
                b[o..o + 2].copy_from_slice(&bits.to_le_bytes());
                dequantize_into(ty, &b, &mut values).unwrap();
                let finite = values.iter().all(|v| v.is_finite());
                match finite_by_scales(ty, &b) {
                    Some(answer) => assert_eq!(answer, finite, "{ty}: f16 {bits:#x} at byte {o}"),
                    None => assert!(!decided.contains(&ty), "{ty} must be decided"),
                }
                caught += usize::from(!finite);
            }
        }
        if decided.contains(&ty) {
            assert!(caught > 0, "{ty}: no byte position made a value non-finite");
        }
    }
}
