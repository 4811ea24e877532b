//! One module per subcommand.

pub mod compare;
pub mod fetch;
pub mod inspect;
pub mod run;
pub mod tokenize;
