"""The ``cuda`` backend: pycuda kernels + pyvkfft (CUDA) FFTs on one NVIDIA GPU.

It runs the shared GPU pipeline of :mod:`tmfast.backends._gpu` with the same kernel
source as the ``opencl`` backend, compiled once per device with pycuda's
``SourceModule`` (nvcc must be on ``PATH`` at run time). The device's primary context
is retained and pushed around every call, so several backends (one per
``--gpu-ids`` entry) can live in one process; all work goes to one stream, and the
host waits for it only in ``snapshot`` and ``finalize``.

pycuda and pyvkfft are imported only when a backend is constructed or probed, so
``import tmfast`` and ``import tmfast.backends.registry`` load neither.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from tmfast.backends import _gpu
from tmfast.errors import BackendUnavailableError

__all__ = ["CudaBackend", "CudaDevice", "find_nvcc", "is_available", "list_devices"]

logger = logging.getLogger(__name__)

_INSTALL_HINT = (
    "install the CUDA extra on a machine with an NVIDIA driver and the CUDA toolkit: "
    "VKFFT_BACKEND=cuda pip install 'tmfast[cuda]' (nvcc must be on PATH)"
)


@dataclasses.dataclass(frozen=True)
class CudaDevice:
    """One CUDA device.

    Attributes
    ----------
    index
        CUDA device ordinal (``device_id``).
    name
        Device name.
    compute_capability
        ``(major, minor)``.
    total_mem_bytes
        Device memory in bytes.
    """

    index: int
    name: str
    compute_capability: tuple[int, int]
    total_mem_bytes: int


def find_nvcc() -> str | None:
    """Return the nvcc that compiles the kernels: PATH, then ``$CUDA_HOME/bin``, then
    the PyPI wheel's ``site-packages/nvidia/cu13/bin/nvcc`` (CUDA 13 needs driver
    R580+).

    Returns
    -------
    str or None
        Path of an executable nvcc, or None when there is none.
    """
    found = shutil.which("nvcc")
    if found:
        return found
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "nvcc"))
    for entry in sys.path:
        candidates.append(os.path.join(entry, "nvidia", "cu13", "bin", "nvcc"))
    for cand in candidates:
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def _driver() -> Any:
    import pycuda.driver as drv

    drv.init()
    return drv


def list_devices() -> list[CudaDevice]:
    """Return every CUDA device, or an empty list when CUDA cannot be used.

    Returns
    -------
    list of CudaDevice
    """
    try:
        drv = _driver()
        devices = [drv.Device(i) for i in range(drv.Device.count())]
        return [
            CudaDevice(
                index=i,
                name=d.name(),
                compute_capability=(
                    int(d.compute_capability()[0]),
                    int(d.compute_capability()[1]),
                ),
                total_mem_bytes=int(d.total_memory()),
            )
            for i, d in enumerate(devices)
        ]
    except Exception:  # ImportError, missing libcuda, driver errors
        return []


def is_available() -> tuple[bool, str]:
    """Report whether the cuda backend can run here.

    Returns
    -------
    tuple of (bool, str)
        ``(True, description of the devices)`` or ``(False, what to install/change)``.
    """
    # An import-time warning of pycuda, pyvkfft or the CuPy it may load must not
    # read as "unavailable" where warnings are errors (pytest's filterwarnings).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pycuda.driver as drv
        except ImportError as exc:
            return False, f"pycuda cannot be imported ({exc}); {_INSTALL_HINT}"
        try:
            import pyvkfft.cuda  # noqa: F401
        except Exception as exc:  # ImportError, or OSError: no libnvrtc/libcuda
            return (
                False,
                f"pyvkfft's CUDA backend cannot be imported ({exc}); {_INSTALL_HINT}",
            )
    try:
        drv.init()
        count = drv.Device.count()
    except drv.Error as exc:
        return (
            False,
            f"no usable CUDA driver ({exc}); install the NVIDIA driver "
            "(R580+ for CUDA 13)",
        )
    if count == 0:
        return False, "no CUDA device found"
    devices = list_devices()
    desc = "; ".join(
        f"[{d.index}] {d.name} (sm_{d.compute_capability[0]}{d.compute_capability[1]}, "
        f"{d.total_mem_bytes / 1024**3:.1f} GiB)"
        for d in devices
    )
    return True, desc


# One retained primary context and compiled module per device, for the process.
_MODULES: dict[int, tuple[Any, Any]] = {}
_MODULES_LOCK = threading.Lock()


def _context_and_module(device_id: int, drv: Any) -> tuple[Any, Any]:
    with _MODULES_LOCK:
        cached = _MODULES.get(device_id)
        if cached is not None:
            return cached
        from pycuda.compiler import SourceModule

        nvcc = find_nvcc()
        if nvcc is None:
            raise BackendUnavailableError(
                "cuda backend: nvcc not found (PATH, $CUDA_HOME/bin or the "
                "cuda-toolkit[nvcc] wheel); install the CUDA toolkit or "
                "pip install 'cuda-toolkit[nvcc,cudart]==13.*'"
            )
        ctx = drv.Device(device_id).retain_primary_context()
        ctx.push()
        try:
            # pycuda warns with whatever nvcc prints on success (host compiler
            # notes): log it instead of letting it fail a warnings-as-errors run.
            with warnings.catch_warnings(record=True) as notes:
                warnings.simplefilter("always")
                module = SourceModule(
                    _gpu.kernel_source(),
                    nvcc=nvcc,
                    options=_gpu.build_options(),
                    no_extern_c=True,
                )
            for note in notes:
                logger.debug("nvcc on the tmfast kernels: %s", note.message)
        except Exception as exc:
            raise BackendUnavailableError(
                f"CUDA device {device_id}: compiling the tmfast kernels failed "
                f"({exc}); "
                "check that nvcc is on PATH and matches the driver"
            ) from exc
        finally:
            ctx.pop()
        _MODULES[device_id] = (ctx, module)
        return ctx, module


class _CudaOps(_gpu.DeviceOpsBase):
    """:class:`tmfast.backends._gpu.DeviceOps` for one CUDA device."""

    name = "cuda"

    def __init__(self, device_id: int) -> None:
        super().__init__("cuda", is_available())
        import pycuda.gpuarray as gpuarray
        from pyvkfft.cuda import VkFFTApp

        drv = _driver()
        self._check_index(
            "CUDA device id", device_id, drv.Device.count(), " with -g/--gpu-ids"
        )
        self._drv = drv
        self._gpuarray = gpuarray
        self._vkfft_app = VkFFTApp
        self.device_id = device_id
        dev = drv.Device(device_id)
        self.device_name = f"CUDA device {device_id} ({dev.name()})"
        self.ctx, module = _context_and_module(device_id, drv)
        with self.activate():
            self.stream = drv.Stream()
            self._kernels = {k: module.get_function(k) for k in _gpu.KERNEL_NAMES}
        self._block = 256

    @contextlib.contextmanager
    def _pushed(self) -> Iterator[None]:
        self.ctx.push()
        try:
            yield
        finally:
            self._drv.Context.pop()

    def activate(self) -> contextlib.AbstractContextManager[None]:
        return self._pushed()

    def memory(self) -> tuple[int, int]:
        with self._pushed():  # cuMemGetInfo needs a current context
            free, _total = self._drv.mem_get_info()
        return int(free), int(free)

    def empty(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> Any:
        try:
            return self._gpuarray.empty(shape, dtype)
        except self._drv.MemoryError as exc:
            raise MemoryError(str(exc)) from exc

    def zeros(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> Any:
        arr = self.empty(shape, dtype)
        self._drv.memset_d8_async(arr.gpudata, 0, arr.nbytes, self.stream)
        return arr

    def to_device(self, host: npt.NDArray[Any]) -> Any:
        arr = self.empty(host.shape, host.dtype)
        self.stream.synchronize()  # keep stream order for the synchronous copy
        self._drv.memcpy_htod(arr.gpudata, np.ascontiguousarray(host))
        return arr

    def write(self, dev: Any, host: npt.NDArray[Any]) -> None:
        data = self._keep(host)
        # Pageable source: staged by the driver at once, ordered on the stream.
        self._drv.memcpy_htod_async(dev.gpudata, data, self.stream)

    def to_host(self, dev: Any) -> npt.NDArray[Any]:
        self.stream.synchronize()
        out: npt.NDArray[Any] = dev.get()
        return out

    def launch(self, kernel: str, n_items: int, *args: Any) -> None:
        if n_items <= 0:
            return
        blocks = (n_items + self._block - 1) // self._block
        self._kernels[kernel](
            *args, block=(self._block, 1, 1), grid=(blocks, 1, 1), stream=self.stream
        )

    def launch_groups(self, kernel: str, n_groups: int, *args: Any) -> None:
        self._kernels[kernel](
            *args,
            block=(_gpu.REDUCE_WG, 1, 1),
            grid=(n_groups, 1, 1),
            stream=self.stream,
        )

    def _plan(
        self, shape: tuple[int, ...], dtype: type, options: dict[str, Any]
    ) -> Any:
        return self._vkfft_app(shape, dtype, stream=self.stream, **options)

    def _wait(self) -> None:
        self.stream.synchronize()

    def rfft(self, plan: Any, src: Any, dst: Any) -> None:
        plan.fft(src, dst)

    def irfft(self, plan: Any, src: Any, dst: Any) -> None:
        plan.ifft(src, dst)


class CudaBackend(_gpu.GpuMatchBackend):
    """Template matching on one CUDA device.

    Parameters
    ----------
    device_id
        CUDA device ordinal (one entry of ``-g/--gpu-ids``).
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
        If pycuda, pyvkfft (CUDA), the driver or nvcc is missing.
    ConfigError
        If ``device_id`` does not exist.
    """

    name = "cuda"

    def __init__(
        self,
        device_id: int = 0,
        *,
        max_batch: int = _gpu.DEFAULT_MAX_BATCH,
        pruned_forward: bool = True,
        fused_z: bool = False,
    ) -> None:
        super().__init__(
            _CudaOps(device_id),
            max_batch=max_batch,
            pruned_forward=pruned_forward,
            fused_z=fused_z,
        )
        self.device_id = device_id
