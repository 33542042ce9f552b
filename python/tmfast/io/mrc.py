"""MRC volumes: read as ``(z, y, x)`` float32 with the voxel size, write atomically.

Reading uses :func:`mrcfile.mmap` for files over ``mmap_threshold_bytes`` so large
tomograms are paged in as needed; the returned array is then a read-only float32 view
when the file is float32 (no copy) and a converted copy otherwise. Gzip and bzip2
files (``.mrc.gz``) are read whole, never mapped.

Files as other programs write them: mode 0 bytes are signed (MRC2014) unless IMOD's
header stamp says unsigned (``imodFlags & 1`` clear), or, without the stamp, the
header's ``dmin >= 0`` and ``dmax > 127`` can only be unsigned bytes (old IMOD, other
writers); the ``mapc/mapr/maps`` axis order is honoured (older EMDB maps); complex
modes 3 and 4 are refused (a Fourier transform is not a map), and a file shorter
than its header says is named as truncated.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import numpy.typing as npt
from mrcfile.mrcmemmap import MrcMemmap

from tmfast._fileio import atomic_path
from tmfast.errors import FormatError
from tmfast.io.em import read_em_header
from tmfast.types import Volume

__all__ = [
    "anisotropic_voxel_size",
    "mapped_volume",
    "read_header",
    "read_volume",
    "write_volume",
]

logger = logging.getLogger(__name__)

_MMAP_THRESHOLD_BYTES = 256 * 2**20

#: IMOD's header stamp (bytes 152-155, "IMOD") and its "bytes are signed" flag.
_IMOD_STAMP = 1146047817
_IMOD_FLAG_SIGNED_BYTES = 1
_IMOD_STAMP_OFFSET_IN_EXTRA2 = 152 - 112

#: Bytes per voxel of each MRC mode (3 and 4 are complex).
_MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2}
_REAL_MODES = "0 (int8), 1 (int16), 2 (float32), 6 (uint16) and 12 (float16)"


def _is_compressed(path: Path) -> bool:
    """Whether ``path`` starts with the gzip or bzip2 magic (mrcfile reads both)."""
    try:
        with path.open("rb") as f:
            head = f.read(3)
    except OSError:
        return False
    return head[:2] == b"\x1f\x8b" or head == b"BZh"


def _complex_mode(path: Path, mode: int) -> FormatError:
    return FormatError(
        f"{path}: MRC mode {mode} holds complex numbers (a Fourier transform), not a "
        f"real-space map; tmfast reads modes {_REAL_MODES}: give the real-space "
        "volume (inverse-transform it in the program that wrote it)"
    )


def _diagnose(path: Path) -> FormatError | None:
    """A specific error for an uncompressed file mrcfile refused, when the header
    explains it: a complex or unknown mode, or fewer data bytes than it describes."""
    try:
        with path.open("rb") as f:
            head = f.read(1024)
        size = path.stat().st_size
    except OSError:
        return None
    if _is_compressed(path):
        return None
    if len(head) < 1024:
        return FormatError(
            f"{path}: not a readable MRC file (only {size} bytes, shorter than the "
            "1024-byte MRC header); check the path, or write the file again if it "
            "was cut short"
        )
    has_id = head[208:212] == b"MAP "
    for order in "<>":
        nx, ny, nz, mode = (int(v) for v in np.frombuffer(head[:16], f"{order}i4"))
        if (mode in _MODE_BYTES or (has_id and 0 <= mode < 1000)) and min(
            nx, ny, nz
        ) >= 1:
            break
    else:
        return None
    if mode in (3, 4):
        return _complex_mode(path, mode)
    if mode not in _MODE_BYTES:
        return FormatError(
            f"{path}: MRC mode {mode} is not a data type tmfast reads (modes "
            f"{_REAL_MODES}); convert the file to float32, e.g. `newstack -mode 2`"
        )
    nsymbt = int(np.frombuffer(head[92:96], f"{order}i4")[0])
    expected = 1024 + max(nsymbt, 0) + nx * ny * nz * _MODE_BYTES[mode]
    if size < expected:
        return FormatError(
            f"{path}: truncated: the header describes {nx}x{ny}x{nz} voxels of mode "
            f"{mode} ({expected} bytes with the header) but the file has {size} "
            "bytes; copy or write the file again (an interrupted transfer or a full "
            "disk)"
        )
    return None


def _bytes_unsigned(header: np.recarray) -> bool:  # type: ignore[type-arg]
    """Whether mode 0 data are unsigned bytes (see the module notes)."""
    if int(header.mode) != 0:
        return False
    stamp, flags = (
        int(v)
        for v in np.frombuffer(
            bytes(header.extra2)[
                _IMOD_STAMP_OFFSET_IN_EXTRA2 : _IMOD_STAMP_OFFSET_IN_EXTRA2 + 8
            ],
            header.mode.dtype,
        )
    )
    if stamp == _IMOD_STAMP:
        return not flags & _IMOD_FLAG_SIGNED_BYTES
    return float(header.dmin) >= 0 and float(header.dmax) > 127


#: Names that IMOD, RELION and others give to stacks of 2-D images.
_STACK_SUFFIXES = (".st", ".ali", ".mrcs", ".preali")


def _warn_if_image_stack(path: Path, header: np.recarray) -> None:  # type: ignore[type-arg]
    """Warn when ``path`` is named and marked (ispg 0) as a stack of 2-D images,
    e.g. a tilt series given where the tomogram was meant. Only both together:
    many real volumes carry ispg 0."""
    name = path.name.lower().removesuffix(".gz").removesuffix(".bz2")
    if int(header.ispg) == 0 and name.endswith(_STACK_SUFFIXES):
        logger.warning(
            "%s: named and marked (ispg 0) as a stack of 2-D images, e.g. a tilt "
            "series, not a volume; reading its %d images as z sections (give the "
            "reconstructed tomogram if this is not one)",
            path,
            int(header.nz),
        )


def _axis_order(header: np.recarray) -> tuple[int, int, int] | None:  # type: ignore[type-arg]
    """The transpose taking mrcfile's (section, row, column) array to (z, y, x), or
    None when the file is in the standard order (or its mapc/mapr/maps are unset)."""
    crs = (int(header.mapc), int(header.mapr), int(header.maps))
    if crs == (1, 2, 3) or sorted(crs) != [1, 2, 3]:
        return None
    labels = (crs[2], crs[1], crs[0])  # what array axes 0, 1, 2 run along
    z, y, x = (labels.index(a) for a in (3, 2, 1))
    return z, y, x


def _header_voxel_sizes(header: np.recarray) -> list[float]:  # type: ignore[type-arg]
    """Voxel size along x, y, z in Å: ``cella / (mx, my, mz)`` as mrcfile computes
    it, except that an unset (0) sampling counts as the grid size along that axis
    (some writers leave mx/my/mz at 0; mrcfile then divides by zero)."""
    cella = [float(header.cella.x), float(header.cella.y), float(header.cella.z)]
    sampling = [int(header.mx), int(header.my), int(header.mz)]
    grid_crs = [int(header.nx), int(header.ny), int(header.nz)]
    crs = [int(header.mapc), int(header.mapr), int(header.maps)]
    if sorted(crs) != [1, 2, 3]:
        crs = [1, 2, 3]
    grid_xyz = [grid_crs[crs.index(axis)] for axis in (1, 2, 3)]
    sizes = []
    for length, m, n in zip(cella, sampling, grid_xyz, strict=True):
        div = m if m > 0 else n
        sizes.append(length / div if div > 0 else 0.0)
    return sizes


def _voxel_size(mrc: mrcfile.mrcfile.MrcFile, path: Path) -> float:
    sizes = _header_voxel_sizes(mrc.header)
    if not all(np.isfinite(s) and s > 0 for s in sizes):
        raise FormatError(
            f"{path}: voxel size {sizes} Å in the header is zero or invalid; set it "
            "(e.g. `alterheader -del`) or pass --voxel-size-angstrom"
        )
    if _anisotropic(sizes):
        raise FormatError(
            f"{path}: anisotropic voxel size {sizes} Å; tmfast needs cubic voxels"
        )
    return sizes[0]


def _anisotropic(sizes: list[float]) -> bool:
    """Whether valid voxel sizes differ by more than 0.1%."""
    return max(sizes) - min(sizes) > 1e-3 * max(sizes)


def anisotropic_voxel_size(
    path: str | os.PathLike[str],
) -> tuple[float, float, float] | None:
    """The header voxel size ``(x, y, z)`` in Å of an MRC file when it is valid but
    not cubic, else None (also for a file that cannot be read).

    ``read_volume(require_voxel_size=False)`` returns 0 for an unset and for an
    anisotropic voxel size alike; only an unset one is fixed by giving the size, so
    callers use this to say which it is.
    """
    try:
        with mrcfile.open(Path(path), header_only=True, permissive=True) as mrc:
            x, y, z = _header_voxel_sizes(mrc.header)
    except (OSError, ValueError, EOFError):
        return None
    sizes = [x, y, z]
    if all(np.isfinite(v) and v > 0 for v in sizes) and _anisotropic(sizes):
        return (x, y, z)
    return None


def _em_description(path: Path) -> str | None:
    """Describe ``path`` (``nx x ny x nz dtype``) if it is an EM file, else None."""
    header = read_em_header(path)
    if header is None:
        return None
    nz, ny, nx = header.shape_zyx
    return f"{nx}x{ny}x{nz} {header.dtype.name}"


def _truncated_em(path: Path) -> FormatError | None:
    """Name a ``.em`` file whose EM header describes more data than it holds."""
    if path.suffix.lower() != ".em":
        return None
    header = read_em_header(path, check_size=False)
    if header is None:
        return None
    nz, ny, nx = header.shape_zyx
    expected = 512 + nx * ny * nz * header.dtype.itemsize
    size = path.stat().st_size
    if size >= expected:
        return None
    return FormatError(
        f"{path}: truncated EM file: its header describes {nx}x{ny}x{nz} "
        f"{header.dtype.name} ({expected} bytes with the header) but the file has "
        f"{size} bytes; copy or write the file again"
    )


#: Magic bytes of image formats given for MRC files, and how to convert them.
_OTHER_FORMATS = (
    (
        (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"),
        "a TIFF image stack",
        "convert it to MRC, e.g. `tif2mrc` (IMOD), and set the voxel size",
    ),
    ((b"\x89HDF",), "an HDF5 file", "export the volume as MRC"),
)


def _other_format(path: Path) -> FormatError | None:
    """Name a TIFF or HDF5 file given where an MRC volume was expected."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return None
    for magics, what, fix in _OTHER_FORMATS:
        if head in magics:
            return FormatError(f"{path}: this is {what}, not MRC; {fix}")
    return None


