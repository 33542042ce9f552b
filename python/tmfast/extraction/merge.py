"""Particle STAR utilities: merge files, RELION5 import index, STAR to IMOD models.

Particle tables are read with :func:`tmfast.io.star.read_star`. A file's particle
block is ``particles`` when present (RELION5 files also carry ``general`` and
``optics``), otherwise its only block holding coordinates (pytom-match-pick writes a
single ``particles`` block; older tools use other names).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tmfast.errors import ConfigError, FormatError
from tmfast.extraction.star_columns import (
    centred_angstrom_to_voxels,
    read_relion5_tomograms,
)
from tmfast.extraction.star_columns import (
    strip_prefix as _strip,
)
from tmfast.io.star import read_star

__all__ = [
    "merge_particle_stars",
    "particle_block",
    "relion5_import_index",
    "star_to_imod",
]

logger = logging.getLogger(__name__)

_CENTRED = (
    "rlnCenteredCoordinateXAngst",
    "rlnCenteredCoordinateYAngst",
    "rlnCenteredCoordinateZAngst",
)
_VOXELS = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
_NAME_COLUMNS = ("rlnTomoName", "rlnMicrographName")
#: Identifier columns kept exactly as written: a tomogram called ``007`` must not
#: become the number 7 (RELION matches names as text against tomograms.star).
_TEXT_COLUMNS = (
    *_NAME_COLUMNS,
    "rlnTomoParticleName",
    "rlnOpticsGroupName",
    "rlnImageName",
    "rlnCtfImage",
    "rlnTomoImportParticleFile",
)


def _read_particle_star(path: Path) -> dict[str, dict[str, Any]]:
    """Read a STAR file with numbers parsed but identifier columns as written."""
    blocks = read_star(path)
    text: dict[str, dict[str, Any]] | None = None
    for name, block in blocks.items():
        for col in _TEXT_COLUMNS:
            if col in block and block[col].dtype.kind != "U":
                if text is None:
                    text = read_star(path, as_text=True)
                block[col] = text[name][col]
    return blocks


def _n_rows(block: dict[str, Any]) -> int:
    return len(next(iter(block.values()))) if block else 0


def particle_block(
    blocks: dict[str, dict[str, Any]], path: str | os.PathLike[str]
) -> tuple[str, dict[str, Any]]:
    """Return the name and columns of a file's particle table.

    Raises
    ------
    FormatError
        If no block holds particle coordinates, or the ``particles`` block lacks a
        full set of coordinate columns.
    """
    if "particles" in blocks:
        block = blocks["particles"]
        if not (all(c in block for c in _CENTRED) or all(c in block for c in _VOXELS)):
            raise FormatError(
                f"{path}: block 'particles' lacks rlnCenteredCoordinate{{X,Y,Z}}Angst "
                "or rlnCoordinate{X,Y,Z} (an import index or another table?); give a "
                "particle STAR file"
            )
        return "particles", block
    hits = [(k, b) for k, b in blocks.items() if _CENTRED[0] in b or _VOXELS[0] in b]
    if len(hits) == 1:
        return hits[0]
    raise FormatError(
        f"{path}: {'no' if not hits else 'more than one'} particle table (a block "
        "'particles' or one with rlnCenteredCoordinateXAngst/rlnCoordinateX); give "
        "a particle STAR file"
    )


def _tomo_names(block: dict[str, Any], path: Path, prefix: str) -> list[str]:
    for col in _NAME_COLUMNS:
        if col in block:
            return [_strip(str(v), prefix) for v in block[col]]
    return [_strip(path.stem.removesuffix("_particles"), prefix)] * _n_rows(block)


def merge_particle_stars(
    files: Sequence[str | os.PathLike[str]], *, strip_prefix: str = ""
) -> dict[str, dict[str, Any]]:
    """Concatenate the particle tables of several STAR files.

    RELION5 optics groups are merged: identical groups (same values apart from the
    group number) are shared, others renumbered, and ``rlnOpticsGroup`` of the
    particles remapped. The first file's ``general`` block is kept.

    Parameters
    ----------
    files
        Particle STAR files (one or more).
    strip_prefix
        Prefix removed from ``rlnTomoName`` / ``rlnMicrographName`` values.

    Returns
    -------
    dict
        Blocks for :func:`tmfast.io.star.write_star` (``general``, ``optics`` when
        present, ``particles``).

    Raises
    ------
    FormatError
        If a file is missing, has no particle table, or the column sets differ.
    """
    if not files:
        raise ConfigError("no input files: pass the particle STAR files as files")
    columns: list[str] | None = None
    parts: list[dict[str, Any]] = []
    general: dict[str, Any] | None = None
    general_path = Path()
    optics_cols: list[str] | None = None
    optics_rows: list[tuple[Any, ...]] = []
    first_path = Path(files[0])
    for f in files:
        p = Path(f)
        blocks = _read_particle_star(p)
        _, block = particle_block(blocks, p)
        if columns is None:
            columns, first_path = list(block), p
        elif set(block) != set(columns):
            missing = sorted(set(columns) - set(block))
            extra = sorted(set(block) - set(columns))
            raise FormatError(
                f"{p}: columns differ from {first_path.name} (missing {missing}, extra "
                f"{extra}); merge files written with the same column set"
            )
        block = {k: np.asarray(block[k]) for k in columns}
        if general is None and "general" in blocks:
            general, general_path = blocks["general"], p
        elif general is not None and "general" in blocks:
            # e.g. rlnTomoSubTomosAre2DStacks: one header cannot describe both
            other = blocks["general"]
            if {k: str(np.asarray(v).tolist()) for k, v in other.items()} != {
                k: str(np.asarray(v).tolist()) for k, v in general.items()
            }:
                raise FormatError(
                    f"{p}: data_general differs from {general_path.name}'s "
                    f"({_general_text(other)} vs {_general_text(general)}); merge "
                    "particles of the same kind (2D stacks or 3D subtomograms)"
                )
        if "optics" in blocks:
            ob = blocks["optics"]
            cols = [c for c in ob if c != "rlnOpticsGroup"]
            if optics_cols is None:
                optics_cols = cols
            elif set(cols) != set(optics_cols):
                raise FormatError(f"{p}: optics columns differ from the first file's")
            remap = {}
            for i in range(_n_rows(ob)):
                row = tuple(str(ob[c][i]) for c in optics_cols)
                if row not in optics_rows:
                    optics_rows.append(row)
                old = int(ob["rlnOpticsGroup"][i]) if "rlnOpticsGroup" in ob else i + 1
                remap[old] = optics_rows.index(row) + 1
            if "rlnOpticsGroup" in block:
                block["rlnOpticsGroup"] = np.array(
                    [remap.get(int(g), int(g)) for g in block["rlnOpticsGroup"]],
                    dtype=np.int64,
                )
        for col in _NAME_COLUMNS:
            if col in block and strip_prefix:
                block[col] = np.array(
                    [_strip(str(v), strip_prefix) for v in block[col]]
                )
        parts.append(block)
    assert columns is not None
    merged = {c: np.concatenate([b[c] for b in parts]) for c in columns}
    out: dict[str, dict[str, Any]] = {}
    if general is not None:
        # read_star gives key-value blocks as one-row columns: write them back as
        # key-value pairs (RELION's data_general layout).
        out["general"] = {
            k: (np.asarray(v).tolist()[0] if np.size(v) == 1 else v)
            for k, v in general.items()
        }
    if optics_cols is not None:
        _unique_group_names(optics_cols, optics_rows)
        out["optics"] = {
            "rlnOpticsGroup": np.arange(1, len(optics_rows) + 1, dtype=np.int64),
            **{
                c: (
                    np.array([r[j] for r in optics_rows])
                    if c in _TEXT_COLUMNS
                    else _typed([r[j] for r in optics_rows])
                )
                for j, c in enumerate(optics_cols)
            },
        }
    out["particles"] = merged
    return out


def _unique_group_names(cols: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Rename, in place, optics groups that share an ``rlnOpticsGroupName`` but
    differ in other values (e.g. one tilt series at two pixel sizes): the later
    ones get ``_<group number>``, so every group name points at one group."""
    if "rlnOpticsGroupName" not in cols:
        return
    j = cols.index("rlnOpticsGroupName")
    names = {str(r[j]) for r in rows}
    seen: set[str] = set()
    for k, row in enumerate(rows):
        name = str(row[j])
        if name in seen:
            new, n = f"{name}_{k + 1}", k + 1
            while new in names:
                n += 1000
                new = f"{name}_{n}"
            logger.warning(
                "optics group %r appears with different values in the inputs; "
                "group %d renamed %r",
                name,
                k + 1,
                new,
            )
            rows[k] = (*row[:j], new, *row[j + 1 :])
            names.add(new)
            name = new
        seen.add(name)


