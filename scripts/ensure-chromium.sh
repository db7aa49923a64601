#!/usr/bin/env bash
# Make sure Debian's Chromium exists: the console's browser tests (tests/hub/console/test_browser.py) drive it
# through Playwright (no browser download: the system browser at /usr/bin/chromium). Installs it as root with
# apt-get, or says how.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    exit 0
fi
echo "missing /usr/bin/chromium: install with 'sudo apt-get install chromium', then re-run" >&2
exit 1
