"""Angle sets: pytom-match-pick compatibility (oracle: the ``healpix`` package and
pytom's own algorithm written out in numpy), the Crowther step, angle files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tmfast import _rust
from tmfast.errors import ConfigError, FormatError
from tmfast.geometry import angles as ga

healpix = pytest.importorskip("healpix", reason="the healpix package is the oracle")

# pytom-match-pick's rotation counts (reference §3.2, computed with get_angle_list):
# step -> (total, C2, C6)
PYTOM_COUNTS = {
    3: (576_000, 288_000, 96_840),
    5: (124_416, 62_208, 20_736),
    6: (72_000, 36_000, 12_420),
    7: (50_544, 25_272, 8_424),
    8: (34_560, 17_280, 5_895),
    10: (15_552, 7_776, 2_592),
    11: (14_256, 7_128, 2_376),
    12: (9_000, 4_500, 1_560),
    13: (8_400, 4_200, 1_456),
    15: (4_608, 2_304, 840),
    16: (4_416, 2_208, 805),
    18: (3_840, 1_920, 700),
    20: (1_944, 972, 324),
    25: (1_620, 810, 270),
    30: (576, 288, 108),
    38.53: (480, 240, 90),
    50: (384, 192, 72),
    90: (48, 24, 12),
}


def pytom_oracle(step_deg: float, symmetry: int = 1) -> np.ndarray:
    """pytom-match-pick's get_angle_list, written out with the healpix package."""
    npix_target = 4 * np.pi / (step_deg * np.pi / 180) ** 2
    nside = 0
    while 12 * nside**2 < npix_target:
        nside += 1
    theta, phi = healpix.pix2ang(nside, np.arange(12 * nside**2))
    phi = np.where(phi < 0, phi + 2 * np.pi, phi)  # pytom PR #342
    n_psi = int(np.ceil(360 / step_deg))
    psi = np.linspace(0, 2 * np.pi, n_psi, endpoint=False)
    rows = np.stack(
        [np.repeat(phi, n_psi), np.repeat(theta, n_psi), np.tile(psi, len(phi))], axis=1
    )
    rows = rows[np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))]
    return rows[rows[:, 0] < 2 * np.pi / symmetry]


@pytest.mark.parametrize("nside", [*range(1, 40), 64, 97, 128])
def test_healpix_pix2ang_is_bit_identical_to_healpix_package(nside: int) -> None:
    theta, phi = _rust.healpix_pix2ang(nside)
    want_theta, want_phi = healpix.pix2ang(nside, np.arange(12 * nside**2))
    np.testing.assert_array_equal(theta, want_theta)
    np.testing.assert_array_equal(phi, want_phi)


@pytest.mark.parametrize("step", sorted(PYTOM_COUNTS))
def test_pytom_set_counts_match_reference_table(step: float) -> None:
    total, c2, c6 = PYTOM_COUNTS[step]
    assert len(ga.pytom_angle_set(step)) == total
    assert len(ga.pytom_angle_set(step, symmetry=2)) == c2
    assert len(ga.pytom_angle_set(step, symmetry=6)) == c6


@pytest.mark.parametrize("step", [3, 7, 10, 12.85, 20, 38.53, 90, 4.3, 360])
@pytest.mark.parametrize("symmetry", [1, 2, 4, 6])
def test_pytom_set_is_identical_to_oracle(step: float, symmetry: int) -> None:
    got = ga.pytom_angle_set(step, symmetry=symmetry)
    want = pytom_oracle(step, symmetry)
    assert got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_pytom_set_small_case_matches_python_tuple_sort() -> None:
    """Python's tuple sort, exactly what pytom calls, on the unsorted product."""
    step = 38.53
    npix_target = 4 * np.pi / (step * np.pi / 180) ** 2
    nside = math.ceil(math.sqrt(npix_target / 12))
    theta, phi = healpix.pix2ang(nside, np.arange(12 * nside**2))
    phi = np.where(phi < 0, phi + 2 * np.pi, phi)
    psi = np.linspace(0, 2 * np.pi, int(np.ceil(360 / step)), endpoint=False)
    pairs = zip(phi, theta, strict=True)
    rows = sorted((float(a), float(b), float(c)) for a, b in pairs for c in psi)
    np.testing.assert_array_equal(ga.pytom_angle_set(step), np.array(rows))


