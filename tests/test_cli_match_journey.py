"""`tmfast match` as a pytom-match-pick user meets it: regressions from a CLI journey.

Each test runs the real command on tiny volumes and pins one bug found that way:
a RELION5 voxel size silently beating ``--voxel-size-angstrom``, TOML values of the
wrong type ending in a traceback or (quoted booleans) silently switching an option
on, pytom's ``--tilt-angles-first-column`` refused in a TOML file, and
``--phase-shift nan`` giving an all ``-inf`` score map with exit code 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from _cli import match_args, match_inputs, run_cli
from _synthetic import SHARED, write_mrc

ANGLES = np.array([[0.3 * i, 0.5 + 0.1 * i, 0.2 * i] for i in range(3)])
VOXEL_A = 21.0
STAR = SHARED / "data" / "formats" / "relion5_tomograms" / "pytom_job009"
STAR = STAR / "tomograms.star"
#: The RELION5 tomogram of STAR used here and its voxel size (pixel size x binning).
RELION_NAME = "tomo200528_107"
RELION_VOXEL_A = 1.724 * 8.120650


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    return match_inputs(
        tmp_path,
        seed=11,
        tomo_shape_zyx=(12, 14, 16),
        voxel_a=VOXEL_A,
        angles_zxz_rad=ANGLES,
    )


def _args(inputs: dict[str, Path], dest: Path, *extra: str) -> list[str]:
    return match_args(inputs, dest, "--backend", "cpu", *extra)


_run = run_cli


def _one_error(code: int, err: str) -> str:
    """Exit code 2 with a single ``tmfast: error:`` line and no traceback."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("tmfast: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _relion_tomogram(inputs: dict[str, Path], voxel_a: float) -> Path:
    """A copy of the tomogram named as in STAR, its header at ``voxel_a``."""
    if not STAR.exists():
        pytest.skip(f"{STAR} not present (the shared data folder beside the repo)")
    tomo = inputs["v"].parent / f"{RELION_NAME}.mrc"
    write_mrc(tomo, mrcfile.read(inputs["v"]), voxel_a)
    return tomo


