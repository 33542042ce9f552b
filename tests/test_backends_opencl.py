"""The GPU backends against the cpu backend and planted ground truth.

Each device test runs once per GPU API through the ``make_gpu`` fixture: ``opencl``
(PoCL in CI; marker ``opencl``) and ``cuda`` (marker ``gpu``, on a CUDA host), so the
one kernel source and host pipeline are checked the same way on both.

The cpu backend (numpy + scipy.fft, float64 statistics) is the oracle; the GPU path
must reproduce its score, angle, sum and sum-of-squares maps within 1e-4, with angle
indices equal except where two rotations tie within float rounding (checked by
scoring those two rotations separately on the CPU).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from tmfast.backends import _gpu, cuda
from tmfast.backends._cpu_fft import fftw_available
from tmfast.backends.base import CorrelationInputs, RunningMaps
from tmfast.backends.cpu import CpuBackend
from tmfast.errors import ConfigError, GpuOutOfMemoryError
from tmfast.geometry.interpolation import bspline_coefficients, rotate_volume
from tmfast.geometry.rotations import zxz_to_matrices

opencl = pytest.importorskip("tmfast.backends.opencl")
_OK, _REASON = opencl.is_available()
_CUDA_OK, _CUDA_REASON = cuda.is_available()
needs_opencl = [
    pytest.mark.opencl,
    pytest.mark.skipif(not _OK, reason=f"opencl backend unavailable: {_REASON}"),
]
needs_cuda = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not _CUDA_OK, reason=f"cuda backend unavailable: {_CUDA_REASON}"
    ),
]


@dataclasses.dataclass(frozen=True)
class GpuFactory:
    """Makes backends of one GPU API (device 0) with the shared keyword arguments."""

    api: str

    def __call__(self, **kwargs: Any) -> _gpu.GpuMatchBackend:
        if self.api == "cuda":
            return cuda.CudaBackend(0, **kwargs)
        return opencl.OpenCLBackend(**kwargs)


@pytest.fixture(
    params=[
        pytest.param("opencl", marks=needs_opencl),
        pytest.param("cuda", marks=needs_cuda),
    ]
)
def make_gpu(request: pytest.FixtureRequest) -> GpuFactory:
    return GpuFactory(request.param)


TOL = 1e-4


def _radial_k(n: int) -> np.ndarray:
    kz = np.fft.fftfreq(n)[:, None, None]
    ky = np.fft.fftfreq(n)[None, :, None]
    kx = np.fft.rfftfreq(n)[None, None, :]
    return np.sqrt(kz**2 + ky**2 + kx**2)


def _inputs(
    kind: str, *, n: int = 10, shape: tuple[int, int, int] = (32, 36, 40), seed: int = 0
) -> CorrelationInputs:
    """Smooth random template in a soft envelope, band-pass weight, noise tomogram."""
    rng = np.random.default_rng(seed)
    g = np.indices((n,) * 3) - n // 2
    r = np.sqrt((g**2).sum(axis=0))
    envelope = np.exp(-(r**2) / (2 * (n / 5) ** 2))
    template = (rng.standard_normal((n,) * 3) * envelope + envelope).astype(np.float32)
    if kind == "non_spherical":
        z, y, x = g
        ell = np.sqrt((x / 1.4) ** 2 + y**2 + (z * 1.3) ** 2)
        mask = np.clip(n / 2 - 0.5 - ell, 0.0, 1.0).astype(np.float32)
    else:
        mask = np.clip(n / 2 - 0.5 - r, 0.0, 1.0).astype(np.float32)
    k = _radial_k(n)
    weight = (np.exp(-(k**2) / 0.1) * (k > 0)).astype(np.float32)
    tomo = rng.standard_normal(shape).astype(np.float32)
    noise = None
    if kind == "random_phase":
        noise = (rng.standard_normal((n,) * 3) * envelope).astype(np.float32)
    return CorrelationInputs(
        tomogram=tomo,
        template=template,
        mask=mask,
        template_weight=weight,
        mask_is_spherical=kind != "non_spherical",
        noise_template=noise,
    )


def _matrices(count: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0.0, 2.0 * np.pi, (count, 3))
    angles[:, 1] = rng.uniform(0.0, np.pi, count)
    return zxz_to_matrices(angles)


def _cpu(
    inputs: CorrelationInputs, mats: np.ndarray, first: int = 0, fft: str = "auto"
) -> RunningMaps:
    cpu = CpuBackend(workers=1, fft=fft)
    cpu.prepare(inputs)
    cpu.score_rotations(first, mats)
    return cpu.finalize()


def _assert_angles_equal_or_tied(
    inputs: CorrelationInputs, mats: np.ndarray, ref: RunningMaps, got: RunningMaps
) -> None:
    differ = np.argwhere(ref.angles != got.angles)
    assert len(differ) <= 5, f"{len(differ)} voxels choose a different rotation"
    for z, y, x in differ:
        a, b = int(ref.angles[z, y, x]), int(got.angles[z, y, x])
        sa = _cpu(inputs, mats[a : a + 1]).scores[z, y, x]
        sb = _cpu(inputs, mats[b : b + 1]).scores[z, y, x]
        assert abs(float(sa) - float(sb)) < 1e-5, (z, y, x, a, b, sa, sb)


def _assert_maps_close(ref: RunningMaps, got: RunningMaps) -> None:
    np.testing.assert_allclose(got.scores, ref.scores, rtol=0, atol=TOL)
    np.testing.assert_allclose(got.score_sum, ref.score_sum, rtol=0, atol=TOL)
    np.testing.assert_allclose(got.score_sq_sum, ref.score_sq_sum, rtol=0, atol=TOL)
    assert got.n_rotations_done == ref.n_rotations_done
    if ref.noise_scores is None:
        assert got.noise_scores is None
    else:
        assert got.noise_scores is not None
        np.testing.assert_allclose(got.noise_scores, ref.noise_scores, rtol=0, atol=TOL)


@pytest.mark.parametrize(
    ("kind", "n", "pruned", "fused"),
    [
        ("spherical", 10, True, True),
        ("spherical", 11, True, True),
        ("non_spherical", 10, True, True),
        ("random_phase", 12, True, True),
        ("spherical", 11, True, False),  # pruned, separate z FFT and 3-D inverse
        ("non_spherical", 10, True, False),
        ("random_phase", 12, True, False),
        ("spherical", 11, False, True),  # the full 3-D R2C path (fused_z unused)
        ("non_spherical", 10, False, True),
    ],
)
def test_gpu_equals_cpu(
    kind: str, n: int, pruned: bool, fused: bool, make_gpu: GpuFactory
) -> None:
    inputs = _inputs(kind, n=n)
    mats = _matrices(10)
    ref = _cpu(inputs, mats)
    # 10 rotations: batches of 4, 4, 2
    backend = make_gpu(max_batch=4, pruned_forward=pruned, fused_z=fused)
    backend.prepare(inputs)
    assert backend.plan is not None and backend.plan.batch == 4
    # nz = 32 = 4 * 4 * 2: the fused z stage applies whenever it is asked for
    assert backend.plan.fused_z == (pruned and fused)
    backend.score_rotations(0, mats[:7])  # 7 = 4 + 3: a partial batch mid-run
    backend.score_rotations(7, mats[7:])
    got = backend.finalize()
    assert np.isfinite(got.scores).all()
    assert got.scores.dtype == np.float32 and got.angles.dtype == np.int32
    assert got.score_sum.dtype == np.float64
    _assert_maps_close(ref, got)
    _assert_angles_equal_or_tied(inputs, mats, ref, got)
    # the correlation is not trivially small: real signal passed through
    assert float(np.abs(ref.scores).max()) > 0.1


@pytest.mark.parametrize("kind", ["spherical", "non_spherical", "random_phase"])
def test_snapshot_and_resume_continue_the_search(
    kind: str, make_gpu: GpuFactory
) -> None:
    inputs = _inputs(kind, shape=(32, 32, 34), seed=3)
    mats = _matrices(6, seed=4)
    ref = _cpu(inputs, mats)
    first = make_gpu(max_batch=2)
    first.prepare(inputs)
    first.score_rotations(0, mats[:3])
    snap = first.snapshot()
    first.close()
    assert snap.n_rotations_done == 3
    assert np.all(snap.angles < 3) and np.all(snap.angles >= 0)
    second = make_gpu(max_batch=1)  # the unbatched plan shapes
    second.prepare(inputs, resume_from=snap)
    second.score_rotations(3, mats[3:])
    got = second.finalize()
    _assert_maps_close(ref, got)
    _assert_angles_equal_or_tied(inputs, mats, ref, got)


def test_planted_copy_is_found_at_its_position_and_rotation(
    make_gpu: GpuFactory,
) -> None:
    n, shape = 12, (40, 40, 44)
    rng = np.random.default_rng(7)
    g = np.indices((n,) * 3) - n // 2
    z, y, x = g
    # asymmetric template: blobs along +x, +y, +z of different sizes
    template = np.exp(-((x**2 + y**2 + z**2) / 4.0))
    template += 0.8 * np.exp(-(((x - 3) ** 2 + y**2 + z**2) / 2.0))
    template += 0.5 * np.exp(-((x**2 + (y - 3) ** 2 + z**2) / 1.5))
    template = template.astype(np.float32)
    mats = _matrices(8, seed=9)
    true_rot = 5
    rotated = rotate_volume(bspline_coefficients(template), mats[true_rot])
    tomo = 0.05 * rng.standard_normal(shape).astype(np.float32)
    pos_zyx = (17, 22, 25)
    c = n // 2
    tomo[
        pos_zyx[0] - c : pos_zyx[0] - c + n,
        pos_zyx[1] - c : pos_zyx[1] - c + n,
        pos_zyx[2] - c : pos_zyx[2] - c + n,
    ] += rotated
    r = np.sqrt((g**2).sum(axis=0))
    inputs = CorrelationInputs(
        tomogram=tomo,
        template=template,
        mask=(r <= n / 2 - 1).astype(np.float32),
        template_weight=np.ones((n, n, n // 2 + 1), dtype=np.float32),
    )
    backend = make_gpu()
    backend.prepare(inputs)
    backend.score_rotations(0, mats)
    maps = backend.finalize()
    peak = np.unravel_index(int(np.argmax(maps.scores)), shape)
    assert tuple(int(p) for p in peak) == pos_zyx
    assert int(maps.angles[pos_zyx]) == true_rot
    assert maps.scores[pos_zyx] > 0.9


@pytest.mark.parametrize(
    ("pruned", "fused"),
    [(True, True), (True, False), (False, True)],
    ids=["pruned_fused_z", "pruned_fft", "full_fft"],
)
def test_device_buffers_match_the_memory_estimate(
    pruned: bool, fused: bool, make_gpu: GpuFactory
) -> None:
    for kind in ("spherical", "non_spherical", "random_phase"):
        inputs = _inputs(kind)
        backend = make_gpu(max_batch=3, pruned_forward=pruned, fused_z=fused)
        backend.prepare(inputs)
        assert backend.plan is not None
        job = backend._job
        assert job is not None
        allocated = sum(
            int(v.nbytes)
            for k, v in job.items()
            if hasattr(v, "nbytes")
            and not isinstance(v, np.ndarray)  # host copies
            and not k.endswith("_fft")  # views of the same buffers
        )
        est = _gpu.estimate_device_bytes(
            inputs.tomogram.shape,  # type: ignore[arg-type]
            inputs.template.shape[0],
            batch=3,
            mask_is_spherical=inputs.mask_is_spherical,
            with_noise=inputs.noise_template is not None,
            pruned_forward=pruned,
            fused_z=fused,
        )
        assert est == backend.plan.total_bytes
        # the estimate covers what stays allocated and is not a gross overestimate
        assert allocated <= est <= 1.6 * allocated, (kind, allocated, est)
        backend.close()


def test_zline_radices_factor_the_z_length_or_refuse() -> None:
    assert _gpu.zline_radices(256) == (8, 8, 4)
    assert _gpu.zline_radices(32) == (8, 4)  # the tests' nz: radices 8 and 4
    assert _gpu.zline_radices(250) == (2, 5, 5, 5)
    assert _gpu.zline_radices(210) == (2, 3, 5, 7)
    assert _gpu.zline_radices(1) == ()
    assert _gpu.zline_radices(202) is None  # 2 * 101
    assert _gpu.zline_radices(_gpu.ZLINE_LMEM) is None  # a column must fit
    # both local buffers fit the 32 KiB every OpenCL device has (float2: 8 bytes)
    assert 2 * _gpu.ZLINE_LMEM * 8 <= 32 * 1024
    for nz in (27, 200, 256, 300, 512, 1000, 1944):
        cols = _gpu.zline_columns(nz)
        assert 1 <= cols * (nz + 1) <= _gpu.ZLINE_LMEM
        assert int(np.prod(_gpu.zline_radices(nz))) == nz
    shape = (202, 64, 64)
    assert not _gpu.uses_fused_z(shape, pruned_forward=True, fused_z=True)
    assert _gpu.uses_fused_z((200, 64, 64), pruned_forward=True, fused_z=True)
    assert not _gpu.uses_fused_z((200, 64, 64), pruned_forward=False, fused_z=True)


@pytest.mark.opencl
def test_batch_shrinks_then_out_of_memory_error_names_the_fix() -> None:
    shape, n = (256, 512, 512), 72
    kwargs = {"mask_is_spherical": True, "with_noise": False, "device_name": "test GPU"}
    big = _gpu.plan_buffers(
        shape,
        n,
        free_bytes=80 * 1024**3,
        max_alloc_bytes=80 * 1024**3,
        max_batch=8,
        **kwargs,
    )
    small = _gpu.plan_buffers(
        shape,
        n,
        free_bytes=8 * 1024**3,
        max_alloc_bytes=8 * 1024**3,
        max_batch=8,
        **kwargs,
    )
    assert big.batch == 8
    assert 1 <= small.batch < big.batch
    assert small.total_bytes <= 8 * 1024**3
    assert _gpu.estimate_device_bytes(
        shape, n, batch=2, **{k: v for k, v in kwargs.items() if k != "device_name"}
    ) > _gpu.estimate_device_bytes(
        shape, n, batch=1, **{k: v for k, v in kwargs.items() if k != "device_name"}
    )
    with pytest.raises(GpuOutOfMemoryError, match=r"-s/--volume-split"):
        _gpu.plan_buffers(
            shape,
            n,
            free_bytes=2 * 1024**3,
            max_alloc_bytes=2 * 1024**3,
            max_batch=8,
            **kwargs,
        )


def test_prepare_raises_out_of_memory_before_allocating(
    monkeypatch: pytest.MonkeyPatch, make_gpu: GpuFactory
) -> None:
    backend = make_gpu()
    monkeypatch.setattr(backend._ops, "memory", lambda: (1024 * 1024, 1024 * 1024))
    with pytest.raises(GpuOutOfMemoryError, match="split the volume"):
        backend.prepare(_inputs("spherical"))
    assert backend._job is None


def test_bad_inputs_and_device_index_raise_config_errors(make_gpu: GpuFactory) -> None:
    with pytest.raises(ConfigError, match="99 does not exist"):
        if make_gpu.api == "cuda":
            cuda.CudaBackend(99)
        else:
            opencl.OpenCLBackend(device_index=99)
    backend = make_gpu()
    good = _inputs("spherical")
    with pytest.raises(ConfigError, match="prepare"):
        backend.score_rotations(0, _matrices(1))
    bad_weight = CorrelationInputs(
        tomogram=good.tomogram,
        template=good.template,
        mask=good.mask,
        template_weight=np.ones((10, 10, 10), dtype=np.float32),
    )
    with pytest.raises(ConfigError, match="template_weight shape"):
        backend.prepare(bad_weight)
    backend.prepare(good)
    with pytest.raises(ConfigError, match=r"\(B, 3, 3\)"):
        backend.score_rotations(0, np.eye(3))


def test_non_hermitian_weight_warns(make_gpu: GpuFactory) -> None:
    good = _inputs("spherical")
    w = good.template_weight.copy()
    w[1, 2, 0] *= 0.5  # breaks w(k) = w(-k) on the kx = 0 plane
    inputs = CorrelationInputs(
        tomogram=good.tomogram,
        template=good.template,
        mask=good.mask,
        template_weight=w,
    )
    backend = make_gpu()
    with pytest.warns(RuntimeWarning, match="not symmetric"):
        backend.prepare(inputs)
    backend.close()


@pytest.mark.opencl
def test_registry_import_loads_no_gpu_library() -> None:
    code = (
        "import sys, tmfast, tmfast.backends.registry, tmfast.backends.base;"
        "bad = [m for m in ('pyopencl', 'pycuda', 'pyvkfft') if m in sys.modules];"
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, f"imported GPU modules: {res.stdout} {res.stderr}"


def test_second_prepare_reuses_fft_plans_and_stays_correct(
    make_gpu: GpuFactory,
) -> None:
    backend = make_gpu(max_batch=2)
    mats = _matrices(3, seed=5)
    backend.prepare(_inputs("spherical", seed=1))
    plans = dict(backend._plans)
    backend.score_rotations(0, mats)
    backend.finalize()
    other = _inputs("spherical", seed=2)  # same shapes, new data (the next tile)
    backend.prepare(other)
    assert all(backend._plans[k] is v for k, v in plans.items())
    backend.score_rotations(0, mats)
    _assert_maps_close(_cpu(other, mats), backend.finalize())
    backend.close()
    assert backend._plans == {}


def test_engine_search_with_gpu_equals_cpu(make_gpu: GpuFactory) -> None:
    from tmfast.matching.engine import search_volume

    inputs = _inputs("non_spherical", shape=(32, 40, 44), seed=6)
    rng = np.random.default_rng(8)
    angles = np.column_stack(
        [rng.uniform(0, 2 * np.pi, 9), rng.uniform(0, np.pi, 9), rng.uniform(0, 6, 9)]
    )
    kwargs = {
        "mask_is_spherical": False,
        "split_xyz": (2, 1, 1),
        "batch_rotations": 4,
    }
    args = (inputs.tomogram, inputs.template, inputs.mask, inputs.template_weight)
    ref = search_volume(*args, angles, backends=[CpuBackend(workers=1)], **kwargs)
    got = search_volume(*args, angles, backends=[make_gpu()], **kwargs)
    np.testing.assert_allclose(got.scores, ref.scores, atol=TOL, rtol=0)
    assert np.mean(got.angles == ref.angles) > 0.9999


@pytest.mark.parametrize("kind", ["spherical", "non_spherical"])
def test_tomogram_offset_does_not_cost_precision(
    kind: str, make_gpu: GpuFactory
) -> None:
    """Adding a constant leaves scores unchanged in exact arithmetic (the normalised
    template sums to zero and sigma_local is shift-invariant); float32 spectra of an
    offset volume must not lose that (E[V^2] - E[V]^2 cancellation)."""
    centred = _inputs(kind, seed=12)
    offset = dataclasses.replace(centred, tomogram=centred.tomogram + np.float32(50.0))
    mats = _matrices(4, seed=13)
    ref = _cpu(centred, mats)
    backend = make_gpu()
    backend.prepare(offset)
    backend.score_rotations(0, mats)
    _assert_maps_close(ref, backend.finalize())


def test_fits_agrees_with_the_device_memory(make_gpu: GpuFactory) -> None:
    backend = make_gpu()
    free_b, _ = backend._ops.memory()
    opts = {"mask_is_spherical": True, "with_noise": False}
    assert backend.fits((32, 32, 32), 10, **opts)
    # a volume whose running maps alone exceed the device memory cannot fit
    side = round((free_b / 24) ** (1 / 3)) + 64
    assert not backend.fits((side, side, side), 10, **opts)
    assert _gpu.estimate_device_bytes((side, side, side), 10, batch=1, **opts) > free_b


@pytest.mark.parametrize(
    ("kind", "n", "shape"),
    [
        ("spherical", 11, (33, 35, 45)),
        ("non_spherical", 9, (27, 25, 30)),
        ("spherical", 9, (35, 24, 28)),  # z FFT of radices 5 and 7
        ("random_phase", 8, (30, 26, 21)),  # radices 2, 3, 5; odd x
    ],
)
def test_odd_volume_and_box_sizes(
    kind: str, n: int, shape: tuple[int, int, int], make_gpu: GpuFactory
) -> None:
    inputs = _inputs(kind, n=n, shape=shape, seed=14)
    mats = _matrices(5, seed=15)
    backend = make_gpu(max_batch=2, fused_z=True)
    backend.prepare(inputs)
    # 27 = 3^3, 35 = 5 * 7 and 30 run the fused z stage; 33 = 3 * 11 cannot
    assert backend.plan is not None
    assert backend.plan.fused_z == (shape[0] != 33)
    backend.score_rotations(0, mats)
    got = backend.finalize()
    ref = _cpu(inputs, mats)
    _assert_maps_close(ref, got)
    _assert_angles_equal_or_tied(inputs, mats, ref, got)


def _flat_region_inputs(
    kind: str,
) -> tuple[CorrelationInputs, np.ndarray, tuple[int, ...]]:
    """A tomogram that is mostly flat: zeros (the padding of a cropped volume) and a
    constant slab (a flat, filtered region), beside a noise region (the data) with
    one planted particle (rotation 2)."""
    n, shape = 10, (32, 34, 36)
    rng = np.random.default_rng(21)
    g = np.indices((n,) * 3) - n // 2
    r = np.sqrt((g**2).sum(axis=0))
    z, y, x = g
    template = np.exp(-((x**2 + y**2 + z**2) / 5.0))
    template += 0.7 * np.exp(-(((x - 2) ** 2 + (y + 1) ** 2 + z**2) / 2.0))
    template = template.astype(np.float32)
    mats = _matrices(6, seed=22)
    tomo = np.zeros(shape, np.float32)  # zero padding around the data
    tomo[:, 22:, :] = 2.0  # a constant slab
    # the data: noise with one planted copy (rotation 2) inside
    tomo[2:28, 0:17, 3:33] = rng.standard_normal((26, 17, 30))
    pos = (14, 9, 18)
    c = n // 2
    sl = tuple(slice(p - c, p - c + n) for p in pos)
    tomo[sl] += 4.0 * rotate_volume(bspline_coefficients(template), mats[2])
    # binary masks: a soft rim's tiny weights would put windows that barely touch
    # the data just above the floor
    if kind == "non_spherical":
        ell = np.sqrt((x / 1.4) ** 2 + y**2 + (z * 1.3) ** 2)
        mask = (ell <= n / 2 - 1).astype(np.float32)
    else:
        mask = (r <= n / 2 - 1).astype(np.float32)
    k = _radial_k(n)
    inputs = CorrelationInputs(
        tomogram=tomo,
        template=template,
        mask=mask,
        template_weight=(np.exp(-(k**2) / 0.1) * (k > 0)).astype(np.float32),
        mask_is_spherical=kind != "non_spherical",
        noise_template=None,
    )
    return inputs, mats, pos


@pytest.mark.parametrize("kind", ["spherical", "non_spherical"])
def test_flat_regions_use_the_cpu_variance_floor(
    kind: str, make_gpu: GpuFactory
) -> None:
    """Where the local variance is float32 rounding noise (zero and constant regions)
    the GPU path applies the cpu backend's relative floor (sigma = 1 where the
    variance of the standardised volume is <= 1e-4 (E[V^2] + 1)), so scores there are
    ~0 on both backends (an absolute 1e-18 floor gave |FLCF| of several, and before
    this rule the opencl backend differed from cpu by up to 0.48 on 43% of voxels).

    Voxels whose window barely reaches the data have a local sigma ~1e-2: float32
    FFT rounding of E[V^2] - E[V]^2 and of the correlation is amplified 100x there,
    and any two FFT libraries differ by up to ~1e-3; those few voxels get that
    bound, all others the usual 1e-4."""
    from scipy import ndimage
    from tmfast.backends import cpu as cpu_module

    assert _gpu.VAR_REL_FLOOR == cpu_module._VAR_REL_FLOOR
    inputs, mats, pos = _flat_region_inputs(kind)
    backend = make_gpu(max_batch=4)
    backend.prepare(inputs)
    backend.score_rotations(0, mats)
    got = backend.finalize()
    n = inputs.template.shape[0]
    tomo = inputs.tomogram
    # windows (the template box around a voxel, circularly) holding one value only
    flat = ndimage.maximum_filter(tomo, size=n, mode="wrap") == ndimage.minimum_filter(
        tomo, size=n, mode="wrap"
    )
    assert flat.sum() > 0.05 * flat.size  # ~3500 voxels
    assert float(np.abs(got.scores[flat]).max()) < 1e-3
    # both cpu FFT engines (they agree to 1e-5 here). The sums of 99.885% of the
    # voxels are within TOL of opencl's with either; the others are edge voxels
    # (sigma ~1e-2), whose count moves with the float32 rounding order of the mask's
    # FFT (it was over 99.9% with the z and y passes in the other order).
    for fft in ("scipy", "fftw") if fftw_available() is None else ("scipy",):
        ref = _cpu(inputs, mats, fft=fft)
        assert float(np.abs(ref.scores[flat]).max()) < 1e-3
        diff = np.abs(got.scores.astype(np.float64) - ref.scores)
        assert float(diff[flat].max()) < 1e-5
        assert float(diff.max()) < 2e-3
        assert np.mean(diff <= TOL) > 0.998
        sums = np.abs(got.score_sum - ref.score_sum)
        assert np.mean(sums <= TOL) > 0.998 and float(sums.max()) < 1e-2
    # FLCF is a correlation coefficient: |score| <= 1 also for a rotated mask, which
    # both backends clip to [0, 1] after the B-spline rotation (unclipped, the
    # interpolation's over- and undershoot gave 1.09 at a data edge)
    assert float(np.abs(ref.scores).max()) <= 1.0 + 1e-5
    assert float(np.abs(got.scores).max()) <= 1.0 + 1e-5
    if kind == "spherical":
        # the planted particle is the highest peak
        peak = np.unravel_index(int(np.argmax(got.scores)), got.scores.shape)
        assert tuple(int(p) for p in peak) == pos
    assert int(got.angles[pos]) == 2
    assert got.scores[pos] > 0.5
