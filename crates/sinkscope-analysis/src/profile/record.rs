//! One line of `prompts.jsonl`: a prompt's per-layer record.

use super::*;

/// The token at position 0 of a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstToken {
    /// Its id.
    pub id: u32,
    /// Its vocabulary string.
    pub token: Option<String>,
    /// Whether it is the BOS token (prepended, or the BOS id found as the first token).
    pub is_bos: bool,
    /// Whether sinkscope prepended it.
    pub bos_prepended: bool,
}

/// Per-head values of one prompt, each `L + 1` entries (entry 0 `null`, entry `l` the
/// heads of block `l` in head order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadRecord {
    /// `bos_attention(l, h)`.
    pub bos_attention: Vec<Option<Vec<f64>>>,
    /// `bos_attention_excl(l, h)`.
    pub bos_attention_excl: Vec<Option<Vec<Option<f64>>>>,
    /// `attn_entropy(l, h)`.
    pub attn_entropy: Vec<Option<Vec<Option<f64>>>>,
    /// `identity_score(l, h)`.
    pub identity_score: Vec<Option<Vec<f64>>>,
    /// `prev_token_score(l, h)`.
    pub prev_token_score: Vec<Option<Vec<Option<f64>>>>,
    /// `head_class(l, h)`.
    pub head_class: Vec<Option<Vec<HeadClass>>>,
}

/// One line of `prompts.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    /// Prompt id.
    pub id: String,
    /// `T`, the number of tokens run.
    pub n_tokens: usize,
    /// Whether the prompt was cut (`--max-tokens` or `--truncate`).
    pub truncated: bool,
    /// The number of tokens before the cut.
    pub n_tokens_original: usize,
    /// The token ids run.
    pub token_ids: Vec<u32>,
    /// The token at position 0.
    pub first_token: FirstToken,
    /// The example's label (datasets with labels only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<bool>,
    /// Scalar per-layer metrics, `L + 1` values each (see [`PromptProfile::curves`]).
    pub metrics: BTreeMap<String, Vec<Option<f64>>>,
    /// Per-head values.
    pub heads: HeadRecord,
    /// The `top_k` largest `|X[i,j]|` of each layer `l = 0..L`.
    pub top_activations: Vec<Vec<TopActivation>>,
    /// Massive-activation blocks detected on this prompt's own curves.
    pub massive_layers: Vec<usize>,
    /// Theorem-1 bound violations over all layers (must be 0).
    pub bound_violations: usize,
    /// The model's own next-token NLL: `[sum over positions 1..T-1, number of positions]`
    /// (runs with `nll` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nll: Option<(f64, usize)>,
    /// The Mix–Compress–Refine boundaries of this prompt's own curves (`None` when it has no
    /// compressed layer; absent in records written before phases were per prompt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<PromptPhases>,
}

/// The phase boundaries of one prompt (`prompts.jsonl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptPhases {
    /// First layer of Compress.
    pub compress_start: usize,
    /// First layer of Refine, `None` when the prompt has none.
    pub refine_start: Option<usize>,
}

impl PromptRecord {
    /// Builds the record of a profiled prompt.
    ///
    /// # Errors
    /// [`AnalysisError::Aggregate`] if massive-layer detection rejects the curves (not
    /// expected: the curves come from the same prompt).
    pub fn new(
        id: &str,
        prepared: &Prepared,
        first_token: FirstToken,
        label: Option<bool>,
        profile: &PromptProfile,
        opts: &ProfileOptions,
    ) -> Result<Self> {
        let metrics: BTreeMap<String, Vec<Option<f64>>> = profile
            .curves(opts.attention.sink_epsilon)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
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
}

/// Describes the token at position 0 of `ids`.
pub fn first_token(files: &ModelFiles, ids: &[u32], bos_prepended: bool) -> FirstToken {
    let id = ids.first().copied().unwrap_or(0);
    FirstToken {
        id,
        token: files.tokenizer.id_to_token(id),
        is_bos: Some(id) == files.tokenizer.bos_id(),
        bos_prepended,
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
