"""Files in the wild and I/O failures: MRC files as other programs write them, and
outputs that cannot be written (read-only, full disk, existing, interrupted).

Every bad input must be one ``tmfast: error:`` line naming the file, exit 2, and
leave no output file behind.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import mrcfile
import numpy as np
import numpy.typing as npt
import pytest
from _cli import run_cli as _cli
from _cli import run_cli_streams
from tmfast.cli import main
from tmfast.errors import FormatError
from tmfast.io.mrc import read_header, read_volume

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"

SHAPE = (6, 7, 8)  # (z, y, x); not cubic, so a wrong axis order shows


def _base() -> npt.NDArray[np.float32]:
    return np.random.default_rng(7).standard_normal(SHAPE).astype(np.float32)


def _new(path: Path, data: npt.ArrayLike, voxel: float | None = 4.0) -> Path:
    with warnings.catch_warnings(), mrcfile.new(path, overwrite=True) as m:
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN data on purpose
        m.set_data(np.asarray(data))
        if voxel is not None:
            m.voxel_size = voxel
    return path


def _imod_stamp(path: Path, flags: int) -> None:
    """Write IMOD's header stamp and flags (bytes 152-159), as IMOD does."""
    with mrcfile.open(path, mode="r+") as m:
        extra2 = bytearray(bytes(m.header.extra2))
        extra2[40:48] = np.array([1146047817, flags], "<i4").tobytes()
        m.header.extra2 = bytes(extra2)