def _not_mrc(path: Path, reason: object) -> FormatError:
    truncated_em = _truncated_em(path)
    if truncated_em is not None:
        return truncated_em
    other = _other_format(path)
    if other is not None:
        return other
    em = _em_description(path)
    specific = None if em is not None else _diagnose(path)
    if specific is not None:
        return specific
    if em is not None:
        return FormatError(
            f"{path}: this is an EM file (TOM/pytom/cryoCAT format, {em}), which "
            "tmfast does not read; convert it to MRC and set its voxel size, e.g. "
            f"`e2proc3d.py {path.name} {path.stem}.mrc --apix <voxel Å>` (EMAN2); "
            "tmfast create-template reads EM maps (with --input-voxel-size-angstrom)"
        )
    return FormatError(f"{path}: not a readable MRC file ({reason})")


def _open(path: Path, *, mmap: bool) -> mrcfile.mrcfile.MrcFile:
    """Open ``path`` read-only; refuse complex modes (see :func:`_open_any`)."""
    mrc = _open_any(path, mmap=mmap)
    mode = int(mrc.header.mode)
    if mode in (3, 4):
        mrc.close()
        raise _complex_mode(path, mode)
    return mrc


def _open_any(path: Path, *, mmap: bool) -> mrcfile.mrcfile.MrcFile:
    if path.is_dir():
        raise FormatError(f"{path}: is a folder, not an MRC file; give the file")
    if not path.is_file():
        raise FormatError(f"{path}: file not found; check the path")
    if mmap and _is_compressed(path):
        mmap = False  # a compressed stream cannot be mapped
    opener = mrcfile.mmap if mmap else mrcfile.open
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return opener(path, mode="r", permissive=False)
    except (ValueError, OSError, EOFError) as exc:
        strict_error = exc
    # Old writers leave out the MAP ID or the machine stamp: accept those files when
    # the header still describes a data block of exactly the right size.
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            mrc = opener(path, mode="r", permissive=True)
    except (ValueError, OSError, EOFError):
        mrc = None
    if mrc is None or mrc.data is None or mrc.data.size == 0:
        if mrc is not None:
            mrc.close()
        raise _not_mrc(path, strict_error)
    fatal = [
        w for w in caught if "shorter" in str(w.message) or "larger" in str(w.message)
    ]
    if fatal:
        mrc.close()
        raise _not_mrc(path, fatal[0].message)
    logger.warning(
        "%s: non-standard MRC header (%s); reading it anyway", path, strict_error
    )
    return mrc


