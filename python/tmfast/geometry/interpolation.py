"""Cubic B-spline rotation of template boxes: the reference every backend reproduces.

The sampling is defined exactly, so GPU kernels can implement the same maths:

Coefficients
    :func:`bspline_coefficients` returns ``c`` of the same shape as the volume ``v``
    such that, with **coefficients outside the box taken as 0**, the spline
    interpolates ``v`` exactly at every voxel of the box::

        sum_{k in box} c[k] * B(j - k) = v[j]      for every voxel j in the box

    where ``B(t) = b(t_z) b(t_y) b(t_x)`` is the tensor-product cubic B-spline
    (``b(0) = 4/6``, ``b(+-1) = 1/6``). Along each axis this is the tridiagonal
    Toeplitz system ``(1/6, 4/6, 1/6)`` with zero boundary, solved exactly (not
    scipy's mirror or "grid-constant" recursive prefilter, which are not exact under
    the zero-outside rule). Backends receive these coefficients from the host; they
    never prefilter on the device.

Sampling
    The value at a real position ``p`` (array index units, ``(z, y, x)``) is
    ``f(p) = sum_{k in box} c[k] B(p - k)``: the 4x4x4 neighbourhood
    ``floor(p) - 1 .. floor(p) + 2`` per axis, with every coefficient index outside
    ``[0, N)`` contributing 0 (a texture with *border* address mode and border 0).
    Positions further than two voxels outside the box therefore give exactly 0. This
    is ``scipy.ndimage.map_coordinates(c, p, order=3, mode="grid-constant", cval=0,
    prefilter=False)``.

Rotation (``docs/conventions.md``)
    Output voxel ``r = (x, y, z)`` holds ``f(M.T @ (r - c) + c)`` with ``c = N // 2``
    on each axis (or ``center_zyx`` reversed), ``M`` the active rotation on
    ``(x, y, z)`` vectors. Row ``i`` of ``M.T @ (r - c)`` is
    ``sum_j M[j, i] (r - c)_j``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.linalg import solve_banded

from tmfast import _rust
from tmfast.types import Volume

__all__ = [
    "bspline_coefficients",
    "rotate_bspline",
    "rotate_bspline_many",
    "rotate_volume",
]


def _prefilter_axis(a: npt.NDArray[np.float64], axis: int) -> npt.NDArray[np.float64]:
    n = a.shape[axis]
    if n == 1:
        return a * 1.5  # b(0) = 4/6 is the only term
    ab = np.empty((3, n))
    ab[0, :] = 1.0 / 6.0
    ab[1, :] = 4.0 / 6.0
    ab[2, :] = 1.0 / 6.0
    moved = np.moveaxis(a, axis, 0)
    flat = moved.reshape(n, -1)
    sol = solve_banded((1, 1), ab, flat, check_finite=False)
    return np.moveaxis(sol.reshape(moved.shape), 0, axis)


def bspline_coefficients(volume: npt.ArrayLike) -> Volume:
    """Return cubic B-spline coefficients that interpolate ``volume`` with 0 outside.

    Parameters
    ----------
    volume
        ``(z, y, x)`` real array (any 1-3 dimensional shape works).

    Returns
    -------
    numpy.ndarray
        float32 coefficients of the same shape; see the module docstring for the
        exact definition and sampling rule.

    Raises
    ------
    ValueError
        If ``volume`` is empty or not finite.
    """
    v = np.asarray(volume, dtype=np.float64)
    if v.size == 0:
        raise ValueError("cannot prefilter an empty volume")
    if not np.isfinite(v).all():
        raise ValueError("volume contains NaN or inf; cannot prefilter")
    out = v
    for axis in range(v.ndim):
        out = _prefilter_axis(out, axis)
    return np.ascontiguousarray(out, dtype=np.float32)


def sample_positions_zyx(
    shape_zyx: tuple[int, int, int],
    matrix: npt.ArrayLike,
    *,
    center_zyx: tuple[float, float, float] | None = None,
    z_range: tuple[int, int] | None = None,
) -> npt.NDArray[np.float64]:
    """Return the ``(3, z, y, x)`` sampling positions (zyx index units) of a rotation.

    Parameters
    ----------
    shape_zyx
        Output shape.
    matrix
        ``(3, 3)`` active rotation acting on ``(x, y, z)`` vectors.
    center_zyx
        Rotation centre in ``(z, y, x)`` voxels; default ``N // 2`` per axis.
    z_range
        Only output slices ``z0 .. z1 - 1`` (default all).

    Returns
    -------
    numpy.ndarray
        float64 positions ``M.T @ (r - c) + c`` for every output voxel, ordered
        ``(z, y, x)`` along the first axis as ``map_coordinates`` expects.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"rotation matrix must be 3x3, got {m.shape}")
    if center_zyx is None:
        center_zyx = tuple(float(s // 2) for s in shape_zyx)  # type: ignore[assignment]
    assert center_zyx is not None
    cz, cy, cx = (float(v) for v in center_zyx)
    z, y, x = (np.arange(s, dtype=np.float64) for s in shape_zyx)
    if z_range is not None:
        z = z[z_range[0] : z_range[1]]
    dx = x[None, None, :] - cx
    dy = y[None, :, None] - cy
    dz = z[:, None, None] - cz
    # p_i = sum_j M[j, i] d_j  (i, j over x, y, z = 0, 1, 2)
    px = m[0, 0] * dx + m[1, 0] * dy + m[2, 0] * dz + cx
    py = m[0, 1] * dx + m[1, 1] * dy + m[2, 1] * dz + cy
    pz = m[0, 2] * dx + m[1, 2] * dy + m[2, 2] * dz + cz
    return np.stack(np.broadcast_arrays(pz, py, px))


def rotate_volume(
    coeffs: npt.ArrayLike,
    matrix: npt.ArrayLike,
    *,
    center_zyx: tuple[float, float, float] | None = None,
    out: Volume | None = None,
    z_range: tuple[int, int] | None = None,
) -> Volume:
    """Rotate a volume given its B-spline coefficients: ``out(r) = f(M.T (r - c) + c)``.

    Parameters
    ----------
    coeffs
        ``(z, y, x)`` coefficients from :func:`bspline_coefficients`.
    matrix
        ``(3, 3)`` active rotation on ``(x, y, z)`` vectors (``docs/conventions.md``).
    center_zyx
        Rotation centre in ``(z, y, x)`` voxels; default ``N // 2`` on each axis.
    out
        Optional float32 array of the same shape to write into.
    z_range
        Compute only output slices ``z0 .. z1 - 1`` (written into ``out``); lets
        callers split one rotation over threads.

    Returns
    -------
    numpy.ndarray
        ``(z, y, x)`` float32 rotated volume (``out`` if given).

    Raises
    ------
    ValueError
        If ``coeffs`` is not 3-D, the matrix is not 3x3 or ``out`` has the wrong shape.
    """
    c = np.asarray(coeffs, dtype=np.float32)
    if c.ndim != 3:
        raise ValueError(f"coefficients must be 3-D (z, y, x), got shape {c.shape}")
    if out is None:
        out = np.empty(c.shape, dtype=np.float32)
    elif out.shape != c.shape or out.dtype != np.float32:
        raise ValueError("out must be a float32 array of the coefficients' shape")
    pos = sample_positions_zyx(
        c.shape,  # type: ignore[arg-type]
        matrix,
        center_zyx=center_zyx,
        z_range=z_range,
    )
    target = out if z_range is None else out[z_range[0] : z_range[1]]
    ndimage.map_coordinates(
        c,
        pos,
        output=target,
        order=3,
        mode="grid-constant",
        cval=0.0,
        prefilter=False,
    )
    return out


def rotate_bspline(
    coeffs: npt.ArrayLike, matrix: npt.ArrayLike, *, out: Volume | None = None
) -> Volume:
    """:func:`rotate_volume` about ``N // 2`` in Rust (multi-threaded, same maths).

    Samples exactly as the module docstring defines (float64 positions and weights,
    float32 result); agrees with the scipy path of :func:`rotate_volume` to float64
    rounding before the final float32 cast.

    Parameters
    ----------
    coeffs
        ``(z, y, x)`` coefficients from :func:`bspline_coefficients`.
    matrix
        ``(3, 3)`` active rotation on ``(x, y, z)`` vectors.
    out
        Optional C-contiguous float32 array of the same shape to write into.

    Returns
    -------
    numpy.ndarray
        ``(z, y, x)`` float32 rotated volume (``out`` if given).

    Raises
    ------
    ValueError
        If ``coeffs`` is not 3-D, the matrix is not 3x3 or ``out`` does not fit.
    """
    c = np.ascontiguousarray(coeffs, dtype=np.float32)
    if c.ndim != 3:
        raise ValueError(f"coefficients must be 3-D (z, y, x), got shape {c.shape}")
    # the one-volume case of rotate_bspline_many: a trailing axis of 1 (views; it
    # checks the matrix and ``out``)
    many = rotate_bspline_many(
        c[..., None], matrix, out=None if out is None else out[..., None]
    )
    return many[..., 0] if out is None else out


def rotate_bspline_many(
    coeffs: npt.ArrayLike, matrix: npt.ArrayLike, *, out: np.ndarray | None = None
) -> np.ndarray:
    """:func:`rotate_bspline` of several volumes by one matrix at once (Rust).

    The sample positions and spline weights are computed once for all volumes and
    each tap reads all their coefficients from one place, so a template rotated with
    its mask and its noise template costs little more than the template alone. Each
    volume's result is exactly :func:`rotate_bspline`'s.

    Parameters
    ----------
    coeffs
        ``(z, y, x, count)`` coefficients of ``count`` volumes (1 to 4), interleaved:
        ``np.stack([bspline_coefficients(v) for v in volumes], axis=-1)``.
    matrix
        ``(3, 3)`` active rotation on ``(x, y, z)`` vectors.
    out
        Optional C-contiguous float32 array of ``coeffs``' shape to write into.

    Returns
    -------
    numpy.ndarray
        ``(z, y, x, count)`` float32: ``out[..., k]`` is volume ``k`` rotated.

    Raises
    ------
    ValueError
        If ``coeffs`` is not 4-D with 1 to 4 volumes, the matrix is not 3x3 or
        ``out`` does not fit.
    """
    c = np.ascontiguousarray(coeffs, dtype=np.float32)
    if c.ndim != 4 or not 1 <= c.shape[3] <= 4:
        raise ValueError(
            f"coefficients must be (z, y, x, count) with 1 to 4 volumes, got {c.shape}"
        )
    m = np.ascontiguousarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"rotation matrix must be 3x3, got {m.shape}")
    if out is None:
        out = np.empty(c.shape, dtype=np.float32)
    elif out.shape != c.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(
            "out must be a C-contiguous float32 array of the coefficients' shape"
        )
    _rust.rotate_bspline_many(c, m, out)
    return out
