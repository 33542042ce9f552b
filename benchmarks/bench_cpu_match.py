"""CPU backend speed: ms per rotation and peak memory of the matching loop.

Quick mode (default, ``--benchmark-disable``): a 48x48x40 tomogram, 12^3 template,
6 rotations per variant, run as a plain test (results checked finite and equal
between spherical and non-spherical masks for a spherical mask at quarter turns).

Full mode (``--benchmark-enable``): the issue's case, a 256x256x128 tomogram and a 48^3
template, spherical and non-spherical mask, with and without random-phase correction;
``TMFAST_ROTATIONS`` rotations each. Reported per variant: prepare time, ms per rotation
(the loop only) over rotations ``EARLY_WINDOW`` (the window pyTME's slope measures) and
``LATE_WINDOW`` (settled maxima, like the bulk of a real search), peak traced memory
(tracemalloc from before ``prepare`` to after ``finalize``: numpy buffers, not Rust
scratch) as a multiple of the tomogram's float32 size. The four variants run as the
engine runs them (``CpuBackend()`` given the tile's region of interest, so the score
sums are totalled over it rather than kept per voxel; FFTW when pyFFTW is installed); a
fifth row repeats the spherical case with per-voxel float32 sums (the engine's
``keep_sums``). Unsplit, the tile the backend searches is the tomogram zero-padded to an
FFT-fast size (circular correlation, as pytom-match-pick; see tmfast.matching.tiling).

pyTME comparison (full mode, when ``TMFAST_PYTME_PYTHON`` names a Python with PyPI
``pytme`` installed, e.g. a venv made with ``python3 -m venv /tmp/pytme_venv &&
/tmp/pytme_venv/bin/pip install pytme==0.3.4a1 numpy scipy``):
``benchmarks/pytme_reference.py`` runs pyTME's exhaustive matching in a subprocess on
the same arrays (tomogram, template, mask: saved to a temporary folder as ``.npy``) with
its job schedule ``(1, os.cpu_count())``: one target job whose rotations are split over
``os.cpu_count()`` joblib worker processes, i.e. on all cores as tmfast (its peak memory
is the summed RSS of its process tree, sampled every 0.1 s), for two scores:
``FLCSphericalMask`` (mask never rotated; the like-for-like reference for tmfast's
spherical mask) and ``FLC`` (mask rotated with the template; the reference for tmfast's
non-spherical mask), each also with pyTME's ``background_correction="phase-scrambling"``
(a second correlation per rotation with a phase-scrambled template, like tmfast's
random-phase correction: two correlations per rotation in both). Each tmfast variant is
compared with its like-for-like pyTME run (``PYTME_SCORE``). For each pyTME run its ms
per rotation is the slope between an ``n_rot // 4`` (4) and a ``PYTME_LONG * n_rot``
(64) rotation run (setup cancels; a long baseline because the slope of two noisy totals
is itself noisy), compared with the figures above on the same machine. Full mode runs
``REPEATS`` interleaved rounds of all variants and pyTME and reports the minimum of each
(the VM is shared with other jobs; the minimum is the least disturbed run); each round
starts with the next variant, so no variant always runs right after pyTME's.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from tmfast.backends.base import CorrelationInputs
from tmfast.backends.cpu import CpuBackend
from tmfast.geometry.angles import angle_set
from tmfast.geometry.rotations import zxz_to_matrices
from tmfast.matching.demo import demo_mask, demo_template
from tmfast.matching.random_phase import phase_randomised_template
from tmfast.matching.tiling import cut_tile, fast_period, plan_tiles

#: Interleaved rounds in full mode (figures are the minimum over them).
REPEATS = 5

#: pyTME's long run is ``PYTME_LONG * n_rot`` rotations (the short one ``n_rot // 4``):
#: its setup takes ~5 s and varies by ~1 s, so a long baseline keeps the slope's noise
#: at ~15 ms per rotation
PYTME_LONG = 4

#: tmfast's rotations in full mode, timed over two windows. EARLY_WINDOW is the window
#: pyTME's slope measures (its short run has n_rot // 4 = 4 rotations, its long run
#: PYTME_LONG * n_rot = 64). pyTME's work per rotation does not change as a search
#: goes on; tmfast's does: once the running maxima settle its fold skips the voxels
#: with no new maximum (a few per cent per rotation), so rotations 4 .. 64 of a random
#: tomogram, where maxima still move, cost it more than the rest of a real search of
#: thousands of rotations. LATE_WINDOW (rotations 64 .. 128) stands for that rest.
TMFAST_ROTATIONS = 128
EARLY_WINDOW = (4, 64)
LATE_WINDOW = (64, 128)

#: (name, spherical mask, random-phase noise template, per-voxel score sums). As
#: the engine runs them, the first four pass the tile's region of interest
#: (``CorrelationInputs.stats_roi``), so the backend totals the score sums over it
#: (per voxel only ``sum_r s`` with a noise template); the fifth keeps both sums per
#: voxel in float32, as the engine's ``keep_sums`` does.
VARIANTS = [
    ("spherical", True, False, False),
    ("non-spherical", False, False, False),
    ("spherical+random-phase", True, True, False),
    ("non-spherical+random-phase", False, True, False),
    ("spherical, per-voxel sums", True, False, True),
]

#: pyTME runs: label -> (score, background correction)
PYTME_RUNS = {
    "FLCSphericalMask": ("FLCSphericalMask", None),
    "FLC": ("FLC", None),
    "FLCSphericalMask+phase-scrambling": ("FLCSphericalMask", "phase-scrambling"),
    "FLC+phase-scrambling": ("FLC", "phase-scrambling"),
}

#: pyTME run each variant is compared with (like for like: mask handling, and
#: pyTME's phase-scrambling background correction for random-phase)
PYTME_SCORE = {
    "spherical": "FLCSphericalMask",
    "non-spherical": "FLC",
    "spherical+random-phase": "FLCSphericalMask+phase-scrambling",
    "non-spherical+random-phase": "FLC+phase-scrambling",
    "spherical, per-voxel sums": "FLCSphericalMask",
}


def _case(
    shape: tuple[int, int, int], box: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    tomo = rng.standard_normal(shape, dtype=np.float32)
    tile = plan_tiles((0, 0, 0), shape, (1, 1, 1), box, fast_period(shape))[0]
    weight = np.ones((box, box, box // 2 + 1), np.float32)
    # the statistics' region of interest the engine passes: the tile's own voxels
    roi = np.zeros(tile.shape_zyx, dtype=bool)
    roi[tile.unique_in_tile] = True
    return cut_tile(tomo, tile), demo_template(box), demo_mask(box), weight, roi


def _run(vol, tmpl, mask, weight, roi, spherical, noise, per_voxel, mats, n_search):  # type: ignore[no-untyped-def]
    be = CpuBackend()
    tracemalloc.start()
    t0 = time.perf_counter()
    be.prepare(
        CorrelationInputs(
            tomogram=vol,
            template=tmpl,
            mask=mask,
            template_weight=weight,
            mask_is_spherical=spherical,
            noise_template=phase_randomised_template(tmpl, mask, seed=1)
            if noise
            else None,
            stats_roi=None if per_voxel else roi,
            # the search the rotations stand for (its size sets the angle map's
            # integer width: 16 bits up to 65,535 rotations)
            n_rotations=n_search,
        )
    )
    t1 = time.perf_counter()
    # the rotations before the first window untimed, then each window (quick mode:
    # what fits of them)
    n = len(mats)
    bounds = sorted({min(b, n) for b in (*EARLY_WINDOW, *LATE_WINDOW)} | {0})
    if bounds[1] == n:  # fewer rotations than the first window's start
        bounds = [0, n - 1, n]
    seconds = {}
    for lo, hi in itertools.pairwise(bounds):
        t = time.perf_counter()
        be.score_rotations(lo, mats[lo:hi])
        seconds[lo, hi] = time.perf_counter() - t
    maps = be.finalize()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    per = {w: seconds[w] / (w[1] - w[0]) for w in seconds if w[0] > 0}
    return maps, t1 - t0, per, peak


def _pytme(
    pytme: str, shape: tuple[int, int, int], box: int, n: int, label: str, data: Path
) -> dict:  # type: ignore[type-arg]
    score, background = PYTME_RUNS[label]
    script = Path(__file__).with_name("pytme_reference.py")
    out = subprocess.run(
        [
            pytme,
            str(script),
            *map(str, shape),
            str(box),
            str(n),
            *("--score", score, "--data", str(data)),
            *(("--background", background) if background else ()),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    result: dict = json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[type-arg]
    return result


def test_cpu_match_speed(benchmark: pytest.FixtureRequest, tmp_path: Path) -> None:
    full = not benchmark.disabled  # type: ignore[attr-defined]
    shape, box, n_rot = ((128, 256, 256), 48, 16) if full else ((40, 48, 48), 13, 6)
    vol, tmpl, mask, weight, roi = _case(shape, box)
    tomo_bytes = 4 * int(np.prod(shape))
    if full:
        # rotations spread over the 7-degree search (50,544 rotations)
        search = angle_set(7.0)
        n_search = len(search)
        step = n_search // TMFAST_ROTATIONS
        mats = zxz_to_matrices(search[::step][:TMFAST_ROTATIONS])
    else:
        q = np.pi / 2
        n_search = 6
        mats = zxz_to_matrices(
            np.array(
                [[0, 0, 0], [q, 0, 0], [0, q, 0], [q, q, 0], [0, 2 * q, q], [q, q, q]]
            )
        )
    pytme = os.environ.get("TMFAST_PYTME_PYTHON") if full else None
    if pytme:
        # pyTME gets the same arrays: the tomogram (unsplit, the tile is the
        # tomogram itself; pyTME pads it as it needs), the template and the mask
        np.save(tmp_path / "tomogram.npy", vol)
        np.save(tmp_path / "template.npy", tmpl)
        np.save(tmp_path / "mask.npy", mask)
    # full mode: REPEATS interleaved rounds of every variant and of pyTME, each
    # figure the minimum over the rounds (the machine is shared: the minimum is the
    # least disturbed run of each, measured in the same stretch of time)
    repeats = REPEATS if full else 1
    results = {}
    #: name -> (prepare s, {window: s per rotation}, peak bytes), best over rounds
    best: dict[str, tuple[float, dict[tuple[int, int], float], int]] = {}
    pytme_runs: list[dict[tuple[str, int], dict[str, float]]] = []
    for rep in range(repeats):
        # each round starts with another variant: the first one after the previous
        # round's pyTME processes (1.7 GB freed as they exit) ran slower (run M:
        # spherical 40.4 ms against 33.8 ms for the per-voxel-sums variant, which does
        # more), so a fixed order biased one variant's minimum
        shift = rep % len(VARIANTS)
        for name, spherical, noise, per_voxel in VARIANTS[shift:] + VARIANTS[:shift]:
            args = (
                vol,
                tmpl,
                mask,
                weight,
                roi,
                spherical,
                noise,
                per_voxel,
                mats,
                n_search,
            )
            if name == "spherical" and rep == 0:
                maps, prep, per, peak = benchmark.pedantic(  # type: ignore[attr-defined]
                    _run, args=args, rounds=1, iterations=1
                )
            else:
                maps, prep, per, peak = _run(*args)
            assert np.isfinite(maps.scores).all()
            results[name] = maps
            old = best.get(name)
            best[name] = (
                (prep, per, peak)
                if old is None
                else (
                    min(old[0], prep),
                    {w: min(old[1][w], per[w]) for w in per},
                    max(old[2], peak),
                )
            )
        if pytme:
            pytme_runs.append(
                {
                    (label, n): _pytme(pytme, shape, box, n, label, tmp_path)
                    for label in PYTME_RUNS
                    for n in (n_rot // 4, PYTME_LONG * n_rot)
                }
            )
    for name, (prep, per, peak) in best.items():
        benchmark.extra_info[name] = {  # type: ignore[attr-defined]
            "ms_per_rotation": {f"{lo}-{hi}": 1e3 * t for (lo, hi), t in per.items()},
            "prepare_s": prep,
            "peak_memory_x_tomogram": peak / tomo_bytes,
        }
        times = ", ".join(
            f"rotations {lo}-{hi} {1e3 * t:6.1f}" for (lo, hi), t in per.items()
        )
        print(
            f"\n{name:28s} tomogram {shape} box {box}: ms/rotation {times}; "
            f"prepare {prep:5.2f} s, "
            f"peak {peak / 2**20:7.1f} MiB = {peak / tomo_bytes:4.1f}x tomogram"
            + (f" (min of {repeats} rounds)" if repeats > 1 else "")
        )
    if pytme_runs:
        lo, hi = n_rot // 4, PYTME_LONG * n_rot
        assert (lo, hi) == EARLY_WINDOW  # pyTME's slope is over this window
        per_pytme: dict[str, float] = {}
        rss: dict[str, float] = {}
        for score in PYTME_RUNS:
            t_lo = min(r[score, lo]["seconds"] for r in pytme_runs)
            t_hi = min(r[score, hi]["seconds"] for r in pytme_runs)
            per_pytme[score] = (t_hi - t_lo) / (hi - lo)
            # peak summed RSS of pyTME's process and its joblib workers
            rss[score] = max(
                r[score, hi]["peak_tree_rss_mib"] or r[score, hi]["peak_rss_mib"]
                for r in pytme_runs
            )
            benchmark.extra_info[f"pytme_raw_seconds {score}"] = {  # type: ignore[attr-defined]
                str(n): [r[score, n]["seconds"] for r in pytme_runs] for n in (lo, hi)
            }
            print(
                f"\npyTME {score:34s}: {1e3 * per_pytme[score]:8.1f} ms/rotation, "
                f"peak RSS {rss[score]:.0f} MiB (min of {len(pytme_runs)} rounds; "
                + "; ".join(
                    f"{n} rotations "
                    f"{[round(r[score, n]['seconds'], 2) for r in pytme_runs]} s"
                    for n in (lo, hi)
                )
                + ")"
            )
        ratios = {
            name: {
                "pytme_score": PYTME_SCORE[name],
                **{
                    f"pytme_time_over_tmfast_time rotations {lo}-{hi}": per_pytme[
                        PYTME_SCORE[name]
                    ]
                    / t
                    for (lo, hi), t in best[name][1].items()
                },
            }
            for name in best
        }
        benchmark.extra_info["pytme"] = {  # type: ignore[attr-defined]
            score: {
                "ms_per_rotation": 1e3 * per_pytme[score],
                "peak_rss_mib": rss[score],
            }
            for score in per_pytme
        }
        benchmark.extra_info["speedup_tmfast_vs_pytme"] = ratios  # type: ignore[attr-defined]
        print(
            "\npyTME time / tmfast time (like-for-like score):"
            + "".join(
                f"\n  {k} vs {v['pytme_score']}: "
                + ", ".join(
                    f"{key.rsplit(' ', 1)[1]} {x:.2f}x"
                    for key, x in v.items()
                    if key.startswith("pytme_time_over")
                )
                for k, v in ratios.items()
            )
        )
    if not full:
        # a spherical mask at quarter turns: both mask modes give the same maps
        # over the tomogram (the zero padding around it is never output)
        c = box // 2
        inside = tuple(slice(c, c + s) for s in shape)
        np.testing.assert_allclose(
            results["spherical"].scores[inside],
            results["non-spherical"].scores[inside],
            atol=1e-4,
        )
        np.testing.assert_array_equal(
            results["spherical"].angles[inside], results["non-spherical"].angles[inside]
        )
        # totals over the region of interest (default) vs per-voxel sums: same
        # maxima, the totals equal the reduced per-voxel sums
        kept = results["spherical, per-voxel sums"]
        np.testing.assert_array_equal(results["spherical"].scores, kept.scores)
        assert kept.score_sq_sum is not None
        assert results["spherical"].score_sq_sum is None
        assert results["spherical"].roi_score_sq_sum == pytest.approx(
            float(kept.score_sq_sum[roi].sum()), rel=1e-5
        )


def test_cpu_match_memory_large_search(benchmark: pytest.FixtureRequest) -> None:
    """Peak memory of the four variants in a search of the 3-degree set's 576,000
    rotations (more than a uint16 angle map holds: its index bits above 16 go to bit
    planes), 3 rotations folded each. Full mode: the issue's case, every variant under
    8x the tomogram's float32 size (issue 3's target). Quick mode: the small case,
    reported only (fixed overheads dominate a 48x48x40 tomogram)."""
    full = not benchmark.disabled  # type: ignore[attr-defined]
    shape, box = ((128, 256, 256), 48) if full else ((40, 48, 48), 13)
    vol, tmpl, mask, weight, roi = _case(shape, box)
    tomo_bytes = 4 * int(np.prod(shape))
    n_search = 576_000  # len(angle_set(3.0)), not generated here (100 ms, 14 MB)
    q = np.pi / 2
    mats = zxz_to_matrices(np.array([[0, 0, 0], [q, 0, 0], [0, q, q]]))
    for name, spherical, noise, per_voxel in VARIANTS:
        if per_voxel:
            continue
        maps, _, _, peak = _run(
            vol, tmpl, mask, weight, roi, spherical, noise, False, mats, n_search
        )
        assert maps.angles.dtype == np.int32
        assert set(np.unique(maps.angles)) <= {0, 1, 2}
        ratio = peak / tomo_bytes
        benchmark.extra_info[f"{name} peak_memory_x_tomogram 576000 rotations"] = ratio  # type: ignore[attr-defined]
        print(f"\n{name:28s} 576,000-rotation search: peak {ratio:4.2f}x tomogram")
        if full:
            assert ratio < 8.0, f"{name}: {ratio:.2f}x the tomogram (target < 8x)"
