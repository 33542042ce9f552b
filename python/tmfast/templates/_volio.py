"""Private MRC read/write helpers for the templates package.

Thin wrappers over :mod:`mrcfile` kept in one place so they can be swapped for
:mod:`tmfast.io.mrc` once that module exists. Writes are atomic
(:func:`tmfast._fileio.atomic_path`).
"""

from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np
import numpy.typing as npt

from tmfast._fileio import atomic_path
from tmfast.errors import FormatError

__all__ = ["read_mrc", "write_mrc"]


def read_mrc(
    path: str | os.PathLike[str],
) -> tuple[npt.NDArray[np.float32], float | None]:
    """Read an MRC volume as ``(z, y, x)`` float32 plus its header voxel size.

    Parameters
    ----------
    path
        MRC/MAP/REC file, optionally gzip-compressed.

    Returns
    -------
    volume, voxel_size_a
        The data as a C-ordered float32 array and the header voxel size in Å, or
        ``None`` when the header holds 0 (unset).

    Raises
    ------
    FormatError
        If the file is missing or unreadable, is not 3D, or has anisotropic voxels.
    """
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"{p}: no such file; give an existing MRC map")
    try:
        with mrcfile.open(p, mode="r", permissive=False) as mrc:
            data = np.asarray(mrc.data)
            vs = mrc.voxel_size
            vox_xyz = (float(vs.x), float(vs.y), float(vs.z))
    except (ValueError, OSError, EOFError) as exc:
        raise FormatError(
            f"{p}: not a readable MRC file ({exc}); check the file"
        ) from exc
    if data is None or data.ndim != 3:
        shape = None if data is None else data.shape
        raise FormatError(
            f"{p}: expected a 3D volume, got shape {shape}; give a 3D map"
        )
    volume = np.ascontiguousarray(data, dtype=np.float32)
    if not np.all(np.isfinite(volume)):
        raise FormatError(f"{p}: the map contains NaN or Inf values; repair the map")
    if all(v <= 0 for v in vox_xyz):
        return volume, None
    vmax = max(vox_xyz)
    if min(vox_xyz) <= 0 or (vmax - min(vox_xyz)) > 1e-3 * vmax:
        raise FormatError(
            f"{p}: anisotropic voxel size {vox_xyz} Å (x, y, z); resample it to "
            "cubic voxels first"
        )
    return volume, vox_xyz[0]


def write_mrc(
    path: str | os.PathLike[str],
    data: npt.NDArray[np.generic],
    voxel_size_a: float,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a ``(z, y, x)`` volume atomically with an exact header voxel size.

    Parameters
    ----------
    path
        Output file.
    data
        ``(z, y, x)`` array; float32 and int8 are stored as is, others as float32.
    voxel_size_a
        Voxel size in Å written to the header (x, y and z).
    overwrite
        Replace an existing file.

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    arr = np.asarray(data)
    if arr.dtype not in (np.float32, np.int8):
        arr = arr.astype(np.float32)
    arr = np.ascontiguousarray(arr)
    final = Path(path)
    with atomic_path(final, overwrite=overwrite) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(arr)
            mrc.voxel_size = float(voxel_size_a)
    return final
