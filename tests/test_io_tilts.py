"""Tilt-angle, defocus and dose readers on the real pytom/IMOD example files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tmfast.errors import FormatError
from tmfast.io.tilts import read_defocus, read_dose, read_tilt_angles
from tmfast.metadata import TiltSeriesMetadata

FORMATS = Path(__file__).resolve().parents[2] / "shared" / "data" / "formats"
PYTOM = FORMATS / "pytom_inputs"
IMOD = FORMATS / "imod_tlt_xf"
needs_shared = pytest.mark.skipif(
    not PYTOM.is_dir(), reason=f"shared example data not found at {FORMATS}"
)


@needs_shared
@pytest.mark.parametrize(
    "path",
    [
        PYTOM / "test_angles.rawtlt",
        IMOD / "global_no_local.tlt",
        IMOD / "test.rawtlt",
        IMOD / "cryoet_alignment_imod_1" / "tilt_1.tlt",
    ],
)
def test_real_tilt_files_match_loadtxt(path: Path) -> None:
    got = read_tilt_angles(path)
    assert isinstance(got, tuple) and all(type(a) is float for a in got)
    np.testing.assert_array_equal(got, np.atleast_1d(np.loadtxt(path)))


@needs_shared
def test_multi_column_tilt_file_uses_the_first_column() -> None:
    single = read_tilt_angles(PYTOM / "test_angles.rawtlt")
    multi = read_tilt_angles(str(PYTOM / "test_angles_multi_column.rawtlt"))
    assert multi == single
    assert len(single) == 35 and single[0] == -51.0 and single[-1] == 51.0


@needs_shared
def test_imod_defocus_v2_equals_the_nm_text_file_in_um() -> None:
    got = read_defocus(PYTOM / "test_imod.defocus")
    nm = np.loadtxt(PYTOM / "test_defocus.txt")
    assert len(got) == 35
    np.testing.assert_allclose(got, nm / 1000.0, rtol=1e-12)


@needs_shared
def test_text_defocus_in_nm_is_refused_as_a_unit_mistake() -> None:
    with pytest.raises(FormatError, match=r"test_defocus\.txt, line 1: .*nm"):
        read_defocus(PYTOM / "test_defocus.txt")


@needs_shared
def test_real_dose_file_and_metadata_from_real_files() -> None:
    dose = read_dose(PYTOM / "test_dose.txt")
    np.testing.assert_array_equal(dose, np.loadtxt(PYTOM / "test_dose.txt"))
    meta = TiltSeriesMetadata(
        tilt_angles_deg=read_tilt_angles(PYTOM / "test_angles.rawtlt"),
        defocus_um=read_defocus(PYTOM / "test_imod.defocus", n_tilts=35),
        dose_e_per_a2=read_dose(PYTOM / "test_dose.txt", n_tilts=35),
        voltage_kv=200.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.08,
    )
    assert meta.n_tilts == 35 and meta.has_ctf


def test_imod_defocus_v3_astigmatic_rows_are_averaged(tmp_path: Path) -> None:
    p = tmp_path / "ts.defocus"
    p.write_text(
        "1  0 0.0 0.0 0.0 3\n"
        "1 1 -3.0 -3.0 3000.0 3400.0 45.0\n"
        "2 2  0.0  0.0 2500.0 2700.0 40.0\n"
    )
    assert read_defocus(p) == pytest.approx((3.2, 2.6))
    q = tmp_path / "noastig.defocus"
    q.write_text("4 0 0.0 0.0 0.0 3\n1 1 -3.0 -3.0 3000.0 30.0\n2 2 0 0 2500 25.0\n")
    assert read_defocus(q) == pytest.approx((3.0, 2.5))  # phase-shift column ignored
    r = tmp_path / "v1.defocus"
    r.write_text("1 1 -3.0 -3.0 3000\n2 2 0.0 0.0 2800\n")
    assert read_defocus(r) == pytest.approx((3.0, 2.8))


def test_imod_defocus_errors_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "range.defocus"
    p.write_text("1 3 -3.0 3.0 3000 2\n")
    with pytest.raises(FormatError, match=r"range\.defocus, line 1: .*views 1-3"):
        read_defocus(p)
    q = tmp_path / "short.defocus"
    q.write_text("1 0 0.0 0.0 0.0 3\n1 1 -3.0 -3.0 3000.0\n")
    with pytest.raises(FormatError, match=r"short\.defocus, line 2: 5 columns"):
        read_defocus(q)
    v = tmp_path / "v0.defocus"
    v.write_text("1 1 0.0 0.0 3000.0 0\n")
    with pytest.raises(FormatError, match="version 0"):
        read_defocus(v)
    h = tmp_path / "header_only.defocus"
    h.write_text("1 0 0.0 0.0 0.0 3\n")
    with pytest.raises(FormatError, match="no defocus rows"):
        read_defocus(h)


def test_single_defocus_value_and_text_file(tmp_path: Path) -> None:
    assert read_defocus(3.5) == (3.5,)
    assert read_defocus("3.5", n_tilts=3) == (3.5, 3.5, 3.5)
    p = tmp_path / "df.txt"
    p.write_text("# defocus in um\n3.0\n\n3.1\n3.2\n")
    assert read_defocus(p) == (3.0, 3.1, 3.2)
    with pytest.raises(FormatError, match="3 defocus values for 4 tilts"):
        read_defocus(p, n_tilts=4)
    with pytest.raises(FormatError, match="implausibly large"):
        read_defocus(3000.0)
    bad = tmp_path / "bad.txt"
    bad.write_text("3.0\nabc\n")
    with pytest.raises(FormatError, match=r"bad\.txt, line 2: 'abc' is not a number"):
        read_defocus(bad)


def test_tilt_range_pairs_and_bad_tilt_input(tmp_path: Path) -> None:
    assert read_tilt_angles((-60, 60)) == (-60.0, 60.0)
    assert read_tilt_angles(["-45.5", "50"]) == (-45.5, 50.0)
    with pytest.raises(FormatError, match="MIN <= MAX"):
        read_tilt_angles((60, -60))
    with pytest.raises(FormatError, match="MIN MAX"):
        read_tilt_angles(("a", "b"))
    p = tmp_path / "bad.tlt"
    p.write_text("-60\n0\n120\n")
    with pytest.raises(FormatError, match=r"bad\.tlt, line 3: tilt angle 120"):
        read_tilt_angles(p)
    empty = tmp_path / "empty.tlt"
    empty.write_text("\n\n")
    with pytest.raises(FormatError, match="empty"):
        read_tilt_angles(empty)
    with pytest.raises(FormatError, match="not found"):
        read_tilt_angles(tmp_path / "missing.rawtlt")
    one = tmp_path / "one.tlt"
    one.write_text("-3\n0\n3\n")
    assert read_tilt_angles([str(one)]) == (-3.0, 0.0, 3.0)  # one-element list = file


def test_dose_errors(tmp_path: Path) -> None:
    p = tmp_path / "dose.txt"
    p.write_text("0\n3\n-1\n")
    with pytest.raises(FormatError, match=r"dose\.txt, line 3: negative dose"):
        read_dose(p)
    p.write_text("0\n3\n6\n")
    assert read_dose(p) == (0.0, 3.0, 6.0)
    with pytest.raises(FormatError, match="3 dose values for 2 tilts"):
        read_dose(p, n_tilts=2)


def test_imod_defocus_rows_are_taken_in_view_order(tmp_path: Path) -> None:
    """Rows out of view order were assigned to the tilts in file order; they are
    put in view order, and a view given twice is refused."""
    p = tmp_path / "shuffled.defocus"
    p.write_text("3 3 3.0 3.0 2600 2\n1 1 -3.0 -3.0 3000 2\n2 2 0.0 0.0 2800 2\n")
    assert read_defocus(p) == pytest.approx((3.0, 2.8, 2.6))
    d = tmp_path / "twice.defocus"
    d.write_text("1 1 -3.0 -3.0 3000 2\n1 1 -3.0 -3.0 3100 2\n")
    with pytest.raises(
        FormatError, match=r"twice\.defocus, line 2: view 1 appears twice"
    ):
        read_defocus(d)
