"""Missing-wedge weights: binary wedge and per-tilt ("fanned") weighted wedge.

Geometry and sign convention
----------------------------
Volumes are ``(z, y, x)``; the tilt axis is y and the beam is z at tilt 0. By the
central-slice theorem the image recorded at tilt ``alpha`` samples the central plane of
Fourier space with unit normal (components in x, y, z)::

    n(alpha) = (-sin(alpha), 0, cos(alpha))

i.e. the plane spanned by ``ky`` and ``(kx, kz) = (cos alpha, sin alpha)``. A Fourier
voxel ``k`` with ``kx != 0`` therefore lies on the plane of tilt
``alpha_k = arctan(kz / kx)``, and the sampled region of a series is the set of planes
with ``alpha`` in ``[tilt_min, tilt_max]``. This is pytom-match-pick's convention (its
``_create_binary_wedge`` negates x; their PR #334 checked it against AreTomo and
WarpTools reconstructions), so tilt files that work with pytom give the same wedge
orientation here. For a symmetric range the sign does not matter.

Distances to a plane are measured in Fourier-voxel units: a voxel's position is its
integer index ``(kx * nx, ky * ny, kz * nz)``, so a non-cubic box is handled exactly
(for a cubic box of size N this is ``N * |k . n|``). Frequencies follow numpy's
unshifted layout, rfft-halved along x by default (shape ``(nz, ny, nx // 2 + 1)``);
everything beyond the Nyquist sphere (``|k| > 0.5`` cycles/voxel) is 0.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tmfast.errors import ConfigError
from tmfast.filters._grid import NYQUIST, check_shape, freq_axes, out_shape
from tmfast.filters.ctf import ctf_1d
from tmfast.metadata import TiltSeriesMetadata

__all__ = [
    "CTF_MODELS",
    "binary_wedge",
    "binary_wedge_xz",
    "dose_filter",
    "tilt_plane_normals",
    "tilt_weighted_wedge",
]

logger = logging.getLogger(__name__)

#: Accepted values of ``ctf_model`` (``None`` means the plain CTF).
CTF_MODELS = (None, "phase-flip")

F32 = npt.NDArray[np.float32]


def check_ctf_model(ctf_model: str | None) -> None:
    """Raise ConfigError unless ``ctf_model`` is ``None`` or ``"phase-flip"``."""
    if ctf_model not in CTF_MODELS:
        raise ConfigError(
            f"tomogram CTF model {ctf_model!r} is not known; use 'phase-flip' "
            "(IMOD strip-based phase flip, novaCTF) or leave it unset"
        )


def tilt_plane_normals(
    tilt_angles_deg: Sequence[float] | npt.ArrayLike,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Unit normals of the sampled central planes, as ``(n_x, n_z)`` (``n_y = 0``).

    Parameters
    ----------
    tilt_angles_deg
        Tilt angles in degrees.

    Returns
    -------
    tuple of numpy.ndarray
        ``n_x = -sin(alpha)`` and ``n_z = cos(alpha)`` (float64, one per tilt).
    """
    a = np.radians(np.asarray(tilt_angles_deg, dtype=np.float64))
    return -np.sin(a), np.cos(a)


def _check_tilt(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v) or abs(v) > 90.0:
        raise ConfigError(f"{name} tilt {value!r}° must be a finite angle in [-90, 90]")
    return v


def _signed_plane_distance(
    shape_zyx: tuple[int, int, int],
    kz: F32,
    kx: F32,
    tilt_angles_deg: npt.ArrayLike,
) -> F32:
    """Signed distance (Fourier voxels) of every ``(kz, kx)`` to each tilt plane.

    ``kz`` is ``(nz, 1)`` and ``kx`` ``(1, nxf)``; returns ``(n_tilts, nz, nxf)``.
    """
    nz, _, nx = shape_zyx
    n_x, n_z = tilt_plane_normals(tilt_angles_deg)
    # index-space normal (n_x / nx, n_z / nz); distance = (k . n) / |index normal|
    inv_len = 1.0 / np.sqrt((n_x / nx) ** 2 + (n_z / nz) ** 2)
    cx = (n_x * inv_len).astype(np.float32)[:, None, None]
    cz = (n_z * inv_len).astype(np.float32)[:, None, None]
    out: F32 = kx[None] * cx + kz[None] * cz
    return out


