"""`tmfast match` and `tmfast demo` end to end through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
from _synthetic import sphere_mask, write_angle_file, write_mrc
from tmfast.cli import main
from tmfast.matching.job import MatchJob

ANGLES = np.array([[0.2 * i, 0.4 + 0.1 * i, 0.3 * i] for i in range(4)])


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(2)
    return {
        "t": write_mrc(tmp_path / "tmpl.mrc", rng.standard_normal((8,) * 3), 4.0),
        "v": write_mrc(tmp_path / "tomo.mrc", rng.standard_normal((14, 16, 18)), 4.0),
        "m": write_mrc(tmp_path / "mask.mrc", sphere_mask(8, 3.5), 4.0),
        "ang": write_angle_file(tmp_path / "angles.txt", ANGLES),
        "tlt": _tlt(tmp_path / "ts.tlt"),
    }


def _tlt(path: Path) -> Path:
    path.write_text("\n".join(str(a) for a in range(-54, 55, 6)) + "\n")
    return path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_match_pytom_flags(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = [
        "match",
        "-t",
        str(inputs["t"]),
        "-v",
        str(inputs["v"]),
        "-m",
        str(inputs["m"]),
        "-d",
        str(out),
        "--angular-search",
        str(inputs["ang"]),
        "-a",
        "-60",
        "60",
        "--low-pass",
        "10",
        "-s",
        "2",
        "1",
        "1",
        "--search-x",
        "1",
        "17",
        "-r",
        "--rng-seed",
        "4",
        "--backend",
        "cpu",
        "-g",
        "0",
        "1",
    ]
    code, err = _run(args, capsys)
    assert code == 0, err
    job = MatchJob.read(out / "tomo_job.json")
    assert job.tilt_range_deg == (-60.0, 60.0) and job.volume_split_xyz == (2, 1, 1)
    assert job.search_shape_zyx == (14, 16, 16) and job.random_phase_correction
    assert job.rng_seed == 4 and job.n_rotations == 4 and job.low_pass_a == 10.0
    with mrcfile.open(out / "tomo_scores.mrc") as m:
        assert m.data.shape == (14, 16, 16)
    # again without --overwrite: one line, exit 2, files untouched
    before = (out / "tomo_scores.mrc").stat().st_mtime_ns
    code, err = _run(args, capsys)
    assert code == 2 and "--overwrite" in err and err.count("\n") == 1
    assert (out / "tomo_scores.mrc").stat().st_mtime_ns == before


def test_match_config_file_and_tilt_file(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o2"
    cfg = tmp_path / "match.toml"
    cfg.write_text(
        f'template = "{inputs["t"]}"\ntomogram = "{inputs["v"]}"\n'
        f'mask = "{inputs["m"]}"\ndestination = "{out}"\n'
        f'angular_search = "{inputs["ang"]}"\nlow-pass = 12.0\nbackend = "cpu"\n'
        "half_precision = true\n"
    )
    code, err = _run(
        [
            "match",
            "--config",
            str(cfg),
            "-a",
            str(inputs["tlt"]),
            "--per-tilt-weighting",
            "--low-pass",
            "9",
        ],
        capsys,
    )
    assert code == 0, err
    job = MatchJob.read(out / "tomo_job.json")
    assert job.low_pass_a == 9.0 and job.per_tilt_weighting and job.half_precision
    assert job.metadata is not None and job.metadata.n_tilts == 19
    with mrcfile.open(out / "tomo_scores.mrc") as m:
        assert m.data.dtype == np.float16


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--backend", "nope"], "--backend"),
        (["-s", "0", "1", "1"], "volume-split"),
        (["--search-x", "5", "2"], "search-x"),
        (["--low-pass", "-3"], "--low-pass"),
        (["--defocus", "3"], "--amplitude-contrast"),
    ],
)
def test_match_bad_flags_exit_2(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    needle: str,
) -> None:
    out = tmp_path / "bad"
    args = [
        "match",
        "-t",
        str(inputs["t"]),
        "-v",
        str(inputs["v"]),
        "-m",
        str(inputs["m"]),
        "-d",
        str(out),
        "--angular-search",
        "30",
        *extra,
    ]
    code, err = _run(args, capsys)
    assert code == 2 and needle in err and "Traceback" not in err
    assert not out.exists()


def test_match_mask_box_mismatch_exit_2(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m9 = write_mrc(tmp_path / "m9.mrc", sphere_mask(9, 3), 4.0)
    code, err = _run(
        [
            "match",
            "-t",
            str(inputs["t"]),
            "-v",
            str(inputs["v"]),
            "-m",
            str(m9),
            "-d",
            str(tmp_path / "x"),
            "--angular-search",
            "30",
        ],
        capsys,
    )
    assert code == 2 and "mask box" in err and err.count("\n") == 1
    assert not any((tmp_path / "x").glob("*"))
