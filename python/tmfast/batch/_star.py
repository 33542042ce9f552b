"""A small reader for STAR files (RELION), enough for tomograms and tilt-series tables.

Blocks are returned in file order as :class:`StarBlock` objects holding either a
loop (column names and string rows) or key-value pairs. Values stay strings; the
importers convert the columns they use and report bad numbers with the file name.
``starfile`` is the test oracle for this reader; it is not a runtime dependency.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

from tmfast.errors import FormatError

__all__ = ["StarBlock", "read_star", "star_version"]


@dataclasses.dataclass
class StarBlock:
    """One ``data_`` block: a loop table or key-value pairs.

    Attributes
    ----------
    name
        Block name without the ``data_`` prefix.
    columns
        Loop column labels without the leading underscore (empty for a pair block).
    rows
        Loop rows, one list of strings per row, ``len(columns)`` values each.
    pairs
        Key-value entries (labels without the underscore) for a non-loop block.
    """

    name: str
    columns: list[str] = dataclasses.field(default_factory=list)
    rows: list[list[str]] = dataclasses.field(default_factory=list)
    pairs: dict[str, str] = dataclasses.field(default_factory=dict)

    def column(self, label: str) -> list[str]:
        """Return the values of loop column ``label`` (KeyError if absent)."""
        i = self.columns.index(label)
        return [r[i] for r in self.rows]

    def has(self, label: str) -> bool:
        """Whether ``label`` is a loop column or a pair key."""
        return label in self.columns or label in self.pairs

    def records(self) -> list[dict[str, str]]:
        """Rows as dicts (loop), or one dict of the pairs (pair block)."""
        if self.columns:
            return [dict(zip(self.columns, r, strict=True)) for r in self.rows]
        return [dict(self.pairs)]


def _split(line: str) -> list[str]:
    if '"' in line or "'" in line:
        try:
            return shlex.split(line, comments=False, posix=True)
        except ValueError:
            return line.split()
    return line.split()


def star_version(path: str | Path) -> int | None:
    """Return the number in a ``# version N`` comment line, or ``None``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                s = line.strip()
                if s.startswith("# version"):
                    try:
                        return int(s.split()[2])
                    except (IndexError, ValueError):
                        return None
                if s.startswith("data_"):
                    return None
    except OSError:
        return None
    return None


def read_star(path: str | Path) -> list[StarBlock]:
    """Read every block of a STAR file.

    Parameters
    ----------
    path
        STAR file.

    Returns
    -------
    list of StarBlock
        Blocks in file order.

    Raises
    ------
    FormatError
        If the file is missing or a loop row has the wrong number of values.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise FormatError(f"{p}: STAR file not found; check the path") from None
    except OSError as exc:
        raise FormatError(f"{p}: cannot read STAR file ({exc})") from None
    blocks: list[StarBlock] = []
    block: StarBlock | None = None
    in_loop = False
    reading_labels = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("data_"):
            block = StarBlock(name=line[5:].split()[0] if len(line) > 5 else "")
            blocks.append(block)
            in_loop = reading_labels = False
            continue
        if block is None:
            continue
        if line.startswith("loop_"):
            in_loop = True
            reading_labels = True
            continue
        if line.startswith("_"):
            parts = line.split(None, 1)
            label = parts[0][1:]
            if in_loop and reading_labels:
                block.columns.append(label)
            else:
                in_loop = False
                value = parts[1].split("#")[0].strip() if len(parts) > 1 else ""
                vals = _split(value)
                block.pairs[label] = vals[0] if vals else ""
            continue
        if in_loop:
            reading_labels = False
            values = _split(line)
            if len(values) != len(block.columns):
                raise FormatError(
                    f"{p}:{lineno}: {len(values)} values for {len(block.columns)} "
                    f"columns in block data_{block.name}; the file is truncated or "
                    "malformed"
                )
            block.rows.append(values)
    return blocks
