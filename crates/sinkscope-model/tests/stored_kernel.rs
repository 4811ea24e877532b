//! The packed kernel on weights kept in their stored format gives, bit for bit, what
//! dequantising the whole weight to f32 and packing it gives — for every format the loader
//! reads (the committed gguf-py test blocks of crates/sinkscope-io/tests/data/dequant, built into
//! matrices with partial panels, several K blocks, and rows taken through a row map as the
//! loader's Q/K un-permutation and QKV splits do), on every kernel path the CPU runs (AVX-512,
//! AVX2, portable), which must agree bit for bit too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sinkscope_io::gguf::GgmlType;
use sinkscope_io::stored::{SharedBytes, StoredMatrix};
use sinkscope_model::layers::gemm::{available, KernelPath, PackedWeight};
use std::path::Path;
use std::sync::Arc;

const TYPES: &[GgmlType] = &[
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
];

const PATHS: [KernelPath; 3] = [KernelPath::Avx512, KernelPath::Avx2, KernelPath::Portable];

fn blocks(ty: GgmlType) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sinkscope-io/tests/data/dequant")
        .join(format!("{}.bin", ty.name().to_lowercase()));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

#[test]
fn stored_format_matmul_equals_dequantise_then_multiply_bit_for_bit() {
    if !available() {
        eprintln!("SKIPPED: no AVX2+FMA on this machine; stored matrices are dequantised at load");
        return;
    }
    for &ty in TYPES {
        let raw = blocks(ty);
        let bl = ty.block_size() as usize;
        let n_values = raw.len() / ty.type_size() as usize * bl;
        // Rows of 512 values where the blocks allow it (two K blocks for 256-value blocks,
        // partial last K block for 32-value ones when K = 544 is not possible), else one block.
        let k = if n_values >= 1024 { 512 } else { n_values.min(512) };
        let stored_rows = n_values / k;
        let len = stored_rows * k / bl * ty.type_size() as usize;
        let bytes = SharedBytes::new(Arc::new(raw), 0..len).unwrap();
        let whole = StoredMatrix::new(bytes, ty, stored_rows, k).unwrap();
        // 37 output rows (two full panels and a partial one) through a row map.
        let map: Vec<usize> = (0..37).map(|r| (r * 5 + 1) % stored_rows).collect();
        let m = whole.select_rows(&map).unwrap();
        let dense = m.to_f32().unwrap();
        let packed = PackedWeight::pack(&dense, 37, k).unwrap();
        let stored = PackedWeight::from_stored(m.clone()).unwrap();
        for rows in [1usize, 7, 29] {
            let x = values(rows * k, rows as u64 + 11);
            let mut want = vec![f32::NAN; rows * 37];
            let mut got = vec![f32::NAN; rows * 37];
            packed.matmul(&x, rows, &mut want, 1).unwrap();
            stored.matmul(&x, rows, &mut got, 1).unwrap();
            let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{ty}: {rows} rows differ between stored and dequantised weights");
            // Every kernel path this CPU runs gives the same bits, packed or stored.
            for path in PATHS.iter().filter(|p| p.supported()) {
                for w in [&packed, &stored] {
                    w.matmul_on(*path, &x, rows, &mut got).unwrap();
                    let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{ty}: {rows} rows differ on the {} path", path.name());
                }
            }
        }
        // A wide weight split among threads by panels: the one-thread bits.
        let wide_map: Vec<usize> = (0..661).map(|r| (r * 7 + 3) % stored_rows).collect();
        let wide = whole.select_rows(&wide_map).unwrap();
        let wide_packed = PackedWeight::pack(&wide.to_f32().unwrap(), 661, k).unwrap();
        let wide_stored = PackedWeight::from_stored(wide).unwrap();
        let rows = 2_097_152usize.div_ceil(661 * k).max(2);
        let x = values(rows * k, 99);
        let mut want = vec![f32::NAN; rows * 661];
        wide_packed.matmul(&x, rows, &mut want, 1).unwrap();
        for threads in [2, 3] {
            let mut got = vec![f32::NAN; rows * 661];
            wide_stored.matmul(&x, rows, &mut got, threads).unwrap();
            let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{ty}: the panel split on {threads} threads differs");
        }
        // Embedding lookups read the same values.
        let mut row = vec![0f32; k];
        for j in [0, 16, 36] {
            stored.row_into(j, &mut row).unwrap();
            assert_eq!(row[..], dense[j * k..(j + 1) * k], "{ty} row {j}");
            packed.row_into(j, &mut row).unwrap();
            assert_eq!(row[..], dense[j * k..(j + 1) * k], "{ty} packed row {j}");
        }
    }
}

/// Rows longer than the kernel's dequantisation chunk (4,096 values): a stored weight is
/// dequantised chunk by chunk into scratch panels that serve every row block, and the sums
/// continue across chunks; the bits are those of the dense packed weight, on every path.
#[test]
fn rows_longer_than_a_dequantisation_chunk_give_the_dense_bits() {
    if !available() {
        eprintln!("SKIPPED: no AVX2+FMA on this machine; stored matrices are dequantised at load");
        return;
    }
    // K = 4,864: one whole chunk and a partial one, for 32- and 256-value blocks.
    let (n, k) = (37usize, 4864usize);
    for (ty, scale_offsets) in
        [(GgmlType::Q8_0, &[0usize][..]), (GgmlType::Q4_K, &[0, 2]), (GgmlType::Q2_K, &[80, 82])]
    {
        let (ts, bl) = (ty.type_size() as usize, ty.block_size() as usize);
        let noise = values(n * k / bl * ts, ty as u64);
        let mut raw: Vec<u8> = noise.iter().map(|v| (v.to_bits() >> 7) as u8).collect();
        for blk in raw.chunks_exact_mut(ts) {
            for &o in scale_offsets {
                blk[o..o + 2].copy_from_slice(&half::f16::from_f32(0.02).to_le_bytes());
            }
        }
        let len = raw.len();
        let m = StoredMatrix::new(SharedBytes::new(Arc::new(raw), 0..len).unwrap(), ty, n, k).unwrap();
        let packed = PackedWeight::pack(&m.to_f32().unwrap(), n, k).unwrap();
        let stored = PackedWeight::from_stored(m).unwrap();
        for rows in [1usize, 13, 30] {
            let x = values(rows * k, rows as u64 + 5);
            let mut want = vec![f32::NAN; rows * n];
            packed.matmul(&x, rows, &mut want, 1).unwrap();
            let mut got = vec![f32::NAN; rows * n];
            for path in PATHS.iter().filter(|p| p.supported()) {
                stored.matmul_on(*path, &x, rows, &mut got).unwrap();
                let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{ty}: {rows} rows of K = {k} differ on the {} path", path.name());
            }
        }
    }
}
