//! Single-threaded GFLOPS of the packed matmul kernel, on each kernel path this CPU runs,
//! against candle's matmul on SmolLM2's projection shapes, for f32 weights packed at load and
//! for Q4_1 weights kept in their stored format (dequantised panel by panel), at several row
//! counts (best of 9 rounds, weights in cache):
//!
//! ```sh
//! RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 cargo run --release -p sinkscope-model --example matmul_bench
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use candle_core::{Device, Tensor};
use sinkscope_io::gguf::GgmlType;
use sinkscope_io::stored::{SharedBytes, StoredMatrix};
use sinkscope_model::layers::gemm::{KernelPath, PackedWeight};
use std::sync::Arc;
use std::time::Instant;

fn gflops(m: usize, k: usize, n: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    (2 * m * k * n * reps) as f64 / t.elapsed().as_secs_f64() / 1e9
}

/// Random Q4_1 blocks (scale and minimum as f16, 16 bytes of nibbles per 32 values).
fn q4_1(n: usize, k: usize) -> StoredMatrix {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut bytes = Vec::with_capacity(n * k / 32 * 20);
    for _ in 0..n * k / 32 {
        bytes.extend_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        bytes.extend_from_slice(&half::f16::from_f32(-0.08).to_le_bytes());
        for _ in 0..16 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            bytes.push(s as u8);
        }
    }
    let len = bytes.len();
    StoredMatrix::new(SharedBytes::new(Arc::new(bytes), 0..len).unwrap(), GgmlType::Q4_1, n, k).unwrap()
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let paths: Vec<KernelPath> = [KernelPath::Avx512, KernelPath::Avx2, KernelPath::Portable]
        .into_iter()
        .filter(|p| p.supported() && *p != KernelPath::Portable)
        .collect();
    let names: Vec<&str> = paths.iter().map(|p| p.name()).collect();
    println!(
        "| in K | out N | rows M | candle | {} | {} |",
        names.iter().map(|n| format!("f32 {n}")).collect::<Vec<_>>().join(" | "),
        names.iter().map(|n| format!("Q4_1 {n}")).collect::<Vec<_>>().join(" | ")
    );
    println!("|{}", "---|".repeat(4 + 2 * paths.len()));
    for &(k, n) in &[(576usize, 1536usize), (1536, 576), (576, 576), (576, 192), (576, 49152)] {
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        let dense: Vec<f32> = w.flatten_all()?.to_vec1()?;
        let packed = PackedWeight::pack(&dense, n, k).unwrap();
        let stored = PackedWeight::from_stored(q4_1(n, k)).unwrap();
        let wt = w.t()?;
        for &m in &[29usize, 128] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
            let mut out = vec![0f32; m * n];
            let reps = (200_000_000 / (2 * m * k * n)).max(2);
            let mut best = vec![0f64; 1 + 2 * paths.len()];
            for _ in 0..9 {
                best[0] = best[0].max(gflops(m, k, n, reps, || {
                    let _ = x.matmul(&wt).unwrap();
                }));
                for (i, p) in paths.iter().enumerate() {
                    best[1 + i] = best[1 + i]
                        .max(gflops(m, k, n, reps, || packed.matmul_on(*p, &xv, m, &mut out).unwrap()));
                    best[1 + paths.len() + i] = best[1 + paths.len() + i]
                        .max(gflops(m, k, n, reps, || stored.matmul_on(*p, &xv, m, &mut out).unwrap()));
                }
            }
            let cells: Vec<String> = best.iter().map(|g| format!("{g:.1}")).collect();
            println!("| {k} | {n} | {m} | {} |", cells.join(" | "));
        }
    }
    Ok(())
}
