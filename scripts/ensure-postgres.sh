#!/usr/bin/env bash
# Make sure the PostgreSQL server binaries (initdb, pg_ctl) exist: the store tests start their own cluster on a
# free port in a temporary directory (tests/fixtures/postgres.py), never the machine's instance. Installs the
# server package as root with apt-get, or says how.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/"$1" >/dev/null 2>&1; }
have initdb && have pg_ctl && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing postgresql (server binaries for the store tests) with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    exit 0
fi
echo "missing PostgreSQL server (initdb, pg_ctl): install with 'sudo apt-get install postgresql' (or 'brew install postgresql'), then re-run" >&2
exit 1
