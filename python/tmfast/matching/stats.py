"""Search statistics from per-voxel score sums, with the random-phase correction.

The statistics feed the false-alarm cutoff of extraction. They are taken only over
the *region of interest*: searched voxels inside the search region and the tomogram
mask (pytom-match-pick issue #332). With the random-phase correction the corrected
per-rotation score at a voxel is ``c_r = s_r - n + m`` (``n`` the voxel's noise
maximum, ``m`` the mean noise maximum over the region of interest), and the
statistics are those of ``c_r`` (pytom issue #350), computed exactly from the
per-voxel sums::

    sum_r c_r   = S1 + R (m - n)
    sum_r c_r^2 = S2 + 2 (m - n) S1 + R (m - n)^2
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

from tmfast.matching.job import SearchStats

__all__ = ["RoiSums", "noise_corrected_scores", "search_statistics"]


@dataclasses.dataclass
class RoiSums:
    """Scalar sums over the region of interest, enough for exact corrected statistics.

    With ``S1``, ``S2`` the per-voxel sums over rotations and ``n`` the voxel's noise
    maximum, summing the expansion above over voxels needs only ``sum S1``,
    ``sum S2``, ``sum n S1``, ``sum n`` and ``sum n^2``; so tiles are reduced to
    these numbers as they finish and no per-voxel sum map is kept for the whole
    tomogram.
    """

    n_voxels: int = 0
    s1: float = 0.0
    s2: float = 0.0
    noise_s1: float = 0.0
    noise1: float = 0.0
    noise2: float = 0.0

    def add(
        self,
        score_sum: npt.NDArray[np.float64] | None,
        score_sq_sum: npt.NDArray[np.float64] | None,
        roi: npt.NDArray[np.bool_],
        noise_scores: npt.NDArray[np.float32] | None = None,
        *,
        roi_score_sum: float = 0.0,
        roi_score_sq_sum: float = 0.0,
    ) -> None:
        """Add the voxels of ``roi`` (arrays of one shape).

        A sum may be given as a per-voxel array, as its total over ``roi``
        (``roi_score_sum`` / ``roi_score_sq_sum``, already reduced by a backend), or
        both (they add). The noise terms need ``score_sum`` per voxel.
        """
        self.n_voxels += int(np.count_nonzero(roi))
        s1 = None if score_sum is None else score_sum[roi].astype(np.float64)
        self.s1 += float(roi_score_sum) + (0.0 if s1 is None else float(s1.sum()))
        self.s2 += float(roi_score_sq_sum)
        if score_sq_sum is not None:
            self.s2 += float(score_sq_sum[roi].astype(np.float64).sum())
        if noise_scores is not None:
            if s1 is None or roi_score_sum != 0.0:
                raise ValueError(
                    "random-phase statistics need the per-voxel score sums"
                )
            n = noise_scores[roi].astype(np.float64)
            self.noise_s1 += float((n * s1).sum())
            self.noise1 += float(n.sum())
            self.noise2 += float((n * n).sum())

    def noise_mean(self) -> float:
        """Mean noise maximum over the region of interest (0 if empty)."""
        return self.noise1 / self.n_voxels if self.n_voxels else 0.0

    def statistics(self, n_rotations: int, *, corrected: bool) -> SearchStats:
        """Return the (random-phase corrected when ``corrected``) search statistics."""
        space = self.n_voxels * int(n_rotations)
        if space == 0:
            return SearchStats(search_space=0, variance=0.0, std=0.0, mean=0.0)
        total1, total2 = self.s1, self.s2
        if corrected:
            m, r, v = self.noise_mean(), float(n_rotations), float(self.n_voxels)
            # sum_voxels (m - n)^2 = sum n^2 - 2 m sum n + V m^2
            dd = max(self.noise2 - 2.0 * m * self.noise1 + v * m * m, 0.0)
            total2 = self.s2 + 2.0 * (m * self.s1 - self.noise_s1) + r * dd
            total1 = self.s1 + r * (v * m - self.noise1)
        variance = total2 / space
        return SearchStats(
            search_space=space,
            variance=variance,
            std=math.sqrt(max(variance, 0.0)),
            mean=total1 / space,
        )

    def to_array(self) -> npt.NDArray[np.float64]:
        """Pack for a checkpoint."""
        return np.array(
            [self.n_voxels, self.s1, self.s2, self.noise_s1, self.noise1, self.noise2],
            dtype=np.float64,
        )

    @classmethod
    def from_array(cls, a: npt.ArrayLike) -> RoiSums:
        """Inverse of :meth:`to_array`."""
        v = np.asarray(a, dtype=np.float64).tolist()
        return cls(int(v[0]), *v[1:])


def noise_corrected_scores(
    scores: npt.NDArray[np.float32],
    noise_scores: npt.NDArray[np.float32],
    roi: npt.NDArray[np.bool_] | None = None,
    *,
    noise_mean: float | None = None,
) -> tuple[npt.NDArray[np.float32], float]:
    """Return ``scores - noise + m`` and ``m``, the mean noise maximum over ``roi``.

    Give either ``roi`` or ``noise_mean``. Unsearched voxels (``-inf``) stay ``-inf``.
    """
    if noise_mean is None:
        assert roi is not None
        sel = roi & np.isfinite(noise_scores)
        m = float(noise_scores[sel].astype(np.float64).mean()) if sel.any() else 0.0
    else:
        m = float(noise_mean)
    with np.errstate(invalid="ignore"):  # -inf - -inf in unsearched voxels
        out = scores.astype(np.float64) - noise_scores + m
    out[~np.isfinite(scores)] = -np.inf
    return out.astype(np.float32), m


def search_statistics(
    score_sum: npt.NDArray[np.float64],
    score_sq_sum: npt.NDArray[np.float64],
    n_rotations: int,
    roi: npt.NDArray[np.bool_],
    *,
    noise_scores: npt.NDArray[np.float32] | None = None,
    noise_mean: float | None = None,
) -> SearchStats:
    """Return sigma (RMS about zero), mean and search space over ``roi`` x rotations.

    Parameters
    ----------
    score_sum, score_sq_sum
        Per-voxel ``sum_r s_r`` and ``sum_r s_r**2`` (float64).
    n_rotations
        ``R``, rotations per voxel.
    roi
        Boolean map of the voxels that count.
    noise_scores, noise_mean
        Per-voxel noise maximum ``n`` and its mean ``m``: the statistics are then
        those of the corrected scores ``s_r - n + m``.

    Returns
    -------
    SearchStats
        ``variance`` is the mean of the squared (corrected) scores, as
        pytom-match-pick (zero-mean background); ``mean`` is their mean.
    """
    n_vox = int(roi.sum())
    space = n_vox * int(n_rotations)
    if space == 0:
        return SearchStats(search_space=0, variance=0.0, std=0.0, mean=0.0)
    s1 = score_sum[roi].astype(np.float64)
    s2 = score_sq_sum[roi].astype(np.float64)
    if noise_scores is not None:
        m = float(noise_mean if noise_mean is not None else 0.0)
        d = m - noise_scores[roi].astype(np.float64)
        s2 = s2 + 2.0 * d * s1 + n_rotations * d * d
        s1 = s1 + n_rotations * d
    total1 = float(s1.sum())
    total2 = float(s2.sum())
    variance = total2 / space
    return SearchStats(
        search_space=space,
        variance=variance,
        std=math.sqrt(max(variance, 0.0)),
        mean=total1 / space,
    )
