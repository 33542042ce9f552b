"""The template-matching engine: from a :class:`MatchConfig` to score and angle maps.

:func:`match_template` does everything in memory and returns a :class:`MatchResult`;
:func:`run_match` also writes ``{tomo_id}_scores.mrc``, ``{tomo_id}_angles.mrc`` and
``{tomo_id}_job.json`` atomically, with checkpoints (``{tomo_id}_checkpoint.npz``)
so that a killed job resumes where it stopped.

Steps:

1. read and check the inputs; build the tilt-series metadata and the angle set;
2. Fourier-filter the whole tomogram once on the CPU (mean removed, zero-padded to a
   fast length, :func:`tmfast.filters.tomogram_filter`), then standardise it; build
   the template weight once (:func:`tmfast.filters.template_weight`), with a whitening
   profile estimated from the tomogram when asked;
3. split the search region into tiles (:mod:`tmfast.matching.tiling`; the
   correlation is circular over the tomogram zero-padded to a fast size, exactly as
   pytom-match-pick, and every split reproduces the unsplit scores), skip tiles
   whose unique region lies entirely outside the tomogram mask, and search each tile
   with one backend per device (rotations dealt round-robin by batch, maps merged in
   memory, ties to the smaller rotation index);
4. apply the random-phase correction and compute the search statistics over the
   voxels inside the search region and the tomogram mask (:mod:`tmfast.matching.stats`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft

from tmfast._cpus import usable_cpu_count
from tmfast._fileio import (
    atomic_path,
    check_writable,
    missing_folders,
    remove_empty_folders,
)
from tmfast._progress import ProgressCallback
from tmfast.backends.base import CorrelationInputs, MatchBackend, RunningMaps
from tmfast.errors import (
    ConfigError,
    FormatError,
    OutputExistsError,
    OutputWriteError,
    TmfastError,
)
from tmfast.matching.config import MatchConfig
from tmfast.matching.job import ARRAY_SOURCE, MatchJob, SearchStats
from tmfast.matching.random_phase import phase_randomised_template
from tmfast.matching.stats import RoiSums, noise_corrected_scores
from tmfast.matching.tiling import Tile, cut_tile, fast_period, plan_tiles
from tmfast.metadata import TiltSeriesMetadata
from tmfast.types import AngleArray, Volume

__all__ = [
    "STOP_SIGNALS",
    "MatchInterrupted",
    "MatchResult",
    "OutputWriteError",
    "SearchMaps",
    "filter_tomogram",
    "match_template",
    "merge_running_maps",
    "output_paths",
    "run_match",
    "search_volume",
]

logger = logging.getLogger(__name__)

#: Rotations per backend call (one "batch"); backends sub-batch internally.
DEFAULT_BATCH_ROTATIONS = 32
_CHECKPOINT_FORMAT = 2


#: Signals that make :func:`run_match` stop at the next batch boundary (SLURM sends
#: SIGTERM before killing a task, and ``--signal=B:USR1@120`` sends SIGUSR1).
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1)
#: Ctrl-C (SIGINT) stops the same way; a second Ctrl-C aborts at once
#: (KeyboardInterrupt, or the caller's own SIGINT handler).
_GRACEFUL_SIGNALS: tuple[signal.Signals, ...] = (*STOP_SIGNALS, signal.SIGINT)


class MatchInterrupted(TmfastError):
    """Matching stopped on a signal after a checkpoint; rerun the same command.

    ``exit_code`` is ``128 + signal number`` (143 for SIGTERM), as a shell reports a
    process killed by that signal.
    """

    def __init__(self, signum: int, checkpoint: Path | None, done: int, total: int):
        name = signal.Signals(signum).name
        if checkpoint is None and done == 0:
            # e.g. while the inputs were read and filtered
            super().__init__(
                f"stopped by {name} before the search started; nothing written"
            )
        else:
            where = (
                f"checkpoint {checkpoint} holds {done}/{total} rotation-tiles; "
                "rerun the same command to resume"
                if checkpoint is not None
                else f"{done}/{total} rotation-tiles done, no checkpoint written "
                "(checkpoints disabled)"
            )
            super().__init__(f"stopped by {name} after a whole batch: {where}")
        self.signum = signum
        self.checkpoint = checkpoint
        self.exit_code = 128 + int(signum)


class _StopFlag:
    """Signal number received by :func:`_stop_on_signals`' handler, else None."""

    signum: int | None = None


_STOP = _StopFlag()


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[dict[int, Any]]:
    """Turn STOP_SIGNALS into a request to stop at the next batch boundary.

    Installed only in the main thread (Python delivers signals there). A second
    signal while stopping is handed to the previous handler (a hard stop). Yields
    the previous handlers by signal number.
    """
    if threading.current_thread() is not threading.main_thread():
        yield {}
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if _STOP.signum is not None:
            prev = previous.get(signum)
            if callable(prev):
                prev(signum, frame)  # default_int_handler raises KeyboardInterrupt
            else:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        _STOP.signum = signum
        again = "Ctrl-C again" if signum == signal.SIGINT else "the signal again"
        logger.warning(
            "received %s: finishing the current batch, then writing a checkpoint "
            "and stopping (%s aborts at once)",
            signal.Signals(signum).name,
            again,
        )

    _STOP.signum = None
    for s in _GRACEFUL_SIGNALS:
        if s == signal.SIGINT and signal.getsignal(s) is signal.SIG_IGN:
            continue  # e.g. a background job started with SIGINT ignored
        previous[int(s)] = signal.signal(s, handler)
    try:
        yield previous
    finally:
        for num, h in previous.items():
            signal.signal(num, h)
        _STOP.signum = None


# --------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchMaps:
    """Assembled maps over the search region (before the random-phase correction).

    ``scores``/``noise_scores`` float32 (``-inf`` unsearched), ``angles`` int32 (-1
    unsearched), ``searched`` bool; ``roi_sums`` the scalar sums for the statistics
    over searched voxels inside the tomogram mask. ``score_sum``/``score_sq_sum``
    (float64 per voxel) only with ``keep_sums=True``.
    """

    scores: npt.NDArray[np.float32]
    angles: npt.NDArray[np.int32]
    noise_scores: npt.NDArray[np.float32] | None
    searched: npt.NDArray[np.bool_]
    roi_sums: RoiSums
    score_sum: npt.NDArray[np.float64] | None = None
    score_sq_sum: npt.NDArray[np.float64] | None = None
    resumed_rotations: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class MatchResult:
    """Result of :func:`match_template`, all in memory.

    Attributes
    ----------
    scores
        ``(z, y, x)`` float32 over the search region: maximum FLCF over rotations
        (random-phase corrected when enabled); ``-inf`` where not searched.
    angles
        int32 index into :attr:`angle_set` of the best rotation; -1 where not searched.
    angle_set
        ``(N, 3)`` float64 ZXZ angles in radians.
    stats
        Search statistics (also in ``job.stats``).
    job
        The job record (file fields empty until :func:`run_match` writes them).
    noise_scores
        float32 noise-template maxima, or None.
    maps
        The raw assembled maps including per-voxel score sums.
    tomogram_mask
        The full-size float32 tomogram mask used (file or array), or None;
        :func:`~tmfast.extraction.candidates.extract_candidates` applies it.
    """

    scores: npt.NDArray[np.float32]
    angles: npt.NDArray[np.int32]
    angle_set: AngleArray
    stats: SearchStats
    job: MatchJob
    noise_scores: npt.NDArray[np.float32] | None
    maps: SearchMaps
    tomogram_mask: npt.NDArray[np.float32] | None = None


# --------------------------------------------------------------------------- helpers
def merge_running_maps(a: RunningMaps, b: RunningMaps) -> RunningMaps:
    """Merge maps over disjoint rotation subsets (max; ties keep the smaller index)."""
    take = (b.scores > a.scores) | (
        (b.scores == a.scores)
        & (b.angles >= 0)
        & ((a.angles < 0) | (b.angles < a.angles))
    )
    noise = None
    if a.noise_scores is not None and b.noise_scores is not None:
        noise = np.maximum(a.noise_scores, b.noise_scores)
    return RunningMaps(
        scores=np.where(take, b.scores, a.scores).astype(np.float32),
        angles=np.where(take, b.angles, a.angles).astype(np.int32),
        score_sum=_add_optional(a.score_sum, b.score_sum),
        score_sq_sum=_add_optional(a.score_sq_sum, b.score_sq_sum),
        noise_scores=noise,
        n_rotations_done=a.n_rotations_done + b.n_rotations_done,
        # region-of-interest totals of sums not held per voxel add as well
        roi_score_sum=a.roi_score_sum + b.roi_score_sum,
        roi_score_sq_sum=a.roi_score_sq_sum + b.roi_score_sq_sum,
    )


def _add_optional(
    a: npt.NDArray[np.float64] | None, b: npt.NDArray[np.float64] | None
) -> npt.NDArray[np.float64] | None:
    """Sum of two per-voxel sums, either of which may be held as a total (None)."""
    if a is None or b is None:
        return b if a is None else a
    return a + b


def output_paths(destination: Path, tomo_id: str) -> dict[str, Path]:
    """Return a run's output paths: ``scores``, ``angles``, ``job``, ``checkpoint``."""
    return {
        "scores": destination / f"{tomo_id}_scores.mrc",
        "angles": destination / f"{tomo_id}_angles.mrc",
        "job": destination / f"{tomo_id}_job.json",
        "checkpoint": destination / f"{tomo_id}_checkpoint.npz",
    }


