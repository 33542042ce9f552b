//! Python bindings for the angles area: rotation sets and Euler conversions.
//!
//! Thin wrappers only; the typed, validating Python API is `tmfast.geometry.angles` and
//! `tmfast.geometry.rotations`.

use ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArray3, PyReadonlyArray2, PyReadonlyArray3};
use pyo3::prelude::*;

use crate::angles::{self, Zxz};
use crate::euler;

/// Copy an `(N, 3)` array into owned triples (so no borrowed numpy memory is read while
/// the GIL is released). Non-contiguous input is copied too.
fn triples(a: &PyReadonlyArray2<'_, f64>) -> PyResult<Vec<[f64; 3]>> {
    let v = a.as_array();
    if v.ncols() != 3 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "expected an (N, 3) array, got shape {:?}",
            v.shape()
        )));
    }
    Ok(v.rows().into_iter().map(|r| [r[0], r[1], r[2]]).collect())
}

/// `(N, 3)` array from a list of triples (no copy of the data).
fn to_array(v: Vec<Zxz>) -> Array2<f64> {
    let n = v.len();
    Array2::from_shape_vec((n, 3), v.into_flattened()).expect("n x 3 elements")
}

/// `(theta, phi)` arrays returned to Python.
type ThetaPhi<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);

#[pyfunction(name = "healpix_pix2ang")]
fn healpix_pix2ang_py(py: Python<'_>, nside: u64) -> PyResult<ThetaPhi<'_>> {
    if nside == 0 || nside > 1 << 14 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "nside {nside} is invalid; give 1 <= nside <= 16384"
        )));
    }
    let (theta, phi): (Vec<f64>, Vec<f64>) = py.detach(|| {
        (0..angles::healpix::npix(nside))
            .map(|p| angles::healpix::ring_pix2ang(nside, p))
            .unzip()
    });
    Ok((theta.into_pyarray(py), phi.into_pyarray(py)))
}

#[pyfunction(name = "nside_for_step")]
fn nside_for_step_py(step_deg: f64) -> PyResult<u64> {
    Ok(angles::nside_for_step(step_deg)?)
}

#[pyfunction(name = "pytom_angle_set")]
#[pyo3(signature = (step_deg, *, symmetry_n=1))]
fn pytom_angle_set_py(
    py: Python<'_>,
    step_deg: f64,
    symmetry_n: u32,
) -> PyResult<Bound<'_, PyArray2<f64>>> {
    let set = py.detach(|| angles::pytom_angle_set(step_deg, symmetry_n))?;
    Ok(to_array(set).into_pyarray(py))
}

#[pyfunction(name = "crowther_step_deg")]
#[pyo3(signature = (particle_diameter_a, voxel_size_a, low_pass_a=None))]
fn crowther_step_deg_py(
    particle_diameter_a: f64,
    voxel_size_a: f64,
    low_pass_a: Option<f64>,
) -> PyResult<f64> {
    Ok(angles::crowther_step_deg(
        particle_diameter_a,
        voxel_size_a,
        low_pass_a,
    )?)
}

#[pyfunction(name = "read_angle_file")]
fn read_angle_file_py(
    py: Python<'_>,
    path: std::path::PathBuf,
) -> PyResult<Bound<'_, PyArray2<f64>>> {
    let set = py.detach(|| angles::read_angle_file(&path))?;
    Ok(to_array(set).into_pyarray(py))
}

#[pyfunction(name = "zxz_to_matrices")]
fn zxz_to_matrices_py<'py>(
    py: Python<'py>,
    angles_zxz_rad: PyReadonlyArray2<'py, f64>,
) -> PyResult<Bound<'py, PyArray3<f64>>> {
    let t = triples(&angles_zxz_rad)?;
    let flat: Vec<f64> = t
        .iter()
        .flat_map(|a| euler::zxz_to_matrix(*a).into_iter().flatten())
        .collect();
    let arr = ndarray::Array3::from_shape_vec((t.len(), 3, 3), flat).expect("n x 3 x 3");
    Ok(arr.into_pyarray(py))
}

