"""The agent's local SQLite database: predictions, outbox, annotations and model state.

One file, WAL mode, schema by migrations (`agent.dbschema`), the standard library's sqlite3 only: it is the
agent's hot path and a gateway's memory. Every write path commits atomically, so a kill -9 leaves
either the whole batch (predictions together with their outbox rows) or none of it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from agent import dbschema
from agent.dbfile import check_existing, check_ours, create_atomically, translate
from shared.codec import with_seq
from shared.errors import StoreError

log = logging.getLogger(__name__)

# Outbox priorities: lower leaves first.
PRIORITY_ANNOTATION = 0
PRIORITY_ANOMALY = 1
PRIORITY_MODEL_EVENT = 2
PRIORITY_STATS = 3
PRIORITY_SAMPLE = 4


NEXT_SEQ_KEY = "outbox.next_seq"
WIRE_FORMAT_KEY = "link.wire_format"  # the format outbox messages last went in (`agent.outbox.Forwarder`)


class PredictionRow(NamedTuple):
    """One scored window, its fields in the order of `_PREDICTION_SQL`'s columns (tests and tools build these).

    The hot path builds plain tuples in this order instead (`PredictionValues`), of values sqlite3 binds as they
    are: exact str, int, float and bytearray. Anything else (None, a bool, bytes, and a row that is a tuple
    subclass, as this one is) goes through sqlite3's adapter lookup first: it made a row's bind and insert twice as
    slow (2.6 against 1.2 us, in memory). So a NULL in a text column (unit, shadow_version, reported) is spelled 0,
    which the statement's NULLIF(?, 0) stores as NULL (an int never equals a text, so no unit, version or reason is
    taken for it), SQLite stores a NaN score as NULL, and decision may be 0 or 1; None, bools and bytes work too,
    only slower.
    """

    trace_id: str
    device_id: str
    ts: float
    unit: str | None
    window_start: float
    window_end: float
    model_version: str
    features: bytes | bytearray
    score: float | None
    decision: bool | int
    shadow_version: str | None = None
    shadow_score: float | None = None
    reported: str | None = None  # sent to the hub when scored, and why (anomaly, random, low_confidence)


PredictionValues = tuple[str, str, float, str | int | None, float, float, str, bytes | bytearray, float | None, int,
                         str | int | None, float | None, str | int | None]
"""A `PredictionRow` as a plain tuple: what the agent's hot path hands `AgentDB.write_batch`."""


