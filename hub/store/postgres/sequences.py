"""Per-device sequence numbers on PostgreSQL: the highest seen per device and the holes below it.

The SQLite store's hole arithmetic (`track_holes`); each device's update holds an advisory lock named after it
(taken in device order, so two workers never deadlock), since PostgreSQL does not serialise writers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from hub.store.postgres.connection import PostgresConnection, lock
from hub.store.postgres.drift import insert_event
from hub.store.rows import SEQUENCE_GAP_EVENT, SequenceHole, SequenceUpdate
from hub.store.sqlite.sequences import track_holes

_HOLE_COLUMNS = "id, device_id, lo, hi, detected, reported, requests, last_request"


class SequenceQueries(PostgresConnection):
    """`SequenceStore` on PostgreSQL (a mixin of `PostgresHubStore`)."""

    def track_sequences(self, seqs: Mapping[str, Sequence[int]], *, now: float) -> SequenceUpdate:
        opened = filled = closed = 0
        with self._write() as conn:
            for device_id in sorted(seqs):
                o, f, c = _track(conn, device_id, sorted(set(seqs[device_id])), now)
                opened, filled, closed = opened + o, filled + f, closed + c
        return SequenceUpdate(opened, filled, closed)

    def device_sequence(self, device_id: str) -> int | None:
        rows = self._read("SELECT high FROM device_sequences WHERE device_id = %s", [device_id])
        return int(rows[0][0]) if rows else None

    def sequence_holes(self, *, device_id: str | None = None, reported: bool | None = None,
                       limit: int = 1000) -> list[SequenceHole]:
        where: list[str] = []
        params: list[Any] = []
        if device_id is not None:
            where.append("device_id = %s")
            params.append(device_id)
        if reported is not None:
            where.append("reported IS NOT NULL" if reported else "reported IS NULL")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(f"SELECT {_HOLE_COLUMNS} FROM sequence_holes {clause} ORDER BY device_id, lo LIMIT %s",
                          [*params, limit])
        return [SequenceHole(*r) for r in rows]

    def report_holes(self, holes: Sequence[SequenceHole], *, ts: float) -> list[int]:
        reported: list[int] = []
        with self._write() as conn:
            for h in holes:
                cur = conn.execute("UPDATE sequence_holes SET reported = %s WHERE id = %s AND reported IS NULL",
                                   (ts, h.id))
                if cur.rowcount:
                    reported.append(insert_event(conn, ts, SEQUENCE_GAP_EVENT, {
                        "device_id": h.device_id, "lo": h.lo, "hi": h.hi, "missing": h.missing,
                        "detected": h.detected}))
        return reported

    def mark_holes_requested(self, hole_ids: Sequence[int], *, ts: float) -> None:
        with self._write() as conn:
            conn.execute("UPDATE sequence_holes SET requests = requests + 1, last_request = %s WHERE id = ANY(%s)",
                         (ts, list(hole_ids)))


def _track(conn: psycopg.Connection[Any], device_id: str, seqs: list[int], now: float) -> tuple[int, int, int]:
    if not seqs:
        return 0, 0, 0
    lock(conn, f"sequences:{device_id}")
    return track_holes(conn, device_id, seqs, now, param="%s",
                       keep_high="greatest(device_sequences.high, excluded.high)")
