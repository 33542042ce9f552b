"""A user's journey through `extract`, `merge-stars`, `to-imod` and `roc`.

Score maps are synthetic (pytom-match-pick job JSON beside them, no matching run);
every output is read back with independent tools (starfile, imodmodel in a
subprocess, a brute-force numpy picker, scipy rotations) and compared with what
docs/extraction.md and docs/conventions.md promise. Real RELION5 files come from
the ``shared`` folder beside the checkout and are skipped when it is absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
import starfile
from scipy.spatial.transform import Rotation
from tmfast.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "formats"
PARTICLES = SHARED / "relion5_particles"
TOMOGRAMS = SHARED / "relion5_tomograms"
STEP_DEG = 90.0  # 48 rotations: a tiny angle set
N_ROT = 48


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data file {path} not present (shared folder absent)")
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out + cap.err


def _one_error_line(out: str) -> str:
    # INFO log lines (timestamped, on stderr) may precede the error
    lines = [ln for ln in out.splitlines() if ln.strip() and " INFO " not in ln]
    assert len(lines) == 1, out
    assert lines[0].startswith("tmfast: error: "), out
    assert "Traceback" not in out
    return lines[0]


def make_pytom_job(
    folder: Path,
    *,
    tomo_id: str = "rec_TS_01",
    shape_xyz: tuple[int, int, int] = (40, 36, 32),
    search_xyz: tuple[tuple[int, int], ...] | None = None,
    voxel_a: float = 10.0,
    diameter_a: float = 40.0,
    tomogram_mask: str | None = None,
    ts_metadata: dict[str, Any] | None = None,
    seed: int = 7,
) -> Path:
    """Write a pytom-match-pick style job with noise maps and a few strong peaks."""
    folder.mkdir(parents=True, exist_ok=True)
    search = search_xyz or tuple((0, n) for n in shape_xyz)
    sz_zyx = tuple(e - s for s, e in search[::-1])
    rng = np.random.default_rng(seed)
    scores = (rng.standard_normal(sz_zyx) * 0.05).astype(np.float32)
    angles = rng.integers(0, N_ROT, sz_zyx).astype(np.float32)
    for i in range(6):  # planted peaks well inside the region
        z, y, x = (int(rng.integers(3, n - 3)) for n in sz_zyx)
        scores[z, y, x] = 0.9 - 0.05 * i
    for name, arr in (("scores", scores), ("angles", angles)):
        mrcfile.write(
            folder / f"{tomo_id}_{name}.mrc", arr, voxel_size=voxel_a, overwrite=True
        )
    data: dict[str, Any] = {
        "tomogram": f"/nowhere/{tomo_id}.mrc",
        "template": "t.mrc",
        "mask": "m.mrc",
        "output_dir": "/nowhere",
        "tomo_id": tomo_id,
        "tomo_shape": list(shape_xyz),
        "search_x": list(search[0]),
        "search_y": list(search[1]),
        "search_z": list(search[2]),
        "voxel_size": voxel_a,
        "rotation_file": STEP_DEG,
        "rotational_symmetry": 1,
        "n_rotations": N_ROT,
        "particle_diameter": diameter_a,
        "tomogram_mask": tomogram_mask,
        "job_key": "0",
        "leader": None,
        "job_stats": {
            "search_space": int(np.prod(sz_zyx)) * N_ROT,
            "variance": 0.05**2,
            "std": 0.05,
        },
        "pytom_tm_version_number": "0.14.0",
        "ts_metadata": ts_metadata,
    }
    job = folder / f"{tomo_id}_job.json"
    job.write_text(json.dumps(data))
    return job


def brute_force_picks(
    scores: np.ndarray, n: int, radius_vox: float, cutoff: float | None, mask=None
) -> list[tuple[int, int, int, float]]:
    """argmax, then set a sphere to -inf; border int(r) on all faces (the oracle)."""
    w = scores.astype(np.float64).copy()
    if mask is not None:
        w[mask <= 0] = -np.inf
    b = int(radius_vox)
    if b:
        w[:b] = w[-b:] = -np.inf
        w[:, :b] = w[:, -b:] = -np.inf
        w[:, :, :b] = w[:, :, -b:] = -np.inf
    zz, yy, xx = np.indices(w.shape)
    out = []
    while len(out) < n:
        i = int(np.argmax(w))
        v = w.flat[i]
        if not np.isfinite(v) or (cutoff is not None and v <= cutoff):
            break
        z, y, x = (int(c) for c in np.unravel_index(i, w.shape))
        out.append((z, y, x, float(v)))
        w[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= radius_vox**2] = -np.inf
    return out


def read_imod_points(path: Path) -> np.ndarray:
    """(x, y, z) points of an IMOD model, read by imodmodel in a subprocess."""
    code = (
        "import imodmodel, sys\n"
        "df = imodmodel.read(sys.argv[1])\n"
        "print(df[['x', 'y', 'z']].to_json(orient='values'))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return np.array(json.loads(r.stdout), dtype=np.float64).reshape(-1, 3)


# --- extract: STAR against a brute-force picker and the documented conventions


def test_extract_star_matches_brute_force_picks_and_angle_conventions(
    tmp_path: Path, capsys
) -> None:
    # sub-region search, a tomogram mask, RELION5 metadata (pixel 2.5 Å, bin 4)
    shape_xyz = (40, 36, 32)
    search = ((4, 36), (3, 33), (2, 30))
    mask = np.ones(shape_xyz[::-1], np.float32)
    mask[:, :, 25:] = 0  # exclude x >= 25 of the full tomogram
    job = make_pytom_job(
        tmp_path,
        shape_xyz=shape_xyz,
        search_xyz=search,
        tomogram_mask=str(tmp_path / "mask.mrc"),
        ts_metadata={"tilt_series_pixel_size": 2.5, "binning": 4.0},
    )
    mrcfile.write(tmp_path / "mask.mrc", mask, voxel_size=10.0)
    code, out = run(
        ["extract", "-j", str(job), "-n", "40", "-c", "-1", "--no-plots"], capsys
    )
    assert code == 0, out
    df = starfile.read(tmp_path / "rec_TS_01_particles.star")
    scores = mrcfile.read(tmp_path / "rec_TS_01_scores.mrc")
    amap = mrcfile.read(tmp_path / "rec_TS_01_angles.mrc")
    origin = np.array([s for s, _ in search[::-1]])
    sub = mask[
        origin[0] : origin[0] + scores.shape[0],
        origin[1] : origin[1] + scores.shape[1],
        origin[2] : origin[2] + scores.shape[2],
    ]
    picks = brute_force_picks(scores, 40, 40.0 / 2 / 10.0, None, sub)
    assert len(df) == len(picks) > 10
    from tmfast.geometry.angles import angle_set

    angle_list = np.asarray(angle_set(STEP_DEG))
    nx, ny, nz = shape_xyz
    for (z, y, x, v), (_, row) in zip(picks, df.iterrows(), strict=True):
        zf, yf, xf = np.array([z, y, x]) + origin
        # RELION5: (x_vox * binning - size * binning / 2) * tilt-series pixel
        expect = [
            (c * 4.0 - n * 4.0 / 2) * 2.5 for c, n in ((xf, nx), (yf, ny), (zf, nz))
        ]
        got = [row[f"rlnCenteredCoordinate{a}Angst"] for a in "XYZ"]
        np.testing.assert_allclose(got, expect)
        assert row["rlnLCCmax"] == pytest.approx(v, abs=1e-6)
        phi, theta, psi = angle_list[round(float(amap[z, y, x]))]
        m_pytom = Rotation.from_euler("zxz", [phi, theta, psi]).as_matrix()
        m_star = Rotation.from_euler(
            "ZYZ",
            [row["rlnAngleRot"], row["rlnAngleTilt"], row["rlnAnglePsi"]],
            degrees=True,
        ).as_matrix()
        # conventions.md: RELION's A = Euler_angles2matrix(rot, tilt, psi) = M;
        # RELION's matrix is the transpose of scipy's intrinsic ZYZ matrix
        np.testing.assert_allclose(m_star.T, m_pytom, atol=1e-9)
    assert set(df["rlnTomoName"]) == {"TS_01"}
    assert set(df["rlnTomoTiltSeriesPixelSize"]) == {2.5}
    assert set(df["rlnCutOff"]) == {-1.0}


# --- roc: the job's mask is found where extraction finds it


def _roc_job(tmp_path: Path, mask_entry: str | None) -> tuple[Path, np.ndarray]:
    folder = tmp_path / "results"
    job = make_pytom_job(
        folder, shape_xyz=(32, 32, 32), diameter_a=30.0, tomogram_mask=mask_entry
    )
    mask = np.ones((32, 32, 32), np.float32)
    mask[:, :, :12] = 0
    mrcfile.write(folder / "mask.mrc", mask, voxel_size=10.0)
    return job, mask


def test_roc_background_uses_the_job_mask_relative_to_the_job_file(
    tmp_path: Path, monkeypatch
) -> None:
    from tmfast.extraction.roc import score_map_background

    job, mask = _roc_job(tmp_path, "mask.mrc")
    # run from another folder: the relative mask is found beside the job file,
    # as extraction finds it (pytom records paths relative to where it ran)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (n, mean, std), table = score_map_background(job, n_particles=20)
    scores = mrcfile.read(job.parent / "rec_TS_01_scores.mrc").astype(np.float64)
    inside = scores[mask > 0]
    assert n == inside.size
    assert mean == pytest.approx(inside.mean(), rel=1e-9)
    assert std == pytest.approx(inside.std(), rel=1e-9)
    assert (table.positions_zyx[:, 2] >= 12).all()


def test_roc_cli_runs_from_another_folder_and_with_an_array_mask_job(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    job, _ = _roc_job(tmp_path, "mask.mrc")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    code, out = run(["roc", "-j", str(job), "-n", "20"], capsys)
    assert code == 0, out
    png = job.parent / "rec_TS_01_roc.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    # a job whose mask was an in-memory array: roc goes on without it, as extract
    d = json.loads(job.read_text())
    d["tomogram_mask"] = "<array>"
    job.write_text(json.dumps(d))
    code, out = run(["roc", "-j", str(job), "-n", "20", "--overwrite"], capsys)
    assert code == 0, out


def test_roc_with_too_few_picks_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys
) -> None:
    job, _ = _roc_job(tmp_path, None)
    # a 280 Å sphere in a 32-voxel box leaves a border of 14: only a few picks
    code, out = run(
        ["roc", "-j", str(job), "-n", "20", "--particle-diameter", "280"], capsys
    )
    line = _one_error_line(out)
    assert code == 2 and "picks" in line
    assert not list(job.parent.glob("*_roc.*"))


# --- merge-stars / to-imod: tomogram names are text


def _numeric_names(tmp_path: Path) -> tuple[Path, Path]:
    src = _need(PARTICLES / "cylindra_Picks_particles.star").read_text()
    tomos = _need(TOMOGRAMS / "cylindra_fixture" / "tomograms.star").read_text()
    parts = tmp_path / "picks.star"
    parts.write_text(src.replace("TS_01", "001").replace("TS_02", "002"))
    star = tmp_path / "tomograms.star"
    star.write_text(tomos.replace("TS_01", "001").replace("TS_02", "002"))
    return parts, star


def test_merge_stars_keeps_numeric_tomogram_names(tmp_path: Path, capsys) -> None:
    parts, _ = _numeric_names(tmp_path)
    out_star = tmp_path / "merged.star"
    code, out = run(["merge-stars", "-i", str(parts), "-o", str(out_star)], capsys)
    assert code == 0, out
    got = starfile.read(out_star, parse_as_string=["rlnTomoName"])
    ref = starfile.read(parts, parse_as_string=["rlnTomoName"])
    assert got["rlnTomoName"].tolist() == ref["rlnTomoName"].tolist()
    assert ref["rlnTomoName"].tolist()[0] == "001"
    index = tmp_path / "index.star"
    code, out = run(
        ["merge-stars", "--import-index", "-i", str(parts), "-o", str(index)], capsys
    )
    assert code == 0, out
    got = starfile.read(index, parse_as_string=["rlnTomoName"])
    assert got["rlnTomoName"].tolist() == ["001"]  # one row per file, first name


def test_merge_stars_keeps_numeric_optics_group_names(tmp_path: Path, capsys) -> None:
    src = _need(PARTICLES / "cylindra_Refine3D_run_it050_data.star").read_text()
    f = tmp_path / "refine.star"
    f.write_text(src.replace(" TS_01 ", " 01 ").replace(" TS_02 ", " 02 "))
    out_star = tmp_path / "merged.star"
    code, out = run(["merge-stars", "-i", str(f), "-o", str(out_star)], capsys)
    assert code == 0, out
    got = starfile.read(out_star, parse_as_string=["rlnOpticsGroupName"])
    assert got["optics"]["rlnOpticsGroupName"].tolist() == ["01", "02"]


def test_to_imod_finds_numeric_tomogram_names_in_tomograms_star(
    tmp_path: Path, capsys
) -> None:
    parts, tomos = _numeric_names(tmp_path)
    out_dir = tmp_path / "models"
    code, out = run(
        [
            "to-imod",
            "-i",
            str(parts),
            "--tomograms-star",
            str(tomos),
            "-o",
            str(out_dir),
        ],
        capsys,
    )
    assert code == 0, out
    assert sorted(p.name for p in out_dir.iterdir()) == ["001.mod", "002.mod"]
    # independent inversion: voxel = centred / pixel + size / 2 (binning 1), and
    # IMOD points sit at (x + 0.5, y + 0.5, z)
    ref = starfile.read(parts, parse_as_string=["rlnTomoName"])
    rows = ref[ref["rlnTomoName"] == "001"]
    xyz_a = rows[[f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]].to_numpy()
    vox = xyz_a / 10.52 + np.array([84, 136, 44]) / 2
    np.testing.assert_allclose(
        read_imod_points(out_dir / "001.mod"),
        vox + np.array([0.5, 0.5, 0.0]),
        atol=1e-3,
    )


# --- bad inputs: one line, exit 2, nothing written


def test_output_path_under_a_file_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    job = make_pytom_job(tmp_path / "job")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    star = _need(PARTICLES / "cylindra_Picks_particles.star")
    cases = [
        ["extract", "-j", str(job), "-n", "5", "-o", str(a_file)],
        ["extract", "-j", str(job), "-n", "5", "-o", str(a_file / "sub")],
        ["roc", "-j", str(job), "-n", "20", "-o", str(a_file)],
        ["merge-stars", "-i", str(star), "-o", str(a_file / "m.star")],
        ["merge-stars", "-i", str(star), "-o", str(tmp_path / "job"), "--overwrite"],
        ["to-imod", "-i", str(star), "--dims", "84", "136", "44", "-o", str(a_file)],
    ]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for argv in cases:
        code, out = run(argv, capsys)
        line = _one_error_line(out)
        assert code == 2, (argv, out)
        assert "folder" in line, line
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert a_file.read_text() == "not a folder"


def test_tomograms_star_of_another_reconstruction_is_refused(
    tmp_path: Path, capsys
) -> None:
    star = _need(TOMOGRAMS / "pytom_job009" / "tomograms.star")
    # rlnTomoName tomo200528_107: 1.724 Å x binning 8.12065 = 14.0 Å, 4000x4000x2000
    job = make_pytom_job(tmp_path / "a", tomo_id="rec_tomo200528_107", voxel_a=10.0)
    code, out = run(
        ["extract", "-j", str(job), "-n", "5", "--relion5-tomograms-star", str(star)],
        capsys,
    )
    line = _one_error_line(out)
    assert code == 2 and "14" in line and "10" in line, line
    assert not list(job.parent.glob("*_particles.*"))
    # right voxel size, but a 40 x 36 x 32 tomogram is not the 493 x 493 x 246 one
    job = make_pytom_job(tmp_path / "b", tomo_id="rec_tomo200528_107", voxel_a=14.0)
    code, out = run(
        ["extract", "-j", str(job), "-n", "5", "--relion5-tomograms-star", str(star)],
        capsys,
    )
    line = _one_error_line(out)
    assert code == 2 and "rlnTomoSize" in line, line
    assert not list(job.parent.glob("*_particles.*"))


def test_tomograms_star_of_the_matched_tomogram_is_used(tmp_path: Path, capsys) -> None:
    star = _need(TOMOGRAMS / "cylindra_fixture" / "tomograms.star")
    # TS_01: 10.52 Å, binning 1, 84 x 136 x 44
    job = make_pytom_job(
        tmp_path,
        shape_xyz=(84, 136, 44),
        search_xyz=((20, 60), (40, 80), (4, 40)),
        voxel_a=10.52,
    )
    code, out = run(
        [
            "extract", "-j", str(job), "-n", "10", "-c", "-1", "--no-plots",
            "--relion5-tomograms-star", str(star),
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, out
    df = starfile.read(tmp_path / "rec_TS_01_particles.star")
    scores = mrcfile.read(tmp_path / "rec_TS_01_scores.mrc")
    picks = brute_force_picks(scores, 10, 40.0 / 2 / 10.52, None)
    vox = np.array([(x + 20, y + 40, z + 4) for z, y, x, _ in picks], np.float64)
    np.testing.assert_allclose(
        df[[f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]].to_numpy(),
        (vox - np.array([84, 136, 44]) / 2) * 10.52,
    )


def test_merge_stars_refuses_a_particles_block_without_coordinates(
    tmp_path: Path, capsys
) -> None:
    star = _need(PARTICLES / "cylindra_Picks_particles.star")
    index = tmp_path / "index.star"
    code, out = run(
        ["merge-stars", "--import-index", "-i", str(star), "-o", str(index)], capsys
    )
    assert code == 0, out
    # the import index is no particle table: merging it is refused by name
    merged = tmp_path / "merged.star"
    code, out = run(["merge-stars", "-i", str(index), "-o", str(merged)], capsys)
    line = _one_error_line(out)
    assert code == 2 and str(index) in line and "rlnCenteredCoordinate" in line
    assert not merged.exists()


def test_to_imod_of_an_empty_extraction_says_so(tmp_path: Path, capsys, caplog) -> None:
    job = make_pytom_job(tmp_path)
    code, out = run(
        ["extract", "-j", str(job), "-n", "5", "-c", "0.99", "--no-plots"], capsys
    )
    assert code == 0, out
    star = tmp_path / "rec_TS_01_particles.star"
    assert len(starfile.read(star)) == 0
    with caplog.at_level("WARNING"):
        code, out = run(
            [
                "to-imod",
                "-i",
                str(star),
                "--dims",
                "40",
                "36",
                "32",
                "-o",
                str(tmp_path / "m"),
            ],
            capsys,
        )
    assert code == 0, out
    assert any("no particles" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "m").exists()


def test_to_imod_warns_about_points_outside_the_tomogram(
    tmp_path: Path, capsys, caplog
) -> None:
    # cylindra's hand-made fixture: rows at y = 765 Å and -728 Å lie beyond the
    # 136 x 10.52 Å tomogram of its tomograms.star; a wrong geometry is said aloud
    star = _need(PARTICLES / "cylindra_Picks_particles.star")
    tomos = _need(TOMOGRAMS / "cylindra_fixture" / "tomograms.star")
    ref = starfile.read(star)
    rows = ref[ref["rlnTomoName"] == "TS_01"]
    y_vox = rows["rlnCenteredCoordinateYAngst"].to_numpy() / 10.52 + 136 / 2
    n_out = int(((y_vox < -0.5) | (y_vox > 135.5)).sum())
    assert n_out == 2
    with caplog.at_level("WARNING"):
        code, out = run(
            [
                "to-imod",
                "-i",
                str(star),
                "--tomograms-star",
                str(tomos),
                "-o",
                str(tmp_path),
            ],
            capsys,
        )
    assert code == 0, out
    msgs = [r.getMessage() for r in caplog.records if "outside" in r.getMessage()]
    assert len(msgs) == 1 and f"{n_out} of 3 points of TS_01" in msgs[0], msgs
    # our own extraction is inside its tomogram: no warning
    caplog.clear()
    job = make_pytom_job(tmp_path / "job")
    code, out = run(["extract", "-j", str(job), "-n", "5", "--no-plots"], capsys)
    assert code == 0, out
    with caplog.at_level("WARNING"):
        code, out = run(
            [
                "to-imod", "-i", str(job.parent / "rec_TS_01_particles.star"),
                "--dims", "40", "36", "32", "-o", str(tmp_path / "own"),
            ],
            capsys,
        )  # fmt: skip
    assert code == 0, out
    assert not [r for r in caplog.records if "outside" in r.getMessage()]


def test_to_imod_without_input_files_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    code, out = run(
        ["to-imod", "--dims", "10", "10", "10", "-o", str(tmp_path / "m")], capsys
    )
    line = _one_error_line(out)
    assert code == 2 and "no input files" in line
    assert not (tmp_path / "m").exists()


def _relion_import(index: Path) -> list[str]:
    """What relion_tomo_import_coordinates does with an index (RELION 5 source):
    per row, read the whole file; a file with rlnTomoName must start with the
    row's name, else every particle gets the row's name. Returns the names."""
    rows = starfile.read(index, parse_as_string=["rlnTomoName"])
    out: list[str] = []
    names, files = rows["rlnTomoName"], rows["rlnTomoImportParticleFile"]
    for name, f in zip(names, files, strict=True):
        df = starfile.read(f, always_dict=True, parse_as_string=["rlnTomoName"])
        part = df["particles"]
        if "rlnTomoName" in part:
            assert part["rlnTomoName"].iloc[0] == name, (f, name)
            out += part["rlnTomoName"].tolist()
        else:
            out += [name] * len(part)
    return out


def test_import_index_is_what_relion_imports(tmp_path: Path, capsys) -> None:
    multi = _need(PARTICLES / "cylindra_Picks_particles.star")  # TS_01 and TS_02
    job = make_pytom_job(tmp_path / "job")
    code, out = run(["extract", "-j", str(job), "-n", "5", "--no-plots"], capsys)
    assert code == 0, out
    ours = job.parent / "rec_TS_01_particles.star"
    index = tmp_path / "index.star"
    code, out = run(
        [
            "merge-stars",
            "--import-index",
            "-i",
            str(multi),
            str(ours),
            "-o",
            str(index),
        ],
        capsys,
    )
    assert code == 0, out
    expect = starfile.read(multi)["rlnTomoName"].tolist() + ["TS_01"] * len(
        starfile.read(ours)
    )
    assert _relion_import(index) == expect  # every particle once, right names
    # names RELION would compare verbatim cannot be stripped in an index
    renamed = tmp_path / "rec_names.star"
    renamed.write_text(multi.read_text().replace("TS_0", "rec_TS_0"))
    code, out = run(
        [
            "merge-stars", "--import-index", "--strip-prefix", "rec_",
            "-i", str(renamed), "-o", str(tmp_path / "i2.star"),
        ],
        capsys,
    )  # fmt: skip
    line = _one_error_line(out)
    assert code == 2 and "rec_TS_01" in line and "without" in line
    assert not (tmp_path / "i2.star").exists()
    # pytom's default columns (rlnMicrographName) for two tomograms: refused
    code, out = run(
        ["extract", "-j", str(job), "-n", "5", "--no-plots", "--pytom-columns",
         "-o", str(tmp_path / "py")],
        capsys,
    )  # fmt: skip
    assert code == 0, out
    two = tmp_path / "two.star"
    text = (tmp_path / "py" / "rec_TS_01_particles.star").read_text()
    head, rows = text.split("rlnMicrographName #11\n")
    lines = rows.strip().splitlines()
    lines[-1] = lines[-1].replace("rec_TS_01", "rec_TS_02")
    two.write_text(head + "rlnMicrographName #11\n" + "\n".join(lines) + "\n")
    assert set(starfile.read(two)["rlnMicrographName"]) == {"rec_TS_01", "rec_TS_02"}
    code, out = run(
        [
            "merge-stars",
            "--import-index",
            "-i",
            str(two),
            "-o",
            str(tmp_path / "i3.star"),
        ],
        capsys,
    )
    line = _one_error_line(out)
    assert code == 2 and "2 tomograms" in line


def test_merge_stars_refuses_2d_stacks_with_3d_subtomograms(
    tmp_path: Path, capsys
) -> None:
    src = _need(PARTICLES / "cylindra_Class3D_run_it025_data.star")
    text = src.read_text()
    assert "_rlnTomoSubTomosAre2DStacks                       1" in text
    three_d = tmp_path / "subtomos3d.star"
    three_d.write_text(
        text.replace(
            "_rlnTomoSubTomosAre2DStacks                       1",
            "_rlnTomoSubTomosAre2DStacks 0",
        )
    )
    out_star = tmp_path / "m.star"
    code, out = run(
        ["merge-stars", "-i", str(src), str(three_d), "-o", str(out_star)], capsys
    )
    line = _one_error_line(out)
    assert code == 2 and "data_general" in line and str(three_d) in line
    assert not out_star.exists()
    # the same kind merges, one data_general kept
    same = tmp_path / "same.star"
    same.write_text(text)
    code, out = run(
        ["merge-stars", "-i", str(src), str(same), "-o", str(out_star)], capsys
    )
    assert code == 0, out
    got = starfile.read(out_star)
    assert int(got["general"]["rlnTomoSubTomosAre2DStacks"]) == 1
    assert len(got["particles"]) == 2 * len(starfile.read(src)["particles"])


def _imod_header(path: Path) -> tuple[float, int]:
    """(pixel size in nm, sphere radius in pixels) via imodmodel in a subprocess."""
    code = (
        "import imodmodel, sys\n"
        "m = imodmodel.ImodModel.from_file(sys.argv[1])\n"
        "print(m.header.pixelsize, m.objects[0].header.pdrawsize)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    size, radius = r.stdout.split()
    return float(size), int(radius)


def test_to_imod_voxel_table_radius_uses_the_tomograms_star_voxel(
    tmp_path: Path, capsys
) -> None:
    tomos = _need(TOMOGRAMS / "cylindra_fixture" / "tomograms.star")  # 10.52 Å
    star = tmp_path / "voxels.star"
    star.write_text(
        "data_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
        "_rlnCoordinateZ #3\n_rlnTomoName #4\n10 20 5 TS_01\n"
    )
    code, out = run(
        [
            "to-imod", "-i", str(star), "--tomograms-star", str(tomos),
            "--particle-diameter", "200", "-o", str(tmp_path / "m"),
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, out
    size_nm, radius = _imod_header(tmp_path / "m" / "TS_01.mod")
    assert size_nm == pytest.approx(1.052, rel=1e-6)
    assert radius == round(200 / 2 / 10.52)
    np.testing.assert_allclose(
        read_imod_points(tmp_path / "m" / "TS_01.mod"), [[10.5, 20.5, 5]]
    )
    # no voxel size anywhere: refused instead of a 100-voxel sphere
    code, out = run(
        [
            "to-imod", "-i", str(star), "--dims", "84", "136", "44",
            "--particle-diameter", "200", "-o", str(tmp_path / "n"),
        ],
        capsys,
    )  # fmt: skip
    line = _one_error_line(out)
    assert code == 2 and "--radius-px" in line
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize(
    "change",
    [
        {"job_stats": {}},
        {"job_stats": {"search_space": "x", "variance": 1.0, "std": 1.0}},
        {"search_x": [10]},
        {"particle_diameter": "big"},
        {"rotational_symmetry": "two"},
        {"ts_metadata": {"tilt_series_pixel_size": "x"}},
    ],
)
def test_malformed_pytom_job_is_one_line_exit_2(tmp_path: Path, capsys, change) -> None:
    job = make_pytom_job(tmp_path / "job")
    data = json.loads(job.read_text())
    data.update(change)
    job.write_text(json.dumps(data))
    for argv in (
        ["extract", "-j", str(job), "-n", "5"],
        ["roc", "-j", str(job), "-n", "20"],
    ):
        code, out = run([*argv, "-o", str(tmp_path / "out")], capsys)
        line = _one_error_line(out)
        assert code == 2 and str(job) in line, out
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "change",
    [
        {"voxel_size_a": "abc"},
        {"stats": {}},
        {"search_shape_zyx": [1]},
        {"n_rotations": "x"},
    ],
)
def test_malformed_tmfast_job_is_one_line_exit_2(
    tmp_path: Path, capsys, change
) -> None:
    from tmfast.extraction.pytom_job import load_job

    pytom = make_pytom_job(tmp_path / "job")
    job, _ = load_job(pytom)  # a valid job, written in tmfast's own format
    data = json.loads(json.dumps(job.to_dict()))
    assert "tomo_shape_zyx" in data
    data.update(change)
    own = tmp_path / "job" / "own_job.json"
    own.write_text(json.dumps(data))
    code, out = run(
        ["extract", "-j", str(own), "-n", "5", "-o", str(tmp_path / "o")], capsys
    )
    line = _one_error_line(out)
    assert code == 2 and str(own) in line, out
    assert not (tmp_path / "o").exists()


def test_overwrite_removes_the_earlier_runs_outputs_it_does_not_write(
    tmp_path: Path, capsys
) -> None:
    """A rerun with --overwrite and fewer outputs (no --imod, --no-plots) must not
    leave the earlier run's .mod and plots beside its new STAR file."""
    job = make_pytom_job(tmp_path)
    code, out = run(["extract", "-j", str(job), "-n", "5", "--imod"], capsys)
    assert code == 0, out
    stem = tmp_path / "rec_TS_01"
    old = [Path(f"{stem}{s}") for s in ("_particles.mod", "_extraction.png")]
    assert all(p.is_file() for p in old)
    code, out = run(
        ["extract", "-j", str(job), "-n", "3", "--no-plots", "--overwrite"], capsys
    )
    assert code == 0, out
    assert len(starfile.read(Path(f"{stem}_particles.star"))) == 3
    assert not any(p.exists() for p in old)
    left = [p.name for p in tmp_path.glob("rec_TS_01_*")]
    assert not [n for n in left if n.endswith((".mod", ".png", ".svg"))], left
