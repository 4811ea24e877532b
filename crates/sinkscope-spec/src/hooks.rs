//! Typed hook sites with TransformerLens names, and serialisable hook plans.
//!
//! Block indices in hook names are 0-based (`blocks.{i}`), as in TransformerLens. The metric
//! layer index of metrics.md is l = i + 1 for `blocks.{i}.hook_resid_post`.

use crate::config::{BlockLayout, MlpKind, ModelConfig, Positional, QkNorm};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of a hook site, without its block index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SiteKind {
    /// Raw token-embedding rows `W_E[ids]`, before any scaling or position add.
    TokEmbed,
    /// Residual stream entering block 0 (after embedding scale / position add).
    Embed,
    /// Learned position embeddings (GPT-2 only).
    PosEmbed,
    /// Input of a block.
    ResidPre,
    /// Output of the attention pre-norm.
    Ln1Normalized,
    /// Queries as projected (after the bias, before QK-norm and RoPE), as in TransformerLens:
    /// `[T, n_heads, d_head]`.
    AttnQ,
    /// Keys, same stage: `[T, n_kv_heads, d_head]`.
    AttnK,
    /// Values: `[T, n_kv_heads, d_head]`.
    AttnV,
    /// Queries after QK-norm, before RoPE (models with QK-norm only): `[T, n_heads, d_head]`.
    AttnQNorm,
    /// Keys after QK-norm, before RoPE: `[T, n_kv_heads, d_head]`.
    AttnKNorm,
    /// Queries after RoPE, as they enter `q·k` (before the scale; rotary models only):
    /// `[T, n_heads, d_head]`.
    AttnRotQ,
    /// Keys after RoPE: `[T, n_kv_heads, d_head]`.
    AttnRotK,
    /// Attention scores before the softmax: `q·k` scaled, soft-capped, ALiBi added, masked
    /// (`-inf`) as in TransformerLens: `[n_heads, T, T]`.
    AttnScores,
    /// Attention probabilities: `[n_heads, T, T]`.
    AttnPattern,
    /// Probability mass taken by the learned sink logit (GPT-OSS), per head and query:
    /// `[n_heads, T]`; each pattern row sums to one minus it.
    AttnSinkProb,
    /// Per-head attention output (input of the output projection): `[T, n_heads, d_head]`.
    AttnZ,
    /// Output of the post-attention norm (sandwich / post-norm models; equals `hook_attn_out`).
    Ln1PostNormalized,
    /// What attention adds to the residual: `[T, d]`.
    AttnOut,
    /// `resid_pre + attn_out` (sequential blocks only).
    ResidMid,
    /// Output of the MLP pre-norm.
    Ln2Normalized,
    /// Router logits of a mixture-of-experts MLP (bias included): `[T, n_experts]`.
    RouterLogits,
    /// The experts chosen for each token, best first, as f32 ids: `[T, top_k]`.
    RouterIndices,
    /// Output of the post-MLP norm (sandwich / post-norm models; equals `hook_mlp_out`).
    Ln2PostNormalized,
    /// What the MLP adds to the residual: `[T, d]`.
    MlpOut,
    /// Output of a block.
    ResidPost,
    /// Final norm output.
    LnFinal,
    /// LM-head output: `[T, d_vocab]`.
    Logits,
}

/// One row of the hook-name table: the kind, whether it is per block, and its name suffix.
struct SiteName {
    kind: SiteKind,
    per_block: bool,
    name: &'static str,
}

