//! The `manifest.json` of a `sinkscope run` folder (activation dumps): a different file kind
//! from the profile-style [`crate::Manifest`] (`kind: "run"`; the captured hook sites, the
//! edits and one entry per dumped prompt instead of data, options and metrics).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{FirstToken, ModelInfo, TokenizerInfo, ToolInfo};

/// The folder of a run's activation files (`activations/<id>.safetensors`).
pub const ACTIVATIONS_DIR: &str = "activations";

/// `manifest.json` of a `sinkscope run` folder, written (keys sorted) when every prompt's
/// activations are on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivationManifest {
    /// Always [`crate::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always `run`.
    pub kind: String,
    /// The tool and its command line.
    pub tool: ToolInfo,
    /// The model.
    pub model: ModelInfo,
    /// The tokenizer and BOS policy.
    pub tokenizer: TokenizerInfo,
    /// The prompt file.
    pub prompts_file: PathBuf,
    /// Its sha256.
    pub prompts_sha256: String,
    /// Whether a UTF-8 byte-order mark was skipped at its start.
    pub prompts_utf8_bom_skipped: bool,
    /// The resolved hook plan (captures and edits, `mean_prompts` edits replaced by the means
    /// they measured). Kept as JSON: it echoes `sinkscope-spec`'s `HookPlan`, whose shape
    /// follows the edit grammar, not this schema.
    pub plan: Value,
    /// The edits as requested, before `mean_prompts` was resolved (JSON for the same reason).
    pub edits_requested: Value,
    /// What each `mean_prompts` edit's first pass measured (empty without one).
    pub reference_means: Vec<ReferenceMeans>,
    /// The hook sites captured, by TransformerLens name.
    pub captured_sites: Vec<String>,
    /// How to read the activation files, by name (`hook_names`, `activations`, `ln_final`).
    pub conventions: BTreeMap<String, String>,
    /// One entry per prompt, in file order.
    pub prompts: Vec<ActivationPrompt>,
    /// The memory guard's estimate and decision (kept as JSON: the guard's own report,
    /// shared with the other manifests' `memory` block).
    pub memory: Value,
    /// How the run was executed (`stream_layers`; kept as JSON by name, as in
    /// [`crate::Manifest::execution`]).
    pub execution: BTreeMap<String, Value>,
    /// Load and forward times.
    pub timings: ActivationTimings,
}

/// One `mean_prompts` edit's reference means ([`ActivationManifest::reference_means`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReferenceMeans {
    /// The hook site.
    pub site: String,
    /// Positions, in the order of `means`.
    pub positions: Vec<usize>,
    /// Dimensions (the columns of every row of `means`).
    pub dims: Vec<usize>,
    /// `means[i][j]`: mean over the prompts of element `(positions[i], dims[j])`.
    pub means: Vec<Vec<f64>>,
    /// `n_prompts[i]`: prompts long enough to have position `positions[i]`.
    pub n_prompts: Vec<usize>,
}

/// One dumped prompt ([`ActivationManifest::prompts`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivationPrompt {
    /// The prompt id.
    pub id: String,
    /// Its activations, relative to the run folder (`activations/<stem>.safetensors`).
    pub file: String,
    /// Number of tokens.
    pub n_tokens: usize,
    /// Whether the prompt was cut to the context length (`--truncate`).
    pub truncated: bool,
    /// The token ids.
    pub token_ids: Vec<u32>,
    /// The token at position 0.
    pub first_token: FirstToken,
}

/// [`ActivationManifest::timings`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivationTimings {
    /// Model load time in seconds.
    pub load_s: f64,
    /// Forward passes (and writing the activations) in seconds.
    pub forward_s: f64,
    /// Number of tokens run.
    pub tokens: usize,
    /// `tokens / forward_s`.
    pub tokens_per_s: f64,
}
