//! Hooks: push-model observers/editors of activations, passed per forward call.
//!
//! The model is immutable; every forward call gets a [`ForwardCtx`] holding the hooks for that
//! call only, so nothing leaks between runs. An unhooked site costs one loop over the (usually
//! empty) hook list.

use crate::error::{ModelError, Result};
use candle_core::Tensor;
use sinkscope_spec::{Edit, EditOp, HookSite, SiteKind};
use std::collections::{BTreeMap, BTreeSet};

/// An observer or editor of activations.
pub trait Hook {
    /// Whether the hook wants to see `site` (cheap; called at every site).
    fn wants(&self, site: HookSite) -> bool;
    /// Sees the activation at `site`; returning `Some` replaces it downstream.
    fn on(&mut self, site: HookSite, act: &Tensor) -> Result<Option<Tensor>>;
}

/// Per-call state of a forward pass: the hooks and whether logits are needed.
#[derive(Default)]
pub struct ForwardCtx<'a> {
    hooks: Vec<&'a mut dyn Hook>,
    /// Compute the LM head even if no hook looks at the logits (the caller wants them back).
    pub want_logits: bool,
}

impl<'a> ForwardCtx<'a> {
    /// An empty context (no hooks, no logits).
    pub fn new() -> Self {
        ForwardCtx { hooks: Vec::new(), want_logits: false }
    }

    /// Adds a hook; hooks run in the order they were added.
    pub fn with(mut self, hook: &'a mut dyn Hook) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Asks for the logits to be returned.
    pub fn with_logits(mut self) -> Self {
        self.want_logits = true;
        self
    }

    /// Whether any hook wants `site`.
    pub fn wants(&self, site: HookSite) -> bool {
        self.hooks.iter().any(|h| h.wants(site))
    }

    /// Runs the hooks at `site` and returns the (possibly replaced) activation.
    pub fn apply(&mut self, site: HookSite, act: Tensor) -> Result<Tensor> {
        Ok(self.apply_tracked(site, act)?.0)
    }

    /// [`apply`](Self::apply), also telling whether a hook replaced the activation.
    pub fn apply_tracked(&mut self, site: HookSite, mut act: Tensor) -> Result<(Tensor, bool)> {
        let mut replaced = false;
        for h in self.hooks.iter_mut() {
            if h.wants(site) {
                if let Some(new) = h.on(site, &act)? {
                    if new.dims() != act.dims() {
                        return Err(ModelError::Hook {
                            site,
                            reason: format!(
                                "replacement has shape {:?}, expected {:?}",
                                new.dims(),
                                act.dims()
                            ),
                        });
                    }
                    act = new;
                    replaced = true;
                }
            }
        }
        Ok((act, replaced))
    }
}

/// A hook from a closure over the sites selected by a predicate.
pub struct FnHook<P, F> {
    pred: P,
    f: F,
}

impl<P, F> FnHook<P, F>
where
    P: Fn(HookSite) -> bool,
    F: FnMut(HookSite, &Tensor) -> Result<Option<Tensor>>,
{
    /// Wraps a site predicate and a closure.
    pub fn new(pred: P, f: F) -> Self {
        FnHook { pred, f }
    }
}

impl<P, F> Hook for FnHook<P, F>
where
    P: Fn(HookSite) -> bool,
    F: FnMut(HookSite, &Tensor) -> Result<Option<Tensor>>,
{
    fn wants(&self, site: HookSite) -> bool {
        (self.pred)(site)
    }
    fn on(&mut self, site: HookSite, act: &Tensor) -> Result<Option<Tensor>> {
        (self.f)(site, act)
    }
}

/// Captures the activations at chosen sites (cheap: tensors are reference-counted).
#[derive(Default)]
pub struct ActivationCache {
    sites: BTreeSet<HookSite>,
    /// Captured activations.
    pub store: BTreeMap<HookSite, Tensor>,
}

impl ActivationCache {
    /// A cache for these sites.
    pub fn new(sites: impl IntoIterator<Item = HookSite>) -> Self {
        ActivationCache { sites: sites.into_iter().collect(), store: BTreeMap::new() }
    }