def _nyquist_cut(out: F32, kz: F32, ky: F32, kx: F32) -> None:
    """Zero ``out`` (shape ``(nz, ny, nxf)``) beyond the Nyquist sphere, in place."""
    q2 = (kz * kz + ky * ky) + kx * kx
    out[q2 > np.float32(NYQUIST * NYQUIST)] = 0.0


def binary_wedge(
    shape_zyx: Sequence[int],
    tilt_min_deg: float,
    tilt_max_deg: float,
    *,
    rfft: bool = True,
) -> F32:
    """Binary missing-wedge weight with a one-voxel linear edge.

    The weight is 1 on every central plane with a tilt in
    ``[tilt_min_deg, tilt_max_deg]`` (see the module docstring for the convention),
    falls linearly to 0 at a distance of one Fourier voxel outside the two extreme
    planes, and is 0 in the missing wedge and beyond Nyquist. The tilt axis (ky) lies
    in every plane, so the weight does not depend on ky inside the Nyquist sphere.

    Parameters
    ----------
    shape_zyx
        Real-space box ``(nz, ny, nx)`` in voxels; need not be cubic.
    tilt_min_deg, tilt_max_deg
        Extreme tilt angles in degrees, ``-90 <= min <= max <= 90``.
    rfft
        rfft half-space ``(nz, ny, nx // 2 + 1)`` (default) or the full grid.

    Returns
    -------
    numpy.ndarray
        float32 weight in ``[0, 1]``, unshifted (DC at index 0).

    Raises
    ------
    ConfigError
        If the shape or the tilt range is invalid.
    """
    shape = check_shape(shape_zyx)
    kz, ky, kx = freq_axes(shape, rfft)
    w2 = binary_wedge_xz(shape, tilt_min_deg, tilt_max_deg, rfft=rfft)
    out = np.empty(out_shape(shape, rfft), dtype=np.float32)
    out[...] = w2[:, None, :]
    _nyquist_cut(out, kz, ky, kx)
    return out


def binary_wedge_xz(
    shape_zyx: Sequence[int],
    tilt_min_deg: float,
    tilt_max_deg: float,
    *,
    rfft: bool = True,
) -> F32:
    """The ``(kz, kx)`` profile of :func:`binary_wedge` (constant along ky).

    Parameters
    ----------
    shape_zyx
        Real-space box ``(nz, ny, nx)`` in voxels.
    tilt_min_deg, tilt_max_deg
        Extreme tilt angles in degrees, ``-90 <= min <= max <= 90``.
    rfft
        Halve the x axis as in the rfft layout (default).

    Returns
    -------
    numpy.ndarray
        ``(nz, nx // 2 + 1)`` (or ``(nz, nx)``) float32 weight, without the Nyquist
        cut, which depends on ky.

    Raises
    ------
    ConfigError
        If the shape or the tilt range is invalid.
    """
    shape = check_shape(shape_zyx)
    lo = _check_tilt("minimum", tilt_min_deg)
    hi = _check_tilt("maximum", tilt_max_deg)
    if lo > hi:
        raise ConfigError(
            f"tilt range ({tilt_min_deg}, {tilt_max_deg})°: the minimum is larger than "
            "the maximum; give MIN MAX"
        )
    kz, _, kx = freq_axes(shape, rfft)
    if hi - lo >= 180.0:
        return np.ones((kz.shape[0], kx.shape[2]), dtype=np.float32)
    f = _signed_plane_distance(shape, kz[:, :, 0], kx[0], [lo, hi])
    inside = f[0] * f[1] <= 0.0
    dist = np.minimum(np.abs(f[0]), np.abs(f[1]))
    out: F32 = np.where(inside, np.float32(1.0), np.clip(1.0 - dist, 0.0, 1.0))
    return out.astype(np.float32, copy=False)


