"""MRC volumes: read as ``(z, y, x)`` float32 with the voxel size, write atomically.

Reading uses :func:`mrcfile.mmap` for files over ``mmap_threshold_bytes`` so large
tomograms are paged in as needed; the returned array is then a read-only float32 view
when the file is float32 (no copy) and a converted copy otherwise.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import numpy.typing as npt

from tmfast._fileio import atomic_path
from tmfast.errors import FormatError
from tmfast.io.em import read_em_header
from tmfast.types import Volume

__all__ = ["read_header", "read_volume", "write_volume"]

logger = logging.getLogger(__name__)

_MMAP_THRESHOLD_BYTES = 256 * 2**20


def _voxel_size(mrc: mrcfile.mrcfile.MrcFile, path: Path) -> float:
    vs = mrc.voxel_size
    sizes = [float(vs.x), float(vs.y), float(vs.z)]
    if not all(np.isfinite(s) and s > 0 for s in sizes):
        raise FormatError(
            f"{path}: voxel size {sizes} Å in the header is zero or invalid; set it "
            "(e.g. `alterheader -del`) or pass --voxel-size-angstrom"
        )
    if max(sizes) - min(sizes) > 1e-3 * max(sizes):
        raise FormatError(
            f"{path}: anisotropic voxel size {sizes} Å; tmfast needs cubic voxels"
        )
    return sizes[0]


def _em_description(path: Path) -> str | None:
    """Describe ``path`` (``nx x ny x nz dtype``) if it is an EM file, else None."""
    header = read_em_header(path)
    if header is None:
        return None
    nz, ny, nx = header.shape_zyx
    return f"{nx}x{ny}x{nz} {header.dtype.name}"


def _not_mrc(path: Path, reason: object) -> FormatError:
    em = _em_description(path)
    if em is not None:
        return FormatError(
            f"{path}: this is an EM file (TOM/pytom/cryoCAT format, {em}), which "
            "tmfast does not read; convert it to MRC and set its voxel size, e.g. "
            f"`e2proc3d.py {path.name} {path.stem}.mrc --apix <voxel Å>` (EMAN2); "
            "tmfast create-template reads EM maps (with --input-voxel-size-angstrom)"
        )
    return FormatError(f"{path}: not a readable MRC file ({reason})")


def _open(path: Path, *, mmap: bool) -> mrcfile.mrcfile.MrcFile:
    if not path.is_file():
        raise FormatError(f"{path}: file not found; check the path")
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
        If the file is missing, not MRC, truncated, not 3-D, or has a zero voxel size
        (with ``require_voxel_size``).
    """
    p = Path(path)
    big = p.is_file() and p.stat().st_size > mmap_threshold_bytes
    mrc = _open(p, mmap=big)
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
        if big and data.dtype == np.float32:
            vol: Volume = data
            # keep the mmap alive as long as the array: do not close it here
            return vol, vs
        vol = np.array(data, dtype=np.float32, copy=True)
    finally:
        if not (big and mrc.data is not None and mrc.data.dtype == np.float32):
            mrc.close()
    return vol, vs


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
            with mrcfile.new(tmp, overwrite=True) as mrc:
                mrc.set_data(arr)
                mrc.voxel_size = float(voxel_size_a)
    return Path(path)
