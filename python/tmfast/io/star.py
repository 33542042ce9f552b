"""RELION STAR files: writer and reader (both in Rust).

A STAR file is given as a mapping ``block name -> block`` where a block maps column
labels (with or without the leading ``_``) to

* 1-D arrays or sequences (a ``loop_`` table; all columns of equal length), or
* scalars (a key-value block such as RELION's ``data_general``).

Column sets such as RELION5 particles (``rlnTomoName``,
``rlnCenteredCoordinateXAngst`` ..., ``rlnAngleRot/Tilt/Psi``, ``rlnLCCmax``,
``rlnCutOff``, ``rlnSearchStd``, ``rlnTomoTiltSeriesPixelSize``), an optics block, or
pytom-match-pick's default columns are simply such mappings; a pandas DataFrame also
works as a block.

Number formatting: float32 columns are written as the shortest decimal that reads
back to the same float32, float64 columns likewise for float64 (so values round-trip
exactly); floats always carry a ``.`` or an exponent; integers are written in full;
strings with whitespace (or that could be mistaken for STAR syntax) are quoted.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import re
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt

from tmfast import _rust
from tmfast._fileio import atomic_path
from tmfast.errors import ConfigError, FormatError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["StarBlocks", "read_star", "star_to_string", "star_version", "write_star"]

logger = logging.getLogger(__name__)

#: Column value accepted by the writer: an array, a sequence of str, or a scalar.
StarValue: TypeAlias = "npt.ArrayLike | Sequence[str] | str | int | float"
#: What :func:`write_star` accepts: block name -> (label -> values).
StarBlocks: TypeAlias = "Mapping[str, Mapping[str, StarValue] | pd.DataFrame]"

_RustColumn: TypeAlias = (
    "npt.NDArray[np.float32] | npt.NDArray[np.float64] | npt.NDArray[np.int64] "
    "| npt.NDArray[np.uint32] | list[str] | int | float | str"
)


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | bytes) or np.ndim(value) == 0  # type: ignore[arg-type]


def _scalar(block: str, label: str, value: object) -> int | float | str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    item = np.asarray(value).item()
    if isinstance(item, bool | int):
        return int(item)
    if isinstance(item, float):
        return item
    if isinstance(item, str):
        return item
    raise ConfigError(
        f"STAR block {block!r}, key {label!r}: value {value!r} is not a number or str"
    )


def _column(block: str, label: str, value: object) -> _RustColumn:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ConfigError(
            f"STAR block {block!r}, column {label!r} has shape {arr.shape}; "
            "pass a 1-D array or sequence"
        )
    kind = arr.dtype.kind
    if kind == "f":
        if arr.dtype in (np.float16, np.float32):
            return np.ascontiguousarray(arr, dtype=np.float32)
        return np.ascontiguousarray(arr, dtype=np.float64)
    if kind in "iub":
        if kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise ConfigError(
                f"STAR block {block!r}, column {label!r}: values exceed int64"
            )
        return np.ascontiguousarray(arr, dtype=np.int64)
    if kind == "O" and all(isinstance(v, str) for v in arr.tolist()):
        arr = np.array(arr.tolist(), dtype=str)
        kind = "U"
    if kind in "US":
        return _to_utf32(arr.astype(str))
    raise ConfigError(
        f"STAR block {block!r}, column {label!r} has dtype {arr.dtype}; "
        "pass numbers or strings"
    )


def _to_utf32(arr: npt.NDArray[np.str_]) -> npt.NDArray[np.uint32]:
    """View a ``<U{w}`` array as ``(n, w)`` uint32 code points (no per-item objects)."""
    width = max(arr.dtype.itemsize // 4, 1)
    fixed = np.ascontiguousarray(arr, dtype=np.dtype(("U", width)))
    return fixed.view(np.uint32).reshape(arr.shape[0], width)


def _from_utf32(codes: npt.NDArray[np.uint32]) -> npt.NDArray[np.str_]:
    """Inverse of :func:`_to_utf32`."""
    n, width = codes.shape
    out = np.ascontiguousarray(codes).view(np.dtype(("U", width))).reshape(n)
    return out  # type: ignore[return-value]


def _block_items(name: str, block: object) -> list[tuple[str, object]]:
    if hasattr(block, "columns") and hasattr(block, "__getitem__"):  # DataFrame
        return [(str(c), block[c].to_numpy()) for c in block.columns]
    if isinstance(block, Mapping):
        return [(str(k), v) for k, v in block.items()]
    raise ConfigError(
        f"STAR block {name!r} is a {type(block).__name__}; pass a mapping of "
        "column label -> values"
    )


def _to_rust(
    blocks: StarBlocks,
) -> list[tuple[str, bool, list[tuple[str, _RustColumn]]]]:
    if not isinstance(blocks, Mapping):
        raise ConfigError(
            f"STAR blocks must be a mapping of block name -> block, got "
            f"{type(blocks).__name__}"
        )
    out: list[tuple[str, bool, list[tuple[str, _RustColumn]]]] = []
    for name, block in blocks.items():
        if not isinstance(name, str):
            raise ConfigError(f"STAR block name {name!r} is not a str")
        items = _block_items(name, block)
        if not items:
            raise ConfigError(f"STAR block {name!r} has no columns; add at least one")
        scalars = [_is_scalar(v) for _, v in items]
        if all(scalars):
            out.append((name, False, [(k, _scalar(name, k, v)) for k, v in items]))
            continue
        if any(scalars):
            raise ConfigError(
                f"STAR block {name!r} mixes scalars and columns; put key-value "
                "entries in a block of their own"
            )
        cols = [(k, _column(name, k, v)) for k, v in items]
        lengths = {k: len(c) for k, c in cols}  # type: ignore[arg-type]
        if len(set(lengths.values())) > 1:
            raise ConfigError(
                f"STAR block {name!r} has columns of different lengths {lengths}; "
                "pass equal lengths"
            )
        out.append((name, True, cols))
    return out


def star_to_string(blocks: StarBlocks) -> str:
    """Format ``blocks`` as STAR text.

    Parameters
    ----------
    blocks : Mapping
        Block name (without ``data_``) -> mapping of column label -> 1-D values
        (loop table) or scalars (key-value block). See the module docstring.

    Returns
    -------
    str
        The STAR text.

    Raises
    ------
    ConfigError
        If a block is empty, mixes scalars and columns, has unequal column lengths,
        unsupported dtypes, or a string that cannot be quoted.
    """
    rust_blocks = _to_rust(blocks)
    try:
        return _rust.star_to_string(rust_blocks)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def write_star(
    path: str | os.PathLike[str], blocks: StarBlocks, *, overwrite: bool = False
) -> Path:
    """Write ``blocks`` to a STAR file atomically (temporary file, then rename).

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    blocks : Mapping
        As for :func:`star_to_string`.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    ConfigError
        For invalid blocks (see :func:`star_to_string`).
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    rust_blocks = _to_rust(blocks)
    with atomic_path(path, overwrite=overwrite) as tmp:
        try:
            _rust.write_star(str(tmp), rust_blocks)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    logger.debug("wrote STAR file %s", path)
    return Path(path)