def dose_filter(
    k_inv_a: npt.ArrayLike, dose_e_per_a2: npt.ArrayLike
) -> npt.NDArray[np.floating]:
    """Exposure weight ``exp(-k^2 B / 4)`` with ``B = 4 Å^2`` per e⁻/Å² of dose.

    This equals pytom-match-pick's ``exp(-2 pi^2 sigma^2 k^2)`` with
    ``sigma^2 = 4 dose / (8 pi^2)``, i.e. ``exp(-dose * k^2)``.

    Parameters
    ----------
    k_inv_a
        Spatial frequencies in 1/Å.
    dose_e_per_a2
        Accumulated dose in e⁻/Å² (broadcastable against ``k_inv_a``).

    Returns
    -------
    numpy.ndarray
        The weight, dtype of ``k_inv_a`` if float32 else float64.
    """
    k_raw = np.asarray(k_inv_a)
    dtype = np.float32 if k_raw.dtype == np.float32 else np.float64
    k: npt.NDArray[np.floating] = k_raw.astype(dtype, copy=False)
    b_factor: npt.NDArray[np.floating] = np.multiply(
        np.asarray(dose_e_per_a2, dtype=np.float64).astype(dtype), 4.0
    )
    return np.exp(-(k * k) * b_factor / 4.0)


