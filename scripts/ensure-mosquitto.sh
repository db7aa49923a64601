#!/usr/bin/env bash
# Make sure the mosquitto broker, mosquitto_passwd and the clients (mosquitto_sub) exist: tests start their own
# broker, and the compose healthcheck is tested with mosquitto_sub. Installs them as root with apt-get, or says how.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
missing=()
have mosquitto || missing+=(mosquitto)
have mosquitto_passwd || missing+=(mosquitto)
have mosquitto_sub || missing+=(mosquitto-clients)
[ "${#missing[@]}" -eq 0 ] && exit 0
packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${packages}with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq ${packages} >/dev/null
    exit 0
fi
echo "missing ${packages}: install with 'sudo apt-get install ${packages}' (or 'brew install mosquitto'), then re-run" >&2
exit 1
