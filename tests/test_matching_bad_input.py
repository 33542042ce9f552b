"""Issue 3, "Bad input": every item through `tmfast match` gives one error line on
stderr, exit code 2, no traceback, and leaves nothing on disk (the folder listing
before and after is compared; existing outputs keep their bytes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _synthetic import sphere_mask, write_angle_file, write_mrc
from tmfast.cli import main

N = 8
ANGLES = np.array([[0.2 * i, 0.4 + 0.1 * i, 0.3 * i] for i in range(3)])
TILTS = list(range(-45, 46, 15))  # 7 tilts


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(4)
    d = tmp_path / "in"
    d.mkdir()
    tlt = d / "ts.tlt"
    tlt.write_text("".join(f"{t}\n" for t in TILTS))
    return {
        "t": write_mrc(d / "tmpl.mrc", rng.standard_normal((N,) * 3), 4.0),
        "v": write_mrc(d / "tomo.mrc", rng.standard_normal((14, 16, 18)), 4.0),
        "m": write_mrc(d / "mask.mrc", sphere_mask(N, 3.5), 4.0),
        "ang": write_angle_file(d / "angles.txt", ANGLES),
        "tlt": tlt,
        "dir": d,
    }


def _listing(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(folder.rglob("*"))
    }


def _args(inputs: dict[str, Path], dest: Path, **swap: Path) -> list[str]:
    files = {**inputs, **swap}
    return [
        "match",
        "-t", str(files["t"]),
        "-v", str(files["v"]),
        "-m", str(files["m"]),
        "-d", str(dest),
        "--angular-search", str(files["ang"]),
        "--backend", "cpu",
    ]  # fmt: skip


def _bad(d: Path, name: str, data: np.ndarray, voxel_a: float = 4.0) -> Path:
    return write_mrc(d / name, data, voxel_a)


CASES = [
    "noncubic",
    "mask_box",
    "template_too_large",
    "voxel_disagree",
    "nan_tomogram",
    "inf_template",
    "nan_mask",
    "empty_mask",
    "zero_voxel",
    "not_mrc",
    "truncated",
    "missing",
    "dose_length",
    "defocus_length",
    "tilt_range_with_per_tilt",
    "tomogram_mask_shape",
    "search_region",
    "unwritable_output",
    "existing_outputs",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_one_line_exit_2_nothing_written(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    rng = np.random.default_rng(1)
    d = tmp_path / "bad"
    d.mkdir()
    dest = tmp_path / "out"
    swap: dict[str, Path] = {}
    extra: list[str] = []
    needle = ""
    if case == "noncubic":
        swap["t"] = _bad(d, "t.mrc", rng.standard_normal((8, 8, 9)))
        needle = "not cubic"
    elif case == "mask_box":
        swap["m"] = _bad(d, "m.mrc", sphere_mask(10, 3.0))
        needle = "mask box"
    elif case == "template_too_large":
        swap["t"] = _bad(d, "t.mrc", rng.standard_normal((15,) * 3))
        swap["m"] = _bad(d, "m.mrc", sphere_mask(15, 5.0))
        needle = "larger than the tomogram"
    elif case == "voxel_disagree":
        swap["t"] = _bad(d, "t.mrc", rng.standard_normal((N,) * 3), 5.0)
        needle = "voxel sizes disagree"
    elif case == "nan_tomogram":
        v = rng.standard_normal((14, 16, 18))
        v[2, 3, 4] = np.nan
        swap["v"] = _bad(d, "v.mrc", v)
        needle = "NaN or inf"
    elif case == "inf_template":
        t = rng.standard_normal((N,) * 3)
        t[1, 1, 1] = np.inf
        swap["t"] = _bad(d, "t.mrc", t)
        needle = "NaN or inf"
    elif case == "nan_mask":
        m = sphere_mask(N, 3.5)
        m[0, 0, 0] = np.nan
        swap["m"] = _bad(d, "m.mrc", m)
        needle = "NaN or inf"
    elif case == "empty_mask":
        swap["m"] = _bad(d, "m.mrc", np.zeros((N,) * 3))
        needle = "mask is empty"
    elif case == "zero_voxel":
        swap["v"] = _bad(d, "v.mrc", rng.standard_normal((14, 16, 18)), 0.0)
        needle = "voxel size"
    elif case == "not_mrc":
        p = d / "v.mrc"
        p.write_text("this is not an MRC file\n" * 50)
        swap["v"] = p
        needle = str(p)
    elif case == "truncated":
        p = d / "v.mrc"
        full = inputs["v"].read_bytes()
        p.write_bytes(full[: len(full) - 1000])
        swap["v"] = p
        needle = str(p)
    elif case == "missing":
        swap["v"] = d / "absent.mrc"
        needle = "absent.mrc"
    elif case == "dose_length":
        dose = d / "dose.txt"
        dose.write_text("0\n3\n6\n")
        extra = ["-a", str(inputs["tlt"]), "--per-tilt-weighting"]
        extra += ["--dose-accumulation", str(dose)]
        needle = "dose.txt"
    elif case == "defocus_length":
        df = d / "defocus.txt"
        df.write_text("3.0\n3.1\n")
        extra = ["-a", str(inputs["tlt"]), "--per-tilt-weighting", "--defocus", str(df)]
        extra += ["--amplitude-contrast", "0.07", "--spherical-aberration", "2.7"]
        extra += ["--voltage", "300"]
        needle = "defocus.txt"
    elif case == "tilt_range_with_per_tilt":
        extra = ["-a", "-60", "60", "--per-tilt-weighting"]
        needle = "--per-tilt-weighting"
    elif case == "tomogram_mask_shape":
        extra = ["--tomogram-mask", str(_bad(d, "tm.mrc", np.ones((14, 16, 17))))]
        needle = "tomogram mask shape"
    elif case == "search_region":
        extra = ["--search-x", "0", "40"]
        needle = "--search-x"
    elif case == "unwritable_output":
        blocker = d / "a_file"
        blocker.write_text("x")
        dest = blocker / "out"
        needle = "cannot be created or written"
    elif case == "existing_outputs":
        dest.mkdir()
        (dest / "tomo_scores.mrc").write_bytes(b"old scores")
        needle = "tomo_scores.mrc"
    before = _listing(tmp_path)
    try:
        main([*_args(inputs, dest, **swap), *extra])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("tmfast: error: "), err
    assert needle in lines[0], err
    assert "Traceback" not in err
    assert _listing(tmp_path) == before  # nothing created, nothing changed
    if case != "existing_outputs":
        assert not dest.exists()