def read_header(
    path: str | os.PathLike[str],
) -> tuple[tuple[int, int, int], float | None]:
    """Return ``(shape_zyx, voxel_size_a)`` without reading the data.

    ``voxel_size_a`` is None when the header holds no valid voxel size.

    Raises
    ------
    FormatError
        If the file is missing or not an MRC volume.
    """
    p = Path(path)
    with _open(p, mmap=True) as mrc:
        shape = tuple(int(s) for s in mrc.data.shape)
        order = _axis_order(mrc.header) if len(shape) == 3 else None
        if order is not None:
            shape = tuple(shape[a] for a in order)
        try:
            vs: float | None = _voxel_size(mrc, p)
        except FormatError:
            vs = None
    if len(shape) != 3:
        raise FormatError(f"{p}: expected a 3-D volume, got shape {shape}")
    return shape, vs  # type: ignore[return-value]


def read_volume(
    path: str | os.PathLike[str],
    *,
    require_voxel_size: bool = True,
    mmap_threshold_bytes: int = _MMAP_THRESHOLD_BYTES,
) -> tuple[Volume, float]:
    """Read an MRC volume as ``(z, y, x)`` float32 and its voxel size in Å.

    Parameters
    ----------
    path
        MRC file.
    require_voxel_size
        If false, a zero voxel size returns ``0.0`` instead of raising (the caller
        overrides it, e.g. with ``--voxel-size-angstrom``).
    mmap_threshold_bytes
        Files larger than this are memory-mapped.

    Returns
    -------
    volume : numpy.ndarray
        ``(z, y, x)`` float32 array (read-only when memory-mapped float32).
    voxel_size_a : float
        Voxel size in Å.

    Raises
    ------
    FormatError
        If the file is missing, not MRC, truncated, complex (modes 3 and 4), not
        3-D, or has a zero voxel size (with ``require_voxel_size``).
    """
    p = Path(path)
    big = p.is_file() and p.stat().st_size > mmap_threshold_bytes
    mrc = _open(p, mmap=big)
    keep_open = False
    try:
        data = mrc.data
        if data is None or data.ndim != 3:
            shape = None if data is None else data.shape
            raise FormatError(f"{p}: expected a 3-D volume, got shape {shape}")
        try:
            vs = _voxel_size(mrc, p)
        except FormatError:
            if require_voxel_size:
                raise
            vs = 0.0
        _warn_if_image_stack(p, mrc.header)
        data = _oriented(mrc, p)
        if isinstance(mrc, MrcMemmap) and data.dtype == np.float32:
            if data.flags.c_contiguous:
                # keep the mmap alive as long as the array: do not close it here
                keep_open = True
                vol: Volume = data
                return vol, vs
        vol = np.array(data, dtype=np.float32, order="C", copy=True)
    finally:
        if not keep_open:
            mrc.close()
    return vol, vs


