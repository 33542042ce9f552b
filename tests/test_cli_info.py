"""`tmfast info`: versions, backends and devices, checked against the libraries."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

import numpy as np
import scipy
from tmfast import __version__
from tmfast.backends.cuda import find_nvcc as cuda_find_nvcc
from tmfast.cli import app
from typer.testing import CliRunner


def _run(*args: str) -> str:
    res = CliRunner().invoke(app, ["info", *args])
    assert res.exit_code == 0, res.output
    return res.output


def _opencl_device_names() -> list[str]:
    try:
        import pyopencl as cl
    except ImportError:
        return []
    names = []
    for p in cl.get_platforms():
        names.extend(d.name.strip() for d in p.get_devices())
    return names


def test_text_output_lists_versions_backends_and_devices() -> None:
    out = _run()
    assert f"tmfast {__version__}" in out
    assert f"python {platform.python_version()}" in out
    assert f"numpy {np.__version__}" in out
    assert f"scipy {scipy.__version__}" in out
    lines = {
        ln.split()[0]: ln
        for ln in out.splitlines()
        if ln.startswith("  ") and ln.split()
    }
    assert "available" in lines["cpu"]
    for name in _opencl_device_names():
        assert name in out
    assert "--backend auto uses:" in out


def test_json_agrees_with_the_backend_modules() -> None:
    data = json.loads(_run("--json"))
    assert data["tmfast"] == __version__
    assert data["nvcc"] == cuda_find_nvcc()
    assert data["packages"]["numpy"] == np.__version__
    from tmfast.backends import cuda, opencl

    for name, module in (("cuda", cuda), ("opencl", opencl)):
        ok, reason = module.is_available()
        assert data["backends"][name]["available"] is ok
        if not ok:
            assert data["backends"][name]["detail"] == reason
    assert [d["name"] for d in data["opencl_devices"]] == _opencl_device_names()
    has_gpu = any(d["type"] == "GPU" for d in data["opencl_devices"])
    expected_auto = (
        "cuda"
        if data["backends"]["cuda"]["available"]
        else ("opencl" if has_gpu else "cpu")
    )
    assert data["auto"] == expected_auto


def test_missing_pyopencl_is_reported_with_the_fix() -> None:
    code = textwrap.dedent(
        """
        import sys, json
        sys.modules["pyopencl"] = None  # import pyopencl now raises ImportError
        from typer.testing import CliRunner
        from tmfast.cli import app
        res = CliRunner().invoke(app, ["info", "--json"])
        print(res.output)
        sys.exit(res.exit_code)
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    opencl = data["backends"]["opencl"]
    assert opencl["available"] is False
    assert "pyopencl" in opencl["detail"] and "pip install" in opencl["detail"]
    assert data["opencl_devices"] == []
    assert data["backends"]["cpu"]["available"] is True
