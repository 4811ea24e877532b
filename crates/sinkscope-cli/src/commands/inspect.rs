//! `sinkscope inspect MODEL [--json]`.

use crate::term::say;
use anyhow::Result;
use serde_json::json;
use sinkscope_spec::HookSite;
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// A `.gguf` file or a Hugging Face folder.
    pub model: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    let files = sinkscope_io::ModelFiles::open(&a.model)?;
    let c = &files.config;
    let sites: Vec<String> = HookSite::all_for(c).iter().map(|s| s.to_string()).collect();
    let t = &files.tokenizer;
    let v = json!({
        "path": files.path,
        "format": files.format,
        "family": c.family,
        "n_layers": c.n_layers,
        "d_model": c.d_model,
        "n_heads": c.n_heads,
        "n_kv_heads": c.n_kv_heads,
        "d_head": c.d_head,
        "d_mlp": c.d_mlp,
        "d_vocab": c.d_vocab,
        "context_length": c.context_length,
        "parameters": c.parameter_count(),
        "stored_values": files.stored_parameters(),
        "dtype_mix": files.dtype_mix(),
        "tokenizer": {"source": t.source(), "vocab_size": t.vocab_size(), "bos_token": t.bos_token(), "bos_id": t.bos_id(), "eos_token": t.eos_token()},
        "bos_policy_auto_prepends": t.add_bos_default(),
        "config": c,
        "hook_sites": sites,
    });
    if a.json {
        crate::term::say_json(&serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    say!("{}  ({:?})", files.path.display(), files.format);
    say!("family          {}", c.family);
    say!("layers          {}", c.n_layers);
    say!("d_model         {}", c.d_model);
    say!("heads           {} query / {} key-value, d_head {}", c.n_heads, c.n_kv_heads, c.d_head);
    say!("d_mlp           {}", c.d_mlp);
    say!("vocabulary      {}", c.d_vocab);
    say!("context         {}", c.context_length);
    say!("parameters      {:.1} M", c.parameter_count() as f64 / 1e6);
    let mix: Vec<String> = files.dtype_mix().iter().map(|(k, n)| format!("{k} x{n}")).collect();
    say!("tensor types    {}", mix.join(", "));
    say!("norm            {:?}, {:?} placement, {:?} residual", c.norm, c.norm_placement, c.block_layout);
    say!("positions       {:?}", c.positional);
    say!("attention       {}", attention_line(c));
    if c.embed_scale.is_some() || c.embed_norm || c.final_logit_softcap.is_some() {
        say!(
            "embedding       scale {:?}, norm {}; final-logit soft-cap {:?}",
            c.embed_scale,
            c.embed_norm,
            c.final_logit_softcap
        );
    }
    for line in layer_groups(c) {
        say!("layers {line}");
    }
    say!("mlp             {:?}", c.mlp);
    say!("tokenizer       {}", t.source());
    say!(
        "BOS             {} (id {:?}); --bos auto {} it",
        t.bos_token().unwrap_or("none"),
        t.bos_id(),
        if t.add_bos_default() { "prepends" } else { "does not prepend" }
    );
    say!(
        "hook sites      {} (blocks.{{0..{}}}.*; `--json` lists them)",
        sites.len(),
        c.n_layers.saturating_sub(1)
    );
    for s in sites.iter().filter(|s| !s.starts_with("blocks.") || s.starts_with("blocks.0.")) {
        say!("  {s}");
    }
    Ok(())
}

/// Scale, QK-norm, soft-cap and sinks of the attention.
fn attention_line(c: &sinkscope_spec::ModelConfig) -> String {
    let a = &c.attn;
    let mut parts = vec![format!("scale {:.6}", a.scale), format!("QK-norm {:?}", a.qk_norm)];
    if let Some(cap) = a.softcap {
        parts.push(format!("logit soft-cap {cap}"));
    }
    if a.sinks {
        parts.push("learned sink logits".into());
    }
    parts.join(", ")
}

/// Consecutive blocks with the same attention type, window and RoPE base, one line each:
/// `0-4     local, window 512, RoPE base 10000`.
fn layer_groups(c: &sinkscope_spec::ModelConfig) -> Vec<String> {
    let describe = |i: usize| {
        let window = c.layers.get(i).and_then(|l| l.sliding_window);
        let kind = match window {
            Some(w) => format!("local, window {w}"),
            None => "global".to_string(),
        };
        match c.layer_rope(i) {
            Some(r) => format!("{kind}, RoPE base {}", r.theta),
            None => kind,
        }
    };
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=c.n_layers {
        if i == c.n_layers || describe(i) != describe(start) {
            let range = if i - 1 == start { format!("{start}") } else { format!("{start}-{}", i - 1) };
            out.push(format!("{range:<9}{}", describe(start)));
            start = i;
        }
    }
    out
}