def test_pytom_set_ranges_and_uniqueness() -> None:
    a = ga.pytom_angle_set(10)
    assert np.all((a[:, 0] >= 0) & (a[:, 0] < 2 * np.pi))
    assert np.all((a[:, 1] >= 0) & (a[:, 1] < np.pi))
    assert np.all((a[:, 2] >= 0) & (a[:, 2] < 2 * np.pi))
    assert len(np.unique(a, axis=0)) == len(a)


def test_nside_rule() -> None:
    for step in [3, 5, 7, 10, 12.85, 30, 90]:
        nside = _rust.nside_for_step(step)
        target = 4 * np.pi / np.deg2rad(step) ** 2
        assert 12 * nside**2 >= target > 12 * (nside - 1) ** 2


def test_nside_and_count_match_pytom_formula_for_random_steps() -> None:
    rng = np.random.default_rng(1)
    for step in [*rng.uniform(0.5, 90, 3000), *np.round(rng.uniform(1, 40, 500), 2)]:
        step = float(step)
        npix_target = 4 * np.pi / (step * np.pi / 180) ** 2
        nside = 0
        while 12 * nside**2 < npix_target:
            nside += 1
        assert _rust.nside_for_step(step) == nside, step
    for step in rng.uniform(4, 90, 200):
        n_psi = int(np.ceil(360 / float(step)))
        nside = _rust.nside_for_step(float(step))
        assert len(ga.pytom_angle_set(float(step))) == 12 * nside**2 * n_psi


@pytest.mark.parametrize("step", [0, -3, float("nan"), float("inf"), 400, 0.01, 0.1])
def test_invalid_step_raises_config_error(step: float) -> None:
    with pytest.raises(ConfigError, match="step"):
        ga.pytom_angle_set(step)


@pytest.mark.parametrize("symmetry", [0, -2, 2.5, True])
def test_invalid_cyclic_symmetry_raises(symmetry: object) -> None:
    with pytest.raises(ConfigError, match="symmetry"):
        ga.pytom_angle_set(10, symmetry=symmetry)  # type: ignore[arg-type]


# --- Crowther step ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low_pass_a", "count"), [(None, 119_232), (35.0, 52_488), (40.0, 36_864)]
)
def test_crowther_step_tutorial_counts(low_pass_a: float | None, count: int) -> None:
    """pytom's tutorial: 300 A ribosome at 13.79 A (reference §3.2)."""
    step = ga.angle_step_from_diameter(300.0, 13.79, low_pass_a)
    want = np.rad2deg(max(2 * 13.79, low_pass_a or 0.0) / 300.0)
    assert step == pytest.approx(want, rel=1e-15)
    assert len(ga.pytom_angle_set(step)) == count


def test_crowther_step_tutorial_value() -> None:
    assert round(ga.angle_step_from_diameter(300, 13.79, 40), 2) == 7.64


@pytest.mark.parametrize(
    "args", [(0, 13.79, None), (300, -1, None), (300, 13.79, -5.0), (1.0, 13.79, None)]
)
def test_crowther_step_invalid(args: tuple[float, float, float | None]) -> None:
    with pytest.raises(ConfigError):
        ga.angle_step_from_diameter(*args)


# --- angle files ---------------------------------------------------------------------


def test_read_angle_file_sorts_like_pytom(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = rng.uniform(0, np.pi, size=(50, 3))
    rows[10, 0] = rows[20, 0]  # ties in phi are broken by theta, then psi
    rows[30, :2] = rows[40, :2]
    f = tmp_path / "angles.txt"
    lines = [f"{float(a)!r} {float(b)!r} {float(c)!r}" for a, b, c in rows]
    a3, b3, c3 = map(float, rows[3])
    lines[3] = f"{a3!r}, {b3!r},{c3!r}"
    f.write_text("# ZXZ radians\n\n" + "\n".join(lines) + "\n\n")
    got = ga.read_angle_file(f)
    want = np.array(sorted(tuple(map(float, r)) for r in rows))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ga.angle_set(f), want)
    np.testing.assert_array_equal(ga.angle_set(str(f)), want)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("0 0 0\n1 2\n", 2),
        ("0 0 0\n\n# c\n1 2 x\n", 4),
        ("1 2 3 4\n", 1),
    ],
)
def test_malformed_angle_file_names_file_and_line(
    tmp_path: Path, text: str, line: int
) -> None:
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(FormatError) as info:
        ga.read_angle_file(f)
    msg = str(info.value)
    assert str(f) in msg and f"line {line}" in msg and "3 ZXZ" in msg


