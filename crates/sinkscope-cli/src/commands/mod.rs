//! One module per subcommand.

pub mod bench;
pub mod compare;
pub mod data;
pub mod fetch;
pub mod inspect;
pub mod profile;
pub mod run;
pub mod tokenize;
