"""`tmfast create-template`, `create-mask`, `slab-mask` end to end."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from test_templates_slab import synthetic_slab  # type: ignore[import-not-found]
from tmfast.cli import main

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
EMD_8621 = REAL / "pytme" / "emd_8621.mrc.gz"
SMALL_MAP = REAL / "pytme" / "em_map.map"  # (20, 14, 19), 5.28 Å, non-cubic
APOFERRITIN = REAL / "parakeet" / "6z6u.pdb.gz"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI as the console script does; return (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _write_map(path: Path, data: np.ndarray, voxel: float) -> None:
    with mrcfile.new(path) as m:
        m.set_data(data.astype(np.float32))
        m.voxel_size = voxel


def _blob(n: int = 40) -> np.ndarray:
    g = np.arange(n) - n // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    return np.exp(-((x - 2) ** 2 + y**2 + (z + 3) ** 2) / 30.0)


def test_create_template_from_map_writes_exact_voxel_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "map.mrc"
    _write_map(src, _blob(), 1.3)
    out = tmp_path / "t.mrc"
    code, stdout, err = run(
        [
            "create-template",
            "-i",
            str(src),
            "-o",
            str(out),
            "--output-voxel-size-angstrom",
            "3.17",
            "-b",
            "20",
            "--invert",
        ],
        capsys,
    )
    assert code == 0, err
    with mrcfile.open(out) as m:
        assert m.data.shape == (20, 20, 20) and m.data.dtype == np.float32
        assert m.voxel_size.x == pytest.approx(3.17, rel=1e-6)
        assert m.voxel_size.z == pytest.approx(3.17, rel=1e-6)
        assert m.data.min() < -0.5 and m.data.max() < 0.05  # inverted
    assert "box 20" in stdout
    # Default output name, and refusal to overwrite it without --overwrite.
    args = ["create-template", "-i", str(src), "--output-voxel-size-angstrom", "2.6"]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert run(args, capsys)[0] == 0
        assert (tmp_path / "template_map_2.6A.mrc").is_file()
        code, _, err = run(args, capsys)
        assert code == 2 and "--overwrite" in err and "Traceback" not in err
        assert run([*args, "--overwrite"], capsys)[0] == 0
    finally:
        os.chdir(cwd)


@pytest.mark.skipif(not SMALL_MAP.is_file(), reason="shared/data/real/pytme absent")
def test_create_template_non_cubic_real_map_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.mrc"
    argv = ["create-template", "-i", str(SMALL_MAP), "-o", str(out)]
    with pytest.warns(RuntimeWarning, match="not cubic"):
        code, _, err = run([*argv, "--output-voxel-size-angstrom", "10.56"], capsys)
    assert code == 0, err
    with mrcfile.open(out) as m:
        assert m.data.shape == (10, 10, 10)  # 20 * 5.28 / 10.56
        assert m.voxel_size.x == pytest.approx(10.56, rel=1e-6)


@pytest.mark.skipif(
    not APOFERRITIN.is_file(), reason="shared/data/real/parakeet absent"
)
def test_create_template_from_real_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Human apoferritin 6Z6U (24-mer, ~120 Å across) simulated at 10 Å."""
    out = tmp_path / "apo.mrc"
    code, stdout, err = run(
        [
            "create-template",
            "-i",
            str(APOFERRITIN),
            "-o",
            str(out),
            "--output-voxel-size-angstrom",
            "10",
            "-b",
            "24",
        ],
        capsys,
    )
    assert code == 0, err
    assert "atoms" in stdout
    with mrcfile.open(out) as m:
        t = m.data.copy()
        assert m.voxel_size.x == pytest.approx(10.0, rel=1e-6)
    # A hollow shell: the centre is emptier than the shell at ~55 Å radius.
    g = np.arange(24) - 12
    r = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    assert t[r <= 2].mean() < 0.3 * t[(r >= 4.5) & (r <= 6.0)].mean()


