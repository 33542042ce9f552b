"""Lamella masks: synthetic tilted slabs with known planes, real tomogram crops."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
from tmfast.errors import ConfigError
from tmfast.templates.slab import SlabFit, fill_slab, fit_slab, slab_mask

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CYLINDRA = REAL / "cylindra"


def synthetic_slab(
    shape: tuple[int, int, int] = (64, 128, 128),
    *,
    tilt_deg: float = 8.0,
    azimuth_deg: float = 30.0,
    thickness_px: float = 30.0,
    z_center: float | None = None,
    mean_offset: float = 0.3,
    seed: int = 1,
) -> tuple[np.ndarray, np.ndarray, float, tuple[float, float, float]]:
    """Noise everywhere plus textured, brighter density between two parallel planes.

    Returns the volume, the planes' unit normal (x, y, z), the perpendicular
    thickness and the top plane as (a, b, c) with z = a x + b y + c.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    t, p = math.radians(tilt_deg), math.radians(azimuth_deg)
    n = np.array([math.sin(t) * math.cos(p), math.sin(t) * math.sin(p), math.cos(t)])
    zc = (nz - 1) / 2 if z_center is None else z_center
    c = np.array([(nx - 1) / 2, (ny - 1) / 2, zc])
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    dist = (x - c[0]) * n[0] + (y - c[1]) * n[1] + (z - c[2]) * n[2]
    inside = np.abs(dist) <= thickness_px / 2
    texture = scipy.ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    texture /= texture.std()
    vol = rng.standard_normal(shape) + inside * (texture + mean_offset)
    a, b = -n[0] / n[2], -n[1] / n[2]
    top = (a, b, c[2] + thickness_px / 2 / n[2] - a * c[0] - b * c[1])
    return vol.astype(np.float32), n, thickness_px, top


def _angle_deg(abc: tuple[float, float, float], normal: np.ndarray) -> float:
    m = np.array([-abc[0], -abc[1], 1.0])
    m /= np.linalg.norm(m)
    return math.degrees(math.acos(min(1.0, abs(float(m @ normal)))))


@pytest.mark.parametrize(
    ("tilt", "azimuth", "thickness", "z_center", "seed"),
    [
        (8.0, 30.0, 30.0, None, 1),
        (4.0, 200.0, 24.0, 28.0, 2),
        (0.0, 0.0, 36.0, 33.0, 3),
    ],
)
def test_synthetic_tilted_slab_planes_and_thickness(
    tilt: float, azimuth: float, thickness: float, z_center: float | None, seed: int
) -> None:
    vol, normal, thick, top = synthetic_slab(
        tilt_deg=tilt,
        azimuth_deg=azimuth,
        thickness_px=thickness,
        z_center=z_center,
        seed=seed,
    )
    t0 = time.perf_counter()
    mask, fit = slab_mask(vol)
    print(f"synthetic slab {vol.shape}: {time.perf_counter() - t0:.2f} s")
    assert fit.top_observed and fit.bottom_observed
    assert _angle_deg(fit.top_abc, normal) < 2.0
    assert _angle_deg(fit.bottom_abc, normal) < 2.0
    assert fit.thickness_px == pytest.approx(thick, rel=0.05)
    assert SlabFit.tilt_deg(fit.top_abc) == pytest.approx(tilt, abs=2.0)
    x, y = fit.center_xy
    assert fit.z_at(fit.top_abc, x, y) == pytest.approx(fit.z_at(top, x, y), abs=1.5)
    # The mask is exactly the filled region between the fitted planes.
    assert mask.dtype == np.int8 and set(np.unique(mask)) <= {0, 1}
    assert np.array_equal(mask, fill_slab(fit))
    expected_fraction = thick / normal[2] / vol.shape[0]
    assert mask.mean() == pytest.approx(expected_fraction, rel=0.06)


def test_margin_widens_the_mask_by_whole_voxels() -> None:
    vol, *_ = synthetic_slab(tilt_deg=0.0, z_center=31.5, thickness_px=30.0)
    m0, _ = slab_mask(vol)
    m3, _ = slab_mask(vol, margin_px=3.0)
    cols = vol.shape[1] * vol.shape[2]
    assert (m3.sum() - m0.sum()) / cols == pytest.approx(6.0, abs=0.5)
    assert np.all(m3 >= m0)
    with pytest.raises(ConfigError, match="margin"):
        slab_mask(vol, margin_px=-40.0)


def test_volume_without_boundaries_gives_full_mask() -> None:
    rng = np.random.default_rng(0)
    vol = scipy.ndimage.gaussian_filter(rng.standard_normal((32, 64, 64)), 1.0)
    mask, fit = slab_mask(vol.astype(np.float32))
    assert not fit.top_observed and not fit.bottom_observed
    assert mask.all()


def test_bad_tomograms() -> None:
    with pytest.raises(ConfigError, match="constant"):
        fit_slab(np.zeros((32, 32, 32), dtype=np.float32))
    with pytest.raises(ConfigError, match="3D"):
        fit_slab(np.zeros((32, 32), dtype=np.float32))
    with pytest.raises(ConfigError, match="z sections"):
        fit_slab(np.ones((3, 32, 32), dtype=np.float32))


def _read_tif_stack(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im, dtype=np.float32))
    return np.stack(frames)


@pytest.mark.skipif(not CYLINDRA.is_dir(), reason="shared/data/real/cylindra absent")
@pytest.mark.parametrize("name", ["13pf_MT.tif", "14pf_MT.tif"])
def test_real_tomogram_crops(name: str) -> None:
    """Real crops (36 or 44 z sections, bin4 SIRT) lie wholly inside the lamella:
    no boundary is fitted and the mask covers everything. Padded above and below
    with noise at half the crop's standard deviation (vacuum), the fitted planes
    sit at the crop's faces: parallel, flat, thickness within 5 %."""
    pytest.importorskip("PIL")
    vol = _read_tif_stack(CYLINDRA / name)
    t0 = time.perf_counter()
    mask, fit = slab_mask(vol)
    elapsed = time.perf_counter() - t0
    print(f"{name} {vol.shape}: {elapsed:.2f} s, {100 * mask.mean():.1f}% masked")
    assert mask.mean() > 0.9
    assert fit.angle_between_planes_deg < 5.0

    rng = np.random.default_rng(0)
    nz, pad = vol.shape[0], 24
    big = rng.standard_normal((nz + 2 * pad, *vol.shape[1:])) * 0.5 * vol.std()
    big = (big + vol.mean()).astype(np.float32)
    big[pad : pad + nz] = vol
    _, fit2 = slab_mask(big)
    assert fit2.top_observed and fit2.bottom_observed
    assert fit2.thickness_px == pytest.approx(nz, rel=0.05)
    assert fit2.angle_between_planes_deg < 2.0
    assert SlabFit.tilt_deg(fit2.top_abc) < 2.0
    assert SlabFit.tilt_deg(fit2.bottom_abc) < 2.0
    x, y = fit2.center_xy
    assert fit2.z_at(fit2.bottom_abc, x, y) == pytest.approx(pad - 0.5, abs=2.0)
    assert fit2.z_at(fit2.top_abc, x, y) == pytest.approx(pad + nz - 0.5, abs=2.0)
