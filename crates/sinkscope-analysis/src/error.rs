//! The analysis crate's typed errors. Every message names the prompt, file or hook site
//! involved.

use sinkscope_spec::HookSite;
use std::path::PathBuf;

/// Errors from running an experiment.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The model failed on a prompt (the source says where; a NaN/Inf names its hook site).
    #[error("prompt '{id}': {source}")]
    Forward {
        /// The prompt id.
        id: String,
        /// The model's error.
        #[source]
        source: sinkscope_model::ModelError,
    },
    /// A metric could not be computed from an activation (a shape the collector did not
    /// expect: a bug, not bad input).
    #[error("prompt '{id}': metrics at {site}: {source}")]
    Metrics {
        /// The prompt id.
        id: String,
        /// The hook site whose activation was being reduced.
        site: HookSite,
        /// The metrics error.
        #[source]
        source: sinkscope_metrics::MetricsError,
    },
    /// An aggregate over prompts could not be computed.
    #[error("aggregating {what}: {source}")]
    Aggregate {
        /// Which aggregate.
        what: &'static str,
        /// The metrics error.
        #[source]
        source: sinkscope_metrics::MetricsError,
    },
    /// A collector did not see a site it needs (the forward pass skipped it).
    #[error("prompt '{id}': no activation was seen at {site}")]
    MissingSite {
        /// The prompt id.
        id: String,
        /// The site.
        site: HookSite,
    },
    /// The prompt could not be tokenised.
    #[error("prompt '{id}': {source}")]
    Tokenize {
        /// The prompt id.
        id: String,
        /// The tokenizer's error.
        #[source]
        source: sinkscope_io::tokenizer::TokenizerError,
    },
    /// A prompt with fewer than 2 tokens (metrics.md: T >= 2).
    #[error("prompt '{id}' has {n_tokens} token(s); the metrics need at least 2")]
    PromptTooShort {
        /// The prompt id.
        id: String,
        /// Its number of tokens (after any cut).
        n_tokens: usize,
    },
    /// A prompt longer than the model's context, without truncation asked for.
    #[error(
        "prompt '{id}' has {n_tokens} tokens, more than the model's context length {limit} \
         (use --truncate, or --max-tokens T to cap every prompt)"
    )]
    PromptTooLong {
        /// The prompt id.
        id: String,
        /// Its number of tokens.
        n_tokens: usize,
        /// The context length.
        limit: usize,
    },
    /// An option with an impossible value.
    #[error("invalid option: {0}")]
    Options(String),
    /// No prompts to profile.
    #[error("no prompts to profile")]
    NoPrompts,
    /// An output file or folder cannot be written.
    #[error("{path}: cannot write: {source}")]
    Output {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A result file cannot be read back or parsed.
    #[error("{path}: {reason}")]
    ResultFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An internal failure (a bug), e.g. worker threads that stopped early.
    #[error("internal error: {0}")]
    Internal(String),
    /// JSON encoding failed.
    #[error("JSON encoding: {0}")]
    Json(#[from] serde_json::Error),
    /// A dataset error.
    #[error(transparent)]
    Dataset(#[from] crate::datasets::DatasetError),
    /// An output refused by the output-safety rules (symlink, foreign file) or not writable.
    #[error(transparent)]
    OutDir(#[from] sinkscope_output::OutputError),
}

/// Result alias.
pub type Result<T, E = AnalysisError> = std::result::Result<T, E>;
