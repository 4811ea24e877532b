//! The documented exit-code categories (README "Exit codes", RELIABILITY.md) and the mapping
//! of every library error to one: the CLI's exit status and the Python package's exception
//! classes both come from [`code_of`].

use crate::datasets::DatasetError;
use crate::AnalysisError;

/// Any other failure.
pub const OTHER: u8 = 1;
/// Bad command line or option (unknown option, hook name or edit).
pub const USAGE: u8 = 2;
/// A bad input or output file (prompts, output folder).
pub const INPUT: u8 = 3;
/// A bad model file.
pub const MODEL: u8 = 4;
/// A numerical failure (NaN/Inf activations).
pub const NUMERICAL: u8 = 5;
/// Not enough memory for the run (the guard's estimate; `--force` overrides).
pub const MEMORY: u8 = 6;

fn dataset(d: &DatasetError) -> u8 {
    match d {
        DatasetError::Unknown { .. } => USAGE,
        DatasetError::Fetch { .. } => OTHER,
        DatasetError::NotFetched { .. }
        | DatasetError::Checksum { .. }
        | DatasetError::Os { .. }
        | DatasetError::Parse { .. } => INPUT,
    }
}

/// The exit code of one error of a chain, if it is a library error that decides it (`None`:
/// not one of ours, or one whose source decides, e.g. a model error inside a prompt). Walk the
/// chain from the outermost error and take the first `Some`; none at all is [`OTHER`].
pub fn code_of(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    use sinkscope_model::memory::MemoryError;
    use sinkscope_model::ModelError;
    use sinkscope_report::ReportError as R;
    if let Some(a) = cause.downcast_ref::<AnalysisError>() {
        return match a {
            AnalysisError::PromptTooShort { .. }
            | AnalysisError::PromptTooLong { .. }
            | AnalysisError::Tokenize { .. }
            | AnalysisError::NoPrompts
            | AnalysisError::Output { .. }
            | AnalysisError::ResultFile { .. }
            | AnalysisError::OutDir(_) => Some(INPUT),
            AnalysisError::Options(_) => Some(USAGE),
            AnalysisError::Dataset(d) => Some(dataset(d)),
            AnalysisError::Forward { .. } => None,
            AnalysisError::Metrics { .. }
            | AnalysisError::Aggregate { .. }
            | AnalysisError::MissingSite { .. }
            | AnalysisError::Internal(_)
            | AnalysisError::Json(_) => Some(OTHER),
        };
    }
    if let Some(s) = cause.downcast_ref::<crate::setup::SetupError>() {
        return Some(code(s.inner()));
    }
    if let Some(d) = cause.downcast_ref::<DatasetError>() {
        return Some(dataset(d));
    }
    if cause.downcast_ref::<sinkscope_schema::SchemaError>().is_some() {
        return Some(INPUT);
    }
    if let Some(e) = cause.downcast_ref::<R>() {
        return Some(match e {
            R::Schema(_) | R::Png { .. } | R::WrongKind { .. } | R::ModelMismatch { .. } | R::Output(_) => {
                INPUT
            }
            R::NoRuns | R::NoTaskRuns => USAGE,
            R::Plot { .. } => OTHER,
        });
    }
    if cause.downcast_ref::<sinkscope_io::prompts::PromptError>().is_some()
        || cause.downcast_ref::<sinkscope_output::OutputError>().is_some()
    {
        return Some(INPUT);
    }
    if let Some(m) = cause.downcast_ref::<ModelError>() {
        return Some(match m {
            ModelError::NonFinite { .. } | ModelError::NonFiniteWeights { .. } => NUMERICAL,
            ModelError::Input(_) => INPUT,
            ModelError::Hook { .. } => USAGE,
            _ => OTHER,
        });
    }
    if let Some(m) = cause.downcast_ref::<MemoryError>() {
        return Some(match m {
            MemoryError::Insufficient { .. } | MemoryError::Threads { .. } => MEMORY,
            MemoryError::BadOverride { .. } => USAGE,
        });
    }
    if cause.downcast_ref::<sinkscope_spec::HookError>().is_some() {
        return Some(USAGE);
    }
    if cause.downcast_ref::<sinkscope_io::IoError>().is_some()
        || cause.downcast_ref::<sinkscope_model::LoadError>().is_some()
    {
        return Some(MODEL);
    }
    if cause.downcast_ref::<sinkscope_io::tokenizer::TokenizerError>().is_some() {
        return Some(INPUT);
    }
    None
}

/// The errors of a chain, outermost first.
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |c| c.source())
}

/// The exit code of an error chain: the first error of it that decides ([`code_of`]), else
/// [`OTHER`].
pub fn code(e: &(dyn std::error::Error + 'static)) -> u8 {
    chain(e).find_map(code_of).unwrap_or(OTHER)
}

/// The error and its causes on one line, `outer: inner: ...`, each text once: library errors
/// often print their source inside their own message, and repeating it would only add noise.
pub fn message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    for cause in chain(e) {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
