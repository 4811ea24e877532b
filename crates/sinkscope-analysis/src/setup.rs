//! What every run does before its first forward pass, shared by the CLI's commands and the
//! Python package so that both write the same bytes: the prompts ([`load_examples`]), the
//! number of prompt workers ([`worker_count`]), the memory guard with layer streaming
//! ([`place_model`], [`profile_placement`]) and the model built as it decided ([`load_model`]).
//! Notes for the user (a capped `--threads`, streaming chosen automatically, a skipped
//! byte-order mark) go to the caller's `notes` sink: the CLI prints them on stderr, Python
//! raises them as warnings.

use crate::datasets::{self, Example};
use crate::profile::{DataSource, FileSource};
use crate::AnalysisError;
use serde_json::{json, Value};
use sinkscope_io::ModelFiles;
use sinkscope_model::memory::{self, Available, LayoutChoice, MemoryError, MemoryEstimate, RunShape};
use std::path::{Path, PathBuf};

/// Tokens of the prompts whose residual streams advance block by block together when the
/// layers are streamed (a chunk; each block is read once per chunk). Bounds the residual
/// streams held between blocks (`2 x chunk x d x 4` bytes), flat in the number of prompts.
pub const STREAM_CHUNK_TOKENS: usize = 4096;

/// `--threads` is capped to this many workers per available core (with a note).
pub const THREADS_PER_CORE: usize = 4;

/// Errors of the set-up: each keeps its own exit-code category ([`crate::exit::code_of`]).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Bad options, prompts or output folder.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// The prompt file cannot be read.
    #[error(transparent)]
    Prompts(#[from] sinkscope_io::prompts::PromptError),
    /// The memory guard refused, or its override is malformed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The checkpoint's weights cannot be read.
    #[error(transparent)]
    Weights(#[from] sinkscope_io::IoError),
    /// The model cannot be built from its weights.
    #[error("{}: building the model: {source}", .path.display())]
    Build {
        /// The checkpoint.
        path: PathBuf,
        /// Why.
        #[source]
        source: sinkscope_model::ModelError,
    },
}

impl SetupError {
    /// The error that decides the exit code (the wrapped one; a build error's model error).
    pub fn inner(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            SetupError::Analysis(e) => e,
            SetupError::Prompts(e) => e,
            SetupError::Memory(e) => e,
            SetupError::Weights(e) => e,
            SetupError::Build { source, .. } => source,
        }
    }
}

/// Where the prompts of a run come from.
#[derive(Debug, Clone, Copy)]
pub enum PromptSource<'a> {
    /// A JSONL prompt file (`--prompts`).
    File(&'a Path),
    /// Prompts given in memory as `(id, text)` (Python lists), recorded by the sha256 of their
    /// JSONL form.
    Texts(&'a [(String, String)]),
    /// A catalogued dataset (`--dataset`), fetched into `data_dir` with `python` when missing.
    Dataset {
        /// Its name.
        name: &'a str,
        /// The cache folder.
        data_dir: &'a Path,
        /// The Python used to fetch it.
        python: &'a str,
    },
}

impl PromptSource<'_> {
    /// Where the prompts come from, for error messages (the error catalogue's rule: file and
    /// line/prompt): the prompt file as the user spelled it, or the dataset.
    pub fn origin(&self) -> String {
        match self {
            PromptSource::File(p) => p.display().to_string(),
            PromptSource::Texts(_) => TEXTS_PATH.to_string(),
            PromptSource::Dataset { name, .. } => format!("dataset '{name}'"),
        }
    }

    /// The prompt file, as an input the output folder must not contain.
    pub fn file(&self) -> Option<&Path> {
        match self {
            PromptSource::File(p) => Some(p),
            _ => None,
        }
    }
}

/// The path recorded for prompts given in memory.
pub const TEXTS_PATH: &str = "<python list>";