def test_bad_inputs_exit_2_with_one_line_and_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zero = tmp_path / "zero.mrc"
    _write_map(zero, _blob(16), 0.0)
    empty = tmp_path / "empty.pdb"
    empty.write_text("HEADER    EMPTY\nEND\n")
    good = tmp_path / "good.mrc"
    _write_map(good, _blob(16), 2.0)
    out = tmp_path / "out.mrc"
    cases = [
        (["-i", str(zero), "--output-voxel-size-angstrom", "4"], "input-voxel-size"),
        (["-i", str(good), "--output-voxel-size-angstrom", "1"], "allow-upsampling"),
        (["-i", str(good), "--output-voxel-size-angstrom", "0"], "voxel size"),
        (["-i", str(empty), "--output-voxel-size-angstrom", "4"], "no atoms"),
        (
            ["-i", str(tmp_path / "nope.mrc"), "--output-voxel-size-angstrom", "4"],
            "not",
        ),
    ]
    for args, needle in cases:
        code, _, err = run(["create-template", *args, "-o", str(out)], capsys)
        assert code == 2, (args, err)
        assert needle in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "empty.pdb",
        "good.mrc",
        "zero.mrc",
    ]
    # A header without a voxel size works once it is given.
    code, _, err = run(
        [
            "create-template",
            "-i",
            str(zero),
            "-o",
            str(out),
            "--input-voxel-size-angstrom",
            "2",
            "--output-voxel-size-angstrom",
            "4",
        ],
        capsys,
    )
    assert code == 0, err
    with mrcfile.open(out) as m:
        assert m.data.shape == (8, 8, 8)


def test_create_mask_sphere_and_from_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.mrc"
    code, _, err = run(
        ["create-mask", "-b", "32", "-r", "10", "-s", "2", "-o", str(out)], capsys
    )
    assert code == 0, err
    with mrcfile.open(out) as m:
        assert m.data.shape == (32, 32, 32) and m.data[16, 16, 16] == 1.0
        assert m.data[16, 16, 26] == 1.0 and m.data[16, 16, 28] < 1.0
    tmpl = tmp_path / "tmpl.mrc"
    _write_map(tmpl, _blob(24), 7.5)
    # Radius in Å with the template's box and voxel size: 30 Å = 4 voxels.
    out2 = tmp_path / "m2.mrc"
    code, _, err = run(
        [
            "create-mask",
            "--template",
            str(tmpl),
            "-r",
            "30",
            "--units",
            "angstrom",
            "-o",
            str(out2),
        ],
        capsys,
    )
    assert code == 0, err
    with mrcfile.open(out2) as m:
        assert m.data.shape == (24, 24, 24)
        assert m.voxel_size.x == pytest.approx(7.5, rel=1e-6)
        assert m.data[12, 12, 16] == 1.0 and m.data[12, 12, 17] == 0.0
    out3 = tmp_path / "m3.mrc"
    code, _, err = run(
        ["create-mask", "--template", str(tmpl), "-o", str(out3)], capsys
    )
    assert code == 0, err
    with mrcfile.open(out3) as m:
        t = _blob(24)
        assert np.all(m.data[t > 0.1 * t.max()] == 1.0) and m.data.min() == 0.0
    code, _, err = run(
        ["create-mask", "-r", "5", "-o", str(tmp_path / "x.mrc")], capsys
    )
    assert code == 2 and "--box-size" in err
    assert not (tmp_path / "x.mrc").exists()


def test_slab_mask_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vol, _, thick, _ = synthetic_slab(shape=(48, 96, 96), thickness_px=24.0, seed=5)
    tomo = tmp_path / "tomo.mrc"
    _write_map(tomo, vol, 13.5)
    out = tmp_path / "slab.mrc"
    code, stdout, err = run(
        ["slab-mask", "-i", str(tomo), "-o", str(out), "--margin", "2"], capsys
    )
    assert code == 0, err
    assert "thickness" in stdout
    with mrcfile.open(out) as m:
        assert m.data.dtype == np.int8 and set(np.unique(m.data)) == {0, 1}
        assert m.data.shape == vol.shape
        assert m.voxel_size.x == pytest.approx(13.5, rel=1e-6)
        frac = float(m.data.mean())
    # 24 voxels thick (tilt 8 deg) plus 2 x 2 margin, of 48 z sections.
    assert frac == pytest.approx((thick / np.cos(np.radians(8.0)) + 4) / 48, rel=0.06)
    const = tmp_path / "const.mrc"
    _write_map(const, np.zeros((16, 32, 32)), 10.0)
    code, _, err = run(
        ["slab-mask", "-i", str(const), "-o", str(out), "--overwrite"], capsys
    )
    assert code == 2 and "constant" in err