def filter_tomogram(tomogram: npt.ArrayLike, weight_for_shape: object) -> Volume:
    """Mean-remove, zero-pad to a fast length, multiply by a Fourier weight, crop.

    Parameters
    ----------
    tomogram
        ``(z, y, x)`` volume.
    weight_for_shape
        Callable ``shape_zyx -> (z, y, x // 2 + 1)`` weight, or None for no filter.

    Returns
    -------
    numpy.ndarray
        float32 filtered volume, standardised to zero mean and unit standard deviation.
    """
    v = np.asarray(tomogram, dtype=np.float32)
    v = v - np.float32(v.mean(dtype=np.float64))
    if weight_for_shape is not None:
        shape = tuple(sfft.next_fast_len(s, real=True) for s in v.shape)
        weight = weight_for_shape(shape)  # type: ignore[operator]
        f = sfft.rfftn(v, s=shape, workers=usable_cpu_count())
        f *= weight
        v = sfft.irfftn(f, s=shape, workers=usable_cpu_count())[
            : v.shape[0], : v.shape[1], : v.shape[2]
        ].astype(np.float32)
        v -= np.float32(v.mean(dtype=np.float64))
    sd = float(v.std(dtype=np.float64))
    if sd > 0:
        v /= np.float32(sd)
    return np.ascontiguousarray(v)


def _empty_search_maps(
    shape: tuple[int, ...], with_noise: bool, keep_sums: bool
) -> dict[str, np.ndarray]:
    d = {
        "scores": np.full(shape, -np.inf, np.float32),
        "angles": np.full(shape, -1, np.int32),
        "searched": np.zeros(shape, bool),
        "roi_sums": RoiSums().to_array(),
    }
    if keep_sums:
        d["score_sum"] = np.zeros(shape, np.float64)
        d["score_sq_sum"] = np.zeros(shape, np.float64)
    if with_noise:
        d["noise_scores"] = np.full(shape, -np.inf, np.float32)
    return d


class _Checkpoint:
    """Atomic ``.npz`` checkpoints of an in-progress search.

    ``{tomo_id}_checkpoint.npz`` holds the configuration key, the position of the
    current tile, the statistics sums of the finished tiles and the running maps of
    the current tile; each finished tile's unique maps are written once to
    ``{tomo_id}_checkpoint_tile{k}.npz``. A checkpoint write therefore costs one
    tile's maps, not the whole tomogram's.
    """

    def __init__(
        self,
        path: Path | None,
        key: str,
        every: int,
        interval_s: float,
        info: str = "",
    ) -> None:
        self.path = path
        self.key = key
        self.info = info
        self.every = every
        self.interval_s = interval_s
        self.last_time = time.monotonic()
        self.since = 0

    @property
    def enabled(self) -> bool:
        return self.path is not None and (self.every > 0 or self.interval_s > 0)

    def tile_path(self, pos: int) -> Path:
        assert self.path is not None
        return self.path.with_name(f"{self.path.stem}_tile{pos}.npz")

    def due(self, n_new: int) -> bool:
        self.since += n_new
        if not self.enabled:
            return False
        by_count = self.every > 0 and self.since >= self.every
        by_time = (
            self.interval_s > 0 and time.monotonic() - self.last_time >= self.interval_s
        )
        return by_count or by_time

    def _read(self, path: Path) -> dict[str, np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
            return None
        if (
            str(data.get("key")) != self.key
            or int(data.get("format", -1)) != _CHECKPOINT_FORMAT
        ):
            logger.warning(
                "not resuming from checkpoint %s: it was written for other options "
                "or inputs (a file changed since?); matching from the start and "
                "replacing it",
                path,
            )
            return None
        return data

    def load(self) -> dict[str, np.ndarray] | None:
        if self.path is None or not self.path.exists():
            return None
        return self._read(self.path)

    def load_tile(self, pos: int) -> dict[str, np.ndarray] | None:
        p = self.tile_path(pos)
        return self._read(p) if p.exists() else None

    def _write(self, path: Path, payload: dict[str, np.ndarray]) -> None:
        payload["key"] = np.array(self.key)
        payload["format"] = np.array(_CHECKPOINT_FORMAT)
        if self.info:  # the run's options, to name what differs (checkpoint_options)
            payload["options"] = np.array(self.info)
        try:
            with atomic_path(path, overwrite=True) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, **payload)  # type: ignore[arg-type]
        except OSError as exc:
            raise OutputWriteError(
                f"{path}: writing the checkpoint failed ({exc.strerror or exc}); "
                "free space or fix the folder, then rerun the same command"
            ) from exc

    def save_tile(self, pos: int, maps: dict[str, np.ndarray]) -> None:
        self._write(self.tile_path(pos), dict(maps))

    def save(
        self,
        tile_pos: int,
        roi_sums: np.ndarray,
        tile_maps: RunningMaps | None,
        plan_state: tuple[str, ...] = (),
    ) -> None:
        assert self.path is not None
        payload: dict[str, np.ndarray] = {
            "tile_pos": np.array(tile_pos),
            "roi_sums": np.asarray(roi_sums),
        }
        if plan_state:  # e.g. FFTW's wisdom: a resumed run plans the same way
            payload["plan_state"] = np.array(list(plan_state))
        if tile_maps is not None:
            payload["tile_n_done"] = np.array(tile_maps.n_rotations_done)
            payload["tile_scores"] = tile_maps.scores
            payload["tile_angles"] = tile_maps.angles
            if tile_maps.score_sum is not None:
                payload["tile_score_sum"] = tile_maps.score_sum
            if tile_maps.score_sq_sum is not None:
                payload["tile_score_sq_sum"] = tile_maps.score_sq_sum
            payload["tile_roi_totals"] = np.array(
                [tile_maps.roi_score_sum, tile_maps.roi_score_sq_sum], dtype=np.float64
            )
            if tile_maps.noise_scores is not None:
                payload["tile_noise_scores"] = tile_maps.noise_scores
        self._write(self.path, payload)
        self.since = 0
        self.last_time = time.monotonic()
        logger.debug(
            "checkpoint written: tile %d, %s rotations",
            tile_pos,
            None if tile_maps is None else tile_maps.n_rotations_done,
        )


def remove_checkpoints(destination: Path, tomo_id: str) -> None:
    """Delete a run's checkpoint files (after its outputs are written)."""
    main = output_paths(destination, tomo_id)["checkpoint"]
    main.unlink(missing_ok=True)
    for p in destination.glob(f"{main.stem}_tile*.npz"):
        p.unlink(missing_ok=True)


def _checkpoint_seed(path: Path | None, base_key: str) -> int | None:
    """Seed stored in a checkpoint of this configuration, or None."""
    if path is None or not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            key = str(z["key"])
    except (OSError, ValueError, KeyError):
        return None
    head, _, seed = key.rpartition(":")
    if head != base_key or seed in ("", "None"):
        return None
    try:
        return int(seed)
    except ValueError:
        return None


