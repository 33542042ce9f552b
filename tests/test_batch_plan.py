"""`tmfast batch plan / run-task / status / finish` without SLURM.

The batch runs its tasks in-process here (what each array task does on a node);
the SLURM round trip is in test_batch_slurm_cluster.py. The project is a tiny
RELION5 project with planted particles (tests/slurm_cluster.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from slurm_cluster import (
    BINNING,
    PLANTED_ZYX,
    TOMO_SHAPE,
    TS_PIXEL_A,
    make_relion5_project,
)
from tmfast.batch.manifest import Manifest
from tmfast.batch.plan import (
    batch_status,
    finish,
    plan_relion5,
    run_task,
    write_metadata_files,
)
from tmfast.batch.relion5 import read_relion5_metadata
from tmfast.batch.slurm import SlurmOptions
from tmfast.cli import app
from tmfast.errors import ConfigError, FormatError, OutputExistsError
from tmfast.metadata import TiltSeriesMetadata
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_relion5_project(tmp_path_factory.mktemp("proj"))


def _match(project: dict[str, Path], **kw: object) -> dict[str, object]:
    return {
        "template": project["template"],
        "mask": project["mask"],
        "angular_search": 30.0,
        "particle_diameter_a": 90.0,
        "backend": "cpu",
        **kw,
    }


def test_plan_dry_run_writes_nothing_and_carries_metadata(
    project: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "batch"
    plan = plan_relion5(
        project["tomograms_star"],
        out,
        match=_match(project),
        extract={"n_particles": 7},
        dry_run=True,
    )
    assert not out.exists()
    m = plan.manifest
    assert [e.key for e in m.entries] == ["TS_01", "TS_02", "TS_03"]
    assert [e.index for e in m.entries] == [0, 1, 2]
    for e in m.entries:
        assert e.metadata == read_relion5_metadata(project["tomograms_star"], e.key)
        assert e.voxel_size_a == pytest.approx(TS_PIXEL_A * BINNING)
        assert e.size_xyz == (192, 192, 192)
        assert Path(e.tomogram).name == f"rec_{e.key}.mrc"
    assert m.extract["n_particles"] == 7 and m.extract["particle_diameter_a"] == 90.0
    assert m.match["angular_search"] == 30.0
    assert "--array=0-2" in plan.script
    # the JSON round trip is lossless
    assert Manifest.read(m.write(tmp_path / "copy.json")) == m


def test_every_problem_listed_before_anything_is_written(
    project: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    proj = tmp_path / "p"
    shutil.copytree(project["tomograms_star"].parents[2], proj)
    star = proj / "Tomograms" / "job010" / "tomograms.star"
    (proj / "Tomograms/job010/tilt_series/TS_02.star").unlink()
    (proj / "Tomograms/job010/tomograms/rec_TS_03.mrc").unlink()
    out = tmp_path / "batch"
    with pytest.raises(ConfigError) as err:
        plan_relion5(star, out, match=_match(project))
    lines = str(err.value).splitlines()
    assert lines[0].startswith("2 problem(s) found, nothing written")
    assert "pass skip_bad=True" in lines[0]
    assert any("TS_02" in ln and "tilt-series STAR" in ln for ln in lines[1:])
    assert any("TS_03" in ln and "no reconstruction" in ln for ln in lines[1:])
    assert not out.exists()
    plan = plan_relion5(star, out, match=_match(project), skip_bad=True)
    assert [e.key for e in plan.manifest.entries] == ["TS_01"]
    assert plan.manifest_path.is_file() and plan.script_path.is_file()
    with pytest.raises(OutputExistsError):
        plan_relion5(star, out, match=_match(project), skip_bad=True)

    with pytest.raises(ConfigError, match=r"match\['template'\] .*file not found"):
        plan_relion5(star, out, match=_match(project, template=tmp_path / "no.mrc"))
    with pytest.raises(ConfigError, match="invalid matching options"):
        plan_relion5(
            star,
            tmp_path / "b2",
            match=_match(project, low_pass_a=40.0, high_pass_a=20.0),
            skip_bad=True,
        )


def test_run_tasks_status_and_finish(project: dict[str, Path], tmp_path: Path) -> None:
    starfile = pytest.importorskip("starfile")
    imodmodel = pytest.importorskip("imodmodel")
    plan = plan_relion5(
        project["tomograms_star"],
        tmp_path / "batch",
        match=_match(project, checkpoint_every=100),
        extract={"n_particles": 5},
        write_metadata=True,
    )
    mpath = plan.manifest_path
    assert [s.state for s in batch_status(mpath)] == ["not-submitted"] * 3
    with pytest.raises(ConfigError, match="no tomogram is matched yet"):
        finish(mpath, allow_incomplete=True)
    run_task(mpath, 0, progress_interval_s=0)
    states = batch_status(mpath, query_queue=False)
    assert [s.state for s in states] == ["done", "not-submitted", "not-submitted"]
    with pytest.raises(ConfigError, match="not matched yet"):
        finish(mpath)
    _path, counts = finish(mpath, allow_incomplete=True, output=tmp_path / "one.star")
    assert list(counts) == ["TS_01"]

    run_task(mpath, 1, progress_interval_s=0)
    run_task(mpath, 2, progress_interval_s=0)
    run_task(mpath, 2, progress_interval_s=0)  # rerun: already matched, extracts only
    assert [s.state for s in batch_status(mpath)] == ["done"] * 3
    merged, counts = finish(mpath)
    table = starfile.read(merged)
    assert len(table) == sum(counts.values()) >= 9
    m = Manifest.read(mpath)
    for e in m.entries:
        rows = table[table["rlnTomoName"] == e.tomo_name]
        xyz = np.stack(
            [
                (
                    rows[f"rlnCenteredCoordinate{a}Angst"] / TS_PIXEL_A
                    + TOMO_SHAPE * BINNING / 2
                )
                / BINNING
                for a in "XYZ"
            ],
            axis=1,
        )
        for z, y, x in PLANTED_ZYX:
            assert np.abs(xyz - [x, y, z]).max(axis=1).min() <= 1.0 + 1e-6
        per = starfile.read(Path(e.output_dir) / f"{e.tomo_id}_particles.star")
        assert len(per) == counts[e.key]
        mod = imodmodel.read(Path(e.output_dir) / f"{e.tomo_id}_particles.mod")
        assert len(mod) == counts[e.key]
        np.testing.assert_allclose(
            np.sort(mod["z"].to_numpy()),
            np.sort((per["rlnCenteredCoordinateZAngst"] / TS_PIXEL_A + 96) / BINNING),
            atol=1e-3,
        )
        # --write-metadata files: one value per line, equal to the manifest
        md = e.metadata
        assert md is not None
        tlt = np.loadtxt(m.output_dir + f"/metadata/{e.key}.tlt")
        np.testing.assert_array_equal(tlt, md.tilt_angles_deg)
        dose = np.loadtxt(m.output_dir + f"/metadata/{e.key}_dose.txt")
        np.testing.assert_array_equal(dose, md.dose_e_per_a2)


def test_failed_task_is_reported(project: dict[str, Path], tmp_path: Path) -> None:
    plan = plan_relion5(
        project["tomograms_star"],
        tmp_path / "batch",
        match=_match(project),
        tomo_names=["TS_02"],
    )
    # point the entry at a missing tomogram so that the task fails
    bad = json.loads(plan.manifest_path.read_text())
    bad["entries"][0]["tomogram"] = str(tmp_path / "gone.mrc")
    plan.manifest_path.write_text(json.dumps(bad))
    with pytest.raises(Exception, match=r"gone.mrc"):
        run_task(plan.manifest_path, 0)
    (st,) = batch_status(plan.manifest_path, query_queue=False)
    assert st.state == "failed" and "gone.mrc" in st.detail
    with pytest.raises(ConfigError, match="array index 3 is outside"):
        run_task(plan.manifest_path, 3)


def test_write_metadata_files(tmp_path: Path) -> None:
    md = TiltSeriesMetadata(tilt_angles_deg=(-3.0, 0.0, 3.0), dose_e_per_a2=(3, 0, 6))
    files = write_metadata_files(md, tmp_path, "ts")
    assert [f.name for f in files] == ["ts.tlt", "ts_dose.txt"]  # no defocus given
    assert (tmp_path / "ts.tlt").read_text() == "-3.0\n0.0\n3.0\n"
    with pytest.raises(OutputExistsError):
        write_metadata_files(md, tmp_path, "ts")
    assert not list(tmp_path.glob(".*part"))


def test_cli_plan_dry_run_and_gpus(project: dict[str, Path], tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "batch",
            "plan",
            "relion5",
            "--tomograms-star",
            str(project["tomograms_star"]),
            "-o",
            str(tmp_path / "b"),
            "-t",
            str(project["template"]),
            "-m",
            str(project["mask"]),
            "--particle-diameter",
            "90",
            "--angular-search",
            "30",
            "--partition",
            "gpu",
            "--gpus-per-task",
            "2",
            "--module",
            "cuda",
            "--array-throttle",
            "2",
            "--time",
            "01:00:00",
            "--dry-run",
        ],
    )
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "b").exists()
    text = res.output
    manifest = json.loads(text[text.index("{") : text.index("\n}\n") + 2])
    assert manifest["match"]["gpu_ids"] == [0, 1]
    assert manifest["slurm"]["partition"] == "gpu"
    assert "#SBATCH --array=0-2%2" in text and "#SBATCH --gpus-per-task=2" in text
    assert "module load cuda" in text


def test_cli_errors_are_one_line(project: dict[str, Path], tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tmfast",
            "batch",
            "plan",
            "relion5",
            "--tomograms-star",
            str(tmp_path / "missing.star"),
            "-o",
            str(tmp_path / "b"),
            "-t",
            str(project["template"]),
            "-m",
            str(project["mask"]),
            "--angular-search",
            "30",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plan_errors_name_the_api_parameters_or_the_cli_flags(
    project: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The library names its parameters; ``batch plan`` rewrites them as its flags."""
    from _cli import run_cli

    star = project["tomograms_star"]
    with pytest.raises(ConfigError) as err:
        plan_relion5(
            star,
            tmp_path / "a",
            match=_match(project, angular_search=str(tmp_path / "no.txt")),
            slurm=SlurmOptions(container=str(tmp_path / "no.sif")),
            tomogram_mask_dir=tmp_path / "nomasks",
        )
    text = str(err.value)
    for name in ("match['angular_search']", "slurm.container", "tomogram_mask_dir"):
        assert name in text
    assert "--" not in text
    with pytest.raises(ConfigError, match=r"^tomo_names TS_99: not in"):
        plan_relion5(star, tmp_path / "a", match=_match(project), tomo_names=["TS_99"])

    base = ["batch", "plan", "relion5", "--tomograms-star", str(star)]
    base += ["-t", str(project["template"]), "-m", str(project["mask"])]
    code, err_text = run_cli(
        [
            *base,
            "-o", str(tmp_path / "b"),
            "--angular-search", str(tmp_path / "no.txt"),
            "--container", str(tmp_path / "no.sif"),
            "--tomogram-mask-dir", str(tmp_path / "nomasks"),
        ],
        capsys,
    )  # fmt: skip
    assert code == 2
    for flag in ("--angular-search", "--container", "--tomogram-mask-dir"):
        assert flag in err_text
    assert "match[" not in err_text and "slurm." not in err_text
    code, err_text = run_cli(
        [*base, "-o", str(tmp_path / "c"), "--tomo", "TS_99"], capsys
    )
    assert code == 2 and "--tomo TS_99: not in" in err_text