/// The prompts of `source`, the data source for the manifest, and the first `limit`.
///
/// # Errors
/// A zero limit or no prompts ([`AnalysisError`]), an unreadable prompt file, a dataset that
/// cannot be fetched or parsed.
pub fn load_examples(
    source: PromptSource<'_>,
    limit: Option<usize>,
    notes: &mut dyn FnMut(&str),
) -> Result<(Vec<Example>, DataSource), SetupError> {
    if limit == Some(0) {
        return Err(AnalysisError::Options("--limit must be at least 1".into()).into());
    }
    let (mut examples, data) = match source {
        PromptSource::File(path) => {
            // Streamed: only the first `limit` prompts are parsed.
            let f = sinkscope_io::prompts::read_prompt_file(path, limit)?;
            if f.bom {
                notes(&format!(
                    "note: {}: skipped a UTF-8 byte-order mark (recorded in the manifest)",
                    path.display()
                ));
            }
            let data = DataSource::File((&f).into());
            (f.prompts.into_iter().map(Example::from).collect::<Vec<_>>(), data)
        }
        PromptSource::Texts(texts) => {
            use sha2::Digest;
            let mut jsonl = String::new();
            for (id, text) in texts {
                jsonl.push_str(&json!({"id": id, "text": text}).to_string());
                jsonl.push('\n');
            }
            let sha = crate::header::hex(&sha2::Sha256::digest(jsonl.as_bytes()));
            let data = DataSource::File(FileSource {
                path: PathBuf::from(TEXTS_PATH),
                sha256: Some(sha),
                bom: false,
            });
            let ex =
                texts.iter().map(|(id, text)| Example { id: id.clone(), text: text.clone(), label: None });
            (ex.collect(), data)
        }
        PromptSource::Dataset { name, data_dir, python } => {
            let spec = datasets::by_name(name).map_err(AnalysisError::from)?;
            if !datasets::is_fetched(spec, data_dir) {
                notes(&format!(
                    "fetching dataset '{name}' ({}) into {} ...",
                    spec.requirement,
                    data_dir.display()
                ));
                datasets::fetch(spec, data_dir, python).map_err(AnalysisError::from)?;
            }
            let d = datasets::load(spec, data_dir).map_err(AnalysisError::from)?;
            (d.examples, DataSource::Dataset(Box::new(d.provenance)))
        }
    };
    if let Some(n) = limit {
        examples.truncate(n);
    }
    if examples.is_empty() {
        return Err(AnalysisError::NoPrompts.into());
    }
    Ok((examples, data))
}

/// The number of prompt workers asked for (`--threads`; default the cores available),
/// capped at [`THREADS_PER_CORE`] per core (with a note); apply it with
/// [`single_threaded_passes`] once the memory guard has settled it.
///
/// # Errors
/// [`AnalysisError::Options`] for zero.
pub fn worker_count(requested: Option<usize>, notes: &mut dyn FnMut(&str)) -> Result<usize, AnalysisError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // More workers than this only adds threads that wait (a million would never start).
    let max = cores.saturating_mul(THREADS_PER_CORE).max(1);
    match requested {
        Some(0) => Err(AnalysisError::Options("--threads must be at least 1".into())),
        Some(n) if n > max => {
            notes(&format!(
                "note: --threads {n} capped to {max} ({THREADS_PER_CORE} x the {cores} core(s) available)"
            ));
            Ok(max)
        }
        Some(n) => Ok(n),
        None => Ok(cores),
    }
}

/// The intra-op thread settings to apply before any tensor work: one thread per forward pass
/// when several prompts run at once (a streamed run has one worker, whose matrix products
/// use every core), and the matching split of the metrics' linear algebra
/// ([`sinkscope_metrics::set_parallelism`]: sequential, or as many ways as rayon's threads).
/// candle's own pool always gets one thread: the matrix products are sinkscope's kernel (on
/// rayon's threads), and candle parallelises only element-wise operations, small next to
/// them, whose hand-off cost more than they saved (with one prompt worker, LogitLens's main
/// thread spent ≈ 10 % of its samples spinning at candle's barrier; element-wise results do
/// not depend on the split). The environment variables only take effect before candle's
/// thread pool starts; the split is set on every call, so a run's bits follow its settings,
/// not the process's history.
pub fn single_threaded_passes(workers: usize) {
    single_threaded_passes_for(workers, usize::MAX);
}

/// [`single_threaded_passes`] for a run that forms `passes` forward passes: with one pass
/// (a few short prompts in one pack, as on a large model) the other workers would have
/// nothing to do, so the pass's matrix products keep every core (their bits do not depend
/// on the threads). The metrics' split still follows `workers`, so every output is the
/// same as with more passes.
pub fn single_threaded_passes_for(workers: usize, passes: usize) {
    single_threaded_elementwise();
    if workers > 1 && passes > 1 {
        set_unless_set("RAYON_NUM_THREADS");
    }
    sinkscope_metrics::set_parallelism(if workers > 1 { 1 } else { rayon_threads() });
}