/// The one table of hook names (TransformerLens's), in dataflow order.
const SITE_NAMES: &[SiteName] = &[
    SiteName { kind: SiteKind::TokEmbed, per_block: false, name: "hook_tok_embed" },
    SiteName { kind: SiteKind::Embed, per_block: false, name: "hook_embed" },
    SiteName { kind: SiteKind::PosEmbed, per_block: false, name: "hook_pos_embed" },
    SiteName { kind: SiteKind::ResidPre, per_block: true, name: "hook_resid_pre" },
    SiteName { kind: SiteKind::Ln1Normalized, per_block: true, name: "ln1.hook_normalized" },
    SiteName { kind: SiteKind::AttnQ, per_block: true, name: "attn.hook_q" },
    SiteName { kind: SiteKind::AttnK, per_block: true, name: "attn.hook_k" },
    SiteName { kind: SiteKind::AttnV, per_block: true, name: "attn.hook_v" },
    SiteName { kind: SiteKind::AttnQNorm, per_block: true, name: "attn.q_norm.hook_normalized" },
    SiteName { kind: SiteKind::AttnKNorm, per_block: true, name: "attn.k_norm.hook_normalized" },
    SiteName { kind: SiteKind::AttnRotQ, per_block: true, name: "attn.hook_rot_q" },
    SiteName { kind: SiteKind::AttnRotK, per_block: true, name: "attn.hook_rot_k" },
    SiteName { kind: SiteKind::AttnScores, per_block: true, name: "attn.hook_attn_scores" },
    SiteName { kind: SiteKind::AttnPattern, per_block: true, name: "attn.hook_pattern" },
    SiteName { kind: SiteKind::AttnSinkProb, per_block: true, name: "attn.hook_sink_prob" },
    SiteName { kind: SiteKind::AttnZ, per_block: true, name: "attn.hook_z" },
    SiteName { kind: SiteKind::Ln1PostNormalized, per_block: true, name: "ln1_post.hook_normalized" },
    SiteName { kind: SiteKind::AttnOut, per_block: true, name: "hook_attn_out" },
    SiteName { kind: SiteKind::ResidMid, per_block: true, name: "hook_resid_mid" },
    SiteName { kind: SiteKind::Ln2Normalized, per_block: true, name: "ln2.hook_normalized" },
    SiteName { kind: SiteKind::RouterLogits, per_block: true, name: "mlp.hook_router_logits" },
    SiteName { kind: SiteKind::RouterIndices, per_block: true, name: "mlp.hook_router_indices" },
    SiteName { kind: SiteKind::Ln2PostNormalized, per_block: true, name: "ln2_post.hook_normalized" },
    SiteName { kind: SiteKind::MlpOut, per_block: true, name: "hook_mlp_out" },
    SiteName { kind: SiteKind::ResidPost, per_block: true, name: "hook_resid_post" },
    SiteName { kind: SiteKind::LnFinal, per_block: false, name: "ln_final.hook_normalized" },
    SiteName { kind: SiteKind::Logits, per_block: false, name: "logits" },
];

impl SiteKind {
    fn entry(self) -> Option<&'static SiteName> {
        SITE_NAMES.iter().find(|e| e.kind == self)
    }

    /// Whether sites of this kind carry a block index.
    pub fn per_block(self) -> bool {
        self.entry().is_some_and(|e| e.per_block)
    }

    /// The name suffix (`hook_resid_post`) or full global name (`hook_embed`).
    pub fn name(self) -> &'static str {
        self.entry().map_or("?", |e| e.name)
    }

    /// Whether the site only shows a value computed elsewhere (a replacement there would
    /// change nothing downstream): the sink mass and the router's choices. Edits refuse it.
    pub fn is_read_only(self) -> bool {
        matches!(self, SiteKind::AttnSinkProb | SiteKind::RouterIndices)
    }

    /// Whether the tensor at this site is per head (`[T, H, d_head]` or `[H, T, T]`).
    pub fn is_per_head(self) -> bool {
        matches!(
            self,
            SiteKind::AttnQ
                | SiteKind::AttnK
                | SiteKind::AttnV
                | SiteKind::AttnQNorm
                | SiteKind::AttnKNorm
                | SiteKind::AttnRotQ
                | SiteKind::AttnRotK
                | SiteKind::AttnZ
                | SiteKind::AttnScores
                | SiteKind::AttnPattern
                | SiteKind::AttnSinkProb
        )
    }
}

/// A hook site: a kind plus, for per-block kinds, a 0-based block index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HookSite {
    /// 0-based block index (0 for global sites).
    pub block: usize,
    /// Site kind.
    pub kind: SiteKind,
}

