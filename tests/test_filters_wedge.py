"""Binary and per-tilt weighted wedges against geometric oracles.

Convention under test (tmfast.filters.wedge): the image at tilt ``a`` samples the
central plane spanned by ky and (kx, kz) = (cos a, sin a), so a voxel with kx != 0
lies on the plane of tilt ``arctan(kz / kx)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from tmfast.errors import ConfigError
from tmfast.filters.ctf import ctf_1d
from tmfast.filters.wedge import binary_wedge, dose_filter, tilt_weighted_wedge
from tmfast.metadata import TiltSeriesMetadata


def grids(shape: tuple[int, int, int]) -> tuple[np.ndarray, ...]:
    """Full-size rfft-layout (kz, ky, kx) in cycles/voxel, computed independently."""
    nz, ny, nx = shape
    kz, ky, kx = np.meshgrid(
        np.fft.fftfreq(nz),
        np.fft.fftfreq(ny),
        np.arange(nx // 2 + 1) / nx,
        indexing="ij",
    )
    return kz, ky, kx


def plane_tilt_deg(kz: np.ndarray, kx: np.ndarray) -> np.ndarray:
    """Tilt whose plane contains (kx, kz), in (-90, 90]; 90 on the kz axis."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            kx == 0, 90.0, np.degrees(np.arctan(kz / np.where(kx == 0, 1, kx)))
        )


def index_distance_lstsq(
    shape: tuple[int, int, int],
    tilt_deg: float,
    kz: np.ndarray,
    ky: np.ndarray,
    kx: np.ndarray,
) -> np.ndarray:
    """Distance (index units) of each voxel to the tilt plane, by least squares.

    The plane is spanned, in index coordinates (x, y, z), by e_y and the in-plane
    direction (cos a * nx, 0, sin a * nz) (a physical direction scaled to indices).
    """
    nz, ny, nx = shape
    a = math.radians(tilt_deg)
    basis = np.array([[0.0, 1.0, 0.0], [math.cos(a) * nx, 0.0, math.sin(a) * nz]]).T
    pts = np.stack([kx.ravel() * nx, ky.ravel() * ny, kz.ravel() * nz])
    coef, *_ = np.linalg.lstsq(basis, pts, rcond=None)
    resid = pts - basis @ coef
    return np.sqrt((resid**2).sum(axis=0)).reshape(kz.shape)


@pytest.mark.parametrize(
    ("shape", "lo", "hi"),
    [((48, 48, 48), -60.0, 60.0), ((24, 40, 32), -45.0, 55.0), ((33, 20, 27), -30, 60)],
)
def test_binary_wedge_membership_matches_angle_oracle(
    shape: tuple[int, int, int], lo: float, hi: float
) -> None:
    w = binary_wedge(shape, lo, hi)
    kz, ky, kx = grids(shape)
    assert w.shape == kz.shape and w.dtype == np.float32
    alpha = plane_tilt_deg(kz, kx)
    rho = np.hypot(kz * shape[0], kx * shape[2])
    inside_nyq = kz**2 + ky**2 + kx**2 <= 0.25
    far = (np.minimum(np.abs(alpha - lo), np.abs(alpha - hi)) > 12) & (rho >= 6)
    inside = (alpha >= lo) & (alpha <= hi)
    sel = far & inside_nyq
    assert sel.sum() > 1000
    np.testing.assert_array_equal(w[sel & inside], 1.0)
    np.testing.assert_array_equal(w[sel & ~inside], 0.0)
    assert np.all(w[~inside_nyq] == 0.0)
    assert np.all((w >= 0) & (w <= 1))


def test_binary_wedge_sign_convention_for_an_asymmetric_range() -> None:
    n = 32
    w = binary_wedge((n, n, n), -30.0, 60.0)
    # (kx, kz) = (+8, +8) voxels: plane of tilt +45 -> sampled
    assert w[8, 0, 8] == 1.0
    # (kx, kz) = (+8, -8): plane of tilt -45 -> missing
    assert w[n - 8, 0, 8] == 0.0
    # mirrored range flips it
    m = binary_wedge((n, n, n), -60.0, 30.0)
    assert m[8, 0, 8] == 0.0 and m[n - 8, 0, 8] == 1.0