/// candle's element-wise pool gets one thread (see [`single_threaded_passes`]) unless the
/// user set `CANDLE_NUM_THREADS`. Every command calls it before any tensor operation, also
/// those with one prompt worker (LogitLens, probes, ablations), whose forward passes would
/// otherwise hand each element-wise operation to a second thread that then spins.
pub fn single_threaded_elementwise() {
    set_unless_set("CANDLE_NUM_THREADS");
}

/// Sets `var` to 1 unless the environment already has it. Read by candle-core and rayon when
/// their thread pools start: called before any tensor operation.
fn set_unless_set(var: &str) {
    if std::env::var_os(var).is_none() {
        std::env::set_var(var, "1");
    }
}

/// Starts rayon's global thread pool now, with the thread settings made so far (commands call
/// it through [`load_model`], after [`single_threaded_passes_for`]). A process that cannot
/// start its threads (a tight `ulimit -v`, whose room the thread stacks exceed) then gets
/// [`MemoryError::Threads`], exit 6, instead of rayon's panic at the first parallel loop. A
/// pool already running is kept.
///
/// # Errors
/// [`MemoryError::Threads`] when the system refuses a thread.
pub fn start_threads() -> Result<(), MemoryError> {
    match rayon::ThreadPoolBuilder::new().build_global() {
        Ok(()) => Ok(()),
        // A failed start carries the system's error as its source; no source means that the
        // global pool was already running.
        Err(e) => match std::error::Error::source(&e) {
            None => Ok(()),
            Some(io) => Err(MemoryError::Threads { threads: rayon_threads(), reason: io.to_string() }),
        },
    }
}

/// The threads of rayon's global pool as it starts with this environment: `RAYON_NUM_THREADS`
/// when it is a positive number, else the cores available.
pub fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// How a run will hold the model's weights, as the memory guard decided.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Resident, streamed on request, or streamed because resident does not fit.
    pub choice: LayoutChoice,
    /// The estimate for that layout.
    pub estimate: MemoryEstimate,
    /// The memory available, where known.
    pub available: Option<Available>,
    /// Tokens per forward pass (the model's passes within a chunk when streaming).
    pub pack_tokens: usize,
    /// Tokens per chunk when streaming.
    pub chunk_tokens: usize,
}

impl Placement {
    /// The model layout to build.
    pub fn layout(&self) -> sinkscope_model::Layout {
        match self.choice.streamed() {
            false => sinkscope_model::Layout::Resident,
            true => sinkscope_model::Layout::Streamed {
                pack_tokens: self.pack_tokens.max(1),
                chunk_tokens: self.chunk_tokens,
            },
        }
    }

    /// The manifest's `execution.stream_layers` entry.
    pub fn execution(&self) -> Value {
        use LayoutChoice as C;
        json!({
            "enabled": self.choice.streamed(),
            "chosen_by": match self.choice {
                C::Resident => "default",
                C::Streamed => "--stream-layers",
                C::StreamedAuto => "memory guard (the model as stored does not fit; streamed it does)",
            },
            "chunk_tokens": self.choice.streamed().then_some(self.chunk_tokens),
            "pack_tokens": self.choice.streamed().then_some(self.pack_tokens.max(1)),
        })
    }

    /// The manifest's `memory` block.
    pub fn memory(&self, force: bool) -> Value {
        json!({
            "estimate_bytes": self.estimate.total(),
            "estimate": self.estimate.to_string(),
            "available_bytes": self.available.as_ref().map(|v| v.bytes),
            "available_source": self.available.as_ref().map(|v| v.source.clone()),
            "forced": force,
            "stream_layers": self.choice.streamed(),
        })
    }

    /// The manifest's `execution` block as every run records it: the layout
    /// (`stream_layers`, [`execution`](Self::execution)) and the kernels
    /// ([`kernel_execution`]).
    pub fn execution_block(&self) -> serde_json::Map<String, Value> {
        let mut execution = kernel_execution();
        execution.insert("stream_layers".into(), self.execution());
        execution
    }

