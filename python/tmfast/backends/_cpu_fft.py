"""The per-rotation volume FFTs of the CPU backend, behind one small interface.

Two engines compute the same transforms:

- :class:`ScipyVolumeFft`: ``scipy.fft`` (pocketfft), always available; the reference.
- :class:`FftwVolumeFft`: FFTW through PyPI ``pyfftw`` (optional extra ``tmfast[fftw]``;
  pyFFTW is BSD-licensed, the FFTW library in its wheels GPL). Plans are made once per
  buffer slot (one spectrum each); the transforms run in place in the backend's
  persistent buffers, with no allocation per rotation. On the issue-3 case (256x256x128
  volume, 48^3 box, 2 cores) the per-rotation FFT work drops from about 37 ms (scipy) to
  about 19 ms (``docs/benchmarks.md``).

Both engines do exactly two things per rotation, on ``(B, Z, Y, X//2+1)`` complex64
buffers that :meth:`spectrum_buffer` allocates (aligned for FFTW):

- :meth:`padded_rfft`: the 3-D ``rfftn`` of ``B`` small ``(n, n, n)`` boxes zero-padded
  (at indices ``0 .. n-1``) to the volume, *pruned*: the all-zero rows and planes of
  the padded box are never transformed;
- :meth:`inverse_but_x`: the inverse over the same bytes without its last stage (the
  real transform along x): the Rust kernels transform each row just before they use
  it (``fold_rotations(..., half_spectrum=True)``, ``tmfast::rowfft``), so the real
  correlation is never written to memory and read back (256x256x128, 2 cores:
  FFTW's x stage took 5.0 ms; see ``docs/benchmarks.md``). Rows transformed so are
  :attr:`inverse_scale` (``Z*Y*X``) times ``scipy.fft.irfftn``: neither engine
  normalises, and the backend folds ``1/(Z*Y*X)`` into the volume spectra instead of
  a pass per rotation.

**Planning and reproducibility.** FFTW's ``FFTW_MEASURE`` plans (the default,
``planner="measure"``) are about 30% faster than ``FFTW_ESTIMATE`` ones on the inverse
(11.9 against 16.5 ms on 256x256x128, 2 threads) but are chosen by timing, so two
processes could pick different algorithms and round differently. tmfast therefore
keeps FFTW's *wisdom* (the chosen plans) in a cache file, read before planning and
rewritten (atomically) when planning added to it: once a volume shape has been planned
on a machine, every later run, and every run resumed from a checkpoint, uses the same
plans and reproduces bit for bit. The file is ``$TMFAST_FFTW_WISDOM`` when set (``off``
disables the cache), else ``$XDG_CACHE_HOME/tmfast/`` (``~/.cache/tmfast/``) with a name
keyed by the CPU model, architecture and pyFFTW version. The cache alone is not enough
when several processes plan the same shape at once (array tasks on one node): each
measures, and the last to write wins, so a run resumed later could find other plans
than it started with. Checkpoints therefore keep the wisdom of the run that wrote them
(:func:`fftw_wisdom`, ``CpuBackend.plan_state``) and a resumed run plans from exactly
that (:func:`adopt_fftw_wisdom`), not from the cache. ``planner="estimate"`` needs no
cache and is deterministic everywhere. The first plan of a new shape takes a few
seconds (capped by ``_PLAN_SECONDS`` per transform).

``planner="patient"`` (``FFTW_PATIENT``, cached the same way) tries more algorithms:
on 256x256x128 with 2 threads the forward (pruned) transform 8.3-9.0 -> 6.7-7.1 ms and
the inverse's z and y stages 8.5-9.4 -> 7.3-8.1 ms, for about 60 s of planning once
per machine and volume shape (each transform capped at ``_PLAN_SECONDS``).
``CpuBackend`` chooses it for long searches (``tmfast.backends.cpu``).

FFTW's threads are OpenMP threads in pyFFTW's wheels: ``OMP_WAIT_POLICY=PASSIVE`` is
set (unless already set) before pyFFTW is imported, or their spin-waiting after each
transform slows the Rust kernels that run between transforms (measured 2x on the
spectrum multiply).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import scipy.fft as sfft

from tmfast import _rust
from tmfast._fileio import atomic_path
from tmfast.errors import ConfigError, TmfastError

__all__ = [
    "FFT_ENGINES",
    "PLANNERS",
    "FftwVolumeFft",
    "ScipyVolumeFft",
    "VolumeFft",
    "adopt_fftw_wisdom",
    "fftw_available",
    "fftw_wisdom",
    "make_volume_fft",
]

logger = logging.getLogger(__name__)

#: Accepted values of ``CpuBackend(fft=...)``.
FFT_ENGINES = ("auto", "scipy", "fftw")

#: FFTW planning rigour, least first (``FFTW_ESTIMATE``, ...).
Planner = Literal["estimate", "measure", "patient"]
PLANNERS: tuple[Planner, ...] = ("estimate", "measure", "patient")


#: Most FFTW threads for the template-box transforms (a 48^3 box: 0.75 ms with one
#: thread, 0.51 with two).
_BOX_THREADS = 4

#: Upper bound of FFTW's planning time per transform, seconds.
_PLAN_SECONDS = 30.0

#: Wisdom already imported in this process, by cache path (None: not yet read).
_wisdom_loaded: dict[Path, tuple[bytes, ...]] = {}


def _import_pyfftw() -> Any:
    """Import pyFFTW with passive OpenMP waiting (see the module docstring)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import pyfftw

    return pyfftw


