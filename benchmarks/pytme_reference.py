"""Time pyTME's CPU exhaustive matching (FLCSphericalMask) on synthetic data.

Run with a Python that has ``pytme`` installed (it is not a tmfast dependency)::

    python benchmarks/pytme_reference.py Z Y X BOX N_ROT

Prints one JSON line: seconds for ``N_ROT`` rotations (setup included) and the peak
resident memory. ``bench_cpu_match.py`` calls it when ``TMFAST_PYTME_PYTHON`` names
such an interpreter, with the same tomogram size, box and rotation count.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np


def main() -> None:
    z, y, x, box, n_rot = (int(v) for v in sys.argv[1:6])
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
    setup, score = MATCHING_EXHAUSTIVE_REGISTER["FLCSphericalMask"]
    t0 = time.perf_counter()
    match_exhaustive(
        matching_data=data,
        matching_score=score,
        matching_setup=setup,
        callback_class=MaxScoreOverRotations,
        callback_class_args={},
        job_schedule=(1, 1),
    )
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "n_rotations": len(rotations),
                "peak_rss_mib": peak_kib / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
