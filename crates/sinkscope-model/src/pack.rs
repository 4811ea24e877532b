//! Several prompts in one forward pass ("packing").
//!
//! The prompts' rows are concatenated, so every row-wise operation (the projections, the
//! norms, the activations, the residual adds) runs once on the whole pack with bigger, more
//! efficient matrix products. Everything that mixes rows runs per prompt: attention (each
//! prompt attends only to itself, positions restart at 0) and the hooks (each prompt has its
//! own [`ForwardCtx`] and sees exactly the tensors an unpacked pass would show it, as views of
//! its rows). Nothing in a prompt's computation depends on the other prompts of its pack: the
//! row-wise operations compute each row on its own (the packed matmul kernel guarantees it
//! for the products, [`crate::layers::gemm`]), so a packed pass gives bit-identical results to
//! one pass per prompt (tested in `tests/packing.rs`).

use crate::error::Result;
use crate::hooks::ForwardCtx;
use candle_core::Tensor;
use sinkscope_spec::HookSite;

/// The prompts of one pass: their row spans in the packed activations and their contexts.
pub struct Pack<'p, 'h> {
    /// `(first row, rows)` of each prompt.
    spans: Vec<(usize, usize)>,
    ctxs: &'p mut [ForwardCtx<'h>],
}

impl<'p, 'h> Pack<'p, 'h> {
    /// A pack of prompts with the given lengths, each with its context (same count).
    pub fn new(lens: &[usize], ctxs: &'p mut [ForwardCtx<'h>]) -> Self {
        let mut start = 0;
        let spans = lens
            .iter()
            .map(|&l| {
                start += l;
                (start - l, l)
            })
            .collect();
        Pack { spans, ctxs }
    }

    /// `(first row, rows)` of each prompt.
    pub fn spans(&self) -> &[(usize, usize)] {
        &self.spans
    }

    /// Rows of the packed activations.
    pub fn rows(&self) -> usize {
        self.spans.last().map_or(0, |&(s, l)| s + l)
    }

    /// The longest prompt.
    pub fn max_len(&self) -> usize {
        self.spans.iter().map(|&(_, l)| l).max().unwrap_or(0)
    }

    /// Whether any prompt's hooks want `site`.
    pub fn wants(&self, site: HookSite) -> bool {
        self.ctxs.iter().any(|c| c.wants(site))
    }

    /// Whether any prompt asked for its logits.
    pub fn want_logits(&self) -> bool {
        self.ctxs.iter().any(|c| c.want_logits)
    }

    /// Prompt `i`'s context.
    pub fn ctx(&mut self, i: usize) -> &mut ForwardCtx<'h> {
        &mut self.ctxs[i]
    }

    /// Runs every prompt's hooks at a row-indexed `site` (`act: [rows, ...]`): each sees its
    /// own rows; when a hook replaces them, the packed activation is rebuilt.
    pub fn apply(&mut self, site: HookSite, act: Tensor) -> Result<Tensor> {
        if let [ctx] = self.ctxs {
            return ctx.apply(site, act);
        }
        if !self.wants(site) {
            return Ok(act);
        }
        let mut parts = Vec::with_capacity(self.spans.len());
        let mut replaced = false;
        for (ctx, &(start, len)) in self.ctxs.iter_mut().zip(&self.spans) {
            let rows = act.narrow(0, start, len)?;
            if ctx.wants(site) {
                let (rows, r) = ctx.apply_tracked(site, rows)?;
                replaced |= r;
                parts.push(rows);
            } else {
                parts.push(rows);
            }
        }
        Ok(if replaced { Tensor::cat(&parts, 0)? } else { act })
    }

    /// Runs `f(i, context, rows)` for each prompt `i` on its rows of the packed inputs.
    pub fn for_each_prompt(
        &mut self,
        inputs: &[&Tensor],
        mut f: impl FnMut(usize, &mut ForwardCtx<'h>, Vec<Tensor>) -> Result<()>,
    ) -> Result<()> {
        for (i, (ctx, &(start, len))) in self.ctxs.iter_mut().zip(&self.spans).enumerate() {
            let rows =
                inputs.iter().map(|t| t.narrow(0, start, len)).collect::<candle_core::Result<Vec<_>>>()?;
            f(i, ctx, rows)?;
        }
        Ok(())
    }

    /// Runs `f(context, rows)` for each prompt on its rows of the packed inputs and packs the
    /// results (row-indexed outputs).
    pub fn per_prompt(
        &mut self,
        inputs: &[&Tensor],
        mut f: impl FnMut(&mut ForwardCtx<'h>, Vec<Tensor>) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut parts = Vec::with_capacity(self.spans.len());
        self.for_each_prompt(inputs, |_, ctx, rows| {
            parts.push(f(ctx, rows)?);
            Ok(())
        })?;
        Ok(match parts.len() {
            1 => parts.remove(0),
            _ => Tensor::cat(&parts, 0)?,
        })
    }
}
