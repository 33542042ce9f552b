"""Gaussian band-pass: the 0.5 point sits at the requested resolution (pytom's rule)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tmfast.errors import ConfigError
from tmfast.filters.bandpass import bandpass


def pytom_rule_lowpass(q_cpv: np.ndarray, voxel_a: float, res_a: float) -> np.ndarray:
    """pytom-match-pick's statement: HWHM = 2 * voxel / res in Nyquist units."""
    q_nyq = q_cpv / 0.5
    sigma = (2 * voxel_a / res_a) / math.sqrt(2 * math.log(2))
    return np.exp(-(q_nyq**2) / (2 * sigma**2))


def test_lowpass_is_half_at_resolution_on_every_axis_of_a_noncubic_box() -> None:
    # 2 Å voxels, 16 Å resolution -> 0.125 cycles/voxel: index 4 of 32, 6 of 48, 8 of 64
    w = bandpass((32, 48, 64), 2.0, low_pass_a=16.0)
    assert w.shape == (32, 48, 33) and w.dtype == np.float32
    assert w[4, 0, 0] == pytest.approx(0.5, abs=1e-6)
    assert w[0, 6, 0] == pytest.approx(0.5, abs=1e-6)
    assert w[0, 0, 8] == pytest.approx(0.5, abs=1e-6)
    assert w[0, 0, 0] == 1.0
    assert w[0, 0, 9] < 0.5 < w[0, 0, 7]


def test_lowpass_matches_pytom_rule_voxel_by_voxel() -> None:
    shape = (20, 24, 30)
    w = bandpass(shape, 3.5, low_pass_a=25.0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        iz, iy, ix = (int(rng.integers(0, s)) for s in (20, 24, 16))
        q = math.sqrt(
            (np.fft.fftfreq(20)[iz]) ** 2
            + (np.fft.fftfreq(24)[iy]) ** 2
            + (ix / 30) ** 2
        )
        expected = pytom_rule_lowpass(np.array(q), 3.5, 25.0)
        assert w[iz, iy, ix] == pytest.approx(float(expected), rel=1e-5)


def test_highpass_is_one_minus_gaussian_and_bandpass_is_product() -> None:
    shape = (64, 64, 64)
    hp = bandpass(shape, 2.0, high_pass_a=64.0)  # 0.5 at 2/64 -> index 2
    assert hp[0, 0, 0] == 0.0
    assert hp[0, 0, 2] == pytest.approx(0.5, abs=1e-6)
    assert hp[0, 0, 32] > 0.999
    lp = bandpass(shape, 2.0, low_pass_a=16.0)
    bp = bandpass(shape, 2.0, low_pass_a=16.0, high_pass_a=64.0)
    np.testing.assert_allclose(bp, lp * hp, rtol=1e-6, atol=1e-7)


def test_no_resolution_gives_ones_and_full_layout_agrees_with_rfft_half() -> None:
    assert np.all(bandpass((8, 10, 12), 1.0) == 1.0)
    full = bandpass((16, 16, 16), 2.0, low_pass_a=10.0, rfft=False)
    half = bandpass((16, 16, 16), 2.0, low_pass_a=10.0)
    assert full.shape == (16, 16, 16)
    np.testing.assert_array_equal(full[:, :, :9], half)
    # full grid is Hermitian-symmetric: w(-k) == w(k)
    np.testing.assert_array_equal(full, np.roll(full[::-1, ::-1, ::-1], 1, (0, 1, 2)))


def test_lowpass_attenuates_noise_power_as_predicted() -> None:
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((32, 32, 32)).astype(np.float32)
    w = bandpass(noise.shape, 1.0, low_pass_a=4.0)
    out = np.fft.irfftn(np.fft.rfftn(noise) * w, s=noise.shape, axes=(0, 1, 2))
    # Parseval: output variance = mean of |w|^2 over the full grid (white input)
    full = bandpass(noise.shape, 1.0, low_pass_a=4.0, rfft=False)
    assert out.var() == pytest.approx(float(np.mean(full**2)), rel=0.05)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"low_pass_a": -5.0}, "low-pass"),
        ({"high_pass_a": 0.0}, "high-pass"),
        ({"low_pass_a": 40.0, "high_pass_a": 20.0}, "coarser"),
    ],
)
def test_bad_resolutions_raise_config_error(kwargs: dict[str, float], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        bandpass((8, 8, 8), 2.0, **kwargs)


def test_bad_voxel_size_and_shape_raise() -> None:
    with pytest.raises(ConfigError, match="voxel size"):
        bandpass((8, 8, 8), 0.0, low_pass_a=10.0)
    with pytest.raises(ConfigError, match="shape"):
        bandpass((8, 8), 1.0)
