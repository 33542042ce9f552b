"""GPU backend benchmark: ms per rotation for spherical, non-spherical and random-phase
jobs, with the cpu backend timed in the same run on the same data as the reference.

Quick mode (default, ``--benchmark-disable``): a 48x48x48 volume, 12^3 template and
8 rotations; runs as a plain test on whatever GPU backend is available (PoCL's CPU
device in CI, where the figures are correctness runs, not speed) and checks that
the GPU maps equal the cpu backend's within 1e-4.

Full mode: set ``TMFAST_BENCH_GPU_FULL=1`` (512x512x256 volume, 72^3 template, a
timed subset of ``TMFAST_BENCH_GPU_ROTATIONS`` rotations, default 64; the cpu
reference scores the first rotation, the identity). ``TMFAST_BENCH_GPU_BACKEND``
forces ``cuda`` or ``opencl``; ``TMFAST_BENCH_GPU_KINDS`` (comma-separated) picks
the job kinds of ``python benchmarks/bench_gpu.py``. Figures go to
``benchmark.extra_info`` (``--benchmark-enable --benchmark-json=FILE``) and, with
``python benchmarks/bench_gpu.py``, to stdout as JSON lines.

pytom-match-pick side by side: where ``pytom_tm`` and CuPy import and a CUDA device
is present (the GPU host kit, tools/gpu-host-run.sh), the same tomogram, template,
mask, weight and angle list are searched by ``pytom_tm.matching.TemplateMatchingGPU``
too; its ms per rotation (the difference of a run over all rotations and one over
the first ``cpu rotations``, after an untimed warm-up run that compiles CuPy's
kernels and plans, so its setup is not counted) and the Pearson correlation and
peak agreement of the two score maps are added to the figures. For random-phase
jobs pytom is given the same noise template (its own phase randomisation draws
another one, and the corrected maps would then differ by design).
Three copies of the template are planted so that the peaks are real ones; the
template is ``TMFAST_BENCH_GPU_TEMPLATE`` (``demo``: tmfast's smooth built-in one,
the default; ``noise``: noise in a Gaussian envelope, as in the 2026-11-26 figures).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np
import pytest
from tmfast.backends.base import CorrelationInputs, MatchBackend, RunningMaps
from tmfast.backends.cpu import CpuBackend
from tmfast.geometry.rotations import zxz_to_matrices
from tmfast.matching.stats import noise_corrected_scores

KINDS = ("spherical", "non_spherical", "random_phase")


def _full() -> bool:
    return os.environ.get("TMFAST_BENCH_GPU_FULL", "") not in ("", "0")


def _sizes() -> tuple[tuple[int, int, int], int, int, int]:
    """Return (volume shape zyx, template box, gpu rotations, cpu rotations)."""
    if _full():
        n_rot = int(os.environ.get("TMFAST_BENCH_GPU_ROTATIONS", "64"))
        # one cpu rotation: the identity (row 0), so that pytom's first run, over
        # the same single rotation, compares the maps without any interpolation
        return (256, 512, 512), 72, n_rot, 1
    return (48, 48, 48), 12, 8, 8


def _gpu_backend() -> tuple[str, Any] | None:
    forced = os.environ.get("TMFAST_BENCH_GPU_BACKEND")
    for name in (forced,) if forced else ("cuda", "opencl"):
        module = __import__(f"tmfast.backends.{name}", fromlist=["is_available"])
        if module.is_available()[0]:
            cls = module.CudaBackend if name == "cuda" else module.OpenCLBackend
            return name, cls
    return None


def _template(n: int, rng: np.random.Generator, envelope: np.ndarray) -> np.ndarray:
    """``TMFAST_BENCH_GPU_TEMPLATE``: ``demo`` (default; tmfast's smooth built-in
    asymmetric template, like a low-passed real one) or ``noise`` (Gaussian noise in
    a Gaussian envelope: rich in high frequencies; the 2026-11-26 H200 figures)."""
    kind = os.environ.get("TMFAST_BENCH_GPU_TEMPLATE", "demo")
    if kind == "demo":
        from tmfast.matching.demo import demo_template

        return np.ascontiguousarray(demo_template(n), dtype=np.float32)
    if kind == "noise":
        return (rng.standard_normal((n,) * 3) * envelope + envelope).astype(np.float32)
    raise ValueError(f"TMFAST_BENCH_GPU_TEMPLATE={kind!r}: use 'demo' or 'noise'")


def _inputs(kind: str, shape: tuple[int, int, int], n: int) -> CorrelationInputs:
    rng = np.random.default_rng(0)
    g = np.indices((n,) * 3, dtype=np.float32) - n // 2
    r = np.sqrt((g**2).sum(axis=0))
    envelope = np.exp(-(r**2) / (2 * (n / 5) ** 2))
    template = _template(n, rng, envelope)
    if kind == "non_spherical":
        z, y, x = g
        ell = np.sqrt((x / 1.3) ** 2 + y**2 + (z * 1.2) ** 2)
        mask = np.clip(n / 2 - 1 - ell, 0, 1).astype(np.float32)
    else:
        mask = np.clip(n / 2 - 1 - r, 0, 1).astype(np.float32)
    kz = np.fft.fftfreq(n)[:, None, None]
    ky = np.fft.fftfreq(n)[None, :, None]
    kx = np.fft.rfftfreq(n)[None, None, :]
    k = np.sqrt(kz**2 + ky**2 + kx**2)
    weight = (np.exp(-(k**2) / 0.1) * (k > 0)).astype(np.float32)
    tomo = np.empty(shape, np.float32)
    for i in range(shape[0]):  # slab by slab: no float64 volume temporaries
        tomo[i] = rng.standard_normal(shape[1:], dtype=np.float32)
    for pos in _planted_zyx(shape, n):  # unrotated copies: rotation index 0
        sl = tuple(slice(p - n // 2, p - n // 2 + n) for p in pos)
        tomo[sl] += 3.0 * template
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


def _planted_zyx(shape: tuple[int, int, int], n: int) -> list[tuple[int, int, int]]:
    """Centres of the planted copies: a quarter, a half and three quarters in."""
    return [tuple(int(s * f) for s in shape) for f in (0.25, 0.5, 0.75)]  # type: ignore[misc]


def _angles_zxz(count: int) -> np.ndarray:
    """ZXZ angles (radians); row 0 is the identity (the planted copies)."""
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 2 * np.pi, (count, 3))
    a[:, 1] = rng.uniform(0, np.pi, count)
    a[0] = 0.0
    return a


def _matrices(count: int) -> np.ndarray:
    return zxz_to_matrices(_angles_zxz(count))


def _pytom_weight_xyz(n: int) -> np.ndarray:
    """The bench weight on pytom's grid: (x, y, z) with the rfft half along z (the
    weight depends on |k| only, so it is the same function)."""
    kx = np.fft.fftfreq(n)[:, None, None]
    ky = np.fft.fftfreq(n)[None, :, None]
    kz = np.fft.rfftfreq(n)[None, None, :]
    k = np.sqrt(kx**2 + ky**2 + kz**2)
    return (np.exp(-(k**2) / 0.1) * (k > 0)).astype(np.float32)


def run_pytom(
    kind: str,
    inputs: CorrelationInputs,
    angles: np.ndarray,
    n_first: int,
    ours: np.ndarray,
    ours_first: np.ndarray,
) -> dict[str, Any]:
    """Time pytom-match-pick on the same job; compare its score map with ``ours``.

    Returns an empty dict when pytom_tm, CuPy or a CUDA device is missing, and
    ``{"pytom_error": ...}`` when pytom fails on the job.
    """
    try:
        import cupy
        from pytom_tm.matching import TemplateMatchingGPU

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return {}
    except Exception:  # ImportError, or CuPy without a driver
        return {}
    n = inputs.template.shape[0]
    vol = np.ascontiguousarray(inputs.tomogram.transpose(2, 1, 0))
    tmpl = np.ascontiguousarray(inputs.template.transpose(2, 1, 0))
    mask = np.ascontiguousarray(inputs.mask.transpose(2, 1, 0))
    wedge = _pytom_weight_xyz(n)
    if inputs.noise_template is not None:  # the same noise template as ours
        import pytom_tm.matching as pytom_matching

        noise_xyz = np.ascontiguousarray(inputs.noise_template.transpose(2, 1, 0))
        pytom_matching._phase_randomize_template = lambda *a, **k: noise_xyz

    def timed(count: int) -> tuple[float, np.ndarray]:
        job = TemplateMatchingGPU(
            "bench",
            0,
            vol,
            tmpl,
            mask,
            angle_list=[tuple(float(v) for v in a) for a in angles[:count]],
            angle_ids=list(range(count)),
            mask_is_spherical=kind != "non_spherical",
            wedge=wedge,
            noise_correction=kind == "random_phase",
        )
        t0 = time.perf_counter()
        scores, _angle_map, _stats = job.run()  # host arrays: synchronised
        return time.perf_counter() - t0, np.asarray(scores).transpose(2, 1, 0)

    try:
        timed(n_first)  # warm-up: CuPy compiles its kernels and FFT plans here
        t_first, scores_first = timed(n_first)
        t_all, scores = timed(len(angles))
    except Exception as exc:  # a pytom/CuPy/voltools fault must not hide our figures
        return {"pytom_error": f"{type(exc).__name__}: {exc}"[:300]}
    ms = (t_all - t_first) * 1e3 / (len(angles) - n_first)
    pearson = _pearson(ours, scores)
    shape = ours.shape
    peaks_same = []
    for pos in _planted_zyx(shape, n):  # the best voxel near each planted copy
        near = tuple(slice(p - 2, p + 3) for p in pos)
        best = [
            np.unravel_index(int(np.argmax(m[near])), m[near].shape)
            for m in (ours, scores)
        ]
        peaks_same.append(tuple(best[0]) == tuple(best[1]))
    return {
        "pytom_ms_per_rotation": round(ms, 3),
        "pearson_vs_pytom": round(pearson, 5),
        # the first n_first rotations only (the identity in full mode: no
        # interpolation, so what is left is the correlation arithmetic itself)
        "pearson_vs_pytom_first_rotations": round(
            _pearson(ours_first, scores_first), 5
        ),
        "planted_peaks_same_as_pytom": f"{sum(peaks_same)}/{len(peaks_same)}",
    }


def _corrected(maps: RunningMaps) -> np.ndarray:
    """The score map as a job reports it: noise-corrected (score - noise max + mean
    noise max, as pytom) when the job has a noise template. The backends return the
    raw maps; comparing a raw map with pytom's corrected one gave Pearson 0.975 for
    a single unrotated template."""
    if maps.noise_scores is None:
        return maps.scores
    everywhere = np.ones(maps.scores.shape, dtype=bool)
    corrected, _mean = noise_corrected_scores(
        maps.scores, maps.noise_scores, everywhere
    )
    return corrected


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def _sync(backend: MatchBackend) -> None:
    ops = getattr(backend, "_ops", None)
    if ops is not None:
        with ops.activate():
            ops.synchronize()


def run_case(kind: str, gpu_name: str, gpu_cls: Any) -> dict[str, Any]:
    """Time one job kind on the GPU backend and the cpu backend; compare maps."""
    shape, n, n_gpu, n_cpu = _sizes()
    inputs = _inputs(kind, shape, n)
    mats = _matrices(n_cpu + n_gpu)

    cpu = CpuBackend()
    cpu.prepare(inputs)
    t0 = time.perf_counter()
    cpu.score_rotations(0, mats[:n_cpu])
    cpu_ms = (time.perf_counter() - t0) * 1e3 / n_cpu
    ref = cpu.finalize()

    gpu = gpu_cls()
    t0 = time.perf_counter()
    gpu.prepare(inputs)
    _sync(gpu)
    prepare_s = time.perf_counter() - t0
    gpu.score_rotations(0, mats[:n_cpu])  # the cpu's rotations; warms plans up too
    same = gpu.snapshot()
    max_abs_diff = float(np.abs(same.scores - ref.scores).max())
    angles_equal = float((same.angles == ref.angles).mean())
    batch = gpu.plan.batch
    _sync(gpu)
    t0 = time.perf_counter()
    gpu.score_rotations(n_cpu, mats[n_cpu:])
    _sync(gpu)
    gpu_ms = (time.perf_counter() - t0) * 1e3 / n_gpu
    final = gpu.finalize()
    gpu.close()
    pytom = run_pytom(
        kind,
        inputs,
        _angles_zxz(n_cpu + n_gpu),
        n_cpu,
        _corrected(final),
        _corrected(ref),
    )
    if "pytom_ms_per_rotation" in pytom:
        pytom["speedup_vs_pytom"] = round(pytom["pytom_ms_per_rotation"] / gpu_ms, 2)
    return {
        "kind": kind,
        "backend": gpu_name,
        "device": gpu._ops.device_name,
        "shape_zyx": list(shape),
        "template_box": n,
        "batch": batch,
        "gpu_rotations_timed": n_gpu,
        "gpu_ms_per_rotation": round(gpu_ms, 3),
        "gpu_prepare_s": round(prepare_s, 3),
        "cpu_rotations_timed": n_cpu,
        "cpu_ms_per_rotation": round(cpu_ms, 3),
        "speedup_vs_cpu": round(cpu_ms / gpu_ms, 2),
        "max_abs_score_diff_vs_cpu": max_abs_diff,
        "angle_agreement_vs_cpu": angles_equal,
        **pytom,
    }


@pytest.mark.parametrize("kind", KINDS)
def test_gpu_ms_per_rotation(kind: str, benchmark: Any) -> None:
    found = _gpu_backend()
    if found is None:
        pytest.skip("no GPU backend (cuda or opencl) available")
    name, cls = found
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(run_case(kind, name, cls))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["max_abs_score_diff_vs_cpu"] < 1e-4, result
    assert result["angle_agreement_vs_cpu"] > 0.999, result


if __name__ == "__main__":
    found = _gpu_backend()
    if found is None:
        raise SystemExit("no GPU backend available (see `tmfast info`)")
    kinds = os.environ.get("TMFAST_BENCH_GPU_KINDS", ",".join(KINDS)).split(",")
    for k in kinds:
        print(json.dumps(run_case(k, *found)), flush=True)
