"""The Euler-angle convention of tmfast, in one place.

See ``docs/conventions.md``. ZXZ angles ``(phi, theta, psi)`` in radians denote the
active rotation ``M = Rz(psi) @ Rx(theta) @ Rz(phi)`` acting on ``(x, y, z)`` column
vectors; RELION ``(rot, tilt, psi)`` degrees are written so that RELION's matrix
``A = Euler_angles2matrix(rot, tilt, psi)`` equals ``M``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tmfast import _rust
from tmfast.types import AngleArray, RotationMatrices

__all__ = [
    "matrices_to_zxz",
    "relion_deg_to_zxz",
    "relion_matrix",
    "zxz_to_matrices",
    "zxz_to_relion_deg",
]


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


def _as_triples(angles: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    a = np.atleast_2d(np.asarray(angles, dtype=np.float64))
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3) or (3,), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values; give finite angles")
    return np.ascontiguousarray(a)


def matrices_to_zxz(matrices: npt.ArrayLike) -> AngleArray:
    """Return ZXZ angles ``(phi, theta, psi)`` in radians of rotation matrices.

    The inverse of :func:`zxz_to_matrices`: ``zxz_to_matrices(matrices_to_zxz(m)) == m``
    for rotations ``m``. ``phi`` and ``psi`` are in ``[0, 2 pi)``, ``theta`` in
    ``[0, pi]``. At gimbal lock (``sin(theta) < 1e-10``) only ``phi + psi``
    (``theta = 0``) or ``psi - phi`` (``theta = pi``) is defined; ``phi`` is then 0.

    Parameters
    ----------
    matrices
        ``(N, 3, 3)`` or ``(3, 3)`` rotation matrices acting on ``(x, y, z)`` vectors.

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` float64 ZXZ Euler angles in radians.

    Raises
    ------
    ValueError
        If the shape is wrong or a matrix is not a rotation (tolerance 1e-6).
    """
    m = np.asarray(matrices, dtype=np.float64)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or m.shape[1:] != (3, 3):
        raise ValueError(f"matrices must have shape (N, 3, 3), got {m.shape}")
    eye_err = np.abs(m @ np.swapaxes(m, 1, 2) - np.eye(3)).max(initial=0.0)
    det = np.linalg.det(m) if len(m) else np.ones(0)
    if not (eye_err < 1e-6 and np.all(np.abs(det - 1.0) < 1e-6)):
        raise ValueError("matrices are not rotations (M M^T != I or det != 1)")
    out: AngleArray = _rust.matrices_to_zxz(np.ascontiguousarray(m))
    return out


def zxz_to_relion_deg(angles_zxz_rad: npt.ArrayLike) -> AngleArray:
    """Return RELION ``(rot, tilt, psi)`` in degrees for ZXZ angles in radians.

    RELION's ``Euler_angles2matrix(rot, tilt, psi)`` equals ``zxz_to_matrices(zxz)``,
    which is what pytom-match-pick writes (``Rotation.from_euler("ZXZ", -zxz)
    .as_euler("ZYZ", degrees=True)``). ``rot`` and ``psi`` are in ``(-180, 180]``,
    ``tilt`` in ``[0, 180]``; at gimbal lock ``psi`` is 0 (as scipy).

    Parameters
    ----------
    angles_zxz_rad
        ``(N, 3)`` or ``(3,)`` ZXZ Euler angles ``(phi, theta, psi)`` in radians.

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` float64 RELION angles in degrees.

    Raises
    ------
    ValueError
        If the shape is wrong or a value is not finite.
    """
    out: AngleArray = _rust.zxz_to_relion_deg(_as_triples(angles_zxz_rad, "angles"))
    return out


def relion_deg_to_zxz(angles_relion_deg: npt.ArrayLike) -> AngleArray:
    """Return ZXZ angles in radians for RELION ``(rot, tilt, psi)`` in degrees.

    The inverse of :func:`zxz_to_relion_deg` (same matrix; angles in the ranges of
    :func:`matrices_to_zxz`).

    Parameters
    ----------
    angles_relion_deg
        ``(N, 3)`` or ``(3,)`` RELION ``(rot, tilt, psi)`` in degrees.

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` float64 ZXZ Euler angles ``(phi, theta, psi)`` in radians.

    Raises
    ------
    ValueError
        If the shape is wrong or a value is not finite.
    """
    out: AngleArray = _rust.relion_deg_to_zxz(_as_triples(angles_relion_deg, "angles"))
    return out
