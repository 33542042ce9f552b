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
* :func:`reduce_by_symmetry` keeps one rotation per class of a point group (Cn as
  pytom, and Dn, T, O, I).
* :func:`optimal_angle_set` (opt-in) reaches the pytom set's covering radius with
  fewer rotations; :func:`covering_radius_deg` measures it.
* :func:`angle_set` is the one entry point the matching engine and extraction call.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from tmfast import _rust
from tmfast.errors import ConfigError, FormatError
from tmfast.types import AngleArray

__all__ = [
    "angle_set",
    "angle_set_sha256",
    "angle_step_from_diameter",
    "covering_radius_deg",
    "optimal_angle_set",
    "pytom_angle_set",
    "read_angle_file",
    "reduce_by_symmetry",
    "symmetry_group",
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
        If the step or the symmetry order is invalid, or the set would hold more than
        500 million rotations (steps below about 0.35 degrees).
    """
    step = _check_step(angle_step_deg)
    n = _check_cyclic(symmetry)
    try:
        angles: AngleArray = _rust.pytom_angle_set(step, symmetry_n=n)
    except ValueError as exc:  # too many rotations for the step
        raise ConfigError(str(exc)) from None
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
        if "UTF-8" not in str(exc):
            raise FormatError(f"{exc}; check the file's permissions") from None
        with p.open("rb") as fh:
            head = fh.read(2)
        kind = (
            "gzip-compressed (decompress it first)"
            if head == b"\x1f\x8b"
            else ("not a text file")
        )
        raise FormatError(
            f"{p}: {kind}; give a text file with 3 ZXZ angles (radians) per line"
        ) from None
    except ValueError as exc:
        raise FormatError(str(exc)) from None
    top = float(np.abs(angles).max())
    if top > 2 * np.pi + 1e-6:
        # pytom's lists hold phi, psi in [0, 2 pi) and theta in [0, pi]
        logger.warning(
            "%s: angles up to %.4g; the file is read as radians, so degrees would "
            "give wrong rotations (convert with numpy.deg2rad)",
            p,
            top,
        )
    logger.debug("read %d rotations from %s", len(angles), p)
    return angles


def _parse_symmetry(symmetry: int | str) -> str:
    """Return the canonical symmetry name (``C4``, ``D2``, ``T``, ``O``, ``I``)."""
    if isinstance(symmetry, str):
        try:
            order = _rust.symmetry_order(symmetry)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        s = symmetry.strip().upper()
        if s.isdigit():
            return f"C{order}"
        return s
    return f"C{_check_cyclic(symmetry)}"


def symmetry_group(symmetry: int | str) -> AngleArray:
    """Return the rotations of a point group as ZXZ angles in radians.

    Orientations: ``Cn`` about z; ``Dn`` adds two-fold axes in the xy plane, the first
    along x; ``T`` and ``O`` have their two-/four-fold axes along x, y, z (these four
    equal scipy's ``Rotation.create_group``); ``I`` has two-fold axes along x, y, z
    and five-fold axes along ``(0, 1, 1/g)``, ``(1, 1/g, 0)``, ``(1/g, 0, 1)`` and
    their sign variants (``g`` the golden ratio; not scipy's orientation).

    Parameters
    ----------
    symmetry
        ``n`` or ``"Cn"``, ``"Dn"``, ``"T"``, ``"O"`` or ``"I"``.

    Returns
    -------
    numpy.ndarray
        ``(|G|, 3)`` float64 ZXZ Euler angles in radians; the identity first.

    Raises
    ------
    ConfigError
        If the symmetry is not understood.
    """
    group: AngleArray = _rust.symmetry_group_zxz(_parse_symmetry(symmetry))
    return group


def reduce_by_symmetry(
    angles: npt.ArrayLike, symmetry: int | str, *, complete_cyclic: bool = False
) -> AngleArray:
    """Keep one rotation per class ``{M g : g in G}`` of a template symmetry group.

    ``Cn`` keeps ``phi < 2 pi / n`` (pytom-match-pick's rule, identical counts).
    ``Dn``, ``T``, ``O`` and ``I`` keep the rotations in the Dirichlet domain of the
    identity: ``M`` is kept when no ``M g`` is closer to the identity (ties go to the
    lexicographically smallest quaternion). For a set that is not invariant under the
    group about ``N / |G|`` rotations remain; then the few rotations are added that are
    needed so every rotation of ``angles``, and every rotation of SO(3) found by
    sampling and hill climbing, stays within the set's covering radius (estimated with
    100,000 samples, seed 0) of a kept rotation composed with a group element: the
    reduced set covers SO(3) modulo the group as well as ``angles`` covers SO(3)
    (+1-3% rotations over ``N / |G|`` at 7-10 degrees, +10-25% at 20 degrees).
    ``complete_cyclic=True`` applies that completion to ``Cn`` as well (for sets not
    invariant under z rotations, e.g. the optimal set). Order is preserved.

    Parameters
    ----------
    angles
        ``(N, 3)`` ZXZ Euler angles in radians.
    symmetry
        ``n`` or ``"Cn"``, ``"Dn"``, ``"T"``, ``"O"`` or ``"I"``.
    complete_cyclic
        Also complete the coverage for ``Cn`` (counts then differ from pytom's).

    Returns
    -------
    numpy.ndarray
        ``(M, 3)`` float64 ZXZ Euler angles in radians, a subset of ``angles``.

    Raises
    ------
    ConfigError
        If the symmetry or the array shape is invalid.
    """
    name = _parse_symmetry(symmetry)
    a = _as_angle_array(angles)
    out: AngleArray = _rust.reduce_by_symmetry(
        a, name, complete_cyclic=bool(complete_cyclic)
    )
    return out


def _as_angle_array(angles: npt.ArrayLike) -> AngleArray:
    a = np.ascontiguousarray(angles, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ConfigError(f"angles must have shape (N, 3), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ConfigError("angles contain NaN or infinite values; give finite radians")
    return a


def covering_radius_deg(
    angles: npt.ArrayLike,
    *,
    symmetry: int | str = 1,
    n_samples: int = 200_000,
    seed: int = 0,
) -> float:
    """Estimate the covering radius of a rotation set in degrees.

    The covering radius is the largest geodesic distance from any rotation to the
    nearest rotation of the set. ``n_samples`` uniform random rotations are matched to
    their nearest set rotation through a k-d tree over unit quaternions (``q ~ -q``),
    and
    the worst ones are refined by hill climbing towards local maxima of the distance.
    The estimate is a distance actually attained, hence never above the true radius;
    with ``f(e) = (e - sin e) / pi`` the fraction of SO(3) within angle ``e``, the true
    radius exceeds ``estimate + e`` with probability at most ``(1 - f(e))^n_samples``
    (e.g. 3 degrees at 5e-4 for 10^6 samples); refinement makes it much tighter in
    practice.

    With a template ``symmetry`` the radius is that of the set composed with the
    group, ``{M g}``: what a symmetry-reduced set covers.

    Parameters
    ----------
    angles
        ``(N, 3)`` ZXZ Euler angles in radians.
    symmetry
        Template symmetry (``n``, ``"Cn"``, ``"Dn"``, ``"T"``, ``"O"``, ``"I"``).
    n_samples
        Number of uniform test rotations (>= 1000).
    seed
        Seed of the test rotations (the estimate is deterministic for a seed).

    Returns
    -------
    float
        The estimated covering radius in degrees.

    Raises
    ------
    ConfigError
        If the set is empty or malformed, or ``n_samples`` is too small.
    """
    a = _as_angle_array(angles)
    if len(a) == 0:
        raise ConfigError("the rotation set is empty; its covering radius is undefined")
    if not 1000 <= int(n_samples) <= 100_000_000:
        raise ConfigError(f"n_samples {n_samples} is invalid; give 1000 to 10^8")
    name = _parse_symmetry(symmetry)
    if name != "C1":
        from tmfast.geometry.rotations import matrices_to_zxz, zxz_to_matrices

        group = zxz_to_matrices(symmetry_group(name))
        images = zxz_to_matrices(a)[:, None] @ group[None]
        a = matrices_to_zxz(images.reshape(-1, 3, 3))
    radius_rad, _ = _rust.covering_radius(
        a, n_samples=int(n_samples), seed=int(seed) % 2**64
    )
    return float(np.rad2deg(radius_rad))


def optimal_angle_set(
    angle_step_deg: float | None = None,
    *,
    target_radius_deg: float | None = None,
    n_samples: int = 200_000,
) -> AngleArray:
    """Return tmfast's covering-efficient rotation set.

    Candidates (see ``rust/src/angles/optimal.rs`` and ``refined.rs``): body-centred
    cubic lattices in the four cube cells or in the twelve octahedral cells of the
    24-cell on the unit-quaternion sphere, the 360 vertices and cell centres of the
    600-cell, and the refined sets embedded in the library (:func:`refined_angle_sets`:
    point sets optimised offline, covering density 1.78-1.89). Each lattice is taken at
    its smallest size whose estimated covering radius (:func:`covering_radius_deg`) is
    at most the target, a refined set when its exact radius is, and the candidate with
    the fewest rotations is returned. The target is either ``target_radius_deg`` or
    the covering radius of :func:`pytom_angle_set` for ``angle_step_deg``; a lattice
    size is accepted only when a second estimate with 20 test rotations per rotation
    (up to 2,000,000, another seed) agrees. The lattices' covering density is about
    1.93-2.15 against pytom's 2.4-3.5, but their sizes grow in steps of
    ``((n + 1) / n)^3``; where that left less than 25% saving (5.27, 6.69, 8, 12,
    12.85, 16, 20 and 25 degrees) a refined set of ``floor(0.75 N_pytom)`` rotations
    serves, so every step of pytom-match-pick's table from 3 to 30 degrees saves at
    least 25%. Where no candidate is smaller than the pytom set, the pytom set itself is
    returned. Indices are not interchangeable with pytom-match-pick's; the set is
    deterministic and sorted by ``(phi, theta, psi)``.

    Parameters
    ----------
    angle_step_deg
        Angular step in degrees; the pytom set of this step sets the target radius.
    target_radius_deg
        Covering radius to reach, in degrees (instead of ``angle_step_deg``).
    n_samples
        Test rotations of the covering-radius estimates.

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` float64 ZXZ Euler angles in radians, sorted.

    Raises
    ------
    ConfigError
        If neither or both of the step and the radius are given, or one is invalid.
    """
    if (angle_step_deg is None) == (target_radius_deg is None):
        raise ConfigError("give exactly one of angle_step_deg and target_radius_deg")
    if not 1000 <= int(n_samples) <= 100_000_000:
        raise ConfigError(f"n_samples {n_samples} is invalid; give 1000 to 10^8")
    if target_radius_deg is not None:
        radius = float(target_radius_deg)
        if not (math.isfinite(radius) and 0.5 <= radius <= 180.0):
            raise ConfigError(
                f"target covering radius {radius} deg is outside [0.5, 180]; give "
                "degrees"
            )
        found = _rust.optimal_for_radius(
            np.deg2rad(radius), n_samples=int(n_samples), max_len=2**40
        )
        if found is None:
            raise ConfigError(f"no lattice reaches {radius} deg; give a larger radius")
        lattice, radius_rad = found
        logger.info(
            "optimal set for radius %.3g deg: %d rotations (radius %.2f deg)",
            radius,
            len(lattice),
            np.rad2deg(radius_rad),
        )
        return lattice
    assert angle_step_deg is not None
    step = _check_step(angle_step_deg)
    angles, radius_rad, target_rad = _rust.optimal_angle_set(
        step, n_samples=int(n_samples)
    )
    logger.info(
        "optimal set for %.4g deg: %d rotations, covering radius %.2f deg "
        "(pytom set %.2f deg)",
        step,
        len(angles),
        np.rad2deg(radius_rad),
        np.rad2deg(target_rad),
    )
    result: AngleArray = angles
    return result


class RefinedSet(NamedTuple):
    """A rotation set optimised offline (``tools/refine_covering.py``)."""

    step_deg: float
    """The pytom-match-pick step whose covering radius the set was made to reach."""
    radius_deg: float
    """Exact covering radius (degrees), from the convex hull of its quaternions."""
    angles: AngleArray
    """``(N, 3)`` ZXZ Euler angles in radians, sorted by ``(phi, theta, psi)``."""


def refined_angle_sets() -> list[RefinedSet]:
    """Return the refined sets embedded in the library, smallest first.

    Each has ``floor(0.75 N)`` rotations for the ``N`` of pytom's set at its step and a
    covering radius no larger than that set's; :func:`optimal_angle_set` chooses among
    them and the lattices.
    """
    return [RefinedSet(float(s), float(r), a) for s, r, a in _rust.refined_sets()]


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
        ``phi < 2 pi / n``), or ``"Dn"``, ``"T"``, ``"O"``, ``"I"``
        (see :func:`reduce_by_symmetry`).
    optimal
        Use :func:`optimal_angle_set` for the step instead of pytom's set (needs a
        step, not a file). Indices are then not interchangeable with pytom-match-pick;
        a symmetry, ``Cn`` included, is applied with the coverage completion of
        :func:`reduce_by_symmetry` (``complete_cyclic=True``).

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
    name = _parse_symmetry(symmetry)
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
                f"{angular_search}: not a number of degrees and no such angle file; "
                "give a step in degrees (e.g. 7) or an existing angle file"
            )
        step = _check_step(value)
    elif isinstance(angular_search, str | os.PathLike):
        path = Path(angular_search)
    else:
        raise ConfigError(
            f"angular search {angular_search!r} must be a step in degrees or a file"
        )

    if path is not None:
        if optimal:
            raise ConfigError(
                "optimal=True (--optimal) needs an angular step in degrees, not a file"
            )
        full = read_angle_file(path)
    elif optimal:
        assert step is not None
        full = optimal_angle_set(step)
    else:
        assert step is not None
        if name.startswith("C"):
            return pytom_angle_set(step, symmetry=int(name[1:]))
        full = pytom_angle_set(step)
    if name == "C1":
        return full
    return reduce_by_symmetry(full, name, complete_cyclic=optimal)


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
