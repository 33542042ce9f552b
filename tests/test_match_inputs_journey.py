"""`tmfast match` as a pytom user drives it: real tilt/defocus/RELION5 inputs, and
stopping, resuming and sharing an output folder.

Each test runs the CLI on a tiny random volume (16x18x20, 8-voxel template); a
stop is a real signal sent by the CPU backend to this process while it scores a
batch (the engine finishes the batch, checkpoints and exits 128 + signum).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from _cli import match_args, match_inputs, run_cli
from _synthetic import SHARED
from tmfast.backends.cpu import CpuBackend
from tmfast.matching.engine import output_paths

FORMATS = SHARED / "data" / "formats"
N_ROT = 70  # three batches of 32 (the CLI's batch size)
ANGLES = np.array(
    [[0.09 * i, 0.2 + 0.037 * i, (0.31 * i) % (2 * np.pi)] for i in range(N_ROT)]
)
SHAPE = (16, 18, 20)


def _inputs(tmp_path: Path, voxel_a: float = 10.0) -> dict[str, Path]:
    return match_inputs(
        tmp_path, seed=4, tomo_shape_zyx=SHAPE, voxel_a=voxel_a, angles_zxz_rad=ANGLES
    )


def _signal_on_batch(
    monkeypatch: pytest.MonkeyPatch, signum: signal.Signals, at: int = 2
) -> None:
    """Make the CPU backend send ``signum`` to this process in its ``at``-th batch."""
    original = CpuBackend.score_rotations
    calls = {"n": 0}

    def score(self: CpuBackend, first_index: int, matrices: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] == at:
            os.kill(os.getpid(), signum)
        original(self, first_index, matrices)

    monkeypatch.setattr(CpuBackend, "score_rotations", score)


def _job(dest: Path) -> dict[str, object]:
    job: dict[str, object] = json.loads(
        output_paths(dest, "tomo")["job"].read_text(encoding="utf-8")
    )
    return job


def _scores(dest: Path) -> np.ndarray:
    return np.asarray(mrcfile.read(output_paths(dest, "tomo")["scores"]))


def _write_tilts(path: Path, angles: list[float]) -> Path:
    path.write_text("".join(f"{a:6.1f}\n" for a in angles))
    return path


# ---------------------------------------------------------------- stop and resume
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_is_reported_once_and_the_rerun_resumes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sig: signal.Signals,
    code: int,
) -> None:
    """The stop is one error line (it was logged twice more as warnings before)."""
    inputs = _inputs(tmp_path)
    dest = tmp_path / "out"
    args = match_args(inputs, dest, "-a", "-60", "60", "--backend", "cpu")
    with monkeypatch.context() as m:
        _signal_on_batch(m, sig)
        rc, err = run_cli(args, capsys)
    assert rc == code, err
    ckpt = output_paths(dest, "tomo")["checkpoint"]
    assert ckpt.exists()
    reports = [line for line in err.splitlines() if "rotation-tiles" in line]
    assert len(reports) == 1, err
    assert reports[0].startswith(f"tmfast: error: stopped by {sig.name}"), err
    assert str(ckpt) in reports[0] and "rerun the same command" in reports[0]

    rc, err = run_cli(args, capsys)
    assert rc == 0, err
    assert 0 < int(_job(dest)["resumed_rotations"]) < N_ROT  # type: ignore[call-overload]
    assert not ckpt.exists()


def test_other_options_into_the_same_folder_keep_the_stopped_runs_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second run with another --low-pass used to say only 'ignoring checkpoint'
    and replace the stopped run's progress. Now it stops with one line naming the
    option, leaves the checkpoint alone, and --overwrite discards it."""
    inputs = _inputs(tmp_path)
    dest = tmp_path / "out"
    extra = ["-a", "-60", "60", "--backend", "cpu"]
    first = match_args(inputs, dest, *extra)
    second = [*first, "--low-pass", "40"]
    with monkeypatch.context() as m:
        _signal_on_batch(m, signal.SIGTERM)
        assert run_cli(first, capsys)[0] == 143
    ckpt = output_paths(dest, "tomo")["checkpoint"]
    before = ckpt.read_bytes()

    rc, err = run_cli(second, capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tmfast: error: {ckpt}:"), err
    assert "--low-pass" in lines[0] and "--overwrite" in lines[0], err
    assert ckpt.read_bytes() == before
    assert not output_paths(dest, "tomo")["scores"].exists()

    rc, err = run_cli([*second, "--overwrite"], capsys)
    assert rc == 0, err
    assert _job(dest)["resumed_rotations"] == 0
    assert _job(dest)["low_pass_a"] == 40.0
    fresh = tmp_path / "fresh"
    assert (
        run_cli(match_args(inputs, fresh, *extra, "--low-pass", "40"), capsys)[0] == 0
    )
    np.testing.assert_array_equal(_scores(dest), _scores(fresh))


_SLOW_CHILD = """
import sys, time
from tmfast.backends.cpu import CpuBackend
orig = CpuBackend.score_rotations
def slow(self, first, mats):
    orig(self, first, mats)
    time.sleep(1.0)
CpuBackend.score_rotations = slow
from tmfast.cli import main
main(sys.argv[1:])
"""


def test_a_second_run_into_a_folder_being_written_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs of one tomogram into one -d: the second used to take the first's
    checkpoint, search in full, then fail with 'writing the outputs failed ...
    free space or fix the folder'. Now it refuses before any work."""
    inputs = _inputs(tmp_path)
    dest = tmp_path / "out"
    first = match_args(inputs, dest, "-a", "-60", "60", "--backend", "cpu")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "python"))
    env.pop("SLURM_JOB_ID", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CHILD, *first],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 60
        for line in proc.stdout:  # wait until it is matching
            if "matching: 0/" in line:
                break
            assert time.monotonic() < deadline, line
        rc, err = run_cli([*first, "--low-pass", "40", "--overwrite"], capsys)
        running = proc.poll() is None
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert running, "the first run ended before the second started; slow it more"
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "another tmfast match" in lines[0] and "-d/--destination" in lines[0]
    assert proc.returncode == 0, out
    assert _job(dest)["low_pass_a"] is None  # the first run's outputs, complete
    assert sorted(p.name for p in dest.iterdir()) == [
        "tomo_angles.mrc",
        "tomo_job.json",
        "tomo_scores.mrc",
    ]


