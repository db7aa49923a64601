"""Drift reports and the hub's event log on PostgreSQL; a ``drift`` verdict and its event are one transaction."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from hub.store.postgres.connection import PostgresConnection
from hub.store.rows import DRIFT_EVENT, DriftReportRow, EventRow, drift_event, report_json


def insert_event(conn: psycopg.Connection[Any], ts: float, kind: str, payload: Mapping[str, Any]) -> int:
    """Append one hub event inside the caller's transaction; its id."""
    row = conn.execute("INSERT INTO events (ts, kind, payload) VALUES (%s, %s, %s) RETURNING id",
                       (ts, kind, json.dumps(dict(payload), allow_nan=False))).fetchone()
    assert row is not None
    return int(row[0])


class DriftQueries(PostgresConnection):
    """`DriftStore` on PostgreSQL (a mixin of `PostgresHubStore`)."""

    def save_drift_report(self, report: Mapping[str, Any], scope: str, verdict: str, ts: float) -> int:
        return self.save_drift_reports([(report, scope, verdict)], ts)[0]

    def save_drift_reports(self, reports: Sequence[tuple[Mapping[str, Any], str, str]], ts: float) -> list[int]:
        """One multi-row insert: identities are drawn in the rows' order (``ORDER BY n``), so the ids sorted are
        the reports' ids in order, whatever other writers draw in between."""
        if not reports:
            return []
        with self._write() as conn:
            rows = conn.execute(
                "INSERT INTO drift_reports (ts, scope, verdict, report) SELECT %s, s, v, r "
                "FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS t(s, v, r, n) ORDER BY n "
                "RETURNING id",
                (ts, [s for _, s, _ in reports], [v for _, _, v in reports], [report_json(r) for r, _, _ in reports]),
            ).fetchall()
            ids = sorted(int(r[0]) for r in rows)
            drifts = [(ts, DRIFT_EVENT, drift_event(i, s, r)) for i, (r, s, v) in zip(ids, reports, strict=True)
                      if v == "drift"]
            if drifts:
                conn.cursor().executemany("INSERT INTO events (ts, kind, payload) VALUES (%s, %s, %s)", drifts)
        return ids

    def drift_reports(self, limit: int = 100, scope: str | None = None) -> list[DriftReportRow]:
        where, params = ("WHERE scope = %s", [scope]) if scope is not None else ("", [])
        rows = self._read(f"SELECT id, ts, scope, verdict, report FROM drift_reports {where} ORDER BY id DESC LIMIT %s",
                          [*params, limit])
        return [DriftReportRow(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def record_event(self, kind: str, payload: Mapping[str, Any], ts: float | None = None) -> int:
        with self._write() as conn:
            return insert_event(conn, time.time() if ts is None else ts, kind, payload)

    def events(self, *, kind: str | None = None, since_id: int = 0, limit: int = 100) -> list[EventRow]:
        where: list[str] = ["id > %s"]
        params: list[Any] = [since_id]
        if kind is not None:
            where.append("kind = %s")
            params.append(kind)
        rows = self._read(f"SELECT id, ts, kind, payload FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT %s",
                          [*params, limit])
        return [EventRow(r[0], r[1], r[2], json.loads(r[3])) for r in rows]
