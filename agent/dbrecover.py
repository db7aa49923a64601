"""`fleetloop agent db recover|reset`: get a damaged agent database back to work without losing more than the damage.

recover: a fresh database with the current schema is built beside the damaged one and every row that can still
be read is copied over, table by table in rowid order; a run of rows behind a damaged page is skipped by probing
ever larger rowid gaps. Then the damaged file (with its WAL) is moved aside as ``agent.db.damaged-<time>``, never
deleted, and the new one takes its place. This is what sqlite3's ``.recover`` does for the common case (a few bad
pages), in the standard library, so a gateway without the sqlite3 shell can run it.

reset: the operator's explicit fresh start: the file is moved aside the same way and the next start creates an
empty database (the active model is installed again from ``initial_model``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from agent.dbfile import sidecars
from shared.errors import StoreError

log = logging.getLogger(__name__)

TABLES = ("state", "annotations", "outbox", "predictions")  # the small, precious ones first
CHUNK = 500
LINEAR_STEPS = 4096  # rowids probed one by one past a damaged page before the steps double
MAX_GAP = 1 << 40


def move_aside(path: Path, label: str) -> Path:
    """Rename the database and its WAL/SHM files to ``<name>.<label>-<utc time>``; return the new db path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.{label}-{stamp}")
    for src, dst in zip(sidecars(path), sidecars(target), strict=True):
        if src.exists():
            os.replace(src, dst)
    return target


def reset(path: Path) -> Path | None:
    """Move the database aside so the next start is fresh; None when there was nothing to move."""
    if not any(p.exists() for p in sidecars(path)):
        return None
    return move_aside(path, "reset")


def recover(path: Path) -> dict[str, object]:
    """Copy what is readable from `path` into a fresh database that replaces it; return what was copied."""
    from agent.db import AgentDB

    if not path.exists():
        raise StoreError(f"no agent database at {path}")
    fresh = path.with_name(path.name + ".recovering")
    for stale in sidecars(fresh):
        stale.unlink(missing_ok=True)
    AgentDB(fresh).close()  # the current schema, created atomically
    try:
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path} at all ({exc}); start fresh with `fleetloop agent db reset`") from exc
    dst = sqlite3.connect(str(fresh), isolation_level=None)
    copied: dict[str, int] = {}
    skipped: dict[str, int] = {}
    try:
        for table in TABLES:
            columns = [r[1] for r in dst.execute(f"PRAGMA table_info({table})")]
            copied[table], skipped[table] = _copy_table(src, dst, table, columns)
    finally:
        src.close()
        dst.close()
    aside = move_aside(path, "damaged")
    for src_path, dst_path in zip(sidecars(fresh), sidecars(path), strict=True):
        if src_path.exists():
            os.replace(src_path, dst_path)
    return {"database": str(path), "damaged_copy": str(aside), "rows_copied": copied,
            "unreadable_spans": skipped}


def _copy_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str, columns: list[str]) -> tuple[int, int]:
    """Copy rows in rowid order, keeping every row read before a damaged page; past it, probe rowid by rowid (then
    in doubling steps) for where readable rows resume. Return (rows copied, unreadable spans skipped)."""
    names = ", ".join(columns)
    select = f"SELECT rowid, {names} FROM {table} WHERE rowid > ? ORDER BY rowid"
    insert = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)})"
    after, rows, spans = 0, 0, 0  # our rowids start at 1
    buffer: list[tuple[object, ...]] = []

    def flush() -> None:
        if buffer:
            dst.execute("BEGIN")
            dst.executemany(insert, buffer)
            dst.execute("COMMIT")
            buffer.clear()

    while True:
        try:
            for row in src.execute(select, (after,)):
                buffer.append(row[1:])
                after = row[0]
                rows += 1
                if len(buffer) >= CHUNK:
                    flush()
            flush()
            return rows, spans
        except sqlite3.Error as exc:
            flush()
            spans += 1
            log.warning("%s: unreadable rows after rowid %d (%s)", table, after, exc)
            resume = _probe(src, table, after)
            if resume is None:
                return rows, spans
            after = resume


def _probe(src: sqlite3.Connection, table: str, after: int) -> int | None:
    """The smallest `after + step` from which a rowid seek works again (steps of 1, then doubling); None if none."""
    step = 1
    while step <= MAX_GAP:
        try:
            src.execute(f"SELECT rowid FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 1",
                        (after + step,)).fetchone()
            return after + step
        except sqlite3.Error:
            step = step + 1 if step < LINEAR_STEPS else step * 2
    return None
