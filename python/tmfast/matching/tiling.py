"""Sub-volumes (``-s X Y Z``) of the search region, with half-template overhang.

The correlation is defined, as in pytom-match-pick, as **circular over the tomogram
zero-padded to an FFT-fast size** ``P`` per axis (``period_zyx``, from
:func:`fast_period`): the score of a voxel uses the template footprint around it, with
indices taken modulo ``P`` (data beyond the tomogram are the zero padding). Every tile
reproduces exactly that, so split runs, search regions and unsplit runs give the same
scores (up to FFT rounding):

- along an axis where the tile's unique region plus the template box
  (``unique + N - 1``) reaches the period, the tile is the whole padded axis;
- otherwise the tile holds the data from ``N // 2`` voxels before to ``N - N // 2 - 1``
  after its unique region (indices modulo ``P``, zeros in the padding), zero-padded to
  a fast length: the circular wrap of the tile never reaches a unique voxel's
  template footprint.

Tiles of an unsplit search of the whole tomogram are thus just the padded tomogram.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft

from tmfast.errors import ConfigError
from tmfast.types import Volume

__all__ = ["Tile", "cut_tile", "fast_period", "plan_tiles"]


def fast_period(shape_zyx: tuple[int, ...]) -> tuple[int, int, int]:
    """Return the FFT-fast padded shape that defines the circular correlation."""
    return tuple(sfft.next_fast_len(int(s), real=True) for s in shape_zyx)  # type: ignore[return-value]


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
        Full-tomogram index (modulo the period) of the tile array's element
        ``(0, 0, 0)``; may be negative.
    data_len_zyx
        Number of leading tile elements per axis filled from the periodic padded
        tomogram; the rest of the tile is zero.
    shape_zyx
        FFT-fast shape of the tile array.
    period_zyx
        Period (padded tomogram shape) of the circular correlation.
    """

    index: int
    unique_start_zyx: tuple[int, int, int]
    unique_stop_zyx: tuple[int, int, int]
    data_start_zyx: tuple[int, int, int]
    data_len_zyx: tuple[int, int, int]
    shape_zyx: tuple[int, int, int]
    period_zyx: tuple[int, int, int]

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


def _triple(values: list[int] | tuple[int, ...]) -> tuple[int, int, int]:
    a, b, c = (int(v) for v in values)
    return a, b, c


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
    period_zyx: tuple[int, int, int],
) -> list[Tile]:
    """Split the search region into tiles (pieces as equal as possible).

    Parameters
    ----------
    search_origin_zyx, search_shape_zyx
        Search region in full-tomogram voxels.
    split_xyz
        Pieces along x, y, z.
    box_size
        Template box edge ``N``.
    period_zyx
        Padded tomogram shape (:func:`fast_period` of the tomogram shape).

    Returns
    -------
    list of Tile

    Raises
    ------
    ConfigError
        If an axis has more pieces than voxels.
    """
    before = box_size // 2
    per_axis = [
        _split_1d(length, parts, axis)
        for length, parts, axis in zip(
            search_shape_zyx, split_xyz[::-1], "zyx", strict=True
        )
    ]
    tiles = []
    for i, ranges in enumerate(itertools.product(*per_axis)):
        start, stop, dstart, dlen, shape = [], [], [], [], []
        for o, (a, b), period in zip(
            search_origin_zyx, ranges, period_zyx, strict=True
        ):
            start.append(o + a)
            stop.append(o + b)
            need = (b - a) + box_size - 1
            if need >= period:
                dstart.append(0)
                dlen.append(period)
                shape.append(period)
            else:
                dstart.append(o + a - before)
                dlen.append(need)
                shape.append(sfft.next_fast_len(need, real=True))
        t3 = _triple
        tiles.append(
            Tile(
                i, t3(start), t3(stop), t3(dstart), t3(dlen), t3(shape), t3(period_zyx)
            )
        )
    return tiles


def cut_tile(tomogram: npt.ArrayLike, tile: Tile) -> Volume:
    """Return the tile array cut from the periodic, zero-padded tomogram."""
    vol = np.asarray(tomogram)
    out = np.zeros(tile.shape_zyx, dtype=np.float32)
    dst, src = [], []
    for d0, n, period, size in zip(
        tile.data_start_zyx, tile.data_len_zyx, tile.period_zyx, vol.shape, strict=True
    ):
        g = (d0 + np.arange(n)) % period
        ok = g < size  # beyond the tomogram: the zero padding
        dst.append(np.nonzero(ok)[0])
        src.append(g[ok])
    if all(len(d) for d in dst):
        out[np.ix_(*dst)] = vol[np.ix_(*src)]
    return out