def search_volume(
    tomogram: Volume,
    template: Volume,
    mask: Volume,
    template_weight: npt.NDArray[np.float32],
    angles: AngleArray,
    *,
    backends: Sequence[MatchBackend],
    search_origin_zyx: tuple[int, int, int] = (0, 0, 0),
    search_shape_zyx: tuple[int, int, int] | None = None,
    split_xyz: tuple[int, int, int] = (1, 1, 1),
    tomogram_mask: npt.NDArray[np.float32] | None = None,
    mask_is_spherical: bool = True,
    noise_template: Volume | None = None,
    batch_rotations: int = DEFAULT_BATCH_ROTATIONS,
    progress: ProgressCallback | None = None,
    checkpoint_path: Path | None = None,
    checkpoint_key: str = "",
    checkpoint_every: int = 0,
    checkpoint_interval_s: float = 0.0,
    keep_sums: bool = False,
    tile_weight: Callable[[Tile], npt.NDArray[np.float32]] | None = None,
    checkpoint_options: str = "",
) -> SearchMaps:
    """Search a (filtered) tomogram tile by tile; the core of :func:`match_template`.

    Parameters
    ----------
    tomogram
        Full ``(z, y, x)`` float32 tomogram, already filtered.
    template, mask, template_weight, noise_template, mask_is_spherical
        As in :class:`~tmfast.backends.base.CorrelationInputs`.
    angles
        ``(N, 3)`` ZXZ radians; rotation ``i`` is row ``i``.
    backends
        One prepared-on-demand backend per device.
    search_origin_zyx, search_shape_zyx
        Search region in full-tomogram voxels (default: everything).
    split_xyz
        Tiles along x, y, z.
    tomogram_mask
        Full-size mask; tiles whose unique region is all ``<= 0`` are skipped.
    batch_rotations
        Rotations per backend call.
    progress
        ``progress(done, total)`` over rotations x searched tiles.
    checkpoint_path, checkpoint_key, checkpoint_every, checkpoint_interval_s
        Where and how often to checkpoint; a checkpoint with the same key is resumed.
    keep_sums
        Also return the per-voxel score sums over the search region (16 bytes per
        voxel); the statistics never need them (see ``roi_sums``).
    tile_weight
        The template weight of each tile, replacing ``template_weight`` (the
        defocus gradient: each tile's CTF at its own position).
    checkpoint_options
        Text stored in each checkpoint (:func:`run_match` stores the options, as
        JSON, to name what differs when a later run finds the checkpoint).

    Returns
    -------
    SearchMaps
        Maps over the search region.
    """
    from tmfast.geometry.rotations import zxz_to_matrices

    if not backends:
        raise ConfigError("no compute backend given")
    if (
        isinstance(batch_rotations, bool)
        or int(batch_rotations) != batch_rotations
        or (batch_rotations < 1)
    ):
        # 0 or less looped for ever without scoring a rotation
        raise ConfigError(
            f"batch_rotations {batch_rotations!r}: give a whole number of rotations "
            ">= 1 per batch"
        )
    shape_full = tuple(int(s) for s in tomogram.shape)
    if search_shape_zyx is None:
        search_shape_zyx = tuple(  # type: ignore[assignment]
            s - o for s, o in zip(shape_full, search_origin_zyx, strict=True)
        )
    assert search_shape_zyx is not None
    n_box = int(template.shape[0])
    tiles = _plan_fitting_tiles(
        backends,
        search_origin_zyx,
        search_shape_zyx,
        split_xyz,
        n_box,
        fast_period(shape_full),
        mask_is_spherical=mask_is_spherical,
        with_noise=noise_template is not None,
    )
    _warn_costly_split(tiles, search_shape_zyx, n_box)
    active: list[Tile] = []
    for tile in tiles:
        if tomogram_mask is not None and not _tile_roi(tile, tomogram_mask).any():
            logger.info("tile %d: outside the tomogram mask, skipped", tile.index)
            continue
        active.append(tile)
    n_rot = len(angles)
    total = n_rot * len(active)
    with_noise = noise_template is not None
    ckpt = _Checkpoint(
        checkpoint_path,
        checkpoint_key,
        checkpoint_every,
        checkpoint_interval_s,
        checkpoint_options,
    )
    assembled = _empty_search_maps(search_shape_zyx, with_noise, keep_sums)
    start_pos, resume = 0, None
    resumed = 0
    loaded = ckpt.load() if ckpt.enabled else None
    if loaded is not None:
        restored = _restore(ckpt, loaded, active, assembled, search_origin_zyx)
        if restored is not None:
            start_pos, resume = restored
            resumed = start_pos * n_rot + (resume.n_rotations_done if resume else 0)
            logger.info(
                "resuming from checkpoint %s: %d of %d rotation-tiles done",
                checkpoint_path,
                resumed,
                total,
            )
            if "plan_state" in loaded:
                state = tuple(str(v) for v in loaded["plan_state"])
                for be in backends:
                    adopt = getattr(be, "adopt_plan_state", None)
                    if adopt is not None:
                        adopt(state)
    done = resumed
    if progress is not None:
        progress(done, total)
    pool = (
        concurrent.futures.ThreadPoolExecutor(len(backends))
        if len(backends) > 1
        else None
    )
    try:
        for pos in range(start_pos, len(active)):
            if _STOP.signum is not None:
                # the previous tile is complete and checkpointed
                saved = ckpt.enabled and ckpt.path is not None and ckpt.path.exists()
                raise MatchInterrupted(
                    _STOP.signum, ckpt.path if saved else None, done, total
                )
            tile = active[pos]
            roi = _tile_roi(tile, tomogram_mask)
            stats_roi = None
            if not keep_sums:
                # the backends may total the sums over it instead of per voxel
                stats_roi = np.zeros(tile.shape_zyx, dtype=bool)
                stats_roi[tile.unique_in_tile] = roi
            inputs = CorrelationInputs(
                tomogram=cut_tile(tomogram, tile),
                template=template,
                mask=mask,
                template_weight=(
                    template_weight if tile_weight is None else tile_weight(tile)
                ),
                mask_is_spherical=mask_is_spherical,
                noise_template=noise_template,
                stats_roi=stats_roi,
                n_rotations=n_rot,
            )
            first = 0
            for i, be in enumerate(backends):
                be.prepare(inputs, resume_from=resume if i == 0 else None)
            del inputs  # backends hold what they need; free the host tile early
            if resume is not None:
                first = resume.n_rotations_done
                resume = None
            logger.debug(
                "tile %d/%d: shape %s, from rotation %d",
                pos + 1,
                len(active),
                tile.shape_zyx,
                first,
            )
            while first < n_rot:
                jobs = []
                for be in backends:
                    if first >= n_rot:
                        break
                    last = min(first + batch_rotations, n_rot)
                    jobs.append((be, first, zxz_to_matrices(angles[first:last])))
                    first = last
                if pool is None:
                    for be, f0, mats in jobs:
                        be.score_rotations(f0, mats)
                else:
                    futures = [
                        pool.submit(be.score_rotations, f0, mats)
                        for be, f0, mats in jobs
                    ]
                    for fut in futures:
                        fut.result()
                n_new = sum(len(m) for _, _, m in jobs)
                done += n_new
                if progress is not None:
                    progress(done, total)
                stopping = _STOP.signum is not None and first < n_rot
                if first < n_rot and (ckpt.due(n_new) or (stopping and ckpt.enabled)):
                    ckpt.save(
                        pos,
                        assembled["roi_sums"],
                        _merged_snapshot(backends, first),
                        _plan_state(backends),
                    )
                if stopping:
                    # no log line here: the exception's message is the one report
                    assert _STOP.signum is not None
                    raise MatchInterrupted(
                        _STOP.signum, ckpt.path if ckpt.enabled else None, done, total
                    )
            maps = _merged_final(backends)
            unique = tile.unique_in_tile
            dest = tile.unique_in_region(search_origin_zyx)
            assembled["scores"][dest] = maps.scores[unique]
            assembled["angles"][dest] = maps.angles[unique]
            if keep_sums:
                if maps.score_sum is None or maps.score_sq_sum is None:
                    raise RuntimeError(
                        "keep_sums: a backend returned totals, not per-voxel sums"
                    )
                assembled["score_sum"][dest] = maps.score_sum[unique]
                assembled["score_sq_sum"][dest] = maps.score_sq_sum[unique]
            assembled["searched"][dest] = True
            noise_u = None
            if with_noise:
                assert maps.noise_scores is not None
                noise_u = maps.noise_scores[unique]
                assembled["noise_scores"][dest] = noise_u
            sums = RoiSums.from_array(assembled["roi_sums"])
            sums.add(
                None if maps.score_sum is None else maps.score_sum[unique],
                None if maps.score_sq_sum is None else maps.score_sq_sum[unique],
                roi,
                noise_u,
                roi_score_sum=maps.roi_score_sum,
                roi_score_sq_sum=maps.roi_score_sq_sum,
            )
            assembled["roi_sums"] = sums.to_array()
            if ckpt.enabled:
                done_maps = {
                    k: v[dest]
                    for k, v in assembled.items()
                    if k not in ("roi_sums", "searched")
                }
                ckpt.save_tile(pos, done_maps)
                ckpt.save(pos + 1, assembled["roi_sums"], None, _plan_state(backends))
            del maps
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        for be in backends:
            be.close()
    return SearchMaps(
        scores=assembled["scores"],
        angles=assembled["angles"],
        score_sum=assembled.get("score_sum"),
        score_sq_sum=assembled.get("score_sq_sum"),
        noise_scores=assembled.get("noise_scores"),
        searched=assembled["searched"],
        roi_sums=RoiSums.from_array(assembled["roi_sums"]),
        resumed_rotations=resumed,
    )


def _tile_roi(
    tile: Tile, tomogram_mask: npt.NDArray[np.float32] | None
) -> npt.NDArray[np.bool_]:
    """The voxels of the tile's own (unique) region that enter the statistics:
    inside the tomogram mask (all of them without one)."""
    region = tile.unique_in_region((0, 0, 0))  # in full-tomogram indices
    if tomogram_mask is None:
        return np.ones(tuple(r.stop - r.start for r in region), dtype=bool)
    return np.asarray(tomogram_mask[region] > 0)


#: Tile voxels over search-region voxels above which a volume split is reported as
#: costly (each tile carries half a template of overlap on every side).
_SPLIT_COST_WARN = 2.0


def _warn_costly_split(
    tiles: Sequence[Tile], search_shape_zyx: Sequence[int], n_box: int
) -> None:
    """Warn when the tiles' overlap makes the search much slower than unsplit."""
    searched = float(np.prod(search_shape_zyx))
    work = float(sum(np.prod(t.shape_zyx) for t in tiles))
    if len(tiles) > 1 and searched > 0 and work / searched > _SPLIT_COST_WARN:
        logger.warning(
            "volume split into %d sub-volumes of about %s voxels around a %d-voxel "
            "template: their overlap makes the search %.1fx the work of an unsplit "
            "one; use fewer pieces unless memory needs them",
            len(tiles),
            "x".join(str(s) for s in tiles[0].shape_zyx[::-1]),
            n_box,
            work / searched,
        )


def _plan_fitting_tiles(
    backends: Sequence[MatchBackend],
    origin_zyx: tuple[int, int, int],
    shape_zyx: tuple[int, int, int],
    split_xyz: tuple[int, int, int],
    n_box: int,
    period_zyx: tuple[int, int, int],
    *,
    mask_is_spherical: bool,
    with_noise: bool,
) -> list[Tile]:
    """Plan tiles, splitting further while a backend reports a tile will not fit.

    Backends may offer ``fits(shape_zyx, box_n, *, mask_is_spherical, with_noise)``
    (the GPU backends do); more splits never change the scores (see tiling).

    Raises
    ------
    GpuOutOfMemoryError
        If even single-voxel-thin tiles do not fit.
    """
    from tmfast.errors import GpuOutOfMemoryError

    split = list(split_xyz)
    checks = [f for f in (getattr(be, "fits", None) for be in backends) if callable(f)]
    while True:
        tiles = plan_tiles(origin_zyx, shape_zyx, tuple(split), n_box, period_zyx)  # type: ignore[arg-type]
        if not checks:
            return tiles
        shapes = {t.shape_zyx for t in tiles}
        too_big = [
            sh
            for sh in shapes
            if not all(
                f(sh, n_box, mask_is_spherical=mask_is_spherical, with_noise=with_noise)
                for f in checks
            )
        ]
        if not too_big:
            if tuple(split) != tuple(split_xyz):
                logger.info(
                    "volume split %s (x, y, z) chosen so that each tile fits",
                    tuple(split),
                )
            return tiles
        # split the axis (x, y, z order of `split`) with the longest unique extent
        extent = [
            shape_zyx[2] / split[0],
            shape_zyx[1] / split[1],
            shape_zyx[0] / split[2],
        ]
        axis = int(np.argmax(extent))
        if extent[axis] <= 1:
            raise GpuOutOfMemoryError(
                f"even a {tuple(split)} volume split does not fit the device; use a "
                "smaller template box or another device (--gpu-ids)"
            )
        split[axis] = min(split[axis] * 2, int(np.ceil(extent[axis] * split[axis])))


