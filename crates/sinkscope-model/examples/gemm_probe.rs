use candle_core::{Device, Tensor};
use sinkscope_model::layers::linear::Linear;
use std::time::Instant;
fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    for &(k, n) in &[(576usize, 1536usize), (1536, 576), (576, 576), (576, 192)] {
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        let data: Vec<f32> = w.flatten_all()?.to_vec1()?;
        let lin = Linear::from_rows(data, n, k, None, &dev)?;
        for &m in &[29usize, 64, 128, 256, 512] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let reps = (200_000_000usize / (2 * m * k * n)).max(2);
            let mut best = [0f64; 2];
            for _round in 0..9 {
                for which in 0..2 {
                    let f = |x: &Tensor| if which == 0 { x.matmul(&w.t()?) } else { lin.forward(x) };
                    let t = Instant::now();
                    for _ in 0..reps {
                        let _ = f(&x)?;
                    }
                    let g = (2 * m * k * n * reps) as f64 / t.elapsed().as_secs_f64() / 1e9;
                    best[which] = best[which].max(g);
                }
            }
            println!("k={k} n={n} m={m}: candle {:.1}  packed {:.1} GFLOPS", best[0], best[1]);
        }
    }
    Ok(())
}