def _general_text(block: dict[str, Any]) -> str:
    return ", ".join(f"{k} {np.asarray(v).ravel()[0]}" for k, v in block.items())


def _typed(values: list[str]) -> npt.NDArray[Any]:
    for dtype in (np.int64, np.float64):
        try:
            arr = np.array(values, dtype=dtype)
            if dtype is np.int64 and any("." in v or "e" in v.lower() for v in values):
                continue
            return arr
        except ValueError:
            continue
    return np.array(values)


def relion5_import_index(
    files: Sequence[str | os.PathLike[str]], *, strip_prefix: str = ""
) -> dict[str, dict[str, Any]]:
    """Return RELION5's coordinate-import index: one row per file.

    Columns ``rlnTomoName`` and ``rlnTomoImportParticleFile`` (absolute path), as
    ``relion_tomo_import_coordinates`` reads them: for each row it appends the
    *whole* file, and when the file has an ``rlnTomoName`` column it requires the
    file's first name to equal the row's name verbatim; otherwise it labels every
    particle with the row's name. So a file with ``rlnTomoName`` gets one row
    under its first name (its other tomograms come along with their own names),
    and a file without it (pytom's ``rlnMicrographName`` columns) one row under
    its only tomogram name, ``strip_prefix`` removed. Files without particles are
    left out (RELION cannot read a name from them).

    Raises
    ------
    FormatError
        If a file is missing or has no particle table; if ``strip_prefix`` would
        change a name written in a file's ``rlnTomoName`` (RELION compares them
        verbatim: merge with ``strip_prefix`` instead); or if a file without
        ``rlnTomoName`` holds several tomograms (RELION would give them all one
        name).
    """
    if not files:
        raise ConfigError("no input files: pass the particle STAR files as files")
    names: list[str] = []
    paths: list[str] = []
    for f in files:
        p = Path(f).resolve()
        _, block = particle_block(_read_particle_star(p), p)
        if _n_rows(block) == 0:
            logger.warning("%s: no particles; left out of the import index", p)
            continue
        if "rlnTomoName" in block:
            written = [str(v) for v in block["rlnTomoName"]]
            first = written[0]
            hit = next((n for n in written if _strip(n, strip_prefix) != n), None)
            if hit is not None:
                raise FormatError(
                    f"{p}: rlnTomoName {hit!r} starts with {strip_prefix!r}, but "
                    "RELION's importer compares the index name with the file's "
                    "names as written; merge the files with strip_prefix "
                    "(merge_particle_stars) and import the merged file instead"
                )
            names.append(first)
        else:
            found = list(dict.fromkeys(_tomo_names(block, p, strip_prefix)))
            if len(found) > 1:
                raise FormatError(
                    f"{p}: {len(found)} tomograms ({', '.join(found[:3])}...) but no "
                    "rlnTomoName column; RELION's importer would label every "
                    "particle with one name: write one file per tomogram"
                )
            names.append(found[0])
        paths.append(str(p))
    return {"particles": {"rlnTomoName": names, "rlnTomoImportParticleFile": paths}}


