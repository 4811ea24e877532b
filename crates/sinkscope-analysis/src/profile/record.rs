//! One line of `prompts.jsonl`: a prompt's per-layer record.

use super::*;

pub use sinkscope_schema::{FirstToken, HeadRecord, PromptPhases, PromptRecord};

/// Builds the record of a profiled prompt.
///
/// # Errors
/// [`AnalysisError::Aggregate`] if massive-layer detection rejects the curves (not
/// expected: the curves come from the same prompt).
pub fn prompt_record(
    id: &str,
    prepared: &Prepared,
    first_token: FirstToken,
    label: Option<bool>,
    profile: &PromptProfile,
    opts: &ProfileOptions,
) -> Result<PromptRecord> {
    let metrics: BTreeMap<String, Vec<Option<f64>>> =
        profile.curves(opts.attention.sink_epsilon).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    fn per_block<T>(
        attention: &[LayerAttention],
        f: impl Fn(&sinkscope_metrics::HeadStats) -> T,
    ) -> Vec<Option<Vec<T>>> {
        std::iter::once(None)
            .chain(attention.iter().map(|a| Some(a.heads.iter().map(&f).collect())))
            .collect()
    }
    let a = &profile.attention;
    let heads = HeadRecord {
        bos_attention: per_block(a, |h| h.bos_attention),
        bos_attention_excl: per_block(a, |h| h.bos_attention_excl),
        attn_entropy: per_block(a, |h| h.attn_entropy),
        identity_score: per_block(a, |h| h.identity_score),
        prev_token_score: per_block(a, |h| h.prev_token_score),
        head_class: per_block(a, |h| h.head_class),
    };
    let empty = Vec::new();
    let get = |k: &str| metrics.get(k).unwrap_or(&empty);
    let massive_layers = detect_massive_layers(
        get(Metric::MlpBosNorm.name()),
        get(Metric::MlpOtherMedian.name()),
        get(Metric::BosRatio.name()),
        &opts.massive,
    )
    .map_err(|source| AnalysisError::Aggregate { what: "massive layers of a prompt", source })?
    .into_iter()
    .map(|m| m.layer)
    .collect();
    let phases =
        crate::aggregate::curve_phases(&|n| metrics.get(n).cloned(), profile.n_layers(), &opts.phases)
            .map_err(|source| AnalysisError::Aggregate { what: "phases of a prompt", source })?
            .map(|p| PromptPhases { compress_start: p.compress_start(), refine_start: p.refine_start() });
    Ok(PromptRecord {
        id: id.to_string(),
        n_tokens: prepared.ids.len(),
        truncated: prepared.truncated(),
        n_tokens_original: prepared.n_tokens_original,
        token_ids: prepared.ids.clone(),
        first_token,
        label,
        top_activations: profile.layers.iter().map(|m| m.norms.top_activations.clone()).collect(),
        massive_layers,
        bound_violations: profile.bound_violations(),
        nll: profile.nll.as_ref().map(|s| (s.nll_sum, s.n_tokens)),
        phases,
        metrics,
        heads,
    })
}

/// Describes the token at position 0 of `ids`.
pub fn first_token(files: &ModelFiles, ids: &[u32], bos_prepended: bool) -> FirstToken {
    let id = ids.first().copied().unwrap_or(0);
    FirstToken {
        id: Some(u64::from(id)),
        token: files.tokenizer.id_to_token(id),
        is_bos: Some(Some(id) == files.tokenizer.bos_id()),
        bos_prepended: Some(bos_prepended),
        same_for_all_prompts: None,
    }
}

impl crate::runner::PromptLine for PromptRecord {
    fn id(&self) -> &str {
        &self.id
    }

    fn token_ids(&self) -> &[u32] {
        &self.token_ids
    }

    fn is_of(&self, ex: &Example, ids: &[u32]) -> bool {
        self.id == ex.id && self.token_ids == ids && self.label == ex.label
    }
}
