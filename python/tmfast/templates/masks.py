"""Masks for template matching: spheres, ellipsoids and masks shaped like a template.

All masks are float32 ``(z, y, x)`` cubes in [0, 1], centred on voxel ``N // 2``
(``docs/conventions.md``). The soft edge is a Gaussian of the distance ``d``
(voxels) outside the hard mask, ``exp(-d^2 / (2 sigma^2))``, cut to 0 beyond
``3 sigma``; it is monotone non-increasing away from the mask.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import numpy.typing as npt
import scipy.ndimage

from tmfast.errors import ConfigError
from tmfast.types import Volume

__all__ = ["ellipsoid_mask", "mask_from_template", "soften_mask", "sphere_mask"]

logger = logging.getLogger(__name__)

#: The soft edge is set to 0 beyond this many sigma.
EDGE_TRUNCATION_SIGMA = 3.0


#: Largest mask or template box in voxels (1024^3 float32 is 4 GiB; a larger box
#: is a typo or a tomogram size, and numpy's MemoryError came as a traceback).
MAX_BOX = 1024


def _check_box(box_size: int) -> int:
    if int(box_size) != box_size or box_size < 1:
        raise ConfigError(
            f"box size {box_size!r}: must be a positive whole number of voxels"
        )
    if box_size > MAX_BOX:
        raise ConfigError(
            f"box size {box_size} voxels: larger than {MAX_BOX}, a template box "
            "is the particle plus a margin; check the value (voxels, not Å)"
        )
    return int(box_size)


def _check_sigma(sigma_px: float) -> float:
    if not (sigma_px >= 0 and math.isfinite(sigma_px)):
        raise ConfigError(f"edge sigma {sigma_px!r} voxels: must be >= 0")
    return float(sigma_px)


def _edge(distance_px: npt.NDArray[np.float64], sigma_px: float) -> Volume:
    """Mask value from the distance outside the hard mask (0 inside)."""
    if sigma_px == 0:
        return (distance_px <= 0).astype(np.float32)
    d = np.clip(distance_px, 0.0, None)
    out = np.exp(-0.5 * (d / sigma_px) ** 2)
    out[d > EDGE_TRUNCATION_SIGMA * sigma_px] = 0.0
    return out.astype(np.float32)


def ellipsoid_mask(
    box_size: int,
    radii_zyx_px: tuple[float, float, float],
    *,
    sigma_px: float = 0.0,
    center_zyx_px: tuple[float, float, float] | None = None,
) -> Volume:
    """Axis-aligned ellipsoid mask with an optional Gaussian edge.

    Parameters
    ----------
    box_size
        Cube side in voxels.
    radii_zyx_px
        Semi-axes ``(rz, ry, rx)`` in voxels; a voxel is inside when
        ``sum((p_i - c_i)^2 / r_i^2) <= 1``.
    sigma_px
        Gaussian edge sigma in voxels (0: hard 0/1 mask). The distance outside is
        measured along the ray from the centre, ``|p - c| (1 - 1/rho)`` with
        ``rho`` the normalised radius (exact for a sphere).
    center_zyx_px
        Centre in voxels; default ``(N // 2,) * 3``.

    Returns
    -------
    numpy.ndarray
        float32 cube in [0, 1].

    Raises
    ------
    ConfigError
        On a non-positive box or radius or a negative sigma.
    """
    n = _check_box(box_size)
    sigma = _check_sigma(sigma_px)
    radii = np.asarray(radii_zyx_px, dtype=np.float64)
    if radii.shape != (3,) or not np.all(radii > 0) or not np.all(np.isfinite(radii)):
        raise ConfigError(f"radii {radii_zyx_px!r} voxels: need three positive numbers")
    c = (float(n // 2),) * 3 if center_zyx_px is None else tuple(center_zyx_px)
    ax = np.arange(n, dtype=np.float64)
    dz = (ax - c[0])[:, None, None]
    dy = (ax - c[1])[None, :, None]
    dx = (ax - c[2])[None, None, :]
    rho = np.sqrt((dz / radii[0]) ** 2 + (dy / radii[1]) ** 2 + (dx / radii[2]) ** 2)
    r = np.sqrt(dz * dz + dy * dy + dx * dx)
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.where(rho > 1, r * (1.0 - 1.0 / rho), 0.0)
    return _edge(dist, sigma)


def sphere_mask(
    box_size: int,
    radius_px: float,
    *,
    sigma_px: float = 0.0,
    center_zyx_px: tuple[float, float, float] | None = None,
) -> Volume:
    """Spherical mask ``|p - c| <= radius`` with an optional Gaussian edge.

    Parameters
    ----------
    box_size
        Cube side in voxels.
    radius_px
        Radius in voxels.
    sigma_px
        Gaussian edge sigma in voxels (0: hard mask).
    center_zyx_px
        Centre in voxels; default ``(N // 2,) * 3``.

    Returns
    -------
    numpy.ndarray
        float32 cube in [0, 1].

    Raises
    ------
    ConfigError
        On a non-positive box or radius or a negative sigma.
    """
    return ellipsoid_mask(
        box_size, (radius_px,) * 3, sigma_px=sigma_px, center_zyx_px=center_zyx_px
    )


def soften_mask(binary: npt.NDArray[np.bool_], sigma_px: float) -> Volume:
    """Gaussian edge around a binary mask, from the exact Euclidean distance.

    Parameters
    ----------
    binary
        ``(z, y, x)`` boolean mask.
    sigma_px
        Edge sigma in voxels (0: return the mask as 0/1 float32).

    Returns
    -------
    numpy.ndarray
        float32 in [0, 1], 1 on ``binary``.

    Raises
    ------
    ConfigError
        On a negative sigma.
    """
    sigma = _check_sigma(sigma_px)
    b = np.asarray(binary, dtype=bool)
    if sigma == 0 or not b.any():
        return b.astype(np.float32)
    dist = scipy.ndimage.distance_transform_edt(~b)
    return _edge(np.asarray(dist, dtype=np.float64), sigma)


def mask_from_template(
    template: npt.NDArray[np.floating],
    *,
    threshold: float | None = None,
    threshold_fraction: float = 0.1,
    dilation_px: int = 2,
    sigma_px: float = 2.0,
) -> Volume:
    """Mask that follows a template's shape: threshold, dilate, soften.

    The template's polarity is detected: density is ``t - median(t)``, negated when
    its most negative value is larger in magnitude than its most positive one
    (inverted templates). Voxels above the threshold form the support, which is
    dilated by a ball of ``dilation_px`` voxels and given a Gaussian edge.

    Parameters
    ----------
    template
        ``(z, y, x)`` template.
    threshold
        Absolute threshold on the polarity-corrected density ``t - median(t)``;
        default ``threshold_fraction * max(density)``.
    threshold_fraction
        Fraction of the maximum density used when ``threshold`` is None.
    dilation_px
        Dilation radius in voxels (0: none).
    sigma_px
        Gaussian edge sigma in voxels.

    Returns
    -------
    numpy.ndarray
        float32 mask in [0, 1] of the template's shape.

    Raises
    ------
    ConfigError
        If the template is constant or not finite, the threshold selects nothing,
        or a parameter is out of range.
    """
    t = np.asarray(template, dtype=np.float64)
    if t.ndim != 3:
        raise ConfigError(f"template shape {t.shape}: need a 3D volume")
    if dilation_px < 0 or int(dilation_px) != dilation_px:
        raise ConfigError(
            f"dilation {dilation_px!r} voxels: must be a whole number >= 0"
        )
    if not 0 < threshold_fraction < 1:
        raise ConfigError(
            f"threshold fraction {threshold_fraction!r}: must be in (0, 1)"
        )
    if not np.all(np.isfinite(t)):
        bad = int(np.count_nonzero(~np.isfinite(t)))
        raise ConfigError(
            f"template: {bad} of {t.size} voxels are NaN or infinite; fix the "
            "template first"
        )
    density = t - np.median(t)
    if -density.min() > density.max():
        logger.info("template looks inverted (dark density); using -template")
        density = -density
    if density.max() <= 0:
        raise ConfigError("template is constant; cannot derive a mask from it")
    if threshold is not None and not math.isfinite(threshold):
        raise ConfigError(f"--threshold {threshold!r}: must be a finite density value")
    thr = (
        threshold_fraction * float(density.max())
        if threshold is None
        else float(threshold)
    )
    support = density > thr
    if not support.any():
        raise ConfigError(
            f"mask threshold {thr:.4g} is above the template's maximum "
            f"{density.max():.4g}; lower --threshold"
        )
    if dilation_px > 0:
        r = int(dilation_px)
        ax = np.arange(-r, r + 1)
        ball = (
            ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2
        ) <= r * r
        support = scipy.ndimage.binary_dilation(support, structure=ball)
    logger.info(
        "template mask: threshold %.4g, %d support voxels", thr, int(support.sum())
    )
    return soften_mask(support, sigma_px)
