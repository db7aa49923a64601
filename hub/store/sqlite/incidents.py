"""Incidents on SQLite (a mixin of `SqliteHubStore`).

The grouping pass reads anomalies in commit order: SQLite assigns a table's rowids in insert order and writers
serialise on ``BEGIN IMMEDIATE``, so ``rowid > cursor`` is exactly what was committed since the last pass (and
anomalies are never pruned, so the newest rowid is never reused). A pass writes its incidents, windows, events,
notifications and the new cursor in one transaction, and only if the cursor and every incident it read are
unchanged; otherwise nothing is written and the next pass starts again from the stored cursor.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from hub.store.rows import (
    ACTIVE_STATES,
    IncidentEventRow,
    IncidentMember,
    IncidentPass,
    IncidentQuery,
    IncidentRow,
    IngestRecord,
    NotificationDraft,
    NotificationRow,
    PredictionRow,
)
from hub.store.sqlite.batch import batch_rows
from hub.store.sqlite.common import DETAIL_CHARS, prediction_from_row
from hub.store.sqlite.connection import SqliteConnection
from hub.store.sqlite.ingest import write_rows

CURSOR = "incidents.anomalies"
INCIDENT_COLUMNS = (
    "id", "device_id", "site", "kind", "state", "start_ts", "end_ts", "windows", "max_score", "model_version",
            "created_ts", "updated_ts", "opened_ts", "acknowledged_by", "acknowledged_ts", "resolved_by", "resolved_ts",
            "verdict", "fault_type", "note", "closed_ts", "revision")
_INSERT = f"INSERT INTO incidents ({', '.join(INCIDENT_COLUMNS)}) VALUES ({', '.join('?' * len(INCIDENT_COLUMNS))})"
_UPDATE = (f"UPDATE incidents SET {', '.join(f'{c} = ?' for c in INCIDENT_COLUMNS[1:-1])}, revision = revision + 1 "
           "WHERE id = ? AND revision = ?")


class _Moved(Exception):
    """Something a write was based on changed meanwhile: roll back."""


class IncidentQueries(SqliteConnection):
    """`IncidentStore` on SQLite."""

    # -- the grouping pass -----------------------------------------------------------------------------------
    def incident_cursor(self) -> int:
        rows = self._read("SELECT value FROM job_cursors WHERE name = ?", [CURSOR])
        return int(rows[0][0]) if rows else 0

    def anomalies_after(self, cursor: int, limit: int) -> tuple[list[PredictionRow], int]:
        rows = self._read(
            "SELECT rowid AS seq, * FROM predictions p WHERE rowid > ? AND kind = 'anomaly' "
            "AND NOT EXISTS (SELECT 1 FROM incident_windows w WHERE w.trace_id = p.trace_id) ORDER BY rowid LIMIT ?",
            [cursor, limit],
        )
        return [prediction_from_row(r) for r in rows], (int(rows[-1]["seq"]) if rows else cursor)

    def active_incidents(self, device_ids: Sequence[str] | None = None) -> list[IncidentRow]:
        where = [f"state IN ({', '.join('?' * len(ACTIVE_STATES))})"]
        params: list[Any] = list(ACTIVE_STATES)
        if device_ids is not None:
            where.append(f"device_id IN ({', '.join('?' * len(device_ids))})")
            params += list(device_ids)
        return [_incident(r) for r in self._read(f"SELECT * FROM incidents WHERE {' AND '.join(where)} "
                                                 "ORDER BY device_id, start_ts", params)]

    def save_incident_pass(self, p: IncidentPass) -> bool:
        try:
            with self._write() as conn:
                if _cursor(conn) != p.cursor_from:
                    raise _Moved
                _upsert(conn, p.incidents)
                conn.executemany("INSERT INTO incident_windows (trace_id, incident_id, ts, score) VALUES (?, ?, ?, ?)",
                                 [(m.trace_id, m.incident_id, m.ts, m.score) for m in p.members])
                _record(conn, p.events, p.notifications)
                conn.execute("INSERT INTO job_cursors (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE "
                             "SET value = excluded.value", (CURSOR, p.cursor_to))
        except _Moved:
            return False
        return True

    # -- a technician's changes -------------------------------------------------------------------------------
    def write_incident(
        self, row: IncidentRow, *, events: Sequence[IncidentEventRow] = (),
        notifications: Sequence[NotificationDraft] = (), annotations: Sequence[IngestRecord] = (),
    ) -> bool:
        try:
            with self._write() as conn:
                if annotations:  # the same write path as ingest and POST /annotations
                    write_rows(conn, batch_rows(annotations))
                _upsert(conn, [row])
                _record(conn, events, notifications)
        except _Moved:
            return False
        return True

    # -- reads ------------------------------------------------------------------------------------------------
    def incident(self, incident_id: str) -> IncidentRow | None:
        rows = self._read("SELECT * FROM incidents WHERE id = ?", [incident_id])
        return _incident(rows[0]) if rows else None

    def incidents(self, query: IncidentQuery) -> list[IncidentRow]:
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (("device_id = ?", query.device_id), ("site = ?", query.site),
                              ("end_ts >= ?", query.since)):
            if value is not None:
                where.append(clause)
                params.append(value)
        if query.states:
            where.append(f"state IN ({', '.join('?' * len(query.states))})")
            params += list(query.states)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(f"SELECT * FROM incidents {clause} ORDER BY start_ts DESC, id DESC LIMIT ? OFFSET ?",
                          [*params, query.limit, query.offset])
        return [_incident(r) for r in rows]

    def incident_windows(self, incident_id: str, *, limit: int | None = None) -> list[IncidentMember]:
        rows = self._read("SELECT * FROM incident_windows WHERE incident_id = ? ORDER BY ts, trace_id LIMIT ?",
                          [incident_id, -1 if limit is None else limit])
        return [IncidentMember(r["trace_id"], r["incident_id"], r["ts"], r["score"]) for r in rows]

    def incident_events(self, incident_id: str) -> list[IncidentEventRow]:
        rows = self._read("SELECT * FROM incident_events WHERE incident_id = ? ORDER BY ts, id", [incident_id])
        return [IncidentEventRow(r["id"], r["incident_id"], r["ts"], r["kind"], r["actor"], json.loads(r["detail"]))
                for r in rows]

    # -- the delivery log -------------------------------------------------------------------------------------
    def pending_notifications(self, *, limit: int = 1000) -> list[NotificationRow]:
        rows = self._read("SELECT * FROM incident_notifications WHERE status = 'pending' ORDER BY id LIMIT ?",
                          [limit])
        return [_notification(r) for r in rows]

    def record_delivery(self, notification_id: int, *, ok: bool, now: float, status_code: int | None = None,
                        error: str | None = None, next_attempt_ts: float | None = None) -> None:
        status = "delivered" if ok else "pending" if next_attempt_ts is not None else "failed"
        with self._write() as conn:
            conn.execute(
                "UPDATE incident_notifications SET status = ?, attempts = attempts + 1, last_attempt_ts = ?, "
                "last_status = ?, last_error = ?, delivered_ts = ?, next_attempt_ts = coalesce(?, next_attempt_ts) "
                "WHERE id = ? AND status = 'pending'",
                (status, now, status_code, None if error is None else error[:DETAIL_CHARS], now if ok else None,
                 next_attempt_ts, notification_id),
            )

    def notifications(self, *, incident_id: str | None = None, status: str | None = None,
                      limit: int = 100) -> list[NotificationRow]:
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (("incident_id = ?", incident_id), ("status = ?", status)):
            if value is not None:
                where.append(clause)
                params.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return [_notification(r) for r in self._read(f"SELECT * FROM incident_notifications {clause} ORDER BY id "
                                                     "LIMIT ?", [*params, limit])]


def _cursor(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM job_cursors WHERE name = ?", (CURSOR,)).fetchone()
    return int(row[0]) if row else 0


def _values(row: IncidentRow) -> list[Any]:
    return [getattr(row, c) for c in INCIDENT_COLUMNS]


def _upsert(conn: sqlite3.Connection, rows: Sequence[IncidentRow]) -> None:
    """Insert new incidents; update known ones if still at the row's revision (else `_Moved`)."""
    for row in rows:
        if conn.execute("SELECT 1 FROM incidents WHERE id = ?", (row.id,)).fetchone() is None:
            conn.execute(_INSERT, _values(row))
        elif conn.execute(_UPDATE, [*_values(row)[1:-1], row.id, row.revision]).rowcount != 1:
            raise _Moved


