#!/usr/bin/env bash
# Installs Debian's chromium for the headless-browser test of `suite serve`'s page (tests/serve_page.rs), when
# /usr/bin/chromium is missing. Needs root (or sudo) and the Debian archive; idempotent.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "error: installing chromium needs root (or sudo)" >&2; exit 1; }
    SUDO=sudo
fi
command -v apt-get >/dev/null || { echo "error: no apt-get: install chromium so that /usr/bin/chromium exists" >&2; exit 1; }
echo "installing chromium with apt-get…"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
[ -x /usr/bin/chromium ] || { echo "error: apt-get installed chromium but /usr/bin/chromium is missing" >&2; exit 1; }
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null)"
