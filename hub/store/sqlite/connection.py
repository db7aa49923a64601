"""The SQLite store's connections and transactions, shared by every role's queries.

Each thread gets its own connection (SQLite connections are not shared across threads); writers
serialise on ``BEGIN IMMEDIATE`` with a busy timeout, readers never block in WAL mode. Every write is
one transaction, so a kill -9 leaves a batch either fully stored or not at all.

The file is watched: an open connection keeps writing into a database file that was deleted or replaced
underneath it (and everything written there is lost), so every read and write first checks that the path
still names the file that was opened (device and inode); if not, it raises `StoreError` (the API's
``/health`` answers 503, ingest stops acknowledging) and logs it loudly once.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.errors import StoreError

log = logging.getLogger(__name__)


class SqliteConnection:
    """One SQLite file, one connection per thread (opened on first use); the base of every query mixin."""

    P = "?"  # the placeholder, for statements both backends share

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file first opened
        self._lost: str | None = None  # why the file is no longer ours (logged once)
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
            if self._identity is None:
                try:
                    st = os.stat(self.path)
                    self._identity = (st.st_dev, st.st_ino)
                except OSError:  # pragma: no cover - just created by connect
                    pass
        self.check_file()
        return conn

    def check_file(self) -> None:
        """StoreError if the database file was deleted or replaced since it was opened (see the module doc)."""
        if self._identity is None:
            return
        try:
            st = os.stat(self.path)
            problem = None if (st.st_dev, st.st_ino) == self._identity else "was replaced by another file"
        except FileNotFoundError:
            problem = "was deleted"
        except OSError as exc:
            problem = f"cannot be checked ({exc.strerror})"
        if problem is None:
            return
        message = (f"hub database {self.path} {problem} while the hub was running: refusing to read or write "
                   "(nothing is acknowledged); restore the file or restart the hub")
        with self._lock:
            first, self._lost = self._lost is None, message
        if first:
            log.critical("!!! %s !!!", message)
        raise StoreError(message)

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
        self.check_file()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"hub database {self.path}: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            self._rollback(conn, exc)
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"hub database {self.path}: {exc}") from exc
            raise
        self.check_file()  # deleted during the transaction: it went to a ghost file; not stored, not acked

    def _rollback(self, conn: sqlite3.Connection, cause: BaseException) -> None:
        """ROLLBACK after `cause`; a failing ROLLBACK is logged and never replaces `cause` (SQLite rolls back
        on its own after e.g. a disk-full COMMIT, and ROLLBACK then fails with "no transaction is active")."""
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.error("hub database %s: ROLLBACK failed (%s) after: %r", self.path, exc, cause)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        self.check_file()
        try:
            return list(self._conn().execute(sql, params).fetchall())
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"hub database {self.path}: {exc}") from exc

    def integrity_ok(self) -> bool:
        """Whether SQLite's integrity check passes (maintenance and tests)."""
        return bool(self._read("PRAGMA integrity_check")[0][0] == "ok")