def _column(block: dict[str, Any], name: str) -> npt.NDArray[np.float64]:
    return np.asarray(block[name], dtype=np.float64)


def star_to_imod(
    files: Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    *,
    dims_xyz: Sequence[int] | None = None,
    tomograms_star: str | os.PathLike[str] | None = None,
    binning: float = 1.0,
    radius_px: float | None = None,
    particle_diameter_a: float | None = None,
    strip_prefix: str = "rec_",
    overwrite: bool = False,
) -> dict[str, tuple[Path, int]]:
    """Write one IMOD point model per tomogram from RELION5 or pytom STAR files.

    RELION5 centred Å coordinates are turned into tomogram voxels by inverting
    RELION's centring (:mod:`tmfast.extraction.star_columns`), with the tilt-series
    pixel size from the particle rows (``rlnTomoTiltSeriesPixelSize``), the optics
    block or ``tomograms.star``, and the binning and bin-1 size from
    ``tomograms.star`` or from ``dims_xyz`` and ``binning``. ``rlnOrigin{X,Y,Z}Angst``
    shifts are applied. ``rlnCoordinate{X,Y,Z}`` (pytom's default columns) are taken
    as tomogram voxels.

    Parameters
    ----------
    files
        STAR files, any number of blocks and tomograms each.
    output_dir
        Folder for ``{tomo}.mod``.
    dims_xyz
        Binned tomogram size ``(X, Y, Z)`` in voxels (all tomograms).
    tomograms_star
        RELION5 ``tomograms.star`` giving each tomogram's geometry.
    binning
        Binning used with ``dims_xyz`` for centred coordinates.
    radius_px
        Sphere radius in tomogram voxels; default from ``particle_diameter_a`` or 5.
    particle_diameter_a
        Particle diameter in Å.
    strip_prefix
        Prefix removed from tomogram names (``rec_``).
    overwrite
        Replace existing models.

    Returns
    -------
    dict
        ``{tomo_name: (path, n_points)}``.

    Raises
    ------
    FormatError
        If a file has no coordinates or the geometry needed is missing.
    ConfigError
        If neither ``dims_xyz`` nor ``tomograms_star`` is given.
    """
    from tmfast._fileio import check_writable
    from tmfast.io.imod import write_imod_points

    # option checks, before any file is read (the CLI names its flags)
    if radius_px is not None and not (math.isfinite(radius_px) and radius_px > 0):
        raise ConfigError(
            f"radius_px={radius_px:g} must be a positive sphere radius in voxels"
        )
    if particle_diameter_a is not None and not (
        math.isfinite(particle_diameter_a) and particle_diameter_a > 0
    ):
        raise ConfigError(
            f"particle_diameter_a={particle_diameter_a:g} must be a positive "
            "diameter in Å"
        )
    if not (math.isfinite(binning) and binning > 0):
        raise ConfigError(f"binning={binning:g} must be > 0 (e.g. 1 or 4)")
    if dims_xyz is not None and any(int(v) < 1 for v in dims_xyz):
        x, y, z = dims_xyz
        raise ConfigError(
            f"dims_xyz=({x}, {y}, {z}): the tomogram size X Y Z must be positive voxels"
        )
    if dims_xyz is None and tomograms_star is None:
        raise ConfigError(
            "the tomogram size is needed: pass dims_xyz=(X, Y, Z) or tomograms_star"
        )
    if not files:
        raise ConfigError("no input files: pass the particle STAR files as files")
    geo = read_relion5_tomograms(tomograms_star) if tomograms_star is not None else {}
    points: dict[str, list[npt.NDArray[np.float64]]] = {}
    voxel_a: dict[str, float] = {}
    dims_of: dict[str, tuple[int, int, int]] = {}
    for f in files:
        p = Path(f)
        blocks = _read_particle_star(p)
        tables = [
            (k, b) for k, b in blocks.items() if _CENTRED[0] in b or _VOXELS[0] in b
        ]
        if not tables:
            raise FormatError(
                f"{p}: no block with rlnCenteredCoordinate{{X,Y,Z}}Angst or "
                "rlnCoordinate{X,Y,Z}; give a particle STAR file"
            )
        if all(_n_rows(b) == 0 for _, b in tables):
            # an honestly empty extraction result: say so instead of a silent no-op
            logger.warning("%s: no particles; no IMOD model from this file", p)
        optics = blocks.get("optics")
        for _, b in tables:
            names = _tomo_names(b, p, strip_prefix)
            centred = _CENTRED[0] in b
            need = _CENTRED if centred else _VOXELS
            lacking = [c for c in need if c not in b]
            if lacking:
                raise FormatError(f"{p}: particle table lacks columns {lacking}")
            xyz = np.stack([_column(b, c) for c in need], axis=1)
            if centred:
                for i, ax in enumerate("XYZ"):
                    if f"rlnOrigin{ax}Angst" in b:
                        xyz[:, i] -= _column(b, f"rlnOrigin{ax}Angst")
                px = _pixel_sizes(b, optics, names, geo, p)
            for name in dict.fromkeys(names):
                rows = np.array([n == name for n in names])
                g = geo.get(name)
                if g is None and tomograms_star is not None and dims_xyz is None:
                    raise FormatError(
                        f"{tomograms_star}: no rlnTomoName {name!r} (from {p.name}); "
                        "give the matching tomograms.star or dims_xyz=(X, Y, Z)"
                    )
                if g is not None and g.size_xyz_unbinned is not None:
                    b_ = g.binning
                    size_unb = np.asarray(g.size_xyz_unbinned, dtype=np.float64)
                    dims = tuple(round(v / b_) for v in size_unb)
                else:
                    if dims_xyz is None:
                        raise FormatError(
                            f"{tomograms_star}: no rlnTomoSize columns for {name!r}; "
                            "pass dims_xyz=(X, Y, Z)"
                        )
                    b_ = g.binning if g is not None else binning
                    dims = tuple(int(v) for v in dims_xyz)
                    size_unb = np.asarray(dims, dtype=np.float64) * b_
                if centred:
                    vox = centred_angstrom_to_voxels(
                        xyz[rows],
                        pixel_size_a=px[rows],
                        binning=b_,
                        tomo_size_xyz_unbinned=tuple(size_unb),
                    )
                    voxel_a.setdefault(name, float(px[rows][0]) * b_)
                else:
                    vox = xyz[rows]
                    if "rlnDetectorPixelSize" in b:
                        voxel_a.setdefault(
                            name, float(_column(b, "rlnDetectorPixelSize")[rows][0])
                        )
                    elif g is not None:
                        voxel_a.setdefault(name, g.tilt_series_pixel_size_a * b_)
                d = np.asarray(dims, dtype=np.float64)
                outside = int(np.any((vox < -0.5) | (vox > d - 0.5), axis=1).sum())
                if outside:
                    # a wrong pixel size, binning or size puts points off the map
                    logger.warning(
                        "%s: %d of %d points of %s lie outside its %s voxel "
                        "tomogram; check the pixel size and binning "
                        "(tomograms.star, tomogram size, binning)",
                        p,
                        outside,
                        len(vox),
                        name,
                        " x ".join(str(int(v)) for v in dims),
                    )
                points.setdefault(name, []).append(vox)
                dims_of.setdefault(name, dims)
    out_dir = Path(output_dir)
    targets = {name: out_dir / f"{name}.mod" for name in points}
    for t in targets.values():
        check_writable(t, overwrite=overwrite)
    if radius_px is None and particle_diameter_a is not None:
        unknown = [name for name in points if name not in voxel_a]
        if unknown:
            # a 1 Å fallback would draw spheres --particle-diameter/2 voxels wide
            raise ConfigError(
                f"{unknown[0]}: no voxel size for particle_diameter_a (no "
                "rlnDetectorPixelSize or rlnTomoTiltSeriesPixelSize, not in "
                "tomograms_star); pass radius_px in voxels or tomograms_star"
            )
    written: dict[str, tuple[Path, int]] = {}
    for name, chunks in points.items():
        pts = np.concatenate(chunks)
        vs = voxel_a.get(name, 1.0)
        if radius_px is not None:
            r = float(radius_px)
        elif particle_diameter_a is not None:
            r = particle_diameter_a / 2.0 / vs
        else:
            r = 5.0
        write_imod_points(
            targets[name],
            pts,
            radius_px=r,
            object_names=[name],
            dims_xyz=dims_of[name],
            pixel_size_a=vs,
            overwrite=overwrite,
        )
        written[name] = (targets[name], len(pts))
    return written


def _pixel_sizes(
    block: dict[str, Any],
    optics: dict[str, Any] | None,
    names: list[str],
    geo: dict[str, Any],
    path: Path,
) -> npt.NDArray[np.float64]:
    if "rlnTomoTiltSeriesPixelSize" in block:
        return _column(block, "rlnTomoTiltSeriesPixelSize")
    if optics is not None and "rlnTomoTiltSeriesPixelSize" in optics:
        groups = np.asarray(
            optics.get("rlnOpticsGroup", np.arange(1, _n_rows(optics) + 1)), dtype=int
        )
        table = dict(
            zip(
                groups.tolist(),
                _column(optics, "rlnTomoTiltSeriesPixelSize").tolist(),
                strict=True,
            )
        )
        g = np.asarray(block.get("rlnOpticsGroup", np.ones(len(names))), dtype=int)
        return np.array([table[int(v)] for v in g], dtype=np.float64)
    if all(n in geo for n in names):
        return np.array([geo[n].tilt_series_pixel_size_a for n in names])
    raise FormatError(
        f"{path}: no rlnTomoTiltSeriesPixelSize (particles, optics or "
        "tomograms.star); pass tomograms_star"
    )
