#!/usr/bin/env bash
# Installs what tests/test_label_browser.py needs on a Debian machine: the distribution's Chromium
# (/usr/bin/chromium) and the Playwright Python driver. Playwright's own browser download is never used.
# Idempotent and quiet: does nothing when both are present.
# Usage: PYTHON=.venv/bin/python bash .ci/install_browser.sh   (PYTHON defaults to `python` on PATH)
set -euo pipefail
PYTHON="${PYTHON:-python}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq chromium >/dev/null
fi
if ! "$PYTHON" -c "import playwright.sync_api" >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --disable-pip-version-check playwright
fi
