//! [`Metric`]: the name of every per-layer curve of a profile's `metrics.json`
//! (`metrics.<name>`) and `layers.csv` (`<name>_mean`, ...), as `docs/metrics.md` and
//! `docs/results-schema.md` define them. The writer's set of curves is checked against
//! [`Metric::ALL`] (sinkscope-analysis's tests), and the documents against it here.

/// A per-layer metric of a profile run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    // residual stream: norms, spectrum and Theorem 1 (`X(l)`, entries 0..=L)
    /// `bos_norm`.
    BosNorm,
    /// `token_norm_mean`.
    TokenNormMean,
    /// `bos_ratio`.
    BosRatio,
    /// `M`.
    MaxAbs,
    /// `R`.
    RestNorm,
    /// `c`.
    C,
    /// `alpha`.
    Alpha,
    /// `median_abs_activation`.
    MedianAbsActivation,
    /// `massive`.
    Massive,
    /// `entropy`.
    Entropy,
    /// `entropy_norm`.
    EntropyNorm,
    /// `entropy_norm_logT`.
    EntropyNormLogT,
    /// `renyi_entropy_2`.
    RenyiEntropy2,
    /// `effective_rank`.
    EffectiveRank,
    /// `anisotropy`.
    Anisotropy,
    /// `dominance`.
    Dominance,
    /// `sigma1_sq`.
    Sigma1Sq,
    /// `sigma1_sq_bound`.
    Sigma1SqBound,
    /// `anisotropy_bound`.
    AnisotropyBound,
    /// `entropy_bound`.
    EntropyBound,
    /// `dominance_bound`.
    DominanceBound,
    /// `sigma1_sq_tightness`.
    Sigma1SqTightness,
    /// `anisotropy_tightness`.
    AnisotropyTightness,
    /// `entropy_tightness`.
    EntropyTightness,
    /// `dominance_tightness`.
    DominanceTightness,
    // attention (block l, entry 0 null)
    /// `sink_rate`.
    SinkRate,
    /// `sink_rate_excl_q0`.
    SinkRateExclQ0,
    /// `mixing_score`.
    MixingScore,
    /// `bos_attention`.
    BosAttention,
    /// `bos_attention_excl`.
    BosAttentionExcl,
    /// `identity_score`.
    IdentityScore,
    /// `prev_token_score`.
    PrevTokenScore,
    /// `learned_sink_mass`.
    LearnedSinkMass,
    // MLP output at the first token (block l, entry 0 null)
    /// `mlp_bos_norm`.
    MlpBosNorm,
    /// `mlp_other_median`.
    MlpOtherMedian,
    /// `mlp_ratio`.
    MlpRatio,
    // head classes (fraction of the layer's heads; entry 0 null)
    /// `head_frac_sink`.
    HeadFracSink,
    /// `head_frac_identity`.
    HeadFracIdentity,
    /// `head_frac_previous_token`.
    HeadFracPreviousToken,
    /// `head_frac_mixing`.
    HeadFracMixing,
    /// `head_frac_other`.
    HeadFracOther,
    // sink values (entry 0 null)
    /// `sink_value_norm`.
    SinkValueNorm,
    /// `sink_value_ratio`.
    SinkValueRatio,
    /// `sink_output_share`.
    SinkOutputShare,
    /// `sink_output_share_sink_heads`.
    SinkOutputShareSinkHeads,
}

