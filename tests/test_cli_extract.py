"""`tmfast extract` end to end on synthetic maps; outputs read back independently."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile
from test_extraction_candidates import (  # type: ignore[import-not-found]
    ORIGIN_ZYX,
    PLANTED,
    TOMO_ZYX,
    VOXEL_A,
    make_job,
)
from tmfast.cli import main
from tmfast.metadata import TiltSeriesMetadata

EXPECT_ZYX = np.array([p for p, _, _ in PLANTED]) + np.array(ORIGIN_ZYX)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out + cap.err


def _outputs(d: Path) -> set[str]:
    return {
        p.name
        for p in d.iterdir()
        if "_particles" in p.name or p.suffix in (".svg", ".png")
    }


def test_extract_relion5_star_plots_qc_imod(tmp_path: Path, capsys) -> None:
    job = make_job(tmp_path)
    code, out = run(["extract", "-j", str(job), "-n", "10", "--imod"], capsys)
    assert code == 0, out
    assert _outputs(tmp_path) == {
        "tomo_particles.star",
        "tomo_particles.mod",
        "tomo_extraction.svg",
        "tomo_extraction.png",
        "tomo_qc.png",
    }
    df = starfile.read(tmp_path / "tomo_particles.star")
    assert list(df.columns) == [
        "rlnCenteredCoordinateXAngst",
        "rlnCenteredCoordinateYAngst",
        "rlnCenteredCoordinateZAngst",
        "rlnAngleRot",
        "rlnAngleTilt",
        "rlnAnglePsi",
        "rlnLCCmax",
        "rlnCutOff",
        "rlnSearchStd",
        "rlnTomoTiltSeriesPixelSize",
        "rlnTomoName",
    ]
    assert len(df) == 3
    # Without RELION5 metadata: binning 1, pixel = voxel, centre = size / 2.
    nz, ny, nx = TOMO_ZYX
    xyz = EXPECT_ZYX[:, ::-1]
    np.testing.assert_allclose(
        df[
            [
                "rlnCenteredCoordinateXAngst",
                "rlnCenteredCoordinateYAngst",
                "rlnCenteredCoordinateZAngst",
            ]
        ].to_numpy(),
        (xyz - np.array([nx, ny, nz]) / 2) * VOXEL_A,
    )
    assert set(df["rlnTomoTiltSeriesPixelSize"]) == {VOXEL_A}
    assert set(df["rlnTomoName"]) == {"tomo"}
    for f in ("tomo_extraction.png", "tomo_qc.png"):
        assert (tmp_path / f).read_bytes()[:4] == b"\x89PNG"
    # imodmodel in a subprocess (it loops forever on a malformed file).
    code = (
        "import imodmodel, numpy as np, sys\n"
        f"m = imodmodel.ImodModel.from_file({str(tmp_path / 'tomo_particles.mod')!r})\n"
        "pts = np.concatenate([c.points for o in m.objects for c in o.contours])\n"
        "np.savetxt(sys.stdout, pts)\n"
        "print('flags', int(m.objects[0].header.flags.scattered), m.header.xmax,"
        " m.header.ymax, m.header.zmax)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = res.stdout.strip().splitlines()
    pts = np.loadtxt(lines[:-1])
    np.testing.assert_allclose(pts, xyz + np.array([0.5, 0.5, 0.0]), atol=1e-4)
    assert lines[-1].split() == ["flags", "1", str(nx), str(ny), str(nz)]


def test_extract_relion5_metadata_uses_tilt_series_pixel_size(tmp_path, capsys) -> None:
    md = TiltSeriesMetadata(
        tilt_angles_deg=(-60.0, 0.0, 60.0),
        tilt_series_pixel_size_a=2.5,
        binning=4.0,
        tomo_name="TS_07",
    )
    job = make_job(tmp_path, metadata=md)
    code, out = run(["extract", "-j", str(job), "-n", "10", "--no-plots"], capsys)
    assert code == 0, out
    df = starfile.read(tmp_path / "tomo_particles.star")
    assert set(df["rlnTomoTiltSeriesPixelSize"]) == {2.5}  # not the 10 Å voxel
    assert set(df["rlnTomoName"]) == {"TS_07"}  # RELION5's name from the metadata
    nz, ny, nx = TOMO_ZYX
    size_unbinned = np.array([nx, ny, nz]) * 4.0
    # RELION5 (tomogram_set.cpp): (x_vox * binning - SizeX / 2) * tilt-series pixel
    np.testing.assert_allclose(
        df[
            [
                "rlnCenteredCoordinateXAngst",
                "rlnCenteredCoordinateYAngst",
                "rlnCenteredCoordinateZAngst",
            ]
        ].to_numpy(),
        (EXPECT_ZYX[:, ::-1] * 4.0 - size_unbinned / 2) * 2.5,
    )


def test_extract_pytom_columns(tmp_path: Path, capsys) -> None:
    job = make_job(tmp_path)
    code, out = run(
        [
            "extract",
            "-j",
            str(job),
            "-n",
            "10",
            "--pytom-columns",
            "--no-plots",
            "--ignore_tomogram_mask",
        ],
        capsys,
    )
    assert code == 0, out
    df = starfile.read(tmp_path / "tomo_particles.star")
    assert list(df.columns) == [
        "rlnCoordinateX",
        "rlnCoordinateY",
        "rlnCoordinateZ",
        "rlnAngleRot",
        "rlnAngleTilt",
        "rlnAnglePsi",
        "rlnLCCmax",
        "rlnCutOff",
        "rlnSearchStd",
        "rlnDetectorPixelSize",
        "rlnMicrographName",
    ]
    np.testing.assert_array_equal(
        df[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(),
        EXPECT_ZYX[:, ::-1],
    )


def test_existing_output_refused_nothing_written(tmp_path: Path, capsys) -> None:
    job = make_job(tmp_path)
    (tmp_path / "tomo_qc.png").write_bytes(b"old")
    code, out = run(["extract", "-j", str(job), "-n", "10"], capsys)
    assert code == 2 and "--overwrite" in out and "Traceback" not in out
    assert not (tmp_path / "tomo_particles.star").exists()
    assert (tmp_path / "tomo_qc.png").read_bytes() == b"old"
    code, out = run(["extract", "-j", str(job), "-n", "10", "--overwrite"], capsys)
    assert code == 0, out
    assert (tmp_path / "tomo_qc.png").read_bytes()[:4] == b"\x89PNG"


def test_no_particle_above_cutoff_writes_empty_valid_star_exit_0(
    tmp_path, capsys, caplog
) -> None:
    """An honestly empty tomogram is a result (batches go on): exit 0 + warning."""
    job = make_job(tmp_path)
    with caplog.at_level("WARNING"):
        code, out = run(["extract", "-j", str(job), "-n", "10", "-c", "0.99"], capsys)
    assert code == 0, out
    warn = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(
        "no particle above the cutoff 0.99" in w and "lower -c" in w for w in warn
    )
    text = (tmp_path / "tomo_particles.star").read_text()
    assert "data_particles" in text and "_rlnLCCmax" in text
    blocks = starfile.read(tmp_path / "tomo_particles.star", always_dict=True)
    assert len(blocks["particles"]) == 0
    assert (tmp_path / "tomo_extraction.png").read_bytes()[:4] == b"\x89PNG"


def _no_outputs(d: Path) -> bool:
    return not any(
        p.name.startswith("tomo_particles")
        or p.suffix in (".png", ".svg", ".mod")
        or p.name.startswith(".tomo")
        for p in d.iterdir()
    )


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        (["--plot-bins", "0"], "--plot-bins 0 must be at least 1"),
        (["--particle-diameter", "-5"], "--particle-diameter -5 must be a positive"),
        (["--particle-diameter", "0"], "--particle-diameter 0 must be a positive"),
        (["--particle-diameter", "1e6"], "--particle-diameter 1e+06 Å is larger than"),
        (["--tophat-connectivity", "0"], "--tophat-connectivity 0 must be 1, 2 or 3"),
        (["--tophat-bins", "2"], "--tophat-bins 2 must be at least 8"),
        (["--number-of-false-positives", "0"], "--number-of-false-positives 0 must"),
        (["--number-of-false-positives", "-1"], "--number-of-false-positives -1 must"),
        (["-n", "0"], "--number-of-particles 0 must be at least 1"),
        (["-c", "nan"], "-c/--cut-off nan must be a finite score"),
    ],
)
def test_bad_option_one_line_exit_2_nothing_written(tmp_path, capsys, extra, want):
    job = make_job(tmp_path)
    argv = ["extract", "-j", str(job), "-n", "10", "--imod", *extra]
    code, out = run(argv, capsys)
    lines = [ln for ln in out.strip().splitlines() if ln]
    assert code == 2 and len(lines) == 1 and want in lines[0], out
    assert "Traceback" not in out
    assert _no_outputs(tmp_path)


def test_rerun_refused_before_any_work(tmp_path, capsys, caplog) -> None:
    """A second run into the same folder stops before extracting anything."""
    job = make_job(tmp_path)
    code, out = run(["extract", "-j", str(job), "-n", "10"], capsys)
    assert code == 0, out
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    caplog.clear()
    with caplog.at_level("INFO"):
        code, out = run(["extract", "-j", str(job), "-n", "10"], capsys)
    assert code == 2 and "output exists" in out and "--overwrite" in out
    assert not any("picks above cutoff" in r.getMessage() for r in caplog.records)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_failing_plot_leaves_no_partial_output(tmp_path, capsys, monkeypatch) -> None:
    """Outputs appear only when every file succeeded (no STAR without its plots)."""
    import tmfast.extraction.plots as plots

    def broken(*args: object, **kwargs: object) -> None:
        raise plots.ConfigError("plot failed on purpose")

    monkeypatch.setattr(plots, "plot_extraction", broken)
    job = make_job(tmp_path)
    code, out = run(["extract", "-j", str(job), "-n", "10", "--imod"], capsys)
    assert code == 2 and "plot failed on purpose" in out
    assert _no_outputs(tmp_path)


@pytest.mark.parametrize("problem", ["missing_scores", "mask_shape", "bad_json"])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, problem) -> None:
    job = make_job(tmp_path)
    argv = ["extract", "-j", str(job), "-n", "10"]
    if problem == "missing_scores":
        (tmp_path / "tomo_scores.mrc").unlink()
        want = "score map of job 'tomo' not found"
    elif problem == "mask_shape":
        with mrcfile.new(tmp_path / "mask.mrc") as m:
            m.set_data(np.ones((8, 8, 8), np.float32))
        argv += ["--tomogram-mask", str(tmp_path / "mask.mrc")]
        want = "matches neither the tomogram"
    else:
        job.write_text("{not json")
        want = "not a readable JSON job file"
    code, out = run(argv, capsys)
    lines = [ln for ln in out.strip().splitlines() if ln]
    assert code == 2 and len(lines) == 1 and want in lines[0], out
    assert not any(
        p.name.startswith("tomo_particles") or p.suffix in (".png", ".svg")
        for p in tmp_path.iterdir()
    )


def test_qc_picture_is_legible_size(tmp_path: Path, capsys) -> None:
    job = make_job(tmp_path)
    code, out = run(["extract", "-j", str(job), "-n", "10"], capsys)
    assert code == 0, out
    import matplotlib.image as mpimg

    img = mpimg.imread(tmp_path / "tomo_qc.png")
    assert img.shape[0] > 600 and img.shape[1] > 600
    # yellow circles are drawn: some pixels are strongly yellow
    rgb = img[..., :3]
    yellow = (rgb[..., 0] > 0.9) & (rgb[..., 1] > 0.7) & (rgb[..., 2] < 0.3)
    assert yellow.sum() > 50


def test_extract_with_relion5_tomograms_star(tmp_path: Path, capsys) -> None:
    # A tomograms.star written by starfile (independent writer); the job has no
    # RELION5 metadata, so the pixel size, binning and exact rlnTomoSize come from it.
    import pandas as pd

    job = make_job(tmp_path)
    size = (230, 190, 165)  # bin-1 size, not dims * binning
    starfile.write(
        {
            "global": pd.DataFrame(
                {
                    "rlnTomoName": ["tomo", "other"],
                    "rlnTomoTiltSeriesPixelSize": [2.5, 1.0],
                    "rlnTomoTomogramBinning": [4.0, 1.0],
                    "rlnTomoSizeX": [size[0], 10],
                    "rlnTomoSizeY": [size[1], 10],
                    "rlnTomoSizeZ": [size[2], 10],
                }
            )
        },
        tmp_path / "tomograms.star",
    )
    code, out = run(
        [
            "extract",
            "-j",
            str(job),
            "-n",
            "10",
            "--no-plots",
            "--relion5-tomograms-star",
            str(tmp_path / "tomograms.star"),
        ],
        capsys,
    )
    assert code == 0, out
    df = starfile.read(tmp_path / "tomo_particles.star")
    assert set(df["rlnTomoTiltSeriesPixelSize"]) == {2.5}
    np.testing.assert_allclose(
        df[[f"rlnCenteredCoordinate{c}Angst" for c in "XYZ"]].to_numpy(),
        (EXPECT_ZYX[:, ::-1] * 4.0 - np.array(size) / 2) * 2.5,
    )


def test_extract_pytom_job_rec_prefix_and_missing_tomogram(tmp_path, capsys) -> None:
    import json

    from test_extraction_candidates import _pytom_job  # type: ignore[import-not-found]

    p = _pytom_job(tmp_path, with_relion=True)
    d = json.loads(p.read_text())
    d["tomo_id"] = "rec_tomo"
    for k in ("scores", "angles"):
        (tmp_path / f"tomo_{k}.mrc").rename(tmp_path / f"rec_tomo_{k}.mrc")
    p.write_text(json.dumps(d))
    code, out = run(["extract", "-j", str(p), "-n", "10"], capsys)
    assert code == 0, out
    assert "QC picture skipped" in out  # rec_tomo.mrc does not exist
    df = starfile.read(tmp_path / "rec_tomo_particles.star")
    assert set(df["rlnTomoName"]) == {"tomo"}  # rec_ stripped for RELION5
    assert set(df["rlnTomoTiltSeriesPixelSize"]) == {2.5}
    assert (tmp_path / "rec_tomo_extraction.svg").exists()
    assert not (tmp_path / "rec_tomo_qc.png").exists()


def test_extract_tophat_filter_writes_its_plot(tmp_path: Path, capsys) -> None:
    job = make_job(tmp_path)
    code, out = run(
        [
            "extract",
            "-j",
            str(job),
            "-n",
            "10",
            "--tophat-filter",
            "--tophat-connectivity",
            "2",
            "--tophat-bins",
            "40",
        ],
        capsys,
    )
    assert code == 0, out
    df = starfile.read(tmp_path / "tomo_particles.star")
    np.testing.assert_array_equal(
        df[["rlnCenteredCoordinateZAngst"]].to_numpy()[:, 0],
        (EXPECT_ZYX[:, 0] - TOMO_ZYX[0] / 2) * VOXEL_A,
    )
    assert (tmp_path / "tomo_tophat.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "tomo_tophat.svg").stat().st_size > 1000
    code, out = run(
        [
            "extract",
            "-j",
            str(job),
            "-n",
            "10",
            "--tophat-connectivity",
            "4",
            "--tophat-filter",
            "--overwrite",
        ],
        capsys,
    )
    assert code == 2 and "--tophat-connectivity 4 must be 1, 2 or 3" in out


def test_missing_tomograms_star_refused_before_reading_maps(
    tmp_path, capsys, caplog
) -> None:
    job = make_job(tmp_path)
    missing = tmp_path / "nope" / "tomograms.star"
    with caplog.at_level("INFO"):
        code, out = run(
            [
                "extract",
                "-j",
                str(job),
                "-n",
                "10",
                "--relion5-tomograms-star",
                str(missing),
            ],
            capsys,
        )
    lines = [ln for ln in out.strip().splitlines() if ln]
    assert code == 2 and len(lines) == 1 and str(missing) in lines[0], out
    assert not any("picks above cutoff" in r.getMessage() for r in caplog.records)
    assert _no_outputs(tmp_path)
