"""A facility user's whole chain, command to command (docs/tutorial-batch.md).

RELION5 project in a folder with a space, tomogram names with dots: ``batch plan``
-> the generated array script run by hand per ``SLURM_ARRAY_TASK_ID`` -> ``status``
-> ``resume`` situations (partial outputs, a replan with other options) ->
``finish`` -> ``merge-stars --relion5-compat`` -> ``to-imod`` -> ``extract`` per
job (ArtiaX). Tomograms are 48³ with a 9³ template and a 30° step (576 rotations),
so a task takes about a second. The SLURM round trip itself is in
test_batch_slurm_cluster.py.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from _cli import run_cli_streams
from slurm_cluster import BINNING, PLANTED_ZYX, TOMO_SHAPE, make_relion5_project
from tmfast.batch.manifest import Manifest
from tmfast.batch.plan import batch_status, finish, plan_relion5, run_task
from tmfast.errors import ConfigError, FormatError
from tmfast.io.star import read_star

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_PARTICLES = SHARED / "data" / "formats" / "relion5_particles"


def _match(proj: dict[str, Path], **kw: object) -> dict[str, object]:
    return {
        "template": proj["template"],
        "mask": proj["mask"],
        "angular_search": 30.0,
        "particle_diameter_a": 90.0,
        "backend": "cpu",
        **kw,
    }


def _plan_argv(proj: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "batch",
        "plan",
        "relion5",
        "--tomograms-star",
        str(proj["tomograms_star"]),
        "-o",
        str(out),
        "-t",
        str(proj["template"]),
        "-m",
        str(proj["mask"]),
        "--particle-diameter",
        "90",
        "--angular-search",
        "30",
        "--backend",
        "cpu",
        "-n",
        "5",
        "-c",
        "0.3",
        "--cpus-per-task",
        "1",
        *extra,
    ]


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``tmfast ARGV`` as the console script does: exit code, stdout + stderr."""
    code, out, err = run_cli_streams(argv, capsys)
    return code, out + err


