//! Packed forward passes for the commands: several prompts through one
//! [`Model::forward_packed`], each with its own set of hooks, results identical to one pass
//! per prompt (see `sinkscope_model::pack`).

use crate::error::{AnalysisError, Result};
use candle_core::Tensor;
use sinkscope_model::{ForwardCtx, Layout, Model, ModelError};

/// The hooks one prompt's pass needs, and how they become that prompt's result.
pub trait HookSet {
    /// The prompt's result.
    type Output;

    /// The hook context of the pass (borrowing the hooks).
    fn ctx(&mut self) -> ForwardCtx<'_>;

    /// The result, given how the forward pass ended (the prompt's logits when `ctx` asked
    /// for them).
    ///
    /// # Errors
    /// The pass's error, or what the hooks found wrong.
    fn finish(
        self,
        id: &str,
        ids: &[u32],
        forward: std::result::Result<Option<Tensor>, ModelError>,
    ) -> Result<Self::Output>;
}

/// How a run of `workers` concurrent packs of at most `pack_tokens` tokens is scheduled on
/// `model`: unchanged with resident weights; when the model streams its layers
/// ([`Layout::Streamed`]), one chunk of at most `chunk_tokens` tokens at a time (the model
/// splits it into passes of its own `pack_tokens` and runs it block-major, reading each block
/// once per chunk). Returns `(workers, tokens per forward call)`. Neither changes a result.
pub fn schedule(model: &Model, workers: usize, pack_tokens: usize) -> (usize, usize) {
    match model.layout() {
        Layout::Resident => (workers, pack_tokens),
        Layout::Streamed { chunk_tokens, .. } => (1, chunk_tokens),
    }
}

/// Runs `prompts` (`(id, token ids)`) through one packed pass, prompt `i` with hooks
/// `make(its token ids)`, and returns their results in order. When the packed pass fails, each prompt is
/// rerun alone, so that every error (and result) is exactly the unpacked one.
pub fn run_pack<S: HookSet>(
    model: &Model,
    prompts: &[(&str, &[u32])],
    make: &dyn Fn(&[u32]) -> S,
) -> Vec<Result<S::Output>> {
    let mut sets: Vec<S> = prompts.iter().map(|&(_, ids)| make(ids)).collect();
    let result = {
        let mut ctxs: Vec<ForwardCtx> = sets.iter_mut().map(|s| s.ctx()).collect();
        let ids: Vec<&[u32]> = prompts.iter().map(|&(_, ids)| ids).collect();
        model.forward_packed(&ids, &mut ctxs)
    };
    match (result, prompts) {
        (Ok(logits), _) => sets
            .into_iter()
            .zip(logits)
            .zip(prompts)
            .map(|((set, logits), &(id, ids))| set.finish(id, ids, Ok(logits)))
            .collect(),
        (Err(e), [(id, ids)]) => sets.pop().map(|set| set.finish(id, ids, Err(e))).into_iter().collect(),
        (Err(_), _) => prompts.iter().map(|&p| run_one(model, p, make)).collect(),
    }
}

/// [`run_pack`] for one prompt.
pub fn run_one<S: HookSet>(
    model: &Model,
    prompt: (&str, &[u32]),
    make: &dyn Fn(&[u32]) -> S,
) -> Result<S::Output> {
    run_pack(model, &[prompt], make)
        .pop()
        .unwrap_or_else(|| Err(AnalysisError::Internal("a pack of one gave no result".into())))
}
