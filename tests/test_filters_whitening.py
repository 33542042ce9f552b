"""Spectral whitening: estimated on synthetic coloured noise, it flattens the PSD."""

from __future__ import annotations

import numpy as np
import pytest
from tmfast.errors import ConfigError
from tmfast.filters.wedge import binary_wedge
from tmfast.filters.whitening import (
    estimate_whitening_profile,
    profile_radii_nyquist,
    profile_to_weight,
)

SHAPE = (64, 64, 64)


def amplitude(k_cpv: np.ndarray) -> np.ndarray:
    """Known noise colour: amplitude falls ~20x from DC to Nyquist."""
    return np.exp(-k_cpv / 0.1) + 0.05


def k_grid(shape: tuple[int, int, int]) -> np.ndarray:
    kz, ky, kx = np.meshgrid(
        np.fft.fftfreq(shape[0]),
        np.fft.fftfreq(shape[1]),
        np.fft.rfftfreq(shape[2]),
        indexing="ij",
    )
    return np.sqrt(kz**2 + ky**2 + kx**2)


def coloured_noise(seed: int, spectrum: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(SHAPE)
    filt = amplitude(k_grid(SHAPE)) if spectrum is None else spectrum
    return np.fft.irfftn(np.fft.rfftn(white) * filt, s=SHAPE, axes=(0, 1, 2)).astype(
        np.float32
    )


def shell_psd(vol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean power per integer shell of a 64^3 volume, radii in Nyquist units."""
    p = np.abs(np.fft.rfftn(vol)) ** 2
    shells = np.rint(k_grid(vol.shape) * vol.shape[0]).astype(int)
    n = vol.shape[0] // 2 + 1
    keep = shells < n
    tot = np.bincount(shells[keep], weights=p[keep], minlength=n)
    cnt = np.bincount(shells[keep], minlength=n)
    return np.arange(n) / (n - 1), tot / np.maximum(cnt, 1)


def flatness(vol: np.ndarray) -> float:
    """Coefficient of variation of the shell PSD between 0.15 and 0.85 Nyquist."""
    r, psd = shell_psd(vol)
    band = psd[(r >= 0.15) & (r <= 0.85)]
    return float(band.std() / band.mean())


def product_cv(profile: np.ndarray) -> float:
    """CV of profile * amplitude over 0.15-0.85 Nyquist (0 for a perfect whitener)."""
    r = profile_radii_nyquist(profile.size)
    band = (r >= 0.15) & (r <= 0.85)
    prod = profile[band] * amplitude(r[band] * 0.5)
    return float(prod.std() / prod.mean())


def test_profile_is_inverse_amplitude_and_has_the_documented_shape() -> None:
    prof = estimate_whitening_profile(coloured_noise(0), patch_size=32)
    assert prof.shape == (17,) and prof.dtype == np.float32
    assert prof[0] == 0.0 and prof.max() == pytest.approx(1.0)
    assert prof[-1] == 0.0  # cosine taper reaches 0 at Nyquist
    assert product_cv(prof) < 0.08


def test_whitening_flattens_the_power_spectrum_of_fresh_noise() -> None:
    prof = estimate_whitening_profile(coloured_noise(1), patch_size=32)
    test_vol = coloured_noise(2)
    w = profile_to_weight(prof, SHAPE)
    whitened = np.fft.irfftn(np.fft.rfftn(test_vol) * w, s=SHAPE, axes=(0, 1, 2))
    before, after = flatness(test_vol), flatness(whitened)
    assert before > 1.0
    assert after < 0.1
    assert after < before / 15


def test_coverage_restricts_the_average_to_sampled_voxels() -> None:
    wedge = binary_wedge(SHAPE, -50.0, 50.0)
    spectrum = amplitude(k_grid(SHAPE)) * wedge + 0.5 * (1.0 - wedge)
    vol = coloured_noise(3, spectrum)
    cov = binary_wedge((32, 32, 32), -50.0, 50.0)
    with_cov = estimate_whitening_profile(vol, patch_size=32, coverage_weight=cov)
    without = estimate_whitening_profile(vol, patch_size=32)
    assert product_cv(with_cov) < 0.15
    assert product_cv(without) > 2 * product_cv(with_cov)


def test_high_variance_patches_are_rejected() -> None:
    clean = coloured_noise(4)
    gold = clean.copy()
    zz, yy, xx = np.mgrid[:64, :64, :64]
    for c in ((12, 20, 40), (40, 50, 10), (52, 12, 30)):
        gold[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 9] += 40.0
    ref = estimate_whitening_profile(clean, patch_size=16)
    kept = estimate_whitening_profile(gold, patch_size=16)
    raw = estimate_whitening_profile(gold, patch_size=16, reject_fraction=0.0)
    err_kept = np.abs(kept - ref).max()
    err_raw = np.abs(raw - ref).max()
    assert err_kept < 0.1
    assert err_raw > 3 * err_kept


def test_mean_and_median_agree_on_white_noise() -> None:
    vol = np.random.default_rng(5).standard_normal(SHAPE).astype(np.float32)
    med = estimate_whitening_profile(vol, patch_size=32)
    mean = estimate_whitening_profile(vol, patch_size=32, statistic="mean")
    r = profile_radii_nyquist(17)
    band = (r > 0) & (r < 0.9)
    # white noise: flat profile (median bias-corrected to the mean)
    np.testing.assert_allclose(med[band], 1.0, atol=0.12)
    np.testing.assert_allclose(mean[band], med[band], atol=0.12)


def test_profile_to_weight_interpolates_linearly_on_physical_radius() -> None:
    prof = np.linspace(0.0, 1.6, 17)  # value = 1.6 * r_nyquist
    w = profile_to_weight(prof, (32, 32, 32))
    assert w.shape == (32, 32, 17) and w.dtype == np.float32
    np.testing.assert_allclose(w[0, 0, :], prof, atol=1e-6)  # samples on the x axis
    # non-cubic: 0.25 cycles/voxel is x index 10 of 40, y index 8 of 32, z index 5 of 20
    wn = profile_to_weight(prof, (20, 32, 40))
    for idx in ((0, 0, 10), (0, 8, 0), (5, 0, 0)):
        assert wn[idx] == pytest.approx(0.8, abs=1e-6)
    # off-grid radius: linear interpolation, and 0 beyond Nyquist (corner voxel)
    assert wn[3, 5, 7] == pytest.approx(
        1.6 * np.sqrt((3 / 20) ** 2 + (5 / 32) ** 2 + (7 / 40) ** 2) / 0.5, abs=1e-5
    )
    assert wn[10, 16, 20] == 0.0


def test_bad_whitening_input_raises() -> None:
    vol = np.zeros((16, 16, 16), np.float32)
    with pytest.raises(ConfigError, match="patch size"):
        estimate_whitening_profile(vol, patch_size=32)
    with pytest.raises(ConfigError, match="rfft shape"):
        estimate_whitening_profile(
            vol, patch_size=8, coverage_weight=np.ones((8, 8, 8))
        )
    with pytest.raises(ConfigError, match="NaN"):
        estimate_whitening_profile(np.full((16, 16, 16), np.nan), patch_size=8)
    with pytest.raises(ConfigError, match="1D"):
        profile_to_weight(np.ones((2, 2)), (8, 8, 8))


def test_no_rejection_with_fewer_than_ten_patches() -> None:
    vol = coloured_noise(6)[:16, :32, :32].copy()  # 1 x 3 x 3 = 9 patches of 16^3
    vol[8, 16, 16] += 100.0  # one very bright voxel: its patches would be dropped
    a = estimate_whitening_profile(vol, patch_size=16)
    b = estimate_whitening_profile(vol, patch_size=16, reject_fraction=0.0)
    np.testing.assert_array_equal(a, b)
    big = coloured_noise(6)[:24, :32, :32].copy()  # 2 x 3 x 3 = 18 patches
    big[8, 16, 16] += 100.0
    c = estimate_whitening_profile(big, patch_size=16)
    d = estimate_whitening_profile(big, patch_size=16, reject_fraction=0.0)
    assert np.abs(c - d).max() > 1e-3