def _ok(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, text = _cli(argv, capsys)
    assert code == 0, text
    return text


def test_relion5_chain_through_the_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command of the tutorial reads what the one before wrote."""
    root = tmp_path / "data ribo"
    proj = make_relion5_project(root, names=("TS.01", "TS_02"))
    out = root / "tm" / "batch 1"
    text = _ok(_plan_argv(proj, out), capsys)
    # the printed next command works when pasted: the path with a space is quoted
    hint = next(ln for ln in text.splitlines() if ln.startswith("submit with:"))
    argv = shlex.split(hint.split(":", 1)[1])
    assert argv[:3] == ["tmfast", "batch", "submit"]
    assert Path(argv[3]) == out / "manifest.json"

    # the generated script, run by hand as SLURM would run each array task
    script = out / "submit_array.sh"
    for index in (0, 1):
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(index)}
        proc = subprocess.run(
            ["bash", str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert [s.state for s in batch_status(out, query_queue=False)] == ["done"] * 2
    assert "2 done" in _ok(["batch", "status", str(out), "--no-queue"], capsys)

    _ok(["batch", "finish", str(out / "manifest.json")], capsys)
    merged = read_star(out / "particles.star", as_text=True)["particles"]
    names = set(merged["rlnTomoName"])
    assert names == {"TS.01", "TS_02"}  # tomograms.star names, dots kept
    if (REAL_PARTICLES / "cryoboost_candidatesPytomRel5.star").is_file():
        real = read_star(
            REAL_PARTICLES / "cryoboost_candidatesPytomRel5.star", as_text=True
        )["particles"]
        assert list(merged) == list(real)  # pytom --relion5-compat columns, in order

    # per-tomogram files -> RELION5 import index (absolute paths, one row each)
    stars = sorted(out.glob("tomograms/*/*_particles.star"))
    assert len(stars) == 2
    _ok(
        [
            "merge-stars",
            "--relion5-compat",
            "-o",
            str(out / "import_index.star"),
            "-i",
            *map(str, stars),
        ],
        capsys,
    )
    index = read_star(out / "import_index.star", as_text=True)["particles"]
    assert sorted(index["rlnTomoName"]) == ["TS.01", "TS_02"]
    assert all(Path(p).is_file() for p in index["rlnTomoImportParticleFile"])

    # merged file -> one IMOD model per tomogram, at the planted voxels
    imodmodel = pytest.importorskip("imodmodel")
    imod_dir = root / "tm" / "imod"
    _ok(
        [
            "to-imod",
            "-i",
            str(out / "particles.star"),
            "--tomograms-star",
            str(proj["tomograms_star"]),
            "-o",
            str(imod_dir),
        ],
        capsys,
    )
    assert sorted(p.name for p in imod_dir.iterdir()) == ["TS.01.mod", "TS_02.mod"]
    per = imodmodel.read(out / "tomograms" / "TS.01" / "rec_TS.01_particles.mod")
    merged_mod = imodmodel.read(imod_dir / "TS.01.mod")
    np.testing.assert_allclose(
        np.sort(merged_mod["z"].to_numpy()), np.sort(per["z"].to_numpy()), atol=1e-3
    )
    for z, _y, _x in PLANTED_ZYX:
        assert np.abs(merged_mod["z"].to_numpy() - z).min() <= 1.0

    # ArtiaX: pixel-coordinate lists from every job file, in one folder
    for job in sorted(out.glob("tomograms/*/*_job.json")):
        _ok(
            [
                *("extract", "-j", str(job), "-n", "5", "-c", "0.3"),
                *("--pytom-columns", "-o", str(root / "tm" / "artiax"), "--no-plots"),
            ],
            capsys,
        )
    art = read_star(root / "tm" / "artiax" / "rec_TS.01_particles.star", as_text=True)
    cols = art["particles"]
    assert "rlnCoordinateX" in cols and "rlnCenteredCoordinateXAngst" not in cols


def test_resume_finishes_a_task_whose_maps_exist_without_a_job_file(
    tmp_path: Path,
) -> None:
    """Maps left without a job file (killed while writing, disk full) are redone.

    Before, the task failed with 'output exists; pass --overwrite', an option
    neither run-task nor resume has, so resume could never finish the entry.
    """
    proj = make_relion5_project(tmp_path / "proj", names=("TS_01",))
    plan = plan_relion5(
        proj["tomograms_star"],
        tmp_path / "batch",
        match=_match(proj),
        extract={"n_particles": 5, "cutoff": 0.3},
    )
    run_task(plan.manifest_path, 0, progress_interval_s=0)
    (entry,) = Manifest.read(plan.manifest_path).entries
    job = Path(entry.output_dir) / f"{entry.tomo_id}_job.json"
    job.unlink()
    (st,) = batch_status(plan.manifest_path, query_queue=False)
    assert st.state == "failed"
    run_task(plan.manifest_path, 0, progress_interval_s=0)
    assert job.is_file()
    (st,) = batch_status(plan.manifest_path, query_queue=False)
    assert st.state == "done", st.detail


def test_replan_with_other_matching_options_matches_again(tmp_path: Path) -> None:
    """plan --overwrite with another low-pass: the old maps no longer count as done.

    Before, status said done, resume had nothing to do and finish merged maps made
    with the old options; only a warning hinted at it.
    """
    proj = make_relion5_project(tmp_path / "proj", names=("TS_01", "TS_02"))
    out = tmp_path / "batch"
    ext = {"n_particles": 5, "cutoff": 0.3}
    plan = plan_relion5(proj["tomograms_star"], out, match=_match(proj), extract=ext)
    run_task(plan.manifest_path, 0, progress_interval_s=0)
    run_task(plan.manifest_path, 1, progress_interval_s=0)

    # the same maps again (other extraction and checkpoint options): results kept
    plan_relion5(
        proj["tomograms_star"],
        out,
        match=_match(proj, checkpoint_every=50),
        extract={**ext, "n_particles": 3},
        overwrite=True,
    )
    assert [s.state for s in batch_status(out, query_queue=False)] == ["done"] * 2

    # another low-pass: both entries must be matched again
    plan_relion5(
        proj["tomograms_star"],
        out,
        match=_match(proj, low_pass_a=40.0),
        extract=ext,
        overwrite=True,
    )
    states = batch_status(out, query_queue=False)
    assert [s.state for s in states] == ["failed"] * 2
    assert all("low_pass_a" in s.detail for s in states), states
    with pytest.raises(ConfigError, match="not matched yet"):
        finish(out)
    run_task(out / "manifest.json", 0, progress_interval_s=0)
    m = Manifest.read(out / "manifest.json")
    job = json.loads(
        (Path(m.entries[0].output_dir) / f"{m.entries[0].tomo_id}_job.json").read_text()
    )
    assert job["low_pass_a"] == 40.0  # matched again, not 'extracting only'
    assert [s.state for s in batch_status(out, query_queue=False)] == [
        "done",
        "failed",
    ]


def test_finish_picks_every_tomogram_before_writing(tmp_path: Path) -> None:
    """A tomogram whose maps fail to read leaves every particle file as it was."""
    proj = make_relion5_project(tmp_path / "proj", names=("TS_01", "TS_02"))
    plan = plan_relion5(
        proj["tomograms_star"],
        tmp_path / "batch",
        match=_match(proj),
        extract={"n_particles": 5, "cutoff": 0.3},
    )
    run_task(plan.manifest_path, 0, progress_interval_s=0)
    run_task(plan.manifest_path, 1, progress_interval_s=0)
    merged, _ = finish(plan.manifest_path)
    m = Manifest.read(plan.manifest_path)
    first = Path(m.entries[0].output_dir) / f"{m.entries[0].tomo_id}_particles.star"
    before = (first.read_bytes(), merged.read_bytes())
    # the second tomogram's score map is damaged after matching
    scores = Path(m.entries[1].output_dir) / f"{m.entries[1].tomo_id}_scores.mrc"
    scores.write_bytes(b"not an MRC file")
    with pytest.raises(FormatError, match=r"_scores\.mrc"):
        finish(plan.manifest_path, overwrite=True, n_particles=2)
    assert (first.read_bytes(), merged.read_bytes()) == before


def test_finish_leaves_half_sets_out_of_the_merged_file(tmp_path: Path) -> None:
    """--include-halves: half-set picks repeat the full reconstruction's particles
    under the same rlnTomoName; merged, RELION would import them three times."""
    proj = make_relion5_project(tmp_path / "proj", names=("TS_01",))
    tomos = proj["tomograms_star"].parent / "tomograms"
    with mrcfile.open(tomos / "rec_TS_01.mrc") as f:
        vol, vs = f.data.copy(), float(f.voxel_size.x)
    for half in ("half1", "half2"):
        mrcfile.write(tomos / f"rec_TS_01_{half}.mrc", vol, voxel_size=vs)
    plan = plan_relion5(
        proj["tomograms_star"],
        tmp_path / "batch",
        match=_match(proj),
        extract={"n_particles": 5, "cutoff": 0.3},
        include_halves=True,
    )
    keys = [e.key for e in plan.manifest.entries]
    assert keys == ["TS_01", "TS_01_half1", "TS_01_half2"]
    for i in range(3):
        run_task(plan.manifest_path, i, progress_interval_s=0)
    merged, counts = finish(plan.manifest_path)
    assert list(counts) == ["TS_01"]
    rows = read_star(merged, as_text=True)["particles"]["rlnTomoName"]
    assert len(rows) == counts["TS_01"] >= len(PLANTED_ZYX)
    for e in plan.manifest.entries[1:]:  # still written per tomogram
        per = Path(e.output_dir) / f"{e.tomo_id}_particles.star"
        assert len(read_star(per, as_text=True)["particles"]["rlnTomoName"]) > 0


def test_aretomo3_style_merged_file_to_imod_with_dims(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a tomograms.star (AreTomo3), to-imod takes --dims and --binning, as
    docs/tutorial-batch.md says; the models equal the per-tomogram ones."""
    imodmodel = pytest.importorskip("imodmodel")
    proj = make_relion5_project(tmp_path / "proj", names=("TS_01",))
    plan = plan_relion5(
        proj["tomograms_star"],
        tmp_path / "batch",
        match=_match(proj),
        extract={"n_particles": 5, "cutoff": 0.3},
    )
    run_task(plan.manifest_path, 0, progress_interval_s=0)
    merged, _ = finish(plan.manifest_path)
    code, text = _cli(["to-imod", "-i", str(merged), "-o", str(tmp_path)], capsys)
    assert code == 2 and "--dims" in text
    n = str(TOMO_SHAPE)
    _ok(
        [
            *("to-imod", "-i", str(merged), "--dims", n, n, n),
            *("--binning", str(BINNING), "-o", str(tmp_path / "imod")),
        ],
        capsys,
    )
    (e,) = plan.manifest.entries
    per = imodmodel.read(Path(e.output_dir) / f"{e.tomo_id}_particles.mod")
    got = imodmodel.read(tmp_path / "imod" / "TS_01.mod")
    for axis in "xyz":
        np.testing.assert_allclose(
            np.sort(got[axis].to_numpy()), np.sort(per[axis].to_numpy()), atol=1e-3
        )


# --------------------------------------------------------------------------------
# Errors: the Python API names its parameters, each command its flags


@pytest.fixture(scope="module")
def matched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The manifest of a one-tomogram batch whose task has run (read-only use)."""
    root = tmp_path_factory.mktemp("matched")
    proj = make_relion5_project(root / "proj", names=("TS_01",))
    plan = plan_relion5(
        proj["tomograms_star"],
        root / "batch",
        match=_match(proj),
        extract={"n_particles": 5, "cutoff": 0.3},
    )
    run_task(plan.manifest_path, 0, progress_interval_s=0)
    return plan.manifest_path


def _job(manifest: Path) -> Path:
    (e,) = Manifest.read(manifest).entries
    return Path(e.output_dir) / f"{e.tomo_id}_job.json"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"n_particles": 0}, "n_particles=0 must be at least 1"),
        ({"particle_diameter_a": -3.0}, "particle_diameter_a=-3 Å must be a positive"),
        ({"particle_diameter_a": 1e6}, "particle_diameter_a=1e+06 Å is larger"),
        ({"n_false_positives": 0.0}, "n_false_positives=0.0 must be in"),
        (
            {"tophat_filter": True, "tophat_connectivity": 4},
            "tophat_connectivity=4 must be 1, 2 or 3",
        ),
        ({"tophat_filter": True, "tophat_bins": 3}, "tophat_bins=3 must be at least 8"),
        (
            {"tomogram_mask": "/nonexistent/m.mrc"},
            "pass an existing file as tomogram_mask or set ignore_tomogram_mask=True",
        ),
    ],
)
def test_extraction_api_errors_name_the_parameter(
    matched: Path, kwargs: dict[str, object], named: str
) -> None:
    from tmfast.errors import TmfastError
    from tmfast.extraction import extract_candidates

    args: dict[str, object] = {"n_particles": 5, **kwargs}
    with pytest.raises(TmfastError) as info:
        extract_candidates(_job(matched), **args)  # type: ignore[arg-type]
    assert named in str(info.value)
    assert "--" not in str(info.value)  # no command-line flag from the library


def test_to_imod_and_finish_api_errors_name_the_parameter(
    matched: Path, tmp_path: Path
) -> None:
    from tmfast.extraction.merge import star_to_imod

    star = next(Path(Manifest.read(matched).output_dir).glob("tomograms/*/*.star"))
    for kwargs, named in (
        ({}, "pass dims_xyz=(X, Y, Z) or tomograms_star"),
        ({"dims_xyz": (48, 48, 0)}, "dims_xyz=(48, 48, 0)"),
        ({"dims_xyz": (48, 48, 48), "radius_px": 0.0}, "radius_px=0 must"),
        ({"dims_xyz": (48, 48, 48), "binning": -1.0}, "binning=-1 must"),
    ):
        with pytest.raises(ConfigError) as info:
            star_to_imod([star], tmp_path, **kwargs)  # type: ignore[arg-type]
        assert named in str(info.value) and "--" not in str(info.value)
    with pytest.raises(ConfigError, match="no input files") as info:
        star_to_imod([], tmp_path, dims_xyz=(48, 48, 48))
    assert "-i " not in str(info.value)
    for kwargs, named in (
        ({"n_particles": 0}, "n_particles=0 must be at least 1"),
        ({"cutoff": float("nan")}, "cutoff=nan must be a finite score"),
        ({"n_false_positives": -1.0}, "n_false_positives=-1.0 must be > 0"),
    ):
        with pytest.raises(ConfigError) as info:
            finish(matched, output=tmp_path / "p.star", **kwargs)  # type: ignore[arg-type]
        assert named in str(info.value) and "--" not in str(info.value)
        assert not (tmp_path / "p.star").exists()


def test_commands_name_their_flags_for_library_errors(
    matched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = str(_job(matched))
    missing = str(tmp_path / "no_mask.mrc")
    argv = ["extract", "-j", job, "-n", "5", "--tomogram-mask", missing]
    code, text = _cli([*argv, "-o", str(tmp_path / "x")], capsys)
    assert code == 2
    fix = "pass an existing file as --tomogram-mask or use --ignore-tomogram-mask"
    assert fix in text
    assert "tomogram_mask" not in text.replace("no_mask", "")
    code, text = _cli(["batch", "finish", str(matched), "-n", "0"], capsys)
    assert code == 2 and "-n/--number-of-particles 0 must be at least 1" in text
    code, text = _cli(["batch", "finish", str(matched), "-c", "nan"], capsys)
    assert code == 2 and "-c/--cutoff nan must be a finite score" in text
    # a job whose recorded mask file is gone: roc says how to go on without it
    data = json.loads(Path(job).read_text())
    data["tomogram_mask"] = missing
    job2 = tmp_path / "rec_TS_01_job.json"
    job2.write_text(json.dumps(data))
    code, text = _cli(["roc", "-j", str(job2), "-n", "30", "-o", str(tmp_path)], capsys)
    assert code == 2 and "use --ignore-tomogram-mask" in text, text
    assert "ignore_tomogram_mask" not in text


def test_cli_terms_leave_file_names_alone() -> None:
    from tmfast.cli._flags import cli_terms
    from tmfast.cli.extract import EXTRACT_FLAGS

    msg = (
        "/data/tomogram_mask.mrc: tomogram mask not found; pass an existing file as "
        "tomogram_mask or set ignore_tomogram_mask=True (TS_01_n_particles.star)"
    )
    assert cli_terms(msg, EXTRACT_FLAGS) == (
        "/data/tomogram_mask.mrc: tomogram mask not found; pass an existing file as "
        "--tomogram-mask or use --ignore-tomogram-mask (TS_01_n_particles.star)"
    )
    assert cli_terms("give a manual cutoff=VALUE", EXTRACT_FLAGS) == (
        "give a manual -c/--cut-off VALUE"
    )


def test_relative_angle_file_is_found_by_tasks_run_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--angular-search FILE relative to where plan ran: the manifest kept it
    relative, so a task started in another folder (sbatch from elsewhere, a
    container) failed after the queue wait; a container did not bind it either."""
    from tmfast.batch.slurm import SlurmOptions
    from tmfast.geometry.angles import pytom_angle_set

    proj = make_relion5_project(tmp_path / "proj", names=("TS_01",))
    work = tmp_path / "work dir"
    (work / "tm").mkdir(parents=True)
    np.savetxt(work / "tm" / "angles.txt", np.asarray(pytom_angle_set(40.0))[:40])
    monkeypatch.chdir(work)
    with pytest.raises(ConfigError, match=r"match\['angular_search'\] tm/nope\.txt"):
        plan_relion5(
            proj["tomograms_star"],
            tmp_path / "never",
            match=_match(proj, angular_search="tm/nope.txt"),
        )
    assert not (tmp_path / "never").exists()
    sif = tmp_path / "images" / "tmfast.sif"
    with pytest.raises(
        ConfigError, match=r"slurm.container .*tmfast\.sif: image not found"
    ):
        plan_relion5(
            proj["tomograms_star"],
            tmp_path / "batch",
            match=_match(proj, angular_search="tm/angles.txt"),
            slurm=SlurmOptions(container=str(sif)),
            dry_run=True,
        )
    sif.parent.mkdir()
    sif.write_bytes(b"")
    plan = plan_relion5(
        proj["tomograms_star"],
        tmp_path / "batch",
        match=_match(proj, angular_search="tm/angles.txt"),
        extract={"n_particles": 5, "cutoff": 0.3},
        slurm=SlurmOptions(container=str(sif)),
        dry_run=True,
    )
    assert f"--bind {shlex.quote(str(work / 'tm'))}" in plan.script
    plan = plan_relion5(
        proj["tomograms_star"],
        tmp_path / "batch",
        match=_match(proj, angular_search="tm/angles.txt"),
        extract={"n_particles": 5, "cutoff": 0.3},
    )
    assert Manifest.read(plan.manifest_path).match["angular_search"] == str(
        work / "tm" / "angles.txt"
    )
    monkeypatch.chdir(tmp_path)  # the task runs somewhere else
    run_task(plan.manifest_path, 0, progress_interval_s=0)
    (st,) = batch_status(plan.manifest_path, query_queue=False)
    assert st.state == "done", st.detail


def test_status_sees_tasks_of_a_job_submitted_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """submit_array.sh given to sbatch directly: the batch has no record of the
    job. A running task looked stopped ('failed'), and resume started a second
    task on the same folder. status now asks squeue about the job id the task
    recorded in its task.json."""
    from tmfast.batch.plan import resume

    bins = tmp_path / "bin"
    bins.mkdir()
    calls = tmp_path / "calls.txt"
    for name, body in (
        ("sbatch", f'echo "sbatch $*" >> {shlex.quote(str(calls))}\necho 4300\n'),
        (
            "squeue",
            f'echo "squeue $*" >> {shlex.quote(str(calls))}\n'
            'case "$*" in *5555*) echo "5555 1 RUNNING";; esac\n',
        ),
    ):
        (bins / name).write_text("#!/bin/bash\n" + body)
        (bins / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bins) + os.pathsep + os.environ["PATH"])
    proj = make_relion5_project(tmp_path / "proj", names=("TS_01", "TS_02"))
    plan = plan_relion5(proj["tomograms_star"], tmp_path / "batch", match=_match(proj))
    e1 = plan.manifest.entries[1]
    # what run-task writes when SLURM starts array task 1 of job 5555
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "5555")
    from tmfast.batch.plan import _set_task_state

    _set_task_state(e1, "running", host="node1")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID")
    states = batch_status(plan.manifest_path)
    assert [(s.state, s.detail) for s in states] == [
        ("not-submitted", ""),
        ("running", "running"),
    ]
    assert resume(plan.manifest_path) == (4300, [0])  # not a second task 1
    assert "--array=0" in calls.read_text()