def fftw_available() -> str | None:
    """Return ``None`` when pyFFTW imports, else the reason it does not."""
    try:
        _import_pyfftw()
    except ImportError as exc:  # pragma: no cover - depends on the install
        return f"pyfftw not importable ({exc}); pip install 'tmfast[fftw]'"
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def wisdom_path() -> Path | None:
    """The FFTW wisdom cache file, or ``None`` when ``TMFAST_FFTW_WISDOM=off``."""
    env = os.environ.get("TMFAST_FFTW_WISDOM")
    if env is not None and env.strip().lower() in ("off", "0", "no", "false", ""):
        return None
    if env:
        return Path(env).expanduser()
    pyfftw = _import_pyfftw()
    key = "|".join((platform.machine(), _cpu_model(), str(pyfftw.__version__)))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tmfast" / f"fftw-wisdom-{digest}.json"


def _load_wisdom(path: Path) -> None:
    """Import the cached wisdom (once per process and file); a missing or
    unreadable cache only costs planning time."""
    if path in _wisdom_loaded:
        return
    pyfftw = _import_pyfftw()
    try:
        doc = json.loads(path.read_text())
        wisdom = tuple(str(w).encode("ascii") for w in doc["wisdom"])
        pyfftw.import_wisdom(wisdom)
        logger.debug("FFTW wisdom read from %s", path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if path.exists():
            logger.warning("FFTW wisdom %s unreadable (%s): replanning", path, exc)
    _wisdom_loaded[path] = tuple(pyfftw.export_wisdom())


def fftw_wisdom() -> tuple[str, ...]:
    """This process's FFTW wisdom (every plan it made or imported) as text, ``()``
    without pyFFTW. Checkpoints keep it, so that a resumed run plans exactly as the
    run that wrote them (:func:`adopt_fftw_wisdom`)."""
    if fftw_available() is not None:
        return ()
    return tuple(w.decode("ascii") for w in _import_pyfftw().export_wisdom())


def adopt_fftw_wisdom(wisdom: tuple[str, ...] | list[str]) -> None:
    """Plan from exactly ``wisdom`` from now on (forgetting the process's own) and
    do not import the cache file over it.

    A resumed run must use the plans of the run that wrote its checkpoint: the
    cache file may hold other plans for the same shapes by then (array tasks on one
    node each measure and rewrite it), and other plans round differently (~1e-7).
    """
    pyfftw = _import_pyfftw()
    pyfftw.forget_wisdom()
    pyfftw.import_wisdom(tuple(w.encode("ascii") for w in wisdom))
    path = wisdom_path()
    if path is not None:  # read already, as far as _load_wisdom is concerned
        _wisdom_loaded[path] = tuple(pyfftw.export_wisdom())


def _save_wisdom(path: Path) -> None:
    """Rewrite the cache when planning added wisdom (temporary name, then rename);
    an unwritable cache is logged once and otherwise ignored."""
    pyfftw = _import_pyfftw()
    wisdom = tuple(pyfftw.export_wisdom())
    if _wisdom_loaded.get(path) == wisdom:
        return
    _wisdom_loaded[path] = wisdom
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"format": "tmfast-fftw-wisdom-1", "wisdom": [w.decode() for w in wisdom]}
        with atomic_path(path, overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(doc))
        logger.debug("FFTW wisdom written to %s", path)
    except (OSError, TmfastError) as exc:
        logger.warning(
            "FFTW wisdom cache %s not writable (%s): later runs plan again; set "
            "TMFAST_FFTW_WISDOM to a writable file",
            path,
            exc,
        )


