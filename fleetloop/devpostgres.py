"""A private PostgreSQL server for tests and benchmarks: `initdb` + `pg_ctl` in a temporary directory on a free port.

Never the machine's shared instance: the cluster lives in its own directory, listens on 127.0.0.1 and a socket in
that directory only, trusts local connections, and runs with fsync off (tests and benchmarks, not durability). As
root (CI, containers), the server runs as the ``postgres`` user, since PostgreSQL refuses root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fleetloop.devbroker import free_port
from shared.errors import ConfigError

MISSING = "PostgreSQL server (initdb, pg_ctl) not installed: run 'bash scripts/ensure-postgres.sh'"


def pg_bin(name: str) -> str | None:
    """`name` on PATH, or in Debian's versioned directory (the server package does not link it onto PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else None


@dataclass(frozen=True)
class PostgresServer:
    """A running cluster: `url(database)` names one of its databases."""

    port: int
    user: str = "fleetloop"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"


@contextmanager
def running_postgres(max_connections: int = 50) -> Iterator[PostgresServer]:
    """Start a cluster of its own, yield it, stop it and delete its files. ConfigError if it cannot start."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise ConfigError(MISSING)
    # Not under pytest's temp dir: its folders are private to root, and the server may run as another user.
    root = Path(tempfile.mkdtemp(prefix="fleetloop-pg-"))
    run_as: dict[str, object] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid}
    data, log = root / "data", root / "server.log"
    try:
        subprocess.run([initdb, "-D", str(data), "-U", "fleetloop", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
                        "--no-sync"], check=True, capture_output=True, **run_as)  # type: ignore[call-overload]
        port = free_port()
        options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                   f"-c full_page_writes=off -c max_connections={max_connections}")
        started = subprocess.run([pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "30", "start"],
                                 capture_output=True, text=True, **run_as)  # type: ignore[call-overload]
        if started.returncode != 0:
            text = log.read_text() if log.exists() else ""
            raise ConfigError(f"PostgreSQL did not start: {started.stderr.strip()}\n{text[-2000:]}")
        try:
            yield PostgresServer(port)
        finally:
            subprocess.run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True,
                           **run_as)  # type: ignore[call-overload]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: PostgresServer, name: str) -> str:
    """A new empty database on `server`; its URL."""
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)


__all__ = ["MISSING", "PostgresServer", "create_database", "pg_bin", "running_postgres"]
