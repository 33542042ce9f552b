"""STAR writer benchmark: one million RELION5 particle rows (target < 1 s).

Quick mode (default, ``--benchmark-disable``): 10,000 rows, run as a plain test.
Full mode (``--benchmark-enable``): 1,000,000 rows, timed against ``starfile.write``
on the same table in the same run (skipped if starfile/pandas are missing), and the
reading time of ``read_star`` vs ``starfile.read``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from tmfast.io.star import read_star, write_star


def _particles(n: int) -> dict[str, object]:
    rng = np.random.default_rng(0)
    names = np.array([f"Position_{i}_11.80Apx" for i in range(8)])
    return {
        "rlnCenteredCoordinateXAngst": (rng.random(n, dtype=np.float32) - 0.5) * 8e3,
        "rlnCenteredCoordinateYAngst": (rng.random(n, dtype=np.float32) - 0.5) * 8e3,
        "rlnCenteredCoordinateZAngst": (rng.random(n, dtype=np.float32) - 0.5) * 2e3,
        "rlnAngleRot": rng.uniform(-180, 180, n).astype(np.float32),
        "rlnAngleTilt": rng.uniform(0, 180, n).astype(np.float32),
        "rlnAnglePsi": rng.uniform(-180, 180, n).astype(np.float32),
        "rlnLCCmax": rng.random(n, dtype=np.float32),
        "rlnCutOff": np.full(n, 0.148684, np.float32),
        "rlnSearchStd": np.full(n, 0.022856, np.float32),
        "rlnTomoTiltSeriesPixelSize": np.full(n, 11.8, np.float32),
        "rlnTomoName": names[rng.integers(0, 8, n)],
    }


def test_star_write_million_rows(
    benchmark: pytest.FixtureRequest, tmp_path: Path
) -> None:
    full = not benchmark.disabled  # type: ignore[attr-defined]
    n = 1_000_000 if full else 10_000
    blocks = {"particles": _particles(n)}
    counter = iter(range(1000))

    def run() -> Path:
        return write_star(tmp_path / f"p{next(counter)}.star", blocks)

    path = benchmark.pedantic(run, rounds=3 if full else 1, iterations=1)  # type: ignore[attr-defined]
    t, c = time.perf_counter(), time.process_time()
    run()
    t_ours = time.perf_counter() - t
    cpu_ours = time.process_time() - c
    best = float(benchmark.stats.stats.min) if full else t_ours  # type: ignore[attr-defined]
    t = time.perf_counter()
    back = read_star(path)
    t_read = time.perf_counter() - t
    assert back["particles"]["rlnTomoName"].shape == (n,)
    np.testing.assert_array_equal(
        back["particles"]["rlnLCCmax"].astype(np.float32),
        blocks["particles"]["rlnLCCmax"],  # type: ignore[arg-type]
    )
    info = {
        "rows": n,
        "write_s": t_ours,
        "write_cpu_s": cpu_ours,
        "write_best_s": best,
        "read_s": t_read,
        "mbytes": path.stat().st_size / 1e6,
    }
    line = (
        f"\nSTAR {n} rows: write {t_ours:.3f} s (best {best:.3f} s, "
        f"CPU {cpu_ours:.3f} s), read_star {t_read:.3f} s"
    )
    starfile = pytest.importorskip("starfile") if full else None
    if starfile is not None:
        import pandas as pd

        df = pd.DataFrame(blocks["particles"])
        t = time.perf_counter()
        starfile.write({"particles": df}, tmp_path / "sf.star")
        t_sf = time.perf_counter() - t
        t = time.perf_counter()
        starfile.read(tmp_path / "sf.star")
        t_sf_read = time.perf_counter() - t
        info.update(
            {
                "starfile_write_s": t_sf,
                "starfile_read_s": t_sf_read,
                "write_speedup": t_sf / t_ours,
                "read_speedup": t_sf_read / t_read,
            }
        )
        line += (
            f"; starfile write {t_sf:.3f} s ({t_sf / t_ours:.1f}x), "
            f"read {t_sf_read:.3f} s ({t_sf_read / t_read:.1f}x)"
        )
    benchmark.extra_info.update(info)  # type: ignore[attr-defined]
    print(line)
    if full:
        assert best < 1.0
