//! The run folder's manifest: data source, header, conventions, timings and the blocks
//! every run kind shares.

use super::*;

/// Where the prompts came from (recorded in the manifest's `data` block).
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A prompt file.
    File(FileSource),
    /// A dataset from [`crate::datasets`].
    Dataset(Box<Provenance>),
}

/// A prompt file as recorded in the manifest (and compared by `--resume`): its canonical path
/// and content hash, so that the spelling of the path does not matter.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSource {
    /// The canonical path.
    pub path: PathBuf,
    /// sha256 of the file's bytes (`None`: not known, e.g. in-memory prompts).
    pub sha256: Option<String>,
    /// Whether a UTF-8 byte-order mark was skipped.
    pub bom: bool,
}

impl From<PathBuf> for FileSource {
    fn from(path: PathBuf) -> Self {
        FileSource { path, sha256: None, bom: false }
    }
}

impl From<&sinkscope_io::prompts::PromptFile> for FileSource {
    fn from(f: &sinkscope_io::prompts::PromptFile) -> Self {
        FileSource { path: f.path.clone(), sha256: Some(f.sha256.clone()), bom: f.bom }
    }
}

/// The manifest blocks that the caller knows best (the CLI builds them).
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestHeader {
    /// `tool`: name, version, command line, engine.
    pub tool: Value,
    /// `model`: path, format, sha256, family, config, dtype mix.
    pub model: Value,
    /// `tokenizer`: source, vocabulary, BOS policy and token.
    pub tokenizer: Value,
    /// Seconds spent loading the model.
    pub load_s: f64,
    /// Further top-level manifest blocks (e.g. the memory estimate).
    pub extra: serde_json::Map<String, Value>,
}