PYTOM_5592 = REAL / "pytom" / "emd_5592_21A.mrc"  # 20^3, header 1 Å, true 20.96 Å


@pytest.mark.skipif(not PYTOM_5592.is_file(), reason="shared/data/real/pytom absent")
def test_create_template_refuses_a_tiny_box_from_a_wrong_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "e2.mrc"
    argv = ["create-template", "-i", str(PYTOM_5592), "-o", str(out)]
    code, _, err = run([*argv, "--output-voxel-size-angstrom", "20"], capsys)
    assert code == 2
    assert (
        "input voxel 1 Å (header) gives a 1-voxel template at 20 Å: the header "
        "voxel size looks wrong; pass --input-voxel-size-angstrom" in err
    )
    assert not out.exists()
    # With the true voxel size it works (20 * 20.96 / 41.92 = 10 voxels).
    code, _, err = run(
        [
            *argv,
            "--input-voxel-size-angstrom",
            "20.96",
            "--output-voxel-size-angstrom",
            "41.92",
        ],
        capsys,
    )
    assert code == 0, err
    with mrcfile.open(out) as m:
        assert m.data.shape == (10, 10, 10)


def test_create_template_warns_on_large_downsampling_and_cropping_box(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.mrc"
    _write_map(big, _blob(80), 1.0)
    argv = ["create-template", "-i", str(big), "--output-voxel-size-angstrom", "10"]
    with pytest.warns(RuntimeWarning, match=r"downsampling 10\.0x .* 8-voxel"):
        code, _, err = run([*argv, "-o", str(tmp_path / "a.mrc")], capsys)
    assert code == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # --box-size silences it
        code, _, err = run([*argv, "-b", "10", "-o", str(tmp_path / "b.mrc")], capsys)
    assert code == 0, err

    # A box cropping the particle: the warning gives the density fraction outside,
    # checked here by counting voxels of the input map outside the box.
    blob = _wide_blob(40)
    src = tmp_path / "wide.mrc"
    _write_map(src, blob, 5.0)
    w = blob - np.median(blob)
    w = np.where(w > 0.1 * w.max(), w, 0.0)
    inside = w[20 - 6 : 20 + 7, 20 - 6 : 20 + 7, 20 - 6 : 20 + 7].sum()  # 12-voxel box
    pct = round(100 * (1 - inside / w.sum()))
    assert pct > 5
    with pytest.warns(RuntimeWarning, match=rf"--box-size 12 \(60 Å\) crops .*{pct}%"):
        code, _, err = run(
            [
                "create-template",
                "-i",
                str(src),
                "--output-voxel-size-angstrom",
                "5",
                "-b",
                "12",
                "-o",
                str(tmp_path / "c.mrc"),
            ],
            capsys,
        )
    assert code == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        code, _, err = run(
            [
                "create-template",
                "-i",
                str(src),
                "--output-voxel-size-angstrom",
                "5",
                "-b",
                "36",
                "-o",
                str(tmp_path / "d.mrc"),
            ],
            capsys,
        )
    assert code == 0, err


def _wide_blob(n: int) -> np.ndarray:
    g = np.arange(n) - n // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    return np.exp(-(x**2 + y**2 + z**2) / (2 * 6.0**2))


def test_create_mask_radius_beyond_the_box_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "m.mrc"
    code, _, err = run(["create-mask", "-b", "24", "-r", "30", "-o", str(out)], capsys)
    assert code == 2 and not out.exists()
    assert "--radius 30 voxels is larger than half the box (24 voxels / 2 = 12)" in err
    # A radius touching the faces is fine; only its soft edge is cut (warning).
    code, _, err = run(
        ["create-mask", "-b", "24", "-r", "12", "-s", "1", "-o", str(out)], capsys
    )
    assert code == 0, err
    assert "soft edge is cut" in caplog.text + err
    with mrcfile.open(out) as m:
        assert m.data[12, 12, 0] == 1.0 and m.data.min() < 1.0