def test_binary_wedge_edge_falls_linearly_over_one_voxel() -> None:
    n = 64
    shape = (n, n, n)
    w = binary_wedge(shape, -60.0, 0.0)
    kz, ky, kx = grids(shape)
    d = index_distance_lstsq(shape, 0.0, kz[:, :1, :], ky[:, :1, :], kx[:, :1, :])[
        :, 0, :
    ]
    # voxels with kz > 0 and kx > 0 are outside (tilt > 0), at distance d from plane 0
    sel = (
        (kz[:, 0, :] > 0)
        & (kx[:, 0, :] > 0)
        & (kz[:, 0, :] ** 2 + kx[:, 0, :] ** 2 < 0.2)
    )
    np.testing.assert_allclose(w[:, 0, :][sel], np.clip(1 - d[sel], 0, 1), atol=1e-6)
    assert w[1, 0, 5] == 0.0  # one voxel above the boundary plane
    assert w[0, 0, 5] == 1.0  # on it
    # a 45 degree boundary gives fractional distances
    w45 = binary_wedge(shape, -45.0, 45.0)
    # (x, z) = (10, 11): distance (11 - 10) / sqrt(2) outside the +45 plane
    assert w45[11, 0, 10] == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)


def test_binary_wedge_full_range_and_bad_input() -> None:
    w = binary_wedge((16, 16, 16), -90.0, 90.0)
    kz, ky, kx = grids((16, 16, 16))
    np.testing.assert_array_equal(w, (kz**2 + ky**2 + kx**2 <= 0.25).astype(np.float32))
    with pytest.raises(ConfigError, match="minimum is larger"):
        binary_wedge((8, 8, 8), 30.0, -30.0)
    with pytest.raises(ConfigError, match=r"\[-90, 90\]"):
        binary_wedge((8, 8, 8), -95.0, 30.0)


def test_binary_wedge_full_layout_is_hermitian() -> None:
    full = binary_wedge((20, 18, 16), -50.0, 65.0, rfft=False)
    np.testing.assert_array_equal(full, np.roll(full[::-1, ::-1, ::-1], 1, (0, 1, 2)))
    np.testing.assert_array_equal(
        full[:, :, :9], binary_wedge((20, 18, 16), -50.0, 65.0)
    )


def meta(tilts: np.ndarray | list[float], **kw: object) -> TiltSeriesMetadata:
    return TiltSeriesMetadata(tilt_angles_deg=tuple(float(t) for t in tilts), **kw)  # type: ignore[arg-type]


def test_single_zero_tilt_gives_the_z0_plane() -> None:
    shape = (32, 24, 40)
    w = tilt_weighted_wedge(shape, 4.0, meta([0.0]))
    kz, ky, kx = grids(shape)
    expected = ((kz == 0) & (kz**2 + ky**2 + kx**2 <= 0.25)).astype(np.float32)
    np.testing.assert_array_equal(w, expected)


@pytest.mark.parametrize(
    ("shape", "tilt"), [((32, 32, 32), 30.0), ((24, 30, 40), -52.0)]
)
def test_single_tilt_is_a_one_voxel_triangle_around_its_plane(
    shape: tuple[int, int, int], tilt: float
) -> None:
    w = tilt_weighted_wedge(shape, 3.0, meta([tilt]))
    kz, ky, kx = grids(shape)
    d = index_distance_lstsq(shape, tilt, kz, ky, kx)
    expected = math.cos(math.radians(tilt)) * np.clip(1 - d, 0, 1)
    expected[kz**2 + ky**2 + kx**2 > 0.25] = 0
    np.testing.assert_allclose(w, expected, atol=2e-6)


def test_symmetric_tilts_give_a_mirror_symmetric_weight() -> None:
    tilts = np.arange(-60, 61, 3.0)
    dose = np.abs(tilts)  # dose-symmetric scheme: dose grows with abs(tilt)
    m = meta(
        tilts,
        dose_e_per_a2=tuple(dose),
        defocus_um=(3.0,) * tilts.size,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
    )
    w = tilt_weighted_wedge((40, 36, 40), 5.0, m)
    mirror_z = np.roll(w[::-1], 1, axis=0)  # kz -> -kz
    np.testing.assert_allclose(w, mirror_z, atol=1e-5)
    mirror_y = np.roll(w[:, ::-1], 1, axis=1)  # ky -> -ky
    np.testing.assert_allclose(w, mirror_y, atol=1e-5)


