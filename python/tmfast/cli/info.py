"""`tmfast info`: versions, compute backends and the devices they see.

For each backend it prints whether it can run here or the one-line reason why not
(what to install or change), the OpenCL and CUDA devices found, and which backend
``--backend auto`` would pick. ``--json`` prints the same as one JSON object.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import typer

from tmfast._cpus import usable_cpu_count

__all__ = ["collect_info", "register"]

#: Optional packages whose versions are reported (read from metadata, not imported).
_PACKAGES = ("numpy", "scipy", "pyfftw", "pyopencl", "pyvkfft", "pycuda", "mrcfile")


def _pkg_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _wisdom_state(path: Path) -> str:
    """Whether the FFTW wisdom file can be used: its plan count, or why not.

    Matching only logs a warning when the cache cannot be read or written, so
    this is where a wrong ``TMFAST_FFTW_WISDOM`` (a folder, a read-only place)
    shows before a long run replans every time.
    """
    if path.is_dir():
        return "a folder, not usable: set TMFAST_FFTW_WISDOM to a file name"
    if path.exists():
        try:
            if not isinstance(json.loads(path.read_text())["wisdom"], list):
                raise TypeError("no list of plans")
            return "readable"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"unreadable ({exc}): every run plans again"
    folder = path.parent
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot be created ({folder} is a file): every run plans again"
    if not os.access(folder, os.W_OK):
        return f"cannot be created ({folder} is not writable): every run plans again"
    return "not written yet"


def collect_info() -> dict[str, Any]:
    """Gather versions, backend availability and devices.

    Returns
    -------
    dict
        ``tmfast``, ``python``, ``packages`` (name -> version or None), ``backends``
        (name -> ``{"available": bool, "detail": str}``), ``opencl_devices``,
        ``cuda_devices`` (lists of dicts), ``nvcc`` (path or None), ``fftw_wisdom``
        (the CPU backend's FFTW plan cache file, ``"off"``, or None without
        pyFFTW), ``fftw_wisdom_state`` (its plan count or why it cannot be used,
        else None), ``omp_wait_policy`` (``OMP_WAIT_POLICY`` or None) and ``auto``
        (the backend ``--backend auto`` would choose).
    """
    from tmfast import __version__, _rust
    from tmfast.backends._cpu_fft import fftw_available
    from tmfast.backends.cuda import find_nvcc
    from tmfast.backends.registry import available_backends

    status = available_backends()
    no_fftw = fftw_available()
    fft = "FFTW (pyfftw)" if no_fftw is None else f"scipy.fft; FFTW: {no_fftw}"
    simd = "AVX2+FMA" if _rust.wide_simd() else "baseline"
    wisdom: str | None = None
    wisdom_state: str | None = None
    if no_fftw is None:
        from tmfast.backends._cpu_fft import wisdom_path

        path = wisdom_path()
        wisdom = "off" if path is None else str(path)
        wisdom_state = None if path is None else _wisdom_state(path)
    wait_policy = os.environ.get("OMP_WAIT_POLICY")
    backends: dict[str, dict[str, Any]] = {
        "cpu": {
            "available": True,
            "detail": f"numpy + {fft}, {simd} kernels, on {usable_cpu_count()} cores",
        }
    }
    if wisdom is not None:
        state = f" ({wisdom_state})" if wisdom_state else ""
        backends["cpu"]["detail"] += (
            f"; FFTW wisdom {wisdom}{state}; OMP_WAIT_POLICY {wait_policy or 'unset'}"
        )
    opencl_devices: list[dict[str, Any]] = []
    cuda_devices: list[dict[str, Any]] = []
    for name in ("cuda", "opencl"):
        reason = status.get(name)
        detail = reason or ""
        if reason is None:
            module = import_module(f"tmfast.backends.{name}")
            _ok, detail = module.is_available()
        backends[name] = {"available": reason is None, "detail": detail}
    if backends["opencl"]["available"]:
        from tmfast.backends import opencl

        opencl_devices = [
            {
                "index": d.index,
                "name": d.name,
                "platform": d.platform,
                "type": "GPU" if d.is_gpu else "CPU",
                "memory_gib": round(d.global_mem_bytes / 1024**3, 2),
            }
            for d in opencl.list_devices()
        ]
    if backends["cuda"]["available"]:
        from tmfast.backends import cuda

        cuda_devices = [
            {
                "index": d.index,
                "name": d.name,
                "compute_capability": "{}.{}".format(*d.compute_capability),
                "memory_gib": round(d.total_mem_bytes / 1024**3, 2),
            }
            for d in cuda.list_devices()
        ]
    if backends["cuda"]["available"]:
        auto = "cuda"
    elif any(d["type"] == "GPU" for d in opencl_devices):
        auto = "opencl"
    else:
        auto = "cpu"
    return {
        "tmfast": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "packages": {p: _pkg_version(p) for p in _PACKAGES},
        "nvcc": find_nvcc(),
        "fftw_wisdom": wisdom,
        "fftw_wisdom_state": wisdom_state,
        "omp_wait_policy": wait_policy,
        "backends": backends,
        "opencl_devices": opencl_devices,
        "cuda_devices": cuda_devices,
        "auto": auto,
    }


def _render(info: dict[str, Any]) -> str:
    lines = [f"tmfast {info['tmfast']}", f"python {info['python']}"]
    pkgs = ", ".join(f"{k} {v or 'not installed'}" for k, v in info["packages"].items())
    lines.append(f"packages: {pkgs}")
    lines.append(f"nvcc (CUDA kernels): {info['nvcc'] or 'not found'}")
    lines.append("backends:")
    for name, b in info["backends"].items():
        state = "available" if b["available"] else "unavailable"
        lines.append(f"  {name:<7} {state}: {b['detail']}")
    lines.append(
        "OpenCL devices:" if info["opencl_devices"] else "OpenCL devices: none"
    )
    for d in info["opencl_devices"]:
        lines.append(
            f"  [{d['index']}] {d['name']} ({d['platform']}, {d['type']}, "
            f"{d['memory_gib']} GiB)"
        )
    lines.append("CUDA devices:" if info["cuda_devices"] else "CUDA devices: none")
    for d in info["cuda_devices"]:
        lines.append(
            f"  [{d['index']}] {d['name']} (compute {d['compute_capability']}, "
            f"{d['memory_gib']} GiB)"
        )
    lines.append(f"--backend auto uses: {info['auto']}")
    return "\n".join(lines)


def info(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show versions, compute backends (or why each cannot run) and devices."""
    data = collect_info()
    typer.echo(json.dumps(data, indent=2) if as_json else _render(data))


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("info")(info)
