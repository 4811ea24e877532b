//! `profile` and `lens` over a loaded model: the same library calls as the CLI's commands
//! (`sinkscope_analysis::profile::run_profile`, `lens::run_lens`, `sinkscope_report::render_run`),
//! so that a run folder written from Python holds the same bytes as the CLI's.

use crate::errors::{any, to_py};
use crate::model::PyModel;
use anyhow::Context;
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use sinkscope_analysis::datasets::{self, Example};
use sinkscope_analysis::profile::{
    prepare, DataSource, FileSource, FirstTokenSpec, ManifestHeader, ProfileInput, ProfileOptions, Progress,
};
use sinkscope_analysis::AnalysisError;
use sinkscope_metrics::AttentionParams;
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

    /// The prompts (file, Python list or dataset), the first `limit` of them.
    fn examples(&self) -> anyhow::Result<(Vec<Example>, DataSource)> {
        if self.limit == Some(0) {
            return Err(AnalysisError::Options("limit must be at least 1".into()).into());
        }
        let (mut examples, source) = match (&self.prompts_file, &self.texts, &self.dataset) {
            (Some(path), None, None) => {
                let f = sinkscope_io::prompts::read_prompt_file(path, self.limit)?;
                let source = DataSource::File((&f).into());
                (f.prompts.into_iter().map(Example::from).collect::<Vec<_>>(), source)
            }
            (None, Some(texts), None) => {
                // In-memory prompts are recorded by the hash of their JSONL form.
                let mut jsonl = String::new();
                for (id, text) in texts {
                    jsonl.push_str(&serde_json::json!({"id": id, "text": text}).to_string());
                    jsonl.push('\n');
                }
                let sha = sinkscope_analysis::header::hex(&sha2_digest(jsonl.as_bytes()));
                let source = DataSource::File(FileSource {
                    path: PathBuf::from("<python list>"),
                    sha256: Some(sha),
                    bom: false,
                });
                let ex = texts.iter().map(|(id, text)| Example {
                    id: id.clone(),
                    text: text.clone(),
                    label: None,
                });
                (ex.collect(), source)
            }
            (None, None, Some(name)) => {
                let spec = datasets::by_name(name)?;
                if !datasets::is_fetched(spec, &self.data_dir) {
                    datasets::fetch(spec, &self.data_dir, &self.python)?;
                }
                let d = datasets::load(spec, &self.data_dir)?;
                (d.examples, DataSource::Dataset(Box::new(d.provenance)))
            }
            _ => {
                return Err(AnalysisError::Options(
                    "give exactly one of prompts (a file or a list of texts) and dataset".into(),
                )
                .into())
            }
        };
        if let Some(n) = self.limit {
            examples.truncate(n);
        }
        if examples.is_empty() {
            return Err(AnalysisError::NoPrompts.into());
        }
        Ok((examples, source))
    }

    fn origin(&self, source: &DataSource) -> String {
        match (source, &self.prompts_file) {
            (DataSource::File(_), Some(p)) => p.display().to_string(),
            (DataSource::File(f), None) => f.path.display().to_string(),
            (DataSource::Dataset(d), _) => format!("dataset '{}'", d.name),
        }
    }
}

