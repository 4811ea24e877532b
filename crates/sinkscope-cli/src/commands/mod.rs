//! One module per subcommand.

pub mod ablate;
pub mod bench;
pub mod compare;
pub mod data;
pub mod experiment;
pub mod fetch;
pub mod inspect;
pub mod lens;
pub mod merge;
pub mod probe;
pub mod profile;
pub mod run;
pub mod sweep;
pub mod tasks;
pub mod tokenize;
