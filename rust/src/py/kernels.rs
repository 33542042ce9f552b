//! Python bindings for the CPU backend kernels (`tmfast.backends.cpu` calls them).
//!
//! The arrays passed here are buffers the backend allocated and never hands out (its
//! private running maps and FFT outputs), so the work runs without the GIL on slices
//! taken before `py.detach`; no `Bound` or borrowed array is touched inside it.

use numpy::{
    Element, PyReadonlyArray2, PyReadonlyArrayDyn, PyReadwriteArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::kernels::{self, AngleIndex, Normalisation, RunningMapsMut, SumElement};
use crate::rowfft::RowForm;

fn row_form(half_spectrum: bool) -> RowForm {
    if half_spectrum {
        RowForm::HalfSpectrum
    } else {
        RowForm::Real
    }
}

fn contiguous<'a, T>(
    a: Result<&'a mut [T], numpy::AsSliceError>,
    name: &str,
) -> PyResult<&'a mut [T]> {
    a.map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

fn contiguous_ro<'a, T>(a: Result<&'a [T], numpy::AsSliceError>, name: &str) -> PyResult<&'a [T]> {
    a.map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

/// `(row_len, row_stride)` with the defaults for 0: packed rows of the maps' last axis.
fn row_layout(map_shape: &[usize], row_len: usize, row_stride: usize) -> (usize, usize) {
    let row_len = if row_len == 0 {
        map_shape.last().copied().unwrap_or(1)
    } else {
        row_len
    };
    (row_len, if row_stride == 0 { row_len } else { row_stride })
}

/// The [`Normalisation`] named by exactly one of: `inverse_norm`; `local_sum`,
/// `local_sq_sum` and `mask_sums`; `denominator`.
fn normalisation<'a>(
    inverse_norm: Option<&'a PyReadonlyArrayDyn<'_, f32>>,
    local_sum: Option<&'a PyReadonlyArrayDyn<'_, f32>>,
    local_sq_sum: Option<&'a PyReadonlyArrayDyn<'_, f32>>,
    mask_sums: Option<&'a [f32]>,
    denominator: Option<&'a PyReadonlyArrayDyn<'_, f32>>,
    floor_rel: f32,
) -> PyResult<Normalisation<'a>> {
    Ok(
        match (
            inverse_norm,
            local_sum,
            local_sq_sum,
            mask_sums,
            denominator,
        ) {
            (Some(inv), None, None, None, None) => {
                Normalisation::Inverse(contiguous_ro(inv.as_slice(), "inverse_norm")?)
            }
            (None, Some(s1), Some(s2), Some(nm), None) => Normalisation::Local {
                sum_v: contiguous_ro(s1.as_slice(), "local_sum")?,
                sum_v2: contiguous_ro(s2.as_slice(), "local_sq_sum")?,
                n_m: nm,
                floor_rel,
            },
            (None, None, None, None, Some(d)) => {
                Normalisation::Denominator(contiguous_ro(d.as_slice(), "denominator")?)
            }
            _ => {
                return Err(PyValueError::new_err(
                    "give inverse_norm, or local_sum, local_sq_sum and mask_sums, or denominator",
                ))
            }
        },
    )
}

