//! `profile` and `lens` over a loaded model: the same library calls as the CLI's commands
//! (`sinkscope_analysis::profile::run_profile`, `lens::run_lens`, `sinkscope_report::render_run`),
//! so that a run folder written from Python holds the same bytes as the CLI's.

use crate::errors::{any, to_py};
use crate::model::PyModel;
use anyhow::Context;
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use sinkscope_analysis::datasets::Example;
use sinkscope_analysis::profile::{
    prepare, DataSource, FirstTokenSpec, ManifestHeader, ProfileInput, ProfileOptions, Progress,
};
use sinkscope_analysis::setup::{self, PromptSource};
use sinkscope_analysis::AnalysisError;
use sinkscope_metrics::AttentionParams;
use sinkscope_model::memory;
use sinkscope_output::{Claim, Mode, OutDir};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the prompts come from and how they are cut (the CLI's `InputArgs`).
#[pyclass(name = "_Input", module = "sinkscope._sinkscope")]
#[derive(Clone)]
pub struct Input {
    prompts_file: Option<PathBuf>,
    texts: Option<Vec<(String, String)>>,
    dataset: Option<String>,
    limit: Option<usize>,
    max_tokens: Option<usize>,
    truncate: bool,
    bos: Option<String>,
    first_token: Option<String>,
    data_dir: PathBuf,
    python: String,
    force: bool,
    resume: bool,
}

#[pymethods]
impl Input {
    #[new]
    #[pyo3(signature = (*, prompts_file = None, texts = None, dataset = None, limit = None,
        max_tokens = None, truncate = false, bos = None, first_token = None,
        data_dir = PathBuf::from("data/cache"), python = "python3".to_string(), force = false, resume = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        prompts_file: Option<PathBuf>,
        texts: Option<Vec<(String, String)>>,
        dataset: Option<String>,
        limit: Option<usize>,
        max_tokens: Option<usize>,
        truncate: bool,
        bos: Option<String>,
        first_token: Option<String>,
        data_dir: PathBuf,
        python: String,
        force: bool,
        resume: bool,
    ) -> Self {
        Input {
            prompts_file,
            texts,
            dataset,
            limit,
            max_tokens,
            truncate,
            bos,
            first_token,
            data_dir,
            python,
            force,
            resume,
        }
    }
}

impl Input {
    fn options(&self, model: &PyModel) -> PyResult<ProfileOptions> {
        Ok(ProfileOptions {
            bos: model.bos_or_default(self.bos.as_deref())?,
            first_token: self.first_token.as_deref().map(FirstTokenSpec::parse),
            max_tokens: self.max_tokens,
            truncate: self.truncate,
            resume: self.resume,
            ..ProfileOptions::default()
        })
    }

    /// Where the prompts come from (exactly one of a file, a list of texts, a dataset).
    fn source(&self) -> Result<PromptSource<'_>, AnalysisError> {
        match (&self.prompts_file, &self.texts, &self.dataset) {
            (Some(path), None, None) => Ok(PromptSource::File(path)),
            (None, Some(texts), None) => Ok(PromptSource::Texts(texts)),
            (None, None, Some(name)) => {
                Ok(PromptSource::Dataset { name, data_dir: &self.data_dir, python: &self.python })
            }
            _ => Err(AnalysisError::Options(
                "give exactly one of prompts (a file or a list of texts) and dataset".into(),
            )),
        }
    }
}

/// Notes of the set-up (a capped worker count, a skipped byte-order mark), raised as Python
/// warnings once the GIL is held again.
#[derive(Default)]
struct Notes(Vec<String>);

impl Notes {
    fn sink(&mut self) -> impl FnMut(&str) + '_ {
        |line: &str| self.0.push(line.to_string())
    }

    fn warn(self, py: Python<'_>) -> PyResult<()> {
        for line in self.0 {
            let text = std::ffi::CString::new(line.replace('\0', " "))
                .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
            PyErr::warn(py, &py.get_type::<pyo3::exceptions::PyUserWarning>(), &text, 1)?;
        }
        Ok(())
    }
}

/// Progress to a Python callable `fn(done, tokens, elapsed_s)`; Ctrl-C is noticed between
/// prompts (see [`Interruptible`]).
struct PyProgress {
    f: Option<Py<PyAny>>,
}

impl Progress for PyProgress {
    fn prompt_done(&mut self, done: usize, tokens: usize, elapsed: Duration) {
        if let Some(f) = &self.f {
            // A failing progress callback must not fail the run.
            Python::attach(|py| {
                let _ = f.bind(py).call1((done, tokens, elapsed.as_secs_f64()));
            });
        }
    }
}

