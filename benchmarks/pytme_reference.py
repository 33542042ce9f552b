"""Time pyTME's CPU exhaustive matching (FLCSphericalMask) on synthetic data.

Run with a Python that has ``pytme`` installed (it is not a tmfast dependency)::

    python benchmarks/pytme_reference.py Z Y X BOX N_ROT

Prints one JSON line: seconds for ``N_ROT`` rotations (setup included), the peak
resident memory and ``per_rotation_s``: the mean interval between consecutive calls of
the score-collecting callback (one call per rotation; the first excluded), i.e. the
steady-state time per rotation measured inside one run (empty when pyTME ran the
callback out of process). ``bench_cpu_match.py`` calls it when
``TMFAST_PYTME_PYTHON`` names such an interpreter, with the same tomogram size, box
and rotation count.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np

#: perf_counter() at each callback call (one per rotation), filled in-process.
_STAMPS: list[float] = []


def main() -> None:
    z, y, x, box, n_rot = (int(v) for v in sys.argv[1:6])
    # optional: pyTME's (jobs, inner threads) schedule, default (1, cores)
    n_jobs, n_threads = (
        (int(sys.argv[6]), int(sys.argv[7]))
        if len(sys.argv) > 7
        else (1, os.cpu_count() or 1)
    )
    from tme.analyzer import MaxScoreOverRotations
    from tme.matching_data import MatchingData
    from tme.matching_exhaustive import MATCHING_EXHAUSTIVE_REGISTER, match_exhaustive
    from tme.rotations import get_rotation_matrices

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

    setup, score = MATCHING_EXHAUSTIVE_REGISTER["FLCSphericalMask"]
    t0 = time.perf_counter()
    match_exhaustive(
        matching_data=data,
        matching_score=score,
        matching_setup=setup,
        callback_class=TimedMax,
        callback_class_args={},
        job_schedule=(n_jobs, n_threads),
    )
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "n_rotations": len(rotations),
                "peak_rss_mib": peak_kib / 1024,
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