#[pyfunction(name = "matrices_to_zxz")]
fn matrices_to_zxz_py<'py>(
    py: Python<'py>,
    matrices: PyReadonlyArray3<'py, f64>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let v = matrices.as_array();
    if v.shape()[1..] != [3, 3] {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "expected an (N, 3, 3) array, got shape {:?}",
            v.shape()
        )));
    }
    let out: Vec<Zxz> = v
        .outer_iter()
        .map(|m| {
            let mm = [
                [m[[0, 0]], m[[0, 1]], m[[0, 2]]],
                [m[[1, 0]], m[[1, 1]], m[[1, 2]]],
                [m[[2, 0]], m[[2, 1]], m[[2, 2]]],
            ];
            euler::matrix_to_zxz(&mm)
        })
        .collect();
    Ok(to_array(out).into_pyarray(py))
}

#[pyfunction(name = "zxz_to_relion_deg")]
fn zxz_to_relion_deg_py<'py>(
    py: Python<'py>,
    angles_zxz_rad: PyReadonlyArray2<'py, f64>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let t = triples(&angles_zxz_rad)?;
    let out = py.detach(|| t.into_iter().map(euler::zxz_to_relion_deg).collect());
    Ok(to_array(out).into_pyarray(py))
}

#[pyfunction(name = "relion_deg_to_zxz")]
fn relion_deg_to_zxz_py<'py>(
    py: Python<'py>,
    angles_relion_deg: PyReadonlyArray2<'py, f64>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let t = triples(&angles_relion_deg)?;
    let out = py.detach(|| t.into_iter().map(euler::relion_deg_to_zxz).collect());
    Ok(to_array(out).into_pyarray(py))
}

#[pyfunction(name = "symmetry_order")]
fn symmetry_order_py(symmetry: &str) -> PyResult<usize> {
    Ok(angles::symmetry::Symmetry::parse(symmetry)?.order())
}

#[pyfunction(name = "symmetry_group_zxz")]
fn symmetry_group_zxz_py<'py>(
    py: Python<'py>,
    symmetry: &str,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let g = angles::symmetry::Symmetry::parse(symmetry)?;
    let out: Vec<Zxz> = g
        .elements()
        .into_iter()
        .map(euler::quaternion_to_zxz)
        .collect();
    Ok(to_array(out).into_pyarray(py))
}

#[pyfunction(name = "reduce_by_symmetry")]
#[pyo3(signature = (angles_zxz_rad, symmetry, *, complete_cyclic=false))]
fn reduce_by_symmetry_py<'py>(
    py: Python<'py>,
    angles_zxz_rad: PyReadonlyArray2<'py, f64>,
    symmetry: &str,
    complete_cyclic: bool,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let g = angles::symmetry::Symmetry::parse(symmetry)?;
    let t = triples(&angles_zxz_rad)?;
    let out = py.detach(|| {
        if complete_cyclic {
            angles::symmetry::reduce_covering(&t, g)
        } else {
            angles::symmetry::reduce(&t, g)
        }
    });
    Ok(to_array(out).into_pyarray(py))
}

#[pyfunction(name = "covering_radius")]
#[pyo3(signature = (angles_zxz_rad, *, n_samples, seed))]
fn covering_radius_py<'py>(
    py: Python<'py>,
    angles_zxz_rad: PyReadonlyArray2<'py, f64>,
    n_samples: usize,
    seed: u64,
) -> PyResult<(f64, Bound<'py, PyArray1<f64>>)> {
    let t = triples(&angles_zxz_rad)?;
    let est = py.detach(|| {
        let q: Vec<_> = t.iter().map(|a| euler::zxz_to_quaternion(*a)).collect();
        angles::covering::covering_radius(&q, n_samples, seed)
    });
    let worst = euler::quaternion_to_zxz(est.worst).to_vec();
    Ok((est.radius_rad, worst.into_pyarray(py)))
}

