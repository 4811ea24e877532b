//! The model crate's typed errors.

use sinkscope_spec::HookSite;

/// Errors from building or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Tensor-engine error.
    #[error("tensor engine: {0}")]
    Candle(#[from] candle_core::Error),
    /// A weight the config needs was not provided.
    #[error("weight {role} of {block} was not loaded")]
    MissingWeight {
        /// Role name.
        role: String,
        /// "block N" or "the model".
        block: String,
    },
    /// Bad model input (tokens).
    #[error("{0}")]
    Input(String),
    /// A hook or an edit cannot apply.
    #[error("hook at {site}: {reason}")]
    Hook {
        /// Where.
        site: HookSite,
        /// Why.
        reason: String,
    },
    /// A NaN or infinite activation.
    #[error("non-finite activation (NaN or Inf) at {site}: the weights or the input are broken")]
    NonFinite {
        /// The first site where it was seen.
        site: HookSite,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, ModelError>;
