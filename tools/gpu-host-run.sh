#!/usr/bin/env bash
# ON a lent GPU host (no network): install the kit made by tools/gpu-host-kit.sh
# offline into a venv, build pycuda and pyvkfft from their sdists against the host's
# CUDA, then run the GPU tests and the full GPU benchmark. See docs/gpu-host.md.
#
# Run from the checkout root (tests/ and benchmarks/ are read from there):
#   bash tools/gpu-host-run.sh                  # everything
#   STEPS=install bash tools/gpu-host-run.sh    # only the install (a check)
#   STEPS="install test" ...                    # install + pytest -m gpu
# Environment:
#   KIT     kit folder (default .device/kit)
#   OUT     results folder (default .device/out; the device tool sets $OUT)
#   PYTHON  the host's Python 3.12 with CuPy (default python3)
#   VENV    venv to create (default /tmp/tmfast-gpu-venv); it sees the host's
#           site-packages, so CuPy, numpy, scipy ... of the host are used as they are
#   TMFAST_BENCH_GPU_ROTATIONS  timed rotations per benchmark case (default 64)
# Results in $OUT: install.log, info.txt, pytest-gpu.log, pytest-gpu.xml,
# bench_gpu.log, bench_gpu.json.
set -euo pipefail

repo="$(pwd)"
kit="${KIT:-${repo}/.device/kit}"
out="${OUT:-${repo}/.device/out}"
py="${PYTHON:-python3}"
venv="${VENV:-/tmp/tmfast-gpu-venv}"
steps="${STEPS:-install test bench}"
mkdir -p "${out}"

log() { printf '[gpu-host-run] %s\n' "$*" | tee -a "${out}/install.log" >&2; }
has_step() { [[ " ${steps} " == *" $1 "* ]]; }

if [[ ! -f "${kit}/requirements-host.txt" ]]; then
    log "error: no kit at ${kit}: run tools/gpu-host-kit.sh on the development machine"
    exit 2
fi

if has_step install; then
    log "venv ${venv} from $("${py}" --version 2>&1) (system site-packages visible)"
    "${py}" -m venv --system-site-packages "${venv}"
    pip=("${venv}/bin/python" -m pip install --no-index --find-links "${kit}/wheels"
         --no-cache-dir --disable-pip-version-check)
    log "wheels (only what the host lacks)"
    "${pip[@]}" -r "${kit}/requirements-host.txt" >>"${out}/install.log" 2>&1
    "${pip[@]}" --no-deps "${kit}"/wheels/pytom_match_pick-*.whl \
        >>"${out}/install.log" 2>&1
    "${pip[@]}" --no-deps --force-reinstall "${kit}"/tmfast/tmfast-*.whl \
        >>"${out}/install.log" 2>&1

    nvcc_path="$(command -v nvcc || true)"
    if [[ -z "${nvcc_path}" && -n "${CUDA_HOME:-}" ]]; then
        nvcc_path="${CUDA_HOME}/bin/nvcc"
    fi
    if [[ ! -x "${nvcc_path}" ]]; then
        log "error: nvcc not found on PATH or in \$CUDA_HOME/bin: pycuda and pyvkfft need it"
        exit 2
    fi
    cuda_root="$(dirname "$(dirname "$(readlink -f "${nvcc_path}")")")"
    export CUDA_HOME="${CUDA_HOME:-${cuda_root}}" CUDA_ROOT="${CUDA_ROOT:-${cuda_root}}"
    export PATH="${cuda_root}/bin:${PATH}"
    log "building pycuda and pyvkfft against CUDA at ${cuda_root} ($(nvcc --version | tail -1))"
    # pycuda reads siteconf.py / CUDA_ROOT; --no-build-isolation: setuptools, wheel
    # and numpy come from the venv (wheels/ or the host).
    (cd "${venv}" && VKFFT_BACKEND=cuda "${pip[@]}" --no-build-isolation \
        "${kit}"/sdist/pycuda-*.tar.gz "${kit}"/sdist/pyvkfft-*.tar.gz) \
        >>"${out}/install.log" 2>&1 || {
        log "error: building pycuda/pyvkfft failed; see ${out}/install.log"
        tail -40 "${out}/install.log" >&2
        exit 1
    }
fi

vpy="${venv}/bin/python"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    "${vpy}" -m pip list 2>/dev/null | grep -Ei 'tmfast|pycuda|pyvkfft|cupy|numpy|scipy|pytom' || true
    "${vpy}" -m tmfast info 2>&1 || "${vpy}" -c 'import tmfast.backends.cuda as c; print(c.is_available())'
} >"${out}/info.txt" 2>&1
log "backends: $(grep -i cuda "${out}/info.txt" | head -3 | tr '\n' ' ')"

status=0
if has_step test; then
    log "pytest -m gpu"
    # a test module whose needs the host lacks must not stop the GPU tests
    "${vpy}" -m pytest -m gpu -p no:cacheprovider -rs --continue-on-collection-errors \
        --junitxml="${out}/pytest-gpu.xml" tests/ >"${out}/pytest-gpu.log" 2>&1 \
        || status=$?
    tail -3 "${out}/pytest-gpu.log" >&2
fi
if has_step bench; then
    log "benchmarks/bench_gpu.py with TMFAST_BENCH_GPU_FULL=1"
    TMFAST_BENCH_GPU_FULL=1 TMFAST_BENCH_GPU_BACKEND="${TMFAST_BENCH_GPU_BACKEND:-cuda}" \
        "${vpy}" -m pytest -p no:cacheprovider benchmarks/bench_gpu.py \
        --benchmark-enable --benchmark-json="${out}/bench_gpu.json" -s \
        >"${out}/bench_gpu.log" 2>&1 || status=$?
    tail -15 "${out}/bench_gpu.log" >&2
fi
exit "${status}"
