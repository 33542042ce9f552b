#!/usr/bin/env bash
# ON a lent GPU host (no network): install the kit made by tools/gpu-host-kit.sh
# offline (pip --target), build pycuda and pyvkfft from their sdists against the host's
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
#   SITE    folder the kit is installed into and put on PYTHONPATH (default
#           /tmp/tmfast-site); the host's own CuPy, numpy, scipy, pytest ... are used
#   TMFAST_BENCH_GPU_ROTATIONS  timed rotations per benchmark case (default 64)
# Results in $OUT: install.log, info.txt, pytest-gpu.log, pytest-gpu.xml,
# bench_gpu.log, bench_gpu.json.
set -euo pipefail

repo="$(pwd)"
kit="${KIT:-${repo}/.device/kit}"
out="${OUT:-${repo}/.device/out}"
py="${PYTHON:-python3}"
site="${SITE:-/tmp/tmfast-site}"
steps="${STEPS:-install test bench}"
mkdir -p "${out}"

log() { printf '[gpu-host-run] %s\n' "$*" | tee -a "${out}/install.log" >&2; }
has_step() { [[ " ${steps} " == *" $1 "* ]]; }

if [[ ! -f "${kit}/requirements-host.txt" ]]; then
    log "error: no kit at ${kit}: run tools/gpu-host-kit.sh on the development machine"
    exit 2
fi

run_logged() {  # run a command, its output into install.log; on failure show the end
    "$@" >>"${out}/install.log" 2>&1 || {
        log "error: '$*' failed; the end of ${out}/install.log:"
        tail -40 "${out}/install.log" >&2
        exit 1
    }
}

if has_step install; then
    # The host's python3 is itself a venv (/opt/torch/.venv): a venv made from it
    # would not see its CuPy, numpy, scipy, pytest. So install into a plain folder
    # on PYTHONPATH instead, without dependency resolution: the kit holds exactly
    # what the host lacks (SLIM=1) or everything (SLIM=0; --no-deps then simply
    # installs the kit's copies, which come first on sys.path).
    log "installing the kit into ${site} for $("${py}" --version 2>&1)"
    rm -rf "${site}"
    pip=("${py}" -m pip install --no-index --no-deps --no-cache-dir
         --disable-pip-version-check --target "${site}")
    run_logged "${pip[@]}" "${kit}"/wheels/*.whl "${kit}"/tmfast/tmfast-*.whl

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
    # link-time libcuda: the driver's own copy may lack the unversioned libcuda.so
    # link; the toolkit's stub has the same soname (libcuda.so.1), which the
    # driver's library then satisfies at run time.
    export LIBRARY_PATH="${cuda_root}/lib64:${cuda_root}/lib64/stubs${LIBRARY_PATH:+:${LIBRARY_PATH}}"
    log "building pycuda and pyvkfft against CUDA at ${cuda_root} ($(nvcc --version | tail -1))"
    # --no-build-isolation: setuptools, wheel and numpy are the host's; pycuda
    # reads CUDA_ROOT, pyvkfft VKFFT_BACKEND and CUDA_HOME.
    (cd /tmp && VKFFT_BACKEND=cuda run_logged "${pip[@]}" --no-build-isolation \
        "${kit}"/sdist/pycuda-*.tar.gz "${kit}"/sdist/pyvkfft-*.tar.gz)
fi

export PYTHONPATH="${site}${PYTHONPATH:+:${PYTHONPATH}}"
vpy="${py}"
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
