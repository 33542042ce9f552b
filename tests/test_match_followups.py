"""`tmfast match` review follow-ups: anisotropic voxel sizes are named as such, a
compressed tomogram's id drops ``.gz``/``.bz2``, a constant tomogram (or one constant
inside its mask) is refused before the search, the terminal progress bar waits for
the input checks, and a negative --defocus (overfocus) is warned about.
"""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
from _cli import match_args, match_inputs, run_cli
from _synthetic import write_mrc
from tmfast.cli import main
from tmfast.matching.config import MatchConfig

ANGLES = np.array([[0.2 * i, 0.4 + 0.1 * i, 0.3 * i] for i in range(3)])
VOXEL_A = 10.0
SHAPE = (12, 13, 14)


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    return match_inputs(
        tmp_path, seed=5, tomo_shape_zyx=SHAPE, voxel_a=VOXEL_A, angles_zxz_rad=ANGLES
    )


@pytest.fixture()
def no_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the search starts (the error must come before it)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the search started before the input error")

    monkeypatch.setattr("tmfast.matching.engine.search_volume", refuse)


def _one_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("tmfast: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _warnings(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if " WARNING " in ln]


def _write_anisotropic(
    path: Path, data: Any, sizes: tuple[float, float, float]
) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.new(path, overwrite=True) as m:
            m.set_data(np.asarray(data, dtype=np.float32))
            m.voxel_size = sizes
    return path


# ------------------------------------------------------------ 1. anisotropic voxels
@pytest.mark.parametrize("which", ["v", "t"])
def test_anisotropic_header_voxel_size_is_named_with_the_fix(
    which: str,
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_compute: None,
) -> None:
    data = mrcfile.read(inputs[which])
    _write_anisotropic(inputs[which], data, (10.0, 10.0, 12.0))
    dest = tmp_path / "out"
    code, err = run_cli(match_args(inputs, dest), capsys)
    assert code == 2
    line = _one_error(err)
    assert str(inputs[which]) in line
    assert "anisotropic" in line and "zero or invalid" not in line
    assert "10" in line and "12" in line
    assert "--voxel-size-angstrom" in line and "resample" in line
    assert not dest.exists()


def test_anisotropic_header_with_voxel_size_override_runs(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_anisotropic(inputs["v"], mrcfile.read(inputs["v"]), (10.0, 10.0, 12.0))
    dest = tmp_path / "out"
    args = match_args(inputs, dest, "--voxel-size-angstrom", "10", "--backend", "cpu")
    code, err = run_cli(args, capsys)
    assert code == 0, err
    assert (dest / "tomo_scores.mrc").is_file()


# ------------------------------------------------------------ 2. compressed tomo id
@pytest.mark.parametrize(
    ("name", "tomo_id"),
    [
        ("tomo.mrc.gz", "tomo"),
        ("tomo.mrc.bz2", "tomo"),
        ("TS.01.rec.GZ", "TS.01"),
        ("TS.01.mrc", "TS.01"),
        ("tomo.mrc", "tomo"),
        ("TS_1.map", "TS_1"),
    ],
)
def test_tomo_id_drops_compression_and_volume_suffixes(name: str, tomo_id: str) -> None:
    cfg = MatchConfig(tomogram=Path("/data") / name, angular_search=10)
    assert cfg.tomo_id == tomo_id


def test_gzipped_tomogram_names_outputs_without_mrc(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gz = inputs["v"].with_name("tomo.mrc.gz")
    with mrcfile.new(gz, compression="gzip") as m:
        m.set_data(mrcfile.read(inputs["v"]))
        m.voxel_size = VOXEL_A
    inputs = {**inputs, "v": gz}
    dest = tmp_path / "out"
    code, err = run_cli(match_args(inputs, dest, "--backend", "cpu"), capsys)
    assert code == 0, err
    assert sorted(p.name for p in dest.iterdir()) == [
        "tomo_angles.mrc",
        "tomo_job.json",
        "tomo_scores.mrc",
    ]


# ------------------------------------------------------------ 3. constant tomogram
@pytest.mark.parametrize("value", [0.0, 3.5])
def test_constant_tomogram_is_refused_before_the_search(
    value: float,
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_compute: None,
) -> None:
    write_mrc(inputs["v"], np.full(SHAPE, value), VOXEL_A)
    dest = tmp_path / "out"
    code, err = run_cli(match_args(inputs, dest), capsys)
    assert code == 2
    line = _one_error(err)
    assert line.startswith(f"tmfast: error: {inputs['v']}: ")
    assert "constant" in line and f"{value:g}" in line
    assert not dest.exists()


def test_tomogram_constant_inside_its_mask_is_refused(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_compute: None,
) -> None:
    tomo = mrcfile.read(inputs["v"]).copy()
    tmask = np.zeros(SHAPE, np.float32)
    tmask[3:9, 3:10, 3:11] = 1
    tomo[tmask > 0] = 0  # e.g. a mask of another tomogram, or inverted
    write_mrc(inputs["v"], tomo, VOXEL_A)
    tm = write_mrc(tmp_path / "tmask.mrc", tmask, VOXEL_A)
    dest = tmp_path / "out"
    args = match_args(inputs, dest, "--tomogram-mask", str(tm))
    code, err = run_cli(args, capsys)
    assert code == 2
    line = _one_error(err)
    assert str(inputs["v"]) in line and str(tm) in line
    assert "constant" in line
    assert not dest.exists()


# ------------------------------------------------------------ 4. bar after checks
class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run_on_tty(args: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, tty.getvalue()


def test_no_progress_bar_before_an_input_error_on_a_terminal(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mrc(inputs["t"], mrcfile.read(inputs["t"]), 5.0)  # disagrees with 10 Å
    code, out = _run_on_tty(match_args(inputs, tmp_path / "out"), monkeypatch)
    assert code == 2
    assert "voxel sizes disagree" in _one_error(out)
    assert "matching" not in out and "0/?" not in out, out


def test_progress_bar_still_shows_on_a_terminal(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = match_args(inputs, tmp_path / "out", "--backend", "cpu")
    code, out = _run_on_tty(args, monkeypatch)
    assert code == 0, out
    assert f"{len(ANGLES)}/{len(ANGLES)}" in out and "rot/s" in out, out


# ------------------------------------------------------------ 5. negative defocus
_CTF = ["--amplitude-contrast", "0.07", "--spherical-aberration", "2.7"]


@pytest.mark.parametrize(("defocus", "warned"), [("-3", True), ("3", False)])
def test_negative_defocus_is_warned_about_once(
    defocus: str,
    warned: bool,
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = match_args(
        inputs,
        tmp_path / "out",
        "--backend", "cpu",
        "-a", "-60", "60",
        f"--defocus={defocus}",
        *_CTF,
        "--voltage", "300",
    )  # fmt: skip
    code, err = run_cli(args, capsys)
    assert code == 0, err
    hits = [w for w in _warnings(err) if "overfocus" in w]
    if warned:
        assert len(hits) == 1, err
        assert "--defocus -3" in hits[0] and "underfocus" in hits[0]
    else:
        assert hits == [], err