/// The prompts, checking for Ctrl-C before each: after an interrupt it yields one prompt that
/// cannot run (no text: fewer than 2 tokens), so the run stops with an error after every earlier
/// prompt was written, leaving a resumable folder; the caller raises `KeyboardInterrupt`.
struct Interruptible<I> {
    inner: I,
    interrupted: Option<PyErr>,
}

impl<I: Iterator<Item = Example>> Iterator for Interruptible<I> {
    type Item = Example;
    fn next(&mut self) -> Option<Example> {
        if self.interrupted.is_some() {
            return None;
        }
        if let Err(e) = Python::attach(|py| py.check_signals()) {
            self.interrupted = Some(e);
            return Some(Example { id: "<interrupted>".into(), text: String::new(), label: None });
        }
        self.inner.next()
    }
}

/// What every run needs before it starts: the prompts (tokenised and length-checked, as the
/// CLI does before loading), the prompt workers, the claimed output folder and the manifest
/// header, with the set-up's notes.
struct Prepared {
    examples: Vec<Example>,
    source: DataSource,
    header: ManifestHeader,
    workers: usize,
    notes: Notes,
    _out: OutDir,
}

/// The passes a run makes, for the memory guard (the CLI's choice for each command).
enum Passes {
    /// A profile: `workers` concurrent packs of up to `pack_tokens` tokens.
    Profile { workers: Option<usize>, pack_tokens: usize },
    /// One worker, packs of up to `pack_tokens` tokens (0: one prompt per pass), with `[T, V]`
    /// logits when `logits` (lens, probe, ablate).
    Experiment { pack_tokens: usize, logits: bool },
}

/// A choice of prompts made after loading them (the probe's seeded sample).
type Select = dyn Fn(&mut Vec<Example>) -> Result<(), AnalysisError> + Sync;

/// A run of one command: its folder's kind and entries, its passes, and the choice of
/// prompts (`select`, after loading: the probe's seeded sample).
struct RunSpec<'a> {
    kind: &'a str,
    entries: &'a [&'a str],
    prefixes: &'a [&'a str],
    passes: Passes,
    select: Option<&'a Select>,
}

fn prepare_run(
    m: &PyModel,
    input: &Input,
    opts: &ProfileOptions,
    spec: RunSpec<'_>,
    out: &Path,
) -> anyhow::Result<Prepared> {
    opts.validate()?;
    let mut notes = Notes::default();
    let prompt_source = input.source()?;
    // A selection takes the limit itself (it samples before cutting).
    let limit = if spec.select.is_some() { None } else { input.limit };
    let (mut examples, source) = setup::load_examples(prompt_source, limit, &mut notes.sink())?;
    if let Some(select) = spec.select {
        select(&mut examples)?;
    }
    let origin = prompt_source.origin();
    let mut lengths = Vec::with_capacity(examples.len());
    for ex in &examples {
        lengths.push(prepare(&m.files, &ex.id, &ex.text, opts).with_context(|| origin.clone())?.ids.len());
    }
    // The CLI's memory guard for the same prompts, so that the manifest records the same
    // workers and estimate; the weights are resident already (`load`).
    let (workers, placement, shape) = match spec.passes {
        Passes::Profile { workers, pack_tokens } => {
            let workers = setup::worker_count(workers, &mut notes.sink())?;
            let (w, p) = setup::profile_placement(
                &m.files,
                &lengths,
                pack_tokens,
                workers,
                false,
                input.force,
                &mut notes.sink(),
            )?;
            (w, p, setup::PassShape::of(&lengths, pack_tokens, false))
        }
        Passes::Experiment { pack_tokens, logits } => {
            let shape = setup::PassShape::of(&lengths, pack_tokens, logits);
            (1, setup::place_model(&m.files, &shape, false, input.force, &mut notes.sink())?, shape)
        }
    };
    let placement = resident(&m.files, placement, &shape, input.force)?;
    let inputs: Vec<&Path> = [Some(m.path.as_path()), prompt_source.file()].into_iter().flatten().collect();
    let claimed =
        setup::claim_out(out, spec.kind, spec.entries, spec.prefixes, &inputs, input.force, input.resume)?;
    let sha = m.sha256().map_err(|e| anyhow::anyhow!("{e}"))?;
    let header = ManifestHeader {
        tool: sinkscope_analysis::header::tool_info(),
        model: sinkscope_analysis::header::model_info(&m.files, sha),
        tokenizer: sinkscope_analysis::header::tokenizer_info(&m.files, opts.bos),
        load_s: m.load_s,
        extra: placement.manifest_extra(input.force),
    };
    Ok(Prepared { examples, source, header, workers, notes, _out: claimed })
}

