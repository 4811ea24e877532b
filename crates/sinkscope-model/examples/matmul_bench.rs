//! Single-threaded GFLOPS of the packed matmul kernel against candle's matmul on SmolLM2's
//! projection shapes, at several row counts (best of 9 rounds, weights in cache):
//!
//! ```sh
//! RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 cargo run --release -p sinkscope-model --example matmul_bench
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use candle_core::{Device, Tensor};
use sinkscope_model::layers::linear::Linear;
use std::time::Instant;

fn gflops(m: usize, k: usize, n: usize, reps: usize, f: impl Fn() -> candle_core::Result<Tensor>) -> f64 {
    let t = Instant::now();
    for _ in 0..reps {
        let _ = f().unwrap();
    }
    (2 * m * k * n * reps) as f64 / t.elapsed().as_secs_f64() / 1e9
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    println!("packed kernel available: {}", sinkscope_model::layers::gemm::available());
    println!("| in K | out N | rows M | candle GFLOPS | packed GFLOPS |\n|---|---|---|---|---|");
    for &(k, n) in &[(576usize, 1536usize), (1536, 576), (576, 576), (576, 192)] {
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        let lin = Linear::from_rows(w.flatten_all()?.to_vec1()?, n, k, None, &dev)?;
        let wt = w.t()?;
        for &m in &[29usize, 64, 128, 256] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let reps = (200_000_000 / (2 * m * k * n)).max(2);
            let (mut candle, mut packed) = (0f64, 0f64);
            for _ in 0..9 {
                candle = candle.max(gflops(m, k, n, reps, || x.matmul(&wt)));
                packed = packed.max(gflops(m, k, n, reps, || lin.forward(&x)));
            }
            println!("| {k} | {n} | {m} | {candle:.1} | {packed:.1} |");
        }
    }
    Ok(())
}
