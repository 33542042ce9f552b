"""Masks: sphere and ellipsoid volumes, soft edges, masks shaped like a template."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tmfast.errors import ConfigError
from tmfast.templates.masks import (
    ellipsoid_mask,
    mask_from_template,
    soften_mask,
    sphere_mask,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
POLNET_4V4R = REAL / "polnet" / "mrcs_10A" / "4v4r.mrc"


@pytest.mark.parametrize("radius", [8.0, 12.5, 20.0])
def test_hard_sphere_volume_is_four_thirds_pi_r_cubed(radius: float) -> None:
    m = sphere_mask(48, radius)
    assert set(np.unique(m)) == {0.0, 1.0}
    assert m.sum() == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.02)


def test_hard_ellipsoid_volume_and_centre_convention() -> None:
    radii = (6.0, 10.0, 14.0)  # z, y, x
    m = ellipsoid_mask(41, radii)
    assert m.sum() == pytest.approx(4 / 3 * math.pi * np.prod(radii), rel=0.02)
    for n in (32, 33):  # centre at n // 2 for odd and even boxes
        s = sphere_mask(n, 5.0)
        zz, yy, xx = np.nonzero(s)
        assert (zz.mean(), yy.mean(), xx.mean()) == pytest.approx((n // 2,) * 3)
    # Extent along each axis equals 2 r + 1 voxels.
    zz, yy, xx = np.nonzero(m)
    assert [np.ptp(a) for a in (zz, yy, xx)] == [12, 20, 28]


def test_soft_edge_is_gaussian_monotone_and_truncated() -> None:
    r, sigma = 10.0, 2.0
    m = sphere_mask(48, r, sigma_px=sigma)
    c = 24
    profile = m[c, c, c:]  # along +x, distance 0..23
    d = np.arange(profile.size) - r
    assert np.all(profile[d <= 0] == 1.0)
    band = (d > 0) & (d <= 3 * sigma)
    assert np.allclose(profile[band], np.exp(-0.5 * (d[band] / sigma) ** 2), atol=1e-6)
    assert np.all(profile[d > 3 * sigma] == 0.0)
    assert np.all(np.diff(profile) <= 0)
    # Monotone along every radial direction: value never increases with distance.
    g = np.arange(48) - c
    dist = np.sqrt(
        g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2
    )
    order = np.argsort(dist.ravel(), kind="stable")
    vals = m.ravel()[order]
    assert np.all(np.diff(vals) <= 1e-6)


def test_soften_mask_uses_exact_distance() -> None:
    b = np.zeros((20, 20, 20), dtype=bool)
    b[10, 10, 10] = True
    s = soften_mask(b, 1.5)
    assert s[10, 10, 10] == 1.0
    assert s[10, 10, 12] == pytest.approx(math.exp(-0.5 * (2 / 1.5) ** 2), rel=1e-6)
    assert s[11, 11, 11] == pytest.approx(math.exp(-0.5 * 3 / 1.5**2), rel=1e-6)


def _blob_template(n: int = 32) -> np.ndarray:
    g = np.arange(n) - n // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    t = np.exp(-((x - 3) ** 2 + y**2 + (z + 2) ** 2) / 18.0)
    t += 0.7 * np.exp(-((x + 5) ** 2 + (y - 4) ** 2 + z**2) / 10.0)
    return t.astype(np.float32)


def test_mask_from_template_covers_support_and_handles_inversion() -> None:
    t = _blob_template()
    m = mask_from_template(t, threshold_fraction=0.1, dilation_px=2, sigma_px=2.0)
    support = (t - np.median(t)) > 0.1 * (t - np.median(t)).max()
    assert np.all(m[support] == 1.0)
    assert 0 < m.mean() < 0.5 and m.min() == 0.0
    # Dilation by 2 voxels: every voxel within 2 of the support is 1.
    from scipy.ndimage import distance_transform_edt

    near = distance_transform_edt(~support) <= 2
    assert np.all(m[near] == 1.0)
    assert np.array_equal(mask_from_template(-t), mask_from_template(t))
    with pytest.raises(ConfigError, match="constant"):
        mask_from_template(np.zeros((8, 8, 8)))
    with pytest.raises(ConfigError, match="lower --threshold"):
        mask_from_template(t, threshold=10.0)


@pytest.mark.skipif(not POLNET_4V4R.is_file(), reason="shared/data/real/polnet absent")
def test_mask_from_real_ribosome_template() -> None:
    from tmfast.io.mrc import read_volume

    t, _ = read_volume(POLNET_4V4R)
    m = mask_from_template(t, dilation_px=1, sigma_px=1.5)
    dens = t - np.median(t)
    assert np.all(m[dens > 0.1 * dens.max()] == 1.0)
    # Most of the template's density lies inside the mask, and the mask is compact.
    assert (dens.clip(0) * m).sum() > 0.99 * dens.clip(0).sum()
    assert 0.02 < float((m > 0.5).mean()) < 0.5


def test_bad_mask_parameters() -> None:
    with pytest.raises(ConfigError, match="box size"):
        sphere_mask(0, 3.0)
    with pytest.raises(ConfigError, match="radii"):
        sphere_mask(16, -1.0)
    with pytest.raises(ConfigError, match="sigma"):
        sphere_mask(16, 3.0, sigma_px=-1.0)