class VolumeFft(Protocol):
    """What :class:`tmfast.backends.cpu.CpuBackend` needs per rotation."""

    name: str
    #: :meth:`inverse_but_x` then the rows' real transforms give ``inverse_scale *
    #: scipy.fft.irfftn(spec)``.
    inverse_scale: float

    @property
    def max_batch(self) -> int:
        """The most spectra :meth:`spectrum_buffer` may hold."""
        ...

    def spectrum_buffer(self, count: int) -> np.ndarray: ...

    def padded_rfft(self, boxes: np.ndarray, out: np.ndarray) -> np.ndarray: ...

    def inverse_but_x(self, spec: np.ndarray) -> np.ndarray: ...

    def box_weighted(self, boxes: np.ndarray, weight: np.ndarray) -> np.ndarray: ...


class ScipyVolumeFft:
    """``scipy.fft`` (pocketfft) engine; ``workers`` threads per transform."""

    name = "scipy"
    max_batch = 32

    def __init__(self, shape_zyx: tuple[int, int, int], box: int, workers: int):
        self.shape_zyx = tuple(int(s) for s in shape_zyx)
        self.box = int(box)
        self.workers = int(workers)
        sz, sy, sx = self.shape_zyx
        # unnormalised inverses (norm="forward"), as FFTW's: the fold's row stage is
        self.inverse_scale = float(sz * sy * sx)

    def spectrum_buffer(self, count: int) -> np.ndarray:
        """A zeroed ``(count, Z, Y, X//2+1)`` complex64 buffer (pages touched now)."""
        sz, sy, sx = self.shape_zyx
        buf = np.empty((count, sz, sy, sx // 2 + 1), dtype=np.complex64)
        buf.fill(0)
        return buf

    def padded_rfft(self, boxes: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``rfftn`` of ``boxes`` ``(B, n, n, n)`` zero-padded to the volume, into
        ``out`` ``(B, Z, Y, X//2+1)``: x over the box's rows, z over the box's
        columns, y over every plane."""
        sz, _, sx = self.shape_zyx
        w = self.workers
        a = sfft.rfft(boxes, n=sx, axis=-1, workers=w)
        n_y = a.shape[-2]
        a = sfft.fft(a, n=sz, axis=-3, workers=w, overwrite_x=True)
        out[..., :n_y, :] = a
        del a
        out[..., n_y:, :] = 0
        res = sfft.fft(out, axis=-2, workers=w, overwrite_x=True)
        if not np.shares_memory(res, out):  # not expected: scipy works in place
            out[...] = res
        return out

    def inverse_but_x(self, spec: np.ndarray) -> np.ndarray:
        """The unnormalised inverse's complex stages (z, y) over ``spec``'s own bytes
        (``overwrite_x``); returns ``spec``."""
        w = self.workers
        for axis in (-3, -2):
            res = sfft.ifft(
                spec, axis=axis, workers=w, overwrite_x=True, norm="forward"
            )
            if not np.shares_memory(res, spec):  # not expected: scipy works in place
                spec[...] = res
            del res
        return spec

    def box_weighted(self, boxes: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """``irfftn(rfftn(box) * weight)`` of each ``(n, n, n)`` box, float32. One
        thread: a template box is too small for two to pay (0.74 against 0.89 ms for
        48^3)."""
        n = self.box
        f = sfft.rfftn(boxes, axes=(-3, -2, -1), workers=1)
        f *= weight
        out = sfft.irfftn(f, s=(n, n, n), axes=(-3, -2, -1), workers=1)
        return np.asarray(out, dtype=np.float32)


class FftwVolumeFft:
    """FFTW engine (pyFFTW): the same transforms as :class:`ScipyVolumeFft`, planned
    once per buffer slot and run in place with ``workers`` threads (GIL released)."""

    name = "fftw"

    def __init__(
        self,
        shape_zyx: tuple[int, int, int],
        box: int,
        workers: int,
        planner: Planner = "measure",
    ):
        self._pyfftw = _import_pyfftw()
        self.shape_zyx = tuple(int(s) for s in shape_zyx)
        self.box = int(box)
        self.workers = int(workers)
        if planner not in PLANNERS:
            raise ConfigError(
                f"FFTW planner {planner!r}: use one of {', '.join(PLANNERS)}"
            )
        self._flags = (f"FFTW_{planner.upper()}",)
        self._wisdom = wisdom_path() if planner != "estimate" else None
        if self._wisdom is not None:
            _load_wisdom(self._wisdom)
        sz, sy, sx = self.shape_zyx
        self.inverse_scale = float(sz * sy * sx)
        # plans per buffer slot (one spectrum each), keyed by direction and address
        self._plans: dict[tuple[str, int], Any] = {}
        self._rows: np.ndarray | None = None
        self._box_plans: tuple[Any, Any, np.ndarray, np.ndarray] | None = None

    def _fftw(
        self,
        src: np.ndarray,
        dst: np.ndarray,
        axes: tuple[int, ...],
        forward: bool,
        preserve: bool,
        threads: int | None = None,
    ) -> Any:
        """One FFTW plan (``threads``: default ``workers``); ``preserve``: keep the
        arrays' contents (FFTW_MEASURE and FFTW_PATIENT overwrite them while timing
        candidate algorithms)."""
        flags = self._flags if forward else (*self._flags, "FFTW_DESTROY_INPUT")
        measuring = "FFTW_ESTIMATE" not in flags
        saved = [a.copy() for a in (src, dst)] if preserve and measuring else []
        plan = self._pyfftw.FFTW(
            src,
            dst,
            axes=axes,
            direction="FFTW_FORWARD" if forward else "FFTW_BACKWARD",
            flags=flags,
            threads=self.workers if threads is None else threads,
            planning_timelimit=_PLAN_SECONDS,
        )
        if saved:
            np.copyto(src, saved[0])
            np.copyto(dst, saved[1])
        if self._wisdom is not None:
            _save_wisdom(self._wisdom)
        return plan

    @property
    def max_batch(self) -> int:
        """The most spectra one buffer may hold. Every spectrum is transformed on its
        own by the same one-spectrum plans (a plan over a batch may pick other
        algorithms, whose rounding would make results depend on the batching); that
        holds only while every slot has the first one's SIMD alignment."""
        sz, sy, sx = self.shape_zyx
        slot_bytes = sz * sy * (sx // 2 + 1) * np.dtype(np.complex64).itemsize
        return 32 if slot_bytes % 64 == 0 else 1

    def spectrum_buffer(self, count: int) -> np.ndarray:
        """A zeroed, SIMD-aligned ``(count, Z, Y, X//2+1)`` complex64 buffer, with
        its plans made now (while its contents do not matter)."""
        if count > self.max_batch:
            raise ValueError(f"FFTW buffers hold at most {self.max_batch} spectra")
        sz, sy, sx = self.shape_zyx
        buf: np.ndarray = self._pyfftw.empty_aligned(
            (count, sz, sy, sx // 2 + 1), dtype=np.complex64
        )
        buf.fill(0)
        for i in range(count):
            self._forward_plans(buf[i : i + 1], preserve=False)
            self._inverse_plans(buf[i : i + 1], preserve=False)
        buf.fill(0)  # planning may have written to it
        return buf

    def _forward_plans(self, out: np.ndarray, preserve: bool = True) -> Any:
        """Rows buffer and the three pruned stages for ``out`` (cached per buffer
        slot: ``out`` is one slot, ``buf[i : i + 1]``)."""
        if out.shape[0] != 1:
            raise ValueError(f"one spectrum per plan, got {out.shape[0]}")
        n, sx = self.box, self.shape_zyx[2]
        key = ("fwd", out.ctypes.data)
        plans = self._plans.get(key)
        if plans is None:
            rows = self._rows
            if rows is None:
                # the box zero-padded along x (columns >= n stay zero: the plan
                # reads it out of place), shared by every slot's plans
                rows = self._rows = self._pyfftw.zeros_aligned(
                    (1, n, n, sx), dtype=np.float32
                )
            # x over the box's n*n rows (into out's first n planes and rows), y over
            # its n planes, z over everything, the last two in place
            plans = (
                rows,
                self._fftw(rows, out[:, :n, :n, :], (3,), True, preserve=preserve),
                self._fftw(out[:, :n], out[:, :n], (2,), True, preserve=preserve),
                self._fftw(out, out, (1,), True, preserve=preserve),
            )
            rows.fill(0)  # the padding must be zero again after planning
            self._plans[key] = plans
        return plans

    def _inverse_plans(self, spec: np.ndarray, preserve: bool = True) -> Any:
        """The inverse's complex stages for ``spec``: z, then y, over the volume, in
        place. Two 1-D plans, not one 2-D plan: FFTW picked different 2-D algorithms
        for 1 and 2 threads, so two backends of one thread each did not reproduce one
        backend of two."""
        if spec.shape[0] != 1:
            raise ValueError(f"one spectrum per plan, got {spec.shape[0]}")
        key = ("inv", spec.ctypes.data)
        plans = self._plans.get(key)
        if plans is None:
            plans = self._plans[key] = (
                self._fftw(spec, spec, (1,), False, preserve=preserve),
                self._fftw(spec, spec, (2,), False, preserve=preserve),
            )
        return plans

    def padded_rfft(self, boxes: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Pruned ``rfftn`` of ``boxes`` ``(B, n, n, n)`` zero-padded to the volume,
        into ``out`` (best a buffer from :meth:`spectrum_buffer`: planned already)."""
        n = self.box
        if len(boxes) != out.shape[0]:
            raise ValueError(f"{len(boxes)} boxes for {out.shape[0]} spectra")
        for i in range(out.shape[0]):  # one spectrum at a time (see max_batch)
            one = out[i : i + 1]
            rows, p_x, p_y, p_z = self._forward_plans(one)
            rows[..., :n] = boxes[i]
            # the padding: all but the block p_x writes (Rust, all threads)
            _rust.zero_outside_corner(one.view(np.float32), n)
            p_x()
            p_y()
            p_z()
        return out

    def inverse_but_x(self, spec: np.ndarray) -> np.ndarray:
        """The unnormalised inverse's complex stages (z, y) over ``spec``'s own
        bytes; returns ``spec``."""
        for i in range(spec.shape[0]):  # one spectrum at a time (see max_batch)
            for plan in self._inverse_plans(spec[i : i + 1]):
                plan(normalise_idft=False)
        return spec

    def box_weighted(self, boxes: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """``irfftn(rfftn(box) * weight)`` of each ``(n, n, n)`` box, float32, with
        one-box FFTW plans made once (0.51 against scipy's 0.75-1.15 ms per 48^3 box
        on 2 cores). At most :data:`_BOX_THREADS` threads: a box is small, and on a
        many-core node waking every worker would cost more than it saves."""
        n = self.box
        if self._box_plans is None:
            real = self._pyfftw.empty_aligned((n, n, n), dtype=np.float32)
            spec = self._pyfftw.empty_aligned((n, n, n // 2 + 1), dtype=np.complex64)
            th = min(self.workers, _BOX_THREADS)
            fwd = self._fftw(real, spec, (0, 1, 2), True, preserve=False, threads=th)
            inv = self._fftw(spec, real, (0, 1, 2), False, preserve=False, threads=th)
            self._box_plans = (fwd, inv, real, spec)
        fwd, inv, real, spec = self._box_plans
        out = np.empty(boxes.shape, dtype=np.float32)
        for box, dst in zip(boxes, out, strict=True):
            real[...] = box
            fwd()
            spec *= weight
            inv(normalise_idft=True)
            dst[...] = real
        return out


def make_volume_fft(
    engine: str,
    shape_zyx: tuple[int, int, int],
    box: int,
    workers: int,
    planner: Planner = "measure",
) -> VolumeFft:
    """The FFT engine ``engine`` (``auto``: FFTW when pyFFTW imports, else scipy).

    Raises
    ------
    ConfigError
        If ``engine`` is unknown, or ``fftw`` is asked for and pyFFTW is missing.
    """
    if engine not in FFT_ENGINES:
        raise ConfigError(f"cpu FFT engine {engine!r}: choose {', '.join(FFT_ENGINES)}")
    why_not = fftw_available() if engine in ("auto", "fftw") else "not asked for"
    if engine == "fftw" and why_not is not None:
        raise ConfigError(f"cpu FFT engine 'fftw': {why_not}")
    if why_not is None:
        return FftwVolumeFft(shape_zyx, box, workers, planner)
    if engine == "auto":
        logger.info("cpu backend: scipy.fft engine (%s)", why_not)
    return ScipyVolumeFft(shape_zyx, box, workers)
