"""Defocus gradient across a tilted specimen (pytom's ``--defocus-handedness``).

In a tilted image the defocus changes with position: a point at ``(x, z)`` Å from the
tomogram centre lies ``z cos a + x sin a`` Å deeper along the beam in the image of
tilt ``a`` (the height of the point after rotating the specimen by ``a`` about y).
With handedness 1 (Pyle & Zianetti, Biochem J 478:1827 (2021): defocus grows for
positive tilts on the side of positive x) that depth is added to the tilt's defocus
(underfocus positive); with -1 the tilt angles count the other way, with 0 nothing
changes. The matching engine applies it per sub-volume, at the centre of the region
whose scores the sub-volume provides, when per-tilt weighting builds the template's
CTF (as pytom does, only then).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from tmfast.errors import ConfigError
from tmfast.metadata import TiltSeriesMetadata

__all__ = ["defocus_offsets_um", "metadata_at"]

#: Micrometres per Ångström.
_UM_PER_A = 1e-4


def defocus_offsets_um(
    tilt_angles_deg: npt.ArrayLike,
    centre_x_a: float,
    centre_z_a: float,
    handedness: int,
) -> npt.NDArray[np.float64]:
    """Return the defocus change of each tilt at a position, in µm (deeper positive).

    Parameters
    ----------
    tilt_angles_deg
        Tilt angle of each image in degrees.
    centre_x_a, centre_z_a
        Position relative to the tomogram centre along x and z, in Å.
    handedness
        1, -1 (tilt angles negated) or 0 (no gradient: all offsets 0).

    Returns
    -------
    numpy.ndarray
        ``(n_tilts,)`` float64 offsets in µm, to add to the tilts' defocus.

    Raises
    ------
    ConfigError
        If ``handedness`` is not -1, 0 or 1.
    """
    if handedness not in (-1, 0, 1):
        raise ConfigError(
            f"defocus handedness {handedness!r}: give -1, 0 or 1 (pytom's convention)"
        )
    tilts = np.deg2rad(np.asarray(tilt_angles_deg, dtype=np.float64))
    if handedness == 0:
        return np.zeros_like(tilts)
    tilts = tilts * handedness
    depth_a = centre_z_a * np.cos(tilts) + centre_x_a * np.sin(tilts)
    return depth_a * _UM_PER_A


def metadata_at(
    metadata: TiltSeriesMetadata, centre_x_a: float, centre_z_a: float
) -> TiltSeriesMetadata:
    """Return ``metadata`` with each tilt's defocus as seen at ``(x, z)`` Å from the
    tomogram centre (:func:`defocus_offsets_um` with ``metadata.defocus_handedness``).

    Parameters
    ----------
    metadata
        Tilt-series metadata with per-tilt defocus.
    centre_x_a, centre_z_a
        Position relative to the tomogram centre along x and z, in Å.

    Returns
    -------
    TiltSeriesMetadata
        A copy with shifted ``defocus_um``; ``metadata`` itself when it has no
        defocus or its handedness is 0.
    """
    if metadata.defocus_um is None or metadata.defocus_handedness == 0:
        return metadata
    offsets = defocus_offsets_um(
        metadata.tilt_angles_deg, centre_x_a, centre_z_a, metadata.defocus_handedness
    )
    shifted = tuple(
        float(d + o) for d, o in zip(metadata.defocus_um, offsets, strict=True)
    )
    return dataclasses.replace(metadata, defocus_um=shifted)
