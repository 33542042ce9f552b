"""Euler conventions: ZXZ radians <-> matrices <-> RELION ZYZ degrees.

Oracles: scipy's Rotation (pytom-match-pick's export formula) and RELION's
``Euler_angles2matrix`` as written out in ``tmfast.geometry.rotations.relion_matrix``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from tmfast import _rust
from tmfast.geometry.rotations import (
    matrices_to_zxz,
    relion_deg_to_zxz,
    relion_matrix,
    zxz_to_matrices,
    zxz_to_relion_deg,
)

RNG = np.random.default_rng(20261125)


def random_zxz(n: int) -> np.ndarray:
    """Random ZXZ angles in the canonical ranges, away from gimbal lock."""
    a = np.column_stack(
        [
            RNG.uniform(0, 2 * np.pi, n),
            RNG.uniform(1e-3, np.pi - 1e-3, n),
            RNG.uniform(0, 2 * np.pi, n),
        ]
    )
    return a


def angle_diff_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a - b) % 360.0
    return np.minimum(d, 360.0 - d)


def test_rust_matrices_equal_numpy_and_scipy() -> None:
    a = random_zxz(500)
    m = zxz_to_matrices(a)
    np.testing.assert_allclose(_rust.zxz_to_matrices(a), m, atol=1e-14)
    np.testing.assert_allclose(Rotation.from_euler("zxz", a).as_matrix(), m, atol=1e-14)


def test_zxz_to_relion_equals_pytom_export() -> None:
    a = random_zxz(2000)
    got = zxz_to_relion_deg(a)
    want = Rotation.from_euler("ZXZ", -a).as_euler("ZYZ", degrees=True)
    assert np.all(angle_diff_deg(got, want) < 1e-9)
    assert np.all((got[:, 0] > -180) & (got[:, 0] <= 180))
    assert np.all((got[:, 1] >= 0) & (got[:, 1] <= 180))


def test_relion_matrix_of_exported_angles_is_m() -> None:
    a = random_zxz(300)
    rel = zxz_to_relion_deg(a)
    m = zxz_to_matrices(a)
    for r, mi in zip(rel, m, strict=True):
        np.testing.assert_allclose(relion_matrix(*r), mi, atol=1e-12)


def test_round_trips_recover_canonical_angles() -> None:
    a = random_zxz(2000)
    np.testing.assert_allclose(matrices_to_zxz(zxz_to_matrices(a)), a, atol=1e-9)
    np.testing.assert_allclose(relion_deg_to_zxz(zxz_to_relion_deg(a)), a, atol=1e-9)
    rel = zxz_to_relion_deg(a)
    assert np.all(angle_diff_deg(zxz_to_relion_deg(relion_deg_to_zxz(rel)), rel) < 1e-7)


def test_non_canonical_input_gives_the_same_rotation() -> None:
    a = RNG.uniform(-10, 10, size=(500, 3))
    back = matrices_to_zxz(zxz_to_matrices(a))
    np.testing.assert_allclose(zxz_to_matrices(back), zxz_to_matrices(a), atol=1e-12)
    assert np.all((back[:, [0, 2]] >= 0) & (back[:, [0, 2]] < 2 * np.pi))
    assert np.all((back[:, 1] >= 0) & (back[:, 1] <= np.pi))


@pytest.mark.parametrize("theta", [0.0, np.pi, 1e-13, np.pi - 1e-13])
def test_gimbal_lock_zxz(theta: float) -> None:
    a = np.array([[0.4, theta, 1.3], [5.9, theta, 0.0], [0.0, theta, 6.2]])
    m = zxz_to_matrices(a)
    back = matrices_to_zxz(m)
    assert np.all(np.isfinite(back))
    np.testing.assert_allclose(zxz_to_matrices(back), m, atol=1e-12)
    np.testing.assert_array_equal(back[:, 0], 0.0)
    rel = zxz_to_relion_deg(a)
    for r, mi in zip(rel, m, strict=True):
        np.testing.assert_allclose(relion_matrix(*r), mi, atol=1e-12)
    np.testing.assert_array_equal(rel[:, 2], 0.0)


@pytest.mark.parametrize("tilt", [0.0, 180.0])
def test_gimbal_lock_relion(tilt: float) -> None:
    rel = np.array([[30.0, tilt, 50.0], [-170.0, tilt, 20.0]])
    back = zxz_to_matrices(relion_deg_to_zxz(rel))
    for r, mi in zip(rel, back, strict=True):
        np.testing.assert_allclose(relion_matrix(*r), mi, atol=1e-12)


def test_matrices_to_zxz_rejects_non_rotations() -> None:
    with pytest.raises(ValueError, match="rotations"):
        matrices_to_zxz(np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="shape"):
        matrices_to_zxz(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="finite"):
        zxz_to_relion_deg([0.0, np.nan, 0.0])
    with pytest.raises(ValueError, match="shape"):
        relion_deg_to_zxz(np.zeros((4, 2)))


def test_single_triples_are_accepted() -> None:
    assert zxz_to_relion_deg([0.1, 0.2, 0.3]).shape == (1, 3)
    assert matrices_to_zxz(np.eye(3)).shape == (1, 3)