def tilt_weighted_wedge(
    shape_zyx: Sequence[int],
    voxel_size_a: float,
    metadata: TiltSeriesMetadata,
    *,
    ctf_model: str | None = None,
    rfft: bool = True,
    overlap_ramp: bool = True,
) -> F32:
    """Per-tilt weighted ("fanned") wedge, evaluated directly per Fourier voxel.

    ``W(k) = sum_i cos(alpha_i) * CTF_i(k_par) * D_i(k_par) * T(d_i(k)) * R(k)``

    - ``d_i(k)``: distance in Fourier voxels from ``k`` to the plane of tilt i and
      ``T(d) = max(0, 1 - d)`` the slice profile (1 on the plane, 0 one voxel away);
    - ``k_par``: the in-plane frequency ``sqrt(|k|^2 - (k . n_i)^2)`` in 1/Å;
    - ``CTF_i``: :func:`ctf_1d` for tilt i with ``match_contrast=True`` (``|CTF|``
      for ``ctf_model="phase-flip"``), only when ``metadata.has_ctf``;
    - ``D_i``: :func:`dose_filter` with the accumulated dose of tilt i, only when
      ``metadata.dose_e_per_a2`` is set;
    - ``R(k) = min(1, rho(k) * dalpha)``: pytom-match-pick's overlap ramp, with
      ``rho`` the distance (Fourier voxels) of ``k`` from the tilt axis and ``dalpha``
      the median tilt increment in radians (pytom takes the smallest, which a pair
      of nearly equal refined angles would shrink to ~0, zeroing the whole weight;
      both agree for evenly spaced tilts). Near the tilt axis adjacent planes are
      closer than one voxel and their slice profiles add up to ``1 / (rho dalpha)``;
      the ramp cancels that, as the R-weighting of a weighted back-projection does.
      It is 1 for a single tilt and is switched off with ``overlap_ramp=False``.

    The sum is not normalised; 0 beyond Nyquist. Only (tilt, kz, kx) columns within
    one voxel of a plane are evaluated, so the cost grows with the number of planes,
    not with ``n_tilts * volume``.

    Parameters
    ----------
    shape_zyx
        Real-space box ``(nz, ny, nx)`` in voxels; need not be cubic.
    voxel_size_a
        Voxel size in Å (for CTF and dose frequencies).
    metadata
        Tilt angles and optional per-tilt defocus, dose and microscope parameters.
    ctf_model
        ``None`` (plain CTF) or ``"phase-flip"`` (``|CTF|``).
    rfft
        rfft half-space ``(nz, ny, nx // 2 + 1)`` (default) or the full grid.
    overlap_ramp
        Apply the overlap ramp ``R`` (default True, as pytom-match-pick).

    Returns
    -------
    numpy.ndarray
        float32 weight, unshifted (DC at index 0).

    Raises
    ------
    ConfigError
        If the shape, voxel size or ``ctf_model`` is invalid.
    """
    shape = check_shape(shape_zyx)
    check_ctf_model(ctf_model)
    vs = float(voxel_size_a)
    if not math.isfinite(vs) or vs <= 0:
        raise ConfigError(f"voxel size {voxel_size_a!r} Å must be positive")
    tilts = np.asarray(metadata.tilt_angles_deg, dtype=np.float64)
    nz, ny, nx = shape
    kz, ky, kx = freq_axes(shape, rfft)
    full = out_shape(shape, rfft)
    nxf = full[2]

    dist = np.abs(_signed_plane_distance(shape, kz[:, :, 0], kx[0], tilts))
    w2 = np.clip(np.float32(1.0) - dist, 0.0, 1.0)
    w2 *= np.cos(np.radians(tilts)).astype(np.float32)[:, None, None]
    uniq = np.unique(tilts)
    if overlap_ramp and uniq.size > 1:
        dalpha = float(np.radians(np.median(np.diff(uniq))))
        rho = np.sqrt((kx[0] * nx) ** 2 + (kz[:, :, 0] * nz) ** 2)
        w2 *= np.minimum(np.float32(1.0), rho * np.float32(dalpha))[None]

    dose = metadata.dose_e_per_a2
    use_ctf = metadata.has_ctf
    out = np.empty(full, dtype=np.float32)
    if dose is None and not use_ctf:
        out[...] = w2.sum(axis=0)[:, None, :]
    else:
        t, iz, ix = np.nonzero(w2)
        flat = iz * nxf + ix
        order = np.argsort(flat, kind="stable")
        t, iz, ix, flat = t[order], iz[order], ix[order], flat[order]
        base = w2[t, iz, ix]
        kzv = kz[iz, 0, 0]
        kxv = kx[0, 0, ix]
        n_x, n_z = tilt_plane_normals(tilts)
        kn = kxv * n_x.astype(np.float32)[t] + kzv * n_z.astype(np.float32)[t]
        kxz_par2 = np.maximum(kxv * kxv + kzv * kzv - kn * kn, 0.0)
        k_par2 = (kxz_par2[:, None] + ky[0, :, :].T * ky[0, :, :].T) * np.float32(
            1.0 / (vs * vs)
        )  # (pairs, ny), (1/Å)^2
        vals = np.broadcast_to(base[:, None], k_par2.shape).copy()
        if dose is not None:
            d_t = np.asarray(dose, dtype=np.float32)[t][:, None]
            vals *= np.exp(-k_par2 * d_t)
        if use_ctf:
            assert metadata.defocus_um is not None
            assert metadata.voltage_kv is not None
            assert metadata.spherical_aberration_mm is not None
            assert metadata.amplitude_contrast is not None
            df_t = np.asarray(metadata.defocus_um, dtype=np.float32)[t][:, None]
            vals *= ctf_1d(
                np.sqrt(k_par2),
                defocus_um=df_t,
                voltage_kv=metadata.voltage_kv,
                spherical_aberration_mm=metadata.spherical_aberration_mm,
                amplitude_contrast=metadata.amplitude_contrast,
                phase_shift_deg=metadata.phase_shift_deg,
                phase_flip=ctf_model == "phase-flip",
                match_contrast=True,
            )
        acc = np.zeros((nz * nxf, ny), dtype=np.float32)
        if flat.size:
            cols, starts = np.unique(flat, return_index=True)
            acc[cols] = np.add.reduceat(vals, starts, axis=0)
        out[...] = acc.reshape(nz, nxf, ny).transpose(0, 2, 1)
    _nyquist_cut(out, kz, ky, kx)
    logger.debug(
        "tilt-weighted wedge %s from %d tilts (ctf=%s, dose=%s)",
        full,
        tilts.size,
        use_ctf,
        dose is not None,
    )
    return out
