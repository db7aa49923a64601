"""Per-device sequence numbers on SQLite: the highest seen per device and the holes below it.

A seq above the highest opens a hole for everything skipped; a seq inside a hole splits it (in one
transaction per batch). Holes keep when they were detected, reported and asked for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from hub.store.rows import SEQUENCE_GAP_EVENT, SequenceHole, SequenceUpdate
from hub.store.sqlite.connection import SqliteConnection


class SequenceQueries(SqliteConnection):
    """`SequenceStore` on SQLite (a mixin of `SqliteHubStore`)."""

    def track_sequences(self, seqs: Mapping[str, Sequence[int]], *, now: float) -> SequenceUpdate:
        opened = filled = closed = 0
        with self._write() as conn:
            for device_id, numbers in seqs.items():
                o, f, c = track_holes(conn, device_id, sorted(set(numbers)), now)
                opened, filled, closed = opened + o, filled + f, closed + c
        return SequenceUpdate(opened, filled, closed)

    def device_sequence(self, device_id: str) -> int | None:
        rows = self._read("SELECT high FROM device_sequences WHERE device_id = ?", [device_id])
        return int(rows[0][0]) if rows else None

    def sequence_holes(self, *, device_id: str | None = None, reported: bool | None = None,
                       limit: int = 1000) -> list[SequenceHole]:
        where: list[str] = []
        params: list[Any] = []
        if device_id is not None:
            where.append("device_id = ?")
            params.append(device_id)
        if reported is not None:
            where.append("reported IS NOT NULL" if reported else "reported IS NULL")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(f"SELECT * FROM sequence_holes {clause} ORDER BY device_id, lo LIMIT ?", [*params, limit])
        return [SequenceHole(r["id"], r["device_id"], r["lo"], r["hi"], r["detected"], r["reported"], r["requests"],
                             r["last_request"]) for r in rows]

    def report_holes(self, holes: Sequence[SequenceHole], *, ts: float) -> list[int]:
        reported: list[int] = []
        with self._write() as conn:
            for h in holes:
                cur = conn.execute("UPDATE sequence_holes SET reported = ? WHERE id = ? AND reported IS NULL",
                                   (ts, h.id))
                if cur.rowcount:
                    payload = {"device_id": h.device_id, "lo": h.lo, "hi": h.hi, "missing": h.missing,
                               "detected": h.detected}
                    cur = conn.execute("INSERT INTO events (ts, kind, payload) VALUES (?, ?, ?)",
                                       (ts, SEQUENCE_GAP_EVENT, json.dumps(payload)))
                    reported.append(int(cur.lastrowid or 0))
        return reported

    def mark_holes_requested(self, hole_ids: Sequence[int], *, ts: float) -> None:
        with self._write() as conn:
            conn.executemany("UPDATE sequence_holes SET requests = requests + 1, last_request = ? WHERE id = ?",
                             [(ts, i) for i in hole_ids])


class Executes(Protocol):
    """A DB-API connection: sqlite3's, or psycopg's (`track_holes` is shared by both stores)."""

    def execute(self, sql: str, params: Sequence[Any], /) -> Any: ...


def track_holes(conn: Executes, device_id: str, seqs: list[int], now: float, *, param: str = "?",
                keep_high: str = "max(high, excluded.high)") -> tuple[int, int, int]:
    """Record `seqs` (sorted, unique) of one device inside the caller's transaction: (opened, filled, closed).

    The hole arithmetic of both backends; they differ only in the placeholder (`param`: ``?`` or ``%s``) and in
    how the upsert keeps the higher of two numbers (`keep_high`: SQLite's two-argument ``max``, PostgreSQL's
    ``greatest``).
    """
    if not seqs:
        return 0, 0, 0

    def run(sql: str, *params: Any) -> Any:
        return conn.execute(sql.replace("?", param), params)

    row = run("SELECT high FROM device_sequences WHERE device_id = ?", device_id).fetchone()
    high = int(row[0]) if row is not None else seqs[0] - 1  # a device first seen mid-stream: nothing before is owed
    opened = filled = closed = 0
    for seq in seqs:
        if seq > high:
            if seq > high + 1:
                run("INSERT INTO sequence_holes (device_id, lo, hi, detected) VALUES (?, ?, ?, ?)",
                    device_id, high + 1, seq - 1, now)
                opened += 1
            high = seq
            continue
        hole = run("SELECT id, lo, hi, detected, reported, requests, last_request FROM sequence_holes "
                   "WHERE device_id = ? AND lo <= ? AND hi >= ?", device_id, seq, seq).fetchone()
        if hole is None:
            continue  # a redelivery of something already here
        filled += 1
        hole_id, lo, hi, *kept = hole
        run("DELETE FROM sequence_holes WHERE id = ?", hole_id)
        parts = [(a, b) for a, b in ((lo, seq - 1), (seq + 1, hi)) if a <= b]
        for a, b in parts:
            run("INSERT INTO sequence_holes (device_id, lo, hi, detected, reported, requests, last_request) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", device_id, a, b, *kept)
        if not parts and kept[1] is not None:
            closed += 1
    run(f"INSERT INTO device_sequences (device_id, high, updated) VALUES (?, ?, ?) "
        f"ON CONFLICT (device_id) DO UPDATE SET high = {keep_high}, updated = excluded.updated", device_id, high, now)
    return opened, filled, closed