/// The angle map argument of the fold: int32, or uint16 for at most
/// `kernels::U16_ANGLE_LIMIT` rotations.
#[derive(FromPyObject)]
enum AngleMap<'py> {
    I32(PyReadwriteArrayDyn<'py, i32>),
    U16(PyReadwriteArrayDyn<'py, u16>),
}

/// A per-voxel score sum argument of the fold: float64 or float32.
#[derive(FromPyObject)]
enum SumMap<'py> {
    F64(PyReadwriteArrayDyn<'py, f64>),
    F32(PyReadwriteArrayDyn<'py, f32>),
}

/// The arguments of [`fold_rotations_py`] that do not depend on the maps' types.
struct FoldArgs<'py> {
    scores: PyReadwriteArrayDyn<'py, f32>,
    corr: PyReadonlyArrayDyn<'py, f32>,
    first_index: i32,
    noise_scores: Option<PyReadwriteArrayDyn<'py, f32>>,
    noise_corr: Option<PyReadonlyArrayDyn<'py, f32>>,
    inverse_norm: Option<PyReadonlyArrayDyn<'py, f32>>,
    local_sum: Option<PyReadonlyArrayDyn<'py, f32>>,
    local_sq_sum: Option<PyReadonlyArrayDyn<'py, f32>>,
    mask_sums: Option<Vec<f32>>,
    denominator: Option<PyReadonlyArrayDyn<'py, f32>>,
    roi: Option<PyReadonlyArrayDyn<'py, u8>>,
    angle_high: Option<PyReadwriteArrayDyn<'py, u8>>,
    floor_rel: f32,
    row_len: usize,
    row_stride: usize,
    form: RowForm,
}

/// [`fold_rotations_py`] for one angle type `A` and one sum type `S`.
fn fold_impl<S: SumElement + Element, A: AngleIndex + Element>(
    py: Python<'_>,
    mut args: FoldArgs<'_>,
    mut angles: PyReadwriteArrayDyn<'_, A>,
    mut score_sum: Option<PyReadwriteArrayDyn<'_, S>>,
    mut score_sq_sum: Option<PyReadwriteArrayDyn<'_, S>>,
) -> PyResult<Vec<(f64, f64)>> {
    let (row_len, row_stride) = row_layout(args.scores.shape(), args.row_len, args.row_stride);
    let maps = RunningMapsMut {
        scores: contiguous(args.scores.as_slice_mut(), "scores")?,
        angles: contiguous(angles.as_slice_mut(), "angles")?,
        score_sum: match score_sum.as_mut() {
            Some(a) => Some(contiguous(a.as_slice_mut(), "score_sum")?),
            None => None,
        },
        score_sq_sum: match score_sq_sum.as_mut() {
            Some(a) => Some(contiguous(a.as_slice_mut(), "score_sq_sum")?),
            None => None,
        },
        roi: match args.roi.as_ref() {
            Some(a) => Some(contiguous_ro(a.as_slice(), "roi")?),
            None => None,
        },
        noise_scores: match args.noise_scores.as_mut() {
            Some(a) => Some(contiguous(a.as_slice_mut(), "noise_scores")?),
            None => None,
        },
        angle_high: match args.angle_high.as_mut() {
            Some(a) => Some(contiguous(a.as_slice_mut(), "angle_high")?),
            None => None,
        },
    };
    let corr = contiguous_ro(args.corr.as_slice(), "corr")?;
    let noise_corr = match args.noise_corr.as_ref() {
        Some(a) => Some(contiguous_ro(a.as_slice(), "noise_corr")?),
        None => None,
    };
    let norm = normalisation(
        args.inverse_norm.as_ref(),
        args.local_sum.as_ref(),
        args.local_sq_sum.as_ref(),
        args.mask_sums.as_deref(),
        args.denominator.as_ref(),
        args.floor_rel,
    )?;
    let first_index = args.first_index;
    let totals = py.detach(|| {
        kernels::fold_rotations(
            maps,
            corr,
            noise_corr,
            &norm,
            first_index,
            row_len,
            row_stride,
            args.form,
        )
    })?;
    Ok(totals
        .iter()
        .map(|t| (t.score_sum, t.score_sq_sum))
        .collect())
}

/// Fold a batch of raw correlations into the running maps (see
/// `kernels::fold_rotations`). `angles` is int32 or uint16; the per-voxel sums are
/// float64 or float32 (both the same). Give `inverse_norm` (spherical mask), all of
/// `local_sum`, `local_sq_sum`, `mask_sums` (rotated mask), or `denominator`.
/// `score_sum` / `score_sq_sum` may be `None` with a `roi` (uint8, one bit per voxel,
/// `numpy.packbits(roi, bitorder="little")`): their totals over it are returned, one
/// `(score_sum_total, score_sq_sum_total)` per rotation (0.0 for a sum kept per voxel).
/// `angle_high` (uint8, with a uint16 `angles`): bit planes of the index bits above 16
/// (see `kernels::RunningMapsMut::angle_high`). `half_spectrum`: `corr` and
/// `noise_corr` hold, per row, the half spectrum along x (complex64 viewed as float32,
/// `row_stride = 2 * (row_len // 2 + 1)`) whose unnormalised inverse real transform is
/// the correlation row: the last stage of the inverse FFT runs in the fold
/// (`tmfast::rowfft`).
#[pyfunction(name = "fold_rotations")]
#[pyo3(signature = (scores, angles, score_sum, score_sq_sum, corr, *, first_index,
                    noise_scores=None, noise_corr=None, inverse_norm=None, local_sum=None,
                    local_sq_sum=None, mask_sums=None, denominator=None, roi=None,
                    angle_high=None, floor_rel=1e-4, row_len=0, row_stride=0,
                    half_spectrum=false))]
