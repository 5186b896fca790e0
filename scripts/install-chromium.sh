#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the HTML report tests (tests/render/test_html.py drive it over the
# DevTools protocol on a pipe: no Python packages, no browser downloads). Idempotent: does nothing when installed.
# Usage: scripts/install-chromium.sh      (root or sudo; prints the chromium path on stdout last)
set -euo pipefail
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
if ! command -v chromium >/dev/null 2>&1; then
    echo "install-chromium: apt-get install chromium (a few minutes)" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >&2
fi
command -v chromium