def test_missing_wedge_is_empty_and_covered_region_is_flat() -> None:
    n = 64
    tilts = np.arange(-50, 51, 2.0)
    w = tilt_weighted_wedge((n, n, n), 4.0, meta(tilts))
    kz, ky, kx = grids((n, n, n))
    alpha = plane_tilt_deg(kz, kx)
    rho = np.hypot(kz * n, kx * n)
    nyq = kz**2 + ky**2 + kx**2 <= 0.2
    missing = (np.abs(alpha) > 50 + 8) & (rho >= 8)
    assert np.all(w[missing] == 0.0)
    # inside, away from the edges: the overlap ramp makes the sum ~ cos(alpha)
    covered = (np.abs(alpha) < 42) & (rho >= 3) & nyq
    ratio = w[covered] / np.cos(np.radians(alpha[covered]))
    assert 0.85 < ratio.mean() < 1.15
    assert np.percentile(ratio, 1) > 0.6 and np.percentile(ratio, 99) < 1.4
    # without the ramp, overlapping planes pile up near the tilt axis
    raw = tilt_weighted_wedge((n, n, n), 4.0, meta(tilts), overlap_ramp=False)
    near_axis = covered & (rho < 6)
    assert raw[near_axis].mean() > 3 * w[near_axis].mean()


def test_dose_forms_agree_and_dose_lowers_high_frequencies() -> None:
    k = np.linspace(0, 0.25, 101)
    for dose in (0.0, 3.0, 40.0, 120.0):
        sigma2 = 4 * dose / (8 * math.pi**2)
        pytom_form = np.exp(-2 * math.pi**2 * sigma2 * k**2)
        np.testing.assert_allclose(dose_filter(k, dose), pytom_form, rtol=1e-12)
    shape = (32, 32, 32)
    vs = 4.0
    clean = tilt_weighted_wedge(shape, vs, meta([0.0]))
    dosed = tilt_weighted_wedge(shape, vs, meta([0.0], dose_e_per_a2=(60.0,)))
    kz, ky, kx = grids(shape)
    plane = (kz == 0) & (kz**2 + ky**2 + kx**2 <= 0.25)
    k_a = np.sqrt(ky**2 + kx**2)[plane] / vs
    np.testing.assert_allclose(
        dosed[plane], clean[plane] * np.exp(-60.0 * k_a**2), rtol=1e-5
    )
    # the highest in-plane frequencies lose much more than the lowest
    assert (
        dosed[0, 0, 16] / clean[0, 0, 16] < 0.5 < 0.95 < dosed[0, 0, 1] / clean[0, 0, 1]
    )


def ctf_meta(tilts: list[float], defocus: float, **kw: object) -> TiltSeriesMetadata:
    return meta(
        tilts,
        defocus_um=(defocus,) * len(tilts),
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
        **kw,
    )