def test_replan_refused_while_tasks_of_the_batch_are_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pending task of the earlier plan reads the new manifest when it starts and
    would match whatever tomogram the new plan puts at its index."""
    from tmfast.batch.plan import submit

    bins = tmp_path / "bin"
    bins.mkdir()
    state = tmp_path / "queue.txt"
    state.write_text("7001 [0-1] PENDING\n")
    for name, body in (
        ("sbatch", "echo 7001\n"),
        ("squeue", f"cat {shlex.quote(str(state))}\n"),
    ):
        (bins / name).write_text("#!/bin/bash\n" + body)
        (bins / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bins) + os.pathsep + os.environ["PATH"])
    proj = make_relion5_project(tmp_path / "proj", names=("TS_01", "TS_02"))
    out = tmp_path / "batch"
    plan = plan_relion5(proj["tomograms_star"], out, match=_match(proj))
    assert submit(plan.manifest_path) == 7001
    before = plan.manifest_path.read_bytes()
    with pytest.raises(ConfigError, match=r"still queued or running \(jobs 7001\)"):
        plan_relion5(
            proj["tomograms_star"],
            out,
            match=_match(proj),
            tomo_names=["TS_02"],
            overwrite=True,
        )
    assert plan.manifest_path.read_bytes() == before
    state.write_text("")  # the job has left the queue
    replanned = plan_relion5(
        proj["tomograms_star"],
        out,
        match=_match(proj),
        tomo_names=["TS_02"],
        overwrite=True,
    )
    assert [e.key for e in replanned.manifest.entries] == ["TS_02"]


def test_log_folder_with_a_percent_sign_is_escaped_for_sbatch() -> None:
    """sbatch reads '%A', '%j', ... in --output as patterns; a batch folder named
    like 'ribo_%A' sent the logs elsewhere. '%%' is sbatch's literal '%'."""
    from tmfast.batch.slurm import SlurmOptions, render_array_script

    script = render_array_script(
        manifest_path=Path("/data/ribo_%A run/manifest.json"),
        n_tasks=2,
        log_dir=Path("/data/ribo_%A run/logs"),
        options=SlurmOptions(),
    )
    (line,) = [ln for ln in script.splitlines() if "--output=" in ln]
    assert shlex.split(line) == [
        "#SBATCH",
        "--output=/data/ribo_%%A run/logs/%x_%A_%a.out",
    ]
    # the manifest path on the command line is not a pattern: left as it is
    assert "'/data/ribo_%A run/manifest.json'" in script