    /// The manifest blocks every run records (`memory`, [`execution_block`](Self::execution_block)).
    pub fn manifest_extra(&self, force: bool) -> serde_json::Map<String, Value> {
        let mut extra = serde_json::Map::new();
        extra.insert("memory".into(), self.memory(force));
        extra.insert("execution".into(), Value::Object(self.execution_block()));
        extra
    }
}

/// The manifest's `execution` fields that say which kernels ran (none changes a result byte):
/// `packed_matmul` (sinkscope's kernel, or candle's matmul with `SINKSCOPE_PACKED_MATMUL=0`),
/// `kernel_path` (`avx512`, `avx2` or `portable`, [`sinkscope_cpu::path`], shared by the
/// matmul, GGUF dequantisation and the lens's exp-sums; `null` with the packed kernel off) and
/// `kernel_path_note` (why it is not what `SINKSCOPE_KERNEL` asked for).
pub fn kernel_execution() -> serde_json::Map<String, Value> {
    use sinkscope_model::layers::gemm;
    let mut m = serde_json::Map::new();
    m.insert("packed_matmul".into(), json!(gemm::available()));
    m.insert("kernel_path".into(), json!(gemm::kernel_path().map(|p| p.name())));
    m.insert("kernel_path_note".into(), json!(gemm::kernel_path_note()));
    m
}

/// The shape of the passes a run makes, for [`place_model`].
#[derive(Debug, Clone, Copy)]
pub struct PassShape {
    /// Tokens of the largest pass (the largest pack the prompts form).
    pub max_tokens: usize,
    /// The packing asked for (0: one prompt per pass).
    pub pack_tokens: usize,
    /// The run needs `[T, V]` logits.
    pub logits: bool,
    /// Bytes kept per pass besides the forward pass (collectors' host copies).
    pub retained: u64,
    /// Tokens of the largest streaming chunk the prompts form.
    pub chunk_tokens: usize,
    /// Bytes kept for a chunk's prompts when streaming.
    pub retained_chunk: u64,
}

impl PassShape {
    /// The shape of passes over prompts of these lengths, packed up to `pack_tokens`.
    pub fn of(lengths: &[usize], pack_tokens: usize, logits: bool) -> Self {
        PassShape {
            max_tokens: crate::runner::largest_pack(lengths, pack_tokens),
            pack_tokens,
            logits,
            retained: 0,
            chunk_tokens: crate::runner::largest_pack(lengths, STREAM_CHUNK_TOKENS),
            retained_chunk: 0,
        }
    }
}

/// The memory guard with layer streaming ([`memory::choose_layout`]): the resident estimate
/// for `shape`'s passes against the streamed one; `stream_layers` asks for streaming. Notes
/// when streaming is chosen automatically.
///
/// # Errors
/// Exit code 6 ([`MemoryError::Insufficient`]) when neither fits and `force` is not given.
pub fn place_model(
    files: &ModelFiles,
    shape: &PassShape,
    stream_layers: bool,
    force: bool,
    notes: &mut dyn FnMut(&str),
) -> Result<Placement, MemoryError> {
    let resident = memory::estimate(
        files,
        &RunShape { max_tokens: shape.max_tokens, logits: shape.logits, retained_bytes: shape.retained },
    );
    let streamed = memory::estimate_streamed(
        files,
        &RunShape {
            max_tokens: shape.max_tokens,
            logits: shape.logits,
            retained_bytes: shape.retained_chunk,
        },
        shape.chunk_tokens,
    );
    let available = memory::available()?;
    let (choice, estimate) =
        memory::choose_layout(&files.path, &resident, &streamed, available.as_ref(), stream_layers, force)?;
    if choice == LayoutChoice::StreamedAuto {
        notes(&format!(
            "note: {}: the model as stored does not fit in the memory available ({}: needs about {}); streaming its layers (as with --stream-layers: one block resident at a time, the same results), which needs about {}",
            files.path.display(),
            available.as_ref().map_or("unknown".into(), |a| memory::human(a.bytes)),
            memory::human(resident.total()),
            memory::human(estimate.total())
        ));
    }
    Ok(Placement {
        choice,
        estimate,
        available,
        pack_tokens: shape.pack_tokens,
        chunk_tokens: STREAM_CHUNK_TOKENS,
    })
}