#[allow(clippy::too_many_arguments)]
fn fold_rotations_py(
    py: Python<'_>,
    scores: PyReadwriteArrayDyn<'_, f32>,
    angles: AngleMap<'_>,
    score_sum: Option<SumMap<'_>>,
    score_sq_sum: Option<SumMap<'_>>,
    corr: PyReadonlyArrayDyn<'_, f32>,
    first_index: i32,
    noise_scores: Option<PyReadwriteArrayDyn<'_, f32>>,
    noise_corr: Option<PyReadonlyArrayDyn<'_, f32>>,
    inverse_norm: Option<PyReadonlyArrayDyn<'_, f32>>,
    local_sum: Option<PyReadonlyArrayDyn<'_, f32>>,
    local_sq_sum: Option<PyReadonlyArrayDyn<'_, f32>>,
    mask_sums: Option<Vec<f32>>,
    denominator: Option<PyReadonlyArrayDyn<'_, f32>>,
    roi: Option<PyReadonlyArrayDyn<'_, u8>>,
    angle_high: Option<PyReadwriteArrayDyn<'_, u8>>,
    floor_rel: f32,
    row_len: usize,
    row_stride: usize,
    half_spectrum: bool,
) -> PyResult<Vec<(f64, f64)>> {
    let args = FoldArgs {
        scores,
        corr,
        first_index,
        noise_scores,
        noise_corr,
        inverse_norm,
        local_sum,
        local_sq_sum,
        mask_sums,
        denominator,
        roi,
        angle_high,
        floor_rel,
        row_len,
        row_stride,
        form: row_form(half_spectrum),
    };
    // the sums' type: float64 unless one of them is float32 (then both must be)
    let (mut s64, mut s32) = (Vec::new(), Vec::new());
    for s in [score_sum, score_sq_sum] {
        match s {
            Some(SumMap::F64(a)) => {
                s64.push(Some(a));
                s32.push(None);
            }
            Some(SumMap::F32(a)) => {
                s64.push(None);
                s32.push(Some(a));
            }
            None => {
                s64.push(None);
                s32.push(None);
            }
        }
    }
    let wide = s64.iter().any(Option::is_some);
    if wide && s32.iter().any(Option::is_some) {
        return Err(PyValueError::new_err(
            "score_sum and score_sq_sum must have the same dtype (float64 or float32)",
        ));
    }
    let (mut s64, mut s32) = (s64.into_iter(), s32.into_iter());
    let mut next64 = || s64.next().flatten();
    let mut next32 = || s32.next().flatten();
    match (angles, wide) {
        (AngleMap::I32(a), true) => fold_impl::<f64, i32>(py, args, a, next64(), next64()),
        (AngleMap::I32(a), false) => fold_impl::<f32, i32>(py, args, a, next32(), next32()),
        (AngleMap::U16(a), true) => fold_impl::<f64, u16>(py, args, a, next64(), next64()),
        (AngleMap::U16(a), false) => fold_impl::<f32, u16>(py, args, a, next32(), next32()),
    }
}

/// Whether the CPU kernels run their AVX2+FMA copies (see `kernels::wide_simd`).
#[pyfunction(name = "wide_simd")]
fn wide_simd_py() -> bool {
    kernels::wide_simd()
}

/// Rotate `count` volumes' interleaved B-spline coefficients `(z, y, x, count)` by one
/// matrix into `out` (same shape); one volume is `count = 1`.
#[pyfunction(name = "rotate_bspline_many")]
fn rotate_bspline_many_py(
    py: Python<'_>,
    coeffs: PyReadonlyArrayDyn<'_, f32>,
    matrix: PyReadonlyArray2<'_, f64>,
    mut out: PyReadwriteArrayDyn<'_, f32>,
) -> PyResult<()> {
    let shape = coeffs.shape();
    if shape.len() != 4 || out.shape() != shape {
        return Err(PyValueError::new_err(format!(
            "interleaved coefficients {:?} must be 4-D (z, y, x, count) and match out {:?}",
            shape,
            out.shape()
        )));
    }
    let shape_zyx = [shape[0], shape[1], shape[2]];
    let count = shape[3];
    let mat = matrix_3x3(&matrix)?;
    let c = contiguous_ro(coeffs.as_slice(), "coeffs")?;
    let o = contiguous(out.as_slice_mut(), "out")?;
    py.detach(|| kernels::rotate_bspline_many(c, shape_zyx, count, &mat, o))?;
    Ok(())
}

