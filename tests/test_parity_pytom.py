"""Parity with pytom-match-pick 0.14 called as a test oracle (issues 3 and 4).

pytom-match-pick (GPL) is never copied: these tests *call* it and compare its output
with tmfast's on the same inputs. Its GPU core needs cupy, but its numpy/scipy
modules run on a CPU machine: ``angles``, ``weights``, ``mask`` and ``template``
import directly (voltools falls back to scipy when cupy is absent), and
``correlation``, ``tmjob`` and ``extract`` import behind a small stand-in for the
``cupy`` modules that they only use for type hints and GPU code paths that these
tests never reach (see :func:`_import_behind_cupy_stub`).

How to run (skipped when ``pytom_tm`` is not importable)::

    bash tools/setup-pytom-oracle.sh          # creates .venv-pytom
    .venv-pytom/bin/python -m pytest tests/test_parity_pytom.py

The measured agreement and the intended differences are listed in
``docs/pytom-parity.md``. Where tmfast differs on purpose, the tests check agreement
in the regime where both should agree and pin the difference itself.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

_HOW = (
    "pytom-match-pick is not installed; run `bash tools/setup-pytom-oracle.sh` and "
    "`.venv-pytom/bin/python -m pytest tests/test_parity_pytom.py`"
)
pytom_tm = pytest.importorskip("pytom_tm", reason=_HOW)
voltools = pytest.importorskip("voltools", reason=_HOW)  # before any cupy stand-in

from pytom_tm import angles as pt_angles  # noqa: E402
from pytom_tm import weights as pt_weights  # noqa: E402
from pytom_tm.dataclass import CtfData, TiltSeriesMetaData  # noqa: E402
from pytom_tm.mask import spherical_mask  # noqa: E402
from pytom_tm.template import _phase_randomize_template  # noqa: E402
from scipy.ndimage import gaussian_filter  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402
from tmfast.backends.base import CorrelationInputs  # noqa: E402
from tmfast.backends.cpu import CpuBackend  # noqa: E402
from tmfast.extraction import extract_candidates, false_alarm_cutoff  # noqa: E402
from tmfast.filters import (  # noqa: E402
    bandpass,
    binary_wedge,
    ctf_1d,
    estimate_whitening_profile,
    profile_to_weight,
    template_weight,
    tilt_weighted_wedge,
)
from tmfast.filters._grid import freq_radius_sq  # noqa: E402
from tmfast.geometry.angles import pytom_angle_set  # noqa: E402
from tmfast.geometry.interpolation import (  # noqa: E402
    bspline_coefficients,
    rotate_volume,
)
from tmfast.geometry.rotations import zxz_to_matrices, zxz_to_relion_deg  # noqa: E402
from tmfast.matching.engine import search_volume  # noqa: E402
from tmfast.matching.random_phase import phase_randomised_template  # noqa: E402
from tmfast.metadata import TiltSeriesMetadata  # noqa: E402

F64 = npt.NDArray[np.float64]


# --------------------------------------------------------------------- helpers
class _Anything:
    """Stand-in for any cupy attribute: callable, subscriptable (type hints)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __class_getitem__(cls, item: Any) -> Any:
        return typing.Any

    def __call__(self, *args: Any, **kwargs: Any) -> _Anything:
        return _Anything()

    def __getattr__(self, name: str) -> _Anything:
        return _Anything()