def read_star(
    path: str | os.PathLike[str], *, as_text: bool = False
) -> dict[str, dict[str, np.ndarray[Any, Any]]]:
    """Read a STAR file into ``{block name: {label: column}}``.

    Loop tables give one array per column: int64 if every value is an integer,
    float64 if every value is a number, else a str array. Key-value blocks (such as
    ``data_general``) give one-row columns. Labels lose their leading ``_``; blocks
    keep their file order; ``data_`` gives the name ``""``.

    Parameters
    ----------
    path : str or os.PathLike
        The STAR file.
    as_text : bool
        Give every column as a str array of the values as written (unquoted), so
        that identifiers such as ``rlnTomoName 007`` keep their digits; callers
        convert the numbers they use.

    Returns
    -------
    dict
        ``{block name: {label: 1-D numpy array}}``.

    Raises
    ------
    FormatError
        If the file is missing, unreadable or malformed, or repeats a block name.

    Notes
    -----
    A gzip-compressed file (``.star.gz``) and a leading UTF-8 byte-order mark are
    read as the plain text they hold.
    """
    p = Path(path)
    if p.is_dir():
        raise FormatError(f"{p}: is a folder, not a STAR file; give the file")
    if not p.is_file():
        raise FormatError(f"{p}: STAR file not found; check the path")
    with _plain_text(p) as readable:
        try:
            raw = _rust.read_star(str(readable), as_text=as_text)
        except (OSError, ValueError) as exc:
            raise FormatError(
                _read_error_message(readable, exc).replace(str(readable), str(p))
            ) from exc
    out: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
    for name, _is_loop, cols in raw:
        if name in out:
            raise FormatError(
                f"{p}: block data_{name} appears twice; tmfast needs unique block names"
            )
        block: dict[str, np.ndarray[Any, Any]] = {}
        for label, values in cols:
            if values.ndim == 2:
                block[label] = _from_utf32(values.view(np.uint32))
            else:
                block[label] = values
        out[name] = block
    return out


_GZIP_MAGIC = b"\x1f\x8b"


@contextlib.contextmanager
def _plain_text(path: Path) -> Iterator[Path]:
    """``path``, or a temporary decompressed copy when it is gzip-compressed (the
    STAR parser reads plain text; it skips a byte-order mark itself)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(2)
    except OSError:
        head = b""
    if head != _GZIP_MAGIC:
        yield path
        return
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise FormatError(
            f"{path}: gzip-compressed but cannot be decompressed ({exc}); "
            "write the file again"
        ) from None
    fd, name = tempfile.mkstemp(prefix=f"{path.stem}.", suffix=".star")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


#: Longest excerpt of file content quoted in an error message.
_EXCERPT_CHARS = 60


def _read_error_message(path: Path, exc: BaseException) -> str:
    """One short printable line for a failed read of ``path``.

    Binary input (an MRC map given by mistake) is named as such; any quoted file
    content is cut to a short printable excerpt.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(1024)
    except OSError:
        head = b""
    if b"\0" in head:
        return f"{path}: not a STAR file (binary data; an MRC map?)"
    text = "".join(c if c.isprintable() else "?" for c in str(exc))

    def cut(m: re.Match[str]) -> str:
        body = m.group(2)
        if len(body) > _EXCERPT_CHARS:
            body = body[:_EXCERPT_CHARS] + "..."
        return f"{m.group(1)}{body}{m.group(1)}"

    text = re.sub(r'(["\'`])(.*?)\1', cut, text)
    if len(text) > 3 * _EXCERPT_CHARS + len(str(path)):
        text = text[: 3 * _EXCERPT_CHARS + len(str(path))] + "..."
    return f"{text}; check that this is a STAR file"


def star_version(path: str | os.PathLike[str]) -> int | None:
    """Return ``N`` of the ``# version N`` comment before the first block, or ``None``.

    RELION writes the comment (``# version 50001`` for RELION 5); a missing,
    unreadable or malformed comment gives ``None``.
    """
    try:
        with (
            _plain_text(Path(path)) as readable,
            open(readable, encoding="utf-8-sig", errors="replace") as fh,
        ):
            for line in fh:
                s = line.strip()
                if s.startswith("# version"):
                    try:
                        return int(s.split()[2])
                    except (IndexError, ValueError):
                        return None
                if s.startswith("data_"):
                    return None
    except (OSError, FormatError):
        return None
    return None