#[pyfunction(name = "nearest_distances")]
fn nearest_distances_py<'py>(
    py: Python<'py>,
    set_zxz_rad: PyReadonlyArray2<'py, f64>,
    query_zxz_rad: PyReadonlyArray2<'py, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let s = triples(&set_zxz_rad)?;
    let q = triples(&query_zxz_rad)?;
    let out: Vec<f64> = py.detach(|| {
        let sq: Vec<_> = s.iter().map(|a| euler::zxz_to_quaternion(*a)).collect();
        let index = angles::covering::QuatIndex::new(&sq);
        q.iter()
            .map(|a| {
                index
                    .nearest(&euler::zxz_to_quaternion(*a))
                    .map_or(f64::INFINITY, |(_, d)| d)
            })
            .collect()
    });
    Ok(out.into_pyarray(py))
}

#[pyfunction(name = "optimal_angle_set")]
#[pyo3(signature = (step_deg, *, n_samples))]
fn optimal_angle_set_py(
    py: Python<'_>,
    step_deg: f64,
    n_samples: usize,
) -> PyResult<(Bound<'_, PyArray2<f64>>, f64, f64)> {
    let set = py.detach(|| angles::optimal::optimal_angle_set(step_deg, n_samples))?;
    Ok((
        to_array(set.angles).into_pyarray(py),
        set.radius_rad,
        set.pytom_radius_rad,
    ))
}

#[pyfunction(name = "optimal_for_radius")]
#[pyo3(signature = (radius_rad, *, n_samples, max_len))]
fn optimal_for_radius_py(
    py: Python<'_>,
    radius_rad: f64,
    n_samples: usize,
    max_len: usize,
) -> Option<(Bound<'_, PyArray2<f64>>, f64)> {
    py.detach(|| angles::optimal::optimal_for_radius(radius_rad, n_samples, max_len))
        .map(|(a, r, _)| (to_array(a).into_pyarray(py), r))
}

/// The embedded refined sets, smallest first: `(step_deg, radius_deg, angles)`.
#[pyfunction(name = "refined_sets")]
fn refined_sets_py(py: Python<'_>) -> Vec<(f64, f64, Bound<'_, PyArray2<f64>>)> {
    angles::refined::refined_sets()
        .iter()
        .map(|s| {
            (
                s.step_deg,
                s.radius_deg,
                to_array(s.angles.clone()).into_pyarray(py),
            )
        })
        .collect()
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(refined_sets_py, m)?)?;
    m.add_function(wrap_pyfunction!(healpix_pix2ang_py, m)?)?;
    m.add_function(wrap_pyfunction!(nside_for_step_py, m)?)?;
    m.add_function(wrap_pyfunction!(pytom_angle_set_py, m)?)?;
    m.add_function(wrap_pyfunction!(crowther_step_deg_py, m)?)?;
    m.add_function(wrap_pyfunction!(read_angle_file_py, m)?)?;
    m.add_function(wrap_pyfunction!(zxz_to_matrices_py, m)?)?;
    m.add_function(wrap_pyfunction!(matrices_to_zxz_py, m)?)?;
    m.add_function(wrap_pyfunction!(zxz_to_relion_deg_py, m)?)?;
    m.add_function(wrap_pyfunction!(relion_deg_to_zxz_py, m)?)?;
    m.add_function(wrap_pyfunction!(symmetry_order_py, m)?)?;
    m.add_function(wrap_pyfunction!(symmetry_group_zxz_py, m)?)?;
    m.add_function(wrap_pyfunction!(reduce_by_symmetry_py, m)?)?;
    m.add_function(wrap_pyfunction!(covering_radius_py, m)?)?;
    m.add_function(wrap_pyfunction!(nearest_distances_py, m)?)?;
    m.add_function(wrap_pyfunction!(optimal_angle_set_py, m)?)?;
    m.add_function(wrap_pyfunction!(optimal_for_radius_py, m)?)?;
    Ok(())
}
