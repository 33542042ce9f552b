"""Peak-picking benchmark: Rust tiled picker vs the numpy reference loop.

Quick mode (the default, ``--benchmark-disable``): a small map, run as a plain test
that also checks both pickers agree. Full mode (``--benchmark-enable``): 1,000 picks
on a 512x512x256 map against the numpy loop (target >= 10x), 5,000 picks on
1024x1024x512 (target < 5 s on 2 cores), and peak memory of the picker measured in a
subprocess with ``ru_maxrss`` (target: map + picker < 1.2x the map).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from tmfast.extraction.peaks import find_peaks, numpy_reference_find_peaks

RADIUS_VOX = 10.0


def _noise_map(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Gaussian noise filled slab by slab (no float64 temporaries of map size)."""
    rng = np.random.default_rng(seed)
    out = np.empty(shape, np.float32)
    for z in range(shape[0]):
        out[z] = rng.standard_normal(shape[1:], dtype=np.float32)
    return out


_MEMORY_SCRIPT = """
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {bench_dir!r})
from bench_peaks import _noise_map
from tmfast.extraction.peaks import find_peaks
shape = tuple({shape!r}); n = {n!r}
scores = _noise_map(shape)
angles = np.zeros(shape, np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t = time.perf_counter()
p = find_peaks(scores, n_peaks=n, exclusion_radius_vox={r!r}, angle_map=angles)
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"seconds": dt, "extra_bytes": peak - base,
                   "map_bytes": scores.nbytes, "n": len(p)}}))
"""


def _memory_run(shape: tuple[int, int, int], n: int) -> dict[str, float]:
    """Run the picker in a fresh process and return time and peak extra memory."""
    from pathlib import Path

    code = _MEMORY_SCRIPT.format(
        bench_dir=str(Path(__file__).parent), shape=list(shape), n=n, r=RADIUS_VOX
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    out: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def test_peaks_vs_numpy(benchmark: pytest.FixtureRequest) -> None:
    full = not benchmark.disabled  # type: ignore[attr-defined]
    shape = (256, 512, 512) if full else (32, 48, 48)
    n = 1000 if full else 30
    scores = _noise_map(shape)

    t = time.perf_counter()
    ref = numpy_reference_find_peaks(scores, n_peaks=n, exclusion_radius_vox=RADIUS_VOX)
    t_ref = time.perf_counter() - t

    got = benchmark.pedantic(  # type: ignore[attr-defined]
        find_peaks,
        args=(scores,),
        kwargs={"n_peaks": n, "exclusion_radius_vox": RADIUS_VOX},
        rounds=3 if full else 1,
        iterations=1,
    )
    np.testing.assert_array_equal(got.positions_zyx, ref.positions_zyx)
    t = time.perf_counter()
    find_peaks(scores, n_peaks=n, exclusion_radius_vox=RADIUS_VOX)
    t_rust = time.perf_counter() - t
    ratio = t_ref / t_rust
    benchmark.extra_info.update(  # type: ignore[attr-defined]
        {
            "shape_zyx": shape,
            "n_peaks": n,
            "numpy_s": t_ref,
            "rust_s": t_rust,
            "speedup": ratio,
        }
    )
    print(
        f"\npeaks {shape} n={n}: numpy {t_ref:.3f} s, rust {t_rust:.3f} s, "
        f"speedup {ratio:.1f}x"
    )
    if full:
        assert ratio >= 10.0


def test_peaks_large_map_time_and_memory(benchmark: pytest.FixtureRequest) -> None:
    full = not benchmark.disabled  # type: ignore[attr-defined]
    shape = (512, 1024, 1024) if full else (64, 64, 64)
    n = 5000 if full else 50
    res = benchmark.pedantic(  # type: ignore[attr-defined]
        _memory_run, args=(shape, n), rounds=1, iterations=1
    )
    ratio = 1.0 + res["extra_bytes"] / res["map_bytes"]
    benchmark.extra_info.update({"shape_zyx": shape, **res, "memory_ratio": ratio})  # type: ignore[attr-defined]
    print(
        f"\npeaks {shape} n={n}: {res['seconds']:.3f} s, picks {res['n']}, "
        f"peak memory (map + picker) / map = {ratio:.3f}"
    )
    assert res["n"] == n
    if full:
        assert ratio < 1.2