/// [`setup::single_threaded_passes`] for one run of a Python session: the variables it sets
/// are removed again when the run ends, so later runs record the session's own settings.
struct SingleThreaded(Vec<&'static str>);

impl SingleThreaded {
    fn new(workers: usize) -> Self {
        let unset: Vec<&'static str> = ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"]
            .into_iter()
            .filter(|v| std::env::var_os(v).is_none())
            .collect();
        setup::single_threaded_passes(workers);
        SingleThreaded(unset.into_iter().filter(|v| std::env::var_os(v).is_some()).collect())
    }
}

impl Drop for SingleThreaded {
    fn drop(&mut self) {
        for v in &self.0 {
            std::env::remove_var(v);
        }
    }
}

/// A Python model is resident (`load`): where the guard would stream its layers (the passes
/// do not fit beside the resident weights) the run is refused unless `force`, which runs it
/// resident and records the resident estimate.
fn resident(
    files: &sinkscope_io::ModelFiles,
    placement: setup::Placement,
    shape: &setup::PassShape,
    force: bool,
) -> Result<setup::Placement, memory::MemoryError> {
    if !placement.choice.streamed() {
        return Ok(placement);
    }
    let estimate = memory::estimate(
        files,
        &memory::RunShape {
            max_tokens: shape.max_tokens,
            logits: shape.logits,
            retained_bytes: shape.retained,
        },
    );
    memory::check(&files.path, &estimate, placement.available.as_ref(), force)?;
    Ok(setup::Placement { choice: memory::LayoutChoice::Resident, estimate, ..placement })
}

/// Runs `f` over the prompts with the GIL released; Ctrl-C stops it between prompts.
fn run_interruptible<T: Send>(
    py: Python<'_>,
    examples: Vec<Example>,
    f: impl FnOnce(&mut dyn Iterator<Item = Example>) -> anyhow::Result<T> + Send,
) -> PyResult<T> {
    let mut it = Interruptible { inner: examples.into_iter(), interrupted: None };
    let r = py.detach(|| f(&mut it));
    if let Some(e) = it.interrupted.take() {
        return Err(if e.is_instance_of::<PyKeyboardInterrupt>(py) {
            PyKeyboardInterrupt::new_err(
                "interrupted: the run folder is left resumable (resume=True continues it)",
            )
        } else {
            e
        });
    }
    r.map_err(any)
}

fn render(py: Python<'_>, out: &Path, report: bool) -> PyResult<()> {
    if report {
        py.detach(|| sinkscope_report::render_run(out))
            .with_context(|| format!("{}: rendering the report", out.display()))
            .map_err(any)?;
    }
    Ok(())
}

/// `sinkscope profile` over a loaded model into `out`; returns the summary line's numbers as
/// JSON.
#[pyfunction]
#[pyo3(signature = (model, input, out, *, epsilon = 0.3, workers = None, pack_tokens = 128, report = true, progress = None))]
#[allow(clippy::too_many_arguments)]
pub fn profile(
    py: Python<'_>,
    model: &PyModel,
    input: &Input,
    out: PathBuf,
    epsilon: f64,
    workers: Option<usize>,
    pack_tokens: usize,
    report: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    if pack_tokens == 0 {
        return Err(to_py(&AnalysisError::Options(
            "pack_tokens must be at least 1 (pack_tokens=1 turns packing off)".into(),
        )));
    }
    let opts = ProfileOptions {
        attention: AttentionParams { sink_epsilon: epsilon, ..AttentionParams::default() },
        ..input.options(model)?
    };
    let p = py
        .detach(|| {
            let passes = Passes::Profile { workers, pack_tokens };
            let spec =
                RunSpec { kind: "profile", entries: setup::RUN_ENTRIES, prefixes: &[], passes, select: None };
            prepare_run(model, input, &opts, spec, &out)
        })
        .map_err(any)?;
    p.notes.warn(py)?;
    let total = p.examples.len();
    let (source, header, workers) = (p.source, p.header, p.workers);
    let _threads = SingleThreaded::new(workers);
    let s = run_interruptible(py, p.examples, |prompts| {
        let mut bar = PyProgress { f: progress };
        let input =
            ProfileInput { source, limit: input.limit, prompts, total: Some(total), workers, pack_tokens };
        Ok(sinkscope_analysis::profile::run_profile(
            &model.model,
            &model.files,
            &opts,
            &header,
            input,
            &out,
            &mut bar,
        )?)
    })?;
    render(py, &out, report)?;
    Ok(serde_json::json!({
        "n_prompts": s.n_prompts, "n_tokens": s.n_tokens, "run_s": s.run_s,
        "tokens_per_s": s.tokens_per_s, "peak_rss_mib": s.peak_rss_mib,
        "bound_violations": s.bound_violations,
    })
    .to_string())
}

/// `sinkscope lens` over a loaded model into `out`.
#[pyfunction]
#[pyo3(signature = (model, input, out, *, report = true, progress = None))]
pub fn lens(
    py: Python<'_>,
    model: &PyModel,
    input: &Input,
    out: PathBuf,
    report: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let opts = input.options(model)?;
    let p = py
        .detach(|| {
            let passes = Passes::Experiment { pack_tokens: 0, logits: true };
            let spec =
                RunSpec { kind: "lens", entries: setup::RUN_ENTRIES, prefixes: &[], passes, select: None };
            prepare_run(model, input, &opts, spec, &out)
        })
        .map_err(any)?;
    p.notes.warn(py)?;
    let total = p.examples.len();
    let (source, header, workers) = (p.source, p.header, p.workers);
    let _threads = SingleThreaded::new(workers);
    let s = run_interruptible(py, p.examples, |prompts| {
        let mut bar = PyProgress { f: progress };
        let input =
            ProfileInput { source, limit: input.limit, prompts, total: Some(total), workers, pack_tokens: 0 };
        Ok(sinkscope_analysis::lens::run_lens(
            &model.model,
            &model.files,
            &opts,
            &header,
            input,
            &out,
            &mut bar,
        )?)
    })?;
    render(py, &out, report)?;
    Ok(serde_json::json!({
        "n_prompts": s.n_prompts, "n_tokens": s.n_tokens, "run_s": s.run_s, "model_ppl": s.model_ppl,
    })
    .to_string())
}

/// `sinkscope probe` over a loaded model into `out`: linear probes of every layer on a
/// labelled dataset (a seeded sample of `limit` sentences).
#[pyfunction]
#[pyo3(signature = (model, input, out, *, pool = "mean", folds = 5, seed = sinkscope_metrics::probe::DEFAULT_SEED,
    c = sinkscope_metrics::probe::DEFAULT_C, keep_features = false, report = true, progress = None))]