def test_angle_file_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    f = tmp_path / "bom.txt"
    f.write_bytes("\ufeff0.5 0.25 1.0\r\n0 0 0\r\n".encode())
    np.testing.assert_array_equal(
        ga.read_angle_file(f), [[0.0, 0.0, 0.0], [0.5, 0.25, 1.0]]
    )


def test_binary_or_gzip_angle_file_says_so(tmp_path: Path) -> None:
    import gzip

    f = tmp_path / "angles.txt.gz"
    f.write_bytes(gzip.compress(b"0 0 0\n"))
    with pytest.raises(FormatError, match="gzip-compressed") as info:
        ga.read_angle_file(f)
    assert "permissions" not in str(info.value)
    b = tmp_path / "angles.bin"
    b.write_bytes(bytes(range(256)))
    with pytest.raises(FormatError, match=r"angles\.bin: not a text file"):
        ga.read_angle_file(b)


def test_angle_file_in_degrees_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = tmp_path / "deg.txt"
    f.write_text("0 0 0\n90 45 180\n")
    with caplog.at_level("WARNING", logger="tmfast.geometry.angles"):
        ga.read_angle_file(f)
    assert "angles up to 180" in caplog.text and "deg2rad" in caplog.text
    caplog.clear()
    f.write_text(f"0 0 0\n{2 * np.pi - 1e-9!r} {np.pi!r} 1\n")
    with caplog.at_level("WARNING", logger="tmfast.geometry.angles"):
        ga.read_angle_file(f)
    assert caplog.text == ""


def test_missing_angle_file(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="not found"):
        ga.read_angle_file(tmp_path / "nope.txt")
    with pytest.raises(FormatError, match="no such angle file"):
        ga.angle_set(str(tmp_path / "nope.txt"))


# --- angle_set and fingerprints -------------------------------------------------


def test_angle_set_dispatch() -> None:
    np.testing.assert_array_equal(ga.angle_set(10), pytom_oracle(10))
    np.testing.assert_array_equal(ga.angle_set("10"), pytom_oracle(10))
    np.testing.assert_array_equal(ga.angle_set(10, symmetry="C4"), pytom_oracle(10, 4))
    np.testing.assert_array_equal(ga.angle_set(10, symmetry=4), pytom_oracle(10, 4))


def test_angle_set_file_with_cyclic_symmetry(tmp_path: Path) -> None:
    full = pytom_oracle(30)
    f = tmp_path / "a.txt"
    np.savetxt(f, full[::-1])
    np.testing.assert_array_equal(ga.angle_set(f, symmetry=2), pytom_oracle(30, 2))


@pytest.mark.parametrize("symmetry", ["X3", "D1", "C0", "", "c-2"])
def test_angle_set_bad_symmetry(symmetry: str) -> None:
    with pytest.raises(ConfigError, match="symmetry"):
        ga.angle_set(10, symmetry=symmetry)


def test_angle_set_sha256_is_sha_of_little_endian_bytes() -> None:
    import hashlib

    a = ga.pytom_angle_set(30)
    digest = ga.angle_set_sha256(a)
    assert digest == hashlib.sha256(a.astype("<f8").tobytes()).hexdigest()
    assert ga.angle_set_sha256(a.astype(">f8")) == digest
    assert ga.angle_set_sha256(np.asfortranarray(a)) == digest
    assert ga.angle_set_sha256(a[:-1]) != digest
    with pytest.raises(ConfigError):
        ga.angle_set_sha256(np.zeros((3, 2)))


# --- symmetry ----------------------------------------------------------------------


def _as_matrices(angles: np.ndarray) -> np.ndarray:
    from tmfast.geometry.rotations import zxz_to_matrices

    return zxz_to_matrices(angles)


