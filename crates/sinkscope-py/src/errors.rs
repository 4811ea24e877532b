//! Library errors as Python exceptions: one class per exit-code category of the CLI
//! (`sinkscope_analysis::exit`), each carrying `exit_code` and the CLI's one-line message.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use sinkscope_analysis::exit;

create_exception!(
    _sinkscope,
    SinkscopeError,
    PyException,
    "Base class of sinkscope's errors; `exit_code` is the CLI's exit status for the same failure."
);
create_exception!(_sinkscope, UsageError, SinkscopeError, "A bad option, hook name or edit (CLI exit 2).");
create_exception!(
    _sinkscope,
    InputError,
    SinkscopeError,
    "A bad input or output file: prompts, prompt too long, output folder (CLI exit 3)."
);
create_exception!(
    _sinkscope,
    ModelFileError,
    SinkscopeError,
    "A bad model file: format, metadata, missing or misshapen tensor, unknown architecture (CLI exit 4)."
);
create_exception!(
    _sinkscope,
    NumericalError,
    SinkscopeError,
    "A NaN or Inf activation; the message names the hook site (CLI exit 5)."
);
create_exception!(
    _sinkscope,
    NotEnoughMemory,
    SinkscopeError,
    "The memory estimate exceeds the memory available, or an allocation failed (CLI exit 6)."
);

/// Registers the classes on the module, each with its `exit_code` class attribute.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let classes: [(&str, Bound<'_, pyo3::types::PyType>, u8); 6] = [
        ("SinkscopeError", py.get_type::<SinkscopeError>(), exit::OTHER),
        ("UsageError", py.get_type::<UsageError>(), exit::USAGE),
        ("InputError", py.get_type::<InputError>(), exit::INPUT),
        ("ModelFileError", py.get_type::<ModelFileError>(), exit::MODEL),
        ("NumericalError", py.get_type::<NumericalError>(), exit::NUMERICAL),
        ("NotEnoughMemory", py.get_type::<NotEnoughMemory>(), exit::MEMORY),
    ];
    for (name, class, code) in classes {
        class.setattr("exit_code", code)?;
        m.add(name, class)?;
    }
    Ok(())
}

/// The Python exception for an error chain: the class of its exit-code category and the
/// CLI's message.
pub fn to_py(e: &(dyn std::error::Error + 'static)) -> PyErr {
    let msg = exit::message(e);
    match exit::code(e) {
        exit::USAGE => UsageError::new_err(msg),
        exit::INPUT => InputError::new_err(msg),
        exit::MODEL => ModelFileError::new_err(msg),
        exit::NUMERICAL => NumericalError::new_err(msg),
        exit::MEMORY => NotEnoughMemory::new_err(msg),
        _ => SinkscopeError::new_err(msg),
    }
}

/// `?`-friendly conversion of any library error.
pub trait IntoPy<T> {
    /// The value, or the error as its Python exception.
    fn py(self) -> PyResult<T>;
}

impl<T, E: std::error::Error + 'static> IntoPy<T> for Result<T, E> {
    fn py(self) -> PyResult<T> {
        self.map_err(|e| to_py(&e))
    }
}

/// [`IntoPy`] for `anyhow` chains (context added by this crate).
pub fn any(e: anyhow::Error) -> PyErr {
    to_py(e.as_ref())
}
