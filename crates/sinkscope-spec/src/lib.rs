//! Pure data for sinkscope: the declarative [`ModelConfig`] and its axis enums, typed
//! [`HookSite`]s with TransformerLens names, and serialisable [`HookPlan`]s.
//!
//! ```
//! use sinkscope_spec::{HookSite, SiteKind, Edit, EditOp};
//! let s: HookSite = "blocks.11.hook_mlp_out".parse().unwrap();
//! assert_eq!(s, HookSite::block(11, SiteKind::MlpOut));
//! let e: Edit = "blocks.11.hook_mlp_out:pos=0:scale=0.5".parse().unwrap();
//! assert_eq!(e.op, EditOp::Scale { factor: 0.5 });
//! assert!("blocks.1.hook_mlp_ou".parse::<HookSite>().unwrap_err().to_string().contains("hook_mlp_out"));
//! ```

pub mod config;
pub mod hooks;

pub use config::*;
pub use hooks::*;
