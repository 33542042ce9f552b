"""Read EM volumes (TOM toolbox / AV3 / pytom / cryoCAT) as template input.

The EM format is a 512-byte header followed by the raw data: byte 0 is the machine
code (1 and 6: little-endian, 3 and 5: big-endian, 0 and 2 taken as little), byte 3
the data type (1 int8, 2 int16, 4 int32, 5 float32, 9 float64), bytes 4-15 the
dimensions ``nx, ny, nz`` (int32) and the data runs with x fastest, so it reads as
a C-ordered ``(z, y, x)`` array directly. The header holds no reliable voxel size
(writers disagree on the "object pixel size" field), so callers must be told it
(``--input-voxel-size-angstrom``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tmfast.errors import FormatError
from tmfast.io.em import EM_HEADER_BYTES, read_em_header
from tmfast.types import Volume

__all__ = ["is_em_file", "read_em_volume"]


def _parse(path: Path) -> tuple[tuple[int, int, int], np.dtype] | None:
    """Shape and dtype of a real-valued EM volume (complex ones are not templates)."""
    header = read_em_header(path)
    if header is None or header.dtype.kind == "c":
        return None
    return header.shape_zyx, header.dtype


def is_em_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an EM volume (header and file size agree)."""
    return _parse(Path(path)) is not None


def read_em_volume(path: str | os.PathLike[str]) -> Volume:
    """Read an EM volume as a ``(z, y, x)`` float32 array.

    Returns
    -------
    numpy.ndarray
        ``(z, y, x)`` float32; the voxel size is not read (see the module notes).

    Raises
    ------
    FormatError
        If the file is missing or not an EM volume of a supported data type.
    """
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"{p}: file not found; check the path")
    parsed = _parse(p)
    if parsed is None:
        raise FormatError(
            f"{p}: not an EM volume (512-byte header and data size disagree, or an "
            "unsupported data type); convert it to MRC"
        )
    shape_zyx, dtype = parsed
    data = np.fromfile(p, dtype=dtype, offset=EM_HEADER_BYTES)
    return np.ascontiguousarray(data.reshape(shape_zyx), dtype=np.float32)
