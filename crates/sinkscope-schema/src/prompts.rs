//! `prompts.jsonl`: one type per kind of line, shared by the writers (`sinkscope-analysis`
//! serialises exactly these types, field by field in declaration order) and the readers
//! (`sinkscope-report`, the Python package), which parse them tolerantly: every field has a
//! default, so a line written before a field existed still reads.
//!
//! | kind of run | line type |
//! |---|---|
//! | `profile` (and the sub-runs of `ablate`) | [`PromptRecord`] |
//! | `lens` | [`LensRecord`] |
//! | `probe` | [`ProbeRecord`] |
//! | `mc` (`lens --mc`) | [`McRecord`] |

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Curve, FirstToken, RunKind, SchemaError};

/// The class of a head (`head_class`, metrics.md), checked in this order: `sink`,
/// `identity`, `previous-token`, `mixing`, `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadClass {
    /// Sink head: `bos_attention > sink_epsilon`.
    Sink,
    /// `identity_score > class_tau`.
    Identity,
    /// `prev_token_score > class_tau`.
    PreviousToken,
    /// `attn_entropy > mixing_threshold`.
    Mixing,
    /// None of the above.
    Other,
}

impl HeadClass {
    /// All classes in check order.
    pub const ALL: [HeadClass; 5] =
        [HeadClass::Sink, HeadClass::Identity, HeadClass::PreviousToken, HeadClass::Mixing, HeadClass::Other];

    /// The class's name as it appears in the files and reports (`sink`, `identity`,
    /// `previous-token`, `mixing`, `other`).
    pub fn as_str(self) -> &'static str {
        match self {
            HeadClass::Sink => "sink",
            HeadClass::Identity => "identity",
            HeadClass::PreviousToken => "previous-token",
            HeadClass::Mixing => "mixing",
            HeadClass::Other => "other",
        }
    }
}

impl std::fmt::Display for HeadClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a prompt's `top_activations[l]`: one of the largest `|X[token, dim]|` of
/// layer `l` (the per-run table of `metrics.json` is [`crate::TopActivation`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PromptTopActivation {
    /// The signed activation `X[token, dim]` (ranked by its absolute value).
    pub value: f64,
    /// Row index `i` (token position).
    pub token: usize,
    /// Column index `j` (residual-stream dimension).
    pub dim: usize,
}

/// Per-head values of one prompt, each `L + 1` entries (entry 0 `null`, entry `l` the
/// heads of block `l` in head order).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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

/// The phase boundaries of one prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptPhases {
    /// First layer of Compress.
    pub compress_start: usize,
    /// First layer of Refine, `None` when the prompt has none.
    #[serde(default)]
    pub refine_start: Option<usize>,
}

/// One line of a profile run's `prompts.jsonl` (also the sub-runs of an `ablate` folder).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromptRecord {
    /// Prompt id (a number in the file is read as its decimal text).
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    /// `T`, the number of tokens run.
    pub n_tokens: usize,
    /// Whether the prompt was cut (`--max-tokens` or `--truncate`).
    pub truncated: bool,
    /// The number of tokens before the cut.
    pub n_tokens_original: usize,
    /// The token ids run.
    pub token_ids: Vec<u32>,
    /// The token at position 0 (every field present; `same_for_all_prompts` left out).
    pub first_token: FirstToken,
    /// The example's label (datasets with labels only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<bool>,
    /// Scalar per-layer metrics, `L + 1` values each, keyed by their `metrics.md` name.
    pub metrics: BTreeMap<String, Curve>,
    /// Per-head values.
    pub heads: HeadRecord,
    /// The `top_k` largest `|X[i,j]|` of each layer `l = 0..L`.
    pub top_activations: Vec<Vec<PromptTopActivation>>,
    /// Massive-activation blocks detected on this prompt's own curves.
    pub massive_layers: Vec<usize>,
    /// Theorem-1 bound violations over all layers (must be 0).
    pub bound_violations: usize,
    /// The model's own next-token NLL: `[sum over positions 1..T-1, number of positions]`
    /// (runs with `nll` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nll: Option<(f64, usize)>,
    /// The Mix–Compress–Refine boundaries of this prompt's own curves (`None` when it has no
    /// compressed layer; absent in records written before phases were per prompt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<PromptPhases>,
}

