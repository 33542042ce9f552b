"""The cuda backend against the cpu backend (run on a GPU host; skipped elsewhere).

The GPU tests mirror tests/test_backends_opencl.py on the same kernel source. The
availability tests run everywhere: without pycuda or a driver, the backend must say
what is missing instead of failing on import.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_backends_opencl import (
    _assert_angles_equal_or_tied,
    _assert_maps_close,
    _cpu,
    _inputs,
    _matrices,
)
from tmfast.backends import cuda
from tmfast.errors import BackendUnavailableError, ConfigError

_OK, _REASON = cuda.is_available()
needs_cuda = pytest.mark.skipif(not _OK, reason=f"cuda backend unavailable: {_REASON}")


def test_is_available_explains_itself() -> None:
    ok, reason = cuda.is_available()
    assert isinstance(ok, bool) and reason
    if not ok:
        # one line naming what to install or change
        assert "\n" not in reason
        assert any(w in reason for w in ("pycuda", "pyvkfft", "driver", "device"))


@pytest.mark.skipif(_OK, reason="CUDA is available here")
def test_constructing_without_cuda_raises_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailableError, match="cuda backend"):
        cuda.CudaBackend(0)
    assert cuda.list_devices() == []


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(
    ("kind", "n"),
    [("spherical", 10), ("spherical", 11), ("non_spherical", 10), ("random_phase", 12)],
)
def test_cuda_equals_cpu(kind: str, n: int) -> None:
    inputs = _inputs(kind, n=n)
    mats = _matrices(10)
    ref = _cpu(inputs, mats)
    backend = cuda.CudaBackend(0, max_batch=4)
    backend.prepare(inputs)
    backend.score_rotations(0, mats[:7])
    backend.score_rotations(7, mats[7:])
    got = backend.finalize()
    _assert_maps_close(ref, got)
    _assert_angles_equal_or_tied(inputs, mats, ref, got)
    backend.close()


@pytest.mark.gpu
@needs_cuda
def test_cuda_resume_and_unknown_device() -> None:
    inputs = _inputs("non_spherical", shape=(32, 32, 34), seed=3)
    mats = _matrices(6, seed=4)
    ref = _cpu(inputs, mats)
    first = cuda.CudaBackend(0, max_batch=2)
    first.prepare(inputs)
    first.score_rotations(0, mats[:3])
    snap = first.snapshot()
    first.close()
    second = cuda.CudaBackend(0)
    second.prepare(inputs, resume_from=snap)
    second.score_rotations(3, mats[3:])
    _assert_maps_close(ref, second.finalize())
    second.close()
    with pytest.raises(ConfigError, match="device id 4096"):
        cuda.CudaBackend(4096)


@pytest.mark.gpu
@needs_cuda
def test_cuda_big_volume_batches_and_matches_cpu_peak() -> None:
    """A larger box and volume (batch 8) keep max and argmax where the CPU has them."""
    inputs = _inputs("spherical", n=24, shape=(64, 96, 96), seed=11)
    mats = _matrices(16, seed=12)
    ref = _cpu(inputs, mats)
    backend = cuda.CudaBackend(0)
    backend.prepare(inputs)
    assert backend.plan is not None and backend.plan.batch == 8
    backend.score_rotations(0, mats)
    got = backend.finalize()
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-4, rtol=0)
    assert np.argmax(got.scores) == np.argmax(ref.scores)
    backend.close()


def test_find_nvcc_prefers_path_then_cuda_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path
    home_bin = root / "cuda" / "bin"
    home_bin.mkdir(parents=True)
    fake = home_bin / "nvcc"
    fake.write_text("#!/bin/sh\necho fake\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(root / "empty"))
    monkeypatch.setenv("CUDA_HOME", str(root / "cuda"))
    monkeypatch.setattr("sys.path", [])  # hide the venv's nvidia wheel
    assert cuda.find_nvcc() == str(fake)
    path_bin = root / "onpath"
    path_bin.mkdir()
    on_path = path_bin / "nvcc"
    on_path.write_text("#!/bin/sh\necho path\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(path_bin))
    assert cuda.find_nvcc() == str(on_path)
    monkeypatch.setenv("PATH", str(root / "empty"))
    monkeypatch.delenv("CUDA_HOME")
    assert cuda.find_nvcc() is None