/// Error from parsing or validating hook names, patterns and edits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// A hook name that matches no site.
    #[error("unknown hook site '{name}'{}", suggest(.suggestions))]
    UnknownSite {
        /// The name given.
        name: String,
        /// The nearest valid names.
        suggestions: Vec<String>,
    },
    /// A valid name whose block index is out of range, or a site this architecture lacks.
    #[error("hook site '{name}' does not exist in this model: {reason}")]
    NotInModel {
        /// The name given.
        name: String,
        /// Why.
        reason: String,
    },
    /// A malformed `--edit` specification.
    #[error("bad edit '{spec}': {reason}")]
    BadEdit {
        /// The specification given.
        spec: String,
        /// Why.
        reason: String,
    },
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", s.iter().map(|x| format!("'{x}'")).collect::<Vec<_>>().join(", "))
    }
}

impl HookSite {
    /// A global site (embed, pos_embed, ln_final, logits).
    pub fn global(kind: SiteKind) -> Self {
        HookSite { block: 0, kind }
    }

    /// A per-block site.
    pub fn block(block: usize, kind: SiteKind) -> Self {
        HookSite { block, kind }
    }

    /// Every site that exists in a model with this config, in dataflow order.
    pub fn all_for(cfg: &ModelConfig) -> Vec<HookSite> {
        let mut out = Vec::new();
        for e in SITE_NAMES
            .iter()
            .filter(|e| !e.per_block && e.kind != SiteKind::LnFinal && e.kind != SiteKind::Logits)
        {
            out.push(HookSite::global(e.kind));
        }
        for b in 0..cfg.n_layers {
            for e in SITE_NAMES.iter().filter(|e| e.per_block) {
                out.push(HookSite::block(b, e.kind));
            }
        }
        out.push(HookSite::global(SiteKind::LnFinal));
        out.push(HookSite::global(SiteKind::Logits));
        out.retain(|s| s.check(cfg).is_ok());
        out
    }

    /// Checks that the site exists for this architecture (block in range, no `hook_resid_mid`
    /// in a parallel block, no `hook_pos_embed` without learned positions).
    pub fn check(&self, cfg: &ModelConfig) -> Result<(), HookError> {
        let err = |reason: String| HookError::NotInModel { name: self.to_string(), reason };
        if self.kind.per_block() && self.block >= cfg.n_layers {
            return Err(err(format!("blocks are numbered 0..{} (0-based)", cfg.n_layers.saturating_sub(1))));
        }
        if self.kind == SiteKind::ResidMid && cfg.block_layout == BlockLayout::Parallel {
            return Err(err("parallel-residual blocks have no resid_mid".into()));
        }
        let missing = match self.kind {
            SiteKind::PosEmbed if !matches!(cfg.positional, Positional::Learned) => {
                Some("the model has no learned position embeddings")
            }
            SiteKind::AttnQNorm | SiteKind::AttnKNorm if cfg.attn.qk_norm == QkNorm::None => {
                Some("the model has no QK-norm")
            }
            SiteKind::AttnRotQ | SiteKind::AttnRotK if cfg.rope().is_none() => {
                Some("the model has no rotary embeddings")
            }
            SiteKind::AttnSinkProb if !cfg.attn.sinks => Some("the model has no learned attention sinks"),
            SiteKind::Ln1PostNormalized | SiteKind::Ln2PostNormalized if !cfg.norm_placement.has_post() => {
                Some("the model has no post-sublayer norms")
            }
            SiteKind::RouterLogits | SiteKind::RouterIndices if !matches!(cfg.mlp, MlpKind::Moe { .. }) => {
                Some("the model's MLP has no router (not a mixture of experts)")
            }
            _ => None,
        };
        match missing {
            Some(reason) => Err(err(reason.into())),
            None => Ok(()),
        }
    }

    /// The metric layer index l of metrics.md for a residual site: `hook_embed` is 0,
    /// `blocks.{i}.hook_resid_post` is i + 1. None for other sites.
    pub fn metric_layer(&self) -> Option<usize> {
        match self.kind {
            SiteKind::Embed => Some(0),
            SiteKind::ResidPost => Some(self.block + 1),
            _ => None,
        }
    }
}