#[allow(clippy::too_many_arguments)]
pub fn probe(
    py: Python<'_>,
    model: &PyModel,
    input: &Input,
    out: PathBuf,
    pool: &str,
    folds: usize,
    seed: u64,
    c: f64,
    keep_features: bool,
    report: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    use sinkscope_analysis::probe::{self, ProbeOptions};
    use sinkscope_metrics::probe::{LogisticParams, ProbeParams};
    probe::check_c(c).map_err(|e| to_py(&e))?;
    let pool = probe::parse_pool(pool).map_err(|e| to_py(&e))?;
    let opts = ProbeOptions {
        prompt: input.options(model)?,
        pool,
        params: ProbeParams { folds, seed, logistic: LogisticParams { c, ..LogisticParams::default() } },
        keep_features,
    };
    let limit = input.limit;
    let select = move |examples: &mut Vec<Example>| probe::sample_examples(examples, seed, limit, folds);
    let entries = probe::probe_entries();
    let pack_tokens = sinkscope_analysis::profile::DEFAULT_PACK_TOKENS;
    let p = py
        .detach(|| {
            let passes = Passes::Experiment { pack_tokens, logits: false };
            let spec =
                RunSpec { kind: "probe", entries: &entries, prefixes: &[], passes, select: Some(&select) };
            prepare_run(model, input, &opts.prompt, spec, &out)
        })
        .map_err(any)?;
    p.notes.warn(py)?;
    let total = p.examples.len();
    let (source, header) = (p.source, p.header);
    let _threads = SingleThreaded::new(p.workers);
    let s = run_interruptible(py, p.examples, |prompts| {
        let mut bar = PyProgress { f: progress };
        // One worker, as the CLI: the fit's rounding must not depend on the thread settings.
        let input = ProfileInput { source, limit, prompts, total: Some(total), workers: 1, pack_tokens };
        Ok(probe::run_probe(&model.model, &model.files, &opts, &header, input, &out, &mut bar)?)
    })?;
    render(py, &out, report)?;
    let best = s.layers.iter().enumerate().max_by(|x, y| x.1.accuracy.total_cmp(&y.1.accuracy));
    Ok(serde_json::json!({
        "n_samples": s.n_samples, "extract_s": s.extract_s, "fit_s": s.fit_s,
        "baseline_accuracy": s.layers.first().map(|r| r.baseline_accuracy),
        "best_layer": best.map(|b| b.0), "best_accuracy": best.map(|b| b.1.accuracy),
        "all_converged": s.layers.iter().all(|r| r.all_converged),
    })
    .to_string())
}

