"""Host-side logic shared by the OpenCL and CUDA backends.

Both GPU backends run the same kernels (``kernels/tmfast_kernels.cl`` behind the
portability header ``kernels/tmfast_portability.h``) and the same sequence of steps;
only the device API differs. That API is the small :class:`DeviceOps` protocol
(allocate, upload, download, launch a kernel, run a pyvkfft plan), implemented by
:mod:`tmfast.backends.opencl` and :mod:`tmfast.backends.cuda`. Everything else lives
here: input validation, the device-memory estimate and batch size, buffer layout,
the per-batch kernel sequence and the host-side finalisation.

Per batch of ``B`` rotations (all buffers made once in :meth:`GpuMatchBackend.prepare`,
nothing allocated in :meth:`GpuMatchBackend.score_rotations`, no host synchronisation
until :meth:`GpuMatchBackend.snapshot` or :meth:`GpuMatchBackend.finalize`):

1. ``rotate_bspline``: B rotated templates (cubic B-spline of host-prefiltered
   coefficients, zero outside), and B rotated masks for a non-spherical mask;
2. batched box R2C, ``apply_weight``, batched box C2R;
3. ``box_moments`` + ``finish_moments``: mask-weighted mean, 1/std and ``N_M``;
4. ``normalise_paste`` with the box centre at index 0 (only the box positions are
   ever written, so the zero padding is made once per job);
5. the forward FFT of the padded template, pruned by default: R2C along x of the
   ``n*n`` compact rows, ``scatter_shift`` to the y places and C2C along y of ``n``
   planes; ``scatter_shift`` to the z places, C2C along z, ``conj_mul`` with the
   tomogram spectrum (read once per batch) and the batched 3-D C2R. Opt-in
   (``fused_z=True``): one kernel per work group of (ky, kx) columns in local memory
   (``zline_corr``; ``zline_corr2`` for the rotated mask's pair) does the planes to
   their z places, the FFT along z, the product and the inverse FFT along z, and a
   batched 2-D C2R over (y, x) finishes; it needs one volume spectrum less per
   rotation of a batch, but measured slower on an H200 (1.35 vs 1.25 ms per
   rotation, 512x512x256, docs/benchmarks.md), so it is not the default. Without
   pruning, a full 3-D R2C of the padded volume replaces the first steps;
6. ``update_scores``: running max + argmax + compensated sum and sum of squares in
   one pass; a spherical mask defers the division by ``N_M * sigma_local`` to
   finalisation, a non-spherical one divides by the per-rotation local sigma there.

The noise template repeats 1-5 and ``update_noise`` keeps its running maximum.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from collections.abc import Iterator
from importlib import resources
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from tmfast.backends.base import CorrelationInputs, RunningMaps
from tmfast.errors import BackendUnavailableError, ConfigError, GpuOutOfMemoryError
from tmfast.types import RotationMatrices

__all__ = [
    "KERNEL_NAMES",
    "VAR_REL_FLOOR",
    "BufferPlan",
    "DeviceOps",
    "DeviceOpsBase",
    "GpuMatchBackend",
    "build_options",
    "estimate_device_bytes",
    "fft_plan_options",
    "kernel_source",
    "plan_buffers",
    "standardise",
]

logger = logging.getLogger(__name__)

#: Kernels defined in ``tmfast_kernels.cl``.
KERNEL_NAMES = (
    "rotate_bspline",
    "apply_weight",
    "box_moments",
    "finish_moments",
    "normalise_paste",
    "paste_box",
    "scatter_shift",
    "conj_mul",
    "conj_mul_mask",
    "zline_corr",
    "zline_corr2",
    "sigma_denominator",
    "update_scores",
    "update_noise",
)

#: Work items per group of the reduction kernel ``box_moments``.
REDUCE_WG = 256
#: Number of work groups per box in ``box_moments``.
MOMENT_CHUNKS = 32
#: Fraction of the reported free device memory the planner may use (pyvkfft
#: workspaces, driver overhead and allocation granularity take the rest).
MEMORY_HEADROOM = 0.85
#: Default upper bound on the number of rotations per FFT call.
DEFAULT_MAX_BATCH = 8
#: float2 elements in each of zline_corr's two local buffers: 32,000 bytes together,
#: under the 32 KiB of local memory every OpenCL device has (the kernels are built
#: for every job, fused or not). (nz + 1) * columns must fit, so the fused z stage
#: serves nz <= ZLINE_LMEM - 1.
ZLINE_LMEM = 2000
#: Radices of zline_corr's Stockham passes, tried in this order.
ZLINE_RADICES = (8, 4, 2, 3, 5, 7)
#: At most this many (ky, kx) columns per zline_corr work group.
ZLINE_MAX_COLUMNS = 16
#: sigma_local is taken as 1 where the local variance of the standardised tomogram
#: is <= VAR_REL_FLOOR * (local mean square + 1): the cpu backend's rule (below it
#: E[V^2] - E[V]^2 is float32 FFT rounding noise). Compiled into the kernels.
VAR_REL_FLOOR = 1e-4

_F32 = 4
_C64 = 8


def kernel_source() -> str:
    """Return the portability header followed by the kernel source.

    Returns
    -------
    str
        Source text that compiles as OpenCL C 1.2 and, with ``extern "C"`` entry
        points, as CUDA C++.
    """
    pkg = resources.files("tmfast.backends") / "kernels"
    header = (pkg / "tmfast_portability.h").read_text(encoding="utf-8")
    body = (pkg / "tmfast_kernels.cl").read_text(encoding="utf-8")
    return header + "\n" + body


def build_options() -> list[str]:
    """Return the preprocessor definitions both APIs compile the kernels with.

    Returns
    -------
    list of str
        ``-D`` options for pyopencl's ``Program.build`` and pycuda's / nvcc's
        ``SourceModule``.
    """
    return [
        f"-DTMFAST_REDUCE_WG={REDUCE_WG}",
        f"-DTMFAST_VAR_REL_FLOOR={VAR_REL_FLOOR!r}f",
        f"-DTMFAST_ZLINE_LMEM={ZLINE_LMEM}",
    ]


def zline_radices(nz: int) -> tuple[int, ...] | None:
    """Return the radices of ``zline_corr``'s FFT passes along z, or None when the
    fused z stage cannot serve this length (a prime factor above 7, or the column
    does not fit in local memory).

    Parameters
    ----------
    nz
        FFT length along z (the (sub)volume's z size).

    Returns
    -------
    tuple of int or None
        Radices whose product is ``nz`` (empty for ``nz == 1``).
    """
    if nz < 1 or nz + 1 > ZLINE_LMEM:
        return None
    radices: list[int] = []
    rest = nz
    for r in ZLINE_RADICES:
        while rest % r == 0:
            radices.append(r)
            rest //= r
    return tuple(radices) if rest == 1 else None


def zline_columns(nz: int) -> int:
    """Return the (ky, kx) columns one ``zline_corr`` work group transforms."""
    return max(1, min(ZLINE_MAX_COLUMNS, ZLINE_LMEM // (nz + 1)))


def uses_fused_z(
    shape_zyx: tuple[int, int, int], *, pruned_forward: bool, fused_z: bool
) -> bool:
    """Return whether a job of this shape runs the fused z stage (``zline_corr``)."""
    return pruned_forward and fused_z and zline_radices(shape_zyx[0]) is not None


def standardise(volume: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Return ``(volume - mean) / std`` in float32, as the cpu backend does.

    FLCF is invariant to an offset and a scale of the whole (circular) array, so this
    changes no score; it makes float32 local moments well conditioned, and the
    variance floor (:data:`VAR_REL_FLOOR`) is relative to this unit mean square.

    Parameters
    ----------
    volume
        ``(z, y, x)`` tomogram (sub)volume.

    Returns
    -------
    numpy.ndarray
        float32 C-contiguous array; a constant volume only loses its mean.
    """
    vol = _as_f32_c(volume)
    vol = vol - np.float32(vol.mean(dtype=np.float64))
    sd = float(vol.std(dtype=np.float64))
    if sd > 0:
        vol /= np.float32(sd)
    return vol


def fft_plan_options(axis: int | str | None) -> tuple[type, dict[str, Any]]:
    """Return the dtype and keyword arguments of a pyvkfft ``VkFFTApp`` plan.

    Both APIs plan the same three kinds of out-of-place transform.

    Parameters
    ----------
    axis
        None: 3-D R2C over the last three axes; ``"yx"``: 2-D R2C over the last
        two; -1: R2C along x; -2 or -3: C2C along that axis.

    Returns
    -------
    tuple of (type, dict)
        ``dtype`` and the remaining keyword arguments (without queue or stream).
    """
    if axis is None:
        return np.float32, {"ndim": 3, "inplace": False, "r2c": True}
    if axis == "yx":
        return np.float32, {"ndim": 2, "inplace": False, "r2c": True}
    if axis == -1:
        return np.float32, {"ndim": 1, "inplace": False, "r2c": True}
    return np.complex64, {"inplace": False, "axes": (axis,)}


def i32(value: int) -> np.int32:
    """Kernel argument of C type ``int``."""
    return np.int32(value)


def i64(value: int) -> np.int64:
    """Kernel argument of type ``i64`` (``long`` / ``long long``)."""
    return np.int64(value)


def f32(value: float) -> np.float32:
    """Kernel argument of C type ``float``."""
    return np.float32(value)


# ----------------------------------------------------------------------------------
# Memory planning
# ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class BufferPlan:
    """Device buffers of one job and their sizes in bytes.

    Attributes
    ----------
    shape_zyx
        Shape of the searched (sub)volume.
    box_n
        Template box edge in voxels.
    batch
        Rotations per FFT call.
    mask_is_spherical, with_noise, pruned_forward
        Job options that decide which buffers exist.
    fused_z
        The job runs the fused z stage (:func:`uses_fused_z`).
    fixed_bytes
        Buffers independent of ``batch`` (tomogram spectra, running maps, boxes).
    setup_bytes
        Temporaries used only while preparing (local sigma of a spherical mask).
    per_rotation_bytes
        Volume-size buffers needed per rotation of a batch.
    largest_buffer_bytes
        Size of the largest single allocation.
    """

    shape_zyx: tuple[int, int, int]
    box_n: int
    batch: int
    mask_is_spherical: bool
    with_noise: bool
    pruned_forward: bool
    fused_z: bool
    fixed_bytes: int
    setup_bytes: int
    per_rotation_bytes: int
    largest_buffer_bytes: int

    @property
    def total_bytes(self) -> int:
        """Peak device memory of the job in bytes."""
        return self.fixed_bytes + max(
            self.setup_bytes, self.batch * self.per_rotation_bytes
        )


def _sizes(
    shape_zyx: tuple[int, int, int],
    box_n: int,
    *,
    mask_is_spherical: bool,
    with_noise: bool,
    pruned_forward: bool,
    fused_z: bool,
) -> tuple[int, int, int, int, int]:
    """Return (fixed, setup, per_rotation, real_volume, spectrum) byte counts.

    ``fused_z`` says whether the job runs the fused z stage (:func:`uses_fused_z`).
    """
    nz, ny, nx = shape_zyx
    n_real = nz * ny * nx
    n_spec = nz * ny * (nx // 2 + 1)
    real_b, spec_b = n_real * _F32, n_spec * _C64
    n3 = box_n**3
    box_spec = box_n * box_n * (box_n // 2 + 1) * _C64
    # tomogram spectrum; running maps: max, argmax, sum (2 floats), sum of squares
    fixed = spec_b + n_real * (_F32 + 4 + 4 * _F32)
    fixed += (
        n3 * _F32 * 2 + box_spec
    )  # template coefficients, mask, weight (upper bound)
    if with_noise:
        fixed += real_b + n3 * _F32
    # pasted template (real volume, or with a pruned forward FFT its zero-padded
    # z-spectrum input plus compact rows and planes), its spectrum, the correlation
    if pruned_forward:
        nxh = nx // 2 + 1
        # the fused z stage needs no zero-padded z-spectrum input
        per_rot = real_b + (1 if fused_z else 2) * spec_b
        per_rot += (
            box_n * box_n * (nx * _F32 + nxh * _C64) + 2 * box_n * ny * nxh * _C64
        )
    else:
        per_rot = 2 * real_b + spec_b
    if mask_is_spherical:
        setup = 3 * real_b + 2 * spec_b  # N_M * sigma_local, computed once
    else:
        fixed += spec_b + n3 * _F32  # spectrum of tomogram^2, mask coefficients
        setup = real_b  # the upload of tomogram^2
        per_rot += 2 * real_b + 2 * spec_b  # mask spectra (x2), mask correlations (x2)
    per_rot += (
        (2 * n3 * _F32 + box_spec) if not mask_is_spherical else (n3 * _F32 + box_spec)
    )
    return fixed, setup, per_rot, real_b, spec_b


def estimate_device_bytes(
    shape_zyx: tuple[int, int, int],
    box_n: int,
    *,
    batch: int,
    mask_is_spherical: bool,
    with_noise: bool,
    pruned_forward: bool = True,
    fused_z: bool = False,
) -> int:
    """Estimate the peak device memory of a GPU job.

    Parameters
    ----------
    shape_zyx
        ``(z, y, x)`` shape of the searched (sub)volume in voxels.
    box_n
        Template box edge in voxels.
    batch
        Rotations per FFT call.
    mask_is_spherical
        False when the mask is rotated with the template (three volume FFTs more).
    with_noise
        True with a random-phase noise template.
    pruned_forward
        The template's forward FFT skips the zero rows and planes (the default).
    fused_z
        Use the fused z stage where it applies (see :func:`uses_fused_z`).

    Returns
    -------
    int
        Bytes, excluding pyvkfft workspaces and driver overhead (see
        :data:`MEMORY_HEADROOM`).
    """
    fixed, setup, per_rot, _, _ = _sizes(
        shape_zyx,
        box_n,
        mask_is_spherical=mask_is_spherical,
        with_noise=with_noise,
        pruned_forward=pruned_forward,
        fused_z=uses_fused_z(shape_zyx, pruned_forward=pruned_forward, fused_z=fused_z),
    )
    return fixed + max(setup, batch * per_rot)


def plan_buffers(
    shape_zyx: tuple[int, int, int],
    box_n: int,
    *,
    mask_is_spherical: bool,
    with_noise: bool,
    free_bytes: int,
    max_alloc_bytes: int,
    max_batch: int,
    device_name: str,
    pruned_forward: bool = True,
    fused_z: bool = False,
) -> BufferPlan:
    """Choose the largest batch that fits the device and return the buffer plan.

    Parameters
    ----------
    shape_zyx, box_n, mask_is_spherical, with_noise, pruned_forward, fused_z
        The job, as for :func:`estimate_device_bytes`.
    free_bytes
        Device memory available to this job in bytes.
    max_alloc_bytes
        Largest single allocation the device allows in bytes.
    max_batch
        Upper bound on rotations per FFT call (at least 1).
    device_name
        Used in the error message.

    Returns
    -------
    BufferPlan
        The plan with ``batch`` between 1 and ``max_batch``.

    Raises
    ------
    GpuOutOfMemoryError
        If even one rotation per batch does not fit; the message gives the sizes and
        suggests splitting the volume with ``-s``.
    """
    fused = uses_fused_z(shape_zyx, pruned_forward=pruned_forward, fused_z=fused_z)
    fixed, setup, per_rot, real_b, spec_b = _sizes(
        shape_zyx,
        box_n,
        mask_is_spherical=mask_is_spherical,
        with_noise=with_noise,
        pruned_forward=pruned_forward,
        fused_z=fused,
    )
    budget = int(free_bytes * MEMORY_HEADROOM)
    by_memory = (budget - fixed) // per_rot if budget > fixed else 0
    by_alloc = max_alloc_bytes // max(real_b, spec_b, 1)
    batch = int(min(max_batch, by_memory, by_alloc))
    need_one = fixed + max(setup, per_rot)
    if batch < 1 or fixed + setup > budget:
        gib = 1024**3
        raise GpuOutOfMemoryError(
            f"{device_name}: a {shape_zyx[2]}x{shape_zyx[1]}x{shape_zyx[0]} (x,y,z) "
            "search "
            f"with a {box_n}^3 template needs about {need_one / gib:.2f} GiB of device "
            f"memory (largest buffer {max(real_b, spec_b) / gib:.2f} GiB) but "
            f"{free_bytes / gib:.2f} GiB is available (single allocations up to "
            f"{max_alloc_bytes / gib:.2f} GiB); split the volume with "
            "-s/--volume-split (e.g. -s 2 2 1) or use a GPU with more memory"
        )
    return BufferPlan(
        shape_zyx=shape_zyx,
        box_n=box_n,
        batch=batch,
        mask_is_spherical=mask_is_spherical,
        with_noise=with_noise,
        pruned_forward=pruned_forward,
        fused_z=fused,
        fixed_bytes=fixed,
        setup_bytes=setup,
        per_rotation_bytes=per_rot,
        largest_buffer_bytes=batch * max(real_b, spec_b),
    )


# ----------------------------------------------------------------------------------
# Device abstraction
# ----------------------------------------------------------------------------------


class DeviceOpsBase:
    """Host logic both :class:`DeviceOps` implementations share.

    Subclasses set ``device_name`` and implement ``_plan(shape, dtype, options)``
    (build a pyvkfft ``VkFFTApp`` on their queue or stream) and ``_wait()`` (block
    until the queue or stream is idle).
    """

    device_name: str

    def __init__(self, api: str, availability: tuple[bool, str]) -> None:
        ok, reason = availability
        if not ok:
            raise BackendUnavailableError(f"{api} backend: {reason}")
        # host arrays of asynchronous uploads, kept alive until synchronize()
        self._pending_host: list[npt.NDArray[Any]] = []

    @staticmethod
    def _check_index(label: str, index: int, count: int, how: str = "") -> None:
        """Raise ConfigError unless ``0 <= index < count`` (``label``: e.g. "CUDA
        device id"; ``how``: how the user picks one)."""
        if not 0 <= index < count:
            raise ConfigError(
                f"{label} {index} does not exist: found {count} device(s) "
                f"(see `tmfast info`); pick 0..{count - 1}{how}"
            )

    def _plan(
        self, shape: tuple[int, ...], dtype: type, options: dict[str, Any]
    ) -> Any:
        raise NotImplementedError

    def _wait(self) -> None:
        raise NotImplementedError

    def _keep(self, host: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Return ``host`` as a contiguous array kept alive until the next sync."""
        data = np.ascontiguousarray(host)
        self._pending_host.append(data)
        return data

    def first(self, dev: Any) -> Any:
        """Return the first item of a batched device array (a view)."""
        return dev[0]

    def fft_plan(self, shape: tuple[int, ...], *, axis: int | str | None = None) -> Any:
        """Plan an out-of-place transform (see :func:`fft_plan_options`)."""
        dtype, options = fft_plan_options(axis)
        try:
            return self._plan(shape, dtype, options)
        except Exception as exc:
            raise BackendUnavailableError(
                f"{self.device_name}: pyvkfft could not plan an FFT of shape {shape} "
                f"(axis {axis}) ({exc})"
            ) from exc

    def synchronize(self) -> None:
        """Wait for all enqueued work and drop the kept host arrays."""
        self._wait()
        self._pending_host.clear()

    def release(self) -> None:
        """Finish all work before the buffers are dropped."""
        self.synchronize()


class DeviceOps(Protocol):
    """What the shared host logic needs from a device API (OpenCL or CUDA).

    Device arrays are opaque objects with ``shape`` and ``dtype``; kernel arguments
    are device arrays or numpy scalars (:func:`i32`, :func:`i64`, :func:`f32`).
    All operations are enqueued in order on one queue/stream.
    """

    #: Backend name, ``"opencl"`` or ``"cuda"``.
    name: str
    #: Human-readable device description for messages.
    device_name: str

    def activate(self) -> contextlib.AbstractContextManager[None]:
        """Make the device current for the enclosed calls (CUDA context push)."""
        ...

    def memory(self) -> tuple[int, int]:
        """Return (available bytes, largest single allocation in bytes); needs no
        :meth:`activate` around it."""
        ...

    def empty(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> Any:
        """Allocate an uninitialised device array."""
        ...

    def zeros(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> Any:
        """Allocate a zeroed device array."""
        ...

    def to_device(self, host: npt.NDArray[Any]) -> Any:
        """Allocate a device array holding a copy of ``host`` (C-contiguous)."""
        ...

    def write(self, dev: Any, host: npt.NDArray[Any]) -> None:
        """Enqueue an asynchronous copy of ``host`` to the start of ``dev``."""
        ...

    def to_host(self, dev: Any) -> npt.NDArray[Any]:
        """Copy a device array to the host (synchronises)."""
        ...

    def first(self, dev: Any) -> Any:
        """Return a view of ``dev[0]`` usable as a kernel and FFT argument."""
        ...

    def launch(self, kernel: str, n_items: int, *args: Any) -> None:
        """Enqueue ``kernel`` over ``n_items`` work items (1D)."""
        ...

    def launch_groups(self, kernel: str, n_groups: int, *args: Any) -> None:
        """Enqueue ``kernel`` as ``n_groups`` groups of :data:`REDUCE_WG` items."""
        ...

    def fft_plan(self, shape: tuple[int, ...], *, axis: int | str | None = None) -> Any:
        """Build an out-of-place float32 FFT plan for arrays of ``shape``.

        ``axis=None``: R2C/C2R over the last 3 axes; ``axis="yx"``: R2C/C2R over
        the last 2 (the fused z stage's inverse); ``axis=-1``: R2C/C2R along x
        only; ``axis=-2`` or ``-3``: complex-to-complex along that axis only.
        """
        ...

    def rfft(self, plan: Any, src: Any, dst: Any) -> None:
        """Enqueue the forward transform of ``plan`` (R2C or C2C)."""
        ...

    def irfft(self, plan: Any, src: Any, dst: Any) -> None:
        """Enqueue the normalised inverse (``src`` may be overwritten)."""
        ...

    def synchronize(self) -> None:
        """Wait for all enqueued work."""
        ...

    def release(self) -> None:
        """Release the device context (after all arrays are dropped)."""
        ...


def _as_f32_c(a: npt.ArrayLike) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(a, dtype=np.float32)


def _validate(inputs: CorrelationInputs) -> int:
    """Check shapes and return the template box edge."""
    tomo = inputs.tomogram
    if tomo.ndim != 3:
        raise ConfigError(
            f"tomogram must be a 3-D (z, y, x) array, got shape {tomo.shape}"
        )
    t = inputs.template
    if t.ndim != 3 or len(set(t.shape)) != 1:
        raise ConfigError(
            f"template must be a cubic (n, n, n) box, got shape {t.shape}"
        )
    n = int(t.shape[0])
    if n > min(tomo.shape):
        raise ConfigError(
            f"template box {n}^3 is larger than the searched volume {tomo.shape} "
            "(z, y, x); use a smaller template box or a larger volume split"
        )
    if inputs.mask.shape != t.shape:
        raise ConfigError(
            f"mask shape {inputs.mask.shape} differs from template shape {t.shape}"
        )
    w_shape = (n, n, n // 2 + 1)
    if inputs.template_weight.shape != w_shape:
        raise ConfigError(
            f"template_weight shape {inputs.template_weight.shape} must be {w_shape} "
            "(rfft half spectrum of the template box)"
        )
    if inputs.noise_template is not None and inputs.noise_template.shape != t.shape:
        raise ConfigError(
            f"noise template shape {inputs.noise_template.shape} differs from template "
            f"shape {t.shape}"
        )
    return n


def _check_hermitian(weight: npt.NDArray[np.float32]) -> None:
    """Warn when ``weight`` is not symmetric under k -> -k where rfft keeps both.

    On the kx = 0 (and even-n Nyquist) planes the half spectrum holds both k and -k;
    a weight that differs there makes the product non-Hermitian, and C2R transforms
    (scipy, VkFFT) then disagree. Physical filters (band-pass, wedge, CTF) are
    symmetric, so this flags a bug in the caller.
    """
    n = weight.shape[0]
    planes = [0] + ([n // 2] if n % 2 == 0 else [])
    w = np.asarray(weight, dtype=np.float64)
    scale = float(np.abs(w).max()) or 1.0
    for ix in planes:
        plane = w[:, :, ix]
        mirrored = np.roll(np.flip(plane, (0, 1)), 1, axis=(0, 1))
        if not np.allclose(plane, mirrored, rtol=1e-5, atol=1e-6 * scale):
            warnings.warn(
                f"template_weight is not symmetric under k -> -k on the kx index {ix} "
                "plane: the weighted template is then not real and GPU and CPU results "
                "differ; build the weight from |k| or symmetrise it",
                RuntimeWarning,
                stacklevel=3,
            )
            return


def _split_f64(
    x: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Split float64 values into a float32 (high, low) pair with hi + lo ~ x."""
    hi = x.astype(np.float32)
    lo = (x - hi.astype(np.float64)).astype(np.float32)
    return hi, lo


class GpuMatchBackend:
    """The template-matching backend on one GPU device, independent of its API.

    Subclasses (:class:`tmfast.backends.opencl.OpenCLBackend`,
    :class:`tmfast.backends.cuda.CudaBackend`) only construct the :class:`DeviceOps`.

    Parameters
    ----------
    ops
        The device API of one device.
    max_batch
        Upper bound on rotations per FFT call; the memory planner may choose fewer.
    pruned_forward
        Transform only the rows and planes the pasted template touches (x, then y,
        then z; the default) instead of a full 3-D R2C of the padded volume.
    fused_z
        With ``pruned_forward``, run the z stage of the correlation as one kernel
        (``zline_corr``) where the z length allows it (see :func:`uses_fused_z`):
        one volume spectrum less per rotation of a batch, but slower than the
        default separate z FFT, product and 3-D inverse on the GPUs measured.
    """

    name: str = "gpu"

    def __init__(
        self,
        ops: DeviceOps,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        pruned_forward: bool = True,
        fused_z: bool = False,
    ) -> None:
        if max_batch < 1:
            raise ConfigError(f"max_batch must be at least 1, got {max_batch}")
        self._ops = ops
        self._max_batch = max_batch
        self._pruned_forward = pruned_forward
        self._fused_z = fused_z
        self._job: dict[str, Any] | None = None
        self._plans: dict[tuple[tuple[int, ...], int | str | None], Any] = {}
        self.plan: BufferPlan | None = None

    # -- protocol -------------------------------------------------------------------

    def prepare(
        self, inputs: CorrelationInputs, *, resume_from: RunningMaps | None = None
    ) -> None:
        """Upload inputs, build FFT plans and all buffers, start from ``resume_from``.

        Parameters
        ----------
        inputs
            The (sub)volume, template, mask, Fourier weight and optional noise template.
        resume_from
            Running maps of an interrupted search to continue (normalised, as returned
            by :meth:`snapshot`).

        Raises
        ------
        ConfigError
            If array shapes are inconsistent.
        GpuOutOfMemoryError
            If the job does not fit in device memory.
        """
        from tmfast.geometry.interpolation import bspline_coefficients

        n = _validate(inputs)
        _check_hermitian(inputs.template_weight)
        if self._job is not None:
            self._drop_job()
        ops = self._ops
        shape = tuple(int(s) for s in inputs.tomogram.shape)
        shape3 = (shape[0], shape[1], shape[2])
        spherical = bool(inputs.mask_is_spherical)
        with_noise = inputs.noise_template is not None
        if resume_from is not None and resume_from.scores.shape != shape3:
            raise ConfigError(
                f"resume_from maps have shape {resume_from.scores.shape}, the tomogram "
                f"has {shape3}; resume with the same volume split"
            )
        if resume_from is not None and (resume_from.noise_scores is None) == with_noise:
            raise ConfigError(
                "resume_from noise maps do not match the job: resume with the same "
                "random-phase setting as the interrupted run"
            )
        with ops.activate():
            plan = self._plan_job(
                shape3,
                n,
                mask_is_spherical=spherical,
                with_noise=with_noise,
                max_batch=self._max_batch,
            )
            logger.debug(
                "%s: batch %d, estimated %.3f GiB",
                ops.device_name,
                plan.batch,
                plan.total_bytes / 1024**3,
            )
            try:
                self._job = self._allocate(
                    inputs, plan, n, shape3, bspline_coefficients
                )
            except MemoryError as exc:
                self._job = None
                raise GpuOutOfMemoryError(
                    f"{ops.device_name}: out of device memory while preparing a "
                    f"{shape3} (z, y, x) search ({exc}); split the volume with "
                    "-s/--volume-split or use a GPU with more memory"
                ) from exc
            self.plan = plan
            self._load_maps(resume_from)

    def fits(
        self,
        shape_zyx: tuple[int, int, int],
        box_n: int,
        *,
        mask_is_spherical: bool,
        with_noise: bool,
    ) -> bool:
        """Return whether a (sub)volume search of this size fits the device now.

        The engine can use it to choose a volume split before :meth:`prepare`
        (which raises :class:`~tmfast.errors.GpuOutOfMemoryError` otherwise).

        Parameters
        ----------
        shape_zyx
            ``(z, y, x)`` shape of the searched (sub)volume in voxels.
        box_n
            Template box edge in voxels.
        mask_is_spherical, with_noise
            Job options (see :func:`estimate_device_bytes`).

        Returns
        -------
        bool
            True if at least one rotation per batch fits in the free memory.
        """
        try:
            self._plan_job(
                shape_zyx,
                box_n,
                mask_is_spherical=mask_is_spherical,
                with_noise=with_noise,
                max_batch=1,
            )
        except GpuOutOfMemoryError:
            return False
        return True

    def _plan_job(
        self,
        shape_zyx: tuple[int, int, int],
        box_n: int,
        *,
        mask_is_spherical: bool,
        with_noise: bool,
        max_batch: int,
    ) -> BufferPlan:
        """:func:`plan_buffers` for this device's free memory now."""
        ops = self._ops
        free_b, max_alloc = ops.memory()  # each API makes its own context current
        return plan_buffers(
            shape_zyx,
            box_n,
            mask_is_spherical=mask_is_spherical,
            with_noise=with_noise,
            free_bytes=free_b,
            max_alloc_bytes=max_alloc,
            max_batch=max_batch,
            device_name=ops.device_name,
            pruned_forward=self._pruned_forward,
            fused_z=self._fused_z,
        )

    def score_rotations(self, first_index: int, matrices: RotationMatrices) -> None:
        """Score rotations ``first_index .. first_index + len(matrices) - 1``.

        Parameters
        ----------
        first_index
            Index (into the job's angle set) of ``matrices[0]``.
        matrices
            ``(B, 3, 3)`` active rotations acting on ``(x, y, z)``; any ``B``.

        Raises
        ------
        ConfigError
            If called before :meth:`prepare` or with a wrong matrix shape.
        """
        job = self._require_job()
        mats = np.asarray(matrices, dtype=np.float64)
        if mats.ndim != 3 or mats.shape[1:] != (3, 3):
            raise ConfigError(f"matrices must have shape (B, 3, 3), got {mats.shape}")
        batch = job["batch"]
        with self._ops.activate():
            for start in range(0, mats.shape[0], batch):
                chunk = mats[start : start + batch]
                self._score_chunk(job, first_index + start, chunk)
        job["done"] += int(mats.shape[0])

    def snapshot(self) -> RunningMaps:
        """Return a host copy of the running maps, normalised like :meth:`finalize`.

        Raises
        ------
        ConfigError
            If called before :meth:`prepare`.
        """
        job = self._require_job()
        with self._ops.activate():
            return self._read_maps(job)

    def finalize(self) -> RunningMaps:
        """Return the final maps and release the job's device buffers.

        Raises
        ------
        ConfigError
            If called before :meth:`prepare`.
        """
        maps = self.snapshot()
        self._drop_job()
        return maps

    def close(self) -> None:
        """Free all device buffers and FFT plans; the backend may be prepared again."""
        self._drop_job()
        if self._plans:
            with self._ops.activate():
                self._plans = {}

    # -- internals ------------------------------------------------------------------

    def _require_job(self) -> dict[str, Any]:
        if self._job is None:
            raise ConfigError(f"{self.name} backend: call prepare() before scoring")
        return self._job

    def _drop_job(self) -> None:
        if self._job is None:
            return
        with self._ops.activate():
            with contextlib.suppress(Exception):
                self._ops.synchronize()
            self._job = None  # frees the buffers while the device context is current
            self.plan = None

    def _allocate(
        self,
        inputs: CorrelationInputs,
        plan: BufferPlan,
        n: int,
        shape: tuple[int, int, int],
        bspline_coefficients: Any,
    ) -> dict[str, Any]:
        ops = self._ops
        batch = plan.batch
        nz, ny, nx = shape
        spec_shape = (nz, ny, nx // 2 + 1)
        n_real = nz * ny * nx
        n_spec = nz * ny * (nx // 2 + 1)
        spherical = plan.mask_is_spherical
        f32t, c64t = np.float32, np.complex64

        job: dict[str, Any] = {
            "batch": batch,
            "n": n,
            "shape": shape,
            "n_real": n_real,
            "n_spec": n_spec,
            "spherical": spherical,
            "with_noise": plan.with_noise,
            "done": 0,
        }
        nxh = nx // 2 + 1
        vol_shape = (batch, *shape) if batch > 1 else shape
        box_shape = (batch, n, n, n) if batch > 1 else (n, n, n)
        keys: dict[str, tuple[tuple[int, ...], int | str | None]] = {
            "single_plan": (shape, None),
            "box_plan": (box_shape, None),
        }
        if plan.fused_z:
            keys["yx_plan"] = (vol_shape, "yx")  # the inverse after zline_corr
        else:
            keys["vol_plan"] = (vol_shape, None)
        if plan.pruned_forward:
            keys["rows_plan"] = ((batch, n, n, nx), -1)
            keys["y_plan"] = ((batch, n, ny, nxh), -2)
            if not plan.fused_z:
                keys["z_plan"] = ((batch, nz, ny, nxh), -3)
        # FFT plans are kept across prepare() calls with the same shapes (the tiles
        # of one tomogram), as building them compiles GPU code.
        needed = set(keys.values())
        self._plans = {k: v for k, v in self._plans.items() if k in needed}
        for plan_shape, axis in needed:
            if (plan_shape, axis) not in self._plans:
                self._plans[plan_shape, axis] = ops.fft_plan(plan_shape, axis=axis)
        for name, plan_key in keys.items():
            job[name] = self._plans[plan_key]
        single_plan = job["single_plan"]
        job["pruned"] = plan.pruned_forward
        job["fused_z"] = plan.fused_z
        if plan.fused_z:
            radices = zline_radices(nz)
            assert radices is not None  # uses_fused_z checked it
            cols = zline_columns(nz)
            phase = -2.0 * np.pi * np.arange(nz, dtype=np.float64) / nz
            job["zline_tw"] = ops.to_device(
                (np.cos(phase) + 1j * np.sin(phase)).astype(np.complex64)
            )
            # at least one int so that a length-1 z axis still has a buffer
            job["zline_radices"] = ops.to_device(
                np.array(radices or (1,), dtype=np.int32)
            )
            job["zline_passes"] = len(radices)
            job["zline_cols"] = cols
            job["zline_groups"] = ny * (-(-nxh // cols))

        # Scores do not change under V -> (V - k) / s, but float32 spectra of an
        # offset volume lose precision (E[V^2] - E[V]^2 cancels), and the variance
        # floor is relative to unit mean square: standardise like the cpu backend.
        tomo = standardise(inputs.tomogram)
        mask = _as_f32_c(inputs.mask)
        job["tcoef"] = ops.to_device(
            _as_f32_c(bspline_coefficients(_as_f32_c(inputs.template)))
        )
        if inputs.noise_template is not None:
            job["ncoef"] = ops.to_device(
                _as_f32_c(bspline_coefficients(_as_f32_c(inputs.noise_template)))
            )
        job["weight"] = ops.to_device(_as_f32_c(inputs.template_weight))

        # Tomogram spectra (and the local sigma of a spherical mask) via temporaries.
        fv = ops.empty(spec_shape, c64t)
        tmp = ops.to_device(tomo)
        ops.rfft(single_plan, tmp, fv)
        job["fv"] = fv
        tomo_sq = tomo.astype(np.float64) ** 2
        ops.write(tmp, tomo_sq.astype(np.float32))
        if not spherical:
            fv2 = ops.empty(spec_shape, c64t)
            ops.rfft(single_plan, tmp, fv2)
            job["fv2"] = fv2
            job["mcoef"] = ops.to_device(_as_f32_c(bspline_coefficients(mask)))
            del tmp
        else:
            fv2_tmp = ops.empty(spec_shape, c64t)
            ops.rfft(single_plan, tmp, fv2_tmp)
            mask_dev = ops.to_device(mask)
            job["mask"] = mask_dev
            pad_m = ops.zeros(shape, f32t)
            ops.launch(
                "paste_box",
                n**3,
                pad_m,
                mask_dev,
                i32(0),
                i32(n),
                i32(nz),
                i32(ny),
                i32(nx),
                i32(1),
                i32(1),
            )
            spec_m = ops.empty(spec_shape, c64t)
            ops.rfft(single_plan, pad_m, spec_m)
            # fv2_tmp is read and overwritten element-wise by the same work item.
            ops.launch(
                "conj_mul_mask",
                n_spec,
                spec_m,
                fv2_tmp,
                fv,
                fv2_tmp,
                i64(n_spec),
                i32(1),
            )
            corr_m2 = tmp
            ops.irfft(single_plan, spec_m, pad_m)
            ops.irfft(single_plan, fv2_tmp, corr_m2)
            n_m = float(np.sum(mask, dtype=np.float64))
            if n_m <= 0:
                raise ConfigError("mask sums to zero: it must select some voxels")
            den = ops.empty(shape, f32t)
            ops.launch(
                "sigma_denominator", n_real, pad_m, corr_m2, f32(n_m), i64(n_real), den
            )
            job["den_host"] = ops.to_host(den).astype(np.float64)
            del den, pad_m, spec_m, fv2_tmp, corr_m2, tmp

        # Per-batch buffers.
        n3 = n**3
        box_spec_shape = (batch, n, n, n // 2 + 1)
        job["box"] = ops.empty((batch, n, n, n), f32t)
        job["box_spec"] = ops.empty(box_spec_shape, c64t)
        job["partial"] = ops.empty((batch * MOMENT_CHUNKS * 3,), f32t)
        job["stats"] = ops.zeros((batch * 4,), f32t)
        job["mats"] = ops.zeros((batch * 9,), f32t)
        if plan.pruned_forward:
            # Zero where nothing is ever pasted or scattered, once per job.
            job["rows_real"] = ops.zeros((batch, n, n, nx), f32t)
            job["rows_spec"] = ops.empty((batch, n, n, nxh), c64t)
            job["plane_in"] = ops.zeros((batch, n, ny, nxh), c64t)
            job["plane_out"] = ops.empty((batch, n, ny, nxh), c64t)
            if not plan.fused_z:
                job["zspec_in"] = ops.zeros((batch, *spec_shape), c64t)
        else:
            job["pad"] = ops.zeros((batch, *shape), f32t)
        job["spec"] = ops.empty((batch, *spec_shape), c64t)
        job["cc"] = ops.empty((batch, *shape), f32t)
        if not spherical:
            job["mbox"] = ops.empty((batch, n, n, n), f32t)
            job["spec_m"] = ops.empty((batch, *spec_shape), c64t)
            job["spec_m2"] = ops.empty((batch, *spec_shape), c64t)
            job["cc_m"] = ops.empty((batch, *shape), f32t)
            job["cc_m2"] = ops.empty((batch, *shape), f32t)
        job["n3"] = n3
        # Plans over (n, n, n) / shape take batch-1 arrays without the batch axis.
        for key in ("box", "box_spec", "pad", "spec", "cc", "spec_m", "spec_m2"):
            if key in job:
                job[key + "_fft"] = ops.first(job[key]) if batch == 1 else job[key]
        for key in ("cc_m", "cc_m2"):
            if key in job:
                job[key + "_fft"] = ops.first(job[key]) if batch == 1 else job[key]
        ops.synchronize()
        return job

    def _load_maps(self, resume: RunningMaps | None) -> None:
        job = self._require_job()
        ops = self._ops
        shape = job["shape"]
        if resume is None:
            resume = RunningMaps.empty(shape, with_noise=job["with_noise"])
        scale = job["den_host"] if job["spherical"] else None
        scores = resume.scores.astype(np.float64)
        # sums another backend kept only as region-of-interest totals start at 0
        # here and their totals are carried through to the maps handed out
        job["roi_totals"] = (resume.roi_score_sum, resume.roi_score_sq_sum)
        zeros = np.zeros(scores.shape)
        s = zeros if resume.score_sum is None else resume.score_sum.astype(np.float64)
        q = (
            zeros
            if resume.score_sq_sum is None
            else resume.score_sq_sum.astype(np.float64)
        )
        noise = (
            resume.noise_scores.astype(np.float64)
            if resume.noise_scores is not None
            else None
        )
        if scale is not None:
            with np.errstate(invalid="ignore"):
                scores = scores * scale
                s = s * scale
                q = q * scale * scale
                if noise is not None:
                    noise = noise * scale
        job["best"] = ops.to_device(scores.astype(np.float32))
        job["best_idx"] = ops.to_device(
            np.ascontiguousarray(resume.angles, dtype=np.int32)
        )
        s_hi, s_lo = _split_f64(s)
        q_hi, q_lo = _split_f64(q)
        job["sum_hi"], job["sum_lo"] = ops.to_device(s_hi), ops.to_device(s_lo)
        job["sq_hi"], job["sq_lo"] = ops.to_device(q_hi), ops.to_device(q_lo)
        if noise is not None:
            job["noise_best"] = ops.to_device(noise.astype(np.float32))
        job["done"] = int(resume.n_rotations_done)
        ops.synchronize()

    def _read_maps(self, job: dict[str, Any]) -> RunningMaps:
        ops = self._ops
        best = ops.to_host(job["best"]).astype(np.float64)
        idx = ops.to_host(job["best_idx"]).astype(np.int32)
        s = ops.to_host(job["sum_hi"]).astype(np.float64) + ops.to_host(job["sum_lo"])
        q = ops.to_host(job["sq_hi"]).astype(np.float64) + ops.to_host(job["sq_lo"])
        noise = (
            ops.to_host(job["noise_best"]).astype(np.float64)
            if job["with_noise"]
            else None
        )
        if job["spherical"]:
            den = job["den_host"]
            best = best / den
            s = s / den
            q = q / (den * den)
            if noise is not None:
                noise = noise / den
        return RunningMaps(
            scores=best.astype(np.float32),
            angles=idx,
            score_sum=s,
            score_sq_sum=q,
            noise_scores=None if noise is None else noise.astype(np.float32),
            n_rotations_done=int(job["done"]),
            roi_score_sum=job["roi_totals"][0],
            roi_score_sq_sum=job["roi_totals"][1],
        )

    def _score_chunk(
        self, job: dict[str, Any], first_index: int, mats: RotationMatrices
    ) -> None:
        ops = self._ops
        nb = int(mats.shape[0])
        n, n3 = job["n"], job["n3"]
        n_real, n_spec = job["n_real"], job["n_spec"]
        ops.write(
            job["mats"], np.ascontiguousarray(mats.reshape(nb, 9), dtype=np.float32)
        )
        spherical = job["spherical"]
        if not spherical:
            # Rotated masks: their correlations with V and V^2 give sigma_local.
            mbox = job["mbox"]
            ops.launch(
                "rotate_bspline",
                nb * n3,
                mbox,
                job["mcoef"],
                job["mats"],
                i32(n),
                i32(nb),
                i32(1),  # clip the rotated mask to [0, 1]
            )
            self._paste_forward(job, "paste_box", (mbox, i32(1)), nb, "spec_m")
            if job["fused_z"]:
                self._zline(job, "fv", "spec_m", nb, also=("fv2", "spec_m2"))
                inverse = job["yx_plan"]
            else:
                ops.launch(
                    "conj_mul_mask",
                    n_spec,
                    job["spec_m"],
                    job["spec_m2"],
                    job["fv"],
                    job["fv2"],
                    i64(n_spec),
                    i32(nb),
                )
                inverse = job["vol_plan"]
            ops.irfft(inverse, job["spec_m_fft"], job["cc_m_fft"])
            ops.irfft(inverse, job["spec_m2_fft"], job["cc_m2_fft"])
            mask_src, mask_batched = mbox, 1
            cc_m, cc_m2 = job["cc_m"], job["cc_m2"]
        else:
            mask_src, mask_batched = job["mask"], 0
            cc_m = cc_m2 = job["cc"]  # not read when use_local is 0
        use_local = i32(0 if spherical else 1)

        self._correlate(job, job["tcoef"], nb, mask_src, mask_batched)
        ops.launch(
            "update_scores",
            n_real,
            job["cc"],
            cc_m,
            cc_m2,
            job["stats"],
            use_local,
            i64(n_real),
            i32(nb),
            i32(first_index),
            job["best"],
            job["best_idx"],
            job["sum_hi"],
            job["sum_lo"],
            job["sq_hi"],
            job["sq_lo"],
        )
        if job["with_noise"]:
            self._correlate(job, job["ncoef"], nb, mask_src, mask_batched)
            ops.launch(
                "update_noise",
                n_real,
                job["cc"],
                cc_m,
                cc_m2,
                job["stats"],
                use_local,
                i64(n_real),
                i32(nb),
                job["noise_best"],
            )

    def _paste_forward(
        self,
        job: dict[str, Any],
        kernel: str,
        args: tuple[Any, ...],
        nb: int,
        out: str,
    ) -> None:
        """Paste ``nb`` boxes (centre at index 0) and transform them into ``job[out]``.

        ``kernel`` is ``normalise_paste`` or ``paste_box``; ``args`` are its
        arguments between the destination and the geometry. With the pruned forward
        FFT the boxes go to compact rows (R2C along x of n*n rows), which are
        scattered to their y places (C2C along y of n planes) and then to their z
        places (C2C along z): zero rows and planes are never transformed. With the
        fused z stage it stops after y: :meth:`_zline` takes ``plane_out`` from there.
        """
        ops = self._ops
        n = job["n"]
        nz, ny, nx = job["shape"]
        nxh = nx // 2 + 1
        if not job["pruned"]:
            ops.launch(
                kernel,
                nb * n**3,
                job["pad"],
                *args,
                i32(n),
                i32(nz),
                i32(ny),
                i32(nx),
                i32(1),
                i32(nb),
            )
            ops.rfft(job["vol_plan"], job["pad_fft"], job[out + "_fft"])
            return
        ops.launch(
            kernel,
            nb * n**3,
            job["rows_real"],
            *args,
            i32(n),
            i32(n),
            i32(n),
            i32(nx),
            i32(0),
            i32(nb),
        )
        ops.rfft(job["rows_plan"], job["rows_real"], job["rows_spec"])
        ops.launch(
            "scatter_shift",
            nb * n * n * nxh,
            job["plane_in"],
            job["rows_spec"],
            i32(n),
            i32(n),
            i32(ny),
            i64(nxh),
            i32(nb),
        )
        ops.rfft(job["y_plan"], job["plane_in"], job["plane_out"])
        if job["fused_z"]:
            return  # zline_corr reads plane_out
        ops.launch(
            "scatter_shift",
            nb * n * ny * nxh,
            job["zspec_in"],
            job["plane_out"],
            i32(1),
            i32(n),
            i32(nz),
            i64(ny * nxh),
            i32(nb),
        )
        ops.rfft(job["z_plan"], job["zspec_in"], job[out])

    def _correlate(
        self, job: dict[str, Any], coef: Any, nb: int, mask_src: Any, mask_batched: int
    ) -> None:
        """Rotate, weight, normalise, paste and correlate ``nb`` template copies."""
        ops = self._ops
        n, n3 = job["n"], job["n3"]
        n_box_spec = n * n * (n // 2 + 1)
        ops.launch(
            "rotate_bspline",
            nb * n3,
            job["box"],
            coef,
            job["mats"],
            i32(n),
            i32(nb),
            i32(0),
        )
        ops.rfft(job["box_plan"], job["box_fft"], job["box_spec_fft"])
        ops.launch(
            "apply_weight",
            n_box_spec,
            job["box_spec"],
            job["weight"],
            i64(n_box_spec),
            i32(nb),
        )
        ops.irfft(job["box_plan"], job["box_spec_fft"], job["box_fft"])
        ops.launch_groups(
            "box_moments",
            nb * MOMENT_CHUNKS,
            job["box"],
            mask_src,
            i32(mask_batched),
            i64(n3),
            i32(MOMENT_CHUNKS),
            job["partial"],
        )
        ops.launch(
            "finish_moments",
            nb,
            job["partial"],
            i32(MOMENT_CHUNKS),
            i32(nb),
            job["stats"],
        )
        self._paste_forward(
            job,
            "normalise_paste",
            (job["box"], mask_src, i32(mask_batched), job["stats"]),
            nb,
            "spec",
        )
        if job["fused_z"]:
            self._zline(job, "fv", "spec", nb)
            ops.irfft(job["yx_plan"], job["spec_fft"], job["cc_fft"])
            return
        ops.launch(
            "conj_mul",
            job["n_spec"],
            job["spec"],
            job["fv"],
            i64(job["n_spec"]),
            i32(nb),
        )
        ops.irfft(job["vol_plan"], job["spec_fft"], job["cc_fft"])

    def _zline(
        self,
        job: dict[str, Any],
        spectrum: str,
        out: str,
        nb: int,
        also: tuple[str, str] | None = None,
    ) -> None:
        """``job[out]`` <- the fused z stage of ``plane_out`` with the tomogram
        spectrum ``job[spectrum]`` (``fv`` or ``fv2``): all but the (y, x) inverse.
        ``also`` = (spectrum, out): a second product from the same forward transform
        (``zline_corr2``: the rotated mask's F(V) and F(V^2) pair)."""
        nz, ny, nx = job["shape"]
        buffers: tuple[Any, ...]
        if also is None:
            kernel, buffers = "zline_corr", (job[out], job["plane_out"], job[spectrum])
        else:
            kernel = "zline_corr2"
            buffers = (
                job[out],
                job[also[1]],
                job["plane_out"],
                job[spectrum],
                job[also[0]],
            )
        self._ops.launch_groups(
            kernel,
            job["zline_groups"],
            *buffers,
            job["zline_tw"],
            job["zline_radices"],
            i32(job["zline_passes"]),
            i32(job["n"]),
            i32(nz),
            i32(ny),
            i32(nx // 2 + 1),
            i32(job["zline_cols"]),
            i32(nb),
        )


@contextlib.contextmanager
def null_context() -> Iterator[None]:
    """A context manager that does nothing (OpenCL needs no context push)."""
    yield


def round_up(value: int, multiple: int) -> int:
    """Return the smallest multiple of ``multiple`` that is at least ``value``."""
    return -(-value // multiple) * multiple