impl fmt::Display for HookSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind.per_block() {
            write!(f, "blocks.{}.{}", self.block, self.kind.name())
        } else {
            f.write_str(self.kind.name())
        }
    }
}

impl From<HookSite> for String {
    fn from(s: HookSite) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for HookSite {
    type Error = HookError;
    fn try_from(s: String) -> Result<Self, HookError> {
        s.parse()
    }
}

impl std::str::FromStr for HookSite {
    type Err = HookError;
    fn from_str(name: &str) -> Result<Self, HookError> {
        if let Some(rest) = name.strip_prefix("blocks.") {
            if let Some((idx, suffix)) = rest.split_once('.') {
                if let Ok(block) = idx.parse::<usize>() {
                    if let Some(e) = SITE_NAMES.iter().find(|e| e.per_block && e.name == suffix) {
                        return Ok(HookSite::block(block, e.kind));
                    }
                }
            }
        } else if let Some(e) = SITE_NAMES.iter().find(|e| !e.per_block && e.name == name) {
            return Ok(HookSite::global(e.kind));
        }
        Err(HookError::UnknownSite { name: name.to_string(), suggestions: nearest_names(name) })
    }
}

/// The valid names (with the block index of the query, or 0) closest to `name` by edit distance.
fn nearest_names(name: &str) -> Vec<String> {
    let block = name
        .strip_prefix("blocks.")
        .and_then(|r| r.split('.').next())
        .and_then(|i| i.parse::<usize>().ok())
        .unwrap_or(0);
    let mut cands: Vec<(usize, String)> = SITE_NAMES
        .iter()
        .map(|e| {
            let full = if e.per_block { format!("blocks.{block}.{}", e.name) } else { e.name.to_string() };
            (levenshtein(name, &full), full)
        })
        .collect();
    cands.sort();
    let best = cands.first().map_or(0, |c| c.0);
    cands.into_iter().filter(|c| c.0 <= best + 2).take(3).map(|c| c.1).collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A capture pattern: a hook name where `*` may stand for the block index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SitePattern {
    /// One site.
    Exact(HookSite),
    /// `blocks.*.<suffix>`: this kind in every block.
    EveryBlock(SiteKind),
}

impl std::str::FromStr for SitePattern {
    type Err = HookError;
    fn from_str(s: &str) -> Result<Self, HookError> {
        let s = s.trim();
        if let Some(suffix) = s.strip_prefix("blocks.*.") {
            let probe: HookSite =
                format!("blocks.0.{suffix}").parse().map_err(|_| HookError::UnknownSite {
                    name: s.to_string(),
                    suggestions: nearest_names(&format!("blocks.0.{suffix}"))
                        .into_iter()
                        .map(|n| n.replacen("blocks.0.", "blocks.*.", 1))
                        .collect(),
                })?;
            return Ok(SitePattern::EveryBlock(probe.kind));
        }
        Ok(SitePattern::Exact(s.parse()?))
    }
}

impl TryFrom<String> for SitePattern {
    type Error = HookError;
    fn try_from(s: String) -> Result<Self, HookError> {
        s.parse()
    }
}

impl From<SitePattern> for String {
    fn from(p: SitePattern) -> String {
        match p {
            SitePattern::Exact(s) => s.to_string(),
            SitePattern::EveryBlock(k) => format!("blocks.*.{}", k.name()),
        }
    }
}

impl SitePattern {
    /// Parses a comma-separated list of patterns.
    pub fn parse_list(s: &str) -> Result<Vec<SitePattern>, HookError> {
        s.split(',').filter(|p| !p.trim().is_empty()).map(str::parse).collect()
    }

    /// The concrete sites this pattern names in a model, each checked against the config.
    pub fn expand(&self, cfg: &ModelConfig) -> Result<Vec<HookSite>, HookError> {
        match *self {
            SitePattern::Exact(s) => {
                s.check(cfg)?;
                Ok(vec![s])
            }
            SitePattern::EveryBlock(kind) => {
                let sites: Vec<HookSite> = (0..cfg.n_layers).map(|b| HookSite::block(b, kind)).collect();
                for s in &sites {
                    s.check(cfg)?;
                }
                Ok(sites)
            }
        }
    }
}

/// Which indices along an axis an edit touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Every index.
    #[default]
    All,
    /// These indices.
    Only(Vec<usize>),
}

impl Selection {
    /// Whether index `i` is selected.
    pub fn contains(&self, i: usize) -> bool {
        match self {
            Selection::All => true,
            Selection::Only(v) => v.contains(&i),
        }
    }

