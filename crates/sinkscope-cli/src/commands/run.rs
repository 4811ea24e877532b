//! `sinkscope run MODEL --prompts FILE --capture PATTERNS [--edit SPEC ...] --out DIR`.

use crate::common::*;
use anyhow::{Context, Result};
use sinkscope_io::tokenizer::BosPolicy;
use sinkscope_model::{memory, ActivationCache, EditHook, ForwardCtx};
use sinkscope_report::schema::{
    ActivationManifest, ActivationPrompt, ActivationTimings, ReferenceMeans, ACTIVATIONS_DIR, MANIFEST_FILE,
    SCHEMA_VERSION,
};
use sinkscope_spec::{Edit, HookPlan, SiteKind, SitePattern, EDIT_GRAMMAR};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments.
#[derive(clap::Args)]
#[command(after_help = format!("Edit grammar: {EDIT_GRAMMAR}"))]
pub struct Args {
    /// A `.gguf` file or a Hugging Face folder.
    pub model: PathBuf,
    /// Prompt file: JSONL ({"id": ..., "text": ...}; id optional) or plain text, one per line.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Prepend the BOS token: auto (the model's own setting), always, never, or eos (the EOS
    /// token in BOS's place).
    #[arg(long, default_value = "auto", value_parser = parse_bos)]
    pub bos: BosPolicy,
    /// Comma list of hook names to capture; `*` stands for the block index
    /// (e.g. `hook_embed,blocks.*.hook_resid_post`).
    #[arg(long, default_value = "hook_embed,blocks.*.hook_resid_post")]
    pub capture: String,
    /// An intervention, repeatable (grammar below).
    #[arg(long = "edit")]
    pub edits: Vec<String>,
    /// Cut prompts longer than the model's context instead of failing.
    #[arg(long)]
    pub truncate: bool,
    /// Output folder: manifest.json and activations/<id>.safetensors.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an earlier run in --out (only the files sinkscope wrote there are removed), and
    /// run even when the memory estimate exceeds the memory available.
    #[arg(long)]
    pub force: bool,
    /// Layer streaming.
    #[command(flatten)]
    pub stream: StreamArgs,
}

