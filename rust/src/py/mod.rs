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
            crate::Error::Io { .. } => PyOSError::new_err(err.to_string()),
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
