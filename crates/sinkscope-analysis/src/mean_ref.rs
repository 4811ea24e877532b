//! Sun et al.'s mean-ablation (2024, "Massive Activations in Large Language Models", §3):
//! a massive activation is set to **its mean at that position over many sequences**. A first
//! pass over a reference prompt set ([`reference_means`]) measures, at one hook site, the
//! mean of each chosen dimension at each chosen position over the prompts; the ablation then
//! replaces those elements by the means ([`resolve_mean_prompts`] turns every
//! `mean_prompts` edit into concrete `ReplaceRow` edits, one per position, which the
//! manifest records with their values).
//!
//! Not to be confused with `mean_others` (the `MeanOthers` edit): the mean over the *other
//! positions of the same prompt*, which for a first-token massive activation is close to
//! zero-ablation.

use crate::error::{AnalysisError, Result};
use sinkscope_model::{ForwardCtx, Model};
use sinkscope_spec::{Edit, EditOp, HookSite, Selection};

/// A hook keeping one prompt's rows of a `[T, d]` site.
struct SiteRows {
    site: HookSite,
    d_model: usize,
    rows: Option<Vec<Vec<f32>>>,
    bad_shape: Option<Vec<usize>>,
}

impl sinkscope_model::Hook for SiteRows {
    fn wants(&self, site: HookSite) -> bool {
        site == self.site
    }

    fn on(
        &mut self,
        _: HookSite,
        act: &candle_core::Tensor,
    ) -> sinkscope_model::Result<Option<candle_core::Tensor>> {
        match act.dims() {
            [_, d] if *d == self.d_model => self.rows = Some(act.to_vec2::<f32>()?),
            other => self.bad_shape = Some(other.to_vec()),
        }
        Ok(None)
    }
}

/// The per-prompt-set means of chosen elements of one `[T, d]` site.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionMeans {
    /// The hook site.
    pub site: HookSite,
    /// Positions, in the order of [`Self::means`].
    pub positions: Vec<usize>,
    /// Dimensions (the columns of every row of [`Self::means`]).
    pub dims: Vec<usize>,
    /// `means[i][j]`: mean over the prompts of element `(positions[i], dims[j])`.
    pub means: Vec<Vec<f64>>,
    /// `n_prompts[i]`: prompts long enough to have position `positions[i]`.
    pub n_prompts: Vec<usize>,
}

/// Runs every prompt of `prompts` (token ids) through the unedited model and returns the mean
/// of `site`'s elements at `positions` × `dims` (all dimensions when `dims` is
/// [`Selection::All`]) over the prompts that have the position.
///
/// # Errors
/// [`AnalysisError::Options`] for a site that is not `[T, d]`, a dimension out of range or a
/// position no prompt has; [`AnalysisError::Forward`] from the model.
pub fn reference_means(
    model: &Model,
    prompts: &[(&str, &[u32])],
    site: HookSite,
    positions: &[usize],
    dims: &Selection,
) -> Result<PositionMeans> {
    let d_model = model.config.d_model;
    let dim_list: Vec<usize> = match dims {
        Selection::All => (0..d_model).collect(),
        Selection::Only(v) => v.clone(),
    };
    if let Some(bad) = dim_list.iter().find(|&&j| j >= d_model) {
        return Err(AnalysisError::Options(format!(
            "mean_prompts at {site}: dimension {bad} out of range (d = {d_model})"
        )));
    }
    let mut sums = vec![vec![0.0f64; dim_list.len()]; positions.len()];
    let mut counts = vec![0usize; positions.len()];
    // One prompt per call, or a chunk per call when the model streams its layers (each block
    // read once per chunk); the sums run over the prompts in order either way.
    let lengths: Vec<usize> = prompts.iter().map(|(_, ids)| ids.len()).collect();
    let budget = crate::pack::schedule(model, 1, 0).1;
    for chunk in crate::runner::pack_ranges(&lengths, budget) {
        let these = &prompts[chunk];
        let mut seen: Vec<SiteRows> =
            these.iter().map(|_| SiteRows { site, d_model, rows: None, bad_shape: None }).collect();
        let result = {
            let mut ctxs: Vec<ForwardCtx> = seen.iter_mut().map(|h| ForwardCtx::new().with(h)).collect();
            let ids: Vec<&[u32]> = these.iter().map(|(_, ids)| *ids).collect();
            model.forward_packed(&ids, &mut ctxs)
        };
        if let Err(e) = result {
            // The first prompt that fails alone names the error.
            for (id, ids) in these.iter().filter(|_| these.len() > 1) {
                let mut one = SiteRows { site, d_model, rows: None, bad_shape: None };
                model
                    .forward(ids, &mut ForwardCtx::new().with(&mut one))
                    .map_err(|e| AnalysisError::Forward { id: (*id).to_string(), source: e })?;
            }
            return Err(AnalysisError::Forward { id: these[0].0.to_string(), source: e });
        }
        for one in seen {
            if let Some(shape) = one.bad_shape {
                return Err(AnalysisError::Options(format!(
                    "mean_prompts needs a [T, d] site; {site} has shape {shape:?}"
                )));
            }
            let Some(rows) = one.rows else {
                return Err(AnalysisError::Options(format!(
                    "mean_prompts: the forward pass never reached {site}"
                )));
            };
            for (i, &p) in positions.iter().enumerate() {
                let Some(row) = rows.get(p) else { continue };
                counts[i] += 1;
                for (acc, &j) in sums[i].iter_mut().zip(&dim_list) {
                    *acc += f64::from(row.get(j).copied().unwrap_or(0.0));
                }
            }
        }
    }
    for (i, &p) in positions.iter().enumerate() {
        if counts[i] == 0 {
            return Err(AnalysisError::Options(format!(
                "mean_prompts at {site}: no reference prompt has position {p}"
            )));
        }
    }
    let means = sums.iter().zip(&counts).map(|(s, &n)| s.iter().map(|v| v / n as f64).collect()).collect();
    Ok(PositionMeans { site, positions: positions.to_vec(), dims: dim_list, means, n_prompts: counts })
}

/// Replaces every `mean_prompts` edit of `edits` by concrete edits: one `ReplaceRow` per
/// selected position holding the reference means ([`reference_means`] over `prompts`); the
/// other edits are kept as they are, in order. Also returns the means measured.
///
/// # Errors
/// [`AnalysisError::Options`] for a `mean_prompts` edit without an explicit position list
/// (`pos=`), and as [`reference_means`].
pub fn resolve_mean_prompts(
    model: &Model,
    prompts: &[(&str, &[u32])],
    edits: &[Edit],
) -> Result<(Vec<Edit>, Vec<PositionMeans>)> {
    let mut out = Vec::with_capacity(edits.len());
    let mut measured = Vec::new();
    for e in edits {
        if e.op != EditOp::MeanPrompts {
            out.push(e.clone());
            continue;
        }
        let Selection::Only(positions) = &e.positions else {
            return Err(AnalysisError::Options(format!(
                "{}: mean_prompts needs explicit positions (pos=0, or pos=0,1): the mean is taken at each position over the prompts",
                e.site
            )));
        };
        let m = reference_means(model, prompts, e.site, positions, &e.dims)?;
        for (p, row) in m.positions.iter().zip(&m.means) {
            out.push(Edit {
                site: e.site,
                positions: Selection::Only(vec![*p]),
                heads: Selection::All,
                dims: Selection::Only(m.dims.clone()),
                op: EditOp::ReplaceRow { values: row.iter().map(|&v| v as f32).collect() },
            });
        }
        measured.push(m);
    }
    Ok((out, measured))
}