fn sha2_digest(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
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
/// CLI does before loading), the claimed output folder and the manifest header.
struct Prepared {
    examples: Vec<Example>,
    source: DataSource,
    header: ManifestHeader,
    _out: OutDir,
}

#[allow(clippy::too_many_arguments)]
fn prepare_run(
    m: &PyModel,
    input: &Input,
    opts: &ProfileOptions,
    kind: &str,
    entries: &[&str],
    out: &Path,
    logits: bool,
    pack_tokens: usize,
    memory_block: fn(
        &sinkscope_model::memory::MemoryEstimate,
        Option<&sinkscope_model::memory::Available>,
        bool,
    ) -> serde_json::Value,
) -> anyhow::Result<Prepared> {
    opts.validate()?;
    let (examples, source) = input.examples()?;
    let origin = input.origin(&source);
    let mut lengths = Vec::with_capacity(examples.len());
    for ex in &examples {
        lengths.push(prepare(&m.files, &ex.id, &ex.text, opts).with_context(|| origin.clone())?.ids.len());
    }
    // The weights are loaded already (`load` checked that they fit): this records the run's
    // estimate as the CLI's manifest does.
    let max_t = sinkscope_analysis::runner::largest_pack(&lengths, pack_tokens);
    let shape = sinkscope_model::memory::RunShape { max_tokens: max_t, logits, retained_bytes: 0 };
    let est = sinkscope_model::memory::estimate(&m.files, &shape);
    let available = sinkscope_model::memory::available()?;
    let inputs: Vec<&Path> =
        [Some(m.path.as_path()), input.prompts_file.as_deref()].into_iter().flatten().collect();
    let mode = match (input.resume, input.force) {
        (true, _) => Mode::Resume,
        (false, true) => Mode::Force,
        _ => Mode::Fresh,
    };
    let claimed = OutDir::claim(out, &Claim { kind, entries, prefixes: &[], inputs: &inputs, mode })?;
    let sha = m.sha256().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut extra = serde_json::Map::new();
    extra.insert("memory".into(), memory_block(&est, available.as_ref(), input.force));
    let header = ManifestHeader {
        tool: sinkscope_analysis::header::tool_info(),
        model: sinkscope_analysis::header::model_info(&m.files, sha),
        tokenizer: sinkscope_analysis::header::tokenizer_info(&m.files, opts.bos),
        load_s: m.load_s,
        extra,
    };
    Ok(Prepared { examples, source, header, _out: claimed })
}

/// What a run folder of `profile`, `lens` and `probe` holds (the report's files included).
const RUN_ENTRIES: &[&str] = &[
    sinkscope_report::schema::MANIFEST_FILE,
    sinkscope_report::schema::PROMPTS_FILE,
    sinkscope_report::schema::METRICS_FILE,
    sinkscope_report::LAYERS_CSV,
    sinkscope_report::PLOTS_DIR,
    sinkscope_report::REPORT_HTML,
];

fn full_memory_block(
    est: &sinkscope_model::memory::MemoryEstimate,
    available: Option<&sinkscope_model::memory::Available>,
    force: bool,
) -> serde_json::Value {
    serde_json::json!({
        "estimate_bytes": est.total(),
        "estimate": est.to_string(),
        "available_bytes": available.map(|v| v.bytes),
        "available_source": available.map(|v| v.source.clone()),
        "forced": force,
    })
}

fn short_memory_block(
    est: &sinkscope_model::memory::MemoryEstimate,
    _available: Option<&sinkscope_model::memory::Available>,
    force: bool,
) -> serde_json::Value {
    serde_json::json!({"estimate_bytes": est.total(), "estimate": est.to_string(), "forced": force})
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
#[pyo3(signature = (model, input, out, *, epsilon = 0.3, workers = 1, pack_tokens = 128, report = true, progress = None))]
#[allow(clippy::too_many_arguments)]
pub fn profile(
    py: Python<'_>,
    model: &PyModel,
    input: &Input,
    out: PathBuf,
    epsilon: f64,
    workers: usize,
    pack_tokens: usize,
    report: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    if pack_tokens == 0 || workers == 0 {
        return Err(to_py(&AnalysisError::Options(
            "pack_tokens and threads must be at least 1 (pack_tokens=1 turns packing off)".into(),
        )));
    }
    let opts = ProfileOptions {
        attention: AttentionParams { sink_epsilon: epsilon, ..AttentionParams::default() },
        ..input.options(model)?
    };
    let p = py
        .detach(|| {
            prepare_run(
                model,
                input,
                &opts,
                "profile",
                RUN_ENTRIES,
                &out,
                false,
                pack_tokens,
                full_memory_block,
            )
        })
        .map_err(any)?;
    let total = p.examples.len();
    let (source, header) = (p.source, p.header);
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
        .detach(|| prepare_run(model, input, &opts, "lens", RUN_ENTRIES, &out, true, 0, short_memory_block))
        .map_err(any)?;
    let total = p.examples.len();
    let (source, header) = (p.source, p.header);
    let s = run_interruptible(py, p.examples, |prompts| {
        let mut bar = PyProgress { f: progress };
        let input = ProfileInput {
            source,
            limit: input.limit,
            prompts,
            total: Some(total),
            workers: 1,
            pack_tokens: 0,
        };
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
