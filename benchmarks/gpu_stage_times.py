"""Where a GPU backend's time per rotation goes: each kernel and FFT timed alone.

Every ``launch``/``rfft``/``irfft`` of the backend's device ops is wrapped with a
device synchronisation before and after, so each call's wall time is its own (plus
~10-30 us of synchronisation, listed as ``sync overhead``). The sum is therefore a
little above the unwrapped ms per rotation, which is timed first on the same job.

Usage (on a GPU host; on PoCL with a small volume for a correctness run):
    python benchmarks/gpu_stage_times.py [--backend cuda] [--kind spherical]
        [--shape 256 512 512] [--box 72] [--rotations 32] [--fused-z both]
Prints one JSON line per kind: ``ms_per_rotation`` (unwrapped) and ``stages``
(ms per rotation by kernel or FFT plan name, largest first).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from typing import Any

import numpy as np
from bench_gpu import KINDS, _gpu_backend, _inputs, _matrices, _sync


def stage_times(
    kind: str,
    backend_cls: Any,
    shape: tuple[int, int, int],
    box: int,
    n_rot: int,
    *,
    fused_z: bool = False,
    max_batch: int | None = None,
) -> dict[str, Any]:
    """Time ``n_rot`` rotations unwrapped, then again with every call timed."""
    inputs = _inputs(kind, shape, box)
    extra = {} if max_batch is None else {"max_batch": max_batch}
    gpu = backend_cls(fused_z=fused_z, **extra)
    gpu.prepare(inputs)
    batch = gpu.plan.batch
    mats = _matrices(batch + 2 * n_rot)  # warm-up batch, plain run, timed run
    gpu.score_rotations(0, mats[:batch])  # warm-up: plans, module, caches
    _sync(gpu)
    t0 = time.perf_counter()
    gpu.score_rotations(batch, mats[batch : batch + n_rot])
    _sync(gpu)
    plain_ms = (time.perf_counter() - t0) * 1e3 / n_rot

    ops = gpu._ops
    job = gpu._job
    plan_names = {id(v): k for k, v in job.items() if k.endswith("_plan")}
    totals: dict[str, float] = defaultdict(float)
    sync_s: list[float] = []

    def timed(label: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        ops._wait()
        t = time.perf_counter()
        fn(*args, **kwargs)
        ops._wait()
        totals[label] += time.perf_counter() - t

    orig_launch, orig_groups = ops.launch, ops.launch_groups
    orig_rfft, orig_irfft = ops.rfft, ops.irfft
    ops.launch = lambda k, n, *a: timed(k, orig_launch, k, n, *a)
    ops.launch_groups = lambda k, n, *a: timed(k, orig_groups, k, n, *a)
    ops.rfft = lambda p, s, d: timed(
        "fft " + plan_names.get(id(p), "?"), orig_rfft, p, s, d
    )
    ops.irfft = lambda p, s, d: timed(
        "ifft " + plan_names.get(id(p), "?"), orig_irfft, p, s, d
    )
    with ops.activate():  # pycuda's Stream.synchronize needs the context current
        for _ in range(20):  # the cost of one empty synchronisation pair
            t = time.perf_counter()
            ops._wait()
            ops._wait()
            sync_s.append(time.perf_counter() - t)
    t0 = time.perf_counter()
    start = batch + n_rot
    gpu.score_rotations(start, mats[start : start + n_rot])
    _sync(gpu)
    wrapped_ms = (time.perf_counter() - t0) * 1e3 / n_rot
    ops.launch, ops.launch_groups = orig_launch, orig_groups
    ops.rfft, ops.irfft = orig_rfft, orig_irfft
    gpu.close()
    stages = {
        k: round(v * 1e3 / n_rot, 4)
        for k, v in sorted(totals.items(), key=lambda kv: -kv[1])
    }
    return {
        "kind": kind,
        "device": ops.device_name,
        "shape_zyx": list(shape),
        "template_box": box,
        "batch": batch,
        "fused_z": bool(job["fused_z"]),
        "rotations": n_rot,
        "ms_per_rotation": round(plain_ms, 4),
        "wrapped_ms_per_rotation": round(wrapped_ms, 4),
        "sync_overhead_ms": round(float(np.median(sync_s)) * 1e3, 4),
        "stages_ms_per_rotation": stages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("cuda", "opencl"), default=None)
    parser.add_argument("--kind", choices=KINDS, action="append")
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 512, 512))
    parser.add_argument("--box", type=int, default=72)
    parser.add_argument("--rotations", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=None)
    parser.add_argument(
        "--fused-z",
        choices=("on", "off", "both"),
        default="both",
        help="fused z stage (zline_corr), separate z FFT + 3-D inverse, or both",
    )
    args = parser.parse_args()
    if args.backend:
        import os

        os.environ["TMFAST_BENCH_GPU_BACKEND"] = args.backend
    found = _gpu_backend()
    if found is None:
        raise SystemExit("no GPU backend available (see `tmfast info`)")
    _name, cls = found
    variants = {"on": (True,), "off": (False,), "both": (True, False)}[args.fused_z]
    for kind in args.kind or KINDS:
        for fused in variants:
            result = stage_times(
                kind,
                cls,
                tuple(args.shape),
                args.box,
                args.rotations,
                fused_z=fused,
                max_batch=args.max_batch,
            )
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