def _plan_state(backends: Sequence[Any]) -> tuple[str, ...]:
    """The first backend's plan state (``plan_state()``, e.g. FFTW's wisdom), if it
    has one: stored in checkpoints so that a resumed run rounds the same way."""
    get = getattr(backends[0], "plan_state", None)
    return tuple(get()) if get is not None else ()


def _restore(
    ckpt: _Checkpoint,
    loaded: dict[str, np.ndarray],
    active: Sequence[Tile],
    assembled: dict[str, np.ndarray],
    origin_zyx: tuple[int, int, int],
) -> tuple[int, RunningMaps | None] | None:
    """Fill ``assembled`` from a checkpoint; return (tile position, tile maps)."""
    pos = int(loaded["tile_pos"])
    if pos > len(active):
        return None
    names = [k for k in assembled if k not in ("roi_sums", "searched")]
    pieces = []
    for k in range(pos):
        data = ckpt.load_tile(k)
        dest = active[k].unique_in_region(origin_zyx)
        shape = assembled["scores"][dest].shape
        if data is None or any(n not in data or data[n].shape != shape for n in names):
            logger.warning("ignoring checkpoint: tile %d is missing or differs", k)
            return None
        pieces.append((dest, data))
    with_noise = "noise_scores" in assembled
    if "tile_n_done" in loaded and ("tile_noise_scores" in loaded) != with_noise:
        return None
    for dest, data in pieces:
        for n in names:
            assembled[n][dest] = data[n]
        assembled["searched"][dest] = True
    assembled["roi_sums"] = np.array(loaded["roi_sums"])
    resume = None
    if "tile_n_done" in loaded:
        totals = np.asarray(loaded.get("tile_roi_totals", np.zeros(2)), np.float64)
        resume = RunningMaps(
            scores=np.array(loaded["tile_scores"]),
            angles=np.array(loaded["tile_angles"]),
            score_sum=(
                np.array(loaded["tile_score_sum"])
                if "tile_score_sum" in loaded
                else None
            ),
            score_sq_sum=(
                np.array(loaded["tile_score_sq_sum"])
                if "tile_score_sq_sum" in loaded
                else None
            ),
            noise_scores=(
                np.array(loaded["tile_noise_scores"]) if with_noise else None
            ),
            n_rotations_done=int(loaded["tile_n_done"]),
            roi_score_sum=float(totals[0]),
            roi_score_sq_sum=float(totals[1]),
        )
    return pos, resume


def _merged_snapshot(backends: Sequence[MatchBackend], n_done: int) -> RunningMaps:
    snaps = [be.snapshot() for be in backends]
    merged = snaps[0]
    for s in snaps[1:]:
        merged = merge_running_maps(merged, s)
    merged.n_rotations_done = n_done
    return merged


def _merged_final(backends: Sequence[MatchBackend]) -> RunningMaps:
    maps = [be.finalize() for be in backends]
    merged = maps[0]
    for m in maps[1:]:
        merged = merge_running_maps(merged, m)
    return merged


# --------------------------------------------------------------------- input loading
@dataclasses.dataclass(frozen=True, kw_only=True)
class _Inputs:
    tomogram: Volume
    template: Volume
    mask: Volume
    tomogram_mask: npt.NDArray[np.float32] | None
    voxel_size_a: float
    tilt_range_deg: tuple[float, float] | None
    metadata: TiltSeriesMetadata | None
    search_origin_zyx: tuple[int, int, int]
    search_shape_zyx: tuple[int, int, int]


def _check_finite(arr: np.ndarray, path: Path | str, what: str) -> None:
    if not np.isfinite(arr).all():
        raise FormatError(
            f"{path}: the {what} contains NaN or inf values; fix the file"
            if isinstance(path, Path)
            else f"{path}: the {what} contains NaN or inf values; fix the array"
        )


def _ctf_constant_flags(config: MatchConfig) -> tuple[tuple[str, object], ...]:
    """The microscope constants of the CTF as (flag, value) pairs."""
    return (
        ("--voltage", config.voltage_kv),
        ("--spherical-aberration", config.spherical_aberration_mm),
        ("--amplitude-contrast", config.amplitude_contrast),
    )


def _flags_set(pairs: Iterable[tuple[str, object]]) -> list[str]:
    """The flags of ``pairs`` whose value was given (not None)."""
    return [flag for flag, value in pairs if value is not None]


def _relion5_name(star: Path, name: str, tomogram: Path) -> str:
    """The ``rlnTomoName`` of ``tomogram`` in a RELION5 ``tomograms.star``.

    ``name`` (the file name without ``rec_``, extension, ...) if the star has it;
    else, as pytom matches, the one name that is part of the file's stem (e.g.
    ``tomo200528_107`` for ``tomo200528_107_denoised.mrc``). Otherwise ``name``
    is returned and the reader's error lists the names there.

    Raises
    ------
    FormatError
        If several names of the star are part of the file's stem.
    """
    from tmfast.extraction.star_columns import read_relion5_tomogram_rows

    names = [row.tomo_name for row in read_relion5_tomogram_rows(star)]
    if name in names:
        return name
    stem = tomogram.name.split(".")[0]
    hits = [n for n in names if n and n in stem]
    if len(hits) > 1:
        raise FormatError(
            f"{star}: the tomogram names {', '.join(hits)} are all part of the file "
            f"name {tomogram.name}; rename the tomogram to its rlnTomoName (a "
            "'rec_' prefix and the extension may stay)"
        )
    if hits:
        logger.info(
            "%s: RELION5 tomogram %s (the name in %s that is part of the file name)",
            tomogram.name,
            hits[0],
            star.name,
        )
        return hits[0]
    return name


def _metadata(
    config: MatchConfig,
) -> tuple[tuple[float, float] | None, TiltSeriesMetadata | None, float | None]:
    """Return (binary wedge range, metadata, voxel size from RELION5 or None)."""
    if config.metadata is not None:
        return _config_metadata(config)
    if config.relion5_tomograms_star is not None:
        from tmfast.batch.relion5 import normalise_tomogram_stem, read_relion5_metadata

        name = (
            config.tomo_id
            if config.tomogram is None
            else _relion5_name(
                config.relion5_tomograms_star,
                normalise_tomogram_stem(config.tomogram.name)[0],
                config.tomogram,
            )
        )
        meta = read_relion5_metadata(config.relion5_tomograms_star, name)
        given = _flags_set(
            (
                ("--tilt-angles", config.tilt_angles),
                ("--defocus", config.defocus),
                ("--dose-accumulation", config.dose_accumulation),
                *_ctf_constant_flags(config),
            )
        )
        if given:
            logger.warning(
                "--relion5-tomograms-star given: ignoring %s", ", ".join(given)
            )
        vs = None  # --voxel-size-angstrom wins, then the metadata's, then the headers
        if (
            config.voxel_size_a is None
            and meta.tilt_series_pixel_size_a
            and meta.binning
        ):
            vs = float(meta.tilt_series_pixel_size_a) * float(meta.binning)
        tilts = meta.tilt_angles_deg
        return (min(tilts), max(tilts)), meta, vs
    if config.defocus is None:
        unused = _flags_set(
            (
                *_ctf_constant_flags(config),
                ("--phase-shift", config.phase_shift_deg or None),
                ("--tomogram-ctf-model", config.tomogram_ctf_model),
            )
        )
        if unused:
            logger.warning(
                "%s ignored: no CTF is applied without --defocus", ", ".join(unused)
            )
    if isinstance(config.defocus, Path) and not config.defocus.exists():
        raise ConfigError(
            f"--defocus {config.defocus}: not a number and no such file; give the "
            "defocus in µm (e.g. 3.5, no unit) or a .txt/.defocus file"
        )
    if config.tilt_angles is None:
        if config.per_tilt_weighting or config.defocus is not None:
            raise ConfigError(
                "--per-tilt-weighting and --defocus need --tilt-angles (a tilt file)"
            )
        return None, None, None
    from tmfast.io.tilts import read_defocus, read_dose, read_tilt_angles

    if isinstance(config.tilt_angles, Path):
        tilts = tuple(read_tilt_angles(config.tilt_angles))
    else:
        if config.per_tilt_weighting:
            raise ConfigError(
                "--per-tilt-weighting needs a tilt-angle file (.tlt/.rawtlt), "
                "not MIN MAX"
            )
        tilts = tuple(config.tilt_angles)
        per_tilt = _flags_set(
            (
                (
                    "--defocus",
                    config.defocus if isinstance(config.defocus, Path) else None,
                ),
                ("--dose-accumulation", config.dose_accumulation),
            )
        )
        if per_tilt:
            raise ConfigError(
                f"{', '.join(per_tilt)}: a file of one value per tilt needs "
                "-a/--tilt-angles as a tilt-angle file (.tlt/.rawtlt), not MIN MAX "
                f"{tilts[0]:g} {tilts[1]:g}"
            )
    tilt_range = (float(min(tilts)), float(max(tilts)))
    if config.dose_accumulation is not None and not config.per_tilt_weighting:
        logger.warning(
            "--dose-accumulation %s ignored: the dose weights only the per-tilt "
            "wedge; add --per-tilt-weighting to use it",
            config.dose_accumulation,
        )
    need_meta = (
        config.per_tilt_weighting
        or config.defocus is not None
        or config.dose_accumulation is not None
    )
    if not need_meta:
        return tilt_range, None, None
    defocus = (
        None
        if config.defocus is None
        else tuple(read_defocus(config.defocus, n_tilts=len(tilts), tilt_angles=tilts))
    )
    if defocus is not None and min(defocus) < 0:
        _warn_overfocus(config.defocus, defocus)
    dose = (
        None
        if config.dose_accumulation is None
        else tuple(read_dose(config.dose_accumulation, n_tilts=len(tilts)))
    )
    meta = TiltSeriesMetadata(
        tilt_angles_deg=tilts,
        defocus_um=defocus,
        dose_e_per_a2=dose,
        voltage_kv=config.voltage_kv,
        spherical_aberration_mm=config.spherical_aberration_mm,
        amplitude_contrast=config.amplitude_contrast,
        phase_shift_deg=config.phase_shift_deg,
    )
    return tilt_range, meta, None


