"""EM volumes (TOM/pytom/cryoCAT) as create-template input."""

from __future__ import annotations

import struct
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from tmfast.cli import main
from tmfast.errors import FormatError
from tmfast.templates.em import is_em_file, read_em_volume

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CRYOCAT_MASK = REAL / "cryocat" / "peak_analysis" / "mask48_r22.em"
OUT_42 = ("--output-voxel-size-angstrom", "42")
PYTOM_RIBO = REAL / "pytom" / "human_ribo_21A.em"


def _write_em(path: Path, value: object, nxyz: tuple[int, int, int], big: bool) -> None:
    """Write an EM file voxel by voxel, x fastest (the format's definition)."""
    nx, ny, nz = nxyz
    e = ">" if big else "<"
    head = bytes([5 if big else 6, 0, 0, 5]) + struct.pack(f"{e}3i", nx, ny, nz)
    body = b"".join(
        struct.pack(f"{e}f", value(x, y, z))  # type: ignore[operator]
        for z in range(nz)
        for y in range(ny)
        for x in range(nx)
    )
    path.write_bytes(head + bytes(512 - len(head)) + body)


@pytest.mark.parametrize("big", [False, True])
def test_read_em_axes_and_byte_order(tmp_path: Path, big: bool) -> None:
    f = tmp_path / "a.em"
    _write_em(f, lambda x, y, z: 100 * z + 10 * y + x, (5, 4, 3), big)
    assert is_em_file(f)
    vol = read_em_volume(f)
    assert vol.dtype == np.float32 and vol.shape == (3, 4, 5)
    z, y, x = np.indices((3, 4, 5))
    np.testing.assert_array_equal(vol, 100 * z + 10 * y + x)
    f.write_bytes(f.read_bytes()[:-4])  # truncated: not EM any more
    assert not is_em_file(f)
    with pytest.raises(FormatError, match="not an EM volume"):
        read_em_volume(f)


@pytest.mark.skipif(not CRYOCAT_MASK.is_file(), reason="shared/data/real absent")
def test_real_cryocat_mask_is_a_centred_sphere_of_radius_22() -> None:
    m = read_em_volume(CRYOCAT_MASK)
    assert m.shape == (48, 48, 48)
    com = [float((np.indices(m.shape)[i] * m).sum() / m.sum()) for i in range(3)]
    assert com == pytest.approx([24.0, 24.0, 24.0], abs=0.05)
    assert (m > 0.5).sum() == pytest.approx(4 / 3 * np.pi * 22**3, rel=0.02)


@pytest.mark.skipif(not PYTOM_RIBO.is_file(), reason="shared/data/real absent")
def test_create_template_from_real_em_needs_the_voxel_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.mrc"
    argv = ["create-template", "-i", str(PYTOM_RIBO), "-o", str(out)]
    with pytest.raises(SystemExit) as ex:
        main([*argv, "--output-voxel-size-angstrom", "42"])
    assert ex.value.code == 2 and not out.exists()
    assert "EM files hold no voxel size; pass --input-voxel-size-angstrom" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as ex:
        main([*argv, "--input-voxel-size-angstrom", "21", *OUT_42])
    assert ex.value.code in (0, None)
    with mrcfile.open(out) as t:
        assert t.data.shape == (16, 16, 16)
        assert float(t.voxel_size.x) == pytest.approx(42.0)
        src = read_em_volume(PYTOM_RIBO)
        # Halving the sampling keeps the mean density of the box (DC term).
        assert float(t.data.mean()) == pytest.approx(float(src.mean()), rel=0.05)


@pytest.mark.skipif(not CRYOCAT_MASK.is_file(), reason="shared/data/real absent")
def test_create_mask_from_an_em_template(tmp_path: Path) -> None:
    out = tmp_path / "m.mrc"
    with pytest.raises(SystemExit) as ex:
        main(
            [
                *("create-mask", "--template", str(CRYOCAT_MASK)),
                *("--voxel-size", "8.704", "-r", "20", "-o", str(out)),
            ]
        )
    assert ex.value.code in (0, None)
    with mrcfile.open(out) as m:
        assert m.data.shape == (48, 48, 48)
        assert float(m.voxel_size.x) == pytest.approx(8.704)
        assert m.data[24, 24, 44] == 1.0 and m.data[24, 24, 45] == 0.0