/// A `(3, 3)` float64 array as a row-major matrix.
fn matrix_3x3(matrix: &PyReadonlyArray2<'_, f64>) -> PyResult<[[f64; 3]; 3]> {
    let m = matrix.as_array();
    if m.shape() != [3, 3] {
        return Err(PyValueError::new_err(format!(
            "rotation matrix must be 3x3, got {:?}",
            m.shape()
        )));
    }
    let mut mat = [[0f64; 3]; 3];
    for (i, row) in mat.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = m[[i, j]];
        }
    }
    Ok(mat)
}

/// `a <- conj(a) * b` over complex64 arrays passed as their float32 views
/// (`a.view(np.float32)`); `a` and `b` must be C-contiguous and the same size.
#[pyfunction(name = "conj_multiply")]
fn conj_multiply_py(
    py: Python<'_>,
    mut a: PyReadwriteArrayDyn<'_, f32>,
    b: PyReadonlyArrayDyn<'_, f32>,
) -> PyResult<()> {
    let x = contiguous(a.as_slice_mut(), "a")?;
    let y = contiguous_ro(b.as_slice(), "b")?;
    py.detach(|| kernels::conj_multiply(x, y))?;
    Ok(())
}

/// `out = M (T - mu) / sigma_T` for each box of `values` (`(B, n, n, n)` or one box)
/// under `masks` (one mask for all, or one per box); see `kernels::normalise_under_mask`.
#[pyfunction(name = "normalise_under_mask")]
fn normalise_under_mask_py(
    py: Python<'_>,
    values: PyReadonlyArrayDyn<'_, f32>,
    masks: PyReadonlyArrayDyn<'_, f32>,
    mut out: PyReadwriteArrayDyn<'_, f32>,
) -> PyResult<()> {
    if out.shape() != values.shape() {
        return Err(PyValueError::new_err("out must have the shape of values"));
    }
    let v = contiguous_ro(values.as_slice(), "values")?;
    let m = contiguous_ro(masks.as_slice(), "masks")?;
    let o = contiguous(out.as_slice_mut(), "out")?;
    if m.is_empty() || v.len() % m.len() != 0 {
        return Err(PyValueError::new_err(
            "masks must hold one box or one box per value box",
        ));
    }
    let per_box = m.len() == v.len();
    let boxes = values.shape().first().copied().unwrap_or(1).max(1);
    let n = if per_box { v.len() / boxes } else { m.len() };
    if n == 0 || v.len() % n != 0 {
        return Err(PyValueError::new_err(
            "values do not split into mask-sized boxes",
        ));
    }
    py.detach(|| {
        for (i, (vb, ob)) in v.chunks(n).zip(o.chunks_mut(n)).enumerate() {
            let mb = if per_box { &m[i * n..(i + 1) * n] } else { m };
            kernels::normalise_under_mask(vb, mb, ob)?;
        }
        Ok::<(), crate::Error>(())
    })?;
    Ok(())
}

/// Overwrite `local_sum` with the denominators `N_M sigma` (see
/// `kernels::local_denominators`); rows of `row_stride` values, `row_len` used;
/// `half_spectrum`: both inputs hold half-spectrum rows, as in `fold_rotations`.
#[pyfunction(name = "local_denominators")]
#[pyo3(signature = (local_sum, local_sq_sum, mask_sums, *, floor_rel=1e-4, row_len, row_stride,
                    half_spectrum=false))]
#[allow(clippy::too_many_arguments)]
fn local_denominators_py(
    py: Python<'_>,
    mut local_sum: PyReadwriteArrayDyn<'_, f32>,
    local_sq_sum: PyReadonlyArrayDyn<'_, f32>,
    mask_sums: Vec<f32>,
    floor_rel: f32,
    row_len: usize,
    row_stride: usize,
    half_spectrum: bool,
) -> PyResult<()> {
    let sv = contiguous(local_sum.as_slice_mut(), "local_sum")?;
    let sv2 = contiguous_ro(local_sq_sum.as_slice(), "local_sq_sum")?;
    let form = row_form(half_spectrum);
    py.detach(|| {
        kernels::local_denominators(sv, sv2, &mask_sums, floor_rel, row_len, row_stride, form)
    })?;
    Ok(())
}

