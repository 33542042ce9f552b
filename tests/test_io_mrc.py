"""tmfast.io.mrc against mrcfile."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
from tmfast.errors import FormatError, OutputExistsError
from tmfast.io.mrc import read_header, read_volume, write_volume

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_round_trip_and_header(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    out = write_volume(tmp_path / "a.mrc", data, 3.25)
    with mrcfile.open(out) as m:
        np.testing.assert_array_equal(m.data, data)
        assert float(m.voxel_size.x) == pytest.approx(3.25)
    vol, vs = read_volume(out)
    assert vol.dtype == np.float32 and vol.shape == (4, 5, 6)
    np.testing.assert_array_equal(vol, data)
    assert vs == pytest.approx(3.25)
    assert read_header(out) == ((4, 5, 6), pytest.approx(3.25))
    # mmap path gives the same data
    vol2, _ = read_volume(out, mmap_threshold_bytes=0)
    np.testing.assert_array_equal(vol2, data)
    # float16 is kept
    write_volume(tmp_path / "h.mrc", data.astype(np.float16), 1.0)
    with mrcfile.open(tmp_path / "h.mrc") as m:
        assert m.data.dtype == np.float16


def test_refuses_overwrite_and_leaves_nothing(tmp_path: Path) -> None:
    p = tmp_path / "a.mrc"
    write_volume(p, np.zeros((2, 2, 2), np.float32), 1.0)
    with pytest.raises(OutputExistsError):
        write_volume(p, np.ones((2, 2, 2), np.float32), 1.0)
    write_volume(p, np.ones((2, 2, 2), np.float32), 1.0, overwrite=True)
    assert read_volume(p)[0].sum() == 8
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.mrc"]


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="not found"):
        read_volume(tmp_path / "missing.mrc")
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(b"hello" * 300)
    with pytest.raises(FormatError, match="not a readable MRC"):
        read_volume(junk)
    zero = tmp_path / "zero.mrc"
    with mrcfile.new(zero) as m:
        m.set_data(np.zeros((3, 3, 3), np.float32))
        m.voxel_size = 0.0
    with pytest.raises(FormatError, match="voxel size"):
        read_volume(zero)
    assert read_volume(zero, require_voxel_size=False)[1] == 0.0
    truncated = tmp_path / "trunc.mrc"
    good = write_volume(tmp_path / "good.mrc", np.ones((8, 8, 8), np.float32), 1.0)
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(FormatError):
        read_volume(truncated)


def test_real_template() -> None:
    files = sorted((SHARED / "real").rglob("*.mrc")) if SHARED.exists() else []
    if not files:
        pytest.skip("../shared/data/real not present")
    small = min(files, key=lambda f: f.stat().st_size)
    vol, vs = read_volume(small, require_voxel_size=False)
    with mrcfile.open(small, permissive=True) as m:
        np.testing.assert_array_equal(vol, m.data.astype(np.float32))
        assert vs == pytest.approx(float(m.voxel_size.x)) or vs == 0.0


CRYOCAT_EM = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "real"
    / "cryocat"
    / "peak_analysis"
    / "mask48_r22.em"
)


@pytest.mark.skipif(not CRYOCAT_EM.is_file(), reason="shared/data/real/cryocat absent")
def test_em_file_is_named_with_a_conversion_hint() -> None:
    for read in (read_volume, read_header):
        with pytest.raises(FormatError) as err:
            read(CRYOCAT_EM)
        msg = str(err.value)
        assert msg.startswith(f"{CRYOCAT_EM}: this is an EM file")
        assert "48x48x48 float32" in msg and "e2proc3d.py mask48_r22.em" in msg


def test_em_detection_needs_header_and_size_to_agree(tmp_path: Path) -> None:
    data = np.arange(3 * 4 * 5, dtype="<i2").reshape(5, 4, 3)
    head = np.zeros(512, np.uint8)
    head[0], head[3] = 6, 2  # PC byte order, int16
    head[4:16] = np.frombuffer(np.array([3, 4, 5], "<i4").tobytes(), np.uint8)
    em = tmp_path / "x.em"
    em.write_bytes(head.tobytes() + data.tobytes())
    with pytest.raises(FormatError, match=r"EM file .*3x4x5 int16"):
        read_volume(em)
    # One byte more: not EM either, so the generic message.
    em.write_bytes(head.tobytes() + data.tobytes() + b"\0")
    with pytest.raises(FormatError, match="not a readable MRC file") as err:
        read_volume(em)
    assert "EM file" not in str(err.value)


def test_complex_data_is_refused_not_silently_cast(tmp_path: Path) -> None:
    """A complex volume lost its imaginary part with only numpy's warning."""
    out = tmp_path / "spec.mrc"
    with pytest.raises(FormatError, match="complex64"):
        write_volume(out, np.ones((4, 4, 4), np.complex64), 2.0)
    assert not out.exists()
