"""Atomic output files: write to a temporary name, then rename.

Used by every writer so that a killed job never leaves a partial or corrupt file and
results are never silently overwritten.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tmfast.errors import OutputExistsError

__all__ = ["atomic_path", "check_writable"]


def check_writable(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Return ``path`` as a Path, refusing to replace an existing file.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputExistsError(
            f"{p}: output exists; pass --overwrite (overwrite=True) to replace it"
        )
    return p


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, overwrite: bool = False
) -> Iterator[Path]:
    """Yield a temporary path in the target folder; rename it to ``path`` on success.

    The temporary file is removed if the body raises, so no partial output remains.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    final = check_writable(path, overwrite=overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=".part", dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the result the mode a plain open() would (shared
    # cluster folders need group/other read access).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
