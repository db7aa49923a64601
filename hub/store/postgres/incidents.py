"""Incidents on PostgreSQL (a mixin of `PostgresHubStore`).

The grouping pass reads anomalies in commit order by ``predictions.seq``: a transaction writing anomalies holds
`hub.store.postgres.ingest.ANOMALY_ORDER` from before it takes its first seq until it commits, so a later
commit always has higher seqs and ``seq > cursor`` is exactly what was committed since the last pass. A pass
writes its incidents, windows, events, notifications and the new cursor in one transaction under the cursor's
advisory lock, and only if the cursor and every incident it read are unchanged; otherwise nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg

from hub.store.postgres.common import DETAIL_CHARS, PREDICTION_COLUMNS, decoded, prediction_from_row, prefixed
from hub.store.postgres.connection import PostgresConnection, Row, lock
from hub.store.postgres.ingest import any_of, conditions, write_rows
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
from hub.store.sqlite.incidents import CURSOR, INCIDENT_COLUMNS

_SELECT = f"SELECT {', '.join(INCIDENT_COLUMNS)} FROM incidents"
_INSERT = (f"INSERT INTO incidents ({', '.join(INCIDENT_COLUMNS)}) "
           f"VALUES ({', '.join(['%s'] * len(INCIDENT_COLUMNS))}) ON CONFLICT (id) DO NOTHING")
_UPDATE = (f"UPDATE incidents SET {', '.join(f'{c} = %s' for c in INCIDENT_COLUMNS[1:-1])}, revision = revision + 1 "
           "WHERE id = %s AND revision = %s")
_NOTIFICATION_COLUMNS = ("id, event_id, incident_id, channel, target, site_key, body, status, attempts, created_ts, "
                         "next_attempt_ts, last_attempt_ts, last_status, last_error, delivered_ts")


class _Moved(Exception):
    """Something a write was based on changed meanwhile: roll back."""


class IncidentQueries(PostgresConnection):
    """`IncidentStore` on PostgreSQL."""

    # -- the grouping pass -----------------------------------------------------------------------------------
    def incident_cursor(self) -> int:
        rows = self._read("SELECT value FROM job_cursors WHERE name = %s", [CURSOR])
        return int(rows[0][0]) if rows else 0

    def anomalies_after(self, cursor: int, limit: int) -> tuple[list[PredictionRow], int]:
        rows = self._read(
            f"SELECT {prefixed(PREDICTION_COLUMNS, 'p')}, p.seq FROM predictions p WHERE p.seq > %s "
            "AND p.kind = 'anomaly' AND NOT EXISTS (SELECT 1 FROM incident_windows w WHERE w.trace_id = p.trace_id) "
            "ORDER BY p.seq LIMIT %s",
            [cursor, limit],
        )
        return [prediction_from_row(r) for r in rows], (int(rows[-1][15]) if rows else cursor)

    def active_incidents(self, device_ids: Sequence[str] | None = None) -> list[IncidentRow]:
        where, params = ["state = ANY(%s)"], [list(ACTIVE_STATES)]
        any_of(where, params, "device_id", device_ids)
        return [_incident(r) for r in self._read(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY device_id, start_ts",
                                                 params)]

    def save_incident_pass(self, p: IncidentPass) -> bool:
        try:
            with self._write() as conn:
                lock(conn, CURSOR)
                row = conn.execute("SELECT value FROM job_cursors WHERE name = %s", (CURSOR,)).fetchone()
                if (int(row[0]) if row else 0) != p.cursor_from:
                    raise _Moved
                _upsert(conn, p.incidents)
                conn.cursor().executemany(
                    "INSERT INTO incident_windows (trace_id, incident_id, ts, score) VALUES (%s, %s, %s, %s)",
                    [(m.trace_id, m.incident_id, m.ts, m.score) for m in p.members])
                _record(conn, p.events, p.notifications)
                conn.execute("INSERT INTO job_cursors (name, value) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
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
        rows = self._read(f"{_SELECT} WHERE id = %s", [incident_id])
        return _incident(rows[0]) if rows else None

    def incidents(self, query: IncidentQuery) -> list[IncidentRow]:
        where, params = conditions(("device_id = %s", query.device_id), ("site = %s", query.site),
                                   ("end_ts >= %s", query.since),
                                   ("state = ANY(%s)", list(query.states) if query.states else None))
        rows = self._read(f"{_SELECT} {where} ORDER BY start_ts DESC, id DESC LIMIT %s OFFSET %s",
                          [*params, query.limit, query.offset])
        return [_incident(r) for r in rows]

    def incident_windows(self, incident_id: str, *, limit: int | None = None) -> list[IncidentMember]:
        rows = self._read("SELECT trace_id, incident_id, ts, score FROM incident_windows WHERE incident_id = %s "
                          "ORDER BY ts, trace_id LIMIT %s", [incident_id, limit])
        return [IncidentMember(*r) for r in rows]

    def incident_events(self, incident_id: str) -> list[IncidentEventRow]:
        rows = self._read("SELECT id, incident_id, ts, kind, actor, detail FROM incident_events "
                          "WHERE incident_id = %s ORDER BY ts, id", [incident_id])
        return [IncidentEventRow(*decoded(r, _5=json.loads)) for r in rows]

    # -- the delivery log -------------------------------------------------------------------------------------
    def pending_notifications(self, *, limit: int = 1000) -> list[NotificationRow]:
        rows = self._read(f"SELECT {_NOTIFICATION_COLUMNS} FROM incident_notifications WHERE status = 'pending' "
                          "ORDER BY id LIMIT %s", [limit])
        return [NotificationRow(*r) for r in rows]

    def record_delivery(self, notification_id: int, *, ok: bool, now: float, status_code: int | None = None,
                        error: str | None = None, next_attempt_ts: float | None = None) -> None:
        status = "delivered" if ok else "pending" if next_attempt_ts is not None else "failed"
        with self._write() as conn:
            conn.execute(
                "UPDATE incident_notifications SET status = %s, attempts = attempts + 1, last_attempt_ts = %s, "
                "last_status = %s, last_error = %s, delivered_ts = %s, "
                "next_attempt_ts = coalesce(%s, next_attempt_ts) WHERE id = %s AND status = 'pending'",
                (status, now, status_code, None if error is None else error[:DETAIL_CHARS], now if ok else None,
                 next_attempt_ts, notification_id),
            )

    def notifications(self, *, incident_id: str | None = None, status: str | None = None,
                      limit: int = 100) -> list[NotificationRow]:
        where, params = conditions(("incident_id = %s", incident_id), ("status = %s", status))
        rows = self._read(f"SELECT {_NOTIFICATION_COLUMNS} FROM incident_notifications {where} ORDER BY id LIMIT %s",
                          [*params, limit])
        return [NotificationRow(*r) for r in rows]


def _upsert(conn: psycopg.Connection[Any], rows: Sequence[IncidentRow]) -> None:
    """Insert new incidents; update known ones if still at the row's revision (else `_Moved`)."""
    for row in rows:
        values = [getattr(row, c) for c in INCIDENT_COLUMNS]
        if conn.execute(_INSERT, values).rowcount == 1:
            continue
        if conn.execute(_UPDATE, [*values[1:-1], row.id, row.revision]).rowcount != 1:
            raise _Moved


def _record(conn: psycopg.Connection[Any], events: Sequence[IncidentEventRow],
            notifications: Sequence[NotificationDraft]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO incident_events (id, incident_id, ts, kind, actor, detail) VALUES (%s, %s, %s, %s, %s, %s)",
            [(e.id, e.incident_id, e.ts, e.kind, e.actor, json.dumps(e.detail)) for e in events])
        created = {e.id: e.ts for e in events}
        cur.executemany(
            "INSERT INTO incident_notifications (event_id, incident_id, channel, target, site_key, body, status, "
            "created_ts, next_attempt_ts) VALUES (%s, %s, %s, %s, %s, %s, 'pending', %s, %s) "
            "ON CONFLICT (event_id, channel, target) DO NOTHING",
            [(n.event_id, n.incident_id, n.channel, n.target, n.site_key, n.body, created[n.event_id],
              created[n.event_id]) for n in notifications],
        )


def _incident(r: Row) -> IncidentRow:
    return IncidentRow(*r)
