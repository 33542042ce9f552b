"""A structural biologist's journey through create-template/-mask, slab-mask and batch.

Regression tests for bugs found by driving the CLI with the real maps and project
files in ``../shared/data`` (skipped with the reason where those are absent). Every
check uses an independent oracle: ``mrcfile``, ``starfile``, ``scipy.ndimage``,
numbers parsed here from the source files, or the field meanings of ``squeue -o``
from its manual page (and a real single-node SLURM cluster where one can start).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
import scipy.ndimage
from tmfast.batch.slurm import queue_states
from tmfast.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = SHARED / "real"
FORMATS = SHARED / "formats"
RIBO_4V4R = REAL / "polnet" / "mrcs_10A" / "4v4r.mrc"  # 66^3, 10 Å
CRYOCAT_EM = REAL / "cryocat" / "peak_analysis" / "bin4_voxel2.176_ribosome.em"
CRYOBOOST = FORMATS / "relion5_tomograms" / "cryoboost_warp"
ARETOMO3 = FORMATS / "aretomo3"

_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def _need(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"real data not found: {', '.join(missing)}")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI as the console script does; return (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(code: int, err: str) -> str:
    """Assert exit 2 with exactly one non-log stderr line, 'tmfast: error: ...'."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and not _LOG_LINE.match(ln)]
    assert len(lines) == 1, err
    assert lines[0].startswith("tmfast: error: ")
    return lines[0]


def _write_mrc(path: Path, data: np.ndarray, voxel_a: float) -> None:
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data, dtype=np.float32))
        m.voxel_size = voxel_a


