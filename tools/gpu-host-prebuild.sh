#!/usr/bin/env bash
# Build, on the development machine (no GPU, no system CUDA), CPython 3.12 wheels of
# pycuda and pyvkfft (CUDA backend) for the lent GPU hosts, so the host spends its
# short lease running tests instead of compiling (pycuda alone takes 1-3 min there).
# tools/gpu-host-run.sh installs these first and falls back to the sdists when they
# do not import or do not find the GPU.
#
# Needs: a CPython 3.12 (PY312, default: python3.12 on PATH or pyenv's newest 3.12),
# gcc/g++, network to PyPI (the CUDA 13.0 compiler wheels: 13.0 matches the hosts'
# driver, R580, so no symbol newer than the driver is referenced).
# Writes ${KIT:-.device/kit}/prebuilt/{pycuda,pyvkfft}-*.whl
#
# Usage:  bash tools/gpu-host-prebuild.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kit="${KIT:-${repo}/.device/kit}"
work="${WORK:-${repo}/.device/prebuild}"
CUDA_WHEELS_VERSION="${CUDA_WHEELS_VERSION:-13.0.2}"
# cuda-toolkit 13.0.2 leaves nvvm and crt unpinned: a newer nvvm emits PTX that the
# 13.0 ptxas rejects ("Unsupported .version 9.5"), so pin them to the same release.
NVVM_VERSION="${NVVM_VERSION:-13.0.88}"

log() { printf '[gpu-host-prebuild] %s\n' "$*" >&2; }

py312="${PY312:-}"
if [[ -z "${py312}" ]] && python3.12 --version >/dev/null 2>&1; then
    py312="$(command -v python3.12)"  # not a pyenv shim that cannot run
fi
if [[ -z "${py312}" ]]; then
    py312="$(ls -d "${PYENV_ROOT:-${HOME}/.pyenv}"/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V | tail -1 || true)"
fi
if [[ -z "${py312}" || ! -x "${py312}" ]]; then
    log "error: no CPython 3.12 found: set PY312=/path/to/python3.12"
    exit 2
fi
for sd in pycuda pyvkfft; do
    if ! ls "${kit}"/sdist/${sd}-*.tar.gz >/dev/null 2>&1; then
        log "error: no ${sd} sdist in ${kit}/sdist: run tools/gpu-host-kit.sh first"
        exit 2
    fi
done
newest() { ls "${kit}"/sdist/"$1"-*.tar.gz | sort -V | tail -1; }
# no stale wheels in the kit if a step below fails
rm -rf "${kit}/prebuilt"

venv="${work}/venv312"
if [[ ! -x "${venv}/bin/python" ]]; then
    log "venv for $("${py312}" --version) in ${venv}"
    "${py312}" -m venv "${venv}"
fi
log "CUDA ${CUDA_WHEELS_VERSION} compiler wheels + build needs"
"${venv}/bin/python" -m pip install -q --disable-pip-version-check \
    "cuda-toolkit[nvcc,cudart,nvrtc,profiler]==${CUDA_WHEELS_VERSION}" \
    "nvidia-nvvm==${NVVM_VERSION}" "nvidia-cuda-crt==${NVVM_VERSION}" \
    "numpy>=1.26" "setuptools>=64" wheel pytools mako platformdirs

