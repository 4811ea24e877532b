//! The generic hookable decoder on candle-core.
//!
//! One [`Model`] built from a [`sinkscope_spec::ModelConfig`]; one [`block::Block`] whose
//! forward is the only place the residual dataflow is written; hooks passed per call in a
//! [`ForwardCtx`].
//!
//! ```no_run
//! use sinkscope_model::{load, ActivationCache, ForwardCtx};
//! use sinkscope_spec::HookSite;
//! let (files, model) = load(std::path::Path::new("model.gguf"), &candle_core::Device::Cpu)?;
//! let ids = files.tokenizer.encode("Hello", sinkscope_io::tokenizer::BosPolicy::Auto)?.ids;
//! let site: HookSite = "blocks.0.hook_resid_post".parse()?;
//! let mut cache = ActivationCache::new([site]);
//! model.forward(&ids, &mut ForwardCtx::new().with(&mut cache))?;
//! println!("{:?}", cache.get(site).map(|t| t.dims().to_vec()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod block;
pub mod error;
pub mod hooks;
pub mod layers;
pub mod memory;
pub mod model;
pub mod pack;

pub use error::{ModelError, Result};
pub use hooks::{ActivationCache, EditHook, FnHook, ForwardCtx, Hook};
pub use model::{Layout, Model};
pub use pack::Pack;

/// Opens a checkpoint and builds its model on `device`.
pub fn load(
    path: &std::path::Path,
    device: &candle_core::Device,
) -> std::result::Result<(sinkscope_io::ModelFiles, Model), LoadError> {
    let files = sinkscope_io::ModelFiles::open(path)?;
    let model = load_files(&files, device)?;
    Ok((files, model))
}

/// Loads the weights of a checkpoint already opened (e.g. after [`memory::guard`]) and builds
/// its model on `device`.
pub fn load_files(
    files: &sinkscope_io::ModelFiles,
    device: &candle_core::Device,
) -> std::result::Result<Model, LoadError> {
    let weights = files.load_weights()?;
    Ok(Model::new(files.config.clone(), weights, device)?)
}

/// Error from [`load`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading the checkpoint failed.
    #[error(transparent)]
    Io(#[from] sinkscope_io::IoError),
    /// Building the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}
