"""The CPU reference backend: numpy + ``scipy.fft`` (multi-threaded).

It implements :class:`tmfast.backends.base.MatchBackend` exactly as described in
:mod:`tmfast.backends.base` and is the oracle the GPU backends are tested against.

Implementation notes (results are identical to the textbook pipeline up to float
rounding):

- **Pasting.** The normalised template ``T'`` is pasted at array indices ``0 .. n-1``
  (not wrapped around index 0), which lets the forward volume FFT skip the all-zero
  rows and planes (a pruned 3-D FFT, :mod:`tmfast.backends._cpu_fft`). The
  correlation ``irfftn(F(V) * conj(F(T'_pad)))`` at index ``i`` is then the score
  of output voxel ``i + N//2`` (circularly), so the running maps are kept in that
  shifted frame and rolled by ``N//2`` when handed out
  (:meth:`snapshot`, :meth:`finalize`). Rolling is a permutation, so resuming from a
  snapshot is exact.
- **Normalisation.** ``1 / (N_M * sigma_local)`` is multiplied into each rotation's map
  before the running maximum (one cheap pass on the CPU), so the running maps are
  always normalised and :meth:`snapshot` / ``resume_from`` round-trip bit for bit.
  ``sigma_local`` for a spherical mask is computed once. The volume is standardised
  first (FLCF is invariant to an offset and a scale of the whole circular array), so
  float32 FFTs keep the local moments accurate; where the local variance is
  ``<= 1e-4 * (local mean square + 1)`` sigma is set to 1. pytom-match-pick uses an
  absolute 1e-18, but below that relative floor ``E[V^2] - E[V]^2`` is FFT rounding
  noise, which gave |FLCF| up to 6 in flat, filtered regions (a region 100x flatter
  than the volume's average variance is treated as empty).
- **Per rotation** (all buffers private to the backend, allocated in :meth:`prepare`):
  the template is rotated by the Rust B-spline sampler
  (:func:`tmfast.geometry.interpolation.rotate_bspline_many`, the maths of
  ``rotate_volume``; with its noise template and rotated mask in the same pass),
  weighted and normalised on the box, transformed by the pruned forward FFT into a
  persistent complex work buffer, multiplied by ``F(V)`` in place
  (``tmfast._rust.conj_multiply``), inverse transformed along z and y *in that
  buffer* and folded into the running maps by one fused, multi-threaded Rust pass
  (``tmfast._rust.fold_rotations(..., half_spectrum=True)``: the inverse's last,
  real stage along x row by row (``tmfast::rowfft``), normalisation, maximum and
  index, sums, noise maximum), so the real correlation never goes through memory.
  The GIL is released in the Rust kernels; they only touch these private arrays.
  FFTs use ``workers`` = the CPUs this process may use (its affinity: a SLURM
  task's cores) threads, the Rust kernels rayon's pool (which also respects it).
- **FFT engine** (:mod:`tmfast.backends._cpu_fft`): FFTW through pyFFTW when it is
  installed (``pip install 'tmfast[fftw]'``; planned once per buffer slot, in place, no
  allocation per rotation), else ``scipy.fft``; ``fft="scipy"`` forces the reference.
  Neither engine's inverse is normalised (nor is the fold's row stage), so
  ``1/(Z*Y*X)`` is folded into the volume spectra once in :meth:`prepare`. Both
  engines agree to float32 rounding (``tests/test_backends_cpu_fft.py``).
- **Memory.** One rotation costs one complex half-spectrum (about the tomogram's
  float32 size), two with a rotated mask: the template's correlation, the noise
  template's and the rotated mask's ``sum_M V^2`` pass through one buffer in turn, and
  ``sum_M V`` is turned into the denominators ``N_M sigma`` in place in the other
  (``tmfast._rust.local_denominators``; the noise maxima are folded by
  ``tmfast._rust.fold_noise_max``). The real-space tomogram is not kept. Rotations are
  processed in sub-batches sized to ``max_batch_bytes`` (default 32 MiB: one at a time
  at production sizes). The running maps are the float32 maximum, the rotation index
  (uint16, with one bit plane per index bit above 16 when
  ``CorrelationInputs.n_rotations`` exceeds 65,535, e.g. 4 planes for the 3-degree
  set's 576,000; int32 when the count is not given; int32 in every
  :class:`RunningMaps` handed out), the noise maximum with a noise template
  and, only when the engine asks for per-voxel sums or with a noise template
  (``sum_r s`` then), the per-voxel score sums (float32 by default); otherwise the
  sums are totalled over the statistics' region of interest, held as one bit per
  voxel, during the fold (``tmfast._rust.fold_rotations(..., roi=)``). Peak memory
  per variant: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft

from tmfast import _rust
from tmfast._cpus import usable_cpu_count
from tmfast.backends._cpu_fft import (
    PLANNERS,
    Planner,
    ScipyVolumeFft,
    VolumeFft,
    adopt_fftw_wisdom,
    fftw_available,
    fftw_wisdom,
    make_volume_fft,
)
from tmfast.backends.base import CorrelationInputs, RunningMaps
from tmfast.errors import ConfigError
from tmfast.geometry.interpolation import bspline_coefficients, rotate_bspline_many
from tmfast.types import RotationMatrices

__all__ = ["PATIENT_MIN_ROTATIONS", "CpuBackend"]

logger = logging.getLogger(__name__)

#: Searches of at least this many rotations plan FFTW with ``FFTW_PATIENT`` under
#: ``fft_planner="auto"``: about 2.5 ms saved per rotation on 256x256x128 (2 cores)
#: pays for its ~60 s of planning within the first such search; later runs of the
#: shape read the plans from the wisdom cache.
PATIENT_MIN_ROTATIONS = 20_000

#: Local variances below this fraction of (local mean square + 1), the volume being
#: standardised to unit mean square, are float32 FFT rounding noise of
#: E[V^2] - E[V]^2: sigma is taken as 1 there, as pytom does for var <= 1e-18.
_VAR_REL_FLOOR = 1e-4


def _roll3(a: np.ndarray, shift: int, dtype: npt.DTypeLike | None = None) -> np.ndarray:
    """``np.roll`` by ``shift`` on all three axes into a new array of ``dtype``
    (cast while copying: no intermediate copy)."""
    out = np.empty(a.shape, dtype=a.dtype if dtype is None else dtype)
    spans = []
    for n in a.shape:
        k = shift % n
        # (source slice, destination slice) pairs of a roll by k along one axis
        spans.append([(slice(0, n - k), slice(k, n)), (slice(n - k, n), slice(0, k))])
    for (sz, dz), (sy, dy), (sx, dx) in itertools.product(*spans):
        out[dz, dy, dx] = a[sz, sy, sx]
    return out


@dataclasses.dataclass
class _Maps:
    """The backend's private running maps, in the shifted frame; the sums are float32
    or float64 here (always float64 in the :class:`RunningMaps` handed out)."""

    scores: npt.NDArray[np.float32]
    #: int32, or uint16 (65535: none yet) for searches of at most 65,535 rotations;
    #: for larger searches uint16 plus :attr:`angle_high`
    angles: npt.NDArray[np.int32] | npt.NDArray[np.uint16]
    score_sum: npt.NDArray[np.floating] | None
    score_sq_sum: npt.NDArray[np.floating] | None
    noise_scores: npt.NDArray[np.float32] | None
    n_rotations_done: int
    #: totals over the region of interest of the sums not kept per voxel (float64)
    roi_score_sum: float = 0.0
    roi_score_sq_sum: float = 0.0
    #: with uint16 ``angles``, the index bits above 16: ``(planes, ceil(nvox / 8))``
    #: uint8, plane ``j`` holding bit ``16 + j`` of each voxel's index as
    #: ``numpy.packbits(..., bitorder="little")`` (every bit set: none yet)
    angle_high: npt.NDArray[np.uint8] | None = None


#: "No rotation yet" in a uint16 angle map (the Rust fold's marker): searches of at
#: most 65,535 rotations need no bit planes.
_U16_NONE = np.uint16(65535)
#: Most bit planes above a uint16 angle map (the Rust fold's limit); searches beyond
#: ``2**31 - 1`` rotations are not possible anyway.
_MAX_HIGH_PLANES = 15


def _high_planes(n_rotations: int) -> int:
    """Bit planes above 16 bits for indices ``0 .. n_rotations - 1``, every bit set
    being kept for "none yet"."""
    planes = 0
    while (1 << (16 + planes)) - 2 < n_rotations - 1:
        planes += 1
    return planes


def _angles_out(
    a: np.ndarray, shift: int, high: np.ndarray | None = None
) -> npt.NDArray[np.int32]:
    """The private angle map (and its high bit planes) rolled by ``shift`` as int32,
    "none yet" as -1."""
    out = _roll3(a, shift, np.int32)
    if a.dtype != np.uint16:
        return out
    none = int(_U16_NONE)
    if high is not None:
        for j, plane in enumerate(high):
            bits = np.unpackbits(plane, count=a.size, bitorder="little")
            on = _roll3(bits.reshape(a.shape), shift).view(np.bool_)
            del bits
            out[on] |= np.int32(1 << (16 + j))
            del on
        none = (1 << (16 + len(high))) - 1
    out[out == none] = -1
    return out


def _empty_maps(
    shape_zyx: tuple[int, ...],
    *,
    angle_dtype: npt.DTypeLike,
    with_noise: bool,
    sum_dtype: npt.DTypeLike,
    keep_sum: bool,
    keep_sq_sum: bool,
    high_planes: int = 0,
) -> _Maps:
    # np.full, not np.zeros: written now, not page-faulted in the first rotation
    def zeros(keep: bool) -> np.ndarray | None:
        return np.full(shape_zyx, 0.0, dtype=sum_dtype) if keep else None

    return _Maps(
        scores=np.full(shape_zyx, -np.inf, dtype=np.float32),
        angles=(
            np.full(shape_zyx, _U16_NONE, dtype=np.uint16)
            if np.dtype(angle_dtype) == np.uint16
            else np.full(shape_zyx, -1, dtype=np.int32)
        ),
        score_sum=zeros(keep_sum),
        score_sq_sum=zeros(keep_sq_sum),
        noise_scores=(
            np.full(shape_zyx, -np.inf, dtype=np.float32) if with_noise else None
        ),
        n_rotations_done=0,
        angle_high=(
            np.full(
                (high_planes, (int(np.prod(shape_zyx)) + 7) // 8), 0xFF, dtype=np.uint8
            )
            if high_planes
            else None
        ),
    )


class CpuBackend:
    """Numpy/scipy implementation of :class:`~tmfast.backends.base.MatchBackend`.

    Parameters
    ----------
    workers
        FFT threads; default: the CPUs this process may use (its affinity mask).
    max_batch_bytes
        Memory budget for one sub-batch of volume-size FFT buffers (at least one
        rotation is done at a time; batching only pays for small volumes).
    float32_sums
        Keep the per-voxel ``score_sum`` / ``score_sq_sum`` in float32 while
        searching (handed out as float64 as always). Each rotation's score is added
        with one float32 rounding: the search sigma agrees with float64 sums to a
        few 1e-6 relative over thousands of rotations (``tests/test_backends_cpu.py``).
        Default True; False gives float64 sums, bit-identical to
        ``s += float64(score)`` per rotation. Given ``CorrelationInputs.stats_roi``
        (the engine always gives it unless per-voxel sums are asked for), no per-voxel
        sum of squares is kept at all, nor a sum without a noise template: their
        totals over the region are accumulated rotation by rotation (``sum s`` in
        float64, ``sum s^2`` from float32 squares totalled in float64 every 64
        voxels: within 1e-7 relative), so they do not depend on the batching and
        resume bit for bit.
    fft
        Volume FFT engine: ``"auto"`` (FFTW via pyFFTW when installed, else
        scipy), ``"scipy"`` (the reference) or ``"fftw"``.
    fft_planner
        FFTW planning: ``"measure"`` (plans timed once per volume shape and machine,
        then kept in a wisdom cache so later and resumed runs use the same plans and
        reproduce bit for bit; see :mod:`tmfast.backends._cpu_fft`), ``"patient"``
        (more algorithms tried, cached the same way: about 2.5 ms less per rotation
        on 256x256x128 with 2 cores for about 60 s of planning, once per machine and
        shape), ``"estimate"`` (no timing, no cache; about 30% slower inverse FFTs)
        or ``"auto"`` (default): ``"patient"`` for searches of at least
        :data:`PATIENT_MIN_ROTATIONS` rotations (``CorrelationInputs.n_rotations``),
        where even a first run gains about as much as it plans, else
        ``"measure"``; after :meth:`adopt_plan_state` (resuming) ``"measure"``,
        which FFTW serves from the adopted plans whatever rigour made them.
    """

    name = "cpu"

    def __init__(
        self,
        *,
        workers: int | None = None,
        max_batch_bytes: int = 32 * 2**20,
        float32_sums: bool = True,
        fft: str = "auto",
        fft_planner: str = "auto",
    ) -> None:
        self.workers = workers or usable_cpu_count()
        if fft not in ("auto", "scipy", "fftw"):
            raise ConfigError(f"cpu backend fft={fft!r}: choose auto, scipy or fftw")
        if fft_planner not in ("auto", *PLANNERS):
            raise ConfigError(
                f"cpu backend fft_planner={fft_planner!r}: choose "
                + ", ".join(("auto", *PLANNERS))
            )
        self.fft = fft
        self.fft_planner = fft_planner
        self._fft: VolumeFft | None = None
        self.max_batch_bytes = int(max_batch_bytes)
        self._sum_dtype = np.float32 if float32_sums else np.float64
        self._buffers: dict[str, np.ndarray] = {}
        self._inputs: CorrelationInputs | None = None
        self._maps: _Maps | None = None
        self._adopted_plans = False

    # ------------------------------------------------------------------ setup
    def prepare(
        self, inputs: CorrelationInputs, *, resume_from: RunningMaps | None = None
    ) -> None:
        """Compute the tomogram spectra, the spline coefficients and ``sigma_local``.

        Raises
        ------
        ConfigError
            If the shapes are inconsistent or the mask is empty.
        """
        vol = np.ascontiguousarray(inputs.tomogram, dtype=np.float32)
        tmpl = np.asarray(inputs.template, dtype=np.float32)
        mask = np.asarray(inputs.mask, dtype=np.float32)
        if vol.ndim != 3 or tmpl.ndim != 3 or len(set(tmpl.shape)) != 1:
            raise ConfigError(
                f"backend inputs: tomogram {vol.shape} must be 3-D and template "
                f"{tmpl.shape} cubic"
            )
        if mask.shape != tmpl.shape:
            raise ConfigError(
                f"backend inputs: mask box {mask.shape} differs from template box "
                f"{tmpl.shape}"
            )
        n = tmpl.shape[0]
        if any(n > s for s in vol.shape):
            raise ConfigError(
                f"backend inputs: template box {n} exceeds the volume {vol.shape}"
            )
        if inputs.template_weight.shape != (n, n, n // 2 + 1):
            raise ConfigError(
                f"backend inputs: template weight {inputs.template_weight.shape} "
                f"must be {(n, n, n // 2 + 1)}"
            )
        if inputs.noise_template is not None and np.shape(inputs.noise_template) != (
            n,
            n,
            n,
        ):
            raise ConfigError(
                f"backend inputs: noise template box {np.shape(inputs.noise_template)} "
                f"differs from the template box {tmpl.shape}"
            )
        if float(mask.sum()) <= 0.0:
            raise ConfigError("backend inputs: the mask is empty (sum <= 0)")
        self.close()
        self._inputs = None  # not kept: the engine owns the tile
        self._shape = vol.shape
        self._n = n
        self._c = n // 2
        self._weight = np.asarray(inputs.template_weight, dtype=np.float32)
        self._mask = mask
        self._spherical = bool(inputs.mask_is_spherical)
        self._with_noise = inputs.noise_template is not None
        # the spline coefficients of the boxes rotated together, interleaved
        # (z, y, x, k): template, then the noise template, then the mask
        boxes = [tmpl]
        if inputs.noise_template is not None:
            boxes.append(np.asarray(inputs.noise_template, dtype=np.float32))
        if not self._spherical:
            boxes.append(mask)
        self._coeffs = np.stack([bspline_coefficients(v) for v in boxes], axis=-1)
        w = self.workers
        planner = self._planner(inputs.n_rotations)
        if planner == "patient" and self.fft_planner == "auto":
            logger.info(
                "cpu backend: FFTW plans with FFTW_PATIENT for a %d-rotation search "
                "(a new volume shape takes up to a few minutes, once per machine; "
                "later runs read the plans from the wisdom cache)",
                inputs.n_rotations,
            )
        self._fft = make_volume_fft(self.fft, self._shape, n, w, planner)
        # FLCF is exactly invariant to V -> (V - k) / s over the whole (circular)
        # array, so standardise it: float32 local moments are then well conditioned.
        vol = vol - np.float32(vol.mean(dtype=np.float64))
        sd = float(vol.std(dtype=np.float64))
        if sd > 0:
            vol /= np.float32(sd)
        self._fv = sfft.rfftn(vol, workers=w)
        if self._spherical:
            # sigma_local once; var below the floor -> sigma 1 (see module docstring)
            fm = ScipyVolumeFft(self._shape, n, w).padded_rfft(
                mask[None],
                np.zeros((1, *self._fv.shape), dtype=np.complex64),
            )[0]
            np.conjugate(fm, out=fm)
            n_m = float(mask.sum(dtype=np.float64))
            # the real-space volume is not kept: V^2 in place, then dropped
            np.multiply(vol, vol, out=vol)
            fv2 = sfft.rfftn(vol, workers=w)
            del vol
            fv2 *= fm
            var = sfft.irfftn(fv2, s=self._shape, workers=w, overwrite_x=True)
            del fv2
            mean = sfft.irfftn(
                self._fv * fm, s=self._shape, workers=w, overwrite_x=True
            )
            del fm
            mean /= np.float32(n_m)
            var /= np.float32(n_m)  # E[V^2] for now
            # the volume is standardised: its mean square over the array is 1
            floor = (var + np.float32(1.0)) * np.float32(_VAR_REL_FLOOR)
            mean *= mean
            var -= mean
            del mean
            ok = var > floor
            del floor
            np.sqrt(var, out=var, where=ok)
            var[~ok] = 1.0
            var *= np.float32(n_m)
            np.reciprocal(var, out=var)
            self._inv_norm: npt.NDArray[np.float32] | None = var
            self._fv2: npt.NDArray[np.complex64] | None = None
        else:
            self._inv_norm = None
            np.multiply(vol, vol, out=vol)
            self._fv2 = sfft.rfftn(vol, workers=w)
            del vol
        if self._fft.inverse_scale != 1.0:
            # the engine's inverse is unnormalised: normalise the volume spectra once
            scale = np.float32(1.0 / self._fft.inverse_scale)
            self._fv *= scale
            if self._fv2 is not None:
                self._fv2 *= scale
        with_noise = self._with_noise
        # Given the statistics' region of interest, the sums are totalled over it
        # during the fold instead of kept per voxel (2x the tomogram less memory and
        # traffic), except sum_r s with a noise template: the corrected statistics
        # weight it by each voxel's noise maximum, known only at the end.
        if inputs.stats_roi is None:
            self._roi: npt.NDArray[np.uint8] | None = None
        else:
            if inputs.stats_roi.shape != self._shape:
                raise ConfigError(
                    f"backend inputs: stats_roi {inputs.stats_roi.shape} differs from "
                    f"the volume {self._shape}"
                )
            # one bit per voxel (the Rust fold's layout): 1/32 of the volume's size
            self._roi = np.packbits(
                _roll3(np.asarray(inputs.stats_roi), -self._c, np.bool_),
                bitorder="little",
            )
        # 16-bit angle indices (half the map's memory), with bit planes for the
        # index bits above 16 in searches of more than 65,535 rotations (4 planes,
        # 1/8 of the map's float32 size, for the 3-degree set's 576,000)
        n_rot = inputs.n_rotations
        self._high_planes = 0 if n_rot is None else _high_planes(int(n_rot))
        self._angle_dtype = (
            np.uint16
            if n_rot is not None and self._high_planes <= _MAX_HIGH_PLANES
            else np.int32
        )
        if self._angle_dtype == np.int32:
            self._high_planes = 0
        self._keep_sum = self._roi is None or with_noise
        self._keep_sq_sum = self._roi is None
        if resume_from is None:
            self._maps = _empty_maps(
                self._shape,
                angle_dtype=self._angle_dtype,
                with_noise=with_noise,
                sum_dtype=self._sum_dtype,
                keep_sum=self._keep_sum,
                keep_sq_sum=self._keep_sq_sum,
                high_planes=self._high_planes,
            )
        else:
            self._maps = self._from_external(resume_from, with_noise=with_noise)
        # bytes per rotation in a sub-batch: one complex spectrum buffer (the inverse
        # FFT runs in it; the template's, the noise template's and the rotated mask's
        # sum_M V^2 pass through it in turn), one more for a rotated mask (sum_M V,
        # then the denominators N_M sigma)
        per = self._fv.nbytes * (1 if self._spherical else 2)
        self._sub_batch = int(
            max(1, min(self._fft.max_batch, self.max_batch_bytes // per))
        )
        # the work buffers of a full sub-batch, allocated (and touched) here
        self._buffer("t", self._sub_batch)
        if not self._spherical:
            self._buffer("m", self._sub_batch)
        logger.debug(
            "cpu backend: volume %s, box %d, spherical=%s, noise=%s, sub-batch %d, "
            "fft %s",
            self._shape,
            n,
            self._spherical,
            with_noise,
            self._sub_batch,
            self._fft.name,
        )

    def _from_external(self, maps: RunningMaps, *, with_noise: bool) -> _Maps:
        if maps.scores.shape != self._shape:
            raise ConfigError(
                f"resume maps have shape {maps.scores.shape}, volume is {self._shape}"
            )
        if (maps.noise_scores is not None) != with_noise:
            raise ConfigError(
                "resume maps and inputs disagree about the noise template"
            )
        c = -self._c
        totals = [float(maps.roi_score_sum), float(maps.roi_score_sq_sum)]
        sums: list[np.ndarray | None] = []
        for k, (given, keep) in enumerate(
            (
                (maps.score_sum, self._keep_sum),
                (maps.score_sq_sum, self._keep_sq_sum),
            )
        ):
            if keep:  # per voxel; a given total stays a total
                sums.append(
                    np.full(self._shape, 0.0, self._sum_dtype)
                    if given is None
                    else _roll3(np.asarray(given), c, self._sum_dtype)
                )
                continue
            sums.append(None)
            if given is not None:  # reduce it over the region of interest
                assert self._roi is not None
                rolled = _roll3(np.asarray(given), c, np.float64)
                inside = np.unpackbits(
                    self._roi, count=rolled.size, bitorder="little"
                ).view(np.bool_)
                totals[k] += float(rolled.reshape(-1)[inside].sum())
        if with_noise and (sums[0] is None or totals[0] != 0.0):
            raise ConfigError(
                "resume maps hold the score sum as a total; a random-phase search "
                "needs it per voxel: rerun without the checkpoint"
            )
        angles, angle_high = self._angles_in(np.asarray(maps.angles), c)
        return _Maps(
            scores=_roll3(np.asarray(maps.scores), c, np.float32),
            angles=angles,
            angle_high=angle_high,
            score_sum=sums[0],
            score_sq_sum=sums[1],
            noise_scores=(
                None
                if maps.noise_scores is None
                else _roll3(np.asarray(maps.noise_scores), c, np.float32)
            ),
            n_rotations_done=int(maps.n_rotations_done),
            roi_score_sum=totals[0],
            roi_score_sq_sum=totals[1],
        )

    # --------------------------------------------------------------- helpers
    def _angles_in(
        self, angles: np.ndarray, shift: int
    ) -> tuple[np.ndarray, npt.NDArray[np.uint8] | None]:
        """A handed-in int32 angle map (-1: none yet) rolled by ``shift`` into this
        search's angle map: int32, or uint16 and its high bit planes (or None)."""
        if self._angle_dtype == np.int32:
            return _roll3(angles, shift, np.int32), None
        planes = self._high_planes
        top = (1 << (16 + planes)) - 2
        if angles.size and (int(angles.max()) > top or int(angles.min()) < -1):
            raise ConfigError(
                f"resume maps hold rotation indices {int(angles.min())} .. "
                f"{int(angles.max())}, outside -1 .. {top} (this search's "
                f"{16 + planes}-bit angle map): rerun without the checkpoint"
            )
        if not planes:
            # int32 -> uint16 while copying wraps -1 to 65535, the uint16 "none yet"
            return _roll3(angles, shift, np.uint16), None
        full = _roll3(angles, shift, np.int32)
        high = np.empty((planes, (full.size + 7) // 8), dtype=np.uint8)
        for j in range(planes):
            # -1 (none yet) has every bit set, as the fold's marker
            bits = ((full >> (16 + j)) & 1).astype(np.bool_)
            high[j] = np.packbits(bits.reshape(-1), bitorder="little")
            del bits
        return full.astype(np.uint16), high

    def _planner(self, n_rotations: int | None) -> Planner:
        """The FFTW planner for a search of ``n_rotations`` (see ``fft_planner``)."""
        if self.fft_planner != "auto":
            return self.fft_planner  # type: ignore[return-value]
        if self._adopted_plans:  # resuming: exactly the plans of the checkpoint
            return "measure"
        if n_rotations is not None and n_rotations >= PATIENT_MIN_ROTATIONS:
            return "patient"
        return "measure"

    def _buffer(self, role: str, count: int) -> np.ndarray:
        """A private ``(count, Z, Y, X//2+1)`` complex64 work buffer, kept between
        batches (no page faults of a fresh volume-size allocation per rotation)."""
        assert self._fft is not None
        buf = self._buffers.get(role)
        if buf is None or buf.shape[0] < count:
            self._buffers.pop(role, None)
            del buf
            buf = self._fft.spectrum_buffer(count)  # zeroed: pages touched now
            self._buffers[role] = buf
        return buf[:count]

    def _weighted(self, boxes: np.ndarray) -> np.ndarray:
        """The boxes Fourier-weighted (on the box grid, by the FFT engine)."""
        assert self._fft is not None
        return self._fft.box_weighted(boxes, self._weight)

    @staticmethod
    def _normalise(boxes: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """``M (T - mu) / sigma_T`` with mask-weighted moments, per box: float32
        products, float64 sums, two passes (Rust; ``masks`` is one mask or one per
        box). Not numpy's ``np.dot``: a BLAS call leaves OpenBLAS's threads spinning
        for ~0.1 s, which took one of two cores from the FFTs (loop 1.45x slower)."""
        b = np.ascontiguousarray(boxes, dtype=np.float32)
        out = np.empty(b.shape, dtype=np.float32)
        _rust.normalise_under_mask(
            b, np.ascontiguousarray(masks, dtype=np.float32), out
        )
        return out

    # ------------------------------------------------------------ plan state
    def _uses_fftw(self) -> bool:
        return self.fft != "scipy" and fftw_available() is None

    def plan_state(self) -> tuple[str, ...]:
        """What decides this backend's rounding beyond its inputs: FFTW's wisdom when
        FFTW is the engine (checkpoints keep it), else ``()``."""
        return fftw_wisdom() if self._uses_fftw() else ()

    def adopt_plan_state(self, state: tuple[str, ...] | list[str]) -> None:
        """Plan as the run that wrote ``state`` (:meth:`plan_state`) did; call before
        :meth:`prepare` when resuming. Nothing to do without FFTW or state."""
        if state and self._uses_fftw():
            adopt_fftw_wisdom(state)
            # "auto" then plans with FFTW_MEASURE, which FFTW serves from the adopted
            # wisdom whether the run planned with measure or patient; a patient
            # request would replan where that run measured (other rounding)
            self._adopted_plans = True

    # ----------------------------------------------------------------- work
    def score_rotations(self, first_index: int, matrices: RotationMatrices) -> None:
        """Fold rotations ``first_index ..`` into the running maps (see base)."""
        if self._maps is None:
            raise RuntimeError("CpuBackend.score_rotations called before prepare")
        mats = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
        for start in range(0, len(mats), self._sub_batch):
            self._score_batch(
                first_index + start, mats[start : start + self._sub_batch]
            )

    def _score_batch(self, first_index: int, mats: np.ndarray) -> None:
        maps = self._maps
        assert maps is not None
        n, b = self._n, len(mats)
        with_noise = self._with_noise
        rot = np.empty((b * (2 if with_noise else 1), n, n, n), dtype=np.float32)
        masks: np.ndarray = (
            self._mask if self._spherical else np.empty((b, n, n, n), dtype=np.float32)
        )
        # template, noise template and mask rotated together (Rust, parallel over
        # z-planes, GIL released; one set of spline weights for all)
        rotated = np.empty(self._coeffs.shape, dtype=np.float32)
        for i, m in enumerate(mats):
            rotate_bspline_many(self._coeffs, m, out=rotated)
            rot[i] = rotated[..., 0]
            if with_noise:
                rot[b + i] = rotated[..., 1]
            if not self._spherical:
                masks[i] = rotated[..., -1]
        del rotated
        if not self._spherical:
            # A rotated mask must stay a weight in [0, 1]: the cubic B-spline
            # overshoots at a binary edge (-0.26 .. 1.22) and the FLCF then exceeds 1.
            np.clip(masks, 0.0, 1.0, out=masks)
        if not self._spherical and with_noise:
            masks = np.concatenate([masks, masks])  # normalise the noise boxes too
        tnorm = self._normalise(self._weighted(rot), masks)
        del rot
        fft = self._fft
        assert fft is not None
        kw: dict[str, Any] = {"row_len": self._shape[2]}
        if self._spherical:
            kw["inverse_norm"] = self._inv_norm
        else:
            # N_M sigma per rotation: the rotated mask transformed once (buffer m),
            # its cross-power spectra with V (in m) and V^2 (in t) in one pass,
            # both inverted, combined into m (Rust), so t is free for the templates
            assert self._fv2 is not None
            fm = fft.padded_rfft(masks[:b], self._buffer("m", b))
            fe = self._buffer("t", b)
            fv, fv2 = self._fv.view(np.float32), self._fv2.view(np.float32)
            for one, other in zip(fm, fe, strict=True):
                _rust.conj_multiply_pair(
                    one.view(np.float32), other.view(np.float32), fv, fv2
                )
            # their last (x) stage runs in the Rust kernel, row by row
            mean = fft.inverse_but_x(fm).view(np.float32)
            e2 = fft.inverse_but_x(fe).view(np.float32)
            n_m = masks[:b].astype(np.float64).sum(axis=(1, 2, 3))
            _rust.local_denominators(
                mean,
                e2,
                [float(v) for v in n_m],
                floor_rel=_VAR_REL_FLOOR,
                row_len=self._shape[2],
                row_stride=mean.shape[-1],
                half_spectrum=True,
            )
            del e2
            kw["denominator"] = mean
        # the template's rotations, then the noise template's, through buffer t
        corr = self._correlate(tnorm[:b], "t", self._fv)
        kw["row_stride"] = corr.shape[-1]
        kw["half_spectrum"] = True
        # one fused, multi-threaded pass: normalisation, maximum and index, sums
        # (per voxel, or totals over the region of interest)
        s1, s2 = maps.score_sum, maps.score_sq_sum
        args = (maps.scores, maps.angles, s1, s2, corr)
        if maps.angle_high is not None:
            kw["angle_high"] = maps.angle_high
        totals = _rust.fold_rotations(
            *args, first_index=first_index, roi=self._roi, **kw
        )
        kw.pop("angle_high", None)
        for t1, t2 in totals:  # rotation by rotation: independent of the batching
            maps.roi_score_sum += t1
            maps.roi_score_sq_sum += t2
        if with_noise:
            assert maps.noise_scores is not None
            corr = self._correlate(tnorm[b:], "t", self._fv)
            _rust.fold_noise_max(maps.noise_scores, corr, **kw)
        maps.n_rotations_done += b

    def _correlate(
        self, boxes: np.ndarray, role: str, spectrum: np.ndarray
    ) -> np.ndarray:
        """``irfftn(conj(F(box_pad)) * spectrum)`` of each box but for the inverse's
        last stage, computed in the work buffer ``role`` (pruned forward FFT, Rust
        product, in-place z and y inverses); returns that buffer as float32, its rows
        half spectra along x for the fold to transform (``half_spectrum=True``)."""
        fft = self._fft
        assert fft is not None
        spec = fft.padded_rfft(boxes, self._buffer(role, len(boxes)))
        other = spectrum.view(np.float32)
        for one in spec:  # conj(F(box)) * spectrum, in place, one pass (Rust)
            _rust.conj_multiply(one.view(np.float32), other)
        return fft.inverse_but_x(spec).view(np.float32)

    # --------------------------------------------------------------- output
    def snapshot(self) -> RunningMaps:
        """Return a host copy of the running maps in output coordinates."""
        if self._maps is None:
            raise RuntimeError("CpuBackend.snapshot called before prepare")
        m, c = self._maps, self._c

        def sums(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else _roll3(a, c, np.float64)

        return RunningMaps(
            scores=_roll3(m.scores, c),
            angles=_angles_out(m.angles, c, m.angle_high),
            score_sum=sums(m.score_sum),
            score_sq_sum=sums(m.score_sq_sum),
            noise_scores=None if m.noise_scores is None else _roll3(m.noise_scores, c),
            n_rotations_done=m.n_rotations_done,
            roi_score_sum=m.roi_score_sum,
            roi_score_sq_sum=m.roi_score_sq_sum,
        )

    def finalize(self) -> RunningMaps:
        """Return the final maps and release the job.

        Buffers are released one by one while the maps are rolled to output
        coordinates, so the peak memory stays that of the loop.
        """
        if self._maps is None:
            raise RuntimeError("CpuBackend.finalize called before prepare")
        m, c = self._maps, self._c
        self._maps = None
        for attr in ("_fv", "_fv2", "_inv_norm"):
            setattr(self, attr, None)
        self._buffers = {}
        self._fft = None  # FFTW plans hold the buffers
        rolled: dict[str, np.ndarray | None] = {}
        for name in ("scores", "angles", "score_sum", "score_sq_sum", "noise_scores"):
            a = getattr(m, name)
            setattr(m, name, None)
            dtype = np.float64 if name.startswith("score_") else None
            if a is None:
                rolled[name] = None
            elif name == "angles":
                rolled[name] = _angles_out(a, c, m.angle_high)
                m.angle_high = None
            else:
                rolled[name] = _roll3(a, c, dtype)
            del a
        n_done = m.n_rotations_done
        self.close()
        return RunningMaps(
            n_rotations_done=n_done,
            roi_score_sum=m.roi_score_sum,
            roi_score_sq_sum=m.roi_score_sq_sum,
            **rolled,  # type: ignore[arg-type]
        )

    def close(self) -> None:
        """Drop all buffers and threads; the backend may be prepared again."""
        self._maps = None
        self._inputs = None
        self._buffers = {}
        self._fft = None
        for attr in (
            "_fv",
            "_fv2",
            "_inv_norm",
            "_coeffs",
            "_roi",
            "_mask",
            "_weight",
        ):
            if hasattr(self, attr):
                setattr(self, attr, None)