def _warn_overfocus(given: float | Path | None, defocus: Sequence[float]) -> None:
    """Warn (once per run) that a negative defocus, overfocus in pytom's convention
    (underfocus positive), is unusual: more often a sign-convention slip."""
    if isinstance(given, Path):
        n = sum(1 for d in defocus if d < 0)
        what = f"--defocus {given}: {n} of {len(defocus)} per-tilt values are negative"
    else:
        what = f"--defocus {given:g} µm is negative"
    logger.warning(
        "%s, i.e. overfocus (underfocus is positive, as in pytom); overfocus is "
        "unusual, often a sign-convention slip: give the underfocus as a positive "
        "value unless the data really are overfocused",
        what,
    )


def _config_metadata(
    config: MatchConfig,
) -> tuple[tuple[float, float] | None, TiltSeriesMetadata | None, float | None]:
    """Metadata given as an object: CTF constants missing there come from config."""
    meta = config.metadata
    assert meta is not None
    given = [
        flag
        for flag, v in (
            ("--tilt-angles", config.tilt_angles),
            ("--defocus", config.defocus),
            ("--dose-accumulation", config.dose_accumulation),
            ("--relion5-tomograms-star", config.relion5_tomograms_star),
        )
        if v is not None
    ]
    if given:
        logger.warning("metadata given: ignoring %s", ", ".join(given))
    fill: dict[str, Any] = {
        name: value
        for name, value in (
            ("voltage_kv", config.voltage_kv),
            ("spherical_aberration_mm", config.spherical_aberration_mm),
            ("amplitude_contrast", config.amplitude_contrast),
        )
        if getattr(meta, name) is None and value is not None
    }
    if not meta.phase_shift_deg and config.phase_shift_deg:
        fill["phase_shift_deg"] = config.phase_shift_deg
    if fill:
        meta = dataclasses.replace(meta, **fill)
    tilts = meta.tilt_angles_deg
    vs = None  # --voxel-size-angstrom wins, then the metadata's, then the headers
    if config.voxel_size_a is None and meta.tilt_series_pixel_size_a and meta.binning:
        vs = float(meta.tilt_series_pixel_size_a) * float(meta.binning)
    return (float(min(tilts)), float(max(tilts))), meta, vs


def _as_volume(arr: npt.ArrayLike, name: str) -> Volume:
    a = np.asarray(arr)
    if a.ndim != 3 or min(a.shape) < 1:
        raise FormatError(
            f"{name} array: shape {a.shape} is not a 3-D (z, y, x) volume; pass a "
            "3-D array"
        )
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise FormatError(f"{name} array: dtype {a.dtype} is not numeric")
    return np.ascontiguousarray(a, dtype=np.float32)


def check_inputs(
    config: MatchConfig,
    *,
    tomogram: Volume,
    template: Volume,
    mask: Volume,
    tomogram_mask: npt.ArrayLike | None,
    tomogram_voxel_size_a: float,
    template_voxel_size_a: float,
    sources: dict[str, Path | str],
    mask_voxel_size_a: float = 0.0,
) -> _Inputs:
    """Check inputs read from files or given as arrays (one check for both).

    Parameters
    ----------
    config
        The run's options (search region, metadata, voxel-size override).
    tomogram, template, mask, tomogram_mask
        ``(z, y, x)`` volumes (``tomogram_mask`` may be None).
    tomogram_voxel_size_a, template_voxel_size_a, mask_voxel_size_a
        Voxel sizes in Å from the headers or the caller (0 when unknown; an
        unknown mask voxel size is not checked).
    sources
        Name used in messages for each input: its path, or ``"<name> array"``.

    Returns
    -------
    _Inputs
        The checked inputs with the search region and metadata resolved.

    Raises
    ------
    ConfigError, FormatError
        For NaN/inf values, a non-cubic template, a mask of another box, an empty
        mask, a template larger than the tomogram, unknown or disagreeing voxel
        sizes, a tomogram mask of another shape or with nothing to search, and a
        search region outside the tomogram.
    """
    tomo, tmpl = tomogram, template
    src_tomo, src_tmpl, src_mask = (
        sources["tomogram"],
        sources["template"],
        sources["mask"],
    )
    for arr, src, what in ((tomo, src_tomo, "tomogram"), (tmpl, src_tmpl, "template")):
        if arr.ndim != 3:
            raise FormatError(f"{src}: the {what} is not a 3-D volume")
    _check_finite(tomo, src_tomo, "tomogram")
    _check_finite(tmpl, src_tmpl, "template")
    _check_finite(mask, src_mask, "mask")
    lo, hi = float(tomo.min()), float(tomo.max())
    if lo == hi:
        # scores and their sigma would all be 0: a finished run with nothing in it
        raise FormatError(
            f"{src_tomo}: the tomogram is constant ({lo:g} in every voxel), so it "
            "has no signal to match; give the reconstructed tomogram (an empty or "
            "failed reconstruction?)"
        )
    if len(set(tmpl.shape)) != 1:
        raise ConfigError(
            f"{src_tmpl}: template box {tmpl.shape[::-1]} (x, y, z) is not "
            "cubic; pad it to a cube (tmfast create-template)"
        )
    if mask.shape != tmpl.shape:
        raise ConfigError(
            f"{src_mask}: mask box {mask.shape[::-1]} (x, y, z) differs from the "
            f"template box {tmpl.shape[0]}; create the mask with the template's "
            "box size"
        )
    if float(mask.sum()) <= 0 or float(mask.max()) <= 0:
        raise ConfigError(
            f"{src_mask}: the mask is empty (all zero or negative); give a mask "
            "that is > 0 over the particle"
        )
    if any(tmpl.shape[0] > s for s in tomo.shape):
        raise ConfigError(
            f"{src_tmpl}: template box {tmpl.shape[0]} is larger than the "
            f"tomogram {tomo.shape[::-1]} (x, y, z); bin the template or use a "
            "smaller box"
        )
    tilt_range, meta, meta_vs = _metadata(config)
    override = meta_vs if meta_vs is not None else config.voxel_size_a
    if override is not None:
        voxel = float(override)
        differing = [
            f"{src} {value:.3f} Å"
            for src, value in (
                (src_tomo, tomogram_voxel_size_a),
                (src_tmpl, template_voxel_size_a),
            )
            if value > 0 and round(value, 3) != round(voxel, 3)
        ]
        if differing:
            logger.warning(
                "using voxel size %.3f Å from %s; it differs from the header of %s",
                voxel,
                "the RELION5 metadata"
                if meta_vs is not None
                else "--voxel-size-angstrom",
                ", ".join(differing),
            )
    else:
        for src, value in (
            (src_tomo, tomogram_voxel_size_a),
            (src_tmpl, template_voxel_size_a),
        ):
            if not value > 0:
                from tmfast.io.mrc import anisotropic_voxel_size

                sizes = anisotropic_voxel_size(src) if isinstance(src, Path) else None
                if sizes is not None:
                    x, y, z = (f"{v:.3f}".rstrip("0").rstrip(".") for v in sizes)
                    raise FormatError(
                        f"{src}: anisotropic voxel size {x} x {y} x {z} Å (x, y, z) "
                        "in the header; tmfast needs cubic voxels: resample the "
                        "volume to cubic voxels, or pass --voxel-size-angstrom to "
                        "override the header if the sizes are a header slip"
                    )
                raise FormatError(
                    f"{src}: voxel size in the header is zero or invalid; set it or "
                    "pass --voxel-size-angstrom"
                    if isinstance(src, Path)
                    else f"{src}: voxel size unknown; pass voxel_size_a="
                )
        if round(tomogram_voxel_size_a, 3) != round(template_voxel_size_a, 3):
            raise ConfigError(
                f"voxel sizes disagree: tomogram {tomogram_voxel_size_a:.3f} Å, "
                f"template {template_voxel_size_a:.3f} Å; rescale the template or "
                "pass --voxel-size-angstrom"
            )
        if mask_voxel_size_a > 0 and round(mask_voxel_size_a, 3) != round(
            template_voxel_size_a, 3
        ):
            raise ConfigError(
                f"{src_mask}: mask voxel size {mask_voxel_size_a:.3f} Å differs from "
                f"the template's {template_voxel_size_a:.3f} Å; create the mask for "
                "this template or pass --voxel-size-angstrom"
            )
        voxel = tomogram_voxel_size_a
    if config.low_pass_a is not None and config.low_pass_a < 2.0 * voxel:
        logger.warning(
            "--low-pass %g Å is finer than Nyquist (%g Å at %g Å/voxel): it filters "
            "nothing; give at least %g Å",
            config.low_pass_a,
            2.0 * voxel,
            voxel,
            2.0 * voxel,
        )
    if config.high_pass_a is not None and config.high_pass_a <= 2.0 * voxel:
        logger.warning(
            "--high-pass %g Å is at or finer than Nyquist (%g Å at %g Å/voxel): it "
            "removes most of the signal; --high-pass takes the longest wavelength "
            "to remove (e.g. 400 Å), --low-pass the shortest to keep",
            config.high_pass_a,
            2.0 * voxel,
            voxel,
        )
    tmask = None
    if tomogram_mask is not None:
        src = sources["tomogram_mask"]
        tmask = np.asarray(tomogram_mask, dtype=np.float32)
        if tmask.shape != tomo.shape:
            raise ConfigError(
                f"{src}: tomogram mask shape {tmask.shape[::-1]} "
                f"differs from the tomogram {tomo.shape[::-1]} (x, y, z); give the "
                "mask of this tomogram"
            )
        _check_finite(tmask, src, "tomogram mask")
    origin, shape = [], []
    for axis, (rng, size) in zip(
        "zyx",
        (
            (config.search_z, tomo.shape[0]),
            (config.search_y, tomo.shape[1]),
            (config.search_x, tomo.shape[2]),
        ),
        strict=True,
    ):
        if rng is None:
            origin.append(0)
            shape.append(size)
            continue
        if rng[1] > size:
            raise ConfigError(
                f"--search-{axis} {rng[0]} {rng[1]}: the tomogram has {size} voxels "
                f"along {axis}; END must be <= {size}"
            )
        origin.append(rng[0])
        shape.append(rng[1] - rng[0])
    if tmask is not None:
        region = tuple(slice(o, o + s) for o, s in zip(origin, shape, strict=True))
        if not (tmask[region] > 0).any():
            hint = ""
            if not (tmask > 0).any() and (tmask < 0).any():
                # e.g. an IMOD 0/255 byte mask (unsigned) read as signed: 0/-1
                hint = (
                    f" (it holds only values <= 0, down to {float(tmask.min()):g}: "
                    "a 0/255 byte mask read as signed bytes? write it as 0/1, e.g. "
                    "float32)"
                )
            raise ConfigError(
                f"{sources['tomogram_mask']}: no voxel of the search region is inside "
                f"the tomogram mask (> 0); nothing to search{hint}"
            )
        inside = tmask[region] > 0  # min/max over it without copying the voxels
        lo = float(np.min(tomo[region], where=inside, initial=np.inf))
        hi = float(np.max(tomo[region], where=inside, initial=-np.inf))
        if lo == hi:
            raise ConfigError(
                f"{src_tomo}: the tomogram is constant ({lo:g}) in every voxel of "
                f"the search region inside the tomogram mask {sources['tomogram_mask']}"
                ", so there is no signal to match there; give the mask of this "
                "tomogram (> 0 over the specimen to search)"
            )
    return _Inputs(
        tomogram=tomo,
        template=tmpl,
        mask=mask,
        tomogram_mask=tmask,
        voxel_size_a=voxel,
        tilt_range_deg=tilt_range,
        metadata=meta,
        search_origin_zyx=tuple(origin),  # type: ignore[arg-type]
        search_shape_zyx=tuple(shape),  # type: ignore[arg-type]
    )


