"""Engine entry points: template_weight and tomogram_filter composition."""

from __future__ import annotations

import numpy as np
import pytest
from tmfast.errors import ConfigError
from tmfast.filters import (
    bandpass,
    binary_wedge,
    ctf_1d,
    profile_to_weight,
    reference_tilt_index,
    template_weight,
    tilt_weighted_wedge,
    tomogram_filter,
)
from tmfast.metadata import TiltSeriesMetadata

TILTS = tuple(float(t) for t in np.arange(-54, 55, 3))


def ctf_metadata(defocus_um: float, **kw: object) -> TiltSeriesMetadata:
    return TiltSeriesMetadata(
        tilt_angles_deg=TILTS,
        defocus_um=(defocus_um,) * len(TILTS),
        dose_e_per_a2=tuple(3.0 * i for i in range(len(TILTS))),
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
        **kw,  # type: ignore[arg-type]
    )


def test_tomogram_filter_never_depends_on_defocus() -> None:
    shape = (24, 40, 36)
    plain = TiltSeriesMetadata(tilt_angles_deg=TILTS)
    ref = tomogram_filter(shape, 6.0, metadata=plain, low_pass_a=30.0)
    for df in (1.5, 3.0, 8.0):
        for model in (None, "phase-flip"):
            del model  # the tomogram filter has no CTF option at all
            got = tomogram_filter(
                shape, 6.0, metadata=ctf_metadata(df), low_pass_a=30.0
            )
            np.testing.assert_array_equal(got, ref)
    # and it is exactly band-pass x binary wedge over the metadata's extremes
    expected = bandpass(shape, 6.0, low_pass_a=30.0) * binary_wedge(shape, -54.0, 54.0)
    np.testing.assert_array_equal(ref, expected)
    assert ref.shape == (24, 40, 19) and ref.dtype == np.float32
    # whereas the template weight does carry the CTF, so the check above can fail
    t1 = template_weight(32, 6.0, metadata=ctf_metadata(1.5))
    t2 = template_weight(32, 6.0, metadata=ctf_metadata(8.0))
    assert np.abs(t1 - t2).max() > 0.5


def test_template_weight_without_tilts_is_bandpass_times_whitening() -> None:
    prof = np.linspace(1.0, 0.2, 9)
    w = template_weight(
        16, 5.0, low_pass_a=20.0, high_pass_a=200.0, whitening_profile=prof
    )
    expected = bandpass((16, 16, 16), 5.0, low_pass_a=20.0, high_pass_a=200.0)
    expected = expected * profile_to_weight(prof, (16, 16, 16))
    np.testing.assert_array_equal(w, expected)
    assert w.shape == (16, 16, 9) and w.dtype == np.float32


def test_template_weight_binary_wedge_range_precedence() -> None:
    meta = TiltSeriesMetadata(tilt_angles_deg=TILTS)
    w_meta = template_weight(20, 4.0, metadata=meta)
    np.testing.assert_array_equal(w_meta, binary_wedge((20, 20, 20), -54.0, 54.0))
    w_range = template_weight(20, 4.0, tilt_range_deg=(-40.0, 60.0), metadata=meta)
    np.testing.assert_array_equal(w_range, binary_wedge((20, 20, 20), -40.0, 60.0))


def test_template_weight_binary_wedge_uses_ctf_of_the_lowest_tilt() -> None:
    # acquisition (dose-symmetric) order: 0, 3, -3, 6, -6 ... with distinct defocus
    order = [0.0]
    for a in range(3, 55, 3):
        order += [float(a), float(-a)]
    defocus = tuple(2.0 + 0.1 * i for i in range(len(order)))
    meta = TiltSeriesMetadata(
        tilt_angles_deg=tuple(order),
        defocus_um=defocus,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
    )
    assert reference_tilt_index(meta) == 0
    n, vs = 24, 3.0
    kz, ky, kx = np.meshgrid(
        np.fft.fftfreq(n), np.fft.fftfreq(n), np.fft.rfftfreq(n), indexing="ij"
    )
    k_a = np.sqrt(kz**2 + ky**2 + kx**2) / vs
    for model, flip in ((None, False), ("phase-flip", True)):
        w = template_weight(n, vs, metadata=meta, low_pass_a=15.0, ctf_model=model)
        ctf = ctf_1d(
            k_a,
            defocus_um=2.0,
            voltage_kv=300.0,
            spherical_aberration_mm=2.7,
            amplitude_contrast=0.07,
            phase_flip=flip,
            match_contrast=True,
        )
        expected = (
            bandpass((n, n, n), vs, low_pass_a=15.0)
            * binary_wedge((n, n, n), -54.0, 54.0)
            * ctf
        )
        np.testing.assert_allclose(w, expected, atol=1e-6)


def test_template_weight_per_tilt_uses_the_fanned_wedge() -> None:
    meta = ctf_metadata(3.0)
    w = template_weight(
        24,
        5.0,
        metadata=meta,
        per_tilt_weighting=True,
        low_pass_a=20.0,
        ctf_model="phase-flip",
    )
    expected = bandpass((24, 24, 24), 5.0, low_pass_a=20.0) * tilt_weighted_wedge(
        (24, 24, 24), 5.0, meta, ctf_model="phase-flip"
    )
    np.testing.assert_allclose(w, expected, atol=1e-7)
    assert w.min() >= 0.0  # phase-flip: |CTF|


def test_template_weight_bad_options_raise() -> None:
    with pytest.raises(ConfigError, match="per-tilt weighting"):
        template_weight(16, 5.0, tilt_range_deg=(-60, 60), per_tilt_weighting=True)
    with pytest.raises(ConfigError, match="phase-flip"):
        template_weight(16, 5.0, ctf_model="flip")
    with pytest.raises(ConfigError, match="MIN MAX"):
        template_weight(16, 5.0, tilt_range_deg=(-60,))  # type: ignore[arg-type]


def test_slab_built_filter_equals_product_of_public_builders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tmfast.filters as filters

    monkeypatch.setattr(filters, "_SLAB_VOXELS", 500)  # many slabs of 1 z plane
    shape = (17, 20, 30)
    prof = np.linspace(0.1, 1.0, 12)
    got = tomogram_filter(
        shape,
        4.0,
        tilt_range_deg=(-48.0, 61.0),
        low_pass_a=15.0,
        high_pass_a=90.0,
        whitening_profile=prof,
    )
    expected = (
        bandpass(shape, 4.0, low_pass_a=15.0, high_pass_a=90.0)
        * profile_to_weight(prof, shape)
        * binary_wedge(shape, -48.0, 61.0)
    )
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
