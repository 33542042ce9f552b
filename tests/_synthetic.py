"""Synthetic ground truth for matching tests: plant rotated templates in noise.

Reusable by any test: ``plant(shape_zyx, template, positions_zyx, matrices, ...)``
pastes ``template`` rotated by each matrix (cubic B-spline, docs/conventions.md) with
its box centre ``N // 2`` on each position, optionally adding seeded Gaussian noise.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import mrcfile
import numpy as np
import numpy.typing as npt
from tmfast.geometry.interpolation import bspline_coefficients, rotate_volume

SHARED = Path(__file__).resolve().parents[2] / "shared"


def plant(
    shape_zyx: tuple[int, int, int],
    template: npt.ArrayLike,
    positions_zyx: Sequence[Sequence[int]],
    matrices: npt.ArrayLike,
    *,
    noise_sigma: float = 0.0,
    seed: int = 0,
    amplitude: float = 1.0,
    background: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Return a volume with rotated copies of ``template`` centred on ``positions_zyx``.

    Copies are clipped at the volume border. ``matrices`` is ``(P, 3, 3)`` active
    rotations on ``(x, y, z)``; noise is ``N(0, noise_sigma²)`` from
    ``numpy.random.default_rng(seed)``, added after planting.
    """
    t = np.asarray(template, dtype=np.float32)
    n = t.shape[0]
    c = n // 2
    vol = (
        np.zeros(shape_zyx, np.float32)
        if background is None
        else np.array(background, dtype=np.float32)
    )
    coeffs = bspline_coefficients(t)
    mats = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    for pos, m in zip(positions_zyx, mats, strict=True):
        rot = rotate_volume(coeffs, m) * np.float32(amplitude)
        src, dst = [], []
        for p, size in zip(pos, shape_zyx, strict=True):
            a = int(p) - c
            lo, hi = max(a, 0), min(a + n, size)
            src.append(slice(lo - a, hi - a))
            dst.append(slice(lo, hi))
        vol[tuple(dst)] += rot[tuple(src)]
    if noise_sigma > 0:
        vol += (
            np.random.default_rng(seed)
            .normal(0, noise_sigma, shape_zyx)
            .astype(np.float32)
        )
    return vol


def write_mrc(path: Path, data: npt.ArrayLike, voxel_size_a: float = 1.0) -> Path:
    """Write a float32 MRC with mrcfile (independent of tmfast's writer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN test inputs
        with mrcfile.new(path, overwrite=True) as m:
            m.set_data(np.asarray(data, dtype=np.float32))
            m.voxel_size = voxel_size_a
    return path


def sphere_mask(n: int, radius: float) -> npt.NDArray[np.float32]:
    """Binary sphere of ``radius`` voxels about ``N // 2``."""
    z, y, x = np.indices((n, n, n)) - n // 2
    return (np.sqrt(x**2 + y**2 + z**2) <= radius).astype(np.float32)


def write_angle_file(path: Path, angles_zxz_rad: npt.ArrayLike) -> Path:
    """Write a ZXZ-radian rotation list (3 per line)."""
    a = np.atleast_2d(np.asarray(angles_zxz_rad, dtype=np.float64))
    path.write_text("".join(f"{p!r} {t!r} {s!r}\n" for p, t, s in a.tolist()))
    return path
