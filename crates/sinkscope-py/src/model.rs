//! `Model`: a loaded checkpoint, its tokenizer, and forward passes with captures, edits and
//! Python hooks. The Python class `sinkscope.Model` wraps it (`python/sinkscope/_model.py`).

use crate::errors::{any, IntoPy, UsageError};
use crate::hooks::PyHooks;
use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sinkscope_io::tokenizer::BosPolicy;
use sinkscope_io::ModelFiles;
use sinkscope_model::{memory, ActivationCache, EditHook, ForwardCtx, Model};
use sinkscope_spec::{Edit, HookSite, SitePattern};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

/// The logits (when asked for) and the cache of a forward pass.
type LogitsAndCache<'py> = (Option<Bound<'py, PyArrayDyn<f32>>>, Bound<'py, PyDict>);

/// A loaded model (the Rust core of `sinkscope.Model`).
#[pyclass(name = "_Model", module = "sinkscope._sinkscope", frozen)]
pub struct PyModel {
    /// The checkpoint files (config, tokenizer).
    pub files: ModelFiles,
    /// The model.
    pub model: Model,
    /// The BOS policy given to `load`.
    pub bos: BosPolicy,
    /// The path given to `load`.
    pub path: PathBuf,
    /// Seconds spent loading.
    pub load_s: f64,
    sha: OnceLock<String>,
}

/// Parses a BOS policy (`auto`, `always`, `never`, `eos`).
pub fn parse_bos(s: &str) -> PyResult<BosPolicy> {
    s.parse::<BosPolicy>().map_err(|e| UsageError::new_err(format!("bos: {e}")))
}

/// An f32 tensor as a numpy array of the same shape (a copy).
pub fn to_numpy<'py>(py: Python<'py>, t: &Tensor) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let data: Vec<f32> = t.to_dtype(DType::F32).and_then(|t| t.flatten_all()?.to_vec1()).py()?;
    PyArray1::from_vec(py, data).reshape(t.dims().to_vec())
}

impl PyModel {
    /// The model's content hash (computed once, as every manifest records it).
    pub fn sha256(&self) -> PyResult<&str> {
        if let Some(s) = self.sha.get() {
            return Ok(s.as_str());
        }
        let s = sinkscope_analysis::header::model_sha256(&self.path).py()?;
        Ok(self.sha.get_or_init(|| s).as_str())
    }

    /// The BOS policy of a call: the one given, else the model's.
    pub fn bos_or_default(&self, bos: Option<&str>) -> PyResult<BosPolicy> {
        bos.map_or(Ok(self.bos), parse_bos)
    }

    fn sites(&self, names: &[String]) -> PyResult<Vec<HookSite>> {
        let mut out = Vec::new();
        for n in names {
            out.extend(n.parse::<SitePattern>().and_then(|p| p.expand(&self.files.config)).py()?);
        }
        Ok(out)
    }
}

#[pymethods]
impl PyModel {
    /// Opens a checkpoint (GGUF file or Hugging Face folder) behind the memory guard and
    /// loads its weights, with the GIL released.
    #[staticmethod]
    #[pyo3(signature = (path, bos = "auto", force = false))]
    fn open(py: Python<'_>, path: PathBuf, bos: &str, force: bool) -> PyResult<PyModel> {
        let bos = parse_bos(bos)?;
        py.detach(|| -> anyhow::Result<PyModel> {
            let t0 = Instant::now();
            let files = ModelFiles::open(&path)?;
            let shape = memory::RunShape { max_tokens: 1, logits: true, retained_bytes: 0 };
            memory::guard(&files, &shape, force)?;
            let weights = files.load_weights()?;
            let model = Model::new(files.config.clone(), weights, &Device::Cpu)
                .with_context(|| format!("{}: building the model", path.display()))?;
            Ok(PyModel { files, model, bos, path, load_s: t0.elapsed().as_secs_f64(), sha: OnceLock::new() })
        })
        .map_err(any)
    }

    /// The resolved `ModelConfig` as JSON.
    fn config_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.files.config).py()
    }

    /// The path given to `load`.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The BOS policy given to `load`.
    #[getter]
    fn bos(&self) -> &'static str {
        self.bos.as_str()
    }

    /// Seconds spent loading.
    #[getter]
    fn load_s(&self) -> f64 {
        self.load_s
    }

    /// The model's content hash (as in every manifest).
    #[pyo3(name = "sha256")]
    fn py_sha256(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| self.sha256().map(str::to_string))
    }

    /// `(ids, token strings, bos_prepended)` of a text under a BOS policy.
    #[pyo3(signature = (text, bos = None))]
    fn tokenize(&self, text: &str, bos: Option<&str>) -> PyResult<(Vec<u32>, Vec<String>, bool)> {
        let enc = self.files.tokenizer.encode(text, self.bos_or_default(bos)?).py()?;
        Ok((enc.ids, enc.tokens, enc.bos_prepended))
    }

    /// The text of token ids.
    fn decode(&self, ids: Vec<u32>) -> Vec<Option<String>> {
        ids.iter().map(|&i| self.files.tokenizer.id_to_token(i)).collect()
    }

    /// Every hook site of this model, in dataflow order.
    fn hook_sites(&self) -> Vec<String> {
        HookSite::all_for(&self.files.config).iter().map(ToString::to_string).collect()
    }

    /// The sites named by hook names or `blocks.*.` patterns (UsageError naming the nearest
    /// valid names for an unknown one).
    fn expand(&self, names: Vec<String>) -> PyResult<Vec<String>> {
        Ok(self.sites(&names)?.iter().map(ToString::to_string).collect())
    }

    /// One forward pass over `ids`: `edits` (the CLI's `--edit` specs) first, then the Python
    /// `hooks` (`[(site names, fn)]`, in order), then the capture of `capture`. Returns the
    /// logits (`[T, d_vocab]`, when `logits`) and `{site: array}`. The GIL is released except
    /// while a Python hook runs.
    #[pyo3(signature = (ids, capture, hooks, edits, logits))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<u32>,
        capture: Vec<String>,
        hooks: Vec<(Vec<String>, Py<PyAny>)>,
        edits: Vec<String>,
        logits: bool,
    ) -> PyResult<LogitsAndCache<'py>> {
        let capture = self.sites(&capture)?;
        let edits: Vec<Edit> = edits.iter().map(|e| e.parse::<Edit>()).collect::<Result<_, _>>().py()?;
        for e in &edits {
            e.site.check(&self.files.config).py()?;
        }
        let mut py_hooks = PyHooks::default();
        for (names, f) in hooks {
            py_hooks.push(self.sites(&names)?, f);
        }
        let mut cache = ActivationCache::new(capture);
        let mut editor = EditHook::new(edits);
        let out = py.detach(|| {
            let mut ctx = ForwardCtx::new().with(&mut editor).with(&mut py_hooks).with(&mut cache);
            if logits {
                ctx = ctx.with_logits();
            }
            self.model.forward(&ids, &mut ctx)
        });
        if let Some(e) = py_hooks.error.take() {
            return Err(e);
        }
        let out = out.py()?;
        let dict = PyDict::new(py);
        for (site, t) in &cache.store {
            dict.set_item(site.to_string(), to_numpy(py, t)?)?;
        }
        let logits = match out {
            Some(t) if logits => Some(to_numpy(py, &t)?),
            _ => None,
        };
        Ok((logits, dict))
    }
}
