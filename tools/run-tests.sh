#!/usr/bin/env bash
# Install everything the test suite needs and run every test (Rust, then Python).
# Idempotent: reuses .venv and skips Debian packages that are already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- Debian packages: PoCL OpenCL (GPU code path on the CPU) and a local SLURM ----
apt_pkgs=(pocl-opencl-icd ocl-icd-opencl-dev opencl-headers slurm-wlm munge)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "== not root: skipping Debian packages ${missing[*]} (OpenCL/SLURM tests will skip)"
  fi
fi

# --- Python environment -----------------------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
# pyvkfft is source-only; build just its OpenCL backend (no CUDA toolkit needed).
export VKFFT_BACKEND=opencl
.venv/bin/pip install -q -e ".[test,opencl]"
# nvcc from the PyPI CUDA 13 wheels (site-packages/nvidia/cu13/bin, not on PATH) lets
# tests/test_kernels_nvcc.py compile the GPU kernels as CUDA with no GPU or toolkit.
if ! compgen -G ".venv/lib/python*/site-packages/nvidia/cu13/bin/nvcc" >/dev/null; then
  .venv/bin/pip install -q "cuda-toolkit[nvcc,cudart]==13.*"
fi

# --- Static checks ----------------------------------------------------------------
echo "== cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --quiet --all-targets --features python -- -D warnings
echo "== ruff / mypy"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy python/tmfast

# --- Rust core ----------------------------------------------------------------------
echo "== cargo test"
cargo test --quiet

# --- Python tests (and the benchmark suite in quick mode: one round, small sizes) ----
# As root, also run the Apptainer recipe's %post and %test in a Debian chroot (~2 min).
if [ "$(id -u)" = 0 ]; then export TMFAST_TEST_CHROOT=${TMFAST_TEST_CHROOT:-1}; fi
echo "== pytest"
if [ "$#" = 0 ]; then set -- tests benchmarks; fi
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests"; rc=0
fi
[ "$rc" = 0 ] || exit "$rc"

# --- Parity with pytom-match-pick 0.14 as an oracle (docs/pytom-parity.md) ----------
echo "== pytest: pytom-match-pick parity"
bash tools/setup-pytom-oracle.sh
set +e
.venv-pytom/bin/python -m pytest -q -p no:cacheprovider tests/test_parity_pytom.py
rc=$?
set -e
exit "$rc"