/// One line of a lens run's `prompts.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LensRecord {
    /// Prompt id.
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    /// Tokens run.
    pub n_tokens: usize,
    /// Token ids.
    pub token_ids: Vec<u32>,
    /// The token at position 0.
    pub first_token: FirstToken,
    /// `logit_lens_nll`, `logit_lens_ppl`, `logit_lens_top1`, L + 1 values each.
    pub metrics: BTreeMap<String, Curve>,
    /// The model's own mean next-token NLL.
    pub model_nll: Option<f64>,
    /// The sums behind the token-weighted summary (so that the aggregate is computed from
    /// the records alone, and a resumed run equals an uninterrupted one).
    pub totals: LensTotals,
}

/// Per-prompt sums of a lens record: what the token-weighted aggregate adds up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LensTotals {
    /// Predictions scored, `T − 1`.
    pub n_predicted: usize,
    /// Sum of the per-position NLLs at each layer l = 0..L.
    pub nll_sum: Vec<f64>,
    /// Correct top-1 predictions at each layer l = 0..L.
    pub n_correct: Vec<usize>,
    /// Sum of the model's own per-position NLLs.
    pub model_nll_sum: f64,
    /// The model's own correct top-1 predictions.
    pub model_n_correct: usize,
}

/// One line of a probe run's `prompts.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeRecord {
    /// Sentence id.
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    /// Tokens run.
    pub n_tokens: usize,
    /// Token ids.
    pub token_ids: Vec<u32>,
    /// Its label (read from a boolean, or from `0`/`1`, `"true"`/`"false"`, `"0"`/`"1"` as
    /// older files may hold).
    #[serde(deserialize_with = "de_label")]
    pub label: bool,
    /// The token at position 0.
    pub first_token: FirstToken,
}

/// One choice's LogitLens log-likelihood at every layer (an [`McRecord`]'s `choices`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChoiceScores {
    /// `loglik[l]`, `l = 0..L`.
    pub loglik: Vec<f64>,
    /// The choice's length in UTF-8 bytes (for the normalised score).
    pub bytes: usize,
}

/// One line of an `mc` run's `prompts.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct McRecord {
    /// Item id.
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    /// Tokens of the context.
    pub n_tokens: usize,
    /// The context's token ids (BOS included when prepended).
    pub token_ids: Vec<u32>,
    /// The token at position 0.
    pub first_token: FirstToken,
    /// Index of the correct choice.
    pub gold: usize,
    /// Per choice: `loglik[l]` and its length in bytes.
    pub choices: Vec<ChoiceScores>,
    /// Per layer: the gold choice has the largest summed log-likelihood.
    pub correct: Vec<bool>,
    /// Per layer: the gold choice has the largest log-likelihood per byte.
    pub correct_norm: Vec<bool>,
}

fn de_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

fn de_label<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    use serde::de::Error;
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::Number(n) if n.as_f64() == Some(0.0) => Ok(false),
        Value::Number(n) if n.as_f64() == Some(1.0) => Ok(true),
        Value::String(s) if s == "true" || s == "1" => Ok(true),
        Value::String(s) if s == "false" || s == "0" => Ok(false),
        other => Err(D::Error::custom(format!("a label is a boolean (or 0/1), not {other}"))),
    }
}

/// Reads every line of a `prompts.jsonl` as `T` (blank lines skipped).
///
/// # Errors
/// [`SchemaError::Io`], or [`SchemaError::Parse`] naming the line.
pub fn load_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, SchemaError> {
    let file = std::fs::File::open(path).map_err(SchemaError::io(path))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(SchemaError::io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str(&line).map_err(|e| SchemaError::Parse {
            path: path.to_path_buf(),
            line: Some(i + 1),
            message: e.to_string(),
        })?;
        out.push(rec);
    }
    Ok(out)
}

/// The lines of a run folder's `prompts.jsonl`, each parsed as the type of the folder's
/// kind of run.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptLine {
    /// A profile run's line (also the sub-runs of `ablate`).
    Profile(PromptRecord),
    /// A lens run's line.
    Lens(LensRecord),
    /// A probe run's line.
    Probe(ProbeRecord),
    /// An `mc` run's line.
    Mc(McRecord),
}

impl PromptLine {
    /// Reads every line of a `prompts.jsonl` written by a run of `kind`.
    ///
    /// # Errors
    /// As [`load_lines`].
    pub fn load_all(path: &Path, kind: RunKind) -> Result<Vec<Self>, SchemaError> {
        Ok(match kind {
            RunKind::Profile | RunKind::Ablate => {
                load_lines::<PromptRecord>(path)?.into_iter().map(Self::Profile).collect()
            }
            RunKind::Lens => load_lines::<LensRecord>(path)?.into_iter().map(Self::Lens).collect(),
            RunKind::Probe => load_lines::<ProbeRecord>(path)?.into_iter().map(Self::Probe).collect(),
            RunKind::Mc => load_lines::<McRecord>(path)?.into_iter().map(Self::Mc).collect(),
        })
    }

