//! The Python extension `tmfast._rust`: the only code that touches PyO3 and numpy.
//!
//! One file per area registers its functions; every entry point has a typed Python
//! wrapper in `python/tmfast/` that validates input before calling it.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

mod angles;
mod formats;
mod kernels;
mod peaks;

impl From<crate::Error> for PyErr {
    fn from(err: crate::Error) -> PyErr {
        match err {
            // errno, message and file name, as Python's own OSErrors carry them
            crate::Error::Io { path, source } => match source.raw_os_error() {
                Some(code) => {
                    let text = source.to_string();
                    let suffix = format!(" (os error {code})");
                    let text = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
                    PyOSError::new_err((code, text, path))
                }
                None => PyOSError::new_err(format!("{path}: {source}")),
            },
            _ => PyValueError::new_err(err.to_string()),
        }
    }
}

#[pymodule]
fn _rust(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    angles::register(m)?;
    peaks::register(m)?;
    formats::register(m)?;
    kernels::register(m)?;
    Ok(())
}