def _oriented(mrc: mrcfile.mrcfile.MrcFile, path: Path) -> npt.NDArray[Any]:
    """``mrc``'s 3-D data as ``(z, y, x)`` in the file's own dtype, a view (no
    copy): IMOD's unsigned bytes as uint8, the ``mapc/mapr/maps`` order undone."""
    data: npt.NDArray[Any] = mrc.data
    if _bytes_unsigned(mrc.header):
        logger.debug("%s: mode 0 read as unsigned bytes", path)
        data = data.view(np.uint8)
    order = _axis_order(mrc.header)
    if order is not None:
        logger.info(
            "%s: axis order mapc/mapr/maps = %d/%d/%d; transposed to (z, y, x)",
            path,
            int(mrc.header.mapc),
            int(mrc.header.mapr),
            int(mrc.header.maps),
        )
        data = data.transpose(order)
    return data


@contextlib.contextmanager
def mapped_volume(path: str | os.PathLike[str]) -> Iterator[npt.NDArray[Any]]:
    """A 3-D MRC volume as a ``(z, y, x)`` array in the file's own dtype, read as
    :func:`read_volume` reads (IMOD's unsigned bytes, the axis order) but
    memory-mapped where the file allows (a compressed file is read whole) and not
    converted: for cropping a large volume before converting it. The array is valid
    inside the ``with`` block only.

    Raises
    ------
    FormatError
        If the file is missing, not MRC, truncated, complex or not 3-D.
    """
    p = Path(path)
    mrc = _open(p, mmap=True)
    try:
        data = mrc.data
        if data is None or data.ndim != 3:
            shape = None if data is None else data.shape
            raise FormatError(f"{p}: expected a 3-D volume, got shape {shape}")
        yield _oriented(mrc, p)
    finally:
        mrc.close()


