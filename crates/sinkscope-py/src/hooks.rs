//! Python callables as forward hooks (TransformerLens's `fn(activation, hook)` habit).

use crate::model::to_numpy;
use candle_core::Tensor;
use numpy::{PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use sinkscope_model::{Hook, ModelError};
use sinkscope_spec::HookSite;
use std::collections::BTreeSet;

/// What a hook function receives as `hook`: the site's name (TransformerLens's `HookPoint`).
#[pyclass(name = "HookPoint", module = "sinkscope._sinkscope", frozen)]
pub struct HookPoint {
    /// The hook name, e.g. `blocks.1.hook_mlp_out`.
    #[pyo3(get)]
    pub name: String,
}

#[pymethods]
impl HookPoint {
    fn __repr__(&self) -> String {
        format!("HookPoint('{}')", self.name)
    }
}

/// Python hook functions, each over a set of sites, run in order. The first Python exception
/// stops the forward pass and is re-raised as it is.
#[derive(Default)]
pub struct PyHooks {
    hooks: Vec<(BTreeSet<HookSite>, Py<PyAny>)>,
    /// The exception a hook raised.
    pub error: Option<PyErr>,
}

impl PyHooks {
    /// Adds a function over `sites`.
    pub fn push(&mut self, sites: Vec<HookSite>, f: Py<PyAny>) {
        self.hooks.push((sites.into_iter().collect(), f));
    }
}

/// The replacement a hook asks for: its return value, or the array it was given when it
/// edited that in place and returned `None` (both TransformerLens idioms).
fn call<'py>(py: Python<'py>, f: &Py<PyAny>, site: HookSite, act: &Tensor) -> PyResult<Option<Tensor>> {
    let arr = to_numpy(py, act)?;
    let before: Vec<f32> = arr.readonly().as_slice()?.to_vec();
    let point = Bound::new(py, HookPoint { name: site.to_string() })?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("hook", point)?;
    let ret = f.bind(py).call((arr.clone(),), Some(&kwargs))?;
    let new = if ret.is_none() { arr.into_any() } else { ret };
    let np = py.import("numpy")?;
    let new = np.call_method1("ascontiguousarray", (new, "float32"))?;
    let view: PyReadonlyArrayDyn<'_, f32> = new.extract()?;
    let data = view.as_slice()?;
    if view.shape() == act.dims() && data.iter().zip(&before).all(|(a, b)| a.to_bits() == b.to_bits()) {
        return Ok(None);
    }
    if site.kind.is_read_only() {
        return Err(crate::errors::UsageError::new_err(format!(
            "{site}: an observation-only site cannot be changed (edit the site it is computed from)"
        )));
    }
    let t = Tensor::from_vec(data.to_vec(), view.shape().to_vec(), act.device())
        .map_err(|e| crate::errors::to_py(&e))?;
    Ok(Some(t))
}

impl Hook for PyHooks {
    fn wants(&self, site: HookSite) -> bool {
        self.error.is_none() && self.hooks.iter().any(|(s, _)| s.contains(&site))
    }

    fn on(&mut self, site: HookSite, act: &Tensor) -> sinkscope_model::Result<Option<Tensor>> {
        let mut current: Option<Tensor> = None;
        for (sites, f) in &self.hooks {
            if !sites.contains(&site) {
                continue;
            }
            let input = current.as_ref().unwrap_or(act);
            match Python::attach(|py| call(py, f, site, input)) {
                Ok(Some(t)) => current = Some(t),
                Ok(None) => {}
                Err(e) => {
                    self.error = Some(e);
                    return Err(ModelError::Hook {
                        site,
                        reason: "a Python hook raised an exception".into(),
                    });
                }
            }
        }
        Ok(current)
    }
}