@pytest.mark.parametrize("name", ["C1", "C4", "C7", "D2", "D3", "T", "O"])
def test_symmetry_group_equals_scipy(name: str) -> None:
    from scipy.spatial.transform import Rotation

    mine = _as_matrices(ga.symmetry_group(name))
    want = Rotation.create_group(name).as_matrix()
    assert len(mine) == len(want)
    d = np.abs(mine[:, None] - want[None]).max(axis=(2, 3))
    assert np.all(d.min(axis=1) < 1e-9)


def test_icosahedral_group_is_a_group_with_twofolds_on_axes() -> None:
    m = _as_matrices(ga.symmetry_group("I"))
    assert len(m) == 60
    prod = (m[:, None] @ m[None]).reshape(-1, 9)
    d = np.abs(prod[:, None] - m.reshape(1, -1, 9)).max(axis=2)
    assert np.all(d.min(axis=1) < 1e-9)
    for axis in np.eye(3):
        two_fold = 2 * np.outer(axis, axis) - np.eye(3)
        assert np.abs(m - two_fold).max(axis=(1, 2)).min() < 1e-9
    # 6 five-fold axes, each with rotations by +-72 and +-144 degrees
    angles = np.degrees(
        np.arccos(np.clip((np.trace(m, axis1=1, axis2=2) - 1) / 2, -1, 1))
    )
    assert (
        np.sum(np.isclose(angles, 72)) == 12 and np.sum(np.isclose(angles, 144)) == 12
    )
    g = (1 + np.sqrt(5)) / 2
    axis = np.array([0.0, 1.0, 1 / g]) / np.linalg.norm([0.0, 1.0, 1 / g])
    k = np.array(
        [[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]]
    )
    five = np.eye(3) + np.sin(np.radians(72)) * k + (1 - np.cos(np.radians(72))) * k @ k
    assert np.abs(m - five).max(axis=(1, 2)).min() < 1e-9


def _covered_by_group_images(
    full: np.ndarray, kept: np.ndarray, group: np.ndarray
) -> np.ndarray:
    """Distance (deg) from each rotation of ``full`` to the nearest ``k g``."""
    from tmfast.geometry.rotations import matrices_to_zxz

    images = (_as_matrices(kept)[:, None] @ _as_matrices(group)[None]).reshape(-1, 3, 3)
    return np.degrees(_rust.nearest_distances(matrices_to_zxz(images), full))


@pytest.mark.parametrize("name", ["D2", "D6", "T", "O", "I"])
def test_symmetry_reduction_keeps_one_per_class(name: str) -> None:
    full = ga.pytom_angle_set(10)
    kept = ga.reduce_by_symmetry(full, name)
    group = ga.symmetry_group(name)
    assert abs(len(kept) - len(full) / len(group)) < 0.05 * len(full) / len(group)
    # kept rows are rows of the full set, in order
    where = {tuple(r): i for i, r in enumerate(full.tolist())}
    idx = [where[tuple(r)] for r in kept.tolist()]
    assert idx == sorted(idx)
    radius = ga.covering_radius_deg(full, n_samples=100_000, seed=0)
    assert _covered_by_group_images(full, kept, group).max() <= radius
    # and the kept set, expanded by the group, covers SO(3) as well as the full set
    expanded = ga.covering_radius_deg(kept, symmetry=name, n_samples=200_000, seed=8)
    assert expanded <= radius + 0.05
    np.testing.assert_array_equal(ga.angle_set(10, symmetry=name), kept)


def test_symmetry_reduction_of_invariant_set_is_exact() -> None:
    """For a G-invariant set, exactly N / |G| rotations remain and they are distinct
    classes (no two kept rotations are related by a group element)."""
    from tmfast.geometry.rotations import matrices_to_zxz

    rng = np.random.default_rng(4)
    base = rng.uniform(0, np.pi, size=(40, 3))
    group = ga.symmetry_group("O")
    images = (_as_matrices(base)[:, None] @ _as_matrices(group)[None]).reshape(-1, 3, 3)
    full = matrices_to_zxz(images)
    kept = ga.reduce_by_symmetry(full, "O")
    assert len(kept) == 40
    d = _covered_by_group_images(kept, kept, group)
    assert d.max() < 1e-4  # every kept rotation maps onto itself ...
    classes = _covered_by_group_images(matrices_to_zxz(_as_matrices(base)), kept, group)
    assert classes.max() < 1e-4  # ... and every class has a representative


