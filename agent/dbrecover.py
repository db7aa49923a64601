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
    """Copy rows in rowid order; on a read error jump ahead by 1, 2, 4, … rowids. Return (rows, spans skipped)."""
    names = ", ".join(columns)
    select = f"SELECT rowid, {names} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT {CHUNK}"
    insert = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)})"
    after, rows, spans, gap = 0, 0, 0, 0  # our rowids start at 1
    while True:
        try:
            batch = src.execute(select, (after,)).fetchall()
        except sqlite3.Error as exc:
            if gap == 0:
                spans += 1
                log.warning("%s: unreadable rows after rowid %d (%s)", table, after, exc)
            gap = max(1, gap * 2)
            if gap > MAX_GAP:
                return rows, spans
            after += gap
            continue
        if not batch:
            return rows, spans
        gap = 0
        dst.execute("BEGIN")
        dst.executemany(insert, [r[1:] for r in batch])
        dst.execute("COMMIT")
        rows += len(batch)
        after = batch[-1][0]
