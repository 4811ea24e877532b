//! The `sinkscope` Python package's native module (`sinkscope._sinkscope`): thin bindings over
//! the library crates. No logic of its own: loading, forward passes and hooks come from
//! `sinkscope-model`, runs from `sinkscope-analysis`, reports from `sinkscope-report`; errors
//! map to exception classes by the CLI's exit-code categories (`sinkscope_analysis::exit`).
//! The Python API (`python/sinkscope/`) wraps these in TransformerLens's idiom.

mod errors;
mod hooks;
mod model;
mod runs;

use pyo3::prelude::*;

#[pymodule]
fn _sinkscope(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<model::PyModel>()?;
    m.add_class::<hooks::HookPoint>()?;
    m.add_class::<runs::Input>()?;
    m.add_function(wrap_pyfunction!(runs::profile, m)?)?;
    m.add_function(wrap_pyfunction!(runs::lens, m)?)?;
    m.add_function(wrap_pyfunction!(runs::probe, m)?)?;
    m.add_function(wrap_pyfunction!(runs::ablate, m)?)?;
    m.add_function(wrap_pyfunction!(runs::render_run, m)?)?;
    m.add_function(wrap_pyfunction!(runs::compare, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("EDIT_GRAMMAR", sinkscope_spec::EDIT_GRAMMAR)?;
    Ok(())
}