def _load_inputs(
    config: MatchConfig,
    *,
    tomogram: npt.ArrayLike | None = None,
    template: npt.ArrayLike | None = None,
    mask: npt.ArrayLike | None = None,
    tomogram_mask: npt.ArrayLike | None = None,
    voxel_size_a: float | None = None,
) -> _Inputs:
    """Read the files named in ``config`` that no array replaces; check everything."""
    from tmfast.io.mrc import read_volume

    given = {
        k
        for k, v in (
            ("tomogram", tomogram),
            ("template", template),
            ("mask", mask),
            ("tomogram_mask", tomogram_mask),
        )
        if v is not None
    }
    config.require_files(except_=frozenset(given))
    if voxel_size_a is not None and not (
        np.isfinite(voxel_size_a) and voxel_size_a > 0
    ):
        raise ConfigError(f"voxel_size_a {voxel_size_a!r}: must be a positive number")
    array_vs = float(voxel_size_a) if voxel_size_a is not None else 0.0
    sources: dict[str, Path | str] = {}
    vols: dict[str, Volume] = {}
    sizes: dict[str, float] = {}
    for name, arr in (("tomogram", tomogram), ("template", template), ("mask", mask)):
        if arr is not None:
            vols[name] = _as_volume(arr, name)
            sizes[name] = array_vs
            sources[name] = f"{name} array"
        else:
            path = getattr(config, name)
            vols[name], sizes[name] = read_volume(path, require_voxel_size=False)
            sources[name] = path
    tmask: npt.ArrayLike | None = None
    if tomogram_mask is not None:
        tmask = _as_volume(tomogram_mask, "tomogram_mask")
        sources["tomogram_mask"] = "tomogram_mask array"
    elif config.tomogram_mask is not None:
        tmask, _ = read_volume(config.tomogram_mask, require_voxel_size=False)
        sources["tomogram_mask"] = config.tomogram_mask
    return check_inputs(
        config,
        tomogram=vols["tomogram"],
        template=vols["template"],
        mask=vols["mask"],
        tomogram_mask=tmask,
        tomogram_voxel_size_a=sizes["tomogram"],
        template_voxel_size_a=sizes["template"],
        mask_voxel_size_a=sizes["mask"],
        sources=sources,
    )


def _angles(config: MatchConfig, voxel_size_a: float) -> tuple[AngleArray, float | str]:
    from tmfast.geometry.angles import angle_set, angle_step_from_diameter

    search: float | str
    if config.angular_search is not None:
        search = config.angular_search
    else:
        assert config.particle_diameter_a is not None
        search = float(
            angle_step_from_diameter(
                config.particle_diameter_a, voxel_size_a, low_pass_a=config.low_pass_a
            )
        )
        logger.info("angular step %.3f° from the particle diameter (Crowther)", search)
    if isinstance(search, str):
        search = str(Path(search).resolve())
    angles = np.asarray(
        angle_set(search, symmetry=config.z_axis_rotational_symmetry), dtype=np.float64
    )
    if len(angles) == 0:
        raise ConfigError(f"angular search {search!r}: the angle set is empty")
    return angles, search


# ------------------------------------------------------------------------ main entry
def _job_source(path: Path | None, is_array: bool) -> str:
    """What the job records for an input: its absolute path, or ``"<array>"``."""
    if is_array:
        return ARRAY_SOURCE
    return "" if path is None else str(path.resolve())


def _defocus_handedness(config: MatchConfig, meta: TiltSeriesMetadata | None) -> int:
    """The defocus-gradient handedness the job applies: ``--defocus-handedness`` when
    given, else the metadata's (RELION5, AreTomo3); 0 without per-tilt weighting or
    per-tilt defocus, which it needs (as pytom; a warning only when the flag asked
    for it, since metadata files carry a handedness whether or not it is used)."""
    meta_hand = 0 if meta is None else meta.defocus_handedness
    hand = meta_hand if config.defocus_handedness is None else config.defocus_handedness
    if hand != meta_hand and meta_hand:
        logger.info(
            "--defocus-handedness %d replaces the metadata's %d", hand, meta_hand
        )
    if hand and (
        not config.per_tilt_weighting or meta is None or meta.defocus_um is None
    ):
        log = logger.warning if config.defocus_handedness else logger.debug
        log(
            "defocus handedness %d: no defocus gradient without per-tilt weighting "
            "and per-tilt defocus (--per-tilt-weighting, with --defocus or a "
            "RELION5/AreTomo3 metadata file)",
            hand,
        )
        return 0
    return hand


def _gradient_weights(
    meta: TiltSeriesMetadata,
    shape_zyx: tuple[int, ...],
    voxel_size_a: float,
    weight_for: Callable[[TiltSeriesMetadata], npt.NDArray[np.float32]],
    cells: Sequence[Tile],
) -> Callable[[Tile], npt.NDArray[np.float32]]:
    """Return each tile's template weight with the defocus at the centre of the
    user's sub-volume (``cells``: the ``-s`` split's tiles) that contains the
    tile's scored region's centre, relative to the tomogram centre. Tiles the engine
    adds when a device lacks memory therefore keep their cell's weight (the scores
    do not depend on the device, except for a tile straddling two cells); cells
    at the same (x, z) share one weight."""
    from tmfast.filters.defocus_gradient import metadata_at

    cache: dict[tuple[float, float], npt.NDArray[np.float32]] = {}

    def cell_of(tile: Tile) -> Tile:
        mid = [
            (u0 + u1) / 2
            for u0, u1 in zip(tile.unique_start_zyx, tile.unique_stop_zyx, strict=True)
        ]
        for cell in cells:
            if all(
                a <= m < b
                for m, a, b in zip(
                    mid, cell.unique_start_zyx, cell.unique_stop_zyx, strict=True
                )
            ):
                return cell
        return tile  # not reached: the cells cover the search region

    def weight(tile: Tile) -> npt.NDArray[np.float32]:
        cell = cell_of(tile)
        z_a, _y_a, x_a = (
            ((u0 + u1) / 2 - s / 2) * voxel_size_a
            for u0, u1, s in zip(
                cell.unique_start_zyx, cell.unique_stop_zyx, shape_zyx, strict=True
            )
        )
        if (x_a, z_a) not in cache:
            at = metadata_at(meta, x_a, z_a)
            assert at.defocus_um is not None
            logger.debug(
                "tile %d at x %.0f, z %.0f Å: defocus %s µm",
                tile.index,
                x_a,
                z_a,
                ", ".join(f"{d:.3f}" for d in at.defocus_um),
            )
            cache[x_a, z_a] = weight_for(at)
        return cache[x_a, z_a]

    return weight