/// `sinkscope ablate` over a loaded model into `out`: the baseline and the runs with the
/// massive-activation blocks' output at position 0 scaled by each λ (and, as asked, each block
/// alone and the massive dimensions mean- and zero-ablated). Not interruptible between
/// prompts (its sub-runs share the baseline's choices): Ctrl-C is noticed when it ends.
#[pyfunction]
#[pyo3(signature = (model, input, out, *, layers = "auto", scales = vec![1.0, 0.75, 0.5, 0.25, 0.0],
    component = "mlp", one_by_one = false, mean_ablate = false, epsilon = 0.3, report = true, progress = None))]
#[allow(clippy::too_many_arguments)]
pub fn ablate(
    py: Python<'_>,
    model: &PyModel,
    input: &Input,
    out: PathBuf,
    layers: &str,
    scales: Vec<f32>,
    component: &str,
    one_by_one: bool,
    mean_ablate: bool,
    epsilon: f64,
    report: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    use sinkscope_analysis::ablate::{self, AblateOptions};
    let opts = AblateOptions {
        profile: ProfileOptions {
            attention: AttentionParams { sink_epsilon: epsilon, ..AttentionParams::default() },
            ..input.options(model)?
        },
        blocks: ablate::parse_layers(layers).map_err(|e| to_py(&e))?,
        scales: ablate::check_scales(&scales).map_err(|e| to_py(&e))?,
        component: ablate::parse_component(component).map_err(|e| to_py(&e))?,
        one_by_one,
        mean_ablate,
        shard: None,
    };
    let p = py
        .detach(|| {
            let passes = Passes::Experiment {
                pack_tokens: sinkscope_analysis::profile::DEFAULT_PACK_TOKENS,
                logits: true,
            };
            let spec = RunSpec {
                kind: "ablate",
                entries: ablate::ABLATE_ENTRIES,
                prefixes: ablate::ABLATE_PREFIXES,
                passes,
                select: None,
            };
            prepare_run(model, input, &opts.profile, spec, &out)
        })
        .map_err(any)?;
    p.notes.warn(py)?;
    let _threads = SingleThreaded::new(p.workers);
    let s = py
        .detach(|| {
            let mut sub_progress = |_: &str| -> Box<dyn Progress> {
                let f = progress.as_ref().map(|f| Python::attach(|py| f.clone_ref(py)));
                Box::new(PyProgress { f })
            };
            ablate::run_ablate(
                &model.model,
                &model.files,
                &opts,
                &p.header,
                &p.examples,
                &p.source,
                input.limit,
                &out,
                &mut sub_progress,
            )
        })
        .map_err(|e| to_py(&e))?;
    py.check_signals()?;
    render(py, &out, report)?;
    Ok(s.document.to_string())
}

/// Renders (again) the report of any run folder: `layers.csv`, `plots/`, `report.html`.
#[pyfunction]
pub fn render_run(py: Python<'_>, dir: PathBuf) -> PyResult<()> {
    render(py, &dir, true)
}

/// `sinkscope compare RUN_DIR... --out DIR`; returns the path of `compare.html`.
#[pyfunction]
#[pyo3(signature = (runs, out, force = false))]
pub fn compare(py: Python<'_>, runs: Vec<PathBuf>, out: PathBuf, force: bool) -> PyResult<PathBuf> {
    py.detach(|| -> anyhow::Result<PathBuf> {
        let inputs: Vec<&Path> = runs.iter().map(PathBuf::as_path).collect();
        let entries =
            [sinkscope_report::COMPARE_CSV, sinkscope_report::COMPARE_HTML, sinkscope_report::PLOTS_DIR];
        let mode = if force { Mode::Force } else { Mode::Fresh };
        let _out = OutDir::claim(
            &out,
            &Claim { kind: "compare", entries: &entries, prefixes: &[], inputs: &inputs, mode },
        )?;
        let s = sinkscope_report::render_compare(&runs, &out)
            .with_context(|| format!("comparing {} runs into {}", runs.len(), out.display()))?;
        Ok(s.compare_html)
    })
    .map_err(any)
}
