"""Templates from maps: exact Fourier resampling, low-pass, box, flips, bad input."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage
from tmfast.errors import ConfigError
from tmfast.io.mrc import read_volume
from tmfast.templates.maps import (
    center_of_mass_zyx,
    fourier_resample,
    lowpass_weights_rfft,
    template_from_map,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
EMD_8621 = REAL / "pytme" / "emd_8621.mrc.gz"


def _blobs(z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Band-limited (to ~1e-7) analytic density: two Gaussians, sigma 5 and 4.5 Å."""
    r1 = (x - 3.0) ** 2 + (y + 5.0) ** 2 + (z - 2.0) ** 2
    r2 = (x + 4.0) ** 2 + (y - 4.0) ** 2 + (z + 3.0) ** 2
    return np.exp(-r1 / (2 * 5.0**2)) - 0.5 * np.exp(-r2 / (2 * 4.5**2))


def _sample(n: int, voxel_a: float, *, flip_z: bool = False) -> np.ndarray:
    """Sample ``_blobs`` on an n^3 grid with voxel ``n // 2`` at the origin."""
    c = (np.arange(n) - n // 2) * voxel_a
    z, y, x = np.meshgrid(-c if flip_z else c, c, c, indexing="ij")
    return _blobs(z, y, x)


@pytest.mark.parametrize(
    ("n_in", "a_in", "a_out", "box"),
    [
        (80, 1.0, 2.3, 23),  # non-integer ratio, odd output
        (79, 1.0, 2.0, 32),  # odd input, integer ratio, even output
        (80, 1.0, 64 / 30, 30),  # even/even, the classic Fourier-crop case
        (81, 0.9, 2.1, 40),  # odd input, padded output field of view
    ],
)
def test_resample_matches_analytic_function_at_new_voxel(
    n_in: int, a_in: float, a_out: float, box: int
) -> None:
    """A band-limited function sampled at a_in, resampled, equals it at a_out."""
    out = fourier_resample(_sample(n_in, a_in), a_in, a_out, box_size=box)
    ref = _sample(box, a_out)
    assert out.shape == (box,) * 3 and out.dtype == np.float32
    assert np.abs(out - ref).max() < 1e-5 * np.abs(ref).max()


def test_resample_upsampling_needs_permission_and_is_exact() -> None:
    vol = _sample(32, 2.1)
    with pytest.raises(ConfigError, match="allow-upsampling"):
        fourier_resample(vol, 2.1, 0.9)
    out = fourier_resample(vol, 2.1, 0.9, box_size=61, allow_upsampling=True)
    ref = _sample(61, 0.9)
    assert np.abs(out - ref).max() < 1e-5


def test_resample_mirror_flips_z_about_box_centre() -> None:
    out = fourier_resample(_sample(80, 1.0), 1.0, 2.5, box_size=24, mirror=True)
    ref = _sample(24, 2.5, flip_z=True)
    assert np.abs(out - ref).max() < 1e-5


def test_resample_centre_shift_is_subvoxel_exact() -> None:
    """Centring on a fractional input position = sampling the shifted function."""
    vol = _sample(80, 1.0)
    c = (40.0 + 3.25, 40.0 - 1.5, 40.0 + 0.75)
    out = fourier_resample(vol, 1.0, 2.0, box_size=30, center_zyx_px=c)
    g = (np.arange(30) - 15) * 2.0
    z, y, x = np.meshgrid(g + 3.25, g - 1.5, g + 0.75, indexing="ij")
    assert np.abs(out - _blobs(z, y, x)).max() < 1e-5


def test_constant_map_keeps_its_value_and_identity_is_exact() -> None:
    # Values, not sums, are kept: far from the zero padding a constant stays put
    # (the low-pass ringing of the map's edges decays to < 1 % within 20 voxels).
    const = np.full((64, 64, 64), 3.5, dtype=np.float32)
    out = fourier_resample(const, 1.0, 1.7, box_size=12)
    assert np.allclose(out, 3.5, rtol=0.01)
    # Same voxel size, same box: only the Nyquist-edge filter acts, so a compact
    # band-limited object comes back unchanged, odd and even boxes alike.
    for n in (40, 41):
        vol = _sample(n, 2.0)
        out = fourier_resample(vol, 2.0, 2.0)
        assert out.shape == vol.shape
        assert np.abs(out - vol).max() < 1e-5


def test_downsampled_power_spectrum_matches_input() -> None:
    """Downsample a compact random object, band-limited below the output Nyquist,
    2x: its Fourier coefficients equal the input's at the same physical frequencies
    divided by 8 = 2^3 (voxel count), i.e. no aliasing and no interpolation blur,
    and the radially averaged power spectra agree shell by shell."""
    rng = np.random.default_rng(0)
    n, m = 64, 32
    c = np.arange(n) - n // 2
    r2 = c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2
    noise = scipy.ndimage.gaussian_filter(rng.standard_normal((n, n, n)), 5.0)
    vol = noise * np.exp(-r2 / (2 * 7.0**2))
    out = fourier_resample(vol, 1.0, 2.0, box_size=m)
    spec_out = scipy.fft.rfftn(out.astype(np.float64))
    spec_in = scipy.fft.rfftn(vol)
    iz = np.rint(np.fft.fftfreq(m) * m).astype(int) % n  # same physical frequency
    expected = spec_in[np.ix_(iz, iz, np.arange(m // 2 + 1))] / 8.0
    assert np.abs(spec_out - expected).max() < 1e-4 * np.abs(expected).max()
    f = np.sqrt(
        scipy.fft.fftfreq(m, 2.0)[:, None, None] ** 2
        + scipy.fft.fftfreq(m, 2.0)[None, :, None] ** 2
        + scipy.fft.rfftfreq(m, 2.0)[None, None, :] ** 2
    )
    shells = np.minimum((f * m * 2.0).astype(int), m // 2)
    p_out = np.bincount(shells.ravel(), (np.abs(spec_out) ** 2).ravel())
    p_exp = np.bincount(shells.ravel(), (np.abs(expected) ** 2).ravel())
    keep = p_exp > 1e-6 * p_exp.max()
    assert keep.sum() >= 8
    assert np.allclose(p_out[keep], p_exp[keep], rtol=1e-3)


def test_lowpass_weights_shape_and_edge() -> None:
    w = lowpass_weights_rfft((20, 20, 20), 2.0, 10.0, edge_fraction=0.2)
    f = np.sqrt(
        scipy.fft.fftfreq(20, 2.0)[:, None, None] ** 2
        + scipy.fft.fftfreq(20, 2.0)[None, :, None] ** 2
        + scipy.fft.rfftfreq(20, 2.0)[None, None, :] ** 2
    )
    assert w.shape == (20, 20, 11)
    assert np.all(w[f <= 0.08 - 1e-12] == 1.0) and np.all(w[f >= 0.1] == 0.0)
    edge = (f > 0.08) & (f < 0.1)
    assert np.all((w[edge] > 0) & (w[edge] < 1))
    order = np.argsort(f.ravel())
    assert np.all(np.diff(w.ravel()[order]) <= 1e-12)  # monotone in frequency


def test_non_cubic_map_is_padded_with_a_warning() -> None:
    vol = _sample(40, 1.0)[4:36, :, 2:38]  # (32, 40, 36), centres shift by 4, 0, 2
    with pytest.warns(RuntimeWarning, match="not cubic"):
        out = template_from_map(vol, 1.0, 2.0, box_size=16)
    # Padding keeps index N // 2 at the centre: 40 // 2 == 20 == 4 + 32 // 2.
    ref = _sample(16, 2.0)
    # The cropped input misses a little density at the edges; the core matches.
    assert np.abs(out - ref)[4:12, 4:12, 4:12].max() < 1e-3


def test_bad_voxel_sizes_and_box() -> None:
    vol = _sample(16, 1.0)
    for bad in (None, 0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="input-voxel-size-angstrom"):
            template_from_map(vol, bad, 2.0)
    with pytest.raises(ConfigError, match="voxel size"):
        template_from_map(vol, 1.0, 0.0)
    with pytest.raises(ConfigError, match="box size"):
        fourier_resample(vol, 1.0, 2.0, box_size=0)
    with pytest.warns(RuntimeWarning, match="finer than Nyquist"):
        fourier_resample(vol, 1.0, 2.0, lowpass_resolution_a=1.0)


def test_invert_and_center_of_mass() -> None:
    vol = np.zeros((32, 32, 32), dtype=np.float32)
    vol[20:23, 10:13, 5:8] = 1.0  # cube with centre of mass (21, 11, 6)
    assert center_of_mass_zyx(vol) == pytest.approx((21.0, 11.0, 6.0))
    out = template_from_map(vol, 1.0, 1.0, center=True, lowpass_resolution_a=4.0)
    centred = np.zeros_like(vol)
    centred[15:18, 15:18, 15:18] = 1.0  # the same cube moved to the box centre
    ref = template_from_map(centred, 1.0, 1.0, lowpass_resolution_a=4.0)
    # Equal up to the low-pass kernel's far tails, which see different padding.
    assert np.abs(out - ref).max() < 2e-3 * np.abs(ref).max()
    assert np.abs(out - ref)[8:-8, 8:-8, 8:-8].max() < 1e-3 * np.abs(ref).max()
    inv = template_from_map(
        vol, 1.0, 1.0, center=True, invert=True, lowpass_resolution_a=4.0
    )
    assert np.array_equal(inv, -out)
    with pytest.raises(ConfigError, match="center"):
        center_of_mass_zyx(np.ones((4, 4, 4)))


@pytest.mark.skipif(not EMD_8621.is_file(), reason="shared/data/real/pytme absent")
def test_real_emd_8621_to_7_64_angstrom() -> None:
    """EMD-8621 (1.45 Å, 220^3) to 7.64 Å: physical size, power and density kept."""
    vol, a_in = read_volume(EMD_8621)
    t0 = time.perf_counter()
    out = template_from_map(vol, a_in, 7.64)
    elapsed = time.perf_counter() - t0
    print(f"EMD-8621 220^3 @1.45 -> {out.shape} @7.64 A: {elapsed:.2f} s")
    assert out.shape == (42,) * 3  # round(220 * 1.45 / 7.64) = 42
    # Same low-passed map evaluated at 1.45 Å by the identity path and then
    # compared to the 7.64 Å template at a few common physical points: the
    # template voxel m sits at (m - 21) * 7.64 Å, the source voxel at (i - 110) * 1.45.
    lp = template_from_map(vol, a_in, a_in, lowpass_resolution_a=2 * 7.64)
    for m in (21, 15, 27):
        pos = 110 + (m - 21) * 7.64 / a_in
        i = round(pos)
        if abs(pos - i) < 1e-6:
            assert out[m, 21, 21] == pytest.approx(lp[i, 110, 110], abs=1e-4)
    # Integrated density (sum * voxel volume) is preserved to within 1 %.
    total_in = float(lp.astype(np.float64).sum()) * a_in**3
    total_out = float(out.astype(np.float64).sum()) * 7.64**3
    assert total_out == pytest.approx(total_in, rel=0.01)
    # The centre-of-mass in Å is unchanged by resampling.
    com_in = (np.array(center_of_mass_zyx(lp)) - 110) * a_in
    com_out = (np.array(center_of_mass_zyx(out)) - 21) * 7.64
    assert np.abs(com_in - com_out).max() < 1.0
