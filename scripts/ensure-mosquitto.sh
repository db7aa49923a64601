#!/usr/bin/env bash
# Make sure a mosquitto broker binary (and mosquitto_passwd) exist; the tests start their own broker.
set -euo pipefail
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "mosquitto not found: installing it with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null
    exit 0
fi
echo "mosquitto not found: install it with 'sudo apt-get install mosquitto' (or 'brew install mosquitto'), then re-run" >&2
exit 1
