"""Sub-volumes (``-s X Y Z``) of the search region, with half-template overhang.

Each tile has a *unique* region (its share of the search region, which it alone
writes) and a *data* region that extends it by the template box: ``N // 2`` voxels
before and ``N - N // 2 - 1`` after on each axis. The data region is cut from the
filtered tomogram with **zeros outside the tomogram** and zero-padded to an FFT-fast
length, so the circular correlation never wraps into a unique voxel's template
footprint. A voxel's score therefore depends only on the tomogram around it: split
runs, search regions and unsplit runs give the same scores (up to FFT rounding).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft

from tmfast.errors import ConfigError
from tmfast.types import Volume

__all__ = ["Tile", "cut_tile", "plan_tiles"]


@dataclasses.dataclass(frozen=True)
class Tile:
    """One sub-volume.

    Attributes
    ----------
    index
        Position in the plan (x fastest, then y, then z).
    unique_start_zyx, unique_stop_zyx
        Unique region in full-tomogram voxel indices (stop exclusive).
    data_start_zyx
        Full-tomogram index of the tile array's element ``(0, 0, 0)`` (may be
        negative: zeros outside the tomogram).
    shape_zyx
        FFT-fast shape of the tile array.
    """

    index: int
    unique_start_zyx: tuple[int, int, int]
    unique_stop_zyx: tuple[int, int, int]
    data_start_zyx: tuple[int, int, int]
    shape_zyx: tuple[int, int, int]

    @property
    def unique_in_tile(self) -> tuple[slice, slice, slice]:
        """Slices of the unique region in tile-array indices."""
        return tuple(  # type: ignore[return-value]
            slice(u - d, v - d)
            for u, v, d in zip(
                self.unique_start_zyx,
                self.unique_stop_zyx,
                self.data_start_zyx,
                strict=True,
            )
        )

    def unique_in_region(self, origin_zyx: tuple[int, int, int]) -> tuple[slice, ...]:
        """Slices of the unique region in search-region indices."""
        return tuple(
            slice(u - o, v - o)
            for u, v, o in zip(
                self.unique_start_zyx, self.unique_stop_zyx, origin_zyx, strict=True
            )
        )


def _split_1d(length: int, parts: int, axis: str) -> list[tuple[int, int]]:
    if parts > length:
        raise ConfigError(
            f"--volume-split: {parts} pieces along {axis} but the search region is "
            f"only {length} voxels; use at most {length}"
        )
    bounds = np.linspace(0, length, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def plan_tiles(
    search_origin_zyx: tuple[int, int, int],
    search_shape_zyx: tuple[int, int, int],
    split_xyz: tuple[int, int, int],
    box_size: int,
) -> list[Tile]:
    """Split the search region into tiles (pieces as equal as possible).

    Raises
    ------
    ConfigError
        If an axis has more pieces than voxels.
    """
    before = box_size // 2
    after = box_size - before - 1
    per_axis = [
        _split_1d(length, parts, axis)
        for length, parts, axis in zip(
            search_shape_zyx, split_xyz[::-1], "zyx", strict=True
        )
    ]
    tiles = []
    for i, (rz, ry, rx) in enumerate(itertools.product(*per_axis)):
        start = tuple(
            o + r[0] for o, r in zip(search_origin_zyx, (rz, ry, rx), strict=True)
        )
        stop = tuple(
            o + r[1] for o, r in zip(search_origin_zyx, (rz, ry, rx), strict=True)
        )
        data_start = tuple(s - before for s in start)
        shape = tuple(
            sfft.next_fast_len(b - a + before + after, real=True)
            for a, b in zip(start, stop, strict=True)
        )
        tiles.append(Tile(i, start, stop, data_start, shape))  # type: ignore[arg-type]
    return tiles


def cut_tile(tomogram: npt.ArrayLike, tile: Tile) -> Volume:
    """Return the tile array: tomogram data where inside, zeros elsewhere."""
    vol = np.asarray(tomogram)
    out = np.zeros(tile.shape_zyx, dtype=np.float32)
    src, dst = [], []
    for d0, n, size in zip(tile.data_start_zyx, tile.shape_zyx, vol.shape, strict=True):
        a, b = max(d0, 0), min(d0 + n, size)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - d0, b - d0))
    out[tuple(dst)] = vol[tuple(src)]
    return out
