"""Shared helpers of the `tmfast match` CLI tests: inputs on disk, argv, a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from _synthetic import sphere_mask, write_angle_file, write_mrc
from tmfast.cli import main


def match_inputs(
    folder: Path,
    *,
    seed: int,
    tomo_shape_zyx: tuple[int, int, int],
    voxel_a: float,
    angles_zxz_rad: npt.ArrayLike,
    box: int = 8,
) -> dict[str, Path]:
    """Random template (``t``) and tomogram (``v``), a sphere mask (``m``) and an
    angle file (``ang``) written into ``folder/in``."""
    rng = np.random.default_rng(seed)
    d = folder / "in"
    d.mkdir()
    return {
        "t": write_mrc(d / "tmpl.mrc", rng.standard_normal((box,) * 3), voxel_a),
        "v": write_mrc(d / "tomo.mrc", rng.standard_normal(tomo_shape_zyx), voxel_a),
        "m": write_mrc(d / "mask.mrc", sphere_mask(box, box / 2 - 0.5), voxel_a),
        "ang": write_angle_file(d / "angles.txt", angles_zxz_rad),
    }


def match_args(inputs: dict[str, Path], dest: Path, *extra: str) -> list[str]:
    """``tmfast match`` argv for :func:`match_inputs` into ``dest``."""
    return [
        "match",
        "-t", str(inputs["t"]),
        "-v", str(inputs["v"]),
        "-m", str(inputs["m"]),
        "-d", str(dest),
        "--angular-search", str(inputs["ang"]),
        *extra,
    ]  # fmt: skip


def run_cli_streams(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run the CLI in this process: its exit code, stdout and stderr."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    got = capsys.readouterr()
    return code, got.out, got.err


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the CLI in this process: its exit code and what it wrote to stderr."""
    code, _, err = run_cli_streams(args, capsys)
    return code, err
