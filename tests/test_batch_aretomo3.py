"""AreTomo3 importer on the real fixtures in ../shared/data/formats/aretomo3.

Oracles are computed here independently (numpy over the raw columns); layouts the
public fixtures do not cover (dark frames with a _CTF.txt, -OutImod 1/2 folders)
are assembled in tmp_path from the real .aln files and the source-derived formats.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from tmfast.batch.aretomo3 import read_aln, read_aretomo3, read_aretomo3_project
from tmfast.errors import FormatError

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIX = SHARED / "data" / "formats" / "aretomo3"
pytestmark = pytest.mark.skipif(
    not FIX.is_dir(), reason=f"shared AreTomo3 fixtures not found at {FIX}"
)

OPTICS = {
    "voltage_kv": 300.0,
    "spherical_aberration_mm": 2.7,
    "amplitude_contrast": 0.07,
}


def _table(path: Path) -> np.ndarray:
    rows = [
        ln.split()
        for ln in path.read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    return np.array(rows, dtype=float)


def _aln_global(path: Path) -> np.ndarray:
    text = path.read_text().split("# Local Alignment")[0]
    rows = [
        ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")
    ]
    return np.array(rows, dtype=float)


def _pre_exposure(acq: np.ndarray, dose: np.ndarray) -> np.ndarray:
    order = np.argsort(acq)
    cum = np.concatenate([[0.0], np.cumsum(dose[order])[:-1]])
    out = np.empty_like(cum)
    out[order] = cum
    return out


def test_read_aln_headers_and_rows() -> None:
    a = read_aln(FIX / "global_and_local.aln")
    ref = _aln_global(FIX / "global_and_local.aln")
    assert a.raw_size_xyz == (4096, 4096, 51)
    assert len(a.dark_frames) == 14 and a.dark_frames[0] == (0, 0, -68.0)
    assert a.n_kept == len(ref) == 51 - 14
    assert a.alpha_offset_deg == 12.3 and a.thickness_px == 1910 and a.n_patches == 16
    np.testing.assert_allclose(a.tilt_angles_deg, ref[:, 9])
    b = read_aln(FIX / "global_no_local.aln")
    assert b.n_kept == 61 and b.alpha_offset_deg == -7.0 and b.n_patches == 0
    assert b.thickness_px == 2050
    assert read_aln(FIX / "test.aln").thickness_px is None  # older files lack it


def test_consistent_triple_without_dark_frames(tmp_path: Path) -> None:
    for src, dst in (
        ("Position_16_3.aln", "P.aln"),
        ("test_8col_CTF.txt", "P_CTF.txt"),
        ("test_TLT.txt", "P_TLT.txt"),
    ):
        shutil.copy(FIX / src, tmp_path / dst)
    md = read_aretomo3(tmp_path / "P", **OPTICS)
    aln = _aln_global(FIX / "Position_16_3.aln")
    ctf = _table(FIX / "test_8col_CTF.txt")
    tlt = _table(FIX / "test_TLT.txt")
    assert md.n_tilts == 31
    np.testing.assert_allclose(md.tilt_angles_deg, aln[:, 9])
    np.testing.assert_allclose(md.defocus_um, (ctf[:, 1] + ctf[:, 2]) / 2e4)
    np.testing.assert_allclose(md.dose_e_per_a2, _pre_exposure(tlt[:, 1], tlt[:, 2]))
    assert md.dose_e_per_a2[int(np.argmin(tlt[:, 1]))] == 0.0  # first acquired
    assert md.defocus_handedness == -int(ctf[0, 7]) == 1
    # a folder holding one .aln works as well
    assert read_aretomo3(tmp_path, **OPTICS) == md


def _dark_series(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """global_and_local.aln (51 raw, dark 0..13) with raw-length _CTF/_TLT files."""
    shutil.copy(FIX / "global_and_local.aln", tmp_path / "D.aln")
    aln = read_aln(tmp_path / "D.aln")
    n = aln.n_raw
    # Raw nominal tilts: the dark ones from the header, the kept ones = TILT - alpha.
    raw = np.empty(n)
    dark = [d[0] for d in aln.dark_frames]
    raw[dark] = [d[2] for d in aln.dark_frames]
    kept = [i for i in range(n) if i not in dark]
    raw[kept] = np.round(np.array(aln.tilt_angles_deg) - aln.alpha_offset_deg, 2)
    acq = np.argsort(np.argsort(np.abs(raw), kind="stable")) + 1
    dose = np.linspace(2.0, 3.0, n)
    (tmp_path / "D_TLT.txt").write_text(
        "".join(
            f"{t:8.2f}  {a:4d}  {d:8.2f}\n"
            for t, a, d in zip(raw, acq, dose, strict=True)
        )
    )
    df1 = 20000.0 + 100.0 * np.arange(n)
    (tmp_path / "D_CTF.txt").write_text(
        "# Columns: ...\n"
        + "".join(
            f"{i + 1:4d}   {d:8.2f}  {d - 500:8.2f}     10.00     0.0000    0.1000"
            "    8.0000   -1\n"
            for i, d in enumerate(df1)
        )
    )
    pre = _pre_exposure(acq.astype(float), np.round(dose, 2))
    return tmp_path / "D", (df1 - 250.0)[kept] / 1e4, pre[kept]


def test_dark_frames_removed_from_ctf_and_dose(tmp_path: Path) -> None:
    prefix, defocus, dose = _dark_series(tmp_path)
    md = read_aretomo3(prefix, **OPTICS)
    assert md.n_tilts == 37
    np.testing.assert_allclose(md.defocus_um, defocus)
    np.testing.assert_allclose(md.dose_e_per_a2, dose)
    # the dark images count as exposed: the high tilts (acquired last, after the
    # dark ones) carry the dose of every earlier image
    assert max(md.dose_e_per_a2) == pytest.approx(max(dose))


def test_count_mismatch_warns_or_raises(tmp_path: Path) -> None:
    prefix, _, _ = _dark_series(tmp_path)
    ctf = tmp_path / "D_CTF.txt"
    ctf.write_text("\n".join(ctf.read_text().splitlines()[:-3]) + "\n")  # 48 rows
    with pytest.warns(RuntimeWarning, match="48 CTF rows match neither"):
        md = read_aretomo3(prefix, **OPTICS)
    assert md.defocus_um is None and md.dose_e_per_a2 is not None
    with pytest.raises(FormatError, match="48 CTF rows"):
        read_aretomo3(prefix, strict=True, **OPTICS)


def test_imod_layouts(tmp_path: Path) -> None:
    """-OutImod 2: no _CTF/_TLT, dark-removed IMOD defocus and _st_order_list.csv."""
    prefix, defocus, _ = _dark_series(tmp_path)
    tlt = _table(tmp_path / "D_TLT.txt")
    aln = read_aln(tmp_path / "D.aln")
    kept = [i for i in range(aln.n_raw) if i not in {d[0] for d in aln.dark_frames}]
    (tmp_path / "D_CTF.txt").unlink()
    (tmp_path / "D_TLT.txt").unlink()
    imod = tmp_path / "D_Imod"
    imod.mkdir()
    nm = defocus * 1e3
    (imod / "D_ctf.txt").write_text(
        "1  0  0.0  0.0  0.0  3\n"
        + "".join(
            f"{i + 1} {i + 1} {t:.2f} {t:.2f} {d - 25:.1f} {d + 25:.1f} 10.0\n"
            for i, (t, d) in enumerate(zip(aln.tilt_angles_deg, nm, strict=True))
        )
    )
    acq_rows = sorted((int(tlt[i, 1]), tlt[i, 0]) for i in kept)
    (imod / "D_st_order_list.csv").write_text(
        "ImageNumber, TiltAngle\n" + "".join(f"{a:4d},{t:.2f}\n" for a, t in acq_rows)
    )
    md = read_aretomo3(prefix, dose_per_tilt_e_per_a2=2.5, **OPTICS)
    np.testing.assert_allclose(md.defocus_um, defocus)
    first = min(a for a, _ in acq_rows)
    expect = [2.5 * (int(tlt[i, 1]) - first) for i in kept]
    np.testing.assert_allclose(md.dose_e_per_a2, expect)


def test_excluded_views_from_tilt_com(tmp_path: Path) -> None:
    """-OutImod 1: tilt.com EXCLUDELIST lists dark sections plus a user exclusion."""
    prefix, defocus, dose = _dark_series(tmp_path)
    imod = tmp_path / "D_Imod"
    imod.mkdir()
    (imod / "D_order_list.csv").write_text("ImageNumber, TiltAngle\n1,0.00\n")
    # sections 1-14 are the dark ones; 20 (raw index 19 = kept position 5) is extra
    (imod / "tilt.com").write_text("$tilt\nEXCLUDELIST 1-14,20\nTHICKNESS 300\n")
    md = read_aretomo3(prefix, **OPTICS)
    assert md.n_tilts == 36
    np.testing.assert_allclose(md.defocus_um, np.delete(defocus, 5))
    np.testing.assert_allclose(md.dose_e_per_a2, np.delete(dose, 5))
    md2 = read_aretomo3(prefix, exclude_views=[21], **OPTICS)
    assert md2.n_tilts == 35


def test_session_file_gives_optics(tmp_path: Path) -> None:
    prefix, _, _ = _dark_series(tmp_path)
    (tmp_path / "AreTomo3_Session.json").write_text(
        json.dumps(
            {
                "parameters": {
                    "kV": 200,
                    "Cs": 2.7,
                    "AmpContrast": 0.1,
                    "PixSize": 1.5,
                    "McBin": 2.0,
                    "AtBin": [4.0, 0, 0],
                }
            }
        )
    )
    md = read_aretomo3(prefix)
    assert (md.voltage_kv, md.spherical_aberration_mm, md.amplitude_contrast) == (
        200.0,
        2.7,
        0.1,
    )
    assert md.tilt_series_pixel_size_a == 3.0 and md.binning == 4.0
    (tmp_path / "AreTomo3_Session.json").unlink()
    with pytest.raises(FormatError, match="give voltage_kv, spherical_aberration_mm"):
        read_aretomo3(prefix)


def test_project_listing(tmp_path: Path) -> None:
    _dark_series(tmp_path)
    shutil.copy(FIX / "Position_16_3.aln", tmp_path / "Position_16_3.aln")
    vol = np.zeros((20, 32, 32), np.float32)
    mrcfile.write(tmp_path / "D_Vol.mrc", vol, voxel_size=12.0)
    mrcfile.write(tmp_path / "D_EVN_Vol.mrc", vol, voxel_size=12.0)
    xzy = np.zeros((32, 20, 32), np.float32)  # -FlipVol 0: nz is the Y extent
    mrcfile.write(tmp_path / "Position_16_3_Vol.mrc", xzy, voxel_size=12.0)
    got = {e.tomo_id: e for e in read_aretomo3_project(tmp_path, include_halves=True)}
    assert set(got) == {"D", "D_half1", "Position_16_3"}
    assert got["D"].ok and got["D"].voxel_size_a == 12.0
    assert got["D_half1"].tomogram == tmp_path / "D_EVN_Vol.mrc"
    assert "FlipVol" in got["Position_16_3"].problems[0]
    only = read_aretomo3_project(tmp_path, include=["Pos*"])
    assert [e.tomo_name for e in only] == ["Position_16_3"]
    (tmp_path / "D_Vol.mrc").unlink()
    (d,) = [e for e in read_aretomo3_project(tmp_path) if e.tomo_name == "D"]
    assert d.tomogram is None and "no reconstruction D_Vol.mrc" in d.problems[0]
    with pytest.raises(FormatError, match="folder not found"):
        read_aretomo3_project(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match=r"no .aln files"):
        read_aretomo3_project(tmp_path / "empty")


def test_no_warning_on_a_consistent_series(tmp_path: Path) -> None:
    prefix, _, _ = _dark_series(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_aretomo3(prefix, strict=False, **OPTICS)


def _mini_series(
    folder: Path,
    raw: list[float],
    dark: list[tuple[int, float]],
    kept_tilts: list[float],
) -> Path:
    folder.mkdir()
    lines = [
        "# AreTomo Alignment / Priims bprmMn",
        f"# RawSize = 64 64 {len(raw)}",
        "# NumPatches = 0",
    ]
    lines += [f"# DarkFrame =  {i:4d} {i + 1:4d} {t:8.2f}" for i, t in dark]
    lines += [
        "# AlphaOffset =     0.00",
        "# BetaOffset =     0.00",
        "# SEC     ROT         GMAG       TX          TY      SMEAN     SFIT"
        "    SCALE     BASE     TILT",
    ]
    lines += [
        f"{k + 1:5d}  {85.0:9.4f}  {1.0:9.5f}  {0.0:9.3f}  {0.0:9.3f}  "
        f"{1:7.2f}  {1:7.2f}  {1:7.2f}  {0:7.2f}  {t:8.2f}"
        for k, t in enumerate(kept_tilts)
    ]
    (folder / "M.aln").write_text("\n".join(lines) + "\n")
    (folder / "M_TLT.txt").write_text(
        "".join(f"{t:8.2f}  {i + 1:4d}  {2.0:8.2f}\n" for i, t in enumerate(raw))
    )
    (folder / "M_CTF.txt").write_text(
        "# Columns\n"
        + "".join(
            f"{i + 1:4d}   {1e4 + 1e3 * i:8.2f}  {1e4 + 1e3 * i:8.2f}     0.00"
            "     0.0000    0.1000    8.0000   -1\n"
            for i in range(len(raw))
        )
    )
    return folder / "M"


def test_pairing_with_duplicate_tilts_trusts_dark_frames(tmp_path: Path) -> None:
    # two images at 0 degrees, the first of them dark: a tilt walk would take it
    prefix = _mini_series(
        tmp_path / "dup", [-6, -3, 0, 0, 3, 6], [(2, 0.0)], [-6, -3, 0, 3, 6]
    )
    md = read_aretomo3(prefix, **OPTICS)
    np.testing.assert_allclose(md.defocus_um, [1.0, 1.1, 1.3, 1.4, 1.5])


@pytest.mark.parametrize("dark_index", [6, 0])  # out of range; in range but wrong
def test_legacy_dark_indices_fall_back_to_tilt_pairing(
    tmp_path: Path, dark_index: int
) -> None:
    prefix = _mini_series(
        tmp_path / "legacy",
        [-6, -3, 0, 3, 6, 9],
        [(dark_index, 9.0)],
        [-6, -3, 0, 3, 6],
    )
    md = read_aretomo3(prefix, **OPTICS)
    np.testing.assert_allclose(md.defocus_um, [1.0, 1.1, 1.2, 1.3, 1.4])
    np.testing.assert_allclose(md.dose_e_per_a2, [0, 2, 4, 6, 8])


def test_volume_without_aln_is_a_problem(tmp_path: Path) -> None:
    _dark_series(tmp_path)
    vol = np.zeros((20, 32, 32), np.float32)
    for name in ("D_Vol.mrc", "X_Vol.mrc", "X_EVN_Vol.mrc"):
        mrcfile.write(tmp_path / name, vol, voxel_size=12.0)
    got = {e.tomo_name: e for e in read_aretomo3_project(tmp_path)}
    assert set(got) == {"D", "X"} and got["D"].ok
    assert "tomogram without X.aln" in got["X"].problems[0]
    assert [e.tomo_name for e in read_aretomo3_project(tmp_path, include=["D"])] == [
        "D"
    ]
