//! The generic decoder block: the only place the residual dataflow is written.

use crate::error::{ModelError, Result};
use crate::layers::{attention::Attention, mlp::Mlp, norm::Norm, rope::RopeTables};
use crate::pack::Pack;
use candle_core::Tensor;
use sinkscope_spec::{BlockLayout, HookSite, SiteKind};

/// One decoder block.
#[derive(Debug, Clone)]
pub struct Block {
    /// Block index (0-based).
    pub index: usize,
    /// Attention pre-norm.
    pub ln1: Norm,
    /// Attention.
    pub attn: Attention,
    /// MLP pre-norm.
    pub ln2: Norm,
    /// MLP.
    pub mlp: Mlp,
    /// Sequential or parallel residual.
    pub layout: BlockLayout,
}

/// Fails with the site name when a tensor holds NaN or Inf. The common case costs one
/// reduction: a finite sum proves every value finite; a non-finite sum (which large finite
/// values can also overflow to) is confirmed value by value.
pub fn ensure_finite(t: &Tensor, site: HookSite) -> Result<()> {
    let s: f32 = t.sum_all()?.to_scalar()?;
    if s.is_finite() {
        return Ok(());
    }
    let values: Vec<f32> = t.flatten_all()?.to_vec1()?;
    if values.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(ModelError::NonFinite { site })
    }
}

impl Block {
    /// `x: [rows, d]` (resid_pre of the pack's prompts) -> resid_post `[rows, d]`. `rope` and
    /// `mask` cover the longest prompt of the pack.
    pub fn forward(
        &self,
        x: Tensor,
        rope: Option<&RopeTables>,
        mask: &Tensor,
        pack: &mut Pack,
    ) -> Result<Tensor> {
        let site = |kind| HookSite::block(self.index, kind);
        let x = pack.apply(site(SiteKind::ResidPre), x)?;
        let ln1 = pack.apply(site(SiteKind::Ln1Normalized), self.ln1.forward(&x)?)?;
        let attn_out = self.attn.forward(&ln1, rope, mask, self.index, pack)?;
        let attn_out = pack.apply(site(SiteKind::AttnOut), attn_out)?;
        ensure_finite(&attn_out, site(SiteKind::AttnOut))?;
        let post = match self.layout {
            BlockLayout::Sequential => {
                let mid = pack.apply(site(SiteKind::ResidMid), (&x + &attn_out)?)?;
                let ln2 = pack.apply(site(SiteKind::Ln2Normalized), self.ln2.forward(&mid)?)?;
                let mlp_out = pack.apply(site(SiteKind::MlpOut), self.mlp.forward(&ln2)?)?;
                ensure_finite(&mlp_out, site(SiteKind::MlpOut))?;
                (mid + mlp_out)?
            }
            BlockLayout::Parallel => {
                let ln2 = pack.apply(site(SiteKind::Ln2Normalized), self.ln2.forward(&x)?)?;
                let mlp_out = pack.apply(site(SiteKind::MlpOut), self.mlp.forward(&ln2)?)?;
                ensure_finite(&mlp_out, site(SiteKind::MlpOut))?;
                // HF GPT-NeoX: mlp_output + attn_output + residual, in that order.
                ((mlp_out + attn_out)? + x)?
            }
        };
        let post = pack.apply(site(SiteKind::ResidPost), post)?;
        ensure_finite(&post, site(SiteKind::ResidPost))?;
        Ok(post)
    }
}
