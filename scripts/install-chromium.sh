#!/bin/sh
# Install the distribution's Chromium for the status page's browser test (tests/e2e/test_status_page_browser.py).
#
# Playwright's own browser download is not reachable from the project's CI machines, so the test
# drives the distribution's package through Playwright's executable_path. Idempotent: does nothing
# when a chromium is already on PATH. Needs root (or sudo) and apt-get (Debian/Ubuntu); elsewhere it
# says what to install and exits 0 (the test then skips locally, and fails under CI=true).
set -eu

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: no apt-get here: install Chromium with your package manager" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "install-chromium: not root and no password-less sudo: run 'apt-get install chromium' as root" >&2
    exit 0
fi
echo "install-chromium: apt-get install chromium (once; a few minutes)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends chromium >/dev/null; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y --no-install-recommends chromium >/dev/null
fi
command -v chromium >/dev/null 2>&1