impl Metric {
    /// Every metric, in the writer's order (residual, attention, MLP, head classes, sink values).
    pub const ALL: [Metric; 45] = [
        Metric::BosNorm,
        Metric::TokenNormMean,
        Metric::BosRatio,
        Metric::MaxAbs,
        Metric::RestNorm,
        Metric::C,
        Metric::Alpha,
        Metric::MedianAbsActivation,
        Metric::Massive,
        Metric::Entropy,
        Metric::EntropyNorm,
        Metric::EntropyNormLogT,
        Metric::RenyiEntropy2,
        Metric::EffectiveRank,
        Metric::Anisotropy,
        Metric::Dominance,
        Metric::Sigma1Sq,
        Metric::Sigma1SqBound,
        Metric::AnisotropyBound,
        Metric::EntropyBound,
        Metric::DominanceBound,
        Metric::Sigma1SqTightness,
        Metric::AnisotropyTightness,
        Metric::EntropyTightness,
        Metric::DominanceTightness,
        Metric::SinkRate,
        Metric::SinkRateExclQ0,
        Metric::MixingScore,
        Metric::BosAttention,
        Metric::BosAttentionExcl,
        Metric::IdentityScore,
        Metric::PrevTokenScore,
        Metric::LearnedSinkMass,
        Metric::MlpBosNorm,
        Metric::MlpOtherMedian,
        Metric::MlpRatio,
        Metric::HeadFracSink,
        Metric::HeadFracIdentity,
        Metric::HeadFracPreviousToken,
        Metric::HeadFracMixing,
        Metric::HeadFracOther,
        Metric::SinkValueNorm,
        Metric::SinkValueRatio,
        Metric::SinkOutputShare,
        Metric::SinkOutputShareSinkHeads,
    ];

    /// The name in the result files (`metrics.md`).
    pub const fn name(self) -> &'static str {
        match self {
            Metric::BosNorm => "bos_norm",
            Metric::TokenNormMean => "token_norm_mean",
            Metric::BosRatio => "bos_ratio",
            Metric::MaxAbs => "M",
            Metric::RestNorm => "R",
            Metric::C => "c",
            Metric::Alpha => "alpha",
            Metric::MedianAbsActivation => "median_abs_activation",
            Metric::Massive => "massive",
            Metric::Entropy => "entropy",
            Metric::EntropyNorm => "entropy_norm",
            Metric::EntropyNormLogT => "entropy_norm_logT",
            Metric::RenyiEntropy2 => "renyi_entropy_2",
            Metric::EffectiveRank => "effective_rank",
            Metric::Anisotropy => "anisotropy",
            Metric::Dominance => "dominance",
            Metric::Sigma1Sq => "sigma1_sq",
            Metric::Sigma1SqBound => "sigma1_sq_bound",
            Metric::AnisotropyBound => "anisotropy_bound",
            Metric::EntropyBound => "entropy_bound",
            Metric::DominanceBound => "dominance_bound",
            Metric::Sigma1SqTightness => "sigma1_sq_tightness",
            Metric::AnisotropyTightness => "anisotropy_tightness",
            Metric::EntropyTightness => "entropy_tightness",
            Metric::DominanceTightness => "dominance_tightness",
            Metric::SinkRate => "sink_rate",
            Metric::SinkRateExclQ0 => "sink_rate_excl_q0",
            Metric::MixingScore => "mixing_score",
            Metric::BosAttention => "bos_attention",
            Metric::BosAttentionExcl => "bos_attention_excl",
            Metric::IdentityScore => "identity_score",
            Metric::PrevTokenScore => "prev_token_score",
            Metric::LearnedSinkMass => "learned_sink_mass",
            Metric::HeadFracSink => "head_frac_sink",
            Metric::HeadFracIdentity => "head_frac_identity",
            Metric::HeadFracPreviousToken => "head_frac_previous_token",
            Metric::HeadFracMixing => "head_frac_mixing",
            Metric::HeadFracOther => "head_frac_other",
            Metric::SinkValueNorm => "sink_value_norm",
            Metric::SinkValueRatio => "sink_value_ratio",
            Metric::SinkOutputShare => "sink_output_share",
            Metric::SinkOutputShareSinkHeads => "sink_output_share_sink_heads",
            Metric::MlpBosNorm => "mlp_bos_norm",
            Metric::MlpOtherMedian => "mlp_other_median",
            Metric::MlpRatio => "mlp_ratio",
        }
    }

    /// Whether the curve belongs to the blocks (attention, head classes, sink values, MLP:
    /// entry 0, the embeddings, is `null`) rather than to the residual stream `X(l)`.
    pub const fn is_block_metric(self) -> bool {
        !matches!(self.family(), Family::Residual)
    }

    /// Which part of the model the metric describes.
    pub const fn family(self) -> Family {
        let i = self as usize;
        if i < 25 {
            Family::Residual
        } else if i < 33 {
            Family::Attention
        } else if i < 36 {
            Family::Mlp
        } else if i < 41 {
            Family::HeadClass
        } else {
            Family::SinkValue
        }
    }

    /// The metric of a name, if it is one.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A per-layer curve of a task run's `metrics.json` (`lens`, `probe`, `lens --mc`):
