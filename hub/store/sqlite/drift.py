"""Drift reports and the hub's event log on SQLite; a ``drift`` verdict and its event are one transaction."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hub.store.rows import DRIFT_EVENT, DriftReportRow, EventRow, drift_event, report_json
from hub.store.sqlite.connection import SqliteConnection


class DriftQueries(SqliteConnection):
    """`DriftStore` on SQLite (a mixin of `SqliteHubStore`)."""

    def save_drift_report(self, report: Mapping[str, Any], scope: str, verdict: str, ts: float) -> int:
        return self.save_drift_reports([(report, scope, verdict)], ts)[0]

    def save_drift_reports(self, reports: Sequence[tuple[Mapping[str, Any], str, str]], ts: float) -> list[int]:
        ids = []
        with self._write() as conn:
            for report, scope, verdict in reports:
                cur = conn.execute("INSERT INTO drift_reports (ts, scope, verdict, report) VALUES (?, ?, ?, ?)",
                                   (ts, scope, verdict, report_json(report)))
                ids.append(int(cur.lastrowid or 0))
                if verdict == "drift":
                    conn.execute("INSERT INTO events (ts, kind, payload) VALUES (?, ?, ?)",
                                 (ts, DRIFT_EVENT, drift_event(ids[-1], scope, report)))
        return ids

    def drift_reports(self, limit: int = 100, scope: str | None = None) -> list[DriftReportRow]:
        where, params = ("WHERE scope = ?", [scope]) if scope is not None else ("", [])
        rows = self._read(f"SELECT * FROM drift_reports {where} ORDER BY id DESC LIMIT ?", [*params, limit])
        return [DriftReportRow(r["id"], r["ts"], r["scope"], r["verdict"], json.loads(r["report"])) for r in rows]

    def record_event(self, kind: str, payload: Mapping[str, Any], ts: float | None = None) -> int:
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO events (ts, kind, payload) VALUES (?, ?, ?)",
                (time.time() if ts is None else ts, kind, json.dumps(payload, allow_nan=False)),
            )
        return int(cur.lastrowid or 0)

    def events(self, *, kind: str | None = None, since_id: int = 0, limit: int = 100) -> list[EventRow]:
        where: list[str] = ["id > ?"]
        params: list[Any] = [since_id]
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        rows = self._read(f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", [*params, limit])
        return [EventRow(r["id"], r["ts"], r["kind"], json.loads(r["payload"])) for r in rows]