def match_template(
    config: MatchConfig,
    *,
    tomogram: npt.ArrayLike | None = None,
    template: npt.ArrayLike | None = None,
    mask: npt.ArrayLike | None = None,
    tomogram_mask: npt.ArrayLike | None = None,
    voxel_size_a: float | None = None,
    metadata: TiltSeriesMetadata | None = None,
    backend: MatchBackend | Sequence[MatchBackend] | None = None,
    progress: ProgressCallback | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    batch_rotations: int = DEFAULT_BATCH_ROTATIONS,
) -> MatchResult:
    """Run template matching in memory.

    Parameters
    ----------
    config
        The run's options.
    tomogram, template, mask, tomogram_mask
        ``(z, y, x)`` arrays used instead of the files named in ``config`` (which
        may then be None); checked exactly as files are. The job records
        ``"<array>"`` for them.
    voxel_size_a
        Voxel size of the arrays in Å (``config.voxel_size_a`` overrides every
        input, as ``--voxel-size-angstrom``).
    metadata
        Tilt-series metadata; replaces ``config.metadata`` (and the tilt, defocus
        and dose files).
    backend
        A backend (or one per device) to use instead of ``config.backend`` /
        ``config.gpu_ids``.
    progress
        ``progress(done, total)`` callback over rotations.
    checkpoint_dir
        Folder for ``{tomo_id}_checkpoint.npz`` (resumed if it matches this config);
        None disables checkpoints.
    batch_rotations
        Rotations per backend call.

    Returns
    -------
    MatchResult

    Raises
    ------
    ConfigError, FormatError
        For invalid options or input files (before any heavy work).
    BackendUnavailableError
        If the requested backend cannot run here.
    """
    from tmfast import __version__
    from tmfast.filters import template_weight, tomogram_filter
    from tmfast.geometry.angles import angle_set_sha256

    if metadata is not None:
        config = config.with_updates(metadata=metadata)
    arrays = {
        k: v
        for k, v in (
            ("tomogram", tomogram),
            ("template", template),
            ("mask", mask),
            ("tomogram_mask", tomogram_mask),
        )
        if v is not None
    }
    inputs = _load_inputs(
        config,
        tomogram=tomogram,
        template=template,
        mask=mask,
        tomogram_mask=tomogram_mask,
        voxel_size_a=voxel_size_a,
    )
    handedness = _defocus_handedness(config, inputs.metadata)
    angles, search = _angles(config, inputs.voxel_size_a)
    n_box = inputs.template.shape[0]
    # an impossible -s is bad input: one error line, before any warning or work
    plan_tiles(
        inputs.search_origin_zyx,
        inputs.search_shape_zyx,
        config.volume_split_xyz,
        n_box,
        fast_period(inputs.tomogram.shape),
    )
    thinnest = min(*inputs.search_shape_zyx, *inputs.tomogram.shape)
    if config.spectral_whitening and thinnest < 4:
        raise ConfigError(
            f"--spectral-whitening: the search region is {thinnest} voxels thin "
            "along one axis; the whitening filter is estimated from patches of the "
            "search region, at least 4 voxels on a side: widen --search-x/-y/-z or "
            "drop --spectral-whitening"
        )
    if backend is None:
        from tmfast.backends.registry import get_backends

        backends: list[MatchBackend] = get_backends(
            config.backend, device_ids=config.gpu_ids
        )
    elif isinstance(backend, Sequence):
        backends = list(backend)
    else:
        backends = [backend]
    if inputs.tilt_range_deg is None and inputs.metadata is None:
        logger.warning("no --tilt-angles: the template gets no missing-wedge weighting")
    profile = None
    if config.spectral_whitening:
        from tmfast.filters.whitening import estimate_whitening_profile

        patch = int(
            min(max(n_box, 64), *inputs.search_shape_zyx, *inputs.tomogram.shape)
        )
        # As pytom 0.14: average the spectrum only over Fourier voxels the tilt
        # geometry covers, so the missing wedge does not bias the profile.
        coverage = None
        if inputs.tilt_range_deg is not None:
            from tmfast.filters.wedge import binary_wedge

            coverage = binary_wedge((patch, patch, patch), *inputs.tilt_range_deg)
        profile = np.asarray(
            estimate_whitening_profile(
                inputs.tomogram, patch_size=patch, coverage_weight=coverage
            ),
            dtype=np.float32,
        )
    vs = inputs.voxel_size_a

    def tomo_weight(shape: tuple[int, int, int]) -> npt.NDArray[np.float32]:
        return tomogram_filter(
            shape,
            vs,
            tilt_range_deg=inputs.tilt_range_deg,
            metadata=inputs.metadata,
            low_pass_a=config.low_pass_a,
            high_pass_a=config.high_pass_a,
            whitening_profile=profile,
        )

    # the raw tomogram is not needed any more: keep only the filtered one
    inputs = dataclasses.replace(
        inputs, tomogram=filter_tomogram(inputs.tomogram, tomo_weight)
    )

    def weight_for(meta: TiltSeriesMetadata | None) -> npt.NDArray[np.float32]:
        return template_weight(
            n_box,
            vs,
            tilt_range_deg=inputs.tilt_range_deg,
            metadata=meta,
            per_tilt_weighting=config.per_tilt_weighting,
            low_pass_a=config.low_pass_a,
            high_pass_a=config.high_pass_a,
            ctf_model=config.tomogram_ctf_model,
            whitening_profile=profile,
        )

    tile_weight = None
    if handedness:
        assert inputs.metadata is not None
        cells = plan_tiles(
            inputs.search_origin_zyx,
            inputs.search_shape_zyx,
            config.volume_split_xyz,
            n_box,
            fast_period(inputs.tomogram.shape),
        )
        tile_weight = _gradient_weights(
            dataclasses.replace(inputs.metadata, defocus_handedness=handedness),
            inputs.tomogram.shape,
            vs,
            weight_for,
            cells,
        )
        # every tile takes tile_weight's (cached) weight: no separate global one
        weight = tile_weight(cells[0])
    else:
        weight = weight_for(inputs.metadata)
    ckpt_path = (
        None
        if checkpoint_dir is None
        else output_paths(Path(checkpoint_dir), config.tomo_id)["checkpoint"]
    )
    base_key = config.result_sha256() + ":" + angle_set_sha256(angles)
    if inputs.metadata is not None:
        # the tilts, defocus and dose as read (a tilt-series STAR beside a
        # tomograms.star, or a file edited in place, change them under one name)
        blob = json.dumps(inputs.metadata.to_dict(), sort_keys=True).encode()
        base_key += ":metadata=" + hashlib.sha256(blob).hexdigest()
    if inputs.tilt_range_deg is not None:
        base_key += f":tilt-range={inputs.tilt_range_deg!r}"
    if handedness:  # the one applied, whether from the flag or the metadata
        base_key += f":defocus-handedness={handedness}"
    if arrays and ckpt_path is not None:
        # array inputs have no file stamp: the checkpoint key hashes their content
        h = hashlib.sha256(base_key.encode())
        for name in sorted(arrays):
            a = np.ascontiguousarray(arrays[name], dtype=np.float32)
            h.update(name.encode() + str(a.shape).encode())
            h.update(a.tobytes())
        h.update(repr(voxel_size_a).encode())
        base_key = h.hexdigest()
    seed = config.rng_seed
    noise = None
    if config.random_phase_correction:
        if seed is None:
            # resuming an unseeded run must reuse the seed it started with
            seed = _checkpoint_seed(ckpt_path, base_key)
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little")
        logger.info("random-phase correction: rng seed %d", seed)
        noise = phase_randomised_template(inputs.template, inputs.mask, seed=seed)
    key = f"{base_key}:{seed}"
    t0 = time.monotonic()
    maps = search_volume(
        inputs.tomogram,
        inputs.template,
        inputs.mask,
        weight,
        angles,
        backends=backends,
        search_origin_zyx=inputs.search_origin_zyx,
        search_shape_zyx=inputs.search_shape_zyx,
        split_xyz=config.volume_split_xyz,
        tomogram_mask=inputs.tomogram_mask,
        mask_is_spherical=not config.non_spherical_mask,
        noise_template=noise,
        batch_rotations=batch_rotations,
        progress=progress,
        checkpoint_path=ckpt_path,
        checkpoint_key=key,
        checkpoint_every=config.checkpoint_every,
        checkpoint_interval_s=config.checkpoint_interval_s,
        tile_weight=tile_weight,
        checkpoint_options=json.dumps(config.result_fields(), sort_keys=True),
    )
    elapsed = time.monotonic() - t0
    scores = maps.scores
    noise_mean = None
    if maps.noise_scores is not None:
        noise_mean = maps.roi_sums.noise_mean()
        scores, _ = noise_corrected_scores(
            maps.scores, maps.noise_scores, noise_mean=noise_mean
        )
    stats = maps.roi_sums.statistics(
        len(angles), corrected=maps.noise_scores is not None
    )
    logger.info(
        "matched %d rotations in %.1f s (%s); search sigma %.4g over %d "
        "voxel-rotations",
        len(angles),
        elapsed,
        backends[0].name,
        stats.std,
        stats.search_space,
    )
    job = MatchJob(
        tomo_id=config.tomo_id,
        tomogram=_job_source(config.tomogram, "tomogram" in arrays),
        template=_job_source(config.template, "template" in arrays),
        mask=_job_source(config.mask, "mask" in arrays),
        output_dir=str(config.destination.resolve()),
        tomo_shape_zyx=tuple(int(s) for s in inputs.tomogram.shape),  # type: ignore[arg-type]
        search_origin_zyx=inputs.search_origin_zyx,
        search_shape_zyx=inputs.search_shape_zyx,
        voxel_size_a=float(vs),
        angular_search=search,
        rotational_symmetry=config.z_axis_rotational_symmetry,
        n_rotations=len(angles),
        angle_set_sha256=angle_set_sha256(angles),
        mask_is_spherical=not config.non_spherical_mask,
        particle_diameter_a=config.particle_diameter_a,
        low_pass_a=config.low_pass_a,
        high_pass_a=config.high_pass_a,
        spectral_whitening=config.spectral_whitening,
        per_tilt_weighting=config.per_tilt_weighting,
        tomogram_ctf_model=config.tomogram_ctf_model,
        random_phase_correction=config.random_phase_correction,
        rng_seed=seed,
        tomogram_mask=(
            ARRAY_SOURCE
            if "tomogram_mask" in arrays
            else None
            if config.tomogram_mask is None
            else str(config.tomogram_mask.resolve())
        ),
        metadata=inputs.metadata,
        volume_split_xyz=config.volume_split_xyz,
        tilt_range_deg=inputs.tilt_range_deg,
        whitening_profile=(
            None if profile is None else tuple(float(v) for v in profile)
        ),
        noise_mean=noise_mean,
        resumed_rotations=maps.resumed_rotations,
        backend=backends[0].name,
        half_precision=config.half_precision,
        defocus_handedness=handedness,
        stats=stats,
        tmfast_version=__version__,
    )
    return MatchResult(
        scores=scores,
        angles=maps.angles,
        angle_set=angles,
        stats=stats,
        job=job,
        noise_scores=maps.noise_scores,
        maps=maps,
        tomogram_mask=inputs.tomogram_mask,
    )