def test_a_tilt_file_edited_in_place_is_not_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same name, same size, same mtime, other tilts: the checkpoint of the old
    tilts must not be mixed into the new search (its key held only the path)."""
    inputs = _inputs(tmp_path)
    tlt = _write_tilts(tmp_path / "ts.tlt", [-60.0, -30.0, 0.0, 30.0, 60.0])
    stamp = tlt.stat()
    dest = tmp_path / "out"
    extra = ["-a", str(tlt), "--per-tilt-weighting", "--backend", "cpu"]
    args = match_args(inputs, dest, *extra)
    with monkeypatch.context() as m:
        _signal_on_batch(m, signal.SIGTERM)
        assert run_cli(args, capsys)[0] == 143
    _write_tilts(tlt, [-40.0, -20.0, 0.0, 20.0, 40.0])
    os.utime(tlt, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert tlt.stat().st_size == stamp.st_size

    rc, err = run_cli(args, capsys)
    assert rc == 0, err
    assert "not resuming from checkpoint" in err
    assert _job(dest)["resumed_rotations"] == 0
    fresh = tmp_path / "fresh"
    assert run_cli(match_args(inputs, fresh, *extra), capsys)[0] == 0
    np.testing.assert_array_equal(_scores(dest), _scores(fresh))


def test_a_rerun_from_another_working_directory_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Relative -a and --angular-search paths named other files to the checkpoint
    key when the rerun started elsewhere, so the progress was thrown away."""
    inputs = _inputs(tmp_path)
    _write_tilts(tmp_path / "in" / "ts.tlt", [-60.0, -30.0, 0.0, 30.0, 60.0])
    dest = tmp_path / "out"
    extra = ["-a", "ts.tlt", "--per-tilt-weighting", "--backend", "cpu"]
    monkeypatch.chdir(tmp_path / "in")
    args = match_args(inputs, dest, *extra)
    args[args.index("--angular-search") + 1] = "angles.txt"
    with monkeypatch.context() as m:
        _signal_on_batch(m, signal.SIGTERM)
        assert run_cli(args, capsys)[0] == 143
    monkeypatch.chdir(tmp_path)
    args[args.index("-a") + 1] = "in/ts.tlt"
    args[args.index("--angular-search") + 1] = "in/angles.txt"
    rc, err = run_cli(args, capsys)
    assert rc == 0, err
    assert int(_job(dest)["resumed_rotations"]) > 0, err  # type: ignore[call-overload]