    /// The captured activation at `site`.
    pub fn get(&self, site: HookSite) -> Option<&Tensor> {
        self.store.get(&site)
    }
}

impl Hook for ActivationCache {
    fn wants(&self, site: HookSite) -> bool {
        self.sites.contains(&site)
    }
    fn on(&mut self, site: HookSite, act: &Tensor) -> Result<Option<Tensor>> {
        self.store.insert(site, act.clone());
        Ok(None)
    }
}

/// Applies the edits of a [`sinkscope_spec::HookPlan`].
pub struct EditHook {
    edits: Vec<Edit>,
}

impl EditHook {
    /// An executor for these edits (applied in order at their sites).
    pub fn new(edits: Vec<Edit>) -> Self {
        EditHook { edits }
    }
}

/// Axis roles of the tensor at a site: (position axis, head axis, last axis).
fn axes(kind: SiteKind) -> (usize, Option<usize>) {
    match kind {
        SiteKind::AttnQ
        | SiteKind::AttnK
        | SiteKind::AttnV
        | SiteKind::AttnQNorm
        | SiteKind::AttnKNorm
        | SiteKind::AttnRotQ
        | SiteKind::AttnRotK
        | SiteKind::AttnZ => (0, Some(1)),
        SiteKind::AttnPattern | SiteKind::AttnScores | SiteKind::AttnSinkProb => (1, Some(0)),
        _ => (0, None),
    }
}

impl Hook for EditHook {
    fn wants(&self, site: HookSite) -> bool {
        self.edits.iter().any(|e| e.site == site)
    }

    fn on(&mut self, site: HookSite, act: &Tensor) -> Result<Option<Tensor>> {
        let dims = act.dims().to_vec();
        let mut data: Vec<f32> = act.flatten_all()?.to_vec1()?;
        let (pos_axis, head_axis) = axes(site.kind);
        let last = dims.len().saturating_sub(1);
        let strides: Vec<usize> = (0..dims.len()).map(|i| dims[i + 1..].iter().product()).collect();
        for e in self.edits.iter().filter(|e| e.site == site) {
            let check = |sel: &sinkscope_spec::Selection, axis: Option<usize>, what: &str| -> Result<()> {
                if let Some(m) = sel.max() {
                    let n = axis.and_then(|a| dims.get(a)).copied().unwrap_or(0);
                    if m >= n {
                        return Err(ModelError::Hook {
                            site,
                            reason: format!("{what} index {m} out of range (size {n})"),
                        });
                    }
                }
                Ok(())
            };
            check(&e.positions, Some(pos_axis), "position")?;
            check(&e.heads, head_axis, "head")?;
            check(&e.dims, Some(last), "dim")?;
            if let EditOp::ReplaceRow { values } = &e.op {
                let want = match &e.dims {
                    sinkscope_spec::Selection::All => dims.get(last).copied().unwrap_or(0),
                    sinkscope_spec::Selection::Only(v) => v.len(),
                };
                if values.len() != want {
                    return Err(ModelError::Hook {
                        site,
                        reason: format!("replacement row has {} values, expected {want}", values.len()),
                    });
                }
            }
            if e.op == EditOp::MeanOthers {
                mean_others(&mut data, &dims, e, site)?;
                continue;
            }
            if e.op == EditOp::MeanPrompts {
                return Err(ModelError::Hook {
                    site,
                    reason: "mean_prompts needs the reference means of a first pass over the prompts; \
                             the command resolves it before running (sinkscope_analysis::mean_ref)"
                        .into(),
                });
            }
            for (flat, x) in data.iter_mut().enumerate() {
                let idx = |a: usize| (flat / strides[a]) % dims[a];
                if !e.positions.contains(idx(pos_axis)) || !e.dims.contains(idx(last)) {
                    continue;
                }
                if let Some(h) = head_axis {
                    if !e.heads.contains(idx(h)) {
                        continue;
                    }
                }
                *x = match &e.op {
                    EditOp::Zero => 0.0,
                    EditOp::Scale { factor } => *x * factor,
                    EditOp::Add { value } => *x + value,
                    EditOp::Set { value } => *value,
                    EditOp::MeanOthers | EditOp::MeanPrompts => *x,
                    EditOp::ReplaceRow { values } => {
                        let j = idx(last);
                        let k = match &e.dims {
                            sinkscope_spec::Selection::All => j,
                            sinkscope_spec::Selection::Only(v) => v.iter().position(|d| *d == j).unwrap_or(0),
                        };
                        values.get(k).copied().unwrap_or(*x)
                    }
                };
            }
        }
        Ok(Some(Tensor::from_vec(data, dims, act.device())?))
    }
}

/// Sets each selected `(position, dim)` of a `[T, d]` activation to the mean of that dim over
/// the positions that are not selected.
fn mean_others(data: &mut [f32], dims: &[usize], e: &Edit, site: HookSite) -> Result<()> {
    let err = |reason: &str| ModelError::Hook { site, reason: reason.to_string() };
    let [t, d] = dims else { return Err(err("mean ablation needs a [T, d] site")) };
    let others: Vec<usize> = (0..*t).filter(|p| !e.positions.contains(*p)).collect();
    if others.is_empty() {
        return Err(err("mean ablation needs at least one position that is not selected"));
    }
    for j in (0..*d).filter(|j| e.dims.contains(*j)) {
        let mean = others.iter().map(|p| f64::from(data[p * d + j])).sum::<f64>() / others.len() as f64;
        for p in (0..*t).filter(|p| e.positions.contains(*p)) {
            data[p * d + j] = mean as f32;
        }
    }
    Ok(())
}