def test_voxel_size_flag_beats_relion5_star(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/api.md: --voxel-size-angstrom overrides everything, RELION5 included."""
    tomo = _relion_tomogram(inputs, VOXEL_A)
    dest = tmp_path / "out"
    args = _args(inputs, dest, "--relion5-tomograms-star", str(STAR))
    args[args.index("-v") + 1] = str(tomo)
    code, err = _run([*args, "--voxel-size-angstrom", str(VOXEL_A)], capsys)
    assert code == 0, err
    job = json.loads((dest / f"{RELION_NAME}_job.json").read_text())
    assert job["voxel_size_a"] == VOXEL_A
    with mrcfile.open(dest / f"{RELION_NAME}_scores.mrc") as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(VOXEL_A)
    assert "differs from the header" not in err  # the flag agrees with the headers


def test_relion5_voxel_size_unlike_template_header_warns(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A template at 21 Å matched at RELION's 14 Å is named in a warning (as pytom)."""
    tomo = _relion_tomogram(inputs, RELION_VOXEL_A)
    dest = tmp_path / "out"
    args = _args(inputs, dest, "--relion5-tomograms-star", str(STAR))
    args[args.index("-v") + 1] = str(tomo)
    code, err = _run(args, capsys)
    assert code == 0, err
    job = json.loads((dest / f"{RELION_NAME}_job.json").read_text())
    assert job["voxel_size_a"] == pytest.approx(RELION_VOXEL_A)
    warned = [ln for ln in err.splitlines() if "differs from the header" in ln]
    assert len(warned) == 1, err
    assert str(inputs["t"]) in warned[0] and str(tomo) not in warned[0]


@pytest.mark.parametrize(
    ("toml_line", "flag"),
    [
        ('rng-seed = "abc"', "--rng-seed"),
        ("z-axis-rotational-symmetry = 2.5", "--z-axis-rotational-symmetry"),
        ('z-axis-rotational-symmetry = "two"', "--z-axis-rotational-symmetry"),
        ('amplitude-contrast = "x"', "--amplitude-contrast"),
        ('checkpoint-every = "often"', "--checkpoint-every"),
        ('phase-shift = "x"', "--phase-shift"),
        ("tilt-angles = 60", "--tilt-angles"),
        ("gpu-ids = 0", "--gpu-ids"),
        ('spectral-whitening = "false"', "--spectral-whitening"),
        ('random-phase-correction = "no"', "--random-phase-correction"),
    ],
)
def test_toml_value_of_wrong_type_is_one_error(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    toml_line: str,
    flag: str,
) -> None:
    cfg = tmp_path / "match.toml"
    cfg.write_text(toml_line + "\n")
    dest = tmp_path / "out"
    code, err = _run(_args(inputs, dest, "--config", str(cfg)), capsys)
    line = _one_error(code, err)
    assert flag in line
    assert not dest.exists() or not any(dest.iterdir())


def test_toml_tilt_angles_first_column(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pytom's --tilt-angles-first-column may be set in the config file too."""
    tilts = [-42.0, -3.0, 0.0, 27.0, 51.0]
    tlt = tmp_path / "in" / "ts.rawtlt"
    tlt.write_text("".join(f"{t:.2f} {i}\n" for i, t in enumerate(tilts)))
    cfg = tmp_path / "match.toml"
    cfg.write_text(f'[match]\ntilt-angles-first-column = "{tlt}"\n')
    dest = tmp_path / "out"
    code, err = _run(_args(inputs, dest, "--config", str(cfg)), capsys)
    assert code == 0, err
    job = json.loads((dest / "tomo_job.json").read_text())
    assert job["tilt_range_deg"] == [min(tilts), max(tilts)]


def test_toml_option_given_twice_is_one_error(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "match.toml"
    cfg.write_text("low-pass = 60\nlow_pass_a = 80\n")
    dest = tmp_path / "out"
    code, err = _run(_args(inputs, dest, "--config", str(cfg)), capsys)
    assert "low_pass_a" in _one_error(code, err)
    assert not dest.exists() or not any(dest.iterdir())


def test_phase_shift_nan_is_one_error(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before the fix this wrote an all -inf score map and exited 0."""
    tlt = tmp_path / "in" / "ts.tlt"
    tlt.write_text("".join(f"{t}\n" for t in range(-60, 61, 20)))
    dest = tmp_path / "out"
    ctf = ["--defocus", "3", "--amplitude-contrast", "0.07"]
    ctf += ["--spherical-aberration", "2.7", "--voltage", "300"]
    args = _args(inputs, dest, "-a", str(tlt), *ctf, "--phase-shift", "nan")
    assert "--phase-shift" in _one_error(*_run(args, capsys))
    assert not dest.exists() or not any(dest.iterdir())


@pytest.mark.parametrize("flag", ["--defocus", "--dose-accumulation"])
def test_per_tilt_file_with_min_max_tilts_is_one_error(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
) -> None:
    """``-a MIN MAX`` with a per-tilt file used to be read as two tilts ("35 values
    for 2 tilts ... in the order of the tilt-angle file", with no such file)."""
    values = tmp_path / "in" / "per_tilt.txt"
    values.write_text("".join(f"{3.0 + 0.01 * i}\n" for i in range(2)))
    ctf = ["--amplitude-contrast", "0.07", "--spherical-aberration", "2.7"]
    ctf += ["--voltage", "300"]
    dest = tmp_path / "out"
    args = _args(inputs, dest, "-a", "-60", "60", flag, str(values), *ctf)
    line = _one_error(*_run(args, capsys))
    assert flag in line and "MIN MAX" in line
    assert not dest.exists() or not any(dest.iterdir())


def test_ctf_model_and_phase_shift_without_defocus_warn(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --defocus no CTF is applied, so these two options do nothing: say so."""
    dest = tmp_path / "out"
    extra = ["-a", "-60", "60", "--tomogram-ctf-model", "phase-flip"]
    code, err = _run(_args(inputs, dest, *extra, "--phase-shift", "30"), capsys)
    assert code == 0, err
    ignored = [ln for ln in err.splitlines() if "ignored" in ln and "WARNING" in ln]
    assert len(ignored) == 1, err
    assert "--tomogram-ctf-model" in ignored[0] and "--phase-shift" in ignored[0]


def test_failed_output_write_leaves_no_scores_map_and_rerun_works(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Disk full while writing the angle map: the error says "rerun the same
    command", so the scores map already written must not block that rerun."""
    import errno

    import tmfast.io.mrc

    real_write = tmfast.io.mrc.write_volume
    calls: list[Path] = []

    def write_then_fail(path: Path, *args: object, **kwargs: object) -> Path:
        calls.append(Path(path))
        if len(calls) == 2:  # the angle map, after the scores map was written
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tmfast.io.mrc, "write_volume", write_then_fail)
    dest = tmp_path / "out"
    args = _args(inputs, dest, "-a", "-60", "60")
    code, err = _run(args, capsys)
    assert code == 1 and "Traceback" not in err, err
    assert [ln for ln in err.splitlines() if ln.startswith("tmfast: error:")]
    assert calls[0].name == "tomo_scores.mrc"
    left = sorted(p.name for p in dest.iterdir() if p.suffix in (".mrc", ".json"))
    assert left == [], left
    monkeypatch.setattr(tmfast.io.mrc, "write_volume", real_write)
    code, err = _run(args, capsys)  # the same command, no --overwrite
    assert code == 0, err
    job = json.loads((dest / "tomo_job.json").read_text())
    with mrcfile.open(dest / "tomo_angles.mrc") as mrc:
        assert 0 <= float(mrc.data.min()) and float(mrc.data.max()) < len(ANGLES)
    assert job["n_rotations"] == len(ANGLES)


def test_toml_metadata_table_of_wrong_type_is_one_error(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "match.toml"
    cfg.write_text('[match.metadata]\ntilt_angles_deg = "x"\n')
    dest = tmp_path / "out"
    code, err = _run(_args(inputs, dest, "--config", str(cfg)), capsys)
    assert "metadata" in _one_error(code, err)
    assert not dest.exists() or not any(dest.iterdir())


def test_toml_sets_run_options_and_flags_switch_them_off(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config file may set every flag: also --overwrite (and -q, --verbose,
    --log), and a boolean it switches on is switched off by the --no- flag."""
    dest = tmp_path / "out"
    code, err = _run(_args(inputs, dest), capsys)
    assert code == 0, err
    cfg = tmp_path / "match.toml"
    cfg.write_text("overwrite = true\nspectral-whitening = true\nquiet = true\n")
    # without --overwrite on the command line the file's overwrite = true applies
    code, err = _run(_args(inputs, dest, "--config", str(cfg)), capsys)
    assert code == 0, err
    job = json.loads((dest / "tomo_job.json").read_text())
    assert job["spectral_whitening"] is True
    code, err = _run(
        _args(inputs, dest, "--config", str(cfg), "--no-spectral-whitening"), capsys
    )
    assert code == 0, err
    job = json.loads((dest / "tomo_job.json").read_text())
    assert job["spectral_whitening"] is False
    # the flag beats the file: --no-overwrite refuses the existing outputs
    code, err = _run(
        _args(inputs, dest, "--config", str(cfg), "--no-overwrite"), capsys
    )
    assert "exists" in _one_error(code, err)
    # a run option of the wrong type is one error line
    cfg.write_text('quiet = "yes"\n')
    code, err = _run(_args(inputs, dest, "--config", str(cfg)), capsys)
    assert "quiet" in _one_error(code, err)


@pytest.mark.parametrize("value", ["nan", "-5.0", "inf"])
def test_toml_checkpoint_interval_must_be_finite_seconds(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    """nan compared false against every time and silently disabled time-based
    checkpoints; it is refused, as negative and infinite values."""
    cfg = tmp_path / "match.toml"
    cfg.write_text(f"checkpoint_interval_s = {value}\n")
    code, err = _run(_args(inputs, tmp_path / "out", "--config", str(cfg)), capsys)
    assert "checkpoint_interval_s" in _one_error(code, err)


def test_a_split_much_costlier_than_unsplit_is_reported(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-s 10 10 10 on a tiny tomogram ran for many minutes without a word: the
    tiles' overlap multiplies the work, and the run now says so (and by how much)."""
    code, err = _run(_args(inputs, tmp_path / "out", "-s", "2", "2", "2"), capsys)
    assert code == 0, err
    assert "overlap makes the search" in err and "x the work" in err, err
    code, err = _run(_args(inputs, tmp_path / "one"), capsys)
    assert code == 0, err
    assert "overlap makes the search" not in err, err
