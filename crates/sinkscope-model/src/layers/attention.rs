//! Causal multi-head attention (GQA, QK-norm, rotary, sliding windows, and the score
//! modifiers of [`super::scores`]), eager: the pattern is always materialised so that hooks
//! and metrics see exactly what the model uses. Each prompt of a [`Pack`] attends only to
//! itself.

use super::linear::Linear;
use super::norm::Norm;
use super::rope::RopeTables;
use super::scores::ScoreSpec;
use crate::error::Result;
use crate::hooks::ForwardCtx;
use crate::pack::Pack;
use candle_core::Tensor;
use sinkscope_spec::{HookSite, QkNorm, SiteKind};

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
    /// Where q and k are normalised, with their norms (`[d_head]` or whole-projection gains).
    pub qk_norm: Option<(QkNorm, Norm, Norm)>,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Head width.
    pub d_head: usize,
    /// Scores to probabilities: scale, soft-cap, ALiBi, sinks.
    pub scores: ScoreSpec,
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
    /// `x: [rows, d]` (the sublayer input of the pack's prompts) -> the attention output
    /// `[rows, d]` before any post-norm. The projections run on the whole pack; the rest runs
    /// per prompt, with that prompt's hooks of `block`. `rope` (this layer's tables) and
    /// `mask` cover (at least) the longest prompt.
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

    /// QK-norm of q or k `[T, heads, dh]`: per head, or over the whole projection.
    fn qk_normed(kind: QkNorm, norm: &Norm, x: Tensor) -> Result<Tensor> {
        Ok(match kind {
            QkNorm::None => x,
            QkNorm::PerHead => norm.forward(&x)?,
            QkNorm::Whole => {
                let dims = x.dims().to_vec();
                let (t, w) = (dims[0], dims[1..].iter().product::<usize>());
                norm.forward(&x.reshape((t, w))?)?.reshape(dims)?
            }
        })
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
        let mut q = ctx.apply(site(SiteKind::AttnQ), q.reshape((t, h, dh))?)?; // [T, H, dh]
        let mut k = ctx.apply(site(SiteKind::AttnK), k.reshape((t, kvh, dh))?)?; // [T, KVH, dh]
        let v = ctx.apply(site(SiteKind::AttnV), v.reshape((t, kvh, dh))?)?; // [T, KVH, dh]
        if let Some((kind, qn, kn)) = &self.qk_norm {
            q = ctx.apply(site(SiteKind::AttnQNorm), Self::qk_normed(*kind, qn, q)?)?;
            k = ctx.apply(site(SiteKind::AttnKNorm), Self::qk_normed(*kind, kn, k)?)?;
        }
        if let Some(r) = rope {
            q = ctx.apply(site(SiteKind::AttnRotQ), r.apply(&q)?)?;
            k = ctx.apply(site(SiteKind::AttnRotK), r.apply(&k)?)?;
        }
        // Query head h uses kv head h / group: view queries as [KVH, group*T, dh].
        let group = h / kvh;
        let qg = q.transpose(0, 1)?.contiguous()?.reshape((kvh, group * t, dh))?; // [KVH, g*T, dh]
        let kt = k.transpose(0, 1)?.contiguous()?; // [KVH, T, dh]
        let vt = v.transpose(0, 1)?.contiguous()?; // [KVH, T, dh]
        let raw = qg.matmul(&kt.t()?)?.reshape((h, t, t))?; // [H, T, T], unscaled
        let mask = if mask.dim(0)? == t { mask.clone() } else { mask.narrow(0, 0, t)?.narrow(1, 0, t)? };
        let scores_site = site(SiteKind::AttnScores);
        let (pattern, sink) = if ctx.wants(scores_site) {
            let scores = ctx.apply(scores_site, self.scores.scores(&raw, &mask)?)?; // [H, T, T]
            self.scores.softmax(&scores, &mask)?
        } else {
            self.scores.probs(&raw, &mask)?
        }; // [H, T, T], [H, T]
        if let Some(sink) = sink {
            ctx.apply(site(SiteKind::AttnSinkProb), sink)?;
        }
        let pattern = ctx.apply(site(SiteKind::AttnPattern), pattern)?;
        let z = pattern.reshape((kvh, group * t, t))?.matmul(&vt)?.reshape((h, t, dh))?; // [H, T, dh]
        let z = ctx.apply(site(SiteKind::AttnZ), z.transpose(0, 1)?.contiguous()?)?; // [T, H, dh]
        Ok(z.reshape((t, h * dh))?)
    }
}
