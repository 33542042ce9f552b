"""Automatic lamella (slab) boundary masks from a tomogram, in the spirit of Slabify.

Algorithm (all numpy/scipy, vectorised):

1. Bin the tomogram by block means (``bin_factor``; automatic: longest side / 256).
2. Band-pass the binned volume (difference of Gaussians, sigmas 1 and 4 binned
   voxels) and take the local energy: the mean of the squared band-passed values in
   a flat box (``box_z`` binned voxels along z, ``box_xy`` laterally). A box-mean is
   symmetric, so a box half inside the lamella sees half of the inside energy.
3. Split log-energy into two classes (Otsu); the lamella (high) and vacuum (low)
   levels are the class medians and a voxel is "lamella" when its energy exceeds
   their linear midpoint, i.e. when at least half of its box lies in the lamella.
4. Per (y, x) column the highest and lowest lamella voxels give top and bottom
   boundary samples (columns that touch the volume's top or bottom face do not
   see that boundary and are left out of that fit).
5. Each boundary plane ``z = a x + b y + c`` is fitted robustly: RANSAC over random
   point triples (seeded), then least squares on the inliers, twice.
6. A boundary is accepted only if enough columns observe it, most of them lie on
   the fitted plane (``min_inlier_fraction``) and the energy just inside it exceeds
   that just outside by ``min_contrast``; otherwise the volume's
   face is used (the tomogram is all lamella on that side), with a log warning.
7. The mask is 1 for voxel centres between the planes, widened by ``margin_px``.

Coordinates are voxel indices of the full tomogram: voxel ``(z, y, x)`` has its
centre at ``(z, y, x)``; planes are continuous.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.ndimage

from tmfast.errors import ConfigError

__all__ = ["SlabFit", "fill_slab", "fit_slab", "slab_mask"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class SlabFit:
    """Top and bottom planes of a lamella, ``z = a x + b y + c`` in voxels.

    Attributes
    ----------
    top_abc, bottom_abc
        Plane coefficients ``(a, b, c)`` (dimensionless slopes, c in voxels).
    shape_zyx
        Shape of the tomogram the planes refer to.
    top_observed, bottom_observed
        False where no boundary was found and the volume face was used instead.
    """

    top_abc: tuple[float, float, float]
    bottom_abc: tuple[float, float, float]
    shape_zyx: tuple[int, int, int]
    top_observed: bool
    bottom_observed: bool

    @staticmethod
    def tilt_deg(abc: tuple[float, float, float]) -> float:
        """Angle in degrees between a plane's normal and the z axis."""
        a, b, _ = abc
        return math.degrees(math.atan(math.hypot(a, b)))

    @property
    def center_xy(self) -> tuple[float, float]:
        """Lateral centre ``(x, y)`` of the volume in voxels."""
        return (self.shape_zyx[2] - 1) / 2.0, (self.shape_zyx[1] - 1) / 2.0

    def z_at(self, abc: tuple[float, float, float], x: float, y: float) -> float:
        """Height of plane ``abc`` at ``(x, y)`` in voxels."""
        return abc[0] * x + abc[1] * y + abc[2]

    @property
    def thickness_px(self) -> float:
        """Thickness in voxels perpendicular to the mean plane, at the centre."""
        x, y = self.center_xy
        dz = self.z_at(self.top_abc, x, y) - self.z_at(self.bottom_abc, x, y)
        a = 0.5 * (self.top_abc[0] + self.bottom_abc[0])
        b = 0.5 * (self.top_abc[1] + self.bottom_abc[1])
        return dz / math.sqrt(1.0 + a * a + b * b)

    @property
    def angle_between_planes_deg(self) -> float:
        """Angle in degrees between the top and bottom planes' normals."""
        n1 = np.array([-self.top_abc[0], -self.top_abc[1], 1.0])
        n2 = np.array([-self.bottom_abc[0], -self.bottom_abc[1], 1.0])
        c = float(n1 @ n2 / (np.linalg.norm(n1) * np.linalg.norm(n2)))
        return math.degrees(math.acos(min(1.0, max(-1.0, c))))


