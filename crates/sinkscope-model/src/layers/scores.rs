//! Attention scores to probabilities: the one function every attention layer uses, with the
//! modifiers the families need, in the order transformers applies them:
//!
//! 1. `s = (q·k) · scale` (Gemma: `query_pre_attn_scalar^-0.5`);
//! 2. soft-capping `s = c · tanh(s / c)` (Gemma 2, `attn_logit_softcapping`);
//! 3. ALiBi `s += slope_h · j` for key j (BLOOM, `build_alibi_tensor`);
//! 4. the causal / sliding-window mask (`-inf`);
//! 5. softmax over the keys, with a learned per-head sink logit as an extra column whose
//!    probability is dropped (GPT-OSS): the pattern's rows then sum to one minus the sink mass.
//!
//! On the CPU (f32) one row runs through [`score_row`] then [`softmax_row`] in place; when a
//! hook looks at the scores (`hook_attn_scores`) the same two steps run with the scores
//! materialised in between, so the probabilities are bit-identical either way. On other
//! devices the same formula runs as candle operations.

use super::fused::{self, f32_slice};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor, D};

/// The modifiers of one attention layer.
#[derive(Debug, Clone, Default)]
pub struct ScoreSpec {
    /// Multiplier of `q·k`.
    pub scale: f32,
    /// Soft-capping constant.
    pub softcap: Option<f32>,
    /// ALiBi slope per query head.
    pub alibi: Option<Vec<f32>>,
    /// Learned sink logit per query head.
    pub sinks: Option<Vec<f32>>,
}

/// ALiBi slopes for `n_heads` heads (transformers' `build_alibi_tensor`, Press et al.): the
/// geometric sequence `2^(-8/n)…` for the largest power of two `n ≤ n_heads`, then every other
/// term of the sequence for `2n` for the remaining heads.
pub fn alibi_slopes(n_heads: usize) -> Vec<f32> {
    if n_heads == 0 {
        return Vec::new();
    }
    let closest = 1usize << (usize::BITS - 1 - n_heads.leading_zeros());
    let base = |n: usize| 2f64.powf(-(2f64.powf(-((n as f64).log2() - 3.0))));
    let b = base(closest) as f32;
    let mut slopes: Vec<f32> = (1..=closest).map(|p| b.powi(p as i32)).collect();
    if closest != n_heads {
        let extra = base(2 * closest) as f32;
        let remaining = closest.min(n_heads - closest);
        slopes.extend((0..remaining).map(|i| extra.powi((2 * i + 1) as i32)));
    }
    slopes
}

/// One row of scores for query head `h`: steps 1–4 of the module docs.
pub fn score_row(raw: &[f32], mask: &[f32], spec: &ScoreSpec, h: usize, out: &mut [f32]) {
    let slope = spec.alibi.as_ref().and_then(|a| a.get(h)).copied();
    for (j, ((o, &r), &m)) in out.iter_mut().zip(raw).zip(mask).enumerate() {
        let mut s = r * spec.scale;
        if let Some(c) = spec.softcap {
            s = (s / c).tanh() * c;
        }
        if let Some(sl) = slope {
            s += sl * j as f32;
        }
        *o = s + m;
    }
}

/// Softmax of one row of scores in place (step 5), with an optional sink logit; returns the
/// sink's probability (0 without one). Masked entries (`-inf`) get exactly 0.
pub fn softmax_row(row: &mut [f32], sink: Option<f32>) -> f32 {
    let mut max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if let Some(s) = sink {
        max = max.max(s);
    }
    fused::exp_shifted(row, max);
    let e_sink = sink.map(|s| {
        let mut e = [s];
        fused::exp_shifted(&mut e, max);
        e[0]
    });
    let mut sum: f32 = row.iter().sum();
    if let Some(e) = e_sink {
        sum += e;
    }
    for o in row.iter_mut() {
        *o /= sum;
    }
    e_sink.map_or(0.0, |e| e / sum)
}

/// What a [`ScoreOp`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Raw `q·k` to scores (steps 1–4).
    Scores,
    /// Scores to probabilities (step 5).
    Softmax,
    /// Raw `q·k` to probabilities (steps 1–5).
    Probs,
}

/// The CPU operation `(x [H, T, T], mask [T, T]) -> [H, T, T]`, or `[H, T, T + 1]` with the
/// sink probability in the last column when the phase ends in a softmax and the layer has sinks.
struct ScoreOp<'a> {
    spec: &'a ScoreSpec,
    phase: Phase,
}

