"""The ``opencl`` backend: pyopencl kernels + pyvkfft FFTs on one OpenCL device.

It runs the shared GPU pipeline of :mod:`tmfast.backends._gpu` (the same kernel
source as the ``cuda`` backend). On a machine without a GPU it runs on PoCL's CPU
device, which is how CI checks the GPU code path against the ``cpu`` backend; that
is a correctness path, not a fast one.

pyopencl and pyvkfft are imported only when a backend is constructed or probed, so
``import tmfast`` and ``import tmfast.backends.registry`` load neither.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from tmfast.backends import _gpu
from tmfast.errors import BackendUnavailableError

__all__ = [
    "OpenCLBackend",
    "OpenCLDevice",
    "has_gpu_device",
    "is_available",
    "list_devices",
]

logger = logging.getLogger(__name__)

_INSTALL_HINT = (
    "install the OpenCL extra: VKFFT_BACKEND=opencl pip install 'tmfast[opencl]' "
    "(plus an OpenCL driver, e.g. Debian pocl-opencl-icd ocl-icd-opencl-dev "
    "opencl-headers)"
)


@dataclasses.dataclass(frozen=True)
class OpenCLDevice:
    """One OpenCL device as numbered by ``device_index``.

    Attributes
    ----------
    index
        Position in the flattened list over all platforms.
    name, platform
        Device and platform names.
    is_gpu
        True for GPU (or accelerator) devices, False for CPU devices such as PoCL.
    global_mem_bytes, max_alloc_bytes
        Device memory and largest single allocation.
    """

    index: int
    name: str
    platform: str
    is_gpu: bool
    global_mem_bytes: int
    max_alloc_bytes: int


def _devices() -> list[Any]:
    import pyopencl as cl

    out: list[Any] = []
    for platform in cl.get_platforms():
        try:
            out.extend(platform.get_devices())
        except cl.Error:  # a platform with no devices raises
            continue
    return out


def list_devices() -> list[OpenCLDevice]:
    """Return every OpenCL device in ``device_index`` order.

    Returns
    -------
    list of OpenCLDevice
        Empty when pyopencl is missing or no platform is installed.
    """
    try:
        import pyopencl as cl

        devices = _devices()
    except Exception:  # ImportError, or no ICD loader / platform
        return []
    gpu_mask = cl.device_type.GPU | cl.device_type.ACCELERATOR
    return [
        OpenCLDevice(
            index=i,
            name=d.name.strip(),
            platform=d.platform.name.strip(),
            is_gpu=bool(d.type & gpu_mask),
            global_mem_bytes=int(d.global_mem_size),
            max_alloc_bytes=int(d.max_mem_alloc_size),
        )
        for i, d in enumerate(devices)
    ]


def is_available() -> tuple[bool, str]:
    """Report whether the opencl backend can run here.

    Returns
    -------
    tuple of (bool, str)
        ``(True, description of the devices)`` or ``(False, what to install/change)``.
    """
    try:
        import pyopencl  # noqa: F401
    except ImportError as exc:
        return False, f"pyopencl is not installed ({exc}); {_INSTALL_HINT}"
    try:
        import pyvkfft.opencl  # noqa: F401
    except ImportError as exc:
        return (
            False,
            f"pyvkfft with its OpenCL backend is not installed ({exc}); "
            f"{_INSTALL_HINT}",
        )
    try:
        devices = list_devices()
    except Exception as exc:  # pragma: no cover - defensive
        return False, f"OpenCL platform query failed ({exc}); {_INSTALL_HINT}"
    if not devices:
        return False, f"no OpenCL device found; {_INSTALL_HINT}"
    desc = "; ".join(
        f"[{d.index}] {d.name} ({d.platform}, {'GPU' if d.is_gpu else 'CPU'}, "
        f"{d.global_mem_bytes / 1024**3:.1f} GiB)"
        for d in devices
    )
    return True, desc


def has_gpu_device() -> bool:
    """Return whether any OpenCL device is a GPU (PoCL's CPU device is not)."""
    return any(d.is_gpu for d in list_devices())


# One context and compiled program per device, shared by all backends on it.
_PROGRAMS: dict[int, tuple[Any, Any]] = {}
_PROGRAMS_LOCK = threading.Lock()


def _context_and_program(device_index: int, device: Any) -> tuple[Any, Any]:
    import pyopencl as cl

    with _PROGRAMS_LOCK:
        cached = _PROGRAMS.get(device_index)
        if cached is not None:
            return cached
        ctx = cl.Context([device])
        options = _gpu.build_options()
        with warnings.catch_warnings():
            # PoCL and vendor compilers may print harmless notes (CompilerWarning).
            warnings.simplefilter("ignore")
            program = cl.Program(ctx, _gpu.kernel_source()).build(options=options)
        _PROGRAMS[device_index] = (ctx, program)
        return ctx, program


class _OpenCLOps(_gpu.DeviceOpsBase):
    """:class:`tmfast.backends._gpu.DeviceOps` for one OpenCL device."""

    name = "opencl"

    def __init__(self, device_index: int) -> None:
        super().__init__("opencl", is_available())
        import pyopencl as cl
        import pyopencl.array as cla
        from pyvkfft.opencl import VkFFTApp

        devices = _devices()
        self._check_index("OpenCL device index", device_index, len(devices))
        device = devices[device_index]
        if device.max_work_group_size < _gpu.REDUCE_WG:
            raise BackendUnavailableError(
                f"OpenCL device {device.name.strip()} allows work groups of "
                f"{device.max_work_group_size} items, tmfast needs {_gpu.REDUCE_WG}"
            )
        self._cl = cl
        self._cla = cla
        self._vkfft_app = VkFFTApp
        self.device = device
        self.device_name = f"OpenCL device {device_index} ({device.name.strip()})"
        self.ctx, program = _context_and_program(device_index, device)
        self.queue = cl.CommandQueue(self.ctx)
        self._kernels = {k: cl.Kernel(program, k) for k in _gpu.KERNEL_NAMES}
        self._wg = 256

    def activate(self) -> contextlib.AbstractContextManager[None]:
        return _gpu.null_context()

    def memory(self) -> tuple[int, int]:
        return int(self.device.global_mem_size), int(self.device.max_mem_alloc_size)

    def empty(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> Any:
        try:
            return self._cla.empty(self.queue, shape, dtype)
        except self._cl.Error as exc:
            raise MemoryError(str(exc)) from exc

    def zeros(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> Any:
        try:
            return self._cla.zeros(self.queue, shape, dtype)
        except self._cl.Error as exc:
            raise MemoryError(str(exc)) from exc

    def to_device(self, host: npt.NDArray[Any]) -> Any:
        arr = self.empty(host.shape, host.dtype)
        self._cl.enqueue_copy(self.queue, arr.data, np.ascontiguousarray(host))
        return arr

    def write(self, dev: Any, host: npt.NDArray[Any]) -> None:
        data = self._keep(host)
        self._cl.enqueue_copy(self.queue, dev.data, data, is_blocking=False)

    def to_host(self, dev: Any) -> npt.NDArray[Any]:
        out: npt.NDArray[Any] = dev.get(queue=self.queue)
        return out

    def _args(self, args: tuple[Any, ...]) -> list[Any]:
        return [
            a.data if hasattr(a, "data") and not isinstance(a, np.generic) else a
            for a in args
        ]

    def launch(self, kernel: str, n_items: int, *args: Any) -> None:
        if n_items <= 0:
            return
        global_size = _gpu.round_up(n_items, self._wg)
        self._kernels[kernel](
            self.queue, (global_size,), (self._wg,), *self._args(args)
        )

    def launch_groups(self, kernel: str, n_groups: int, *args: Any) -> None:
        wg = _gpu.REDUCE_WG
        self._kernels[kernel](self.queue, (n_groups * wg,), (wg,), *self._args(args))

    def _plan(
        self, shape: tuple[int, ...], dtype: type, options: dict[str, Any]
    ) -> Any:
        return self._vkfft_app(shape, dtype, self.queue, **options)

    def _wait(self) -> None:
        self.queue.finish()

    def rfft(self, plan: Any, src: Any, dst: Any) -> None:
        plan.fft(src, dst, queue=self.queue)

    def irfft(self, plan: Any, src: Any, dst: Any) -> None:
        plan.ifft(src, dst, queue=self.queue)


class OpenCLBackend(_gpu.GpuMatchBackend):
    """Template matching on one OpenCL device (GPU, or PoCL's CPU device in CI).

    Parameters
    ----------
    device_index
        Index into :func:`list_devices` (all platforms, in order).
    max_batch
        Upper bound on rotations per FFT call; fewer are used if memory is short.
    pruned_forward
        Skip the zero rows and planes in the template's forward FFT (default).
    fused_z
        Run the z stage of the correlation as one kernel where the z length allows
        it (see :func:`tmfast.backends._gpu.uses_fused_z`): less device memory,
        but slower than the default path on the GPUs measured.

    Raises
    ------
    BackendUnavailableError
        If pyopencl/pyvkfft or an OpenCL driver is missing.
    ConfigError
        If ``device_index`` does not exist.
    """

    name = "opencl"

    def __init__(
        self,
        device_index: int = 0,
        *,
        max_batch: int = _gpu.DEFAULT_MAX_BATCH,
        pruned_forward: bool = True,
        fused_z: bool = False,
    ) -> None:
        super().__init__(
            _OpenCLOps(device_index),
            max_batch=max_batch,
            pruned_forward=pruned_forward,
            fused_z=fused_z,
        )
        self.device_index = device_index
