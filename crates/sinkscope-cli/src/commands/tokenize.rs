//! `sinkscope tokenize MODEL --text TEXT [--bos ...] [--json]`.

use crate::common::{first_token, parse_bos};
use anyhow::Result;
use serde_json::json;
use sinkscope_io::tokenizer::BosPolicy;
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// A `.gguf` file or a Hugging Face folder.
    pub model: PathBuf,
    /// The text to tokenize.
    #[arg(long)]
    pub text: String,
    /// Prepend the BOS token: auto (the model's own setting), always, never, or eos (the EOS
    /// token in BOS's place).
    #[arg(long, default_value = "auto", value_parser = parse_bos)]
    pub bos: BosPolicy,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    let files = sinkscope_io::ModelFiles::open(&a.model)?;
    let enc = files.tokenizer.encode(&a.text, a.bos)?;
    if a.json {
        let v = json!({
            "ids": enc.ids,
            "tokens": enc.tokens,
            "n_tokens": enc.ids.len(),
            "bos_policy": a.bos.as_str(),
            "first_token": first_token(&files, &enc.ids, enc.bos_prepended),
        });
        crate::term::say_json(&serde_json::to_string_pretty(&v)?)?;
    } else {
        crate::term::say!(
            "{} tokens (BOS {})",
            enc.ids.len(),
            if enc.bos_prepended { "prepended" } else { "not prepended" }
        );
        for (i, (id, tok)) in enc.ids.iter().zip(&enc.tokens).enumerate() {
            crate::term::say!("{i:>5}  {id:>7}  {tok:?}");
        }
    }
    Ok(())
}
