//! Checkpoints -> (ModelConfig, weights by role, tokenizer).
//!
//! Reads Hugging Face safetensors folders (memory-mapped, sharded or not) and GGUF files
//! (v2/v3, dequantised exactly), resolves them through one declaration per family into a
//! [`sinkscope_spec::ModelConfig`], and loads weights strictly by role.
//!
//! ```no_run
//! let files = sinkscope_io::ModelFiles::open(std::path::Path::new("models/SmolLM2-135M-Instruct.Q4_1.gguf"))?;
//! println!("{} layers", files.config.n_layers);
//! let weights = files.load_weights()?;
//! # Ok::<(), sinkscope_io::IoError>(())
//! ```

pub mod checkpoint;
pub mod error;
pub mod families;
pub mod fuzzing;
pub mod gguf;
pub mod gguf_meta;
pub mod hf_config;
pub mod prompts;
pub mod source;
pub mod stored;
pub mod tokenizer;
pub mod weights;

pub use checkpoint::{Format, ModelFiles};
pub use error::IoError;
pub use weights::{NonFiniteTensor, TensorRole, Weight, WeightSet};