# ---------------------------------------------------------------- real input files
def test_an_aretomo3_ctf_table_is_not_read_as_defocus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """AreTomo3's _CTF.txt starts with the image number: it was read as defocus
    1, 2, 3 µm without a word. pytom refuses such a file too."""
    ctf = FORMATS / "aretomo3" / "test_CTF.txt"
    if not ctf.exists():
        pytest.skip(f"{ctf} absent (shared example data)")
    inputs = _inputs(tmp_path)
    tlt = _write_tilts(tmp_path / "ts.tlt", [-3.0, 0.0, 3.0])  # the file has 3 rows
    dest = tmp_path / "out"
    rc, err = run_cli(
        match_args(
            inputs, dest, "-a", str(tlt), "--per-tilt-weighting",
            "--defocus", str(ctf), "--amplitude-contrast", "0.07",
            "--spherical-aberration", "2.7", "--voltage", "300",
        ),
        capsys,
    )  # fmt: skip
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{ctf}, line 2: 7 columns" in lines[0], err
    assert not dest.exists()


def test_a_multi_column_dose_file_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """AreTomo3's _TLT.txt (tilt, image number, ...) works for -a (first column,
    as --tilt-angles-first-column) but is not a dose file."""
    tlt = FORMATS / "aretomo3" / "test_TLT.txt"
    if not tlt.exists():
        pytest.skip(f"{tlt} absent (shared example data)")
    inputs = _inputs(tmp_path)
    dest = tmp_path / "out"
    base = match_args(inputs, dest, "-a", str(tlt), "--per-tilt-weighting")
    rc, err = run_cli([*base, "--dose-accumulation", str(tlt)], capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{tlt}, line 1: 3 columns" in lines[0], err
    rc, err = run_cli([*base, "--backend", "cpu"], capsys)
    assert rc == 0, err
    first_column = [float(line.split()[0]) for line in tlt.read_text().splitlines()]
    metadata = _job(dest)["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["tilt_angles_deg"] == first_column


def test_relion5_star_weights_per_tilt_as_pytom_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pytom_match_template.py turns per-tilt weighting on with RELION5 metadata;
    tmfast used a binary wedge, leaving the star's defocus and dose unused."""
    star = FORMATS / "relion5_tomograms" / "pytom_job009" / "tomograms.star"
    ts = star.parent / "tilt_series" / "tomo200528_107.star"
    if not ts.exists():
        pytest.skip(f"{ts} absent (shared example data)")
    inputs = _inputs(tmp_path, voxel_a=1.724 * 8.12065)
    tomo = inputs["v"].rename(inputs["v"].with_name("rec_tomo200528_107.mrc"))
    inputs["v"] = tomo
    runs = {"default": (), "off": ("--no-per-tilt-weighting",)}
    for name, extra in runs.items():
        dest = tmp_path / name
        args = match_args(
            inputs, dest, "--relion5-tomograms-star", str(star), "--backend", "cpu",
            *extra,
        )  # fmt: skip
        rc, err = run_cli(args, capsys)
        assert rc == 0, err
    jobs = {
        name: json.loads(
            output_paths(tmp_path / name, "rec_tomo200528_107")["job"].read_text()
        )
        for name in runs
    }
    assert jobs["default"]["per_tilt_weighting"] is True
    assert jobs["off"]["per_tilt_weighting"] is False
    maps = [
        mrcfile.read(output_paths(tmp_path / name, "rec_tomo200528_107")["scores"])
        for name in runs
    ]
    assert not np.allclose(maps[0], maps[1])


def test_a_dose_file_without_per_tilt_weighting_is_reported_unused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pytom's test_dose.txt with its .rawtlt: the dose only weights the per-tilt
    wedge, so without --per-tilt-weighting the maps are those of no dose file; that
    used to pass in silence."""
    pytom = FORMATS / "pytom_inputs"
    if not (pytom / "test_dose.txt").exists():
        pytest.skip(f"{pytom} absent (shared example data)")
    inputs = _inputs(tmp_path)
    tilts = ["-a", str(pytom / "test_angles.rawtlt"), "--backend", "cpu"]
    dose = ["--dose-accumulation", str(pytom / "test_dose.txt")]
    rc, err = run_cli(match_args(inputs, tmp_path / "dose", *tilts, *dose), capsys)
    assert rc == 0, err
    warned = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warned) == 1 and "--dose-accumulation" in warned[0], err
    assert "--per-tilt-weighting" in warned[0]
    assert run_cli(match_args(inputs, tmp_path / "none", *tilts), capsys)[0] == 0
    np.testing.assert_array_equal(
        _scores(tmp_path / "dose"), _scores(tmp_path / "none")
    )
    rc, err = run_cli(
        match_args(inputs, tmp_path / "ptw", *tilts, *dose, "--per-tilt-weighting"),
        capsys,
    )
    assert rc == 0 and "WARNING" not in err, err


@pytest.mark.parametrize(
    "extra",
    [
        ("-s", "30", "1", "1"),  # more pieces than the 20 voxels along x
        ("--search-x", "0", "4", "-s", "5", "1", "1"),  # than the search region
        ("--angular-search", "BAD"),  # an angle file with a 2-value line
    ],
)
def test_bad_split_or_angle_file_without_tilts_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...]
) -> None:
    """Without -a the 'no missing-wedge weighting' warning came first, so the
    error was the second of two lines."""
    inputs = _inputs(tmp_path)
    bad = tmp_path / "bad_angles.txt"
    bad.write_text("0 0 0\n1 2\n")
    args = match_args(inputs, tmp_path / "out", "--backend", "cpu")
    args += [str(bad) if v == "BAD" else v for v in extra]
    rc, err = run_cli(args, capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tmfast: error: "), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("filename", "tomo_name"),
    [
        ("tomo200528_107_denoised.mrc", "tomo200528_107"),
        ("rec_tomo200528_107_bin8.mrc", "tomo200528_107"),
        ("tomo200528_100_vs_tomo200528_101.mrc", None),  # two names: ambiguous
    ],
)
def test_relion5_tomogram_found_by_a_name_inside_the_file_name(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    filename: str,
    tomo_name: str | None,
) -> None:
    """pytom takes the one rlnTomoName that occurs in the tomogram's file name;
    tmfast refused any name but the exact one ('no tomogram named ...')."""
    star = FORMATS / "relion5_tomograms" / "pytom_job009" / "tomograms.star"
    if not (star.parent / "tilt_series" / "tomo200528_107.star").exists():
        pytest.skip(f"{star.parent} absent (shared example data)")
    inputs = _inputs(tmp_path, voxel_a=1.724 * 8.12065)
    inputs["v"] = inputs["v"].rename(inputs["v"].with_name(filename))
    dest = tmp_path / "out"
    args = match_args(inputs, dest, "--relion5-tomograms-star", str(star))
    rc, err = run_cli([*args, "--backend", "cpu"], capsys)
    if tomo_name is None:
        assert rc == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "tomo200528_100, tomo200528_101" in lines[0], err
        assert not dest.exists()
        return
    assert rc == 0, err
    job = json.loads(next(dest.glob("*_job.json")).read_text())
    assert job["metadata"]["tomo_name"] == tomo_name
    assert len(job["metadata"]["tilt_angles_deg"]) > 2  # the tilt series' tilts


def test_a_second_template_into_the_same_folder_names_the_first_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ribosome then proteasome against one tomogram into one -d: outputs are named
    after the tomogram, and the old 'output exists; pass --overwrite' advice would
    have replaced the first template's results."""
    inputs = _inputs(tmp_path)
    dest = tmp_path / "out"
    extra = ("-a", "-60", "60", "--backend", "cpu")
    assert run_cli(match_args(inputs, dest, *extra), capsys)[0] == 0
    before = output_paths(dest, "tomo")["scores"].read_bytes()
    other = dict(inputs, t=tmp_path / "in" / "proteasome.mrc")
    other["t"].write_bytes(inputs["t"].read_bytes())
    rc, err = run_cli(match_args(other, dest, *extra), capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(inputs["t"].resolve()) in lines[0] and "-d/--destination" in lines[0]
    assert output_paths(dest, "tomo")["scores"].read_bytes() == before
    # the same search again keeps the plain message
    rc, err = run_cli(match_args(inputs, dest, *extra), capsys)
    assert rc == 2 and "output exists; pass --overwrite" in err, err
    rc, err = run_cli(match_args(other, dest, *extra, "--overwrite"), capsys)
    assert rc == 0, err
    assert _job(dest)["template"] == str(other["t"].resolve())


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--voltage", "300000", "give kV"),  # volts
        ("--spherical-aberration", "2700", "give mm"),  # micrometres
        ("--defocus", "3um", "no unit"),  # a unit after the number
    ],
)
def test_ctf_unit_slips_are_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    value: str,
    words: str,
) -> None:
    """pytom runs these with a meaningless CTF ('3um' was read as a missing
    per-tilt file: 'needs -a as a tilt-angle file')."""
    inputs = _inputs(tmp_path)
    ctf = {
        "--defocus": "3",
        "--amplitude-contrast": "0.07",
        "--spherical-aberration": "2.7",
        "--voltage": "300",
    }
    ctf[flag] = value
    extra = [v for pair in ctf.items() for v in pair]
    dest = tmp_path / "out"
    rc, err = run_cli(match_args(inputs, dest, "-a", "-60", "60", *extra), capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{flag} {value}" in lines[0], err
    assert words in lines[0], err
    assert not dest.exists()


def test_a_stop_while_the_inputs_load_says_nothing_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C while the tomogram is read and filtered: the message spoke of 'a whole
    batch' and '0/70 rotation-tiles', and the new output folder was left empty."""
    import tmfast.matching.engine as engine

    inputs = _inputs(tmp_path)
    dest = tmp_path / "new" / "out"
    load = engine._load_inputs

    def interrupted_load(*args: object, **kwargs: object) -> object:
        os.kill(os.getpid(), signal.SIGINT)
        return load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "_load_inputs", interrupted_load)
    rc, err = run_cli(match_args(inputs, dest, "--backend", "cpu"), capsys)
    assert rc == 130, err
    errors = [line for line in err.splitlines() if line.startswith("tmfast:")]
    assert errors == [
        "tmfast: error: stopped by SIGINT before the search started; nothing written"
    ], err
    assert not (tmp_path / "new").exists()


