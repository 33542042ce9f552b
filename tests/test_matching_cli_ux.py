"""`tmfast match` user-facing behaviour (issue 3 review): one-line errors with the
right exit code and nothing written, warnings for ignored or ineffective options,
pytom flags, progress labels. The Ctrl-C tests are in test_matching_preempt.py.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
from _cli import match_args, match_inputs, run_cli
from _synthetic import write_mrc
from tmfast.cli import match as cli_match

ANGLES = np.array([[0.2 * i, 0.4 + 0.1 * i, 0.3 * i] for i in range(4)])
VOXEL_A = 4.0


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    return match_inputs(
        tmp_path,
        seed=3,
        tomo_shape_zyx=(14, 16, 18),
        voxel_a=VOXEL_A,
        angles_zxz_rad=ANGLES,
    )


def _args(inputs: dict[str, Path], dest: Path, *extra: str) -> list[str]:
    return match_args(inputs, dest, *extra)


_run = run_cli


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("tmfast: error:")]


def _one_error(err: str) -> str:
    """The single error line (and no traceback)."""
    assert "Traceback" not in err, err
    lines = _error_lines(err)
    assert len(lines) == 1, err
    return lines[0]


def _warnings(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if " WARNING " in ln]


@pytest.fixture()
def no_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if matching starts (the error must come before any compute)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("matching started before the input error was reported")

    monkeypatch.setattr("tmfast.matching.engine.match_template", refuse)


# ------------------------------------------------------------------ destination
def test_destination_that_cannot_be_created_exits_2_before_compute(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_compute: None,
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    dest = blocker / "out"
    code, err = _run(_args(inputs, dest), capsys)
    assert code == 2
    line = _one_error(err)
    assert line.startswith(f"tmfast: error: {dest}: output folder cannot be created")
    assert "choose another -d/--destination" in line
    assert blocker.read_text() == "not a folder\n"


def test_destination_is_created_before_compute_and_removed_on_bad_input(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new -d/a/b is made and test-written first; a failure before any output
    (here a template voxel size that disagrees) leaves no empty folders behind."""
    bad = write_mrc(tmp_path / "t5.mrc", np.ones((8, 8, 8)), 5.0)
    dest = tmp_path / "new" / "deeper"
    args = _args(inputs, dest)
    args[2] = str(bad)
    code, err = _run(args, capsys)
    assert code == 2 and "voxel sizes disagree" in _one_error(err)
    assert not (tmp_path / "new").exists()


