"""RELION5 centred-Å convention, its inverse, and tomograms.star geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import starfile
from tmfast.errors import FormatError
from tmfast.extraction.star_columns import (
    centred_angstrom_to_voxels,
    read_relion5_tomograms,
    relion5_tomogram_geometry,
    strip_prefix,
    voxels_to_centred_angstrom,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "formats"
JOB009 = SHARED / "relion5_tomograms" / "pytom_job009" / "tomograms.star"


def _relion5_centred(x_vox, binning, size_unbinned, ps):
    """RELION5 tomogram_set.cpp: (position in bin-1 pixels - size / 2) * pixel size."""
    return (np.asarray(x_vox, float) * binning - np.asarray(size_unbinned) / 2.0) * ps


def test_centred_matches_relion5_formula_and_inverts() -> None:
    rng = np.random.default_rng(0)
    vox = rng.uniform(0, 490, (50, 3))
    size = (4000.0, 4000.0, 2000.0)
    a = voxels_to_centred_angstrom(
        vox,
        tomo_size_xyz_vox=(1, 1, 1),
        pixel_size_a=1.724,
        binning=8.12065,
        tomo_size_xyz_unbinned=size,
    )
    np.testing.assert_allclose(a, _relion5_centred(vox, 8.12065, size, 1.724))
    back = centred_angstrom_to_voxels(
        a, pixel_size_a=1.724, binning=8.12065, tomo_size_xyz_unbinned=size
    )
    np.testing.assert_allclose(back, vox, atol=1e-9)
    # Without RELION5 metadata: binning 1, voxel size, centre at size / 2.
    a = voxels_to_centred_angstrom(
        [[32, 20, 10]], tomo_size_xyz_vox=(64, 40, 20), pixel_size_a=10.0
    )
    np.testing.assert_allclose(a, [[0.0, 0.0, 0.0]])


def test_pytom_convention_differs_by_one_unbinned_pixel() -> None:
    # pytom --relion5-compat with RELION5 metadata: centre = dims * binning / 2 - 1.
    vox = np.array([[100.0, 200.0, 50.0]])
    dims = np.array([492, 492, 246])
    ps, b = 1.724, 8.12065
    ours = voxels_to_centred_angstrom(
        vox, tomo_size_xyz_vox=dims, pixel_size_a=ps, binning=b
    )
    pytom = (vox * b - (dims * b / 2 - 1)) * ps
    np.testing.assert_allclose(pytom - ours, ps)


def test_strip_prefix() -> None:
    assert strip_prefix("rec_tomo200528_107") == "tomo200528_107"
    assert strip_prefix("tomo_rec_1") == "tomo_rec_1"
    assert strip_prefix("rec_x", "") == "rec_x"


@pytest.mark.skipif(not JOB009.is_file(), reason="../shared example files absent")
def test_read_real_relion5_tomograms_star() -> None:
    geo = read_relion5_tomograms(JOB009)
    ref = starfile.read(JOB009)
    assert sorted(geo) == sorted(ref["rlnTomoName"])
    g = geo["tomo200528_107"]
    row = ref[ref["rlnTomoName"] == "tomo200528_107"].iloc[0]
    assert g.tilt_series_pixel_size_a == row["rlnTomoTiltSeriesPixelSize"]
    assert g.binning == row["rlnTomoTomogramBinning"]
    assert g.size_xyz_unbinned == (
        row["rlnTomoSizeX"],
        row["rlnTomoSizeY"],
        row["rlnTomoSizeZ"],
    )
    # pytom-style matching: the tomogram stem ends with rlnTomoName
    assert relion5_tomogram_geometry(JOB009, "rec_tomo200528_107").tomo_name == (
        "tomo200528_107"
    )
    with pytest.raises(FormatError, match="0 rows match"):
        relion5_tomogram_geometry(JOB009, "tomo999")


def test_tomograms_star_without_pixel_size(tmp_path: Path) -> None:
    p = tmp_path / "t.star"
    p.write_text("data_global\n\nloop_\n_rlnTomoName #1\nTS_01\n")
    with pytest.raises(FormatError, match="rlnTomoTiltSeriesPixelSize"):
        read_relion5_tomograms(p)


def test_tomograms_star_rows_checked(tmp_path: Path) -> None:
    p = tmp_path / "t.star"
    p.write_text(
        "# version 30001\n\ndata_global\n\nloop_\n_rlnTomoName #1\n"
        "_rlnTomoTiltSeriesPixelSize #2\n007 1.35\n"
    )
    with pytest.raises(FormatError, match="pre-RELION5"):
        read_relion5_tomograms(p)
    p.write_text(p.read_text().replace("30001", "50001"))
    assert read_relion5_tomograms(p)["007"].tilt_series_pixel_size_a == 1.35
    p.write_text(p.read_text().replace("1.35", "nan"))
    with pytest.raises(FormatError, match="rlnTomoTiltSeriesPixelSize value 'nan'"):
        read_relion5_tomograms(p)
    p.write_text(p.read_text().replace("data_global", "data_tomos"))
    with pytest.raises(FormatError, match="no data_global block"):
        read_relion5_tomograms(p)
    p.write_text("data_global\n\nloop_\n_rlnTomoSizeX #1\n100\n")
    with pytest.raises(FormatError, match="data_global has no rlnTomoName"):
        read_relion5_tomograms(p)
