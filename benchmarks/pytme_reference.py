"""Time pyTME's CPU exhaustive matching (``FLCSphericalMask`` or ``FLC``).

Run with a Python that has ``pytme`` installed (it is not a tmfast dependency)::

    python benchmarks/pytme_reference.py Z Y X BOX N_ROT [JOBS THREADS]
        [--score FLCSphericalMask|FLC] [--background phase-scrambling] [--data DIR]

``--score`` picks pyTME's score from its ``MATCHING_EXHAUSTIVE_REGISTER``:
``FLCSphericalMask`` (default; the mask is never rotated, ``flcSphericalMask_setup``
+ ``corr_scoring``) or ``FLC`` (``flc_setup`` + ``flc_scoring``: the mask is rotated
with the template every rotation, the like-for-like reference for tmfast's
non-spherical mask). ``--background phase-scrambling`` turns on pyTME's
background correction (``match_exhaustive(background_correction=...)``): a second
correlation per rotation with a phase-scrambled template, whose maximum over
rotations is subtracted at the end, the like-for-like reference for tmfast's
random-phase correction. ``--data DIR`` reads ``tomogram.npy``, ``template.npy`` and
``mask.npy`` from DIR (``bench_cpu_match.py`` writes the arrays it matches there);
without it a random tomogram and template and a hard sphere mask of radius
``0.45 * BOX`` of the given sizes are used.

Prints one JSON line: seconds for ``N_ROT`` rotations (setup included), the peak
resident memory and ``per_rotation_s``: the mean interval between consecutive calls of
the score-collecting callback (one call per rotation; the first excluded), i.e. the
steady-state time per rotation measured inside one run (empty when pyTME ran the
callback out of process). ``bench_cpu_match.py`` calls it when
``TMFAST_PYTME_PYTHON`` names such an interpreter, with the same tomogram size, box
and rotation count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time

import numpy as np

#: perf_counter() at each callback call (one per rotation), filled in-process.
_STAMPS: list[float] = []


def _peak_rss_kib() -> float:
    """Peak resident memory of this process in KiB.

    ``VmHWM`` from ``/proc/self/status`` where there is one: on Linux ``ru_maxrss``
    keeps the peak of the process that forked this one (e.g. a large pytest run)
    across ``exec``, so it can report the parent's memory rather than pyTME's.
    Falls back to ``ru_maxrss`` elsewhere.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _tree_rss_kib(root: int) -> float:
    """Summed ``VmRSS`` (KiB) of ``root`` and all its descendant processes (Linux).

    Walks ``/proc/PID/task/TID/children``; a process that ends meanwhile counts 0.
    """
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += float(line.split()[1])
                        break
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as kids:
                    todo.extend(int(k) for k in kids.read().split())
        except OSError:
            continue
    return total


class _TreeRssSampler(threading.Thread):
    """Samples the process tree's summed RSS every ``period_s``; keeps the peak.

    pyTME's job schedule ``(1, threads)`` runs the rotations in ``threads`` joblib
    worker processes, whose memory neither ``VmHWM`` nor ``ru_maxrss`` of this
    process sees. Pages shared between the processes (libraries, shared-memory
    arrays) are counted once per process, so this is an upper bound.
    """

    def __init__(self, period_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.period_s = period_s
        self.peak_kib = 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_kib = max(self.peak_kib, _tree_rss_kib(os.getpid()))
            self._stop_event.wait(self.period_s)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak_kib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sizes", type=int, nargs="+", help="Z Y X BOX N_ROT [JOBS THREADS]"
    )
    parser.add_argument(
        "--score", default="FLCSphericalMask", choices=("FLCSphericalMask", "FLC")
    )
    parser.add_argument(
        "--background",
        default=None,
        choices=("phase-scrambling",),
        help="pyTME background correction",
    )
    parser.add_argument(
        "--data", default=None, help="folder with tomogram/template/mask .npy"
    )
    args = parser.parse_args(sys.argv[1:])
    if len(args.sizes) not in (5, 7):
        parser.error("give Z Y X BOX N_ROT, optionally followed by JOBS THREADS")
    z, y, x, box, n_rot = args.sizes[:5]
    # optional: pyTME's (jobs, inner threads) schedule, default (1, cores)
    n_jobs, n_threads = (
        (args.sizes[5], args.sizes[6])
        if len(args.sizes) == 7
        else (1, os.cpu_count() or 1)
    )
    from tme.analyzer import MaxScoreOverRotations
    from tme.matching_data import MatchingData
    from tme.matching_exhaustive import MATCHING_EXHAUSTIVE_REGISTER, match_exhaustive
    from tme.rotations import get_rotation_matrices

    if args.data is not None:
        target, template, mask = (
            np.load(os.path.join(args.data, f"{name}.npy")).astype(np.float32)
            for name in ("tomogram", "template", "mask")
        )
        if target.shape != (z, y, x) or template.shape != (box,) * 3:
            parser.error(f"--data {args.data}: arrays do not match sizes {args.sizes}")
    else:
        rng = np.random.default_rng(0)
        target = rng.standard_normal((z, y, x), dtype=np.float32)
        template = rng.standard_normal((box, box, box), dtype=np.float32)
        zz, yy, xx = np.indices((box,) * 3) - box // 2
        mask = (np.sqrt(xx**2 + yy**2 + zz**2) <= 0.45 * box).astype(np.float32)
    data = MatchingData(target, template)
    data.template_mask = mask
    rotations = get_rotation_matrices(angular_sampling=10, dim=3)[:n_rot]
    data.rotations = rotations

    class TimedMax(MaxScoreOverRotations):  # type: ignore[misc]
        """MaxScoreOverRotations that records when each rotation's scores arrive."""

        def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            _STAMPS.append(time.perf_counter())
            return super().__call__(*args, **kwargs)

    setup, score = MATCHING_EXHAUSTIVE_REGISTER[args.score]
    sampler = _TreeRssSampler() if os.path.isdir("/proc") else None
    if sampler is not None:
        sampler.start()
    t0 = time.perf_counter()
    match_exhaustive(
        matching_data=data,
        matching_score=score,
        matching_setup=setup,
        callback_class=TimedMax,
        callback_class_args={},
        job_schedule=(n_jobs, n_threads),
        background_correction=args.background,
    )
    seconds = time.perf_counter() - t0
    peak_kib = _peak_rss_kib()
    tree_peak_kib = sampler.stop() if sampler is not None else None
    print(
        json.dumps(
            {
                "score": args.score,
                "background_correction": args.background,
                "seconds": seconds,
                "n_rotations": len(rotations),
                "peak_rss_mib": peak_kib / 1024,
                "peak_tree_rss_mib": (
                    tree_peak_kib / 1024 if tree_peak_kib is not None else None
                ),
                "per_rotation_s": (
                    (_STAMPS[-1] - _STAMPS[1]) / (len(_STAMPS) - 2)
                    if len(_STAMPS) > 2
                    else None
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
