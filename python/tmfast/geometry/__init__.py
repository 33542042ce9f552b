"""Rotation conventions and angle sets (see ``docs/conventions.md``).

* :mod:`tmfast.geometry.angles` - rotation sets of a search: ``(N, 3)`` float64 ZXZ
  Euler angles ``(phi, theta, psi)`` in radians, sorted as pytom-match-pick sorts
  them (:func:`angle_set`, :func:`pytom_angle_set`, :func:`optimal_angle_set`...);
* :mod:`tmfast.geometry.rotations` - ZXZ radians <-> ``(N, 3, 3)`` matrices acting on
  ``(x, y, z)`` column vectors <-> RELION ``(rot, tilt, psi)`` degrees;
* :mod:`tmfast.geometry.interpolation` - cubic B-spline rotation of a box
  (:func:`rotate_volume`, :func:`bspline_coefficients`; imported on first use since
  it needs scipy).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tmfast.geometry.angles import (
    angle_set,
    angle_set_sha256,
    angle_step_from_diameter,
    covering_radius_deg,
    optimal_angle_set,
    pytom_angle_set,
    read_angle_file,
    reduce_by_symmetry,
    refined_angle_sets,
    symmetry_group,
)
from tmfast.geometry.rotations import (
    matrices_to_zxz,
    relion_deg_to_zxz,
    relion_matrix,
    zxz_to_matrices,
    zxz_to_relion_deg,
)

if TYPE_CHECKING:
    from tmfast.geometry.interpolation import bspline_coefficients, rotate_volume

__all__ = [
    "angle_set",
    "angle_set_sha256",
    "angle_step_from_diameter",
    "bspline_coefficients",
    "covering_radius_deg",
    "matrices_to_zxz",
    "optimal_angle_set",
    "pytom_angle_set",
    "read_angle_file",
    "reduce_by_symmetry",
    "refined_angle_sets",
    "relion_deg_to_zxz",
    "relion_matrix",
    "rotate_volume",
    "symmetry_group",
    "zxz_to_matrices",
    "zxz_to_relion_deg",
]

_LAZY = {
    "bspline_coefficients": "tmfast.geometry.interpolation",
    "rotate_volume": "tmfast.geometry.interpolation",
}


def __getattr__(name: str) -> Any:
    """Import :mod:`.interpolation` (scipy) only when its names are used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tmfast.geometry' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    """List the public names next to the module's own attributes."""
    return sorted(set(globals()) | set(__all__))
