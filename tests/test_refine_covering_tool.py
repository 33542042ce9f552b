"""tools/refine_covering.py, the builder of the embedded refined rotation sets.

A short run (30 degrees, 432 rotations, 20 steps per stage) checks that the tool
still works end to end: its set beats pytom's radius with a quarter fewer rotations,
the radius it reports is the exact one (scipy's hull, computed here independently),
and its file reads back.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import ConvexHull
from scipy.spatial.transform import Rotation
from tmfast.geometry import covering_radius_deg, pytom_angle_set, zxz_to_matrices

TOOL = Path(__file__).resolve().parents[1] / "tools" / "refine_covering.py"


@pytest.fixture(scope="module")
def tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("refine_covering", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["refine_covering"] = module
    spec.loader.exec_module(module)
    return module


def _exact_radius_deg(angles: np.ndarray) -> float:
    q = Rotation.from_matrix(zxz_to_matrices(angles)).as_quat()
    offsets = -ConvexHull(np.vstack([q, -q])).equations[:, -1]
    return float(np.degrees(2.0 * np.arccos(offsets.min())))


def test_quaternion_conversions_match_tmfast(tool) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    zxz = np.stack(
        [
            rng.uniform(0, 2 * np.pi, 200),
            np.arccos(rng.uniform(-1, 1, 200)),
            rng.uniform(0, 2 * np.pi, 200),
        ],
        axis=1,
    )
    back = tool.quaternions_to_zxz(tool.zxz_to_quaternions(zxz))
    np.testing.assert_allclose(zxz_to_matrices(back), zxz_to_matrices(zxz), atol=1e-12)
    # rotation angles between pairs agree with the matrices'
    q = tool.zxz_to_quaternions(zxz)
    m = zxz_to_matrices(zxz)
    cos_half = np.abs((q[:100] * q[100:]).sum(axis=1))
    trace = np.einsum("nij,nij->n", m[:100], m[100:])
    np.testing.assert_allclose(
        2 * np.arccos(np.clip(cos_half, 0, 1)),
        np.arccos(np.clip((trace - 1) / 2, -1, 1)),
        atol=1e-6,
    )


def test_short_run_beats_pytom_and_reads_back(tool, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sets.bin"
    assert tool.main(["30", "--iters", "20", "-o", str(out)]) == 0
    ((step, zxz, radius),) = tool.read_sets(out)
    pytom = pytom_angle_set(30)
    assert step == 30.0 and len(zxz) == (3 * len(pytom)) // 4
    angles = zxz.astype(np.float64)
    assert _exact_radius_deg(angles) == pytest.approx(radius, abs=1e-9)
    assert radius <= covering_radius_deg(pytom, n_samples=200_000, seed=4)
    # several sets, written smallest first
    tool.write_sets(out, [(step, zxz, radius), (99.0, zxz[:5], 1.0)])
    assert [s for s, _, _ in tool.read_sets(out)] == [99.0, 30.0]