def _com_offset_a(vol: np.ndarray, voxel_a: float) -> np.ndarray:
    """Centre of mass of the density above the median, from the N // 2 centre, Å."""
    w = np.clip(vol - np.median(vol), 0.0, None)
    grids = np.meshgrid(*[np.arange(n) for n in vol.shape], indexing="ij")
    com = np.array([(g * w).sum() / w.sum() for g in grids])
    return (com - np.array(vol.shape) // 2) * voxel_a


# --------------------------------------------------------------------------------
# create-template / create-mask


def test_create_template_real_map_scale_centre_and_bad_low_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """4V4R (10 Å) to 13.3 Å, box 40, 40 Å low-pass, inverted and mirrored.

    Oracle: the same hard low-pass then cubic-spline sampling at the output voxel
    centres (``scipy.ndimage.map_coordinates``), inverted and mirrored about the box
    centre. A negative --low-pass used to be taken as "finer than Nyquist" and
    silently replaced (exit 0); it is bad input.
    """
    _need(RIBO_4V4R)
    out = tmp_path / "t.mrc"
    argv = ["create-template", "-i", str(RIBO_4V4R), "-o", str(out)]
    argv += ["--output-voxel-size-angstrom", "13.3", "-b", "40"]
    code, _, err = run([*argv, "--low-pass", "40", "--invert", "-m"], capsys)
    assert code == 0, err
    with mrcfile.open(out) as m:
        got = m.data.astype(np.float64)
        assert m.voxel_size.x == pytest.approx(13.3, rel=1e-6)
        assert m.voxel_size.z == pytest.approx(13.3, rel=1e-6)
    assert got.shape == (40, 40, 40)

    src = mrcfile.read(RIBO_4V4R).astype(np.float64)
    spec = np.fft.fftn(src)
    freq = np.sqrt(
        sum(
            g**2
            for g in np.meshgrid(
                *[np.fft.fftfreq(n, d=10.0) for n in src.shape], indexing="ij"
            )
        )
    )
    spec[freq >= 1 / 40.0] = 0
    lowpassed = np.fft.ifftn(spec).real
    off = (np.arange(40) - 20) * 1.33
    c = np.array(src.shape) // 2
    coords = np.meshgrid(c[0] - off, c[1] + off, c[2] + off, indexing="ij")
    oracle = -scipy.ndimage.map_coordinates(lowpassed, coords, order=3, cval=0.0)
    assert np.corrcoef(oracle.ravel(), got.ravel())[0, 1] > 0.99
    scale = float((oracle * got).sum() / (oracle * oracle).sum())
    assert scale == pytest.approx(1.0, abs=0.03)
    # Centre of mass: the particle stays where it was, z mirrored about the centre.
    com_in = _com_offset_a(src, 10.0)
    com_out = _com_offset_a(-got, 13.3)
    np.testing.assert_allclose(com_out, com_in * [-1, 1, 1], atol=13.3)

    bad = tmp_path / "bad.mrc"
    argv[4] = str(bad)
    for value in ("-5", "0"):
        line = _one_error_line(*run([*argv, "--low-pass", value], capsys)[::2])
        assert "--low-pass" in line
        assert not bad.exists()


def test_create_mask_angstrom_units_need_a_voxel_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--units angstrom with no voxel size (EM template, or none given) used to
    take 1 Å per voxel silently: a 10 Å radius became 10 voxels (87 Å at 8.7 Å)."""
    _need(CRYOCAT_EM)
    out = tmp_path / "m.mrc"
    for argv in (
        ["--template", str(CRYOCAT_EM), "-r", "100", "--units", "angstrom"],
        ["-b", "48", "-r", "10", "--units", "angstrom"],
    ):
        line = _one_error_line(
            *run(["create-mask", *argv, "-o", str(out)], capsys)[::2]
        )
        assert "--voxel-size" in line
        assert not out.exists()
    # With the voxel size given, the radius is in Å: r = 100 / 8.704 voxels.
    code, _, err = run(
        [
            *("create-mask", "--template", str(CRYOCAT_EM), "--voxel-size", "8.704"),
            *("-r", "100", "-s", "10", "--units", "angstrom", "-o", str(out)),
        ],
        capsys,
    )
    assert code == 0, err
    with mrcfile.open(out) as m:
        mask = m.data.astype(np.float64)
        assert m.voxel_size.x == pytest.approx(8.704, rel=1e-6)
    g = np.arange(48) - 24
    d = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    r, s = 100 / 8.704, 10 / 8.704
    edge = np.exp(-0.5 * ((d - r) / s) ** 2) * (d - r <= 3 * s)
    np.testing.assert_allclose(mask, np.where(d <= r, 1.0, edge), atol=1e-6)


def test_create_template_names_an_anisotropic_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A (2, 2, 3) Å header used to be reported as 'voxel size 0 (unset); pass
    --input-voxel-size-angstrom', which would resample z at the wrong scale."""
    src = tmp_path / "aniso.mrc"
    with mrcfile.new(src) as m:
        m.set_data(np.random.default_rng(0).random((16, 16, 16), dtype=np.float32))
        m.voxel_size = (2.0, 2.0, 3.0)
    out = tmp_path / "t.mrc"
    argv = ["create-template", "-i", str(src), "-o", str(out)]
    line = _one_error_line(
        *run([*argv, "--output-voxel-size-angstrom", "4"], capsys)[::2]
    )
    assert "anisotropic" in line and "2, 2, 3" in line
    assert not out.exists()


def test_slab_mask_recovers_a_tilted_lamella_and_rejects_bad_voxel_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Noise 6x stronger between z = 0.15 x - 0.05 y + c and c + 16 (a tilted
    lamella in vacuum). An explicit --voxel-size-angstrom -3 used to be written as
    1 Å with a warning about the header."""
    nz, ny, nx = 40, 64, 72
    a, b = 0.15, -0.05
    z = np.arange(nz)[:, None, None]
    y = np.arange(ny)[None, :, None]
    x = np.arange(nx)[None, None, :]
    bottom = a * (x - (nx - 1) / 2) + b * (y - (ny - 1) / 2) + 12.0
    inside = (z >= bottom) & (z <= bottom + 16.0)
    rng = np.random.default_rng(7)
    tomo = rng.normal(size=(nz, ny, nx)) * np.where(inside, 3.0, 0.5)
    src = tmp_path / "lamella.mrc"
    _write_mrc(src, tomo, 13.0)
    out = tmp_path / "slab.mrc"
    code, _, err = run(["slab-mask", "-i", str(src), "-o", str(out)], capsys)
    assert code == 0, err
    with mrcfile.open(out) as m:
        mask = m.data.astype(bool)
        assert m.voxel_size.x == pytest.approx(13.0)
    assert (mask != inside).mean() < 0.03
    # Plane slope from the mask itself: mean z of the mask per column vs x and y.
    zc = (mask * z).sum(axis=0) / np.maximum(mask.sum(axis=0), 1)
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    design = np.column_stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
    slope = np.linalg.lstsq(design, zc.ravel(), rcond=None)[0]
    np.testing.assert_allclose(slope[:2], [a, b], atol=0.02)

    out2 = tmp_path / "slab2.mrc"
    argv = ["slab-mask", "-i", str(src), "-o", str(out2)]
    line = _one_error_line(*run([*argv, "--voxel-size-angstrom", "-3"], capsys)[::2])
    assert "--voxel-size-angstrom" in line
    assert not out2.exists()


# --------------------------------------------------------------------------------
# batch: a tiny RELION5 project made from CryoBoost's real Warp-derived STAR files


def _cryoboost_project(root: Path) -> dict[str, Path]:
    """Real tomograms.star + Position_1.star, a 16x24x24 tomogram, 8^3 template."""
    _need(CRYOBOOST / "tomograms.star", CRYOBOOST / "tilt_series" / "Position_1.star")
    vols = root / "data" / "vols"
    (vols / "tilt_series").mkdir(parents=True)
    shutil.copy(CRYOBOOST / "tomograms.star", vols / "tomograms.star")
    shutil.copy(CRYOBOOST / "tilt_series" / "Position_1.star", vols / "tilt_series")
    rng = np.random.default_rng(3)
    tomo = rng.normal(size=(16, 24, 24)).astype(np.float32)
    tomo[5:11] *= 4.0  # a lamella: higher variance in z 5..10
    _write_mrc(vols / "Position_1.mrc", tomo, 14.0)
    g = np.arange(8) - 4
    r2 = g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2
    _write_mrc(root / "t.mrc", np.exp(-r2 / 4.0), 14.0)
    _write_mrc(root / "m.mrc", (r2 <= 9).astype(np.float32), 14.0)
    return {"star": vols / "tomograms.star", "tomo": vols / "Position_1.mrc"}


def _plan_argv(root: Path, star: Path, out: Path) -> list[str]:
    return [
        "batch",
        "plan",
        "relion5",
        "--tomograms-star",
        str(star),
        "--tomo",
        "Position_1",
        "--voxel-size",
        "14",
        "-o",
        str(out),
        "-t",
        str(root / "t.mrc"),
        "-m",
        str(root / "m.mrc"),
        "--particle-diameter",
        "100",
        "--gres",
        "gpu:1",
        "--array-throttle",
        "4",
    ]


def test_batch_plan_metadata_files_and_no_partial_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--write-metadata files match the STAR parsed by starfile; a plan that hits an
    existing output writes nothing (it used to leave a fresh manifest.json beside an
    old script, or manifest and script beside old metadata files)."""
    starfile = pytest.importorskip("starfile")
    proj = _cryoboost_project(tmp_path)
    out = tmp_path / "batch"
    argv = [*_plan_argv(tmp_path, proj["star"], out), "--write-metadata"]
    code, _, err = run(argv, capsys)
    assert code == 0, err

    df = starfile.read(CRYOBOOST / "tilt_series" / "Position_1.star")
    df = df.sort_values("rlnTomoNominalStageTiltAngle")
    md = out / "metadata"
    np.testing.assert_allclose(
        np.loadtxt(md / "Position_1.tlt"), df["rlnTomoNominalStageTiltAngle"]
    )
    # Warp writes µm (values ~5): the files hold µm.
    np.testing.assert_allclose(
        np.loadtxt(md / "Position_1_defocus.txt"),
        (df["rlnDefocusU"] + df["rlnDefocusV"]) / 2,
    )
    np.testing.assert_allclose(
        np.loadtxt(md / "Position_1_dose.txt"), df["rlnMicrographPreExposure"]
    )
    script = (out / "submit_array.sh").read_text()
    assert "#SBATCH --array=0%4" in script
    assert "#SBATCH --gres=gpu:1" in script
    assert f"--output={out}/logs/%x_%A_%a.out" in script
    assert (out / "logs").is_dir()

    # The script exists but the manifest does not: refuse, write no manifest.
    (out / "manifest.json").unlink()
    line = _one_error_line(*run(argv, capsys)[::2])
    assert "submit_array.sh" in line and "--overwrite" in line
    assert not (out / "manifest.json").exists()

    # Only old metadata files are left: refuse, write neither manifest nor script.
    (out / "submit_array.sh").unlink()
    line = _one_error_line(*run(argv, capsys)[::2])
    assert "Position_1.tlt" in line
    assert not (out / "manifest.json").exists()
    assert not (out / "submit_array.sh").exists()

    code, _, err = run([*argv, "--overwrite"], capsys)
    assert code == 0, err
    assert (out / "manifest.json").is_file() and (out / "submit_array.sh").is_file()


def test_batch_tomogram_dir_copy_of_a_listed_tomogram_is_not_an_orphan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """rlnTomoReconstructedTomogram exists and is used (as documented); a file for
    the same tomogram in --tomogram-dir (Warp name) used to be reported as a
    'reconstruction without a row in tomograms.star' and the row as 'listed twice'."""
    proj = _cryoboost_project(tmp_path)
    alt = tmp_path / "alt"
    alt.mkdir()
    shutil.copy(proj["tomo"], alt / "Position_1_14.00Apx.mrc")
    out = tmp_path / "batch"
    argv = [*_plan_argv(tmp_path, proj["star"], out), "--tomogram-dir", str(alt)]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert "not used" in err
    entries = json.loads((out / "manifest.json").read_text())["entries"]
    assert [e["tomogram"] for e in entries] == [str(proj["tomo"].resolve())]


def test_output_under_a_file_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output path below a regular file used to end in a FileExistsError
    traceback from mkdir (create-template, create-mask, slab-mask, batch plan)."""
    proj = _cryoboost_project(tmp_path)
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    inner = str(blocker / "x.mrc")
    for argv in (
        [
            *("create-template", "-i", str(tmp_path / "t.mrc"), "-o", inner),
            *("--output-voxel-size-angstrom", "14"),
        ],
        ["create-mask", "-b", "16", "-r", "5", "-o", inner],
        ["slab-mask", "-i", str(proj["tomo"]), "-o", inner],
        _plan_argv(tmp_path, proj["star"], blocker),
    ):
        line = _one_error_line(*run(argv, capsys)[::2])
        assert "is a file, not a folder" in line
    assert blocker.read_text() == "not a folder"


def test_batch_plan_refuses_mask_box_unlike_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 10^3 mask with an 8^3 template used to be planned; every array task then
    failed on the compute node, after the queue wait."""
    proj = _cryoboost_project(tmp_path)
    g = np.arange(10) - 5
    r2 = g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2
    _write_mrc(tmp_path / "m.mrc", (r2 <= 9).astype(np.float32), 14.0)
    out = tmp_path / "batch"
    line = _one_error_line(*run(_plan_argv(tmp_path, proj["star"], out), capsys)[::2])
    assert "--mask" in line and "(10, 10, 10)" in line and "(8, 8, 8)" in line
    assert not out.exists()


def test_batch_tomogram_mask_dir_finds_slab_mask_default_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """'tmfast slab-mask' writes <tomogram stem>_slab_mask.mrc; --tomogram-mask-dir
    used to look only for <name>.mrc / <name>_mask.mrc and reported 'no mask'."""
    proj = _cryoboost_project(tmp_path)
    masks = tmp_path / "masks"
    masks.mkdir()
    monkeypatch.chdir(masks)
    code, _, err = run(
        ["slab-mask", "-i", str(proj["tomo"]), "--bin-factor", "1"], capsys
    )
    assert code == 0, err
    written = masks / "Position_1_slab_mask.mrc"
    assert written.is_file()
    with mrcfile.open(written) as m:
        assert m.data.shape == (16, 24, 24)
        assert m.voxel_size.x == pytest.approx(14.0)

    out = tmp_path / "batch"
    argv = [*_plan_argv(tmp_path, proj["star"], out), "--tomogram-mask-dir", str(masks)]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    entry = json.loads((out / "manifest.json").read_text())["entries"][0]
    assert entry["tomogram_mask"] == str(written.resolve())

    # A mask of another shape used to be planned; the task then failed on the node.
    _write_mrc(written, np.ones((16, 24, 20)), 14.0)
    out2 = tmp_path / "batch2"
    argv[argv.index(str(out))] = str(out2)
    code, _, err = run(argv, capsys)
    assert code == 2, err
    assert "Position_1_slab_mask.mrc is 20x24x16 (x, y, z)" in err
    assert "Traceback" not in err
    assert not out2.exists()


def test_batch_finish_refuses_existing_merge_before_extracting_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second 'batch finish -n 1' without --overwrite used to extract every
    tomogram again with the new options (rewriting its particle files) and only
    then refuse the existing merged file, leaving the two out of step."""
    starfile = pytest.importorskip("starfile")
    proj = _cryoboost_project(tmp_path)
    rng = np.random.default_rng(5)
    tomo = rng.normal(size=(16, 24, 24)).astype(np.float32)
    g = np.arange(8) - 4
    r2 = g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2
    for z, y, x in ((8, 7, 7), (8, 16, 16)):  # two planted particles
        tomo[z - 4 : z + 4, y - 4 : y + 4, x - 4 : x + 4] += 3 * np.exp(-r2 / 4.0)
    _write_mrc(proj["tomo"], tomo, 14.0)
    out = tmp_path / "batch"
    argv = _plan_argv(tmp_path, proj["star"], out)
    argv[argv.index("--gres") : argv.index("--gres") + 2] = []
    code, _, err = run([*argv, "--angular-search", "30", "--backend", "cpu"], capsys)
    assert code == 0, err
    # In a child process, as on a node (in-process matching leaves engine state that
    # changed the last bits of a later in-process reference run in another test).
    task = subprocess.run(
        [sys.executable, "-m", "tmfast", "batch", "run-task", str(out), "--index", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert task.returncode == 0, task.stderr
    code, _, err = run(["batch", "finish", str(out), "-n", "2", "-c", "0.1"], capsys)
    assert code == 0, err
    per_tomo = next((out / "tomograms" / "Position_1").glob("*_particles.star"))
    before = per_tomo.read_bytes()
    merged = starfile.read(out / "particles.star")
    assert len(merged) == len(starfile.read(per_tomo)) == 2

    line = _one_error_line(
        *run(["batch", "finish", str(out), "-n", "1", "-c", "0.1"], capsys)[::2]
    )
    assert "particles.star" in line and "--overwrite" in line
    assert per_tomo.read_bytes() == before
    code, _, err = run(
        ["batch", "finish", str(out), "-n", "1", "-c", "0.1", "--overwrite"], capsys
    )
    assert code == 0, err
    assert len(starfile.read(out / "particles.star")) == 1
    assert len(starfile.read(per_tomo)) == 1


# --------------------------------------------------------------------------------
# batch: AreTomo3 folder from real files; bad numeric options


def test_batch_aretomo3_metadata_and_bad_voxel_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Position_16_3.aln + its _CTF/_TLT files: tilts, defocus and accumulated dose
    parsed here independently; --voxel-size -3 used to give three misleading lines
    ('make the template at -3.000 Å')."""
    files = {
        ".aln": ARETOMO3 / "Position_16_3.aln",
        "_CTF.txt": ARETOMO3 / "test_8col_CTF.txt",
        "_TLT.txt": ARETOMO3 / "test_TLT.txt",
    }
    _need(*files.values())
    at = tmp_path / "at3"
    at.mkdir()
    for suffix, src in files.items():
        shutil.copy(src, at / f"Pos_1{suffix}")
    (at / "AreTomo3_Session.json").write_text(
        json.dumps(
            {
                "parameters": {
                    "PixSize": 1.75,
                    "McBin": 1.0,
                    "AtBin": [8.0],
                    "kV": 300,
                    "Cs": 2.7,
                    "AmpContrast": 0.1,
                }
            }
        )
    )
    _write_mrc(at / "Pos_1_Vol.mrc", np.zeros((16, 24, 24)) + 1.0, 14.0)
    g = np.arange(8) - 4
    r2 = g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2
    _write_mrc(tmp_path / "t.mrc", np.exp(-r2 / 4.0), 14.0)
    _write_mrc(tmp_path / "m.mrc", (r2 <= 9).astype(np.float32), 14.0)
    out = tmp_path / "batch"
    argv = ["batch", "plan", "aretomo3", "--aretomo-dir", str(at), "-o", str(out)]
    argv += ["-t", str(tmp_path / "t.mrc"), "-m", str(tmp_path / "m.mrc")]
    argv += ["--particle-diameter", "100"]

    for bad in (["--voxel-size", "-3"], ["--dose-per-tilt", "-1"]):
        line = _one_error_line(*run([*argv, *bad], capsys)[::2])
        assert bad[0] in line
        assert not out.exists()

    code, _, err = run([*argv, "--write-metadata"], capsys)
    assert code == 0, err
    aln = [
        ln.split()
        for ln in files[".aln"].read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ][:31]
    tilts = np.array([float(r[-1]) for r in aln])
    ctf = np.loadtxt(files["_CTF.txt"])
    tlt = np.loadtxt(files["_TLT.txt"])
    acq, per_image = tlt[:, 1], tlt[:, 2]
    pre = np.array([per_image[acq < a].sum() for a in acq])
    order = np.argsort(tilts)
    md = out / "metadata"
    np.testing.assert_allclose(np.loadtxt(md / "Pos_1.tlt"), tilts[order])
    np.testing.assert_allclose(
        np.loadtxt(md / "Pos_1_defocus.txt"), ((ctf[:, 1] + ctf[:, 2]) / 2e4)[order]
    )
    np.testing.assert_allclose(np.loadtxt(md / "Pos_1_dose.txt"), pre[order])


# --------------------------------------------------------------------------------
# batch status / resume: squeue's array fields


def _fake_squeue(bin_dir: Path, rows: list[dict[str, str]]) -> None:
    """An squeue that fills ``-o`` fields as the real one does (man squeue).

    ``%F`` base job id of the array, ``%K`` array index, ``%A`` each element's own
    job id, ``%a`` the account, ``%i`` ``<base>_<index>``, ``%T`` the state.
    """
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "squeue"
    exe.write_text(
        f"#!{sys.executable}\n"
        "import re, sys\n"
        f"rows = {rows!r}\n"
        "fmt = sys.argv[sys.argv.index('-o') + 1]\n"
        "for r in rows:\n"
        "    print(re.sub(r'%([A-Za-z])', lambda m: r.get(m.group(1), '?'), fmt))\n"
    )
    exe.chmod(0o755)


def test_queue_states_uses_array_index_and_base_job_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Job 10 = array 0-3%2: elements 0 and 1 run (as job ids 11 and 12), 2 and 3
    wait. squeue was asked for '%A %a %T' (element id, account, state), so running
    tasks read as pending or vanished, and 'batch resume' resubmitted a running
    tomogram (seen on a real cluster)."""
    rows = [
        {"F": "10", "A": "11", "K": "0", "a": "(null)", "i": "10_0", "T": "RUNNING"},
        {"F": "10", "A": "12", "K": "1", "a": "(null)", "i": "10_1", "T": "RUNNING"},
        {"F": "10", "A": "10", "K": "2", "a": "(null)", "i": "10_2", "T": "PENDING"},
        {"F": "10", "A": "10", "K": "3", "a": "(null)", "i": "10_3", "T": "PENDING"},
    ]
    _fake_squeue(tmp_path / "bin", rows)
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + "/usr/bin:/bin")
    assert queue_states({10: [0, 1, 2, 3]}) == {
        0: "RUNNING",
        1: "RUNNING",
        2: "PENDING",
        3: "PENDING",
    }
    # Only element 1 is left, still running under its own id 12.
    _fake_squeue(tmp_path / "bin", [rows[1]])
    assert queue_states({10: [0, 1, 2, 3]}) == {1: "RUNNING"}


@pytest.mark.slurm
def test_queue_states_on_a_real_cluster(slurm_cluster: Any, tmp_path: Path) -> None:
    """sbatch an array 0-2%2 of sleeps; squeue must show 0 and 1 running, 2 queued."""
    script = tmp_path / "sleep.sh"
    script.write_text(
        "#!/bin/bash\n#SBATCH --array=0-2%2\n#SBATCH --cpus-per-task=1\n"
        f"#SBATCH --output={tmp_path}/%A_%a.out\nsleep 30\n"
    )
    proc = subprocess.run(
        ["sbatch", "--parsable", str(script)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    job = int(proc.stdout.strip().split(";")[0])
    try:
        deadline = time.monotonic() + 30
        states: dict[int, str] = {}
        while time.monotonic() < deadline:
            states = queue_states({job: [0, 1, 2]})
            if sorted(states.values()).count("RUNNING") == 2:
                break
            time.sleep(0.5)
        assert states == {0: "RUNNING", 1: "RUNNING", 2: "PENDING"}
    finally:
        subprocess.run(["scancel", str(job)], capture_output=True, check=False)
        # Let slurmd end the job steps before the fixture stops the daemons.
        slurm_cluster.wait_for_jobs([job], timeout_s=60.0)


try:  # the fixture of tests/slurm_cluster.py (skips where SLURM cannot start)
    from slurm_cluster import slurm_cluster_fixture  # noqa: F401
except ImportError:  # pragma: no cover
    pass