def test_output_write_failure_is_one_line(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("tmfast.io.mrc.write_volume", full_disk)
    dest = tmp_path / "out"
    code, err = _run(_args(inputs, dest, "--backend", "cpu"), capsys)
    assert code == 1
    line = _one_error(err)
    assert "writing the outputs failed (No space left on device)" in line, line
    assert str(dest) in line


# ------------------------------------------------------------------ -g / backend
def test_gpu_ids_without_a_gpu_backend_exits_2(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_compute: None,
) -> None:
    from tmfast.backends import registry

    monkeypatch.setattr(
        registry,
        "available_backends",
        lambda: {"cpu": None, "cuda": "no CUDA driver", "opencl": "no ICD"},
    )
    dest = tmp_path / "out"
    code, err = _run(_args(inputs, dest, "-g", "5"), capsys)
    assert code == 2
    line = _one_error(err)
    assert "-g/--gpu-ids 5: no GPU backend is available" in line
    assert "cuda: no CUDA driver; opencl: no ICD" in line
    assert "install tmfast[cuda], or drop -g / use --backend cpu" in line
    assert not dest.exists()


def test_gpu_ids_refused_on_this_machine_when_auto_would_use_the_cpu(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_compute: None,
) -> None:
    """The real registry: where `--backend auto` resolves to cpu, -g is refused."""
    from tmfast.backends import registry
    from tmfast.cli import configure_logging

    configure_logging(logging.INFO)  # log to this test's stderr, not a closed one
    if registry._resolve_auto() != "cpu":
        pytest.skip("a GPU backend is available here: -g is honoured")
    code, err = _run(_args(inputs, tmp_path / "out", "-g", "0", "1"), capsys)
    assert code == 2 and "-g/--gpu-ids 0 1: no GPU backend" in _one_error(err)


def test_backend_cpu_with_gpu_ids_warns_and_runs(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "out"
    code, err = _run(_args(inputs, dest, "--backend", "cpu", "-g", "0"), capsys)
    assert code == 0, err
    warn = [w for w in _warnings(err) if "-g/--gpu-ids" in w]
    assert len(warn) == 1 and "ignored: --backend cpu" in warn[0], err
    assert (dest / "tomo_scores.mrc").exists()


# ------------------------------------------------------------------ --angular-search
@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("0", "angular step 0.0° is outside [0.05, 360]"),
        ("-5", "angular step -5.0° is outside [0.05, 360]"),
        ("400", "angular step 400.0° is outside [0.05, 360]"),
        ("abc", "abc: not a number of degrees and no such angle file"),
    ],
)
def test_bad_angular_search_one_line_exit_2(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    value: str,
    needle: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # "abc" is relative to here
    dest = tmp_path / "out"
    args = _args(inputs, dest)
    args[args.index("--angular-search") + 1] = value
    code, err = _run(args, capsys)
    assert code == 2
    line = _one_error(err)
    assert needle in line, line
    assert "give a step in degrees" in line
    assert not dest.exists()


# ------------------------------------------------------------------ messages
def test_missing_mask_names_the_flag(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_compute: None,
) -> None:
    args = _args(inputs, tmp_path / "out")
    i = args.index("-m")
    del args[i : i + 2]
    code, err = _run(args, capsys)
    assert code == 2 and _one_error(err) == "tmfast: error: -m/--mask is required"
    assert not (tmp_path / "out").exists()


def test_existing_output_message_names_the_flag_first(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "tomo_scores.mrc").write_bytes(b"old")
    code, err = _run(_args(inputs, dest), capsys)
    assert code == 2
    line = _one_error(err)
    assert line.endswith(
        "tomo_scores.mrc: output exists; pass --overwrite to replace it "
        "(overwrite=True in the Python API)"
    ), line
    assert (dest / "tomo_scores.mrc").read_bytes() == b"old"


# ------------------------------------------------------------------ warnings
def test_low_pass_finer_than_nyquist_warns(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(
        _args(inputs, tmp_path / "a", "--backend", "cpu", "--low-pass", "7"), capsys
    )
    assert code == 0, err
    warn = [w for w in _warnings(err) if "--low-pass" in w]
    assert len(warn) == 1 and "finer than Nyquist (8 Å at 4 Å/voxel)" in warn[0]
    code, err = _run(
        _args(inputs, tmp_path / "b", "--backend", "cpu", "--low-pass", "8"), capsys
    )
    assert code == 0 and not [w for w in _warnings(err) if "--low-pass" in w], err


def test_ctf_constants_without_defocus_warn(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(
        inputs, tmp_path / "out", "--backend", "cpu",
        "--voltage", "300", "--amplitude-contrast", "0.07",
    )  # fmt: skip
    code, err = _run(args, capsys)
    assert code == 0, err
    warn = [w for w in _warnings(err) if "without --defocus" in w]
    assert len(warn) == 1, err
    assert "--voltage, --amplitude-contrast ignored" in warn[0]


def test_mask_voxel_size_mismatch_exits_2_unless_overridden(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with mrcfile.open(inputs["m"]) as m:
        mask = m.data.copy()
    m5 = write_mrc(tmp_path / "mask5.mrc", mask, 5.0)
    args = _args(inputs, tmp_path / "out", "--backend", "cpu")
    args[args.index("-m") + 1] = str(m5)
    code, err = _run(args, capsys)
    assert code == 2
    line = _one_error(err)
    assert f"{m5}: mask voxel size 5.000 Å differs from the template's 4.000 Å" in line
    assert not (tmp_path / "out").exists()
    code, err = _run([*args, "--voxel-size-angstrom", "4"], capsys)
    assert code == 0, err


# ------------------------------------------------------------------ pytom flags
def test_log_debug_and_quiet_after_the_subcommand(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(
        _args(inputs, tmp_path / "a", "--backend", "cpu", "--log", "debug"), capsys
    )
    assert code == 0 and " DEBUG " in err, err
    code, err = _run(
        _args(inputs, tmp_path / "v", "--backend", "cpu", "--verbose"), capsys
    )
    assert code == 0 and " DEBUG " in err, err
    code, err = _run(_args(inputs, tmp_path / "b", "--backend", "cpu", "-q"), capsys)
    assert code == 0 and " INFO " not in err and " DEBUG " not in err, err
    assert (tmp_path / "b" / "tomo_job.json").exists()
    code, err = _run(_args(inputs, tmp_path / "c", "--log", "loud"), capsys)
    assert code == 2 and "--log 'loud': choose info or debug" in _one_error(err)
    logging.getLogger("tmfast").setLevel(logging.INFO)


def test_tilt_angles_first_column(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tilts = np.arange(-57.0, 58.0, 3.0)
    table = tmp_path / "tilts.txt"
    table.write_text("".join(f"{t:.1f} {100 + i} 0.5\n" for i, t in enumerate(tilts)))
    dest = tmp_path / "out"
    args = _args(inputs, dest, "--backend", "cpu", "--tilt-angles-first-column")
    code, err = _run([*args, str(table)], capsys)
    assert code == 0, err
    job = json.loads((dest / "tomo_job.json").read_text())
    assert job["tilt_range_deg"] == [tilts.min(), tilts.max()]
    code, err = _run([*args, str(table), "-a", "-60", "60"], capsys)
    assert code == 2
    assert "-a/--tilt-angles or --tilt-angles-first-column, not both" in _one_error(err)


def test_defocus_handedness_needs_per_tilt_ctf_and_is_recorded(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "out"
    args = _args(inputs, dest, "--backend", "cpu", "--defocus-handedness")
    # without per-tilt weighting and defocus there is no gradient: a warning, 0
    code, err = _run([*args, "-1"], capsys)
    assert code == 0, err
    warn = [w for w in _warnings(err) if "defocus handedness" in w]
    assert len(warn) == 1 and "--per-tilt-weighting, with --defocus" in warn[0], err
    assert json.loads((dest / "tomo_job.json").read_text())["defocus_handedness"] == 0
    # with them it is applied (per sub-volume) and recorded, without a warning
    tlt = tmp_path / "in" / "tilts.tlt"
    tlt.write_text("".join(f"{t}\n" for t in (-40, -20, 0, 20, 40)))
    ctf = ["-a", str(tlt), "--per-tilt-weighting", "--defocus", "3.0"]
    ctf += ["--voltage", "300", "--spherical-aberration", "2.7"]
    ctf += ["--amplitude-contrast", "0.07", "-s", "2", "1", "1", "--overwrite"]
    code, err = _run([*args, "-1", *ctf], capsys)
    assert code == 0, err
    assert not [w for w in _warnings(err) if "defocus handedness" in w], err
    assert json.loads((dest / "tomo_job.json").read_text())["defocus_handedness"] == -1
    code, err = _run([*args, "0", "--overwrite"], capsys)
    assert code == 0 and not [w for w in _warnings(err) if "handedness" in w], err
    assert json.loads((dest / "tomo_job.json").read_text())["defocus_handedness"] == 0
    code, err = _run([*args, "2", "--overwrite"], capsys)
    assert code == 2 and "give -1, 0 or 1" in _one_error(err)


def test_warp_xml_is_refused(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_compute: None,
) -> None:
    dest = tmp_path / "out"
    code, err = _run(_args(inputs, dest, "--warp-xml-file", "ts.xml"), capsys)
    assert code == 2
    line = _one_error(err)
    assert "Warp XML import is not supported yet" in line
    assert "--relion5-tomograms-star" in line
    assert not dest.exists()


# ------------------------------------------------------------------ progress
def test_tty_bar_labels_elapsed_then_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    report, stop = cli_match._progress()
    try:
        report(0, 40)
        report(40, 40)
    finally:
        stop()
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", tty.getvalue())  # no colours
    assert re.search(
        r"40/40 100% [\d.]+ rot/s \d+:\d\d:\d\d elapsed \d+:\d\d:\d\d left", out
    ), out


def test_throttled_log_progress_no_nan_at_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tmfast._progress import throttled_log_progress

    log = logging.getLogger("tmfast.test_progress")
    caplog.set_level(logging.INFO, logger="tmfast.test_progress")
    report = throttled_log_progress(log, "extracting", interval_s=0.0)
    report(0, 10)
    report(10, 10)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "extracting: 0/10 (0.0%, 0 s elapsed, ETA ?)", lines
    assert "nan" not in " ".join(lines)
    assert re.fullmatch(
        r"extracting: 10/10 \(100\.0%, \d+ s elapsed, ETA 0 s\)", lines[1]
    )


def test_checkpoint_write_failure_is_one_line(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full disk at a checkpoint (after the first of two sub-volumes) ends the
    run with one line naming the checkpoint, exit 1."""

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("tmfast.matching.engine.np.savez", full_disk)
    dest = tmp_path / "out"
    args = _args(
        inputs, dest, "--backend", "cpu", "-s", "2", "1", "1",
        "--checkpoint-every", "1",
    )  # fmt: skip
    code, err = _run(args, capsys)
    assert code == 1, err
    line = _one_error(err)
    assert "_checkpoint" in line and "writing the checkpoint failed" in line, line
    assert not (dest / "tomo_scores.mrc").exists()