    /// The prompt's id.
    pub fn id(&self) -> &str {
        match self {
            Self::Profile(r) => &r.id,
            Self::Lens(r) => &r.id,
            Self::Probe(r) => &r.id,
            Self::Mc(r) => &r.id,
        }
    }

    /// `T`, the number of tokens run: `n_tokens`, or the number of token ids when a line
    /// has no `n_tokens`; `None` when it has neither.
    pub fn n_tokens(&self) -> Option<usize> {
        let (n, ids) = match self {
            Self::Profile(r) => (r.n_tokens, &r.token_ids),
            Self::Lens(r) => (r.n_tokens, &r.token_ids),
            Self::Probe(r) => (r.n_tokens, &r.token_ids),
            Self::Mc(r) => (r.n_tokens, &r.token_ids),
        };
        if n > 0 {
            Some(n)
        } else {
            (!ids.is_empty()).then_some(ids.len())
        }
    }

    /// The token at position 0 (`None` when the line has none).
    pub fn first_token(&self) -> Option<&FirstToken> {
        let ft = match self {
            Self::Profile(r) => &r.first_token,
            Self::Lens(r) => &r.first_token,
            Self::Probe(r) => &r.first_token,
            Self::Mc(r) => &r.first_token,
        };
        (ft != &FirstToken::default()).then_some(ft)
    }

    /// The per-layer metrics of the line (profile and lens lines; `None` for the others).
    pub fn metrics(&self) -> Option<&BTreeMap<String, Curve>> {
        match self {
            Self::Profile(r) => Some(&r.metrics),
            Self::Lens(r) => Some(&r.metrics),
            Self::Probe(_) | Self::Mc(_) => None,
        }
    }

    /// The model's own mean next-token NLL (lens lines).
    pub fn model_nll(&self) -> Option<f64> {
        match self {
            Self::Lens(r) => r.model_nll,
            _ => None,
        }
    }

    /// The example's label (probe lines, and profile lines of labelled datasets).
    pub fn label(&self) -> Option<bool> {
        match self {
            Self::Profile(r) => r.label,
            Self::Probe(r) => Some(r.label),
            Self::Lens(_) | Self::Mc(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn lines_of_older_files_still_read() {
        let p: ProbeRecord = serde_json::from_str(r#"{"id": 3, "label": 1}"#).unwrap();
        assert_eq!((p.id.as_str(), p.label), ("3", true));
        let p: ProbeRecord = serde_json::from_str(r#"{"id": "a", "label": "false"}"#).unwrap();
        assert!(!p.label);
        assert!(serde_json::from_str::<ProbeRecord>(r#"{"id": "a", "label": "maybe"}"#).is_err());
        let r: PromptRecord =
            serde_json::from_str(r#"{"id": "x", "metrics": {"bos_norm": [1.0, null]}}"#).unwrap();
        assert_eq!(r.metrics["bos_norm"], vec![Some(1.0), None]);
        assert!(r.phases.is_none() && r.nll.is_none() && r.label.is_none());
        let line = PromptLine::Profile(r);
        assert_eq!((line.n_tokens(), line.first_token()), (None, None));
        let l: LensRecord =
            serde_json::from_str(r#"{"id": "y", "token_ids": [1, 2], "model_nll": 2.5}"#).unwrap();
        let line = PromptLine::Lens(l);
        assert_eq!((line.n_tokens(), line.model_nll()), (Some(2), Some(2.5)));
    }

    #[test]
    fn a_profile_line_is_written_in_declaration_order() {
        let r = PromptRecord {
            id: "p".into(),
            first_token: FirstToken {
                id: Some(1),
                token: None,
                is_bos: Some(true),
                bos_prepended: Some(false),
                same_for_all_prompts: None,
            },
            heads: HeadRecord {
                head_class: vec![None, Some(vec![HeadClass::PreviousToken])],
                ..Default::default()
            },
            top_activations: vec![vec![PromptTopActivation { value: -2.5, token: 0, dim: 17 }]],
            ..Default::default()
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.starts_with(r#"{"id":"p","n_tokens":0,"truncated":false,"n_tokens_original":0,"token_ids":[],"first_token":{"id":1,"token":null,"is_bos":true,"bos_prepended":false},"metrics":{}"#), "{s}");
        assert!(
            s.contains(r#""head_class":[null,["previous-token"]]"#)
                && s.contains(r#"[[{"value":-2.5,"token":0,"dim":17}]]"#),
            "{s}"
        );
        assert!(!s.contains("label") && !s.contains("nll") && !s.contains("phases"), "{s}");
    }
}
