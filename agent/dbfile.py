"""The agent database as a file: refuse what is not ours, create it atomically, name SQLite's hard failures.

A missing file is a first start. An empty (zero-byte) file, a file that is not SQLite, or a SQLite file without
our migrations is a lost database: refused with a one-line error and the command that starts fresh, because a
silent fresh start would forget the active model and the unsent messages. A corrupt page and a full disk are
translated into `DatabaseCorruptError` and `StorageFullError` so the loop can degrade or stop with one line.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.dbschema import MIGRATIONS_TABLE
from shared.errors import StoreError

SQLITE_HEADER = b"SQLite format 3\x00"
_FULL = {sqlite3.SQLITE_FULL}
_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


class StorageFullError(StoreError):
    """The disk (or the database's page limit) is full: the write did not happen."""


class DatabaseCorruptError(StoreError):
    """The database file is damaged; the message names the recovery command."""


def sidecars(path: Path) -> list[Path]:
    """The database file and SQLite's WAL and shared-memory files beside it."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def recover_hint(path: Path) -> str:
    return f"stop the agent and run `fleetloop agent db recover --data-dir {path.parent}`"


def reset_hint(path: Path) -> str:
    return f"to start with an empty database run `fleetloop agent db reset --data-dir {path.parent} --yes`"


def check_existing(path: Path) -> None:
    """Refuse an existing file that cannot be our database (zero bytes or not SQLite); a missing one is fine."""
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot read agent database {path}: {exc.strerror or exc}") from None
    if not header:
        raise StoreError(f"agent database {path} is empty (0 bytes): the active model pointer and unsent "
                         f"messages are gone; restore it from a backup, or {reset_hint(path)}")
    if header != SQLITE_HEADER:
        raise StoreError(f"agent database {path} is not a SQLite database; {reset_hint(path)}")


def check_ours(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a SQLite file that existed but never held the agent's schema."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                         (MIGRATIONS_TABLE,)).fetchone()
    if found is None:
        raise StoreError(f"{path} is a SQLite database but not an agent database (no {MIGRATIONS_TABLE}); "
                         f"{reset_hint(path)}")


def create_atomically(path: Path, build: Callable[[sqlite3.Connection], Any]) -> None:
    """Create the database beside `path` with `build`, then rename it into place: never a half-made file."""
    tmp = path.with_name(path.name + ".creating")
    for stale in sidecars(tmp):
        stale.unlink(missing_ok=True)
    conn = sqlite3.connect(str(tmp), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        build(conn)
    finally:
        conn.close()  # the last connection checkpoints and removes the WAL
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def translate(path: Path, exc: sqlite3.Error) -> StoreError | None:
    """The StoreError a SQLite error means for the agent (full disk, corrupt file), or None for anything else."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    if primary in _FULL:
        return StorageFullError(f"agent database {path}: {exc}")
    if primary in _CORRUPT:
        return DatabaseCorruptError(f"agent database {path} is damaged ({exc}); {recover_hint(path)}")
    return None
