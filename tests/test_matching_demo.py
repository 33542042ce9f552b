"""`tmfast demo` recovers every planted particle and says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tmfast.cli import main
from tmfast.matching.demo import demo_template


def test_demo_template_is_asymmetric() -> None:
    from tmfast.geometry.interpolation import bspline_coefficients, rotate_volume
    from tmfast.geometry.rotations import zxz_to_matrices

    t = demo_template(20)
    c = bspline_coefficients(t)
    q = np.pi / 2
    for angles in ([q, 0, 0], [0, q, 0], [0, 2 * q, 0], [2 * q, 0, 0]):
        rot = rotate_volume(c, zxz_to_matrices(angles)[0])
        assert np.corrcoef(rot.ravel(), t.ravel())[0, 1] < 0.9


def test_demo_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        main(["demo", "--output-dir", str(tmp_path)])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "recovered 8/8" in out
    names = {p.name for p in tmp_path.iterdir()}
    assert {
        "demo_tomogram_scores.mrc",
        "demo_tomogram_angles.mrc",
        "demo_tomogram_job.json",
        "demo_tomogram_particles.star",
        "demo_tomogram.mrc",
    } <= names
    import starfile

    star = starfile.read(tmp_path / "demo_tomogram_particles.star")
    df = star["particles"] if isinstance(star, dict) else star
    assert len(df) >= 8
