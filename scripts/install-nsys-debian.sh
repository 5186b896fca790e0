#!/usr/bin/env bash
# Install a real Nsight Systems CLI on a CPU-only Debian machine (development, CI), idempotently, and print its path.
#
# Debian's non-free `nsight-systems` 2023.4 (trixie) profiles CPU-side programs (NVTX, OS runtime) with no GPU.
# `apt-get install` from trixie onto bookworm would drag in trixie's libc and Qt, so instead the two .deb files are
# fetched with a private apt state (system sources untouched) and unpacked under $PREFIX; /usr/local/bin/nsys links
# to it. Two fixes make the report importer (QdstrmImporter) work from an unpacked tree:
#   - it needs libssh.so: Debian ships libssh.so.4 (libssh-4); a libssh.so link in its folder is found ($ORIGIN rpath)
#   - nsys looks for host-linux-x64 beside the resolved target-linux-x64, which the package keeps elsewhere
# Also installs nvtx==0.2.11 into $PREFIX/nvtx-compat for $PYTHON: nsys 2023.4 records no ranges from nvtx>=0.2.12
# (seen with 0.2.12, 0.2.14, 0.2.16, 0.2.17; 0.2.10 and 0.2.11 recorded). tests/cli/test_profile_e2e.py uses it.
#
# Usage: PYTHON=.venv/bin/python scripts/install-nsys-debian.sh     (root; prints the nsys path on stdout last)
set -euo pipefail

VERSION="${NSYS_DEBIAN_VERSION:-2023.4.4.54~12.4.1-2}"
SUITE="${NSYS_DEBIAN_SUITE:-trixie}"
PREFIX="${NSYS_PREFIX:-/opt/nsys-doctor}"
PYTHON="${PYTHON:-python3}"
NVTX_COMPAT="nvtx==0.2.11"
DEST="$PREFIX/nsight-systems-${VERSION%%~*}"
NSYS="$DEST/usr/lib/nsight-systems/bin/nsys"
log() { echo "install-nsys-debian: $*" >&2; }

if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi

if [ ! -e "$DEST/.complete" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/sources"
    cat > "$work/sources/nsys.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITE
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt_private=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/sources"
                 -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
    log "fetching nsight-systems $VERSION from Debian $SUITE non-free"
    apt-get "${apt_private[@]}" -qq update
    (cd "$work" && apt-get "${apt_private[@]}" -qq download "nsight-systems=$VERSION" "nsight-systems-target=$VERSION")
    $SUDO mkdir -p "$DEST"
    for deb in "$work"/nsight-systems*.deb; do $SUDO dpkg-deb -x "$deb" "$DEST"; done
    $SUDO touch "$DEST/.complete"
fi

if ! ldconfig -p | grep -q 'libssh\.so\.4 '; then
    log "installing libssh-4 (the report importer links libssh.so)"
    $SUDO apt-get -qq update && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends libssh-4 >/dev/null
fi
host="$DEST/usr/lib/nsight-systems/host-linux-x64"
$SUDO ln -sfn /usr/lib/x86_64-linux-gnu/libssh.so.4 "$host/libssh.so"
target_parent=$(dirname "$(readlink -f "$DEST/usr/lib/nsight-systems/target-linux-x64")")
[ -e "$target_parent/host-linux-x64" ] || $SUDO ln -s "$host" "$target_parent/host-linux-x64"
$SUDO ln -sfn "$NSYS" /usr/local/bin/nsys
# `nsys analyze`/`nsys stats` run their rules in an embedded Python that imports nsysstats/gpustats from
# host-linux-x64/python/lib, where the package keeps only kernel_helper.py; the modules live in target-linux-x64
for f in "$DEST"/usr/lib/nsight-systems/target-linux-x64/python/lib/*.py; do
    [ -e "$host/python/lib/$(basename "$f")" ] || $SUDO ln -s "$f" "$host/python/lib/"
done

if [ ! -e "$PREFIX/nvtx-compat/nvtx/__init__.py" ] && "$PYTHON" -c 'import sys' 2>/dev/null; then
    log "installing $NVTX_COMPAT into $PREFIX/nvtx-compat for $PYTHON"
    $SUDO "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps --target "$PREFIX/nvtx-compat" "$NVTX_COMPAT"
fi

"$NSYS" --version >&2
echo "$NSYS"