    /// The largest selected index, if the selection is explicit.
    pub fn max(&self) -> Option<usize> {
        match self {
            Selection::All => None,
            Selection::Only(v) => v.iter().copied().max(),
        }
    }

    fn parse(spec: &str, what: &str, list: &str) -> Result<Selection, HookError> {
        let mut out = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || HookError::BadEdit {
                spec: spec.to_string(),
                reason: format!("{what}: '{part}' is not an index or a range a..b"),
            };
            if let Some((a, b)) = part.split_once("..") {
                let a: usize = a.parse().map_err(|_| bad())?;
                let b: usize = b.parse().map_err(|_| bad())?;
                if b <= a || b - a > 1 << 20 {
                    return Err(bad());
                }
                out.extend(a..b);
            } else {
                out.push(part.parse().map_err(|_| bad())?);
            }
        }
        if out.is_empty() {
            return Err(HookError::BadEdit { spec: spec.to_string(), reason: format!("{what}: empty list") });
        }
        Ok(Selection::Only(out))
    }
}

/// What an edit does to the selected elements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum EditOp {
    /// Set to zero.
    Zero,
    /// Multiply by a factor.
    Scale {
        /// The factor λ.
        factor: f32,
    },
    /// Add a constant.
    Add {
        /// The constant.
        value: f32,
    },
    /// Replace by a constant.
    Set {
        /// The constant.
        value: f32,
    },
    /// Replace each selected element by the mean of the same element over the positions that
    /// are *not* selected, within the same prompt (`mean_others`; `[T, d]` sites only). This is
    /// **not** Sun et al.'s mean-ablation: for a first-token massive activation the other
    /// positions' mean is close to zero, so it behaves almost like zero-ablation.
    MeanOthers,
    /// Sun et al.'s mean-ablation (`mean_prompts`): replace each selected element by its mean
    /// at that position over the prompt set, measured in a first pass over the prompts by the
    /// command (which then replaces this edit by `ReplaceRow` edits holding the means; the
    /// model refuses to run it unresolved). `[T, d]` sites, explicit positions.
    MeanPrompts,
    /// Replace the selected rows (positions) by a vector over the last axis (one value per
    /// selected dimension, or the whole row when no dimensions are selected).
    ReplaceRow {
        /// Replacement values.
        values: Vec<f32>,
    },
}

/// One intervention at one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    /// Where.
    pub site: HookSite,
    /// Token positions (query positions for patterns).
    #[serde(default)]
    pub positions: Selection,
    /// Heads (per-head sites only).
    #[serde(default)]
    pub heads: Selection,
    /// Dimensions of the last axis (residual dims, head dims, or key positions for patterns).
    #[serde(default)]
    pub dims: Selection,
    /// The operation.
    pub op: EditOp,
}

/// Grammar of `--edit`, shown in `--help`.
pub const EDIT_GRAMMAR: &str =
    "SITE[:pos=LIST][:head=LIST][:dim=LIST]:OP where OP is zero | scale=F | add=F | set=F | mean_others (the mean over the other positions \
of the same prompt) | mean_prompts (Sun et al.'s mean-ablation: the mean at that position over the prompt set, from a first pass), \
LIST is comma-separated indices or ranges a..b (end excluded). Examples: blocks.11.hook_mlp_out:pos=0:zero, \
blocks.11.hook_mlp_out:pos=0:scale=0.5, blocks.3.attn.hook_z:head=1,2:zero, hook_embed:pos=0:dim=17:set=0";