def test_slurm_options_recorded(project: dict[str, Path], tmp_path: Path) -> None:
    opts = SlurmOptions(partition="p", mem="2G")
    plan = plan_relion5(
        project["tomograms_star"],
        tmp_path / "b",
        match=_match(project),
        slurm=opts,
        dry_run=True,
    )
    assert SlurmOptions.from_dict(plan.manifest.slurm) == opts


AT3 = Path(__file__).resolve().parents[2] / "shared" / "data" / "formats" / "aretomo3"


@pytest.mark.skipif(not AT3.is_dir(), reason=f"shared AreTomo3 fixtures not at {AT3}")
def test_plan_aretomo3_lists_count_mismatch(
    project: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    import mrcfile
    from tmfast.batch.aretomo3 import read_aretomo3

    at = tmp_path / "at3"
    at.mkdir()
    for p in ("A", "B"):
        shutil.copy(AT3 / "Position_16_3.aln", at / f"{p}.aln")
        shutil.copy(AT3 / "test_8col_CTF.txt", at / f"{p}_CTF.txt")
        shutil.copy(AT3 / "test_TLT.txt", at / f"{p}_TLT.txt")
        mrcfile.write(
            at / f"{p}_Vol.mrc", np.zeros((16, 24, 24), np.float32), voxel_size=10.0
        )
    ctf = at / "B_CTF.txt"
    ctf.write_text("".join(ctf.read_text().splitlines(keepends=True)[:-1]))  # 30 rows
    optics = {
        "voltage_kv": 300.0,
        "spherical_aberration_mm": 2.7,
        "amplitude_contrast": 0.07,
    }
    from tmfast.batch.plan import plan_aretomo3

    with pytest.raises(ConfigError) as err:
        plan_aretomo3(at, tmp_path / "b", match=_match(project), dry_run=True, **optics)
    (line,) = str(err.value).splitlines()[1:]
    assert line.strip().startswith("B:") and "30 CTF rows match neither" in line
    plan = plan_aretomo3(
        at, tmp_path / "b", match=_match(project), dry_run=True, skip_bad=True, **optics
    )
    (entry,) = plan.manifest.entries
    assert entry.key == "A" and entry.voxel_size_a == 10.0
    assert entry.metadata == read_aretomo3(at / "A", **optics)
    # The template check applies to AreTomo3 plans too (here a 20 Å override).
    with pytest.raises(ConfigError) as err:
        plan_aretomo3(
            at,
            tmp_path / "b",
            match=_match(project),
            dry_run=True,
            voxel_size_a=20.0,
            **optics,
        )
    assert (
        "A: template template.mrc has voxel size 10.000 Å (header) but the "
        "tomogram's is 20.000 Å" in str(err.value)
    )


def test_status_and_resume_with_fake_slurm(
    project: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """status joins task files and squeue; resume resubmits only what is left."""
    import os
    import shlex

    from tmfast.batch.plan import resume, submit

    bins = tmp_path / "bin"
    bins.mkdir()
    log = tmp_path / "sbatch_args.txt"
    for name, body in (
        (
            "sbatch",
            f'echo "$@" >> {shlex.quote(str(log))}\n'
            'if grep -q array "$0.count" 2>/dev/null; then echo 4243; '
            'else echo array > "$0.count"; echo 4242; fi\n',
        ),
        ("squeue", "echo '4242 2 RUNNING'\n"),
    ):
        (bins / name).write_text("#!/bin/bash\n" + body)
        (bins / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bins) + os.pathsep + os.environ["PATH"])
    plan = plan_relion5(
        project["tomograms_star"],
        tmp_path / "b",
        match=_match(project),
        slurm=SlurmOptions(array_throttle=2),
    )
    mpath = plan.manifest_path
    run_task(mpath, 0, progress_interval_s=0)
    assert submit(mpath) == 4242
    with pytest.raises(ConfigError, match="already submitted as job 4242"):
        submit(mpath)
    states = batch_status(mpath)
    assert [s.state for s in states] == ["done", "failed", "running"]
    assert states[1].detail == "never started"
    assert resume(mpath) == (4243, [1])
    calls = log.read_text().splitlines()
    assert calls[0].split() == ["--parsable", str(plan.script_path)]
    assert calls[1].split() == ["--parsable", "--array=1%2", str(plan.script_path)]
    subs = json.loads((tmp_path / "b" / "submissions.json").read_text())
    assert [(s["job_id"], s["indices"]) for s in subs] == [
        (4242, [0, 1, 2]),
        (4243, [1]),
    ]


def test_manifest_read_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.json"
    with pytest.raises(FormatError, match=r"none\.json: manifest not found; run"):
        Manifest.read(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FormatError, match=r"bad\.json: not a readable JSON manifest"):
        Manifest.read(bad)
    bad.write_text(json.dumps({"source": "x"}))
    with pytest.raises(FormatError, match="no 'entries'"):
        Manifest.read(bad)


def test_manifest_read_accepts_the_batch_folder(
    project: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "batch"
    plan = plan_relion5(project["tomograms_star"], out, match=_match(project))
    assert Manifest.read(out) == Manifest.read(plan.manifest_path)
    states = batch_status(out, query_queue=False)
    assert [s.state for s in states] == ["not-submitted"] * 3
    res = CliRunner().invoke(app, ["batch", "status", str(out), "--no-queue"])
    assert res.exit_code == 0, res.output
    assert "0 done" in res.output and "3 not-submitted" in res.output
    with pytest.raises(FormatError, match=r"holds no manifest\.json"):
        Manifest.read(tmp_path)


def _copy_project(project: dict[str, Path], dest: Path) -> Path:
    import shutil

    shutil.copytree(project["tomograms_star"].parents[2], dest)
    return dest / "Tomograms" / "job010" / "tomograms.star"


def test_plan_refuses_voxel_size_and_shape_mismatches(
    project: dict[str, Path], tmp_path: Path
) -> None:
    import mrcfile

    star = _copy_project(project, tmp_path / "p")
    tomos = star.parent / "tomograms"
    vox = TS_PIXEL_A * BINNING
    # The review case: template and mask made at 20 Å for a 10 Å project.
    for name in ("template", "mask"):
        with mrcfile.mmap(tmp_path / "p" / f"{name}.mrc", "r+") as m:
            m.voxel_size = 2 * vox
    # TS_02: a tomogram of another voxel size; TS_03: one of another shape.
    with mrcfile.mmap(tomos / "rec_TS_02.mrc", "r+") as m:
        m.voxel_size = 1.5 * vox
    mrcfile.write(
        tomos / "rec_TS_03.mrc",
        np.zeros((TOMO_SHAPE, TOMO_SHAPE, TOMO_SHAPE + 8), np.float32),
        voxel_size=vox,
        overwrite=True,
    )
    match = _match(
        project,
        template=tmp_path / "p" / "template.mrc",
        mask=tmp_path / "p" / "mask.mrc",
    )
    with pytest.raises(ConfigError) as err:
        plan_relion5(star, tmp_path / "b", match=match, dry_run=True)
    lines = str(err.value).splitlines()[1:]
    for ts in ("TS_01", "TS_02", "TS_03"):
        assert any(
            ln.strip().startswith(
                f"{ts}: template template.mrc has voxel size {2 * vox:.3f} Å"
            )
            for ln in lines
        ), lines
        assert any(ln.strip().startswith(f"{ts}: mask mask.mrc") for ln in lines)
    assert any(
        "TS_02: rec_TS_02.mrc header voxel size 15.000 Å differs from the project's "
        "10.000 Å" in ln
        for ln in lines
    )
    n = TOMO_SHAPE
    assert any(
        f"TS_03: rec_TS_03.mrc is {n + 8}x{n}x{n} (x, y, z) but tomograms.star" in ln
        for ln in lines
    )
    assert len(lines) == 3 * 2 + 2

    # Template at the right voxel size: only the bad tomograms are left out.
    for name in ("template", "mask"):
        with mrcfile.mmap(tmp_path / "p" / f"{name}.mrc", "r+") as m:
            m.voxel_size = vox * (1 + 4e-4)  # within the 0.1 % tolerance
    plan = plan_relion5(star, tmp_path / "b", match=match, dry_run=True, skip_bad=True)
    assert [e.key for e in plan.manifest.entries] == ["TS_01"]
    assert len(plan.skipped) == 2

    # A template box larger than the tomogram.
    big = np.zeros((n + 2,) * 3, np.float32)
    big[n // 2, n // 2, n // 2] = 1
    mrcfile.write(tmp_path / "big.mrc", big, voxel_size=vox)
    mrcfile.write(tmp_path / "bigm.mrc", big, voxel_size=vox)
    with pytest.raises(ConfigError, match=rf"TS_01: template box {n + 2} is larger"):
        plan_relion5(
            star,
            tmp_path / "b",
            match=_match(
                project, template=tmp_path / "big.mrc", mask=tmp_path / "bigm.mrc"
            ),
            dry_run=True,
        )


def test_missing_tilt_series_names_the_folders_searched(
    project: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    star = _copy_project(project, tmp_path / "p")
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(star, lone / "tomograms.star")
    with pytest.raises(FormatError) as err:
        read_relion5_metadata(lone / "tomograms.star", "TS_01")
    msg = str(err.value)
    assert f"not found under {lone.resolve()} and its parent folders" in msg
    assert "keep tomograms.star inside its RELION project (the folder holding " in msg
    assert "--project-dir <the folder holding Tomograms/>" in msg
    # ... and the fix it names works.
    md = read_relion5_metadata(
        lone / "tomograms.star", "TS_01", project_dir=tmp_path / "p"
    )
    assert md == read_relion5_metadata(star, "TS_01")


def test_gpu_task_fails_without_a_gpu_backend(
    project: dict[str, Path], tmp_path: Path
) -> None:
    from tmfast.batch.plan import _no_gpu_reason
    from tmfast.errors import BackendUnavailableError

    if _no_gpu_reason() is None:
        pytest.skip("a GPU backend works here; the refusal needs a node without one")
    out = tmp_path / "batch"
    plan = plan_relion5(
        project["tomograms_star"],
        out,
        match=_match(project, backend="auto"),
        slurm=SlurmOptions(gres="gpu:1"),
    )
    with pytest.raises(BackendUnavailableError) as err:
        run_task(plan.manifest_path, 0, progress_interval_s=0)
    msg = str(err.value)
    assert msg.startswith("TS_01: the batch asked SLURM for GPUs (--gres gpu:1) but ")
    assert "cuda: " in msg and "opencl: " in msg
    (st,) = [s for s in batch_status(out, query_queue=False) if s.key == "TS_01"]
    assert st.state == "failed" and "asked SLURM for GPUs" in st.detail
    assert not list((out / "tomograms" / "TS_01").glob("*_scores.mrc"))


def test_run_task_rechecks_voxel_sizes(
    project: dict[str, Path], tmp_path: Path
) -> None:
    import mrcfile

    star = _copy_project(project, tmp_path / "p")
    match = _match(
        project,
        template=tmp_path / "p" / "template.mrc",
        mask=tmp_path / "p" / "mask.mrc",
    )
    out = tmp_path / "batch"
    plan_relion5(star, out, match=match)
    # The template is replaced by one at another voxel size after planning.
    with mrcfile.mmap(tmp_path / "p" / "template.mrc", "r+") as m:
        m.voxel_size = 20.0
    with pytest.raises(ConfigError, match=r"^TS_01: template template\.mrc has voxel"):
        run_task(out, 0, progress_interval_s=0)
    (st,) = [s for s in batch_status(out, query_queue=False) if s.key == "TS_01"]
    assert st.state == "failed" and "voxel size 20.000 Å" in st.detail
