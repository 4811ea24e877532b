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
    #[error("non-finite activation (NaN or Inf) at {site} ({}): the weights or the input are broken", where_is(.site))]
    NonFinite {
        /// The first site where it was seen.
        site: HookSite,
    },
    /// A NaN or infinite activation in a model whose checkpoint holds non-finite weights.
    #[error(
        "non-finite activation (NaN or Inf) at {site} ({}); the checkpoint holds non-finite weights: {}",
        where_is(.site),
        .tensors.join("; ")
    )]
    NonFiniteWeights {
        /// The first site where it was seen.
        site: HookSite,
        /// The tensors with NaN/Inf values, described (name, counts, first index).
        tensors: Vec<String>,
    },
}

/// "block 3" for a per-block site, "before the first block" / "after the last block" otherwise.
fn where_is(site: &HookSite) -> String {
    use sinkscope_spec::SiteKind;
    if site.kind.per_block() {
        format!("block {}", site.block)
    } else if matches!(site.kind, SiteKind::LnFinal | SiteKind::Logits) {
        "after the last block".to_string()
    } else {
        "before the first block".to_string()
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, ModelError>;