impl std::str::FromStr for Edit {
    type Err = HookError;
    fn from_str(spec: &str) -> Result<Self, HookError> {
        let bad = |reason: &str| HookError::BadEdit { spec: spec.to_string(), reason: reason.to_string() };
        let mut parts = spec.split(':');
        let site: HookSite = parts.next().unwrap_or_default().trim().parse()?;
        if site.kind.is_read_only() {
            return Err(bad(&format!(
                "{site} only shows a value computed elsewhere; edit {} instead",
                match site.kind {
                    SiteKind::AttnSinkProb => "attn.hook_attn_scores or attn.hook_pattern",
                    _ => "mlp.hook_router_logits",
                }
            )));
        }
        let mut edit = Edit {
            site,
            positions: Selection::All,
            heads: Selection::All,
            dims: Selection::All,
            op: EditOp::Zero,
        };
        let mut op = None;
        for part in parts {
            let (key, val) =
                part.split_once('=').map_or((part.trim(), None), |(k, v)| (k.trim(), Some(v.trim())));
            let num = |v: Option<&str>| -> Result<f32, HookError> {
                let v = v.ok_or_else(|| bad(&format!("'{key}' needs a value, e.g. {key}=0.5")))?;
                let x: f32 = v.parse().map_err(|_| bad(&format!("'{v}' is not a number")))?;
                if x.is_finite() {
                    Ok(x)
                } else {
                    Err(bad(&format!("'{v}' is not finite")))
                }
            };
            let list = |what: &str, v: Option<&str>| -> Result<Selection, HookError> {
                Selection::parse(spec, what, v.ok_or_else(|| bad(&format!("'{key}' needs a list")))?)
            };
            let new_op = match key {
                "pos" => {
                    edit.positions = list("pos", val)?;
                    None
                }
                "head" => {
                    if !site.kind.is_per_head() {
                        return Err(bad(&format!("{site} has no head axis")));
                    }
                    edit.heads = list("head", val)?;
                    None
                }
                "dim" => {
                    edit.dims = list("dim", val)?;
                    None
                }
                "zero" if val.is_none() => Some(EditOp::Zero),
                "scale" => Some(EditOp::Scale { factor: num(val)? }),
                "add" => Some(EditOp::Add { value: num(val)? }),
                "set" => Some(EditOp::Set { value: num(val)? }),
                "mean_others" if val.is_none() => Some(EditOp::MeanOthers),
                "mean_prompts" if val.is_none() => Some(EditOp::MeanPrompts),
                "mean" => {
                    return Err(bad(
                        "'mean' is ambiguous: use mean_others (the mean over the other positions of the same prompt) or \
                         mean_prompts (Sun et al.'s mean-ablation: the mean at that position over the prompt set)",
                    ))
                }
                other => {
                    return Err(bad(&format!(
                        "unknown part '{other}' (expected pos=, head=, dim=, zero, scale=, add=, set=, mean_others, mean_prompts)"
                    )))
                }
            };
            if let Some(o) = new_op {
                if op.is_some() {
                    return Err(bad("more than one operation"));
                }
                op = Some(o);
            }
        }
        edit.op =
            op.ok_or_else(|| bad("no operation (zero, scale=F, add=F, set=F, mean_others or mean_prompts)"))?;
        Ok(edit)
    }
}

/// What to capture and what to change in one forward pass; written into every report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HookPlan {
    /// Sites whose activations are captured.
    pub capture: Vec<SitePattern>,
    /// Interventions, applied in order at their sites.
    pub edits: Vec<Edit>,
}

impl HookPlan {
    /// Checks every site against the config and returns the captured sites, deduplicated,
    /// in dataflow order.
    pub fn resolve_captures(&self, cfg: &ModelConfig) -> Result<Vec<HookSite>, HookError> {
        let mut sites = Vec::new();
        for p in &self.capture {
            sites.extend(p.expand(cfg)?);
        }
        for e in &self.edits {
            e.site.check(cfg)?;
        }
        sites.sort_by_key(|s| order_key(*s));
        sites.dedup();
        Ok(sites)
    }
}

