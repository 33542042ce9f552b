"""`tmfast merge-stars`, `to-imod` and `roc` on real RELION5/pytom files and ours."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import starfile
from test_cli_extract import run  # type: ignore[import-not-found]
from test_extraction_candidates import TOMO_ZYX, make_job  # type: ignore[import-not-found]

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "formats"
PARTICLES = SHARED / "relion5_particles"
TOMOGRAMS = SHARED / "relion5_tomograms"
needs_shared = pytest.mark.skipif(
    not PARTICLES.is_dir(), reason="../shared/data/formats (real example files) absent"
)


def _imod_points(path: Path) -> tuple[np.ndarray, list[str], tuple[int, int, int]]:
    """Read a .mod with imodmodel in a subprocess (it can loop on a bad file)."""
    code = (
        "import imodmodel, numpy as np, sys\n"
        f"m = imodmodel.ImodModel.from_file({str(path)!r})\n"
        "pts = np.concatenate([c.points for o in m.objects for c in o.contours])\n"
        "print(m.header.xmax, m.header.ymax, m.header.zmax)\n"
        "print(int(all(o.header.flags.scattered for o in m.objects)))\n"
        "np.savetxt(sys.stdout, pts)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = res.stdout.strip().splitlines()
    dims = tuple(int(v) for v in lines[0].split())
    assert lines[1] == "1"
    return np.loadtxt(lines[2:]).reshape(-1, 3), lines, dims  # type: ignore[return-value]


@needs_shared
def test_merge_real_multiblock_relion5_files(tmp_path: Path, capsys) -> None:
    src = PARTICLES / "cylindra_Class3D_run_it025_data.star"
    a, b = tmp_path / "a.star", tmp_path / "b.star"
    shutil.copy(src, a)
    shutil.copy(src, b)
    out = tmp_path / "merged.star"
    code, text = run(["merge-stars", "-i", str(a), str(b), "-o", str(out)], capsys)
    assert code == 0, text
    ref = starfile.read(src)
    got = starfile.read(out)
    assert set(got) == {"general", "optics", "particles"}
    assert got["general"] == ref["general"]  # still a key-value block
    assert "loop_" not in out.read_text().split("data_general")[1].split("data_")[0]
    assert len(got["particles"]) == 2 * len(ref["particles"])
    assert len(got["optics"]) == len(ref["optics"])  # identical group shared
    np.testing.assert_allclose(
        got["particles"]["rlnCenteredCoordinateXAngst"].to_numpy(),
        np.tile(ref["particles"]["rlnCenteredCoordinateXAngst"].to_numpy(), 2),
    )
    assert list(got["particles"]["rlnTomoName"]) == 2 * list(
        ref["particles"]["rlnTomoName"]
    )


@needs_shared
def test_merge_pytom_output_strip_prefix_and_import_index(tmp_path, capsys) -> None:
    src = PARTICLES / "cryoboost_candidatesPytomRel5.star"
    out = tmp_path / "merged.star"
    code, text = run(
        [
            "merge-stars",
            "-i",
            str(src),
            str(src),
            "-o",
            str(out),
            "--strip-prefix",
            "Position_",
        ],
        capsys,
    )
    assert code == 0, text
    ref = starfile.read(src)
    got = starfile.read(out)
    assert len(got) == len(ref)  # same file given twice: de-duplicated
    assert set(got["rlnTomoName"]) == {"1_11.80Apx"}
    idx = tmp_path / "index.star"
    code, text = run(
        ["merge-stars", "--relion5-compat", "-i", str(src), "-o", str(idx)], capsys
    )
    assert code == 0, text
    df = starfile.read(idx)
    assert list(df.columns) == ["rlnTomoName", "rlnTomoImportParticleFile"]
    assert df["rlnTomoName"].tolist() == ["Position_1_11.80Apx"]
    assert df["rlnTomoImportParticleFile"].tolist() == [str(src.resolve())]


@needs_shared
def test_merge_mismatched_columns_is_one_line_error(tmp_path, capsys) -> None:
    out = tmp_path / "m.star"
    code, text = run(
        [
            "merge-stars",
            "-i",
            str(PARTICLES / "cylindra_Picks_particles.star"),
            str(PARTICLES / "cryoboost_candidatesPytomRel5.star"),
            "-o",
            str(out),
        ],
        capsys,
    )
    lines = text.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "columns differ" in lines[0]
    assert not out.exists()


@needs_shared
def test_to_imod_real_relion5_particles_with_tomograms_star(tmp_path, capsys) -> None:
    # Real RELION5 Class3D output: optics block holds the tilt-series pixel size,
    # rlnOrigin*Angst shifts apply; geometry from the cylindra tomograms.star.
    src = PARTICLES / "cylindra_Class3D_run_it025_data.star"
    tomos = TOMOGRAMS / "cylindra_fixture" / "tomograms.star"
    code, text = run(
        [
            "to-imod",
            "-i",
            str(src),
            "--tomograms-star",
            str(tomos),
            "-o",
            str(tmp_path),
            "--radius-px",
            "4",
        ],
        capsys,
    )
    assert code == 0, text
    ref = starfile.read(src)
    parts, optics = ref["particles"], ref["optics"]
    gtab = starfile.read(tomos)
    for name in sorted(set(parts["rlnTomoName"])):
        pts, _, dims = _imod_points(tmp_path / f"{name}.mod")
        sel = parts[parts["rlnTomoName"] == name]
        row = gtab[gtab["rlnTomoName"] == name].iloc[0]
        px = float(optics["rlnTomoTiltSeriesPixelSize"].iloc[0])
        b = float(row["rlnTomoTomogramBinning"])
        size = np.array(
            [row["rlnTomoSizeX"], row["rlnTomoSizeY"], row["rlnTomoSizeZ"]], dtype=float
        )
        a = (
            sel[[f"rlnCenteredCoordinate{c}Angst" for c in "XYZ"]].to_numpy()
            - sel[[f"rlnOrigin{c}Angst" for c in "XYZ"]].to_numpy()
        )
        # RELION5: x_unbinned = centred / pixel + SizeX / 2; voxel = x_unbinned / bin
        vox = (a / px + size / 2) / b
        np.testing.assert_allclose(pts, vox + np.array([0.5, 0.5, 0.0]), atol=1e-3)
        assert dims == tuple(round(v / b) for v in size)


@needs_shared
def test_to_imod_real_pytom_output_with_dims(tmp_path, capsys) -> None:
    src = PARTICLES / "cryoboost_candidatesPytomRel5.star"
    code, text = run(
        ["to-imod", "-i", str(src), "--dims", "512", "512", "256", "-o", str(tmp_path)],
        capsys,
    )
    assert code == 0, text
    df = starfile.read(src)
    pts, _, dims = _imod_points(tmp_path / "Position_1_11.80Apx.mod")
    assert dims == (512, 512, 256)
    a = df[[f"rlnCenteredCoordinate{c}Angst" for c in "XYZ"]].to_numpy()
    np.testing.assert_allclose(
        pts, a / 11.8 + np.array([256, 256, 128]) + [0.5, 0.5, 0], atol=1e-3
    )


def test_to_imod_round_trips_our_extraction(tmp_path: Path, capsys) -> None:
    from test_cli_extract import EXPECT_ZYX  # type: ignore[import-not-found]

    job = make_job(tmp_path)
    code, text = run(["extract", "-j", str(job), "-n", "10", "--no-plots"], capsys)
    assert code == 0, text
    nz, ny, nx = TOMO_ZYX
    out = tmp_path / "mods"
    code, text = run(
        [
            "to-imod",
            "-i",
            str(tmp_path / "tomo_particles.star"),
            "--dims",
            str(nx),
            str(ny),
            str(nz),
            "-o",
            str(out),
        ],
        capsys,
    )
    assert code == 0, text
    pts, _, _ = _imod_points(out / "tomo.mod")
    np.testing.assert_allclose(pts, EXPECT_ZYX[:, ::-1] + [0.5, 0.5, 0.0], atol=1e-4)


def test_to_imod_bad_input(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.star"
    bad.write_text("data_particles\n\nloop_\n_rlnAngleRot #1\n10.0\n")
    code, text = run(
        ["to-imod", "-i", str(bad), "--dims", "10", "10", "10", "-o", str(tmp_path)],
        capsys,
    )
    lines = text.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "no block with" in lines[0]
    code, text = run(["to-imod", "-i", str(bad), "-o", str(tmp_path)], capsys)
    assert code == 2 and "--dims" in text
    assert not list(tmp_path.glob("*.mod"))


def test_roc_cli_on_synthetic_job(tmp_path: Path, capsys) -> None:
    # 40 planted peaks on N(0, 0.01) background; ROC should find about 40.
    rng = np.random.default_rng(5)
    pos = set()
    planted = []
    while len(planted) < 40:
        p = tuple(int(v) for v in rng.integers(4, 28, 3))
        if all(sum((a - b) ** 2 for a, b in zip(p, q, strict=True)) > 49 for q in pos):
            pos.add(p)
            planted.append((p, float(rng.normal(0.08, 0.005)), 3))
    job = make_job(tmp_path, planted=planted)
    code, text = run(
        ["roc", "-j", str(job), "-n", "120", "--particle-diameter", "40"], capsys
    )
    assert code == 0, text
    line = next(ln for ln in text.splitlines() if "estimated true particles" in ln)
    n_est = float(line.split("estimated true particles ")[1].split()[0])
    thr = float(line.split("best threshold ")[1].split()[0])
    assert 30 <= n_est <= 50, line
    assert 0.045 < thr < 0.075, line
    assert (tmp_path / "tomo_roc.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "tomo_roc.svg").stat().st_size > 1000


def test_to_imod_pytom_columns_and_sphere_size(tmp_path: Path, capsys) -> None:
    from test_cli_extract import EXPECT_ZYX  # type: ignore[import-not-found]

    job = make_job(tmp_path)
    code, text = run(
        ["extract", "-j", str(job), "-n", "10", "--no-plots", "--pytom-columns"], capsys
    )
    assert code == 0, text
    nz, ny, nx = TOMO_ZYX
    out = tmp_path / "mods"
    code, text = run(
        [
            "to-imod",
            "-i",
            str(tmp_path / "tomo_particles.star"),
            "--dims",
            str(nx),
            str(ny),
            str(nz),
            "-o",
            str(out),
            "--particle-diameter",
            "80",
        ],
        capsys,
    )
    assert code == 0, text
    pts, _, dims = _imod_points(out / "tomo.mod")
    assert dims == (nx, ny, nz)
    np.testing.assert_allclose(pts, EXPECT_ZYX[:, ::-1] + [0.5, 0.5, 0.0], atol=1e-4)
    code = (
        "import imodmodel\n"
        f"m = imodmodel.ImodModel.from_file({str(out / 'tomo.mod')!r})\n"
        "print(m.objects[0].header.pdrawsize)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert res.stdout.split() == ["4"]  # 80 Å / 2 / 10 Å voxel


@needs_shared
def test_merge_file_without_particle_table(tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.star"
    code, text = run(
        [
            "merge-stars",
            "-i",
            str(TOMOGRAMS / "pytom_job009" / "tomograms.star"),
            "-o",
            str(out),
        ],
        capsys,
    )
    lines = text.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "no particle table" in lines[0]
    assert not out.exists()


IMOD_REAL = SHARED / "imod_mod" / "point_sizes_example.mod"


@pytest.mark.skipif(not IMOD_REAL.is_file(), reason="../shared IMOD examples absent")
def test_to_imod_output_has_the_layout_of_a_real_3dmod_point_model(tmp_path, capsys):
    # A real 3dmod scattered-point model (with sphere sizes) and ours, read by
    # imodmodel: both scattered + open objects with a sphere radius, units nm.
    job = make_job(tmp_path)
    code, text = run(
        ["extract", "-j", str(job), "-n", "10", "--no-plots", "--imod"], capsys
    )
    assert code == 0, text
    script = (
        "import imodmodel, sys\n"
        "for f in sys.argv[1:]:\n"
        "    m = imodmodel.ImodModel.from_file(f)\n"
        "    o = m.objects[0].header\n"
        "    print(int(o.flags.scattered), int(o.flags.open), int(o.pdrawsize > 0),"
        " m.header.units)\n"
    )
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(IMOD_REAL),
            str(tmp_path / "tomo_particles.mod"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    real, ours = res.stdout.strip().splitlines()
    assert real == ours == "1 1 1 -9"


def test_merge_stars_mrc_input_is_named_binary(tmp_path: Path, capsys) -> None:
    import mrcfile

    job = make_job(tmp_path)
    code, text = run(["extract", "-j", str(job), "-n", "10", "--no-plots"], capsys)
    assert code == 0, text
    mrc = tmp_path / "tmpl.mrc"
    with mrcfile.new(mrc) as m:
        m.set_data(np.ones((24, 24, 24), np.float32))
    out = tmp_path / "merged.star"
    argv = ["merge-stars", "-i", str(mrc), str(tmp_path / "tomo_particles.star")]
    code, text = run([*argv, "-o", str(out)], capsys)
    lines = text.strip().splitlines()
    assert code == 2 and len(lines) == 1, text
    assert lines[0].endswith(f"{mrc}: not a STAR file (binary data; an MRC map?)")
    assert len(lines[0]) < 100 + len(str(mrc)) and not out.exists()


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        (["--particle-diameter", "-4"], "--particle-diameter -4 must be a positive"),
        (["--radius-px", "0"], "--radius-px 0 must be a positive sphere radius"),
        (["--binning", "0"], "--binning 0 must be > 0"),
        (["--dims", "0", "10", "10"], "--dims (0, 10, 10): the tomogram size X Y Z"),
    ],
)
def test_to_imod_bad_option_in_cli_terms(tmp_path: Path, capsys, extra, want) -> None:
    star = tmp_path / "p.star"
    star.write_text(
        "data_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
        "_rlnCoordinateZ #3\n_rlnMicrographName #4\n1 2 3 tomo\n"
    )
    argv = ["to-imod", "-i", str(star), "-o", str(tmp_path)]
    if "--dims" not in extra:
        argv += ["--dims", "10", "10", "10"]
    code, text = run([*argv, *extra], capsys)
    lines = text.strip().splitlines()
    assert code == 2 and len(lines) == 1 and want in lines[0], text
    assert "radius_px" not in text and "Traceback" not in text
    assert not list(tmp_path.glob("*.mod"))


def _roc_job(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    pos: list[tuple[int, ...]] = []
    planted = []
    while len(planted) < 40:
        p = tuple(int(v) for v in rng.integers(4, 28, 3))
        if all(sum((a - b) ** 2 for a, b in zip(p, q, strict=True)) > 49 for q in pos):
            pos.append(p)
            planted.append((p, float(rng.normal(0.08, 0.005)), 3))
    return make_job(tmp_path, planted=planted)


def test_roc_show_plot_without_display_says_so_and_writes(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    job = _roc_job(tmp_path)
    argv = ["roc", "-j", str(job), "-n", "120", "--particle-diameter", "40"]
    code, text = run([*argv, "--show-plot"], capsys)
    assert code == 0, text
    assert "--show-plot: cannot open a window" in text
    assert str(tmp_path / "tomo_roc.png") in text
    assert (tmp_path / "tomo_roc.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        (["-n", "5"], "-n/--number-of-particles 5: the ROC fit needs at least 20"),
        (["--bins", "3"], "--bins 3 must be at least 6"),
        (["--gaussian-peak", "20"], "--gaussian-peak 20 must be in [0, 20)"),
        (["--particle-diameter", "-1"], "--particle-diameter -1 must be a positive"),
    ],
)
def test_roc_bad_option_refused_before_work(tmp_path, capsys, extra, want) -> None:
    job = make_job(tmp_path)
    code, text = run(["roc", "-j", str(job), "-n", "60", *extra], capsys)
    lines = text.strip().splitlines()
    assert code == 2 and len(lines) == 1 and want in lines[0], text
    assert not list(tmp_path.glob("*_roc.*"))


def test_roc_rerun_refused_before_work(tmp_path: Path, capsys, caplog) -> None:
    job = _roc_job(tmp_path)
    argv = ["roc", "-j", str(job), "-n", "120", "--particle-diameter", "40"]
    code, text = run(argv, capsys)
    assert code == 0, text
    caplog.clear()
    with caplog.at_level("INFO"):
        code, text = run(argv, capsys)
    assert code == 2 and "output exists" in text
    assert not any("picks above cutoff" in r.getMessage() for r in caplog.records)


@needs_shared
def test_merge_renames_optics_groups_that_share_a_name_but_differ(
    tmp_path: Path, capsys
) -> None:
    """Two files whose optics groups have the same rlnOpticsGroupName but another
    pixel size: both groups are kept, the second renamed, and each file's particles
    point at their own group."""
    src = PARTICLES / "cylindra_Class3D_run_it025_data.star"
    ref = starfile.read(src)
    other = {k: v.copy() for k, v in ref.items()}
    px = other["optics"]["rlnTomoTiltSeriesPixelSize"].astype(float) + 0.1
    other["optics"]["rlnTomoTiltSeriesPixelSize"] = px
    a, b = tmp_path / "a.star", tmp_path / "b.star"
    shutil.copy(src, a)
    starfile.write(other, b)
    out = tmp_path / "merged.star"
    code, text = run(["merge-stars", "-i", str(a), str(b), "-o", str(out)], capsys)
    assert code == 0, text
    got = starfile.read(out)
    n_groups = len(ref["optics"])
    names = list(got["optics"]["rlnOpticsGroupName"])
    assert len(names) == 2 * n_groups and len(set(names)) == len(names)
    assert names[:n_groups] == list(ref["optics"]["rlnOpticsGroupName"])
    groups = got["particles"]["rlnOpticsGroup"].to_numpy()
    n = len(ref["particles"])
    assert set(groups[:n]) <= set(range(1, n_groups + 1))
    assert set(groups[n:]) <= set(range(n_groups + 1, 2 * n_groups + 1))
    assert "renamed" in text
