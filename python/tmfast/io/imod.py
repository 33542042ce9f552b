"""IMOD binary models (.mod) of particle positions, written by Rust.

One scattered-point object per class id, each holding one contour with all of its
points; the object's sphere radius (``pdrawsize``) is the rounded radius, and exact
per-point radii go into a ``SIZE`` chunk when they are not whole pixels or differ
between points. See ``rust/src/formats/imod.rs`` for the byte layout.

Coordinates: input points are 0-based voxel indices ``(x, y, z)`` of the tomogram.
IMOD model coordinates put the centre of pixel ``i`` at ``i + 0.5`` in X and Y, and
(with the model flag tmfast sets, as 3dmod does) section ``k`` at ``z = k``; so by
default ``0.5`` is added to x and y (``xy_pixel_centre_offset=True``). Pass
``False`` to store the indices unchanged (as ``point2model`` on raw indices does).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tmfast import _rust
from tmfast._fileio import atomic_path
from tmfast.errors import ConfigError

__all__ = ["DEFAULT_COLORS", "write_imod_points"]

logger = logging.getLogger(__name__)

#: Colours (RGB fractions) used for objects without an explicit colour, in order.
DEFAULT_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.0, 1.0, 0.0),
    (1.0, 0.0, 1.0),
    (0.0, 1.0, 1.0),
    (1.0, 1.0, 0.0),
    (1.0, 0.5, 0.0),
    (0.5, 0.5, 1.0),
    (1.0, 0.0, 0.0),
    (0.0, 0.5, 1.0),
)


def _per_object(
    what: str,
    given: Mapping[int, object] | Sequence[object] | None,
    ids: list[int],
) -> list[object] | None:
    if given is None:
        return None
    if isinstance(given, Mapping):
        missing = [i for i in ids if i not in given]
        if missing:
            raise ConfigError(
                f"object_{what} has no entry for class ids {missing}; add them"
            )
        return [given[i] for i in ids]
    seq = list(given)
    if len(seq) != len(ids):
        raise ConfigError(
            f"object_{what} has {len(seq)} entries for {len(ids)} objects "
            f"(class ids {ids}); pass one per object or a mapping id -> value"
        )
    return seq


def write_imod_points(
    path: str | os.PathLike[str],
    points_xyz: npt.ArrayLike,
    *,
    object_ids: npt.ArrayLike | None = None,
    radius_px: float | npt.ArrayLike = 3.0,
    object_names: Mapping[int, str] | Sequence[str] | None = None,
    object_colors: Mapping[int, Sequence[float]]
    | Sequence[Sequence[float]]
    | None = None,
    dims_xyz: Sequence[int] | None = None,
    pixel_size_a: float = 1.0,
    xy_pixel_centre_offset: bool = True,
    model_name: str = "IMOD-NewModel",
    overwrite: bool = False,
) -> Path:
    """Write particle positions as an IMOD model of scattered-point objects.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``.mod`` file, written atomically.
    points_xyz : array_like
        ``(N, 3)`` positions ``(x, y, z)`` in voxels, 0-based voxel indices.
    object_ids : array_like, optional
        ``(N,)`` integer class of each point; one object per distinct id, in
        ascending id order. Default: all points in one object.
    radius_px : float or array_like
        Sphere radius in pixels, one value or ``(N,)`` per point.
    object_names : mapping or sequence of str, optional
        Names by class id, or one per object in ascending id order. Default
        ``"class <id>"`` (``"particles"`` for a single object without ids).
    object_colors : mapping or sequence, optional
        ``(r, g, b)`` fractions in ``[0, 1]`` by class id or per object.
        Default :data:`DEFAULT_COLORS` in turn.
    dims_xyz : sequence of int, optional
        Tomogram size ``(nx, ny, nz)`` in voxels. Default: the smallest box holding
        every point.
    pixel_size_a : float
        Pixel size in Å (stored in nm, as 3dmod does).
    xy_pixel_centre_offset : bool
        Add 0.5 to x and y so points sit at voxel centres in IMOD (see module notes).
    model_name : str
        Model name in the header.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    ConfigError
        If shapes, ids, radii, names, colours, sizes or the pixel size are invalid.
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    pts = np.asarray(points_xyz, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ConfigError(
            f"points_xyz has shape {pts.shape}; pass an (N, 3) array of x, y, z voxels"
        )
    if not np.all(np.isfinite(pts)):
        raise ConfigError("points_xyz holds NaN or inf; drop those points")
    n = pts.shape[0]
    if object_ids is None:
        ids_arr = np.zeros(n, dtype=np.int64)
    else:
        raw_ids = np.asarray(object_ids)
        if raw_ids.shape != (n,) or not (
            np.issubdtype(raw_ids.dtype, np.integer) or raw_ids.size == 0
        ):
            raise ConfigError(
                f"object_ids has shape {raw_ids.shape} and dtype {raw_ids.dtype}; "
                f"pass ({n},) integers"
            )
        ids_arr = raw_ids.astype(np.int64)
    radii = np.asarray(radius_px, dtype=np.float64)
    empty_radius = 3.0  # sphere size of an object without points
    if radii.ndim == 0:
        empty_radius = float(radii)
        if not np.isfinite(empty_radius) or empty_radius <= 0:
            raise ConfigError("radius_px must be finite and > 0 (pixels)")
        radii = np.full(n, empty_radius)
    if radii.shape != (n,):
        raise ConfigError(
            f"radius_px has shape {radii.shape}; pass one radius or ({n},) radii"
        )
    if not np.all(np.isfinite(radii)) or np.any(radii <= 0):
        raise ConfigError("radius_px must be finite and > 0 (pixels)")
    px = float(pixel_size_a)
    if not np.isfinite(px) or px <= 0:
        raise ConfigError(f"pixel_size_a={pixel_size_a!r}; pass a positive size in Å")

    ids = sorted({int(i) for i in ids_arr}) if n else [0]
    names = _per_object("names", object_names, ids)
    colors = _per_object("colors", object_colors, ids)

    if dims_xyz is None:
        dims = tuple(int(np.ceil(v)) + 1 for v in pts.max(axis=0)) if n else (1, 1, 1)
    else:
        dims = tuple(int(v) for v in dims_xyz)
        if len(dims) != 3 or min(dims) < 1:
            raise ConfigError(
                f"dims_xyz={dims_xyz!r}; pass three positive sizes (nx, ny, nz)"
            )

    out_pts = pts.copy()
    if xy_pixel_centre_offset:
        out_pts[:, :2] += 0.5

    objects: list[
        tuple[
            str,
            tuple[float, float, float],
            int,
            npt.NDArray[np.float32],
            npt.NDArray[np.float32] | None,
        ]
    ] = []
    for k, cid in enumerate(ids):
        sel = ids_arr == cid
        obj_r = radii[sel]
        if names is not None:
            name = str(names[k])
        else:
            name = "particles" if object_ids is None else f"class {cid}"
        if colors is not None:
            rgb = tuple(float(c) for c in colors[k])  # type: ignore[attr-defined]
        else:
            rgb = DEFAULT_COLORS[k % len(DEFAULT_COLORS)]
        if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
            raise ConfigError(
                f"colour {rgb!r} of object {name!r} is invalid; pass (r, g, b) in 0..1"
            )
        pdraw = round(float(np.median(obj_r) if obj_r.size else empty_radius))
        exact = obj_r.size == 0 or bool(np.all(obj_r == pdraw))
        objects.append(
            (
                name,
                (rgb[0], rgb[1], rgb[2]),
                max(pdraw, 1),
                np.ascontiguousarray(out_pts[sel], dtype=np.float32),
                None if exact else np.ascontiguousarray(obj_r, dtype=np.float32),
            )
        )

    with atomic_path(path, overwrite=overwrite) as tmp:
        try:
            _rust.write_imod(
                str(tmp),
                objects,
                name=model_name,
                dims_xyz=(dims[0], dims[1], dims[2]),
                pixel_size_a=px,
            )
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    logger.debug("wrote IMOD model %s with %d points", path, n)
    return Path(path)
