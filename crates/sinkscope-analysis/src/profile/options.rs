//! The options of a profile run and the first-token choice (`--first-token`).

use super::*;

/// Options of a profile run; every value is recorded in the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileOptions {
    /// Attention thresholds: ε (sink), τ (head classes), mixing threshold.
    pub attention: AttentionParams,
    /// Massive-layer detection thresholds.
    pub massive: MassiveLayerParams,
    /// Number of top activations kept per layer (metrics.md: k = 5).
    pub top_k: usize,
    /// BOS policy.
    pub bos: BosPolicy,
    /// Keep at most this many tokens of each prompt (a cap always cuts).
    pub max_tokens: Option<usize>,
    /// Cut prompts longer than the model's context instead of failing.
    pub truncate: bool,
    /// Interventions applied during every forward pass (`ablate` runs; empty for a plain
    /// profile).
    pub edits: Vec<sinkscope_spec::Edit>,
    /// Also compute the model's own next-token NLL (runs the LM head).
    pub nll: bool,
    /// Continue an interrupted run in the output folder ([`crate::resume`]). How the run
    /// executes, not what it measures: not recorded among the options.
    pub resume: bool,
    /// `--first-token`: put this token at position 0 instead of any BOS (`bos` must be
    /// `auto` or `never`).
    pub first_token: Option<FirstTokenSpec>,
    /// Thresholds of the Mix–Compress–Refine rule.
    pub phases: sinkscope_metrics::phases::PhaseParams,
    /// Replicates and seed of the bootstrap intervals over prompts.
    pub bootstrap: sinkscope_metrics::bootstrap::BootstrapParams,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            attention: AttentionParams::default(),
            massive: MassiveLayerParams::default(),
            top_k: sinkscope_metrics::norms::DEFAULT_TOP_K,
            bos: BosPolicy::Auto,
            max_tokens: None,
            truncate: false,
            edits: Vec::new(),
            nll: false,
            resume: false,
            first_token: None,
            phases: sinkscope_metrics::phases::PhaseParams::default(),
            bootstrap: sinkscope_metrics::bootstrap::BootstrapParams::default(),
        }
    }
}

impl ProfileOptions {
    /// Checks the values (ε, τ and the mixing threshold finite, `max_tokens ≥ 2`).
    ///
    /// # Errors
    /// [`AnalysisError::Options`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        let a = &self.attention;
        for (name, v) in [
            ("epsilon", a.sink_epsilon),
            ("tau", a.class_tau),
            ("mixing threshold", a.mixing_threshold),
            ("massive mlp factor", self.massive.mlp_factor),
            ("massive ratio factor", self.massive.ratio_factor),
        ] {
            if !v.is_finite() {
                return Err(AnalysisError::Options(format!("{name} must be a finite number, got {v}")));
            }
        }
        if !(a.sink_epsilon > 0.0 && a.sink_epsilon < 1.0) {
            return Err(AnalysisError::Options(format!(
                "--epsilon must be in (0, 1) (a head is a sink when its BOS attention exceeds it), got {}",
                a.sink_epsilon
            )));
        }
        if self.first_token.is_some() && matches!(self.bos, BosPolicy::Always | BosPolicy::Eos) {
            return Err(AnalysisError::Options(format!(
                "--first-token replaces the BOS at position 0; it cannot be combined with --bos {}",
                self.bos
            )));
        }
        if let Some(m) = self.max_tokens {
            if m < 2 {
                return Err(AnalysisError::Options(format!(
                    "--max-tokens must be at least 2 (the metrics need T >= 2), got {m}"
                )));
            }
        }
        Ok(())
    }

    /// The `options` block of the manifest.
    pub fn to_json(&self) -> Value {
        json!({
            "epsilon": self.attention.sink_epsilon,
            "tau": self.attention.class_tau,
            "mixing_threshold": self.attention.mixing_threshold,
            "top_k": self.top_k,
            "massive_mlp_factor": self.massive.mlp_factor,
            "massive_ratio_factor": self.massive.ratio_factor,
            "massive_abs_threshold": sinkscope_metrics::norms::MASSIVE_ABS_THRESHOLD,
            "massive_median_factor": sinkscope_metrics::norms::MASSIVE_MEDIAN_FACTOR,
            "compress_min_sink_rate": self.phases.sink_rate_min,
            "phases": self.phases,
            "bootstrap": {"method": "poisson", "replicates": self.bootstrap.replicates,
                          "seed": self.bootstrap.seed, "level": sinkscope_metrics::bootstrap::LEVEL},
            "bound_tolerance": sinkscope_metrics::theorem::BOUND_TOLERANCE,
            "renyi_alpha": 2.0,
            "bos": self.bos.as_str(),
            "first_token": self.first_token.as_ref().map(FirstTokenSpec::to_json),
            "max_tokens": self.max_tokens,
            "truncate": self.truncate,
            "edits": self.edits,
            "nll": self.nll,
        })
    }
}

/// `--first-token ID|TEXT`: the token put at position 0 of every prompt instead of a BOS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstTokenSpec {
    /// A token id.
    Id(u32),
    /// A text that must tokenise (without BOS) to exactly one token.
    Text(String),
}

impl FirstTokenSpec {
    /// Parses `ID` (all digits) or `TEXT`.
    pub fn parse(s: &str) -> Self {
        match s.parse::<u32>() {
            Ok(id) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => FirstTokenSpec::Id(id),
            _ => FirstTokenSpec::Text(s.to_string()),
        }
    }

    /// The token id.
    ///
    /// # Errors
    /// [`AnalysisError::Options`] for an id beyond the vocabulary or a text that is not one
    /// token.
    pub fn resolve(&self, files: &ModelFiles) -> Result<u32> {
        let t = &files.tokenizer;
        match self {
            FirstTokenSpec::Id(id) => {
                if (*id as usize) < t.vocab_size() {
                    Ok(*id)
                } else {
                    Err(AnalysisError::Options(format!(
                        "--first-token {id}: beyond the vocabulary ({} ids)",
                        t.vocab_size()
                    )))
                }
            }
            FirstTokenSpec::Text(text) => {
                let e = t
                    .encode(text, BosPolicy::Never)
                    .map_err(|source| AnalysisError::Tokenize { id: "--first-token".into(), source })?;
                match e.ids.as_slice() {
                    [id] => Ok(*id),
                    ids => Err(AnalysisError::Options(format!(
                        "--first-token {text:?} is {} tokens ({:?}); give one token or its id",
                        ids.len(),
                        e.tokens
                    ))),
                }
            }
        }
    }

    /// As recorded in the manifest.
    pub fn to_json(&self) -> Value {
        match self {
            FirstTokenSpec::Id(id) => json!({"id": id}),
            FirstTokenSpec::Text(t) => json!({"text": t}),
        }
    }
}