/// The memory guard of a profile: each of the `workers` concurrent prompts holds one forward
/// pass plus the collectors' host copies (one layer's `[T, d]` activation and `[H, T, T]`
/// pattern). When the estimate does not fit, fewer workers are tried, then layer streaming
/// (one worker, a chunk at a time), before refusing (unless `force`). Returns the workers to
/// use and the placement of the weights.
///
/// # Errors
/// As [`place_model`].
pub fn profile_placement(
    files: &ModelFiles,
    lengths: &[usize],
    pack_tokens: usize,
    workers: usize,
    stream_layers: bool,
    force: bool,
    notes: &mut dyn FnMut(&str),
) -> Result<(usize, Placement), MemoryError> {
    // The forward pass is sized by the largest pack these prompts actually form (the same
    // packing rule as the run), not by the packing asked for.
    let mut shape = PassShape::of(lengths, pack_tokens, false);
    let c = &files.config;
    let t = shape.max_tokens as u64;
    let collectors = 4 * t * (c.d_model as u64 + c.n_heads as u64 * t);
    let single =
        memory::estimate(files, &RunShape { max_tokens: shape.max_tokens, logits: false, retained_bytes: 0 });
    let per_prompt = single.working_set + collectors;
    if !stream_layers {
        let available = memory::available()?;
        for w in (1..=workers.max(1)).rev() {
            let run = RunShape {
                max_tokens: shape.max_tokens,
                logits: false,
                retained_bytes: collectors + (w as u64 - 1) * per_prompt,
            };
            let estimate = memory::estimate(files, &run);
            if memory::check(&files.path, &estimate, available.as_ref(), false).is_ok() {
                if w < workers {
                    notes(&format!(
                        "note: running {w} prompt(s) at a time instead of {workers} to stay within the memory available"
                    ));
                }
                let choice = LayoutChoice::Resident;
                let placement =
                    Placement { choice, estimate, available, pack_tokens, chunk_tokens: STREAM_CHUNK_TOKENS };
                return Ok((w, placement));
            }
        }
    }
    shape.retained = collectors;
    shape.retained_chunk = collectors;
    Ok((1, place_model(files, &shape, stream_layers, force, notes)?))
}

/// Loads the weights as the placement says (streamed: every matrix stays in the file's memory
/// map) and builds the model with its layout.
///
/// # Errors
/// An unreadable tensor; a model that cannot be built from the weights.
pub fn load_model(files: &ModelFiles, placement: &Placement) -> Result<sinkscope_model::Model, SetupError> {
    start_threads()?;
    let weights = files.load_weights_for(placement.choice.streamed())?;
    let model = sinkscope_model::Model::new(files.config.clone(), weights, &candle_core::Device::Cpu)
        .map_err(|source| SetupError::Build { path: files.path.clone(), source })?;
    Ok(model.with_layout(placement.layout()))
}

/// What a run folder of `profile`, `lens` and `probe` holds (the report's files included).
pub const RUN_ENTRIES: &[&str] = &[
    sinkscope_report::schema::MANIFEST_FILE,
    sinkscope_report::schema::PROMPTS_FILE,
    sinkscope_report::schema::METRICS_FILE,
    sinkscope_report::LAYERS_CSV,
    sinkscope_report::HEADS_CSV,
    sinkscope_report::PLOTS_DIR,
    sinkscope_report::REPORT_HTML,
];

/// Claims a run's output folder (`sinkscope_output::OutDir::claim`): the lock, the ownership
/// marker, an earlier run refused unless `force` (replaced) or `resume` (continued), and no
/// input inside what the run writes. Call it before any model work; hold the returned value
/// until the run ends (dropping it releases the lock).
///
/// # Errors
/// The output-safety rules ([`sinkscope_output::OutputError`]).
pub fn claim_out(
    out: &Path,
    kind: &str,
    entries: &[&str],
    prefixes: &[&str],
    inputs: &[&Path],
    force: bool,
    resume: bool,
) -> Result<sinkscope_output::OutDir, sinkscope_output::OutputError> {
    use sinkscope_output::{Claim, Mode, OutDir};
    let mode = if resume {
        Mode::Resume
    } else if force {
        Mode::Force
    } else {
        Mode::Fresh
    };
    OutDir::claim(out, &Claim { kind, entries, prefixes, inputs, mode })
}