def test_random_phase_with_skipped_sub_volumes_prints_no_numpy_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-r with a tomogram mask that leaves a -s sub-volume unsearched printed
    'tmfast: warning: invalid value encountered in subtract' (-inf - -inf)."""
    inputs = _inputs(tmp_path)
    mask = np.zeros(SHAPE, np.float32)
    mask[:, :, 12:] = 1.0  # the first of two x pieces lies outside
    with mrcfile.new(tmp_path / "in" / "tmask.mrc") as m:
        m.set_data(mask)
        m.voxel_size = 10.0
    dest = tmp_path / "out"
    extra = ["-a", "-60", "60", "-r", "--rng-seed", "3", "-s", "2", "1", "1"]
    extra += ["--tomogram-mask", str(tmp_path / "in" / "tmask.mrc")]
    rc, err = run_cli(match_args(inputs, dest, *extra, "--backend", "cpu"), capsys)
    assert rc == 0, err
    assert "invalid value" not in err and "tmfast: warning" not in err, err
    scores = _scores(dest)
    assert np.isneginf(scores[:, :, :10]).all()  # the skipped piece: unsearched
    assert np.isfinite(scores[:, :, 10:]).all()


def test_a_high_pass_finer_than_nyquist_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--high-pass 15 at 10 Å/voxel (the low-pass value given to the wrong flag)
    weighted most of the band down without a word; --low-pass already warned."""
    inputs = _inputs(tmp_path)
    extra = ["-a", "-60", "60", "--backend", "cpu"]
    rc, err = run_cli(
        match_args(inputs, tmp_path / "a", *extra, "--high-pass", "15"), capsys
    )
    assert rc == 0, err
    warned = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warned) == 1 and "--high-pass 15" in warned[0], err
    assert "Nyquist (20 Å" in warned[0]
    rc, err = run_cli(
        match_args(inputs, tmp_path / "b", *extra, "--high-pass", "300"), capsys
    )
    assert rc == 0 and "WARNING" not in err, err


