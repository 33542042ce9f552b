//! Python bindings for the formats area (STAR writer/reader, IMOD writer).
//!
//! Blocks cross the boundary as `(name, is_loop, [(label, values)])` lists built by
//! the typed wrappers in `tmfast.io.star`: loop columns are 1-D C-contiguous float32,
//! float64 or int64 arrays, `(n, width)` uint32 arrays of UTF-32 code points (a numpy
//! `<U{width}` array viewed as uint32), or lists of str; key-value values are int,
//! float or str. String columns read back as such uint32 arrays.
//! Writing reads the caller's arrays, so it holds the GIL; reading parses owned data
//! with the GIL released.

use std::path::PathBuf;

use ndarray::Array2;
use numpy::{IntoPyArray, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::formats::imod::{write_imod, ImodModel, ImodObject};
use crate::formats::star::{read_star_file_as, write_star, Block, Column, ColumnData, Value};
use crate::formats::write_plain;
use crate::Error;

/// A block read back: `(name, is_loop, [(label, column array)])`.
type ReadBlockPy = (String, bool, Vec<(String, Py<PyAny>)>);

type PyBlock<'py> = (String, bool, Vec<(String, Bound<'py, PyAny>)>);

enum Holder<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    F64(PyReadonlyArray1<'py, f64>),
    I64(PyReadonlyArray1<'py, i64>),
    Str(Vec<String>),
    Utf32(PyReadonlyArray2<'py, u32>),
}

enum Held<'py> {
    Loop(String, Vec<(String, Holder<'py>)>),
    Pairs(String, Vec<(String, Value)>),
}

fn hold<'py>(blocks: Vec<PyBlock<'py>>) -> PyResult<Vec<Held<'py>>> {
    let mut out = Vec::with_capacity(blocks.len());
    for (name, is_loop, cols) in blocks {
        if is_loop {
            let mut held = Vec::with_capacity(cols.len());
            for (label, obj) in cols {
                let h = if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, f32>>() {
                    Holder::F32(a)
                } else if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, f64>>() {
                    Holder::F64(a)
                } else if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, i64>>() {
                    Holder::I64(a)
                } else if let Ok(a) = obj.extract::<PyReadonlyArray2<'py, u32>>() {
                    Holder::Utf32(a)
                } else if let Ok(v) = obj.extract::<Vec<String>>() {
                    Holder::Str(v)
                } else {
                    return Err(Error::invalid(format!(
                        "STAR column {label}: expected a 1-D float32/float64/int64 array or a list of str"
                    ))
                    .into());
                };
                held.push((label, h));
            }
            out.push(Held::Loop(name, held));
        } else {
            let mut items = Vec::with_capacity(cols.len());
            for (label, obj) in cols {
                let v = if let Ok(i) = obj.extract::<i64>() {
                    Value::Int(i)
                } else if let Ok(f) = obj.extract::<f64>() {
                    Value::Float(f)
                } else if let Ok(s) = obj.extract::<String>() {
                    Value::Str(s)
                } else {
                    return Err(Error::invalid(format!(
                        "STAR key {label}: expected an int, float or str value"
                    ))
                    .into());
                };
                items.push((label, v));
            }
            out.push(Held::Pairs(name, items));
        }
    }
    Ok(out)
}

fn as_blocks<'a>(held: &'a [Held<'_>]) -> PyResult<Vec<Block<'a>>> {
    let not_contig = |l: &str| Error::invalid(format!("STAR column {l} is not C-contiguous"));
    held.iter()
        .map(|h| -> PyResult<Block<'a>> {
            Ok(match h {
                Held::Loop(name, cols) => Block::Loop {
                    name: name.clone(),
                    columns: cols
                        .iter()
                        .map(|(l, c)| -> PyResult<(String, Column<'a>)> {
                            let col = match c {
                                Holder::F32(a) => {
                                    Column::F32(a.as_slice().map_err(|_| not_contig(l))?)
                                }
                                Holder::F64(a) => {
                                    Column::F64(a.as_slice().map_err(|_| not_contig(l))?)
                                }
                                Holder::I64(a) => {
                                    Column::I64(a.as_slice().map_err(|_| not_contig(l))?)
                                }
                                Holder::Str(v) => Column::Str(v),
                                Holder::Utf32(a) => Column::Utf32 {
                                    data: a.as_slice().map_err(|_| not_contig(l))?,
                                    width: a.as_array().ncols().max(1),
                                },
                            };
                            Ok((l.clone(), col))
                        })
                        .collect::<PyResult<_>>()?,
                },
                Held::Pairs(name, items) => Block::Pairs {
                    name: name.clone(),
                    items: items.clone(),
                },
            })
        })
        .collect()
}

