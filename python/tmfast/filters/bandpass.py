"""Gaussian low-, high- and band-pass filters in Fourier space (pytom-match-pick rule).

The low-pass is ``exp(-q^2 / (2 sigma^2))`` with its half maximum (HWHM) at the
requested resolution. pytom-match-pick states this as "HWHM at ``2 * voxel / res`` in
Nyquist units"; in cycles/voxel (Nyquist = 0.5) the same frequency is
``voxel / res``, so ``sigma = (voxel / res) / sqrt(2 ln 2)`` and the filter is exactly
0.5 at ``q = 1 / res`` (1/Å). The high-pass is ``1 -`` the same Gaussian built at its
own resolution (also 0.5 there), and the band-pass is the product. Frequencies are
physical (``np.fft.fftfreq``), so on non-cubic boxes the filter is isotropic in
1/Å, where pytom normalises each axis by its own size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tmfast.errors import ConfigError
from tmfast.filters._grid import check_shape, freq_radius_sq

__all__ = ["bandpass", "gaussian_sigma_cpv", "radial_bandpass"]


def _check_resolution(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(
            f"{name} {value!r} Å must be a positive resolution in Å (or omitted)"
        )
    return v


def gaussian_sigma_cpv(voxel_size_a: float, resolution_a: float) -> float:
    """Sigma (cycles/voxel) of the Gaussian that is 0.5 at ``resolution_a``.

    Parameters
    ----------
    voxel_size_a
        Voxel size in Å.
    resolution_a
        Resolution in Å at which the Gaussian falls to one half.

    Returns
    -------
    float
        ``(voxel_size_a / resolution_a) / sqrt(2 ln 2)``.
    """
    return (voxel_size_a / resolution_a) / math.sqrt(2.0 * math.log(2.0))


def bandpass(
    shape_zyx: Sequence[int],
    voxel_size_a: float,
    *,
    low_pass_a: float | None = None,
    high_pass_a: float | None = None,
    rfft: bool = True,
) -> npt.NDArray[np.float32]:
    """Build a Gaussian band-pass weight.

    Parameters
    ----------
    shape_zyx
        Real-space box ``(nz, ny, nx)`` in voxels.
    voxel_size_a
        Voxel size in Å.
    low_pass_a
        Low-pass resolution in Å (weight 0.5 there); ``None`` for no low-pass.
    high_pass_a
        High-pass resolution in Å (weight 0.5 there); ``None`` for no high-pass.
    rfft
        Return the rfft half-space ``(nz, ny, nx // 2 + 1)`` (default), otherwise the
        full ``(nz, ny, nx)`` grid; both unshifted (DC at index 0).

    Returns
    -------
    numpy.ndarray
        float32 weight in ``[0, 1]``; all ones when both resolutions are ``None``.

    Raises
    ------
    ConfigError
        If the voxel size or a resolution is not positive, or ``high_pass_a`` is not
        larger than ``low_pass_a``.
    """
    shape = check_shape(shape_zyx)
    vs = float(voxel_size_a)
    if not math.isfinite(vs) or vs <= 0:
        raise ConfigError(f"voxel size {voxel_size_a!r} Å must be positive")
    lp = _check_resolution("low-pass", low_pass_a)
    hp = _check_resolution("high-pass", high_pass_a)
    if lp is not None and hp is not None and hp <= lp:
        raise ConfigError(
            f"high-pass {hp} Å must be a coarser resolution than the low-pass {lp} Å "
            "(e.g. --low-pass 20 --high-pass 400)"
        )
    return radial_bandpass(freq_radius_sq(shape, rfft), vs, lp, hp)


def radial_bandpass(
    q2: npt.NDArray[np.float32],
    voxel_size_a: float,
    low_pass_a: float | None,
    high_pass_a: float | None,
) -> npt.NDArray[np.float32]:
    """Band-pass as a function of squared frequency (no input validation).

    Parameters
    ----------
    q2
        Squared spatial frequency in (cycles/voxel)^2, any shape, float32.
    voxel_size_a
        Voxel size in Å.
    low_pass_a, high_pass_a
        Resolutions in Å or ``None`` (validated by :func:`bandpass`).

    Returns
    -------
    numpy.ndarray
        float32 weight of the shape of ``q2``.
    """
    out = np.ones(q2.shape, dtype=np.float32)
    if low_pass_a is not None:
        s = gaussian_sigma_cpv(voxel_size_a, low_pass_a)
        out *= np.exp(q2 * np.float32(-0.5 / (s * s)))
    if high_pass_a is not None:
        s = gaussian_sigma_cpv(voxel_size_a, high_pass_a)
        out *= np.float32(1.0) - np.exp(q2 * np.float32(-0.5 / (s * s)))
    return out
