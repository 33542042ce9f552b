"""Find and construct compute backends by name.

``cpu`` is always available. ``cuda`` and ``opencl`` live in
:mod:`tmfast.backends.cuda` and :mod:`tmfast.backends.opencl`, imported lazily so that
importing tmfast never loads a GPU library; each exposes ``is_available() ->
(bool, reason)``. ``auto`` picks cuda, then opencl on a real GPU device (PoCL's CPU
device does not count), then cpu, and logs the choice.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import Any

from tmfast.backends.base import MatchBackend
from tmfast.errors import BackendUnavailableError, ConfigError

__all__ = ["BACKEND_NAMES", "available_backends", "get_backend", "get_backends"]

logger = logging.getLogger(__name__)

BACKEND_NAMES = ("cpu", "cuda", "opencl")

_GPU_CLASSES = {
    "cuda": ("tmfast.backends.cuda", "CudaBackend", "device_id"),
    "opencl": ("tmfast.backends.opencl", "OpenCLBackend", "device_index"),
}


def _probe(name: str) -> tuple[Any | None, str | None]:
    """Return ``(module, None)`` if ``name`` can run, else ``(None, reason)``."""
    module_name = _GPU_CLASSES[name][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return None, f"{module_name} cannot be imported ({exc})"
    try:
        ok, reason = module.is_available()
    except Exception as exc:  # a broken driver must not break the CPU path
        return None, f"{name} probe failed ({type(exc).__name__}: {exc})"
    return (module, None) if ok else (None, str(reason))


def _opencl_has_gpu(module: Any) -> bool:
    """Whether the OpenCL module reports a real GPU device (not PoCL's CPU device)."""
    probe = getattr(module, "has_gpu_device", None)
    if probe is None:
        return True
    try:
        return bool(probe())
    except Exception:
        return False


def available_backends() -> dict[str, str | None]:
    """Return ``{name: None}`` for usable backends and ``{name: reason}`` otherwise.

    Returns
    -------
    dict
        Keys ``"cpu"``, ``"cuda"``, ``"opencl"``.
    """
    out: dict[str, str | None] = {"cpu": None}
    for name in ("cuda", "opencl"):
        out[name] = _probe(name)[1]
    return out


def _resolve_auto() -> str:
    reasons = []
    module, reason = _probe("cuda")
    if module is not None:
        logger.info("backend auto: using cuda")
        return "cuda"
    reasons.append(f"cuda: {reason}")
    module, reason = _probe("opencl")
    if module is not None and _opencl_has_gpu(module):
        logger.info("backend auto: using opencl")
        return "opencl"
    reasons.append(f"opencl: {reason or 'no GPU device (CPU OpenCL only)'}")
    logger.info("backend auto: using cpu (%s)", "; ".join(reasons))
    return "cpu"


def get_backends(
    name: str = "auto", *, device_ids: Sequence[int] | None = None
) -> list[MatchBackend]:
    """Return one fresh backend per device in ``device_ids``.

    Parameters
    ----------
    name
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"opencl"``.
    device_ids
        Device indices (``-g/--gpu-ids``); default ``[0]``. Ignored by ``cpu`` (one
        backend, which uses every core).

    Returns
    -------
    list of MatchBackend

    Raises
    ------
    ConfigError
        If ``name`` is unknown or a device index is negative or repeated.
    BackendUnavailableError
        If the named backend cannot run here (the message says why).
    """
    ids = [0] if not device_ids else [int(i) for i in device_ids]
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise ConfigError(f"--gpu-ids {ids}: give distinct non-negative device indices")
    if name not in ("auto", *BACKEND_NAMES):
        raise ConfigError(
            f"--backend {name!r}: unknown backend; choose auto, cpu, cuda or opencl"
        )
    chosen = _resolve_auto() if name == "auto" else name
    if chosen == "cpu":
        from tmfast.backends.cpu import CpuBackend

        if device_ids and len(ids) > 1:
            logger.info("cpu backend: ignoring --gpu-ids %s (one CPU backend)", ids)
        return [CpuBackend()]
    module, reason = _probe(chosen)
    if module is None:
        raise BackendUnavailableError(
            f"backend {chosen} is not available: {reason}; use --backend cpu or auto"
        )
    _, cls_name, kw = _GPU_CLASSES[chosen]
    cls = getattr(module, cls_name)
    return [cls(**{kw: i}) for i in ids]


def get_backend(
    name: str = "auto", *, device_ids: Sequence[int] | None = None
) -> MatchBackend:
    """Return a fresh backend on the first of ``device_ids`` (see :func:`get_backends`).

    Raises
    ------
    ConfigError
        If ``name`` is unknown.
    BackendUnavailableError
        If the named backend cannot run here.
    """
    return get_backends(name, device_ids=device_ids)[0]