cu="$("${venv}/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
home="${work}/cuda-home"
rm -rf "${home}"
mkdir -p "${home}/lib64/stubs"
ln -s "${cu}/bin" "${home}/bin"
ln -s "${cu}/include" "${home}/include"
[[ -d "${cu}/nvvm" ]] && ln -s "${cu}/nvvm" "${home}/nvvm"
for f in "${cu}"/lib/*; do ln -s "${f}" "${home}/lib64/"; done
for so in libcudart libnvrtc; do
    real="$(ls "${cu}"/lib/${so}.so.* 2>/dev/null | sort | head -1 || true)"
    [[ -n "${real}" ]] && ln -sf "${real}" "${home}/lib64/${so}.so"
done

# libcuda link stub: the driver API's exported names are what cuda.h declares after
# its version macros (cuCtxCreate -> cuCtxCreate_v4 ...), so take them from the
# preprocessed header. Every stub returns CUDA_ERROR_NO_DEVICE (100); the real
# libcuda.so.1 of the host's driver replaces it at run time (same soname).
log "libcuda link stub from the preprocessed cuda.h"
printf "#include <cuda.h>\n#include <cudaProfiler.h>\n" | gcc -E -P -I"${home}/include" - >"${work}/cuda_pp.h"
"${venv}/bin/python" - "${work}/cuda_pp.h" >"${work}/libcuda_stub.c" <<'PY'
import re
import sys

text = open(sys.argv[1]).read()
names = sorted(set(re.findall(r"\bCUresult\s+(cu[A-Za-z0-9_]+)\s*\(", text)))
# the error-text calls fill a string pointer that callers then read
special = {
    n: f'int {n}(int e, const char **s) {{ (void)e; if (s) *s = "no CUDA driver '
    f'(libcuda link stub)"; return 0; }}'
    for n in ("cuGetErrorName", "cuGetErrorString")
}
for name in names:
    print(special.get(name, f"int {name}(void) {{ return 100; }}"))
print(f"/* {len(names)} symbols */", file=sys.stderr)
PY
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "${home}/lib64/stubs/libcuda.so" "${work}/libcuda_stub.c"
log "stub exports $(nm -D --defined-only "${home}/lib64/stubs/libcuda.so" | grep -c ' T cu')"

export CUDA_HOME="${home}" CUDA_ROOT="${home}" PATH="${home}/bin:${PATH}"
export LIBRARY_PATH="${home}/lib64:${home}/lib64/stubs${LIBRARY_PATH:+:${LIBRARY_PATH}}"
log "nvcc: $(nvcc --version | tail -1)"

out="${kit}/prebuilt"
rm -rf "${out}" "${work}/src"
mkdir -p "${out}" "${work}/src"

log "pycuda wheel (1-3 min)"
tar -xzf "$(newest pycuda)" -C "${work}/src"
src="$(ls -d "${work}"/src/pycuda-*/ | head -1)"
(cd "${src}" && "${venv}/bin/python" configure.py --cuda-root="${home}" \
    --cudadrv-lib-dir="${home}/lib64/stubs" --no-cuda-enable-curand >/dev/null)
(cd "${src}" && "${venv}/bin/python" -m pip wheel -q --no-build-isolation --no-deps \
    -w "${out}" . >"${work}/pycuda-build.log" 2>&1) \
    || { tail -30 "${work}/pycuda-build.log" >&2; exit 1; }

log "pyvkfft wheel, CUDA backend only"
VKFFT_BACKEND=cuda "${venv}/bin/python" -m pip wheel -q --no-build-isolation --no-deps \
    -w "${out}" "$(newest pyvkfft)" >"${work}/pyvkfft-build.log" 2>&1 \
    || { tail -30 "${work}/pyvkfft-build.log" >&2; exit 1; }

log "check: the extensions link libcuda.so.1 (and pyvkfft libnvrtc.so.13)"
for whl in "${out}"/*.whl; do
    d="${work}/check/$(basename "${whl}" .whl)"
    rm -rf "${d}" && mkdir -p "${d}"
    (cd "${d}" && "${venv}/bin/python" -m zipfile -e "${whl}" .)
    for so in $(find "${d}" -name '*.so'); do
        printf '  %s: %s\n' "$(basename "${so}")" \
            "$(readelf -d "${so}" | grep NEEDED | grep -oE 'lib(cuda|nvrtc|cudart)[^]]*' | tr '\n' ' ')" >&2
    done
done
ls -la "${out}" >&2