@dataclass(frozen=True, slots=True)
class RawWindowRow:
    """The raw readings of one scored window: `times` float64 per reading, `readings` float64 rows (row-major).

    Alarm windows and random-sample windows are two rings of `AgentSettings.raw_windows_keep` each
    (`AgentDB.prune_raw_windows`): however many samples are drawn, they never push an alarm's readings out."""

    trace_id: str
    ts: float
    unit: str | None
    sensors: str  # JSON list of the window's sensor names, in column order
    times: bytes
    readings: bytes
    alarm: bool = True  # an alarm window (else one drawn into the random slice only)
    # feature set 2: the readings run back `shared.history.CONTEXT` (or fewer) before the window, and the unit had
    # seen `service` readings before the first of them (`shared.messages.RawWindow.service`); None: the window alone
    service: int | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    msg_id: str
    topic: str
    payload: bytes
    priority: int
    retain: bool
    attempts: int
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message to enqueue: it leaves through the outbox once the enclosing batch commits."""

    msg_id: str
    topic: str
    payload: bytes
    priority: int
    retain: bool = False


_PREDICTION_SQL = (
    "INSERT OR IGNORE INTO predictions (trace_id, device_id, ts, unit, window_start, window_end, "
    "model_version, features, score, decision, shadow_version, shadow_score, reported) "
    "VALUES (?, ?, ?, NULLIF(?, 0), ?, ?, ?, ?, ?, ?, NULLIF(?, 0), ?, NULLIF(?, 0))"  # 0 for NULL: see PredictionRow
)
_RAW_WINDOW_SQL = (
    "INSERT OR IGNORE INTO raw_windows (trace_id, ts, unit, sensors, times, readings, alarm, service) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_OUTBOX_SQL = "INSERT INTO outbox (msg_id, topic, payload, priority, retain, created) VALUES (?, ?, ?, ?, ?, ?)"


class AgentDB:
    """Typed access to the agent database. Not thread-safe: use an instance from one thread at a time."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_existing(self.path)  # a zero-byte or foreign file is refused, never silently replaced
        try:
            if not self.path.exists():
                create_atomically(self.path, dbschema.apply)
            # one thread at a time, but it may be built in one thread and run in another
            conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
            self.conn = conn
            check_ours(conn, self.path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL never corrupts
            conn.execute("PRAGMA foreign_keys=ON")
            dbschema.apply(conn)
        except sqlite3.DatabaseError as exc:
            raise translate(self.path, exc) or StoreError(f"cannot open agent database {self.path}: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

    # -- writes -------------------------------------------------------------------------------
    def write_batch(self, predictions: Sequence[PredictionValues], messages: Sequence[OutboxMessage],
                    raw: Sequence[RawWindowRow] = ()) -> None:
        """Insert predictions, outbox messages and raw windows in one transaction."""
        now = time.time()
        with self._transaction():
            if raw:
                self.conn.executemany(
                    _RAW_WINDOW_SQL,
                    [(r.trace_id, r.ts, r.unit, r.sensors, r.times, r.readings, int(r.alarm), r.service) for r in raw],
                )
            if predictions:
                self.conn.executemany(_PREDICTION_SQL, predictions)
            if messages:
                self.conn.executemany(
                    _OUTBOX_SQL,
                    [(m.msg_id, m.topic, m.payload, m.priority, int(m.retain), now) for m in messages],
                )

    def enqueue(self, messages: Iterable[OutboxMessage]) -> None:
        self.write_batch((), list(messages))

    def add_annotation(self, row: dict[str, object], message: OutboxMessage) -> None:
        """Record an annotation locally and enqueue it, atomically."""
        with self._transaction():
            columns = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            self.conn.execute(f"INSERT OR IGNORE INTO annotations ({columns}) VALUES ({marks})", list(row.values()))
            self.conn.execute(
                _OUTBOX_SQL,
                (message.msg_id, message.topic, message.payload, message.priority, int(message.retain),
                 time.time()),
            )

    # -- outbox -------------------------------------------------------------------------------
    def due_outbox(self, now: float, limit: int, exclude: Iterable[int] = ()) -> list[OutboxRow]:
        """Rows ready to (re)send, by priority then age, skipping those already in flight."""
        excluded = set(exclude)
        rows = self.conn.execute(
            "SELECT id, msg_id, topic, payload, priority, retain, attempts, seq FROM outbox "
            "WHERE next_attempt <= ? ORDER BY priority, id LIMIT ?",
            (now, limit + len(excluded)),
        ).fetchall()
        out = [OutboxRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7]) for r in rows if r[0] not in excluded]
        return out[:limit]

    def stamp_sequences(self, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
        """Give rows that never left a sequence number (in this order) and store their stamped payload.

        The counter lives in the database and moves in the same transaction, so numbers stay unique and
        increasing across restarts; a row keeps its number (and exact bytes) for every resend.
        """
        if all(r.seq is not None for r in rows):
            return list(rows)
        out: list[OutboxRow] = []
        with self._transaction():
            row = self.conn.execute("SELECT value FROM state WHERE key = ?", (NEXT_SEQ_KEY,)).fetchone()
            next_seq = int(row[0]) if row is not None else 1
            for r in rows:
                if r.seq is not None:
                    out.append(r)
                    continue
                payload = with_seq(r.payload, next_seq)
                self.conn.execute("UPDATE outbox SET seq = ?, payload = ? WHERE id = ?", (next_seq, payload, r.id))
                out.append(OutboxRow(r.id, r.msg_id, r.topic, payload, r.priority, r.retain, r.attempts, next_seq))
                next_seq += 1
            self.conn.execute(
                "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (NEXT_SEQ_KEY, str(next_seq)),
            )
        return out

    def next_seq(self) -> int:
        """The sequence number the next new message will get (1 on a fresh database)."""
        value = self.get_state(NEXT_SEQ_KEY)
        return int(value) if value is not None else 1

    def mark_delivered(self, rows: Sequence[tuple[int, int | None]], now: float, wait_s: float,
                       max_wait_s: float) -> None:
        """The broker acked these rows (id, seq as sent): keep them until the hub acks, resending after
        `wait_s` × 2^attempts (capped at `max_wait_s`) if it never does. The seq must match: a row the hub acked
        meanwhile is gone, and a new row may have taken its id (it has not been sent, or has another seq)."""
        if not rows:
            return
        with self._transaction():
            self.conn.executemany(
                "UPDATE outbox SET delivered = ?, attempts = attempts + 1, "
                "next_attempt = ? + min(?, ? * (1 << min(attempts, 16))) WHERE id = ? AND seq = ?",
                [(now, now, max_wait_s, wait_s, i, seq) for i, seq in rows],
            )

    def delete_sequences(self, ranges: Sequence[tuple[int, int]]) -> int:
        """The hub stored these sequence numbers: drop their rows; return how many went."""
        if not ranges:
            return 0
        with self._transaction():
            return sum(self.conn.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", r).rowcount for r in ranges)

    def resend_sequences(self, ranges: Sequence[tuple[int, int]], now: float) -> int:
        """The hub misses these sequence numbers: make their rows due now; return how many are still here."""
        if not ranges:
            return 0
        with self._transaction():
            return sum(
                self.conn.execute("UPDATE outbox SET next_attempt = ? WHERE seq BETWEEN ? AND ?", (now, *r)).rowcount
                for r in ranges
            )

    def awaiting_hub(self) -> int:
        """Rows the broker acknowledged and the hub has not (yet)."""
        return int(self.conn.execute("SELECT count(*) FROM outbox WHERE delivered IS NOT NULL").fetchone()[0])

    def mark_attempt(self, row_id: int, next_attempt: float) -> None:
        with self._transaction():
            self.conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ? WHERE id = ?", (next_attempt, row_id)
            )

    def delete_outbox(self, row_ids: Sequence[int]) -> None:
        if not row_ids:
            return
        with self._transaction():
            self.conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in row_ids])

    def outbox_size(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def trim_outbox(self, max_rows: int) -> int:
        """Drop the lowest-priority, oldest rows beyond `max_rows`; return how many were dropped."""
        excess = self.outbox_size() - max_rows
        if excess <= 0:
            return 0
        with self._transaction():
            self.conn.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY priority DESC, id LIMIT ?)",
                (excess,),
            )
        return excess

    def drop_for_space(self, min_priority: int, share: float = 0.1, at_least: int = 100) -> int:
        """Disk full: delete the oldest `share` of predictions and of outbox rows with priority >= `min_priority`
        (the lowest priority first). Return how many rows went."""
        with self._transaction():
            dropped = 0
            for count_sql, delete_sql, params in (
                ("SELECT count(*) FROM raw_windows",
                 "DELETE FROM raw_windows WHERE trace_id IN (SELECT trace_id FROM raw_windows ORDER BY alarm, ts "
                 "LIMIT ?)",
                 ()),
                ("SELECT count(*) FROM predictions",
                 "DELETE FROM predictions WHERE id IN (SELECT id FROM predictions ORDER BY id LIMIT ?)", ()),
                ("SELECT count(*) FROM outbox WHERE priority >= ?",
                 "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE priority >= ? "
                 "ORDER BY priority DESC, id LIMIT ?)", (min_priority,)),
            ):
                total = int(self.conn.execute(count_sql, params).fetchone()[0])
                n = min(total, max(at_least, int(total * share)))
                if n:
                    dropped += self.conn.execute(delete_sql, (*params, n)).rowcount
        return dropped

    # -- retention ----------------------------------------------------------------------------
    def prediction_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM predictions").fetchone()[0])

    def used_bytes(self) -> int:
        """Bytes of the database that hold data (excluding free pages that SQLite will reuse)."""
        page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)

    def enforce_retention(self, max_rows: int, max_bytes: int) -> int:
        """Delete the oldest predictions beyond `max_rows`, then while over `max_bytes`; return deleted."""
        deleted = 0
        excess = self.prediction_count() - max_rows
        if excess > 0:
            deleted += self._delete_oldest(excess)
        while self.used_bytes() > max_bytes:
            count = self.prediction_count()
            if count == 0:
                break
            deleted += self._delete_oldest(max(1, count // 10))
        if deleted:
            log.info("retention: deleted %d oldest predictions", deleted)
        return deleted

    def prune_raw_windows(self, keep: int) -> int:
        """Keep only the newest `keep` alarm windows and the newest `keep` random-sample windows (two rings: a
        sample never crowds an alarm out); return how many went.

        Newest is last written (rowid): a batch's windows share one ts. Every row older than the ring's `keep`-th
        newest goes in one range delete, no ``NOT IN`` list of the kept (0.8 -> 0.45 ms a prune of 50 windows)."""
        with self._transaction():
            if keep <= 0:
                return int(self.conn.execute("DELETE FROM raw_windows").rowcount)
            return sum(self.conn.execute(
                "DELETE FROM raw_windows WHERE alarm = ? AND rowid < (SELECT rowid FROM raw_windows WHERE alarm = ? "
                "ORDER BY rowid DESC LIMIT 1 OFFSET ?)", (alarm, alarm, keep - 1),
            ).rowcount for alarm in (1, 0))

    def raw_window(self, trace_id: str) -> RawWindowRow | None:
        row = self.conn.execute("SELECT trace_id, ts, unit, sensors, times, readings, alarm, service FROM raw_windows "
                                "WHERE trace_id = ?", (trace_id,)).fetchone()
        return None if row is None else RawWindowRow(row[0], row[1], row[2], row[3], bytes(row[4]), bytes(row[5]),
                                                     bool(row[6]), row[7])

    def _delete_oldest(self, n: int) -> int:
        with self._transaction():
            cur = self.conn.execute(
                "DELETE FROM predictions WHERE id IN (SELECT id FROM predictions ORDER BY id LIMIT ?)", (n,)
            )
        return cur.rowcount

    # -- reads --------------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
        """Rows of a read query as dicts keyed by column name."""
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def table_names(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]

    def prediction(self, trace_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM predictions WHERE trace_id = ?", [trace_id])
        return rows[0] if rows else None

    def predictions_between(self, start_ts: float, end_ts: float) -> list[dict[str, Any]]:
        """Predictions with `ts` in [start_ts, end_ts], oldest first: a scan (only alarm rows are indexed by time)."""
        return self.query("SELECT * FROM predictions WHERE ts BETWEEN ? AND ? ORDER BY ts", [start_ts, end_ts])

    # -- key/value state ----------------------------------------------------------------------
    def get_state(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, values: dict[str, str | None]) -> None:
        """Set (or with None, delete) several keys in one transaction."""
        with self._transaction():
            for key, value in values.items():
                if value is None:
                    self.conn.execute("DELETE FROM state WHERE key = ?", (key,))
                else:
                    self.conn.execute(
                        "INSERT INTO state (key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (key, value),
                    )

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def _transaction(self) -> _Tx:
        return _Tx(self.conn, self.path)


class _Tx:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error (the connection is in autocommit mode).

    A full disk or a corrupt page comes out as StorageFullError / DatabaseCorruptError; a failed ROLLBACK
    (SQLite may already have rolled back) never hides the error that caused it.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            _reraise(self.path, exc)
        return self.conn

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error as commit_exc:
                exc = commit_exc
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error as rollback_exc:
                log.warning("ROLLBACK failed after %s: %s", exc, rollback_exc)
        if isinstance(exc, sqlite3.Error):
            _reraise(self.path, exc)


def _reraise(path: Path, exc: sqlite3.Error) -> NoReturn:
    translated = translate(path, exc)
    if translated is not None:
        raise translated from exc
    raise exc