def _record(conn: sqlite3.Connection, events: Sequence[IncidentEventRow],
            notifications: Sequence[NotificationDraft]) -> None:
    conn.executemany("INSERT INTO incident_events (id, incident_id, ts, kind, actor, detail) VALUES (?, ?, ?, ?, ?, ?)",
                     [(e.id, e.incident_id, e.ts, e.kind, e.actor, json.dumps(e.detail)) for e in events])
    created = {e.id: e.ts for e in events}
    conn.executemany(
        "INSERT OR IGNORE INTO incident_notifications (event_id, incident_id, channel, target, site_key, body, "
        "status, created_ts, next_attempt_ts) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
        [(n.event_id, n.incident_id, n.channel, n.target, n.site_key, n.body, created[n.event_id],
          created[n.event_id]) for n in notifications],
    )


def _incident(r: sqlite3.Row) -> IncidentRow:
    return IncidentRow(**{c: r[c] for c in INCIDENT_COLUMNS})


def _notification(r: sqlite3.Row) -> NotificationRow:
    return NotificationRow(
        r["id"], r["event_id"], r["incident_id"], r["channel"], r["target"], r["site_key"], r["body"], r["status"],
        r["attempts"], r["created_ts"], r["next_attempt_ts"], r["last_attempt_ts"], r["last_status"],
        r["last_error"], r["delivered_ts"],
    )