/// Sort key putting sites in the order the forward pass reaches them.
pub fn order_key(s: HookSite) -> (usize, usize, usize) {
    let idx = SITE_NAMES.iter().position(|e| e.kind == s.kind).unwrap_or(0);
    match s.kind {
        SiteKind::TokEmbed | SiteKind::Embed | SiteKind::PosEmbed => (0, 0, idx),
        SiteKind::LnFinal | SiteKind::Logits => (2, 0, idx),
        _ => (1, s.block, idx),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::*;

    fn tiny(
        positional: Positional,
        qk_norm: QkNorm,
        sinks: bool,
        placement: NormPlacement,
        mlp: MlpKind,
    ) -> ModelConfig {
        ModelConfig {
            family: Family::Llama,
            d_model: 8,
            n_layers: 2,
            n_heads: 2,
            n_kv_heads: 1,
            d_head: 4,
            d_mlp: 16,
            d_vocab: 10,
            context_length: 32,
            norm: NormKind::RmsNorm { eps: 1e-6, weight_offset: 0.0 },
            norm_placement: placement,
            block_layout: BlockLayout::Sequential,
            positional,
            mlp,
            attn: AttnSpec { qkv_bias: false, o_bias: false, scale: 0.5, qk_norm, softcap: None, sinks },
            layers: vec![LayerSpec::default(); 2],
            embed_scale: None,
            embed_norm: false,
            final_logit_softcap: None,
            tied_unembed: true,
        }
    }

    /// Sites exist exactly where the architecture has them: rotated q/k with RoPE, QK-norm
    /// outputs with QK-norm, the sink mass with sinks, post-norms with a post placement, the
    /// router with a mixture of experts.
    #[test]
    fn new_sites_exist_only_where_the_architecture_has_them() {
        let rope = Positional::Rotary(RopeSpec { theta: 1e4, rotary_dim: 4, scaling: RopeScaling::None });
        let gated = MlpKind::Gated { act: Activation::Silu, bias: false };
        let plain = tiny(Positional::Alibi, QkNorm::None, false, NormPlacement::Pre, gated);
        let rich = tiny(
            rope,
            QkNorm::PerHead,
            true,
            NormPlacement::Sandwich,
            MlpKind::Moe { n_experts: 4, top_k: 2, alpha: 1.702, limit: 7.0 },
        );
        for name in [
            "blocks.1.attn.hook_rot_q",
            "blocks.1.attn.q_norm.hook_normalized",
            "blocks.1.attn.hook_sink_prob",
            "blocks.1.ln1_post.hook_normalized",
            "blocks.1.mlp.hook_router_logits",
        ] {
            let site: HookSite = name.parse().unwrap();
            assert!(site.check(&rich).is_ok(), "{name} in the rich model");
            assert!(site.check(&plain).is_err(), "{name} not in the plain model");
        }
        for name in ["blocks.0.attn.hook_q", "blocks.0.attn.hook_attn_scores", "blocks.0.ln1.hook_normalized"]
        {
            let site: HookSite = name.parse().unwrap();
            assert!(site.check(&plain).is_ok() && site.check(&rich).is_ok(), "{name} everywhere");
        }
        assert!(HookSite::all_for(&rich).len() > HookSite::all_for(&plain).len());
    }

    /// Edits at sites that only show a value computed elsewhere are refused with a pointer to
    /// the site to edit instead.
    #[test]
    fn read_only_sites_refuse_edits() {
        let e = "blocks.0.attn.hook_sink_prob:pos=0:zero".parse::<Edit>().unwrap_err().to_string();
        assert!(e.contains("hook_attn_scores"), "{e}");
        let e = "blocks.0.mlp.hook_router_indices:zero".parse::<Edit>().unwrap_err().to_string();
        assert!(e.contains("hook_router_logits"), "{e}");
        assert!("blocks.0.attn.hook_attn_scores:head=1:add=-5".parse::<Edit>().is_ok());
    }
}
