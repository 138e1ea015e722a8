#!/usr/bin/env bash
# Install Debian's Chromium for the real-browser tests (tests/test_browser_*.py, marker
# `browser`), which drive JupyterLab through Playwright with /usr/bin/chromium.
#
# Called by .ci/run; developers can run it by hand too (as root, or `sudo tools/install_browser.sh`).
# Never use `playwright install` instead: it downloads its own browser build, which fails on our
# machines; the PyPI `playwright` package (environment.yml) only needs a Chromium binary.
#
# Never fails: when Chromium cannot be installed it says so and exits 0, and the browser tests
# are then skipped with the reason (pytest -ra prints it). WEAKHAND_CHROMIUM overrides the path.
set -u
CHROMIUM=${WEAKHAND_CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
  echo "install_browser: Chromium present at $CHROMIUM"
  exit 0
fi

skip() {
  echo "install_browser: $* -- browser tests will be skipped (no Chromium at $CHROMIUM)" >&2
  exit 0
}

command -v apt-get >/dev/null 2>&1 || skip "apt-get not found (not a Debian/Ubuntu system)"
[ "$(id -u)" -eq 0 ] || skip "not root, cannot apt-get install (run: sudo $0)"

echo "install_browser: installing Debian chromium with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq; then
  skip "apt-get update failed"
fi
if ! apt-get install -y -qq --no-install-recommends chromium; then
  skip "apt-get install chromium failed"
fi
if [ -x "$CHROMIUM" ]; then
  echo "install_browser: installed $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
else
  skip "chromium was installed but $CHROMIUM does not exist"
fi
