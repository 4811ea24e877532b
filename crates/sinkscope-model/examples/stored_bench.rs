//! Cost of the stored-format matmul at a large model's shapes, where the dequantisation
//! dominates (few rows per weight): ns per weight for dequantising alone and for the
//! stored matmul at several row counts, per GGUF type, one thread.
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo run --release -p sinkscope-model --example stored_bench
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sinkscope_io::gguf::GgmlType;
use sinkscope_io::stored::{SharedBytes, StoredMatrix};
use sinkscope_model::layers::gemm::PackedWeight;
use std::sync::Arc;
use std::time::Instant;

/// Random blocks of `ty` whose f16 scales are set to small normal values (offsets of the
/// scale fields per block layout), so no value is NaN, infinite or subnormal.
fn random(ty: GgmlType, n: usize, k: usize) -> StoredMatrix {
    let (ts, bs) = (ty.type_size() as usize, ty.block_size() as usize);
    let scales: &[usize] = match ty {
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        GgmlType::Q3_K => &[108],
        GgmlType::Q4_1 | GgmlType::Q5_1 => &[0, 2],
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        _ => &[],
    };
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut bytes = vec![0u8; n * k / bs * ts];
    for b in bytes.iter_mut() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *b = s as u8;
    }
    for blk in bytes.chunks_exact_mut(ts) {
        for &o in scales {
            blk[o..o + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        }
    }
    let len = bytes.len();
    StoredMatrix::new(SharedBytes::new(Arc::new(bytes), 0..len).unwrap(), ty, n, k).unwrap()
}

fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let (n, k) = (512usize, 8192usize);
    let rows = [1usize, 24, 128];
    println!("one thread, W {n} x {k}; ns per weight (best of 3)");
    println!(
        "| type | dequantise | {} |",
        rows.iter().map(|m| format!("matmul M={m}")).collect::<Vec<_>>().join(" | ")
    );
    println!("|{}", "---|".repeat(2 + rows.len()));
    for ty in [GgmlType::Q2_K, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::BF16]
    {
        let st = random(ty, n, k);
        let mut buf = vec![0f32; k];
        let deq = best(3, || {
            for r in 0..n {
                st.dequant_row(r, &mut buf).unwrap();
            }
        });
        let w = PackedWeight::from_stored(st).unwrap();
        let mut cells = vec![format!("{:.2}", deq * 1e9 / (n * k) as f64)];
        for &m in &rows {
            let x: Vec<f32> = (0..m * k).map(|i| ((i % 97) as f32 - 48.0) * 0.01).collect();
            let mut out = vec![0f32; m * n];
            let t = best(3, || w.matmul(&x, m, &mut out, 1).unwrap());
            cells.push(format!("{:.2}", t * 1e9 / (n * k) as f64));
        }
        println!("| {} | {} |", ty.name(), cells.join(" | "));
    }
}
