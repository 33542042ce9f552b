"""The Euler-angle convention of tmfast, in one place.

See ``docs/conventions.md``. ZXZ angles ``(phi, theta, psi)`` in radians denote the
active rotation ``M = Rz(psi) @ Rx(theta) @ Rz(phi)`` acting on ``(x, y, z)`` column
vectors; RELION ``(rot, tilt, psi)`` degrees are written so that RELION's matrix
``A = Euler_angles2matrix(rot, tilt, psi)`` equals ``M``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tmfast.types import RotationMatrices

__all__ = ["relion_matrix", "zxz_to_matrices"]


def _rz(a: npt.NDArray[np.float64]) -> RotationMatrices:
    c, s = np.cos(a), np.sin(a)
    m = np.zeros((a.shape[0], 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = c, -s, s, c, 1.0
    return m


def _rx(a: npt.NDArray[np.float64]) -> RotationMatrices:
    c, s = np.cos(a), np.sin(a)
    m = np.zeros((a.shape[0], 3, 3))
    m[:, 0, 0], m[:, 1, 1], m[:, 1, 2], m[:, 2, 1], m[:, 2, 2] = 1.0, c, -s, s, c
    return m


def zxz_to_matrices(angles_zxz_rad: npt.ArrayLike) -> RotationMatrices:
    """Return the ``(N, 3, 3)`` float64 matrices ``M = Rz(psi) Rx(theta) Rz(phi)``.

    Parameters
    ----------
    angles_zxz_rad
        ``(N, 3)`` or ``(3,)`` ZXZ Euler angles ``(phi, theta, psi)`` in radians.

    Returns
    -------
    numpy.ndarray
        ``(N, 3, 3)`` float64 active rotations acting on ``(x, y, z)`` vectors.
    """
    a = np.atleast_2d(np.asarray(angles_zxz_rad, dtype=np.float64))
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"angles must have shape (N, 3), got {a.shape}")
    result: RotationMatrices = _rz(a[:, 2]) @ _rx(a[:, 1]) @ _rz(a[:, 0])
    return result


def relion_matrix(rot_deg: float, tilt_deg: float, psi_deg: float) -> RotationMatrices:
    """RELION's ``Euler_angles2matrix(rot, tilt, psi)``, written out from its source.

    Returns
    -------
    numpy.ndarray
        ``(3, 3)`` float64 matrix ``A``; a RELION particle is the reference actively
        rotated by ``A``.
    """
    a, b, g = np.deg2rad([rot_deg, tilt_deg, psi_deg])
    ca, cb, cg = np.cos(a), np.cos(b), np.cos(g)
    sa, sb, sg = np.sin(a), np.sin(b), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    m: RotationMatrices = np.array(
        [
            [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
            [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
            [sc, ss, cb],
        ]
    )
    return m

