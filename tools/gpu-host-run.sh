#!/usr/bin/env bash
# ON a lent GPU host (no network): install the kit made by tools/gpu-host-kit.sh
# offline (pip --target): pycuda and pyvkfft from the wheels tools/gpu-host-prebuild.sh
# made (kit/prebuilt), or, when those do not import or find the GPU, built from their
# sdists against the host's CUDA; then run the GPU tests, the end-to-end demo on the
# GPU, the full GPU benchmark and the per-stage times. See docs/gpu-host.md.
#
# Run from the checkout root (tests/ and benchmarks/ are read from there):
#   bash tools/gpu-host-run.sh                  # everything
#   STEPS=install bash tools/gpu-host-run.sh    # only the install (a check)
#   STEPS="install test" ...                    # install + pytest -m gpu
# Steps: install test demo bench stages [stages2: stages again with $STAGES2_ARGS]
# (default: all but stages2, run in the order STEPS
# names them, install always first). Each has a time limit
# (T_TEST, T_DEMO, T_BENCH, T_STAGES seconds) so one hang cannot eat the lease.
# Environment:
#   KIT     kit folder (default .device/kit)
#   OUT     results folder (default .device/out; the device tool sets $OUT)
#   PYTHON  the host's Python 3.12 with CuPy (default python3)
#   SITE    folder the kit is installed into and put on PYTHONPATH (default
#           /tmp/tmfast-site); the host's own CuPy, numpy, scipy, pytest ... are used
#   TMFAST_BENCH_GPU_ROTATIONS  timed rotations per benchmark case (default 128)
# Results in $OUT (7 files at most, under the device tool's 8): install.log,
# info.txt, pytest-gpu.log, demo.log, bench_gpu.log, stages.log, stages2.log; the
# benchmark logs end with one JSON line per job kind (grep '^{').
set -euo pipefail

repo="$(pwd)"
kit="${KIT:-${repo}/.device/kit}"
out="${OUT:-${repo}/.device/out}"
py="${PYTHON:-python3}"
site="${SITE:-/tmp/tmfast-site}"
steps="${STEPS:-install test demo bench stages}"
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

    prebuilt_ok=0
    if ls "${kit}"/prebuilt/pycuda-*.whl "${kit}"/prebuilt/pyvkfft-*.whl >/dev/null 2>&1; then
        log "installing the prebuilt pycuda and pyvkfft wheels"
        run_logged "${pip[@]}" "${kit}"/prebuilt/*.whl
        prebuilt_ok=1
    fi
fi

# libnvrtc.so.13 (pyvkfft's CUDA backend compiles its FFT kernels at run time) and
# the toolkit's nvcc: from the system toolkit or the host's nvidia-* wheels.
# The CUDA 13 one (libnvrtc.so.13, what the prebuilt pyvkfft links) first, so that
# a CUDA 12 toolkit earlier in the list is not taken.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $("${py}" -c 'import sys, os; print(" ".join(os.path.join(p, "nvidia", s, "lib") for p in sys.path if p for s in ("cu13", "cuda_nvrtc")))' 2>/dev/null); do
    if ls "${d}"/libnvrtc.so.13* >/dev/null 2>&1; then
        export LD_LIBRARY_PATH="${d}${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"
        break
    fi
done
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export PATH="/usr/local/cuda/bin:${PATH}"
fi
export PYTHONPATH="${site}${PYTHONPATH:+:${PYTHONPATH}}"

cuda_imports() {  # pycuda finds the GPU and pyvkfft's CUDA backend imports
    timeout 60 "${py}" -c 'import pycuda.driver as d; d.init(); assert d.Device.count() > 0; import pyvkfft.cuda' \
        >>"${out}/install.log" 2>&1
}

if has_step install; then
    if [[ "${prebuilt_ok}" == 1 ]] && cuda_imports; then
        log "prebuilt pycuda and pyvkfft work"
    else
        [[ "${prebuilt_ok}" == 1 ]] && log "prebuilt wheels do not work here (install.log): building from the sdists"
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
        newest() { ls "${kit}"/sdist/"$1"-*.tar.gz | sort -V | tail -1; }
        (cd /tmp && VKFFT_BACKEND=cuda run_logged "${pip[@]}" --no-build-isolation \
            --upgrade "$(newest pycuda)" "$(newest pyvkfft)")
    fi
fi

vpy="${py}"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
    nvcc --version 2>&1 | tail -1 || true
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    "${vpy}" -m pip list 2>/dev/null | grep -Ei 'tmfast|pycuda|pyvkfft|cupy|numpy|scipy|pytom' || true
    "${vpy}" -m tmfast info 2>&1 || "${vpy}" -c 'import tmfast.backends.cuda as c; print(c.is_available())'
} >"${out}/info.txt" 2>&1
log "backends: $(grep -i cuda "${out}/info.txt" | head -3 | tr '\n' ' ')"

status=0
step() {  # step NAME LIMIT_S LOGFILE COMMAND...: time-limited, output to $OUT/LOGFILE
    local name="$1" limit="$2" logf="$3"
    shift 3
    log "${name} (limit ${limit} s)"
    local t0=${SECONDS} rc=0
    timeout --kill-after=10 "${limit}" "$@" >"${out}/${logf}" 2>&1 || rc=$?
    log "${name}: exit ${rc} after $((SECONDS - t0)) s"
    tail -4 "${out}/${logf}" >&2
    # the first failing step's status is the script's
    [[ ${rc} == 0 || ${status} != 0 ]] || status=${rc}
}
do_test() {
    # A test module whose needs the host lacks must not stop the GPU tests, and a
    # warning from the host's own packages (CuPy, pytools ...) is reported, not
    # turned into an error as pyproject's filterwarnings does in CI.
    step "pytest -m gpu" "${T_TEST:-240}" pytest-gpu.log \
        "${vpy}" -m pytest -m gpu -p no:cacheprovider -rs -q -W default \
        --continue-on-collection-errors tests/
}
do_demo() {
    step "tmfast demo --backend cuda" "${T_DEMO:-120}" demo.log \
        "${vpy}" -m tmfast demo --backend cuda
}
do_bench() {  # JSON lines, one per job kind, printed as each finishes
    step "benchmarks/bench_gpu.py (full size)" "${T_BENCH:-300}" bench_gpu.log \
        env TMFAST_BENCH_GPU_FULL=1 \
        TMFAST_BENCH_GPU_ROTATIONS="${TMFAST_BENCH_GPU_ROTATIONS:-128}" \
        TMFAST_BENCH_GPU_BACKEND="${TMFAST_BENCH_GPU_BACKEND:-cuda}" \
        "${vpy}" benchmarks/bench_gpu.py
}
do_stages() {  # [LOG NAME]; STAGES_ARGS: extra arguments (--kind spherical ...)
    local name="${1:-stages}"
    # shellcheck disable=SC2086  # STAGES_ARGS is a list of arguments
    step "benchmarks/gpu_stage_times.py ${STAGES_ARGS:-}" "${T_STAGES:-120}" "${name}.log" \
        "${vpy}" benchmarks/gpu_stage_times.py --backend cuda --rotations 32 ${STAGES_ARGS:-}
}
export PYTHONUNBUFFERED=1
for s in ${steps}; do  # in the order STEPS names them
    case "${s}" in
        install) ;;
        test | demo | bench | stages) "do_${s}" ;;
        stages2) STAGES_ARGS="${STAGES2_ARGS:-}" do_stages stages2 ;;
        *) log "unknown step '${s}' (install test demo bench stages stages2)"; status=2 ;;
    esac
done
exit "${status}"
