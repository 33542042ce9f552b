"""Fourier-space frequency grids shared by the filter builders.

All grids use numpy's unshifted FFT layout (``np.fft.fftfreq``); with ``rfft=True``
the last (x) axis is halved as by ``np.fft.rfftn`` (``np.fft.rfftfreq``), giving shape
``(nz, ny, nx // 2 + 1)``. Frequencies are in cycles/voxel, so Nyquist is 0.5 on every
axis and non-cubic boxes are handled exactly (no per-axis renormalisation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tmfast.errors import ConfigError

__all__ = ["NYQUIST", "check_shape", "freq_axes", "freq_radius_sq", "out_shape"]

#: Nyquist frequency in cycles/voxel.
NYQUIST = 0.5

F32 = npt.NDArray[np.float32]


def check_shape(shape_zyx: Sequence[int]) -> tuple[int, int, int]:
    """Return ``shape_zyx`` as a tuple of three positive ints.

    Raises
    ------
    ConfigError
        If the shape is not three positive integers.
    """
    try:
        shape = tuple(int(s) for s in shape_zyx)
    except (TypeError, ValueError):
        raise ConfigError(
            f"filter shape {shape_zyx!r} is not a (z, y, x) tuple of integers"
        ) from None
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(
            f"filter shape {shape_zyx!r} must be three positive sizes (z, y, x)"
        )
    return shape  # type: ignore[return-value]


def out_shape(shape_zyx: tuple[int, int, int], rfft: bool) -> tuple[int, int, int]:
    """Shape of the Fourier array for a real-space ``shape_zyx``."""
    nz, ny, nx = shape_zyx
    return (nz, ny, nx // 2 + 1) if rfft else (nz, ny, nx)


def freq_axes(shape_zyx: tuple[int, int, int], rfft: bool) -> tuple[F32, F32, F32]:
    """Broadcastable frequency axes ``(kz, ky, kx)`` in cycles/voxel (float32).

    ``kz`` has shape ``(nz, 1, 1)``, ``ky`` ``(1, ny, 1)`` and ``kx`` ``(1, 1, nxf)``.
    """
    nz, ny, nx = shape_zyx
    kz = np.fft.fftfreq(nz).astype(np.float32)[:, None, None]
    ky = np.fft.fftfreq(ny).astype(np.float32)[None, :, None]
    fx = np.fft.rfftfreq(nx) if rfft else np.fft.fftfreq(nx)
    kx = fx.astype(np.float32)[None, None, :]
    return kz, ky, kx


def freq_radius_sq(shape_zyx: tuple[int, int, int], rfft: bool) -> F32:
    """Squared spatial frequency ``|k|^2`` in (cycles/voxel)^2, full Fourier shape."""
    kz, ky, kx = freq_axes(shape_zyx, rfft)
    out: F32 = (kz * kz + ky * ky) + kx * kx
    return out
