"""Angle-set benchmarks: generation of the pytom-compatible set, the covering-radius
estimate and the covering-optimal set.

Quick mode (default, ``--benchmark-disable``): each benchmark runs once as a plain test
and checks its result (the 3 degree set has pytom's 576,000 rotations). Full mode
(``--benchmark-enable``): timed rounds; the target is the 3 degree set in < 100 ms.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from tmfast.geometry.angles import (
    covering_radius_deg,
    optimal_angle_set,
    pytom_angle_set,
)


def test_pytom_set_3deg(benchmark: pytest.FixtureRequest) -> None:
    full = not benchmark.disabled  # type: ignore[attr-defined]
    rounds = 20 if full else 1
    angles = benchmark.pedantic(  # type: ignore[attr-defined]
        pytom_angle_set, args=(3.0,), rounds=rounds, iterations=1, warmup_rounds=1
    )
    assert angles.shape == (576_000, 3) and angles.dtype == np.float64
    t0 = time.perf_counter()
    pytom_angle_set(3.0)
    seconds = time.perf_counter() - t0
    benchmark.extra_info.update({"rotations": len(angles), "last_s": seconds})  # type: ignore[attr-defined]
    if full:
        assert benchmark.stats.stats.median < 0.100  # type: ignore[attr-defined]


def test_covering_radius_10deg(benchmark: pytest.FixtureRequest) -> None:
    full = not benchmark.disabled  # type: ignore[attr-defined]
    angles = pytom_angle_set(10.0)
    n_samples = 1_000_000 if full else 50_000
    radius = benchmark.pedantic(  # type: ignore[attr-defined]
        covering_radius_deg,
        args=(angles,),
        kwargs={"n_samples": n_samples},
        rounds=3 if full else 1,
        iterations=1,
    )
    assert 8.5 < radius < 10.0
    benchmark.extra_info.update({"n_samples": n_samples, "radius_deg": radius})  # type: ignore[attr-defined]


def test_optimal_set_7deg(benchmark: pytest.FixtureRequest) -> None:
    full = not benchmark.disabled  # type: ignore[attr-defined]
    step = 7.0 if full else 20.0
    angles = benchmark.pedantic(  # type: ignore[attr-defined]
        optimal_angle_set, args=(step,), rounds=1, iterations=1
    )
    n_pytom = len(pytom_angle_set(step))
    assert len(angles) < n_pytom
    saving = 1.0 - len(angles) / n_pytom
    benchmark.extra_info.update(  # type: ignore[attr-defined]
        {
            "step_deg": step,
            "rotations": len(angles),
            "pytom_rotations": n_pytom,
            "saving": saving,
        }
    )
    if full:
        # 7 degrees: 32,832 rotations against 50,544 (35%) in 0.7 s on 2 cores
        assert saving >= 0.25
        assert benchmark.stats.stats.median < 5.0  # type: ignore[attr-defined]
