"""Extraction benchmark: the whole extract path vs a numpy reference loop.

Path timed: :func:`tmfast.extraction.candidates.candidates_from_maps` (shape checks,
cutoff, Rust spherical-exclusion picker with border, angle-set regeneration and
checks, RELION angle conversion) plus RELION5 STAR columns and ``write_star``. The
maps are in memory (reading MRC files is mmap and not part of the figure).

Quick mode (default, ``--benchmark-disable``): a 64x80x80 map, 30 picks, checked
against the numpy reference picker. Full mode (``--benchmark-enable``): 5,000 picks
from a 1024x1024x512 score map (target < 5 s on 2 cores) and the numpy reference
loop, which needs one full-map argmax per pick, timed on the same map for a small
number of picks and extrapolated linearly to 5,000 (target >= 10x).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from tmfast.extraction.candidates import candidates_from_maps
from tmfast.extraction.peaks import numpy_reference_find_peaks
from tmfast.geometry.angles import angle_set, angle_set_sha256
from tmfast.io.star import write_star
from tmfast.matching.job import MatchJob, SearchStats

VOXEL_A = 10.0
DIAMETER_A = 200.0  # exclusion radius 10 voxels
STEP_DEG = 7.0  # 50,544 rotations, as pytom's default


def _maps(shape: tuple[int, int, int], n_rot: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    scores = np.empty(shape, np.float32)
    angles = np.empty(shape, np.float32)
    for z in range(shape[0]):
        scores[z] = rng.standard_normal(shape[1:], dtype=np.float32)
        angles[z] = rng.integers(0, n_rot, shape[1:])
    return scores, angles


def _job(shape: tuple[int, int, int], angles: np.ndarray) -> MatchJob:
    return MatchJob(
        tomo_id="bench",
        tomogram="bench.mrc",
        template="t.mrc",
        mask="m.mrc",
        output_dir=".",
        tomo_shape_zyx=shape,
        search_origin_zyx=(0, 0, 0),
        search_shape_zyx=shape,
        voxel_size_a=VOXEL_A,
        angular_search=STEP_DEG,
        n_rotations=len(angles),
        angle_set_sha256=angle_set_sha256(angles),
        particle_diameter_a=DIAMETER_A,
        stats=SearchStats(
            search_space=int(np.prod(shape)) * len(angles), variance=1.0, std=1.0
        ),
    )


def _extract(job: MatchJob, scores, amap, n: int, out: Path):
    t = candidates_from_maps(job, scores, amap, n_particles=n, cutoff=-1)
    write_star(out, t.to_star_blocks(relion5=True), overwrite=True)
    return t


def test_extract_path(benchmark: pytest.FixtureRequest, tmp_path: Path) -> None:
    full = not benchmark.disabled  # type: ignore[attr-defined]
    shape = (512, 1024, 1024) if full else (64, 80, 80)
    n = 5000 if full else 30
    n_ref = 4 if full else n
    angles = angle_set(STEP_DEG)
    scores, amap = _maps(shape, len(angles))
    job = _job(shape, angles)
    star = tmp_path / "bench_particles.star"

    table = benchmark.pedantic(  # type: ignore[attr-defined]
        _extract,
        args=(job, scores, amap, n, star),
        rounds=1 if full else 2,
        iterations=1,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    _extract(job, scores, amap, n, star)
    t_ours = time.perf_counter() - t0
    cpu_ours = time.process_time() - c0  # all threads; robust to a busy host
    assert len(table) == n

    t0 = time.perf_counter()
    ref = numpy_reference_find_peaks(
        scores,
        n_peaks=n_ref,
        exclusion_radius_vox=DIAMETER_A / 2 / VOXEL_A,
        border_vox=int(DIAMETER_A / 2 / VOXEL_A),
    )
    t_ref = (time.perf_counter() - t0) * n / n_ref
    np.testing.assert_array_equal(table.positions_zyx[:n_ref], ref.positions_zyx)
    ratio = t_ref / t_ours
    benchmark.extra_info.update(  # type: ignore[attr-defined]
        {
            "shape_zyx": shape,
            "n_picks": n,
            "extract_s": t_ours,
            "extract_cpu_s": cpu_ours,
            "load_average_1min": os.getloadavg()[0],
            "numpy_reference_s": t_ref,
            "numpy_reference_picks_timed": n_ref,
            "speedup": ratio,
        }
    )
    print(
        f"\nextract {shape} n={n}: {t_ours:.3f} s wall, {cpu_ours:.3f} s CPU (load "
        f"{os.getloadavg()[0]:.1f}); numpy reference "
        f"{t_ref:.3f} s ({'extrapolated from ' + str(n_ref) if n_ref < n else 'all'}"
        f" picks); speedup {ratio:.1f}x"
    )
    if full:
        assert t_ours < 5.0
        assert ratio >= 10.0
