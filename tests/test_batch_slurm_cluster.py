"""`tmfast batch` on a real single-node SLURM cluster started by the test.

Skipped (with the reason) where SLURM or munge is missing or the daemons cannot
start. The tomograms are 48³ with a 9³ template and a 30° (test 1) or 20° (test 2)
angular step, so a task takes seconds.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from slurm_cluster import (
    BINNING,
    PLANTED_ZYX,
    TOMO_SHAPE,
    TS_PIXEL_A,
    Cluster,
    make_relion5_project,
    slurm_cluster_fixture,  # noqa: F401 - the fixture
)
from tmfast.batch.manifest import Manifest
from tmfast.batch.plan import (
    batch_status,
    build_match_config,
    plan_relion5,
    resume,
    submit,
)
from tmfast.batch.slurm import SlurmError, SlurmOptions, scancel, submit_script
from tmfast.cli import app
from typer.testing import CliRunner

pytestmark = pytest.mark.slurm

NAMES = ("TS_01", "TS_02", "TS_03")


def _plan(
    tmp_path: Path, names: tuple[str, ...], angular_search: float, checkpoint_every: int
) -> Path:
    proj = make_relion5_project(tmp_path / "proj", names=names)
    plan = plan_relion5(
        proj["tomograms_star"],
        tmp_path / "batch",
        match={
            "template": proj["template"],
            "mask": proj["mask"],
            "angular_search": angular_search,
            "particle_diameter_a": 90.0,
            "backend": "cpu",
            "checkpoint_every": checkpoint_every,
            "checkpoint_interval_s": 0.0,
        },
        extract={"n_particles": 5},
        slurm=SlurmOptions(
            job_name="tmfast-test",
            cpus_per_task=1,
            mem="1000M",
            time="00:05:00",
            array_throttle=3,
        ),
    )
    return plan.manifest_path


def _centred_to_voxel(c_a: float) -> float:
    """Inverse of RELION5 centring for the synthetic project (bin-1 size = 48*4)."""
    return (c_a / TS_PIXEL_A + TOMO_SHAPE * BINNING / 2) / BINNING


def test_array_over_three_tomograms(slurm_cluster: Cluster, tmp_path: Path) -> None:
    import starfile

    manifest_path = _plan(tmp_path, NAMES, angular_search=30.0, checkpoint_every=100)
    # through the command line, as a user would
    runner = CliRunner()
    res = runner.invoke(app, ["batch", "submit", str(manifest_path)])
    assert res.exit_code == 0, res.output
    found = re.search(r"submitted job (\d+)", res.output)
    assert found, res.output
    job_id = int(found.group(1))
    early = {s.state for s in batch_status(manifest_path)}
    assert early <= {"pending", "running", "done"}, early
    slurm_cluster.wait_for_jobs([job_id], timeout_s=90)
    for i in range(len(NAMES)):
        assert slurm_cluster.task_state(job_id, i) == "COMPLETED"
    states = batch_status(manifest_path)
    assert [s.state for s in states] == ["done"] * 3, states
    res = runner.invoke(app, ["batch", "status", str(manifest_path)])
    assert "3 done, 0 running, 0 pending, 0 failed" in res.output
    res = runner.invoke(app, ["batch", "resume", str(manifest_path)])
    assert "nothing to resume" in res.output

    manifest = Manifest.read(manifest_path)
    for e in manifest.entries:
        d = Path(e.output_dir)
        for suffix in (
            "_scores.mrc",
            "_angles.mrc",
            "_job.json",
            "_particles.star",
            "_particles.mod",
        ):
            assert (d / f"{e.tomo_id}{suffix}").is_file(), (e.key, suffix)
        with mrcfile.open(d / f"{e.tomo_id}_scores.mrc") as m:
            assert m.data.shape == (TOMO_SHAPE,) * 3
        log = Path(manifest.output_dir) / "logs" / f"tmfast-test_{job_id}_{e.index}.out"
        assert f"{e.key} done" in log.read_text()

    # sbatch's own rejection of an unknown partition comes back as one clear line
    script = (Path(manifest.output_dir) / "submit_array.sh").read_text()
    bad = tmp_path / "bad_partition.sh"
    bad.write_text(
        script.replace(
            "#SBATCH --ntasks=1", "#SBATCH --ntasks=1\n#SBATCH --partition=nosuch"
        )
    )
    with pytest.raises(SlurmError, match=r"(?i)invalid partition.*sinfo") as err:
        submit_script(bad)
    assert "\n" not in str(err.value)

    res = runner.invoke(app, ["batch", "finish", str(manifest_path)])
    assert res.exit_code == 0, res.output
    merged = Path(manifest.output_dir) / "particles.star"
    found = re.search(r"(\d+) particles from 3 tomograms", res.output)
    assert found, res.output
    n_total = int(found.group(1))
    table = starfile.read(merged)
    assert sorted(set(table["rlnTomoName"])) == list(NAMES)
    assert n_total == len(table)
    for name in NAMES:
        rows = table[table["rlnTomoName"] == name]
        xyz = np.stack(
            [_centred_to_voxel(rows[f"rlnCenteredCoordinate{a}Angst"]) for a in "XYZ"],
            axis=1,
        )
        for z, y, x in PLANTED_ZYX:
            # within one voxel on every axis (the angle set is coarse)
            dist = np.abs(xyz - np.array([x, y, z])).max(axis=1)
            assert dist.min() <= 1.0 + 1e-6, (name, (z, y, x), xyz)


def _wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


def test_cancel_then_resume_equals_uninterrupted(
    slurm_cluster: Cluster, tmp_path: Path
) -> None:
    from tmfast.matching.engine import run_match

    manifest_path = _plan(
        tmp_path, ("TS_01",), angular_search=20.0, checkpoint_every=40
    )
    manifest = Manifest.read(manifest_path)
    entry = manifest.entries[0]
    out = Path(entry.output_dir)
    ckpt = out / f"{entry.tomo_id}_checkpoint.npz"
    scores = out / f"{entry.tomo_id}_scores.mrc"

    job1 = submit(manifest_path)
    _wait_for(ckpt.is_file, 60, "no checkpoint written by the running task")
    assert not scores.exists()
    scancel(job1)
    slurm_cluster.wait_for_jobs([job1], timeout_s=30)
    assert slurm_cluster.task_state(job1, 0) == "CANCELLED"
    (state,) = batch_status(manifest_path)
    assert state.state == "failed" and "checkpoint kept" in state.detail, state
    assert ckpt.is_file() and not scores.exists()

    resumed = resume(manifest_path)
    assert resumed is not None and resumed[1] == [0]
    slurm_cluster.wait_for_jobs([resumed[0]], timeout_s=90)
    assert [s.state for s in batch_status(manifest_path)] == ["done"]
    log = Path(manifest.output_dir) / "logs" / f"tmfast-test_{resumed[0]}_0.out"
    assert "resuming from checkpoint" in log.read_text()

    # The same configuration, uninterrupted, in another folder.
    ref_dir = tmp_path / "reference"
    config = build_match_config(manifest, entry, write_files=False).with_updates(
        destination=ref_dir, checkpoint_every=0
    )
    run_match(config)
    for suffix in ("_scores.mrc", "_angles.mrc"):
        a = mrcfile.read(out / f"{entry.tomo_id}{suffix}")
        b = mrcfile.read(ref_dir / f"{entry.tomo_id}{suffix}")
        np.testing.assert_array_equal(a, b)


def test_status_sees_pending_tasks_of_a_job_submitted_by_hand(
    slurm_cluster: Cluster, tmp_path: Path
) -> None:
    """submit_array.sh given to sbatch directly, held in the queue: no task has run,
    so nothing in the batch folder names the job. status found it only once a task
    had started; until then the tomograms read 'not-submitted' and resume
    submitted them a second time. status now asks squeue which jobs run the
    batch's script."""
    import subprocess

    from tmfast.batch.slurm import parse_job_id
    from tmfast.errors import ConfigError

    manifest_path = _plan(tmp_path, NAMES[:2], angular_search=30.0, checkpoint_every=0)
    script = manifest_path.parent / "submit_array.sh"
    proc = subprocess.run(
        ["sbatch", "--hold", script.name],
        cwd=script.parent,  # a relative script path, as a user would type it
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    job_id = parse_job_id(proc.stdout)
    try:
        states = batch_status(manifest_path)
        assert [s.state for s in states] == ["pending", "pending"], states
        assert resume(manifest_path) is None
        manifest = Manifest.read(manifest_path)
        with pytest.raises(ConfigError, match=rf"still queued.*{job_id}"):
            plan_relion5(
                manifest.source_path,
                manifest.output_dir,
                match=manifest.match,
                overwrite=True,
            )
    finally:
        scancel(job_id)
    _wait_for(
        lambda: all(s.state == "not-submitted" for s in batch_status(manifest_path)),
        30.0,
        "the cancelled job to leave the queue",
    )
