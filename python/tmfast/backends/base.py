"""The narrow interface between the matching engine and a compute backend.

The engine (:mod:`tmfast.matching.engine`) prepares everything that is the same for
all backends on the CPU: reading, cropping and Fourier-filtering the tomogram
(sub)volume, building the template's Fourier weight, the angle set, and the noise
template. A backend then does the per-rotation work on its device:

1. rotate the template (and the mask when not spherical, clipped to [0, 1] after the
   rotation so it stays a weight) by each matrix, using cubic
   B-spline interpolation of the host-prefiltered coefficients
   (:func:`tmfast.geometry.interpolation.bspline_coefficients`; coefficients outside
   the box count as 0; exact sampling rule in :mod:`tmfast.geometry.interpolation`);
2. apply ``template_weight`` in Fourier space at box size; normalise under the mask
   (zero mask-weighted mean, unit mask-weighted variance, multiplied by the mask);
3. paste with the box centre (index ``N // 2``) at array index 0 of a zeroed volume
   (circular wrap), correlate with the tomogram by FFT, divide by ``N_M * sigma_local``;
4. keep, per voxel, the running maximum score and the index of the rotation that gave
   it (ties keep the smaller index), plus ``sum_r score`` and ``sum_r score**2`` in
   float64-equivalent precision for the search statistics (a backend may keep, for
   the voxels of ``stats_roi``, only their totals instead: see :class:`RunningMaps`);
5. with a noise template, do 1-3 for it too and keep its running maximum.

``sigma_local`` for a spherical mask is computed once in :meth:`prepare` and the
division is deferred to :meth:`finalize` (same maxima, one fewer pass per rotation);
for a non-spherical mask it is recomputed for each rotated mask.

Backends keep all state on the device between calls and synchronise with the host
only in :meth:`snapshot` and :meth:`finalize`.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import numpy.typing as npt

from tmfast.types import RotationMatrices, Volume

__all__ = ["CorrelationInputs", "MatchBackend", "RunningMaps"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class CorrelationInputs:
    """Everything a backend needs to search one (sub)volume.

    Attributes
    ----------
    tomogram
        ``(z, y, x)`` float32 (sub)volume, already Fourier-filtered and zero-padded to
        FFT-friendly sizes. Correlation is circular over this array.
    template
        ``(n, n, n)`` float32 template, not yet Fourier-weighted.
    mask
        ``(n, n, n)`` float32 mask in [0, 1] (soft edges allowed).
    template_weight
        ``(n, n, n // 2 + 1)`` float32 multiplier of ``rfftn(rotated_template)``
        (band-pass, wedge, CTF, dose, whitening), DC at index 0 (unshifted).
    mask_is_spherical
        If true the mask is not rotated and ``sigma_local`` is computed once.
    noise_template
        Optional ``(n, n, n)`` float32 phase-randomised template for the
        random-phase correction; treated exactly like ``template``.
    stats_roi
        Optional bool map (shape of ``tomogram``) of the voxels whose scores enter
        the search statistics (the tile's own voxels inside the tomogram mask). Given
        it, a backend may return totals over it instead of per-voxel sums
        (:class:`RunningMaps`); None: per-voxel sums are required.
    n_rotations
        Optional number of rotations the whole search scores (indices
        ``0 .. n_rotations - 1``). Given it, a backend may keep the angle map in
        fewer bits while searching (the CPU backend: 16 for at most 65,535 rotations,
        plus one bit plane per further index bit for larger searches);
        :class:`RunningMaps` always carries int32.
    """

    tomogram: Volume
    template: Volume
    mask: Volume
    template_weight: npt.NDArray[np.float32]
    mask_is_spherical: bool = True
    noise_template: Volume | None = None
    stats_roi: npt.NDArray[np.bool_] | None = None
    n_rotations: int | None = None


@dataclasses.dataclass(kw_only=True)
class RunningMaps:
    """The per-voxel running results over the rotations scored so far.

    All arrays have the shape of :attr:`CorrelationInputs.tomogram`.

    Attributes
    ----------
    scores
        float32 maximum FLCF over rotations (``-inf`` before any rotation).
    angles
        int32 index (into the job's angle set) of the rotation giving ``scores``;
        -1 before any rotation.
    score_sum, score_sq_sum
        float64 ``sum_r score_r`` and ``sum_r score_r**2`` per voxel, or None when
        the backend kept only their totals over ``stats_roi``.
    noise_scores
        float32 running maximum of the noise template's FLCF, or None.
    n_rotations_done
        Number of rotations folded in.
    roi_score_sum, roi_score_sq_sum
        Totals over the voxels of :attr:`CorrelationInputs.stats_roi` of the sums not
        held in the per-voxel arrays. The statistics' sums over the region of
        interest are always ``score_sum[roi].sum() + roi_score_sum`` (array term 0
        when None), and likewise for the squares, so maps can be merged and resumed
        whichever way each backend keeps its sums. With a noise template
        ``score_sum`` must be per voxel (the corrected statistics weight it by the
        voxel's noise maximum).
    """

    scores: npt.NDArray[np.float32]
    angles: npt.NDArray[np.int32]
    score_sum: npt.NDArray[np.float64] | None
    score_sq_sum: npt.NDArray[np.float64] | None
    noise_scores: npt.NDArray[np.float32] | None
    n_rotations_done: int
    roi_score_sum: float = 0.0
    roi_score_sq_sum: float = 0.0

    @classmethod
    def empty(cls, shape_zyx: tuple[int, ...], *, with_noise: bool) -> RunningMaps:
        """Return the state before any rotation."""
        return cls(
            scores=np.full(shape_zyx, -np.inf, dtype=np.float32),
            angles=np.full(shape_zyx, -1, dtype=np.int32),
            score_sum=np.zeros(shape_zyx, dtype=np.float64),
            score_sq_sum=np.zeros(shape_zyx, dtype=np.float64),
            noise_scores=(
                np.full(shape_zyx, -np.inf, dtype=np.float32) if with_noise else None
            ),
            n_rotations_done=0,
        )


class MatchBackend(Protocol):
    """One compute device searching one (sub)volume at a time.

    Use as ``prepare`` -> ``score_rotations`` (any number of batches) ->
    ``finalize``; ``snapshot`` may be called between batches (checkpointing);
    ``close`` frees device memory.
    """

    #: ``"cpu"``, ``"cuda"`` or ``"opencl"``.
    name: str

    def prepare(
        self, inputs: CorrelationInputs, *, resume_from: RunningMaps | None = None
    ) -> None:
        """Upload inputs, build FFT plans and buffers, start from ``resume_from``."""
        ...

    def score_rotations(self, first_index: int, matrices: RotationMatrices) -> None:
        """Score rotations ``first_index .. first_index + len(matrices) - 1``.

        ``matrices`` is ``(B, 3, 3)`` float64, active rotations on ``(x, y, z)``.
        """
        ...

    def snapshot(self) -> RunningMaps:
        """Return a host copy of the running maps (normalised, like finalize)."""
        ...

    def finalize(self) -> RunningMaps:
        """Return the final maps (normalised by sigma_local) and release the job."""
        ...

    def close(self) -> None:
        """Free all device resources; the backend may be prepared again."""
        ...