def _write_outputs(
    config: MatchConfig,
    result: MatchResult,
    paths: dict[str, Path],
    *,
    overwrite: bool,
) -> MatchJob:
    """Write the maps and the job file, then remove the checkpoints."""
    from tmfast.io.mrc import write_volume

    vs = result.job.voxel_size_a
    scores = result.scores.astype(np.float16 if config.half_precision else np.float32)
    written: list[Path] = []
    try:
        write_volume(paths["scores"], scores, vs, overwrite=overwrite)
        written.append(paths["scores"])
        write_volume(
            paths["angles"], result.angles.astype(np.float32), vs, overwrite=overwrite
        )
        written.append(paths["angles"])
        job = result.job.with_updates(
            scores_file=str(paths["scores"].resolve()),
            angles_file=str(paths["angles"].resolve()),
        )
        job.write(paths["job"], overwrite=overwrite)
    except BaseException:
        # no scores map without its job file: a rerun of the same command must
        # not stop at "output exists" (the checkpoints are kept for it)
        for path in written:
            path.unlink(missing_ok=True)
        raise
    remove_checkpoints(config.destination, config.tomo_id)
    logger.info("wrote %s, %s, %s", paths["scores"], paths["angles"], paths["job"])
    if _STOP.signum is not None:
        logger.warning(
            "%s arrived after the search: outputs complete",
            signal.Signals(_STOP.signum).name,
        )
    return job


def _prepare_destination(dest: Path) -> list[Path]:
    """Create ``dest`` (and parents) and test-write a file there.

    Returns the folders this call created, deepest first.

    Raises
    ------
    ConfigError
        If the folder cannot be created or written (exit code 2).
    """
    created = missing_folders(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmfast-write-test-", dir=dest)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        remove_empty_folders(created)
        raise ConfigError(
            f"{dest}: output folder cannot be created or written "
            f"({exc.strerror or exc}); choose another -d/--destination"
        ) from None
    return created


def _lock_path(destination: Path, tomo_id: str) -> Path:
    return destination / f".{tomo_id}_match.lock"


@contextlib.contextmanager
def _one_run_at_a_time(destination: Path, tomo_id: str) -> Iterator[None]:
    """Hold an exclusive lock on ``{destination}/.{tomo_id}_match.lock``.

    Two runs writing one tomogram's outputs and checkpoint into one folder would
    take each other's checkpoints and the second would fail after its whole search
    on the outputs the first wrote. The lock (``flock``: released by the kernel when
    a process dies, so never stale) makes the second refuse at once. The file is
    removed when the run ends. Where the file system has no locks, runs go on.

    Raises
    ------
    ConfigError
        If another run holds the lock (exit code 2).
    """
    import fcntl

    path = _lock_path(destination, tomo_id)
    fd = -1
    for _ in range(10):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # e.g. another user's lock file in a shared folder
            logger.debug("no run lock in %s (%s)", destination, exc)
            fd = -1
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip()
            except OSError:
                holder = ""
            os.close(fd)
            raise ConfigError(
                f"{destination}: another tmfast match ({holder or 'unknown process'}) "
                f"is writing {tomo_id}_* in this folder now; wait for it to finish, "
                "or give this run another -d/--destination"
            ) from None
        except OSError as exc:  # no locks on this file system
            logger.debug("no run lock in %s (%s)", destination, exc)
            os.close(fd)
            fd = -1
            break
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file the previous holder removed before we locked it
            break
        os.close(fd)
        fd = -1
    if fd >= 0:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode())
        except OSError:
            pass
    try:
        yield
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(fd)


def _checkpoint_options(path: Path) -> dict[str, Any] | None:
    """The options a checkpoint was written with, or None (unreadable, or written
    by a tmfast that did not store them)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "options" not in z.files:
                return None
            options = json.loads(str(z["options"]))
    except (OSError, ValueError):
        return None
    return options if isinstance(options, dict) else None


def _keep_other_runs_checkpoint(config: MatchConfig, path: Path) -> None:
    """Refuse to replace the checkpoint of a stopped run with other options.

    Raises
    ------
    ConfigError
        If ``path`` exists and was written with other options or input files.
    """
    from tmfast.matching.config import flag_name

    if not path.exists():
        return
    stored = _checkpoint_options(path)
    current = config.result_fields()
    if stored == current:
        return
    if stored is None:
        what = "a stopped run (of another tmfast version, or unreadable)"
    else:
        names = []
        for key in sorted(stored.keys() | current.keys()):
            old, new = stored.get(key), current.get(key)
            if old == new:
                continue
            changed_file = (
                isinstance(old, list)
                and isinstance(new, list)
                and len(old) == len(new) == 3
                and old[0] == new[0]
            )
            names.append(flag_name(key) + (" (file changed)" if changed_file else ""))
        what = "a stopped run with other " + ", ".join(names)
    raise ConfigError(
        f"{path}: checkpoint of {what}; rerun that run's command to resume it, pass "
        "--overwrite to discard it, or give this run another -d/--destination"
    )


def run_match(
    config: MatchConfig,
    *,
    progress: ProgressCallback | None = None,
    overwrite: bool = False,
    backend: MatchBackend | Sequence[MatchBackend] | None = None,
    batch_rotations: int = DEFAULT_BATCH_ROTATIONS,
    protect_other_checkpoints: bool = False,
) -> MatchJob:
    """Run :func:`match_template` and write the maps and the job file atomically.

    Checkpoints go to ``{destination}/{tomo_id}_checkpoint.npz`` and are removed when
    the outputs are written. On SIGTERM or SIGUSR1 (:data:`STOP_SIGNALS`, when
    called from the main thread) the current batch of rotations is finished, a
    checkpoint written atomically and :class:`MatchInterrupted` raised (after
    calling a Python handler the caller had installed for that signal); the same
    call then resumes from exactly there. A checkpoint of other options or input
    files is not resumed: it is replaced, or with ``protect_other_checkpoints``
    (the CLI) refused unless ``overwrite``. One run at a time may write a
    tomogram's outputs into a folder (a lock file ``.{tomo_id}_match.lock`` there).

    Returns
    -------
    MatchJob
        The job record as written to ``{tomo_id}_job.json``.

    Raises
    ------
    OutputExistsError
        If an output exists and ``overwrite`` is false (checked before matching).
    ConfigError
        If the destination cannot be created or written, another run is writing
        this tomogram's outputs there, or (``protect_other_checkpoints``) a
        checkpoint of other options is there (all checked before matching).
    OutputWriteError
        If writing the outputs fails after matching.
    MatchInterrupted
        If stopped by SIGTERM/SIGUSR1 (``exit_code`` 128 + signal number).
    """

    dest = config.destination
    paths = output_paths(dest, config.tomo_id)
    for name in ("scores", "angles", "job"):
        check_writable(paths[name], overwrite=overwrite)
    # created and test-written before any compute; removed again (if this call
    # created it and it is still empty) when the run fails on bad input
    created = _prepare_destination(dest)
    interrupted: MatchInterrupted | None = None
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(_one_run_at_a_time(dest, config.tomo_id))
        except BaseException:
            remove_empty_folders(created)
            raise
        previous = stack.enter_context(_stop_on_signals())
        try:
            if protect_other_checkpoints and not overwrite:
                _keep_other_runs_checkpoint(config, paths["checkpoint"])
            result = match_template(
                config,
                backend=backend,
                progress=progress,
                checkpoint_dir=dest,
                batch_rotations=batch_rotations,
            )
        except MatchInterrupted as exc:
            # reported once, by whoever catches it (the CLI prints it as its one
            # error line; the batch task logs it): logging it here too doubled it
            interrupted = exc
            if exc.checkpoint is None:
                stack.close()
                remove_empty_folders(created)  # a folder this run made, left empty
        except BaseException:
            stack.close()  # the lock file goes first: the folder may be empty now
            remove_empty_folders(created)
            raise
        else:
            # a stop signal arriving now waits for the three (atomic) writes: a
            # rerun then finds complete outputs, never a scores file without a job
            try:
                job = _write_outputs(config, result, paths, overwrite=overwrite)
            except OutputExistsError:
                raise  # its own message (check_writable) says what to do
            except OSError as exc:
                raise OutputWriteError(
                    f"{dest}: writing the outputs failed ({exc.strerror or exc}); "
                    "free space or fix the folder, then rerun the same command"
                ) from exc
    if interrupted is not None:
        # hand the signal on to a handler installed by the caller (the batch task
        # records the interruption), else report it (the CLI exits 128 + signum)
        prev = previous.get(interrupted.signum)
        if callable(prev) and prev is not signal.default_int_handler:
            prev(interrupted.signum, None)
        raise interrupted
    return job
