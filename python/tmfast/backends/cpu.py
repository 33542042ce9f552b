"""The CPU reference backend: numpy + ``scipy.fft`` (multi-threaded).

It implements :class:`tmfast.backends.base.MatchBackend` exactly as described in
:mod:`tmfast.backends.base` and is the oracle the GPU backends are tested against.

Implementation notes (results are identical to the textbook pipeline up to float
rounding):

- **Pasting.** The normalised template ``T'`` is pasted at array indices ``0 .. n-1``
  (not wrapped around index 0), which lets the forward volume FFT skip the all-zero
  rows (a pruned 3-D FFT: ``rfft`` along x of ``n*n`` rows, then ``fft`` along y of
  ``n`` planes, then along z). The correlation ``irfftn(F(V) * conj(F(T'_pad)))`` at
  index ``i`` is then the score of output voxel ``i + N//2`` (circularly), so the
  running maps are kept in that shifted frame and rolled by ``N//2`` when handed out
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
- **Batching.** Rotations are processed in sub-batches sized to a memory budget
  (``max_batch_bytes``, default 128 MiB), each batch's FFTs run with
  ``workers = os.cpu_count()`` threads.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft

from tmfast.backends.base import CorrelationInputs, RunningMaps
from tmfast.errors import ConfigError
from tmfast.geometry.interpolation import bspline_coefficients, rotate_volume
from tmfast.types import RotationMatrices

__all__ = ["CpuBackend"]

logger = logging.getLogger(__name__)

#: Local variances below this fraction of (local mean square + 1), the volume being
#: standardised to unit mean square, are float32 FFT rounding noise of
#: E[V^2] - E[V]^2: sigma is taken as 1 there, as pytom does for var <= 1e-18.
_VAR_REL_FLOOR = 1e-4
#: Voxels per cache block of the running-map update.
_CHUNK = 1 << 16


def _roll3(a: np.ndarray, shift: int) -> np.ndarray:
    return np.roll(a, shift=(shift, shift, shift), axis=(0, 1, 2))


class CpuBackend:
    """Numpy/scipy implementation of :class:`~tmfast.backends.base.MatchBackend`.

    Parameters
    ----------
    workers
        Threads for ``scipy.fft``; default ``os.cpu_count()``.
    max_batch_bytes
        Memory budget for one sub-batch of volume-size FFT buffers.
    """

    name = "cpu"

    def __init__(
        self, *, workers: int | None = None, max_batch_bytes: int = 128 * 2**20
    ) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.max_batch_bytes = int(max_batch_bytes)
        self._inputs: CorrelationInputs | None = None
        self._maps: RunningMaps | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

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
        if float(mask.sum()) <= 0.0:
            raise ConfigError("backend inputs: the mask is empty (sum <= 0)")
        self.close()
        self._inputs = None  # not kept: the engine owns the tile
        self._shape = vol.shape
        self._n = n
        self._c = n // 2
        self._weight = np.asarray(inputs.template_weight, dtype=np.float32)
        self._mask = mask
        self._coeffs_t = bspline_coefficients(tmpl)
        self._coeffs_noise = (
            None
            if inputs.noise_template is None
            else bspline_coefficients(inputs.noise_template)
        )
        self._spherical = bool(inputs.mask_is_spherical)
        self._coeffs_m = None if self._spherical else bspline_coefficients(mask)
        w = self.workers
        # FLCF is exactly invariant to V -> (V - k) / s over the whole (circular)
        # array, so standardise it: float32 local moments are then well conditioned.
        vol = vol - np.float32(vol.mean(dtype=np.float64))
        sd = float(vol.std(dtype=np.float64))
        if sd > 0:
            vol /= np.float32(sd)
        self._fv = sfft.rfftn(vol, workers=w)
        if self._spherical:
            # sigma_local once; var below the floor -> sigma 1 (see module docstring)
            fm = self._padded_rfft(mask[None])[0]
            np.conjugate(fm, out=fm)
            n_m = float(mask.sum(dtype=np.float64))
            mean = sfft.irfftn(
                self._fv * fm, s=self._shape, workers=w, overwrite_x=True
            )
            fv2 = sfft.rfftn(vol * vol, workers=w)
            fv2 *= fm
            del fm
            var = sfft.irfftn(fv2, s=self._shape, workers=w, overwrite_x=True)
            del fv2
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
            self._fv2 = sfft.rfftn(vol * vol, workers=w)
        with_noise = self._coeffs_noise is not None
        if resume_from is None:
            self._maps = RunningMaps.empty(self._shape, with_noise=with_noise)
        else:
            self._maps = self._from_external(resume_from, with_noise=with_noise)
        # bytes per rotation in a sub-batch: complex spectrum + real map (+ noise,
        # + three mask spectra/maps when not spherical)
        per = self._fv.nbytes + 4 * int(np.prod(self._shape))
        per *= 2 if with_noise else 1
        if not self._spherical:
            per += 2 * self._fv.nbytes + 8 * int(np.prod(self._shape))
        self._sub_batch = int(max(1, min(32, self.max_batch_bytes // per)))
        # at least 2 when the budget allows half again: batching amortises overheads
        if self._sub_batch == 1 and 2 * per <= 1.5 * self.max_batch_bytes:
            self._sub_batch = 2
        logger.debug(
            "cpu backend: volume %s, box %d, spherical=%s, noise=%s, sub-batch %d",
            self._shape,
            n,
            self._spherical,
            with_noise,
            self._sub_batch,
        )

    def _from_external(self, maps: RunningMaps, *, with_noise: bool) -> RunningMaps:
        if maps.scores.shape != self._shape:
            raise ConfigError(
                f"resume maps have shape {maps.scores.shape}, volume is {self._shape}"
            )
        if (maps.noise_scores is not None) != with_noise:
            raise ConfigError(
                "resume maps and inputs disagree about the noise template"
            )
        c = -self._c
        return RunningMaps(
            scores=_roll3(np.asarray(maps.scores, dtype=np.float32), c),
            angles=_roll3(np.asarray(maps.angles, dtype=np.int32), c),
            score_sum=_roll3(np.asarray(maps.score_sum, dtype=np.float64), c),
            score_sq_sum=_roll3(np.asarray(maps.score_sq_sum, dtype=np.float64), c),
            noise_scores=(
                None
                if maps.noise_scores is None
                else _roll3(np.asarray(maps.noise_scores, dtype=np.float32), c)
            ),
            n_rotations_done=int(maps.n_rotations_done),
        )

    # --------------------------------------------------------------- helpers
    def _padded_rfft(self, boxes: np.ndarray) -> np.ndarray:
        """``rfftn`` over the last three axes of ``boxes`` zero-padded to the volume."""
        sz, sy, sx = self._shape
        w = self.workers
        a = sfft.rfft(boxes, n=sx, axis=-1, workers=w)
        a = sfft.fft(a, n=sy, axis=-2, workers=w, overwrite_x=True)
        return sfft.fft(a, n=sz, axis=-3, workers=w, overwrite_x=True)

    def _weighted(self, boxes: np.ndarray) -> np.ndarray:
        n = self._n
        f = sfft.rfftn(boxes, axes=(-3, -2, -1), workers=self.workers)
        f *= self._weight
        out: np.ndarray = sfft.irfftn(
            f, s=(n, n, n), axes=(-3, -2, -1), workers=self.workers
        ).astype(np.float32)
        return out

    @staticmethod
    def _normalise(boxes: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """``M (T - mu) / sigma_T`` with mask-weighted moments, per box."""
        b = boxes.astype(np.float64)
        m = np.broadcast_to(masks, b.shape).astype(np.float64)
        axes = (-3, -2, -1)
        n_m = m.sum(axis=axes, keepdims=True)
        mu = (b * m).sum(axis=axes, keepdims=True) / n_m
        var = (b * b * m).sum(axis=axes, keepdims=True) / n_m - mu * mu
        sd = np.sqrt(np.maximum(var, 0.0))
        sd[sd <= 1e-30] = np.inf  # a flat template correlates as zero
        out: np.ndarray = (m * (b - mu) / sd).astype(np.float32)
        return out

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
        w = self.workers
        with_noise = self._coeffs_noise is not None
        rot = np.empty((b * (2 if with_noise else 1), n, n, n), dtype=np.float32)
        jobs = [(self._coeffs_t, m, rot[i]) for i, m in enumerate(mats)]
        if self._coeffs_noise is not None:
            jobs += [(self._coeffs_noise, m, rot[b + i]) for i, m in enumerate(mats)]
        if self._spherical:
            masks: np.ndarray = self._mask
        else:
            assert self._coeffs_m is not None
            masks = np.empty((b, n, n, n), dtype=np.float32)
            jobs += [(self._coeffs_m, m, masks[i]) for i, m in enumerate(mats)]
        self._rotate_all(jobs)
        if not self._spherical and with_noise:
            masks = np.concatenate([masks, masks])
        tnorm = self._normalise(self._weighted(rot), masks)
        ft = self._padded_rfft(tnorm)
        np.conjugate(ft, out=ft)
        ft *= self._fv
        corr = sfft.irfftn(
            ft, s=self._shape, axes=(1, 2, 3), workers=w, overwrite_x=True
        )
        del ft
        local = None
        if not self._spherical:
            assert self._fv2 is not None
            fm = self._padded_rfft(masks[:b])
            np.conjugate(fm, out=fm)
            mean = sfft.irfftn(fm * self._fv, s=self._shape, axes=(1, 2, 3), workers=w)
            fm *= self._fv2
            e2 = sfft.irfftn(
                fm, s=self._shape, axes=(1, 2, 3), workers=w, overwrite_x=True
            )
            del fm
            n_m = masks[:b].astype(np.float64).sum(axis=(1, 2, 3)).astype(np.float32)
            local = (mean, e2, n_m)
        self._update(maps, corr, first_index, b, with_noise, local)
        maps.n_rotations_done += b

    def _rotate_all(
        self, jobs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> None:
        """Rotate boxes on all cores: jobs split into z-slabs run in a thread pool
        (scipy.ndimage releases the GIL)."""
        per = max(1, -(-self.workers // max(len(jobs), 1)))
        tasks = []
        for coeffs, m, out in jobs:
            n_z = out.shape[0]
            bounds = np.linspace(0, n_z, min(per, n_z) + 1).astype(int)
            tasks += [
                (coeffs, m, out, (int(a), int(b)))
                for a, b in itertools.pairwise(bounds)
            ]
        if len(tasks) == 1 or self.workers == 1:
            for coeffs, m, out, zr in tasks:
                rotate_volume(coeffs, m, out=out, z_range=zr)
            return
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.workers)
        list(
            self._pool.map(
                lambda t: rotate_volume(t[0], t[1], out=t[2], z_range=t[3]), tasks
            )
        )

    def _update(
        self,
        maps: RunningMaps,
        corr: np.ndarray,
        first_index: int,
        b: int,
        with_noise: bool,
        local: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Fold ``corr[:b]`` (and noise ``corr[b:]``) into the running maps.

        ``corr`` is the raw correlation; it is divided by ``N_M * sigma_local`` here:
        the precomputed ``1 / (N_M sigma)`` (spherical mask) or, with ``local =
        (sum_M V, sum_M V^2, N_M)`` per rotation (rotated mask), the local moments.
        Cache-blocked: each chunk of voxels is updated by all rotations of the batch
        while it is in cache.
        """
        nvox = int(np.prod(self._shape))
        flat = corr.reshape(corr.shape[0], nvox)
        best = maps.scores.reshape(nvox)
        ang = maps.angles.reshape(nvox)
        s1 = maps.score_sum.reshape(nvox)
        s2 = maps.score_sq_sum.reshape(nvox)
        inv = None if self._inv_norm is None else self._inv_norm.reshape(nvox)
        noise = None
        if with_noise:
            assert maps.noise_scores is not None
            noise = maps.noise_scores.reshape(nvox)
        if local is not None:
            mean_f = local[0].reshape(b, nvox)
            e2_f = local[1].reshape(b, nvox)
            n_m = local[2]
        step = _CHUNK
        sd_buf = np.empty(step, dtype=np.float32)
        fl_buf = np.empty(step, dtype=np.float32)
        tmp_buf = np.empty(step, dtype=np.float32)
        ok_buf = np.empty(step, dtype=bool)
        gt_buf = np.empty(step, dtype=bool)
        idx_buf = np.empty(step, dtype=np.int32)
        f64_buf = np.empty(step, dtype=np.float64)
        for j in range(0, nvox, step):
            e = min(j + step, nvox)
            gt, di, x = gt_buf[: e - j], idx_buf[: e - j], f64_buf[: e - j]
            best_c, ang_c, s1_c, s2_c = best[j:e], ang[j:e], s1[j:e], s2[j:e]
            for i in range(b):
                s = flat[i, j:e]
                if inv is not None:
                    s *= inv[j:e]
                else:
                    # sigma = sqrt(E[V^2] - E[V]^2) under the rotated mask; floor -> 1
                    sd, tmp, ok = sd_buf[: e - j], tmp_buf[: e - j], ok_buf[: e - j]
                    nm = n_m[i]
                    fl = fl_buf[: e - j]
                    np.divide(mean_f[i, j:e], nm, out=tmp)
                    np.multiply(tmp, tmp, out=tmp)
                    np.divide(e2_f[i, j:e], nm, out=sd)
                    np.add(sd, np.float32(1.0), out=fl)
                    np.multiply(fl, np.float32(_VAR_REL_FLOOR), out=fl)
                    np.subtract(sd, tmp, out=sd)
                    np.greater(sd, fl, out=ok)
                    np.sqrt(sd, out=sd, where=ok)
                    np.copyto(sd, np.float32(1.0), where=~ok)
                    sd *= nm
                    s /= sd
                    if with_noise:
                        flat[b + i, j:e] /= sd
                # strict '>' keeps the earlier (smaller) index on ties; branch-free
                np.greater(s, best_c, out=gt)
                np.subtract(np.int32(first_index + i), ang_c, out=di)
                np.multiply(di, gt, out=di)
                ang_c += di
                np.maximum(best_c, s, out=best_c)
                np.copyto(x, s)  # float64 sums (a mixed-type += is slow)
                s1_c += x
                x *= x
                s2_c += x
                if noise is not None:
                    sn = flat[b + i, j:e]
                    if inv is not None:
                        sn *= inv[j:e]
                    np.maximum(noise[j:e], sn, out=noise[j:e])

    # --------------------------------------------------------------- output
    def snapshot(self) -> RunningMaps:
        """Return a host copy of the running maps in output coordinates."""
        if self._maps is None:
            raise RuntimeError("CpuBackend.snapshot called before prepare")
        m, c = self._maps, self._c
        return RunningMaps(
            scores=_roll3(m.scores, c),
            angles=_roll3(m.angles, c),
            score_sum=_roll3(m.score_sum, c),
            score_sq_sum=_roll3(m.score_sq_sum, c),
            noise_scores=None if m.noise_scores is None else _roll3(m.noise_scores, c),
            n_rotations_done=m.n_rotations_done,
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
        rolled: dict[str, np.ndarray | None] = {}
        for name in ("scores", "angles", "score_sum", "score_sq_sum", "noise_scores"):
            a = getattr(m, name)
            setattr(m, name, None)
            rolled[name] = None if a is None else _roll3(a, c)
            del a
        n_done = m.n_rotations_done
        self.close()
        return RunningMaps(n_rotations_done=n_done, **rolled)  # type: ignore[arg-type]

    def close(self) -> None:
        """Drop all buffers and threads; the backend may be prepared again."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._maps = None
        self._inputs = None
        for attr in (
            "_fv",
            "_fv2",
            "_inv_norm",
            "_coeffs_t",
            "_coeffs_noise",
            "_coeffs_m",
            "_mask",
            "_weight",
        ):
            if hasattr(self, attr):
                setattr(self, attr, None)
