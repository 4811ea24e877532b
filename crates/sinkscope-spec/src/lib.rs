//! Pure data for sinkscope: the declarative [`ModelConfig`] and its axis enums, typed
//! [`HookSite`]s with TransformerLens names, and serialisable [`HookPlan`]s.
//!
//! ```
//! use sinkscope_spec::{HookSite, SiteKind, Edit, EditOp};
//! let s: HookSite = "blocks.11.hook_mlp_out".parse()?;
//! assert_eq!(s, HookSite::block(11, SiteKind::MlpOut));
//! let e: Edit = "blocks.11.hook_mlp_out:pos=0:scale=0.5".parse()?;
//! assert_eq!(e.op, EditOp::Scale { factor: 0.5 });
//! assert!("blocks.1.hook_mlp_ou".parse::<HookSite>().is_err_and(|e| e.to_string().contains("hook_mlp_out")));
//! # Ok::<(), sinkscope_spec::HookError>(())
//! ```

pub mod config;
pub mod hooks;

pub use config::*;
pub use hooks::*;