def test_container_refuses_folders_apptainer_cannot_bind(tmp_path: Path) -> None:
    """apptainer --bind splits at ',' and ':': the task would not see the files."""
    from tmfast.batch.slurm import SlurmOptions

    proj = make_relion5_project(tmp_path / "proj", names=("TS_01",))
    sif = tmp_path / "tmfast.sif"
    sif.write_bytes(b"")
    opts = SlurmOptions(container=str(sif))
    with pytest.raises(ConfigError, match=r"batch,v2: apptainer --bind cannot take"):
        plan_relion5(
            proj["tomograms_star"], tmp_path / "batch,v2", match=_match(proj),
            slurm=opts,
        )  # fmt: skip
    assert not (tmp_path / "batch,v2").exists()
    plan = plan_relion5(
        proj["tomograms_star"], tmp_path / "batch v2", match=_match(proj), slurm=opts
    )
    assert "--bind " + shlex.quote(str(tmp_path / "batch v2")) in plan.script


def test_extract_finds_the_tomograms_star_row_of_a_warp_named_tomogram(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """'tmfast match' on Warp's TS_01_10.00Apx.mrc, then extract with
    --relion5-tomograms-star: the row TS_01 was not found ('0 rows match'), and
    without the option rlnTomoName was the file stem, which RELION does not know."""
    import shutil

    proj = make_relion5_project(tmp_path / "proj", names=("TS_01",))
    tomos = proj["tomograms_star"].parent / "tomograms"
    warp = tmp_path / "warp" / "TS_01_10.00Apx.mrc"
    warp.parent.mkdir()
    shutil.copy(tomos / "rec_TS_01.mrc", warp)
    out = tmp_path / "out"
    _ok(
        [
            *("match", "-t", str(proj["template"]), "-m", str(proj["mask"])),
            *("-v", str(warp), "-d", str(out), "--particle-diameter", "90"),
            *("--angular-search", "30", "--backend", "cpu"),
        ],
        capsys,
    )
    job = out / "TS_01_10.00Apx_job.json"
    _ok(
        [
            *("extract", "-j", str(job), "-n", "5", "-c", "0.3", "--no-plots"),
            *("--relion5-tomograms-star", str(proj["tomograms_star"])),
        ],
        capsys,
    )
    rows = read_star(out / "TS_01_10.00Apx_particles.star", as_text=True)["particles"]
    assert set(rows["rlnTomoName"]) == {"TS_01"}
    assert set(rows["rlnTomoTiltSeriesPixelSize"]) == {"2.5"}
    xyz = np.array(
        [[float(v) for v in rows[f"rlnCenteredCoordinate{a}Angst"]] for a in "XYZ"]
    ).T
    vox = (xyz / 2.5 + TOMO_SHAPE * BINNING / 2) / BINNING  # RELION5 centring inverted
    for z, y, x in PLANTED_ZYX:
        assert np.abs(vox - [x, y, z]).max(axis=1).min() <= 1.0
