//! The result schema the report reads: the shared `sinkscope-schema` crate (one schema
//! version, the file names, the metric names and the serde types of every file), re-exported
//! under the name the report's modules use.

pub use sinkscope_schema::*;
