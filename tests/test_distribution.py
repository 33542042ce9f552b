"""Distribution checks: the Apptainer recipe and the wheel (issue 8).

Apptainer cannot run here, so the recipe is checked by parsing it (with spython and
with an independent section parser); the wheel is built with maturin, installed in a
fresh venv with no Rust toolchain on PATH, and made to run the demo.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "apptainer" / "tmfast.def"


def _sections(text: str) -> dict[str, str]:
    """Split an Apptainer definition into its header and %sections."""
    parts = re.split(r"^%(\w+)[^\n]*\n", text, flags=re.M)
    out = {"header": parts[0]}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        out[name] = body
    return out


def _version() -> str:
    return str(tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"])


def test_recipe_sections() -> None:
    sec = _sections(RECIPE.read_text())
    header = dict(
        line.split(":", 1)
        for line in sec["header"].splitlines()
        if ":" in line and not line.startswith("#")
    )
    assert header["Bootstrap"].strip() == "docker"
    base = header["From"].strip()
    assert base.startswith("nvidia/cuda:") and "-devel-" in base, base
    for name in ("labels", "help", "files", "environment", "post", "runscript", "test"):
        assert name in sec, f"%{name} missing"
    assert f"version {_version()}" in sec["labels"]
    assert re.search(r'exec\s+\S*tmfast\s+"\$@"', sec["runscript"])
    assert re.search(r"\btmfast info\b", sec["test"])
    assert re.search(r"\btmfast demo\b", sec["test"])
    # the wheel maturin builds is what %files copies, and %post builds the CUDA stack
    assert "dist/tmfast-*.whl" in sec["files"]
    assert "pycuda" in sec["post"] and "VKFFT_BACKEND=cuda" in sec["post"]


def test_recipe_parses_with_spython() -> None:
    parser = pytest.importorskip("spython.main.parse.parsers")
    recipe = parser.SingularityParser(str(RECIPE)).recipe
    stage = next(iter(recipe.values()))
    assert stage.fromHeader.startswith("nvidia/cuda:")
    assert any(_version() in label for label in stage.labels)
    assert "tmfast" in stage.cmd


@pytest.mark.slow
def test_wheel_installs_and_runs_demo(tmp_path: Path) -> None:
    maturin = shutil.which("maturin") or str(Path(sys.executable).with_name("maturin"))
    if not Path(maturin).exists():
        pytest.skip("maturin is not installed")
    dist = tmp_path / "dist"
    subprocess.run(
        [maturin, "build", "--release", "-q", "-o", str(dist)],
        cwd=ROOT,
        check=True,
        timeout=900,
    )
    wheels = list(dist.glob("tmfast-*.whl"))
    assert len(wheels) == 1, wheels
    assert "abi3" in wheels[0].name
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(wheels[0])], check=True, timeout=900
    )
    # no Rust toolchain and no source tree: only the venv's bin and the system's
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MPLBACKEND": "Agg",
    }
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if key in os.environ:
            env[key] = os.environ[key]
    out = subprocess.run(
        [str(venv / "bin" / "tmfast"), "demo", "--output-dir", str(tmp_path / "demo")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # the demo ran the whole chain from the installed wheel and kept its particles
    assert list((tmp_path / "demo").glob("*_particles.star")), out.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("TMFAST_TEST_CHROOT") != "1" or os.geteuid() != 0,
    reason="runs the recipe's %post in a debootstrap chroot (minutes); "
    "set TMFAST_TEST_CHROOT=1 as root to run it",
)
def test_recipe_post_runs_in_debian_chroot(tmp_path: Path) -> None:
    subprocess.run(
        [
            "bash",
            str(ROOT / "tools" / "apptainer-chroot-check.sh"),
            str(tmp_path / "root"),
        ],
        check=True,
        timeout=1800,
    )
