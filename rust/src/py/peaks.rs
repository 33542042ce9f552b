//! Python bindings for the peaks area.
//!
//! The score map is the caller's array, so the GIL is held while picking: reading a
//! borrowed numpy array inside `py.detach` could race with Python threads
//! (rust-numpy #497). Initial tile scans use rayon internally.

use ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray3};
use pyo3::prelude::*;

use crate::peaks::{find_peaks, AngleMap, Mask, PeakOptions};

type PeakArrays<'py> = (
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray1<i64>>,
);

/// Greedy peak picking; returns `(positions_zyx (N, 3) int64, scores (N,) float32,
/// angle_indices (N,) int64)`. Inputs must be C-contiguous.
#[pyfunction(name = "find_peaks")]
#[pyo3(signature = (scores, *, n_peaks, exclusion_radius_vox, cutoff=None, mask=None,
                    mask_u8=None, mask_i8=None, angles_f32=None, angles_i32=None,
                    border_vox=0))]
#[allow(clippy::too_many_arguments)]
fn find_peaks_py<'py>(
    py: Python<'py>,
    scores: PyReadonlyArray3<'py, f32>,
    n_peaks: usize,
    exclusion_radius_vox: f64,
    cutoff: Option<f64>,
    mask: Option<PyReadonlyArray3<'py, f32>>,
    mask_u8: Option<PyReadonlyArray3<'py, u8>>,
    mask_i8: Option<PyReadonlyArray3<'py, i8>>,
    angles_f32: Option<PyReadonlyArray3<'py, f32>>,
    angles_i32: Option<PyReadonlyArray3<'py, i32>>,
    border_vox: usize,
) -> PyResult<PeakArrays<'py>> {
    let angles = match (&angles_f32, &angles_i32) {
        (Some(a), None) => AngleMap::F32(a.as_array()),
        (None, Some(a)) => AngleMap::I32(a.as_array()),
        (None, None) => AngleMap::None,
        (Some(_), Some(_)) => {
            return Err(
                crate::Error::invalid("pass at most one of angles_f32 and angles_i32").into(),
            )
        }
    };
    let mask = match (&mask, &mask_u8, &mask_i8) {
        (None, None, None) => None,
        (Some(m), None, None) => Some(Mask::F32(m.as_array())),
        (None, Some(m), None) => Some(Mask::U8(m.as_array())),
        (None, None, Some(m)) => Some(Mask::I8(m.as_array())),
        _ => {
            return Err(
                crate::Error::invalid("pass at most one of mask, mask_u8 and mask_i8").into(),
            )
        }
    };
    let opts = PeakOptions {
        n_peaks,
        exclusion_radius_vox,
        cutoff,
        border_vox,
    };
    let peaks = find_peaks(scores.as_array(), mask, angles, &opts)?;
    let n = peaks.scores.len();
    let flat: Vec<i64> = peaks.positions_zyx.into_iter().flatten().collect();
    let positions =
        Array2::from_shape_vec((n, 3), flat).map_err(|e| crate::Error::invalid(e.to_string()))?;
    Ok((
        positions.into_pyarray(py),
        peaks.scores.into_pyarray(py),
        peaks.angle_indices.into_pyarray(py),
    ))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(find_peaks_py, m)?)?;
    Ok(())
}