def test_progress_with_a_volume_split_counts_rotation_tiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With -s 2 1 1 the log said 'matching: 140/140 rotations' for a 70-rotation
    search; the stop message already spoke of rotation-tiles."""
    inputs = _inputs(tmp_path)
    extra = ["-a", "-60", "60", "--backend", "cpu"]
    rc, err = run_cli(
        match_args(inputs, tmp_path / "s", *extra, "-s", "2", "1", "1"), capsys
    )
    assert rc == 0, err
    assert f"matching: {2 * N_ROT}/{2 * N_ROT} rotation-tiles (100.0%)" in err, err
    rc, err = run_cli(match_args(inputs, tmp_path / "u", *extra), capsys)
    assert rc == 0, err
    assert f"matching: {N_ROT}/{N_ROT} rotations (100.0%)" in err, err


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("Position_16_3.aln", "an AreTomo alignment file"),
        ("test_CTF.txt", "first column counts the images (1, 2, 3, ...)"),
    ],
)
def test_a_table_whose_first_column_counts_images_is_not_read_as_tilts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, words: str
) -> None:
    """-a Position_16_3.aln ran with tilts 1, 2, 3, ... 31 degrees (its SEC
    column) and no word; pytom refuses such files (one float per line)."""
    table = FORMATS / "aretomo3" / name
    if not table.exists():
        pytest.skip(f"{table} absent (shared example data)")
    inputs = _inputs(tmp_path)
    dest = tmp_path / "out"
    args = match_args(inputs, dest, "-a", str(table), "--per-tilt-weighting")
    rc, err = run_cli(args, capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tmfast: error: {table}: "), err
    assert words in lines[0], err
    assert not dest.exists()


def test_whitening_over_a_too_thin_search_region_names_the_region(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The error spoke of a 'whitening patch size 3' the user never gave."""
    inputs = _inputs(tmp_path)
    dest = tmp_path / "out"
    args = match_args(
        inputs, dest, "-a", "-60", "60", "--spectral-whitening", "--search-x", "0", "3"
    )
    rc, err = run_cli(args, capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--spectral-whitening" in lines[0], err
    assert "--search-x" in lines[0] and "patch size" not in lines[0], err
    assert not dest.exists()


def test_a_0_255_byte_mask_read_as_signed_gets_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 0/255 mask in MRC mode 0 (signed bytes) reads as 0/-1: 'nothing to
    search' alone did not say why."""
    inputs = _inputs(tmp_path)
    mask = np.zeros(SHAPE, np.uint8)
    mask[4:12] = 255
    path = tmp_path / "in" / "mask_u8.mrc"
    with mrcfile.new(path) as m:
        m.set_data(mask.view(np.int8))
        m.voxel_size = 10.0
    dest = tmp_path / "out"
    args = match_args(inputs, dest, "-a", "-60", "60", "--tomogram-mask", str(path))
    rc, err = run_cli(args, capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "nothing to search" in lines[0], err
    assert "down to -1" in lines[0] and "0/255 byte mask" in lines[0], err
    assert not dest.exists()


def test_per_tilt_files_saved_by_a_windows_editor_are_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A byte-order mark and CRLF line ends: line 1 was "'\\ufeff-60' is not a
    number"."""
    inputs = _inputs(tmp_path)
    bom = b"\xef\xbb\xbf"
    tlt = tmp_path / "ts.tlt"
    tlt.write_bytes(bom + b"-60\r\n0\r\n60\r\n")
    defocus = tmp_path / "defocus.txt"
    defocus.write_bytes(bom + b"3.1\r\n3.2\r\n3.3\r\n")
    dose = tmp_path / "dose.txt"
    dose.write_bytes(bom + b"0\r\n3\r\n6\r\n")
    dest = tmp_path / "out"
    args = match_args(
        inputs, dest, "-a", str(tlt), "--per-tilt-weighting",
        "--defocus", str(defocus), "--dose-accumulation", str(dose),
        "--amplitude-contrast", "0.07", "--spherical-aberration", "2.7",
        "--voltage", "300", "--backend", "cpu",
    )  # fmt: skip
    rc, err = run_cli(args, capsys)
    assert rc == 0, err
    metadata = _job(dest)["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["tilt_angles_deg"] == [-60.0, 0.0, 60.0]
    assert metadata["defocus_um"] == [3.1, 3.2, 3.3]
    assert metadata["dose_e_per_a2"] == [0.0, 3.0, 6.0]


def test_an_imod_defocus_of_other_tilts_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ctfplotter's .defocus carries each view's tilt: pytom's test_imod.defocus
    agrees with test_angles.rawtlt (0.01° apart), also when the tilt file is
    offset by a constant (refined angles); against the tilts in reverse order it
    was used without a word."""
    pytom = FORMATS / "pytom_inputs"
    if not (pytom / "test_imod.defocus").exists():
        pytest.skip(f"{pytom} absent (shared example data)")
    inputs = _inputs(tmp_path)
    tilts = [float(v) for v in (pytom / "test_angles.rawtlt").read_text().split()]
    ctf = ["--defocus", str(pytom / "test_imod.defocus"), "--amplitude-contrast"]
    ctf += ["0.07", "--spherical-aberration", "2.7", "--voltage", "300"]
    files = {
        "same": pytom / "test_angles.rawtlt",
        "offset": _write_tilts(tmp_path / "offset.tlt", [t + 3.0 for t in tilts]),
        "reversed": _write_tilts(tmp_path / "reversed.tlt", tilts[::-1]),
    }
    warnings = {}
    for name, tlt in files.items():
        args = match_args(
            inputs, tmp_path / name, "-a", str(tlt), "--per-tilt-weighting", *ctf
        )
        rc, err = run_cli([*args, "--backend", "cpu"], capsys)
        assert rc == 0, err
        warnings[name] = [line for line in err.splitlines() if "WARNING" in line]
    assert warnings["same"] == [] and warnings["offset"] == []
    assert len(warnings["reversed"]) == 1, warnings
    assert "test_imod.defocus: its tilt angles are not those" in warnings["reversed"][0]
    assert "view 1: -50.99° there, 51° in the tilt file" in warnings["reversed"][0]