/// how well `X(l)` serves generation and embedding tasks (metrics.md, "Task probes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskMetric {
    /// `logit_lens_nll` (lens).
    LogitLensNll,
    /// `logit_lens_ppl` (lens).
    LogitLensPpl,
    /// `logit_lens_top1` (lens).
    LogitLensTop1,
    /// `probe_accuracy` (probe).
    ProbeAccuracy,
    /// `mc_accuracy` (lens --mc).
    McAccuracy,
    /// `mc_accuracy_norm` (lens --mc).
    McAccuracyNorm,
}

impl TaskMetric {
    /// Every task curve, in the order above.
    pub const ALL: [TaskMetric; 6] = [
        TaskMetric::LogitLensNll,
        TaskMetric::LogitLensPpl,
        TaskMetric::LogitLensTop1,
        TaskMetric::ProbeAccuracy,
        TaskMetric::McAccuracy,
        TaskMetric::McAccuracyNorm,
    ];
    /// The curves of a lens run, in the writer's order.
    pub const LENS: [TaskMetric; 3] =
        [TaskMetric::LogitLensNll, TaskMetric::LogitLensPpl, TaskMetric::LogitLensTop1];
    /// The curves of a `lens --mc` run, in the writer's order.
    pub const MC: [TaskMetric; 2] = [TaskMetric::McAccuracy, TaskMetric::McAccuracyNorm];

    /// The name in the result files (`metrics.md`).
    pub const fn name(self) -> &'static str {
        match self {
            TaskMetric::LogitLensNll => "logit_lens_nll",
            TaskMetric::LogitLensPpl => "logit_lens_ppl",
            TaskMetric::LogitLensTop1 => "logit_lens_top1",
            TaskMetric::ProbeAccuracy => "probe_accuracy",
            TaskMetric::McAccuracy => "mc_accuracy",
            TaskMetric::McAccuracyNorm => "mc_accuracy_norm",
        }
    }
}

impl std::fmt::Display for TaskMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The parts of the model the metrics describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The residual stream `X(l)` (norms, spectrum, Theorem 1).
    Residual,
    /// Block l's attention.
    Attention,
    /// The classes of block l's heads.
    HeadClass,
    /// The sink token's value vectors in block l.
    SinkValue,
    /// Block l's MLP output at the first token.
    Mlp,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Names are distinct and round-trip; the families follow the declaration order.
    #[test]
    fn names_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for m in Metric::ALL {
            assert!(seen.insert(m.name()), "{m} twice");
            assert_eq!(Metric::from_name(m.name()), Some(m));
        }
        assert_eq!(Metric::from_name("no_such_metric"), None);
        assert_eq!(Metric::BosRatio.family(), Family::Residual);
        assert_eq!(Metric::DominanceTightness.family(), Family::Residual);
        assert_eq!(Metric::SinkRate.family(), Family::Attention);
        assert_eq!(Metric::LearnedSinkMass.family(), Family::Attention);
        assert_eq!(Metric::HeadFracSink.family(), Family::HeadClass);
        assert_eq!(Metric::SinkOutputShareSinkHeads.family(), Family::SinkValue);
        assert_eq!(Metric::MlpRatio.family(), Family::Mlp);
    }

    /// `docs/metrics.md` and `docs/results-schema.md` define every metric the writer emits,
    /// each under its name in backquotes.
    #[test]
    fn every_metric_is_documented() {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");
        let text: String = ["metrics.md", "results-schema.md"]
            .iter()
            .map(|f| std::fs::read_to_string(format!("{docs}/{f}")).unwrap())
            .collect();
        let names = Metric::ALL.iter().map(|m| m.name()).chain(TaskMetric::ALL.iter().map(|m| m.name()));
        let missing: Vec<&str> = names.filter(|n| !text.contains(&format!("`{n}`"))).collect();
        assert!(
            missing.is_empty(),
            "not documented in docs/metrics.md or docs/results-schema.md: {missing:?}"
        );
    }
}