def _stub_module(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Anything

    setattr(mod, "__getattr__", __getattr__)  # noqa: B010 (module __getattr__)
    return mod


_CUPY_NAMES = ("cupy", "cupy.typing", "cupyx", "cupyx.scipy", "cupyx.scipy.fft")


def _import_behind_cupy_stub(name: str) -> types.ModuleType:
    """Import a pytom_tm module that imports cupy at module level.

    The stand-in modules live in ``sys.modules`` only during the import, so nothing
    else (voltools, tmfast) ever sees a fake cupy. The imported pytom modules keep
    references to the stand-ins; the tests call only their numpy code paths.
    """
    if any(n in sys.modules for n in _CUPY_NAMES):  # a real cupy: use it
        return importlib.import_module(name)
    for n in _CUPY_NAMES:
        sys.modules[n] = _stub_module(n)
    for n in _CUPY_NAMES:
        if "." in n:
            parent, child = n.rsplit(".", 1)
            setattr(sys.modules[parent], child, sys.modules[n])
    try:
        return importlib.import_module(name)
    finally:
        for n in _CUPY_NAMES:
            sys.modules.pop(n, None)


def _full_from_half(half: np.ndarray, n_last: int) -> np.ndarray:
    """Expand an rfft half-space weight (last axis halved) to the full grid.

    Uses the Hermitian symmetry of a real filter, ``W(k) = W(-k)``.
    """
    n_half = half.shape[-1]
    out = np.empty((*half.shape[:-1], n_last), dtype=half.dtype)
    out[..., :n_half] = half
    neg = [(-np.arange(s)) % s for s in half.shape[:-1]]
    cols = (-np.arange(n_half, n_last)) % n_last
    out[..., n_half:] = half[np.ix_(neg[0], neg[1], cols)]
    return out


def _pytom_full_zyx(w_xyz_half: np.ndarray, shape_xyz: tuple[int, int, int]) -> F64:
    """pytom weight ``(x, y, z // 2 + 1)`` -> full tmfast ``(z, y, x)`` grid."""
    full: F64 = _full_from_half(np.asarray(w_xyz_half, np.float64), shape_xyz[2])
    return full.transpose(2, 1, 0)


def _tmfast_full(w_half: np.ndarray, shape_zyx: tuple[int, int, int]) -> F64:
    out: F64 = _full_from_half(np.asarray(w_half, np.float64), shape_zyx[2])
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _tilts(lo: float, hi: float, step: float) -> list[float]:
    return [float(v) for v in np.arange(lo, hi + step / 2, step)]


# ----------------------------------------------------------------------- angles
@pytest.mark.parametrize("symmetry", [1, 2, 4, 6])
@pytest.mark.parametrize("step_deg", [7.0, 10.0, 12.85, 16.0, 25.0, 38.53, 50.0, 90.0])
def test_angle_set_equals_pytom_get_angle_list(step_deg: float, symmetry: int) -> None:
    """Same rows in the same order, bit for bit: angle indices are interchangeable."""
    expected = np.array(pt_angles.get_angle_list(step_deg, symmetry=symmetry))
    got = pytom_angle_set(step_deg, symmetry=symmetry)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_angle_set_equals_pytom_angle_to_angle_list() -> None:
    for step in (5.27, 11.0, 38.53):
        expected = np.array(pt_angles.angle_to_angle_list(step))
        np.testing.assert_array_equal(pytom_angle_set(step), expected)


def test_relion_export_equals_pytom_extract_conversion() -> None:
    """tmfast's RELION angles = pytom's ``convert_euler(-zxz, ZXZ -> ZYZ)``."""
    rng = np.random.default_rng(5)
    zxz = np.concatenate(
        [
            pytom_angle_set(38.53),
            rng.uniform([0, 0, 0], [2 * np.pi, np.pi, 2 * np.pi], (500, 3)),
        ]
    )
    got = zxz_to_relion_deg(zxz)
    expected = np.array(
        [
            pt_angles.convert_euler(
                [-a for a in row],
                order_in="ZXZ",
                order_out="ZYZ",
                degrees_in=False,
                degrees_out=True,
            )
            for row in zxz
        ]
    )
    # same rotation everywhere (gimbal lock makes rot/psi individually ambiguous)
    m_got = Rotation.from_euler("ZYZ", got, degrees=True).as_matrix()
    m_exp = Rotation.from_euler("ZYZ", expected, degrees=True).as_matrix()
    np.testing.assert_allclose(m_got, m_exp, atol=1e-9)
    # and the same numbers away from gimbal lock
    regular = (expected[:, 1] > 1e-6) & (expected[:, 1] < 180 - 1e-6)
    assert regular.sum() > 400
    # equal modulo 360 (tmfast keeps rot/psi in (-180, 180], scipy may give -180)
    diff = (got[regular] - expected[regular] + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(diff, 0.0, atol=1e-9)


# ------------------------------------------------------------- Fourier weights
EVEN_SHAPES_XYZ = [(32, 32, 32), (40, 24, 16)]


@pytest.mark.parametrize("shape_xyz", EVEN_SHAPES_XYZ)
@pytest.mark.parametrize(
    ("low_a", "high_a"), [(20.0, None), (None, 150.0), (25.0, 200.0)]
)
def test_bandpass_equals_pytom(
    shape_xyz: tuple[int, int, int], low_a: float | None, high_a: float | None
) -> None:
    shape_zyx = shape_xyz[::-1]
    expected = _pytom_full_zyx(
        pt_weights.create_gaussian_band_pass(shape_xyz, 4.0, low_a, high_a), shape_xyz
    )
    got = _tmfast_full(
        bandpass(shape_zyx, 4.0, low_pass_a=low_a, high_pass_a=high_a), shape_zyx
    )
    np.testing.assert_allclose(got, expected, atol=1e-6)


def _plane_distance_vox(shape_zyx: tuple[int, int, int], tilt_deg: float) -> F64:
    """Distance (Fourier voxels, cubic-equivalent) of every (kz, kx) to a tilt plane.

    Independent of tmfast: plane normal ``(-sin a, cos a)`` in (x, z), pytom's
    convention (its ``_create_binary_wedge`` negates x).
    """
    nz, _, nx = shape_zyx
    kz = np.fft.fftfreq(nz)[:, None, None]
    kx = np.fft.fftfreq(nx)[None, None, :]
    a = np.radians(tilt_deg)
    d: F64 = np.abs(-np.sin(a) * kx + np.cos(a) * kz) * min(nz, nx)
    return d


@pytest.mark.parametrize("shape_xyz", EVEN_SHAPES_XYZ)
@pytest.mark.parametrize("tilt_range", [(-60.0, 60.0), (-50.0, 65.0), (-40.0, 40.0)])
def test_binary_wedge_equals_pytom_away_from_edges(
    shape_xyz: tuple[int, int, int], tilt_range: tuple[float, float]
) -> None:
    """Same orientation and coverage; only the 1-2 voxel edge ramps differ.

    pytom's ramp is centred on the extreme planes (0.5 there, about 1.4 voxels wide
    each side); tmfast keeps weight 1 on every sampled plane and falls to 0 one voxel
    outside (docs/pytom-parity.md). The asymmetric range checks the orientation.
    """
    shape_zyx = shape_xyz[::-1]
    lo, hi = tilt_range
    expected = _pytom_full_zyx(
        pt_weights._create_binary_wedge(shape_xyz, np.radians(lo), np.radians(hi), 1.0),
        shape_xyz,
    )
    got = _tmfast_full(binary_wedge(shape_zyx, lo, hi), shape_zyx)
    edge = (_plane_distance_vox(shape_zyx, lo) < 2.0) | (
        _plane_distance_vox(shape_zyx, hi) < 2.0
    )
    q = np.sqrt(freq_radius_sq(shape_zyx, False))
    near_nyquist = np.abs(q - 0.5) < 1.5 / min(shape_zyx)
    far = ~np.broadcast_to(edge, got.shape) & ~near_nyquist
    assert far.mean() > (0.4 if len(set(shape_xyz)) == 1 else 0.15)
    np.testing.assert_array_equal(got[far], expected[far])
    assert _corr(got, expected) > 0.96
    mirrored = _tmfast_full(binary_wedge(shape_zyx, -hi, -lo), shape_zyx)
    if lo != -hi:  # the orientation matters and is pytom's
        assert not np.array_equal(mirrored[far], expected[far])


def _pytom_ctf(df_um: float, ac: float, ps: float, flip: bool) -> CtfData:
    return CtfData(
        defocus=df_um * 1e-6,
        amplitude_contrast=ac,
        voltage=300e3,
        spherical_aberration=2.7e-3,
        phase_shift_deg=ps,
        flip_phase=flip,
    )


CTF_CASES = [
    (3.0, 0.07, 0.0, False),
    (-2.0, 0.10, 0.0, False),  # overfocus: no contrast flip
    (4.5, 0.07, 0.0, True),  # phase-flip model |CTF|
    (1.0, 0.0, 90.0, False),  # phase plate
]


@pytest.mark.parametrize("n", [32, 48])
@pytest.mark.parametrize(("df_um", "ac", "ps", "flip"), CTF_CASES)
def test_ctf_equals_pytom_create_ctf(
    n: int, df_um: float, ac: float, ps: float, flip: bool
) -> None:
    vs = 5.0
    expected = _pytom_full_zyx(
        pt_weights.create_ctf((n,) * 3, vs * 1e-10, _pytom_ctf(df_um, ac, ps, flip)),
        (n, n, n),
    )
    k = np.sqrt(freq_radius_sq((n, n, n), False).astype(np.float64)) / vs
    got = ctf_1d(
        k,
        defocus_um=df_um,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=ac,
        phase_shift_deg=ps,
        phase_flip=flip,
        match_contrast=True,
    )
    # residual: CODATA constants (tmfast 2018, pytom older) and float32 frequencies
    np.testing.assert_allclose(got, expected, atol=5e-5)


def _metadata_pair(
    tilts: list[float], defocus_um: list[float]
) -> tuple[TiltSeriesMetadata, TiltSeriesMetaData]:
    ours = TiltSeriesMetadata(
        tilt_angles_deg=tuple(tilts),
        defocus_um=tuple(defocus_um),
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
    )
    theirs = TiltSeriesMetaData(
        tilt_angles=list(tilts),
        ctf_data=[_pytom_ctf(d, 0.07, 0.0, False) for d in defocus_um],
    )
    return ours, theirs


def test_binary_template_weight_with_ctf_equals_pytom_create_wedge() -> None:
    """Sorted tilts: pytom's CTF index n//2 is the lowest tilt, so both agree.

    The comparison excludes the wedge edges (see the binary-wedge test).
    """
    n, vs = 32, 5.0
    tilts = _tilts(-60, 60, 3)
    dfs = [3.0 + 0.02 * t for t in tilts]
    ours, theirs = _metadata_pair(tilts, dfs)
    expected = _pytom_full_zyx(
        pt_weights.create_wedge((n,) * 3, theirs, vs, per_tilt_weighting=False),
        (n, n, n),
    )
    got = _tmfast_full(template_weight(n, vs, metadata=ours), (n, n, n))
    far = ~np.broadcast_to(
        (_plane_distance_vox((n,) * 3, -60) < 2)
        | (_plane_distance_vox((n,) * 3, 60) < 2),
        got.shape,
    ) & (np.abs(np.sqrt(freq_radius_sq((n,) * 3, False)) - 0.5) > 1.5 / n)
    np.testing.assert_allclose(got[far], expected[far], atol=5e-5)


def test_binary_template_weight_ctf_uses_lowest_tilt_not_index_half() -> None:
    """Intended difference: dose-symmetric order. tmfast takes the CTF of the lowest
    |tilt| (here index 0); pytom takes index n//2 (a high tilt). tmfast on the
    acquisition order equals pytom on the sorted order."""
    n, vs = 32, 5.0
    order = [0.0]
    for t in range(3, 61, 3):
        order += [float(t), float(-t)]
    dfs = [2.0 + 0.05 * abs(t) for t in order]
    ours, _ = _metadata_pair(order, dfs)
    srt = sorted(range(len(order)), key=lambda i: order[i])
    _, theirs_sorted = _metadata_pair([order[i] for i in srt], [dfs[i] for i in srt])
    _, theirs_acq = _metadata_pair(order, dfs)
    got = _tmfast_full(template_weight(n, vs, metadata=ours), (n, n, n))
    exp_sorted = _pytom_full_zyx(
        pt_weights.create_wedge((n,) * 3, theirs_sorted, vs, per_tilt_weighting=False),
        (n, n, n),
    )
    exp_acq = _pytom_full_zyx(
        pt_weights.create_wedge((n,) * 3, theirs_acq, vs, per_tilt_weighting=False),
        (n, n, n),
    )
    far = np.abs(exp_sorted - got) < 1e-3  # edges excluded implicitly
    assert far.mean() > 0.9
    assert np.abs(got - exp_acq).max() > 0.5  # pytom's index-n//2 CTF differs


TILT_CASES = ["plain", "dose", "ctf", "ctf+dose"]


@pytest.fixture(scope="module")
def tilt_wedges() -> dict[tuple[str, str], tuple[F64, F64, F64]]:
    """(case, series) -> (pytom, tmfast, pytom with mirrored tilts), full zyx."""
    n, vs = 32, 5.0
    series = {"sym3": _tilts(-60, 60, 3), "asym5": _tilts(-50, 65, 5)}
    out = {}
    for name, tilts in series.items():
        t = np.asarray(tilts)
        dose = list(np.abs(t) / 3.0 * 3.0)
        dfs = list(3.0 + 0.01 * t)
        for case in TILT_CASES:
            kw: dict[str, Any] = {}
            kp: dict[str, Any] = {}
            if "dose" in case:
                kw["dose_e_per_a2"] = tuple(dose)
                kp["accumulated_dose_per_tilt"] = dose
            if "ctf" in case:
                kw.update(
                    defocus_um=tuple(dfs),
                    voltage_kv=300.0,
                    spherical_aberration_mm=2.7,
                    amplitude_contrast=0.07,
                )
                kp["ctf_params_per_tilt"] = [
                    _pytom_ctf(d, 0.07, 0.0, False) for d in dfs
                ]
            theirs = _pytom_full_zyx(
                pt_weights._create_tilt_weighted_wedge(
                    (n,) * 3, np.radians(t), 1.0, vs, **kp
                ),
                (n, n, n),
            )
            mirrored = _pytom_full_zyx(
                pt_weights._create_tilt_weighted_wedge(
                    (n,) * 3, -np.radians(t), 1.0, vs, **kp
                ),
                (n, n, n),
            )
            ours = _tmfast_full(
                tilt_weighted_wedge(
                    (n,) * 3, vs, TiltSeriesMetadata(tilt_angles_deg=tuple(tilts), **kw)
                ),
                (n, n, n),
            )
            out[(case, name)] = (theirs, ours, mirrored)
    return out


@pytest.mark.parametrize("series", ["sym3", "asym5"])
@pytest.mark.parametrize("case", TILT_CASES)
def test_tilt_weighted_wedge_agrees_with_pytom(
    tilt_wedges: dict[tuple[str, str], tuple[F64, F64, F64]], case: str, series: str
) -> None:
    """tmfast evaluates each tilt plane analytically (linear slice profile); pytom
    rotates a sampled plane with a cubic B-spline (voltools, CPU), so voxel values
    differ where the slice profiles differ, mostly near Nyquist. Bounds from the
    measurements in docs/pytom-parity.md, with margin."""
    theirs, ours, mirrored = tilt_wedges[(case, series)]
    n = ours.shape[0]
    r = np.sqrt(freq_radius_sq((n,) * 3, False)) * n  # radius in Fourier voxels
    assert _corr(ours, theirs) > 0.96
    inner = r < 0.75 * n / 2
    assert _corr(ours[inner], theirs[inner]) > 0.985
    assert abs(ours[inner].sum() / theirs[inner].sum() - 1.0) < 0.03
    # what matching sees: a smooth template filtered by either weight
    rng = np.random.default_rng(0)
    tmpl = gaussian_filter(rng.standard_normal((n,) * 3), 1.0)
    ft = np.fft.fftn(tmpl)
    a = np.fft.ifftn(ft * theirs).real
    b = np.fft.ifftn(ft * ours).real
    assert _corr(a, b) > 0.99
    if series == "asym5":  # orientation: the mirrored fan agrees clearly worse
        assert _corr(ours, mirrored) < _corr(ours, theirs) - 0.02


# ------------------------------------------------------------------- whitening
@pytest.fixture(scope="module")
def whitening_volume() -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(1)
    vol = gaussian_filter(rng.standard_normal((40, 72, 80)), 1.2).astype(np.float32)
    vol[5:12, 10:20, 30:40] += 8.0  # a "gold" region: rejected patches
    return vol


@pytest.mark.parametrize("statistic", ["mean", "median"])
@pytest.mark.parametrize("tilt_range", [(-60.0, 60.0), (-45.0, 60.0)])
def test_whitening_estimator_identical_in_pytoms_layout(
    whitening_volume: npt.NDArray[np.float32],
    statistic: str,
    tilt_range: tuple[float, float],
) -> None:
    """Same algorithm: fed pytom's array order and pytom's own coverage mask,
    tmfast's estimator reproduces pytom's profile (patches, Hann window, rejection
    of the noisiest 10 %, masked radial mean/median, taper, normalisation)."""
    patch = 32
    ts = TiltSeriesMetaData(tilt_angles=_tilts(*tilt_range, 3.0))
    vol_xyz = np.ascontiguousarray(whitening_volume.transpose(2, 1, 0))
    with np.errstate(divide="ignore", invalid="ignore"):  # pytom's empty shells
        _, expected = pt_weights.estimate_whitening_filter(
            vol_xyz, ts, patch, voxel_size=4.0, statistic=statistic
        )
    coverage = pt_weights.create_wedge((patch,) * 3, ts, 4.0)
    got = estimate_whitening_profile(
        vol_xyz, patch_size=patch, coverage_weight=coverage, statistic=statistic
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("tilt_range", [(-60.0, 60.0), (-45.0, 60.0)])
def test_whitening_profile_agrees_with_pytom_native_layout(
    whitening_volume: npt.NDArray[np.float32], tilt_range: tuple[float, float]
) -> None:
    """In each package's own (z, y, x) vs (x, y, z) layout the rfft half-space is
    halved along a different axis, so the half-space radial statistic weights the
    kx = 0 (tmfast) or kz = 0 (pytom) plane differently, and the coverage edges
    differ: a small, bounded difference (measured 0.005 and 0.023 of the max)."""
    patch = 32
    ts = TiltSeriesMetaData(tilt_angles=_tilts(*tilt_range, 3.0))
    _, expected = pt_weights.estimate_whitening_filter(
        whitening_volume.transpose(2, 1, 0), ts, patch, voxel_size=4.0
    )
    got = estimate_whitening_profile(
        whitening_volume,
        patch_size=patch,
        coverage_weight=binary_wedge((patch,) * 3, *tilt_range),
    )
    assert np.abs(got - expected).max() < 0.04
    assert _corr(got, expected) > 0.999


@pytest.mark.parametrize("shape_xyz", EVEN_SHAPES_XYZ)
def test_profile_to_weight_equals_pytom(shape_xyz: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(2)
    profile = np.sort(rng.uniform(0, 1, 17))[::-1].copy()
    profile[0] = 0.0  # whitening profiles have DC 0; pytom forces DC 0 regardless
    expected = _pytom_full_zyx(
        pt_weights.profile_to_weighting(profile, shape_xyz), shape_xyz
    )
    got = _tmfast_full(profile_to_weight(profile, shape_xyz[::-1]), shape_xyz[::-1])
    np.testing.assert_allclose(got, expected, atol=2e-6)


# ------------------------------------------------------------ noise template
@pytest.fixture(scope="module")
def noise_template_input() -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(3)
    t = gaussian_filter(rng.standard_normal((24,) * 3), 1.5)
    t[8:16, 9:14, 7:15] += 1.0
    return t


@pytest.mark.parametrize("seed", [321, 7])
def test_phase_randomised_template_equals_pytom_binary_mask(
    noise_template_input: npt.NDArray[np.float64], seed: int
) -> None:
    """Same seed, binary mask: the same Gerchberg-Saxton result, to float32."""
    mask = spherical_mask(24, 9)
    expected = _phase_randomize_template(noise_template_input, mask, seed=seed)
    got = phase_randomised_template(noise_template_input, mask, seed=seed)
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("seed", [321, 7])
def test_phase_randomised_template_properties_soft_mask(
    noise_template_input: npt.NDArray[np.float64], seed: int
) -> None:
    """Soft mask: both keep the template's amplitude spectrum, stay in the mask and
    take the sign of sum(T M)."""
    mask = spherical_mask(24, 9, 1.0)
    target = np.abs(np.fft.rfftn(noise_template_input * mask))
    for vol in (
        _phase_randomize_template(noise_template_input, mask, seed=seed),
        phase_randomised_template(noise_template_input, mask, seed=seed),
    ):
        amp = np.abs(np.fft.rfftn(vol))
        assert _corr(amp, target) > 0.95
        assert np.all(vol[mask == 0] == 0)
        assert np.sign(vol.sum()) == np.sign((noise_template_input * mask).sum())


def test_phase_randomised_template_equals_pytom_soft_mask(
    noise_template_input: npt.NDArray[np.float64],
) -> None:
    mask = spherical_mask(24, 9, 1.0)
    expected = _phase_randomize_template(noise_template_input, mask, seed=321)
    got = phase_randomised_template(noise_template_input, mask, seed=321)
    np.testing.assert_allclose(got, expected, atol=1e-5)


# ----------------------------------------------------------------- extraction
@pytest.fixture(scope="module")
def pytom_extract() -> types.ModuleType:
    return _import_behind_cupy_stub("pytom_tm.extract")


@pytest.mark.parametrize(
    ("std", "search_space", "n_fp"),
    [(0.01, 7_300_000_000, 1.0), (0.004, 2_500_000_000_000, 0.5), (0.03, 10**9, 3.0)],
)
def test_extraction_of_a_pytom_job_equals_pytom_extract_particles(
    pytom_extract: types.ModuleType,
    tmp_path: Path,
    std: float,
    search_space: int,
    n_fp: float,
) -> None:
    """A pytom job (its own JSON and maps) extracted by pytom and by tmfast: the
    same cutoff, positions, scores and RELION angles (well-separated peaks, so the
    cube vs sphere exclusion does not matter)."""
    tmjob = _import_behind_cupy_stub("pytom_tm.tmjob")
    from pytom_tm.io import write_mrc

    rng = np.random.default_rng(0)
    shape_xyz = (40, 36, 30)
    write_mrc(
        tmp_path / "tomo.mrc", rng.standard_normal(shape_xyz).astype(np.float32), 10.0
    )
    tmpl = np.zeros((12,) * 3, np.float32)
    tmpl[3:8, 4:8, 3:7] = 1.0
    write_mrc(tmp_path / "tmpl.mrc", tmpl, 10.0)
    write_mrc(tmp_path / "mask.mrc", np.ones((12,) * 3, np.float32), 10.0)
    job = tmjob.TMJob(
        "0",
        logging.WARNING,
        tmp_path / "tomo.mrc",
        tmp_path / "tmpl.mrc",
        tmp_path / "mask.mrc",
        tmp_path,
        TiltSeriesMetaData(tilt_angles=[-60.0, 60.0]),
        voxel_size=10.0,
        angle_increment=38.53,
        particle_diameter=60.0,
    )
    scores = (rng.standard_normal(shape_xyz) * 0.2 * std).astype(np.float32)
    angles = rng.integers(0, job.n_rotations, shape_xyz).astype(np.float32)
    cutoff = false_alarm_cutoff(std, search_space, n_false_positives=n_fp)
    peaks = [((20, 10, 15), 2.0, 100), ((8, 25, 22), 1.5, 7), ((30, 20, 8), 1.2, 479)]
    for (x, y, z), factor, idx in peaks:
        scores[x, y, z] = cutoff * factor
        angles[x, y, z] = idx
    write_mrc(tmp_path / "tomo_scores.mrc", scores, 10.0)
    write_mrc(tmp_path / "tomo_angles.mrc", angles, 10.0)
    job.job_stats = {"search_space": search_space, "variance": std**2, "std": std}
    job.write_to_json(tmp_path / "tomo_job.json")

    df, _ = pytom_extract.extract_particles(
        job, 10, n_false_positives=n_fp, create_plot=False
    )
    table = extract_candidates(
        tmp_path / "tomo_job.json", n_particles=10, n_false_positives=n_fp
    )
    assert len(df) == len(table) == len(peaks)
    assert table.cutoff == pytest.approx(float(df.rlnCutOff.iloc[0]), rel=1e-12)
    np.testing.assert_array_equal(
        table.positions_xyz,
        df[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(),
    )
    np.testing.assert_allclose(table.scores, df.rlnLCCmax.to_numpy(), rtol=1e-7)
    np.testing.assert_allclose(
        table.relion_angles_deg,
        df[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(),
        atol=1e-9,
    )


# ------------------------------------------------------------- defocus gradient
@pytest.mark.parametrize("handedness", [1, -1])
def test_defocus_offsets_equal_pytom_get_defocus_offsets(handedness: int) -> None:
    """tmfast's per-tilt defocus change at a sub-volume centre equals pytom's
    ``get_defocus_offsets`` (Å there, µm here; angles negated for handedness -1)."""
    from tmfast.filters.defocus_gradient import defocus_offsets_um

    tmjob = _import_behind_cupy_stub("pytom_tm.tmjob")
    rng = np.random.default_rng(8)
    tilts = sorted(rng.uniform(-60.0, 60.0, 11).tolist())
    meta = TiltSeriesMetaData(tilt_angles=tilts, defocus_handedness=handedness)
    for x_a, z_a in rng.uniform(-3000.0, 3000.0, (4, 2)):
        want_a = tmjob.get_defocus_offsets(x_a, z_a, meta)
        got_um = defocus_offsets_um(tilts, x_a, z_a, handedness)
        np.testing.assert_allclose(got_um * 1e4, want_a, rtol=1e-12, atol=1e-9)


# -------------------------------------------------------------------- rotation
def test_rotation_equals_voltools_about_the_same_centre() -> None:
    """tmfast's rotation of a template (prefiltered cubic B-spline, ZXZ matrix
    ``M(phi, theta, psi)``) equals pytom's (voltools ``rotation_order="rzxz"``,
    ``filt_bspline``, CPU) for every 37th rotation of the 38.53 deg set, when both
    turn about the same centre N//2. (pytom itself turns about (N-1)/2: see the unit
    case below.) The residual comes from the different out-of-box spline modes."""
    rng = np.random.default_rng(4)
    n = 24
    t = np.zeros((n,) * 3)
    t[6:18, 6:18, 6:18] = gaussian_filter(rng.standard_normal((12,) * 3), 0.8)
    t = gaussian_filter(t, 0.7).astype(np.float32)  # (x, y, z) for voltools
    coeffs = bspline_coefficients(np.ascontiguousarray(t.transpose(2, 1, 0)))
    for zxz in pytom_angle_set(38.53)[::37]:
        theirs = voltools.transform(
            t,
            rotation=tuple(zxz),
            rotation_units="rad",
            rotation_order="rzxz",
            center=(n // 2,) * 3,
            interpolation="filt_bspline",
            device="cpu",
        ).transpose(2, 1, 0)
        ours = rotate_volume(coeffs, zxz_to_matrices(zxz[None])[0])
        assert np.abs(ours - theirs).max() < 1e-4 * np.abs(theirs).max()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_tophat_mask_agrees_with_pytom(
    pytom_extract: types.ModuleType, connectivity: int, seed: int
) -> None:
    """Both top-hat constraints keep every planted sharp peak; tmfast's threshold
    lies within 25 % of pytom's (it fits a differently binned histogram, measured
    0.80-1.01 x pytom's, so it keeps more background voxels: docs/pytom-parity.md)."""
    from scipy import ndimage
    from tmfast.extraction.tophat import tophat_mask

    rng = np.random.default_rng(seed)
    scores = gaussian_filter(rng.standard_normal((60, 64, 56)), 0.8)
    scores = (0.05 * scores / scores.std()).astype(np.float32)
    peaks = rng.integers(5, 50, (30, 3))
    for q in peaks:
        scores[tuple(q)] += 0.4
    theirs = pytom_extract.predict_tophat_mask(
        scores.transpose(2, 1, 0).copy(),
        create_plot=False,
        tophat_connectivity=connectivity,
    ).transpose(2, 1, 0)
    ours = tophat_mask(scores, connectivity=connectivity)
    assert all(theirs[tuple(q)] for q in peaks)
    assert all(ours.mask[tuple(q)] for q in peaks)
    tophat = ndimage.white_tophat(
        scores, structure=ndimage.generate_binary_structure(3, connectivity)
    )
    lo, hi = tophat[~theirs].max(), tophat[theirs].min()  # pytom's cut in [lo, hi)
    assert 0.75 * lo <= ours.cutoff <= 1.25 * hi


# ------------------------------------------------------------------- the FLCF
@pytest.mark.parametrize("spherical", [True, False])
def test_cpu_backend_flcf_equals_pytom_masked_moments(spherical: bool) -> None:
    """Brute-force FLCF from pytom's own ``correlation`` functions at sampled voxels
    (template normalised under the mask, window mean and std under the mask, circular
    windows centred at N//2) equals the CpuBackend's score and angle maps. With a
    non-spherical mask (pytom's ellipsoid) the mask turns with the template and the
    local std is taken under the turned mask, as ``--non-spherical-mask``."""
    from pytom_tm.mask import ellipsoidal_mask

    corr = _import_behind_cupy_stub("pytom_tm.correlation")
    n, shape = 12, (26, 30, 28)
    c = n // 2
    rng = np.random.default_rng(8)
    vol = gaussian_filter(rng.standard_normal(shape), 1.0).astype(np.float32)
    tmpl = gaussian_filter(rng.standard_normal((n,) * 3), 1.0).astype(np.float32)
    if spherical:
        mask = spherical_mask(n, 5, 0.5).astype(np.float32)
    else:  # pytom arrays are (x, y, z); ours (z, y, x)
        mask = np.ascontiguousarray(
            ellipsoidal_mask(n, 5, 3, 2, 0.5).astype(np.float32).transpose(2, 1, 0)
        )
    zxz = np.array([[0, 0, 0], [0.4, 1.1, 2.0], [2.5, 0.3, 4.0], [5.0, 2.0, 1.0]])
    mats = zxz_to_matrices(zxz)
    backend = CpuBackend(workers=1)
    backend.prepare(
        CorrelationInputs(
            tomogram=vol,
            template=tmpl,
            mask=mask,
            template_weight=np.ones((n, n, n // 2 + 1), np.float32),
            mask_is_spherical=spherical,
        )
    )
    backend.score_rotations(0, mats)
    maps = backend.finalize()

    # oracle: tmfast's rotation (checked against voltools separately), then pytom's
    # normalisation and moments under the (turned) mask; tmfast clips a turned mask
    # to [0, 1] (intended difference: pytom's unclipped B-spline mask overshoots at
    # its edge and lets |FLCF| exceed 1; docs/pytom-parity.md)
    coeffs_t = bspline_coefficients(tmpl)
    coeffs_m = bspline_coefficients(mask)
    masks = [
        mask.astype(np.float64)
        if spherical
        else np.clip(rotate_volume(coeffs_m, m), 0.0, 1.0).astype(np.float64)
        for m in mats
    ]
    rotated = [
        corr.normalise(rotate_volume(coeffs_t, m).astype(np.float64), mr) * mr
        for m, mr in zip(mats, masks, strict=True)
    ]
    points = rng.integers(0, shape, (40, 3))
    for p in points:
        sl = tuple((np.arange(n) - c + p[a]) % shape[a] for a in range(3))
        win = vol[np.ix_(*sl)].astype(np.float64)
        s = []
        for t, mr in zip(rotated, masks, strict=True):
            mu = corr.mean_under_mask(win, mr)
            sd = corr.std_under_mask(win, mr, mu)
            s.append(float((t * win).sum() / (mr.sum() * sd)))
        assert maps.scores[tuple(p)] == pytest.approx(max(s), abs=2e-5)
        assert maps.angles[tuple(p)] == int(np.argmax(s))


# ------------------------------------------- pytom's own matching unit test case
def _pytom_unit_case(center: tuple[float, float, float] | None) -> dict[str, Any]:
    """pytom's test_template_matching setup (0.14 §5): 100^3 volume, 12^3 block
    template, mask r=5 sigma=0.5, 38.53 deg (480 rotations), rotation 100 planted
    at (x, y, z) = (77, 26, 40) with voltools (pytom's own rotation)."""
    t_size, loc = 12, (77, 26, 40)
    volume = np.zeros((100,) * 3, np.float32)
    template = np.zeros((t_size,) * 3, np.float32)
    template[3:8, 4:8, 3:7] = 1.0
    mask = spherical_mask(t_size, 5, 0.5).astype(np.float32)
    angles = np.array(pt_angles.angle_to_angle_list(38.53))
    h = t_size // 2
    kw = {} if center is None else {"center": center}
    volume[
        loc[0] - h : loc[0] + h, loc[1] - h : loc[1] + h, loc[2] - h : loc[2] + h
    ] = voltools.transform(
        template,
        rotation=tuple(angles[100]),
        rotation_units="rad",
        rotation_order="rzxz",
        device="cpu",
        **kw,
    )
    return {  # tmfast arrays are (z, y, x)
        "volume": np.ascontiguousarray(volume.transpose(2, 1, 0)),
        "template": np.ascontiguousarray(template.transpose(2, 1, 0)),
        "mask": np.ascontiguousarray(mask.transpose(2, 1, 0)),
        "angles": angles,
        "loc_zyx": loc[::-1],
    }


def _search(case: dict[str, Any], region: int | None) -> tuple[Any, tuple[int, ...]]:
    n = case["template"].shape[0]
    kw: dict[str, Any] = {}
    origin: tuple[int, ...] = (0, 0, 0)
    if region is not None:
        origin = tuple(int(v) - region // 2 for v in case["loc_zyx"])
        kw = {"search_origin_zyx": origin, "search_shape_zyx": (region,) * 3}
    maps = search_volume(
        case["volume"],
        case["template"],
        case["mask"],
        np.ones((n, n, n // 2 + 1), np.float32),
        case["angles"],
        backends=[CpuBackend()],
        **kw,
    )
    return maps, origin


def test_pytom_unit_case_rotation_about_box_centre_region() -> None:
    """Planted with voltools about tmfast's box centre N//2: the exact location,
    the exact rotation index 100 and LCC > 0.99, as pytom's test asserts. Reduced:
    the search region is the 20^3 voxels around the particle (same scores there)."""
    case = _pytom_unit_case(center=(6.0, 6.0, 6.0))
    maps, origin = _search(case, region=20)
    ind = np.unravel_index(np.argmax(maps.scores), maps.scores.shape)
    assert (
        tuple(int(i) + o for i, o in zip(ind, origin, strict=True)) == case["loc_zyx"]
    )
    assert maps.angles[ind] == 100
    assert maps.scores[ind] > 0.99


def test_pytom_unit_case_pytom_rotation_centre_region() -> None:
    """pytom's exact planting (voltools' default centre (N-1)/2 = 5.5): the planted
    particle's centre lies half a voxel from ``loc`` on every axis, so under
    tmfast's N//2 convention (docs/conventions.md) the peak is within one voxel of
    ``loc``, still at rotation 100, with LCC > 0.95 (measured 0.975)."""
    case = _pytom_unit_case(center=None)
    maps, origin = _search(case, region=20)
    ind = np.unravel_index(np.argmax(maps.scores), maps.scores.shape)
    pos = np.array([int(i) + o for i, o in zip(ind, origin, strict=True)])
    assert np.abs(pos - np.array(case["loc_zyx"])).max() <= 1
    assert maps.angles[ind] == 100
    assert maps.scores[ind] > 0.95


@pytest.mark.slow
def test_pytom_unit_case_full_volume() -> None:
    """pytom's case exactly as pytom plants it, whole 100^3 volume, all 480
    rotations (about 31 s on 2 cores): the global maximum is within one voxel of
    ``loc`` (half-voxel centre convention) at rotation 100 with LCC > 0.95, no score
    exceeds 1 anywhere (an FLCF is a Pearson correlation; the CPU backend as of
    commit adc6d89 gave 11,732 voxels above 1, up to 10.8, in the empty regions),
    and the search covers 480e6 voxel-rotations."""
    case = _pytom_unit_case(center=None)
    maps, _ = _search(case, region=None)
    ind = np.unravel_index(np.argmax(maps.scores), maps.scores.shape)
    pos = np.array([int(i) for i in ind])
    assert np.abs(pos - np.array(case["loc_zyx"])).max() <= 1
    assert maps.angles[ind] == 100
    assert maps.scores[ind] > 0.95
    assert np.abs(maps.scores).max() <= 1.0 + 1e-3
    assert maps.searched.sum() * len(case["angles"]) == 480 * 10**6
