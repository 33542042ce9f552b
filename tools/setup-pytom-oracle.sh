#!/usr/bin/env bash
# Create .venv-pytom: the project venv (.venv) plus pytom-match-pick 0.14.0 as a
# test oracle for tests/test_parity_pytom.py (see docs/pytom-parity.md).
#
# pytom-match-pick is GPL: it is installed here only to be *called* by tests,
# never copied. Its GPU core needs cupy; we install it with --no-deps and add only
# its pure-Python needs, so on a machine without cupy the numpy/scipy modules
# (angles, weights, mask, template, extract maths) import and run on the CPU.
# voltools runs its CPU path (scipy.ndimage) when cupy is absent.
#
# The oracle venv sees every package of .venv (a .pth file adds .venv's
# site-packages, including the editable tmfast install), so nothing is installed
# into .venv itself.
#
# Usage:  bash tools/setup-pytom-oracle.sh
#         .venv-pytom/bin/python -m pytest tests/test_parity_pytom.py
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
main_venv="${repo}/.venv"
oracle_venv="${repo}/.venv-pytom"
pytom_version="${PYTOM_VERSION:-0.14.0}"

if [[ ! -x "${main_venv}/bin/python" ]]; then
    echo "error: ${main_venv} not found; create the project venv first" >&2
    exit 2
fi

"${main_venv}/bin/python" -m venv --without-pip "${oracle_venv}" 2>/dev/null \
    || "${main_venv}/bin/python" -m venv "${oracle_venv}"
# The venv module may copy pip in; use the main venv's pip to target the oracle.
main_site="$("${main_venv}/bin/python" -c 'import site; print(site.getsitepackages()[0])')"
oracle_site="$("${oracle_venv}/bin/python" -c 'import site; print(site.getsitepackages()[0])')"

# Oracle-only packages first on sys.path, then everything of .venv (tmfast,
# numpy, scipy, healpix, mrcfile, starfile, pandas, pytest, ...).
printf "import site; site.addsitedir('%s')\n" "${main_site}" > "${oracle_site}/zz_tmfast_main_venv.pth"

"${main_venv}/bin/python" -m pip install --quiet --upgrade --target "${oracle_site}" --no-deps \
    "pytom-match-pick==${pytom_version}" "voltools==0.6.0" lxml tqdm importlib_resources

# Make the repository-local venv invisible to git without touching .gitignore.
exclude="$(git -C "${repo}" rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "${exclude}")"
grep -qxF '/.venv-pytom/' "${exclude}" 2>/dev/null || echo '/.venv-pytom/' >> "${exclude}"

"${oracle_venv}/bin/python" - <<'PY'
import importlib
for name in ("pytom_tm.angles", "pytom_tm.weights", "pytom_tm.mask",
             "pytom_tm.template", "pytom_tm.correlation", "pytom_tm.extract", "tmfast"):
    try:
        importlib.import_module(name)
        print(f"ok       {name}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(("cupy", "cupyx")):
            print(f"cupy     {name}: needs cupy; the tests import it behind a stand-in")
        else:
            print(f"missing  {name}: {exc}")
    except Exception as exc:  # report, do not fail
        print(f"missing  {name}: {type(exc).__name__}: {exc}")
PY
