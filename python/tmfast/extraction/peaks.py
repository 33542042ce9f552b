"""Greedy peak picking on score maps with a true spherical exclusion zone.

The picker runs in Rust (:func:`tmfast._rust.find_peaks`); this module validates the
input and wraps the result. :func:`numpy_reference_find_peaks` is the slow, obviously
correct numpy loop that defines the semantics; tests and the benchmark compare the two.

Semantics
---------
A voxel is a candidate unless its score is NaN, ``mask <= 0`` there, or it lies in the
border (index ``< border_vox`` or ``>= n - border_vox`` on any axis, as pytom zeroes
its border). Up to ``n_peaks`` times the candidate with the largest score is picked,
ties going to the smallest flat C-order index (``numpy.argmax``); picking stops when
no candidate is left, the best score is ``-inf`` or it is ``<= cutoff``. After each
pick every voxel whose squared Euclidean distance to it is ``<= r**2`` is removed
(pytom-match-pick removes a cube instead).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tmfast import _rust
from tmfast.errors import ConfigError

if TYPE_CHECKING:
    from tmfast.types import IntArray

__all__ = ["PeakList", "find_peaks", "numpy_reference_find_peaks"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeakList:
    """Picks in pick order (descending score).

    Attributes
    ----------
    positions_zyx : numpy.ndarray
        ``(N, 3)`` int64 voxel indices ``(z, y, x)`` into the score map.
    scores : numpy.ndarray
        ``(N,)`` float32 score of each pick.
    angle_indices : numpy.ndarray
        ``(N,)`` int64 angle index read from the angle map at each pick (row of the
        angle set); ``-1`` when no angle map was given.
    """

    positions_zyx: IntArray
    scores: npt.NDArray[np.float32]
    angle_indices: IntArray

    def __len__(self) -> int:
        """Return the number of picks."""
        return int(self.scores.shape[0])


_MaskArray = npt.NDArray[np.float32] | npt.NDArray[np.uint8] | npt.NDArray[np.int8]


def _validate(
    scores: npt.ArrayLike,
    n_peaks: int,
    exclusion_radius_vox: float,
    angle_map: npt.ArrayLike | None,
    cutoff: float | None,
    mask: npt.ArrayLike | None,
    border_vox: int,
) -> tuple[
    npt.NDArray[np.float32],
    _MaskArray | None,
    npt.NDArray[np.float32] | npt.NDArray[np.int32] | None,
]:
    arr = np.ascontiguousarray(scores, dtype=np.float32)
    if arr.ndim != 3:
        raise ConfigError(
            f"score map has shape {arr.shape}; pass a 3-D (z, y, x) array"
        )
    if isinstance(n_peaks, bool) or int(n_peaks) != n_peaks or n_peaks < 0:
        raise ConfigError(f"n_peaks={n_peaks!r} is invalid; pass an integer >= 0")
    r = float(exclusion_radius_vox)
    if not np.isfinite(r) or r < 0:
        raise ConfigError(
            f"exclusion_radius_vox={exclusion_radius_vox!r} is invalid; "
            "pass a finite radius >= 0 (voxels)"
        )
    if isinstance(border_vox, bool) or int(border_vox) != border_vox or border_vox < 0:
        raise ConfigError(
            f"border_vox={border_vox!r} is invalid; pass an integer >= 0 (voxels)"
        )
    if cutoff is not None and np.isnan(float(cutoff)):
        raise ConfigError("cutoff is NaN; pass a number or None")
    mask_arr: _MaskArray | None = None
    if mask is not None:
        raw_mask = np.asarray(mask)
        if raw_mask.dtype == np.bool_:
            mask_arr = np.ascontiguousarray(raw_mask).view(np.uint8)
        elif raw_mask.dtype in (np.uint8, np.int8, np.float32):
            mask_arr = np.ascontiguousarray(raw_mask)
        else:
            mask_arr = np.ascontiguousarray(raw_mask, dtype=np.float32)
        if mask_arr.shape != arr.shape:
            raise ConfigError(
                f"mask has shape {mask_arr.shape} but the score map has shape "
                f"{arr.shape}; pass a mask of the same (z, y, x) shape"
            )
    ang: npt.NDArray[np.float32] | npt.NDArray[np.int32] | None = None
    if angle_map is not None:
        raw = np.asarray(angle_map)
        if np.issubdtype(raw.dtype, np.integer):
            if raw.size and (
                raw.min() < np.iinfo(np.int32).min or raw.max() > np.iinfo(np.int32).max
            ):
                raise ConfigError("angle map values do not fit in int32")
            ang = np.ascontiguousarray(raw, dtype=np.int32)
        else:
            ang = np.ascontiguousarray(raw, dtype=np.float32)
        if ang.shape != arr.shape:
            raise ConfigError(
                f"angle map has shape {ang.shape} but the score map has shape "
                f"{arr.shape}; pass the angle map written with the scores"
            )
    return arr, mask_arr, ang


def find_peaks(
    scores: npt.ArrayLike,
    *,
    n_peaks: int,
    exclusion_radius_vox: float,
    angle_map: npt.ArrayLike | None = None,
    cutoff: float | None = None,
    mask: npt.ArrayLike | None = None,
    border_vox: int = 0,
) -> PeakList:
    """Pick up to ``n_peaks`` greedy maxima with a spherical exclusion zone.

    Parameters
    ----------
    scores : array_like
        ``(z, y, x)`` score map; converted to C-contiguous float32 (a copy only if it
        is not one already). Never modified.
    n_peaks : int
        Maximum number of picks (``>= 0``).
    exclusion_radius_vox : float
        After a pick, voxels with squared distance ``<= r**2`` (voxels) are removed.
    angle_map : array_like, optional
        ``(z, y, x)`` angle index map of the same shape, float32 (pytom style,
        rounded; non-finite gives ``-1``) or integer.
    cutoff : float, optional
        Stop once the best remaining score is ``<= cutoff``.
    mask : array_like, optional
        ``(z, y, x)`` tomogram mask of the same shape; voxels with ``mask <= 0`` are
        never picked. float32, int8, uint8 and bool masks are used without a copy;
        other dtypes are converted to float32.
    border_vox : int
        Voxels with index ``< border_vox`` or ``>= n - border_vox`` on any axis are
        never picked.

    Returns
    -------
    PeakList
        The picks, in descending score order.

    Raises
    ------
    ConfigError
        If an argument is out of range or the shapes differ.
    """
    arr, mask_arr, ang = _validate(
        scores, n_peaks, exclusion_radius_vox, angle_map, cutoff, mask, border_vox
    )
    ang_f32: npt.NDArray[np.float32] | None = None
    ang_i32: npt.NDArray[np.int32] | None = None
    if ang is not None and ang.dtype == np.int32:
        ang_i32 = ang.view(np.int32)
    elif ang is not None:
        ang_f32 = ang.view(np.float32)
    m_f32 = m_u8 = m_i8 = None
    if mask_arr is not None and mask_arr.dtype == np.uint8:
        m_u8 = mask_arr.view(np.uint8)
    elif mask_arr is not None and mask_arr.dtype == np.int8:
        m_i8 = mask_arr.view(np.int8)
    elif mask_arr is not None:
        m_f32 = mask_arr.view(np.float32)
    try:
        pos, sc, idx = _rust.find_peaks(
            arr,
            n_peaks=int(n_peaks),
            exclusion_radius_vox=float(exclusion_radius_vox),
            cutoff=None if cutoff is None else float(cutoff),
            mask=m_f32,
            mask_u8=m_u8,
            mask_i8=m_i8,
            angles_f32=ang_f32,
            angles_i32=ang_i32,
            border_vox=int(border_vox),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    logger.debug("picked %d peaks from a %s map", sc.shape[0], arr.shape)
    return PeakList(positions_zyx=pos, scores=sc, angle_indices=idx)


def numpy_reference_find_peaks(
    scores: npt.ArrayLike,
    *,
    n_peaks: int,
    exclusion_radius_vox: float,
    angle_map: npt.ArrayLike | None = None,
    cutoff: float | None = None,
    mask: npt.ArrayLike | None = None,
    border_vox: int = 0,
) -> PeakList:
    """Slow numpy oracle with the semantics of :func:`find_peaks`.

    Copies the map, sets excluded voxels to ``-inf``, then loops ``argmax`` and sets a
    sphere to ``-inf`` (sphere set on the bounding box only). Same parameters, return
    value and errors as :func:`find_peaks`.

    Parameters
    ----------
    scores : array_like
        ``(z, y, x)`` score map.
    n_peaks : int
        Maximum number of picks.
    exclusion_radius_vox : float
        Exclusion radius in voxels.
    angle_map : array_like, optional
        ``(z, y, x)`` angle index map.
    cutoff : float, optional
        Stop once the best score is ``<= cutoff``.
    mask : array_like, optional
        ``(z, y, x)`` mask; ``<= 0`` excluded.
    border_vox : int
        Border width in voxels.

    Returns
    -------
    PeakList
        The picks.

    Raises
    ------
    ConfigError
        If an argument is out of range or the shapes differ.
    """
    arr, mask_arr, ang = _validate(
        scores, n_peaks, exclusion_radius_vox, angle_map, cutoff, mask, border_vox
    )
    work = arr.copy()
    work[np.isnan(work)] = -np.inf
    if mask_arr is not None:
        work[mask_arr <= 0] = -np.inf
    b = int(border_vox)
    if b > 0:
        work[:b] = -np.inf
        work[-b:] = -np.inf
        work[:, :b] = -np.inf
        work[:, -b:] = -np.inf
        work[:, :, :b] = -np.inf
        work[:, :, -b:] = -np.inf
    r = float(exclusion_radius_vox)
    rr = int(min(np.floor(r), max(work.shape, default=0)))  # larger is irrelevant
    offs = np.arange(-rr, rr + 1)
    d2 = offs[:, None, None] ** 2 + offs[None, :, None] ** 2 + offs[None, None, :] ** 2
    ball = d2 <= r * r
    positions: list[tuple[int, int, int]] = []
    values: list[np.float32] = []
    angles: list[int] = []
    shape = work.shape
    while len(positions) < n_peaks and work.size:
        flat = int(np.argmax(work))
        v = work.flat[flat]
        if v == -np.inf or (cutoff is not None and v <= cutoff):
            break
        z, y, x = (int(c) for c in np.unravel_index(flat, shape))
        positions.append((z, y, x))
        values.append(v)
        if ang is None:
            angles.append(-1)
        else:
            a = ang[z, y, x]
            angles.append(int(np.round(a)) if np.isfinite(a) else -1)
        lo = [max(c - rr, 0) for c in (z, y, x)]
        hi = [min(c + rr + 1, n) for c, n in zip((z, y, x), shape, strict=True)]
        sub = ball[
            lo[0] - z + rr : hi[0] - z + rr,
            lo[1] - y + rr : hi[1] - y + rr,
            lo[2] - x + rr : hi[2] - x + rr,
        ]
        view = work[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        view[sub] = -np.inf
    return PeakList(
        positions_zyx=np.array(positions, dtype=np.int64).reshape(-1, 3),
        scores=np.array(values, dtype=np.float32),
        angle_indices=np.array(angles, dtype=np.int64),
    )
