"""Fourier-weight builders: time to build the weights the engine needs.

Quick mode (the default, ``--benchmark-disable``): small boxes, run as plain tests
that also check shapes. Full mode (``--benchmark-enable``): a 256^3 template weight
with the per-tilt wedge over 61 tilts with CTF and dose (target < 1 s), the tomogram
filter of a 256x512x512 tomogram (band-pass x binary wedge x whitening), and the
whitening estimate on a 128x256x256 tomogram with 64^3 patches.
"""

from __future__ import annotations

import numpy as np
import pytest
from tmfast.filters import (
    estimate_whitening_profile,
    template_weight,
    tomogram_filter,
)
from tmfast.metadata import TiltSeriesMetadata

TILTS = tuple(float(t) for t in np.arange(-60, 61, 2))
META = TiltSeriesMetadata(
    tilt_angles_deg=TILTS,
    defocus_um=tuple(3.0 + 0.01 * i for i in range(len(TILTS))),
    dose_e_per_a2=tuple(2.0 * i for i in range(len(TILTS))),
    voltage_kv=300.0,
    spherical_aberration_mm=2.7,
    amplitude_contrast=0.07,
)


def test_template_weight_per_tilt(benchmark: pytest.FixtureRequest) -> None:
    full = not benchmark.disabled  # type: ignore[attr-defined]
    n = 256 if full else 32
    w = benchmark.pedantic(  # type: ignore[attr-defined]
        template_weight,
        args=(n, 5.0),
        kwargs={"metadata": META, "per_tilt_weighting": True, "low_pass_a": 20.0},
        rounds=3 if full else 1,
        iterations=1,
    )
    assert w.shape == (n, n, n // 2 + 1) and w.dtype == np.float32
    if full:
        assert benchmark.stats["mean"] < 1.0  # type: ignore[attr-defined]


def test_tomogram_filter(benchmark: pytest.FixtureRequest) -> None:
    full = not benchmark.disabled  # type: ignore[attr-defined]
    shape = (256, 512, 512) if full else (16, 32, 32)
    prof = np.linspace(0.0, 1.0, 33)
    w = benchmark.pedantic(  # type: ignore[attr-defined]
        tomogram_filter,
        args=(shape, 5.0),
        kwargs={"metadata": META, "low_pass_a": 20.0, "whitening_profile": prof},
        rounds=2 if full else 1,
        iterations=1,
    )
    assert w.shape == (shape[0], shape[1], shape[2] // 2 + 1)


def test_whitening_estimate(benchmark: pytest.FixtureRequest) -> None:
    full = not benchmark.disabled  # type: ignore[attr-defined]
    shape = (128, 256, 256) if full else (24, 32, 32)
    patch = 64 if full else 16
    tomo = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    prof = benchmark.pedantic(  # type: ignore[attr-defined]
        estimate_whitening_profile,
        args=(tomo,),
        kwargs={"patch_size": patch},
        rounds=1,
        iterations=1,
    )
    assert prof.shape == (patch // 2 + 1,)