/// Runs the command.
///
/// Order: everything that can be checked without the weights (command line, prompt file, model
/// header and config, hook names, tokenization and prompt lengths, memory, output folder) is
/// checked before the weights are loaded.
pub fn run(a: Args) -> Result<()> {
    let mut plan = HookPlan {
        capture: SitePattern::parse_list(&a.capture)?,
        edits: a.edits.iter().map(|e| e.parse::<Edit>()).collect::<Result<_, _>>()?,
    };
    let prompt_file = sinkscope_io::prompts::read_prompt_file(&a.prompts, None)?;
    if prompt_file.bom {
        crate::term::note!(
            "note: {}: skipped a UTF-8 byte-order mark (recorded in the manifest)",
            a.prompts.display()
        );
    }
    let prompts = &prompt_file.prompts;
    // Each prompt's activation file name: bounded and collision-free, fixed before any work.
    let names = file_names(prompts.iter().map(|p| p.id.as_str()));
    let t0 = Instant::now();
    let files = sinkscope_io::ModelFiles::open(&a.model)?;
    let sites = plan.resolve_captures(&files.config)?;
    let ctx_len = files.config.context_length;
    let mut encoded = Vec::with_capacity(prompts.len());
    for p in prompts {
        let mut enc = files
            .tokenizer
            .encode(&p.text, a.bos)
            .with_context(|| format!("{}: prompt '{}'", a.prompts.display(), p.id))?;
        let truncated = enc.ids.len() > ctx_len;
        if truncated {
            if !a.truncate {
                return Err(sinkscope_model::ModelError::Input(format!(
                    "{}: prompt '{}' has {} tokens, more than the context length {ctx_len} (use --truncate)",
                    a.prompts.display(),
                    p.id,
                    enc.ids.len()
                ))
                .into());
            }
            enc.ids.truncate(ctx_len);
            enc.tokens.truncate(ctx_len);
        }
        encoded.push((enc, truncated));
    }
    let max_tokens = encoded.iter().map(|(e, _)| e.ids.len()).max().unwrap_or(0);
    let touches_head = |k: SiteKind| matches!(k, SiteKind::Logits | SiteKind::LnFinal);
    // Captured activations live three times per prompt: the cache, the byte copies, the file image.
    let captured: u64 = sites
        .iter()
        .map(|s| memory::site_bytes(&files.config, *s, max_tokens))
        .fold(0u64, u64::saturating_add);
    let logits =
        sites.iter().any(|s| touches_head(s.kind)) || plan.edits.iter().any(|e| touches_head(e.site.kind));
    // Streamed, the prompts of a chunk run together: each keeps its captures until the chunk ends.
    let lengths: Vec<usize> = encoded.iter().map(|(e, _)| e.ids.len()).collect();
    let captured_by = |t: usize| -> u64 {
        sites.iter().map(|s| memory::site_bytes(&files.config, *s, t)).fold(0u64, u64::saturating_add)
    };
    let chunk_retained = sinkscope_analysis::runner::pack_ranges(&lengths, STREAM_CHUNK_TOKENS)
        .iter()
        .map(|c| c.clone().map(|i| captured_by(lengths[i])).fold(0u64, u64::saturating_add))
        .max()
        .unwrap_or(0);
    let chunk_tokens = sinkscope_analysis::runner::largest_pack(&lengths, STREAM_CHUNK_TOKENS);
    let shape = sinkscope_analysis::setup::PassShape {
        max_tokens,
        pack_tokens: 1,
        logits,
        retained: captured.saturating_mul(3),
        chunk_tokens,
        retained_chunk: chunk_retained.saturating_mul(3),
    };
    let placement = place_model(&files, &shape, a.stream, a.force)?;
    let _out = claim_out(
        &a.out,
        "run",
        &[MANIFEST_FILE, ACTIVATIONS_DIR],
        &[],
        &[a.model.as_path(), a.prompts.as_path()],
        a.force,
        false,
    )?;
    let act_dir = a.out.join(ACTIVATIONS_DIR);
    sinkscope_output::create_dir(&act_dir)?;
    let model = load_model(&files, &placement)?;
    let load_s = t0.elapsed().as_secs_f64();
    for w in model.non_finite_weights() {
        crate::term::note!(
            "warning: non-finite weights: {w} (a run fails at the first non-finite activation)"
        );
    }
    let sha = model_sha256(&a.model)?;
    // `mean_prompts` edits (Sun et al.'s mean-ablation): a first pass over these prompts
    // measures the means, which replace the edit (the manifest records both).
    let requested_edits = plan.edits.clone();
    let mut reference_means = Vec::new();
    if plan.edits.iter().any(|e| e.op == sinkscope_spec::EditOp::MeanPrompts) {
        let refs: Vec<(&str, &[u32])> =
            prompts.iter().zip(&encoded).map(|(p, (e, _))| (p.id.as_str(), e.ids.as_slice())).collect();
        let (resolved, means) =
            sinkscope_analysis::mean_ref::resolve_mean_prompts(&model, &refs, &plan.edits)?;
        plan.edits = resolved;
        reference_means = means
            .iter()
            .map(|m| ReferenceMeans {
                site: m.site.to_string(),
                positions: m.positions.clone(),
                dims: m.dims.clone(),
                means: m.means.clone(),
                n_prompts: m.n_prompts.clone(),
            })
            .collect();
    }
    let mut records = Vec::with_capacity(prompts.len());
    let mut n_tokens_total = 0usize;
    let t1 = Instant::now();
    let context = |p: &sinkscope_io::prompts::Prompt| match a.edits.is_empty() {
        true => format!("{}: prompt '{}'", a.model.display(), p.id),
        // A non-finite activation in an edited run is most likely the edit's doing.
        false => format!(
            "{}: prompt '{}' (edited with {}; a large scale/add/set value overflows float32)",
            a.model.display(),
            p.id,
            a.edits.join(" ")
        ),
    };
    // One prompt per forward call, or a chunk of prompts per call when the layers are streamed
    // (each block read once per chunk; the same results).
    let budget = if placement.choice.streamed() { STREAM_CHUNK_TOKENS } else { 0 };
    for chunk in sinkscope_analysis::runner::pack_ranges(&lengths, budget) {
        let mut caches: Vec<ActivationCache> =
            chunk.clone().map(|_| ActivationCache::new(sites.iter().copied())).collect();
        let mut editors: Vec<EditHook> = chunk.clone().map(|_| EditHook::new(plan.edits.clone())).collect();
        let ids: Vec<&[u32]> = chunk.clone().map(|i| encoded[i].0.ids.as_slice()).collect();
        let packed = {
            let mut ctxs: Vec<ForwardCtx> = editors
                .iter_mut()
                .zip(caches.iter_mut())
                .map(|(e, c)| ForwardCtx::new().with(e).with(c))
                .collect();
            model.forward_packed(&ids, &mut ctxs)
        };
        if let Err(e) = packed {
            // Each prompt alone, so that the error names the prompt it belongs to.
            if chunk.len() == 1 {
                return Err(anyhow::Error::from(e).context(context(&prompts[chunk.start])));
            }
            for (k, i) in chunk.clone().enumerate() {
                caches[k] = ActivationCache::new(sites.iter().copied());
                editors[k] = EditHook::new(plan.edits.clone());
                let mut ctx = ForwardCtx::new().with(&mut editors[k]).with(&mut caches[k]);
                model.forward(&encoded[i].0.ids, &mut ctx).with_context(|| context(&prompts[i]))?;
            }
        }
        for (cache, i) in caches.iter().zip(chunk) {
            let ((p, (enc, truncated)), name) = ((&prompts[i], &encoded[i]), &names[i]);
            let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
            for (site, t) in &cache.store {
                let data: Vec<f32> = t.flatten_all()?.to_vec1()?;
                let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
                tensors.push((site.to_string(), t.dims().to_vec(), bytes));
            }
            let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
                .iter()
                .map(|(n, s, b)| {
                    Ok((
                        n.clone(),
                        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)?,
                    ))
                })
                .collect::<Result<_, safetensors::SafeTensorError>>()?;
            let file = act_dir.join(format!("{name}.safetensors"));
            let bytes = safetensors::serialize(views, None)?;
            sinkscope_output::write_atomic(&file, &bytes)?;
            n_tokens_total += enc.ids.len();
            records.push(ActivationPrompt {
                id: p.id.clone(),
                file: format!("{ACTIVATIONS_DIR}/{name}.safetensors"),
                n_tokens: enc.ids.len(),
                truncated: *truncated,
                token_ids: enc.ids.clone(),
                first_token: first_token(&files, &enc.ids, enc.bos_prepended),
            });
        }
    }
    let run_s = t1.elapsed().as_secs_f64();
    let manifest = ActivationManifest {
        schema_version: SCHEMA_VERSION,
        kind: "run".into(),
        tool: sinkscope_analysis::header::tool(),
        model: sinkscope_analysis::header::model(&files, &sha),
        tokenizer: sinkscope_analysis::header::tokenizer(&files, a.bos),
        prompts_file: prompt_file.path.clone(),
        prompts_sha256: prompt_file.sha256.clone(),
        prompts_utf8_bom_skipped: prompt_file.bom,
        plan: serde_json::to_value(&plan)?,
        edits_requested: serde_json::to_value(&requested_edits)?,
        reference_means,
        captured_sites: sites.iter().map(|s| s.to_string()).collect(),
        conventions: [
            ("hook_names", "TransformerLens names, 0-based blocks: blocks.{i}.hook_resid_post is X(i+1) of metrics.md; hook_embed is X(0)"),
            ("activations", "float32, no batch dimension: [T, d_model], per-head [T, n_heads, d_head], patterns [n_heads, T, T]"),
            ("ln_final", "ln_final.hook_normalized is after the final norm; blocks.{L-1}.hook_resid_post is before it"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        prompts: records,
        memory: placement.memory(a.force),
        execution: placement.execution_block().into_iter().collect(),
        timings: ActivationTimings {
            load_s,
            forward_s: run_s,
            tokens: n_tokens_total,
            tokens_per_s: n_tokens_total as f64 / run_s.max(1e-9),
        },
    };
    // Keys sorted, as in every results file (the type declares its fields in reading order).
    sinkscope_output::write_atomic(
        &a.out.join(MANIFEST_FILE),
        serde_json::to_string_pretty(&serde_json::to_value(&manifest)?)?.as_bytes(),
    )?;
    crate::term::note!(
        "{} prompts, {} tokens in {:.2}s ({:.0} tokens/s); wrote {}",
        prompts.len(),
        n_tokens_total,
        run_s,
        n_tokens_total as f64 / run_s.max(1e-9),
        a.out.join(MANIFEST_FILE).display()
    );
    Ok(())
}
