"""Compute backends: the :class:`MatchBackend` interface, CPU reference, registry.

GPU backends (:mod:`tmfast.backends.cuda`, :mod:`tmfast.backends.opencl`) are only
imported by :func:`get_backend` when asked for.
"""

from __future__ import annotations

from tmfast.backends.base import CorrelationInputs, MatchBackend, RunningMaps
from tmfast.backends.registry import available_backends, get_backend, get_backends

__all__ = [
    "CorrelationInputs",
    "MatchBackend",
    "RunningMaps",
    "available_backends",
    "get_backend",
    "get_backends",
]
