"""EM volume headers (TOM toolbox / AV3 / pytom / cryoCAT): recognise a file.

The EM format is a 512-byte header followed by the raw data: byte 0 is the machine
code (1 and 6: little-endian, 3 and 5: big-endian, 0 and 2 taken as little), byte 3
the data type (1 int8, 2 int16, 4 int32, 5 float32, 8 complex64, 9 float64), bytes
4-15 the dimensions ``nx, ny, nz`` (int32), and the file is exactly header plus data
(x fastest: a C-ordered ``(z, y, x)`` array). Reading the data for templates is
:mod:`tmfast.templates.em`; :mod:`tmfast.io.mrc` names EM files in its errors.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

__all__ = ["EM_HEADER_BYTES", "EmHeader", "read_em_header"]

#: Bytes before the data.
EM_HEADER_BYTES = 512

#: EM data-type code -> numpy type (byte order added from the machine code).
_EM_TYPES = {1: "i1", 2: "i2", 4: "i4", 5: "f4", 8: "c8", 9: "f8"}


@dataclasses.dataclass(frozen=True)
class EmHeader:
    """What an EM header says: the ``(z, y, x)`` shape and the data's numpy dtype."""

    shape_zyx: tuple[int, int, int]
    dtype: np.dtype


def read_em_header(path: Path, *, check_size: bool = True) -> EmHeader | None:
    """The header of ``path`` if it is an EM file (known machine code and data type,
    size equal to header plus data), else None (also when it cannot be read).

    With ``check_size=False`` the size is not compared (to name a truncated EM
    file as such); the header alone is weak evidence, so callers also look at the
    file name."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
        size = path.stat().st_size
    except OSError:
        return None
    if len(head) < 16 or head[0] not in (0, 1, 2, 3, 5, 6) or head[3] not in _EM_TYPES:
        return None
    order = ">" if head[0] in (3, 5) else "<"
    nx, ny, nz = (int(v) for v in np.frombuffer(head[4:16], f"{order}i4"))
    dtype = np.dtype(f"{order}{_EM_TYPES[head[3]]}")
    if min(nx, ny, nz) < 1:
        return None
    if check_size and EM_HEADER_BYTES + nx * ny * nz * dtype.itemsize != size:
        return None
    return EmHeader(shape_zyx=(nz, ny, nx), dtype=dtype)
