"""CTF: wavelength, zero positions from an independent root solve, sign conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tmfast.errors import ConfigError
from tmfast.filters.ctf import ctf_1d, electron_wavelength_a


@pytest.mark.parametrize(
    ("kv", "lam_a"),
    # tabulated relativistic wavelengths (e.g. Williams & Carter, Table 1.1)
    [(100, 0.03701), (200, 0.02508), (300, 0.01969)],
)
def test_wavelength_matches_tabulated_values(kv: float, lam_a: float) -> None:
    assert electron_wavelength_a(kv) == pytest.approx(lam_a, abs=2e-5)


def analytic_zeros(
    defocus_um: float,
    kv: float,
    cs_mm: float,
    amp: float,
    phase_deg: float,
    k_max: float,
) -> np.ndarray:
    """Zeros of -sin(chi + phi): chi(u) + phi = n pi, u = k^2, solved by np.roots."""
    lam = electron_wavelength_a(kv)
    df = defocus_um * 1e4
    cs = cs_mm * 1e7
    phi = math.atan(amp / math.sqrt(1 - amp * amp)) + math.radians(phase_deg)
    zeros = []
    for n in range(-5, 200):
        # -0.5 pi cs lam^3 u^2 + pi lam df u + phi - n pi = 0
        roots = np.roots(
            [-0.5 * math.pi * cs * lam**3, math.pi * lam * df, phi - n * math.pi]
        )
        for u in roots:
            if abs(u.imag) < 1e-12 and u.real > 0 and math.sqrt(u.real) < k_max:
                zeros.append(math.sqrt(u.real))
    return np.sort(np.array(zeros))


def test_zeros_without_cs_are_at_sqrt_n_over_lambda_df() -> None:
    lam = electron_wavelength_a(300)
    df_a = 3.0e4
    k = np.sqrt(np.arange(1, 8) / (lam * df_a))
    v = ctf_1d(
        k,
        defocus_um=3.0,
        voltage_kv=300,
        spherical_aberration_mm=0.0,
        amplitude_contrast=0.0,
    )
    np.testing.assert_allclose(v, 0.0, atol=1e-9)
    # sign alternates between consecutive zeros
    mid = np.sqrt((np.arange(1, 8) - 0.5) / (lam * df_a))
    s = np.sign(
        ctf_1d(
            mid,
            defocus_um=3.0,
            voltage_kv=300,
            spherical_aberration_mm=0.0,
            amplitude_contrast=0.0,
        )
    )
    assert np.all(s[:-1] == -s[1:])


@pytest.mark.parametrize(
    ("df", "kv", "cs", "amp", "phase"),
    [(3.0, 300, 2.7, 0.07, 0.0), (5.0, 200, 2.0, 0.1, 0.0), (1.0, 300, 2.7, 0.0, 90.0)],
)
def test_zeros_and_sign_changes_match_root_solve(
    df: float, kv: float, cs: float, amp: float, phase: float
) -> None:
    k_max = 0.25
    zeros = analytic_zeros(df, kv, cs, amp, phase, k_max)
    kw = {
        "defocus_um": df,
        "voltage_kv": kv,
        "spherical_aberration_mm": cs,
        "amplitude_contrast": amp,
        "phase_shift_deg": phase,
    }
    np.testing.assert_allclose(ctf_1d(zeros, **kw), 0.0, atol=1e-8)
    grid = np.linspace(1e-4, k_max, 200_001)
    v = ctf_1d(grid, **kw)
    crossings = grid[:-1][np.sign(v[:-1]) != np.sign(v[1:])]
    assert crossings.size == zeros.size
    np.testing.assert_allclose(crossings, zeros, atol=2 * (grid[1] - grid[0]))


def test_low_frequency_value_phase_flip_and_contrast_flip() -> None:
    kw = {"voltage_kv": 300, "spherical_aberration_mm": 2.7, "amplitude_contrast": 0.07}
    k = np.array([0.0, 0.01, 0.05, 0.1, 0.2])
    plain = ctf_1d(k, defocus_um=3.0, **kw)
    assert plain[0] == pytest.approx(-0.07, abs=1e-12)  # -sin(arcsin(A)) at k = 0
    np.testing.assert_allclose(
        ctf_1d(k, defocus_um=3.0, phase_flip=True, **kw), np.abs(plain)
    )
    np.testing.assert_allclose(
        ctf_1d(k, defocus_um=3.0, match_contrast=True, **kw), -plain
    )
    over = ctf_1d(k, defocus_um=-3.0, **kw)
    np.testing.assert_allclose(
        ctf_1d(k, defocus_um=-3.0, match_contrast=True, **kw), over
    )
    # a phase plate at 90 degrees and no amplitude contrast: -1 at k = 0
    assert ctf_1d(
        0.0,
        defocus_um=1.0,
        voltage_kv=300,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.0,
        phase_shift_deg=90.0,
    ) == pytest.approx(-1.0)


def test_array_defocus_broadcasts_per_row_and_float32_is_kept() -> None:
    kw = {"voltage_kv": 300, "spherical_aberration_mm": 2.7, "amplitude_contrast": 0.07}
    k = np.linspace(0, 0.2, 50, dtype=np.float32)
    dfs = np.array([[2.0], [4.0]], dtype=np.float32)
    both = ctf_1d(k[None, :], defocus_um=dfs, **kw)
    assert both.dtype == np.float32 and both.shape == (2, 50)
    for row, df in zip(both, (2.0, 4.0), strict=True):
        ref = ctf_1d(k.astype(np.float64), defocus_um=df, **kw)
        np.testing.assert_allclose(row, ref, atol=2e-4)


def test_bad_microscope_parameters_raise() -> None:
    with pytest.raises(ConfigError, match="amplitude contrast"):
        ctf_1d(
            0.1,
            defocus_um=3,
            voltage_kv=300,
            spherical_aberration_mm=2.7,
            amplitude_contrast=1.0,
        )
    with pytest.raises(ConfigError, match="voltage"):
        ctf_1d(
            0.1,
            defocus_um=3,
            voltage_kv=0,
            spherical_aberration_mm=2.7,
            amplitude_contrast=0.1,
        )
