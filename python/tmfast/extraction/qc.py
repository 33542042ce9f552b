"""QC picture: orthogonal slices of the tomogram with the picks circled.

Three panels (XY, XZ, YZ) through the point where the picks are densest (the
median pick position when there are few), each a thin slab average for contrast;
picks within one particle radius of a slab are circled with that particle's
cross-section radius, so a user sees at a glance whether picks sit on particles.
The tomogram is memory-mapped: only the slabs are read.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tmfast.errors import FormatError
from tmfast.extraction.plots import pyplot, save_figure

if TYPE_CHECKING:
    from tmfast.extraction.candidates import CandidateTable

__all__ = ["densest_point_zyx", "plot_qc"]

logger = logging.getLogger(__name__)


def densest_point_zyx(
    positions_zyx: npt.ArrayLike, shape_zyx: Sequence[int], radius_vox: float
) -> tuple[int, int, int]:
    """Index of the slice triple through the most picks (per axis, a histogram mode).

    For each axis the slice whose neighbourhood of ±radius holds the most picks is
    chosen; with no picks, the centre of the volume.
    """
    pos = np.asarray(positions_zyx, dtype=np.int64).reshape(-1, 3)
    out = []
    for ax in range(3):
        n = int(shape_zyx[ax])
        if len(pos) == 0:
            out.append(n // 2)
            continue
        counts = np.bincount(np.clip(pos[:, ax], 0, n - 1), minlength=n).astype(float)
        w = max(math.ceil(radius_vox), 1)
        smooth = np.convolve(counts, np.ones(2 * w + 1), mode="same")
        out.append(int(np.argmax(smooth)))
    return out[0], out[1], out[2]


def _slab(vol: Any, axis: int, index: int, half: int) -> npt.NDArray[np.float32]:
    n = vol.shape[axis]
    lo, hi = max(index - half, 0), min(index + half + 1, n)
    sl: list[slice] = [slice(None)] * 3
    sl[axis] = slice(lo, hi)
    out: npt.NDArray[np.float32] = np.asarray(vol[tuple(sl)], dtype=np.float32).mean(
        axis=axis
    )
    return out


def _contrast(img: npt.NDArray[np.float32]) -> tuple[float, float]:
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1, 99])
    return float(lo), float(hi if hi > lo else lo + 1)


def plot_qc(
    table: CandidateTable,
    path: str | os.PathLike[str],
    *,
    tomogram: str | os.PathLike[str] | npt.ArrayLike | None = None,
    slice_zyx: tuple[int, int, int] | None = None,
    overwrite: bool = False,
    max_circles: int = 2000,
) -> Path:
    """Draw orthogonal slab averages of the tomogram with the picks circled.

    Parameters
    ----------
    table
        The picks (positions in full-tomogram voxels).
    path
        Output PNG.
    tomogram
        Tomogram path or ``(z, y, x)`` array; default ``table.tomogram``.
    slice_zyx
        Slice indices; default the densest point of the picks.
    overwrite
        Replace an existing file.
    max_circles
        At most this many circles per panel (the best-scoring picks).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    FormatError
        If the tomogram cannot be read or its shape differs from the job's.
    """
    src = table.tomogram if tomogram is None else tomogram
    vol: Any
    if isinstance(src, (str, os.PathLike)):
        from tmfast.io.mrc import read_volume

        try:
            vol, _ = read_volume(
                src, require_voxel_size=False, mmap_threshold_bytes=64 << 20
            )
        except FormatError as exc:
            raise FormatError(f"{exc} (tomogram of the QC picture)") from None
    else:
        vol = np.asarray(src)
    if vol is None or tuple(vol.shape) != tuple(table.tomo_shape_zyx):
        raise FormatError(
            f"tomogram shape {None if vol is None else tuple(vol.shape)} differs from "
            f"the job's {tuple(table.tomo_shape_zyx)}; the QC picture needs the "
            "matched tomogram"
        )
    r = table.particle_radius_vox
    cz, cy, cx = slice_zyx or densest_point_zyx(table.positions_zyx, vol.shape, r)
    half = max(1, round(r / 4))
    panels = [
        ("XY", 0, cz, (2, 1), "x", "y"),  # image rows=y, cols=x
        ("XZ", 1, cy, (2, 0), "x", "z"),
        ("YZ", 2, cx, (1, 0), "y", "z"),
    ]
    nz, ny, nx = vol.shape
    plt = pyplot()
    from matplotlib.patches import Circle

    fig = plt.figure(figsize=(11, 11 * (ny + nz) / max(nx + nz, 1) * 0.95 + 0.8))
    gs = fig.add_gridspec(2, 2, width_ratios=[nx, nz], height_ratios=[ny, nz])
    axes = {
        "XY": fig.add_subplot(gs[0, 0]),
        "YZ": fig.add_subplot(gs[0, 1]),
        "XZ": fig.add_subplot(gs[1, 0]),
    }
    info = fig.add_subplot(gs[1, 1])
    info.axis("off")
    pos = table.positions_zyx[: max_circles * 10]
    for name, axis, index, (ci, ri), xl, yl in panels:
        img = _slab(vol, axis, index, half)
        if name == "YZ":
            img = img.T  # rows y, cols z
            ci, ri = 0, 1
        lo, hi = _contrast(img)
        ax = axes[name]
        ax.imshow(
            img, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest"
        )
        d = np.abs(pos[:, axis] - index)
        near = np.nonzero(d <= r)[0][:max_circles]
        for k in near:
            rad = math.sqrt(max(r * r - float(d[k]) ** 2, 1.0))
            ax.add_patch(
                Circle(
                    (float(pos[k, ci]), float(pos[k, ri])),
                    rad,
                    fill=False,
                    ec="#ffcc00",
                    lw=1.2,
                )
            )
        ax.set_title(
            f"{name} slab at {'zyx'[axis]}={index} "
            f"({len(near)} picks within {r:.0f} vox)",
            fontsize=9,
        )
        ax.set_xlabel(xl if name != "YZ" else "z")
        ax.set_ylabel(yl if name != "YZ" else "y")
    info.text(
        0.02,
        0.95,
        "\n".join(
            [
                f"tomogram: {table.tomo_id}",
                f"picks: {len(table)}",
                f"cutoff: {table.cutoff:.4g}"
                if math.isfinite(table.cutoff)
                else "cutoff: none (forced)",
                f"particle diameter: {table.particle_diameter_a:.1f} Å "
                f"({2 * r:.1f} vox)",
                f"voxel size: {table.voxel_size_a:.3g} Å",
                f"slab thickness: {2 * half + 1} vox",
            ]
        ),
        va="top",
        family="monospace",
        fontsize=9,
        transform=info.transAxes,
    )
    fig.suptitle(f"{table.tomo_id}: picks circled (yellow)", fontsize=11)
    return save_figure(fig, [path], overwrite=overwrite)[0]
