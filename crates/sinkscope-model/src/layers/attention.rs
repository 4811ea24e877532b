//! Causal multi-head attention (GQA, rotary, sliding windows), eager: the pattern is always
//! materialised so that hooks and metrics see exactly what the model uses. Each prompt of a
//! [`Pack`] attends only to itself.

use super::fused;
use super::linear::Linear;
use super::rope::RopeTables;
use crate::error::Result;
use crate::hooks::ForwardCtx;
use crate::pack::Pack;
use candle_core::{DType, Tensor, D};
use sinkscope_spec::{HookSite, SiteKind};

/// One attention sublayer.
#[derive(Debug, Clone)]
pub struct Attention {
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub o: Linear,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Head width.
    pub d_head: usize,
    /// Multiplier of q·k.
    pub scale: f64,
    /// Sliding window (keys per query, itself included).
    pub window: Option<usize>,
}

/// Additive causal (and sliding-window) mask `[T, T]`: 0 where allowed, -inf elsewhere.
pub fn causal_mask(
    t: usize,
    window: Option<usize>,
    device: &candle_core::Device,
) -> candle_core::Result<Tensor> {
    let mut m = vec![0f32; t * t];
    for i in 0..t {
        for j in 0..t {
            let future = j > i;
            let too_old = window.is_some_and(|w| i >= w && j <= i - w);
            if future || too_old {
                m[i * t + j] = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::from_vec(m, (t, t), device)
}

impl Attention {
    /// `x: [rows, d]` (the normalised residual of the pack's prompts) -> the attention output
    /// `[rows, d]` before any post-norm. The projections run on the whole pack; the rest runs
    /// per prompt, with that prompt's q/k/v/pattern/z hooks of `block`. `rope` and `mask`
    /// cover (at least) the longest prompt.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: Option<&RopeTables>,
        mask: &Tensor,
        block: usize,
        pack: &mut Pack,
    ) -> Result<Tensor> {
        let (q, k, v) = (self.q.forward(x)?, self.k.forward(x)?, self.v.forward(x)?);
        let z = pack.per_prompt(&[&q, &k, &v], |ctx, qkv| self.mix(&qkv, rope, mask, block, ctx))?;
        Ok(self.o.forward(&z)?)
    }

    /// One prompt's attention from its projected rows `[q, k, v]` (`[T, H·dh]`, `[T, KVH·dh]`
    /// twice) to the input of the output projection, `z: [T, H·dh]`.
    fn mix(
        &self,
        qkv: &[Tensor],
        rope: Option<&RopeTables>,
        mask: &Tensor,
        block: usize,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let [q, k, v] = qkv else {
            return Err(crate::error::ModelError::Input("attention expects q, k and v".into()));
        };
        let t = q.dim(0)?;
        let (h, kvh, dh) = (self.n_heads, self.n_kv_heads, self.d_head);
        let site = |kind| HookSite::block(block, kind);
        let mut q = q.reshape((t, h, dh))?; // [T, H, dh]
        let mut k = k.reshape((t, kvh, dh))?; // [T, KVH, dh]
        let v = v.reshape((t, kvh, dh))?; // [T, KVH, dh]
        if let Some(r) = rope {
            q = r.apply(&q)?;
            k = r.apply(&k)?;
        }
        let q = ctx.apply(site(SiteKind::AttnQ), q)?;
        let k = ctx.apply(site(SiteKind::AttnK), k)?;
        let v = ctx.apply(site(SiteKind::AttnV), v)?;
        // Query head h uses kv head h / group: view queries as [KVH, group*T, dh].
        let group = h / kvh;
        let qg = q.transpose(0, 1)?.contiguous()?.reshape((kvh, group * t, dh))?; // [KVH, g*T, dh]
        let kt = k.transpose(0, 1)?.contiguous()?; // [KVH, T, dh]
        let vt = v.transpose(0, 1)?.contiguous()?; // [KVH, T, dh]
        let raw = qg.matmul(&kt.t()?)?.reshape((h, t, t))?; // [H, T, T], unscaled
        let mask = if mask.dim(0)? == t { mask.clone() } else { mask.narrow(0, 0, t)?.narrow(1, 0, t)? };
        let pattern = if fused::available() && raw.device().is_cpu() && raw.dtype() == DType::F32 {
            let op = fused::MaskedSoftmax { scale: self.scale as f32 };
            raw.contiguous()?.apply_op2_no_bwd(&mask.contiguous()?, &op)?
        } else {
            let scores = (raw * self.scale)?.broadcast_add(&mask)?;
            let max = scores.max_keepdim(D::Minus1)?;
            let e = scores.broadcast_sub(&max)?.exp()?;
            e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?
        }; // [H, T, T]
        let pattern = ctx.apply(site(SiteKind::AttnPattern), pattern)?;
        let z = pattern.reshape((kvh, group * t, t))?.matmul(&vt)?.reshape((h, t, dh))?; // [H, T, dh]
        let z = ctx.apply(site(SiteKind::AttnZ), z.transpose(0, 1)?.contiguous()?)?; // [T, H, dh]
        Ok(z.reshape((t, h * dh))?)
    }
}