/// CPU time (user + system, all threads) this process has used so far, in seconds, from
/// `/proc/self/stat` (clock ticks of 1/100 s, Linux's USER_HZ); `None` off Linux.
pub fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Peak resident set size of this process in MiB (`VmHWM` of `/proc/self/status`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Writes a results file: `v` (the schema crate's type for the file) as pretty JSON with
/// its keys in sorted order (the layout every results file has; the typed structs declare
/// their fields in reading order, so they go through a `Value` first).
pub(crate) fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(&serde_json::to_value(v)?)?;
    Ok(sinkscope_output::write_atomic(path, text.as_bytes())?)
}

/// The conventions block of the manifest: how every reported number was computed.
pub fn conventions() -> Value {
    json!({
        "layer_index": "l = 0..L; l = 0 is X(0) = hook_embed (embedding output after any scaling or position add), l >= 1 is X(l) = blocks.{l-1}.hook_resid_post, before the final norm; depth = l / L",
        "attention_index": "attention and MLP metrics at entry l belong to block l (blocks.{l-1}.attn.hook_pattern, blocks.{l-1}.hook_mlp_out); entry 0 is null",
        "null": "null marks an undefined value (never NaN)",
        "numerics": "activations float32 (candle-core, CPU); every metric accumulated in float64; X is never centred or row-normalised",
        "spectrum": "eigenvalues of the Gram matrix X Xᵀ (Xᵀ X when d < T) in float64 (faer), negatives clamped to 0; p_j = λ_j / Σλ",
        "entropy": "natural log, terms with p_j = 0 skipped",
        "entropy_norm": "H / ln min(T, d)",
        "entropy_norm_logT": "H / ln T",
        "renyi_entropy_2": "-ln Σ p_j²",
        "effective_rank": "exp(H)",
        "c": "M / R with R a sum over i >= 1 (not a mean)",
        "massive": "top |X[i,j]| > 100 and > 1000 x median |X[i,j]| (Sun et al.); reported as 1 or 0, its mean is the fraction of prompts",
        "theorem_bounds": "Theorem 1 of arXiv 2510.06477: sigma1_sq >= M + alpha R, anisotropy >= p = (c + alpha)/(c + 1), dominance >= (c + alpha)/(1 - alpha), entropy <= -p ln p - (1-p) ln(1-p) + (1-p) ln(r-1) with r = min(T, d); tightness = measured / bound",
        "bound_violations": "number of (prompt, layer, bound) with the measured value on the wrong side of its bound by more than 1e-9 relative (see options.bound_tolerance); must be 0",
        "bos_attention": "(1/T) Σ_t A[t,0] (Gu et al.; query 0 included); metrics.bos_attention is the mean over the layer's heads, heads.bos_attention is per head",
        "bos_attention_excl": "(1/(T-1)) Σ_{t>=1} A[t,0]; metrics.bos_attention_excl is the mean over heads",
        "sink_rate": "fraction of the layer's heads with bos_attention > epsilon (strict)",
        "sink_rate_excl_q0": "fraction of the layer's heads with bos_attention_excl > epsilon (strict)",
        "attn_entropy": "mean over t >= 1 of the row entropy of A[t, :] divided by ln(t + 1)",
        "mixing_score": "mean of attn_entropy over the layer's heads",
        "identity_score": "mean over t of A[t,t] (metrics: mean over heads)",
        "prev_token_score": "mean over t >= 1 of A[t,t-1] (metrics: mean over heads)",
        "learned_sink_mass": "max(0, 1 - mean_t Σ_j A[t,j]); 0 for ordinary softmax heads",
        "head_class": "sink if bos_attention > epsilon; else identity if identity_score > tau; else previous-token if prev_token_score > tau; else mixing if attn_entropy > mixing_threshold; else other (all strict)",
        "head_class_counts": "per layer, the heads classed by the rule above applied to their prompt-mean statistics",
        "head_frac": "head_frac_<class>(l): fraction of the layer's heads whose own head_class on the prompt is <class> (sink, identity, previous_token, mixing, other); they sum to 1 and head_frac_sink = sink_rate",
        "sink_values": "v_j = the head's value vector of key j (blocks.{l-1}.attn.hook_v, its kv head); sink_value_norm = ||v_0||₂, sink_value_ratio = ||v_0|| / mean_{j>=1} ||v_j||, sink_output_share = mean over t >= 1 of A[t,0] ||v_0|| / Σ_j A[t,j] ||v_j|| (queries with a zero denominator skipped); the curves are means over the layer's heads, sink_output_share_sink_heads over its sink heads only (null when none)",
        "mlp_bos_norm": "||mlp_out_0||₂ of block l (blocks.{l-1}.hook_mlp_out)",
        "mlp_other_median": "median over i >= 1 of ||mlp_out_i||₂ of block l",
        "mlp_ratio": "mlp_bos_norm / mlp_other_median",
        "massive_layers": "block l with mlp_bos_norm >= 10 x mlp_other_median and bos_ratio(l) >= 3 x bos_ratio(l-1), detected on the prompt-mean curves; n_prompts counts the prompts whose own curves detect it too",
        "std": "sample standard deviation (n - 1); 0 for a single prompt",
        "aggregates": "per layer over prompts: mean, std, min, max of the per-prompt values; undefined (null) values skipped; prompts of different lengths are fine (metrics are per prompt first)",
        "corr_bos_entropy": "Pearson r over l = 1..L between Δ log bos_norm(l) and Δ entropy(l), first differences of the prompt-mean curves; pairs with an undefined side dropped",
        "corr_bos_sink": "Pearson r between Δ log bos_norm(l) and Δ sink_rate(l) as above (Δ sink_rate(1) is undefined, so l = 2..L)",
        "phases": "curves smoothed by a centred running median of 3 (layers 0 and L kept); a layer l >= 1 is compressed when bos_ratio >= 3 (massive activation) and at least two of: sink_rate >= 0.5, entropy_norm below the midpoint of its min and max, mixing_score < 0.7; compress starts at the first compressed layer a; a layer l > a is decompressed when at least two of: entropy_norm >= floor + 0.15 (max - floor) with floor the smallest entropy_norm at layers >= a, bos_norm <= 0.5 x its peak, sink_rate < 0.5; refine = the longest run of decompressed layers ending at L; compress = a up to refine's start - 1; mix = the layers before a; null when no layer is compressed. Applied to the prompt-mean curves (summary.phases), to each prompt (prompts.jsonl phases, summary.phase_boundaries.per_prompt) and to every bootstrap replicate of the mean curves (summary.phase_boundaries.mean_curves)",
        "bootstrap": "Poisson bootstrap over prompts: prompt i enters replicate b with weight w ~ Poisson(1) drawn from a hash of (seed, i, b), i = the prompt's line in prompts.jsonl; replicate statistics are weighted means (curves) or functions of the weighted mean curves (correlations, phase boundaries); interval = the 2.5 and 97.5 percentiles of the replicates (linear interpolation), replicates where the statistic is undefined skipped",
        "corr_lag1": "Pearson r between Δ log bos_norm(l) and Δ y(l + 1) (block l + 1's attention is the first to read X(l)); per_prompt = one r per prompt, mean and sample sd over prompts",
        "top_activations": "over prompts, each prompt's top-k |X[i,j]| of layer l grouped by (token position, dimension); value = the signed value of largest magnitude seen, n_prompts = prompts where that pair was in the top k; sorted by |value|, at most k",
        "peak_bos_ratio": "the layer with the largest prompt-mean bos_ratio",
        "min_entropy_norm": "the layer with the smallest prompt-mean entropy_norm",
        "tokenization": "ids = ([bos] if the policy prepends it) + encode(text, add_special_tokens=false); no chat template, no EOS",
        "truncation": "--max-tokens T keeps the first T tokens of every prompt; a prompt longer than the model's context is an error unless --truncate (then it is cut at the context); prompts with T < 2 are errors",
        "selection": "--limit N takes the first N prompts in file or dataset order",
    })
}

/// The manifest's `data` block.
pub(crate) fn data_block(source: &DataSource, limit: Option<usize>, opts: &ProfileOptions) -> Value {
    match source {
        DataSource::File(f) => {
            let mut v = json!({
                "source": "file", "path": f.path, "sha256": f.sha256, "dataset": null,
                "limit": limit, "max_tokens": opts.max_tokens, "truncate": opts.truncate,
            });
            if f.bom {
                v["utf8_bom_skipped"] = json!(true);
            }
            v
        }
        DataSource::Dataset(p) => json!({
            "source": "dataset", "path": p.file, "dataset": p,
            "limit": limit, "max_tokens": opts.max_tokens, "truncate": opts.truncate,
        }),
    }
}

/// A JSON object as the schema's map of named blocks (empty for anything else).
pub(crate) fn object(v: &Value) -> BTreeMap<String, Value> {
    v.as_object().map(|m| m.iter().map(|(k, x)| (k.clone(), x.clone())).collect()).unwrap_or_default()
}

/// A header block (`tool`, `model`, `tokenizer`) as its schema type.
fn header_block<T: serde::de::DeserializeOwned>(v: &Value) -> Result<Option<T>> {
    Ok(serde_json::from_value(v.clone())?)
}

/// Adds the header's further blocks to a manifest; an `execution` block's fields join the
/// manifest's own `execution` block (e.g. how the layers were held), a `shard` block is the
/// manifest's [`sinkscope_schema::ShardInfo`], any other is kept by name.
fn merge_extra(m: &mut Manifest, header: &ManifestHeader) -> Result<()> {
    for (k, x) in &header.extra {
        match (k.as_str(), m.execution.as_mut(), x.as_object()) {
            ("execution", Some(own), Some(more)) => {
                own.extend(more.iter().map(|(a, b)| (a.clone(), b.clone())));
            }
            ("execution", _, _) => m.execution = serde_json::from_value(x.clone())?,
            (crate::shard::SHARD_KEY, _, _) => m.shard = serde_json::from_value(x.clone())?,
            _ => {
                m.extra.insert(k.clone(), x.clone());
            }
        }
    }
    Ok(())
}

/// The manifest of a profile run in `status` (`running` or, before the final blocks are
/// added, `complete`).
///
/// # Errors
/// A header block that is not of its schema type.
pub(crate) fn profile_manifest(
    opts: &ProfileOptions,
    header: &ManifestHeader,
    source: &DataSource,
    limit: Option<usize>,
    (workers, pack_tokens): (usize, usize),
    status: &str,
) -> Result<Manifest> {
    let execution = json!({
        "prompt_workers": workers.max(1),
        "pack_tokens": pack_tokens,
        "rayon_num_threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "order": "consecutive prompts run together in packs of at most pack_tokens tokens (bit-identical to one pass per prompt); packs run concurrently on prompt_workers threads; records are written in input order",
    });
    let mut m = manifest_base(
        "profile",
        status,
        header,
        &data_block(source, limit, opts),
        &opts.to_json(),
        &conventions(),
    )?;
    // The header's execution fields (taken by `manifest_base`) join the run's own.
    let mut own = object(&execution);
    own.extend(m.execution.take().unwrap_or_default());
    m.execution = Some(own);
    Ok(m)
}

/// The common blocks of every run manifest (`lens`, `probe`, ...): schema version, kind,
/// status, the caller's header blocks (and its extras), data source, options, conventions.
///
/// # Errors
/// A header block that is not of its schema type.
pub(crate) fn manifest_base(
    kind: &str,
    status: &str,
    header: &ManifestHeader,
    data: &Value,
    options: &Value,
    conventions: &Value,
) -> Result<Manifest> {
    let mut m = Manifest {
        schema_version: SCHEMA_VERSION,
        kind: Some(kind.to_string()),
        status: Some(status.to_string()),
        tool: header_block(&header.tool)?,
        model: header_block(&header.model)?,
        tokenizer: header_block(&header.tokenizer)?,
        data: Some(data.clone()),
        options: object(options),
        conventions: object(conventions),
        ..Manifest::default()
    };
    merge_extra(&mut m, header)?;
    Ok(m)
}