def test_cyclic_symmetry_string_and_int_agree() -> None:
    full = ga.pytom_angle_set(15)
    np.testing.assert_array_equal(
        ga.reduce_by_symmetry(full, 6), full[full[:, 0] < np.pi / 3]
    )
    np.testing.assert_array_equal(
        ga.reduce_by_symmetry(full, "c6"), ga.angle_set(15, symmetry=6)
    )


# --- covering radius ---------------------------------------------------------------


def test_nearest_distances_equal_brute_force() -> None:
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(3)
    s = Rotation.random(300, random_state=rng)
    q = Rotation.random(2000, random_state=rng)
    got = np.degrees(_rust.nearest_distances(s.as_euler("zxz"), q.as_euler("zxz")))
    want = np.array([np.degrees((s.inv() * qi).magnitude()).min() for qi in q])
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_covering_radius_of_octahedral_group_is_analytic() -> None:
    """The deepest hole of O is a vertex of its truncated-cube Dirichlet cell, at
    Rodrigues vector (t, t, 1 - 2t), t = tan(pi/8)."""
    t = np.tan(np.pi / 8)
    want = np.degrees(2 * np.arctan(np.sqrt(2 * t**2 + (1 - 2 * t) ** 2)))
    got = ga.covering_radius_deg(ga.symmetry_group("O"), n_samples=50_000)
    assert want - 0.05 < got <= want + 1e-9


def test_covering_radius_single_rotation_is_180() -> None:
    got = ga.covering_radius_deg(np.zeros((1, 3)), n_samples=20_000)
    assert 179.0 < got <= 180.0 + 1e-9


def test_covering_radius_is_attained_and_beats_plain_sampling() -> None:
    from scipy.spatial.transform import Rotation

    a = Rotation.random(200, random_state=5).as_euler("zxz")
    radius, worst = _rust.covering_radius(a, n_samples=20_000, seed=9)
    attained = _rust.nearest_distances(a, worst[None])[0]
    assert attained == pytest.approx(radius, abs=1e-9)
    probe = Rotation.random(100_000, random_state=6).as_euler("zxz")
    assert np.degrees(radius) >= np.degrees(_rust.nearest_distances(a, probe).max())


@pytest.mark.parametrize("name", ["C4", "O"])
def test_covering_radius_with_symmetry_is_that_of_the_expanded_set(name: str) -> None:
    full = ga.pytom_angle_set(20)
    kept = ga.reduce_by_symmetry(full, name)
    r_full = ga.covering_radius_deg(full, n_samples=100_000)
    r_sym = ga.covering_radius_deg(kept, symmetry=name, n_samples=100_000, seed=7)
    assert r_sym <= r_full + 0.05
    assert ga.covering_radius_deg(kept, n_samples=20_000) > 2 * r_full


def test_covering_radius_input_checks() -> None:
    with pytest.raises(ConfigError):
        ga.covering_radius_deg(np.zeros((0, 3)))
    with pytest.raises(ConfigError):
        ga.covering_radius_deg(np.zeros((5, 3)), n_samples=10)


# --- covering-optimal set ------------------------------------------------------------


@pytest.mark.parametrize("step", [10, 15])
def test_optimal_set_reaches_pytom_radius_with_25_percent_fewer(step: float) -> None:
    pytom = ga.pytom_angle_set(step)
    opt = ga.angle_set(step, optimal=True)
    assert len(opt) <= 0.75 * len(pytom)
    # independent estimates (other seed, more samples) of both radii
    r_pytom = ga.covering_radius_deg(pytom, n_samples=400_000, seed=11)
    r_opt = ga.covering_radius_deg(opt, n_samples=400_000, seed=12)
    assert r_opt <= r_pytom
    assert len(np.unique(opt, axis=0)) == len(opt)
    np.testing.assert_array_equal(
        opt, opt[np.lexsort((opt[:, 2], opt[:, 1], opt[:, 0]))]
    )


