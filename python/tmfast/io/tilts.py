"""Readers for per-tilt acquisition inputs: tilt angles, defocus and dose.

Formats (pytom-match-pick's inputs, ../shared/reference/formats.md §4e):

- tilt angles: ``.tlt`` / ``.rawtlt`` / ``.txt``, one angle in degrees per line in
  stack order; multi-column files use the first column; or a ``(min, max)`` pair;
- defocus: a single value in µm, a ``.txt`` with one µm value per tilt, or an IMOD
  ``.defocus`` file (ctfplotter/ctfphaseflip) of version 1/2 (``v1 v2 t1 t2 df_nm``
  rows, the version on the first row) or 3 (a ``flags 0 0. 0. 0. 3`` header, rows
  ``v1 v2 t1 t2 df1_nm df2_nm astig_deg ...`` when flags bit 1 marks astigmatism, else
  ``v1 v2 t1 t2 df_nm ...``); nm are converted to µm and astigmatic pairs averaged;
- dose: a ``.txt`` with the accumulated exposure in e⁻/Å² before each tilt.

Defocus and dose text files hold one value per line (as pytom reads them): a line
with several columns is refused rather than read by a guessed column.

Blank lines and lines starting with ``#`` are skipped. Every reader returns a tuple
of Python floats and raises :class:`tmfast.errors.FormatError` naming the file, the
line and the fix on bad input.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

from tmfast.errors import FormatError

__all__ = ["read_defocus", "read_dose", "read_tilt_angles"]

logger = logging.getLogger(__name__)

#: Defocus values above this many µm are taken for a unit mistake (nm given as µm).
MAX_DEFOCUS_UM = 100.0

PathLike = str | os.PathLike[str]


def _lines(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """Return ``(line_number, fields)`` of the non-blank, non-comment lines."""
    try:
        # utf-8-sig: a byte-order mark (Windows editors) is not part of line 1
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except FileNotFoundError:
        raise FormatError(f"{path}: {what} file not found; check the path") from None
    except OSError as exc:
        raise FormatError(
            f"{path}: cannot read the {what} file ({exc.strerror}); check permissions"
        ) from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            out.append((number, stripped.replace(",", " ").split()))
    if not out:
        raise FormatError(
            f"{path}: the {what} file is empty; it needs one value per tilt"
        )
    return out


def _float(path: Path, number: int, token: str, what: str, fix: str) -> float:
    try:
        v = float(token)
    except ValueError:
        raise FormatError(
            f"{path}, line {number}: {token!r} is not a number ({what}); {fix}"
        ) from None
    if not math.isfinite(v):
        raise FormatError(f"{path}, line {number}: {what} {token!r} is not finite")
    return v


def _one_column(path: Path, number: int, fields: list[str], what: str) -> str:
    """The only field of a per-tilt value line; several are refused: which column
    holds the value is a guess (an AreTomo3 ``_CTF.txt`` starts with the image
    number, and its defocus is in Å)."""
    if len(fields) != 1:
        raise FormatError(
            f"{path}, line {number}: {len(fields)} columns; a {what} file holds one "
            f"value per line, in tilt order (an AreTomo3 _CTF.txt or another "
            "program's table is not one: write that column to a file of its own, or "
            "use the project's metadata with tmfast batch)"
        )
    return fields[0]


def _is_pair(value: object) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and len(value) == 2
    )


def read_tilt_angles(
    path_or_range: PathLike | Sequence[float] | Sequence[str],
) -> tuple[float, ...]:
    """Read tilt angles (degrees) from a file, or validate a ``(min, max)`` pair.

    Parameters
    ----------
    path_or_range
        A ``.tlt`` / ``.rawtlt`` / ``.txt`` file (one angle per line; the first
        column of multi-column files), or two numbers (or numeric strings)
        ``(min, max)``. A one-element sequence is taken as a file name.

    Returns
    -------
    tuple of float
        The angles in file order, or ``(min, max)``.

    Raises
    ------
    FormatError
        If the file is missing, empty or holds a non-number or an angle outside
        [-90, 90]; if it is an AreTomo ``.aln`` or its first column counts the
        images (0..N-1 or 1..N beside other columns); or the pair is not
        ``min <= max`` within [-90, 90].
    """
    if (
        isinstance(path_or_range, Sequence)
        and not isinstance(path_or_range, str | bytes)
        and len(path_or_range) == 1
    ):
        path_or_range = str(path_or_range[0])
    if _is_pair(path_or_range):
        pair = path_or_range
        assert isinstance(pair, Sequence)
        try:
            lo, hi = float(pair[0]), float(pair[1])
        except (TypeError, ValueError):
            raise FormatError(
                f"tilt range {tuple(pair)!r}: give two angles MIN MAX in degrees "
                "or a .tlt/.rawtlt file"
            ) from None
        if not (math.isfinite(lo) and math.isfinite(hi)) or not (
            -90.0 <= lo <= hi <= 90.0
        ):
            raise FormatError(
                f"tilt range ({lo}, {hi}): need -90 <= MIN <= MAX <= 90 degrees "
                "(e.g. -60 60)"
            )
        return (lo, hi)
    if not isinstance(path_or_range, str | os.PathLike):
        raise FormatError(
            f"tilt angles {path_or_range!r}: give a .tlt/.rawtlt file or MIN MAX"
        )
    path = Path(path_or_range)
    if path.suffix.lower() == ".aln":
        raise FormatError(
            f"{path}: an AreTomo alignment file, whose first column is the image "
            "number; give the tilt angles as a .tlt/.rawtlt (AreTomo3 writes "
            "<name>_TLT.txt, or a .tlt with -OutImod), or match an AreTomo3 project "
            "with tmfast batch"
        )
    rows = _lines(path, "tilt angle")
    _refuse_index_column(path, rows)
    angles = []
    for number, fields in rows:
        a = _float(
            path,
            number,
            fields[0],
            "tilt angle",
            "the file needs one tilt angle in degrees per line (first column)",
        )
        if abs(a) > 90.0:
            raise FormatError(
                f"{path}, line {number}: tilt angle {a} is outside [-90, 90] degrees; "
                "is this really a tilt-angle file?"
            )
        angles.append(a)
    return tuple(angles)


def _refuse_index_column(path: Path, rows: list[tuple[int, list[str]]]) -> None:
    """Refuse a multi-column file whose first column counts the images (1, 2, 3...
    or 0, 1, 2...): its tilt angles are in another column."""
    if len(rows) < 3 or any(len(fields) < 2 for _, fields in rows):
        return
    try:
        first = [float(fields[0]) for _, fields in rows]
    except ValueError:
        return  # the angle reader names the line
    for start in (0.0, 1.0):
        if first == [start + i for i in range(len(first))]:
            raise FormatError(
                f"{path}: its first column counts the images ({first[0]:g}, "
                f"{first[1]:g}, {first[2]:g}, ...), so it holds no tilt angles; "
                "give a .tlt/.rawtlt with the tilt angles in the first column"
            )


def _check_defocus(path: Path | None, number: int | None, value: float) -> float:
    if abs(value) > MAX_DEFOCUS_UM:
        where = f"{path}, line {number}" if path is not None else "defocus"
        raise FormatError(
            f"{where}: defocus {value:g} µm is implausibly large; defocus is given "
            "in µm (underfocus positive); if these are nm, divide by 1000 (Å: by "
            "10000) or use an IMOD .defocus file"
        )
    return value


def _read_imod_defocus(path: Path) -> tuple[tuple[float, float], ...]:
    """``(defocus_um, tilt_deg)`` per view, in view order."""
    rows = _lines(path, "IMOD defocus")
    fix = "expected IMOD ctfplotter rows 'view1 view2 tilt1 tilt2 defocus_nm ...'"
    first_no, first = rows[0]
    version = 1
    astigmatic = False
    if len(first) >= 6:
        version = int(_float(path, first_no, first[5], "version", fix))
    if version >= 3:
        flags = int(_float(path, first_no, first[0], "flags", fix))
        astigmatic = bool(flags & 1)
        body = rows[1:]
    elif version in (1, 2):
        body = rows
    else:
        raise FormatError(
            f"{path}, line {first_no}: unknown IMOD defocus file version {version}; "
            "tmfast reads versions 1 to 3"
        )
    if not body:
        raise FormatError(f"{path}: the IMOD defocus file has no defocus rows")
    values = []
    for number, fields in body:
        need = 6 if astigmatic else 5
        if len(fields) < need:
            raise FormatError(
                f"{path}, line {number}: {len(fields)} columns, need at least {need}; "
                + fix
            )
        v1 = _float(path, number, fields[0], "start view", fix)
        v2 = _float(path, number, fields[1], "end view", fix)
        if v1 != v2:
            raise FormatError(
                f"{path}, line {number}: the row covers views {v1:g}-{v2:g}; tmfast "
                "needs one defocus per view: fit each view in ctfplotter, or give a "
                ".txt with one defocus (µm) per tilt"
            )
        df_nm = _float(path, number, fields[4], "defocus", fix)
        if astigmatic:
            df_nm = 0.5 * (df_nm + _float(path, number, fields[5], "defocus 2", fix))
        tilt = _float(path, number, fields[2], "tilt angle", fix)
        df_um = _check_defocus(path, number, df_nm * 1e-3)
        values.append((v1, number, (df_um, tilt)))
    # one value per view, in view order (the file's row order need not be)
    values.sort(key=lambda r: r[0])
    for (a, _, _), (b, number, _) in itertools.pairwise(values):
        if a == b:
            raise FormatError(
                f"{path}, line {number}: view {b:g} appears twice; give one defocus "
                "row per view"
            )
    return tuple(v for _, _, v in values)


#: Largest spread (degrees), after their common offset, between the tilts of an
#: IMOD .defocus file and the tilt-angle file before they are reported.
DEFOCUS_TILT_TOLERANCE_DEG = 1.0


def _compare_defocus_tilts(
    path: Path, file_tilts: Sequence[float], tilt_angles: Sequence[float]
) -> None:
    """Warn when a .defocus file's tilts are not those of the tilt-angle file.

    A constant offset is allowed (ctfplotter may have read the raw tilts, matching
    the aligned ones); a view order or tilt series that differs is not.
    """
    diffs = [a - b for a, b in zip(file_tilts, tilt_angles, strict=True)]
    offset = sorted(diffs)[len(diffs) // 2]
    worst = max(range(len(diffs)), key=lambda i: abs(diffs[i] - offset))
    if abs(diffs[worst] - offset) > DEFOCUS_TILT_TOLERANCE_DEG:
        logger.warning(
            "%s: its tilt angles are not those of the tilt-angle file (view %d: "
            "%g° there, %g° in the tilt file); are both of the same tilt series, in "
            "the same view order?",
            path,
            worst + 1,
            file_tilts[worst],
            tilt_angles[worst],
        )


def read_defocus(
    value_or_path: float | str | os.PathLike[str],
    *,
    n_tilts: int | None = None,
    tilt_angles: Sequence[float] | None = None,
) -> tuple[float, ...]:
    """Read per-tilt defocus values in µm (underfocus positive).

    Parameters
    ----------
    value_or_path
        A single defocus in µm (number or numeric string), a text file with one µm
        value per tilt (any suffix but ``.defocus``), or an IMOD ``.defocus`` file
        (nm, converted to µm; version 3 astigmatic pairs averaged).
    n_tilts
        If given, a single value is repeated ``n_tilts`` times and a file must hold
        exactly ``n_tilts`` values.
    tilt_angles
        The tilt angles the values are for: an IMOD ``.defocus`` file's own tilt
        column is compared with them, and a logged warning says when they differ
        by more than a common offset (another tilt series, or another view order).

    Returns
    -------
    tuple of float
        Defocus per tilt in µm (one element for a single value without
        ``n_tilts``).

    Raises
    ------
    FormatError
        If the file is missing, empty or malformed, a value exceeds 100 µm (a unit
        mistake), or the count differs from ``n_tilts``.
    """
    single: float | None = None
    if isinstance(value_or_path, int | float):
        single = float(value_or_path)
    elif isinstance(value_or_path, str):
        try:
            single = float(value_or_path)
        except ValueError:
            single = None
    if single is not None:
        if not math.isfinite(single):
            raise FormatError(f"defocus {value_or_path!r} µm is not finite")
        _check_defocus(None, None, single)
        return (single,) * (n_tilts if n_tilts is not None else 1)
    assert isinstance(value_or_path, str | os.PathLike)
    path = Path(value_or_path)
    file_tilts: tuple[float, ...] | None = None
    if path.suffix.lower() == ".defocus":
        rows = _read_imod_defocus(path)
        values = tuple(df for df, _ in rows)
        file_tilts = tuple(t for _, t in rows)
    else:
        fix = "the file needs one defocus in µm per line, in tilt order"
        values = tuple(
            _check_defocus(
                path,
                number,
                _float(
                    path,
                    number,
                    _one_column(path, number, fields, "defocus (µm)"),
                    "defocus",
                    fix,
                ),
            )
            for number, fields in _lines(path, "defocus")
        )
    if n_tilts is not None and len(values) != n_tilts:
        raise FormatError(
            f"{path}: {len(values)} defocus values for {n_tilts} tilts; give one value "
            "per tilt in the order of the tilt-angle file"
        )
    if (
        file_tilts is not None
        and tilt_angles is not None
        and len(tilt_angles) == len(file_tilts)
    ):
        _compare_defocus_tilts(path, file_tilts, tilt_angles)
    return values


def read_dose(path: PathLike, *, n_tilts: int | None = None) -> tuple[float, ...]:
    """Read the accumulated dose (e⁻/Å²) before each tilt from a text file.

    Parameters
    ----------
    path
        Text file with one non-negative accumulated dose per line, in tilt order.
    n_tilts
        If given, the file must hold exactly ``n_tilts`` values.

    Returns
    -------
    tuple of float
        Accumulated dose per tilt in e⁻/Å².

    Raises
    ------
    FormatError
        If the file is missing, empty, holds a non-number or a negative dose, or the
        count differs from ``n_tilts``.
    """
    p = Path(path)
    fix = "the file needs one accumulated dose in e-/Å² per line, in tilt order"
    values = []
    for number, fields in _lines(p, "dose"):
        v = _float(p, number, _one_column(p, number, fields, "dose"), "dose", fix)
        if v < 0:
            raise FormatError(
                f"{p}, line {number}: negative dose {v}; the file needs the "
                "accumulated exposure (e-/Å², >= 0) before each tilt"
            )
        values.append(v)
    if n_tilts is not None and len(values) != n_tilts:
        raise FormatError(
            f"{p}: {len(values)} dose values for {n_tilts} tilts; give one value per "
            "tilt in the order of the tilt-angle file"
        )
    return tuple(values)
