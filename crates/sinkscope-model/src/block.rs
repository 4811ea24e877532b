//! The generic decoder block: the only place the residual dataflow is written.

use crate::error::{ModelError, Result};
use crate::layers::{attention::Attention, linear::Linear, mlp::Mlp, norm::Norm, rope::RopeTables};
use crate::pack::Pack;
use candle_core::Tensor;
use sinkscope_io::stored::PageAdvice;
use sinkscope_spec::{BlockLayout, HookSite, SiteKind};

/// One decoder block. Which norms exist is the config's [`sinkscope_spec::NormPlacement`]:
/// pre-norms feed the sublayers, post-norms normalise their outputs before the residual add.
#[derive(Debug, Clone)]
pub struct Block {
    /// Block index (0-based).
    pub index: usize,
    /// Attention pre-norm (absent for post-only placements: the sublayer reads the residual).
    pub ln1: Option<Norm>,
    /// Attention.
    pub attn: Attention,
    /// Norm on the attention output (sandwich and post-only placements).
    pub ln1_post: Option<Norm>,
    /// MLP pre-norm.
    pub ln2: Option<Norm>,
    /// MLP.
    pub mlp: Mlp,
    /// Norm on the MLP output.
    pub ln2_post: Option<Norm>,
    /// Sequential or parallel residual.
    pub layout: BlockLayout,
}

/// `norm(x)`, or `x` itself without a norm.
fn maybe_norm(norm: &Option<Norm>, x: &Tensor) -> candle_core::Result<Tensor> {
    match norm {
        Some(n) => n.forward(x),
        None => Ok(x.clone()),
    }
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
    /// The block's linear maps (attention projections, MLP or router and experts).
    pub fn linears(&self) -> Vec<&Linear> {
        let a = &self.attn;
        let mut out = vec![&a.q, &a.k, &a.v, &a.o];
        match &self.mlp {
            Mlp::Dense(d) => out.extend(d.gate.iter().chain([&d.up, &d.down])),
            Mlp::Moe(m) => {
                out.push(&m.router);
                out.extend(m.experts.iter().flat_map(|e| [&e.gate, &e.up, &e.down]));
            }
        }
        out
    }

    /// Advises the kernel about the pages of the block's weights that stay in the file's
    /// memory map (layer streaming: [`PageAdvice::WillNeed`] before the block runs,
    /// [`PageAdvice::DontNeed`] after, so that only one block's weights are resident).
    pub fn advise(&self, advice: PageAdvice) {
        for l in self.linears() {
            l.weight.advise(advice);
        }
    }

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
        let ln1 = pack.apply(site(SiteKind::Ln1Normalized), maybe_norm(&self.ln1, &x)?)?;
        let mut attn_out = self.attn.forward(&ln1, rope, mask, self.index, pack)?;
        if let Some(n) = &self.ln1_post {
            attn_out = pack.apply(site(SiteKind::Ln1PostNormalized), n.forward(&attn_out)?)?;
        }
        let attn_out = pack.apply(site(SiteKind::AttnOut), attn_out)?;
        ensure_finite(&attn_out, site(SiteKind::AttnOut))?;
        // The MLP reads the residual after attention (sequential) or the block input (parallel).
        let (mid, mlp_in) = match self.layout {
            BlockLayout::Sequential => {
                let mid = pack.apply(site(SiteKind::ResidMid), (&x + &attn_out)?)?;
                let mlp_in = maybe_norm(&self.ln2, &mid)?;
                (Some(mid), mlp_in)
            }
            BlockLayout::Parallel => (None, maybe_norm(&self.ln2, &x)?),
        };
        let mlp_in = pack.apply(site(SiteKind::Ln2Normalized), mlp_in)?;
        let mut mlp_out = self.mlp.forward(&mlp_in, self.index, pack)?;
        if let Some(n) = &self.ln2_post {
            mlp_out = pack.apply(site(SiteKind::Ln2PostNormalized), n.forward(&mlp_out)?)?;
        }
        let mlp_out = pack.apply(site(SiteKind::MlpOut), mlp_out)?;
        ensure_finite(&mlp_out, site(SiteKind::MlpOut))?;
        let post = match mid {
            Some(mid) => (mid + mlp_out)?,
            // HF GPT-NeoX: mlp_output + attn_output + residual, in that order.
            None => ((mlp_out + attn_out)? + x)?,
        };
        let post = pack.apply(site(SiteKind::ResidPost), post)?;
        ensure_finite(&post, site(SiteKind::ResidPost))?;
        Ok(post)
    }
}
