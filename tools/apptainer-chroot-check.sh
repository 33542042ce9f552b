#!/usr/bin/env bash
# Run apptainer/tmfast.def's %environment, %files, %post and %test in a Debian chroot,
# since Apptainer itself cannot run here. The CUDA steps are skipped by the recipe
# when nvcc is absent, so this checks everything else: apt packages, the venv, the
# wheel install, `tmfast info` and the demo.
# Usage: tools/apptainer-chroot-check.sh [ROOTDIR]   (root; installs debootstrap)
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-/tmp/tmfast-chroot}
DEF=apptainer/tmfast.def
command -v debootstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq debootstrap >/dev/null; }
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}
[ -x "$R/bin/bash" ] || debootstrap --variant=minbase bookworm "$R" "$MIRROR" >/dev/null

# %files: the wheel maturin builds
WHEELS=$(mktemp -d)
trap 'rm -rf "$WHEELS"' EXIT
.venv/bin/maturin build --release -q -o "$WHEELS"
mkdir -p "$R/opt/wheels" && rm -f "$R"/opt/wheels/*.whl && cp "$WHEELS"/tmfast-*.whl "$R/opt/wheels/"

cp /etc/resolv.conf "$R/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$R/etc/host-ca-bundle.crt"
python3 - "$DEF" > "$R/tmp/recipe.sh" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
parts = re.split(r"^%(\w+)[^\n]*\n", text, flags=re.M)
sec = dict(zip(parts[1::2], parts[2::2]))
print("set -e")
for name in ("environment", "post", "test"):
    print(f"echo '== %{name}'")
    print(sec.get(name, ""))
PY
mountpoint -q "$R/proc" || mount -t proc proc "$R/proc"
trap 'umount "$R/proc" 2>/dev/null || true; rm -rf "$WHEELS"' EXIT
B=/etc/host-ca-bundle.crt
chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root SSL_CERT_FILE=$B REQUESTS_CA_BUNDLE=$B PIP_CERT=$B DEBIAN_FRONTEND=noninteractive \
  /bin/bash /tmp/recipe.sh
echo "apptainer recipe: %post and %test passed in a Debian chroot ($R)"