impl CustomOp2 for ScoreOp<'_> {
    fn name(&self) -> &'static str {
        "attention-scores"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (h, rows, cols) = match l1.shape().dims() {
            [h, r, c] if l2.shape().dims() == [*r, *c] => (*h, *r, *c),
            _ => candle_core::bail!("attention scores: input {:?} and mask {:?}", l1.shape(), l2.shape()),
        };
        let (x, mask) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?);
        let sinks = match self.phase {
            Phase::Scores => None,
            _ => self.spec.sinks.as_ref(),
        };
        let width = cols + usize::from(sinks.is_some());
        let mut out = vec![0f32; h * rows * width];
        for head in 0..h {
            for i in 0..rows {
                let src = &x[(head * rows + i) * cols..][..cols];
                let dst = &mut out[(head * rows + i) * width..][..width];
                let (row, rest) = dst.split_at_mut(cols);
                match self.phase {
                    Phase::Softmax => row.copy_from_slice(src),
                    _ => score_row(src, &mask[i * cols..][..cols], self.spec, head, row),
                }
                if self.phase != Phase::Scores {
                    let p = softmax_row(row, sinks.and_then(|s| s.get(head)).copied());
                    if let Some(slot) = rest.first_mut() {
                        *slot = p;
                    }
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((h, rows, width))))
    }
}

impl ScoreSpec {
    /// Scores (steps 1–4) of raw `q·k` `[H, T, T]` under `mask` `[T, T]`.
    pub fn scores(&self, raw: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        self.run(raw, mask, Phase::Scores).map(|(s, _)| s)
    }

