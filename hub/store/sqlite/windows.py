"""Raw sensor windows on both backends: the same statements (``{p}`` is the placeholder) and the same queries,
over whichever connection the store's `_write`/`_read` give (`sqlite3` and psycopg connections both ``execute``).

A request row is written when the hub asks a device for a trace's window (``requested``); the device's
`RawWindow` turns it into ``stored`` or ``unavailable`` at ingest (`STORE_WINDOW`, never downgrading a stored
window, and only for the device the row names). Requests a device never answers become ``unavailable`` after a
few asks; every row goes after the retention period.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from hub.store.rows import RawWindowRow

STORE_WINDOW = (
    "INSERT INTO raw_windows (trace_id, device_id, state, requested_ts, received_ts, unit, body) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT (trace_id) DO UPDATE SET state = excluded.state, "
    "received_ts = excluded.received_ts, unit = excluded.unit, body = excluded.body "
    "WHERE raw_windows.state <> 'stored' AND raw_windows.device_id = excluded.device_id"
)
_REQUEST = (
    "INSERT INTO raw_windows (trace_id, device_id, state, requested_ts) VALUES ({p}, {p}, 'requested', {p}) "
    "ON CONFLICT (trace_id) DO NOTHING"
)
_COLUMNS = "trace_id, device_id, state, requested_ts, asks, received_ts, unit, body"


class _Connected(Protocol):
    P: str

    def _write(self) -> AbstractContextManager[Any]: ...

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


def _row(r: Any) -> RawWindowRow:
    body = json.loads(r[7]) if r[7] else {}
    return RawWindowRow(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(body.get("sensors", ())),
        tuple(body.get("timestamps", ())), tuple(tuple(v) for v in body.get("values", ())), body.get("service"),
    )


_IN_CHUNK = 500  # ids bound in one IN (...): well under SQLite's and PostgreSQL's limits


class WindowQueries:
    """`RawWindowStore` for a store whose connection class sets `P` (a mixin of both hub stores)."""

    def request_raw_windows(self: _Connected, requests: Sequence[tuple[str, str]], *, ts: float) -> list[str]:
        new: list[str] = []
        with self._write() as conn:
            for trace_id, device_id in sorted(set(requests)):
                if conn.execute(_REQUEST.format(p=self.P), (trace_id, device_id, ts)).rowcount:
                    new.append(trace_id)
        return new

    def raw_window(self: _Connected, trace_id: str) -> RawWindowRow | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM raw_windows WHERE trace_id = {self.P}", [trace_id])
        return _row(rows[0]) if rows else None

    def raw_windows_of(self: _Connected, trace_ids: Sequence[str]) -> dict[str, RawWindowRow]:
        out: dict[str, RawWindowRow] = {}
        ids = sorted(set(trace_ids))
        for i in range(0, len(ids), _IN_CHUNK):  # a few queries for a retrain's thousands of labelled traces
            chunk = ids[i : i + _IN_CHUNK]
            marks = ", ".join([self.P] * len(chunk))
            for r in self._read(f"SELECT {_COLUMNS} FROM raw_windows WHERE trace_id IN ({marks})", chunk):
                row = _row(r)
                out[row.trace_id] = row
        return out

    def stored_raw_windows(self: _Connected, *, since: float, limit: int = 10_000) -> list[RawWindowRow]:
        p = self.P
        rows = self._read(f"SELECT {_COLUMNS} FROM raw_windows WHERE state = 'stored' AND received_ts >= {p} "
                          f"ORDER BY received_ts DESC, trace_id LIMIT {p}", [since, limit])
        return [_row(r) for r in rows]

    def random_windows_unasked(self: _Connected, *, since: float, limit: int) -> list[tuple[str, str]]:
        p = self.P
        rows = self._read(f"SELECT trace_id, device_id FROM predictions WHERE reason = 'random' AND ts >= {p} AND "
                          "NOT EXISTS (SELECT 1 FROM raw_windows WHERE raw_windows.trace_id = predictions.trace_id) "
                          f"ORDER BY ts DESC, trace_id LIMIT {p}", [since, limit])
        return [(str(r[0]), str(r[1])) for r in rows]

    def due_raw_windows(self: _Connected, *, asked_before: float, limit: int = 500) -> list[RawWindowRow]:
        p = self.P
        rows = self._read(f"SELECT {_COLUMNS} FROM raw_windows WHERE state = 'requested' AND "
                          f"(asked_ts IS NULL OR asked_ts < {p}) ORDER BY requested_ts, trace_id LIMIT {p}",
                          [asked_before, limit])
        return [_row(r) for r in rows]

    def mark_raw_windows_asked(self: _Connected, trace_ids: Sequence[str], *, ts: float) -> None:
        p = self.P
        with self._write() as conn:
            for trace_id in sorted(set(trace_ids)):
                conn.execute(f"UPDATE raw_windows SET asks = asks + 1, asked_ts = {p} WHERE trace_id = {p}",
                             (ts, trace_id))

    def expire_raw_window_requests(self: _Connected, *, max_asks: int, asked_before: float, ts: float) -> int:
        p = self.P
        with self._write() as conn:
            return int(conn.execute(
                f"UPDATE raw_windows SET state = 'unavailable', received_ts = {p} WHERE state = 'requested' "
                f"AND asks >= {p} AND asked_ts < {p}", (ts, max_asks, asked_before)).rowcount)

    def prune_raw_windows(self: _Connected, *, before_ts: float) -> int:
        with self._write() as conn:
            return int(conn.execute(f"DELETE FROM raw_windows WHERE requested_ts < {self.P}", (before_ts,)).rowcount)
