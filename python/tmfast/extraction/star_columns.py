"""STAR column sets for particle tables, and RELION5's centred-Ångström coordinates.

Centring convention
-------------------
RELION5 stores particle positions as ``rlnCenteredCoordinate{X,Y,Z}Angst``: the
offset from the tomogram centre in Å. Its C++ core (``tomogram_set.cpp``) converts
with ``centre = size / 2.0`` in **unbinned tilt-series pixels**::

    centred_A = (x_unbinned_px - SizeX / 2) * rlnTomoTiltSeriesPixelSize
    x_unbinned_px = x_vox * rlnTomoTomogramBinning

where ``x_vox`` is the 0-based voxel index in the (binned) reconstructed tomogram and
``SizeX`` is ``rlnTomoSizeX`` (the bin-1 tomogram width). tmfast writes exactly this.
When RELION5's ``rlnTomoSizeX`` is not known, ``SizeX = tomogram width in voxels x
binning``. Without RELION5 metadata the binning is 1 and the pixel size is the
tomogram voxel size, so ``centred_A = (x_vox - nx / 2) * voxel_size_a``.

pytom-match-pick's ``--relion5-compat`` uses ``centre = nx * binning / 2 - 1`` when it
has RELION5 metadata (one unbinned pixel off RELION's C++ core, the convention of
RELION's own Python picker, relion#1280) and writes the *binned* voxel size as
``rlnTomoTiltSeriesPixelSize``; tmfast writes the tilt-series pixel size there, as
RELION5 expects.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tmfast.errors import FormatError

__all__ = [
    "PYTOM_COLUMNS",
    "RELION5_COLUMNS",
    "Relion5TomogramGeometry",
    "Relion5TomogramRow",
    "centred_angstrom_to_voxels",
    "read_relion5_tomogram_rows",
    "read_relion5_tomograms",
    "relion5_tomogram_geometry",
    "star_number",
    "strip_prefix",
    "voxels_to_centred_angstrom",
]

#: Column order of the RELION5 particle block tmfast writes.
RELION5_COLUMNS = (
    "rlnCenteredCoordinateXAngst",
    "rlnCenteredCoordinateYAngst",
    "rlnCenteredCoordinateZAngst",
    "rlnAngleRot",
    "rlnAngleTilt",
    "rlnAnglePsi",
    "rlnLCCmax",
    "rlnCutOff",
    "rlnSearchStd",
    "rlnTomoTiltSeriesPixelSize",
    "rlnTomoName",
)

#: pytom-match-pick's default column set (voxel coordinates of the full tomogram).
PYTOM_COLUMNS = (
    "rlnCoordinateX",
    "rlnCoordinateY",
    "rlnCoordinateZ",
    "rlnAngleRot",
    "rlnAngleTilt",
    "rlnAnglePsi",
    "rlnLCCmax",
    "rlnCutOff",
    "rlnSearchStd",
    "rlnDetectorPixelSize",
    "rlnMicrographName",
)


def strip_prefix(name: str, prefix: str = "rec_") -> str:
    """Return ``name`` without a leading ``prefix`` (RELION5 names lack ``rec_``)."""
    return name[len(prefix) :] if prefix and name.startswith(prefix) else name


def voxels_to_centred_angstrom(
    coords_xyz_vox: npt.ArrayLike,
    *,
    tomo_size_xyz_vox: Sequence[float],
    pixel_size_a: float,
    binning: float = 1.0,
    tomo_size_xyz_unbinned: Sequence[float] | None = None,
) -> npt.NDArray[np.float64]:
    """Convert tomogram voxel indices to RELION5 centred Å coordinates.

    Parameters
    ----------
    coords_xyz_vox
        ``(N, 3)`` 0-based voxel indices ``(x, y, z)`` in the (binned) tomogram.
    tomo_size_xyz_vox
        Tomogram size ``(nx, ny, nz)`` in voxels.
    pixel_size_a
        Tilt-series (unbinned) pixel size in Å; the tomogram voxel size when
        ``binning`` is 1.
    binning
        Tomogram binning relative to the tilt series.
    tomo_size_xyz_unbinned
        RELION5 ``rlnTomoSize{X,Y,Z}`` (bin-1 size) when known; otherwise
        ``tomo_size_xyz_vox * binning``.

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` float64 centred coordinates ``(x, y, z)`` in Å.
    """
    c = np.atleast_2d(np.asarray(coords_xyz_vox, dtype=np.float64)).reshape(-1, 3)
    size = (
        np.asarray(tomo_size_xyz_unbinned, dtype=np.float64)
        if tomo_size_xyz_unbinned is not None
        else np.asarray(tomo_size_xyz_vox, dtype=np.float64) * binning
    )
    out: npt.NDArray[np.float64] = (c * binning - size / 2.0) * pixel_size_a
    return out


def centred_angstrom_to_voxels(
    coords_xyz_a: npt.ArrayLike,
    *,
    pixel_size_a: float | npt.ArrayLike,
    binning: float = 1.0,
    tomo_size_xyz_unbinned: Sequence[float] | None = None,
    tomo_size_xyz_vox: Sequence[float] | None = None,
) -> npt.NDArray[np.float64]:
    """Invert :func:`voxels_to_centred_angstrom`.

    Parameters
    ----------
    coords_xyz_a
        ``(N, 3)`` RELION5 centred coordinates ``(x, y, z)`` in Å.
    pixel_size_a
        Tilt-series pixel size in Å (a scalar or one value per row).
    binning
        Tomogram binning relative to the tilt series.
    tomo_size_xyz_unbinned, tomo_size_xyz_vox
        The bin-1 size (``rlnTomoSize{X,Y,Z}``) or the binned size in voxels; one
        of them is required.

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` float64 voxel coordinates ``(x, y, z)`` in the binned tomogram.

    Raises
    ------
    ValueError
        If neither size is given.
    """
    c = np.atleast_2d(np.asarray(coords_xyz_a, dtype=np.float64)).reshape(-1, 3)
    if tomo_size_xyz_unbinned is not None:
        size = np.asarray(tomo_size_xyz_unbinned, dtype=np.float64)
    elif tomo_size_xyz_vox is not None:
        size = np.asarray(tomo_size_xyz_vox, dtype=np.float64) * binning
    else:
        raise ValueError("give tomo_size_xyz_unbinned or tomo_size_xyz_vox")
    px = np.asarray(pixel_size_a, dtype=np.float64).reshape(-1, 1)
    out: npt.NDArray[np.float64] = (c / px + size / 2.0) / binning
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class Relion5TomogramRow:
    """One row of a RELION5 ``tomograms.star`` tomogram table (``data_global``).

    Attributes
    ----------
    tomo_name
        ``rlnTomoName``, as written.
    tilt_series_pixel_size_a
        ``rlnTomoTiltSeriesPixelSize`` in Å, or ``None`` when the column is absent.
    binning
        ``rlnTomoTomogramBinning``, or ``None`` when absent.
    size_xyz_unbinned
        ``rlnTomoSize{X,Y,Z}`` (bin-1 size in pixels), or ``None`` when absent.
    values
        The whole row, label -> value as written (paths, optics, handedness).
    source
        The tomograms.star the row comes from (for error messages).
    """

    tomo_name: str
    tilt_series_pixel_size_a: float | None
    binning: float | None
    size_xyz_unbinned: tuple[float, float, float] | None
    values: dict[str, str]
    source: Path

    def number(self, label: str) -> float | None:
        """Return column ``label`` as a finite float, or ``None`` when absent.

        Raises
        ------
        FormatError
            If the value is not a finite number.
        """
        value = self.values.get(label)
        return None if value is None else star_number(value, label, self.source)


def star_number(value: str, label: str, path: str | os.PathLike[str]) -> float:
    """Parse a STAR value of column ``label`` as a finite float.

    Raises
    ------
    FormatError
        Naming ``path`` and ``label`` if ``value`` is not a finite number.
    """
    try:
        v = float(value)
    except ValueError:
        raise FormatError(f"{path}: {label} value {value!r} is not a number") from None
    if not math.isfinite(v):
        raise FormatError(f"{path}: {label} value {value!r} is not finite")
    return v


def read_relion5_tomogram_rows(
    path: str | os.PathLike[str],
) -> list[Relion5TomogramRow]:
    """Read the tomogram table of a RELION5 ``tomograms.star``, one row per tomogram.

    The table is the ``data_global`` block, as RELION5 writes it. Values are read
    as written, so names such as ``007`` keep their digits; numbers are checked
    when parsed.

    Parameters
    ----------
    path
        ``tomograms.star`` of a RELION5 Tomograms (ReconstructTomograms) job.

    Returns
    -------
    list of Relion5TomogramRow
        In file order.

    Raises
    ------
    FormatError
        If the file is missing or malformed, has no ``data_global`` block with an
        ``rlnTomoName`` column, is a pre-RELION5 layout (``# version`` below
        50000), or holds a non-number where a number belongs.
    """
    from tmfast.io.star import read_star, star_version

    p = Path(path)
    blocks = read_star(p, as_text=True)
    table = blocks.get("global")
    if table is None:
        raise FormatError(
            f"{p}: no data_global block; give the tomograms.star of a RELION5 "
            "Tomograms (ReconstructTomograms) job"
        )
    if "rlnTomoName" not in table:
        raise FormatError(
            f"{p}: data_global has no rlnTomoName column; not a RELION5 tomograms.star"
        )
    version = star_version(p)
    if version is not None and version < 50000:
        raise FormatError(
            f"{p}: STAR version {version} is a pre-RELION5 tomography layout; "
            "run a RELION 5 ReconstructTomograms job and give its tomograms.star"
        )
    sizes = [f"rlnTomoSize{a}" for a in "XYZ"]
    rows: list[Relion5TomogramRow] = []
    for i in range(len(table["rlnTomoName"])):
        values = {label: str(column[i]) for label, column in table.items()}
        num = {
            k: star_number(values[k], k, p)
            for k in ("rlnTomoTiltSeriesPixelSize", "rlnTomoTomogramBinning", *sizes)
            if k in values
        }
        rows.append(
            Relion5TomogramRow(
                tomo_name=values["rlnTomoName"],
                tilt_series_pixel_size_a=num.get("rlnTomoTiltSeriesPixelSize"),
                binning=num.get("rlnTomoTomogramBinning"),
                size_xyz_unbinned=(
                    (num[sizes[0]], num[sizes[1]], num[sizes[2]])
                    if all(k in num for k in sizes)
                    else None
                ),
                values=values,
                source=p,
            )
        )
    return rows


@dataclasses.dataclass(frozen=True, kw_only=True)
class Relion5TomogramGeometry:
    """Geometry of one tomogram from a RELION5 ``tomograms.star`` row.

    Attributes
    ----------
    tomo_name
        ``rlnTomoName``.
    tilt_series_pixel_size_a
        ``rlnTomoTiltSeriesPixelSize`` in Å.
    binning
        ``rlnTomoTomogramBinning`` (1 when absent).
    size_xyz_unbinned
        ``rlnTomoSize{X,Y,Z}`` (bin-1 size in pixels), or ``None`` when absent.
    """

    tomo_name: str
    tilt_series_pixel_size_a: float
    binning: float
    size_xyz_unbinned: tuple[float, float, float] | None


def read_relion5_tomograms(
    path: str | os.PathLike[str],
) -> dict[str, Relion5TomogramGeometry]:
    """Read every tomogram's geometry from a RELION5 ``tomograms.star``.

    Raises
    ------
    FormatError
        If the file has no ``rlnTomoName`` / ``rlnTomoTiltSeriesPixelSize`` table
        (see :func:`read_relion5_tomogram_rows` for the other checks).
    """
    rows = read_relion5_tomogram_rows(path)
    if any(r.tilt_series_pixel_size_a is None for r in rows):
        raise FormatError(
            f"{path}: no table with rlnTomoName and rlnTomoTiltSeriesPixelSize; give "
            "a RELION5 tomograms.star (Tomograms/jobNNN/tomograms.star)"
        )
    return {
        r.tomo_name: Relion5TomogramGeometry(
            tomo_name=r.tomo_name,
            tilt_series_pixel_size_a=float(r.tilt_series_pixel_size_a),  # type: ignore[arg-type]
            binning=1.0 if r.binning is None else r.binning,
            size_xyz_unbinned=r.size_xyz_unbinned,
        )
        for r in rows
    }


def relion5_tomogram_geometry(
    path: str | os.PathLike[str], tomo_id: str
) -> Relion5TomogramGeometry:
    """Return the geometry of the row whose ``rlnTomoName`` matches ``tomo_id``.

    The name matches when ``tomo_id`` equals it or ends with it (``rec_<name>``),
    as pytom-match-pick matches tomogram stems.

    Raises
    ------
    FormatError
        If no row or more than one row matches.
    """
    table = read_relion5_tomograms(path)
    hits = [g for name, g in table.items() if tomo_id == name]
    if not hits:
        hits = [g for name, g in table.items() if tomo_id.endswith(name)]
    if len(hits) != 1:
        raise FormatError(
            f"{path}: {len(hits)} rows match tomogram {tomo_id!r} by rlnTomoName "
            f"(names: {', '.join(sorted(table)[:6])}...); give the matching "
            "tomograms.star"
        )
    return hits[0]