def _bin_mean(vol: npt.NDArray[np.generic], s: int) -> npt.NDArray[np.float32]:
    """Block means over ``s^3`` blocks (trailing partial blocks dropped), z-chunked."""
    nz, ny, nx = (d // s for d in vol.shape)
    if min(nz, ny, nx) < 1:
        raise ConfigError(
            f"tomogram shape {vol.shape} is smaller than the bin factor {s}"
        )
    if s == 1:
        return np.asarray(vol, dtype=np.float32).copy()
    out = np.empty((nz, ny, nx), dtype=np.float32)
    step = max(1, 64 // s)
    for z0 in range(0, nz, step):
        z1 = min(nz, z0 + step)
        block = np.asarray(vol[z0 * s : z1 * s, : ny * s, : nx * s], dtype=np.float64)
        out[z0:z1] = block.reshape(z1 - z0, s, ny, s, nx, s).mean(axis=(1, 3, 5))
    return out


def _otsu(values: npt.NDArray[np.float64], bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=bins)
    centers = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between[:-1]))])


def _fit_plane_ls(pts: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    design = np.column_stack([pts[:, 0], pts[:, 1], np.ones(len(pts))])
    coef, *_ = np.linalg.lstsq(design, pts[:, 2], rcond=None)
    return np.asarray(coef, dtype=np.float64)


def _ransac_plane(
    pts: npt.NDArray[np.float64],
    tol: float,
    rng: np.random.Generator,
    n_trials: int = 512,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Robust ``z = a x + b y + c`` through ``pts`` ``(N, 3)`` as ``(x, y, z)``."""
    n = len(pts)
    idx = rng.integers(0, n, size=(n_trials, 3))
    tri = pts[idx]  # (T, 3, 3)
    design = np.concatenate([tri[:, :, :2], np.ones((n_trials, 3, 1))], axis=2)
    det = np.linalg.det(design)
    ok = np.abs(det) > 1e-9
    if not ok.any():
        coef = _fit_plane_ls(pts)
        return coef, np.ones(n, dtype=bool)
    sols = np.linalg.solve(design[ok], tri[ok][:, :, 2:3])[:, :, 0]  # (T', 3)
    pred = (
        sols[:, 0:1] * pts[None, :, 0] + sols[:, 1:2] * pts[None, :, 1] + sols[:, 2:3]
    )
    counts = (np.abs(pred - pts[None, :, 2]) <= tol).sum(axis=1)
    coef = sols[int(np.argmax(counts))]
    inliers = np.ones(n, dtype=bool)
    for _ in range(3):
        inliers = (
            np.abs(pts[:, 0] * coef[0] + pts[:, 1] * coef[1] + coef[2] - pts[:, 2])
            <= tol
        )
        if inliers.sum() < 3:
            break
        coef = _fit_plane_ls(pts[inliers])
    return coef, inliers


def fit_slab(
    tomogram: npt.NDArray[np.generic],
    *,
    bin_factor: int | None = None,
    box_z: int = 5,
    box_xy: int = 15,
    min_contrast: float = 1.5,
    min_columns_fraction: float = 0.2,
    min_inlier_fraction: float = 0.6,
    seed: int = 0,
) -> SlabFit:
    """Fit the lamella's top and bottom planes in a tomogram.

    Parameters
    ----------
    tomogram
        ``(z, y, x)`` volume (any real dtype; a memory map is read in z-chunks).
    bin_factor
        Block-mean binning before the analysis; default ``ceil(max(shape) / 256)``.
    box_z, box_xy
        Local-energy box in binned voxels along z and laterally.
    min_contrast
        Minimum ratio of the energy just inside a boundary to that just outside it
        for the boundary to count as observed.
    min_columns_fraction
        Minimum fraction of (y, x) columns that must see a boundary.
    min_inlier_fraction
        Minimum fraction of those columns whose boundary sample lies within
        ``1.5 * bin_factor`` voxels of the fitted plane.
    seed
        Seed of the RANSAC sampler (results are deterministic).

    Returns
    -------
    SlabFit
        Planes in voxels of the full tomogram.

    Raises
    ------
    ConfigError
        If the tomogram is not 3D, too small, constant, or a parameter is invalid.
    """
    if tomogram.ndim != 3:
        raise ConfigError(f"tomogram shape {tomogram.shape}: need a 3D volume")
    shape = tuple(int(d) for d in tomogram.shape)
    s = max(1, math.ceil(max(shape) / 256)) if bin_factor is None else int(bin_factor)
    if s < 1 or box_z < 1 or box_xy < 1:
        raise ConfigError("bin factor and box sizes must be >= 1")
    if not (min_contrast > 0 and math.isfinite(min_contrast)):
        raise ConfigError(
            f"--min-contrast {min_contrast!r}: must be a positive energy ratio "
            "(inside over outside the slab; default 1.5)"
        )
    if shape[0] < 4:
        # no --bin-factor helps: a 2-D image or a single section, not a tomogram
        raise ConfigError(
            f"tomogram shape {shape} (z, y, x): slab-mask needs a 3-D tomogram of "
            f"at least 4 z sections, this has {shape[0]}"
        )
    binned = _bin_mean(tomogram, s)
    nzb, nyb, nxb = binned.shape
    if nzb < 4:
        raise ConfigError(
            f"tomogram shape {shape} binned by {s} has only {nzb} z sections; "
            "use a smaller --bin-factor"
        )
    b64 = binned.astype(np.float64)
    if not np.all(np.isfinite(b64)) or b64.std() <= 1e-6 * max(1.0, abs(b64.mean())):
        raise ConfigError("tomogram is constant or not finite; cannot find a lamella")
    dog = scipy.ndimage.gaussian_filter(b64, 1.0) - scipy.ndimage.gaussian_filter(
        b64, 4.0
    )
    energy = scipy.ndimage.uniform_filter(
        dog * dog, size=(box_z, box_xy, box_xy), mode="nearest"
    )
    if not np.all(np.isfinite(energy)) or energy.max() <= 0:
        raise ConfigError("tomogram is constant or not finite; cannot find a lamella")
    log_e = np.log(np.maximum(energy, energy.max() * 1e-12))
    cut = _otsu(log_e.ravel())
    hi, lo = energy[log_e > cut], energy[log_e <= cut]
    if hi.size == 0 or lo.size == 0:
        raise ConfigError(
            "tomogram has no contrast between regions; cannot find a lamella"
        )
    v_in, v_out = float(np.median(hi)), float(np.median(lo))
    level = 0.5 * (v_in + v_out)
    inside = energy > level
    logger.debug("energy levels: lamella %.4g, vacuum %.4g", v_in, v_out)

    any_in = inside.any(axis=0)
    zi = np.arange(nzb)[:, None, None]
    k_top = np.where(inside, zi, -1).max(axis=0)
    k_bot = np.where(inside, zi, nzb).min(axis=0)
    yy, xx = np.meshgrid(np.arange(nyb), np.arange(nxb), indexing="ij")
    x_full = xx * s + (s - 1) / 2.0
    y_full = yy * s + (s - 1) / 2.0
    rng = np.random.default_rng(seed)
    n_cols = nyb * nxb
    face = {"top": nzb * s - 0.5, "bottom": -0.5}

    def boundary(which: str) -> tuple[tuple[float, float, float], bool]:
        if which == "top":
            usable = any_in & (k_top < nzb - 1)
            z_full = (k_top + 1) * s - 0.5
        else:
            usable = any_in & (k_bot > 0)
            z_full = k_bot * s - 0.5
        fallback = (0.0, 0.0, face[which])
        if usable.sum() < max(3, min_columns_fraction * n_cols):
            logger.warning(
                "slab-mask: no %s boundary visible (%d of %d columns); "
                "using the volume face",
                which,
                int(usable.sum()),
                n_cols,
            )
            return fallback, False
        pts = np.column_stack([x_full[usable], y_full[usable], z_full[usable]]).astype(
            np.float64
        )
        coef, inl = _ransac_plane(pts, tol=1.5 * s, rng=rng)
        # Contrast check: energy just inside vs just outside the fitted plane.
        zb = (coef[0] * x_full + coef[1] * y_full + coef[2] + 0.5) / s - 0.5  # binned z
        d = zi - zb[None]
        sign = -1.0 if which == "top" else 1.0
        near_in = (sign * d > box_z) & (sign * d <= 3 * box_z)
        near_out = (-sign * d > box_z) & (-sign * d <= 3 * box_z)
        if near_out.sum() < 0.1 * n_cols or near_in.sum() < 0.1 * n_cols:
            contrast = math.inf if near_out.sum() == 0 else 0.0
        else:
            contrast = float(
                np.median(energy[near_in]) / max(np.median(energy[near_out]), 1e-300)
            )
        logger.info(
            "slab-mask: %s plane z = %.4f x + %.4f y + %.2f "
            "(%d/%d inlier columns, contrast %.2f)",
            which,
            coef[0],
            coef[1],
            coef[2],
            int(inl.sum()),
            len(pts),
            contrast,
        )
        inlier_fraction = float(inl.mean())
        if not (contrast >= min_contrast and inlier_fraction >= min_inlier_fraction):
            logger.warning(
                "slab-mask: no clear %s boundary (contrast %.2f, need %.2f; %.0f%% of "
                "columns on the plane, need %.0f%%); using the volume face",
                which,
                contrast,
                min_contrast,
                100 * inlier_fraction,
                100 * min_inlier_fraction,
            )
            return fallback, False
        return (float(coef[0]), float(coef[1]), float(coef[2])), True

    top, top_ok = boundary("top")
    bottom, bottom_ok = boundary("bottom")
    return SlabFit(
        top_abc=top,
        bottom_abc=bottom,
        shape_zyx=(shape[0], shape[1], shape[2]),
        top_observed=top_ok,
        bottom_observed=bottom_ok,
    )


def fill_slab(fit: SlabFit, *, margin_px: float = 0.0) -> npt.NDArray[np.int8]:
    """0/1 int8 mask of voxel centres between the planes, widened by ``margin_px``.

    Parameters
    ----------
    fit
        Planes from :func:`fit_slab`.
    margin_px
        Added above the top and below the bottom plane along z (negative shrinks).

    Returns
    -------
    numpy.ndarray
        int8 ``(z, y, x)`` mask of ``fit.shape_zyx``.
    """
    nz, ny, nx = fit.shape_zyx
    y = np.arange(ny, dtype=np.float64)[:, None]
    x = np.arange(nx, dtype=np.float64)[None, :]
    top = fit.top_abc[0] * x + fit.top_abc[1] * y + fit.top_abc[2] + margin_px
    bot = fit.bottom_abc[0] * x + fit.bottom_abc[1] * y + fit.bottom_abc[2] - margin_px
    z = np.arange(nz, dtype=np.float64)[:, None, None]
    return ((z >= bot[None]) & (z <= top[None])).astype(np.int8)


def slab_mask(
    tomogram: npt.NDArray[np.generic],
    *,
    margin_px: float = 0.0,
    bin_factor: int | None = None,
    box_z: int = 5,
    box_xy: int = 15,
    min_contrast: float = 1.5,
    seed: int = 0,
) -> tuple[npt.NDArray[np.int8], SlabFit]:
    """Lamella mask of a tomogram: :func:`fit_slab` then :func:`fill_slab`.

    Parameters
    ----------
    tomogram
        ``(z, y, x)`` volume.
    margin_px
        Widening of the slab in voxels along z on both sides (negative shrinks).
    bin_factor, box_z, box_xy, min_contrast, seed
        As in :func:`fit_slab`.

    Returns
    -------
    mask, fit
        int8 0/1 ``(z, y, x)`` mask and the fitted planes.

    Raises
    ------
    ConfigError
        As :func:`fit_slab`; also if the mask would be empty.
    """
    if not math.isfinite(margin_px):
        raise ConfigError(f"margin {margin_px!r} voxels: must be finite")
    fit = fit_slab(
        tomogram,
        bin_factor=bin_factor,
        box_z=box_z,
        box_xy=box_xy,
        min_contrast=min_contrast,
        seed=seed,
    )
    mask = fill_slab(fit, margin_px=margin_px)
    if not mask.any():
        raise ConfigError(
            f"slab mask is empty (margin {margin_px} voxels, thickness "
            f"{fit.thickness_px:.1f} voxels); use a larger --margin"
        )
    logger.info(
        "slab-mask: thickness %.1f voxels, tilt top %.2f deg bottom %.2f deg, "
        "%.1f%% of voxels",
        fit.thickness_px,
        SlabFit.tilt_deg(fit.top_abc),
        SlabFit.tilt_deg(fit.bottom_abc),
        100.0 * float(mask.mean()),
    )
    return mask, fit
