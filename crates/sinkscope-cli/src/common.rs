//! Helpers shared by the commands: model opening, hashing, output folders, exit-code mapping.

use crate::exit;
use anyhow::Result;
use sha2::{Digest, Sha256};
use sinkscope_io::tokenizer::BosPolicy;
use std::path::Path;

/// The error and its causes on one line ([`sinkscope_analysis::exit::message`]).
pub fn render(e: &anyhow::Error) -> String {
    sinkscope_analysis::exit::message(e.as_ref())
}

/// Maps an error chain to the documented exit code ([`sinkscope_analysis::exit::code`], after
/// the CLI's own stdout error).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.downcast_ref::<crate::term::StdoutError>().is_some()) {
        return exit::INPUT;
    }
    sinkscope_analysis::exit::code(e.as_ref())
}

/// Parses `--bos`.
pub fn parse_bos(s: &str) -> Result<BosPolicy, String> {
    s.parse::<BosPolicy>().map_err(|e| e.to_string())
}

/// sha256 of a file, streamed ([`sinkscope_analysis::header::sha256_file`]).
pub fn sha256_file(path: &Path) -> Result<String> {
    Ok(sinkscope_analysis::header::sha256_file(path)?)
}

/// Content hash of a model ([`sinkscope_analysis::header::model_sha256`]).
pub fn model_sha256(path: &Path) -> Result<String> {
    Ok(sinkscope_analysis::header::model_sha256(path)?)
}

pub use sinkscope_analysis::header::{model_info, tokenizer_info, tool_info};

pub use sinkscope_analysis::setup::{claim_out, Placement, RUN_ENTRIES, STREAM_CHUNK_TOKENS};

/// Describes the token at position 0 (the sink candidate).
pub fn first_token(
    files: &sinkscope_io::ModelFiles,
    ids: &[u32],
    bos_prepended: bool,
) -> sinkscope_report::schema::FirstToken {
    let id = ids.first().copied();
    sinkscope_report::schema::FirstToken {
        id: id.map(u64::from),
        token: id.and_then(|i| files.tokenizer.id_to_token(i)),
        is_bos: Some(bos_prepended || (id.is_some() && id == files.tokenizer.bos_id())),
        bos_prepended: Some(bos_prepended),
        same_for_all_prompts: None,
    }
}

/// The longest id kept as it is in a file name (longer ones are cut and hashed).
pub const MAX_NAME_ID: usize = 80;

/// File-name stems for prompt ids: the id itself when it is a short, plain name
/// (`[A-Za-z0-9._-]`, at most [`MAX_NAME_ID`] bytes, not starting with `.`); otherwise its
/// sanitised first [`MAX_NAME_ID`] bytes plus `-` and 12 hex digits of the id's sha256. Stems
/// are unique even on case-insensitive file systems, and at most 93 bytes (file-name limits
/// are 255), so a run never fails midway on an id.
pub fn file_names<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut used = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for id in ids {
        let plain: String = id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
            .take(MAX_NAME_ID)
            .collect();
        let hashed = |extra: usize| {
            let h = sinkscope_analysis::header::hex(&Sha256::digest(format!("{id}\u{0}{extra}").as_bytes()));
            let stem = plain.strip_prefix('.').map_or(plain.clone(), |s| format!("_{s}"));
            format!("{stem}-{}", h.get(..12).unwrap_or(&h))
        };
        let mut name =
            if plain == id && !id.starts_with('.') && !id.is_empty() { plain.clone() } else { hashed(0) };
        let mut extra = 0;
        while !used.insert(name.to_lowercase()) {
            extra += 1;
            name = hashed(extra);
        }
        out.push(name);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Plain ids are kept; odd, long or case-colliding ones get a bounded hashed name; all
    /// names are distinct ignoring case.
    #[test]
    fn file_names_are_bounded_and_collision_free() {
        let long = "x".repeat(5000);
        let ids = ["river", "River", "a/b", "a_b", ".hidden", &long, "", "ok-1.2"];
        let names = file_names(ids.iter().copied());
        assert_eq!(names[0], "river");
        assert!(names[1].starts_with("River-"));
        assert!(names[2].starts_with("a_b-") && names[3] == "a_b");
        assert!(names[4].starts_with("_hidden-"));
        assert!(names[5].len() <= 93 && names[5].starts_with("xxx"));
        assert_eq!(names[7], "ok-1.2");
        let lower: std::collections::BTreeSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
        assert_eq!(lower.len(), names.len());
        assert!(names.iter().all(|n| !n.is_empty() && n.len() <= 93 && !n.starts_with('.')));
    }
}

/// `--stream-layers`, shared by every command that runs the model.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct StreamArgs {
    /// Stream the model layer by layer: only one block's weights are resident at a time (read
    /// from the file's memory map, used for every prompt of a chunk, then released). The same
    /// output bytes as the in-memory mode. Chosen automatically when the model as stored does
    /// not fit in memory but streamed it does.
    #[arg(long)]
    pub stream_layers: bool,
}

/// The CLI's notes sink for [`sinkscope_analysis::setup`]: escaped lines on stderr.
pub fn notes() -> impl FnMut(&str) {
    |line: &str| crate::term::note!("{line}")
}

/// The memory guard with layer streaming ([`sinkscope_analysis::setup::place_model`]).
///
/// # Errors
/// Exit code 6 when neither layout fits and `force` is not given.
pub fn place_model(
    files: &sinkscope_io::ModelFiles,
    shape: &sinkscope_analysis::setup::PassShape,
    stream: StreamArgs,
    force: bool,
) -> Result<Placement> {
    Ok(sinkscope_analysis::setup::place_model(files, shape, stream.stream_layers, force, &mut notes())?)
}

/// Loads the weights as the placement says and builds the model
/// ([`sinkscope_analysis::setup::load_model`]).
pub fn load_model(files: &sinkscope_io::ModelFiles, placement: &Placement) -> Result<sinkscope_model::Model> {
    Ok(sinkscope_analysis::setup::load_model(files, placement)?)
}
