"""The shared kernel source compiles as CUDA with nvcc (PyPI CUDA 13 wheels in CI).

No GPU is needed: a CUDA syntax or type error in ``tmfast_kernels.cl`` or the
portability header fails here, on the same source the OpenCL tests run on PoCL.
``tools/run-tests.sh`` installs ``cuda-toolkit[nvcc,cudart]==13.*`` into .venv.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tmfast.backends import _gpu


def _find_nvcc() -> str | None:
    """nvcc from the venv's nvidia/cu13 wheel, else from PATH."""
    try:
        import nvidia  # type: ignore[import-not-found]

        for base in nvidia.__path__:
            cand = Path(base) / "cu13" / "bin" / "nvcc"
            if cand.is_file() and os.access(cand, os.X_OK):
                return str(cand)
    except ImportError:
        pass
    prefix_nvcc = Path(sys.prefix) / "bin" / "nvcc"
    if prefix_nvcc.is_file():
        return str(prefix_nvcc)
    return shutil.which("nvcc")


NVCC = _find_nvcc()
pytestmark = pytest.mark.skipif(
    NVCC is None,
    reason="nvcc not found: pip install 'cuda-toolkit[nvcc,cudart]==13.*' into the "
    "venv (tools/run-tests.sh does this)",
)


def _nvcc(src: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert NVCC is not None
    cu = tmp_path / "tmfast_kernels.cu"
    cu.write_text(src)
    env = dict(os.environ)
    env["PATH"] = str(Path(NVCC).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run(
        [NVCC, *args, *_gpu.build_options(), str(cu)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


@pytest.mark.parametrize("arch", ["sm_75", "sm_90"])
def test_kernel_source_compiles_to_cubin_without_warnings(
    arch: str, tmp_path: Path
) -> None:
    out = tmp_path / f"k_{arch}.cubin"
    res = _nvcc(
        _gpu.kernel_source(),
        tmp_path,
        "-cubin",
        f"-arch={arch}",
        "-Werror",
        "all-warnings",
        "-o",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 0


def test_ptx_exports_every_kernel_unmangled(tmp_path: Path) -> None:
    out = tmp_path / "k.ptx"
    res = _nvcc(
        _gpu.kernel_source(), tmp_path, "-ptx", "-arch=compute_75", "-o", str(out)
    )
    assert res.returncode == 0, res.stderr
    entries = set(re.findall(r"\.entry\s+(\w+)\s*\(", out.read_text()))
    assert entries == set(_gpu.KERNEL_NAMES)


def test_a_cuda_error_in_the_source_fails_the_build(tmp_path: Path) -> None:
    broken = (
        _gpu.kernel_source() + "\nKERNEL void broken(GLOBAL float *x) { x[0] = y; }\n"
    )
    res = _nvcc(
        broken, tmp_path, "-cubin", "-arch=sm_75", "-o", str(tmp_path / "b.cubin")
    )
    assert res.returncode != 0
    assert 'identifier "y" is undefined' in res.stderr
