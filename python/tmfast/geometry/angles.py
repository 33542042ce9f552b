"""Rotation sets for the exhaustive template-matching search.

Every set is an ``(N, 3)`` float64 array of ZXZ Euler angles ``(phi, theta, psi)`` in
radians (the pytom-match-pick convention, see ``docs/conventions.md``), sorted
lexicographically by ``(phi, theta, psi)``. Angle index ``i`` of a score run refers to
row ``i``, so a set must be regenerated exactly: :func:`angle_set_sha256` fingerprints
it for job records.

* :func:`pytom_angle_set` is bit-identical to pytom-match-pick's
  ``get_angle_list(step, symmetry=n)``: HEALPix (RING, any ``nside``) for ``(phi,
  theta)`` times ``ceil(360 / step)`` uniform ``psi`` steps.
* :func:`angle_step_from_diameter` is the Crowther step pytom uses by default.
* :func:`read_angle_file` reads custom lists (3 ZXZ radians per line).
* :func:`angle_set` is the one entry point the matching engine and extraction call.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tmfast import _rust
from tmfast.errors import ConfigError, FormatError
from tmfast.types import AngleArray

__all__ = [
    "angle_set",
    "angle_set_sha256",
    "angle_step_from_diameter",
    "pytom_angle_set",
    "read_angle_file",
]

logger = logging.getLogger(__name__)


def _check_step(angle_step_deg: float) -> float:
    try:
        step = float(angle_step_deg)
    except (TypeError, ValueError):
        raise ConfigError(
            f"angular step {angle_step_deg!r} is not a number; give degrees, e.g. 7"
        ) from None
    if not (math.isfinite(step) and 0.05 <= step <= 360.0):
        raise ConfigError(
            f"angular step {step} deg is outside [0.05, 360]; give a step in degrees, "
            "e.g. 7"
        )
    return step


def _check_cyclic(symmetry: int) -> int:
    if isinstance(symmetry, bool) or not isinstance(symmetry, int | np.integer):
        raise ConfigError(
            f"symmetry {symmetry!r} is not an integer; give n >= 1 for Cn (1 = none)"
        )
    n = int(symmetry)
    if not 1 <= n <= 1000:
        raise ConfigError(f"symmetry order {n} is invalid; give 1 <= n <= 1000")
    return n


def pytom_angle_set(angle_step_deg: float, *, symmetry: int = 1) -> AngleArray:
    """Return pytom-match-pick's rotation set for an angular step.

    ``nside`` is the smallest integer with ``12 nside^2 >= 4 pi / step_rad^2``;
    ``(phi, theta)`` are the HEALPix RING pixel centres of that ``nside`` (``phi``
    wrapped to ``[0, 2 pi)``), ``psi = linspace(0, 2 pi, ceil(360 / step),
    endpoint=False)``, and the product is sorted by ``(phi, theta, psi)``. With
    ``symmetry=n`` (Cn about z) only rows with ``phi < 2 pi / n`` are kept, pytom's
    rule. Values and order are identical to pytom-match-pick's ``get_angle_list``, so
    angle indices are interchangeable.

    Parameters
    ----------
    angle_step_deg
        Angular step in degrees, in ``[0.05, 360]``.
    symmetry
        Order ``n`` of the rotational symmetry about z (1 = none).

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` float64 ZXZ Euler angles ``(phi, theta, psi)`` in radians, sorted.

    Raises
    ------
    ConfigError
        If the step or the symmetry order is invalid.
    """
    step = _check_step(angle_step_deg)
    n = _check_cyclic(symmetry)
    angles: AngleArray = _rust.pytom_angle_set(step, symmetry_n=n)
    logger.debug("pytom set: step %.4g deg, C%d: %d rotations", step, n, len(angles))
    return angles


def angle_step_from_diameter(
    particle_diameter_a: float,
    voxel_size_a: float,
    low_pass_a: float | None = None,
) -> float:
    """Return the Crowther angular step in degrees, pytom-match-pick's default.

    ``step_deg = degrees(max(2 voxel_size_a, low_pass_a) / particle_diameter_a)``: the
    angle at which the particle's edge moves by one resolution element.

    Parameters
    ----------
    particle_diameter_a
        Particle diameter in Angstrom.
    voxel_size_a
        Voxel size in Angstrom.
    low_pass_a
        Low-pass filter resolution in Angstrom, or None for none.

    Returns
    -------
    float
        The angular step in degrees.

    Raises
    ------
    ConfigError
        If a size is not positive and finite, or the step would exceed 360 degrees.
    """
    try:
        return float(
            _rust.crowther_step_deg(
                float(particle_diameter_a),
                float(voxel_size_a),
                None if low_pass_a is None else float(low_pass_a),
            )
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def read_angle_file(path: str | os.PathLike[str]) -> AngleArray:
    """Read a custom rotation list, sorted by ``(phi, theta, psi)`` like pytom sorts it.

    The file holds one rotation per line: three ZXZ Euler angles ``phi theta psi`` in
    radians, separated by whitespace and/or commas. Blank lines and lines starting with
    ``#`` are ignored.

    Parameters
    ----------
    path
        The text file.

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` float64 ZXZ Euler angles in radians, sorted.

    Raises
    ------
    FormatError
        If the file is missing, unreadable or malformed; the message names the file, the
        line and the expected format.
    """
    p = Path(path)
    if not p.is_file():
        raise FormatError(
            f"{p}: angle file not found; give an existing text file with 3 ZXZ angles "
            "(radians) per line"
        )
    try:
        angles: AngleArray = _rust.read_angle_file(str(p))
    except OSError as exc:
        raise FormatError(f"{exc}; check the file's permissions") from None
    except ValueError as exc:
        raise FormatError(str(exc)) from None
    logger.debug("read %d rotations from %s", len(angles), p)
    return angles


def _parse_symmetry(symmetry: int | str) -> tuple[str, int]:
    """Return ``(kind, n)`` with kind in C, D, T, O, I."""
    if isinstance(symmetry, str):
        s = symmetry.strip().upper()
        if s in ("T", "O", "I"):
            return s, 0
        if len(s) >= 2 and s[0] in "CD" and s[1:].isdigit():
            n = int(s[1:])
            if n >= 1 and not (s[0] == "D" and n < 2):
                return s[0], n
        if s.isdigit():
            return "C", _check_cyclic(int(s))
        raise ConfigError(
            f"symmetry {symmetry!r} is not understood; give n or Cn (n >= 1), Dn "
            "(n >= 2), T, O or I"
        )
    return "C", _check_cyclic(symmetry)


def _looks_like_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def angle_set(
    angular_search: float | str | os.PathLike[str],
    *,
    symmetry: int | str = 1,
    optimal: bool = False,
) -> AngleArray:
    """Return the rotation set of a search (what matching and extraction call).

    Parameters
    ----------
    angular_search
        An angular step in degrees (a number, or a string holding one that is not an
        existing file), or the path of a rotation file (see :func:`read_angle_file`).
    symmetry
        ``n`` or ``"Cn"`` for n-fold symmetry about z (pytom's rule: keep
        ``phi < 2 pi / n``), or ``"Dn"``, ``"T"``, ``"O"``, ``"I"``.
    optimal
        Use tmfast's covering-optimal set for the step instead of pytom's (needs a
        step, not a file). Indices are then not interchangeable with pytom-match-pick.

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` float64 ZXZ Euler angles ``(phi, theta, psi)`` in radians, sorted.

    Raises
    ------
    ConfigError
        If the step, the symmetry or the combination of options is invalid.
    FormatError
        If a rotation file is missing or malformed.
    """
    kind, n = _parse_symmetry(symmetry)
    step: float | None = None
    path: Path | None = None
    if isinstance(angular_search, bool):
        raise ConfigError("angular search must be a step in degrees or a file path")
    if isinstance(angular_search, int | float | np.floating | np.integer):
        step = _check_step(float(angular_search))
    elif isinstance(angular_search, str) and not Path(angular_search).exists():
        value = _looks_like_number(angular_search)
        if value is None:
            raise FormatError(
                f"{angular_search}: angle file not found; give an existing file or a "
                "step in degrees"
            )
        step = _check_step(value)
    elif isinstance(angular_search, str | os.PathLike):
        path = Path(angular_search)
    else:
        raise ConfigError(
            f"angular search {angular_search!r} must be a step in degrees or a file"
        )

    if optimal and step is None:
        raise ConfigError(
            "--optimal needs an angular step in degrees, not a rotation file"
        )
    if step is not None and not optimal and kind == "C":
        return pytom_angle_set(step, symmetry=n)
    full = read_angle_file(path) if path is not None else _base_set(step, optimal)
    if kind == "C":
        if n == 1:
            return full
        keep = full[:, 0] < 2.0 * np.pi / n
        reduced: AngleArray = np.ascontiguousarray(full[keep])
        return reduced
    raise ConfigError(
        f"symmetry {symmetry!r}: only cyclic symmetry is available in this build"
    )


def _base_set(step: float | None, optimal: bool) -> AngleArray:
    assert step is not None
    if optimal:
        raise ConfigError("the covering-optimal set is not available in this build")
    return pytom_angle_set(step)


def angle_set_sha256(angles: npt.ArrayLike) -> str:
    """Return the SHA-256 hex digest of a rotation set (float64 little-endian, C order).

    Parameters
    ----------
    angles
        ``(N, 3)`` ZXZ Euler angles in radians.

    Returns
    -------
    str
        64 hexadecimal characters.

    Raises
    ------
    ConfigError
        If ``angles`` is not an ``(N, 3)`` array.
    """
    a = np.ascontiguousarray(angles, dtype="<f8")
    if a.ndim != 2 or a.shape[1] != 3:
        raise ConfigError(f"angles must have shape (N, 3), got {a.shape}")
    return hashlib.sha256(a.tobytes()).hexdigest()
