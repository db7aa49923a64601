"""Degrade, not crash, when the agent's disk fills up: keep scoring, drop the lowest-priority rows, report, recover.

A full disk can wedge SQLite in WAL mode: the WAL holds the newest pages and a checkpoint needs room in the
main file to move them. So the agent keeps a small reserve file beside its database and keeps the WAL smaller
than it. On the first "disk full" the reserve is released, the WAL checkpointed and the database capped at its
size (`max_page_count`), so from then on it works as a ring: the oldest predictions and the lowest-priority outbox
rows (samples, then stats) are deleted and their pages reused. Anomalies, model events and annotations are never
dropped to make room; when not even that works they wait in memory (bounded). When free space returns, the cap
is lifted and the reserve re-created.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Sequence

from agent.db import PRIORITY_MODEL_EVENT, PRIORITY_STATS, AgentDB, OutboxMessage, PredictionValues, RawWindowRow
from agent.dbfile import StorageFullError

log = logging.getLogger(__name__)

UNCAPPED_PAGES = 4_294_967_294  # SQLite's largest max_page_count
MAX_HELD = 2_000  # high-priority messages kept in memory while nothing can be written
RECHECK_S = 5.0
MAKE_ROOM_EVERY_S = 1.0


class Storage:
    """Writes through `db`, making room when the disk is full. `dropped` counts rows given up (total)."""

    def __init__(self, db: AgentDB, reserve_bytes: int) -> None:
        self.db = db
        self.reserve_bytes = reserve_bytes
        self.reserve = db.path.with_name(db.path.name + ".reserve")
        self.degraded = False
        self.dropped = 0
        self.full_events = 0
        self._held: list[OutboxMessage] = []
        self._next_check = 0.0
        self._made_room_at = -MAKE_ROOM_EVERY_S
        if reserve_bytes > 0:
            page = int(db.conn.execute("PRAGMA page_size").fetchone()[0])
            db.conn.execute(f"PRAGMA wal_autocheckpoint={max(16, reserve_bytes // page // 4)}")
            db.conn.execute(f"PRAGMA journal_size_limit={reserve_bytes // 2}")
            self._ensure_reserve()

    # -- writes ---------------------------------------------------------------------------------------
    def write_batch(self, rows: Sequence[PredictionValues], messages: Sequence[OutboxMessage],
                    raw: Sequence[RawWindowRow] = ()) -> int:
        """Write a batch (and any held messages); on a full disk make room, else drop and hold. Return dropped.

        Raw windows are the first to go: they are never held."""
        messages = [*self._held, *messages]
        try:
            self.db.write_batch(rows, messages, raw)
        except StorageFullError as exc:
            self.on_full(exc)
            try:
                self.db.write_batch(rows, messages)
            except StorageFullError:
                return self._drop_and_hold(rows, messages)
        self._held = []
        return 0

    def on_full(self, exc: StorageFullError) -> None:
        """The disk is full: release the reserve, cap the database and delete the lowest-priority rows."""
        self.full_events += 1
        now = time.monotonic()
        if now - self._made_room_at < MAKE_ROOM_EVERY_S:
            return  # rows were just dropped: do not empty the database in a burst of failures
        self._made_room_at = now
        if not self.degraded:
            self.degraded = True
            log.error("disk full (%s): dropping the oldest predictions and lowest-priority messages to keep "
                      "scoring; anomalies, model events and annotations are kept", exc)
        self._release_reserve()
        self._checkpoint()
        try:
            pages = int(self.db.conn.execute("PRAGMA page_count").fetchone()[0])
            self.db.conn.execute(f"PRAGMA max_page_count={pages}")  # reuse freed pages; leave the rest to the WAL
            dropped = self.db.drop_for_space(PRIORITY_STATS)
        except (StorageFullError, sqlite3.OperationalError) as again:
            log.warning("could not make room in %s: %s", self.db.path, again)
            return
        self.dropped += dropped
        self._checkpoint()
        if dropped:
            log.warning("disk full: dropped %d rows (%d so far)", dropped, self.dropped)

    def _drop_and_hold(self, rows: Sequence[PredictionValues], messages: list[OutboxMessage]) -> int:
        keep = [m for m in messages if m.priority <= PRIORITY_MODEL_EVENT or m.priority == PRIORITY_STATS]
        overflow = max(0, len(keep) - MAX_HELD)
        self._held = keep[overflow:]
        dropped = len(rows) + len(messages) - len(self._held)
        self.dropped += dropped
        if self.full_events <= 3 or self.full_events % 100 == 0:
            log.warning("disk full and no room could be made: %d rows dropped so far, %d messages held in memory",
                        self.dropped, len(self._held))
        return dropped

    # -- recovery -------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """While degraded, check every few seconds whether space is back: lift the cap, re-create the reserve."""
        if not self.degraded or now < self._next_check:
            return
        self._next_check = now + RECHECK_S
        if self._free_bytes() < 2 * self.reserve_bytes + (1 << 20):
            return
        self.db.conn.execute(f"PRAGMA max_page_count={UNCAPPED_PAGES}")
        if self.reserve_bytes > 0 and not self._ensure_reserve():
            return
        self.degraded = False
        log.warning("disk space is back: the database may grow again (%d rows were dropped while full)",
                    self.dropped)

    def _free_bytes(self) -> int:
        st = os.statvfs(self.db.path.parent)
        return st.f_bavail * st.f_frsize

    def _ensure_reserve(self) -> bool:
        if self.reserve_bytes <= 0 or self.reserve.exists():
            return True
        try:
            fd = os.open(self.reserve, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)  # allocated blocks, not a sparse file
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self.reserve.unlink(missing_ok=True)
            log.warning("cannot create the disk reserve %s (%s): a full disk may stop writes", self.reserve,
                        exc.strerror or exc)
            return False
        return True

    def _release_reserve(self) -> None:
        if self.reserve.exists():
            self.reserve.unlink()
            log.warning("released the %d-byte disk reserve %s", self.reserve_bytes, self.reserve)

    def _checkpoint(self) -> None:
        try:
            self.db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.OperationalError as exc:
            log.debug("checkpoint failed: %s", exc)

