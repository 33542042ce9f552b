"""Spectral whitening estimated from the tomogram (pytom-match-pick 0.14 method).

The noise power spectrum is estimated on overlapping cubic patches (50 % overlap,
3D Hann window, mean subtracted), the highest-variance patches (gold, carbon, edges)
are rejected, the periodograms are averaged and then radially averaged, optionally
only over the Fourier voxels the tilt geometry covers (``coverage_weight > 0.05``, DC
excluded). The whitening profile is ``1 / sqrt(PSD)`` with DC 0, a cosine taper from
0.9 to 1.0 Nyquist and a maximum of 1. Profiles are sampled at
``patch_size // 2 + 1`` radii evenly spaced from 0 to Nyquist, and
:func:`profile_to_weight` interpolates them onto any box, so the estimation box and
the matching box are independent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
from scipy import special

from tmfast.errors import ConfigError
from tmfast.filters._grid import NYQUIST, check_shape, freq_radius_sq

__all__ = [
    "estimate_whitening_profile",
    "profile_radii_nyquist",
    "profile_to_weight",
    "radial_power_profile",
]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


def profile_radii_nyquist(n_samples: int) -> npt.NDArray[np.float64]:
    """Radii (Nyquist units, 0 to 1) of the samples of a whitening profile."""
    return np.linspace(0.0, 1.0, int(n_samples))


def _starts(n: int, length: int, step: int) -> list[int]:
    s = list(range(0, n - length + 1, step))
    if s[-1] != n - length:
        s.append(n - length)
    return s


def _patches(
    shape: tuple[int, ...], length: int, step: int
) -> Iterator[tuple[slice, slice, slice]]:
    for z in _starts(shape[0], length, step):
        for y in _starts(shape[1], length, step):
            for x in _starts(shape[2], length, step):
                yield (slice(z, z + length), slice(y, y + length), slice(x, x + length))


def _hann3d(length: int) -> F32:
    w = np.hanning(length + 2)[1:-1].astype(np.float32)  # no exact zeros
    out: F32 = w[:, None, None] * w[None, :, None] * w[None, None, :]
    return out


def _shell_index(length: int) -> npt.NDArray[np.int64]:
    r = np.sqrt(freq_radius_sq((length, length, length), True)) * length
    idx: npt.NDArray[np.int64] = np.rint(r).astype(np.int64)
    return idx


def radial_power_profile(
    power: npt.NDArray[np.floating],
    *,
    include: npt.NDArray[np.bool_] | None = None,
    statistic: str = "mean",
    dof: int = 1,
) -> npt.NDArray[np.float64]:
    """Radially average an rfft-layout power spectrum of a cubic box.

    Parameters
    ----------
    power
        ``(n, n, n // 2 + 1)`` power spectrum (rfft layout, DC at index 0).
    include
        Boolean array of the same shape: voxels to use (``None``: all).
    statistic
        ``"mean"`` or ``"median"``. The median is bias-corrected to the mean of a
        Gamma(dof, 1/dof) variable, the distribution of an average of ``dof``
        periodograms (pytom-match-pick's robust estimate).
    dof
        Number of periodograms averaged into ``power`` (for the median correction).

    Returns
    -------
    numpy.ndarray
        ``n // 2 + 1`` shell values at integer radii 0..n//2 (Fourier voxels); shells
        without included voxels are linearly interpolated from their neighbours.

    Raises
    ------
    ConfigError
        If ``statistic`` is unknown or no voxel is included.
    """
    length = power.shape[0]
    n_shells = length // 2 + 1
    shells = _shell_index(length)
    keep = shells < n_shells
    if include is not None:
        keep &= include
    s = shells[keep]
    v = np.asarray(power, dtype=np.float64)[keep]
    if s.size == 0:
        raise ConfigError("whitening: no Fourier voxels to average (empty coverage)")
    if statistic == "mean":
        total = np.bincount(s, weights=v, minlength=n_shells)
        count = np.bincount(s, minlength=n_shells)
        have = count > 0
        prof = np.zeros(n_shells)
        prof[have] = total[have] / count[have]
    elif statistic == "median":
        order = np.lexsort((v, s))
        s, v = s[order], v[order]
        have = np.zeros(n_shells, dtype=bool)
        prof = np.zeros(n_shells)
        bounds = np.searchsorted(s, np.arange(n_shells + 1))
        for j in range(n_shells):
            a, b = bounds[j], bounds[j + 1]
            if b > a:
                have[j] = True
                prof[j] = np.median(v[a:b])
        # median of Gamma(dof, scale 1/dof) -> its mean (1)
        prof /= float(special.gammaincinv(max(int(dof), 1), 0.5)) / max(int(dof), 1)
    else:
        raise ConfigError(
            f"whitening statistic {statistic!r} is not known; use 'mean' or 'median'"
        )
    if not have.all():
        shell = np.arange(n_shells)
        prof = np.interp(shell, shell[have], prof[have])
    return prof


def estimate_whitening_profile(
    tomogram: npt.ArrayLike,
    *,
    patch_size: int,
    coverage_weight: npt.ArrayLike | None = None,
    overlap: float = 0.5,
    reject_fraction: float = 0.10,
    statistic: str = "median",
) -> F32:
    """Estimate a radial whitening profile from a tomogram.

    Parameters
    ----------
    tomogram
        ``(z, y, x)`` volume (any float dtype; non-finite patches are skipped).
    patch_size
        Edge of the cubic estimation patches in voxels (pytom uses
        ``min(max(template box, 64), min(search size))``); at most the smallest
        tomogram dimension, at least 4.
    coverage_weight
        Optional ``(p, p, p // 2 + 1)`` rfft weight of the patch box (for instance
        :func:`tmfast.filters.wedge.binary_wedge` of the tilt range); only voxels
        where it exceeds 0.05 enter the radial average.
    overlap
        Fractional overlap of neighbouring patches, in ``[0, 1)``.
    reject_fraction
        Fraction of the highest-variance patches to drop when there are at least 10
        patches; 0 disables rejection.
    statistic
        Radial statistic, ``"median"`` (bias-corrected, default) or ``"mean"``.

    Returns
    -------
    numpy.ndarray
        float32 profile of ``patch_size // 2 + 1`` samples at radii
        :func:`profile_radii_nyquist` (0 to Nyquist): ``1 / sqrt(PSD)``, DC 0,
        cosine taper from 0.9 to 1.0 Nyquist, maximum 1.

    Raises
    ------
    ConfigError
        If the patch size, overlap or coverage shape is invalid, or no finite patch
        is left.
    """
    vol = np.asarray(tomogram)
    if vol.ndim != 3:
        raise ConfigError(f"whitening: tomogram must be 3D (z, y, x), got {vol.shape}")
    length = int(patch_size)
    if length < 4 or length > min(vol.shape):
        raise ConfigError(
            f"whitening patch size {patch_size} must be between 4 and the smallest "
            f"tomogram dimension {min(vol.shape)}"
        )
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"whitening overlap {overlap} must be in [0, 1)")
    if not 0.0 <= reject_fraction < 1.0:
        raise ConfigError(
            f"whitening reject fraction {reject_fraction} must be in [0, 1)"
        )
    half = (length, length, length // 2 + 1)
    include: npt.NDArray[np.bool_] | None = None
    if coverage_weight is not None:
        cov = np.asarray(coverage_weight)
        if cov.shape != half:
            raise ConfigError(
                f"whitening coverage weight has shape {cov.shape}; expected the rfft "
                f"shape {half} of the {length}^3 patch"
            )
        include = cov > 0.05
        include[0, 0, 0] = False

    step = max(1, int(length * (1.0 - overlap) + 0.5))
    slices = list(_patches(vol.shape, length, step))
    # pass 1: patch variances (cheap), to reject the noisiest before any FFT
    variances = np.full(len(slices), np.nan)
    for i, sl in enumerate(slices):
        p = vol[sl]
        if np.isfinite(p).all():
            variances[i] = float(np.var(p, dtype=np.float64))
    usable = np.isfinite(variances)
    if not usable.any():
        raise ConfigError("whitening: no patch of the tomogram is free of NaN/inf")
    keep = usable.copy()
    if reject_fraction > 0 and usable.sum() >= 10:
        cut = np.quantile(variances[usable], 1.0 - reject_fraction)
        keep &= variances <= cut
    # pass 2: average the windowed periodograms of the kept patches
    win = _hann3d(length)
    win_power = float(np.sum(win.astype(np.float64) ** 2))
    psd = np.zeros(half, dtype=np.float64)
    n_used = 0
    for i_patch in np.flatnonzero(keep):
        p = vol[slices[i_patch]].astype(np.float32)
        p -= p.mean(dtype=np.float64)
        f = np.fft.rfftn(p * win)
        psd += f.real**2 + f.imag**2
        n_used += 1
    psd /= win_power * n_used
    logger.debug(
        "whitening: %d of %d patches of %d^3 used", n_used, len(slices), length
    )
    prof = radial_power_profile(psd, include=include, statistic=statistic, dof=n_used)
    w = np.zeros_like(prof)
    pos = prof > 0
    w[pos] = 1.0 / np.sqrt(prof[pos])
    w[0] = 0.0
    r = profile_radii_nyquist(w.size)
    ramp = np.clip((r - 0.9) / 0.1, 0.0, 1.0)
    w *= 0.5 * (1.0 + np.cos(math.pi * ramp))
    if w.max() > 0:
        w /= w.max()
    return w.astype(np.float32)


def profile_to_weight(
    profile: npt.ArrayLike,
    shape_zyx: Sequence[int],
    *,
    rfft: bool = True,
) -> F32:
    """Interpolate a radial profile onto a Fourier grid.

    Parameters
    ----------
    profile
        1D profile sampled at :func:`profile_radii_nyquist` radii (0 to Nyquist).
    shape_zyx
        Real-space box ``(nz, ny, nx)``; need not be cubic.
    rfft
        rfft half-space ``(nz, ny, nx // 2 + 1)`` (default) or the full grid.

    Returns
    -------
    numpy.ndarray
        float32 weight, linear interpolation in the radius ``|k| / 0.5`` (physical
        frequency, so isotropic in 1/Å on non-cubic boxes), 0 beyond Nyquist.

    Raises
    ------
    ConfigError
        If the profile is not a 1D array of at least two finite values.
    """
    prof = check_profile(profile)
    shape = check_shape(shape_zyx)
    return radial_profile_weight(prof, freq_radius_sq(shape, rfft))


def check_profile(profile: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Return ``profile`` as a float64 1D array.

    Raises
    ------
    ConfigError
        If it is not a 1D array of at least two finite values.
    """
    prof = np.asarray(profile, dtype=np.float64)
    if prof.ndim != 1 or prof.size < 2 or not np.isfinite(prof).all():
        raise ConfigError(
            "whitening profile must be a 1D array of at least 2 finite values "
            "(as written by estimate_whitening_profile)"
        )
    return prof


def radial_profile_weight(
    profile: npt.NDArray[np.float64], q2: npt.NDArray[np.float32]
) -> F32:
    """Interpolate a checked profile at squared frequencies ``q2`` (cycles/voxel)^2.

    Parameters
    ----------
    profile
        1D profile sampled at :func:`profile_radii_nyquist` radii.
    q2
        Squared spatial frequencies, any shape.

    Returns
    -------
    numpy.ndarray
        float32 weight of the shape of ``q2``; 0 beyond Nyquist.
    """
    r = np.sqrt(q2) * np.float32(1.0 / NYQUIST)
    radii = profile_radii_nyquist(profile.size)
    out = np.interp(r.ravel(), radii, profile, right=0.0)
    return out.astype(np.float32).reshape(r.shape)
