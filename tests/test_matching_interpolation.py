"""Cubic B-spline rotation (geometry.interpolation) against independent oracles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation
from tmfast.geometry.interpolation import (
    bspline_coefficients,
    rotate_bspline,
    rotate_bspline_many,
    rotate_volume,
)
from tmfast.geometry.rotations import zxz_to_matrices


def _blob(
    shape: tuple[int, int, int], center_zyx: np.ndarray, sigma: float
) -> np.ndarray:
    z, y, x = np.indices(shape, dtype=np.float64)
    d2 = (z - center_zyx[0]) ** 2 + (y - center_zyx[1]) ** 2 + (x - center_zyx[2]) ** 2
    return np.exp(-d2 / (2 * sigma**2))


def _asymmetric(n: int) -> np.ndarray:
    """Three blobs of different sizes along x, y, z from the centre (no symmetry)."""
    c = np.full(3, n // 2, dtype=np.float64)
    v = _blob((n,) * 3, c, 1.5)
    v += 0.8 * _blob((n,) * 3, c + np.array([0, 0, 5.0]), 1.2)  # +x
    v += 0.6 * _blob((n,) * 3, c + np.array([0, 3.0, 0]), 1.0)  # +y
    v += 0.4 * _blob((n,) * 3, c + np.array([2.0, 0, 0]), 1.0)  # +z
    return v.astype(np.float32)


def _centroid_zyx(v: np.ndarray) -> np.ndarray:
    w = np.clip(v, 0, None).astype(np.float64)
    idx = np.indices(v.shape, dtype=np.float64)
    return np.array([(idx[i] * w).sum() / w.sum() for i in range(3)])


def test_coefficients_interpolate_exactly_at_voxels() -> None:
    rng = np.random.default_rng(1)
    v = rng.standard_normal((7, 8, 9)).astype(np.float32)
    c = bspline_coefficients(v)
    grid = np.indices(v.shape).astype(np.float64)
    back = ndimage.map_coordinates(
        c, grid, order=3, mode="grid-constant", cval=0.0, prefilter=False
    )
    np.testing.assert_allclose(back, v, atol=1e-5)
    np.testing.assert_allclose(rotate_volume(c, np.eye(3)), v, atol=1e-5)


@pytest.mark.parametrize("n", [21, 22])
def test_marker_moves_where_matrix_says(n: int) -> None:
    center = np.full(3, n // 2, dtype=np.float64)
    offset_xyz = np.array([5.0, -2.0, 3.0])
    marker = _blob((n,) * 3, center + offset_xyz[::-1], 1.3).astype(np.float32)
    coeffs = bspline_coefficients(marker)
    for angles in ([0.3, 0.0, 0.0], [0.0, 0.7, 0.0], [1.1, 0.6, -0.4], [2.0, 2.5, 1.0]):
        m = zxz_to_matrices(angles)[0]
        np.testing.assert_allclose(
            m, Rotation.from_euler("zxz", angles).as_matrix(), atol=1e-12
        )
        rotated = rotate_volume(coeffs, m)
        expected_zyx = (center[::-1] + m @ offset_xyz)[::-1]
        np.testing.assert_allclose(_centroid_zyx(rotated), expected_zyx, atol=0.05)


def test_four_quarter_turns_return_input() -> None:
    n = 19
    v = _asymmetric(n)
    quarter = zxz_to_matrices([np.pi / 2, 0.0, 0.0])[0]
    out = v
    for _ in range(4):
        out = rotate_volume(bspline_coefficients(out), quarter)
    np.testing.assert_allclose(out, v, atol=1e-5)
    # One quarter turn about z is an exact voxel permutation: (x, y) -> (-y, x).
    once = rotate_volume(bspline_coefficients(v), quarter)
    c = n // 2
    expected = np.zeros_like(v)
    for y in range(n):
        for x in range(n):
            # out(r) = v(M.T (r - c) + c); M.T (dx, dy) = (dy, -dx)
            sx, sy = (y - c) + c, -(x - c) + c
            if 0 <= sx < n and 0 <= sy < n:
                expected[:, y, x] = v[:, sy, sx]
    np.testing.assert_allclose(once, expected, atol=1e-5)


def test_agrees_with_scipy_affine_transform() -> None:
    n = 25
    v = _asymmetric(n)
    coeffs = bspline_coefficients(v)
    m = zxz_to_matrices([0.4, 1.0, 2.2])[0]
    mine = rotate_volume(coeffs, m)
    # Independent: affine_transform in (z, y, x) index space. p_zyx = A (o - c) + c
    # with A = P M.T P (P reverses the axis order).
    a = m.T[::-1, ::-1]
    c = np.full(3, n // 2, dtype=np.float64)
    ref = ndimage.affine_transform(
        coeffs,
        a,
        offset=c - a @ c,
        order=3,
        mode="grid-constant",
        cval=0.0,
        prefilter=False,
    )
    np.testing.assert_allclose(mine, ref, atol=1e-6)
    # And scipy's own prefiltered spline of the zero-extended volume: the object sits
    # well inside the box, so the boundary treatments agree closely.
    ref2 = ndimage.affine_transform(
        v.astype(np.float64),
        a,
        offset=c - a @ c,
        order=3,
        mode="grid-constant",
        cval=0.0,
        prefilter=True,
    )
    np.testing.assert_allclose(mine, ref2, atol=2e-3 * float(np.abs(v).max()))


def test_center_override_and_out() -> None:
    n = 15
    v = _asymmetric(n)
    coeffs = bspline_coefficients(v)
    out = np.empty_like(v)
    res = rotate_volume(coeffs, np.eye(3), center_zyx=(3.0, 4.0, 5.0), out=out)
    assert res is out
    np.testing.assert_allclose(out, v, atol=1e-5)
    with pytest.raises(ValueError):
        rotate_volume(coeffs, np.eye(2))
    with pytest.raises(ValueError):
        bspline_coefficients(np.full((3, 3, 3), np.nan))


@pytest.mark.parametrize("shape", [(13, 13, 13), (16, 16, 16), (7, 9, 8)])
def test_rust_rotation_equals_scipy_path(shape: tuple[int, int, int]) -> None:
    """rotate_bspline (Rust) against map_coordinates (rotate_volume) on random
    coefficients: every sample, including the border and outside-box taps."""
    rng = np.random.default_rng(sum(shape))
    coeffs = bspline_coefficients(rng.standard_normal(shape))
    angles = rng.uniform(0, 2 * np.pi, size=(6, 3))
    angles[0] = 0.0  # identity: exact interpolation at the voxels
    for m in zxz_to_matrices(angles):
        ref = rotate_volume(coeffs, m)
        got = rotate_bspline(coeffs, m)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    # writes into (and returns) a given output
    out = np.full(shape, np.nan, np.float32)
    assert rotate_bspline(coeffs, np.eye(3), out=out) is out
    ref = rotate_volume(coeffs, np.eye(3))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_rotating_several_volumes_at_once_equals_one_at_a_time(count: int) -> None:
    """rotate_bspline_many: each interleaved volume bit-identical to rotate_bspline
    (and so to the scipy path above), on a box whose rotation reaches the border."""
    rng = np.random.default_rng(count)
    shape = (11, 12, 10)
    coeffs = [bspline_coefficients(rng.standard_normal(shape)) for _ in range(count)]
    stacked = np.stack(coeffs, axis=-1)
    for m in zxz_to_matrices(rng.uniform(0, 2 * np.pi, size=(4, 3))):
        got = rotate_bspline_many(stacked, m)
        assert got.shape == (*shape, count)
        for k in range(count):
            np.testing.assert_array_equal(got[..., k], rotate_bspline(coeffs[k], m))
    out = np.full((*shape, count), np.nan, np.float32)
    assert rotate_bspline_many(stacked, np.eye(3), out=out) is out
    with pytest.raises(ValueError, match="1 to 4"):
        rotate_bspline_many(np.zeros((5, 5, 5, 5), np.float32), np.eye(3))
    with pytest.raises(ValueError, match="out must be"):
        rotate_bspline_many(stacked, np.eye(3), out=out[:-1])


def test_rust_rotation_bad_input() -> None:
    c = np.zeros((5, 5, 5), np.float32)
    with pytest.raises(ValueError, match="3x3"):
        rotate_bspline(c, np.eye(2))
    with pytest.raises(ValueError, match="3-D"):
        rotate_bspline(np.zeros((5, 5)), np.eye(3))
    with pytest.raises(ValueError, match="out must be"):
        rotate_bspline(c, np.eye(3), out=np.zeros((5, 5, 4), np.float32))