/// Fold random-phase correlations into the noise maximum alone (see
/// `kernels::fold_noise`); normalised, and `half_spectrum` read, as `fold_rotations`.
#[pyfunction(name = "fold_noise_max")]
#[pyo3(signature = (noise_scores, noise_corr, *, inverse_norm=None, local_sum=None,
                    local_sq_sum=None, mask_sums=None, denominator=None, floor_rel=1e-4,
                    row_len=0, row_stride=0, half_spectrum=false))]
#[allow(clippy::too_many_arguments)]
fn fold_noise_max_py(
    py: Python<'_>,
    mut noise_scores: PyReadwriteArrayDyn<'_, f32>,
    noise_corr: PyReadonlyArrayDyn<'_, f32>,
    inverse_norm: Option<PyReadonlyArrayDyn<'_, f32>>,
    local_sum: Option<PyReadonlyArrayDyn<'_, f32>>,
    local_sq_sum: Option<PyReadonlyArrayDyn<'_, f32>>,
    mask_sums: Option<Vec<f32>>,
    denominator: Option<PyReadonlyArrayDyn<'_, f32>>,
    floor_rel: f32,
    row_len: usize,
    row_stride: usize,
    half_spectrum: bool,
) -> PyResult<()> {
    let (row_len, row_stride) = row_layout(noise_scores.shape(), row_len, row_stride);
    let norm = normalisation(
        inverse_norm.as_ref(),
        local_sum.as_ref(),
        local_sq_sum.as_ref(),
        mask_sums.as_deref(),
        denominator.as_ref(),
        floor_rel,
    )?;
    let nz = contiguous(noise_scores.as_slice_mut(), "noise_scores")?;
    let nc = contiguous_ro(noise_corr.as_slice(), "noise_corr")?;
    py.detach(|| kernels::fold_noise(nz, nc, &norm, row_len, row_stride, row_form(half_spectrum)))?;
    Ok(())
}

/// `out <- conj(a) * c`, then `a <- conj(a) * b`, over complex64 arrays passed as their
/// float32 views; all C-contiguous and the same size (see `kernels::conj_multiply_pair`).
#[pyfunction(name = "conj_multiply_pair")]
fn conj_multiply_pair_py(
    py: Python<'_>,
    mut a: PyReadwriteArrayDyn<'_, f32>,
    mut out: PyReadwriteArrayDyn<'_, f32>,
    b: PyReadonlyArrayDyn<'_, f32>,
    c: PyReadonlyArrayDyn<'_, f32>,
) -> PyResult<()> {
    let x = contiguous(a.as_slice_mut(), "a")?;
    let o = contiguous(out.as_slice_mut(), "out")?;
    let y = contiguous_ro(b.as_slice(), "b")?;
    let z = contiguous_ro(c.as_slice(), "c")?;
    py.detach(|| kernels::conj_multiply_pair(x, o, y, z))?;
    Ok(())
}

/// Zero a `(B, Z, Y, X)` float32 buffer except `[:, :n, :n, :]` (see
/// `kernels::zero_outside_corner`).
#[pyfunction(name = "zero_outside_corner")]
fn zero_outside_corner_py(
    py: Python<'_>,
    mut buf: PyReadwriteArrayDyn<'_, f32>,
    n: usize,
) -> PyResult<()> {
    let shape = buf.shape().to_vec();
    if shape.len() != 4 {
        return Err(PyValueError::new_err(format!(
            "buffer must be 4-D (B, Z, Y, X), got {shape:?}"
        )));
    }
    let b = contiguous(buf.as_slice_mut(), "buf")?;
    py.detach(|| kernels::zero_outside_corner(b, shape[1], shape[2], shape[3], n))?;
    Ok(())
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fold_rotations_py, m)?)?;
    m.add_function(wrap_pyfunction!(rotate_bspline_many_py, m)?)?;
    m.add_function(wrap_pyfunction!(wide_simd_py, m)?)?;
    m.add_function(wrap_pyfunction!(conj_multiply_py, m)?)?;
    m.add_function(wrap_pyfunction!(conj_multiply_pair_py, m)?)?;
    m.add_function(wrap_pyfunction!(zero_outside_corner_py, m)?)?;
    m.add_function(wrap_pyfunction!(local_denominators_py, m)?)?;
    m.add_function(wrap_pyfunction!(fold_noise_max_py, m)?)?;
    m.add_function(wrap_pyfunction!(normalise_under_mask_py, m)?)?;
    Ok(())
}
