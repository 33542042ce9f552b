"""RELION5 importer on the real fixtures in ../shared/data/formats/relion5_tomograms.

``starfile`` is the independent oracle for the values; derived projects (shuffled
rows, file naming variants, missing files) are written in tmp_path.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from tmfast.batch.relion5 import (
    normalise_tomogram_stem,
    read_relion5_metadata,
    read_relion5_project,
)
from tmfast.errors import FormatError
from tmfast.io.star import read_star

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIX = SHARED / "data" / "formats" / "relion5_tomograms"

needs_fixtures = pytest.mark.skipif(
    not FIX.is_dir(), reason=f"shared RELION5 fixtures not found at {FIX}"
)
starfile = pytest.importorskip("starfile")


def _oracle(ts_star: Path) -> dict[str, np.ndarray]:
    df = starfile.read(ts_star)
    order = np.argsort(df["rlnTomoNominalStageTiltAngle"].to_numpy(), kind="stable")
    out = {"tilt": df["rlnTomoNominalStageTiltAngle"].to_numpy()[order]}
    if "rlnDefocusU" in df:
        out["defocus"] = ((df["rlnDefocusU"] + df["rlnDefocusV"]) / 2).to_numpy()[order]
    if "rlnMicrographPreExposure" in df:
        out["dose"] = df["rlnMicrographPreExposure"].to_numpy()[order]
    return out


@needs_fixtures
def test_star_reader_matches_starfile_on_every_fixture() -> None:
    files = sorted(FIX.rglob("*.star"))
    assert len(files) >= 8
    for f in files:
        ours = read_star(f, as_text=True)  # the importers' view: values as written
        theirs = starfile.read(f, always_dict=True)
        assert set(theirs) == set(ours), f
        for name, df in theirs.items():
            block = ours[name]
            if hasattr(df, "columns"):
                assert list(df.columns) == list(block), (f, name)
                for col in df.columns:
                    ref = df[col].to_numpy()
                    got = block[col]
                    assert got.dtype.kind == "U" and len(got) == len(df), (f, col)
                    if ref.dtype.kind in "if":
                        np.testing.assert_allclose(np.array(got, float), ref)
                    else:
                        assert [str(v) for v in ref] == got.tolist(), (f, col)


@needs_fixtures
def test_pytom_job009_metadata_equals_starfile_oracle() -> None:
    star = FIX / "pytom_job009" / "tomograms.star"
    md = read_relion5_metadata(star, "tomo200528_107")
    ref = _oracle(FIX / "pytom_job009" / "tilt_series" / "tomo200528_107.star")
    assert md.n_tilts == 35 == len(ref["tilt"])
    np.testing.assert_allclose(md.tilt_angles_deg, ref["tilt"])
    np.testing.assert_allclose(md.defocus_um, ref["defocus"] / 1e4)  # Å -> µm
    np.testing.assert_allclose(md.dose_e_per_a2, ref["dose"])
    glob = starfile.read(star)
    row = glob[glob["rlnTomoName"] == "tomo200528_107"].iloc[0]
    assert md.voltage_kv == row["rlnVoltage"] == 200.0
    assert md.spherical_aberration_mm == row["rlnSphericalAberration"]
    assert md.amplitude_contrast == row["rlnAmplitudeContrast"]
    assert md.defocus_handedness == int(row["rlnTomoHand"]) == -1
    assert md.tilt_series_pixel_size_a == row["rlnTomoTiltSeriesPixelSize"]
    assert md.binning == pytest.approx(row["rlnTomoTomogramBinning"])


@needs_fixtures
def test_row_order_is_not_trusted(tmp_path: Path) -> None:
    job = tmp_path / "Tomograms" / "job009"
    shutil.copytree(FIX / "pytom_job009", job)
    ts = job / "tilt_series" / "tomo200528_107.star"
    df = starfile.read(ts)
    rng = np.random.default_rng(1)
    shuffled = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    starfile.write({"tomo200528_107": shuffled}, ts, overwrite=True)
    a = read_relion5_metadata(FIX / "pytom_job009" / "tomograms.star", "tomo200528_107")
    b = read_relion5_metadata(job / "tomograms.star", "tomo200528_107")
    assert a == b
    assert list(b.tilt_angles_deg) == sorted(b.tilt_angles_deg)


@needs_fixtures
def test_warp_defocus_in_micrometres_is_detected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    star = FIX / "cryoboost_warp" / "tomograms.star"
    with caplog.at_level(logging.WARNING, logger="tmfast.batch.relion5"):
        md = read_relion5_metadata(star, "Position_1")
    ref = _oracle(FIX / "cryoboost_warp" / "tilt_series" / "Position_1.star")
    np.testing.assert_allclose(md.defocus_um, ref["defocus"])  # already µm
    np.testing.assert_allclose(md.dose_e_per_a2, ref["dose"])
    assert 3 < np.median(md.defocus_um) < 7
    assert "look like µm" in caplog.text
    assert md.amplitude_contrast == 0.1 and md.tilt_series_pixel_size_a is None


@needs_fixtures
def test_cylindra_minimal_tilt_series_and_block_name_mismatch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="tmfast.batch.relion5"):
        md = read_relion5_metadata(FIX / "cylindra_fixture" / "tomograms.star", "TS_01")
    assert md.tilt_angles_deg == (-60.1, -30.1, 0.1, 30.3, 59.9)
    assert md.defocus_um is None and md.dose_e_per_a2 is None
    assert "does not match rlnTomoName" in caplog.text


@needs_fixtures
def test_pre_relion5_and_legacy_layouts_are_refused_clearly() -> None:
    with pytest.raises(FormatError, match="pre-RELION5"):
        read_relion5_project(FIX / "relion_pre5_test" / "tilt_series.star")
    with pytest.raises(FormatError, match="pre-RELION5"):
        read_relion5_metadata(
            FIX / "relion_pre5_test" / "tilt_series.star", "220728_TS_01"
        )
    legacy = FIX / "cryoet_alignment_warp" / "matching_tomograms.star"
    with pytest.raises(FormatError, match="rlnTomoNominalStageTiltAngle"):
        read_relion5_metadata(legacy, "24jul16a_Position_27_1.tomostar")


@needs_fixtures
def test_missing_tilt_series_star_is_one_clear_line() -> None:
    star = FIX / "pytom_job009" / "tomograms.star"
    with pytest.raises(FormatError) as err:
        read_relion5_metadata(star, "tomo200528_100")
    msg = str(err.value)
    assert "\n" not in msg and "tomo200528_100" in msg and "not found" in msg
    with pytest.raises(FormatError, match="no tomogram named 'nope'"):
        read_relion5_metadata(star, "nope")
    entries = {e.tomo_name: e for e in read_relion5_project(star)}
    assert len(entries) == 10
    assert entries["tomo200528_107"].metadata_source is not None
    assert entries["tomo200528_107"].voxel_size_a == pytest.approx(1.724 * 8.12065)
    assert entries["tomo200528_107"].size_xyz == (4000, 4000, 2000)
    bad = entries["tomo200528_100"].problems
    assert any("tilt-series STAR" in p for p in bad)
    assert any("no reconstruction found" in p for p in bad)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rec_TS_01.mrc", ("TS_01", None)),
        ("rec_TS_01_half1.mrc", ("TS_01", "half1")),
        ("rec_Position_3_half2.mrc", ("Position_3", "half2")),
        ("Position_1_10.00Apx.mrc", ("Position_1", None)),
        ("Position_16_3_Vol.mrc", ("Position_16_3", None)),
        ("Position_16_3_EVN_Vol.mrc", ("Position_16_3", "half1")),
        ("Position_16_3_ODD_Vol.mrc", ("Position_16_3", "half2")),
        ("TS_1.rec", ("TS_1", None)),
    ],
)
def test_normalise_tomogram_stem(name: str, expected: tuple[str, str | None]) -> None:
    assert normalise_tomogram_stem(name) == expected


def _write_project(root: Path, names: list[str], recs: list[str]) -> Path:
    (root / "tilt_series").mkdir(parents=True)
    (root / "tomograms").mkdir()
    rows = []
    for n in names:
        (root / "tilt_series" / f"{n}.star").write_text(
            f"data_{n}\n\nloop_\n_rlnTomoNominalStageTiltAngle #1\n"
            "_rlnMicrographPreExposure #2\n0.0 0.0\n-3.0 3.0\n3.0 6.0\n"
        )
        rows.append(f"{n} tilt_series/{n}.star 300 2.7 0.1 1.5 4 elsewhere/rec_{n}.mrc")
    for r in recs:
        (root / "tomograms" / r).write_bytes(b"")
    (root / "tomograms.star").write_text(
        "# version 50001\n\ndata_global\n\nloop_\n_rlnTomoName\n"
        "_rlnTomoTiltSeriesStarFile\n_rlnVoltage\n_rlnSphericalAberration\n"
        "_rlnAmplitudeContrast\n_rlnTomoTiltSeriesPixelSize\n_rlnTomoTomogramBinning\n"
        "_rlnTomoReconstructedTomogram\n" + "\n".join(rows) + "\n"
    )
    return root / "tomograms.star"


def test_reconstructions_paired_by_name(tmp_path: Path) -> None:
    names = ["TS_01", "Position_3", "TS_1", "TS_04", "TS_05"]
    recs = [
        "rec_TS_01.mrc",
        "rec_TS_01_half1.mrc",
        "rec_TS_01_half2.mrc",
        "Position_3_10.00Apx.mrc",
        "TS_1.mrc",
        "20250101_TS_04.mrc",
    ]
    star = _write_project(tmp_path, names, recs)
    got = {e.tomo_name: e for e in read_relion5_project(star)}
    assert list(got) == names  # one entry each, tomograms.star order
    t = tmp_path / "tomograms"
    assert got["TS_01"].tomogram == t / "rec_TS_01.mrc"  # halves not taken
    assert got["Position_3"].tomogram == t / "Position_3_10.00Apx.mrc"
    assert got["TS_1"].tomogram == t / "TS_1.mrc"  # not rec_TS_01, not TS_1x
    assert got["TS_04"].tomogram == t / "20250101_TS_04.mrc"
    assert got["TS_05"].tomogram is None
    assert got["TS_05"].problems and "no reconstruction" in got["TS_05"].problems[0]
    assert all(e.ok for k, e in got.items() if k != "TS_05")
    assert got["TS_01"].voxel_size_a == pytest.approx(6.0)

    with_halves = read_relion5_project(star, include_halves=True)
    ids = [e.tomo_id for e in with_halves]
    assert ids.count("TS_01_half1") == 1 and ids.count("TS_01_half2") == 1
    half1 = next(e for e in with_halves if e.tomo_id == "TS_01_half1")
    assert half1.tomogram == t / "rec_TS_01_half1.mrc" and half1.tomo_name == "TS_01"
    assert len(with_halves) == len(names) + 2


def test_ambiguous_reconstructions_are_a_problem(tmp_path: Path) -> None:
    star = _write_project(tmp_path, ["TS_04"], ["a_TS_04.mrc", "b_TS_04.mrc"])
    (entry,) = read_relion5_project(star)
    assert entry.tomogram is None
    assert "several reconstructions match" in entry.problems[0]


def test_reconstruction_without_metadata_is_a_problem(tmp_path: Path) -> None:
    star = _write_project(
        tmp_path, ["TS_01"], ["rec_TS_01.mrc", "rec_TS_09.mrc", "rec_TS_09_half1.mrc"]
    )
    entries = read_relion5_project(star)
    assert [(e.tomo_name, e.ok) for e in entries] == [("TS_01", True), ("TS_09", False)]
    assert "without a row in tomograms.star" in entries[1].problems[0]


@needs_fixtures
def test_fomo_aretomo_alignment_table_without_tilt_series_files() -> None:
    star = FIX / "fomo_aretomo_align" / "tomograms.star"
    glob = starfile.read(star)
    entries = read_relion5_project(star)
    assert [e.tomo_name for e in entries] == list(glob["rlnTomoName"])
    for e, (_, row) in zip(entries, glob.iterrows(), strict=True):
        assert e.voxel_size_a == pytest.approx(
            row["rlnTomoTiltSeriesPixelSize"] * row["rlnTomoTomogramBinning"]
        )
        assert e.size_xyz == (
            row["rlnTomoSizeX"],
            row["rlnTomoSizeY"],
            row["rlnTomoSizeZ"],
        )
        assert e.metadata_source is None
        assert any("tilt-series STAR" in p for p in e.problems)


def test_numeric_tomogram_names_keep_their_digits(tmp_path: Path) -> None:
    star = _write_project(tmp_path, ["007", "12"], ["rec_007.mrc", "12.mrc"])
    got = {e.tomo_name: e for e in read_relion5_project(star)}
    assert list(got) == ["007", "12"]
    assert got["007"].tomogram == tmp_path / "tomograms" / "rec_007.mrc"
    md = read_relion5_metadata(star, "007")
    assert md.tomo_name == "007" and md.tilt_angles_deg == (-3.0, 0.0, 3.0)
    assert md.dose_e_per_a2 == (3.0, 0.0, 6.0)