/// Format blocks as STAR text.
#[pyfunction(name = "star_to_string")]
fn star_to_string_py(blocks: Vec<PyBlock<'_>>) -> PyResult<String> {
    let held = hold(blocks)?;
    let blocks = as_blocks(&held)?;
    let mut buf = Vec::new();
    write_star(&mut buf, &blocks)?;
    String::from_utf8(buf).map_err(|e| Error::invalid(e.to_string()).into())
}

/// Write blocks as STAR text to `path` (created or truncated; the Python wrapper
/// passes a temporary path and renames it).
#[pyfunction(name = "write_star")]
fn write_star_py(path: PathBuf, blocks: Vec<PyBlock<'_>>) -> PyResult<()> {
    let held = hold(blocks)?;
    let blocks = as_blocks(&held)?;
    write_plain(&path, |w| write_star(w, &blocks))?;
    Ok(())
}

/// Read a STAR file: `[(name, is_loop, [(label, int64 array | float64 array | list[str])])]`;
/// with `as_text` every column holds the values as written (UTF-32 code points).
#[pyfunction(name = "read_star")]
#[pyo3(signature = (path, *, as_text = false))]
fn read_star_py(py: Python<'_>, path: PathBuf, as_text: bool) -> PyResult<Vec<ReadBlockPy>> {
    let blocks = py.detach(|| read_star_file_as(&path, as_text))?;
    let mut out = Vec::with_capacity(blocks.len());
    for b in blocks {
        let mut cols = Vec::with_capacity(b.columns.len());
        for (label, data) in b.columns {
            let obj: Py<PyAny> = match data {
                ColumnData::I64(v) => v.into_pyarray(py).into_any().unbind(),
                ColumnData::F64(v) => v.into_pyarray(py).into_any().unbind(),
                ColumnData::Str(v) => utf32(&v).into_pyarray(py).into_any().unbind(),
            };
            cols.push((label, obj));
        }
        out.push((b.name, b.is_loop, cols));
    }
    Ok(out)
}

/// Strings as a `(n, width)` array of UTF-32 code points (numpy's `<U{width}` layout,
/// NUL padded; `width >= 1`), so Python builds a str array without per-item objects.
fn utf32(values: &[String]) -> Array2<u32> {
    let width = values
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut out = Array2::<u32>::zeros((values.len(), width));
    for (mut row, s) in out.rows_mut().into_iter().zip(values) {
        for (slot, ch) in row.iter_mut().zip(s.chars()) {
            *slot = u32::from(ch);
        }
    }
    out
}

type PyImodObject<'py> = (
    String,
    (f32, f32, f32),
    i32,
    PyReadonlyArray2<'py, f32>,
    Option<PyReadonlyArray1<'py, f32>>,
);

/// Write an IMOD model of scattered-point objects to `path` (created or truncated).
/// Each object is `(name, (r, g, b), sphere_radius_px, points_xyz (N, 3) float32,
/// radii_px (N,) float32 or None)`.
#[pyfunction(name = "write_imod")]
#[pyo3(signature = (path, objects, *, name, dims_xyz, pixel_size_a))]
fn write_imod_py(
    path: PathBuf,
    objects: Vec<PyImodObject<'_>>,
    name: String,
    dims_xyz: [i32; 3],
    pixel_size_a: f32,
) -> PyResult<()> {
    let mut objs = Vec::with_capacity(objects.len());
    for (oname, (r, g, b), radius, points, radii) in objects {
        let p = points.as_array();
        if p.ncols() != 3 {
            return Err(
                Error::invalid(format!("object {oname}: points must have shape (N, 3)")).into(),
            );
        }
        objs.push(ImodObject {
            name: oname,
            color_rgb: [r, g, b],
            sphere_radius_px: radius,
            points_xyz: p
                .rows()
                .into_iter()
                .map(|row| [row[0], row[1], row[2]])
                .collect(),
            point_radii_px: radii.map(|a| a.as_array().to_vec()),
        });
    }
    let model = ImodModel {
        name,
        dims_xyz,
        pixel_size_a,
        objects: objs,
    };
    write_plain(&path, |w| write_imod(w, &model))?;
    Ok(())
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(star_to_string_py, m)?)?;
    m.add_function(wrap_pyfunction!(write_star_py, m)?)?;
    m.add_function(wrap_pyfunction!(read_star_py, m)?)?;
    m.add_function(wrap_pyfunction!(write_imod_py, m)?)?;
    Ok(())
}