    /// Probabilities `[H, T, T]` and, with sinks, the sink mass `[H, T]` from raw `q·k`.
    pub fn probs(&self, raw: &Tensor, mask: &Tensor) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        self.run(raw, mask, Phase::Probs)
    }

    /// Probabilities and sink mass from (possibly edited) scores.
    pub fn softmax(&self, scores: &Tensor, mask: &Tensor) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        self.run(scores, mask, Phase::Softmax)
    }

    fn run(&self, x: &Tensor, mask: &Tensor, phase: Phase) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        if !(x.device().is_cpu() && x.dtype() == DType::F32) {
            return self.run_candle(x, mask, phase);
        }
        let out = x.contiguous()?.apply_op2_no_bwd(&mask.contiguous()?, &ScoreOp { spec: self, phase })?;
        let t = x.dim(D::Minus1)?;
        match (phase, &self.sinks) {
            (Phase::Scores, _) | (_, None) => Ok((out, None)),
            (_, Some(_)) => {
                let pattern = out.narrow(D::Minus1, 0, t)?.contiguous()?;
                let sink = out.narrow(D::Minus1, t, 1)?.squeeze(D::Minus1)?.contiguous()?;
                Ok((pattern, Some(sink)))
            }
        }
    }

    /// The same formula as candle operations (devices other than the CPU).
    fn run_candle(
        &self,
        x: &Tensor,
        mask: &Tensor,
        phase: Phase,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let (h, t) = (x.dim(0)?, x.dim(D::Minus1)?);
        let scores = match phase {
            Phase::Softmax => x.clone(),
            _ => {
                let mut s = (x * f64::from(self.scale))?;
                if let Some(c) = self.softcap {
                    s = ((s / f64::from(c))?.tanh()? * f64::from(c))?;
                }
                if let Some(slopes) = &self.alibi {
                    let pos = Tensor::arange(0u32, t as u32, x.device())?.to_dtype(DType::F32)?;
                    let slopes = Tensor::new(slopes.as_slice(), x.device())?;
                    let bias = slopes.reshape((h, 1, 1))?.broadcast_mul(&pos.reshape((1, 1, t))?)?;
                    s = s.broadcast_add(&bias)?;
                }
                s.broadcast_add(mask)?
            }
        };
        if phase == Phase::Scores {
            return Ok((scores, None));
        }
        let rows = scores.dim(1)?;
        let logits = match &self.sinks {
            Some(s) => {
                let sink =
                    Tensor::new(s.as_slice(), x.device())?.reshape((h, 1, 1))?.broadcast_as((h, rows, 1))?;
                Tensor::cat(&[&scores, &sink.contiguous()?], D::Minus1)?
            }
            None => scores,
        };
        let max = logits.max_keepdim(D::Minus1)?;
        let e = logits.broadcast_sub(&max)?.exp()?;
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        match self.sinks {
            Some(_) => Ok((p.narrow(D::Minus1, 0, t)?, Some(p.narrow(D::Minus1, t, 1)?.squeeze(D::Minus1)?))),
            None => Ok((p, None)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn reference_row(raw: &[f32], mask: &[f32], spec: &ScoreSpec, h: usize) -> (Vec<f64>, f64) {
        let mut s: Vec<f64> = raw
            .iter()
            .zip(mask)
            .enumerate()
            .map(|(j, (&r, &m))| {
                let mut s = f64::from(r) * f64::from(spec.scale);
                if let Some(c) = spec.softcap {
                    s = (s / f64::from(c)).tanh() * f64::from(c);
                }
                if let Some(a) = &spec.alibi {
                    s += f64::from(a[h]) * j as f64;
                }
                s + f64::from(m)
            })
            .collect();
        let sink = spec.sinks.as_ref().map(|v| f64::from(v[h]));
        let max = s.iter().copied().chain(sink).fold(f64::NEG_INFINITY, f64::max);
        for x in s.iter_mut() {
            *x = (*x - max).exp();
        }
        let es = sink.map_or(0.0, |k| (k - max).exp());
        let sum: f64 = s.iter().sum::<f64>() + es;
        (s.iter().map(|x| x / sum).collect(), es / sum)
    }

    /// Every modifier, alone and together, against a float64 evaluation of the same formula;
    /// masked entries exactly 0; rows plus the sink mass sum to 1.
    #[test]
    fn rows_match_a_float64_reference() {
        let specs = [
            ScoreSpec { scale: 0.25, ..Default::default() },
            ScoreSpec { scale: 0.25, softcap: Some(5.0), ..Default::default() },
            ScoreSpec { scale: 0.25, alibi: Some(alibi_slopes(4)), ..Default::default() },
            ScoreSpec { scale: 0.25, sinks: Some(vec![0.5, -1.0, 2.0, 0.0]), ..Default::default() },
            ScoreSpec {
                scale: 0.5,
                softcap: Some(3.0),
                alibi: Some(alibi_slopes(4)),
                sinks: Some(vec![1.0; 4]),
            },
        ];
        for spec in &specs {
            for t in [1usize, 7, 9, 20] {
                for h in 0..4 {
                    for i in 0..t {
                        let raw: Vec<f32> =
                            (0..t).map(|j| ((i * 7 + j * 3 + h) % 11) as f32 * 1.7 - 8.0).collect();
                        let mask: Vec<f32> = (0..t)
                            .map(|j| if j > i || i - j >= 8 { f32::NEG_INFINITY } else { 0.0 })
                            .collect();
                        let mut row = vec![f32::NAN; t];
                        score_row(&raw, &mask, spec, h, &mut row);
                        let sink = softmax_row(&mut row, spec.sinks.as_ref().map(|s| s[h]));
                        let (want, want_sink) = reference_row(&raw, &mask, spec, h);
                        for j in 0..t {
                            assert!(
                                (f64::from(row[j]) - want[j]).abs() < 1e-6,
                                "{spec:?} t {t} row {i} col {j}"
                            );
                            if mask[j] == f32::NEG_INFINITY {
                                assert_eq!(row[j], 0.0);
                            }
                        }
                        assert!((f64::from(sink) - want_sink).abs() < 1e-6);
                        let total: f32 = row.iter().sum::<f32>() + sink;
                        assert!((total - 1.0).abs() < 1e-5);
                    }
                }
            }
        }
    }

    /// transformers' slopes: 8 heads 2^-1..2^-8; 12 heads add the odd powers of 2^-0.5.
    #[test]
    fn alibi_slopes_follow_transformers() {
        let s8 = alibi_slopes(8);
        for (i, s) in s8.iter().enumerate() {
            assert_eq!(*s, 0.5f32.powi(i as i32 + 1));
        }
        let s12 = alibi_slopes(12);
        assert_eq!(s12[..8], s8[..]);
        for (k, s) in s12[8..].iter().enumerate() {
            let want = 2f64.powf(-0.5 * (2 * k + 1) as f64) as f32;
            assert!((s - want).abs() <= f32::EPSILON * want, "{s} vs {want}");
        }
    }

    /// The op with a hook in between (scores, then softmax) equals the fused op bit for bit.
    #[test]
    fn split_and_fused_paths_are_bit_identical() {
        let dev = candle_core::Device::Cpu;
        let spec = ScoreSpec {
            scale: 0.3,
            softcap: Some(4.0),
            alibi: Some(alibi_slopes(2)),
            sinks: Some(vec![0.1, 0.9]),
        };
        let raw = Tensor::from_vec(
            (0..2 * 9 * 9).map(|x| ((x * 13) % 17) as f32 - 8.0).collect::<Vec<_>>(),
            (2, 9, 9),
            &dev,
        )
        .unwrap();
        let mask = crate::layers::attention::causal_mask(9, Some(4), &dev).unwrap();
        let (p1, s1) = spec.probs(&raw, &mask).unwrap();
        let scores = spec.scores(&raw, &mask).unwrap();
        let (p2, s2) = spec.softmax(&scores, &mask).unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&p1), v(&p2));
        assert_eq!(v(&s1.unwrap()), v(&s2.unwrap()));
    }
}