# The steps of pytom-match-pick's table (reference/pytom-match-pick.md 3.2) between 3
# and 30 degrees. The lattices save 25% or more where pytom's covering density is
# about 3.5; where it is 2.4-2.7 (5.27, 6.69, 8, 12, 12.85, 16, 20, 25 degrees) the
# refined sets embedded in the library (covering density 1.78-1.89) do.
_TABLE_STEPS = [3, 5, 5.27, 6, 6.69, 7, 7.64, 8, 10, 11, 12, 12.85, 13, 15, 16, 18]
_TABLE_STEPS += [20, 25, 30]


@pytest.mark.parametrize("step", _TABLE_STEPS)
def test_optimal_set_saving_at_every_pytom_table_step(step: float) -> None:
    """Independent estimates (other seeds, 1,000,000 samples) of both covering radii."""
    pytom = ga.pytom_angle_set(step)
    opt = ga.optimal_angle_set(step)
    assert len(opt) <= 0.75 * len(pytom)
    r_pytom = ga.covering_radius_deg(pytom, n_samples=1_000_000, seed=11)
    r_opt = ga.covering_radius_deg(opt, n_samples=1_000_000, seed=12)
    assert r_opt <= r_pytom


def _exact_covering_radius_deg(angles: np.ndarray) -> float:
    """Exact covering radius: the deepest facet of the hull of the quaternions +-q.

    On the unit-quaternion sphere each hull facet at distance ``d`` from the origin
    bounds an empty cap of angular radius ``arccos d``, a rotation angle of twice that.
    Quaternions from scipy, independently of tmfast's own conversion.
    """
    from scipy.spatial import ConvexHull
    from scipy.spatial.transform import Rotation
    from tmfast.geometry import zxz_to_matrices

    q = Rotation.from_matrix(zxz_to_matrices(angles)).as_quat()
    offsets = -ConvexHull(np.vstack([q, -q])).equations[:, -1]
    return float(np.degrees(2.0 * np.arccos(np.clip(offsets.min(), -1.0, 1.0))))


def test_refined_sets_reach_pytom_radius_exactly() -> None:
    """Each embedded set: 25% fewer rotations and an exact radius within pytom's."""
    sets = ga.refined_angle_sets()
    # smallest first; one per step where the lattices save less than 25%
    assert [s.step_deg for s in sets] == [25, 20, 16, 12.85, 12, 8, 6.69, 5.27]
    for s in sets:
        pytom = ga.pytom_angle_set(s.step_deg)
        assert len(s.angles) <= 0.75 * len(pytom)
        exact = _exact_covering_radius_deg(s.angles)
        assert exact == pytest.approx(s.radius_deg, abs=1e-6)
        # the exact radius of pytom's set, and its estimate (a lower bound of it)
        assert exact <= _exact_covering_radius_deg(pytom)
        assert exact <= ga.covering_radius_deg(pytom, n_samples=200_000, seed=11)
        np.testing.assert_array_equal(
            s.angles,
            s.angles[np.lexsort((s.angles[:, 2], s.angles[:, 1], s.angles[:, 0]))],
        )


def test_optimal_set_is_never_larger_than_pytom() -> None:
    """Never more rotations than pytom's set (at 90 deg its own set is returned)."""
    for step in (20, 90):
        opt = ga.optimal_angle_set(step, n_samples=50_000)
        assert len(opt) <= len(ga.pytom_angle_set(step))


@pytest.mark.parametrize("name", ["C4", "D2"])
def test_optimal_set_with_symmetry_keeps_coverage(name: str) -> None:
    full = ga.optimal_angle_set(15, n_samples=50_000)
    kept = ga.angle_set(15, symmetry=name, optimal=True)
    group = ga.symmetry_group(name)
    # the completion costs more where classes are few (+20% for C4 at 15 deg)
    assert len(kept) <= 1.25 * len(full) / len(group)
    radius = ga.covering_radius_deg(full, n_samples=100_000, seed=0)
    assert _covered_by_group_images(full, kept, group).max() <= radius