def write_volume(
    path: str | os.PathLike[str],
    data: npt.ArrayLike,
    voxel_size_a: float,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a ``(z, y, x)`` volume as MRC with the voxel size, atomically.

    float16, float32, int8, int16 and uint8 data are written as is; other dtypes are
    converted to float32.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    FormatError
        If ``data`` is not 3-D or not real numbers, or the voxel size is not positive.
    """
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise FormatError(f"{path}: can only write 3-D volumes, got shape {arr.shape}")
    if not (np.isfinite(voxel_size_a) and voxel_size_a > 0):
        raise FormatError(f"{path}: voxel size {voxel_size_a} Å must be positive")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or (
        np.issubdtype(arr.dtype, np.complexfloating)
    ):
        # a complex volume (e.g. a spectrum) would silently lose its imaginary part
        raise FormatError(
            f"{path}: cannot write {arr.dtype} data as a volume; give real numbers "
            "(e.g. the real part or the magnitude)"
        )
    if arr.dtype not in (np.float16, np.float32, np.int8, np.int16, np.uint8):
        arr = arr.astype(np.float32)
    arr = np.ascontiguousarray(arr)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # -inf in score maps
            mrc = mrcfile.new(tmp, overwrite=True)
            try:
                mrc.set_data(arr)
                mrc.voxel_size = float(voxel_size_a)
                mrc.close()  # writes the header and data
            except BaseException:
                # mrcfile's close() writes first, so after a failed write (a full
                # disk) it never closes its file; do it so nothing stays open
                stream = getattr(mrc, "_iostream", None)
                if stream is not None:
                    stream.close()
                raise
    return Path(path)
