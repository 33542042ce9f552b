"""Fourier-space weights for template matching (pure CPU numpy builders).

Two entry points serve the matching engine:

- :func:`template_weight`: band-pass x whitening x wedge for the template box, where
  the wedge is the per-tilt weighted wedge (with per-tilt CTF and dose) when
  ``per_tilt_weighting`` and metadata are given, otherwise the binary wedge times the
  CTF of the lowest tilt when the metadata carries CTF parameters;
- :func:`tomogram_filter`: band-pass x whitening x binary wedge for the tomogram. It
  never contains a CTF: pytom-match-pick 0.12-0.14 multiplies the tomogram by the
  middle-tilt CTF (its §8 item 2 regression); tmfast does not.

All weights are float32, unshifted, in the rfft layout ``(nz, ny, nx // 2 + 1)`` of
``numpy.fft.rfftn`` / ``scipy.fft.rfftn``. Geometry and sign conventions are in
:mod:`tmfast.filters.wedge`.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from tmfast.errors import ConfigError
from tmfast.filters._grid import NYQUIST, check_shape, freq_axes, freq_radius_sq
from tmfast.filters.bandpass import bandpass, radial_bandpass
from tmfast.filters.ctf import ctf_1d
from tmfast.filters.wedge import (
    binary_wedge,
    binary_wedge_xz,
    check_ctf_model,
    dose_filter,
    tilt_weighted_wedge,
)
from tmfast.filters.whitening import (
    check_profile,
    estimate_whitening_profile,
    profile_to_weight,
    radial_profile_weight,
)
from tmfast.metadata import TiltSeriesMetadata

__all__ = [
    "bandpass",
    "binary_wedge",
    "ctf_1d",
    "dose_filter",
    "estimate_whitening_profile",
    "profile_to_weight",
    "reference_tilt_index",
    "template_weight",
    "tilt_weighted_wedge",
    "tomogram_filter",
]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


def reference_tilt_index(metadata: TiltSeriesMetadata) -> int:
    """Index of the tilt whose CTF stands for the whole series: the lowest |tilt|.

    pytom-match-pick takes index ``n_tilts // 2``, which is the lowest tilt only for
    sorted lists; for acquisition-ordered (dose-symmetric) lists it is a high tilt.
    The first of equally low tilts wins.
    """
    return int(np.argmin(np.abs(np.asarray(metadata.tilt_angles_deg))))


def _tilt_range(
    tilt_range_deg: tuple[float, float] | None,
    metadata: TiltSeriesMetadata | None,
) -> tuple[float, float] | None:
    if tilt_range_deg is not None:
        try:
            lo, hi = (float(v) for v in tilt_range_deg)
        except (TypeError, ValueError):
            raise ConfigError(
                f"tilt range {tilt_range_deg!r} must be two angles MIN MAX in degrees"
            ) from None
        return lo, hi
    if metadata is not None:
        return min(metadata.tilt_angles_deg), max(metadata.tilt_angles_deg)
    return None


#: Fourier voxels per slab when building large weights (bounds temporaries).
_SLAB_VOXELS = 1 << 20


def _product_weight(
    shape: tuple[int, int, int],
    voxel_size_a: float,
    low_pass_a: float | None,
    high_pass_a: float | None,
    whitening_profile: npt.ArrayLike | None,
    tilt_range_deg: tuple[float, float] | None,
) -> F32:
    """band-pass x whitening x binary wedge, built in z slabs.

    Equal to the product of :func:`bandpass`, :func:`profile_to_weight` and
    :func:`binary_wedge`, but the temporaries are slab-sized, so a large tomogram's
    filter costs little more memory than the result.
    """
    shape = check_shape(shape)
    # validate once, on a 1-voxel box, with the public builder's checks
    bandpass((1, 1, 1), voxel_size_a, low_pass_a=low_pass_a, high_pass_a=high_pass_a)
    prof = None if whitening_profile is None else check_profile(whitening_profile)
    w2 = None
    if tilt_range_deg is not None:
        w2 = binary_wedge_xz(shape, tilt_range_deg[0], tilt_range_deg[1])
    kz, ky, kx = freq_axes(shape, True)
    nz, ny, nxf = kz.shape[0], ky.shape[1], kx.shape[2]
    out = np.empty((nz, ny, nxf), dtype=np.float32)
    step = max(1, _SLAB_VOXELS // (ny * nxf))
    for z0 in range(0, nz, step):
        z1 = min(nz, z0 + step)
        kzs = kz[z0:z1]
        q2 = (kzs * kzs + ky * ky) + kx * kx
        w = radial_bandpass(q2, float(voxel_size_a), low_pass_a, high_pass_a)
        if prof is not None:
            w *= radial_profile_weight(prof, q2)
        if w2 is not None:
            w *= w2[z0:z1, None, :]
            w[q2 > np.float32(NYQUIST * NYQUIST)] = 0.0
        out[z0:z1] = w
    return out


def template_weight(
    box_size: int,
    voxel_size_a: float,
    *,
    tilt_range_deg: tuple[float, float] | None = None,
    metadata: TiltSeriesMetadata | None = None,
    per_tilt_weighting: bool = False,
    low_pass_a: float | None = None,
    high_pass_a: float | None = None,
    ctf_model: str | None = None,
    whitening_profile: npt.ArrayLike | None = None,
) -> F32:
    """Fourier weight applied to the template (and its noise twin) before matching.

    Parameters
    ----------
    box_size
        Edge of the cubic template box in voxels.
    voxel_size_a
        Voxel size in Å.
    tilt_range_deg
        ``(min, max)`` tilt in degrees for the binary wedge; overrides the range
        of ``metadata``.
    metadata
        Tilt series metadata (tilts, optional defocus, dose, microscope).
    per_tilt_weighting
        Use :func:`tilt_weighted_wedge` (needs ``metadata``) instead of the binary
        wedge.
    low_pass_a, high_pass_a
        Gaussian band-pass resolutions in Å (``None``: off).
    ctf_model
        ``None`` or ``"phase-flip"`` (``|CTF|``); used only with CTF metadata.
    whitening_profile
        Radial profile from :func:`estimate_whitening_profile` (``None``: off).

    Returns
    -------
    numpy.ndarray
        ``(n, n, n // 2 + 1)`` float32 weight, unshifted rfft layout.

    Raises
    ------
    ConfigError
        On an invalid box, voxel size, tilt range, ``ctf_model``, or
        ``per_tilt_weighting`` without tilt metadata.
    """
    n = int(box_size)
    if n < 1:
        raise ConfigError(f"template box size {box_size} must be positive")
    check_ctf_model(ctf_model)
    shape = (n, n, n)
    if per_tilt_weighting:
        if metadata is None:
            raise ConfigError(
                "per-tilt weighting needs the tilt angles of every image: give a "
                ".tlt/.rawtlt file (or RELION5 metadata) instead of MIN MAX"
            )
        w = _product_weight(
            shape, voxel_size_a, low_pass_a, high_pass_a, whitening_profile, None
        )
        w *= tilt_weighted_wedge(shape, voxel_size_a, metadata, ctf_model=ctf_model)
        return w
    rng = _tilt_range(tilt_range_deg, metadata)
    w = _product_weight(
        shape, voxel_size_a, low_pass_a, high_pass_a, whitening_profile, rng
    )
    if metadata is not None and metadata.has_ctf:
        i = reference_tilt_index(metadata)
        assert metadata.defocus_um is not None
        assert metadata.voltage_kv is not None
        assert metadata.spherical_aberration_mm is not None
        assert metadata.amplitude_contrast is not None
        k = np.sqrt(freq_radius_sq(shape, True)) * np.float32(1.0 / voxel_size_a)
        w *= ctf_1d(
            k,
            defocus_um=metadata.defocus_um[i],
            voltage_kv=metadata.voltage_kv,
            spherical_aberration_mm=metadata.spherical_aberration_mm,
            amplitude_contrast=metadata.amplitude_contrast,
            phase_shift_deg=metadata.phase_shift_deg,
            phase_flip=ctf_model == "phase-flip",
            match_contrast=True,
        )
    return w


def tomogram_filter(
    shape_zyx: tuple[int, int, int],
    voxel_size_a: float,
    *,
    tilt_range_deg: tuple[float, float] | None = None,
    metadata: TiltSeriesMetadata | None = None,
    low_pass_a: float | None = None,
    high_pass_a: float | None = None,
    whitening_profile: npt.ArrayLike | None = None,
) -> F32:
    """Fourier weight applied once to the tomogram: band-pass x whitening x wedge.

    The binary wedge (over ``tilt_range_deg`` or the metadata's extreme tilts) zeroes
    the missing-wedge region, useful for AI-filled reconstructions. No CTF is ever
    applied to the tomogram, whatever the metadata holds.

    Parameters
    ----------
    shape_zyx
        Tomogram (or sub-volume) shape ``(nz, ny, nx)``.
    voxel_size_a
        Voxel size in Å.
    tilt_range_deg
        ``(min, max)`` tilt in degrees; overrides the range of ``metadata``.
    metadata
        Tilt series metadata; only its tilt angles are used.
    low_pass_a, high_pass_a
        Gaussian band-pass resolutions in Å (``None``: off).
    whitening_profile
        Radial profile from :func:`estimate_whitening_profile` (``None``: off).

    Returns
    -------
    numpy.ndarray
        ``(nz, ny, nx // 2 + 1)`` float32 weight, unshifted rfft layout.

    Raises
    ------
    ConfigError
        On an invalid shape, voxel size or tilt range.
    """
    shape = check_shape(shape_zyx)
    rng = _tilt_range(tilt_range_deg, metadata)
    return _product_weight(
        shape, voxel_size_a, low_pass_a, high_pass_a, whitening_profile, rng
    )