def _one_error_line(err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("tmfast: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- every MRC mode ---------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "mode"),
    [(np.int8, 0), (np.int16, 1), (np.float32, 2), (np.uint16, 6), (np.float16, 12)],
)
def test_every_real_mode_reads_as_float32_with_its_values(
    tmp_path: Path, dtype: type, mode: int
) -> None:
    scale = 1.0 if np.dtype(dtype).kind == "f" else 30.0
    offset = 1000.0 if dtype is np.uint16 else 0.0
    data = (_base() * scale + offset).astype(dtype)
    path = _new(tmp_path / f"m{mode}.mrc", data)
    with mrcfile.open(path) as m:
        assert int(m.header.mode) == mode
    for threshold in (2**40, 0):  # read whole, and memory-mapped
        vol, voxel = read_volume(path, mmap_threshold_bytes=threshold)
        assert vol.dtype == np.float32 and vol.shape == SHAPE
        np.testing.assert_array_equal(vol, data.astype(np.float32))
        assert voxel == pytest.approx(4.0)


def _complex_file(tmp_path: Path, mode: int) -> Path:
    if mode == 4:
        return _new(tmp_path / "fft4.mrc", _base().astype(np.complex64))
    # mrcfile cannot write mode 3 (complex int16): an int16 file relabelled, as
    # old Fourier-space writers leave it
    path = _new(tmp_path / "fft3.mrc", np.zeros((6, 7, 4), np.int16))
    raw = bytearray(path.read_bytes())
    raw[12:16] = np.array([3], "<i4").tobytes()
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("mode", [3, 4])
def test_complex_modes_are_refused_by_name(
    tmp_path: Path, mode: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mode 4 was read with the imaginary part silently dropped; mode 3 was
    'not a readable MRC file (Unrecognised mode '3')'."""
    path = _complex_file(tmp_path, mode)
    for read in (read_volume, read_header):
        with pytest.raises(FormatError, match=rf"MRC mode {mode} holds complex"):
            read(path)
    out = tmp_path / "t.mrc"
    args = [
        "create-template", "-i", str(path), "-o", str(out),
        "--output-voxel-size-angstrom", "8", "--input-voxel-size-angstrom", "4",
    ]  # fmt: skip
    code, err = _cli(args, capsys)
    assert code == 2
    _one_error_line(err, str(path), f"mode {mode}", "real-space")
    assert not out.exists()


# --- IMOD's unsigned bytes ------------------------------------------------------


def _bytes_file(tmp_path: Path, name: str) -> tuple[Path, npt.NDArray[np.uint8]]:
    u8 = np.clip(_base() * 50 + 128, 0, 255).astype(np.uint8)
    assert u8.max() > 127  # the values a signed reading wraps
    return _new(tmp_path / name, u8.view(np.int8)), u8


def test_imod_unsigned_mode_0_is_read_unsigned(tmp_path: Path) -> None:
    """IMOD writes mode 0 unsigned unless imodFlags bit 1 is set: read as int8,
    every voxel above 127 wrapped to a negative value."""
    path, u8 = _bytes_file(tmp_path, "imod_u8.mrc")
    _imod_stamp(path, flags=0)
    for threshold in (2**40, 0):
        vol, _ = read_volume(path, mmap_threshold_bytes=threshold)
        np.testing.assert_array_equal(vol, u8.astype(np.float32))
    # the same bytes with IMOD's "signed" flag are signed
    _imod_stamp(path, flags=1)
    vol, _ = read_volume(path)
    np.testing.assert_array_equal(vol, u8.view(np.int8).astype(np.float32))


def test_unstamped_mode_0_follows_the_header_range(tmp_path: Path) -> None:
    """Without IMOD's stamp, bytes are signed (MRC2014) unless dmin/dmax can only
    describe unsigned ones."""
    path, u8 = _bytes_file(tmp_path, "old_u8.mrc")
    vol, _ = read_volume(path)  # mrcfile's own stats: signed range
    np.testing.assert_array_equal(vol, u8.view(np.int8).astype(np.float32))
    with mrcfile.open(path, mode="r+") as m:
        m.header.dmin, m.header.dmax = float(u8.min()), float(u8.max())
    vol, _ = read_volume(path)
    np.testing.assert_array_equal(vol, u8.astype(np.float32))


# --- header variants --------------------------------------------------------------


@pytest.mark.parametrize(
    ("crs", "stored_axes"),
    [((3, 2, 1), (2, 1, 0)), ((2, 1, 3), (0, 2, 1)), ((2, 3, 1), (2, 0, 1))],
)
def test_axis_order_mapc_mapr_maps_is_honoured(
    tmp_path: Path, crs: tuple[int, int, int], stored_axes: tuple[int, int, int]
) -> None:
    """Older EMDB maps store other axis orders; read as is, a template is
    transposed (its handedness flipped)."""
    base = _base()
    stored = np.ascontiguousarray(base.transpose(stored_axes))
    path = _new(tmp_path / "crs.mrc", stored)
    with mrcfile.open(path, mode="r+") as m:
        m.header.mapc, m.header.mapr, m.header.maps = crs
    for threshold in (2**40, 0):
        vol, _ = read_volume(path, mmap_threshold_bytes=threshold)
        assert vol.flags.c_contiguous
        np.testing.assert_array_equal(vol, base)
    assert read_header(path) == (SHAPE, pytest.approx(4.0))


def test_unset_sampling_mx_my_mz_counts_as_the_grid(tmp_path: Path) -> None:
    """Writers that leave mx/my/mz at 0 made mrcfile divide by zero: a
    RuntimeWarning, then 'voxel size [inf, inf, inf] is zero or invalid'."""
    path = _new(tmp_path / "mx0.mrc", _base(), voxel=None)
    with mrcfile.open(path, mode="r+") as m:
        m.header.mx = m.header.my = m.header.mz = 0
        m.header.cella = (8 * 3.5, 7 * 3.5, 6 * 3.5)  # x, y, z lengths in Å
    vol, voxel = read_volume(path)  # warnings are errors in the test run
    np.testing.assert_array_equal(vol, _base())
    assert voxel == pytest.approx(3.5)
    assert read_header(path) == (SHAPE, pytest.approx(3.5))


def _big_endian(path: Path, data: npt.NDArray[np.float32]) -> Path:
    """A big-endian file as old SGI/IBM and some Java writers leave it."""
    from mrcfile.dtypes import HEADER_DTYPE

    little = _new(path.with_suffix(".le"), data)
    head = np.frombuffer(little.read_bytes()[:1024], HEADER_DTYPE)
    swapped = head.astype(HEADER_DTYPE.newbyteorder(">"))
    swapped["machst"] = np.frombuffer(b"\x11\x11\x00\x00", np.uint8)
    path.write_bytes(swapped.tobytes() + data.astype(">f4").tobytes())
    little.unlink()
    return path


def test_header_variants_read_the_same_volume(tmp_path: Path) -> None:
    base = _base()
    files = {"plain": _new(tmp_path / "plain.mrc", base)}
    files["big-endian"] = _big_endian(tmp_path / "be.mrc", base)
    with mrcfile.new(tmp_path / "fei.mrc") as m:  # FEI extended header
        m.set_data(base)
        m.voxel_size = 4.0
        m.set_extended_header(np.zeros(768, dtype="V1"))
        m.header.exttyp = b"FEI1"
    files["extended header"] = tmp_path / "fei.mrc"
    with mrcfile.new(tmp_path / "mx.mrc") as m:  # nx != mx, voxel from cella/mx
        m.set_data(base)
        m.header.mx, m.header.my, m.header.mz = 4, 4, 4
        m.header.cella = (16.0, 16.0, 16.0)
        m.header.origin = (100.0, -20.0, 3.5)
    files["mx != nx, origin"] = tmp_path / "mx.mrc"
    with mrcfile.new(tmp_path / "stack.mrcs") as m:  # ispg 0
        m.set_data(base)
        m.set_image_stack()
        m.voxel_size = 4.0
    files["image stack"] = tmp_path / "stack.mrcs"
    for ext in (".rec", ".st", ".map"):
        files[ext] = Path(shutil.copy(files["plain"], tmp_path / f"v{ext}"))
    for comp in ("gzip", "bzip2"):
        path = tmp_path / f"c.mrc.{comp}"
        with mrcfile.new(path, compression=comp) as m:
            m.set_data(base)
            m.voxel_size = 4.0
        files[comp] = path
    for what, path in files.items():
        for threshold in (2**40, 0):  # a compressed file is never mapped
            vol, voxel = read_volume(path, mmap_threshold_bytes=threshold)
            np.testing.assert_array_equal(vol, base, err_msg=what)
            assert voxel == pytest.approx(4.0), what
        # read_header maps the file: compressed ones said "not a readable MRC"
        assert read_header(path) == (SHAPE, pytest.approx(4.0)), what


def test_truncated_and_short_files_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _new(tmp_path / "good.mrc", _base())
    cut = tmp_path / "cut.mrc"
    cut.write_bytes(good.read_bytes()[:-100])
    size = good.stat().st_size
    for read in (read_volume, read_header):
        with pytest.raises(FormatError, match="truncated") as info:
            read(cut)
        assert f"{size} bytes with the header" in str(info.value)
        assert f"file has {size - 100} bytes" in str(info.value)
    tiny = tmp_path / "tiny.mrc"
    tiny.write_bytes(b"\0" * 100)
    with pytest.raises(FormatError, match="only 100 bytes, shorter than the 1024-byte"):
        read_volume(tiny)
    out = tmp_path / "mask.mrc"
    code, err = _cli(["create-mask", "--template", str(cut), "-o", str(out)], capsys)
    assert code == 2
    _one_error_line(err, str(cut), "truncated")
    assert not out.exists()


def test_a_truncated_em_file_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cut-short EM map was 'not a readable MRC file (Map ID string not
    found...)'."""
    data = _base()
    head = np.zeros(512, np.uint8)
    head[0], head[3] = 6, 5  # PC byte order, float32
    head[4:16] = np.frombuffer(np.array([8, 7, 6], "<i4").tobytes(), np.uint8)
    cut = tmp_path / "map.em"
    cut.write_bytes((head.tobytes() + data.tobytes())[:-40])
    out = tmp_path / "t.mrc"
    for args in (
        _template_args(cut, out, "--input-voxel-size-angstrom", "4"),
        ["create-mask", "--template", str(cut), "-o", str(out)],
    ):
        code, err = _cli(args, capsys)
        assert code == 2
        _one_error_line(err, str(cut), "truncated EM file", "8x7x6 float32")
        assert f"{512 + data.nbytes} bytes with the header" in err
        assert not out.exists()


@pytest.mark.parametrize(
    ("magic", "what"),
    [(b"II*\0", "TIFF"), (b"MM\0*", "TIFF"), (b"\x89HDF\r\n\x1a\n", "HDF5")],
)
def test_tiff_and_hdf5_volumes_are_named(
    tmp_path: Path, magic: bytes, what: str
) -> None:
    """cylindra's tomogram crops are TIFF; a TIFF given as the tomogram was 'not a
    readable MRC file (Map ID string not found...)'."""
    path = tmp_path / "tomo.mrc"
    path.write_bytes(magic + b"\0" * 4000)
    with pytest.raises(FormatError, match=f"this is an? {what}") as info:
        read_volume(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.skipif(
    not (REAL / "cylindra" / "13pf_MT.tif").is_file(), reason="shared data absent"
)
def test_a_real_tiff_tomogram_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tif = REAL / "cylindra" / "13pf_MT.tif"
    code, err = _cli(_slab_args(tif, tmp_path / "slab.mrc"), capsys)
    assert code == 2
    _one_error_line(err, str(tif), "TIFF image stack", "tif2mrc")


def test_a_folder_is_not_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="is a folder, not an MRC file"):
        read_volume(tmp_path)


# --- templates from files that are not particle maps ------------------------------


def test_a_motive_list_is_not_padded_into_a_huge_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An EM motive list (1 x N x 20) was padded to an N^3 cube: with cryoCAT's
    1023-particle list the process was killed for memory after a minute."""
    motl = np.random.default_rng(5).uniform(0, 500, (1, 300, 20)).astype(np.float32)
    head = np.zeros(512, np.uint8)
    head[0], head[3] = 6, 5  # PC byte order, float32
    head[4:16] = np.frombuffer(np.array([20, 300, 1], "<i4").tobytes(), np.uint8)
    path = tmp_path / "motl.em"
    path.write_bytes(head.tobytes() + motl.tobytes())
    out = tmp_path / "t.mrc"
    args = [
        "create-template", "-i", str(path), "-o", str(out),
        "--output-voxel-size-angstrom", "8", "--input-voxel-size-angstrom", "4",
    ]  # fmt: skip
    code, err = _cli(args, capsys)
    assert code == 2
    _one_error_line(err, "(1, 300, 20)", "not a particle map")
    assert not out.exists()


# --- outputs that cannot be written ---------------------------------------------


def _mask_args(out: Path, *extra: str) -> list[str]:
    return ["create-mask", "-b", "24", "-r", "6", "-o", str(out), *extra]


def _angles_args(out: Path, *extra: str) -> list[str]:
    return ["angles", "-a", "40", "--n-samples", "1000", "-o", str(out), *extra]


def _template_args(src: Path, out: Path, *extra: str) -> list[str]:
    return [
        "create-template", "-i", str(src), "-o", str(out),
        "--output-voxel-size-angstrom", "4", "-b", "12", *extra,
    ]  # fmt: skip


def _slab_args(src: Path, out: Path, *extra: str) -> list[str]:
    return ["slab-mask", "-i", str(src), "-o", str(out), *extra]


def _sources(tmp_path: Path) -> tuple[Path, Path]:
    """A small map and a small tomogram-like volume."""
    rng = np.random.default_rng(3)
    src = tmp_path / "src"
    src.mkdir()
    template = _new(src / "map.mrc", rng.standard_normal((12,) * 3, np.float32), 4.0)
    tomo = _new(src / "tomo.mrc", rng.standard_normal((16, 32, 32), np.float32), 10.0)
    return template, tomo


def test_existing_outputs_are_kept_without_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template, tomo = _sources(tmp_path)
    cases = {
        "create-template": lambda out, *x: _template_args(template, out, *x),
        "create-mask": _mask_args,
        "slab-mask": lambda out, *x: _slab_args(tomo, out, *x),
        "angles": _angles_args,
    }
    for name, make in cases.items():
        out = tmp_path / f"{name}.out"
        out.write_bytes(b"earlier result")
        code, err = _cli(make(out), capsys)
        assert code == 2, (name, err)
        _one_error_line(err, str(out), "--overwrite")
        assert out.read_bytes() == b"earlier result", name
        code, err = _cli(make(out, "--overwrite"), capsys)
        assert code == 0, (name, err)
        assert out.read_bytes() != b"earlier result", name
        assert sorted(p.name for p in out.parent.iterdir() if p.is_file()) == sorted(
            f"{n}.out" for n in list(cases)[: list(cases).index(name) + 1]
        ), "no temporary files left"


def test_an_output_under_a_file_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tmfast angles -o file/x.txt` built the set and printed its radius first."""
    template, tomo = _sources(tmp_path)
    blocker = tmp_path / "notafolder"
    blocker.write_text("a file")
    out = blocker / "x.out"
    for args in (
        _template_args(template, out),
        _mask_args(out),
        _slab_args(tomo, out),
        _angles_args(out),
    ):
        code, stdout, stderr = run_cli_streams(args, capsys)
        assert code == 2, (args[0], stderr)
        _one_error_line(stderr, str(out), str(blocker))
        assert stdout == "", (args[0], stdout)  # nothing computed
    assert blocker.read_text() == "a file"


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (root only): a real full disk."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def _fill(folder: Path, leave_bytes: int) -> None:
    """Fill the file system of ``folder`` up to ``leave_bytes`` free."""
    free = shutil.disk_usage(folder).free - leave_bytes
    (folder / "filler").write_bytes(b"\0" * max(free, 0))


def test_a_full_disk_is_one_line_and_leaves_nothing(
    tiny_tmpfs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk was a traceback from mrcfile's flush or numpy's savetxt."""
    _fill(tiny_tmpfs, 8192)
    for args in (
        _mask_args(tiny_tmpfs / "mask.mrc"),  # 24^3 float32 = 55 KB
        ["angles", "-a", "10", "--n-samples", "1000", "-o", str(tiny_tmpfs / "a.txt")],
    ):
        code, err = _cli(args, capsys)
        assert code == 1, err
        _one_error_line(err, str(tiny_tmpfs), "the disk is full", "nothing was written")
    assert [p.name for p in tiny_tmpfs.iterdir()] == ["filler"]


def test_a_full_disk_in_the_rust_writers_is_one_error(tiny_tmpfs: Path) -> None:
    """A full disk in the Rust STAR and IMOD writers is the same one line as in
    the Python writers."""
    from tmfast._fileio import DestinationWriteError
    from tmfast.io.imod import write_imod_points
    from tmfast.io.star import write_star

    _fill(tiny_tmpfs, 8192)
    x = np.arange(20000, dtype=np.float64) * 1.123456789  # ~600 KB as STAR
    writes = {
        "p.star": lambda out: write_star(out, {"particles": {"rlnCoordinateX": x}}),
        "p.mod": lambda out: write_imod_points(
            out, np.stack([x % 500, x % 400, x % 100], axis=1)
        ),
    }
    for name, write in writes.items():
        out = tiny_tmpfs / name
        with pytest.raises(DestinationWriteError) as info:
            write(out)
        assert str(info.value).startswith(f"{out}: cannot write it (the disk is full")
        assert info.value.errno == errno.ENOSPC
    assert [p.name for p in tiny_tmpfs.iterdir()] == ["filler"]


def test_a_file_size_limit_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """The same failure without root: ``ulimit -f`` makes writes fail (EFBIG)."""
    import resource
    import signal
    import sys

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))

    out = tmp_path / "mask.mrc"
    done = subprocess.run(
        [sys.executable, "-m", "tmfast", *_mask_args(out)],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    _one_error_line(done.stderr, str(out), "file-size limit")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot write: a read-only tmpfs as root, else 0555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip("root cannot be kept out of a folder without a mount")
        yield folder
        subprocess.run(["umount", str(folder)], check=False)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_a_read_only_destination_is_one_line(
    tmp_path: Path, read_only_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template, tomo = _sources(tmp_path)
    for out in (read_only_folder / "x.out", read_only_folder / "sub" / "x.out"):
        for args in (
            _template_args(template, out),
            _mask_args(out),
            _slab_args(tomo, out),
            _angles_args(out),
        ):
            code, err = _cli(args, capsys)
            assert code == 2, (args, err)
            _one_error_line(err, str(out))
    assert list(read_only_folder.iterdir()) == []


# --- Ctrl-C while writing ------------------------------------------------------------


def test_ctrl_c_while_writing_leaves_the_old_file_and_no_partial_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mrcfile.mrcinterpreter import MrcInterpreter

    out = tmp_path / "mask.mrc"
    assert _cli(_mask_args(out), capsys)[0] == 0
    before = out.read_bytes()
    flush = MrcInterpreter.flush

    def interrupted_flush(self: MrcInterpreter) -> None:
        self._iostream.write(b"\0" * 4096)  # part of the data is on disk
        self._iostream.close()  # as the interpreter would on exit
        raise KeyboardInterrupt

    monkeypatch.setattr(MrcInterpreter, "flush", interrupted_flush)
    code, err = _cli(_mask_args(out, "-r", "8", "--overwrite"), capsys)
    monkeypatch.setattr(MrcInterpreter, "flush", flush)
    assert code == 130, err  # typer's exit status for Ctrl-C
    assert [p.name for p in tmp_path.iterdir()] == ["mask.mrc"]
    assert out.read_bytes() == before

    def interrupted_savetxt(fname: object, *args: object, **kwargs: object) -> None:
        Path(str(fname)).write_text("0 0 0\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savetxt", interrupted_savetxt)
    code, err = _cli(_angles_args(tmp_path / "a.txt"), capsys)
    assert code == 130, err
    assert [p.name for p in tmp_path.iterdir()] == ["mask.mrc"]


# --- progress lines ------------------------------------------------------------------


def test_throttled_progress_eta_counts_only_this_runs_work(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch task resumed at 900/1000 rotations said 'ETA 1 s' after 10 s at
    1 rotation/s: the rate counted the rotations of the earlier run."""
    import tmfast._progress as progress

    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    log = logging.getLogger("tmfast.test_io_failure_journey")
    caplog.set_level(logging.INFO, logger=log.name)
    report = progress.throttled_log_progress(log, "t1", interval_s=30.0)
    report(900, 1000)  # resumed from the checkpoint
    now[0] += 10.0
    report(910, 1000)  # throttled: within 30 s
    now[0] += 30.0
    report(940, 1000)
    now[0] += 60.0
    report(1000, 1000)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "t1: 900/1000 (90.0%, 0 s elapsed, ETA ?)",
        "t1: 940/1000 (94.0%, 40 s elapsed, ETA 60 s)",
        "t1: 1000/1000 (100.0%, 100 s elapsed, ETA 0 s)",
    ]


def test_a_job_folder_given_as_the_job_file_names_the_file_inside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tmfast extract -j out/` said "not a readable JSON job file ([Errno 21] Is a
    directory: 'out')"."""
    (tmp_path / "tomo_job.json").write_text("{}")
    code, err = _cli(["extract", "-j", str(tmp_path), "-n", "5"], capsys)
    assert code == 2
    _one_error_line(err, f"{tmp_path}: is a folder", "tomo_job.json", "-j")


def test_slab_mask_of_a_single_section_does_not_suggest_binning_less(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 1-section file said 'binned by 1 has only 1 z sections; use a smaller
    --bin-factor', a fix that cannot exist."""
    image = _new(tmp_path / "image.mrc", _base()[:1])
    out = tmp_path / "slab.mrc"
    code, err = _cli(_slab_args(image, out), capsys)
    assert code == 2
    line = _one_error_line(err, "(1, 7, 8)", "3-D tomogram", "this has 1")
    assert "--bin-factor" not in line
    assert not out.exists()


# --- STAR files as other programs write them ---------------------------------------

_STAR = (
    b"# version 50001\n\ndata_particles\n\nloop_\n_rlnTomoName #1\n"
    b"_rlnCoordinateX #2\n007 1.5\n008 2.5\n"
)


@pytest.mark.parametrize("variant", ["utf-8 BOM", "gzip", "gzip + BOM", "CRLF"])
def test_star_files_with_a_bom_or_gzip_read_as_their_text(
    tmp_path: Path, variant: str
) -> None:
    """A byte-order mark (Windows editors) was 'line 1: "\\u{feff}#" appears
    before any data_ block'; a .star.gz was 'binary data; an MRC map?'."""
    import gzip

    from tmfast.io.star import read_star, star_version

    data = _STAR.replace(b"\n", b"\r\n") if variant == "CRLF" else _STAR
    if "BOM" in variant:
        data = b"\xef\xbb\xbf" + data
    if "gzip" in variant:
        data = gzip.compress(data)
    path = tmp_path / "p.star"
    path.write_bytes(data)
    blocks = read_star(path, as_text=True)
    assert list(blocks) == ["particles"]
    np.testing.assert_array_equal(blocks["particles"]["rlnTomoName"], ["007", "008"])
    np.testing.assert_array_equal(blocks["particles"]["rlnCoordinateX"], ["1.5", "2.5"])
    assert star_version(path) == 50001
    assert list(tmp_path.iterdir()) == [path]


def test_a_folder_is_not_a_missing_star_file(tmp_path: Path) -> None:
    from tmfast.io.star import read_star

    with pytest.raises(FormatError, match="is a folder, not a STAR file"):
        read_star(tmp_path)


def test_a_bad_gzipped_star_names_the_file_not_a_temporary_copy(tmp_path: Path) -> None:
    import gzip

    from tmfast.io.star import read_star

    path = tmp_path / "bad.star.gz"
    path.write_bytes(gzip.compress(b"data_x\nloop_\n_a #1\n_b #2\n1 2 3\n"))
    with pytest.raises(FormatError) as info:
        read_star(path)
    assert str(info.value).startswith(f"{path}: line 2: ")
    assert "do not fill rows" in str(info.value)
    cut = tmp_path / "cut.star.gz"
    cut.write_bytes(gzip.compress(_STAR)[:20])
    with pytest.raises(FormatError, match="gzip-compressed but cannot be"):
        read_star(cut)


# --- tmfast info ---------------------------------------------------------------------


def test_info_says_when_the_fftw_wisdom_file_cannot_be_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`TMFAST_FFTW_WISDOM` naming a folder, a place under a file or a non-JSON
    file was shown as if fine; matching then replanned on every run."""
    pytest.importorskip("pyfftw", reason="the wisdom file belongs to pyFFTW")
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    junk = tmp_path / "junk.json"
    junk.write_text("not json")
    good = tmp_path / "good.json"
    good.write_text('{"format": "tmfast-fftw-wisdom-1", "wisdom": []}')
    expected = {
        tmp_path: "a folder, not usable",
        blocker / "w.json": f"cannot be created ({blocker} is a file)",
        junk: "unreadable (",
        good: "readable",
        tmp_path / "new" / "w.json": "not written yet",
    }
    for path, state in expected.items():
        monkeypatch.setenv("TMFAST_FFTW_WISDOM", str(path))
        for args in (["info"], ["info", "--json"]):
            try:
                main(args)
            except SystemExit as exc:
                assert not exc.code
            out = capsys.readouterr().out
            if "--json" in args:
                assert json.loads(out)["fftw_wisdom_state"].startswith(state), out
            else:
                assert f"FFTW wisdom {path} ({state}" in out, out
    assert not (tmp_path / "new").exists()  # info only looks


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_kill_signal_while_writing_leaves_no_partial_file(
    tmp_path: Path, signame: str
) -> None:
    """SLURM's time limit (SIGTERM) or a closed terminal (SIGHUP) during a write
    left the hidden ``.name.XXXX.part`` file behind; the process still ends by
    the signal."""
    import signal
    import sys

    script = (
        "import sys, time\n"
        "from tmfast._fileio import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'partial')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    out = tmp_path / "out.mrc"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"
    assert len(list(tmp_path.iterdir())) == 1  # the temporary file
    sig = getattr(signal, signame)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == -sig
    proc.stdout.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["nan", "inf", "constant"])
def test_maps_without_density_are_refused_not_written_as_templates(
    tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A map with one NaN gave an all-NaN template, an all-zero map an all-zero
    one, both written with exit 0; create-mask said 'mask threshold nan is above
    the template's maximum nan'."""
    vol = np.random.default_rng(2).standard_normal((12,) * 3).astype(np.float32)
    if bad == "constant":
        vol[:] = 0.0
    else:
        vol[3, 4, 5] = float(bad)
    src = _new(tmp_path / "map.mrc", vol)
    out = tmp_path / "t.mrc"
    code, err = _cli(_template_args(src, out), capsys)
    assert code == 2
    needle = "every voxel is 0" if bad == "constant" else "1 of 1728 voxels are NaN"
    _one_error_line(err, str(src), needle)
    assert not out.exists()
    if bad != "constant":
        mask_args = ["create-mask", "--template", str(src), "-o", str(out)]
        code, err = _cli(mask_args, capsys)
        assert code == 2
        _one_error_line(err, str(src), "1 of 1728 voxels are NaN or infinite")
        assert not out.exists()


# --- atomic models -------------------------------------------------------------------


def _pdb_lines(n: int) -> str:
    return "".join(
        f"ATOM  {i + 1:5d}  CA  ALA A{i + 1:4d}    "
        f"{3.8 * i:8.3f}{1.0 * (i % 3):8.3f}{0.5 * (i % 5):8.3f}"
        "  1.00  0.00           C  \n"
        for i in range(n)
    )


def test_broken_models_are_one_line_naming_the_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An MRC map named .pdb was 'the model holds no atoms'; a cut-short PDB gave
    gemmi's two-line message (the offending line on a line of its own)."""
    pytest.importorskip("gemmi")
    disguised = tmp_path / "map.pdb"
    shutil.copy(_new(tmp_path / "map.mrc", _base()), disguised)
    cut = tmp_path / "cut.pdb"
    cut.write_text(_pdb_lines(40) + "ATOM     41\n")
    for model, needle in ((disguised, "it is an MRC map"), (cut, "cut-short")):
        out = tmp_path / "t.mrc"
        args = [
            "create-template", "-i", str(model), "-o", str(out),
            "--output-voxel-size-angstrom", "8",
        ]  # fmt: skip
        code, err = _cli(args, capsys)
        assert code == 2, err
        _one_error_line(err, str(model), needle)
        assert len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_a_tilt_series_stack_read_as_a_volume_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A tilt series (.st, ispg 0) given for the tomogram was read silently."""
    caplog.set_level(logging.WARNING, logger="tmfast.io.mrc")
    for name, stack in (("ts.st", True), ("ts.rec", True), ("vol.st", False)):
        path = tmp_path / name
        with mrcfile.new(path) as m:
            m.set_data(_base())
            if stack:
                m.set_image_stack()  # ispg 0
            m.voxel_size = 4.0
        caplog.clear()
        read_volume(path)
        warned = [r.getMessage() for r in caplog.records]
        if name == "ts.st":
            assert len(warned) == 1 and "stack of 2-D images" in warned[0], warned
            assert warned[0].startswith(f"{path}: ")
        else:  # ispg 0 alone is common in real volumes; a .st marked as volume
            assert warned == [], (name, warned)


@pytest.mark.parametrize(
    ("command", "extra", "needle"),
    [
        ("create-mask", ["-b", "0", "-r", "1"], "--box-size 0: give the box in voxels"),
        ("create-mask", ["-b", "-5", "-r", "1"], "--box-size -5"),
        ("create-mask", ["-b", "100000", "-r", "2"], "1 to 1024"),
        ("create-template", ["-b", "100000"], "--box-size 100000"),
        ("create-template", ["-b", "4"], "8 to 1024"),
        ("create-mask-template", ["--threshold", "nan"], "--threshold nan"),
        ("slab-mask", ["--min-contrast", "-1"], "--min-contrast -1.0"),
    ],
)
def test_bad_option_values_are_one_line_before_any_work(
    tmp_path: Path,
    command: str,
    extra: list[str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """-b 0 said 'the radius fills the box'; -b 100000 was numpy's MemoryError
    traceback (74 GiB); --threshold nan 'nan is above the maximum';
    --min-contrast -1 was accepted."""
    template, tomo = _sources(tmp_path)
    out = tmp_path / "out.mrc"
    args = {
        "create-mask": ["create-mask", "-o", str(out)],
        "create-template": [
            "create-template", "-i", str(template), "-o", str(out),
            "--output-voxel-size-angstrom", "4",
        ],
        "create-mask-template": [
            "create-mask", "--template", str(template), "-o", str(out),
        ],
        "slab-mask": ["slab-mask", "-i", str(tomo), "-o", str(out)],
    }[command]  # fmt: skip
    code, err = _cli([*args, *extra], capsys)
    assert code == 2
    _one_error_line(err, needle)
    assert not out.exists()