@pytest.mark.parametrize("radius_deg", [12.0, 25.0])
def test_optimal_set_for_target_radius(radius_deg: float) -> None:
    opt = ga.optimal_angle_set(target_radius_deg=radius_deg, n_samples=50_000)
    assert ga.covering_radius_deg(opt, n_samples=200_000, seed=3) <= radius_deg
    # density (R - sin R) / pi * N: how often SO(3) is covered on average (>= 1)
    r = np.deg2rad(radius_deg)
    assert len(opt) * (r - np.sin(r)) / np.pi < 2.9
    with pytest.raises(ConfigError, match="exactly one"):
        ga.optimal_angle_set(10, target_radius_deg=radius_deg)
    with pytest.raises(ConfigError, match="radius"):
        ga.optimal_angle_set(target_radius_deg=0.01)


def test_optimal_set_needs_a_step(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("0 0 0\n")
    with pytest.raises(ConfigError, match="optimal"):
        ga.angle_set(f, optimal=True)


# --- tmfast angles CLI ----------------------------------------------------------


def _run_cli(args: list[str]) -> tuple[int, str, str]:
    from tmfast.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, args)
    return result.exit_code, result.stdout, result.stderr


def _run_main(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    from tmfast.cli import main

    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


def test_cli_angles_step_counts_and_writes(tmp_path: Path) -> None:
    out = tmp_path / "set.txt"
    code, stdout, _ = _run_cli(
        ["angles", "--angular-search", "30", "--symmetry", "C2", "-o", str(out)]
    )
    assert code == 0, stdout
    assert "rotations: 288" in stdout and "with C2)" in stdout
    radius = float(stdout.split("covering radius: ")[1].split()[0])
    assert radius == pytest.approx(
        ga.covering_radius_deg(pytom_oracle(30), n_samples=200_000), abs=1.0
    )
    written = ga.read_angle_file(out)
    np.testing.assert_array_equal(written, pytom_oracle(30, 2))
    assert f"sha256: {ga.angle_set_sha256(written)}" in stdout
    # the written file is a valid --angular-search input
    code, stdout, _ = _run_cli(["angles", "-a", str(out)])
    assert code == 0 and "rotations: 288" in stdout


def test_cli_angles_from_particle_diameter() -> None:
    code, stdout, _ = _run_cli(
        [
            "angles",
            "--particle-diameter",
            "300",
            "--voxel-size-angstrom",
            "13.79",
            "--low-pass",
            "40",
        ]
    )
    assert code == 0, stdout
    assert "7.6394 deg" in stdout and "rotations: 36864" in stdout


def test_cli_angles_optimal_is_smaller() -> None:
    code, stdout, _ = _run_cli(["angles", "-a", "15", "--optimal"])
    assert code == 0, stdout
    n = int(stdout.split("rotations: ")[1].split()[0])
    assert n <= 0.75 * 4608


def test_cli_angles_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "set.txt"
    out.write_text("keep me\n")
    code, _, err = _run_main(["angles", "-a", "90", "-o", str(out)], capsys)
    assert code == 2 and "--overwrite" in err and "Traceback" not in err
    assert out.read_text() == "keep me\n"
    with pytest.raises(SystemExit) as info:
        from tmfast.cli import main

        main(["angles", "-a", "90", "-o", str(out), "--overwrite"])
    assert info.value.code in (0, None)
    assert len(ga.read_angle_file(out)) == 48


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["angles"], "--angular-search"),
        (["angles", "-a", "0"], "step"),
        (["angles", "-a", "nofile.txt"], "no such angle file"),
        (["angles", "-a", "10", "-s", "Q"], "symmetry"),
        (["angles", "-a", "10", "--particle-diameter", "300"], "not both"),
    ],
)
def test_cli_angles_bad_input_exits_2(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run_main(args, capsys)
    assert code == 2
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_angles_bad_file_names_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "bad.txt"
    f.write_text("0 0 0\n1 2\n")
    code, _, err = _run_main(["angles", "-a", str(f)], capsys)
    assert code == 2 and f"{f}: line 2" in err


def test_empty_angle_file_names_the_file_not_line_0(tmp_path: Path) -> None:
    f = tmp_path / "none.txt"
    f.write_text("# only a comment\n\n")
    with pytest.raises(FormatError, match="no rotations found") as info:
        ga.read_angle_file(f)
    assert "line 0" not in str(info.value)
    assert str(f) in str(info.value)