def test_ctf_on_the_plane_equals_ctf_1d_and_zeros_fall_where_it_has_zeros() -> None:
    n, vs = 96, 2.0
    w = tilt_weighted_wedge((n, n, n), vs, ctf_meta([0.0], 3.0))
    ky = np.fft.fftfreq(n)[:, None]
    kx = (np.arange(n // 2 + 1) / n)[None, :]
    k_a = np.sqrt(ky**2 + kx**2) / vs
    expected = ctf_1d(
        k_a,
        defocus_um=3.0,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
        match_contrast=True,
    )
    expected[k_a * vs > 0.5] = 0
    np.testing.assert_allclose(w[0], expected, atol=2e-5)
    # along kx the weight changes sign exactly across the analytic CTF zeros
    # (only up to 0.075/Å, where zeros are more than two samples apart)
    k_line = np.arange(n // 2) / n / vs
    k_line = k_line[k_line < 0.075]
    line = w[0, 0, : k_line.size]
    lam = 0.019687489  # Å at 300 kV
    zeros = []
    for m in range(1, 30):
        u = np.roots(
            [
                -0.5 * math.pi * 2.7e7 * lam**3,
                math.pi * lam * 3e4,
                math.atan(0.07 / math.sqrt(1 - 0.07**2)) - m * math.pi,
            ]
        )
        zeros += [math.sqrt(r.real) for r in u if abs(r.imag) < 1e-12 and r.real > 0]
    zeros_in = sorted(z for z in zeros if z < k_line[-1])
    flips = [
        i for i in range(len(line) - 1) if np.sign(line[i]) != np.sign(line[i + 1])
    ]
    assert len(flips) == len(zeros_in) >= 3
    for i, z in zip(flips, zeros_in, strict=True):
        assert k_line[i] <= z <= k_line[i + 1]
    flipped = tilt_weighted_wedge(
        (n, n, n), vs, ctf_meta([0.0], 3.0), ctf_model="phase-flip"
    )
    np.testing.assert_allclose(flipped, np.abs(w), atol=1e-6)


def test_per_tilt_defocus_is_used_for_each_plane() -> None:
    n, vs = 48, 3.0
    m = meta(
        [-40.0, 40.0],
        defocus_um=(2.0, 6.0),
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
    )
    w = tilt_weighted_wedge((n, n, n), vs, m)
    # (x, z) = (10, 10 tan 40) is on the +40 plane only if integral; use the ky axis
    # direction inside each plane: (x, z) = (r cos a, r sin a) at r = 15 voxels
    for a, df in ((-40.0, 2.0), (40.0, 6.0)):
        x = 15 * math.cos(math.radians(a))
        z = 15 * math.sin(math.radians(a))
        ix, iz = round(x), round(z) % n
        single = tilt_weighted_wedge(
            (n, n, n),
            vs,
            meta(
                [a],
                defocus_um=(df,),
                voltage_kv=300.0,
                spherical_aberration_mm=2.7,
                amplitude_contrast=0.07,
            ),
        )
        assert w[iz, 0, ix] == pytest.approx(single[iz, 0, ix], abs=1e-6)
        assert single[iz, 0, ix] != 0.0


def test_tilt_weighted_wedge_rejects_unknown_ctf_model() -> None:
    with pytest.raises(ConfigError, match="phase-flip"):
        tilt_weighted_wedge((8, 8, 8), 1.0, meta([0.0]), ctf_model="wiener")


def test_fanned_and_binary_wedges_agree_on_an_asymmetric_range() -> None:
    n = 48
    tilts = np.arange(-30, 61, 2.0)
    fan = tilt_weighted_wedge((n, n, n), 4.0, meta(tilts))
    binary = binary_wedge((n, n, n), -30.0, 60.0)
    kz, ky, kx = grids((n, n, n))
    alpha = plane_tilt_deg(kz, kx)
    far = (np.minimum(np.abs(alpha + 30), np.abs(alpha - 60)) > 10) & (
        np.hypot(kz * n, kx * n) >= 6
    )
    far &= kz**2 + ky**2 + kx**2 <= 0.25
    np.testing.assert_array_equal(fan[far] > 0, binary[far] == 1.0)
    assert (binary[far] == 0).sum() > 1000 and (binary[far] == 1).sum() > 1000


def test_fanned_wedge_full_layout_and_irregular_spacing() -> None:
    shape = (20, 18, 16)
    m = meta(np.arange(-45, 46, 5.0), dose_e_per_a2=tuple(range(19)))
    full = tilt_weighted_wedge(shape, 3.0, m, rfft=False)
    half = tilt_weighted_wedge(shape, 3.0, m)
    np.testing.assert_allclose(full[:, :, :9], half, atol=1e-6)
    np.testing.assert_allclose(
        full, np.roll(full[::-1, ::-1, ::-1], 1, (0, 1, 2)), atol=1e-6
    )
    # a nearly duplicated refined angle must not collapse the overlap ramp
    tilts = [*np.arange(-45, 46, 5.0), 0.01]
    dup = tilt_weighted_wedge(shape, 3.0, meta(tilts))
    ref = tilt_weighted_wedge(shape, 3.0, meta(np.arange(-45, 46, 5.0)))
    assert dup.sum() > 0.9 * ref.sum()
