#!/usr/bin/env bash
# Prepare, on the development machine (network, Python 3.11), everything a lent GPU
# host (NVIDIA H100/H200, CUDA nvcc, CuPy, Python 3.12, NO network) needs to test and
# benchmark tmfast's cuda backend: see docs/gpu-host.md.
#
# Writes into ${KIT:-.device/kit} (ignored by git; never commit it):
#   sdist/    pycuda and pyvkfft source distributions (built on the host against its
#             CUDA) plus the pure-Python build needs pip cannot find there
#   wheels/   Python 3.12 manylinux x86_64 wheels of every run-time and test need of
#             tmfast, pytom-match-pick (no-deps) and its pure-Python needs
#   tmfast/   the tmfast abi3 wheel (cp311-abi3: installs on 3.11 and 3.12)
#   prebuilt/ pycuda and pyvkfft (CUDA) cp312 wheels (tools/gpu-host-prebuild.sh;
#             PREBUILD=0 skips them)
#   requirements-host.txt   what tools/gpu-host-run.sh installs from wheels/
#   MANIFEST.txt            file names, sizes and sha256 of the kit
# tools/gpu-host-run.sh is copied into the kit so the kit folder alone is enough.
#
# Usage:  bash tools/gpu-host-kit.sh            (about 110 MB, a few minutes)
#         SKIP_TMFAST_BUILD=1 bash tools/gpu-host-kit.sh   (reuse target/wheels)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kit="${KIT:-${repo}/.device/kit}"
py="${PYTHON:-${repo}/.venv/bin/python}"
maturin="${MATURIN:-${repo}/.venv/bin/maturin}"

# Pinned so that two kits made on different days install the same thing.
PYCUDA_VERSION="${PYCUDA_VERSION:-2026.1}"
PYVKFFT_VERSION="${PYVKFFT_VERSION:-2025.1.1}"
PYTOM_VERSION="${PYTOM_VERSION:-0.14.0}"

# Run-time and test needs of tmfast resolved for CPython 3.12 on manylinux x86_64.
# On the host the venv sees the system site-packages (CuPy, numpy, scipy ...), so
# pip uses what is already there and takes only the rest from wheels/.
HOST_REQUIREMENTS=(
    "numpy>=1.26" "scipy>=1.11" "mrcfile>=1.5" "typer>=0.12" "rich>=13"
    "matplotlib>=3.8" "pytest>=8" "pytest-benchmark>=4" "starfile>=0.5"
    "imodmodel>=0.1" "healpix>=2024.1" "gemmi>=0.6"
    # pycuda / pyvkfft run-time needs (their sdists are built with
    # --no-build-isolation, so their build needs come from here too)
    "mako" "markupsafe" "pytools>=2011.2" "platformdirs>=2.2" "typing-extensions"
    "siphash24" "psutil" "setuptools>=64" "wheel" "packaging"
    # pytom-match-pick's pure-Python needs (it is installed --no-deps: CuPy is the
    # host's own)
    "voltools" "tqdm" "importlib_resources" "lxml" "pandas"
)
PLATFORMS=(
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64
)

log() { printf '[gpu-host-kit] %s\n' "$*" >&2; }

mkdir -p "${kit}/sdist" "${kit}/wheels" "${kit}/tmfast"

log "sdists of pycuda ${PYCUDA_VERSION} and pyvkfft ${PYVKFFT_VERSION} -> ${kit}/sdist"
# pip prepares the sdists' metadata: with build isolation and --no-binary it would
# build numpy from source, so use a small helper venv with setuptools, wheel and
# numpy wheels and --no-build-isolation instead.
tools_venv="${kit%/*}/tools-venv"
if [[ ! -x "${tools_venv}/bin/python" ]]; then
    "${py}" -m venv "${tools_venv}"
    "${tools_venv}/bin/python" -m pip install -q --only-binary=:all: \
        "setuptools>=64" wheel numpy
fi
"${tools_venv}/bin/python" -m pip download -q --no-deps --no-binary pycuda,pyvkfft --no-build-isolation \
    -d "${kit}/sdist" \
    "pycuda==${PYCUDA_VERSION}" "pyvkfft==${PYVKFFT_VERSION}"

log "wheels for CPython 3.12 manylinux x86_64 -> ${kit}/wheels"
printf '%s\n' "${HOST_REQUIREMENTS[@]}" >"${kit}/requirements-host.txt"
"${py}" -m pip download -q --only-binary=:all: --python-version 3.12 \
    --implementation cp --abi cp312 --abi abi3 --abi none "${PLATFORMS[@]}" \
    --platform any -d "${kit}/wheels" -r "${kit}/requirements-host.txt"
# pytom-match-pick without its needs: they would pull cupy-cuda12x (hundreds of MB)
# which the host already has in another build.
"${py}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    -d "${kit}/wheels" "pytom-match-pick==${PYTOM_VERSION}"

# The lent hosts' image already holds these (KINDS.md of the device tool): with
# SLIM=1 (the default) their wheels are dropped so the kit fits the device tool's
# 64 MiB per call; SLIM=0 keeps everything for a host without them.
HOST_HAS=(numpy scipy matplotlib pandas pyarrow pillow fonttools kiwisolver
    contourpy cycler pyparsing python_dateutil six tzdata pytest pytest_benchmark
    py_cpuinfo py_cpuinfo2 pluggy iniconfig packaging rich typer click shellingham
    markdown_it_py mdurl pygments typing_extensions lxml psutil setuptools wheel
    tqdm markupsafe annotated_doc)
if [[ "${SLIM:-1}" == "1" ]]; then
    for name in "${HOST_HAS[@]}"; do
        rm -f "${kit}/wheels/${name}"-[0-9]*.whl
    done
    log "SLIM=1: dropped the wheels the host image already has"
fi

log "tmfast abi3 wheel -> ${kit}/tmfast"
rm -f "${kit}"/tmfast/tmfast-*.whl
if [[ "${SKIP_TMFAST_BUILD:-0}" == "1" ]]; then
    cp "${repo}"/target/wheels/tmfast-*-abi3-*.whl "${kit}/tmfast/"
else
    (cd "${repo}" && "${maturin}" build --release -q --out "${kit}/tmfast")
fi
whl="$(ls "${kit}"/tmfast/tmfast-*.whl)"
case "${whl}" in
    *abi3*) ;;
    *) log "error: ${whl} is not an abi3 wheel: it will not install on Python 3.12"
       exit 1 ;;
esac

cp "${repo}/tools/gpu-host-run.sh" "${kit}/gpu-host-run.sh"

# pycuda and pyvkfft prebuilt here for CPython 3.12 (CUDA 13.0 compiler wheels and
# a libcuda link stub), so the host does not spend 2-4 min of its lease compiling
# them; gpu-host-run.sh falls back to the sdists when they do not work there.
if [[ "${PREBUILD:-1}" == "1" ]]; then
    KIT="${kit}" bash "${repo}/tools/gpu-host-prebuild.sh" \
        || log "warning: prebuilding pycuda/pyvkfft failed: the host builds them from the sdists"
fi

log "manifest"
(cd "${kit}" && find . -type f ! -name MANIFEST.txt -printf '%P\n' | sort \
    | while read -r f; do
        printf '%s  %10d  %s\n' "$(sha256sum "$f" | cut -c1-16)" \
            "$(stat -c %s "$f")" "$f"
      done) >"${kit}/MANIFEST.txt"
total="$(du -sm "${kit}" | cut -f1)"
log "kit ready: ${kit} (${total} MB, $(wc -l <"${kit}/MANIFEST.txt") files)"
