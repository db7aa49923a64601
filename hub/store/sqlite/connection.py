"""The SQLite store's connections and transactions, shared by every role's queries.

Each thread gets its own connection (SQLite connections are not shared across threads); writers
serialise on ``BEGIN IMMEDIATE`` with a busy timeout, readers never block in WAL mode. Every write is
one transaction, so a kill -9 leaves a batch either fully stored or not at all.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.errors import StoreError


class SqliteConnection:
    """One SQLite file, one connection per thread (opened on first use); the base of every query mixin."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory of hub database {self.path}: {exc.strerror}") from None

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StoreError(f"hub database {self.path} is closed")
        try:
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE … COMMIT) in `_write`.
            conn = sqlite3.connect(
                str(self.path), timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL never corrupts
            conn.execute("PRAGMA foreign_keys=ON")
            conn.row_factory = sqlite3.Row
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open hub database {self.path}: {exc}") from exc
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on error; database errors become StoreError."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"hub database {self.path}: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"hub database {self.path}: {exc}") from exc
            raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return list(self._conn().execute(sql, params).fetchall())
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"hub database {self.path}: {exc}") from exc

    def integrity_ok(self) -> bool:
        """Whether SQLite's integrity check passes (maintenance and tests)."""
        return bool(self._read("PRAGMA integrity_check")[0][0] == "ok")
